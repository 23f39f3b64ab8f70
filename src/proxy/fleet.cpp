// fleet: see fleet.hpp.
#include "proxy/fleet.hpp"

#include <openssl/ssl.h>
#include <sys/socket.h>

#include <pgwire/decoder.hpp>
#include <pgwire/encoder.hpp>

#include <spdlog/spdlog.h>

#include <cerrno>
#include <deque>

#include "ops/metrics.hpp"
#include "proxy/upstream.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>

namespace vaultwire::detail {

namespace net = boost::asio;

namespace {

// Whether a kept connection still stands: the peer never writes on it, so anything
// readable (its FIN, a TLS close_notify, a reset) means it is gone, and a new
// connection is opened before the request is sent: a request is never sent twice.
bool still_open(stream& s) {
  std::uint8_t b = 0;
  const ssize_t n = ::recv(s.socket().native_handle(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

// ---- fleet_links

struct fleet_links::link {
  explicit link(const net::any_io_executor& ex) : strand(net::make_strand(ex)) {}
  net::strand<net::any_io_executor> strand;
  upstream_target target;  // the peer's fleet.bind, TLS verify-full against fleet.ca_file
  std::uint32_t id = 0;
  // On the strand only.
  std::deque<std::vector<std::uint8_t>> queue;
  bool draining = false;
  std::unique_ptr<stream> conn;
};

namespace {

net::awaitable<bool> send_frame(fleet_links::link& l, const std::vector<std::uint8_t>& frame) {
  if (l.conn && !still_open(*l.conn)) l.conn.reset();
  if (!l.conn) {
    upstream_session opened = co_await open_upstream(l.target);
    if (!opened.conn) {
      spdlog::warn("fleet: peer {} at {}:{} unreachable: {}", l.id, l.target.host, l.target.port,
                   opened.failed ? opened.failed->message : std::string("no connection"));
      co_return false;
    }
    l.conn = std::move(opened.conn);
    spdlog::info("fleet: connected to peer {} at {}", l.id, opened.peer);
  }
  std::error_code ec;
  co_await l.conn->write_all(frame, ec);
  if (ec) {
    spdlog::warn("fleet: sending a cancel to peer {} failed: {}", l.id, ec.message());
    l.conn.reset();
    co_return false;
  }
  co_return true;
}

// Sends what the link's queue holds, in order; on the link's strand.
net::awaitable<void> drain(std::shared_ptr<fleet_links::link> l) {
  while (!l->queue.empty()) {
    const std::vector<std::uint8_t> frame = std::move(l->queue.front());
    l->queue.pop_front();
    const bool sent = co_await send_frame(*l, frame);
    metrics::cancel_request(sent ? "peer_sent" : "peer_unreachable");
  }
  l->draining = false;
}

}  // namespace

fleet_links::fleet_links(const fleet_config& cfg, ssl_ctx tls, net::any_io_executor ex,
                         std::chrono::milliseconds connect_timeout, std::chrono::seconds tcp_keepalive) {
  for (const auto& p : cfg.peers) {
    auto l = std::make_shared<link>(ex);
    l->id = p.id;
    l->target.host = p.host;
    l->target.port = p.port;
    l->target.server_name = p.host;
    l->target.tls = tls;
    l->target.verify_name = true;
    l->target.connect_timeout = connect_timeout;
    l->target.tcp_keepalive = tcp_keepalive;
    links_.emplace(p.id, std::move(l));
  }
}

fleet_links::~fleet_links() = default;

void fleet_links::forward(std::uint32_t id, const pgwire::cancel_request& key, const std::string& host) {
  const auto it = links_.find(id);
  if (it == links_.end()) return;
  std::shared_ptr<link> l = it->second;
  std::vector<std::uint8_t> frame;
  encode_fleet_frame(frame, key, host);
  net::post(l->strand, [l, frame = std::move(frame)]() mutable {
    l->queue.push_back(std::move(frame));
    if (l->draining) return;
    l->draining = true;
    net::co_spawn(l->strand, drain(l), net::detached);
  });
}

void fleet_links::track(const std::shared_ptr<stream>& peer_connection) {
  std::lock_guard lock(mutex_);
  std::erase_if(peer_connections_, [](const std::weak_ptr<stream>& w) { return w.expired(); });
  peer_connections_.push_back(peer_connection);
}

void fleet_links::stop() {
  for (auto& [id, l] : links_) {
    (void)id;
    net::post(l->strand, [l] { l->conn.reset(); });
  }
  std::lock_guard lock(mutex_);
  for (auto& w : peer_connections_) {
    if (auto s = w.lock()) net::post(s->socket().get_executor(), [s] { s->close(); });
  }
  peer_connections_.clear();
}

// ---- serving a CancelRequest

net::awaitable<cancel_route> serve_cancel(std::shared_ptr<proxy_state> state, pgwire::cancel_request key,
                                          std::string host, bool forwarded) {
  const auto now = cancel_penalty::clock::now();
  if (!state->cancel_penalties.allowed(host, now)) {
    metrics::cancel_request("rate_limited");
    co_return cancel_route::rate_limited;
  }
  const fleet_config& fleet = state->current()->fleet;
  const std::uint32_t owner = cancel_map::instance_of(key);
  if (state->fleet && !forwarded && owner != fleet.instance_id && state->fleet->has_peer(owner)) {
    state->fleet->forward(owner, key, host);
    co_return cancel_route::peer;
  }
  auto target = state->cancels.find(key);
  if (!target) {
    state->cancel_penalties.penalise(host, now);
    metrics::cancel_request("unknown_key");
    co_return cancel_route::unknown_key;
  }
  metrics::cancel_request("forwarded");
  const limits_config limits = state->current()->limits;
  co_await send_upstream_cancel(target->route->target(limits), target->upstream_key, target->source_address);
  co_return cancel_route::local;
}

// ---- the peers' connections to fleet.bind

namespace {

net::awaitable<void> serve_forwarded(std::shared_ptr<proxy_state> state, fleet_frame frame) {
  (void)co_await serve_cancel(std::move(state), frame.key, std::move(frame.host), true);
}

// Reads more of the connection into `buf`; false at its end.
net::awaitable<bool> read_into(stream& s, std::vector<std::uint8_t>& buf) {
  std::uint8_t chunk[512];
  std::error_code ec;
  const std::size_t n = co_await s.read_some(chunk, ec);
  if (ec || n == 0) co_return false;
  buf.insert(buf.end(), chunk, chunk + n);
  co_return true;
}

// SSLRequest, 'S' and the handshake, which verifies the peer's certificate.
net::awaitable<bool> accept_peer_tls(stream& s, const ssl_ctx& tls, const std::string& peer) {
  std::vector<std::uint8_t> buf;
  for (;;) {
    auto d = pgwire::decode_startup_packet(buf);
    if (d.status == pgwire::decode_status::need_more) {
      if (!co_await read_into(s, buf)) co_return false;
      continue;
    }
    if (d.status != pgwire::decode_status::message || !std::holds_alternative<pgwire::ssl_request>(d.packet) ||
        d.consumed != buf.size()) {
      spdlog::warn("fleet: connection from {} refused: it did not start TLS (fleet.cert_file is set)", peer);
      co_return false;
    }
    break;
  }
  const std::uint8_t yes = 'S';
  std::error_code ec;
  co_await s.write_all(std::span<const std::uint8_t>(&yes, 1), ec);
  if (!ec) co_await s.tls_accept(tls.get(), ec);
  if (ec) {
    spdlog::warn("fleet: TLS with {} failed: {}", peer, s.tls_error());
    co_return false;
  }
  co_return true;
}

net::awaitable<void> serve_peer(std::shared_ptr<proxy_state> state, ssl_ctx tls, std::shared_ptr<stream> s,
                                std::string peer) {
  if (tls && !co_await accept_peer_tls(*s, tls, peer)) co_return;
  std::vector<std::uint8_t> buf;
  for (;;) {
    auto d = decode_fleet_frame(buf);
    if (d.status == fleet_frame_status::need_more) {
      if (!co_await read_into(*s, buf)) co_return;
      continue;
    }
    if (d.status == fleet_frame_status::error) {
      spdlog::warn("fleet: {} sent something that is not a forwarded cancel; connection closed", peer);
      co_return;
    }
    buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(d.consumed));
    metrics::cancel_request("peer_received");
    net::co_spawn(co_await net::this_coro::executor, serve_forwarded(state, std::move(d.frame)), net::detached);
  }
}

}  // namespace

void start_fleet_connection(std::shared_ptr<proxy_state> state, ssl_ctx tls, stream::descriptor sd,
                            std::string peer) {
  auto s = std::make_shared<stream>(std::move(sd));
  if (state->fleet) state->fleet->track(s);
  auto ex = s->socket().get_executor();
  net::co_spawn(ex, serve_peer(std::move(state), std::move(tls), std::move(s), std::move(peer)), net::detached);
}

result<ssl_ctx> make_fleet_server_tls(const fleet_config& cfg) {
  auto made = make_server_tls_context(cfg.cert_file->string(), cfg.key_file->string());
  if (!made) return made;
  SSL_CTX* ctx = made.value().get();
  if (SSL_CTX_load_verify_locations(ctx, cfg.ca_file->string().c_str(), nullptr) != 1)
    return failure{errc::setup_failed, "cannot load fleet.ca_file " + cfg.ca_file->string() + ": " +
                                           openssl_error_text()};
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  // A context that verifies clients needs an id for its sessions, or a resumed one fails.
  static constexpr unsigned char session_id[] = "vaultwire-fleet";
  SSL_CTX_set_session_id_context(ctx, session_id, sizeof session_id - 1);
  // No TLS 1.3 session tickets: the links never resume, and a ticket left unread on a
  // kept link would look like the peer speaking, which still_open() takes for its end.
  SSL_CTX_set_num_tickets(ctx, 0);
  return made;
}

result<ssl_ctx> make_fleet_client_tls(const fleet_config& cfg) {
  tls_client_context_options o;
  o.ca_file = cfg.ca_file->string();
  o.client_cert = cfg.cert_file->string();
  o.client_key = cfg.key_file->string();
  o.verify_peer = true;
  return make_client_tls_context(o);
}

}  // namespace vaultwire::detail
