// vault_client: vaultwire's HTTP client for the few Vault endpoints it uses
// (/work/shared/vault-api.md §2.4–2.6): database credentials, lease renew/revoke,
// token lookup-self/renew-self, an auth method's login (vaultwire's own token), and a
// generic request for `provision` and tests.
//
// Threading contract (STYLE.md §2 rule 5):
// - Every blocking libcurl call runs on the client's own bounded worker pool
//   (`options.threads` threads), never on the caller's thread. The async calls
//   (`read_credentials(..., done)` etc.) return at once; `done` is invoked exactly
//   once, on a pool thread, with the result. `done` must not block for long and
//   must not throw (an exception escaping it is logged and swallowed).
// - To resume a coroutine on its own executor, post from `done` back to it, e.g.
//   with asio::async_initiate + a shared_ptr holding the completion handler
//   (std::function needs a copyable callable; Asio handlers are move-only).
// - The `*_blocking` variants run the request on the calling thread. They exist for
//   the CLI (`provision`), tests and the pool itself; never call them from an I/O
//   thread.
// - The destructor waits for every queued request to finish (each is bounded by
//   request_timeout) and invokes their callbacks; do not destroy the client from
//   inside one of its callbacks.
//
// Secrets: tokens, login bodies (secret IDs, JWTs) and returned passwords are
// pgwire::secret_string. The header line holding the token, curl's copy of it, the
// request body and every response body are wiped after each request; JSON is parsed
// with an allocator that wipes what it frees. Nothing here logs a token, a password
// or a request body (debug lines carry method, path, status, duration, lease id and
// accessor only).
//
// Redirects: as Vault's own client (api/client.go rawRequestWithContext), one 301,
// 302 or 307 is followed with the same method, headers and body (a standby answers
// 307 to the active node); never from https to another scheme, and a second redirect
// is an error that names the status and the Location.
//
// Addresses: http://, https://, or unix:///path (a Vault Agent or Vault Proxy
// listener: requests go over that socket, as Vault's client dials it for every
// request, api/client.go ParseAddress).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <boost/outcome/basic_result.hpp>
#include <boost/outcome/policy/terminate.hpp>

#include "pgwire/secret.hpp"

namespace vaultwire {

struct vault_client_options {
  std::string address{};        // "https://vault.example:8200" (a trailing '/' is ignored) or "unix:///path"
  std::string vault_namespace{};  // sent as X-Vault-Namespace when not empty
  // Vault's CA: a PEM bundle, else every PEM file of a directory (read at each
  // connection, like Vault's client reads VAULT_CAPATH), else the system store. Either
  // replaces the system store; ca_file wins when both are set.
  std::string ca_file{};
  std::string ca_path{};
  std::string client_cert{};      // PEM certificate and key for Vault listeners that require one
  std::string client_key{};
  std::string tls_server_name{};  // SNI and the name verified, when not the address's host
  bool skip_verify = false;       // VAULT_SKIP_VERIFY with allow_insecure: no verification at all
  std::chrono::milliseconds request_timeout{5000};  // whole request, connect included
  std::size_t threads = 4;      // worker pool size = most requests in flight at once
  // Called after every HTTP exchange (metrics), on the thread that made it (a pool
  // thread, or the caller of a *_blocking function), with detail::endpoint_label of
  // the path, the HTTP status ("200", "403") or the transport failure ("timeout",
  // "unreachable", "too_large"), and the time it took. Never given a path, a token
  // or a lease id. Must not block; an exception it throws is logged and dropped.
  std::function<void(std::string_view endpoint, std::string_view code, std::chrono::duration<double> elapsed)>
      observer{};
};

struct vault_config;  // vaultwire/config.hpp

// The client options for the configuration's [vault] section.
[[nodiscard]] vault_client_options make_vault_client_options(const vault_config& config, std::size_t threads = 4);

// The libcurl the process runs with (its own answer, e.g. "7.88.1"), for `vaultwire
// version`: a version string taken at build time could differ from the library loaded.
[[nodiscard]] std::string libcurl_version();

enum class vault_error_kind {
  forbidden,      // 403: token missing, unknown, revoked, or the ACL denies
  bad_request,    // 400 and other 4xx not listed here (e.g. "unknown role: x")
  not_found,      // 404
  sealed,         // 503 "Vault is sealed"
  rate_limited,   // 429
  server_error,   // 5xx (other than sealed)
  redirected,     // 3xx not followed: a second redirect, or one from https to another scheme
  unreachable,    // DNS, connect, TLS or connection reset
  timeout,        // no complete answer within request_timeout
  bad_response,   // 2xx whose body is not the JSON expected, or too large
};

[[nodiscard]] std::string_view to_string(vault_error_kind kind) noexcept;

// What Vault's refusal says beyond its status, read from errors[] as Vault wrote them
// (the condensed message loses the multierror wrapper that tells a 403 apart).
enum class vault_refusal {
  none,           // nothing more specific (a transient or unknown failure)
  // 403 "permission denied" bare (request_handling.go: an unknown, revoked or expired
  // token fails the token check with logical.ErrPermissionDenied, which the response
  // carries unwrapped), or any answer holding "invalid token" (Vault 1.17 on adds
  // logical.ErrInvalidToken to that refusal).
  bad_token,
  // 403 "1 error occurred:\n\t* permission denied\n\n": the token is valid but its
  // policy denies the path (CheckToken wraps the ACL result in a multierror).
  policy_denied,
  // 400 from sys/leases/renew or revoke: Vault no longer has the lease ("lease not
  // found", "lease expired", or the irrevocable "lease is expired and has failed
  // previous revocation attempts"; expiration.go leaseEntry.renewable).
  lease_gone,
  // 400 from sys/leases/renew: the lease exists but cannot be extended ("lease is not
  // renewable"; CalculateTTL's "past the max TTL, cannot renew", bare or wrapped by
  // renewEntry's "failed to renew entry: resp: ... err: ").
  lease_final,
};

[[nodiscard]] std::string_view to_string(vault_refusal refusal) noexcept;

struct vault_error {
  vault_error_kind kind = vault_error_kind::bad_response;
  int http_status = 0;   // 0 when there was no HTTP answer
  std::string message;   // Vault's errors[] condensed ("permission denied"), or the transport failure
  std::string address;   // the Vault address the request went to
  std::string request;   // "GET database/creds/app" (no token, no body)
  vault_refusal refusal = vault_refusal::none;
  std::chrono::seconds retry_after{0};  // a 429's Retry-After (0: none given)

  // True for answers that mean "this token may not have that" (403, 400, 404), but
  // not a policy's denial of one path (policy_denied()): DESIGN.md maps them to 28P01.
  [[nodiscard]] bool token_rejected() const noexcept;
  // A 403 that is Vault's ACL denial: the token is valid, its policy lacks the path.
  [[nodiscard]] bool policy_denied() const noexcept { return refusal == vault_refusal::policy_denied; }
  // "28P01" for token_rejected(), "28000" for policy_denied(), "08001" for everything else.
  [[nodiscard]] std::string_view sqlstate() const noexcept;
  // errc::vault_rejected_token, errc::vault_denied_role or errc::vault_unavailable.
  [[nodiscard]] std::error_code code() const noexcept;
  // The text of the client's ErrorResponse: "Vault rejected the token: permission
  // denied", or "Vault at https://vault:8200 is unavailable: Vault is sealed (HTTP
  // 503)". Built from the fields above only, so it never contains a token.
  [[nodiscard]] std::string to_client_message() const;
};

template <class T>
using vault_result = boost::outcome_v2::basic_result<T, vault_error, boost::outcome_v2::policy::terminate>;

// How a lease is revoked. `path`: PUT sys/leases/revoke/<lease_id>, which a policy
// can scope to one role's leases (update on sys/leases/revoke/<mount>/creds/<role>/*).
// `body`: PUT sys/leases/revoke {"lease_id": ...}, the only form whose success Vault
// Proxy's and Vault Agent's lease cache acts on (command/agentproxyshared/cache/
// lease_cache.go handleRevocationRequest matches the path exactly and reads the body);
// its policy needs update on sys/leases/revoke itself.
enum class revoke_form { path, body };

// GET {mount}/creds/{role}
struct vault_credential {
  std::string lease_id;
  std::chrono::seconds lease_duration{0};
  bool renewable = false;
  std::string username;
  pgwire::secret_string password;
  std::vector<std::string> warnings;
};

// sys/leases/renew
struct vault_lease_renewal {
  std::string lease_id;
  std::chrono::seconds lease_duration{0};
  bool renewable = false;
  std::vector<std::string> warnings;
};

// auth/token/lookup-self (ttl = seconds left, 0 = never expires) and
// auth/token/renew-self (ttl = the new lease_duration; display_name empty).
struct vault_token_info {
  std::string accessor;
  std::chrono::seconds ttl{0};
  std::vector<std::string> policies;
  std::string display_name;
  std::string entity_id;  // "" for a token with no identity entity
  bool renewable = false;  // lookup-self: false when Vault says nothing (a token without a lease)
  bool orphan = false;     // lookup-self only: the token has no parent
  std::vector<std::string> warnings;
};

// POST auth/<mount>/login: the `auth` block of the answer (sdk/logical/
// translate_response.go HTTPAuth; api-docs/auth/approle "Login with AppRole",
// kubernetes "Login", jwt "JWT login", cert "Login with TLS certificate method").
struct vault_login {
  pgwire::secret_string client_token;
  std::string accessor;         // "" when Vault sends none (the cert method's sample answer has none)
  std::chrono::seconds ttl{0};  // auth.lease_duration; 0: the token never expires
  bool renewable = false;       // a batch token is never renewable
  std::string token_type = "service";  // "service" or "batch" (absent: service)
  std::vector<std::string> policies;
  std::string entity_id;
  bool orphan = false;
  std::vector<std::string> warnings;
};

// Any 2xx answer of request(). The body may hold secrets the caller asked for
// (a created token): it is the caller's to wipe.
struct vault_response {
  int http_status = 0;
  std::string body;  // empty for 204
};

class vault_client {
 public:
  // Starts the worker pool. Throws std::invalid_argument for an address that is not
  // http://, https:// or unix:///path, for zero threads, or for a ca_path directory
  // holding a file that is not PEM.
  explicit vault_client(vault_client_options options);
  ~vault_client();
  vault_client(const vault_client&) = delete;
  vault_client& operator=(const vault_client&) = delete;

  // The options at construction (reconfigure does not change them).
  [[nodiscard]] const vault_client_options& options() const noexcept { return options_; }

  // SIGHUP: requests queued or made from now on go to `next`'s address, with its
  // namespace and TLS settings (its timeout, threads and observer are ignored);
  // requests in flight finish where they started. Throws std::invalid_argument as the
  // constructor does.
  void reconfigure(const vault_client_options& next);

  template <class T>
  using callback = std::function<void(vault_result<T>)>;

  // Asynchronous: queued on the pool; `done` runs exactly once on a pool thread.
  void read_credentials(std::string mount, std::string role, pgwire::secret_string token,
                        callback<vault_credential> done);
  void renew_lease(std::string lease_id, std::chrono::seconds increment, pgwire::secret_string token,
                   callback<vault_lease_renewal> done);
  void revoke_lease(std::string lease_id, pgwire::secret_string token, callback<void> done);
  void revoke_lease(std::string lease_id, pgwire::secret_string token, revoke_form form, callback<void> done);
  void lookup_self(pgwire::secret_string token, callback<vault_token_info> done);
  void renew_self(pgwire::secret_string token, std::chrono::seconds increment, callback<vault_token_info> done);
  void request(std::string method, std::string path, std::string json_body, pgwire::secret_string token,
               callback<vault_response> done);
  // POST auth/<mount>/login with `body` (it holds the method's secrets: a secret ID,
  // a JWT), sent without a token. The body is wiped after the request and never
  // logged; the answer's client_token is a secret_string.
  void login(std::string mount, pgwire::secret_string body, callback<vault_login> done);

  // Blocking, on the calling thread (never an I/O thread). `mount` may contain '/'
  // (nested mounts); `role` is percent-encoded as one path segment. An increment of
  // 0 lets Vault choose (the role's default TTL / the token's period).
  [[nodiscard]] vault_result<vault_credential> read_credentials_blocking(std::string_view mount,
                                                                        std::string_view role,
                                                                        const pgwire::secret_string& token);
  [[nodiscard]] vault_result<vault_lease_renewal> renew_lease_blocking(std::string_view lease_id,
                                                                      std::chrono::seconds increment,
                                                                      const pgwire::secret_string& token);
  // 204 (and any 2xx) is success; Vault answers 204 for an unknown lease too.
  [[nodiscard]] vault_result<void> revoke_lease_blocking(std::string_view lease_id,
                                                         const pgwire::secret_string& token,
                                                         revoke_form form = revoke_form::path);
  [[nodiscard]] vault_result<vault_token_info> lookup_self_blocking(const pgwire::secret_string& token);
  [[nodiscard]] vault_result<vault_token_info> renew_self_blocking(const pgwire::secret_string& token,
                                                                  std::chrono::seconds increment);
  [[nodiscard]] vault_result<vault_login> login_blocking(std::string_view mount, const pgwire::secret_string& body);
  // Any endpoint: `path` is after /v1/ (e.g. "sys/mounts/database"); an empty body
  // sends none. An empty token sends no X-Vault-Token. Non-2xx answers are errors.
  [[nodiscard]] vault_result<vault_response> request_blocking(std::string_view method, std::string_view path,
                                                              std::string_view json_body,
                                                              const pgwire::secret_string& token);


 private:
  class impl;
  vault_client_options options_;
  std::unique_ptr<impl> impl_;
};

// Whether what answers at Vault's address puts a token of its own in place of the
// client's: Vault Proxy (or Vault Agent) with use_auto_auth_token = "force" deletes
// X-Vault-Token and sends its auto-auth token instead (command/agentproxyshared/cache/
// handler.go ProxyHandler), so any password a client gives would get a credential.
// The check sends one auth/token/lookup-self with a random token no Vault issued:
// Vault answers 403; a forcing proxy answers 200 with its own token's lookup.
enum class token_substitution {
  absent,   // Vault refused the made-up token (403, 400 or 404)
  present,  // a 2xx: the made-up token was replaced
  unknown,  // no usable answer (unreachable, sealed, 5xx, timeout)
};
struct token_substitution_check {
  token_substitution verdict = token_substitution::unknown;
  std::string address;  // the Vault address it was made against
  std::string message;  // present: the cause to log and show; unknown: why it could not tell
};
// The check's request, on the client's pool (`done` runs there, exactly once), and
// what its answer means (a 2xx body is wiped); `address` is the one to name in the message.
void request_token_substitution_check(vault_client& client, vault_client::callback<vault_response> done);
[[nodiscard]] token_substitution_check token_substitution_of(vault_result<vault_response>& answer,
                                                             std::string_view address);
// Both, on the calling thread (never an I/O thread).
[[nodiscard]] token_substitution_check check_token_substitution_blocking(vault_client& client,
                                                                         std::string_view address);

// Pure parts (vault_json.cpp), exposed for unit tests and the fuzz targets.
namespace detail {

[[nodiscard]] vault_error make_vault_error(vault_error_kind kind, int status, std::string message,
                                           std::string_view address, std::string_view request);

// Vault's errors[] joined with "; ", each entry with Go multierror formatting
// ("1 error occurred:\n\t* permission denied\n\n") reduced to its items.
[[nodiscard]] std::string condense_vault_errors(const std::vector<std::string>& errors);
[[nodiscard]] std::string condense_vault_error(std::string_view text);

// The error for a non-2xx HTTP answer: kind from the status (and "Vault is sealed"),
// refusal from the body's errors[] as Vault wrote them (classify_refusal), message
// from the same errors[] condensed (or the status when it has none).
[[nodiscard]] vault_error error_from_response(int http_status, std::string_view body, std::string_view location,
                                              std::string_view address, std::string_view request);

// What a refusal with this status and these raw errors[] entries says (vault_refusal).
[[nodiscard]] vault_refusal classify_refusal(int http_status, const std::vector<std::string>& errors);

// A Retry-After header's value: delta-seconds ("3", what Vault's rate limit quotas
// send) or an HTTP-date, as seconds from `now` (unix time). 0 when absent, malformed
// or already past; capped at an hour.
[[nodiscard]] std::chrono::seconds parse_retry_after(std::string_view value, std::int64_t now);

// Body parsers for 2xx answers. The body is not modified; callers wipe it.
[[nodiscard]] vault_result<vault_credential> parse_credential(std::string_view body, std::string_view address,
                                                              std::string_view request);
[[nodiscard]] vault_result<vault_lease_renewal> parse_lease_renewal(std::string_view body,
                                                                    std::string_view address,
                                                                    std::string_view request);
[[nodiscard]] vault_result<vault_token_info> parse_lookup_self(std::string_view body, std::string_view address,
                                                               std::string_view request);
[[nodiscard]] vault_result<vault_token_info> parse_renew_self(std::string_view body, std::string_view address,
                                                              std::string_view request);

[[nodiscard]] vault_result<vault_login> parse_login(std::string_view body, std::string_view address,
                                                   std::string_view request);

// `text` as a JSON string literal (RFC 8259 escaping) appended to `out`: request bodies
// that carry secrets are built in a secret_string.
void append_json_string(pgwire::secret_string& out, std::string_view text);

// A login's JSON body, {"k": "v", ...} with the strings escaped (RFC 8259), built in
// a secret_string so the secrets it carries leave no unwiped copy.
[[nodiscard]] pgwire::secret_string login_body(
    std::initializer_list<std::pair<std::string_view, std::string_view>> fields);

// A bounded label for a request path (after /v1/), for metrics: "creds"
// (<mount>/creds/<role>), "renew" (sys/leases/renew), "revoke" (sys/leases/revoke...),
// "lookup-self", "renew-self", "login" (auth/<mount>/login), "health" (sys/health),
// else "other". Never contains a lease id, a role, a mount or a token.
[[nodiscard]] std::string_view endpoint_label(std::string_view path) noexcept;

// Percent-encodes everything but RFC 3986 unreserved characters (and '/' when
// keep_slash).
[[nodiscard]] std::string escape_path(std::string_view segment, bool keep_slash);

}  // namespace detail

}  // namespace vaultwire
