#include "ops/throttle.hpp"

#include <algorithm>
#include <stdexcept>

#include "core/digest.hpp"

namespace vaultwire::detail {

using std::chrono::milliseconds;

auth_throttle::auth_throttle(options o) : max_entries_(std::max<std::size_t>(1, o.max_entries)), now_(std::move(o.now)) {}

std::string auth_throttle::client_host(std::string_view peer) {
  if (peer.empty()) return "unix";
  if (peer.front() == '[') {
    const auto close = peer.find(']');
    if (close != std::string_view::npos) return std::string(peer.substr(1, close - 1));
    return std::string(peer);
  }
  const auto colon = peer.rfind(':');
  // One colon: IPv4 "a.b.c.d:port". None (a unix path from a PROXY header) or several
  // (an unbracketed v6 literal, which the session never writes): as given.
  if (colon != std::string_view::npos && peer.find(':') == colon) return std::string(peer.substr(0, colon));
  return std::string(peer);
}

std::string auth_throttle::make_key(std::string_view host, const sha256_digest& token_sha256) {
  std::string key(host);
  key += '\0';
  key.append(reinterpret_cast<const char*>(token_sha256.data()), token_sha256.size());
  return key;
}

std::string auth_throttle::make_key(std::string_view host, const pgwire::secret_string& token) {
  return make_key(host, sha256(token.view()));
}

auth_throttle::verdict auth_throttle::check(const std::string& key) {
  const time_point t = now();
  std::lock_guard lock(mutex_);
  verdict v;
  v.ticket = ++tickets_;
  auto it = entries_.find(key);
  if (it == entries_.end()) return v;
  entry& e = it->second;
  if (t >= e.expires_at) {
    erase(it);
    return v;
  }
  v.backoff = e.backoff;
  v.failures = e.failures;
  if (t < e.next_allowed) {
    v.allowed = false;
    const auto left = e.next_allowed - t;
    v.retry_after = std::chrono::ceil<milliseconds>(left);
    ++stats_.refusals;
  }
  return v;
}

void auth_throttle::failed(const std::string& key, std::uint64_t ticket, const throttle_config& cfg) {
  if (!cfg.base_delay) return;
  const time_point t = now();
  const milliseconds max_delay = std::max(cfg.max_delay, milliseconds{1});
  std::lock_guard lock(mutex_);
  auto it = entries_.find(key);
  if (it != entries_.end() && t >= it->second.expires_at) {
    erase(it);
    it = entries_.end();
  }
  if (it != entries_.end()) {
    entry& e = it->second;
    if (ticket < e.failure_ticket) return;  // checked before the last failure: already counted
    e.backoff = std::min(e.backoff * 2, max_delay);
    ++e.failures;
    order_.splice(order_.begin(), order_, e.order);
  } else {
    make_room(t);
    order_.push_front(key);
    entry e;
    e.backoff = std::min(*cfg.base_delay, max_delay);
    e.failures = 1;
    e.order = order_.begin();
    it = entries_.emplace(key, e).first;
  }
  entry& e = it->second;
  e.failure_ticket = ++tickets_;
  e.next_allowed = t + e.backoff;
  e.expires_at = t + 2 * max_delay;
  ++stats_.failures;
}

void auth_throttle::succeeded(const std::string& key) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(key);
  if (it != entries_.end()) erase(it);
}

auth_throttle::stats_t auth_throttle::stats() const {
  std::lock_guard lock(mutex_);
  stats_t s = stats_;
  s.entries = entries_.size();
  return s;
}

void auth_throttle::erase(std::unordered_map<std::string, entry>::iterator it) {
  order_.erase(it->second.order);
  entries_.erase(it);
}

// Called with the mutex held, before a new key goes in.
void auth_throttle::make_room(time_point t) {
  while (entries_.size() >= max_entries_ && !order_.empty()) {
    auto it = entries_.find(order_.back());  // the oldest last failure
    if (t < it->second.expires_at) ++stats_.evictions;
    erase(it);
  }
}

}  // namespace vaultwire::detail
