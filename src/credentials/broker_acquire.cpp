// The broker's acquire path: the negative cache, a cache hit (served now or after its
// token's recheck), single flight and the budget, the fetch and its answer; token
// rechecks; release and invalidate. broker.hpp's header comment has the rules.
#include "credentials/broker_state.hpp"

#include <utility>

#include <spdlog/spdlog.h>

namespace vaultwire::detail {

using std::chrono::milliseconds;
using std::chrono::seconds;

void broker_state::audit(const lease_entry& e, credential_audit_event::kind what, std::string result, std::string reason,
           deferred_list& deferred) const {
  if (!options.on_audit) return;
  credential_audit_event ev;
  ev.what = what;
  ev.lease_id = e.lease_id;
  ev.role = e.role;
  ev.db_user = e.username;
  if (const token_entry* tok = tokens.find(e.token_hash); tok != nullptr && tok->has_info) {
    ev.token_accessor = tok->info.accessor;
    ev.token_display_name = tok->info.display_name;
    ev.entity_id = tok->info.entity_id;
  }
  ev.result = std::move(result);
  ev.reason = std::move(reason);
  deferred.push_back([cb = options.on_audit, ev = std::move(ev)] { cb(ev); });
}

credential_lease broker_state::make_handle(const std::shared_ptr<lease_entry>& e, bool from_cache) {
  credential_lease h;
  h.state_ = shared_from_this();
  h.entry_ = e;
  h.session_id_ = next_session++;
  h.from_cache_ = from_cache;
  e->sessions.emplace(h.session_id_, nullptr);
  return h;
}

void broker_state::note_vault(const vault_error* error, bool probe, time_point t, deferred_list& deferred) {
  if (!breaker.note(error, probe, t)) return;
  for (auto& w : tokens.release_in_grace(t)) acquire_locked(std::move(w.request), std::move(w.done), deferred, true);
}

bool broker_state::acquire(credential_request req, credential_broker::acquire_callback done) {
  deferred_list deferred;
  bool fetching = false;
  {
    std::lock_guard lock{mutex};
    const auto fetches = stats.vault_fetches;
    acquire_locked(std::move(req), std::move(done), deferred);
    fetching = stats.vault_fetches != fetches;
  }
  run(deferred);
  return fetching;
}

void broker_state::acquire_locked(credential_request req, credential_broker::acquire_callback done, deferred_list& deferred,
                    bool retry) {
  if (!retry) ++stats.acquires;
  const time_point t = now();
  if (shutting_down) {
    refuse(done, simple_error(broker_error_kind::shutting_down, "vaultwire is shutting down; reconnect"), deferred);
    return;
  }
  const std::string hash = req.token_hash.empty() ? credential_broker::token_digest(req.token) : req.token_hash;
  if (auto rejection = tokens.rejection(hash, t)) {
    ++stats.negative_cache_hits;
    broker_error e;
    e.kind = broker_error_kind::token_rejected;
    e.message = rejection->to_client_message();
    e.vault = std::move(*rejection);
    refuse(done, std::move(e), deferred);
    return;
  }
  if (auto denial = tokens.role_denial(hash + '\0' + lease_cache::role_key_for(req), t)) {
    ++stats.role_negative_hits;
    refuse(done, role_denied_error(*denial, req.role), deferred);
    return;
  }
  const std::string key = lease_cache::key_for(hash, req);
  if (auto hit = cache.find(key, t, breaker.open()); hit && !superseded(*hit, req, hash)) {
    serve_hit(*hit, hash, std::move(req), std::move(done), t, deferred);
    return;
  }
  if (cache.join(key, done)) {
    ++stats.single_flight_joins;
    return;
  }
  fetch(key, hash, std::move(req), std::move(done), t, deferred);
}

// Under a login's identity, a lease read with an earlier token of vaultwire's whose end
// is final goes to no new session: it gets one read with the current token, which
// replaces it in the cache, while the old one's sessions keep it until its end (they
// have heard `expiring`). In an outage the old one is still better than none.
bool broker_state::superseded(const lease_cache::hit& hit, const credential_request& req, const std::string& hash) {
  const lease_entry& e = *hit.entry;
  return !req.identity.empty() && !hit.outage && e.token_hash != hash && e.token_ends_at != time_point::max();
}

void broker_state::serve_hit(const lease_cache::hit& hit, const std::string& hash, credential_request req,
               credential_broker::acquire_callback done, time_point t, deferred_list& deferred) {
  token_entry& tok = tokens.entry(hash, req.token);
  const auto verdict = tokens.on_hit(tok, t, breaker.healthy());
  if (verdict == token_checker::verdict::wait) {
    tok.waiting.push_back({std::move(req), std::move(done)});
    start_recheck(hash, tok, deferred);
    return;
  }
  ++stats.cache_hits;
  if (hit.outage) ++stats.outage_hits;
  if (verdict == token_checker::verdict::serve_stale) ++stats.stale_hits;
  deferred.push_back([done = std::move(done), h = make_handle(hit.entry, true)]() mutable { done(std::move(h)); });
  if (verdict == token_checker::verdict::serve_stale) start_recheck(hash, tok, deferred);
}

broker_error broker_state::role_denied_error(const vault_error& denial, const std::string& role) {
  broker_error e;
  e.kind = broker_error_kind::role_denied;
  e.vault = denial;
  e.message = "Vault's policy for this token does not allow role \"" + role + "\" (" + denial.request + ": " +
              (denial.message.empty() ? "HTTP 403" : denial.message) + "); the token may still open other roles";
  return e;
}

std::optional<broker_error> broker_state::quota_held(const std::string& role_key, const std::string& role,
                                                     time_point t) {
  const auto h = quota_holds.find(role_key);
  if (h == quota_holds.end()) return std::nullopt;
  if (t >= h->second.until) {
    quota_holds.erase(h);
    return std::nullopt;
  }
  const vault_error& e = h->second.error;
  broker_error err;
  err.kind = broker_error_kind::vault;
  err.vault = e;
  err.message = "Vault at " + e.address + " refused more requests for role \"" + role + "\" (" + e.message +
                ", HTTP 429); retry after " +
                std::to_string(std::chrono::ceil<seconds>(h->second.until - t).count()) + "s";
  return err;
}

void broker_state::fetch(const std::string& key, const std::string& hash, credential_request req,
           credential_broker::acquire_callback done, time_point t, deferred_list& deferred) {
  if (auto held = quota_held(lease_cache::role_key_for(req), req.role, t)) {
    ++stats.quota_holds;
    refuse(done, std::move(*held), deferred);
    return;
  }
  const admission gate = breaker.admit(t);
  if (gate == admission::skip) {
    ++stats.fast_failures;
    broker_error e;
    e.kind = broker_error_kind::vault;
    e.vault = breaker.last_failure();
    e.message = breaker.message(t);
    refuse(done, std::move(e), deferred);
    return;
  }
  const std::size_t max = options.credentials.max_leases;
  if (cache.held() >= max) {
    if (gate == admission::probe) breaker.probe_not_made();
    ++stats.budget_refusals;
    spdlog::warn("credentials: lease budget reached ({} live leases, max_leases = {}); refusing a new credential",
                 cache.held(), max);
    refuse(done,
           simple_error(broker_error_kind::lease_budget,
                        "vaultwire holds " + std::to_string(max) + " leases, its limit (max_leases); try again later"),
           deferred);
    return;
  }
  ++stats.vault_fetches;
  token_entry& tok = tokens.entry(hash, req.token);
  cache.begin_flight(key, req, std::move(done));
  start_first_lookup(hash, tok, deferred);
  auto self = shared_from_this();
  const bool probe = gate == admission::probe;
  deferred.push_back([self, key, hash, probe, mount = std::move(req.mount), role = std::move(req.role),
                      token = std::move(req.token)]() mutable {
    self->vault.read_credentials(std::move(mount), std::move(role), std::move(token),
                                 [self, key, hash, probe](vault_result<vault_credential> r) {
                                   self->on_fetched(key, hash, probe, std::move(r));
                                 });
  });
}

void broker_state::on_fetched(const std::string& key, const std::string& hash, bool probe, vault_result<vault_credential> r) {
  deferred_list deferred;
  {
    std::lock_guard lock{mutex};
    const time_point t = now();
    note_vault(r ? nullptr : &r.error(), probe, t, deferred);
    // Always present (one completion per flight); ended after note_vault so that
    // waiters it releases may still join this flight.
    if (auto fl = cache.end_flight(key)) {
      if (r)
        issue(key, hash, *fl, r.value(), t, deferred);
      else
        fail_flight(hash, *fl, r.error(), t, deferred);
    }
  }
  run(deferred);
}

void broker_state::issue(const std::string& key, const std::string& hash, flight& fl, vault_credential& c, time_point t,
           deferred_list& deferred) {
  auto e = cache.add(key, hash, fl, c, t);
  e->next_renew_at = next_renewal(t, c.lease_duration, jitter());
  if (own) end_with_token(*e, own->final_end(), t);  // read with vaultwire's own token: it may end with it
  token_entry& tok = tokens.entry(hash, fl.token);
  if (auto rejection = tokens.rejection(hash, t)) {
    refuse_for_rejected_token(*e, hash, fl, std::move(*rejection), deferred);
    return;
  }
  tokens.confirmed(tok, t);  // Vault just honoured the token
  spdlog::info("credentials: new lease {} for role {} ({}s, {}renewable), {}, {} waiting", e->lease_id, e->role,
               c.lease_duration.count(), c.renewable ? "" : "not ", tokens.name(hash), fl.waiters.size());
  // The breaker may have held back the lookup when the fetch began; it answered since.
  start_first_lookup(hash, tok, deferred);
  const bool wait_for_lookup = tok.first == token_entry::first_lookup::in_flight;
  if (!wait_for_lookup) audit(*e, credential_audit_event::kind::issue, "ok", "", deferred);
  bool first = true;
  for (auto& w : fl.waiters) {
    (wait_for_lookup ? tok.after_first_lookup : deferred)
        .push_back([w = std::move(w), h = make_handle(e, !first)]() mutable { w(std::move(h)); });
    first = false;
  }
  if (!wait_for_lookup) return;
  // The waiters and the issue event follow the lookup's answer (the event first).
  tok.after_first_lookup.push_back([self = shared_from_this(), e] {
    deferred_list later;
    {
      std::lock_guard lock{self->mutex};
      self->audit(*e, credential_audit_event::kind::issue, "ok", "", later);
    }
    run(later);
  });
}

void broker_state::start_first_lookup(const std::string& hash, token_entry& tok, deferred_list& deferred) {
  if (tok.first != token_entry::first_lookup::not_asked) return;
  start_recheck(hash, tok, deferred);
  if (tok.recheck_in_flight) tok.first = token_entry::first_lookup::in_flight;
}

// The token's lookup-self, sent beside this fetch, said Vault no longer honours the
// token (revoked between the two calls): the lease it read is not served. Vault
// revokes a token's leases with it; the entry, never handed out, is revoked when idle
// like any other (lease_keeper).
void broker_state::refuse_for_rejected_token(lease_entry& e, const std::string& hash, flight& fl,
                                             vault_error rejection, deferred_list& deferred) {
  e.gone = true;
  e.token_rejected = true;
  cache.uncache(e);
  broker_error err;
  err.kind = broker_error_kind::token_rejected;
  err.message = rejection.to_client_message();
  err.vault = std::move(rejection);
  spdlog::info("credentials: lease {} for role {} not served: Vault rejected {} meanwhile", e.lease_id, e.role,
               tokens.name(hash));
  audit(e, credential_audit_event::kind::issue, "ok", "not served: Vault rejected the token", deferred);
  for (auto& w : fl.waiters) deferred.push_back([w = std::move(w), err]() mutable { w(err); });
}

void broker_state::fail_flight(const std::string& hash, flight& fl, const vault_error& error, time_point t,
                 deferred_list& deferred) {
  broker_error err;
  err.kind = broker_error_kind::vault;
  err.vault = error;
  err.message = error.to_client_message();
  if (error.policy_denied()) {
    // The token's policy lacks this role; the token may be good for others. Only
    // lookup-self can say the token itself is bad (finish_recheck refuses it then).
    ++stats.role_denials;
    tokens.deny_role(hash + '\0' + fl.role_key, error, t);
    err = role_denied_error(error, fl.role);
    token_entry& tok = tokens.entry(hash, fl.token);
    if (!tok.recheck_in_flight && t >= tok.next_check_at) start_recheck(hash, tok, deferred);
  } else if (error.token_rejected()) {
    tokens.reject(hash, error, t);
  } else if (error.kind == vault_error_kind::rate_limited && error.retry_after.count() > 0) {
    quota_holds[fl.role_key] = {t + error.retry_after, error};
    err.message += "; retry after " + std::to_string(error.retry_after.count()) + "s";
    spdlog::warn("credentials: Vault answered 429 for role {} ({}); no credential request for it for {}s",
                 fl.role, error.message, error.retry_after.count());
  }
  spdlog::info("credentials: fetch for role {} failed ({}, {} waiting): {} {}", fl.role, tokens.name(hash),
               fl.waiters.size(), to_string(error.kind), error.message);
  for (auto& w : fl.waiters) deferred.push_back([w = std::move(w), err]() mutable { w(err); });
}

void broker_state::flush_after_first_lookup(token_entry& tok, deferred_list& deferred) {
  // The issue event first (it was queued last), then the waiters.
  if (!tok.after_first_lookup.empty()) {
    deferred.push_back(std::move(tok.after_first_lookup.back()));
    tok.after_first_lookup.pop_back();
  }
  for (auto& f : tok.after_first_lookup) deferred.push_back(std::move(f));
  tok.after_first_lookup.clear();
}

void broker_state::start_recheck(const std::string& hash, token_entry& tok, deferred_list& deferred) {
  if (tok.recheck_in_flight) return;
  const time_point t = now();
  const admission gate = breaker.admit(t);
  if (gate == admission::skip) {
    // The breaker is open: no Vault call; the answer is "unreachable".
    ++stats.breaker_skips;
    std::vector<pending_acquire> waiting = std::move(tok.waiting);
    tok.waiting.clear();
    recheck_unreachable(hash, tok, breaker.last_failure(), false, std::move(waiting), t, deferred);
    return;
  }
  tok.recheck_in_flight = true;
  ++stats.token_rechecks;
  auto self = shared_from_this();
  const bool probe = gate == admission::probe;
  deferred.push_back([self, hash, probe, token = tok.token.clone()]() mutable {
    self->vault.lookup_self(std::move(token), [self, hash, probe](vault_result<vault_token_info> r) {
      self->on_rechecked(hash, probe, std::move(r));
    });
  });
}

void broker_state::on_rechecked(const std::string& hash, bool probe, vault_result<vault_token_info> r) {
  deferred_list deferred;
  {
    std::lock_guard lock{mutex};
    const time_point t = now();
    token_entry* tok = tokens.find(hash);
    std::vector<pending_acquire> waiting;
    if (tok != nullptr) {
      tok->recheck_in_flight = false;
      waiting = std::move(tok->waiting);
      tok->waiting.clear();
    }
    note_vault(r ? nullptr : &r.error(), probe, t, deferred);
    if (tok != nullptr) {
      if (tok->first == token_entry::first_lookup::in_flight) tok->first = token_entry::first_lookup::answered;
      finish_recheck(hash, *tok, r, std::move(waiting), t, deferred);
      flush_after_first_lookup(*tok, deferred);
    }
  }
  run(deferred);
}

void broker_state::finish_recheck(const std::string& hash, token_entry& tok, vault_result<vault_token_info>& r,
                    std::vector<pending_acquire> waiting, time_point t, deferred_list& deferred) {
  if (!r && r.error().policy_denied()) {
    // Vault evaluated the token's policy, so the token is valid; the policy only lacks
    // auth/token/lookup-self (a token made with no_default_policy).
    spdlog::info("credentials: {} may not look itself up ({}); Vault knows it, so it stays valid",
                 tokens.name(hash), r.error().message);
    tokens.confirmed(tok, t);
    for (auto& w : waiting) acquire_locked(std::move(w.request), std::move(w.done), deferred, true);
    return;
  }
  if (!r && !r.error().token_rejected()) {
    recheck_unreachable(hash, tok, r.error(), true, std::move(waiting), t, deferred);
    return;
  }
  if (r) {
    if (tokens.looked_up(tok, std::move(r.value()), t))
      spdlog::info("credentials: token sha256:{} is accessor {} ({})", short_hash(hash), tok.info.accessor,
                   tok.info.display_name);
  } else {
    ++stats.tokens_revoked;
    spdlog::warn("credentials: {} was rejected by Vault on recheck ({}); ending its sessions", tokens.name(hash),
                 r.error().message);
    tokens.reject(hash, r.error(), t);
    // Sessions that read their credential with vaultwire's own token (client_auth =
    // "peer") recheck that token like a client's: a login method drops it and logs in
    // again, so new sessions get a fresh token instead of this rejected one.
    if (own) own->rejected_digest(hash, t);
    for (auto& [id, e] : cache.live()) {
      (void)id;
      if (e->token_hash != hash || e->gone) continue;
      e->gone = true;
      e->token_rejected = true;
      cache.uncache(*e);
      collect_events(*e, lease_event::token_revoked, deferred);
    }
  }
  // Served now, or (rejected) refused by the negative cache.
  for (auto& w : waiting) acquire_locked(std::move(w.request), std::move(w.done), deferred, true);
}

void broker_state::recheck_unreachable(const std::string& hash, token_entry& tok, const vault_error& error, bool real,
                         std::vector<pending_acquire> waiting, time_point t, deferred_list& deferred) {
  if (const auto left = tokens.unverified(tok, t)) {
    ++stats.rechecks_in_grace;
    if (real)
      spdlog::warn("credentials: recheck of {} failed ({} {}); trusting the last good check for up to {}s",
                   tokens.name(hash), to_string(error.kind), error.message, left->count());
    else
      spdlog::debug("credentials: recheck of {} skipped (circuit breaker open); trusting the last good check "
                    "for up to {}s",
                    tokens.name(hash), left->count());
    for (auto& w : waiting) acquire_locked(std::move(w.request), std::move(w.done), deferred, true);
    return;
  }
  broker_error err;
  err.kind = broker_error_kind::token_unverified;
  err.vault = error;
  err.message = real ? error.to_client_message() : breaker.message(t);
  for (auto& w : waiting) deferred.push_back([done = std::move(w.done), err]() mutable { done(err); });
}

void broker_state::release(const std::shared_ptr<lease_entry>& e, std::uint64_t session) {
  std::lock_guard lock{mutex};
  e->sessions.erase(session);
  if (e->sessions.empty()) e->idle_since = now();
}

void broker_state::invalidate(const std::shared_ptr<lease_entry>& e) {
  std::lock_guard lock{mutex};
  cache.uncache(*e);
  e->gone = true;
  spdlog::info("credentials: lease {} invalidated (the server refused it)", e->lease_id);
}

}  // namespace vaultwire::detail
