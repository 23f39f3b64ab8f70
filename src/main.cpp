// vaultwire: a PostgreSQL wire-protocol proxy that turns a Vault token into a
// short-lived database credential. See DESIGN.md in the project's shared notes.
#include <CLI/CLI.hpp>

#include <cstdio>

#include "vaultwire/version.hpp"

int main(int argc, char** argv) {
  CLI::App app{"vaultwire: Vault dynamic credentials for PostgreSQL and CockroachDB clients"};
  app.require_subcommand(1);
  auto* version_cmd = app.add_subcommand("version", "print the version and exit");
  CLI11_PARSE(app, argc, argv);

  if (*version_cmd) {
    std::printf("%s\n", vaultwire::version_banner().c_str());
    return 0;
  }
  return 0;
}
