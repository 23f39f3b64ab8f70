// fleet: CancelRequests between the instances of a fleet ([fleet]). A load balancer
// sends a client's CancelRequest, which comes on a new connection, to any instance;
// the key's secret names the instance that issued it (cancel_map), and the request
// goes there over one kept connection per peer (mutual TLS, or plaintext on
// loopback), to be served as that instance's own. PgBouncer's peering (a peer id in
// the cancel key, [peers]) and CockroachDB's SQL proxy (the proxy's address in the
// key, forwarded between proxies) answer the same problem the same way.
//
// Between instances each request is a frame (fleet_frame.hpp).
//
// Private header of src/ (includes Asio through proxy.hpp).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/fleet_frame.hpp"
#include "proxy/proxy.hpp"

namespace vaultwire::detail {

// ---- the kept connections to the peers

class fleet_links {
 public:
  // `tls`: the client context (CA, this instance's certificate), empty for plaintext.
  // The links run on `ex` (one strand per peer).
  fleet_links(const fleet_config& cfg, ssl_ctx tls, boost::asio::any_io_executor ex,
              std::chrono::milliseconds connect_timeout, std::chrono::seconds tcp_keepalive);
  ~fleet_links();
  fleet_links(const fleet_links&) = delete;
  fleet_links& operator=(const fleet_links&) = delete;

  [[nodiscard]] bool has_peer(std::uint32_t id) const { return links_.contains(id); }
  // Queues the request for peer `id` and returns; it is sent once, in order, on the
  // peer's kept connection (opened, or opened again, as needed). Counted as peer_sent
  // or peer_unreachable in vaultwire_cancel_requests_total. Any thread.
  void forward(std::uint32_t id, const pgwire::cancel_request& key, const std::string& host);

  // The connections peers opened to fleet.bind, so that stop() can close them.
  void track(const std::shared_ptr<stream>& peer_connection);
  // At the end of a drain: closes every kept link and every peer's connection, so the
  // session threads run out of work. Any thread.
  void stop();

  struct link;

 private:
  std::map<std::uint32_t, std::shared_ptr<link>> links_;
  std::mutex mutex_;
  std::vector<std::weak_ptr<stream>> peer_connections_;
};

// ---- serving a CancelRequest (a client's, or one a peer forwarded)

enum class cancel_route {
  local,         // the key is this instance's: sent to the server that holds the session
  peer,          // the key names a peer: handed to fleet_links
  unknown_key,   // nobody issued it (the source is penalised for a second)
  rate_limited,  // the source serves a penalty: dropped unread
};

// `host` is the client's (auth_throttle::client_host). A request a peer forwarded
// (`forwarded`) is never forwarded again. Counts the result in
// vaultwire_cancel_requests_total.
boost::asio::awaitable<cancel_route> serve_cancel(std::shared_ptr<proxy_state> state, pgwire::cancel_request key,
                                                  std::string host, bool forwarded);

// A connection a peer opened to fleet.bind: SSLRequest and mutual TLS when `tls`
// (the server context, which requires the peer's certificate), then frames until the
// peer closes. Runs on the connection's own coroutine.
void start_fleet_connection(std::shared_ptr<proxy_state> state, ssl_ctx tls, stream::descriptor sd,
                            std::string peer);

// The TLS contexts of [fleet]: the server's asks for and verifies the peer's
// certificate against ca_file; the client's verifies the peer and presents ours.
[[nodiscard]] result<ssl_ctx> make_fleet_server_tls(const fleet_config& cfg);
[[nodiscard]] result<ssl_ctx> make_fleet_client_tls(const fleet_config& cfg);

}  // namespace vaultwire::detail
