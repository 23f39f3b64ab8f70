#include "support/pg_harness.hpp"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace vwtest {

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  out += "'";
  return out;
}

command_result run_command(const std::string& command) {
  command_result result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) {
    throw std::runtime_error("popen failed for: " + command);
  }
  std::array<char, 4096> chunk{};
  std::size_t n = 0;
  while ((n = std::fread(chunk.data(), 1, chunk.size(), pipe)) > 0) {
    result.output.append(chunk.data(), n);
  }
  int status = ::pclose(pipe);
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

namespace {

std::string harness_script() { return std::string(VAULTWIRE_SOURCE_DIR) + "/tests/support/pg-harness"; }

}  // namespace

pg_server::pg_server(const pg_options& options) {
  std::string tmpl = "/tmp/vwtest-pg.XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    throw std::runtime_error("mkdtemp failed");
  }
  root_ = tmpl;
  // The server may run as another user (postgres when we are root): it must be
  // able to reach the directory.
  ::chmod(root_.c_str(), 0755);

  std::string cmd = shell_quote(harness_script()) + " start " + shell_quote(root_ + "/pg") +
                    " --auth " + shell_quote(options.auth) +
                    " --max-connections " + std::to_string(options.max_connections) +
                    " --server-cert " + shell_quote(options.server_cert);
  if (options.ssl_only) cmd += " --ssl-only";
  command_result r = run_command(cmd);
  if (r.status != 0) {
    run_command(shell_quote(harness_script()) + " stop " + shell_quote(root_ + "/pg"));
    ::rmdir(root_.c_str());
    throw std::runtime_error("pg-harness start failed:\n" + r.output);
  }
  std::istringstream lines(r.output);
  std::string line;
  while (std::getline(lines, line)) {
    auto eq = line.find('=');
    if (line.rfind("PGH_", 0) == 0 && eq != std::string::npos) {
      env_[line.substr(4, eq - 4)] = line.substr(eq + 1);
    }
  }
  if (!env_.contains("PORT")) {
    throw std::runtime_error("pg-harness printed no port:\n" + r.output);
  }
}

pg_server::~pg_server() {
  // Unwinding from a failed REQUIRE (Catch2 throws): show the server's side.
  if (std::uncaught_exceptions() > 0) {
    std::fprintf(stderr, "---- PostgreSQL log (%s) ----\n%s---- end of PostgreSQL log ----\n", root_.c_str(),
                 log().c_str());
  }
  run_command(shell_quote(harness_script()) + " stop " + shell_quote(root_ + "/pg"));
  ::rmdir(root_.c_str());
}

const std::string& pg_server::get(const std::string& key) const { return env_.at(key); }

int pg_server::port() const { return std::stoi(get("PORT")); }

std::string pg_server::log() const {
  std::ifstream in(log_file());
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string pg_server::psql(const std::string& sql, const std::string& database) const {
  std::string cmd = "/usr/lib/postgresql/15/bin/psql -X -q -A -t -v ON_ERROR_STOP=1 -h " +
                    shell_quote(get("SOCKET_DIR")) + " -p " + get("PORT") + " -U " +
                    shell_quote(get("ADMIN_USER")) + " -d " + shell_quote(database) + " -c " +
                    shell_quote(sql);
  command_result r = run_command(cmd);
  if (r.status != 0) {
    throw std::runtime_error("psql failed: " + r.output);
  }
  return r.output;
}

}  // namespace vwtest
