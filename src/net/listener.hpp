// listener: the sockets vaultwire accepts client connections on, and their accept
// loops. TCP has one acceptor per session thread, all on one port with SO_REUSEPORT;
// a unix socket has one acceptor on the control thread. Each accepted connection goes
// to a callback: the listener knows nothing of what runs on it (no sessions, routes
// or TLS). Private header of src/; Asio stays in listener.cpp.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/result.hpp"

namespace boost::asio {
class io_context;
}

namespace vaultwire::detail {

// One accepted connection. `fd` is connected, non-blocking and close-on-exec, and
// the callback owns it from here. `context` is the session thread the connection
// belongs on: the one whose acceptor took it (TCP), or the next one in turn (unix).
// `peer` is "host:port" (endpoint_text) for TCP, empty for a unix socket. Called on
// the accepting thread: a session thread for TCP, the control thread for unix.
using accept_handler = std::function<void(boost::asio::io_context& context, int fd, std::string peer)>;

struct tcp_listen_options {
  std::string name;                        // the listener in log lines (its address as configured)
  std::string host;                        // an IP address
  std::uint16_t port = 0;                  // 0: any free port
  bool ipv6 = false;                       // IPV6_V6ONLY
  std::chrono::seconds tcp_keepalive{60};  // set_tcp_options on the listening sockets, inherited by accepted ones
};

class listener_set {
 public:
  // `control` runs the unix socket acceptors; `sessions` are the session threads'
  // contexts. Both must outlive the listener_set. `stopping` is the owner's shutdown
  // flag: once set, a connection accepted anyway is closed and a failing accept ends
  // its loop. The accept loops run when their contexts run.
  listener_set(boost::asio::io_context& control, std::vector<boost::asio::io_context*> sessions,
               const std::atomic<bool>& stopping);
  ~listener_set();
  listener_set(const listener_set&) = delete;
  listener_set& operator=(const listener_set&) = delete;

  // Listens on o.host:o.port and starts accepting. Returns the bound port; fails
  // (errc::setup_failed) when the address is taken or cannot be bound.
  [[nodiscard]] result<std::uint16_t> listen_tcp(const tcp_listen_options& o, accept_handler on_accept);
  // Listens on a unix socket at `path` (a stale file there is removed first; the new
  // one is mode 0777) and starts accepting.
  [[nodiscard]] result<void> listen_unix(const std::string& path, accept_handler on_accept);

  // On the control thread: refuses new connections at once and ends the accept loops.
  void stop();
  // Removes the files of the unix sockets listened on.
  void remove_unix_sockets();

  struct impl;  // opaque: defined in listener.cpp

 private:
  std::unique_ptr<impl> impl_;
};

}  // namespace vaultwire::detail
