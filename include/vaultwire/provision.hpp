// provision: `vaultwire provision`, phase 1 of the CockroachDB + Vault dynamic
// secrets tutorial (/work/shared/reference/), done once by an operator over Vault's
// HTTP API (VAULT_ADDR, VAULT_TOKEN or ~/.vault-token, VAULT_NAMESPACE,
// VAULT_CACERT):
//
//   mount    sys/mounts/<mount>                 the database secrets engine
//   config   <mount>/config/<config>            postgresql-database-plugin, templated
//                                               connection_url, admin user and password
//   role     <mount>/roles/<role>               DESIGN.md "Dynamic users and object
//                                               ownership", in the --dialect's SQL
//                                               (cockroachdb or postgresql): membership
//                                               in <owner>; REASSIGN OWNED / DROP OWNED /
//                                               DROP ROLE, so Vault really drops the user
//   policy   sys/policies/acl/<policy>          read <mount>/creds/<role>; update
//                                               sys/leases/revoke/<mount>/creds/<role>/*
//   vaultwire policy + token (--vaultwire-token-file): renew/revoke those leases,
//                                               lookup-self / renew-self
//   or vaultwire's own login (--vaultwire-auth approle|kubernetes|jwt|cert), with
//   that policy: the auth method at sys/auth/<mount>, its config, a role (periodic
//   service tokens, so vaultwire renews its token without end), and for approle the
//   role ID and a secret ID in 0600 files; the report prints the [vault.auth] table
//   client token (--create-token)
//
// Idempotent: every object is read first and written only when it differs from what
// provision would write (the step then reports "unchanged"); a second run with the
// same flags sends only reads, unless a token is asked for. --dry-run sends nothing.
//
// provision talks to Vault only, never to the database: the owner role, its grants and
// the rights of Vault's connection user are one-time SQL the report prints for the
// administrator; the creation statements grant no object privilege (a GRANT per
// credential is a schema change inside Vault's transaction on CockroachDB and fails
// with "tuple concurrently updated" under concurrent creates on PostgreSQL). The
// statements run in the database of the connection URL (REASSIGN OWNED / DROP OWNED
// act per database).
//
// Secrets: the admin password is read from a file or stdin (never argv) into a
// secret_string and sent only in the config write (never in a dry-run, a report or
// an error). Minted tokens go to 0600 files (or, for the client token with
// --client-token-file -, alone on stdout while the report goes to stderr).
#pragma once

#include <chrono>
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace vaultwire {

struct provision_options {
  // Vault (flags win over the environment; see provision_options_from_env).
  std::string vault_addr;
  std::string vault_namespace;
  std::string vault_cacert;
  std::chrono::milliseconds request_timeout{30000};  // a config write verifies the DB connection

  // Objects in Vault.
  std::string mount = "database";
  std::string config_name = "crdb-config";
  std::string role = "crdb-role";
  std::string policy;            // default: <role>-client
  std::string vaultwire_policy;  // default: <role>-vaultwire

  // The connection (Vault -> cluster), as the admin user.
  std::string db_host;
  int db_port = 26257;
  std::string database = "defaultdb";
  std::string sslmode = "verify-full";
  std::string sslrootcert;      // a path on the Vault server
  std::string db_options;       // e.g. "--cluster=lilac-grizzly-684" (URL and route)
  std::string connection_url;   // overrides the URL built from the fields above
  std::string admin_user;
  std::string admin_password_file;  // a path, or "-" for stdin; read only when needed
  bool write_password = false;      // write the config (with the password) even if unchanged

  // The role.
  std::string dialect;               // required: "cockroachdb" or "postgresql"
  std::string owner_role;            // required: the NOLOGIN role that owns the objects
  std::vector<std::string> grants;   // "ALL ON DATABASE defaultdb": one-time GRANT ... TO <owner>
  std::string default_ttl = "1h";
  std::string max_ttl = "24h";

  // Tokens.
  bool create_token = false;
  std::string client_token_file;     // PATH (0600) or "-" (stdout); required by create_token
  std::string token_ttl;             // client token TTL; empty = Vault's default
  std::string vaultwire_token_file;  // PATH (0600): vaultwire's own token
  std::string vaultwire_token_ttl;   // empty = Vault's default

  // vaultwire logs in itself (instead of --vaultwire-token-file): "" or approle,
  // kubernetes, jwt, cert.
  std::string vaultwire_auth;
  std::string vaultwire_auth_mount;            // default: the method's name
  std::string vaultwire_auth_role = "vaultwire";  // role (certs/NAME for cert)
  std::string vaultwire_token_period = "1h";   // token_period of the login tokens
  std::string role_id_file;                    // approle: written 0600
  std::string secret_id_file;                  // approle: written 0600
  std::string kubernetes_host;                 // kubernetes (required)
  std::string kubernetes_ca_file;              // kubernetes: kubernetes_ca_cert
  std::string kubernetes_pem_keys_file;        // kubernetes: pem_keys (vault-dev needs them)
  std::string service_account = "vaultwire";   // kubernetes: bound_service_account_names
  std::string service_account_namespace = "default";  // bound_service_account_namespaces
  std::string jwt_validation_pubkey_file;      // jwt (required): jwt_validation_pubkeys
  std::vector<std::string> bound_claims;       // jwt: "key=value"
  std::string bound_audience;                  // jwt: bound_audiences
  std::string user_claim = "sub";              // jwt
  std::string vaultwire_jwt_file;              // [vault.auth] jwt_file (jwt: required)
  std::string vaultwire_client_cert;           // cert: the certificate vaultwire presents
  std::string vaultwire_client_key;            // cert: its key (a path, only printed)
  std::string vaultwire_client_ca;             // cert: trust this CA (and the certificate's CN) instead

  // What the report prints for vaultwire.
  std::string listen = "127.0.0.1:26257";
  std::string route_name = "main";
  std::string route_ca_file;  // the cluster CA for vaultwire; default: sslrootcert
  std::string client_sslmode = "disable";

  bool dry_run = false;
};

// Fills vault_addr / vault_namespace / vault_cacert from VAULT_ADDR / VAULT_NAMESPACE /
// VAULT_CACERT where they are empty.
void provision_options_from_env(provision_options& o);

// Runs provision. The report goes to `out` (stdout), diagnostics to `err`. Returns the
// exit status: 0 done, 1 a step failed (the message names the step, the request and
// Vault's text), 2 bad options.
[[nodiscard]] int run_provision(provision_options o, std::FILE* out, std::FILE* err);

// Pure parts, exposed for unit tests.
namespace detail {

// Problems with the options (missing or malformed values); empty when usable.
[[nodiscard]] std::vector<std::string> validate_provision_options(const provision_options& o);

// An SQL identifier as written in statements: bare when it is a plain lowercase
// identifier (app_owner), else double-quoted with '"' doubled.
[[nodiscard]] std::string sql_identifier(std::string_view name);

// postgresql://{{username}}:{{password}}@host:port/db?sslmode=..&sslrootcert=..&options=..
// (or o.connection_url when given).
[[nodiscard]] std::string templated_connection_url(const provision_options& o);

[[nodiscard]] std::vector<std::string> creation_statements(const provision_options& o);
[[nodiscard]] std::vector<std::string> revocation_statements(const provision_options& o);

[[nodiscard]] std::string client_policy_hcl(const provision_options& o);
[[nodiscard]] std::string vaultwire_policy_hcl(const provision_options& o);

// The URL a client gives psql / cockroach sql; the token is the shell variable
// $VAULT_CLIENT_TOKEN, never a real token.
[[nodiscard]] std::string client_url(const provision_options& o);
// A vaultwire.toml ([vault], [[listener]], [route.NAME] with session_role = the owner)
// for this role.
[[nodiscard]] std::string route_toml(const provision_options& o);
// The SQL run once by the database admin, in the dialect's terms: the owner role, its
// grants (--grant) and default privileges, and what Vault's connection user needs to
// create and revoke dynamic users.
[[nodiscard]] std::string owner_role_sql(const provision_options& o);
// Notes on what the chosen connection settings leave unverified; empty when none.
[[nodiscard]] std::string connection_notes(const provision_options& o);

// Differences between a GET answer's body and what provision would write, as the
// names of the differing fields ("connection_url", "allowed_roles", ...). Empty =
// unchanged. `allowed_roles` differs when it allows neither the role nor "*".
[[nodiscard]] std::vector<std::string> config_differences(std::string_view get_body, const provision_options& o);
[[nodiscard]] std::vector<std::string> role_differences(std::string_view get_body, const provision_options& o);

// --vaultwire-auth: the auth method's objects. `file_text` gives a file's contents
// (the dry run passes placeholders). The config body is null for approle and cert.
using file_text_fn = std::function<std::string(const std::string& path)>;
[[nodiscard]] std::string auth_mount(const provision_options& o);
[[nodiscard]] std::string auth_role_path(const provision_options& o);
[[nodiscard]] std::string auth_config_path(const provision_options& o);
[[nodiscard]] std::string auth_config_json(const provision_options& o, file_text_fn text);
[[nodiscard]] std::string auth_role_json(const provision_options& o, file_text_fn text);
// The keys of `want` (a JSON object) whose value in a GET answer's data differs.
[[nodiscard]] std::vector<std::string> auth_differences(std::string_view get_body, std::string_view want);
// The subject CN of a PEM certificate, "" when it has none or does not parse.
[[nodiscard]] std::string certificate_common_name(std::string_view pem);
// The PEM blocks of a file's text, each with its trailing newline.
[[nodiscard]] std::vector<std::string> pem_blocks(std::string_view text);
// The [vault.auth] table vaultwire needs to log in with what provision wrote (for cert,
// route_toml adds [vault] client_cert and client_key).
[[nodiscard]] std::string auth_toml(const provision_options& o);
// The --vaultwire-auth flags' problems (part of validate_provision_options).
[[nodiscard]] std::vector<std::string> validate_auth_options(const provision_options& o);

// What --dry-run prints: every request a first run would send (the password and
// tokens redacted).
[[nodiscard]] std::string dry_run_text(const provision_options& o);

// Seconds of a "1h" / "90s" / "3600" duration, nullopt when malformed.
[[nodiscard]] std::optional<long long> duration_seconds(std::string_view text);

}  // namespace detail

}  // namespace vaultwire
