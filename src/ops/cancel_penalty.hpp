// cancel_penalty: a source address whose CancelRequest carried a key nobody issued
// may not cancel anything for a second. A cancel key is 64 bits of which the process
// id half is public (pg_stat_activity), so guessing is the attack; CockroachDB's
// design penalises a failed cancel for a second for the same reason ("If a cancel
// request fails ... it will be penalized by holding onto the semaphore for an extra
// second", docs/RFCS/20220202_pgwire_compatible_cancel.md).
//
// Pure logic (no Asio, no logging) with an injectable clock; thread-safe (one mutex,
// O(1) work per call but for the sweep of a full table).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace vaultwire::detail {

class cancel_penalty {
 public:
  using clock = std::chrono::steady_clock;
  static constexpr std::chrono::seconds penalty{1};

  explicit cancel_penalty(std::size_t max_entries = 65536) : max_entries_(max_entries) {}

  // False while `host` serves a penalty.
  [[nodiscard]] bool allowed(const std::string& host, clock::time_point now);
  // `host` sent an unknown key at `now`: its cancels are dropped until now + penalty.
  void penalise(const std::string& host, clock::time_point now);
  [[nodiscard]] std::size_t size() const;

 private:
  const std::size_t max_entries_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, clock::time_point> until_;
};

}  // namespace vaultwire::detail
