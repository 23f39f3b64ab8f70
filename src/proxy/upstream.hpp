// upstream: dial the cluster, TLS with verify-full, and log in with a dynamic
// credential (cleartext, MD5, SCRAM-SHA-256 or SCRAM-SHA-256-PLUS), up to the
// server's ReadyForQuery. Private header of src/ (includes Asio).
#pragma once

#include <pgwire/messages.hpp>
#include <pgwire/secret.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "net/stream.hpp"

namespace vaultwire::detail {

struct upstream_target {
  std::string host;
  std::uint16_t port = 26257;
  std::string server_name;       // SNI and the name verified (defaults to host)
  ssl_ctx tls;                   // a reference held for the connection's life; empty = sslmode disable
  bool verify_name = true;       // verify-full
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::seconds tcp_keepalive{60};
};

struct upstream_login {
  std::string user;                                    // the dynamic user
  const pgwire::secret_string* password = nullptr;     // borrowed for the call
  std::vector<std::pair<std::string, std::string>> parameters;  // everything but user
  // After the server's ReadyForQuery: SET ROLE to it (route.session_role). Its
  // replies are swallowed, their ParameterStatus kept in the handover; the server's
  // ErrorResponse, made FATAL, becomes server_error.
  std::string session_role;
  std::uint32_t scram_max_iterations = 1'000'000;
  // Runs SCRAM's PBKDF2 when the keys are not cached; empty: the caller's thread.
  boost::asio::any_io_executor scram_executor;
};

// Appends the simple Query `SET ROLE "<role>"` (the role quoted as an identifier).
// False when the role cannot be sent (NUL in it).
[[nodiscard]] bool append_set_role_query(std::vector<std::uint8_t>& out, std::string_view role);

// The outcome of a login. On success `conn` is at the server's ReadyForQuery.
struct upstream_session {
  std::unique_ptr<stream> conn;
  std::string peer;                       // "host:port" actually connected
  std::string local_address;              // the local IP of the connection (cancels leave from it)
  pgwire::backend_key_data key;           // the server's cancel key
  std::vector<std::uint8_t> handover;     // ParameterStatus / NoticeResponse bytes, in order
  char ready_status = 'I';                // from ReadyForQuery
  std::string auth_method;                // "SCRAM-SHA-256-PLUS", "md5", ...

  // Failure: the code and a message for the client and the log. When the server
  // itself refused (ErrorResponse), server_error holds its bytes to pass through.
  std::optional<failure> failed;
  std::vector<std::uint8_t> server_error;
  std::string server_sqlstate;
};

// Logs in. SCRAM keys derived for a credential are cached process-wide (bounded;
// keyed by the credential, checked against the server's salt and iteration count),
// so a later login with the same credential skips PBKDF2; the server still sees a
// full SCRAM exchange each time.
boost::asio::awaitable<upstream_session> connect_upstream(upstream_target target, upstream_login login);

// connect_upstream in two steps, so that the first can run while the credential is
// being fetched. open_upstream: the TCP connection and TLS (verify-full), nothing
// sent after the handshake; on failure `failed` is set and `conn` is null.
// log_in_upstream: the login on such a connection (`session.conn` not null).
boost::asio::awaitable<upstream_session> open_upstream(upstream_target target);
boost::asio::awaitable<upstream_session> log_in_upstream(upstream_session session, upstream_target target,
                                                         upstream_login login);

// How many times this process derived SCRAM keys with PBKDF2 (cache misses), for
// metrics and tests.
[[nodiscard]] std::uint64_t scram_keys_derived() noexcept;

// Opens a new connection to `target` and sends a CancelRequest with `key`
// (after SSLRequest + TLS when the target uses TLS), then closes. Errors ignored
// by design: PostgreSQL itself never answers a CancelRequest. `source_address`
// (an IP, or empty for any): the connection is bound to it and only the target's
// addresses of its family are tried.
boost::asio::awaitable<void> send_upstream_cancel(upstream_target target, pgwire::cancel_request key,
                                                  std::string source_address = {});

}  // namespace vaultwire::detail
