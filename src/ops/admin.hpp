// admin: the HTTP listener for operators ([admin] bind, default 127.0.0.1:9187).
// Private header of src/, included by proxy/server.cpp only.
//
//   GET /metrics  Prometheus text format (metrics::scrape(): prometheus-cpp)
//   GET /healthz  200 "ok" while the process runs its event loop
//   GET /readyz   200 "ready", or 503 with the reason: listeners not up yet, vaultwire
//                 draining (SIGTERM / SIGINT), Vault unreachable, sealed or not
//                 initialised (each probe asks sys/health and waits for the answer at
//                 most admin.readiness_timeout, then 503 naming the timeout; probes that
//                 come while a request is out share it), a reload refused because its
//                 Vault replaces client tokens (until a reload is applied), Vault not yet
//                 seen to refuse a made-up token (a probe starts that check in the
//                 background), no valid Vault token of vaultwire's own while a
//                 [vault.auth] login method is configured ("vaultwire holds no valid
//                 Vault token: <the last login's failure>"), or the broker's circuit
//                 breaker open
//   GET /leases   JSON: the leases the broker holds (lease id, role, mount, TTL left,
//                 sessions, token accessor); no secrets
// Anything else: 404; another method on a known path: 405. HTTP/1.1, one request per
// connection (Connection: close), requests capped at 8 KiB with no body, 5 s to send
// the request, at most 64 connections at once.
//
// Threads: everything runs on one strand of the proxy's io_context. The server keeps
// the io_context busy until it stops itself: once `proxy_state::stopping` is set and
// no client is left (active_clients == 0), it closes its acceptor, its connections
// and its timers, so the server's drain ends as before (/readyz answers 503 while
// sessions drain).
#pragma once

#include <chrono>
#include <memory>
#include <string>

namespace boost::asio {
class io_context;
}

namespace vaultwire::metrics {
struct sources;
}

namespace vaultwire::detail {

struct proxy_state;

// The scrape-time sources of a running proxy (live clients, the broker's counters,
// upstream logins and reuses, the pool). They hold `state` weakly; call
// metrics::clear_sources() before the broker goes.
[[nodiscard]] metrics::sources metric_sources(const std::shared_ptr<proxy_state>& state);

class admin_server {
 public:
  admin_server(boost::asio::io_context& io, std::shared_ptr<proxy_state> state);
  ~admin_server();
  admin_server(const admin_server&) = delete;
  admin_server& operator=(const admin_server&) = delete;

  // Binds [admin] bind and starts serving; logs "admin: serving /metrics, /healthz,
  // /readyz, /leases on http://HOST:PORT" (the bound port). False (logged) when it
  // cannot bind: vaultwire runs on without the admin listener.
  [[nodiscard]] bool start();
  // /readyz's "listeners up": call once every proxy listener is bound.
  void set_listeners_up();
  // Closes everything (posted to the strand); idempotent.
  void stop();

  struct impl;  // opaque: defined in admin.cpp

 private:
  std::shared_ptr<impl> impl_;
};

}  // namespace vaultwire::detail
