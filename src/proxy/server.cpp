#include "vaultwire/server.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <utility>
#include <thread>

#include <boost/asio/signal_set.hpp>

#include <pgwire/scram_server.hpp>

#include "net/listener.hpp"
#include "ops/admin.hpp"
#include "ops/metrics.hpp"
#include "proxy/fleet.hpp"
#include "proxy/proxy.hpp"
#include "proxy/reload.hpp"
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
  detail::set_log_level(cfg.log.level);
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
      auto made = detail::make_route_tls(route);
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
  try {
    state.vault = std::make_unique<vault_client>(vo);
  } catch (const std::invalid_argument& e) {  // e.g. a file of vault.ca_path that is not PEM
    spdlog::error("[vault]: {}", e.what());
    return false;
  }
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
  bo.auth = cfg.vault.auth;
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
  if (lc.users_file) {
    users_file_result users = load_users_file(*lc.users_file);
    if (!users) {
      for (const auto& e : users.errors) spdlog::error("listener {}: users_file: {}", lc.bind, e);
      return false;
    }
    spdlog::info("listener {}: {} local users from {}", lc.bind, users.value->size(), lc.users_file->string());
    l->replace_users(std::make_shared<const local_users>(std::move(*users.value)));
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

// [fleet]: keys that name this instance, the kept links to the peers (on the first
// session thread) and the listener for the cancels they forward. False (logged) when a
// TLS file does not load or fleet.bind cannot be listened on.
bool open_fleet(const std::shared_ptr<proxy_state>& state, const config& cfg, detail::listener_set& sockets,
                net::io_context& links_context) {
  const fleet_config& f = cfg.fleet;
  if (!f.enabled) return true;
  state->cancels.set_instance(f.instance_id);
  detail::ssl_ctx server_tls, client_tls;
  if (f.tls()) {
    auto server = detail::make_fleet_server_tls(f);
    if (!server) {
      spdlog::error("fleet: {}", server.error().message);
      return false;
    }
    auto client = detail::make_fleet_client_tls(f);
    if (!client) {
      spdlog::error("fleet: {}", client.error().message);
      return false;
    }
    server_tls = std::move(server).value();
    client_tls = std::move(client).value();
  }
  state->fleet = std::make_shared<detail::fleet_links>(
      f, client_tls, links_context.get_executor(), cfg.limits.upstream_connect_timeout,
      std::chrono::duration_cast<std::chrono::seconds>(cfg.limits.tcp_keepalive));
  const detail::accept_handler on_accept = [state, server_tls](net::io_context& context, int fd, std::string peer) {
    detail::start_fleet_connection(state, server_tls, stream::descriptor(context.get_executor(), fd), std::move(peer));
  };
  const detail::tcp_listen_options tcp{"fleet " + f.bind, f.host, f.port, f.ipv6,
                                       std::chrono::duration_cast<std::chrono::seconds>(cfg.limits.tcp_keepalive)};
  const auto listening = sockets.listen_tcp(tcp, on_accept);
  if (!listening) {
    spdlog::error("fleet: cannot listen on {}: {}", f.bind, listening.error().message);
    return false;
  }
  spdlog::info("fleet: instance {} accepting forwarded cancels on {}:{} ({}), {} peer(s)", f.instance_id,
               f.ipv6 ? "[" + f.host + "]" : f.host, listening.value(), f.tls() ? "mutual TLS" : "plaintext, loopback",
               f.peers.size());
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
    start_reload();
    hup_.async_wait([this](const boost::system::error_code& e, int sig) { on_hup(e, sig); });
  }

  // A reload that points at another Vault waits for that Vault's answer to the
  // token-substitution check (on a client of its own, off this thread); one that does
  // not applies at once. A SIGHUP while a check is out reloads again after it.
  void start_reload() {
    if (checking_) {
      reload_again_ = true;
      return;
    }
    auto prepared = detail::prepare_reload(state_, listeners_, reload_config_);
    if (!prepared) return;
    if (!prepared->vault_changed) {
      detail::apply_reload(state_, listeners_, std::move(*prepared), nullptr);
      return;
    }
    try {
      checking_ = std::make_unique<vault_client>(make_vault_client_options(prepared->next->vault, 1));
    } catch (const std::exception& e) {
      detail::reload_failed(std::string("vault: ") + e.what());
      return;
    }
    pending_ = std::move(prepared);
    spdlog::info("reload: checking Vault at {} before applying", pending_->next->vault.address);
    request_token_substitution_check(*checking_, [this](vault_result<vault_response> r) {
      net::post(io_, [this, r = std::move(r)]() mutable { on_reload_checked(std::move(r)); });
    });
  }

  void on_reload_checked(vault_result<vault_response> r) {
    checking_.reset();  // its pool thread has posted this and returns
    detail::prepared_reload prepared = std::move(*pending_);
    pending_.reset();
    const token_substitution_check check = token_substitution_of(r, prepared.next->vault.address);
    if (check.verdict == token_substitution::present) {
      detail::refuse_reload(state_, check.message);
    } else {
      detail::apply_reload(state_, listeners_, std::move(prepared), &check);
    }
    if (std::exchange(reload_again_, false)) start_reload();
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
      if (state_.fleet) state_.fleet->stop();
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
  std::unique_ptr<vault_client> checking_;  // the new Vault's check, while a reload waits for it
  std::optional<detail::prepared_reload> pending_;
  bool reload_again_ = false;
};

// One lookup-self with a made-up token, before anything listens: a Vault that answers
// 200 replaces client tokens with its own (Vault Proxy with use_auto_auth_token =
// "force"), and vaultwire refuses to start. When Vault cannot answer now, sessions
// check it on their way in until it has (vault_guard).
bool check_vault(proxy_state& state, const config& cfg) {
  state.vault_check = std::make_shared<detail::vault_guard>();
  const token_substitution_check check = check_token_substitution_blocking(*state.vault, cfg.vault.address);
  if (check.verdict == token_substitution::present) {
    spdlog::error("vault: {}; not starting", check.message);
    return false;
  }
  state.vault_check->record(check);
  if (check.verdict == token_substitution::unknown) {
    spdlog::warn("vault: cannot check Vault at {} yet ({}); each new session checks it first", cfg.vault.address,
                 check.message);
  }
  return true;
}

// Once the threads have stopped: the pool emptied, the leases revoked (unless a
// second signal stopped vaultwire), the counters logged, the broker and the Vault
// client gone.
void shut_down(proxy_state& state, bool exit_at_once) {
  if (state.pool) state.pool->clear();  // pooled streams are bound to the workers: close them before they go
  state.fleet.reset();                   // so are the fleet's strands and kept connections
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
  if (!check_vault(*state, cfg)) return 1;
  state->crypto = std::make_unique<net::thread_pool>(std::max(1u, cfg.runtime.threads));
  if (auto secret = pgwire::make_scram_mock_secret()) {
    state->scram_mock_secret = std::move(secret).value();
  } else {
    spdlog::error("cannot make the secret for mock SCRAM exchanges: {}", secret.error().message());
    return 1;
  }

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
  if (!open_fleet(state, cfg, sockets, *workers.contexts().front())) {
    sockets.remove_unix_sockets();
    return 1;
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
