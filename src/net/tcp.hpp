// tcp: what both sides of a session do to a TCP socket (the listener to accepted
// clients, the upstream dial to the cluster), and how a TCP peer is written in logs.
// Private header of src/ (includes Asio).
#pragma once

#include <chrono>
#include <string>

#include "net/asio.hpp"

namespace vaultwire::detail {

// TCP_NODELAY and keepalive on a TCP socket (both sides of a session; a listening
// socket passes them to the sockets it accepts): probes after `idle` without
// traffic, then every idle/4 (at least 1s); after 4 unanswered probes the kernel
// drops the connection, so a dead peer is found about 2 x idle after its last sign of
// life. `idle` zero: no keepalive.
void set_tcp_options(int fd, std::chrono::seconds idle);

// "127.0.0.1:5432" or "[::1]:5432", as peers appear in logs and the audit file.
[[nodiscard]] std::string endpoint_text(const boost::asio::ip::tcp::endpoint& ep);

}  // namespace vaultwire::detail
