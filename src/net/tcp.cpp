#include "net/tcp.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>

namespace vaultwire::detail {

std::string endpoint_text(const boost::asio::ip::tcp::endpoint& ep) {
  // Appended piece by piece: at -O2 g++ 12 takes `"[" + std::string` in this file for
  // an overlapping copy (-Wrestrict, a false positive that -Werror makes fatal).
  std::string text;
  if (ep.address().is_v6()) text += '[';
  text += ep.address().to_string();
  if (ep.address().is_v6()) text += ']';
  text += ':';
  text += std::to_string(ep.port());
  return text;
}

void set_tcp_options(int fd, std::chrono::seconds idle) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (idle.count() <= 0) return;
  const int idle_s = static_cast<int>(std::min<long long>(idle.count(), 32767));  // the kernel's maximum
  const int interval_s = std::max(1, idle_s / 4);
  const int probes = 4;
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof idle_s);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval_s, sizeof interval_s);
  ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
}

}  // namespace vaultwire::detail
