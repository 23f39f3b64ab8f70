// vaultwire: a PostgreSQL wire-protocol proxy that turns a Vault token into a
// short-lived database credential. See DESIGN.md in the project's shared notes.
#include <CLI/CLI.hpp>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

#include "cli/passwd_cli.hpp"
#include "cli/provision_cli.hpp"
#include "core/secure_memory.hpp"
#include "vaultwire/config.hpp"
#include "vaultwire/server.hpp"
#include "vaultwire/version.hpp"

namespace {

// Tokens and database passwords live in this process's memory while they are in use.
// Unless allowed, make sure no core file carries them: RLIMIT_CORE 0 (no core from a
// crash) and not dumpable (also: no ptrace and no /proc/<pid>/mem for other users'
// processes; /proc/<pid>/ turns root-owned). Call before anything holds a secret.
void restrict_core_dumps(bool allow) {
  if (allow) return;
  const rlimit none{0, 0};
  if (setrlimit(RLIMIT_CORE, &none) != 0)
    std::fprintf(stderr, "warning: setrlimit(RLIMIT_CORE, 0): %s\n", std::strerror(errno));
#if !defined(__SANITIZE_ADDRESS__)
  // Not under ASan: LeakSanitizer ptrace()s the process from a helper outside its
  // thread group, which a non-dumpable process refuses to non-root users (ASan turns
  // core dumps off itself).
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
    std::fprintf(stderr, "warning: prctl(PR_SET_DUMPABLE, 0): %s\n", std::strerror(errno));
#endif
}

// The flags that override the configuration file (and Vault's environment
// variables); shared by every subcommand that loads a configuration.
void add_config_flags(CLI::App& cmd, vaultwire::config_overrides& o) {
  cmd.add_option("--vault-addr", o.vault_addr, "Vault address (overrides vault.address, VAULT_AGENT_ADDR, VAULT_ADDR)");
  cmd.add_option("--listen", o.listen,
                 "host:port of the only [[listener]], e.g. 127.0.0.1:26257 or [::1]:26257");
  cmd.add_option("--log-level", o.log_level, "trace, debug, info, warn, error or off");
  cmd.add_option("--threads", o.threads, "number of I/O threads");
}

// `vaultwire check-config FILE`: validates without starting. Exit 0 when valid.
int check_config(const std::string& file, const vaultwire::config_overrides& o) {
  const auto r = vaultwire::load_config(file, o);
  for (const auto& w : r.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  if (!r.ok()) {
    for (const auto& e : r.errors) std::fprintf(stderr, "error: %s\n", e.c_str());
    std::fprintf(stderr, "%s: configuration is not valid (%zu error%s)\n", file.c_str(),
                 r.errors.size(), r.errors.size() == 1 ? "" : "s");
    return 1;
  }
  const auto listeners = r.value->listeners.size();
  const auto routes = r.value->routes.size();
  std::printf("configuration OK: %zu listener%s, %zu route%s\n", listeners,
              listeners == 1 ? "" : "s", routes, routes == 1 ? "" : "s");
  return 0;
}

// `vaultwire run --config FILE`: serves until SIGINT / SIGTERM.
int run(const std::string& file, const vaultwire::config_overrides& o) {
  const auto r = vaultwire::load_config(file, o);
  for (const auto& w : r.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  if (!r.ok()) {
    for (const auto& e : r.errors) std::fprintf(stderr, "error: %s\n", e.c_str());
    return 1;
  }
  restrict_core_dumps(r.value->runtime.allow_core_dumps);
  return vaultwire::run_server(*r.value, [file, o] { return vaultwire::load_config(file, o); });
}

}  // namespace

int main(int argc, char** argv) {
  // Before OpenSSL allocates anything: its buffers are wiped when freed.
  if (!vaultwire::secure_memory::install_for_openssl())
    std::fputs("warning: OpenSSL had allocated before vaultwire could make its frees wipe memory\n", stderr);
  CLI::App app{"vaultwire: Vault dynamic credentials for PostgreSQL and CockroachDB clients"};
  app.require_subcommand(1);
  app.footer(
      "Environment, as Vault's client reads it, where the configuration file is silent:\n"
      "VAULT_AGENT_ADDR then VAULT_ADDR (vault.address; --vault-addr wins over all),\n"
      "VAULT_NAMESPACE, VAULT_CACERT, VAULT_CAPATH, VAULT_CLIENT_CERT, VAULT_CLIENT_KEY,\n"
      "VAULT_TLS_SERVER_NAME. VAULT_SKIP_VERIFY is refused unless vault.allow_insecure = true.\n"
      "Run `vaultwire SUBCOMMAND --help` for a subcommand's options.");
  auto* version_cmd = app.add_subcommand(
      "version", "print the version, git commit and OpenSSL, libcurl, Boost versions and exit");

  vaultwire::config_overrides check_overrides;
  std::string check_file;
  auto* check_cmd = app.add_subcommand("check-config", "validate a configuration file and exit");
  check_cmd->add_option("FILE", check_file, "the TOML configuration file")->required();
  add_config_flags(*check_cmd, check_overrides);

  vaultwire::config_overrides run_overrides;
  std::string run_file;
  auto* run_cmd = app.add_subcommand("run", "run the proxy");
  run_cmd->add_option("--config,-c", run_file, "the TOML configuration file")->required();
  add_config_flags(*run_cmd, run_overrides);
  run_cmd->footer(
      "Serves until SIGINT or SIGTERM: then no new connections, sessions end, leases are\n"
      "revoked (revoke_on_shutdown) and it exits 0; a second signal exits at once.\n"
      "Exits 1 when the configuration is not valid or a listener cannot start.\n"
      "Logs go to stdout ([log] level, format); tokens and passwords are never logged.\n"
      "Check a file first with `vaultwire check-config FILE`; the documented example is\n"
      "conf/vaultwire.toml (installed as /etc/vaultwire/vaultwire.toml by the package).");

  vaultwire::provision_options provision_opts;
  auto* provision_cmd = vaultwire::add_provision_subcommand(app, provision_opts);

  vaultwire::passwd_options passwd_opts;
  auto* passwd_cmd = vaultwire::add_passwd_subcommand(app, passwd_opts);

  CLI11_PARSE(app, argc, argv);

  if (*version_cmd) {
    std::fputs(vaultwire::version_report().c_str(), stdout);
    return 0;
  }
  if (*check_cmd) return check_config(check_file, check_overrides);
  if (*run_cmd) return run(run_file, run_overrides);
  if (*provision_cmd) {
    restrict_core_dumps(false);  // it handles the admin password and Vault tokens
    vaultwire::provision_options_from_env(provision_opts);
    return vaultwire::run_provision(std::move(provision_opts), stdout, stderr);
  }
  if (*passwd_cmd) {
    restrict_core_dumps(false);  // it holds the password
    return vaultwire::run_passwd(passwd_opts, STDIN_FILENO, stdout, stderr);
  }
  return 0;
}
