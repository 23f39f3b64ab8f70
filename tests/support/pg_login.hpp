// pg_login: a small PostgreSQL client built from pgwire + OpenSSL. It does what a
// proxy does upstream — SSLRequest, TLS with verify-full, StartupMessage, then
// cleartext / MD5 / SCRAM-SHA-256(-PLUS) authentication up to ReadyForQuery — and
// reports what the server asked for, so tests can assert it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace vwtest {

struct login_options {
  std::string host = "localhost";
  int port = 0;
  std::string server_name;  // for verify-full; defaults to host
  std::string ca_file;
  bool use_tls = true;
  std::string user;
  std::string password;
  std::string database = "defaultdb";
  // SCRAM: use SCRAM-SHA-256-PLUS when the server offers it over TLS.
  bool allow_channel_binding = true;
  // For negative tests: the tls-server-end-point hash to send instead of the real one.
  std::optional<std::vector<std::uint8_t>> channel_binding_override;
};

struct login_result {
  bool ready = false;              // reached ReadyForQuery
  int auth_request = -1;           // first Authentication code other than 0 (3, 5, 10), -1 if none
  std::string sasl_mechanism;      // the mechanism the client chose
  std::vector<std::string> sasl_offered;
  bool tls = false;
  std::string tls_error;           // set when TLS or verification failed
  bool password_sent = false;      // any password / SASL message written
  std::string sqlstate;            // from the server's ErrorResponse
  std::string error;               // server message or client-side failure
  int backend_pid = 0;
  std::vector<std::pair<std::string, std::string>> parameters;
};

// Never throws for protocol or server failures: they are in the result.
login_result pg_login(const login_options& options);

}  // namespace vwtest
