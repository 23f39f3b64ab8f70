#include "vaultwire/server.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <csignal>
#include <map>
#include <filesystem>
#include <thread>

#include <boost/asio/signal_set.hpp>

#include "net/listener.hpp"
#include "ops/admin.hpp"
#include "ops/metrics.hpp"
#include "proxy/proxy.hpp"
#include "proxy/upstream_pool.hpp"
#include "vaultwire/version.hpp"

namespace vaultwire {

namespace net = boost::asio;
using detail::listener_runtime;
using detail::proxy_state;
using detail::stream;

namespace {

// Sessions run on `threads` single-threaded io_contexts, one thread each; a session
// stays on the context it was accepted onto, so its reads, writes and timers never
// hop between threads (a cross-core wake-up costs tens of microseconds on every
// round trip, and a shared reactor hands each readiness event to another thread).
// TCP acceptors run on the session threads too (net/listener); unix socket acceptors,
// the admin listener, signals and timers run on the control context.
class session_threads {
 public:
  explicit session_threads(unsigned n) {
    for (unsigned i = 0; i < n; ++i) {
      contexts_.push_back(std::make_unique<net::io_context>(1));
      guards_.emplace_back(contexts_.back()->get_executor());
    }
  }
  // For the listeners: one acceptor per context (TCP), or each in turn (unix).
  [[nodiscard]] std::vector<net::io_context*> contexts() const {
    std::vector<net::io_context*> all;
    for (const auto& c : contexts_) all.push_back(c.get());
    return all;
  }
  void start() {
    for (auto& c : contexts_) threads_.emplace_back([ctx = c.get()] { ctx->run(); });
  }
  // Each thread returns once its sessions have finished (or at once with `now`).
  void join(bool now) {
    guards_.clear();
    if (now) {
      for (auto& c : contexts_) c->stop();
    }
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  std::vector<std::unique_ptr<net::io_context>> contexts_;
  std::vector<net::executor_work_guard<net::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
};

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

// The TLS context towards a route's cluster: its CA (or the system store), its
// client certificate. Empty with `error` set on failure.
result<detail::ssl_ctx> make_route_tls(const route_config& route) {
  detail::tls_client_context_options o;
  o.ca_file = route.ca_file ? route.ca_file->string() : "";
  o.client_cert = route.client_cert ? route.client_cert->string() : "";
  o.client_key = route.client_key ? route.client_key->string() : "";
  o.verify_peer = route.sslmode == ssl_mode::verify_full || route.sslmode == ssl_mode::verify_ca;
  auto made = detail::make_client_tls_context(o);
  if (made && !route.ca_file) SSL_CTX_set_default_verify_paths(made.value().get());
  return made;
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
  if (running.vault.request_timeout != next.vault.request_timeout) keys.emplace_back("vault.request_timeout");
  if (running.credentials != next.credentials) keys.emplace_back("[credentials]");
  if (running.pool != next.pool) keys.emplace_back("[pool]");
  if (running.runtime.threads != next.runtime.threads) keys.emplace_back("runtime.threads");
  if (running.runtime.allow_core_dumps != next.runtime.allow_core_dumps) keys.emplace_back("runtime.allow_core_dumps");
  if (running.admin.bind != next.admin.bind) keys.emplace_back("admin.bind");
  return keys;
}

// SIGHUP. All-or-nothing for what it applies: every new TLS context is built before
// any is swapped in.
void reload(detail::proxy_state& state, const std::vector<std::unique_ptr<listener_runtime>>& listeners,
            const config_reloader& load) {
  if (!load) {
    spdlog::warn("SIGHUP: reloading is not available here; ignored");
    return;
  }
  const config_result r = load();
  for (const auto& w : r.warnings) spdlog::warn("reload: {}", w);
  if (!r.ok()) {
    for (const auto& e : r.errors) spdlog::error("reload: {}", e);
    spdlog::error("reload failed: keeping the running configuration");
    metrics::config_reload(false);
    return;
  }
  const config& next = *r.value;
  const std::vector<std::string> restart = needs_restart(*state.cfg, next);
  const bool structural = std::any_of(restart.begin(), restart.end(), [](const std::string& k) {
    return k.starts_with("listener") || k.starts_with("[[listener]]") || k.find("(added)") != std::string::npos ||
           k.find("(removed)") != std::string::npos;
  });
  if (structural) {
    std::string all;
    for (const auto& k : restart) all += (all.empty() ? "" : ", ") + k;
    spdlog::error("reload failed: listeners or routes changed ({}); restart vaultwire to apply; keeping the "
                  "running configuration",
                  all);
    metrics::config_reload(false);
    return;
  }

  // Every new context first; nothing is replaced unless all of them load.
  std::vector<detail::ssl_ctx> listener_tls(listeners.size());
  std::map<std::string, detail::ssl_ctx> route_tls;
  for (std::size_t i = 0; i < listeners.size(); ++i) {
    const auto& lc = next.listeners[i];
    if (!lc.tls()) continue;
    auto made = detail::make_server_tls_context(lc.tls_cert->string(), lc.tls_key->string());
    if (!made) {
      spdlog::error("reload failed: listener {}: {}; keeping the running configuration", lc.bind,
                    made.error().message);
      metrics::config_reload(false);
      return;
    }
    listener_tls[i] = std::move(made).value();
  }
  for (const auto& [name, route] : next.routes) {
    if (route.sslmode == ssl_mode::disable) continue;
    auto made = make_route_tls(route);
    if (!made) {
      spdlog::error("reload failed: route {}: {}; keeping the running configuration", name, made.error().message);
      metrics::config_reload(false);
      return;
    }
    route_tls[name] = std::move(made).value();
  }

  for (std::size_t i = 0; i < listeners.size(); ++i) {
    if (listener_tls[i]) listeners[i]->replace_tls(std::move(listener_tls[i]));
  }
  for (auto& [name, ctx] : route_tls) state.routes.at(name)->replace_tls(std::move(ctx));
  // Vault's address, namespace and CA: requests from now on (credentials cached under
  // the old namespace are not served for the new one: the namespace is in the key).
  try {
    state.vault->reconfigure(next.vault.address, next.vault.namespace_.value_or(""),
                             next.vault.ca_file ? next.vault.ca_file->string() : "");
  } catch (const std::exception& e) {  // the config loader validated it already
    spdlog::error("reload: vault.address: {}; Vault settings kept", e.what());
  }
  spdlog::set_level(to_spdlog(next.log.level));
  state.set_current(std::make_shared<const config>(next));
  if (state.pool) state.pool->close_idle("configuration reloaded");
  metrics::config_reload(true);
  std::string all;
  for (const auto& k : restart) all += (all.empty() ? "" : ", ") + k;
  spdlog::info("configuration reloaded (certificates, CA files, Vault address, roles, limits, log level){}{}",
               restart.empty() ? "" : "; these need a restart to take effect: ", all);
}

// One line of counters at shutdown, for operators and tests.
void log_stats(const proxy_state& state) {
  const broker_stats b = state.broker->stats();
  const detail::upstream_pool::stats_t pool = state.pool ? state.pool->stats() : detail::upstream_pool::stats_t{};
  spdlog::info(
      "stats: acquires={} cache_hits={} vault_fetches={} single_flight_joins={} negative_cache_hits={} "
      "budget_refusals={} token_rechecks={} rechecks_in_grace={} tokens_revoked={} renewals={} renewal_failures={} "
      "renewal_retries={} role_denials={} quota_holds={} revokes={} revoke_denied={} revoke_failures={} live_leases={} scram_keys_derived={} upstream_logins={} "
      "upstream_reuses={} pool_checkins={} pool_discards={}",
      b.acquires, b.cache_hits, b.vault_fetches, b.single_flight_joins, b.negative_cache_hits, b.budget_refusals,
      b.token_rechecks, b.rechecks_in_grace, b.tokens_revoked, b.renewals, b.renewal_failures,
      b.renewal_retries, b.role_denials, b.quota_holds, b.revokes,
      b.revoke_denied, b.revoke_failures, b.live_leases, detail::scram_keys_derived(), state.upstream_logins.load(),
      state.upstream_reuses.load(), pool.checkins, pool.discards);
}

// Log level and format, the banner; SIGPIPE ignored.
void start_logging(const config& cfg) {
  spdlog::set_level(to_spdlog(cfg.log.level));
  if (cfg.log.format == log_format::json) {
    spdlog::set_pattern(R"({"time":"%Y-%m-%dT%H:%M:%S.%fZ","level":"%l","message":"%v"})", spdlog::pattern_time_type::utc);
  }
  spdlog::info("{} starting", version_banner());
  // A peer that resets while OpenSSL writes (it uses write(), not send with
  // MSG_NOSIGNAL) must give EPIPE, not kill the process.
  ::signal(SIGPIPE, SIG_IGN);
}

// Every route with its TLS context towards the cluster. False (logged) when a
// context cannot be built.
bool build_routes(proxy_state& state, const config& cfg) {
  for (const auto& [name, route] : cfg.routes) {
    auto rt = std::make_unique<detail::route_runtime>();
    rt->config = route;
    if (route.sslmode != ssl_mode::verify_full) {
      spdlog::warn("route {}: sslmode = {} is weaker than verify-full (allowed by allow_insecure_upstream)", name,
                   to_string(route.sslmode));
    }
    if (route.sslmode != ssl_mode::disable) {
      auto made = make_route_tls(route);
      if (!made) {
        spdlog::error("route {}: {}", name, made.error().message);
        return false;
      }
      rt->tls = std::move(made).value();
    }
    state.routes[name] = std::move(rt);
  }
  return true;
}

// The broker's credential events as lines of the audit log, which must outlive the
// broker.
std::function<void(const credential_audit_event&)> audit_sink(detail::audit_log* audit) {
  return [audit](const credential_audit_event& c) {
    detail::audit_event e;
    e.type = c.what == credential_audit_event::kind::issue   ? detail::audit_event_type::credential_issue
             : c.what == credential_audit_event::kind::renew ? detail::audit_event_type::credential_renew
                                                             : detail::audit_event_type::credential_revoke;
    e.lease_id = c.lease_id;
    e.role = c.role;
    e.db_user = c.db_user;
    if (!c.token_accessor.empty()) e.token_accessor = c.token_accessor;
    if (!c.token_display_name.empty()) e.token_display_name = c.token_display_name;
    if (!c.entity_id.empty()) e.entity_id = c.entity_id;
    e.result = c.result;
    if (!c.reason.empty()) e.reason = c.reason;
    audit->write(e);
  };
}

// The Vault client, the audit log, the credential broker and the upstream pool.
// False (logged) when the audit file cannot be opened.
bool build_credentials(proxy_state& state, const config& cfg) {
  vault_client_options vo = make_vault_client_options(cfg.vault, std::max<std::size_t>(4, cfg.runtime.threads * 2));
  vo.observer = metrics::vault_request;
  state.vault = std::make_unique<vault_client>(vo);
  if (cfg.audit.file) {
    auto opened = detail::audit_log::open(*cfg.audit.file);
    if (!opened.log) {
      spdlog::error("[audit] file: {}", opened.message);
      return false;
    }
    state.audit = std::move(opened.log);
    spdlog::info("audit log: {}", cfg.audit.file->string());
  }
  credential_broker_options bo;
  bo.credentials = cfg.credentials;
  if (state.audit) bo.on_audit = audit_sink(state.audit.get());
  bo.token_file = cfg.vault.token_file;
  state.broker = std::make_unique<credential_broker>(vault_calls_for(*state.vault), std::move(bo));
  if (cfg.pool.reuse) {
    // A pooled connection holds its lease; it counts as a use of the lease for at most
    // revoke_idle_after, so an unused credential is still revoked on that schedule.
    pool_config pc = cfg.pool;
    pc.idle_timeout = std::min(pc.idle_timeout, cfg.credentials.revoke_idle_after);
    state.pool = std::make_shared<detail::upstream_pool>(pc);
  }
  return true;
}

// One [[listener]]: its TLS context (into `listeners`), its TCP socket and, when
// configured, its unix socket, each starting a session per connection. False
// (logged) when one cannot be opened.
bool open_listener(const std::shared_ptr<proxy_state>& state, const config& cfg, const listener_config& lc,
                   detail::listener_set& sockets, std::vector<std::unique_ptr<listener_runtime>>& listeners) {
  auto l = std::make_unique<listener_runtime>();
  l->config = &lc;
  l->route = state->routes.at(lc.route).get();
  if (lc.tls()) {
    auto made = detail::make_server_tls_context(lc.tls_cert->string(), lc.tls_key->string());
    if (!made) {
      spdlog::error("listener {}: {}", lc.bind, made.error().message);
      return false;
    }
    l->tls = std::move(made).value();
  }
  const detail::accept_handler on_accept = [state, listener = l.get()](net::io_context& context, int fd,
                                                                       std::string peer) {
    detail::start_session(state, listener, stream::descriptor(context.get_executor(), fd), std::move(peer));
  };
  listeners.push_back(std::move(l));
  const detail::tcp_listen_options tcp{lc.bind, lc.host, lc.port, lc.ipv6,
                                       std::chrono::duration_cast<std::chrono::seconds>(cfg.limits.tcp_keepalive)};
  const auto listening = sockets.listen_tcp(tcp, on_accept);
  if (!listening) {
    spdlog::error("listener {}: cannot listen: {}", lc.bind, listening.error().message);
    return false;
  }
  const std::uint16_t port = listening.value();
  spdlog::info("listening on {}:{} ({}) for route {}", lc.ipv6 ? "[" + lc.host + "]" : lc.host, port,
               lc.tls() ? "TLS or plaintext" : "plaintext", lc.route);
  if (lc.unix_socket) {
    const std::string path = (*lc.unix_socket / (".s.PGSQL." + std::to_string(port))).string();
    if (const auto r = sockets.listen_unix(path, on_accept); !r) {
      spdlog::error("listener {}: cannot listen on {}: {}", lc.bind, path, r.error().message);
      return false;
    }
    spdlog::info("listening on {}", path);
  }
  return true;
}

// Metrics read at scrape time; the admin listener (/metrics, /healthz, /readyz,
// /leases), which stops itself once a drain has ended. Null when [admin] is off.
std::unique_ptr<detail::admin_server> start_admin(net::io_context& io, const std::shared_ptr<proxy_state>& state,
                                                  const config& cfg) {
  metrics::set_sources(detail::metric_sources(state));
  std::unique_ptr<detail::admin_server> admin;
  if (cfg.admin.enabled) {
    admin = std::make_unique<detail::admin_server>(io, state);
    if (admin->start()) admin->set_listeners_up();
  }
  return admin;
}

// What the control thread does while vaultwire runs: sweeps the upstream pool,
// reloads on SIGHUP, and on SIGINT or SIGTERM stops listening and drains the
// sessions (a second signal stops at once). Every handler runs on the control
// context; io.run() returns once nothing is left to wait for.
class control_loop {
 public:
  control_loop(net::io_context& io, proxy_state& state, const config& cfg, detail::listener_set& sockets,
               const std::vector<std::unique_ptr<listener_runtime>>& listeners, const config_reloader& reload_config)
      : io_(io),
        state_(state),
        cfg_(cfg),
        sockets_(sockets),
        listeners_(listeners),
        reload_config_(reload_config),
        sweep_(io),
        hup_(io, SIGHUP),
        signals_(io, SIGINT, SIGTERM),
        drain_(io),
        grace_(io) {}

  void start() {
    on_sweep({});
    hup_.async_wait([this](const boost::system::error_code& ec, int sig) { on_hup(ec, sig); });
    signals_.async_wait([this](const boost::system::error_code& ec, int sig) { on_signal(ec, sig); });
  }
  // After a second signal: sessions are not waited for, leases not revoked.
  [[nodiscard]] bool exit_at_once() const { return exit_at_once_; }

 private:
  // Idle pooled connections past their idle timeout or near their lease's end.
  void on_sweep(const boost::system::error_code& ec) {
    if (ec || !state_.pool) return;
    state_.pool->sweep();
    sweep_.expires_after(std::chrono::seconds(1));
    sweep_.async_wait([this](const boost::system::error_code& e) { on_sweep(e); });
  }

  void on_hup(const boost::system::error_code& ec, int) {
    if (ec) return;
    spdlog::info("SIGHUP: reloading the configuration");
    if (state_.audit) {
      if (auto e = state_.audit->reopen()) spdlog::error("audit log: reopen failed: {}", e.message());
    }
    reload(state_, listeners_, reload_config_);
    hup_.async_wait([this](const boost::system::error_code& e, int sig) { on_hup(e, sig); });
  }

  void on_signal(const boost::system::error_code& ec, int sig) {
    if (ec) return;
    if (state_.stopping.exchange(true)) {
      spdlog::warn("second signal {}: stopping now; leases are left to their TTL", sig);
      exit_at_once_ = true;
      io_.stop();
      return;
    }
    spdlog::info("signal {}: no new connections; {} sessions end at their next idle point, the rest in {}ms "
                 "([runtime] shutdown_grace)",
                 sig, state_.active_clients.load(), cfg_.runtime.shutdown_grace.count());
    sockets_.stop();  // stop listening now, from here
    detail::drain_all_sessions(state_);
    grace_.expires_after(cfg_.runtime.shutdown_grace);
    grace_.async_wait([this](const boost::system::error_code& e) { on_grace_over(e); });
    sweep_.cancel();
    if (state_.pool) state_.pool->clear();
    signals_.async_wait([this](const boost::system::error_code& e, int s) { on_signal(e, s); });
    check_drained({});
  }

  // shutdown_grace: the sessions still running end now.
  void on_grace_over(const boost::system::error_code& ec) {
    if (ec || state_.active_clients.load() == 0) return;
    spdlog::info("shutdown_grace over: ending {} sessions now", state_.active_clients.load());
    detail::stop_all_sessions(state_);
  }

  // After a signal: once every session has ended, the signal waits are the only work
  // left; cancel them and io.run() returns.
  void check_drained(const boost::system::error_code& ec) {
    if (ec) return;
    if (state_.active_clients.load() == 0) {
      signals_.cancel();
      grace_.cancel();
      hup_.cancel();
      return;
    }
    drain_.expires_after(std::chrono::milliseconds(20));
    drain_.async_wait([this](const boost::system::error_code& e) { check_drained(e); });
  }

  net::io_context& io_;
  proxy_state& state_;
  const config& cfg_;
  detail::listener_set& sockets_;
  const std::vector<std::unique_ptr<listener_runtime>>& listeners_;
  const config_reloader& reload_config_;
  net::steady_timer sweep_;
  net::signal_set hup_;
  net::signal_set signals_;
  net::steady_timer drain_;
  net::steady_timer grace_;  // shutdown_grace
  bool exit_at_once_ = false;
};

// Once the threads have stopped: the pool emptied, the leases revoked (unless a
// second signal stopped vaultwire), the counters logged, the broker and the Vault
// client gone.
void shut_down(proxy_state& state, bool exit_at_once) {
  if (state.pool) state.pool->clear();  // pooled streams are bound to the workers: close them before they go
  // Every session has ended: revoke the leases (unless revoke_on_shutdown = false).
  if (!exit_at_once) {
    const std::size_t revoked = state.broker->revoke_all();
    spdlog::info("revoked {} leases at shutdown", revoked);
  }
  log_stats(state);
  metrics::clear_sources();
  state.broker.reset();
  state.vault.reset();  // waits for queued Vault calls
}

}  // namespace

int run_server(const config& cfg, config_reloader reload_config) {
  start_logging(cfg);
  auto state = std::make_shared<proxy_state>();
  state->cfg = &cfg;
  if (!build_routes(*state, cfg)) return 1;
  if (!build_credentials(*state, cfg)) return 1;
  state->crypto = std::make_unique<net::thread_pool>(std::max(1u, cfg.runtime.threads));

  net::io_context io(1);  // control: unix socket acceptors, admin, signals, timers
  session_threads workers(std::max(1u, cfg.runtime.threads));
  std::vector<std::unique_ptr<listener_runtime>> listeners;
  detail::listener_set sockets(io, workers.contexts(), state->stopping);
  for (const auto& lc : cfg.listeners) {
    if (!open_listener(state, cfg, lc, sockets, listeners)) {
      sockets.remove_unix_sockets();
      return 1;
    }
  }
  const std::unique_ptr<detail::admin_server> admin = start_admin(io, state, cfg);
  control_loop control(io, *state, cfg, sockets, listeners, reload_config);
  control.start();

  workers.start();
  io.run();
  workers.join(control.exit_at_once());
  shut_down(*state, control.exit_at_once());
  sockets.remove_unix_sockets();
  spdlog::info("stopped");
  return 0;
}

}  // namespace vaultwire
