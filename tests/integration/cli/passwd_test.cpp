// `vaultwire passwd` as a user runs it: the real binary (VAULTWIRE_BINARY_DIR/bin/vaultwire)
// with the password on a pipe, and on a pseudo-terminal where echo must be off. The
// printed line must parse as a users file line whose verifier logs the password in
// through scram_client against scram_server, and the password must appear nowhere the
// user or a log could see it: stdout, stderr, or the terminal.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "config/users_file.hpp"
#include "pgwire/scram.hpp"
#include "pgwire/scram_server.hpp"

extern char** environ;

namespace {

using namespace std::chrono_literals;

std::string vaultwire_bin() {
  const char* from_env = std::getenv("VAULTWIRE_BIN");
  return from_env != nullptr && *from_env != '\0' ? from_env : std::string(VAULTWIRE_BINARY_DIR) + "/bin/vaultwire";
}

struct child {
  pid_t pid = -1;
  int in = -1;   // our end of its stdin (a pipe, or the pty master)
  int out = -1;  // its stdout
  int err = -1;  // its stderr
};

// Starts `vaultwire passwd alice --role app`; stdin is `stdin_path` when given (the pty
// slave), else a pipe.
child spawn_passwd(const char* stdin_path = nullptr) {
  int out[2];
  int err[2];
  int in[2] = {-1, -1};
  REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
  REQUIRE(::pipe2(err, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (stdin_path != nullptr) {
    posix_spawn_file_actions_addopen(&fa, 0, stdin_path, O_RDWR | O_NOCTTY, 0);
  } else {
    REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  }
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  const std::string bin = vaultwire_bin();
  std::vector<std::string> args = {bin, "passwd", "alice", "--role", "app"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  child c;
  const int rc = ::posix_spawn(&c.pid, bin.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  REQUIRE(rc == 0);
  ::close(out[1]);
  ::close(err[1]);
  if (in[0] >= 0) ::close(in[0]);
  c.in = in[1];
  c.out = out[0];
  c.err = err[0];
  return c;
}

// Appends what `fd` has within `wait`; false at end of file (or EIO from a pty
// master whose slave is closed).
bool read_some(int fd, std::string& to, std::chrono::milliseconds wait) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, static_cast<int>(wait.count())) <= 0) return true;
  char buf[4096];
  const ssize_t n = ::read(fd, buf, sizeof buf);
  if (n <= 0) return false;
  to.append(buf, static_cast<std::size_t>(n));
  return true;
}

// Reads `fd` until `text` is in `to` (a readiness signal: the child printed it).
void read_until(int fd, std::string& to, std::string_view text) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (to.find(text) == std::string::npos) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    REQUIRE(read_some(fd, to, 100ms));
  }
}

void read_to_end(int fd, std::string& to) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (read_some(fd, to, 100ms)) REQUIRE(std::chrono::steady_clock::now() < deadline);
}

void write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    const ssize_t n = ::write(fd, s.data(), s.size());
    REQUIRE(n > 0);
    s.remove_prefix(static_cast<std::size_t>(n));
  }
}

int wait_exit(pid_t pid) {
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  return WEXITSTATUS(status);
}

bool logs_in(const pgwire::scram_verifier& verifier, std::string_view password) {
  pgwire::scram_server s(verifier.clone());
  pgwire::scram_client c(password);
  if (!s.select_mechanism(c.mechanism())) return false;
  auto first = c.client_first();
  if (!first) return false;
  auto server_first = s.on_client_first(first.value());
  if (!server_first) return false;
  auto final = c.on_server_first(server_first.value());
  if (!final) return false;
  auto server_final = s.on_client_final(final.value().view());
  return server_final && c.on_server_final(server_final.value()) && s.authenticated();
}

// The printed line's verifier logs `password` in, and no other.
void check_line(const std::string& out, std::string_view password) {
  const auto r = vaultwire::parse_users_file(out, "stdout");
  REQUIRE(r.errors == std::vector<std::string>{});
  REQUIRE(r.value->size() == 1);
  const auto& u = r.value->at("alice");
  CHECK(u.role == "app");
  CHECK(logs_in(u.verifier, password));
  CHECK_FALSE(logs_in(u.verifier, std::string(password) + "x"));
}

}  // namespace

TEST_CASE("vaultwire passwd: a password on a pipe", "[cli][passwd]") {
  const std::string password = "Tr0ub4dor&3-unique-canary";
  child c = spawn_passwd();
  write_all(c.in, password + "\n");
  ::close(c.in);
  std::string out;
  std::string err;
  read_to_end(c.out, out);
  read_to_end(c.err, err);
  CHECK(wait_exit(c.pid) == 0);
  ::close(c.out);
  ::close(c.err);
  CHECK(err.empty());
  CHECK(out.find(password) == std::string::npos);
  CHECK(out.find("canary") == std::string::npos);
  REQUIRE(out.starts_with("alice SCRAM-SHA-256$4096:"));
  check_line(out, password);
}

TEST_CASE("vaultwire passwd: an empty password is refused", "[cli][passwd]") {
  child c = spawn_passwd();
  write_all(c.in, "\n");
  ::close(c.in);
  std::string out;
  std::string err;
  read_to_end(c.out, out);
  read_to_end(c.err, err);
  CHECK(wait_exit(c.pid) == 1);
  ::close(c.out);
  ::close(c.err);
  CHECK(out.empty());
  CHECK(err == "error: the password is empty\n");
}

TEST_CASE("vaultwire passwd: on a terminal the password is not echoed and is asked twice", "[cli][passwd]") {
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  REQUIRE(master >= 0);
  REQUIRE(::grantpt(master) == 0);
  REQUIRE(::unlockpt(master) == 0);
  const std::string slave = ::ptsname(master);

  const std::string password = "s3cret-typed-canary";
  child c = spawn_passwd(slave.c_str());
  std::string err;
  std::string screen;  // what the terminal shows: the pty's output
  // Type only after the prompt: the prompt comes once echo is off (typed-ahead
  // input would be flushed with the mode change).
  read_until(c.err, err, "Password for alice: ");
  write_all(master, password + "\n");
  read_until(c.err, err, "Enter it again: ");
  write_all(master, password + "\n");

  std::string out;
  read_to_end(c.out, out);
  read_to_end(c.err, err);
  CHECK(wait_exit(c.pid) == 0);
  read_to_end(master, screen);
  ::close(master);
  ::close(c.out);
  ::close(c.err);

  INFO("terminal output: " << screen);
  CHECK(screen.find("canary") == std::string::npos);  // echo was off
  CHECK(screen.find('\n') != std::string::npos);      // ECHONL: the newline still shows
  CHECK(err == "Password for alice: Enter it again: ");
  CHECK(out.find("canary") == std::string::npos);
  check_line(out, password);
}

TEST_CASE("vaultwire passwd: on a terminal two different entries are refused", "[cli][passwd]") {
  const int master = ::posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  REQUIRE(master >= 0);
  REQUIRE(::grantpt(master) == 0);
  REQUIRE(::unlockpt(master) == 0);
  const std::string slave = ::ptsname(master);

  child c = spawn_passwd(slave.c_str());
  std::string err;
  read_until(c.err, err, "Password for alice: ");
  write_all(master, "first-canary\n");
  read_until(c.err, err, "Enter it again: ");
  write_all(master, "second-canary\n");
  std::string out;
  read_to_end(c.out, out);
  read_to_end(c.err, err);
  CHECK(wait_exit(c.pid) == 1);
  std::string screen;
  read_to_end(master, screen);
  ::close(master);
  ::close(c.out);
  ::close(c.err);
  CHECK(out.empty());
  CHECK(err == "Password for alice: Enter it again: error: the passwords do not match\n");
  CHECK(screen.find("canary") == std::string::npos);
}
