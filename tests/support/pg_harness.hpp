// pg_server: a real PostgreSQL 15 with TLS for one test process, driven through
// tests/support/pg-harness (the same script the demo and the Python suites use).
//
// Each instance has its own temporary directory and free loopback port, so test
// processes can run in parallel. The constructor returns once a connection
// succeeds; the destructor stops the server by its pid and removes the directory,
// printing the server log first when it runs during a failure (a thrown REQUIRE).
// A failed start throws std::runtime_error carrying the harness's output (which
// includes the server log).
#pragma once

#include <map>
#include <string>

namespace vwtest {

struct pg_options {
  std::string auth = "scram-sha-256";  // scram-sha-256 | md5 | password | trust | reject
  int max_connections = 100;
  std::string server_cert = "localhost";  // localhost | localhost-rsa | other-host
  bool ssl_only = false;                  // reject non-TLS TCP connections
};

class pg_server {
 public:
  explicit pg_server(const pg_options& options = {});
  ~pg_server();
  pg_server(const pg_server&) = delete;
  pg_server& operator=(const pg_server&) = delete;

  // A value the harness printed, by key without the PGH_ prefix ("PORT", "CA", ...).
  // Throws std::out_of_range for a key it did not print.
  [[nodiscard]] const std::string& get(const std::string& key) const;
  [[nodiscard]] int port() const;
  [[nodiscard]] const std::string& ca_file() const { return get("CA"); }
  [[nodiscard]] const std::string& log_file() const { return get("LOG"); }
  // The server log so far (for failure messages).
  [[nodiscard]] std::string log() const;
  // Runs SQL as the superuser over the Unix socket with psql; returns its stdout
  // (unaligned, tuples only). Throws on failure with psql's stderr.
  std::string psql(const std::string& sql, const std::string& database = "defaultdb") const;

 private:
  std::string root_;  // mkdtemp directory; the harness owns root_/pg
  std::map<std::string, std::string> env_;
};

// Runs a command with /bin/sh, returning exit status and combined output.
struct command_result {
  int status = -1;
  std::string output;
};
command_result run_command(const std::string& command);

// Single-quotes a string for /bin/sh.
std::string shell_quote(const std::string& s);

}  // namespace vwtest
