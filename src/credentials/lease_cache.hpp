// lease_cache: the leases the broker holds and which of them it serves, and the
// fetches in flight (single flight: one Vault request per key however many acquires
// miss at once).
//
// The key is (SHA-256 of the token, namespace, mount, role, route): a credential is
// never served to a request that presented another token. `live` holds every lease
// (what max_leases counts, with the fetches in flight); `cache` maps a key to the
// lease it serves, while that lease's remaining TTL is above the reuse floor.
//
// Not thread-safe: the broker calls it under its mutex (lease_entry.hpp).
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "credentials/lease_entry.hpp"

namespace vaultwire::detail {

// A fetch in flight and the acquires that wait for it.
struct flight {
  pgwire::secret_string token;
  std::string role;
  std::string mount;
  std::string role_key;  // role_key_for(the request)
  std::vector<credential_broker::acquire_callback> waiters;
};

class lease_cache {
 public:
  using live_map = std::map<std::string, std::shared_ptr<lease_entry>>;  // lease id → lease

  // (token hash or the request's identity, namespace, mount, role, route).
  [[nodiscard]] static std::string key_for(const std::string& token_hash, const credential_request& request);
  // (namespace, mount, role): what Vault's per-path answers (an ACL denial, a quota's
  // 429) are about, whatever the token and route.
  [[nodiscard]] static std::string role_key_for(const credential_request& request);
  // The token digest a key starts with.
  [[nodiscard]] static std::string token_hash_of(const std::string& key) { return key.substr(0, key.find('\0')); }

  // The credential `key` serves at `t`, if any: `outage` when it is below the reuse
  // floor but served because the circuit breaker is open and it has more than
  // outage_reuse_floor left (a cold miss could only fail). A cached credential that
  // can no longer be served is dropped from the cache (new sessions get a new one).
  struct hit {
    std::shared_ptr<lease_entry> entry;
    bool outage = false;
  };
  [[nodiscard]] std::optional<hit> find(const std::string& key, time_point t, bool breaker_open);

  // Single flight: false when no fetch for `key` is in flight; else `done` waits for it.
  bool join(const std::string& key, credential_broker::acquire_callback& done);
  void begin_flight(const std::string& key, const credential_request& request,
                    credential_broker::acquire_callback done);
  // The fetch for `key` completed: its flight, to answer the waiters.
  [[nodiscard]] std::optional<flight> end_flight(const std::string& key);

  // Leases held plus fetches in flight: what max_leases bounds.
  [[nodiscard]] std::size_t held() const noexcept { return live_.size() + flights_.size(); }

  // A fetched credential becomes live and is served for `key` (renewal not yet scheduled).
  std::shared_ptr<lease_entry> add(const std::string& key, const std::string& token_hash, const flight& fl,
                                   vault_credential& credential, time_point t);
  // `e` is no longer served to new sessions (its sessions keep it).
  void uncache(const lease_entry& e);
  void uncache_all() { cache_.clear(); }
  [[nodiscard]] bool cached(const lease_entry& e) const;
  // The lease is no longer held (revoked, or past its TTL with no session).
  void forget(const lease_entry& e);

  [[nodiscard]] live_map& live() noexcept { return live_; }
  [[nodiscard]] const live_map& live() const noexcept { return live_; }
  [[nodiscard]] std::size_t cached_count() const noexcept { return cache_.size(); }
  // Token digests that a live lease or a fetch in flight refers to.
  [[nodiscard]] std::set<std::string> referenced_tokens() const;

 private:
  std::map<std::string, std::shared_ptr<lease_entry>> cache_;  // key → the credential served
  live_map live_;                                              // lease id → every lease held
  std::map<std::string, flight> flights_;                      // key → fetch in flight
};

}  // namespace vaultwire::detail
