// The broker's internal types, shared by its parts (lease_cache, token_checker,
// lease_keeper, own_token) and the facade in broker.cpp. Not for use outside
// src/credentials/.
//
// Every mutable field here is guarded by the broker's one mutex: the parts are not
// thread-safe on their own; the facade calls them under that lock. Work that calls
// out of the broker (Vault calls, acquire callbacks, session events, audit events) is
// collected into a deferred_list under the lock and run after it is released.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "credentials/broker.hpp"

namespace vaultwire::detail {

using time_point = broker_clock::time_point;

// A move-only void() task (std::function needs copyable targets; ours own handles
// and secrets). C++23's std::move_only_function, written out.
class unique_task {
 public:
  template <class F>
  unique_task(F f) : impl_{std::make_unique<model<F>>(std::move(f))} {}  // NOLINT: implicit on purpose
  void operator()() { impl_->call(); }

 private:
  struct concept_t {
    virtual ~concept_t() = default;
    virtual void call() = 0;
  };
  template <class F>
  struct model final : concept_t {
    explicit model(F f) : fn{std::move(f)} {}
    void call() override { fn(); }
    F fn;
  };
  std::unique_ptr<concept_t> impl_;
};

using deferred_list = std::vector<unique_task>;

struct lease_entry {
  // Set once at creation; readable without the lock.
  std::string key;
  std::string token_hash;
  std::string lease_id;
  std::string username;
  pgwire::secret_string password;
  std::string role;
  std::string mount;
  std::chrono::seconds duration{0};  // as first issued: the renewal increment
  bool renewable = false;

  // Guarded by the broker's mutex.
  std::chrono::seconds current_duration{0};
  time_point expires_at{};
  time_point next_renew_at{};
  time_point idle_since{};
  std::map<std::uint64_t, std::function<void(lease_event)>> sessions;  // session id → callback
  bool gone = false;      // token revoked, lease gone or expired: never served again
  bool at_max = false;    // Vault stopped extending it
  bool expiring_sent = false;
  bool expired_sent = false;
  bool renew_in_flight = false;
  unsigned renew_failures = 0;  // transient renewal failures in a row (the retry backoff)
  bool revoke_in_flight = false;
  bool abandoned = false;  // revoke was denied: left to its TTL
  bool token_rejected = false;  // its token failed a recheck: Vault revokes a token's leases with it
  time_point revoke_retry_at{};  // an idle revoke skipped by the open breaker waits for this
  std::optional<lease_event> ended_by;  // the terminal event its sessions were sent
  // Read with vaultwire's own login token, once that token's end is final (own_token::
  // final_end: it is replaced by a new login, never renewed again): when the token's
  // TTL ends, and the TTL it was last granted. Vault revokes a token's leases with it
  // ("When a token is revoked, Vault will revoke all leases that were created using
  // that token", https://developer.hashicorp.com/vault/docs/concepts/lease; an expired
  // token is revoked), so the lease ends then at the latest, whatever its own TTL.
  time_point token_ends_at = time_point::max();
  std::chrono::seconds token_ttl{0};

  // When the lease ends for its sessions: its TTL's end, or its token's if sooner.
  [[nodiscard]] time_point ends_at() const noexcept { return std::min(expires_at, token_ends_at); }
  // The end nothing will move any more (max while renewals may still extend it): the
  // lease's at its max TTL (or not renewable), else its token's final end. Its
  // sessions hear `expiring` within expiry_notice of it.
  [[nodiscard]] time_point final_end() const noexcept {
    return at_max || !renewable ? ends_at() : token_ends_at;
  }
  // The duration the reuse floor is taken from: the lease's, or the token's TTL when
  // the token ends first and its TTL is shorter (a 1 h lease read with a 20 s token
  // is served as a 20 s one would be).
  [[nodiscard]] std::chrono::seconds floor_basis() const noexcept {
    return token_ends_at < expires_at ? std::min(current_duration, token_ttl) : current_duration;
  }
};

// An acquire waiting for its token's recheck.
struct pending_acquire {
  credential_request request;
  credential_broker::acquire_callback done;
};

// Events to the sessions of `e`, collected for after the unlock. A terminal event
// (all but `expiring`) is also kept in `ended_by` for late subscribers.
inline void collect_events(lease_entry& e, lease_event ev, deferred_list& deferred) {
  if (ev != lease_event::expiring && !e.ended_by) e.ended_by = ev;
  for (const auto& [id, cb] : e.sessions) {
    (void)id;
    if (cb) deferred.push_back([cb, ev] { cb(ev); });
  }
}

// When a lease (or vaultwire's own token) of `duration` obtained at `from` is renewed:
// at (0.6 + 0.1 * jitter) of it, about two thirds; jitter in [0, 1).
[[nodiscard]] inline time_point next_renewal(time_point from, std::chrono::seconds duration, double jitter) {
  const double fraction = 0.6 + 0.1 * jitter;
  return from + std::chrono::duration_cast<broker_clock::duration>(
                    std::chrono::duration<double>(static_cast<double>(duration.count()) * fraction));
}

// The first 8 hex digits of a token's digest: how logs name a token before its accessor is known.
[[nodiscard]] inline std::string short_hash(const std::string& hash) { return hash.substr(0, 8); }

}  // namespace vaultwire::detail
