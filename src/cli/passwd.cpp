// `vaultwire passwd` (passwd.hpp).
#include "cli/passwd.hpp"

#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "config/users_file.hpp"

namespace vaultwire {
namespace {

enum class line_end { newline, eof, too_long, error };

// Reads up to and without the next '\n', a byte at a time so that nothing after the
// line is consumed and no stdio buffer keeps a copy of the password.
line_end read_line(int fd, pgwire::secret_string& line) {
  while (true) {
    char c = 0;
    const ssize_t n = ::read(fd, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return line_end::error;
    if (n == 0) return line_end::eof;
    if (c == '\n') return line_end::newline;
    if (line.size() >= passwd_max_len) return line_end::too_long;
    line.append(c);
  }
}

// Turns echo off on a terminal for its lifetime (ECHONL keeps the newline visible),
// and back on when it ends, as PostgreSQL's simple_prompt does.
class no_echo {
 public:
  explicit no_echo(int fd) : fd_(fd) {
    if (::tcgetattr(fd_, &saved_) != 0) return;
    termios quiet = saved_;
    quiet.c_lflag &= static_cast<tcflag_t>(~ECHO);
    quiet.c_lflag |= ECHONL;
    active_ = ::tcsetattr(fd_, TCSAFLUSH, &quiet) == 0;
  }
  no_echo(const no_echo&) = delete;
  no_echo& operator=(const no_echo&) = delete;
  ~no_echo() {
    if (active_) ::tcsetattr(fd_, TCSAFLUSH, &saved_);
  }
  [[nodiscard]] bool active() const noexcept { return active_; }

 private:
  int fd_;
  termios saved_{};
  bool active_ = false;
};

// One entry: reads a line and checks what every password must satisfy.
password_read read_one(int fd, bool tty) {
  pgwire::secret_string line;
  const line_end end = read_line(fd, line);
  if (end == line_end::error) {
    std::string m = "cannot read stdin: ";
    m += std::strerror(errno);
    return {std::nullopt, std::move(m)};
  }
  if (end == line_end::too_long) {
    std::string m = "the password is longer than ";
    m += std::to_string(passwd_max_len);
    m += " bytes";
    return {std::nullopt, std::move(m)};
  }
  if (end == line_end::eof && tty && line.empty()) return {std::nullopt, "no password given (end of input)"};
  if (line.empty()) return {std::nullopt, "the password is empty"};
  if (line.view().find('\0') != std::string_view::npos) {
    return {std::nullopt, "the password contains a NUL byte, which PostgreSQL clients cannot send"};
  }
  if (!tty && end == line_end::newline) {
    pgwire::secret_string rest;
    const line_end after = read_line(fd, rest);
    if (after != line_end::eof || !rest.empty()) {
      return {std::nullopt, "stdin has more than one line: give the password alone on one line"};
    }
  }
  return {std::move(line), {}};
}

}  // namespace

password_read read_password(int fd, std::FILE* err, const std::string& prompt) {
  if (::isatty(fd) == 0) return read_one(fd, false);
  const no_echo quiet(fd);
  if (!quiet.active()) return {std::nullopt, "cannot turn off echo on the terminal"};
  std::fputs(prompt.c_str(), err);
  std::fflush(err);
  password_read first = read_one(fd, true);
  if (!first.password) return first;
  std::fputs("Enter it again: ", err);
  std::fflush(err);
  password_read again = read_one(fd, true);
  if (!again.password) return again;
  if (again.password->view() != first.password->view()) return {std::nullopt, "the passwords do not match"};
  return first;
}

int run_passwd(const passwd_options& o, int in_fd, std::FILE* out, std::FILE* err) {
  if (!valid_users_file_name(o.user, false)) {
    std::fputs("error: USER cannot be empty or have spaces, control characters or a leading '#'\n", err);
    return 2;
  }
  if (!valid_users_file_name(o.role, true)) {
    std::fputs("error: --role cannot be empty or have '/', spaces, control characters or a leading '#'\n", err);
    return 2;
  }
  std::string prompt = "Password for ";
  prompt += o.user;
  prompt += ": ";
  password_read pw = read_password(in_fd, err, prompt);
  if (!pw.password) {
    std::fprintf(err, "error: %s\n", pw.error.c_str());
    return 1;
  }
  auto verifier = pgwire::make_scram_verifier(*pw.password, o.iterations);
  pw.password->clear();
  if (!verifier) {
    std::fprintf(err, "error: cannot make the SCRAM verifier: %s\n", verifier.error().message().c_str());
    return 1;
  }
  const pgwire::secret_string line = format_users_file_line(o.user, verifier.value(), o.role);
  if (std::fwrite(line.view().data(), 1, line.size(), out) != line.size() || std::fflush(out) != 0) {
    std::fprintf(err, "error: cannot write the line: %s\n", std::strerror(errno));
    return 1;
  }
  return 0;
}

}  // namespace vaultwire
