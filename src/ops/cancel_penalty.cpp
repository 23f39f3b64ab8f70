#include "ops/cancel_penalty.hpp"

#include <iterator>

namespace vaultwire::detail {

bool cancel_penalty::allowed(const std::string& host, clock::time_point now) {
  std::lock_guard lock(mutex_);
  auto it = until_.find(host);
  if (it == until_.end()) return true;
  if (now < it->second) return false;
  until_.erase(it);
  return true;
}

void cancel_penalty::penalise(const std::string& host, clock::time_point now) {
  std::lock_guard lock(mutex_);
  if (until_.size() >= max_entries_ && !until_.contains(host)) {
    // Full: served penalties go first; if none has, the table starts over (a flood
    // from that many addresses is better met by the client limit and the firewall).
    for (auto it = until_.begin(); it != until_.end();) it = it->second <= now ? until_.erase(it) : std::next(it);
    if (until_.size() >= max_entries_) until_.clear();
  }
  until_[host] = now + penalty;
}

std::size_t cancel_penalty::size() const {
  std::lock_guard lock(mutex_);
  return until_.size();
}

}  // namespace vaultwire::detail
