// broker_state: the credential broker's shared state and the facade's steps, behind
// credential_broker and credential_lease (broker.hpp). Its members are defined in
// broker_acquire.cpp (acquire, rechecks, invalidate) and broker_upkeep.cpp
// (maintenance, renewals, revocations, vaultwire's own token). Not for use outside
// src/credentials/.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "credentials/broker.hpp"
#include "credentials/circuit_breaker.hpp"
#include "credentials/lease_cache.hpp"
#include "credentials/lease_entry.hpp"
#include "credentials/lease_keeper.hpp"
#include "credentials/own_token.hpp"
#include "credentials/token_checker.hpp"

namespace vaultwire::detail {

using admission = circuit_breaker::admission;

struct broker_state : std::enable_shared_from_this<broker_state> {
  broker_state(vault_calls v, credential_broker_options o) : vault(std::move(v)), options(std::move(o)) {
    if (options.auth.logs_in())
      own.emplace(options.auth);
    else if (options.token_file)
      own.emplace(*options.token_file);
  }

  vault_calls vault;
  credential_broker_options options;

  mutable std::mutex mutex;  // guards everything below but `own`'s file and the thread's fields
  broker_stats stats;
  lease_cache cache;
  token_checker tokens{options.credentials.token_recheck, options.credentials.token_grace,
                       options.credentials.negative_cache};
  circuit_breaker breaker{stats, options.credentials.token_grace};
  lease_keeper keeper{options.credentials, cache, breaker, stats};
  std::optional<own_token> own;  // with [vault] token_file or a [vault.auth] login
  // A quota's 429 with Retry-After: no creds request for the role (lease_cache::
  // role_key_for) before `until`, whatever the token.
  struct quota_hold {
    time_point until{};
    vault_error error;
  };
  std::map<std::string, quota_hold> quota_holds;
  std::uint64_t next_session = 1;
  bool shutting_down = false;
  std::mt19937_64 prng{std::random_device{}()};

  // The maintenance thread.
  std::mutex thread_mutex;
  std::condition_variable thread_cv;
  bool stop = false;
  std::thread thread;

  time_point now() const { return options.clock ? options.clock() : broker_clock::now(); }
  double jitter() {
    if (options.jitter) return options.jitter();
    return std::uniform_real_distribution<double>(0.0, 1.0)(prng);
  }

  // Runs the work collected under the lock, after it is released.
  static void run(deferred_list& deferred) {
    for (auto& f : deferred) f();
  }

  // An audit event for lease `e`, delivered after the lock is released.
  void audit(const lease_entry& e, credential_audit_event::kind what, std::string result, std::string reason,
             deferred_list& deferred) const;

  credential_lease make_handle(const std::shared_ptr<lease_entry>& e, bool from_cache);

  // The token that renews and revokes: vaultwire's own when it holds one, else the
  // client's (may be empty). `own_generation`, when given, is set to the own token's
  // generation (own_token::rejected), or 0 when the client's is returned.
  pgwire::secret_string management_token(const std::string& hash, std::uint64_t* own_generation = nullptr);

  // A call made with vaultwire's own token (`own_generation` != 0) failed with `r`:
  // Vault's bad-token refusal drops a login's token (under `mutex`).
  template <class T>
  void note_own_token(std::uint64_t own_generation, const vault_result<T>& r, time_point t) {
    if (own_generation != 0 && own && !r && r.error().refusal == vault_refusal::bad_token)
      own->rejected(own_generation, t);
  }

  // Every completed Vault call reports here (under `mutex`). When it is the first
  // "unreachable" failure, acquires waiting for a recheck whose token is within grace
  // are served now (stale-while-revalidate) instead of waiting out request_timeout.
  void note_vault(const vault_error* error, bool probe, time_point t, deferred_list& deferred);

  // --- acquire -----------------------------------------------------------------

  bool acquire(credential_request req, credential_broker::acquire_callback done);

  static broker_error simple_error(broker_error_kind kind, std::string message) {
    broker_error e;
    e.kind = kind;
    e.message = std::move(message);
    return e;
  }

  // Vault's ACL denial of `role` for a valid token (28000), naming the role and Vault's text.
  static broker_error role_denied_error(const vault_error& denial, const std::string& role);

  // The refusal while a 429's Retry-After for the role lasts at `t`, if one does.
  std::optional<broker_error> quota_held(const std::string& role_key, const std::string& role, time_point t);

  static void refuse(credential_broker::acquire_callback& done, broker_error e, deferred_list& deferred) {
    deferred.push_back([done = std::move(done), e = std::move(e)]() mutable { done(std::move(e)); });
  }

  // `retry`: a waiter coming back after a recheck (already counted).
  void acquire_locked(credential_request req, credential_broker::acquire_callback done, deferred_list& deferred,
                      bool retry = false);

  // A cached credential: served now, or after its token's recheck (token_checker).
  [[nodiscard]] static bool superseded(const lease_cache::hit& hit, const credential_request& req,
                                       const std::string& hash);
  void serve_hit(const lease_cache::hit& hit, const std::string& hash, credential_request req,
                 credential_broker::acquire_callback done, time_point t, deferred_list& deferred);

  // A miss: one read_credentials for the key, unless the breaker or the budget refuses.
  void fetch(const std::string& key, const std::string& hash, credential_request req,
             credential_broker::acquire_callback done, time_point t, deferred_list& deferred);

  void on_fetched(const std::string& key, const std::string& hash, bool probe, vault_result<vault_credential> r);

  void issue(const std::string& key, const std::string& hash, flight& fl, vault_credential& c, time_point t,
             deferred_list& deferred);

  void fail_flight(const std::string& hash, flight& fl, const vault_error& error, time_point t,
                   deferred_list& deferred);

  static void flush_after_first_lookup(token_entry& tok, deferred_list& deferred);
  // A new token's first lookup-self, unless asked already (or held back by the breaker).
  void start_first_lookup(const std::string& hash, token_entry& tok, deferred_list& deferred);
  void refuse_for_rejected_token(lease_entry& e, const std::string& hash, flight& fl, vault_error rejection,
                                 deferred_list& deferred);

  // --- token recheck -------------------------------------------------------------

  void start_recheck(const std::string& hash, token_entry& tok, deferred_list& deferred);

  void on_rechecked(const std::string& hash, bool probe, vault_result<vault_token_info> r);

  void finish_recheck(const std::string& hash, token_entry& tok, vault_result<vault_token_info>& r,
                      std::vector<pending_acquire> waiting, time_point t, deferred_list& deferred);

  // A recheck that Vault did not answer (`real`), or that the open breaker did not
  // send: the last good check is trusted for token_grace, then waiters get 08001.
  void recheck_unreachable(const std::string& hash, token_entry& tok, const vault_error& error, bool real,
                           std::vector<pending_acquire> waiting, time_point t, deferred_list& deferred);

  // --- release, invalidate -----------------------------------------------------

  void release(const std::shared_ptr<lease_entry>& e, std::uint64_t session);

  void invalidate(const std::shared_ptr<lease_entry>& e);

  // --- maintenance -----------------------------------------------------------------

  // vaultwire's own token's end may have become final (after a login or a renew-self):
  // the leases read with it end with it (lease_entry::token_ends_at). Under `mutex`.
  void note_own_end(time_point t);
  // Lease `e` ends with `end` when its token is that one (and not marked yet). Under `mutex`.
  static void end_with_token(lease_entry& e, const std::optional<own_token::token_end>& end, time_point t);

  void maintain_own_token();
  // The login step of it, outside the lock (the method's files are read here).
  void send_own_login(bool probe);

  void maintain();

  void renew(const std::shared_ptr<lease_entry>& e, bool probe);

  void on_renewed(const std::shared_ptr<lease_entry>& e, bool probe, std::uint64_t own_generation,
                  vault_result<vault_lease_renewal> r);

  struct revoke_wait {
    std::mutex mutex;
    std::condition_variable cv;
    std::size_t pending = 0;
    std::size_t succeeded = 0;
  };

  void revoke(const std::shared_ptr<lease_entry>& e, std::shared_ptr<revoke_wait> wait, bool probe);

  void on_revoked(const std::shared_ptr<lease_entry>& e, bool probe, std::uint64_t own_generation,
                  vault_result<void> r);

  std::size_t revoke_all(std::chrono::milliseconds wait_for);

  void run_thread();
};

}  // namespace vaultwire::detail
