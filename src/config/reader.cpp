#include "config/reader.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>

namespace vaultwire::config_reader {

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

void section::finish() {
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
std::string_view weakness(ssl_mode m) {
  switch (m) {
    case ssl_mode::verify_ca: return "checks the cluster's CA but not its host name";
    case ssl_mode::require: return "does not verify the cluster's certificate";
    case ssl_mode::disable: return "sends the database credential in clear";
    case ssl_mode::verify_full: break;
  }
  return "";
}

sourced file_or_env(section& sec, std::string_view k, const env_lookup& env, std::string_view var,
                    bool consult_env) {
  if (sec.get(k) != nullptr) {
    auto v = sec.get_string(k);
    const bool bad_type = !v.has_value();
    if (v && v->empty()) v.reset();
    return {std::move(v), sec.key(k), false, bad_type};
  }
  if (!consult_env) return {std::nullopt, sec.key(k), false, false};
  std::optional<std::string> e;
  if (env) e = env(var);
  if (e && e->empty()) e.reset();
  return {std::move(e), sec.key(k) + " (from " + std::string{var} + ")", true, false};
}

}  // namespace vaultwire::config_reader
