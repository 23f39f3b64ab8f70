#include "credentials/lease_keeper.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

namespace vaultwire::detail {

using admission = circuit_breaker::admission;

lease_keeper::plan lease_keeper::sweep(time_point t, deferred_list& deferred) {
  plan out;
  auto& live = cache_.live();
  for (auto it = live.begin(); it != live.end();) {
    const auto e = it->second;
    if (e->revoke_in_flight) {
      ++it;
    } else if (!e->sessions.empty()) {
      keep_in_use(e, t, out, deferred);
      ++it;
    } else if (keep_idle(e, t, out)) {
      ++it;
    } else {
      // Vault has dropped it (or will now): forget it.
      spdlog::info("credentials: lease {} reached its TTL{}", e->lease_id,
                   e->token_ends_at < e->expires_at ? " (the end of the token that read it)" : "");
      cache_.uncache(*e);
      it = live.erase(it);
    }
  }
  return out;
}

bool lease_keeper::keep_idle(const std::shared_ptr<lease_entry>& e, time_point t, plan& out) {
  if (t >= e->ends_at()) return false;
  if (e->abandoned || t - e->idle_since < cfg_.revoke_idle_after || t < e->revoke_retry_at) return true;
  const admission gate = breaker_.admit(t);
  if (gate == admission::skip) {
    // Kept cached and live (still servable); revoked once Vault is back.
    ++stats_.breaker_skips;
    e->revoke_retry_at = breaker_.retry_time(t);
    return true;
  }
  cache_.uncache(*e);
  e->gone = true;
  e->revoke_in_flight = true;
  out.revocations.push_back({e, gate == admission::probe});
  return true;
}

void lease_keeper::keep_in_use(const std::shared_ptr<lease_entry>& e, time_point t, plan& out,
                               deferred_list& deferred) {
  out.tokens_in_use.insert(e->token_hash);
  if (t >= e->ends_at()) {
    if (!e->expired_sent) {
      e->expired_sent = true;
      e->gone = true;
      cache_.uncache(*e);
      if (!cfg_.session_may_outlive_lease) collect_events(*e, lease_event::expired, deferred);
    }
    return;
  }
  if (e->renewable && !e->at_max && !e->gone && !e->renew_in_flight && t >= e->next_renew_at) {
    const admission gate = breaker_.admit(t);
    if (gate == admission::skip) {
      ++stats_.breaker_skips;
      e->next_renew_at = breaker_.retry_time(t);
    } else {
      e->renew_in_flight = true;
      out.renewals.push_back({e, gate == admission::probe});
    }
  }
  // At the lease's max TTL, or at the final end of the token that read it: the same
  // notice, then the same at-idle end (the session's), then `expired` above.
  const time_point end = e->final_end();
  if (end != time_point::max() && !e->expiring_sent && !cfg_.session_may_outlive_lease &&
      end - t <= cfg_.expiry_notice) {
    e->expiring_sent = true;
    collect_events(*e, lease_event::expiring, deferred);
  }
}

lease_keeper::audit_note lease_keeper::renewed(lease_entry& e, const vault_result<vault_lease_renewal>& r,
                                               time_point t, double jitter) {
  if (r) {
    ++stats_.renewals;
    e.renew_failures = 0;
    const std::chrono::seconds got = r.value().lease_duration;
    e.current_duration = got;
    e.expires_at = t + got;
    e.next_renew_at = next_renewal(t, got, jitter);
    if (got + std::chrono::seconds{1} < e.duration || !r.value().renewable) {
      e.at_max = true;
      spdlog::info("credentials: lease {} renewed for {}s, its max TTL", e.lease_id, got.count());
    } else {
      spdlog::debug("credentials: lease {} renewed for {}s", e.lease_id, got.count());
    }
    return {"ok", "", std::nullopt};
  }
  ++stats_.renewal_failures;
  const vault_error& err = r.error();
  if (err.refusal == vault_refusal::lease_gone) {
    ++stats_.renewals_gone;
    spdlog::warn("credentials: lease {} is gone ({}); ending its sessions", e.lease_id, err.message);
    e.gone = true;
    cache_.uncache(e);
    return {"gone", err.message, lease_event::lease_gone};
  }
  const auto left = std::chrono::duration_cast<std::chrono::seconds>(e.expires_at - t);
  if (err.refusal == vault_refusal::lease_final || err.kind == vault_error_kind::forbidden) {
    // Will not improve: the lease runs to its end, its sessions hear expiring, then expired.
    e.at_max = true;
    ++(err.kind == vault_error_kind::forbidden ? stats_.renewal_denied : stats_.renewals_final);
    spdlog::warn("credentials: lease {} cannot be renewed ({}); it ends at its TTL, in {}s", e.lease_id,
                 err.message, std::max<long long>(0, left.count()));
    return {err.kind == vault_error_kind::forbidden ? "denied" : "final", err.message, std::nullopt};
  }
  retry_renewal(e, err, t);
  return {"failed", err.message, std::nullopt};
}

void lease_keeper::retry_renewal(lease_entry& e, const vault_error& err, time_point t) {
  // Vault answers every renewal error with 400, a failed database connection too
  // (expiration.go renewEntry): anything not known to be final is tried again, 1 s
  // after the first failure, doubling up to 30 s, never later than a quarter of what
  // is left, so the tries go on while the lease lasts. A 429's Retry-After is kept.
  ++stats_.renewal_retries;
  ++e.renew_failures;
  const auto left = e.expires_at - t;
  const broker_clock::duration backoff = std::chrono::seconds{1LL << std::min(e.renew_failures - 1, 5U)};
  const broker_clock::duration cap =
      std::clamp<broker_clock::duration>(left / 4, std::chrono::seconds{1}, std::chrono::seconds{30});
  broker_clock::duration delay = std::min(backoff, cap);
  if (err.retry_after > delay) delay = err.retry_after;
  e.next_renew_at = t + delay;
  spdlog::warn("credentials: renewing lease {} failed ({} {}; {} in a row); retrying in {}ms while its TTL lasts "
               "({}s left)",
               e.lease_id, to_string(err.kind), err.message, e.renew_failures,
               std::chrono::duration_cast<std::chrono::milliseconds>(delay).count(),
               std::max<long long>(0, std::chrono::duration_cast<std::chrono::seconds>(left).count()));
}

lease_keeper::audit_note lease_keeper::revoked(lease_entry& e, const vault_result<void>& r, bool shutting_down,
                                               time_point t) {
  audit_note note;
  note.reason = shutting_down ? "shutdown" : e.token_rejected ? "token revoked" : "idle";
  if (r) {
    ++stats_.revokes;
    spdlog::info("credentials: revoked lease {}", e.lease_id);
    cache_.forget(e);
    note.result = "ok";
    return note;
  }
  const auto kind = r.error().kind;
  const bool gone = r.error().refusal == vault_refusal::lease_gone;
  note.result = kind == vault_error_kind::forbidden ? "denied" : gone ? "gone" : "failed";
  if (gone) {
    // Vault says it no longer has the lease (an unknown one is answered 204, like a
    // success): nothing is left to revoke, and it no longer counts against max_leases.
    ++stats_.revoke_gone;
    spdlog::info("credentials: lease {} is already gone in Vault ({})", e.lease_id, r.error().message);
    cache_.forget(e);
    return note;
  }
  if (e.token_rejected && kind == vault_error_kind::forbidden) {
    // The revoke used the dead token itself: Vault revoked the token's leases when it
    // revoked the token. Not a policy problem, and the lease no longer counts against
    // max_leases.
    spdlog::info("credentials: lease {} went with its revoked token ({})", e.lease_id, r.error().message);
    cache_.forget(e);
    return note;
  }
  if (kind == vault_error_kind::forbidden) {
    ++stats_.revoke_denied;
    e.abandoned = true;  // kept (it still counts against max_leases) until its TTL
    if (!revoke_denied_logged_) {
      revoke_denied_logged_ = true;
      spdlog::warn(
          "credentials: Vault denied revoking lease {} ({}); leases will end at their TTL. Give vaultwire a "
          "token of its own ([vault] token_file or [vault.auth]) that may update sys/leases/revoke, or allow "
          "update on sys/leases/revoke/<mount>/creds/<role>/* for the client's token",
          e.lease_id, r.error().message);
    }
    return note;
  }
  ++stats_.revoke_failures;
  e.idle_since = t;  // try again after revoke_idle_after
  spdlog::warn("credentials: revoking lease {} failed: {} {}", e.lease_id, to_string(kind), r.error().message);
  return note;
}

}  // namespace vaultwire::detail
