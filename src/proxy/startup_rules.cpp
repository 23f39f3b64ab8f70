#include "proxy/startup_rules.hpp"

#include <algorithm>
#include <cctype>

namespace vaultwire::detail {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A setting name as the server reads it: case-insensitive, and PostgreSQL's
// ParseLongOption turns '-' into '_' (--session-authorization is session_authorization).
std::string setting_key(std::string_view key) {
  std::string k = lower(key);
  std::replace(k.begin(), k.end(), '-', '_');
  return k;
}

bool forbidden_key(const std::string& key) {
  return key == "role" || key == "session_authorization" || key.starts_with("crdb:");
}

// One setting inside options: args[first, first + count) hold it.
struct option_setting {
  std::size_t first = 0;
  std::size_t count = 1;
  std::string key;  // as setting_key reads it
  std::string value;
};

std::vector<option_setting> settings_of(const std::vector<std::string>& args) {
  std::vector<option_setting> out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    option_setting s;
    s.first = i;
    std::string_view kv;
    if (a == "-c" && i + 1 < args.size()) {
      kv = args[i + 1];
      s.count = 2;
    } else if (a.starts_with("-c") || a.starts_with("--")) {
      kv = std::string_view(a).substr(2);
    } else {
      continue;
    }
    const std::size_t eq = kv.find('=');
    s.key = setting_key(kv.substr(0, eq));
    s.value = eq == std::string_view::npos ? std::string() : std::string(kv.substr(eq + 1));
    i += s.count - 1;
    out.push_back(std::move(s));
  }
  return out;
}

// pkg/ccl/sqlproxyccl/proxy_handler.go clusterNameRegex plus the tenant id: a
// Serverless cluster identifier such as lilac-grizzly-684.
bool cluster_identifier(std::string_view s) {
  const std::size_t dash = s.rfind('-');
  if (dash == std::string_view::npos || dash + 1 == s.size()) return false;
  const std::string_view name = s.substr(0, dash), tenant = s.substr(dash + 1);
  if (!std::all_of(tenant.begin(), tenant.end(), [](char c) { return c >= '0' && c <= '9'; })) return false;
  if (name.size() < 6 || name.size() > 20 || name.front() == '-' || name.back() == '-') return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; });
}

// The cluster named in a database parameter and the database without it; the
// cluster is "" when the database names none.
std::pair<std::string, std::string> split_database(const std::string& database) {
  if (database.starts_with("cluster:")) {
    const std::size_t slash = database.find('/');
    if (slash != std::string::npos) return {database.substr(8, slash - 8), database.substr(slash + 1)};
    return {database.substr(8), ""};
  }
  const std::size_t dot = database.find('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == database.size() ||
      database.find('.', dot + 1) != std::string::npos) {
    return {"", database};
  }
  return {database.substr(0, dot), database.substr(dot + 1)};
}

// Built by appending: g++ 12's -Wrestrict misfires at -O2 on "\"" + std::string(s) + "\"".
std::string in_quotes(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out += '"';
  out.append(s);
  out += '"';
  return out;
}

// The client's options: forbidden keys refused; its cluster flags checked against
// the route's cluster and dropped when they name it.
std::optional<std::string> check_options(const std::string& cluster, std::string& options) {
  std::vector<std::string> args = split_options(options);
  const std::vector<option_setting> settings = settings_of(args);
  std::vector<const option_setting*> clusters;
  for (const auto& s : settings) {
    if (forbidden_key(s.key)) {
      return "startup parameter options: " + in_quotes(s.key) +
             " is not allowed through vaultwire: it would change the role or how the server authenticates "
             "this connection";
    }
    if (s.key == "cluster") clusters.push_back(&s);
  }
  if (clusters.size() > 1) {
    return "startup parameter options: more than one --cluster flag; name the cluster once (or not at all: this "
           "route sets it)";
  }
  if (clusters.empty() || cluster.empty()) return std::nullopt;
  if (clusters[0]->value != cluster) {
    return "startup parameter options: --cluster=" + clusters[0]->value +
           " names another cluster than this route's (" + cluster + ")";
  }
  args.erase(args.begin() + static_cast<std::ptrdiff_t>(clusters[0]->first),
             args.begin() + static_cast<std::ptrdiff_t>(clusters[0]->first + clusters[0]->count));
  options = join_options(args);
  return std::nullopt;
}

}  // namespace

std::vector<std::string> split_options(std::string_view options) {
  std::vector<std::string> args;
  std::string current;
  bool in_arg = false;
  for (std::size_t i = 0; i < options.size(); ++i) {
    const char c = options[i];
    if (is_space(c)) {
      if (in_arg) args.push_back(std::move(current));
      current.clear();
      in_arg = false;
      continue;
    }
    in_arg = true;
    if (c == '\\' && i + 1 < options.size()) {
      current += options[++i];
    } else {
      current += c;
    }
  }
  if (in_arg) args.push_back(std::move(current));
  return args;
}

std::string join_options(const std::vector<std::string>& args) {
  std::string out;
  for (const auto& a : args) {
    if (!out.empty()) out += ' ';
    for (const char c : a) {
      if (c == '\\' || is_space(c)) out += '\\';
      out += c;
    }
  }
  return out;
}

std::string route_cluster(const route_config& route) {
  if (route.options) {
    for (const auto& s : settings_of(split_options(*route.options))) {
      if (s.key == "cluster" && !s.value.empty()) return s.value;
    }
  }
  if (route.database_prefix) {
    std::string prefix = *route.database_prefix;
    while (!prefix.empty() && prefix.back() == '.') prefix.pop_back();
    if (!prefix.empty()) return prefix;
  }
  const std::size_t dot = route.server_name.find('.');
  if (dot != std::string::npos && cluster_identifier(std::string_view(route.server_name).substr(0, dot))) {
    return route.server_name.substr(0, dot);
  }
  return {};
}

std::optional<std::string> apply_startup_rules(const route_config& route,
                                               std::vector<std::pair<std::string, std::string>>& params,
                                               std::string& database) {
  const std::string cluster = route_cluster(route);
  for (auto& [name, value] : params) {
    const std::string key = setting_key(name);
    if (key.starts_with("crdb:") || key == "role" || key == "session_authorization") {
      return "startup parameter " + in_quotes(name) +
             " is not allowed through vaultwire: it would change the role or how the server authenticates this "
             "connection";
    }
    if (name == "options") {
      if (auto refused = check_options(cluster, value)) return refused;
    }
  }
  // An options parameter left empty by a dropped flag is not sent at all.
  std::erase_if(params, [](const auto& p) { return p.first == "options" && p.second.empty(); });
  if (cluster.empty()) return std::nullopt;
  auto [named, rest] = split_database(database);
  if (named.empty()) return std::nullopt;
  if (named != cluster) {
    return "database " + in_quotes(database) + " names cluster " + in_quotes(named) + ", not this route's (" + cluster +
           ")";
  }
  database = rest;
  return std::nullopt;
}

}  // namespace vaultwire::detail
