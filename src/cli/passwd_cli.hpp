// The `vaultwire passwd` subcommand's flags (CLI11). Included by main.cpp only; the
// logic is in passwd.cpp.
#pragma once

#include <CLI/CLI.hpp>

#include "cli/passwd.hpp"
#include "pgwire/scram.hpp"

namespace vaultwire {

inline CLI::App* add_passwd_subcommand(CLI::App& app, passwd_options& o) {
  auto* cmd = app.add_subcommand(
      "passwd", "read a password on stdin and print the users file line (user, SCRAM-SHA-256 verifier, role) "
                "for a listener with client_auth = \"password\"");
  cmd->add_option("USER", o.user, "the user name clients give in their startup packet")->required();
  cmd->add_option("--role", o.role, "the Vault role this user's sessions use")->required();
  cmd->add_option("--iterations", o.iterations, "the SCRAM iteration count (PostgreSQL's default)")
      ->capture_default_str()
      ->check(CLI::Range(std::uint32_t{1}, pgwire::scram_max_iterations_limit));
  cmd->footer(
      "On a terminal the password is read without echo, twice; otherwise it is the one line\n"
      "on stdin (its newline stripped), e.g. from a password manager. Only the verifier is\n"
      "printed: append the line to the users file (mode 0600). Exit status: 0 printed,\n"
      "1 no usable password, 2 bad options.");
  return cmd;
}

}  // namespace vaultwire
