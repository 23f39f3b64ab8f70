// The configuration loader: reads TOML, applies Vault's environment variables and the
// command-line flags, validates, and returns plain structs (vaultwire/config.hpp).
// The section readers are in sections.cpp, the pieces they share in reader.hpp.
#include "vaultwire/config.hpp"

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <system_error>
#include <utility>

#include "config/reader.hpp"

namespace vaultwire {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

std::string_view to_string(ssl_mode m) noexcept {
  switch (m) {
    case ssl_mode::verify_full: return "verify-full";
    case ssl_mode::verify_ca: return "verify-ca";
    case ssl_mode::require: return "require";
    case ssl_mode::disable: return "disable";
  }
  return "?";
}

std::string_view to_string(vault_auth_method m) noexcept {
  switch (m) {
    case vault_auth_method::none: return "none";
    case vault_auth_method::token_file: return "token_file";
    case vault_auth_method::approle: return "approle";
    case vault_auth_method::kubernetes: return "kubernetes";
    case vault_auth_method::jwt: return "jwt";
    case vault_auth_method::cert: return "cert";
  }
  return "?";
}

std::string_view to_string(client_auth_mode m) noexcept {
  switch (m) {
    case client_auth_mode::vault_token: return "vault_token";
    case client_auth_mode::peer: return "peer";
    case client_auth_mode::password: return "password";
  }
  return "?";
}

std::string_view to_string(log_level l) noexcept {
  switch (l) {
    case log_level::trace: return "trace";
    case log_level::debug: return "debug";
    case log_level::info: return "info";
    case log_level::warn: return "warn";
    case log_level::error: return "error";
    case log_level::off: return "off";
  }
  return "?";
}

std::string_view to_string(log_format f) noexcept {
  switch (f) {
    case log_format::text: return "text";
    case log_format::json: return "json";
  }
  return "?";
}

std::string_view to_string(on_revoke_policy p) noexcept {
  switch (p) {
    case on_revoke_policy::at_idle: return "at_idle";
    case on_revoke_policy::now: return "now";
    case on_revoke_policy::ignore: return "ignore";
  }
  return "?";
}

std::optional<std::string> process_env(std::string_view name) {
  const std::string n{name};
  const char* v = std::getenv(n.c_str());
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string{v};
}

std::optional<milliseconds> parse_duration(std::string_view text) {
  // One or more <digits><unit>; "0" alone is zero. At most a year: longer is a typo,
  // and it keeps later conversions to nanoseconds far from overflow.
  constexpr std::int64_t max_ms = 365LL * 24 * 3600 * 1000;
  if (text == "0") return milliseconds{0};
  if (text.empty()) return std::nullopt;
  std::int64_t total = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    std::int64_t n = 0;
    const std::size_t digits_at = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      n = n * 10 + (text[i] - '0');
      if (n > max_ms) return std::nullopt;
      ++i;
    }
    if (i == digits_at) return std::nullopt;
    std::int64_t unit = 0;
    if (text.substr(i, 2) == "ms") {
      unit = 1;
      i += 2;
    } else if (i < text.size() && text[i] == 's') {
      unit = 1000;
      ++i;
    } else if (i < text.size() && text[i] == 'm') {
      unit = 60 * 1000;
      ++i;
    } else if (i < text.size() && text[i] == 'h') {
      unit = 3600 * 1000;
      ++i;
    } else {
      return std::nullopt;
    }
    if (n > max_ms / unit) return std::nullopt;
    total += n * unit;
    if (total > max_ms) return std::nullopt;
  }
  return milliseconds{total};
}

config_result parse_config(std::string_view toml_text, const config_overrides& overrides,
                           const env_lookup& env, const fs::path& base_dir,
                           std::string_view source_name) {
  using namespace config_reader;
  config_result result;
  toml::table root;
  try {
    root = toml::parse(toml_text, source_name);
  } catch (const toml::parse_error& e) {
    const auto& at = e.source().begin;
    std::ostringstream m;
    m << source_name << ':' << at.line << ':' << at.column << ": " << e.description();
    result.errors.push_back(m.str());
    return result;
  }

  loader l;
  l.base_dir = base_dir;
  config c;
  section top{l,
              &root,
              "",
              {"vault", "listener", "route", "credentials", "pool", "limits", "throttle", "log", "runtime", "admin",
               "audit", "fleet"}};
  read_vault(l, top.get_table("vault"), overrides, env, c.vault);
  read_credentials(l, top.get_table("credentials"), c.credentials);
  read_pool(l, top.get_table("pool"), c.pool);
  read_routes(l, top, c);  // before the listeners and limits, which name routes and roles
  read_listeners(l, top, overrides, c);
  read_limits(l, top, c);
  read_throttle(l, top, c.throttle);
  read_log(l, top, overrides, c.log);
  read_runtime(l, top, overrides, c.runtime);
  read_admin(l, top, c.admin);
  read_audit(l, top, c.audit);
  read_fleet(l, top, c.fleet);
  top.finish();

  result.warnings = std::move(l.warnings);
  result.errors = std::move(l.errors);
  if (result.errors.empty()) {
    result.value = std::move(c);
  } else {
    result.warnings.clear();
  }
  return result;
}

config_result load_config(const fs::path& file, const config_overrides& overrides,
                          const env_lookup& env) {
  std::ifstream in{file, std::ios::binary};
  if (!in) {
    const int e = errno;
    config_result r;
    r.errors.push_back(file.string() + ": cannot read: " + std::generic_category().message(e));
    return r;
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    config_result r;
    r.errors.push_back(file.string() + ": cannot read");
    return r;
  }
  const std::string s = std::move(text).str();
  return parse_config(s, overrides, env, file.parent_path(), file.string());
}

}  // namespace vaultwire
