// credential_broker: the lease cache of DESIGN.md "Credentials and leases".
//
// A credential (a Vault lease on the database secrets engine) belongs to the token
// that obtained it. The cache key is (SHA-256 of the token, namespace, mount, role,
// route): a credential is never served to a request that presented another token.
// The token itself is kept only as a secret_string (for rechecks, renewals and
// revocation with the client's token); maps are keyed by its digest.
//
// What the broker does:
// - acquire(): a cached credential while its remaining TTL is above the floor
//   (25 % of the lease duration, clamped to 5-60 s); otherwise one Vault request per
//   key however many acquires miss at once (single flight: every waiter gets the
//   same credential, or the same error).
// - A token Vault rejected (403/400/404) is refused again without a Vault call for
//   [credentials] negative_cache. A 403 that is Vault's ACL denial (vault_error::
//   policy_denied(): the multierror "permission denied", not the bare one nor "invalid
//   token") says only that the token's policy lacks this role: it is refused with
//   broker_error_kind::role_denied (28000), remembered for (token, namespace, mount,
//   role) only, and the token's lookup-self (when its last check is older than
//   token_recheck) decides whether the token itself is bad; only then is it refused for
//   every role.
// - A 429 with Retry-After: that role (namespace, mount, role) gets no creds request
//   until then, whatever the token; its clients get 08001 saying when to retry.
// - A new token's first creds request and its first lookup-self go to Vault
//   together; its first credential is handed out once both have answered (its
//   sessions are named by accessor from the start). A lookup that finds the token
//   rejected refuses that credential too (28P01); Vault revokes the lease with the
//   token, and the broker revokes it when idle like any other.
// - Token recheck: a cache hit whose token was last checked more than token_recheck
//   ago waits for auth/token/lookup-self first (single flight per token; but see
//   stale-while-revalidate below). 403 → the token is refused, its cached leases
//   are dropped and their sessions get lease_event::token_revoked. Vault unreachable (not a rejection) → the last good
//   check is trusted for token_grace, then the request fails with 08001.
//   The maintenance pass also rechecks tokens that have live sessions on the same
//   schedule, so sessions learn about a revoked token without a new connection.
// - Stale-while-revalidate: a cache hit whose check is stale does NOT wait when the
//   token's last good check is within token_grace and either (a) a recheck of that
//   token is already in flight, or (b) Vault is not known healthy (the circuit
//   breaker is open, or the last broker Vault call failed as "unreachable"). It is
//   served at once and the recheck runs in the background. Only the hit that finds
//   the check stale while Vault is healthy and nothing is in flight waits (bounded by
//   request_timeout). When the first "unreachable" failure is recorded, acquires
//   already waiting for a recheck whose token is within grace are served at once.
//   Correctness: with Vault healthy a revoked token is refused by the first stale
//   hit (it waits for the 403); hits admitted while that recheck was in flight (a few
//   milliseconds) are on leases whose sessions then get lease_event::token_revoked
//   (replayed by subscribe() if it comes later). So a revoked token opens no
//   connection more than token_recheck + one lookup after its revocation, and no
//   such session outlives the recheck. A Vault that freezes (connections accepted,
//   no answer) costs at most one waiting hit per token, once, up to request_timeout:
//   after the first failure nothing waits, and after breaker_threshold failures
//   rechecks stop calling Vault until a probe succeeds.
// - Circuit breaker (a Vault outage). Every broker Vault call
//   (creds, lookup-self, renew, revoke, vaultwire's own token's login, lookup-self and
//   renew-self) reports to
//   one breaker. Outages are vault_error_kind unreachable, timeout, sealed, and
//   server_error with HTTP 502, 503 or 504; any other answer (success, 403/400/404,
//   a 500 from one role's backend, a 429 from a quota, a redirect, a bad body) is that
//   request's own error: Vault answered, and the count resets.
//   After breaker_threshold consecutive unreachable failures the breaker opens
//   (logged once at warn; closing is logged once at info):
//   * a cold miss (would call read_credentials) fails at once, without a Vault call,
//     with broker_error_kind::vault, SQLSTATE 08001 and the message "Vault at <addr>
//     is unreachable (N consecutive failures; last: <Vault's text>); retrying in Xs";
//   * a token recheck does not call Vault: it takes the unreachable path (the last
//     good check is trusted for token_grace), so cache hits cost no added latency;
//   * a cached credential below its reuse floor but with more than
//     outage_reuse_floor left is still served (a cold miss would only fail);
//   * renewals, idle revocations and own-token upkeep (logins included) are skipped
//     and retried when
//     the breaker lets calls through again (a skipped idle revocation keeps its lease
//     cached and live: nothing is forgotten). revoke_all() always calls Vault.
//   Half-open: breaker_initial_backoff after opening, exactly one real Vault call is
//   let through as the probe: whichever call comes next (a recheck, renewal,
//   revocation or cold miss; joiners of a probing fetch wait for it), and maintain()
//   issues one itself (a lookup-self of a token it holds) when nothing else did. A
//   probe that Vault answers closes the breaker and resets the count; an unreachable
//   probe re-opens it with the backoff doubled, up to breaker_max_backoff. Any other
//   call Vault answers while open also closes it. Backoff runs on options.clock.
// - Each successful acquire counts one session on the lease; the returned handle's
//   release() (or destructor) uncounts it. A lease with no session for
//   revoke_idle_after is revoked: with vaultwire's own token when it holds one
//   ([vault] token_file, re-read when its mtime changes, or a [vault.auth] login),
//   else with the client's token. A 403 on revoke is logged once, counted, and the
//   lease is left to its TTL; a bad-token refusal (vault_refusal::bad_token) of a
//   call made with a login's token also drops that token and logs in again.
// - Leases with sessions are renewed at about two thirds of their duration
//   (jittered), with the same token choice; when Vault stops extending them (max TTL)
//   sessions get lease_event::expiring once the end is within expiry_notice
//   (unless session_may_outlive_lease), and lease_event::expired at the end.
//   A renewal answered with Vault's lease-gone text ("lease not found", "lease
//   expired", irrevocable; vault_refusal::lease_gone) gives lease_event::lease_gone;
//   one that says the lease cannot be extended ("lease is not renewable", "past the
//   max TTL"; lease_final) stops renewing it, so its sessions hear expiring, then
//   expired at its TTL. Any other failure (Vault answers every renewal error with 400,
//   a database outage included) is retried with a doubling backoff while the lease's
//   TTL lasts, counted in renewal_retries and logged.
// - A lease read with vaultwire's own login token (client_auth = "peer") ends with that
//   token: Vault revokes a token's leases when the token expires. Once the token's end
//   is final (own_token::final_end: a batch or non-renewable token, a renew-self that
//   granted less than asked or failed; such a token is replaced by a new login, never
//   renewed again) the lease is treated as ending then if that is sooner than its TTL,
//   by the same rules as a lease at its max TTL: the cache stops serving it at the
//   reuse floor (taken from the token's TTL when that is shorter than the lease's),
//   its sessions hear expiring within expiry_notice of the end and expired at it, and
//   expires_at() says so. New sessions meanwhile read with the next token (a new login
//   planned to come before the floor: own_token.hpp); their key differs, since the
//   key holds the token's digest. A token_file's token is not tracked this way:
//   whoever writes the file replaces it.
// - With a token_file, vaultwire's own token is looked up when the file (re)appears
//   and renewed with renew-self at about two thirds of its TTL (when renewable).
//   With a [vault.auth] login method (approle, kubernetes, jwt, cert) maintain() logs
//   in, renews or logs in again, and retries failed logins with a backoff
//   (own_token.hpp has the rules); own_token_problem() says why no valid token is held.
// - max_leases: a miss that would create a lease beyond the budget is refused with
//   broker_error_kind::lease_budget (SQLSTATE 53300); leases being fetched count.
// - invalidate() / refetch(): the "upstream answered 28P01 for a cached credential"
//   rule: the credential is no longer served; refetch() also releases the caller's
//   handle and acquires once more (which fetches a fresh one).
// - revoke_all(): shutdown; revokes every lease unless revoke_on_shutdown = false,
//   and tells live sessions lease_event::shutdown.
//
// Threads and callbacks:
// - All public member functions are thread-safe.
// - acquire()'s callback runs exactly once: on the calling thread before acquire()
//   returns when the answer is known at once (a cache hit with a fresh token check,
//   the negative cache, the budget, shutdown), otherwise on the thread that completed
//   the Vault call (a vault_client pool thread; in unit tests, wherever the fake
//   completes). It must not block and must not throw; a coroutine posts back to its
//   own executor from it (see the wiring notes in broker.cpp).
// - Event callbacks (credential_lease::subscribe) run on a vault_client pool thread or
//   on the broker's maintenance thread (or inside subscribe() for a terminal event
//   the lease already had), never under the broker's lock; the same rules apply. A callback may call release() on its own handle.
// - No callback is ever invoked while the broker's internal mutex is held, so
//   callbacks may call back into the broker.
// - Time comes from `options.clock` (steady); the maintenance work (idle revoke,
//   renewals, recheck of live tokens, expiry events) is done by maintain(), which the
//   broker's own thread calls every `tick` when start_maintenance_thread is set.
//   Unit tests leave the thread off, move a fake clock and call maintain().
//
// Logging names leases by lease id and tokens by accessor (or, before the first
// lookup-self, by the first 8 hex digits of the token's SHA-256); never a token or a
// password.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/digest.hpp"
#include "pgwire/secret.hpp"
#include "vaultwire/config.hpp"
#include "vaultwire/errc.hpp"
#include "vault/vault_client.hpp"

namespace vaultwire {

// The Vault calls the broker makes: a vault_client (vault_calls_for) in the proxy,
// fakes in unit tests. Each must invoke its callback exactly once, on any thread,
// possibly before returning.
struct vault_calls {
  std::function<void(std::string mount, std::string role, pgwire::secret_string token,
                     vault_client::callback<vault_credential> done)>
      read_credentials;
  std::function<void(pgwire::secret_string token, vault_client::callback<vault_token_info> done)> lookup_self;
  std::function<void(std::string lease_id, std::chrono::seconds increment, pgwire::secret_string token,
                     vault_client::callback<vault_lease_renewal> done)>
      renew_lease;
  std::function<void(std::string lease_id, pgwire::secret_string token, revoke_form form,
                     vault_client::callback<void> done)>
      revoke_lease;
  // Only used with vaultwire's own token (token_file, or a login's), to keep it alive.
  std::function<void(pgwire::secret_string token, std::chrono::seconds increment,
                     vault_client::callback<vault_token_info> done)>
      renew_self;
  // Only used with a [vault.auth] login method: POST auth/<mount>/login with `body`.
  std::function<void(std::string mount, pgwire::secret_string body, vault_client::callback<vault_login> done)>
      login;
};

// The calls of a vault_client, which must outlive the broker.
[[nodiscard]] vault_calls vault_calls_for(vault_client& client);

using broker_clock = std::chrono::steady_clock;

// The circuit breaker's constants (see the header comment; DESIGN.md has no key).
inline constexpr unsigned breaker_threshold = 5;  // consecutive unreachable failures that open it
inline constexpr std::chrono::seconds breaker_initial_backoff{1};  // open → first probe
inline constexpr std::chrono::seconds breaker_max_backoff{30};     // doubling stops here
// While the breaker is open a cached credential is served down to this much TTL left.
inline constexpr std::chrono::seconds outage_reuse_floor{5};

// A credential's life for the audit log: issued, renewed, revoked. Never a secret.
struct credential_audit_event {
  enum class kind { issue, renew, revoke } what = kind::issue;
  std::string lease_id;
  std::string role;
  std::string db_user;
  std::string token_accessor;      // empty before the first lookup-self
  std::string token_display_name;
  std::string entity_id;
  std::string result;              // "ok", or the failure ("denied", "failed", "gone")
  std::string reason;              // revoke: "idle", "shutdown", "token revoked"; renew failures: Vault's text
};

struct credential_broker_options {
  credentials_config credentials{};
  // Called for each issue, renewal and revocation (on a Vault or maintenance thread,
  // never under the broker's lock). Must not block for long or throw.
  std::function<void(const credential_audit_event&)> on_audit{};
  std::optional<std::filesystem::path> token_file{};  // [vault] token_file
  // [vault.auth]: with a login method (auth.logs_in()) vaultwire logs in itself, and
  // token_file is not used.
  vault_auth_config auth{};
  std::function<broker_clock::time_point()> clock{};  // default: steady_clock::now
  std::function<double()> jitter{};  // in [0, 1); default: a PRNG. Renewal at (0.6 + 0.1 * jitter) of the TTL
  bool start_maintenance_thread = true;
  std::chrono::milliseconds tick{200};  // maintenance period of the thread
};

// One acquire: what the client presented and where it goes.
struct credential_request {
  pgwire::secret_string token;
  // token_digest(token), when the caller has it already (a session hashes its token
  // once, for the throttle and the broker); computed from `token` when empty.
  std::string token_hash;
  // Non-empty: the cache key holds this in place of the token's hash. Sessions of local
  // identities (peer, password listeners) read with vaultwire's own token, which a new
  // login replaces: keyed by the login's stable identity (method, mount, role), every
  // session of a role shares one lease across those tokens. The lease still belongs
  // to the token that read it (rechecks, revocation, its end: lease_entry.hpp).
  std::string identity;
  std::string vault_namespace;  // "" = none; part of the key
  std::string mount;
  std::string role;
  std::string route;
};

enum class broker_error_kind {
  vault,           // Vault refused or failed: see `vault` (28P01 or 08001)
  token_rejected,  // the negative cache: Vault rejected this token moments ago (28P01)
  role_denied,     // Vault's policy for this (valid) token denies the role, now or moments ago (28000)
  token_unverified,  // recheck failed (Vault unreachable) past token_grace (08001)
  lease_budget,    // max_leases live leases (53300)
  shutting_down,   // revoke_all() has run (57P01)
};

[[nodiscard]] std::string_view to_string(broker_error_kind kind) noexcept;

struct broker_error {
  broker_error_kind kind = broker_error_kind::vault;
  vault_error vault;  // the Vault failure (also for token_rejected / token_unverified)
  std::string message;  // for the client; never contains a secret

  // The proxy's code for it (errc), which gives the client's SQLSTATE.
  [[nodiscard]] errc code() const noexcept;
  [[nodiscard]] std::string_view sqlstate() const noexcept { return sqlstate_for(code()); }
  [[nodiscard]] std::string to_client_message() const { return message; }
};

// What happens to a lease that sessions should know about.
enum class lease_event {
  token_revoked,  // a recheck found the token revoked or expired (403)
  lease_gone,     // Vault no longer knows the lease (renew: "lease not found", "lease expired")
  expiring,       // cannot be renewed past max TTL; ends within expiry_notice
  expired,        // the lease's TTL is over: Vault drops the user now
  shutdown,       // revoke_all()
};

[[nodiscard]] std::string_view to_string(lease_event e) noexcept;

class credential_broker;
namespace detail {
struct broker_state;
struct lease_entry;
}  // namespace detail

// One session's hold on a cached credential. Move-only; release() or destruction
// uncounts the session (once). The credential's fields stay readable until then.
class credential_lease {
 public:
  credential_lease() noexcept = default;
  credential_lease(credential_lease&&) noexcept;
  credential_lease& operator=(credential_lease&&) noexcept;
  credential_lease(const credential_lease&) = delete;
  credential_lease& operator=(const credential_lease&) = delete;
  ~credential_lease();

  [[nodiscard]] explicit operator bool() const noexcept { return entry_ != nullptr; }
  [[nodiscard]] const std::string& lease_id() const;
  [[nodiscard]] const std::string& username() const;
  [[nodiscard]] const pgwire::secret_string& password() const;
  // When Vault drops the credential unless it is renewed (moves with renewals), or
  // when the token that read it ends if that is sooner and final (vaultwire's own
  // login token that will be replaced, not renewed: Vault revokes its leases with it).
  [[nodiscard]] broker_clock::time_point expires_at() const;
  // True when expires_at() is the end of the token that read the credential (vaultwire's
  // own login token, replaced rather than renewed), not the lease's own max TTL.
  [[nodiscard]] bool ends_with_token() const;
  // True when this acquire was served from the cache (no Vault request of its own).
  [[nodiscard]] bool from_cache() const noexcept { return from_cache_; }
  // How logs name the token that owns this credential: "accessor <a>" once
  // lookup-self has answered, else "token sha256:<first 8 hex digits>". Never the token.
  [[nodiscard]] std::string token_name() const;
  // Who the token is, once lookup-self has answered (else empty strings). Never the token.
  struct identity {
    std::string accessor;
    std::string display_name;
    std::string entity_id;
  };
  [[nodiscard]] identity token_identity() const;

  // Registers this session's event callback (replacing an earlier one). A terminal
  // event (token_revoked, lease_gone, expired, shutdown) that the lease already had
  // is delivered at once, inside subscribe(), on the calling thread (not under the
  // broker's lock): a handle served while a recheck was in flight must not miss the
  // token_revoked that recheck finds. `expiring` is not replayed; check expires_at().
  void subscribe(std::function<void(lease_event)> callback);
  void release() noexcept;

 private:
  friend class credential_broker;
  friend struct detail::broker_state;
  std::shared_ptr<detail::broker_state> state_;
  std::shared_ptr<detail::lease_entry> entry_;
  std::uint64_t session_id_ = 0;
  bool from_cache_ = false;
};

template <class T>
using broker_result = boost::outcome_v2::basic_result<T, broker_error, boost::outcome_v2::policy::terminate>;

// Counters for logs, metrics and tests.
struct broker_stats {
  std::uint64_t acquires = 0;
  std::uint64_t cache_hits = 0;
  std::uint64_t vault_fetches = 0;       // read_credentials calls made
  std::uint64_t single_flight_joins = 0;  // misses that joined a fetch in flight
  std::uint64_t negative_cache_hits = 0;
  std::uint64_t budget_refusals = 0;
  std::uint64_t token_rechecks = 0;       // lookup-self calls made
  std::uint64_t rechecks_in_grace = 0;    // recheck failures covered by token_grace
  std::uint64_t tokens_revoked = 0;       // rechecks answered 403
  std::uint64_t renewals = 0;
  std::uint64_t renewal_failures = 0;     // every failed renewal (the four below and 403s)
  std::uint64_t renewal_retries = 0;      // transient failures, retried while the TTL lasts
  std::uint64_t renewals_gone = 0;        // Vault said the lease is gone: sessions ended
  std::uint64_t renewals_final = 0;       // Vault said it cannot be extended: runs to its TTL
  std::uint64_t renewal_denied = 0;       // 403: runs to its TTL
  std::uint64_t revokes = 0;              // revoke calls that succeeded
  std::uint64_t revoke_denied = 0;        // 403 on revoke: left to the TTL
  std::uint64_t revoke_gone = 0;          // Vault no longer had the lease
  std::uint64_t revoke_failures = 0;      // other revoke failures (retried)
  std::uint64_t role_denials = 0;         // creds answered with Vault's ACL denial (28000)
  std::uint64_t role_negative_hits = 0;   // refused by the (token, role) negative cache
  std::uint64_t quota_holds = 0;          // refused without a Vault call during a role's Retry-After
  std::uint64_t own_token_renewals = 0;   // renew-self of vaultwire's own token
  std::uint64_t own_token_failures = 0;   // its lookup / renew-self failures
  std::string_view own_login_method;      // "approle", ...: a [vault.auth] login method; "" without one
  std::uint64_t own_logins_ok = 0;        // logins that gave a token
  std::uint64_t own_logins_denied = 0;    // logins Vault refused (400, 403, 404)
  std::uint64_t own_logins_failed = 0;    // other failed logins (unreachable, 5xx, a file unreadable, ...)
  std::uint64_t stale_hits = 0;           // hits served while their recheck was pending/failing (SWR)
  std::uint64_t vault_outages = 0;        // calls that failed as an outage (timeout, 502-504, sealed, ...)
  std::uint64_t breaker_opens = 0;        // closed → open transitions
  std::uint64_t breaker_closes = 0;       // open → closed transitions
  std::uint64_t breaker_probes = 0;       // calls let through while open
  std::uint64_t breaker_probe_failures = 0;  // probes that failed (backoff doubled)
  std::uint64_t fast_failures = 0;        // cold misses refused at once while open (08001)
  std::uint64_t breaker_skips = 0;        // rechecks, renewals, revokes not sent while open
  std::uint64_t outage_hits = 0;          // hits below the reuse floor served while open
  bool breaker_open = false;              // now
  std::uint64_t consecutive_vault_failures = 0;  // now
  std::size_t live_leases = 0;            // held by the broker (budget)
  std::size_t cached_leases = 0;          // servable to new sessions
  std::size_t sessions = 0;               // handles not released
};

// One lease the broker holds, for the admin /leases listing. No secrets: the token
// is named by its accessor (once lookup-self has answered) or a digest prefix.
struct lease_info {
  std::string lease_id;
  std::string role;
  std::string mount;
  std::chrono::seconds ttl_left{0};  // until Vault drops the credential (or its token ends); 0 when past
  std::chrono::seconds duration{0};  // the current lease duration (moves with renewals)
  bool renewable = false;
  bool cached = false;     // servable to new sessions
  bool at_max_ttl = false;  // Vault stopped extending it
  bool revoke_denied = false;  // left to its TTL
  std::size_t sessions = 0;  // sessions and pooled upstream connections holding it
  std::string token_accessor;  // "" until lookup-self has answered
  std::string token_sha256_prefix;  // first 8 hex digits of the token's SHA-256
};

class credential_broker {
 public:
  using acquire_callback = std::function<void(broker_result<credential_lease>)>;

  credential_broker(vault_calls vault, credential_broker_options options);
  // Stops the maintenance thread. Does not revoke (call revoke_all() first); leases
  // left behind end at their TTL. Handles may outlive the broker (release is a no-op
  // bookkeeping step then).
  ~credential_broker();
  credential_broker(const credential_broker&) = delete;
  credential_broker& operator=(const credential_broker&) = delete;

  // True when this call sent a creds request to Vault (it did not join one already
  // out, and the answer was not known at once): the caller may prepare meanwhile.
  bool acquire(credential_request request, acquire_callback done);
  // Waits for acquire's callback (tests, CLI; never on an I/O thread).
  [[nodiscard]] broker_result<credential_lease> acquire_blocking(credential_request request);

  // The upstream refused this credential (28P01): stop serving it. The lease is
  // revoked when its last session is released (after revoke_idle_after).
  void invalidate(const credential_lease& lease);
  // DESIGN.md's rule for an upstream 28P01 on a cached credential, in one call:
  // invalidate(refused), release it, and acquire once more for `request` (a miss:
  // another session may still hold the refused lease, but it is no longer served).
  void refetch(credential_lease& refused, credential_request request, acquire_callback done);

  // Idle revoke, renewals, rechecks of live tokens, expiry events, negative-cache
  // cleanup, all at the clock's now. Returns at once (Vault calls complete later).
  void maintain();

  // Shutdown: no more acquires; every session gets lease_event::shutdown; unless
  // revoke_on_shutdown = false every live lease is revoked. Waits up to `wait` for
  // the revocations; returns how many succeeded.
  std::size_t revoke_all(std::chrono::milliseconds wait = std::chrono::seconds(10));

  [[nodiscard]] broker_stats stats() const;
  // Empty while vaultwire holds a valid token of its own, or when it has no login
  // method; else why it holds none (the last login's failure), for /readyz. Never a
  // secret.
  [[nodiscard]] std::string own_token_problem() const;
  // A copy of vaultwire's own token valid at the broker's clock's now (own_token::read),
  // for sessions that read credentials with it (client_auth = "peer"); empty when none
  // is held or there is no own token. Thread-safe; never under the broker's lock (a
  // token_file is read here).
  [[nodiscard]] pgwire::secret_string own_token() const;
  // Every lease held (live), ordered by lease id.
  [[nodiscard]] std::vector<lease_info> leases() const;

  // The floor: 25 % of the lease duration, clamped to [5 s, 60 s]. A cached
  // credential is served while expires_at - now > floor.
  [[nodiscard]] static std::chrono::milliseconds reuse_floor(std::chrono::seconds lease_duration) noexcept;
  // Hex SHA-256 of the token (the cache key's first part).
  [[nodiscard]] static std::string token_digest(const pgwire::secret_string& token);
  [[nodiscard]] static std::string token_digest(const detail::sha256_digest& token_sha256);

 private:
  std::shared_ptr<detail::broker_state> state_;
};

}  // namespace vaultwire
