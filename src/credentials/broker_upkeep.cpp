// The broker's maintenance: vaultwire's own token (token_file's upkeep, or a
// [vault.auth] login's: own_token.hpp), the lease keeper's renewals and
// idle revocations, rechecks of live sessions' tokens, the breaker's probe when
// nothing else calls Vault, forgetting tokens; and revoke_all() at shutdown.
#include "credentials/broker_state.hpp"

#include <algorithm>
#include <utility>

#include <spdlog/spdlog.h>

namespace vaultwire::detail {

using std::chrono::milliseconds;
using std::chrono::seconds;

pgwire::secret_string broker_state::management_token(const std::string& hash, std::uint64_t* own_generation) {
  if (own_generation != nullptr) *own_generation = 0;
  if (own) {
    std::uint64_t generation = 0;
    if (auto t = own->read(now(), &generation); !t.empty()) {
      if (own_generation != nullptr) *own_generation = generation;
      return t;
    }
  }
  std::lock_guard lock{mutex};
  const token_entry* tok = tokens.find(hash);
  return tok == nullptr ? pgwire::secret_string{} : tok->token.clone();
}

void broker_state::note_own_end(time_point t) {
  if (!own) return;
  const auto end = own->final_end();
  if (!end) return;
  for (auto& [id, e] : cache.live()) {
    (void)id;
    end_with_token(*e, end, t);
  }
}

void broker_state::end_with_token(lease_entry& e, const std::optional<own_token::token_end>& end, time_point t) {
  if (!end || e.token_hash != end->token_hash || e.token_ends_at != time_point::max()) return;
  e.token_ends_at = end->at;
  e.token_ttl = end->ttl;
  if (end->at >= e.expires_at && (e.at_max || !e.renewable)) return;  // its own end comes first
  spdlog::info("credentials: lease {} ends with vaultwire's Vault token that read it, in {}s (the token is replaced "
               "by a new login, not renewed); new sessions get a lease read with the next token",
               e.lease_id, std::max<long long>(0, std::chrono::duration_cast<seconds>(end->at - t).count()));
}

void broker_state::maintain_own_token() {
  if (!own) return;
  const bool logs_in = own->logs_in();
  if (logs_in ? !vault.login || !vault.renew_self : !vault.renew_self || !vault.lookup_self) return;
  pgwire::secret_string token;
  if (!logs_in) {
    token = own->read(now());  // token_file: the file is read outside the lock
    if (token.empty()) return;
  }
  own_token::step step = own_token::step::none;
  admission gate = admission::call;
  std::chrono::seconds increment{0};
  {
    std::lock_guard lock{mutex};
    const time_point t = now();
    step = own->due(t);
    if (step == own_token::step::none) return;
    gate = breaker.admit(t);
    if (gate == admission::skip) {
      ++stats.breaker_skips;
      own->defer(breaker.retry_time(t));
      return;
    }
    own->begin();
    // A login's token to renew: due() said it is held and valid at `t`.
    if (logs_in && step == own_token::step::renew) token = own->read(t);
    increment = own->renew_increment();
  }
  const bool probe = gate == admission::probe;
  if (step == own_token::step::login) {
    send_own_login(probe);
    return;
  }
  auto self = shared_from_this();
  auto done = [self, step, probe](vault_result<vault_token_info> r) {
    deferred_list deferred;
    {
      std::lock_guard lock{self->mutex};
      const time_point t = self->now();
      self->note_vault(r ? nullptr : &r.error(), probe, t, deferred);
      self->own->done(step, r, t, self->jitter(), self->stats);
      self->note_own_end(t);
    }
    run(deferred);
  };
  if (step == own_token::step::renew)
    vault.renew_self(std::move(token), increment, std::move(done));
  else
    vault.lookup_self(std::move(token), std::move(done));
}

void broker_state::send_own_login(bool probe) {
  own_token::login_request req = own->make_login();  // reads the method's files
  if (!req.error.empty()) {
    std::lock_guard lock{mutex};
    if (probe) breaker.probe_not_made();
    own->login_not_sent(req.error, now(), jitter(), stats);
    return;
  }
  auto self = shared_from_this();
  vault.login(std::move(req.mount), std::move(req.body), [self, probe](vault_result<vault_login> r) {
    deferred_list deferred;
    {
      std::lock_guard lock{self->mutex};
      const time_point t = self->now();
      self->note_vault(r ? nullptr : &r.error(), probe, t, deferred);
      self->own->logged_in(std::move(r), t, self->jitter(), self->stats);
      self->note_own_end(t);
    }
    run(deferred);
  });
}

void broker_state::maintain() {
  maintain_own_token();
  deferred_list deferred;
  {
    std::lock_guard lock{mutex};
    const time_point t = now();
    const lease_keeper::plan plan = keeper.sweep(t, deferred);
    for (const auto& c : plan.renewals)
      deferred.push_back([self = shared_from_this(), c] { self->renew(c.lease, c.probe); });
    for (const auto& c : plan.revocations)
      deferred.push_back([self = shared_from_this(), c] { self->revoke(c.lease, nullptr, c.probe); });
    // Live sessions' tokens are rechecked on the token_recheck schedule.
    for (const auto& hash : plan.tokens_in_use) {
      if (token_entry* tok = tokens.due(hash, t)) start_recheck(hash, *tok, deferred);
    }
    // Half-open and nothing above took the probe: probe with a lookup-self of a
    // token we hold (live sessions' tokens first), so the breaker closes soon after
    // Vault is back even without traffic.
    if (breaker.probe_due(t)) {
      const std::string hash = tokens.probe_candidate(plan.tokens_in_use);
      if (!hash.empty()) start_recheck(hash, *tokens.find(hash), deferred);
    }
    // Forget rejections that ended and tokens nothing refers to any more (wipes the secret).
    tokens.sweep(cache.referenced_tokens(), t);
    for (auto h = quota_holds.begin(); h != quota_holds.end();) h = t >= h->second.until ? quota_holds.erase(h) : std::next(h);
  }
  run(deferred);
}

void broker_state::renew(const std::shared_ptr<lease_entry>& e, bool probe) {
  std::uint64_t own_generation = 0;
  auto token = management_token(e->token_hash, &own_generation);
  auto self = shared_from_this();
  vault.renew_lease(e->lease_id, e->duration, std::move(token),
                    [self, e, probe, own_generation](vault_result<vault_lease_renewal> r) {
                      self->on_renewed(e, probe, own_generation, std::move(r));
                    });
}

void broker_state::on_renewed(const std::shared_ptr<lease_entry>& e, bool probe, std::uint64_t own_generation,
                              vault_result<vault_lease_renewal> r) {
  deferred_list deferred;
  {
    std::lock_guard lock{mutex};
    e->renew_in_flight = false;
    const time_point t = now();
    note_vault(r ? nullptr : &r.error(), probe, t, deferred);
    note_own_token(own_generation, r, t);
    auto note = keeper.renewed(*e, r, t, jitter());
    audit(*e, credential_audit_event::kind::renew, std::move(note.result), std::move(note.reason), deferred);
    if (note.event) collect_events(*e, *note.event, deferred);
  }
  run(deferred);
}

void broker_state::revoke(const std::shared_ptr<lease_entry>& e, std::shared_ptr<revoke_wait> wait, bool probe) {
  // vaultwire's own token revokes with the lease id in the body, the form Vault Proxy's
  // lease cache acts on; a client's token keeps the path form, which its policy can
  // scope to one role (update on sys/leases/revoke/<mount>/creds/<role>/*).
  std::uint64_t own_generation = 0;
  auto token = management_token(e->token_hash, &own_generation);
  const revoke_form form = own_generation != 0 ? revoke_form::body : revoke_form::path;
  auto self = shared_from_this();
  vault.revoke_lease(e->lease_id, std::move(token), form, [self, e, wait, probe, own_generation](vault_result<void> r) {
    const bool ok = static_cast<bool>(r);
    self->on_revoked(e, probe, own_generation, std::move(r));
    if (wait) {
      std::lock_guard lock{wait->mutex};
      --wait->pending;
      if (ok) ++wait->succeeded;
      wait->cv.notify_all();
    }
  });
}

void broker_state::on_revoked(const std::shared_ptr<lease_entry>& e, bool probe, std::uint64_t own_generation,
                              vault_result<void> r) {
  deferred_list deferred;
  {
    std::lock_guard lock{mutex};
    e->revoke_in_flight = false;
    const time_point t = now();
    note_vault(r ? nullptr : &r.error(), probe, t, deferred);
    note_own_token(own_generation, r, t);
    auto note = keeper.revoked(*e, r, shutting_down, t);
    audit(*e, credential_audit_event::kind::revoke, std::move(note.result), std::move(note.reason), deferred);
  }
  run(deferred);
}

std::size_t broker_state::revoke_all(milliseconds wait_for) {
  deferred_list deferred;
  std::vector<std::shared_ptr<lease_entry>> to_revoke;
  {
    std::lock_guard lock{mutex};
    shutting_down = true;
    cache.uncache_all();
    for (auto& [id, e] : cache.live()) {
      (void)id;
      e->gone = true;
      collect_events(*e, lease_event::shutdown, deferred);
      if (options.credentials.revoke_on_shutdown && !e->revoke_in_flight && !e->abandoned) {
        e->revoke_in_flight = true;
        to_revoke.push_back(e);
      }
    }
  }
  run(deferred);
  if (to_revoke.empty()) return 0;
  auto wait = std::make_shared<revoke_wait>();
  wait->pending = to_revoke.size();
  spdlog::info("credentials: revoking {} leases at shutdown", to_revoke.size());
  for (auto& e : to_revoke) revoke(e, wait, false);  // at shutdown even an open breaker is tried
  std::unique_lock lock{wait->mutex};
  wait->cv.wait_for(lock, wait_for, [&] { return wait->pending == 0; });
  return wait->succeeded;
}

void broker_state::run_thread() {
  std::unique_lock lock{thread_mutex};
  while (!stop) {
    thread_cv.wait_for(lock, options.tick, [&] { return stop; });
    if (stop) break;
    lock.unlock();
    try {
      maintain();
    } catch (const std::exception& ex) {
      spdlog::error("credentials: maintenance failed: {}", ex.what());
    }
    lock.lock();
  }
}

}  // namespace vaultwire::detail
