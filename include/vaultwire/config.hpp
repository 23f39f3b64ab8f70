#pragma once

// vaultwire's configuration: one TOML file, Vault's environment variables where the
// file is silent, command-line flags over both. See DESIGN.md "Configuration" and
// conf/vaultwire.toml, the documented example.
//
// Loading returns plain, validated structs: every default is filled in, every path
// named by the file has been checked to exist and be readable, every cross-reference
// (a listener's route) resolves. Nothing here opens sockets or talks to Vault.
//
// Errors: load_config / parse_config return a config_result that collects EVERY
// problem found, not just the first, so an operator fixes the file in one pass.
// Each error is one line that starts with the full key it concerns, e.g.
//   route.main.hots: unknown key (did you mean "host"?)
//   limits.startup_timeout: invalid duration "10 parsecs"
// Keys inside the [[listener]] array are written listener[0].bind, listener[1].route.
// A flag's error names the flag (--threads: ...); a value that came from the
// environment names the variable as well (vault.address (from VAULT_ADDR): ...).
// This module holds no secrets: the file names files, it never contains tokens.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vaultwire {

// How vaultwire obtains its own Vault token ([vault.auth] method). `none`: it has
// no token of its own (leases are renewed and revoked with the client's token).
enum class vault_auth_method { none, token_file, approle, kubernetes, jwt, cert };
[[nodiscard]] std::string_view to_string(vault_auth_method m) noexcept;

// [vault.auth]: vaultwire logs in to Vault itself. Every file named here is checked
// readable at load and read afresh at each login (secret IDs and service-account
// tokens rotate); none of them is ever logged. With method token_file the path is
// vault_config::token_file ([vault] token_file is the same setting).
struct vault_auth_config {
  vault_auth_method method = vault_auth_method::none;
  // The auth method's mount (no leading or trailing '/'): POST auth/<mount>/login.
  // Default: the method's name, where `vault auth enable <method>` mounts it.
  std::string mount;
  std::optional<std::filesystem::path> role_id_file;    // approle (required)
  std::optional<std::filesystem::path> secret_id_file;  // approle (optional: a role with bind_secret_id = false)
  std::optional<std::string> role;                      // kubernetes (required), jwt (optional: the default_role)
  std::optional<std::filesystem::path> jwt_file;        // kubernetes (default: the service account's token), jwt
  std::optional<std::string> name;                      // cert: the certificate role (default: any that matches)

  // A method that logs in (approle, kubernetes, jwt, cert), as opposed to none or token_file.
  [[nodiscard]] bool logs_in() const noexcept {
    return method != vault_auth_method::none && method != vault_auth_method::token_file;
  }
  bool operator==(const vault_auth_config&) const = default;
};

// Where a kubernetes login reads the service account's token when jwt_file is not
// set (the path Kubernetes mounts it at; Vault Agent's kubernetes method reads it too).
inline constexpr std::string_view kubernetes_service_account_token = "/var/run/secrets/kubernetes.io/serviceaccount/token";

// [vault]: where Vault is and how to reach it, as Vault's own client reads its
// environment (hashicorp/vault api/client.go ReadEnvironment): the file first, then
// the variables named here, then the defaults.
struct vault_config {
  // http(s)://host[:port] (no trailing '/'), or unix:///absolute/path for a Vault
  // Agent or Vault Proxy listener on a unix socket. File, then VAULT_AGENT_ADDR, then
  // VAULT_ADDR; --vault-addr wins over all.
  std::string address;
  std::optional<std::string> namespace_;    // X-Vault-Namespace when set
  // Vault's CA: a PEM bundle (VAULT_CACERT), or a directory whose every file is PEM
  // (VAULT_CAPATH). Either replaces the system store; ca_file wins when both are set.
  // The file naming either of the two silences both variables.
  std::optional<std::filesystem::path> ca_file;
  std::optional<std::filesystem::path> ca_path;
  // A client certificate for Vault listeners that require one: both or neither
  // (VAULT_CLIENT_CERT, VAULT_CLIENT_KEY; the file naming either silences both).
  std::optional<std::filesystem::path> client_cert;
  std::optional<std::filesystem::path> client_key;
  // SNI and the name Vault's certificate is verified against, when it differs from
  // the address's host (VAULT_TLS_SERVER_NAME).
  std::optional<std::string> tls_server_name;
  // VAULT_SKIP_VERIFY set to a true value is refused unless allow_insecure is true;
  // then skip_verify is set and Vault's certificate is not verified.
  bool allow_insecure = false;
  bool skip_verify = false;
  std::string mount = "database";           // database secrets engine mount, no leading/trailing '/'
  std::chrono::milliseconds request_timeout{5000};
  // vaultwire's own token (a file written by Vault Agent or an operator): when set,
  // leases are renewed and revoked with it instead of the client's token. Checked
  // readable at load; the broker re-reads it when its mtime changes. Set also by
  // [vault.auth] method = "token_file".
  std::optional<std::filesystem::path> token_file;
  // [vault.auth]; method token_file when only [vault] token_file is set.
  vault_auth_config auth;
};

// How a listener's clients log in. vault_token: the password is a Vault token, and
// credentials are read with it. peer: clients on the listener's unix socket are
// identified by the kernel (SO_PEERCRED) against [[listener.peer]] rules, send no
// password, and credentials are read with vaultwire's own Vault token ([vault.auth]).
// password: local users of the listener's users_file log in with SCRAM-SHA-256 (and
// -PLUS over TLS); each maps to one Vault role, read with vaultwire's own token too.
enum class client_auth_mode { vault_token, peer, password };
[[nodiscard]] std::string_view to_string(client_auth_mode m) noexcept;

// One `[[listener.peer]]` rule: a local identity (exactly one of uid or gid; a user or
// group name is resolved to it when the file is loaded) and the roles it may ask for.
struct peer_rule {
  std::optional<std::uint32_t> uid;
  std::optional<std::uint32_t> gid;
  std::vector<std::string> roles;  // non-empty, each one of the route's roles
  bool operator==(const peer_rule&) const = default;
};

// One `[[listener]]`: where clients connect.
struct listener_config {
  std::string bind = "127.0.0.1:26257";  // as written (normalised: [v6]:port)
  std::string host = "127.0.0.1";        // IP literal, no brackets
  std::uint16_t port = 26257;
  bool ipv6 = false;
  // Also listen on <unix_socket>/.s.PGSQL.<port>, so `psql -h DIR -p PORT` works.
  std::optional<std::filesystem::path> unix_socket;
  // Client-side TLS: both set or neither (plaintext; SSLRequest answered 'N').
  std::optional<std::filesystem::path> tls_cert;
  std::optional<std::filesystem::path> tls_key;
  std::string route;                     // names a key of config::routes
  bool allow_plaintext_remote = false;
  // A PROXY protocol v2 header precedes every connection (a load balancer in front);
  // the client address comes from it, and a connection without a valid one is refused.
  bool proxy_protocol = false;
  client_auth_mode client_auth = client_auth_mode::vault_token;
  // client_auth = "peer": the rules in file order; the first that matches the
  // connection's uid (or gid) and lists the role admits it.
  std::vector<peer_rule> peer;
  // client_auth = "password": the users file (config/users_file.hpp), resolved against
  // the config file's directory. Read at start and again on SIGHUP.
  std::optional<std::filesystem::path> users_file;

  [[nodiscard]] bool tls() const noexcept { return tls_cert.has_value(); }
};

enum class ssl_mode { verify_full, verify_ca, require, disable };
[[nodiscard]] std::string_view to_string(ssl_mode m) noexcept;

// One `[route.NAME]`: the cluster a listener forwards to.
struct route_config {
  std::string name;
  std::string host;
  std::uint16_t port = 26257;
  std::string server_name;  // SNI and verification name; defaults to host
  std::optional<std::filesystem::path> ca_file;  // cluster CA; else the system store
  ssl_mode sslmode = ssl_mode::verify_full;
  bool allow_insecure_upstream = false;
  std::optional<std::filesystem::path> client_cert;  // both or neither
  std::optional<std::filesystem::path> client_key;
  std::vector<std::string> roles;  // Vault roles clients may ask for; never empty
  std::optional<std::string> options;           // appended to the client's `options`
  std::optional<std::string> database_prefix;   // "<cluster>." for CockroachDB routing
  std::optional<std::string> default_database;  // replaces a missing db or db == user
  // SET ROLE to this after every upstream login and every reset of a reused
  // connection, so session_user is the dynamic user and current_user this role.
  std::optional<std::string> session_role;
  // The most SCRAM iterations a server may ask for (PBKDF2 runs on the worker pool,
  // once per credential thanks to the SCRAM key cache).
  std::uint32_t scram_max_iterations = 1'000'000;
};

// [limits]
struct limits_config {
  std::uint32_t max_client_connections = 10000;
  std::chrono::milliseconds startup_timeout{10000};
  std::chrono::milliseconds upstream_connect_timeout{5000};
  std::chrono::milliseconds tcp_keepalive{60000};  // idle time before probes; at least 1s
  std::optional<std::chrono::milliseconds> client_idle_timeout;  // nullopt: off
  // A spliced session older than this ends with 57P01 at its next idle point (a
  // transaction is never cut). nullopt: off.
  std::optional<std::chrono::milliseconds> max_session_lifetime;
  // Vault role (the client's user name) -> most live sessions for it, counted from
  // the startup packet on; over it, 53300 before Vault is asked. Absent: no cap.
  std::map<std::string, std::uint32_t> max_connections_per_role;
};

// [throttle]: after a failed login (Vault rejected the token, or the server refused
// the credential) the next attempt from the same client address with the same token
// waits base_delay, doubling per consecutive failure up to max_delay; refused with
// 08004 meanwhile, without asking Vault. A success forgets the key.
struct throttle_config {
  std::optional<std::chrono::milliseconds> base_delay = std::chrono::milliseconds{1000};  // nullopt: off
  std::chrono::milliseconds max_delay{60000};

  bool operator==(const throttle_config&) const = default;
};

// What happens to live sessions when their token is found revoked or their lease gone.
enum class on_revoke_policy {
  at_idle,  // end the session at its next idle ReadyForQuery (no transaction cut)
  now,      // end it at once
  ignore,   // let it run
};
[[nodiscard]] std::string_view to_string(on_revoke_policy p) noexcept;

// [credentials]: the lease cache (DESIGN.md "Credentials and leases").
struct credentials_config {
  std::chrono::milliseconds token_recheck{10000};      // lookup-self when the last check is older
  std::chrono::milliseconds negative_cache{2000};      // a rejected token is refused this long without Vault
  std::chrono::milliseconds revoke_idle_after{60000};  // revoke a lease with no sessions this long
  bool revoke_on_shutdown = true;
  on_revoke_policy on_revoke = on_revoke_policy::at_idle;
  // With on_revoke = at_idle: a session still not idle this long after vaultwire
  // learned of the revocation (token revoked, lease gone) ends inside its transaction.
  std::chrono::milliseconds revoke_grace{30000};
  std::chrono::milliseconds expiry_notice{60000};      // NoticeResponse this long before the lease ends
  bool session_may_outlive_lease = false;
  std::chrono::milliseconds token_grace{300000};       // keep the last good recheck while Vault is unreachable
  std::uint32_t max_leases = 1000;                     // live leases; more are refused with 53300

  bool operator==(const credentials_config&) const = default;
};

// [pool]: upstream connection reuse.
struct pool_config {
  bool reuse = true;
  std::string reset_query = "DISCARD ALL";
  std::uint32_t max_idle_per_key = 8;
  std::uint32_t max_idle_total = 256;
  std::chrono::milliseconds idle_timeout{60000};

  bool operator==(const pool_config&) const = default;
};

enum class log_level { trace, debug, info, warn, error, off };
enum class log_format { text, json };
[[nodiscard]] std::string_view to_string(log_level l) noexcept;
[[nodiscard]] std::string_view to_string(log_format f) noexcept;

// [log]
struct log_config {
  log_level level = log_level::info;
  log_format format = log_format::text;
};

// [runtime]
struct runtime_config {
  unsigned threads = 1;  // default: std::thread::hardware_concurrency() (at least 1)
  // After SIGTERM / SIGINT, sessions have this long to finish; the rest get 57P01.
  std::chrono::milliseconds shutdown_grace{30000};
  // false: at start RLIMIT_CORE is set to 0 and the process is made non-dumpable
  // (PR_SET_DUMPABLE 0), so a crash writes no core and other users' processes cannot
  // ptrace it or read its memory. true leaves both as inherited (debugging, gcore).
  bool allow_core_dumps = false;
};

// [admin]: the HTTP listener for /metrics, /healthz, /readyz, /leases.
struct admin_config {
  std::string bind = "127.0.0.1:9187";  // normalised like a listener's
  std::string host = "127.0.0.1";
  std::uint16_t port = 9187;
  bool enabled = true;  // bind = "" turns it off
  // /readyz asks Vault's sys/health before it answers and waits at most this long, then
  // answers 503 naming it (Kubernetes gives a probe 1 s by default).
  std::chrono::milliseconds readiness_timeout{1000};
};

// [audit]: JSON lines, one per session start / end and credential event.
struct audit_config {
  std::optional<std::filesystem::path> file;  // none: no audit log
};

// One `[[fleet.peer]]`: another vaultwire instance of the fleet.
struct fleet_peer {
  std::uint32_t id = 0;  // 0..15, not this instance's
  std::string address;   // "host:port" as written: where the peer accepts forwarded cancels
  std::string host;      // an IP literal (no brackets) or a DNS name
  std::uint16_t port = 0;
  bool operator==(const fleet_peer&) const = default;
};

// [fleet]: several vaultwire instances behind one load balancer. Each key a client
// gets names its instance (4 bits of the cancel secret), and a CancelRequest that
// reaches another instance is forwarded to this one over `bind`.
struct fleet_config {
  bool enabled = false;  // [fleet] is in the file
  std::uint32_t instance_id = 0;  // 0..15
  std::string bind;               // normalised "host:port" / "[v6]:port"
  std::string host;
  std::uint16_t port = 0;
  bool ipv6 = false;
  // Mutual TLS between instances: all three or none (then every address is loopback).
  std::optional<std::filesystem::path> ca_file;
  std::optional<std::filesystem::path> cert_file;
  std::optional<std::filesystem::path> key_file;
  std::vector<fleet_peer> peers;
  [[nodiscard]] bool tls() const noexcept { return cert_file.has_value(); }
  bool operator==(const fleet_config&) const = default;
};

struct config {
  vault_config vault;
  std::vector<listener_config> listeners;      // at least one
  std::map<std::string, route_config> routes;  // by name; at least one
  credentials_config credentials;
  pool_config pool;
  limits_config limits;
  throttle_config throttle;
  log_config log;
  runtime_config runtime;
  admin_config admin;
  audit_config audit;
  fleet_config fleet;
};

// Command-line flags; each set member wins over the file and the environment.
struct config_overrides {
  std::optional<std::string> vault_addr;  // --vault-addr: vault.address
  // --listen: bind of the only [[listener]] (an error when the file has several).
  std::optional<std::string> listen;
  std::optional<std::string> log_level;  // --log-level: log.level
  std::optional<long long> threads;      // --threads: runtime.threads
};

// Looks up an environment variable; nullopt when unset. An empty value counts as
// unset, as the Vault CLI treats it.
using env_lookup = std::function<std::optional<std::string>(std::string_view)>;
// The process environment (std::getenv).
[[nodiscard]] std::optional<std::string> process_env(std::string_view name);

// The outcome of loading. Exactly one of: `value` set and `errors` empty, or `value`
// empty and `errors` non-empty (each a one-line message naming the key).
// `warnings` are things that load but deserve a line at every start (an upstream
// sslmode weaker than verify-full).
struct [[nodiscard]] config_result {
  std::optional<config> value;
  std::vector<std::string> errors;
  std::vector<std::string> warnings;

  [[nodiscard]] bool ok() const noexcept { return value.has_value(); }
  explicit operator bool() const noexcept { return ok(); }
};

// Reads and validates `file`. Relative paths in the file (ca_file, tls_cert, ...)
// are relative to the file's directory.
[[nodiscard]] config_result load_config(const std::filesystem::path& file,
                                        const config_overrides& overrides = {},
                                        const env_lookup& env = process_env);

// Same, from TOML text (tests). Relative paths are relative to `base_dir`, or to the
// working directory when it is empty. `source_name` appears in TOML syntax errors.
[[nodiscard]] config_result parse_config(std::string_view toml_text,
                                         const config_overrides& overrides = {},
                                         const env_lookup& env = process_env,
                                         const std::filesystem::path& base_dir = {},
                                         std::string_view source_name = "<config>");

// "1h30m", "10s", "250ms" -> milliseconds: one or more <whole number><unit> with
// units ms, s, m, h (no spaces, no signs, no fractions); "0" alone is zero.
// nullopt when malformed or longer than a year.
[[nodiscard]] std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);

}  // namespace vaultwire
