// `vaultwire passwd USER --role ROLE`: reads a password on stdin and prints the users
// file line (config/users_file.hpp) that lets USER log in with it to a listener with
// client_auth = "password". The password never reaches stdout, stderr or argv; only
// its SCRAM-SHA-256 verifier is printed.
#pragma once

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

#include "pgwire/scram_verifier.hpp"
#include "pgwire/secret.hpp"

namespace vaultwire {

struct passwd_options {
  std::string user;
  std::string role;
  std::uint32_t iterations = pgwire::scram_default_iterations;
};

// The longest password read; a longer line is refused rather than cut.
inline constexpr std::size_t passwd_max_len = 4096;

// Reads one password from `fd`: one line, its trailing '\n' stripped (a final line
// without one is taken whole). When `fd` is a terminal, echo is off while it is typed,
// `prompt` goes to `err`, and it is asked twice; otherwise nothing may follow the
// first line. Refused (the message says why, never what was typed): empty, a NUL
// byte, longer than passwd_max_len, more than one line, two entries that differ.
struct password_read {
  std::optional<pgwire::secret_string> password;
  std::string error;
};
[[nodiscard]] password_read read_password(int fd, std::FILE* err, const std::string& prompt);

// The subcommand: exit 0 with the line on `out`; 1 when no password could be read or
// the verifier could not be made; 2 for a user or role the users file cannot hold.
[[nodiscard]] int run_passwd(const passwd_options& o, int in_fd, std::FILE* out, std::FILE* err);

}  // namespace vaultwire
