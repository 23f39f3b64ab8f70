// lease_keeper: the life of the leases the broker holds (broker.hpp's header comment
// has the rules). A lease with no session for revoke_idle_after is revoked; leases
// with sessions are renewed at about two thirds of their duration; when Vault stops
// extending one (a capped renewal, "lease is not renewable", "past the max TTL", a
// 403) its sessions hear `expiring`, then `expired` at its end; a renewal answered with
// Vault's lease-gone text ("lease not found", "lease expired") ends its sessions with
// `lease_gone`; any other renewal failure is retried with backoff while the lease's
// TTL lasts (vault_refusal has the texts); a revocation Vault denies leaves the lease
// to its TTL. While the circuit breaker is open renewals and
// idle revocations are skipped and retried when it lets calls through again.
//
// It decides and updates the lease entries; the broker makes the Vault calls.
// Not thread-safe: the broker calls it under its mutex (lease_entry.hpp).
#pragma once

#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "credentials/circuit_breaker.hpp"
#include "credentials/lease_cache.hpp"
#include "credentials/lease_entry.hpp"

namespace vaultwire::detail {

class lease_keeper {
 public:
  // All four outlive the keeper.
  lease_keeper(const credentials_config& cfg, lease_cache& cache, circuit_breaker& breaker, broker_stats& stats)
      : cfg_(cfg), cache_(cache), breaker_(breaker), stats_(stats) {}

  // A Vault call to make for a lease, admitted by the breaker (`probe`: as its probe).
  struct call {
    std::shared_ptr<lease_entry> lease;
    bool probe = false;
  };
  struct plan {
    std::vector<call> renewals;
    std::vector<call> revocations;  // idle leases, no longer served
    std::set<std::string> tokens_in_use;  // tokens of leases with sessions
  };
  // One pass over the leases at `t`: leases past their TTL with no session are
  // forgotten, events for the sessions are collected into `deferred`.
  [[nodiscard]] plan sweep(time_point t, deferred_list& deferred);

  // What an audit event says of a renewal or revocation.
  struct audit_note {
    // "ok"; "gone" (Vault no longer has the lease); "final" (renew: it cannot be
    // extended, it runs to its TTL); "denied" (403); "failed" (anything else: retried)
    std::string result;
    std::string reason;
    std::optional<lease_event> event;  // for the lease's sessions, after the audit event
  };
  // A renewal completed at `t` (`jitter` in [0, 1) places the next one).
  audit_note renewed(lease_entry& e, const vault_result<vault_lease_renewal>& r, time_point t, double jitter);
  // A revocation completed at `t`; `shutting_down` names the reason. A lease Vault
  // no longer has is forgotten; a denied one is left to its TTL; another failure is
  // retried after revoke_idle_after.
  audit_note revoked(lease_entry& e, const vault_result<void>& r, bool shutting_down, time_point t);

 private:
  // An idle lease: forgotten at its TTL, else revoked after revoke_idle_after. False
  // when it was forgotten (erased from the live map).
  bool keep_idle(const std::shared_ptr<lease_entry>& e, time_point t, plan& out);
  void keep_in_use(const std::shared_ptr<lease_entry>& e, time_point t, plan& out, deferred_list& deferred);
  // A renewal failure that may pass: the next try, with backoff, within the TTL.
  void retry_renewal(lease_entry& e, const vault_error& err, time_point t);

  const credentials_config& cfg_;
  lease_cache& cache_;
  circuit_breaker& breaker_;
  broker_stats& stats_;
  bool revoke_denied_logged_ = false;
};

}  // namespace vaultwire::detail
