// own_token: vaultwire's own Vault token, from [vault] token_file. It renews and
// revokes leases in place of the client's token, and is kept alive: looked up
// (lookup-self) when the file (re)appears, then renewed with renew-self at about two
// thirds of the TTL Vault reports, when it is renewable.
//
// The file is re-read when its mtime changes; when it is missing, unreadable or
// empty the last good token is kept (one warning per failure streak). The token is
// held as a secret_string and never logged.
//
// read() is thread-safe (its own mutex: file I/O stays outside the broker's lock);
// the upkeep schedule (due, begin, defer, done) is guarded by the broker's mutex.
#pragma once

#include <filesystem>
#include <mutex>
#include <optional>

#include "credentials/lease_entry.hpp"

namespace vaultwire::detail {

class own_token {
 public:
  explicit own_token(std::filesystem::path file) : file_(std::move(file)) {}

  [[nodiscard]] pgwire::secret_string read();

  // The upkeep due at `t` for the version of the file read last.
  enum class step { none, lookup, renew };
  [[nodiscard]] step due(time_point t);
  void begin() noexcept { in_flight_ = true; }
  // The circuit breaker skipped the call: try again at `retry_at`.
  void defer(time_point retry_at) noexcept { next_at_ = retry_at; }
  // The lookup-self or renew-self completed at `t` (`jitter` in [0, 1) places the next renewal).
  void done(step what, const vault_result<vault_token_info>& r, time_point t, double jitter, broker_stats& stats);

  // When the next upkeep is due (time_point::max() when there is nothing to renew).
  [[nodiscard]] time_point next_at() const noexcept { return next_at_; }

 private:
  std::filesystem::path file_;

  std::mutex file_mutex_;  // guards the four below
  std::optional<std::filesystem::file_time_type> mtime_;
  pgwire::secret_string token_;
  bool warned_ = false;  // one warning per failure streak, not one per tick

  // Guarded by the broker's mutex.
  std::optional<std::filesystem::file_time_type> scheduled_for_;  // the file version scheduled
  bool known_ = false;  // lookup-self answered for this version
  bool in_flight_ = false;
  time_point next_at_{};
};

}  // namespace vaultwire::detail
