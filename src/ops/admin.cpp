// The admin HTTP listener: see admin.hpp.
#include "ops/admin.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <mutex>
#include <set>
#include <string_view>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "core/text.hpp"
#include "ops/metrics.hpp"
#include "proxy/proxy.hpp"
#include "proxy/upstream_pool.hpp"
#include "net/asio.hpp"

namespace vaultwire::detail {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using net::ip::tcp;
using namespace std::chrono_literals;

namespace {

constexpr std::size_t max_request = 8 * 1024;  // request line and headers; no body
constexpr std::size_t max_connections = 64;
constexpr auto io_timeout = 5s;
constexpr auto tick = 100ms;  // drain watch

// What /readyz knows about Vault, from the last sys/health answer.
struct vault_health {
  bool known = false;
  bool ok = false;
  std::string reason;  // why not ok; never contains a secret (Vault's address and status only)
};

vault_health health_from(const vault_result<vault_response>& r, const std::string& address) {
  vault_health h;
  h.known = true;
  if (r) {
    h.ok = true;
    return h;
  }
  const vault_error& e = r.error();
  switch (e.http_status) {
    case 503: h.reason = "Vault at " + address + " is sealed"; break;
    case 501: h.reason = "Vault at " + address + " is not initialized"; break;
    case 0: h.reason = "Vault at " + address + " is unreachable: " + e.message; break;
    default:
      h.reason = "Vault at " + address + " is not ready: sys/health answered HTTP " + std::to_string(e.http_status);
  }
  return h;
}

}  // namespace

struct admin_server::impl : std::enable_shared_from_this<impl> {
  impl(net::io_context& io, std::shared_ptr<proxy_state> s)
      : state(std::move(s)), strand(net::make_strand(io)), acceptor(strand), timer(strand) {}

  std::shared_ptr<proxy_state> state;
  net::strand<net::io_context::executor_type> strand;
  tcp::acceptor acceptor;
  net::steady_timer timer;
  std::string url;  // http://host:port, for logs
  std::atomic<bool> listeners_up{false};

  // On the strand only.
  bool stopped = false;
  std::set<beast::tcp_stream*> connections;

  // On the strand only: the last sys/health answer, how many there were, whether a
  // request is out, and the probes waiting for it.
  vault_health health;
  std::uint64_t health_answers = 0;
  bool health_in_flight = false;
  std::set<net::steady_timer*> health_waiters;

  // Asks Vault's sys/health unless a request is already out (probes share it). The
  // answer comes back on the Vault client's thread and is handed to the strand.
  void check_health() {
    if (!state->vault || health_in_flight) return;
    health_in_flight = true;
    std::weak_ptr<impl> weak = weak_from_this();
    const std::string address = state->vault->options().address;
    state->vault->request("GET", "sys/health?standbyok=true&perfstandbyok=true", "", pgwire::secret_string(),
                          [weak, address](vault_result<vault_response> r) {
                            if (auto self = weak.lock()) self->post_health(health_from(r, address));
                          });
  }

  void post_health(vault_health h) {
    net::post(strand, [self = shared_from_this(), h = std::move(h)]() mutable { self->on_health(std::move(h)); });
  }

  void on_health(vault_health h) {
    if (health.ok != h.ok || health.reason != h.reason) {
      if (h.ok) {
        spdlog::info("admin: Vault is ready");
      } else {
        spdlog::warn("admin: not ready: {}", h.reason);
      }
    }
    health = std::move(h);
    ++health_answers;
    health_in_flight = false;
    for (auto* w : health_waiters) w->cancel();
  }

  void stop_on_strand() {
    if (stopped) return;
    stopped = true;
    boost::system::error_code ignored;
    acceptor.close(ignored);
    timer.cancel();
    const auto open = connections;  // each erases itself when its coroutine resumes
    for (auto* c : open) c->close();
    spdlog::debug("admin: stopped");
  }

  // Vault's present state for /readyz: an answer to a sys/health request sent for this
  // probe (or one already out when it came), waited for at most readiness_timeout.
  // False when none came in time.
  net::awaitable<bool> refresh_health() {
    const std::uint64_t seen = health_answers;
    check_health();
    if (health_answers == seen && state->vault) {
      net::steady_timer wait(strand, state->cfg->admin.readiness_timeout);
      health_waiters.insert(&wait);
      boost::system::error_code ec;
      co_await wait.async_wait(net::redirect_error(net::use_awaitable, ec));
      health_waiters.erase(&wait);
    }
    co_return health_answers > seen;
  }

  // 200 "ready", or 503 with the first reason it is not: draining, listeners not up,
  // Vault's sys/health (asked for this probe; `answered` false when it did not answer
  // within readiness_timeout), no valid token of vaultwire's own while a [vault.auth]
  // login method is configured, the broker's circuit breaker.
  std::pair<http::status, std::string> readiness(bool answered) {
    if (state->stopping.load()) return {http::status::service_unavailable, "draining: vaultwire is shutting down"};
    if (!listeners_up.load()) return {http::status::service_unavailable, "listeners are not up yet"};
    const auto& guard = state->vault_check;
    if (guard) {
      if (std::string why = guard->reload_refusal(); !why.empty()) return {http::status::service_unavailable, why};
    }
    if (!answered) {
      return {http::status::service_unavailable,
              "Vault at " + state->vault->options().address + " did not answer sys/health within " +
                  duration_text(state->cfg->admin.readiness_timeout) + " (admin.readiness_timeout)"};
    }
    if (!health.ok) return {http::status::service_unavailable, health.reason};
    if (guard && !guard->verified()) {
      guard->check_in_background(*state->vault, state->current()->vault.address);
      return {http::status::service_unavailable, guard->unverified_reason()};
    }
    if (state->broker) {
      if (std::string why = state->broker->own_token_problem(); !why.empty())
        return {http::status::service_unavailable, "vaultwire holds no valid Vault token: " + why};
    }
    if (state->broker && state->broker->stats().breaker_open) {
      return {http::status::service_unavailable, "Vault at " + state->vault->options().address +
                                                     " is unreachable (circuit breaker open)"};
    }
    return {http::status::ok, "ready"};
  }

  std::string leases_json() const {
    nlohmann::json list = nlohmann::json::array();
    if (state->broker) {
      for (const lease_info& l : state->broker->leases()) {
        nlohmann::json j;
        j["lease_id"] = l.lease_id;
        j["role"] = l.role;
        j["mount"] = l.mount;
        j["ttl_left_seconds"] = l.ttl_left.count();
        j["duration_seconds"] = l.duration.count();
        j["renewable"] = l.renewable;
        j["cached"] = l.cached;
        j["at_max_ttl"] = l.at_max_ttl;
        j["revoke_denied"] = l.revoke_denied;
        j["sessions"] = l.sessions;
        j["token_accessor"] = l.token_accessor.empty() ? nlohmann::json(nullptr) : nlohmann::json(l.token_accessor);
        j["token_sha256_prefix"] = l.token_sha256_prefix;
        list.push_back(std::move(j));
      }
    }
    nlohmann::json body;
    body["count"] = list.size();
    body["leases"] = std::move(list);
    return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }

  // `answered`: for /readyz, whether Vault's sys/health answered (refresh_health).
  http::response<http::string_body> handle(const http::request<http::empty_body>& req, bool answered) {
    http::response<http::string_body> res{http::status::ok, req.version()};
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    std::string_view target(req.target().data(), req.target().size());
    if (const auto q = target.find('?'); q != std::string_view::npos) target = target.substr(0, q);
    const bool known = target == "/metrics" || target == "/healthz" || target == "/readyz" || target == "/leases";
    if (!known) {
      res.result(http::status::not_found);
      res.body() = "not found: try /metrics, /healthz, /readyz or /leases\n";
      return res;
    }
    if (req.method() != http::verb::get) {
      res.result(http::status::method_not_allowed);
      res.set(http::field::allow, "GET");
      res.body() = "method not allowed: GET only\n";
      return res;
    }
    try {
      if (target == "/metrics") {
        res.set(http::field::content_type, std::string(metrics::content_type));
        res.body() = metrics::scrape();
      } else if (target == "/healthz") {
        res.body() = "ok\n";
      } else if (target == "/readyz") {
        auto [status, text] = readiness(answered);
        res.result(status);
        res.body() = text + "\n";
      } else {
        res.set(http::field::content_type, "application/json");
        res.body() = leases_json();
      }
    } catch (const std::exception& e) {
      spdlog::error("admin: {} failed: {}", target, e.what());
      res.result(http::status::internal_server_error);
      res.set(http::field::content_type, "text/plain; charset=utf-8");
      res.body() = "internal error\n";
    }
    return res;
  }
};

namespace {

using impl_ptr = std::shared_ptr<admin_server::impl>;

void log_exception(std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    spdlog::error("admin: a connection failed with an exception (a bug): {}", ex.what());
  } catch (...) {
    spdlog::error("admin: a connection failed with an exception (a bug)");
  }
}

net::awaitable<void> serve(impl_ptr self, tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  self->connections.insert(&stream);
  struct unregister {
    admin_server::impl* self;
    beast::tcp_stream* stream;
    ~unregister() { self->connections.erase(stream); }
  } on_exit{self.get(), &stream};

  beast::flat_buffer buffer(max_request);
  http::request_parser<http::empty_body> parser;
  parser.header_limit(max_request);
  boost::system::error_code ec;
  stream.expires_after(io_timeout);
  co_await http::async_read(stream, buffer, parser, net::redirect_error(net::use_awaitable, ec));
  if (self->stopped) co_return;
  http::response<http::string_body> res;
  if (ec) {
    if (ec == http::error::end_of_stream || ec == beast::error::timeout || ec == net::error::operation_aborted ||
        ec == net::error::connection_reset) {
      co_return;
    }
    res = http::response<http::string_body>{http::status::bad_request, 11};
    res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = "bad request: " + ec.message() + "\n";
    spdlog::debug("admin: bad request: {}", ec.message());
  } else {
    bool answered = false;
    if (parser.get().target().starts_with("/readyz") && parser.get().method() == http::verb::get) {
      answered = co_await self->refresh_health();
      if (self->stopped) co_return;
    }
    res = self->handle(parser.get(), answered);
    spdlog::debug("admin: {} {} -> {}", std::string_view(parser.get().method_string().data(),
                                                         parser.get().method_string().size()),
                  std::string_view(parser.get().target().data(), parser.get().target().size()),
                  static_cast<unsigned>(res.result_int()));
  }
  res.set(http::field::server, "vaultwire");
  res.keep_alive(false);
  res.prepare_payload();
  stream.expires_after(io_timeout);
  co_await http::async_write(stream, res, net::redirect_error(net::use_awaitable, ec));
  stream.socket().shutdown(tcp::socket::shutdown_send, ec);
}

net::awaitable<void> accept_loop(impl_ptr self) {
  for (;;) {
    boost::system::error_code ec;
    tcp::socket socket = co_await self->acceptor.async_accept(net::redirect_error(net::use_awaitable, ec));
    if (self->stopped || ec == net::error::operation_aborted) co_return;
    if (ec) {
      spdlog::warn("admin: accept failed: {}", ec.message());
      net::steady_timer pause(self->strand, tick);  // e.g. EMFILE: do not spin
      co_await pause.async_wait(net::redirect_error(net::use_awaitable, ec));
      continue;
    }
    if (self->connections.size() >= max_connections) {
      socket.close(ec);
      continue;
    }
    net::co_spawn(self->strand, serve(self, std::move(socket)), log_exception);
  }
}

// Stops the server once a drain has ended.
net::awaitable<void> ticker(impl_ptr self) {
  for (;;) {
    if (self->stopped) co_return;
    if (self->state->stopping.load() && self->state->active_clients.load() == 0) {
      self->stop_on_strand();
      co_return;
    }
    self->timer.expires_after(tick);
    boost::system::error_code ec;
    co_await self->timer.async_wait(net::redirect_error(net::use_awaitable, ec));
  }
}

}  // namespace

metrics::sources metric_sources(const std::shared_ptr<proxy_state>& state) {
  std::weak_ptr<proxy_state> weak = state;
  metrics::sources s;
  s.active_clients = [weak]() -> std::uint64_t {
    auto p = weak.lock();
    return p ? p->active_clients.load() : 0;
  };
  s.upstream_logins = [weak]() -> std::uint64_t {
    auto p = weak.lock();
    return p ? p->upstream_logins.load() : 0;
  };
  s.upstream_reuses = [weak]() -> std::uint64_t {
    auto p = weak.lock();
    return p ? p->upstream_reuses.load() : 0;
  };
  s.broker = [weak]() -> broker_stats {
    auto p = weak.lock();
    return p && p->broker ? p->broker->stats() : broker_stats{};
  };
  if (state->pool) {
    s.pool = [weak]() -> metrics::pool_counts {
      auto p = weak.lock();
      if (!p || !p->pool) return {};
      const auto st = p->pool->stats();
      return {st.checkins, st.discards, st.idle};
    };
  }
  return s;
}

admin_server::admin_server(net::io_context& io, std::shared_ptr<proxy_state> state)
    : impl_(std::make_shared<impl>(io, std::move(state))) {}

admin_server::~admin_server() = default;

bool admin_server::start() {
  const admin_config& cfg = impl_->state->cfg->admin;
  boost::system::error_code ec;
  const auto address = net::ip::make_address(cfg.host, ec);
  tcp::endpoint ep(address, cfg.port);
  if (!ec) impl_->acceptor.open(ep.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(ep, ec);
  if (!ec) impl_->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) {
    spdlog::error("admin: cannot listen on {}: {}; running without the admin listener", cfg.bind, ec.message());
    boost::system::error_code ignored;
    impl_->acceptor.close(ignored);
    return false;
  }
  const auto bound = impl_->acceptor.local_endpoint(ec);
  const std::string host = address.is_v6() ? "[" + cfg.host + "]" : cfg.host;
  impl_->url = "http://" + host + ":" + std::to_string(ec ? cfg.port : bound.port());
  spdlog::info("admin: serving /metrics, /healthz, /readyz, /leases on {}", impl_->url);
  net::co_spawn(impl_->strand, accept_loop(impl_), log_exception);
  net::co_spawn(impl_->strand, ticker(impl_), log_exception);
  return true;
}

void admin_server::set_listeners_up() { impl_->listeners_up = true; }

void admin_server::stop() {
  net::post(impl_->strand, [self = impl_] { self->stop_on_strand(); });
}

}  // namespace vaultwire::detail
