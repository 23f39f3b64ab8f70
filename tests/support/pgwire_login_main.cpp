// pgwire-login: logs in to a PostgreSQL server over TLS (verify-full) with the
// pgwire library and prints what happened. Used by scripts/demo.sh.
// The password comes from an environment variable, never from the command line.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>

#include "support/pg_login.hpp"

int main(int argc, char** argv) {
  CLI::App app{"pgwire-login: a TLS login with vaultwire's protocol library"};
  vwtest::login_options o;
  std::string password_env = "PGPASSWORD";
  app.add_option("--host", o.host, "server host")->required();
  app.add_option("--port", o.port, "server port")->required();
  app.add_option("--ca", o.ca_file, "CA certificate for verify-full")->required();
  app.add_option("--server-name", o.server_name, "name to verify (default: host)");
  app.add_option("--user", o.user, "user name")->required();
  app.add_option("--database", o.database, "database");
  app.add_option("--password-env", password_env, "environment variable holding the password");
  CLI11_PARSE(app, argc, argv);
  const char* pw = std::getenv(password_env.c_str());
  o.password = pw != nullptr ? pw : "";

  vwtest::login_result r = vwtest::pg_login(o);
  static const char* names[] = {"ok", "", "KerberosV5", "CleartextPassword", "", "MD5Password",
                                "", "GSS", "", "SSPI", "SASL"};
  if (!r.tls_error.empty()) {
    std::printf("refused before any password was sent: %s\n", r.tls_error.c_str());
    return 1;
  }
  std::printf("TLS verify-full: ok\n");
  if (r.auth_request >= 0 && r.auth_request <= 10) {
    std::printf("server asked for: Authentication%s (%d)%s%s\n", names[r.auth_request], r.auth_request,
                r.sasl_mechanism.empty() ? "" : ", client chose ", r.sasl_mechanism.c_str());
  }
  if (!r.ready) {
    std::printf("login failed: %s%s%s\n", r.sqlstate.empty() ? "" : r.sqlstate.c_str(),
                r.sqlstate.empty() ? "" : " ", r.error.c_str());
    return 1;
  }
  std::printf("ReadyForQuery: logged in as %s, backend pid %d\n", o.user.c_str(), r.backend_pid);
  for (const auto& [name, value] : r.parameters) {
    if (name == "server_version" || name == "session_authorization") {
      std::printf("  %s = %s\n", name.c_str(), value.c_str());
    }
  }
  return 0;
}
