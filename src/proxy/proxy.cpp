// The shared state's own members (proxy.hpp): routes' and listeners' TLS contexts.
#include "proxy/proxy.hpp"

namespace vaultwire::detail {

void route_runtime::replace_tls(ssl_ctx fresh) {
  {
    std::lock_guard lock(tls_mutex_);
    std::swap(tls, fresh);
  }
  // `fresh` now holds the old context's reference, dropped here, outside the lock.
}

ssl_ctx listener_runtime::acquire_tls() const {
  std::lock_guard lock(tls_mutex_);
  return tls;
}

void listener_runtime::replace_tls(ssl_ctx fresh) {
  {
    std::lock_guard lock(tls_mutex_);
    std::swap(tls, fresh);
  }
}

std::shared_ptr<const local_users> listener_runtime::acquire_users() const {
  std::lock_guard lock(tls_mutex_);
  return users_;
}

void listener_runtime::replace_users(std::shared_ptr<const local_users> fresh) {
  {
    std::lock_guard lock(tls_mutex_);
    std::swap(users_, fresh);
  }
  // The old set (its verifiers wiped by secret_string) goes here, outside the lock.
}

upstream_target route_runtime::target(const limits_config& limits) const {
  upstream_target t;
  t.host = config.host;
  t.port = config.port;
  t.server_name = config.server_name.empty() ? config.host : config.server_name;
  {
    std::lock_guard lock(tls_mutex_);
    t.tls = tls;
  }
  t.verify_name = config.sslmode == ssl_mode::verify_full;
  t.connect_timeout = limits.upstream_connect_timeout;
  t.tcp_keepalive = std::chrono::duration_cast<std::chrono::seconds>(limits.tcp_keepalive);
  return t;
}
}  // namespace vaultwire::detail
