// vault_dev_process: the Vault-compatible dev server (tests/vault-dev) for one test.
//
// The constructor starts VAULTWIRE_BINARY_DIR/bin/vault-dev with
// `--listen 127.0.0.1:0 --root-token <random>` and returns once the process prints
// `vault-dev listening on http://127.0.0.1:PORT root_token=...` (readiness by that
// line, no sleeps). Its stdout and stderr are collected for failure messages. The
// destructor stops it (SIGTERM, then SIGKILL after 10 s) and reaps it.
//
// The HTTP helpers speak plain HTTP/1.1 over loopback (one connection per request,
// no curl): the /_dev/ controls (README in tests/vault-dev) and any /v1/ call for
// test setup. With `tls_cert`/`tls_key` the server speaks HTTPS and these helpers
// cannot be used; use a vault_client with the CA instead.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace vwtest {

struct http_reply {
  int status = 0;
  std::string body;
};

// One HTTP/1.1 request to 127.0.0.1:port with `Connection: close`. `target` is the
// path and query. Throws std::runtime_error when the exchange fails.
http_reply http_request(int port, const std::string& method, const std::string& target, const std::string& body,
                        const std::vector<std::pair<std::string, std::string>>& headers = {});

struct vault_dev_options {
  std::vector<std::string> extra_args{};  // e.g. {"--retry-base-ms", "50"}
  std::string tls_cert{};               // with tls_key: serve HTTPS
  std::string tls_key{};
};

class vault_dev_process {
 public:
  explicit vault_dev_process(const vault_dev_options& options = {});
  ~vault_dev_process();
  vault_dev_process(const vault_dev_process&) = delete;
  vault_dev_process& operator=(const vault_dev_process&) = delete;

  // "http://127.0.0.1:PORT" (or https://...), as printed.
  [[nodiscard]] const std::string& address() const { return address_; }
  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] const std::string& root_token() const { return root_token_; }
  // Everything the process printed so far.
  [[nodiscard]] std::string output() const;

  // POST /_dev/<path> with a JSON body ("seal", "unseal", "fail", "fail/clear",
  // "expire/lease", ...). Throws on a non-2xx answer; returns the body.
  std::string dev_post(const std::string& path, const std::string& json = "{}") const;
  // GET /_dev/<path> ("leases", "tokens", "secrets", "counters", "fail").
  std::string dev_get(const std::string& path) const;
  // A Vault API call: `path` after /v1/. An empty token means the root token.
  http_reply v1(const std::string& method, const std::string& path, const std::string& json = "",
                const std::string& token = "") const;
  // v1() that throws unless the answer is 2xx; returns the body.
  std::string v1_ok(const std::string& method, const std::string& path, const std::string& json = "",
                    const std::string& token = "") const;

  // Stops the server now (idempotent); the destructor calls it.
  void stop();

 private:
  void read_output();

  pid_t pid_ = -1;
  int out_fd_ = -1;
  std::string root_token_;
  std::string address_;
  int port_ = 0;
  std::thread reader_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::string output_;
  bool eof_ = false;
};

class pg_server;

// Test setup against a vault-dev and a pg_server, shared by the C++ integration tests.
// Enables the database engine at database/ and writes the connection config `pg` for
// the harness (TLS verify-full, the harness admin) allowing `allowed_roles`.
void provision_database(const vault_dev_process& vd, const pg_server& pg, const std::string& allowed_roles);
// Writes database/roles/<name> for config `pg` with the statements of DESIGN.md
// "Dynamic users and object ownership" (the harness' owner role app_owner).
void write_owned_role(const vault_dev_process& vd, const std::string& name, const std::string& default_ttl,
                      const std::string& max_ttl);

}  // namespace vwtest
