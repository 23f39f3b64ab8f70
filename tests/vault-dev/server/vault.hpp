// vault-dev: the Vault state machine (tokens, policies, mounts, leases) and the
// request handlers. No Asio here: the HTTP layer (http_server.cpp) calls in.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace vd {

struct Request {
  std::string method;  // upper case: GET POST PUT DELETE LIST HEAD ...
  std::string path;    // after /v1/ (or /_dev/), no query, percent-decoded
  std::multimap<std::string, std::string> query;
  std::string raw_query;  // as sent, after '?'

  std::string token;
  std::string ns;  // X-Vault-Namespace, normalized ("" = root)
  std::string body;

  // The connection's TLS state, for the cert auth method: whether the request came over
  // TLS, and the certificate chain the client presented (leaf first, DER; unverified).
  bool tls = false;
  std::vector<std::string> peer_certs_der;
};

struct Response {
  Response() = default;
  Response(int s, std::string b) : status(s), body(std::move(b)) {}

  int status = 200;
  std::string body;  // empty => no body (204)
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers (Location)
  bool drop = false;  // close the connection without answering (a Go handler's panic)
};

// What the HTTP layer must do before (or instead of) handling a /v1 request.
struct Fault {
  int delay_ms = 0;
  int status = 0;      // >0: answer this status with an injected error
  bool reset = false;  // reset the connection mid-response
  std::vector<std::string> errors;  // the errors[] of that answer (empty: the injected-failure text)
  std::vector<std::pair<std::string, std::string>> headers;  // added to that answer (e.g. Retry-After)
};

struct Options {
  std::string root_token;
  // The root token was not named (no --root-token): like `vault server -dev` without
  // -dev-root-token-id, it is the root token initialization makes, with no lease.
  bool root_token_from_init = false;
  int retry_base_ms = 10000;  // revocation retry backoff base (10s * 2^n)
  int retry_max_attempts = 6;
  int db_threads = 64;
  // A standby node (--standby-of): sys/health says so (http/sys_health.go getSysHealth).
  bool standby = false;
};

class Vault {
 public:
  explicit Vault(Options opts);
  ~Vault();
  Vault(const Vault&) = delete;
  Vault& operator=(const Vault&) = delete;

  const std::string& root_token() const;
  // Counts the request and consumes a matching /_dev/fail rule.
  Fault take_fault(const Request& req);
  Response handle_v1(const Request& req);
  Response handle_dev(const Request& req);
  void shutdown();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace vd
