// The configuration loader: the only file that includes toml++ (STYLE.md §1).
// Reads TOML, applies Vault's environment variables and the command-line flags,
// validates, and returns plain structs (include/vaultwire/config.hpp).
#include "vaultwire/config.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <limits>
#include <set>
#include <sstream>
#include <system_error>
#include <thread>
#include <utility>

#include <toml++/toml.h>

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

namespace {

constexpr unsigned max_threads = 1024;

std::string in_quotes(std::string_view s) {
  std::string r = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      r += '\\';
      r += c;
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      r += '?';  // keep every message on one printable line
    } else {
      r += c;
    }
  }
  r += '"';
  return r;
}

std::string_view type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::none: return "nothing";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a floating-point number";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
  }
  return "something else";
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t subst = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string r;
  for (const auto& s : v) {
    if (!r.empty()) r += sep;
    r += s;
  }
  return r;
}

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

  // A directory vaultwire will create a socket in.
  std::optional<fs::path> check_socket_dir(std::string_view key, const fs::path& given) {
    const fs::path p = resolve(given);
    std::error_code ec;
    const auto st = fs::status(p, ec);
    if (ec || !fs::exists(st)) {
      error(key, "cannot use " + in_quotes(p.string()) + ": " +
                     (ec ? ec.message() : std::string{"No such file or directory"}));
      return std::nullopt;
    }
    if (!fs::is_directory(st)) {
      error(key, in_quotes(p.string()) + " is not a directory");
      return std::nullopt;
    }
    if (::access(p.c_str(), W_OK | X_OK) != 0) {
      const int e = errno;
      error(key, "cannot create a socket in " + in_quotes(p.string()) + ": " +
                     std::generic_category().message(e));
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
  void finish() {
    if (table_ == nullptr) return;
    for (auto&& [k, v] : *table_) {
      (void)v;
      const std::string_view name = k.str();
      if (std::find(known_.begin(), known_.end(), name) != known_.end()) continue;
      std::string msg = "unknown key";
      std::string_view best;
      std::size_t best_d = 3;  // suggest only close matches
      for (const auto candidate : known_) {
        const std::size_t d = edit_distance(name, candidate);
        if (d < best_d) {
          best_d = d;
          best = candidate;
        }
      }
      if (!best.empty()) msg += " (did you mean " + in_quotes(best) + "?)";
      loader_.error(key(name), msg);
    }
  }

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

std::optional<bind_address> parse_bind(std::string_view s) {
  bind_address b;
  std::string_view host, port;
  if (!s.empty() && s.front() == '[') {
    const auto close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':')
      return std::nullopt;
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
    b.ipv6 = true;
  } else {
    const auto colon = s.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return std::nullopt;  // IPv6 needs []
  }
  if (host.empty() || port.empty() || port.size() > 5) return std::nullopt;
  unsigned p = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return std::nullopt;
    p = p * 10 + static_cast<unsigned>(c - '0');
  }
  if (p == 0 || p > 65535) return std::nullopt;
  b.port = static_cast<std::uint16_t>(p);
  b.host = std::string{host};
  if (b.ipv6) {
    in6_addr a{};
    if (::inet_pton(AF_INET6, b.host.c_str(), &a) != 1) return std::nullopt;
    const bool v4_mapped_loopback = IN6_IS_ADDR_V4MAPPED(&a) && a.s6_addr[12] == 127;
    b.loopback = IN6_IS_ADDR_LOOPBACK(&a) || v4_mapped_loopback;
  } else {
    in_addr a{};
    if (::inet_pton(AF_INET, b.host.c_str(), &a) != 1) return std::nullopt;
    b.loopback = (ntohl(a.s_addr) >> 24) == 127;
  }
  return b;
}

bool is_route_name(std::string_view n) {
  if (n.empty()) return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
  });
}

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

constexpr std::pair<std::string_view, ssl_mode> ssl_modes[] = {
    {"verify-full", ssl_mode::verify_full},
    {"verify-ca", ssl_mode::verify_ca},
    {"require", ssl_mode::require},
    {"disable", ssl_mode::disable},
};
constexpr std::pair<std::string_view, log_level> log_levels[] = {
    {"trace", log_level::trace}, {"debug", log_level::debug}, {"info", log_level::info},
    {"warn", log_level::warn},   {"error", log_level::error}, {"off", log_level::off},
};
constexpr std::pair<std::string_view, on_revoke_policy> on_revoke_policies[] = {
    {"at_idle", on_revoke_policy::at_idle},
    {"now", on_revoke_policy::now},
    {"ignore", on_revoke_policy::ignore},
};
constexpr std::pair<std::string_view, log_format> log_formats[] = {
    {"text", log_format::text},
    {"json", log_format::json},
};

std::string_view weakness(ssl_mode m) {
  switch (m) {
    case ssl_mode::verify_ca: return "checks the cluster's CA but not its host name";
    case ssl_mode::require: return "does not verify the cluster's certificate";
    case ssl_mode::disable: return "sends the database credential in clear";
    case ssl_mode::verify_full: break;
  }
  return "";
}

// An optional string from the file, else from the environment. In the file, ""
// means "none" and also silences the environment variable.
struct sourced {
  std::optional<std::string> value;
  std::string label;      // the key, or "key (from VAR)"
  bool from_env = false;
  bool bad_type = false;  // present in the file with the wrong type (already reported)
};

sourced file_or_env(section& sec, std::string_view k, const env_lookup& env,
                    std::string_view var) {
  if (sec.get(k) != nullptr) {
    auto v = sec.get_string(k);
    const bool bad_type = !v.has_value();
    if (v && v->empty()) v.reset();
    return {std::move(v), sec.key(k), false, bad_type};
  }
  std::optional<std::string> e;
  if (env) e = env(var);
  if (e && e->empty()) e.reset();
  return {std::move(e), sec.key(k) + " (from " + std::string{var} + ")", true, false};
}

void read_vault(loader& l, const toml::table* t, const config_overrides& o, const env_lookup& env,
                vault_config& v) {
  section sec{l, t, "vault", {"address", "namespace", "ca_file", "mount", "request_timeout", "token_file"}};

  sourced address = file_or_env(sec, "address", env, "VAULT_ADDR");
  if (o.vault_addr) address = {o.vault_addr, "--vault-addr", false, false};
  if (!address.value) {
    if (!address.bad_type)
      l.error("vault.address", "required (set it in [vault], VAULT_ADDR or --vault-addr)");
  } else {
    std::string a = *address.value;
    auto has_prefix = [&](std::string_view p) { return a.rfind(p, 0) == 0; };
    const std::size_t scheme = has_prefix("https://") ? 8 : has_prefix("http://") ? 7 : 0;
    while (a.size() > scheme && a.back() == '/') a.pop_back();
    if (scheme == 0) {
      l.error(address.label, in_quotes(a) + " must start with http:// or https://");
    } else if (a.size() == scheme || a[scheme] == '/') {
      l.error(address.label, in_quotes(a) + " has no host");
    } else {
      v.address = std::move(a);
    }
  }

  sourced ns = file_or_env(sec, "namespace", env, "VAULT_NAMESPACE");
  v.namespace_ = std::move(ns.value);

  sourced ca = file_or_env(sec, "ca_file", env, "VAULT_CACERT");
  if (ca.value) {
    // VAULT_CACERT comes from the shell: relative to the working directory.
    const fs::path saved = l.base_dir;
    if (ca.from_env) l.base_dir.clear();
    v.ca_file = l.check_file(ca.label, *ca.value);
    l.base_dir = saved;
  }

  if (auto m = sec.get_string("mount")) {
    std::string_view mv = *m;
    while (!mv.empty() && mv.front() == '/') mv.remove_prefix(1);
    while (!mv.empty() && mv.back() == '/') mv.remove_suffix(1);
    if (mv.empty())
      l.error(sec.key("mount"), "must name the database secrets engine's mount");
    else
      v.mount = std::string{mv};
  }
  if (auto d = sec.get_duration("request_timeout")) v.request_timeout = **d;
  if (auto f = sec.get_nonempty_string("token_file")) v.token_file = l.check_file(sec.key("token_file"), *f);
  sec.finish();
}

void read_credentials(loader& l, const toml::table* t, credentials_config& c) {
  section sec{l,
              t,
              "credentials",
              {"token_recheck", "negative_cache", "revoke_idle_after", "revoke_on_shutdown", "on_revoke",
               "expiry_notice", "session_may_outlive_lease", "token_grace", "max_leases"}};
  if (auto d = sec.get_duration("token_recheck")) c.token_recheck = **d;
  if (auto d = sec.get_duration("negative_cache")) c.negative_cache = **d;
  if (auto d = sec.get_duration("revoke_idle_after")) c.revoke_idle_after = **d;
  if (auto b = sec.get_bool("revoke_on_shutdown")) c.revoke_on_shutdown = *b;
  if (auto p = sec.get_string("on_revoke")) {
    if (auto v = parse_enum(*p, on_revoke_policies))
      c.on_revoke = *v;
    else
      l.error(sec.key("on_revoke"), in_quotes(*p) + " is not one of " + enum_names(on_revoke_policies));
  }
  if (auto d = sec.get_duration("expiry_notice")) c.expiry_notice = **d;
  if (auto b = sec.get_bool("session_may_outlive_lease")) c.session_may_outlive_lease = *b;
  if (auto d = sec.get_duration("token_grace")) c.token_grace = **d;
  if (auto v = sec.get_integer("max_leases", 1, 1'000'000)) c.max_leases = static_cast<std::uint32_t>(*v);
  sec.finish();
}

void read_pool(loader& l, const toml::table* t, pool_config& p) {
  section sec{l,
              t,
              "pool",
              {"reuse", "reset_query", "max_idle_per_key", "max_idle_total", "idle_timeout"}};
  if (auto b = sec.get_bool("reuse")) p.reuse = *b;
  if (auto q = sec.get_nonempty_string("reset_query")) {
    // Sent as one simple Query: a NUL would end the message early.
    if (q->find('\0') != std::string::npos)
      l.error(sec.key("reset_query"), "must not contain a NUL character");
    else
      p.reset_query = *q;
  }
  if (auto v = sec.get_integer("max_idle_per_key", 0, 1'000'000)) p.max_idle_per_key = static_cast<std::uint32_t>(*v);
  if (auto v = sec.get_integer("max_idle_total", 0, 1'000'000)) p.max_idle_total = static_cast<std::uint32_t>(*v);
  if (auto d = sec.get_duration("idle_timeout")) p.idle_timeout = **d;
  if (p.max_idle_per_key > p.max_idle_total)
    l.error(sec.key("max_idle_per_key"), std::to_string(p.max_idle_per_key) + " is more than max_idle_total (" +
                                             std::to_string(p.max_idle_total) + ")");
  sec.finish();
}

// Both of a cert/key pair, or neither.
void pair_check(loader& l, section& sec, std::string_view cert_key, std::string_view key_key,
                std::optional<fs::path>& cert, std::optional<fs::path>& key) {
  const bool has_cert = sec.get(cert_key) != nullptr;
  const bool has_key = sec.get(key_key) != nullptr;
  if (has_cert && !has_key)
    l.error(sec.key(key_key), "required when " + std::string{cert_key} + " is set");
  if (has_key && !has_cert)
    l.error(sec.key(cert_key), "required when " + std::string{key_key} + " is set");
  if (auto c = sec.get_nonempty_string(cert_key)) cert = l.check_file(sec.key(cert_key), *c);
  if (auto k = sec.get_nonempty_string(key_key)) key = l.check_file(sec.key(key_key), *k);
}

route_config read_route(loader& l, const std::string& name, const toml::table* t) {
  route_config r;
  r.name = name;
  section sec{l,
              t,
              "route." + name,
              {"host", "port", "server_name", "ca_file", "sslmode", "allow_insecure_upstream",
               "client_cert", "client_key", "roles", "options", "database_prefix",
               "default_database"}};
  if (auto h = sec.get_nonempty_string("host"))
    r.host = *h;
  else if (sec.get("host") == nullptr)
    l.error(sec.key("host"), "required (the cluster's host name or address)");
  if (auto p = sec.get_port("port")) r.port = *p;
  if (auto s = sec.get_nonempty_string("server_name"))
    r.server_name = *s;
  else
    r.server_name = r.host;
  if (auto c = sec.get_nonempty_string("ca_file")) r.ca_file = l.check_file(sec.key("ca_file"), *c);
  if (auto b = sec.get_bool("allow_insecure_upstream")) r.allow_insecure_upstream = *b;
  if (auto m = sec.get_string("sslmode")) {
    if (auto mode = parse_enum(*m, ssl_modes)) {
      r.sslmode = *mode;
      if (*mode != ssl_mode::verify_full) {
        if (!r.allow_insecure_upstream) {
          l.error(sec.key("sslmode"), in_quotes(*m) + " " + std::string{weakness(*mode)} +
                                          "; set " + sec.key("allow_insecure_upstream") +
                                          " = true to allow it");
        } else {
          l.warnings.push_back(sec.key("sslmode") + " = " + in_quotes(*m) + ": vaultwire " +
                               std::string{weakness(*mode)} +
                               " (allowed by allow_insecure_upstream)");
        }
      }
    } else {
      l.error(sec.key("sslmode"), in_quotes(*m) + " is not one of " + enum_names(ssl_modes));
    }
  }
  pair_check(l, sec, "client_cert", "client_key", r.client_cert, r.client_key);

  if (const toml::node* n = sec.get("roles")) {
    if (const auto* arr = n->as_array()) {
      for (std::size_t i = 0; i < arr->size(); ++i) {
        const std::string k = sec.key("roles") + "[" + std::to_string(i) + "]";
        const toml::node& el = *arr->get(i);
        const auto* s = el.as_string();
        if (s == nullptr) {
          l.error(k, "expected a string, got " + std::string{type_name(el.type())});
        } else if (s->get().empty()) {
          l.error(k, "must not be empty");
        } else if (s->get().find('/') != std::string::npos) {
          l.error(k, in_quotes(s->get()) + ": a Vault role name cannot contain '/'");
        } else if (std::find(r.roles.begin(), r.roles.end(), s->get()) == r.roles.end()) {
          r.roles.push_back(s->get());
        }
      }
      if (arr->size() == 0) l.error(sec.key("roles"), "must list at least one Vault role");
    } else {
      sec.wrong_type("roles", "an array of strings", *n);
    }
  } else {
    l.error(sec.key("roles"), "required (the Vault roles clients may ask for)");
  }
  r.options = sec.get_string("options");
  r.database_prefix = sec.get_nonempty_string("database_prefix");
  r.default_database = sec.get_nonempty_string("default_database");
  sec.finish();
  return r;
}

listener_config read_listener(loader& l, std::size_t index, const toml::table* t,
                              const config_overrides& o, bool overridable) {
  listener_config c;
  section sec{l,
              t,
              "listener[" + std::to_string(index) + "]",
              {"bind", "unix_socket", "tls_cert", "tls_key", "route", "allow_plaintext_remote", "proxy_protocol"}};
  std::optional<std::string> bind = sec.get_string("bind");
  std::string bind_label = sec.key("bind");
  if (overridable && o.listen) {
    bind = o.listen;
    bind_label = "--listen";
  }
  std::optional<bind_address> addr;
  if (bind) {
    addr = parse_bind(*bind);
    if (!addr)
      l.error(bind_label, in_quotes(*bind) +
                              " is not an IP address and port (e.g. 127.0.0.1:26257 or "
                              "[::1]:26257)");
  }
  if (addr) {
    c.host = addr->host;
    c.port = addr->port;
    c.ipv6 = addr->ipv6;
    c.bind = addr->ipv6 ? "[" + c.host + "]:" + std::to_string(c.port)
                        : c.host + ":" + std::to_string(c.port);
  }
  if (auto u = sec.get_nonempty_string("unix_socket")) {
    c.unix_socket = l.check_socket_dir(sec.key("unix_socket"), *u);
    // sockaddr_un::sun_path holds 108 bytes with the terminating NUL.
    if (c.unix_socket) {
      const std::string socket_path =
          (*c.unix_socket / (".s.PGSQL." + std::to_string(c.port))).string();
      if (socket_path.size() >= sizeof(sockaddr_un{}.sun_path)) {
        l.error(sec.key("unix_socket"), "socket path " + in_quotes(socket_path) + " is longer than " +
                                            std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) +
                                            " bytes");
        c.unix_socket.reset();
      }
    }
  }
  pair_check(l, sec, "tls_cert", "tls_key", c.tls_cert, c.tls_key);
  if (auto r = sec.get_nonempty_string("route"))
    c.route = *r;
  else if (sec.get("route") == nullptr)
    l.error(sec.key("route"), "required (the [route.NAME] this listener forwards to)");
  if (auto a = sec.get_bool("allow_plaintext_remote")) c.allow_plaintext_remote = *a;
  if (auto p = sec.get_bool("proxy_protocol")) c.proxy_protocol = *p;

  const bool plaintext = sec.get("tls_cert") == nullptr && sec.get("tls_key") == nullptr;
  const bool loopback = addr ? addr->loopback : true;  // the default bind is loopback
  if (plaintext && !loopback && !c.allow_plaintext_remote) {
    l.error(bind_label, "plaintext listener on non-loopback address " + c.bind +
                            ": a client's Vault token would cross the network in clear; "
                            "set tls_cert and tls_key, or allow_plaintext_remote = true");
  }
  sec.finish();
  return c;
}

}  // namespace

config_result parse_config(std::string_view toml_text, const config_overrides& overrides,
                           const env_lookup& env, const fs::path& base_dir,
                           std::string_view source_name) {
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
               "audit"}};

  read_vault(l, top.get_table("vault"), overrides, env, c.vault);
  read_credentials(l, top.get_table("credentials"), c.credentials);
  read_pool(l, top.get_table("pool"), c.pool);

  // [route.NAME] first: listeners refer to them.
  if (const toml::table* routes = top.get_table("route")) {
    for (auto&& [k, v] : *routes) {
      const std::string name{k.str()};
      if (!is_route_name(name)) {
        l.error("route." + in_quotes(name),
                "a route name uses only letters, digits, '_' and '-'");
        continue;
      }
      if (const auto* t = v.as_table())
        c.routes.emplace(name, read_route(l, name, t));
      else
        l.error("route." + name, "expected a table ([route." + name + "]), got " +
                                     std::string{type_name(v.type())});
    }
  }
  const toml::node* route_node = top.get("route");
  if (route_node == nullptr || (route_node->is_table() && route_node->as_table()->empty()))
    l.error("route", "at least one [route.NAME] is required");

  if (const toml::node* n = top.get("listener")) {
    const auto* arr = n->as_array();
    if (arr != nullptr && arr->empty()) {
      l.error("listener", "at least one [[listener]] is required");
    } else if (arr == nullptr || !arr->is_array_of_tables()) {
      top.wrong_type("listener", "an array of tables ([[listener]])", *n);
    } else {
      if (overrides.listen && arr->size() > 1)
        l.error("--listen", "applies to a single [[listener]]; the file has " +
                                std::to_string(arr->size()));
      for (std::size_t i = 0; i < arr->size(); ++i)
        c.listeners.push_back(
            read_listener(l, i, arr->get(i)->as_table(), overrides, arr->size() == 1));
    }
  }
  if (c.listeners.empty() && top.get("listener") == nullptr)
    l.error("listener", "at least one [[listener]] is required");

  // Cross-checks: routes exist, no two listeners on one address.
  std::vector<std::string> route_names;
  for (const auto& [name, r] : c.routes) route_names.push_back(name);
  for (std::size_t i = 0; i < c.listeners.size(); ++i) {
    const auto& li = c.listeners[i];
    const std::string prefix = "listener[" + std::to_string(i) + "]";
    if (!li.route.empty() && c.routes.find(li.route) == c.routes.end()) {
      l.error(prefix + ".route", "no route named " + in_quotes(li.route) +
                                     (route_names.empty()
                                          ? std::string{" (no [route.NAME] is defined)"}
                                          : " (defined: " + join(route_names, ", ") + ")"));
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (c.listeners[j].bind == li.bind)
        l.error(prefix + ".bind", li.bind + " is already used by listener[" + std::to_string(j) +
                                      "]");
    }
  }

  {
    section sec{l,
                top.get_table("limits"),
                "limits",
                {"max_client_connections", "startup_timeout", "upstream_connect_timeout",
                 "tcp_keepalive", "client_idle_timeout", "max_session_lifetime", "max_connections_per_role"}};
    auto& lim = c.limits;
    if (auto v = sec.get_integer("max_client_connections", 1, 1'000'000))
      lim.max_client_connections = static_cast<std::uint32_t>(*v);
    if (auto d = sec.get_duration("startup_timeout")) lim.startup_timeout = **d;
    if (auto d = sec.get_duration("upstream_connect_timeout")) lim.upstream_connect_timeout = **d;
    if (auto d = sec.get_duration("tcp_keepalive")) {
      if (**d < std::chrono::seconds{1})
        l.error(sec.key("tcp_keepalive"), "must be at least 1s");
      else
        lim.tcp_keepalive = **d;
    }
    if (auto d = sec.get_duration("client_idle_timeout", true)) lim.client_idle_timeout = *d;
    if (auto d = sec.get_duration("max_session_lifetime", true)) lim.max_session_lifetime = *d;
    if (const toml::table* caps = sec.get_table("max_connections_per_role")) {
      // role = N; each role must be one a route allows (a typo would cap nothing).
      std::set<std::string> roles;
      for (const auto& [name, r] : c.routes) roles.insert(r.roles.begin(), r.roles.end());
      for (auto&& [k, v] : *caps) {
        const std::string role{k.str()};
        const std::string key = sec.key("max_connections_per_role") + "." + role;
        const auto* n = v.as_integer();
        if (n == nullptr) {
          l.error(key, "expected an integer, got " + std::string{type_name(v.type())});
        } else if (n->get() < 1 || n->get() > 1'000'000) {
          l.error(key, std::to_string(n->get()) + " is out of range (1-1000000)");
        } else if (!roles.contains(role)) {
          std::vector<std::string> known(roles.begin(), roles.end());
          l.error(key, "no [route.NAME] allows the role " + in_quotes(role) +
                           (known.empty() ? std::string{} : " (roles: " + join(known, ", ") + ")"));
        } else {
          lim.max_connections_per_role[role] = static_cast<std::uint32_t>(n->get());
        }
      }
    }
    sec.finish();
  }

  {
    section sec{l, top.get_table("throttle"), "throttle", {"base_delay", "max_delay"}};
    auto& th = c.throttle;
    if (auto d = sec.get_duration("base_delay", true)) th.base_delay = *d;
    if (auto d = sec.get_duration("max_delay")) th.max_delay = **d;
    auto text = [](milliseconds d) {
      return d.count() % 1000 == 0 ? std::to_string(d.count() / 1000) + "s" : std::to_string(d.count()) + "ms";
    };
    if (th.base_delay && *th.base_delay > th.max_delay)
      l.error(sec.key("base_delay"), text(*th.base_delay) + " is more than max_delay (" + text(th.max_delay) + ")");
    sec.finish();
  }

  {
    section sec{l, top.get_table("log"), "log", {"level", "format"}};
    // The file's value is checked even when --log-level replaces it.
    auto set_level = [&](const std::string& label, const std::string& value) {
      if (auto v = parse_enum(value, log_levels))
        c.log.level = *v;
      else
        l.error(label, in_quotes(value) + " is not one of " + enum_names(log_levels));
    };
    if (auto level = sec.get_string("level")) set_level(sec.key("level"), *level);
    if (overrides.log_level) set_level("--log-level", *overrides.log_level);
    if (auto f = sec.get_string("format")) {
      if (auto v = parse_enum(*f, log_formats))
        c.log.format = *v;
      else
        l.error(sec.key("format"), in_quotes(*f) + " is not one of " + enum_names(log_formats));
    }
    sec.finish();
  }

  {
    section sec{l, top.get_table("runtime"), "runtime", {"threads", "shutdown_grace", "allow_core_dumps"}};
    if (auto d = sec.get_duration("shutdown_grace")) c.runtime.shutdown_grace = **d;
    if (auto b = sec.get_bool("allow_core_dumps")) c.runtime.allow_core_dumps = *b;
    c.runtime.threads = std::max(1u, std::thread::hardware_concurrency());
    if (auto t = sec.get_integer("threads", 1, max_threads))
      c.runtime.threads = static_cast<unsigned>(*t);
    if (overrides.threads) {
      if (*overrides.threads < 1 || *overrides.threads > max_threads)
        l.error("--threads", std::to_string(*overrides.threads) + " is out of range (1-" +
                                 std::to_string(max_threads) + ")");
      else
        c.runtime.threads = static_cast<unsigned>(*overrides.threads);
    }
    sec.finish();
  }

  {
    section sec{l, top.get_table("admin"), "admin", {"bind"}};
    if (auto b = sec.get_string("bind")) {
      if (b->empty()) {
        c.admin.enabled = false;
        c.admin.bind.clear();
      } else if (auto addr = parse_bind(*b)) {
        c.admin.host = addr->host;
        c.admin.port = addr->port;
        c.admin.bind = addr->ipv6 ? "[" + addr->host + "]:" + std::to_string(addr->port)
                                  : addr->host + ":" + std::to_string(addr->port);
      } else {
        l.error(sec.key("bind"), in_quotes(*b) + " is not an IP address and port (e.g. 127.0.0.1:9187), or \"\" for none");
      }
    }
    sec.finish();
  }

  {
    section sec{l, top.get_table("audit"), "audit", {"file"}};
    if (auto f = sec.get_nonempty_string("file")) {
      const fs::path p = fs::absolute(l.resolve(*f));
      if (!fs::is_directory(p.parent_path()))
        l.error(sec.key("file"), in_quotes(*f) + ": the directory does not exist");
      else
        c.audit.file = p;
    }
    sec.finish();
  }

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
