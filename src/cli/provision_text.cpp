// provision's pure parts (vaultwire/provision.hpp, namespace detail): option checks,
// the SQL, policies and configuration it writes, and the dry-run plan.
#include <algorithm>
#include <set>
#include <sstream>

#include "cli/provision_util.hpp"
#include "vaultwire/config.hpp"

namespace vaultwire {

using namespace provision_util;

namespace detail {

std::optional<long long> duration_seconds(std::string_view text) {
  if (text.empty()) return std::nullopt;
  if (std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (text.size() > 12) return std::nullopt;
    return std::stoll(std::string(text));
  }
  const auto ms = parse_duration(text);
  if (!ms || ms->count() % 1000 != 0) return std::nullopt;
  return ms->count() / 1000;
}

std::vector<std::string> validate_provision_options(const provision_options& o) {
  std::vector<std::string> p;
  if (!o.dry_run && o.vault_addr.empty()) p.push_back("no Vault address: set VAULT_ADDR or --vault-addr");
  if (!o.vault_addr.empty() && o.vault_addr.rfind("http://", 0) != 0 && o.vault_addr.rfind("https://", 0) != 0) {
    p.push_back("the Vault address must start with http:// or https://: " + o.vault_addr);
  }
  if (!valid_name(o.mount)) p.push_back("--mount: not a mount path: \"" + o.mount + "\"");
  for (const auto& [flag, v] : {std::pair<const char*, const std::string&>{"--role", o.role},
                                {"--db-config", o.config_name},
                                {"--policy", o.policy},
                                {"--vaultwire-policy", o.vaultwire_policy}}) {
    if (!v.empty() && (!valid_name(v) || v.find('/') != std::string::npos)) {
      p.push_back(std::string(flag) + ": letters, digits, '-', '_' and '.' only: \"" + v + "\"");
    }
  }
  if (o.role.empty()) p.push_back("--role is required");
  if (o.config_name.empty()) p.push_back("--db-config is required");
  if (o.db_host.empty()) p.push_back("--db-host is required");
  if (o.db_port < 1 || o.db_port > 65535) p.push_back("--db-port: out of range");
  if (o.database.empty()) p.push_back("--database is required");
  if (o.admin_user.empty()) p.push_back("--admin-user is required");
  if (o.owner_role.empty()) p.push_back("--owner-role is required (DESIGN.md: the NOLOGIN role that owns the objects)");
  // No default: a re-run against an existing setup must never switch the SQL it writes.
  if (o.dialect.empty()) {
    p.push_back("--dialect is required: cockroachdb or postgresql (the SQL of the creation statements)");
  } else if (o.dialect != "cockroachdb" && o.dialect != "postgresql") {
    p.push_back("--dialect: \"" + o.dialect + "\" is neither cockroachdb nor postgresql");
  }
  static const std::set<std::string> modes{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"};
  if (!modes.count(o.sslmode)) p.push_back("--sslmode: unknown mode \"" + o.sslmode + "\"");
  if (!modes.count(o.client_sslmode)) p.push_back("--client-sslmode: unknown mode \"" + o.client_sslmode + "\"");
  if (!o.connection_url.empty() && (o.connection_url.find("{{username}}") == std::string::npos ||
                                    o.connection_url.find("{{password}}") == std::string::npos)) {
    p.push_back("--connection-url must contain {{username}} and {{password}} (Vault fills them in)");
  }
  // Vault splits statements on ';' (even inside quotes): none may carry one.
  if (o.owner_role.find(';') != std::string::npos) p.push_back("--owner-role may not contain ';'");
  for (const auto& g : o.grants) {
    if (g.empty() || g.find(';') != std::string::npos) p.push_back("--grant: empty or contains ';': \"" + g + "\"");
  }
  const auto def = duration_seconds(o.default_ttl);
  const auto max = duration_seconds(o.max_ttl);
  if (!def) p.push_back("--default-ttl: not a duration: \"" + o.default_ttl + "\"");
  if (!max) p.push_back("--max-ttl: not a duration: \"" + o.max_ttl + "\"");
  if (def && max && *max != 0 && *max < *def) p.push_back("--default-ttl is longer than --max-ttl");
  if (!o.token_ttl.empty() && !duration_seconds(o.token_ttl)) p.push_back("--token-ttl: not a duration");
  if (!o.vaultwire_token_ttl.empty() && !duration_seconds(o.vaultwire_token_ttl)) {
    p.push_back("--vaultwire-token-ttl: not a duration");
  }
  if (o.create_token && o.client_token_file.empty()) {
    p.push_back("--create-token needs --client-token-file PATH (written 0600), or - to print the token alone on "
                "stdout");
  }
  if (!o.create_token && !o.client_token_file.empty()) p.push_back("--client-token-file needs --create-token");
  if (o.vaultwire_token_file == "-") p.push_back("--vaultwire-token-file must be a file");
  for (auto& a : validate_auth_options(o)) p.push_back(std::move(a));
  return p;
}

std::string sql_identifier(std::string_view name) {
  const bool bare = !name.empty() && (std::islower(static_cast<unsigned char>(name[0])) || name[0] == '_') &&
                    std::all_of(name.begin(), name.end(), [](char c) {
                      return std::islower(static_cast<unsigned char>(c)) ||
                             std::isdigit(static_cast<unsigned char>(c)) || c == '_';
                    });
  if (bare) return std::string(name);
  std::string out = "\"";
  for (const char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string templated_connection_url(const provision_options& o) {
  if (!o.connection_url.empty()) return o.connection_url;
  std::string host = o.db_host;
  if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
  std::string url = "postgresql://{{username}}:{{password}}@" + host + ":" + std::to_string(o.db_port) + "/" +
                    escape_path(o.database, false) + "?sslmode=" + o.sslmode;
  if (!o.sslrootcert.empty()) url += "&sslrootcert=" + escape_path(o.sslrootcert, true);
  if (!o.db_options.empty()) url += "&options=" + escape_path(o.db_options, false);
  return url;
}

// No object GRANT in either dialect: grants are one-time SQL (owner_role_sql).
std::vector<std::string> creation_statements(const provision_options& o) {
  const std::string owner = sql_identifier(o.owner_role);
  const std::string create = "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'";
  if (o.dialect == "cockroachdb") {
    // CockroachDB's CREATE ROLE takes role options only, no IN ROLE
    // (pkg/sql/roleoption/role_option.go), and refuses `role` as a per-role default
    // (pkg/sql/alter_role.go, processSetOrResetClause): membership is a GRANT, and
    // vaultwire's session_role sets the role per session.
    return {create + ";", "GRANT " + owner + " TO \"{{name}}\";"};
  }
  // PostgreSQL: the ALTER ROLE default brings a client's RESET ROLE back to the owner;
  // the GRANT to CURRENT_USER lets a non-superuser Vault user revoke (REASSIGN OWNED and
  // DROP OWNED need the privileges of the dynamic role, ADMIN OPTION does not give them).
  return {create + " IN ROLE " + owner + ";", "ALTER ROLE \"{{name}}\" SET ROLE " + owner + ";",
          "GRANT \"{{name}}\" TO CURRENT_USER;"};
}

std::vector<std::string> revocation_statements(const provision_options& o) {
  const std::string owner = sql_identifier(o.owner_role);
  return {"REASSIGN OWNED BY \"{{name}}\" TO " + owner + ";", "DROP OWNED BY \"{{name}}\";",
          "DROP ROLE IF EXISTS \"{{name}}\";"};
}

std::string client_policy_hcl(const provision_options& o) {
  const std::string creds = o.mount + "/creds/" + o.role;
  return "# vaultwire provision: clients of role " + o.role +
         " read credentials and revoke their leases\n"
         "path " + hcl_string(creds) + " {\n  capabilities = [\"read\"]\n}\n"
         "path " + hcl_string("sys/leases/revoke/" + creds + "/*") + " {\n  capabilities = [\"update\"]\n}\n";
}

// vaultwire revokes with its own token in the body form (PUT sys/leases/revoke with
// the lease id in the body), the one Vault Proxy's lease cache acts on; a policy path
// cannot scope that form to one role.
std::string vaultwire_policy_hcl(const provision_options& o) {
  return "# vaultwire provision: vaultwire's own token renews and revokes the leases of role " + o.role +
         "\n"
         "path \"sys/leases/renew\" {\n  capabilities = [\"update\"]\n}\n"
         "path \"sys/leases/revoke\" {\n  capabilities = [\"update\"]\n}\n"
         "path \"auth/token/lookup-self\" {\n  capabilities = [\"read\"]\n}\n"
         "path \"auth/token/renew-self\" {\n  capabilities = [\"update\"]\n}\n";
}

std::string client_url(const provision_options& o) {
  auto [host, port] = split_host_port(o.listen);
  if (host == "0.0.0.0" || host.empty()) host = "127.0.0.1";
  if (host == "[::]") host = "[::1]";
  return "postgresql://" + escape_path(o.role, false) + ":$VAULT_CLIENT_TOKEN@" + host + ":" + port + "/" +
         escape_path(o.database, false) + "?sslmode=" + o.client_sslmode;
}

std::string route_toml(const provision_options& o) {
  std::string t = "[vault]\naddress = " + toml_string(o.vault_addr.empty() ? "$VAULT_ADDR" : o.vault_addr) + "\n";
  if (!o.vault_namespace.empty()) t += "namespace = " + toml_string(o.vault_namespace) + "\n";
  if (!o.vault_cacert.empty()) t += "ca_file = " + toml_string(o.vault_cacert) + "\n";
  t += "mount = " + toml_string(o.mount) + "\n";
  if (!o.vaultwire_token_file.empty()) {
    std::error_code ec;
    const auto abs = std::filesystem::absolute(o.vaultwire_token_file, ec);
    t += "token_file = " + toml_string(ec ? o.vaultwire_token_file : abs.string()) + "\n";
  }
  if (o.vaultwire_auth == "cert") {
    // The certificate the cert method's login checks is the one of the TLS handshake.
    std::error_code ec;
    const auto cert = std::filesystem::absolute(o.vaultwire_client_cert, ec);
    t += "client_cert = " + toml_string(ec ? o.vaultwire_client_cert : cert.string()) + "\n";
    const auto key = std::filesystem::absolute(o.vaultwire_client_key, ec);
    t += "client_key = " + toml_string(ec ? o.vaultwire_client_key : key.string()) + "\n";
  }
  t += auth_toml(o);
  t += "\n[[listener]]\nbind = " + toml_string(o.listen) + "\nroute = " + toml_string(o.route_name) + "\n";
  t += "\n[route." + o.route_name + "]\nhost = " + toml_string(o.db_host) + "\nport = " + std::to_string(o.db_port) +
       "\n";
  if (!o.route_ca_file.empty()) t += "ca_file = " + toml_string(o.route_ca_file) + "\n";
  t += "roles = [" + toml_string(o.role) + "]\n";
  t += "default_database = " + toml_string(o.database) + "\n";
  if (!o.db_options.empty()) t += "options = " + toml_string(o.db_options) + "\n";
  t += "session_role = " + toml_string(o.owner_role) + "\n";
  return t;
}

std::string owner_role_sql(const provision_options& o) {
  const std::string owner = sql_identifier(o.owner_role);
  const std::string db = sql_identifier(o.database);
  const std::string vault_user = sql_identifier(o.admin_user);
  const bool crdb = o.dialect == "cockroachdb";
  std::string t = "# provision does not connect to the database. Run this once as an admin (" +
                  std::string(crdb ? "cockroach sql" : "psql") + ", database " + o.database + "):\n";
  t += crdb ? "#   CREATE ROLE IF NOT EXISTS " + owner + " WITH NOLOGIN;\n" : "#   CREATE ROLE " + owner + " NOLOGIN;\n";
  // CockroachDB's database privileges have no TEMPORARY (pkg/sql/privilege/privilege.go).
  t += "#   GRANT CONNECT" + std::string(crdb ? "" : ", TEMPORARY") + " ON DATABASE " + db + " TO " + owner + ";\n";
  t += "#   GRANT USAGE, CREATE ON SCHEMA public TO " + owner + ";\n";
  for (const auto& g : o.grants) t += "#   GRANT " + g + " TO " + owner + ";\n";
  if (crdb) {
    // What a client creates after its own RESET ROLE stays usable by the other sessions
    // until revocation hands it to the owner.
    t += "#   ALTER DEFAULT PRIVILEGES FOR ALL ROLES IN SCHEMA public GRANT ALL ON TABLES TO " + owner + ";\n";
    // REASSIGN OWNED needs membership in both roles (pkg/sql/reassign_owned_by.go) and
    // granting the owner to a new user needs ADMIN OPTION on it: the admin role gives both.
    t += "# Vault's connection user creates, grants and drops the dynamic users:\n"
         "#   GRANT admin TO " + vault_user + ";\n";
  } else {
    t += "# Vault's connection user creates the dynamic users in the owner role and drops them\n"
         "# (REASSIGN OWNED needs the privileges of the owner):\n"
         "#   ALTER ROLE " + vault_user + " CREATEROLE;\n"
         "#   GRANT " + owner + " TO " + vault_user + ";\n";
  }
  t += "# Each dynamic user is a member of " + owner + "; vaultwire's route sets session_role = " + o.owner_role +
       ", so\n# what a session creates is owned by " + owner +
       ". At revocation Vault runs REASSIGN OWNED / DROP OWNED / DROP ROLE\n# in database " + o.database + ".\n";
  return t;
}

std::string connection_notes(const provision_options& o) {
  std::string t;
  if (o.connection_url.empty() && o.sslmode == "require" && o.sslrootcert.empty()) {
    t += "# note: --sslmode require without --sslrootcert: Vault's connection is encrypted but verifies\n"
         "# neither the cluster's certificate nor its host name (HCP Vault holds no files of yours;\n"
         "# give the CA as a path only on a self-managed Vault server).\n";
    if (o.route_ca_file.empty()) {
      t += "# vaultwire's route still verifies the cluster (verify-full), against the system's CA store\n"
           "# since no --route-ca-file was given.\n";
    }
  }
  return t;
}

std::vector<std::string> config_differences(std::string_view get_body, const provision_options& o) {
  const json d = data_of(get_body);
  std::vector<std::string> diffs;
  if (str_member(d, "plugin_name") != plugin_name) diffs.emplace_back("plugin_name");
  const json details = d.is_object() && d.contains("connection_details") ? d["connection_details"] : json();
  if (str_member(details, "connection_url") != templated_connection_url(o)) diffs.emplace_back("connection_url");
  if (str_member(details, "username") != o.admin_user) diffs.emplace_back("username");
  const auto allowed = str_list(d.is_object() && d.contains("allowed_roles") ? d["allowed_roles"] : json());
  if (std::find(allowed.begin(), allowed.end(), o.role) == allowed.end() &&
      std::find(allowed.begin(), allowed.end(), "*") == allowed.end()) {
    diffs.emplace_back("allowed_roles");
  }
  if (d.is_object() && d.contains("verify_connection") && d["verify_connection"] == false) {
    diffs.emplace_back("verify_connection");
  }
  return diffs;
}

std::vector<std::string> role_differences(std::string_view get_body, const provision_options& o) {
  const json d = data_of(get_body);
  const json want = role_body(o);
  std::vector<std::string> diffs;
  for (const char* key : {"db_name", "creation_statements", "revocation_statements", "default_ttl", "max_ttl"}) {
    if (!d.is_object() || !d.contains(key) || d[key] != want[key]) diffs.emplace_back(key);
  }
  return diffs;
}

std::string dry_run_text(const provision_options& o) {
  std::string t =
      "# dry run: nothing is sent. A real run reads each object (GET) and sends a write only where\n"
      "# Vault's object differs from this; X-Vault-Token is VAULT_TOKEN (not shown)" +
      std::string(o.vault_namespace.empty() ? "" : ", X-Vault-Namespace: " + o.vault_namespace) + ".\n";
  const std::string base = (o.vault_addr.empty() ? std::string("$VAULT_ADDR") : o.vault_addr) + "/v1/";
  auto req = [&](const std::string& method, const std::string& path, const std::string& body) {
    t += method + " " + base + path + (body.empty() ? "" : " " + body) + "\n";
  };
  req("GET", "sys/mounts", "");
  req("POST", "sys/mounts/" + mount_path(o),
      json{{"type", "database"}, {"description", "vaultwire: dynamic database credentials"}}.dump());
  req("GET", config_path(o), "");
  json cfg{{"plugin_name", plugin_name},
           {"connection_url", templated_connection_url(o)},
           {"username", o.admin_user},
           {"allowed_roles", json::array({o.role})},
           {"verify_connection", true},
           {"password", o.admin_password_file.empty()
                            ? "<not given: needed when the connection is new>"
                            : "<redacted: read from " +
                                  (o.admin_password_file == "-" ? std::string("stdin") : o.admin_password_file) +
                                  " when the connection is new or the admin user changes>"}};
  req("POST", config_path(o), cfg.dump());
  req("GET", role_path(o), "");
  req("POST", role_path(o), role_body(o).dump());
  req("GET", policy_path(o.policy), "");
  req("PUT", policy_path(o.policy), json{{"policy", client_policy_hcl(o)}}.dump());
  if (!o.vaultwire_token_file.empty()) {
    req("GET", policy_path(o.vaultwire_policy), "");
    req("PUT", policy_path(o.vaultwire_policy), json{{"policy", vaultwire_policy_hcl(o)}}.dump());
    req("GET", "auth/token/lookup-self", "(with the token in " + o.vaultwire_token_file + ", if any)");
    req("POST", std::string(token_create_path),
        token_body(o.vaultwire_policy, o.vaultwire_token_ttl, "vaultwire").dump() + " -> written to " +
            o.vaultwire_token_file + " (0600)");
  }
  if (!o.vaultwire_auth.empty()) {
    const std::string mount = auth_mount(o);
    req("GET", policy_path(o.vaultwire_policy), "");
    req("PUT", policy_path(o.vaultwire_policy), json{{"policy", vaultwire_policy_hcl(o)}}.dump());
    req("GET", "sys/auth", "");
    req("POST", "sys/auth/" + escape_path(mount, true),
        json{{"type", o.vaultwire_auth}, {"description", "vaultwire: its own login"}}.dump());
    const auto placeholder = [](const std::string& path) { return "<contents of " + path + ">"; };
    if (const auto cfg = auth_config_json(o, placeholder); !cfg.empty()) {
      req("GET", auth_config_path(o), "");
      req("POST", auth_config_path(o), cfg);
    }
    req("GET", auth_role_path(o), "");
    req("POST", auth_role_path(o), auth_role_json(o, placeholder));
    if (o.vaultwire_auth == "approle") {
      req("GET", auth_role_path(o) + "/role-id", "-> written to " + o.role_id_file + " (0600)");
      req("POST", auth_role_path(o) + "/secret-id/lookup",
          "(with the secret ID in " + o.secret_id_file + ", if any)");
      req("POST", auth_role_path(o) + "/secret-id",
          "{} -> written to " + o.secret_id_file + " (0600), unless the file holds a valid one");
    }
  }
  if (o.create_token) {
    req("POST", std::string(token_create_path),
        token_body(o.policy, o.token_ttl, nullptr).dump() + " -> " +
            (o.client_token_file == "-" ? std::string("stdout") : o.client_token_file + " (0600)"));
  }
  return t;
}

}  // namespace detail

}  // namespace vaultwire
