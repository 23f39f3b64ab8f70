// The pieces the configuration loader's files share: the error accumulator, one
// TOML table being read, value parsers and the section readers. Includes toml++, so
// only src/config/ may include it.
#pragma once

#include <toml++/toml.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <system_error>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/text.hpp"
#include "vaultwire/config.hpp"

namespace vaultwire::config_reader {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

constexpr unsigned max_threads = 1024;

// A value quoted for a message, on one printable line.
[[nodiscard]] std::string in_quotes(std::string_view s);
[[nodiscard]] std::string_view type_name(toml::node_type t);
[[nodiscard]] std::size_t edit_distance(std::string_view a, std::string_view b);
using detail::join;

// Everything one load accumulates.
struct loader {
  std::vector<std::string> errors;
  std::vector<std::string> warnings;
  fs::path base_dir;

  void error(std::string_view key, std::string_view what) {
    std::string m{key};
    m += ": ";
    m += what;
    errors.push_back(std::move(m));
  }

  fs::path resolve(const fs::path& p) const {
    if (p.is_relative() && !base_dir.empty()) return base_dir / p;
    return p;
  }

  // A file vaultwire will read later (CA bundle, certificate, key): it must exist,
  // be a regular file and be readable now, so a typo fails at start.
  std::optional<fs::path> check_file(std::string_view key, const fs::path& given) {
    const fs::path p = resolve(given);
    std::error_code ec;
    const auto st = fs::status(p, ec);
    if (ec || !fs::exists(st)) {
      error(key, "cannot read " + in_quotes(p.string()) + ": " +
                     (ec ? ec.message() : std::string{"No such file or directory"}));
      return std::nullopt;
    }
    if (!fs::is_regular_file(st)) {
      error(key, in_quotes(p.string()) + " is not a regular file");
      return std::nullopt;
    }
    if (::access(p.c_str(), R_OK) != 0) {
      const int e = errno;
      error(key, "cannot read " + in_quotes(p.string()) + ": " + std::generic_category().message(e));
      return std::nullopt;
    }
    return p;
  }

  // A directory vaultwire will read files from (a CA directory).
  std::optional<fs::path> check_dir(std::string_view key, const fs::path& given) {
    return check_directory(key, given, R_OK | X_OK, "cannot read", "cannot read");
  }

  // A directory vaultwire will create a socket in.
  std::optional<fs::path> check_socket_dir(std::string_view key, const fs::path& given) {
    return check_directory(key, given, W_OK | X_OK, "cannot use", "cannot create a socket in");
  }

  // An existing directory `mode` (access(2)) allows; `missing` and `denied` start the
  // error for a path that is not there and for one the mode refuses.
  std::optional<fs::path> check_directory(std::string_view key, const fs::path& given, int mode,
                                          std::string_view missing, std::string_view denied) {
    const fs::path p = resolve(given);
    std::error_code ec;
    const auto st = fs::status(p, ec);
    if (ec || !fs::exists(st)) {
      error(key, std::string(missing) + " " + in_quotes(p.string()) + ": " +
                     (ec ? ec.message() : std::string{"No such file or directory"}));
      return std::nullopt;
    }
    if (!fs::is_directory(st)) {
      error(key, in_quotes(p.string()) + " is not a directory");
      return std::nullopt;
    }
    if (::access(p.c_str(), mode) != 0) {
      const int e = errno;
      error(key, std::string(denied) + " " + in_quotes(p.string()) + ": " + std::generic_category().message(e));
      return std::nullopt;
    }
    return p;
  }
};
// One TOML table being read. Each getter names its key; keys nobody asked about
// are reported by finish() as unknown, with the closest known key as a hint.
class section {
 public:
  section(loader& l, const toml::table* t, std::string prefix,
          std::initializer_list<std::string_view> known)
      : loader_{l}, table_{t}, prefix_{std::move(prefix)}, known_{known} {}

  section(const section&) = delete;
  section& operator=(const section&) = delete;

  [[nodiscard]] std::string key(std::string_view k) const {
    if (prefix_.empty()) return std::string{k};
    std::string r = prefix_;
    r += '.';
    r += k;
    return r;
  }

  [[nodiscard]] const toml::node* get(std::string_view k) const {
    if (table_ == nullptr) return nullptr;
    return table_->get(k);
  }

  void wrong_type(std::string_view k, std::string_view expected, const toml::node& n) {
    loader_.error(key(k), "expected " + std::string{expected} + ", got " +
                              std::string{type_name(n.type())});
  }

  [[nodiscard]] std::optional<std::string> get_string(std::string_view k) {
    const toml::node* n = get(k);
    if (n == nullptr) return std::nullopt;
    if (const auto* s = n->as_string()) return s->get();
    wrong_type(k, "a string", *n);
    return std::nullopt;
  }

  // A string that must not be empty when present.
  [[nodiscard]] std::optional<std::string> get_nonempty_string(std::string_view k) {
    auto s = get_string(k);
    if (s && s->empty()) {
      loader_.error(key(k), "must not be empty");
      return std::nullopt;
    }
    return s;
  }

  [[nodiscard]] std::optional<bool> get_bool(std::string_view k) {
    const toml::node* n = get(k);
    if (n == nullptr) return std::nullopt;
    if (const auto* b = n->as_boolean()) return b->get();
    wrong_type(k, "true or false", *n);
    return std::nullopt;
  }

  [[nodiscard]] std::optional<std::int64_t> get_integer(std::string_view k, std::int64_t min,
                                                        std::int64_t max) {
    const toml::node* n = get(k);
    if (n == nullptr) return std::nullopt;
    const auto* i = n->as_integer();
    if (i == nullptr) {
      wrong_type(k, "an integer", *n);
      return std::nullopt;
    }
    const std::int64_t v = i->get();
    if (v < min || v > max) {
      loader_.error(key(k), std::to_string(v) + " is out of range (" + std::to_string(min) + "-" +
                                std::to_string(max) + ")");
      return std::nullopt;
    }
    return v;
  }

  [[nodiscard]] std::optional<std::uint16_t> get_port(std::string_view k) {
    auto v = get_integer(k, 1, 65535);
    if (!v) return std::nullopt;
    return static_cast<std::uint16_t>(*v);
  }

  // A duration string: "250ms", "10s", "5m", "1h30m". Must be positive unless
  // allow_off, in which case "off" or zero yields a present-but-empty optional.
  [[nodiscard]] std::optional<std::optional<milliseconds>> get_duration(std::string_view k,
                                                                        bool allow_off = false) {
    const toml::node* n = get(k);
    if (n == nullptr) return std::nullopt;
    const auto* s = n->as_string();
    if (s == nullptr) {
      wrong_type(k, allow_off ? R"(a duration string like "10s", or "off")"
                              : R"(a duration string like "10s")",
                 *n);
      return std::nullopt;
    }
    if (allow_off && s->get() == "off") return std::optional<milliseconds>{};
    const auto d = parse_duration(s->get());
    if (!d) {
      loader_.error(key(k), "invalid duration " + in_quotes(s->get()) +
                                R"( (write e.g. "250ms", "10s", "5m", "1h30m"; at most a year))");
      return std::nullopt;
    }
    if (d->count() == 0) {
      if (allow_off) return std::optional<milliseconds>{};
      loader_.error(key(k), "must be more than 0");
      return std::nullopt;
    }
    return std::optional<milliseconds>{*d};
  }

  // A sub-table; nullptr when absent or not a table (the latter is an error).
  [[nodiscard]] const toml::table* get_table(std::string_view k) {
    const toml::node* n = get(k);
    if (n == nullptr) return nullptr;
    if (const auto* t = n->as_table()) return t;
    wrong_type(k, "a table ([" + key(k) + "])", *n);
    return nullptr;
  }

  // Reports every key of the table that is not in `known`.
  void finish();

 private:
  loader& loader_;
  const toml::table* table_;
  std::string prefix_;
  std::vector<std::string_view> known_;
};
// "127.0.0.1:26257", "[::1]:26257" -> host, port, family. IP literals only: a
// listener binds to an address, and whether it is loopback must be certain.
struct bind_address {
  std::string host;
  std::uint16_t port = 0;
  bool ipv6 = false;
  bool loopback = false;
};
[[nodiscard]] std::optional<bind_address> parse_bind(std::string_view s);
[[nodiscard]] bool is_route_name(std::string_view n);

template <typename E, std::size_t N>
std::optional<E> parse_enum(std::string_view s, const std::pair<std::string_view, E> (&table)[N]) {
  for (const auto& [name, value] : table)
    if (name == s) return value;
  return std::nullopt;
}

template <typename E, std::size_t N>
std::string enum_names(const std::pair<std::string_view, E> (&table)[N]) {
  std::string r;
  for (const auto& [name, value] : table) {
    (void)value;
    if (!r.empty()) r += ", ";
    r += name;
  }
  return r;
}
inline constexpr std::pair<std::string_view, ssl_mode> ssl_modes[] = {
    {"verify-full", ssl_mode::verify_full},
    {"verify-ca", ssl_mode::verify_ca},
    {"require", ssl_mode::require},
    {"disable", ssl_mode::disable},
};
inline constexpr std::pair<std::string_view, log_level> log_levels[] = {
    {"trace", log_level::trace}, {"debug", log_level::debug}, {"info", log_level::info},
    {"warn", log_level::warn},   {"error", log_level::error}, {"off", log_level::off},
};
inline constexpr std::pair<std::string_view, on_revoke_policy> on_revoke_policies[] = {
    {"at_idle", on_revoke_policy::at_idle},
    {"now", on_revoke_policy::now},
    {"ignore", on_revoke_policy::ignore},
};
inline constexpr std::pair<std::string_view, client_auth_mode> client_auth_modes[] = {
    {"vault_token", client_auth_mode::vault_token},
    {"peer", client_auth_mode::peer},
    {"password", client_auth_mode::password},
};
inline constexpr std::pair<std::string_view, log_format> log_formats[] = {
    {"text", log_format::text},
    {"json", log_format::json},
};
inline constexpr std::pair<std::string_view, vault_auth_method> vault_auth_methods[] = {
    {"token_file", vault_auth_method::token_file}, {"approle", vault_auth_method::approle},
    {"kubernetes", vault_auth_method::kubernetes}, {"jwt", vault_auth_method::jwt},
    {"cert", vault_auth_method::cert},
};
// What a weaker sslmode gives up, for its error or warning.
[[nodiscard]] std::string_view weakness(ssl_mode m);

// An optional string from the file, else from the environment. In the file, ""
// means "none" and also silences the environment variable.
struct sourced {
  std::optional<std::string> value;
  std::string label;      // the key, or "key (from VAR)"
  bool from_env = false;
  bool bad_type = false;  // present in the file with the wrong type (already reported)
};
// consult_env false: the variable is not read (the file names a related key).
[[nodiscard]] sourced file_or_env(section& sec, std::string_view k, const env_lookup& env, std::string_view var,
                                  bool consult_env = true);

// The section readers (sections.cpp). Each reads one table into the config and
// reports through the loader; none stops at the first error.
void read_vault(loader& l, const toml::table* t, const config_overrides& o, const env_lookup& env,
                vault_config& v);
void read_credentials(loader& l, const toml::table* t, credentials_config& c);
void read_pool(loader& l, const toml::table* t, pool_config& p);
// Every [route.NAME]; at least one is required.
void read_routes(loader& l, section& top, config& c);
// Every [[listener]] (after the routes: a listener names one), and the cross-checks.
void read_listeners(loader& l, section& top, const config_overrides& o, config& c);
void read_limits(loader& l, section& top, config& c);
void read_throttle(loader& l, section& top, throttle_config& th);
void read_log(loader& l, section& top, const config_overrides& o, log_config& lg);
void read_runtime(loader& l, section& top, const config_overrides& o, runtime_config& rt);
void read_admin(loader& l, section& top, admin_config& a);
void read_audit(loader& l, section& top, audit_config& a);
void read_fleet(loader& l, section& top, fleet_config& f);

}  // namespace vaultwire::config_reader
