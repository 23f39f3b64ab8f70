// The pgwire library against a real PostgreSQL 15 over TLS with verify-full: each
// authentication method the proxy must speak upstream, and the refusals that must
// happen before any password leaves the client.
#include <catch2/catch.hpp>

#include "support/pg_harness.hpp"
#include "support/pg_login.hpp"

namespace {

vwtest::login_options options_for(const vwtest::pg_server& pg, const std::string& user_key) {
  vwtest::login_options o;
  o.host = "localhost";
  o.port = pg.port();
  o.ca_file = pg.ca_file();
  o.user = pg.get(user_key + "_USER");
  o.password = pg.get(user_key + "_PASSWORD");
  return o;
}

// The server log line PostgreSQL writes once a login is authenticated.
bool log_says_authenticated(const vwtest::pg_server& pg, const std::string& user, const std::string& method) {
  return pg.log().find("connection authenticated: identity=\"" + user + "\" method=" + method) !=
         std::string::npos;
}

}  // namespace

TEST_CASE("cleartext password login over TLS verify-full", "[integration][pg]") {
  vwtest::pg_server pg({.auth = "password", .ssl_only = true});
  auto r = vwtest::pg_login(options_for(pg, "PLAIN"));
  INFO(r.error << r.tls_error);
  REQUIRE(r.tls);
  REQUIRE(r.auth_request == 3);  // AuthenticationCleartextPassword
  REQUIRE(r.ready);
  REQUIRE(r.backend_pid > 0);
  REQUIRE(log_says_authenticated(pg, "plain_user", "password"));
}

TEST_CASE("MD5 password login over TLS verify-full", "[integration][pg]") {
  vwtest::pg_server pg({.auth = "md5", .ssl_only = true});
  auto r = vwtest::pg_login(options_for(pg, "MD5"));
  INFO(r.error << r.tls_error);
  REQUIRE(r.auth_request == 5);  // AuthenticationMD5Password
  REQUIRE(r.ready);
  REQUIRE(log_says_authenticated(pg, "md5_user", "md5"));
}

TEST_CASE("SCRAM-SHA-256 login without channel binding", "[integration][pg]") {
  vwtest::pg_server pg({.auth = "scram-sha-256", .ssl_only = true});
  auto o = options_for(pg, "SCRAM");
  o.allow_channel_binding = false;
  auto r = vwtest::pg_login(o);
  INFO(r.error << r.tls_error);
  REQUIRE(r.auth_request == 10);  // AuthenticationSASL
  // Over TLS the server offers both; the client chose the plain one.
  REQUIRE(r.sasl_offered == std::vector<std::string>{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"});
  REQUIRE(r.sasl_mechanism == "SCRAM-SHA-256");
  REQUIRE(r.ready);
  REQUIRE(log_says_authenticated(pg, "scram_user", "scram-sha-256"));
}

TEST_CASE("SCRAM-SHA-256-PLUS login with tls-server-end-point binding", "[integration][pg]") {
  auto cert = GENERATE(as<std::string>{}, "localhost", "localhost-rsa");
  vwtest::pg_server pg({.auth = "scram-sha-256", .server_cert = cert, .ssl_only = true});
  auto r = vwtest::pg_login(options_for(pg, "SCRAM"));
  INFO(cert << ": " << r.error << r.tls_error);
  REQUIRE(r.auth_request == 10);
  REQUIRE(r.sasl_mechanism == "SCRAM-SHA-256-PLUS");
  REQUIRE(r.ready);
}

TEST_CASE("SCRAM-SHA-256-PLUS with a wrong certificate hash is rejected by the server", "[integration][pg]") {
  vwtest::pg_server pg({.auth = "scram-sha-256", .ssl_only = true});
  auto o = options_for(pg, "SCRAM");
  o.channel_binding_override = std::vector<std::uint8_t>(32, 0xAB);
  auto r = vwtest::pg_login(o);
  REQUIRE(r.sasl_mechanism == "SCRAM-SHA-256-PLUS");
  REQUIRE_FALSE(r.ready);
  INFO(r.sqlstate << " " << r.error);
  // PostgreSQL reports a failed binding check as invalid_authorization_specification.
  REQUIRE(r.sqlstate == "28000");
  REQUIRE(r.error == "SCRAM channel binding check failed");
}

TEST_CASE("a wrong password gets the server's 28P01", "[integration][pg]") {
  auto method = GENERATE(as<std::string>{}, "scram-sha-256", "md5", "password");
  vwtest::pg_server pg({.auth = method, .ssl_only = true});
  auto o = options_for(pg, method == "md5" ? "MD5" : method == "password" ? "PLAIN" : "SCRAM");
  o.password = "not-the-password";
  auto r = vwtest::pg_login(o);
  INFO(method << ": " << r.error);
  REQUIRE(r.password_sent);
  REQUIRE_FALSE(r.ready);
  REQUIRE(r.sqlstate == "28P01");
  REQUIRE(r.error == "password authentication failed for user \"" + o.user + "\"");
}

TEST_CASE("a certificate for another host name is refused before any password is sent", "[integration][pg]") {
  vwtest::pg_server pg({.auth = "password", .server_cert = "other-host"});
  auto o = options_for(pg, "PLAIN");
  auto r = vwtest::pg_login(o);
  REQUIRE_FALSE(r.tls);
  REQUIRE_FALSE(r.ready);
  REQUIRE_FALSE(r.password_sent);
  INFO(r.tls_error);
  REQUIRE(r.tls_error.find("hostname mismatch") != std::string::npos);
  // The same server verifies when asked for the name its certificate carries.
  o.host = "127.0.0.1";
  o.server_name = "not-this-host.example";
  auto ok = vwtest::pg_login(o);
  INFO(ok.error << ok.tls_error);
  REQUIRE(ok.tls);
  REQUIRE(ok.ready);
}

TEST_CASE("a server certificate from an unknown CA is refused before any password is sent", "[integration][pg]") {
  vwtest::pg_server pg({.auth = "password"});
  auto o = options_for(pg, "PLAIN");
  o.ca_file = pg.get("OTHER_CA");
  auto r = vwtest::pg_login(o);
  REQUIRE_FALSE(r.tls);
  REQUIRE_FALSE(r.password_sent);
  INFO(r.tls_error);
  // The server sends its CA along with its certificate: OpenSSL reports the
  // untrusted root of that chain.
  REQUIRE(r.tls_error == "certificate verify failed: self-signed certificate in certificate chain");
  REQUIRE(pg.log().find("identity=\"plain_user\"") == std::string::npos);
}

TEST_CASE("an IP address is verified against the certificate's IP SAN", "[integration][pg]") {
  vwtest::pg_server pg({.auth = "scram-sha-256", .ssl_only = true});
  auto o = options_for(pg, "SCRAM");
  o.host = "127.0.0.1";
  auto r = vwtest::pg_login(o);
  INFO(r.error << r.tls_error);
  REQUIRE(r.ready);
  REQUIRE(r.sasl_mechanism == "SCRAM-SHA-256-PLUS");
}
