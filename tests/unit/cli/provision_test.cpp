// The pure parts of `vaultwire provision`: option checks, the connection URL template,
// the role's statements in both dialects (DESIGN.md "Dynamic users and object
// ownership"), the policies, the printed URL and vaultwire.toml, the read-compare step
// (what differs from a GET answer), the dry run's text (no secret in it), and the whole
// --dry-run output of each dialect against a golden file.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "vaultwire/config.hpp"
#include "vaultwire/provision.hpp"

namespace {

namespace vd = vaultwire::detail;

vaultwire::provision_options base() {
  vaultwire::provision_options o;
  o.vault_addr = "http://127.0.0.1:8200";
  o.db_host = "free-tier.example";
  o.db_port = 26257;
  o.sslrootcert = "/etc/vault/root ca.crt";
  o.admin_user = "vault";
  o.admin_password_file = "/run/secrets/admin";
  o.owner_role = "app_owner";
  o.dialect = "postgresql";
  o.policy = "crdb-role-client";
  o.vaultwire_policy = "crdb-role-vaultwire";
  return o;
}

}  // namespace

TEST_CASE("provision: the connection URL is a template with sslmode, CA and options", "[provision]") {
  auto o = base();
  CHECK(vd::templated_connection_url(o) ==
        "postgresql://{{username}}:{{password}}@free-tier.example:26257/defaultdb?sslmode=verify-full"
        "&sslrootcert=/etc/vault/root%20ca.crt");
  o.db_options = "--cluster=lilac-grizzly-684";
  o.db_host = "::1";
  CHECK(vd::templated_connection_url(o) ==
        "postgresql://{{username}}:{{password}}@[::1]:26257/defaultdb?sslmode=verify-full"
        "&sslrootcert=/etc/vault/root%20ca.crt&options=--cluster%3Dlilac-grizzly-684");
  o.connection_url = "postgresql://{{username}}:{{password}}@db/app";
  CHECK(vd::templated_connection_url(o) == o.connection_url);
}

TEST_CASE("provision: the postgresql dialect's statements", "[provision]") {
  auto o = base();
  CHECK(vd::creation_statements(o) ==
        std::vector<std::string>{"CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL "
                                 "'{{expiration}}' IN ROLE app_owner;",
                                 "ALTER ROLE \"{{name}}\" SET ROLE app_owner;", "GRANT \"{{name}}\" TO CURRENT_USER;"});
  CHECK(vd::revocation_statements(o) ==
        std::vector<std::string>{"REASSIGN OWNED BY \"{{name}}\" TO app_owner;", "DROP OWNED BY \"{{name}}\";",
                                 "DROP ROLE IF EXISTS \"{{name}}\";"});
  o.owner_role = "App Owner";
  o.grants = {"ALL ON DATABASE defaultdb"};
  const auto c = vd::creation_statements(o);
  REQUIRE(c.size() == 3);  // the grant is one-time SQL, not a creation statement
  CHECK(c[0].ends_with("IN ROLE \"App Owner\";"));
  const auto once = vd::owner_role_sql(o);
  CHECK(once.find("#   GRANT ALL ON DATABASE defaultdb TO \"App Owner\";\n") != std::string::npos);
  CHECK(once.find("#   ALTER ROLE vault CREATEROLE;\n") != std::string::npos);
  CHECK(once.find("#   GRANT \"App Owner\" TO vault;\n") != std::string::npos);
  CHECK(vd::sql_identifier("a\"b") == "\"a\"\"b\"");
  CHECK(vd::sql_identifier("_x1") == "_x1");
}

// Each cockroachdb statement held against what CockroachDB accepts, with the
// cockroachdb/cockroach source that says so.
TEST_CASE("provision: the cockroachdb dialect's statements are ones CockroachDB accepts", "[provision]") {
  auto o = base();
  o.dialect = "cockroachdb";
  o.grants = {"ALL ON DATABASE defaultdb", "SELECT ON TABLE t"};
  const auto c = vd::creation_statements(o);
  REQUIRE(c.size() == 2);
  for (const auto& s : c) {
    INFO(s);
    // pkg/sql/roleoption/role_option.go: CREATE ROLE takes role options only.
    CHECK(s.find("IN ROLE") == std::string::npos);
    // pkg/sql/alter_role.go processSetOrResetClause: `role` is no per-role default.
    CHECK(s.find("SET ROLE") == std::string::npos);
    // A GRANT on an object is a schema change inside Vault's transaction: none.
    CHECK(s.find(" ON ") == std::string::npos);
  }
  CHECK(c[0] == "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';");
  CHECK(c[1] == "GRANT app_owner TO \"{{name}}\";");
  // pkg/sql/reassign_owned_by.go: the revoking user needs membership in both roles.
  CHECK(vd::revocation_statements(o) ==
        std::vector<std::string>{"REASSIGN OWNED BY \"{{name}}\" TO app_owner;", "DROP OWNED BY \"{{name}}\";",
                                 "DROP ROLE IF EXISTS \"{{name}}\";"});
  const auto once = vd::owner_role_sql(o);
  INFO(once);
  // pkg/sql/privilege/privilege.go: database privileges have no TEMPORARY.
  CHECK(once.find("TEMPORARY") == std::string::npos);
  CHECK(once.find("#   GRANT CONNECT ON DATABASE defaultdb TO app_owner;\n") != std::string::npos);
  CHECK(once.find("#   GRANT ALL ON DATABASE defaultdb TO app_owner;\n") != std::string::npos);
  CHECK(once.find("#   GRANT SELECT ON TABLE t TO app_owner;\n") != std::string::npos);
  // REASSIGN OWNED and granting the owner with ADMIN OPTION: Vault's user is an admin.
  CHECK(once.find("#   GRANT admin TO vault;\n") != std::string::npos);
  CHECK(once.find("CREATEROLE") == std::string::npos);
  CHECK(vd::route_toml(o).find("session_role = \"app_owner\"\n") != std::string::npos);
}

TEST_CASE("provision: the dialect is required and checked", "[provision]") {
  auto o = base();
  o.dialect.clear();
  auto p = vd::validate_provision_options(o);
  REQUIRE(p.size() == 1);
  CHECK(p[0].find("--dialect is required") != std::string::npos);
  o.dialect = "mysql";
  p = vd::validate_provision_options(o);
  REQUIRE(p.size() == 1);
  CHECK(p[0].find("neither cockroachdb nor postgresql") != std::string::npos);
}

TEST_CASE("provision: sslmode require without a CA is called out", "[provision]") {
  auto o = base();
  CHECK(vd::connection_notes(o).empty());
  o.sslmode = "require";
  o.sslrootcert.clear();
  const auto notes = vd::connection_notes(o);
  CHECK(notes.find("verifies\n# neither the cluster's certificate nor its host name") != std::string::npos);
  CHECK(notes.find("system's CA store") != std::string::npos);
  o.route_ca_file = "/etc/vaultwire/cluster-ca.crt";
  CHECK(vd::connection_notes(o).find("system's CA store") == std::string::npos);
}

TEST_CASE("provision: policies are least privilege", "[provision]") {
  auto o = base();
  o.mount = "db/prod";
  o.role = "app";
  const auto client = vd::client_policy_hcl(o);
  CHECK(client.find("path \"db/prod/creds/app\" {\n  capabilities = [\"read\"]\n}") != std::string::npos);
  CHECK(client.find("path \"sys/leases/revoke/db/prod/creds/app/*\" {\n  capabilities = [\"update\"]\n}") !=
        std::string::npos);
  CHECK(client.find("sys/leases/renew") == std::string::npos);
  const auto own = vd::vaultwire_policy_hcl(o);
  // vaultwire's own token revokes with the lease id in the body (Vault Proxy's lease
  // cache acts on that form only): update on sys/leases/revoke itself.
  for (const char* p : {"\"sys/leases/renew\"", "path \"sys/leases/revoke\" {\n  capabilities = [\"update\"]",
                        "\"auth/token/lookup-self\"", "\"auth/token/renew-self\""}) {
    CHECK(own.find(p) != std::string::npos);
  }
  CHECK(own.find("sys/leases/revoke/") == std::string::npos);
  CHECK(own.find("creds/app\" {") == std::string::npos);  // no credentials for vaultwire's token
}

TEST_CASE("provision: the printed URL and vaultwire.toml", "[provision]") {
  auto o = base();
  o.listen = "0.0.0.0:26257";
  o.db_options = "--cluster=x";
  CHECK(vd::client_url(o) == "postgresql://crdb-role:$VAULT_CLIENT_TOKEN@127.0.0.1:26257/defaultdb?sslmode=disable");
  const auto toml = vd::route_toml(o);
  const auto parsed = vaultwire::parse_config(toml + "\n[log]\nlevel = \"info\"\n");
  std::string errors;
  for (const auto& e : parsed.errors) errors += e + "\n";
  INFO(toml << errors);
  // 0.0.0.0 plaintext is refused by vaultwire (allow_plaintext_remote); that is the only error.
  REQUIRE(parsed.errors.size() == 1);
  CHECK(parsed.errors[0].find("allow_plaintext_remote") != std::string::npos);
  o.listen = "127.0.0.1:26257";
  const auto ok = vaultwire::parse_config(vd::route_toml(o));
  REQUIRE(ok.ok());
  REQUIRE(ok.value->routes.size() == 1);
}

TEST_CASE("provision: a GET answer is compared with what would be written", "[provision]") {
  auto o = base();
  const std::string url = vd::templated_connection_url(o);
  const std::string same = R"({"data":{"allowed_roles":["other","crdb-role"],"connection_details":{"connection_url":")" +
                           url + R"(","username":"vault"},"plugin_name":"postgresql-database-plugin",
                           "verify_connection":true}})";
  CHECK(vd::config_differences(same, o).empty());
  const std::string star = R"({"data":{"allowed_roles":["*"],"connection_details":{"connection_url":")" + url +
                           R"(","username":"root"},"plugin_name":"postgresql-database-plugin"}})";
  CHECK(vd::config_differences(star, o) == std::vector<std::string>{"username"});
  const auto all = vd::config_differences(R"({"data":{"allowed_roles":"a,b"}})", o);
  CHECK(all == std::vector<std::string>{"plugin_name", "connection_url", "username", "allowed_roles"});
  CHECK(vd::config_differences("not json", o).size() == 4);

  std::string role = R"({"data":{"db_name":"crdb-config","creation_statements":[)";
  const auto c = vd::creation_statements(o);
  const auto r = vd::revocation_statements(o);
  auto quote = [](const std::string& s) {
    std::string out = "\"";
    for (char ch : s) {
      if (ch == '"' || ch == '\\') out += '\\';
      out += ch;
    }
    return out + "\"";
  };
  for (std::size_t i = 0; i < c.size(); ++i) role += (i ? "," : "") + quote(c[i]);
  role += R"(],"revocation_statements":[)";
  for (std::size_t i = 0; i < r.size(); ++i) role += (i ? "," : "") + quote(r[i]);
  const std::string tail = R"(],"renew_statements":[],"default_ttl":3600,"max_ttl":86400}})";
  CHECK(vd::role_differences(role + tail, o).empty());
  o.default_ttl = "30m";
  o.grants = {"SELECT ON ALL TABLES IN SCHEMA public"};  // one-time SQL: no difference in Vault
  CHECK(vd::role_differences(role + tail, o) == std::vector<std::string>{"default_ttl"});
  o.dialect = "cockroachdb";
  CHECK(vd::role_differences(role + tail, o) == std::vector<std::string>{"creation_statements", "default_ttl"});
}

TEST_CASE("provision: durations and option checks", "[provision]") {
  CHECK(vd::duration_seconds("1h") == 3600);
  CHECK(vd::duration_seconds("90") == 90);
  CHECK(vd::duration_seconds("1h30m") == 5400);
  CHECK_FALSE(vd::duration_seconds("1.5h"));
  CHECK_FALSE(vd::duration_seconds(""));
  CHECK_FALSE(vd::duration_seconds("250ms"));

  auto o = base();
  CHECK(vd::validate_provision_options(o).empty());
  o.owner_role = "x; DROP TABLE t";
  o.grants = {"ALL ON t; DROP ROLE admin"};
  o.max_ttl = "10m";
  o.create_token = true;
  o.sslmode = "verify-everything";
  o.connection_url = "postgresql://vault:pw@db/app";
  o.vault_addr = "vault:8200";
  o.role = "a/b";
  const auto p = vd::validate_provision_options(o);
  std::string all;
  for (const auto& e : p) all += e + "\n";
  INFO(all);
  CHECK(p.size() == 8);
  for (const char* e : {"--owner-role may not contain ';'", "--grant: empty or contains ';'",
                        "--default-ttl is longer than --max-ttl", "--create-token needs --client-token-file",
                        "--sslmode: unknown mode", "--connection-url must contain {{username}} and {{password}}",
                        "must start with http:// or https://", "--role: letters, digits"}) {
    CHECK(all.find(e) != std::string::npos);
  }
}

TEST_CASE("provision: the dry run shows every write and no secret", "[provision]") {
  auto o = base();
  o.create_token = true;
  o.client_token_file = "/tmp/client.token";
  o.vaultwire_token_file = "/tmp/vaultwire.token";
  const auto t = vd::dry_run_text(o);
  for (const char* line : {"\nGET http://127.0.0.1:8200/v1/sys/mounts\n",
                           "\nPOST http://127.0.0.1:8200/v1/sys/mounts/database {",
                           "\nPOST http://127.0.0.1:8200/v1/database/config/crdb-config {",
                           "\nPOST http://127.0.0.1:8200/v1/database/roles/crdb-role {",
                           "\nPUT http://127.0.0.1:8200/v1/sys/policies/acl/crdb-role-client {",
                           "\nPUT http://127.0.0.1:8200/v1/sys/policies/acl/crdb-role-vaultwire {",
                           "-> written to /tmp/vaultwire.token (0600)", "-> /tmp/client.token (0600)"}) {
    INFO(line);
    CHECK(t.find(line) != std::string::npos);
  }
  CHECK(t.find("\"password\":\"<redacted: read from /run/secrets/admin") != std::string::npos);
}

namespace {

// Everything `provision --dry-run` prints for one dialect.
std::string dry_run_output(const std::string& dialect) {
  auto o = base();
  o.dialect = dialect;
  o.grants = {"ALL ON DATABASE defaultdb"};
  o.create_token = true;
  o.client_token_file = "/tmp/client.token";
  o.vaultwire_token_file = "/tmp/vaultwire.token";
  o.dry_run = true;
  std::FILE* out = std::tmpfile();
  std::FILE* err = std::tmpfile();
  REQUIRE(out != nullptr);
  REQUIRE(err != nullptr);
  CHECK(vaultwire::run_provision(o, out, err) == 0);
  std::string text;
  std::rewind(out);
  for (int ch; (ch = std::fgetc(out)) != EOF;) text += static_cast<char>(ch);
  CHECK(std::ftell(err) == 0);
  std::fclose(out);
  std::fclose(err);
  return text;
}

}  // namespace

// VAULTWIRE_UPDATE_GOLDEN=1 rewrites the golden files from today's output.
TEST_CASE("provision: the dry run of each dialect matches its golden file", "[provision]") {
  for (const std::string dialect : {"cockroachdb", "postgresql"}) {
    const std::string path =
        std::string(VAULTWIRE_SOURCE_DIR) + "/tests/unit/cli/golden/provision-dry-run-" + dialect + ".txt";
    const std::string got = dry_run_output(dialect);
    if (std::getenv("VAULTWIRE_UPDATE_GOLDEN") != nullptr) std::ofstream(path, std::ios::binary) << got;
    std::ifstream in(path, std::ios::binary);
    INFO(path);
    REQUIRE(in.good());
    std::stringstream want;
    want << in.rdbuf();
    CHECK(got == want.str());
  }
}

namespace {

std::string all_problems(const vaultwire::provision_options& o) {
  std::string all;
  for (const auto& e : vd::validate_provision_options(o)) all += e + "\n";
  return all;
}

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("provision --vaultwire-auth: each method's required flags and exclusions", "[provision]") {
  auto o = base();
  o.vaultwire_auth = "approle";
  std::string p = all_problems(o);
  INFO(p);
  CHECK(has(p, "--vaultwire-auth approle needs --role-id-file PATH and --secret-id-file PATH"));
  o.role_id_file = o.secret_id_file = "/tmp/x";
  CHECK(has(all_problems(o), "--role-id-file and --secret-id-file must differ"));
  o.secret_id_file = "/tmp/y";
  CHECK(all_problems(o).empty());
  o.vaultwire_token_file = "/tmp/t";
  CHECK(has(all_problems(o), "--vaultwire-auth and --vaultwire-token-file exclude each other"));
  o.vaultwire_token_file.clear();
  o.vaultwire_token_period = "0s";
  CHECK(has(all_problems(o), "--vaultwire-token-period: not a positive duration"));
  o.vaultwire_token_period = "1h";
  o.vaultwire_auth_mount = "token";
  CHECK(has(all_problems(o), "token/ is the token method's mount"));

  auto k = base();
  k.vaultwire_auth = "kubernetes";
  k.role_id_file = "/tmp/r";
  p = all_problems(k);
  CHECK(has(p, "--vaultwire-auth kubernetes needs --kubernetes-host URL"));
  CHECK(has(p, "--role-id-file is used only with --vaultwire-auth approle"));
  k.role_id_file.clear();
  k.kubernetes_host = "https://k8s:6443";
  CHECK(all_problems(k).empty());

  auto j = base();
  j.vaultwire_auth = "jwt";
  p = all_problems(j);
  CHECK(has(p, "needs --jwt-validation-pubkey-file PATH"));
  CHECK(has(p, "needs --vaultwire-jwt-file PATH"));
  CHECK(has(p, "needs --bound-audience or --bound-claim"));
  j.jwt_validation_pubkey_file = "/k.pem";
  j.vaultwire_jwt_file = "/j";
  j.bound_claims = {"team=db", "=x", "noeq"};
  p = all_problems(j);
  CHECK(has(p, "--bound-claim: not key=value: \"=x\""));
  CHECK(has(p, "--bound-claim: not key=value: \"noeq\""));
  j.bound_claims = {"team=db"};
  CHECK(all_problems(j).empty());

  auto c = base();
  c.vaultwire_auth = "cert";
  c.vaultwire_client_cert = "/c.pem";
  p = all_problems(c);
  CHECK(has(p, "needs --vaultwire-client-cert FILE and --vaultwire-client-key FILE"));
  CHECK(has(p, "Vault's address must be https://"));
  c.vaultwire_client_key = "/c.key";
  c.vault_addr = "https://vault:8200";
  CHECK(all_problems(c).empty());

  auto none = base();
  none.kubernetes_host = "https://k8s";
  none.vaultwire_auth_mount = "m";
  p = all_problems(none);
  CHECK(has(p, "--kubernetes-host is used only with --vaultwire-auth kubernetes"));
  CHECK(has(p, "--vaultwire-auth-mount needs --vaultwire-auth"));
}

TEST_CASE("provision --vaultwire-auth: roles, configs and the [vault.auth] table", "[provision]") {
  const auto text = [](const std::string& path) { return "PEM(" + path + ")"; };
  auto o = base();
  o.vaultwire_auth = "approle";
  o.role_id_file = "/run/vw/role-id";
  o.secret_id_file = "/run/vw/secret-id";
  CHECK(vd::auth_role_path(o) == "auth/approle/role/vaultwire");
  CHECK(vd::auth_config_json(o, text).empty());
  CHECK(vd::auth_role_json(o, text) ==
        R"({"bind_secret_id":true,"secret_id_ttl":0,"token_period":3600,"token_policies":["crdb-role-vaultwire"],)"
        R"("token_type":"service"})");
  CHECK(vd::auth_toml(o) ==
        "\n[vault.auth]\nmethod = \"approle\"\nrole_id_file = \"/run/vw/role-id\"\nsecret_id_file = "
        "\"/run/vw/secret-id\"\n");
  const auto t = vd::route_toml(o);
  CHECK(has(t, "mount = \"database\"\n\n[vault.auth]\nmethod = \"approle\"\n"));
  CHECK_FALSE(has(t, "token_file"));

  auto k = base();
  k.vaultwire_auth = "kubernetes";
  k.vaultwire_auth_mount = "k8s/prod";
  k.kubernetes_host = "https://k8s:6443";
  k.kubernetes_pem_keys_file = "/keys.pem";
  k.service_account = "vw";
  k.service_account_namespace = "apps";
  CHECK(vd::auth_config_path(k) == "auth/k8s/prod/config");
  CHECK(vd::auth_config_json(k, text) == R"j({"kubernetes_host":"https://k8s:6443","pem_keys":["PEM(/keys.pem)"]})j");
  CHECK(has(vd::auth_role_json(k, text),
            R"("bound_service_account_names":["vw"],"bound_service_account_namespaces":["apps"])"));
  CHECK(vd::auth_toml(k) == "\n[vault.auth]\nmethod = \"kubernetes\"\nmount = \"k8s/prod\"\nrole = \"vaultwire\"\n");

  auto j = base();
  j.vaultwire_auth = "jwt";
  j.jwt_validation_pubkey_file = "/k.pem";
  j.bound_claims = {"team=db", "env=a=b"};
  j.bound_audience = "vaultwire";
  j.vaultwire_jwt_file = "/run/vw/jwt";
  const auto role = vd::auth_role_json(j, text);
  CHECK(has(role, R"("bound_audiences":["vaultwire"],"bound_claims":{"env":"a=b","team":"db"},"role_type":"jwt")"));
  CHECK(has(role, R"("user_claim":"sub")"));
  CHECK(vd::auth_toml(j) == "\n[vault.auth]\nmethod = \"jwt\"\nrole = \"vaultwire\"\njwt_file = \"/run/vw/jwt\"\n");

  auto c = base();
  c.vaultwire_auth = "cert";
  c.vault_addr = "https://vault:8200";
  c.vaultwire_client_cert = "/vw.crt";
  c.vaultwire_client_key = "/vw.key";
  CHECK(vd::auth_role_path(c) == "auth/cert/certs/vaultwire");
  CHECK(has(vd::auth_role_json(c, text), R"j("certificate":"PEM(/vw.crt)","display_name":"vaultwire")j"));
  CHECK(has(vd::route_toml(c), "client_cert = \"/vw.crt\"\nclient_key = \"/vw.key\"\n"));
  c.vaultwire_client_ca = "/ca.crt";
  CHECK(has(vd::auth_role_json(c, text), R"j("allowed_common_names":["<the common name of /vw.crt>"],)j"
                                         R"j("certificate":"PEM(/ca.crt)")j"));
  CHECK(vd::certificate_common_name("not a certificate").empty());
  CHECK(has(vd::route_toml(c), "[vault.auth]\nmethod = \"cert\"\nname = \"vaultwire\"\n"));
}

TEST_CASE("provision --vaultwire-auth: PEM blocks, GET comparison and the dry run", "[provision]") {
  const std::string a = "-----BEGIN PUBLIC KEY-----\nAAA\n-----END PUBLIC KEY-----\n";
  const std::string b = "-----BEGIN CERTIFICATE-----\nBBB\n-----END CERTIFICATE-----";
  CHECK(vd::pem_blocks("junk\n" + a + "\n" + b) == std::vector<std::string>{a, b + "\n"});

  const std::string want = R"({"token_policies":["p"],"token_period":3600,"certificate":"PEM\n","x":"y"})";
  CHECK(vd::auth_differences(R"({"data":{"token_policies":["p"],"token_period":3600,"certificate":"PEM","x":"y",)"
                             R"("other":1}})",
                             want)
            .empty());
  CHECK(vd::auth_differences(R"({"data":{"token_policies":["p","q"],"token_period":60,"certificate":"PEM"}})",
                             want) == std::vector<std::string>{"token_period", "token_policies", "x"});

  auto o = base();
  o.vaultwire_auth = "approle";
  o.role_id_file = "/run/vw/role-id";
  o.secret_id_file = "/run/vw/secret-id";
  const auto t = vd::dry_run_text(o);
  for (const char* line : {"\nGET http://127.0.0.1:8200/v1/sys/auth\n",
                           "\nPOST http://127.0.0.1:8200/v1/sys/auth/approle {\"description\":\"vaultwire: its own "
                           "login\",\"type\":\"approle\"}\n",
                           "\nPUT http://127.0.0.1:8200/v1/sys/policies/acl/crdb-role-vaultwire {",
                           "\nPOST http://127.0.0.1:8200/v1/auth/approle/role/vaultwire {",
                           "/role-id -> written to /run/vw/role-id (0600)\n",
                           "/secret-id {} -> written to /run/vw/secret-id (0600)"}) {
    INFO(line);
    CHECK(t.find(line) != std::string::npos);
  }
  auto j = base();
  j.vaultwire_auth = "jwt";
  j.jwt_validation_pubkey_file = "/k.pem";
  j.bound_audience = "vw";
  j.vaultwire_jwt_file = "/run/vw/jwt";
  CHECK(has(vd::dry_run_text(j), "POST http://127.0.0.1:8200/v1/auth/jwt/config "
                                 "{\"jwt_validation_pubkeys\":[\"<contents of /k.pem>\"]}\n"));
}
