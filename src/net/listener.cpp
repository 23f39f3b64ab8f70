#include "net/listener.hpp"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <cerrno>

#include <boost/asio/ip/v6_only.hpp>

#include "net/asio.hpp"
#include "net/tcp.hpp"

namespace vaultwire::detail {

namespace net = boost::asio;
using net::ip::tcp;
using unix_acceptor = net::local::stream_protocol::acceptor;

struct listener_set::impl {
  impl(net::io_context& c, std::vector<net::io_context*> s, const std::atomic<bool>& stop)
      : control(c), sessions(std::move(s)), stopping(stop) {}

  net::io_context& control;
  std::vector<net::io_context*> sessions;
  const std::atomic<bool>& stopping;
  std::size_t next_session = 0;                               // unix connections' round robin
  std::vector<std::unique_ptr<tcp::acceptor>> tcp_acceptors;  // on the session threads
  std::vector<int> tcp_listen_fds;                            // theirs, for the control thread
  std::vector<std::unique_ptr<unix_acceptor>> unix_acceptors;
  std::vector<std::string> unix_paths;

  // Round robin: unix connections are spread evenly over the session threads.
  net::io_context& next_session_context() { return *sessions[next_session++ % sessions.size()]; }
};

namespace {

// A TCP listener has one acceptor per session thread, all bound to the same port
// with SO_REUSEPORT: the kernel spreads new connections over them, and each is
// accepted on the thread that will run it. No hand-off to another thread (a
// cross-thread wake-up per connection), and the socket is registered with its
// reactor once. accept4 hands out the peer address and a non-blocking descriptor.
net::awaitable<void> accept_tcp(tcp::acceptor* acceptor, net::io_context* context, std::string name,
                                const std::atomic<bool>* stopping, accept_handler on_accept) {
  net::steady_timer backoff(acceptor->get_executor());
  for (;;) {
    tcp::endpoint ep;
    socklen_t len = static_cast<socklen_t>(ep.capacity());
    const int fd = ::accept4(acceptor->native_handle(), ep.data(), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      const int err = errno;
      if (err == EINTR || err == ECONNABORTED) continue;
      boost::system::error_code ec;
      if (err == EAGAIN || err == EWOULDBLOCK) {
        co_await acceptor->async_wait(tcp::acceptor::wait_read, net::redirect_error(net::use_awaitable, ec));
        if (!ec) continue;
      } else {
        ec.assign(err, boost::system::system_category());
      }
      if (*stopping || ec == net::error::operation_aborted || !acceptor->is_open()) co_return;
      spdlog::warn("accept on {} failed: {}", name, ec.message());
      // Out of descriptors or memory: the connection stays queued; retry shortly
      // rather than spin on it.
      backoff.expires_after(std::chrono::milliseconds(100));
      co_await backoff.async_wait(net::redirect_error(net::use_awaitable, ec));
      continue;
    }
    // Accepted just before the first signal shut the listener down: refuse it as a
    // closed listener would (the next accept4 fails and ends the loop).
    if (*stopping) {
      ::close(fd);
      continue;
    }
    ep.resize(len);
    on_accept(*context, fd, endpoint_text(ep));
  }
}

net::awaitable<void> accept_unix(unix_acceptor* acceptor, listener_set::impl* self, accept_handler on_accept) {
  for (;;) {
    boost::system::error_code ec;
    net::io_context& context = self->next_session_context();
    auto sock = co_await acceptor->async_accept(context.get_executor(), net::redirect_error(net::use_awaitable, ec));
    if (ec) {
      if (self->stopping || ec == net::error::operation_aborted) co_return;
      spdlog::warn("accept on a unix socket failed: {}", ec.message());
      continue;
    }
    const int fd = sock.release();
    on_accept(context, fd, "");
  }
}

// The address is first taken by an ordinary listening socket: it fails when
// anything listens there already, where SO_REUSEPORT alone would let a second
// vaultwire (same user) share the port unnoticed. It also resolves port 0.
tcp::endpoint claim_address(net::io_context& control, const tcp_listen_options& o, boost::system::error_code& ec) {
  tcp::endpoint bound;
  tcp::acceptor probe(control);
  tcp::endpoint ep(net::ip::make_address(o.host, ec), o.port);
  if (!ec) probe.open(ep.protocol(), ec);
  if (!ec) probe.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec && o.ipv6) probe.set_option(net::ip::v6_only(true), ec);
  if (!ec) probe.bind(ep, ec);
  if (!ec) probe.listen(net::socket_base::max_listen_connections, ec);
  if (!ec) bound = probe.local_endpoint(ec);
  return bound;
}

// One of a TCP listener's acceptors, on `context`, bound to `bound` with SO_REUSEPORT.
std::unique_ptr<tcp::acceptor> open_reuseport_acceptor(net::io_context& context, const tcp::endpoint& bound,
                                                       const tcp_listen_options& o, boost::system::error_code& ec) {
  auto a = std::make_unique<tcp::acceptor>(context);
  a->open(bound.protocol(), ec);
  if (!ec) a->set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) {
    const int one = 1;
    if (::setsockopt(a->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
      ec.assign(errno, boost::system::system_category());
  }
  if (!ec && o.ipv6) a->set_option(net::ip::v6_only(true), ec);
  // TCP_NODELAY and the keepalive settings: accepted sockets inherit them.
  if (!ec) set_tcp_options(a->native_handle(), o.tcp_keepalive);
  if (!ec) a->bind(bound, ec);
  if (!ec) a->listen(net::socket_base::max_listen_connections, ec);
  if (!ec) a->non_blocking(true, ec);
  return a;
}

}  // namespace

listener_set::listener_set(net::io_context& control, std::vector<net::io_context*> sessions,
                           const std::atomic<bool>& stopping)
    : impl_(std::make_unique<impl>(control, std::move(sessions), stopping)) {}

listener_set::~listener_set() = default;

result<std::uint16_t> listener_set::listen_tcp(const tcp_listen_options& o, accept_handler on_accept) {
  boost::system::error_code ec;
  const tcp::endpoint bound = claim_address(impl_->control, o, ec);
  std::vector<std::unique_ptr<tcp::acceptor>> group;
  for (std::size_t i = 0; !ec && i < impl_->sessions.size(); ++i) {
    group.push_back(open_reuseport_acceptor(*impl_->sessions[i], bound, o, ec));
  }
  if (ec) return failure{errc::setup_failed, ec.message()};
  for (std::size_t i = 0; i < group.size(); ++i) {
    tcp::acceptor* a = group[i].get();
    impl_->tcp_listen_fds.push_back(a->native_handle());
    net::co_spawn(a->get_executor(), accept_tcp(a, impl_->sessions[i], o.name, &impl_->stopping, on_accept),
                  net::detached);
    impl_->tcp_acceptors.push_back(std::move(group[i]));
  }
  return bound.port();
}

result<void> listener_set::listen_unix(const std::string& path, accept_handler on_accept) {
  ::unlink(path.c_str());
  auto ua = std::make_unique<unix_acceptor>(impl_->control);
  net::local::stream_protocol::endpoint uep(path);
  boost::system::error_code ec;
  ua->open(uep.protocol(), ec);
  if (!ec) ua->bind(uep, ec);
  if (!ec) ua->listen(net::socket_base::max_listen_connections, ec);
  if (ec) return failure{errc::setup_failed, ec.message()};
  ::chmod(path.c_str(), 0777);  // as PostgreSQL's unix_socket_permissions default
  impl_->unix_paths.push_back(path);
  net::co_spawn(impl_->control, accept_unix(ua.get(), impl_.get(), std::move(on_accept)), net::detached);
  impl_->unix_acceptors.push_back(std::move(ua));
  return boost::outcome_v2::success();
}

void listener_set::stop() {
  boost::system::error_code ignored;
  // shutdown() on a listening socket refuses new connections at once and wakes its
  // accept loop (accept4 then fails and the loop ends). The acceptor objects belong
  // to their session threads: close them there.
  for (int fd : impl_->tcp_listen_fds) ::shutdown(fd, SHUT_RDWR);
  for (auto& a : impl_->tcp_acceptors) {
    net::post(a->get_executor(), [a = a.get()] {
      boost::system::error_code e;
      a->close(e);
    });
  }
  for (auto& a : impl_->unix_acceptors) a->close(ignored);
}

void listener_set::remove_unix_sockets() {
  for (auto& p : impl_->unix_paths) ::unlink(p.c_str());
}

}  // namespace vaultwire::detail
