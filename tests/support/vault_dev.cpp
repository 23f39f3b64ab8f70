#include "support/vault_dev.hpp"

#include <nlohmann/json.hpp>

#include "support/pg_harness.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <random>
#include <stdexcept>

extern char** environ;

namespace vwtest {

namespace {

constexpr auto ready_timeout = std::chrono::seconds(30);
constexpr auto stop_timeout = std::chrono::seconds(10);
constexpr std::string_view ready_prefix = "vault-dev listening on ";

std::string random_root_token() {
  static constexpr char base62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  std::random_device rd;
  std::uniform_int_distribution<int> pick(0, 61);
  std::string t = "hvs.";
  for (int i = 0; i < 24; ++i) t.push_back(base62[pick(rd)]);
  return t;
}

struct fd_guard {
  int fd;
  ~fd_guard() {
    if (fd >= 0) ::close(fd);
  }
};

void write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("send: ") + std::strerror(errno));
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

// Decodes a chunked body (vault-dev sends Content-Length, but be lenient).
std::string dechunk(std::string_view in) {
  std::string out;
  while (true) {
    const auto eol = in.find("\r\n");
    if (eol == std::string_view::npos) break;
    const std::size_t len = std::stoul(std::string(in.substr(0, eol)), nullptr, 16);
    if (len == 0) break;
    in.remove_prefix(eol + 2);
    out.append(in.substr(0, len));
    in.remove_prefix(std::min(in.size(), len + 2));
  }
  return out;
}

}  // namespace

http_reply http_request(int port, const std::string& method, const std::string& target, const std::string& body,
                        const std::vector<std::pair<std::string, std::string>>& headers) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  fd_guard guard{fd};
  timeval tv{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(port));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
    throw std::runtime_error("connect to 127.0.0.1:" + std::to_string(port) + ": " + std::strerror(errno));
  }
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                    "\r\nConnection: close\r\n";
  for (const auto& [k, v] : headers) req += k + ": " + v + "\r\n";
  if (!body.empty()) req += "Content-Type: application/json\r\n";
  req += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  write_all(fd, req);

  std::string raw;
  char buf[16384];
  while (true) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(method + " " + target + ": recv: " + std::strerror(errno));
    }
    raw.append(buf, static_cast<std::size_t>(n));
  }
  const auto head_end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.", 0) != 0 || head_end == std::string::npos) {
    throw std::runtime_error(method + " " + target + ": not an HTTP answer: " + raw.substr(0, 200));
  }
  http_reply r;
  r.status = std::stoi(raw.substr(9, 3));
  std::string head = raw.substr(0, head_end);
  for (char& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  r.body = raw.substr(head_end + 4);
  if (head.find("transfer-encoding: chunked") != std::string::npos) r.body = dechunk(r.body);
  return r;
}

vault_dev_process::vault_dev_process(const vault_dev_options& options) : root_token_(random_root_token()) {
  // VAULT_DEV_BIN: another tree's vault-dev (the TSan tree runs the ASan tree's: the
  // server is a separate process, and building it again costs minutes on 2 cores).
  const char* from_env = std::getenv("VAULT_DEV_BIN");
  const std::string binary =
      from_env != nullptr && *from_env != '\0' ? from_env : std::string(VAULTWIRE_BINARY_DIR) + "/bin/vault-dev";
  std::vector<std::string> args = {binary, "--listen", "127.0.0.1:0", "--root-token", root_token_};
  if (!options.tls_cert.empty()) {
    args.insert(args.end(), {"--tls-cert", options.tls_cert, "--tls-key", options.tls_key});
  }
  args.insert(args.end(), options.extra_args.begin(), options.extra_args.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe2: ") + std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
  posix_spawn_file_actions_adddup2(&actions, fds[1], 2);
  const int rc = ::posix_spawn(&pid_, binary.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[1]);
  if (rc != 0) {
    ::close(fds[0]);
    throw std::runtime_error("cannot start " + binary + ": " + std::strerror(rc));
  }
  out_fd_ = fds[0];
  reader_ = std::thread([this] { read_output(); });

  std::string line;
  {
    std::unique_lock lock(mutex_);
    const bool ready = changed_.wait_for(lock, ready_timeout, [&] {
      const auto at = output_.find(ready_prefix);
      return eof_ || (at != std::string::npos && output_.find('\n', at) != std::string::npos);
    });
    const auto at = output_.find(ready_prefix);
    if (ready && at != std::string::npos) line = output_.substr(at, output_.find('\n', at) - at);
  }
  // "vault-dev listening on http://127.0.0.1:PORT root_token=TOKEN"
  const auto url_start = ready_prefix.size();
  const auto space = line.find(' ', url_start);
  if (line.empty() || space == std::string::npos) {
    const std::string out = output();
    stop();
    throw std::runtime_error("vault-dev did not report readiness:\n" + out);
  }
  address_ = line.substr(url_start, space - url_start);
  port_ = std::stoi(address_.substr(address_.rfind(':') + 1));
  if (line.substr(space + 1) != "root_token=" + root_token_) {
    stop();
    throw std::runtime_error("vault-dev reported another root token");
  }
}

vault_dev_process::~vault_dev_process() { stop(); }

void vault_dev_process::read_output() {
  char buf[4096];
  while (true) {
    const ssize_t n = ::read(out_fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    std::lock_guard lock(mutex_);
    if (n <= 0) {
      eof_ = true;
      changed_.notify_all();
      return;
    }
    output_.append(buf, static_cast<std::size_t>(n));
    changed_.notify_all();
  }
}

std::string vault_dev_process::output() const {
  std::lock_guard lock(mutex_);
  return output_;
}

void vault_dev_process::stop() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    bool exited = false;
    {
      std::unique_lock lock(mutex_);
      exited = changed_.wait_for(lock, stop_timeout, [&] { return eof_; });
    }
    if (!exited) ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }
  if (reader_.joinable()) reader_.join();
  if (out_fd_ >= 0) {
    ::close(out_fd_);
    out_fd_ = -1;
  }
}

std::string vault_dev_process::dev_post(const std::string& path, const std::string& json) const {
  auto r = http_request(port_, "POST", "/_dev/" + path, json);
  if (r.status < 200 || r.status >= 300) {
    throw std::runtime_error("POST /_dev/" + path + " -> " + std::to_string(r.status) + " " + r.body);
  }
  return r.body;
}

std::string vault_dev_process::dev_get(const std::string& path) const {
  auto r = http_request(port_, "GET", "/_dev/" + path, "");
  if (r.status < 200 || r.status >= 300) {
    throw std::runtime_error("GET /_dev/" + path + " -> " + std::to_string(r.status) + " " + r.body);
  }
  return r.body;
}

http_reply vault_dev_process::v1(const std::string& method, const std::string& path, const std::string& json,
                                 const std::string& token) const {
  return http_request(port_, method, "/v1/" + path, json,
                      {{"X-Vault-Token", token.empty() ? root_token_ : token}, {"X-Vault-Request", "true"}});
}

std::string vault_dev_process::v1_ok(const std::string& method, const std::string& path, const std::string& json,
                                     const std::string& token) const {
  auto r = v1(method, path, json, token);
  if (r.status < 200 || r.status >= 300) {
    throw std::runtime_error(method + " /v1/" + path + " -> " + std::to_string(r.status) + " " + r.body);
  }
  return r.body;
}

void provision_database(const vault_dev_process& vd, const pg_server& pg, const std::string& allowed_roles) {
  using json = nlohmann::json;
  vd.v1_ok("POST", "sys/mounts/database", json{{"type", "database"}}.dump());
  const std::string url = "postgresql://{{username}}:{{password}}@" + pg.get("HOST") + ":" + pg.get("PORT") +
                          "/defaultdb?sslmode=verify-full&sslrootcert=" + pg.get("CA");
  vd.v1_ok("POST", "database/config/pg",
           json{{"plugin_name", "postgresql-database-plugin"},
                {"allowed_roles", allowed_roles},
                {"connection_url", url},
                {"username", pg.get("ADMIN_USER")},
                {"password", pg.get("ADMIN_PASSWORD")}}
               .dump());
}

void write_owned_role(const vault_dev_process& vd, const std::string& name, const std::string& default_ttl,
                      const std::string& max_ttl) {
  using json = nlohmann::json;
  static constexpr const char* creation =
      "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE app_owner; "
      "ALTER ROLE \"{{name}}\" SET ROLE app_owner;";
  static constexpr const char* revocation =
      "REASSIGN OWNED BY \"{{name}}\" TO app_owner; DROP OWNED BY \"{{name}}\"; DROP ROLE IF EXISTS \"{{name}}\";";
  vd.v1_ok("POST", "database/roles/" + name,
           json{{"db_name", "pg"},
                {"creation_statements", creation},
                {"revocation_statements", revocation},
                {"default_ttl", default_ttl},
                {"max_ttl", max_ttl}}
               .dump());
}

}  // namespace vwtest
