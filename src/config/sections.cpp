// The section readers: one function per table of the configuration file ([vault] is in
// vault_section.cpp).
#include <grp.h>
#include <pwd.h>
#include <sys/un.h>

#include <algorithm>
#include <set>
#include <thread>

#include "config/reader.hpp"
#include "config/users_file.hpp"
#include "core/text.hpp"

namespace vaultwire::config_reader {

void read_credentials(loader& l, const toml::table* t, credentials_config& c) {
  section sec{l,
              t,
              "credentials",
              {"token_recheck", "negative_cache", "revoke_idle_after", "revoke_on_shutdown", "on_revoke",
               "revoke_grace", "expiry_notice", "session_may_outlive_lease", "token_grace", "max_leases"}};
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
  // A bound, never off: a revoked token's open transaction must end (use on_revoke =
  // "ignore" to let sessions run).
  if (auto d = sec.get_duration("revoke_grace")) c.revoke_grace = **d;
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

namespace {

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

// route.NAME.roles: the Vault roles clients may ask for, at least one, no '/'.
void read_route_roles(loader& l, section& sec, route_config& r) {
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
}

route_config read_route(loader& l, const std::string& name, const toml::table* t) {
  route_config r;
  r.name = name;
  section sec{l,
              t,
              "route." + name,
              {"host", "port", "server_name", "ca_file", "sslmode", "allow_insecure_upstream",
               "client_cert", "client_key", "roles", "options", "database_prefix",
               "default_database", "session_role", "scram_max_iterations"}};
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

  read_route_roles(l, sec, r);
  r.options = sec.get_string("options");
  r.database_prefix = sec.get_nonempty_string("database_prefix");
  r.default_database = sec.get_nonempty_string("default_database");
  r.session_role = sec.get_nonempty_string("session_role");
  if (r.session_role && r.session_role->find('\0') != std::string::npos) {
    l.error(sec.key("session_role"), "must not contain NUL");
  }
  // Above 2^31-1 OpenSSL's PBKDF2 cannot count; 4096 is PostgreSQL's default.
  if (auto n = sec.get_integer("scram_max_iterations", 4096, 0x7fffffff)) {
    r.scram_max_iterations = static_cast<std::uint32_t>(*n);
  }
  sec.finish();
  return r;
}

// A user or group name resolved now (getpwnam_r / getgrnam_r): the kernel reports
// numbers, and a name that does not resolve is a typo to catch at start.
std::optional<std::uint32_t> resolve_user(const std::string& name) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) return std::nullopt;
  return static_cast<std::uint32_t>(found->pw_uid);
}

std::optional<std::uint32_t> resolve_group(const std::string& name) {
  std::vector<char> buf(16384);
  group gr{};
  group* found = nullptr;
  if (::getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found) != 0 || found == nullptr) return std::nullopt;
  return static_cast<std::uint32_t>(found->gr_gid);
}

// One [[listener.peer]]: exactly one of uid, user, gid, group, and the roles (checked
// against the route later, in check_listeners, once the routes are known).
peer_rule read_peer_rule(loader& l, const std::string& prefix, const toml::table* t) {
  peer_rule r;
  section sec{l, t, prefix, {"uid", "user", "gid", "group", "roles"}};
  int given = 0;
  for (std::string_view k : {"uid", "user", "gid", "group"}) given += sec.get(k) != nullptr ? 1 : 0;
  if (given != 1) {
    l.error(prefix, given == 0 ? "set one of uid, user, gid or group (the local identity this rule admits)"
                               : "set only one of uid, user, gid or group");
  }
  if (auto v = sec.get_integer("uid", 0, 0xfffffffe)) r.uid = static_cast<std::uint32_t>(*v);
  if (auto v = sec.get_integer("gid", 0, 0xfffffffe)) r.gid = static_cast<std::uint32_t>(*v);
  if (auto u = sec.get_nonempty_string("user")) {
    if (auto id = resolve_user(*u))
      r.uid = *id;
    else
      l.error(sec.key("user"), "no local user named " + in_quotes(*u));
  }
  if (auto g = sec.get_nonempty_string("group")) {
    if (auto id = resolve_group(*g))
      r.gid = *id;
    else
      l.error(sec.key("group"), "no local group named " + in_quotes(*g));
  }
  if (const toml::node* n = sec.get("roles")) {
    if (const auto* arr = n->as_array()) {
      for (std::size_t i = 0; i < arr->size(); ++i) {
        const toml::node& el = *arr->get(i);
        const auto* s = el.as_string();
        if (s == nullptr || s->get().empty())
          l.error(sec.key("roles") + "[" + std::to_string(i) + "]", "expected a role name (a non-empty string)");
        else if (std::find(r.roles.begin(), r.roles.end(), s->get()) == r.roles.end())
          r.roles.push_back(s->get());
      }
      if (arr->size() == 0) l.error(sec.key("roles"), "must list at least one role");
    } else {
      sec.wrong_type("roles", "an array of strings", *n);
    }
  } else {
    l.error(sec.key("roles"), "required (the roles this local identity may ask for)");
  }
  sec.finish();
  return r;
}

// [[listener.peer]]: only on a peer listener, which needs at least one.
void read_peer_rules(loader& l, section& sec, listener_config& c) {
  const toml::node* n = sec.get("peer");
  if (n == nullptr) {
    if (c.client_auth == client_auth_mode::peer)
      l.error(sec.key("peer"), "client_auth = \"peer\" needs at least one [[listener.peer]] rule");
    return;
  }
  const auto* arr = n->as_array();
  if (arr == nullptr || !arr->is_array_of_tables()) {
    sec.wrong_type("peer", "an array of tables ([[listener.peer]])", *n);
    return;
  }
  if (c.client_auth != client_auth_mode::peer) {
    l.error(sec.key("peer"), "[[listener.peer]] rules apply only with client_auth = \"peer\"");
    return;
  }
  for (std::size_t i = 0; i < arr->size(); ++i)
    c.peer.push_back(read_peer_rule(l, sec.key("peer") + "[" + std::to_string(i) + "]", arr->get(i)->as_table()));
}

// client_auth and what goes with it: [[listener.peer]] rules, users_file.
void read_client_auth(loader& l, section& sec, listener_config& c) {
  if (auto a = sec.get_string("client_auth")) {
    if (auto m = parse_enum(*a, client_auth_modes)) {
      c.client_auth = *m;
    } else {
      l.error(sec.key("client_auth"), in_quotes(*a) + " is not one of " + enum_names(client_auth_modes));
    }
  }
  read_peer_rules(l, sec, c);
  if (auto u = sec.get_nonempty_string("users_file")) {
    if (c.client_auth == client_auth_mode::password)
      c.users_file = l.resolve(*u);
    else
      l.error(sec.key("users_file"), "applies only with client_auth = \"password\"");
  } else if (c.client_auth == client_auth_mode::password && sec.get("users_file") == nullptr) {
    l.error(sec.key("users_file"), "required with client_auth = \"password\" (the local users and their roles)");
  }
}

listener_config read_listener(loader& l, std::size_t index, const toml::table* t,
                              const config_overrides& o, bool overridable) {
  listener_config c;
  section sec{l,
              t,
              "listener[" + std::to_string(index) + "]",
              {"bind", "unix_socket", "tls_cert", "tls_key", "route", "allow_plaintext_remote", "proxy_protocol",
               "client_auth", "peer", "users_file"}};
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
  read_client_auth(l, sec, c);

  const bool plaintext = sec.get("tls_cert") == nullptr && sec.get("tls_key") == nullptr;
  const bool loopback = addr ? addr->loopback : true;  // the default bind is loopback
  // A SCRAM exchange seen on the wire lets its observer test guesses offline (RFC 5802
  // section 9), so passwords are taken only where nobody else can watch: the unix
  // socket, loopback, or TLS.
  if (c.client_auth == client_auth_mode::password && plaintext && !loopback) {
    l.error(bind_label, "client_auth = \"password\" on " + c.bind +
                            " without TLS: a password exchange on the network could be watched and guessed "
                            "offline; bind to loopback or set tls_cert and tls_key");
  }
  if (plaintext && !loopback && !c.allow_plaintext_remote) {
    l.error(bind_label, "plaintext listener on non-loopback address " + c.bind +
                            ": a client's Vault token would cross the network in clear; "
                            "set tls_cert and tls_key, or allow_plaintext_remote = true");
  }
  sec.finish();
  return c;
}

}  // namespace

void read_routes(loader& l, section& top, config& c) {
  if (const toml::table* routes = top.get_table("route")) {
    for (auto&& [k, v] : *routes) {
      const std::string name{k.str()};
      if (!is_route_name(name)) {
        l.error("route." + in_quotes(name), "a route name uses only letters, digits, '_' and '-'");
        continue;
      }
      if (const auto* t = v.as_table())
        c.routes.emplace(name, read_route(l, name, t));
      else
        l.error("route." + name, "expected a table ([route." + name + "]), got " + std::string{type_name(v.type())});
    }
  }
  const toml::node* route_node = top.get("route");
  if (route_node == nullptr || (route_node->is_table() && route_node->as_table()->empty()))
    l.error("route", "at least one [route.NAME] is required");
}

namespace {

// A peer listener: a unix socket to identify clients on, a token of vaultwire's own
// to read credentials with, and rules whose roles the route allows.
void check_peer_listener(loader& l, const config& c, const listener_config& li, const std::string& prefix) {
  if (li.client_auth != client_auth_mode::peer) return;
  if (!li.unix_socket)
    l.error(prefix + ".client_auth", "\"peer\" needs unix_socket: peer credentials exist only on a unix socket");
  if (c.vault.auth.method == vault_auth_method::none)
    l.error(prefix + ".client_auth",
            "\"peer\" needs a Vault token of vaultwire's own to read credentials with: set a [vault.auth] "
            "login method or [vault] token_file");
  const auto route = c.routes.find(li.route);
  if (route == c.routes.end()) return;
  const auto& allowed = route->second.roles;
  for (std::size_t r = 0; r < li.peer.size(); ++r) {
    for (const auto& role : li.peer[r].roles) {
      if (std::find(allowed.begin(), allowed.end(), role) == allowed.end())
        l.error(prefix + ".peer[" + std::to_string(r) + "].roles",
                in_quotes(role) + " is not one of route." + li.route + ".roles (" + join(allowed, ", ") + ")");
    }
  }
}

// A password listener: its users file loads (mode 0600 or stricter, every line valid),
// each user's role is one the route allows, and vaultwire has a token of its own to
// read credentials with.
void check_password_listener(loader& l, const config& c, const listener_config& li, const std::string& prefix) {
  if (li.client_auth != client_auth_mode::password) return;
  if (c.vault.auth.method == vault_auth_method::none)
    l.error(prefix + ".client_auth",
            "\"password\" needs a Vault token of vaultwire's own to read credentials with: set a [vault.auth] "
            "login method or [vault] token_file");
  if (!li.users_file) return;
  users_file_result users = load_users_file(*li.users_file);
  for (const auto& e : users.errors) l.error(prefix + ".users_file", e);
  if (!users) return;
  const auto route = c.routes.find(li.route);
  if (route == c.routes.end()) return;
  const auto& allowed = route->second.roles;
  for (const auto& [name, user] : *users.value) {
    if (std::find(allowed.begin(), allowed.end(), user.role) == allowed.end())
      l.error(prefix + ".users_file",
              li.users_file->string() + ":" + std::to_string(user.line) + ": user " + in_quotes(name) + "'s role " +
                  in_quotes(user.role) + " is not one of route." + li.route + ".roles (" + join(allowed, ", ") + ")");
  }
}

// Each listener's route exists; no two listeners on one address.
void check_listeners(loader& l, const config& c) {
  std::vector<std::string> route_names;
  for (const auto& [name, r] : c.routes) route_names.push_back(name);
  for (std::size_t i = 0; i < c.listeners.size(); ++i) {
    const auto& li = c.listeners[i];
    const std::string prefix = "listener[" + std::to_string(i) + "]";
    if (!li.route.empty() && c.routes.find(li.route) == c.routes.end()) {
      l.error(prefix + ".route", "no route named " + in_quotes(li.route) +
                                     (route_names.empty() ? std::string{" (no [route.NAME] is defined)"}
                                                          : " (defined: " + join(route_names, ", ") + ")"));
    }
    check_peer_listener(l, c, li, prefix);
    check_password_listener(l, c, li, prefix);
    for (std::size_t j = 0; j < i; ++j) {
      if (c.listeners[j].bind == li.bind)
        l.error(prefix + ".bind", li.bind + " is already used by listener[" + std::to_string(j) + "]");
    }
  }
}

}  // namespace

void read_listeners(loader& l, section& top, const config_overrides& o, config& c) {
  if (const toml::node* n = top.get("listener")) {
    const auto* arr = n->as_array();
    if (arr != nullptr && arr->empty()) {
      l.error("listener", "at least one [[listener]] is required");
    } else if (arr == nullptr || !arr->is_array_of_tables()) {
      top.wrong_type("listener", "an array of tables ([[listener]])", *n);
    } else {
      if (o.listen && arr->size() > 1)
        l.error("--listen", "applies to a single [[listener]]; the file has " + std::to_string(arr->size()));
      for (std::size_t i = 0; i < arr->size(); ++i)
        c.listeners.push_back(read_listener(l, i, arr->get(i)->as_table(), o, arr->size() == 1));
    }
  } else {
    l.error("listener", "at least one [[listener]] is required");
  }
  check_listeners(l, c);
}

namespace {

// [limits] max_connections_per_role: role = N; each role must be one a route allows
// (a typo would cap nothing).
void read_role_caps(loader& l, section& sec, const config& c, limits_config& lim) {
  const toml::table* caps = sec.get_table("max_connections_per_role");
  if (caps == nullptr) return;
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

}  // namespace

void read_limits(loader& l, section& top, config& c) {
  section sec{l,
              top.get_table("limits"),
              "limits",
              {"max_client_connections", "startup_timeout", "upstream_connect_timeout", "tcp_keepalive",
               "client_idle_timeout", "max_session_lifetime", "max_connections_per_role"}};
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
  read_role_caps(l, sec, c, lim);
  sec.finish();
}

void read_throttle(loader& l, section& top, throttle_config& th) {
  section sec{l, top.get_table("throttle"), "throttle", {"base_delay", "max_delay"}};
  if (auto d = sec.get_duration("base_delay", true)) th.base_delay = *d;
  if (auto d = sec.get_duration("max_delay")) th.max_delay = **d;
  if (th.base_delay && *th.base_delay > th.max_delay)
    l.error(sec.key("base_delay"), detail::duration_text(*th.base_delay) + " is more than max_delay (" +
                                       detail::duration_text(th.max_delay) + ")");
  sec.finish();
}

void read_log(loader& l, section& top, const config_overrides& o, log_config& lg) {
  section sec{l, top.get_table("log"), "log", {"level", "format"}};
  // The file's value is checked even when --log-level replaces it.
  auto set_level = [&](const std::string& label, const std::string& value) {
    if (auto v = parse_enum(value, log_levels))
      lg.level = *v;
    else
      l.error(label, in_quotes(value) + " is not one of " + enum_names(log_levels));
  };
  if (auto level = sec.get_string("level")) set_level(sec.key("level"), *level);
  if (o.log_level) set_level("--log-level", *o.log_level);
  if (auto f = sec.get_string("format")) {
    if (auto v = parse_enum(*f, log_formats))
      lg.format = *v;
    else
      l.error(sec.key("format"), in_quotes(*f) + " is not one of " + enum_names(log_formats));
  }
  sec.finish();
}

void read_runtime(loader& l, section& top, const config_overrides& o, runtime_config& rt) {
  section sec{l, top.get_table("runtime"), "runtime", {"threads", "shutdown_grace", "allow_core_dumps"}};
  if (auto d = sec.get_duration("shutdown_grace")) rt.shutdown_grace = **d;
  if (auto b = sec.get_bool("allow_core_dumps")) rt.allow_core_dumps = *b;
  rt.threads = std::max(1u, std::thread::hardware_concurrency());
  if (auto t = sec.get_integer("threads", 1, max_threads)) rt.threads = static_cast<unsigned>(*t);
  if (o.threads) {
    if (*o.threads < 1 || *o.threads > max_threads)
      l.error("--threads",
              std::to_string(*o.threads) + " is out of range (1-" + std::to_string(max_threads) + ")");
    else
      rt.threads = static_cast<unsigned>(*o.threads);
  }
  sec.finish();
}

void read_admin(loader& l, section& top, admin_config& a) {
  section sec{l, top.get_table("admin"), "admin", {"bind", "readiness_timeout"}};
  if (auto b = sec.get_string("bind")) {
    if (b->empty()) {
      a.enabled = false;
      a.bind.clear();
    } else if (auto addr = parse_bind(*b)) {
      a.host = addr->host;
      a.port = addr->port;
      a.bind = addr->ipv6 ? "[" + addr->host + "]:" + std::to_string(addr->port)
                          : addr->host + ":" + std::to_string(addr->port);
    } else {
      l.error(sec.key("bind"), in_quotes(*b) + " is not an IP address and port (e.g. 127.0.0.1:9187), or \"\" for none");
    }
  }
  if (auto t = sec.get_duration("readiness_timeout")) a.readiness_timeout = **t;
  sec.finish();
}

void read_audit(loader& l, section& top, audit_config& a) {
  section sec{l, top.get_table("audit"), "audit", {"file"}};
  if (auto f = sec.get_nonempty_string("file")) {
    const fs::path p = fs::absolute(l.resolve(*f));
    if (!fs::is_directory(p.parent_path()))
      l.error(sec.key("file"), in_quotes(*f) + ": the directory does not exist");
    else
      a.file = p;
  }
  sec.finish();
}

}  // namespace vaultwire::config_reader
