// circuit_breaker: whether the broker believes Vault answers (broker.hpp's header
// comment has the rules). Every Vault call the broker makes asks admit() right before
// it is made, and reports its completion to note(). Outages count: no answer, a
// timeout, a sealed Vault, and 502/503/504 (Vault, or a proxy in front of it, saying it
// cannot serve). Anything else means Vault answered and resets the count: a 500 is one
// backend's failure for one request (a role's bad statement, "not an allowed role"), a
// 429 a quota on one path or client. After breaker_threshold in a row the breaker opens: calls are skipped
// until a probe, whose interval doubles from breaker_initial_backoff up to
// breaker_max_backoff while probes fail.
//
// Not thread-safe: the broker calls it under its own lock. It logs its transitions
// and counts them in the broker's stats.
#pragma once

#include <cstdint>
#include <string>

#include "credentials/broker.hpp"

namespace vaultwire::detail {

class circuit_breaker {
 public:
  using time_point = broker_clock::time_point;
  enum class admission { call, probe, skip };

  // `stats` outlives the breaker; `token_grace` is named in the log when it opens.
  circuit_breaker(broker_stats& stats, std::chrono::milliseconds token_grace) : stats_(stats), grace_(token_grace) {}

  // Right before a call: make it, make it as the probe, or skip it.
  [[nodiscard]] admission admit(time_point t);
  // A call admit() made the probe was not made after all: the next call probes.
  void probe_not_made() noexcept { probe_in_flight_ = false; }
  // A call completed: `error` is null on success; `probe` when admit() made it the
  // probe. True when the error was an outage (is_outage).
  bool note(const vault_error* error, bool probe, time_point t);

  [[nodiscard]] bool healthy() const noexcept { return !open_ && failures_ == 0; }
  [[nodiscard]] bool open() const noexcept { return open_; }
  // Open, no probe out, and its time has come.
  [[nodiscard]] bool probe_due(time_point t) const noexcept { return open_ && !probe_in_flight_ && t >= retry_at_; }
  // When a skipped call may be tried again: the next probe time.
  [[nodiscard]] time_point retry_time(time_point t) const;
  // The client's message for a request refused because the breaker is open.
  [[nodiscard]] std::string message(time_point t) const;
  [[nodiscard]] std::uint64_t consecutive_failures() const noexcept { return failures_; }
  // The last unreachable failure (it names Vault's address).
  [[nodiscard]] const vault_error& last_failure() const noexcept { return last_; }

  [[nodiscard]] static bool is_outage(const vault_error& error) noexcept;

 private:
  broker_stats& stats_;
  std::chrono::milliseconds grace_;
  std::uint64_t failures_ = 0;  // consecutive unreachable failures
  bool open_ = false;
  bool probe_in_flight_ = false;
  time_point retry_at_{};  // while open: no call before this
  time_point opened_at_{};
  broker_clock::duration backoff_{};
  vault_error last_;
};

}  // namespace vaultwire::detail
