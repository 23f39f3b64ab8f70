// throttle: exponential backoff after failed logins, per (client address, token), as
// CockroachDB's SQL proxy throttles per (IP, tenant) (pkg/ccl/sqlproxyccl/throttler).
// Private header of src/; pure logic (no Asio, no logging), tested with a fake clock.
//
// The contract, for one key:
// - check() before Vault is asked: allowed, or refused with how long to wait.
// - failed() when the login failed because of who the client is: Vault rejected the
//   token, or the server refused the credential. The first failure makes the next
//   attempt wait base_delay; each further failure of an attempt that was allowed
//   after the wait doubles it, up to max_delay. A failure of an attempt that was
//   checked before the key's last failure was recorded (logins racing each other)
//   does not double it again. Refused attempts never extend the wait.
// - succeeded() forgets the key.
// - A key with no failure for 2 x max_delay is forgotten (it starts again at
//   base_delay).
//
// Keys hold the client's host (no port) and the token's SHA-256, never the token.
// At most `max_entries` keys are kept: when full, expired keys go first, then the
// key whose last failure is oldest. Thread-safe: one mutex, held for O(1) work.
#pragma once

#include <pgwire/secret.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/digest.hpp"
#include "vaultwire/config.hpp"

namespace vaultwire::detail {

class auth_throttle {
 public:
  using clock = std::chrono::steady_clock;
  using time_point = clock::time_point;

  struct options {
    std::size_t max_entries = 65536;
    std::function<time_point()> now{};  // default: steady_clock::now
  };

  // What check() decided. When refused: how long until the next attempt is allowed
  // (rounded up to whole milliseconds), the current wait and how many failures in a
  // row led to it. `ticket` orders this check among the key's failures: pass it back
  // to failed().
  struct verdict {
    bool allowed = true;
    std::chrono::milliseconds retry_after{0};
    std::chrono::milliseconds backoff{0};
    std::uint32_t failures = 0;
    std::uint64_t ticket = 0;
  };

  struct stats_t {
    std::size_t entries = 0;
    std::uint64_t refusals = 0;   // check() answers "wait"
    std::uint64_t failures = 0;   // failed() calls that set or doubled a wait
    std::uint64_t evictions = 0;  // keys dropped because the table was full
  };

  explicit auth_throttle(options o);
  auth_throttle() : auth_throttle(options{}) {}

  // "host:port" / "[v6]:port" / "" (unix socket) -> "host" / "v6" / "unix": the part of
  // a session's peer the key uses.
  [[nodiscard]] static std::string client_host(std::string_view peer);
  // The key for a client host and token: the host, a NUL, and the token's SHA-256 (32
  // raw bytes).
  [[nodiscard]] static std::string make_key(std::string_view host, const sha256_digest& token_sha256);
  [[nodiscard]] static std::string make_key(std::string_view host, const pgwire::secret_string& token);

  [[nodiscard]] verdict check(const std::string& key);
  // Does nothing when cfg.base_delay is off.
  void failed(const std::string& key, std::uint64_t ticket, const throttle_config& cfg);
  void succeeded(const std::string& key);
  [[nodiscard]] stats_t stats() const;

 private:
  struct entry {
    time_point next_allowed;
    time_point expires_at;
    std::uint64_t failure_ticket = 0;  // taken when the last failure was recorded
    std::chrono::milliseconds backoff{0};
    std::uint32_t failures = 0;
    std::list<std::string>::iterator order;  // in order_
  };

  [[nodiscard]] time_point now() const { return now_ ? now_() : clock::now(); }
  void erase(std::unordered_map<std::string, entry>::iterator it);
  void make_room(time_point now);

  const std::size_t max_entries_;
  const std::function<time_point()> now_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, entry> entries_;
  std::list<std::string> order_;  // most recent failure first
  std::uint64_t tickets_ = 0;
  stats_t stats_;
};

}  // namespace vaultwire::detail
