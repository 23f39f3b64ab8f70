// reload: see reload.hpp.
#include "proxy/reload.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "core/text.hpp"
#include "ops/metrics.hpp"
#include "proxy/upstream_pool.hpp"

namespace vaultwire::detail {

namespace {

spdlog::level::level_enum to_spdlog(log_level l) {
  switch (l) {
    case log_level::trace: return spdlog::level::trace;
    case log_level::debug: return spdlog::level::debug;
    case log_level::info: return spdlog::level::info;
    case log_level::warn: return spdlog::level::warn;
    case log_level::error: return spdlog::level::err;
    case log_level::off: return spdlog::level::off;
  }
  return spdlog::level::info;
}

// What differs between the running and the reloaded configuration that only a
// restart applies.
std::vector<std::string> needs_restart(const config& running, const config& next) {
  std::vector<std::string> keys;
  if (running.listeners.size() != next.listeners.size()) {
    keys.emplace_back("[[listener]] (added or removed)");
  } else {
    for (std::size_t i = 0; i < running.listeners.size(); ++i) {
      const auto& a = running.listeners[i];
      const auto& b = next.listeners[i];
      const std::string at = "listener[" + std::to_string(i) + "].";
      if (a.bind != b.bind) keys.push_back(at + "bind");
      if (a.unix_socket != b.unix_socket) keys.push_back(at + "unix_socket");
      if (a.route != b.route) keys.push_back(at + "route");
      if (a.tls() != b.tls()) keys.push_back(at + "tls_cert (TLS on or off)");
      if (a.proxy_protocol != b.proxy_protocol) keys.push_back(at + "proxy_protocol");
      if (a.client_auth != b.client_auth) keys.push_back(at + "client_auth");
      if (a.peer != b.peer) keys.push_back(at + "peer");
    }
  }
  for (const auto& [name, a] : running.routes) {
    auto it = next.routes.find(name);
    if (it == next.routes.end()) {
      keys.push_back("route." + name + " (removed)");
      continue;
    }
    const auto& b = it->second;
    if (a.host != b.host || a.port != b.port || a.server_name != b.server_name || a.sslmode != b.sslmode)
      keys.push_back("route." + name + " host, port, server_name or sslmode");
  }
  for (const auto& [name, b] : next.routes) {
    (void)b;
    if (!running.routes.contains(name)) keys.push_back("route." + name + " (added)");
  }
  if (running.vault.mount != next.vault.mount) keys.emplace_back("vault.mount");
  if (running.vault.token_file != next.vault.token_file) keys.emplace_back("vault.token_file");
  if (running.vault.auth != next.vault.auth) keys.emplace_back("[vault.auth]");
  if (running.vault.request_timeout != next.vault.request_timeout) keys.emplace_back("vault.request_timeout");
  if (running.credentials != next.credentials) keys.emplace_back("[credentials]");
  if (running.pool != next.pool) keys.emplace_back("[pool]");
  if (running.runtime.threads != next.runtime.threads) keys.emplace_back("runtime.threads");
  if (running.runtime.allow_core_dumps != next.runtime.allow_core_dumps) keys.emplace_back("runtime.allow_core_dumps");
  if (running.admin.bind != next.admin.bind) keys.emplace_back("admin.bind");
  if (running.fleet != next.fleet) keys.emplace_back("[fleet]");
  return keys;
}

bool vault_endpoint_changed(const vault_config& a, const vault_config& b) {
  return a.address != b.address || a.namespace_ != b.namespace_ || a.ca_file != b.ca_file || a.ca_path != b.ca_path ||
         a.client_cert != b.client_cert || a.client_key != b.client_key || a.tls_server_name != b.tls_server_name ||
         a.skip_verify != b.skip_verify;
}

// Every new context; false (logged) when one does not load.
bool build_contexts(const std::vector<std::unique_ptr<listener_runtime>>& listeners, prepared_reload& p) {
  const config& next = *p.next;
  p.listener_tls.resize(listeners.size());
  for (std::size_t i = 0; i < listeners.size(); ++i) {
    const auto& lc = next.listeners[i];
    if (!lc.tls()) continue;
    auto made = make_server_tls_context(lc.tls_cert->string(), lc.tls_key->string());
    if (!made) {
      reload_failed("listener " + lc.bind + ": " + made.error().message);
      return false;
    }
    p.listener_tls[i] = std::move(made).value();
  }
  p.listener_users.resize(listeners.size());
  for (std::size_t i = 0; i < listeners.size(); ++i) {
    const auto& lc = next.listeners[i];
    if (!lc.users_file) continue;
    users_file_result users = load_users_file(*lc.users_file);
    if (!users) {
      reload_failed("listener " + lc.bind + ": users_file: " + join(users.errors, "; "));
      return false;
    }
    p.listener_users[i] = std::make_shared<const local_users>(std::move(*users.value));
  }
  for (const auto& [name, route] : next.routes) {
    if (route.sslmode == ssl_mode::disable) continue;
    auto made = make_route_tls(route);
    if (!made) {
      reload_failed("route " + name + ": " + made.error().message);
      return false;
    }
    p.route_tls[name] = std::move(made).value();
  }
  return true;
}

}  // namespace

void set_log_level(log_level level) { spdlog::set_level(to_spdlog(level)); }

result<ssl_ctx> make_route_tls(const route_config& route) {
  tls_client_context_options o;
  o.ca_file = route.ca_file ? route.ca_file->string() : "";
  o.client_cert = route.client_cert ? route.client_cert->string() : "";
  o.client_key = route.client_key ? route.client_key->string() : "";
  o.verify_peer = route.sslmode == ssl_mode::verify_full || route.sslmode == ssl_mode::verify_ca;
  auto made = make_client_tls_context(o);
  if (made && !route.ca_file) SSL_CTX_set_default_verify_paths(made.value().get());
  return made;
}

std::optional<prepared_reload> prepare_reload(const proxy_state& state,
                                              const std::vector<std::unique_ptr<listener_runtime>>& listeners,
                                              const config_reloader& load) {
  if (!load) {
    spdlog::warn("SIGHUP: reloading is not available here; ignored");
    return std::nullopt;
  }
  config_result r = load();
  for (const auto& w : r.warnings) spdlog::warn("reload: {}", w);
  if (!r.ok()) {
    for (const auto& e : r.errors) spdlog::error("reload: {}", e);
    spdlog::error("reload failed: keeping the running configuration");
    metrics::config_reload(false);
    return std::nullopt;
  }
  prepared_reload p;
  p.next = std::make_shared<const config>(std::move(*r.value));
  p.restart = needs_restart(*state.cfg, *p.next);
  const bool structural = std::any_of(p.restart.begin(), p.restart.end(), [](const std::string& k) {
    return k.starts_with("listener") || k.starts_with("[[listener]]") || k.find("(added)") != std::string::npos ||
           k.find("(removed)") != std::string::npos;
  });
  if (structural) {
    reload_failed("listeners or routes changed (" + join(p.restart, ", ") + "); restart vaultwire to apply");
    return std::nullopt;
  }
  if (!build_contexts(listeners, p)) return std::nullopt;
  p.vault_changed = vault_endpoint_changed(state.current()->vault, p.next->vault);
  return p;
}

void apply_reload(proxy_state& state, const std::vector<std::unique_ptr<listener_runtime>>& listeners,
                  prepared_reload p, const token_substitution_check* check) {
  const config& next = *p.next;
  for (std::size_t i = 0; i < listeners.size(); ++i) {
    if (p.listener_tls[i]) listeners[i]->replace_tls(std::move(p.listener_tls[i]));
    if (p.listener_users[i]) listeners[i]->replace_users(std::move(p.listener_users[i]));
  }
  for (auto& [name, ctx] : p.route_tls) state.routes.at(name)->replace_tls(std::move(ctx));
  // Vault's address, namespace and TLS: requests from now on (credentials cached under
  // the old namespace are not served for the new one: the namespace is in the key).
  try {
    state.vault->reconfigure(make_vault_client_options(next.vault));
  } catch (const std::exception& e) {  // the config loader and the check's client validated it already
    spdlog::error("reload: vault: {}; Vault settings kept", e.what());
  }
  if (state.vault_check) state.vault_check->reload_applied(p.vault_changed, check);
  if (check != nullptr && check->verdict == token_substitution::unknown) {
    spdlog::warn("reload: cannot check Vault at {} yet ({}); each new session checks it first", next.vault.address,
                 check->message);
  }
  set_log_level(next.log.level);
  state.set_current(p.next);
  if (state.pool) state.pool->close_idle("configuration reloaded");
  metrics::config_reload(true);
  spdlog::info("configuration reloaded (certificates, CA files, users files, Vault address, roles, limits, log level){}{}",
               p.restart.empty() ? "" : "; these need a restart to take effect: ", join(p.restart, ", "));
}

void reload_failed(const std::string& why) {
  spdlog::error("reload failed: {}; keeping the running configuration", why);
  metrics::config_reload(false);
}

void refuse_reload(proxy_state& state, const std::string& cause) {
  reload_failed(cause);
  if (state.vault_check) state.vault_check->reload_refused(cause);
}

}  // namespace vaultwire::detail
