// credential_broker: the lease cache (broker.hpp has the
// contract). No Asio here: the broker is driven by vault_calls callbacks and by
// maintain(), which its own thread calls every options.tick.
//
// Locking: one mutex (broker_state::mutex) guards every map and every lease entry's
// mutable fields. Work that calls out (Vault calls, acquire callbacks, event
// callbacks) is collected under the lock into `deferred` and run after unlocking,
// so fakes that complete inline and callbacks that re-enter the broker are safe.
//
// Wiring it into the session (a coroutine) mirrors vault_await.hpp's async_vault:
//   co_await async_initiate<const use_awaitable_t<>&, void(broker_result<credential_lease>)>(
//       [executor, &broker, &req](auto handler) {
//         auto shared = std::make_shared<decltype(handler)>(std::move(handler));
//         broker.acquire(std::move(req), [shared, executor](broker_result<credential_lease> r) {
//           post(executor, [shared, r = std::move(r)]() mutable { (*shared)(std::move(r)); });
//         });
//       }, use_awaitable);
#include "credentials/broker.hpp"

#include <algorithm>
#include <condition_variable>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <sstream>
#include <system_error>
#include <thread>
#include <utility>

#include <spdlog/spdlog.h>

#include "core/digest.hpp"
#include "credentials/circuit_breaker.hpp"

namespace vaultwire {

using std::chrono::milliseconds;
using std::chrono::seconds;
using time_point = broker_clock::time_point;

std::string_view to_string(broker_error_kind kind) noexcept {
  switch (kind) {
    case broker_error_kind::vault: return "vault";
    case broker_error_kind::token_rejected: return "token_rejected";
    case broker_error_kind::token_unverified: return "token_unverified";
    case broker_error_kind::lease_budget: return "lease_budget";
    case broker_error_kind::shutting_down: return "shutting_down";
  }
  return "?";
}

errc broker_error::code() const noexcept {
  switch (kind) {
    case broker_error_kind::vault: return static_cast<errc>(vault.code().value());
    case broker_error_kind::token_rejected: return errc::vault_rejected_token;
    case broker_error_kind::token_unverified: return errc::vault_unavailable;
    case broker_error_kind::lease_budget: return errc::too_many_clients;
    case broker_error_kind::shutting_down: return errc::session_ended;
  }
  return errc::vault_unavailable;
}

std::string_view to_string(lease_event e) noexcept {
  switch (e) {
    case lease_event::token_revoked: return "token_revoked";
    case lease_event::lease_gone: return "lease_gone";
    case lease_event::expiring: return "expiring";
    case lease_event::expired: return "expired";
    case lease_event::shutdown: return "shutdown";
  }
  return "?";
}

vault_calls vault_calls_for(vault_client& client) {
  vault_calls c;
  vault_client* p = &client;
  c.read_credentials = [p](std::string mount, std::string role, pgwire::secret_string token,
                           vault_client::callback<vault_credential> done) {
    p->read_credentials(std::move(mount), std::move(role), std::move(token), std::move(done));
  };
  c.lookup_self = [p](pgwire::secret_string token, vault_client::callback<vault_token_info> done) {
    p->lookup_self(std::move(token), std::move(done));
  };
  c.renew_lease = [p](std::string lease_id, seconds increment, pgwire::secret_string token,
                      vault_client::callback<vault_lease_renewal> done) {
    p->renew_lease(std::move(lease_id), increment, std::move(token), std::move(done));
  };
  c.revoke_lease = [p](std::string lease_id, pgwire::secret_string token, vault_client::callback<void> done) {
    p->revoke_lease(std::move(lease_id), std::move(token), std::move(done));
  };
  c.renew_self = [p](pgwire::secret_string token, seconds increment, vault_client::callback<vault_token_info> done) {
    p->renew_self(std::move(token), increment, std::move(done));
  };
  return c;
}

namespace detail {

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

struct lease_entry {
  // Set once at creation; readable without the lock.
  std::string key;
  std::string token_hash;
  std::string lease_id;
  std::string username;
  pgwire::secret_string password;
  std::string role;
  std::string mount;
  seconds duration{0};  // as first issued: the renewal increment
  bool renewable = false;

  // Guarded by broker_state::mutex.
  seconds current_duration{0};
  time_point expires_at{};
  time_point next_renew_at{};
  time_point idle_since{};
  std::map<std::uint64_t, std::function<void(lease_event)>> sessions;  // session id → callback
  bool gone = false;      // token revoked, lease gone or expired: never served again
  bool at_max = false;    // Vault stopped extending it
  bool expiring_sent = false;
  bool expired_sent = false;
  bool renew_in_flight = false;
  bool revoke_in_flight = false;
  bool abandoned = false;  // revoke was denied: left to its TTL
  bool token_rejected = false;  // its token failed a recheck: Vault revokes a token's leases with it
  time_point revoke_retry_at{};  // an idle revoke skipped by the open breaker waits for this
  std::optional<lease_event> ended_by;  // the terminal event its sessions were sent
};

struct pending_acquire {
  credential_request request;
  credential_broker::acquire_callback done;
};

struct token_entry {
  pgwire::secret_string token;
  time_point last_ok{};        // last time Vault confirmed the token
  time_point next_check_at{};  // a hit at or after this waits for lookup-self
  bool recheck_in_flight = false;
  bool has_info = false;
  vault_token_info info;
  std::vector<pending_acquire> waiting;
  // A new token's first credential is handed out once its first lookup-self has
  // answered (whatever the answer), so every log line and audit event of its
  // sessions can name the token by accessor.
  std::vector<unique_task> after_first_lookup;
};

struct flight {
  pgwire::secret_string token;
  std::string role;
  std::string mount;
  std::vector<credential_broker::acquire_callback> waiters;
};

struct negative_entry {
  time_point until{};
  vault_error error;
};

struct broker_state : std::enable_shared_from_this<broker_state> {
  broker_state(vault_calls v, credential_broker_options o) : vault(std::move(v)), options(std::move(o)) {}

  vault_calls vault;
  credential_broker_options options;

  mutable std::mutex mutex;
  std::map<std::string, std::shared_ptr<lease_entry>> cache;  // key → the credential served
  std::map<std::string, std::shared_ptr<lease_entry>> live;   // lease id → every lease held
  std::map<std::string, flight> flights;                      // key → fetch in flight
  std::map<std::string, token_entry> tokens;                  // token hash → token
  std::map<std::string, negative_entry> negative;             // token hash → rejection
  broker_stats stats;
  std::uint64_t next_session = 1;
  bool shutting_down = false;
  bool revoke_denied_logged = false;
  std::mt19937_64 prng{std::random_device{}()};

  circuit_breaker breaker{stats, options.credentials.token_grace};  // guarded by `mutex`

  // [vault] token_file, cached by mtime (own mutex: file I/O outside the main lock).
  std::mutex file_mutex;
  std::optional<std::filesystem::file_time_type> file_mtime;
  pgwire::secret_string file_token;
  bool file_warned = false;  // one warning per failure streak, not one per tick
  // Keeping that token alive (guarded by `mutex`): lookup-self when the file changes,
  // then renew-self at about two thirds of its TTL.
  std::optional<std::filesystem::file_time_type> own_schedule_for;  // the file version scheduled
  bool own_known = false;        // lookup-self answered for this version
  bool own_renew_in_flight = false;
  time_point own_next_at{};

  // The maintenance thread.
  std::mutex thread_mutex;
  std::condition_variable thread_cv;
  bool stop = false;
  std::thread thread;

  using deferred_list = std::vector<unique_task>;

  time_point now() const { return options.clock ? options.clock() : broker_clock::now(); }
  double jitter() {
    if (options.jitter) return options.jitter();
    return std::uniform_real_distribution<double>(0.0, 1.0)(prng);
  }

  static std::string short_hash(const std::string& hash) { return hash.substr(0, 8); }
  // How a token is named in logs: its accessor, else a digest prefix.
  // An audit event for lease `e`, delivered after the lock is released.
  void audit(const lease_entry& e, credential_audit_event::kind what, std::string result, std::string reason,
             deferred_list& deferred) const {
    if (!options.on_audit) return;
    credential_audit_event ev;
    ev.what = what;
    ev.lease_id = e.lease_id;
    ev.role = e.role;
    ev.db_user = e.username;
    if (const auto it = tokens.find(e.token_hash); it != tokens.end() && it->second.has_info) {
      ev.token_accessor = it->second.info.accessor;
      ev.token_display_name = it->second.info.display_name;
      ev.entity_id = it->second.info.entity_id;
    }
    ev.result = std::move(result);
    ev.reason = std::move(reason);
    deferred.push_back([cb = options.on_audit, ev = std::move(ev)] { cb(ev); });
  }

  std::string token_name(const std::string& hash) const {
    const auto it = tokens.find(hash);
    if (it != tokens.end() && it->second.has_info && !it->second.info.accessor.empty())
      return "accessor " + it->second.info.accessor;
    return "token sha256:" + short_hash(hash);
  }

  time_point next_renewal(time_point from, seconds duration) {
    const double fraction = 0.6 + 0.1 * jitter();  // about two thirds, jittered
    return from + std::chrono::duration_cast<broker_clock::duration>(
                      std::chrono::duration<double>(static_cast<double>(duration.count()) * fraction));
  }

  credential_lease make_handle(const std::shared_ptr<lease_entry>& e, bool from_cache) {
    credential_lease h;
    h.state_ = shared_from_this();
    h.entry_ = e;
    h.session_id_ = next_session++;
    h.from_cache_ = from_cache;
    e->sessions.emplace(h.session_id_, nullptr);
    return h;
  }

  bool servable(const lease_entry& e, time_point t) const {
    if (e.gone) return false;
    return e.expires_at - t > credential_broker::reuse_floor(e.current_duration);
  }

  // Events to the sessions of `e`, collected for after the unlock.
  // A terminal event (all but `expiring`) is also kept in `ended_by` for late subscribers.
  static void collect_events(lease_entry& e, lease_event ev, deferred_list& deferred) {
    if (ev != lease_event::expiring && !e.ended_by) e.ended_by = ev;
    for (const auto& [id, cb] : e.sessions) {
      (void)id;
      if (cb) deferred.push_back([cb, ev] { cb(ev); });
    }
  }

  // The token that renews and revokes: token_file's, else the client's (may be empty).
  pgwire::secret_string management_token(const std::string& hash) {
    if (options.token_file) {
      if (auto t = read_token_file(); !t.empty()) return t;
    }
    std::lock_guard lock{mutex};
    const auto it = tokens.find(hash);
    if (it == tokens.end()) return {};
    return it->second.token.clone();
  }

  pgwire::secret_string read_token_file() {
    std::lock_guard lock{file_mutex};
    std::error_code ec;
    const auto mtime = std::filesystem::last_write_time(*options.token_file, ec);
    if (ec) {
      if (!file_warned)
        spdlog::warn("credentials: cannot stat token_file {}: {}", options.token_file->string(), ec.message());
      file_warned = true;
      return file_token.clone();  // the last good one, if any
    }
    if (file_mtime && *file_mtime == mtime) return file_token.clone();
    std::ifstream in{*options.token_file, std::ios::binary};
    std::ostringstream text;
    text << in.rdbuf();
    std::string s = std::move(text).str();
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
    if (!in || s.empty()) {
      pgwire::cleanse_string(s);
      if (!file_warned)
        spdlog::warn("credentials: token_file {} is unreadable or empty; keeping the previous token",
                     options.token_file->string());
      file_warned = true;
      return file_token.clone();
    }
    file_token = pgwire::secret_string(std::move(s));
    file_mtime = mtime;
    file_warned = false;
    spdlog::info("credentials: read token_file {}", options.token_file->string());
    return file_token.clone();
  }

  // --- circuit breaker (circuit_breaker.hpp) ----------------------------------
  // All under `mutex`. breaker.admit() is asked right before a call is made (and only
  // then: it may hand out the probe); note_vault() is told every completion.

  using admission = circuit_breaker::admission;

  void note_vault(const vault_error* error, bool probe, time_point t, deferred_list& deferred) {
    if (breaker.note(error, probe, t)) release_waiters_in_grace(t, deferred);
  }

  // Vault is failing: acquires waiting for a recheck whose token is within grace are
  // served now (stale-while-revalidate) instead of waiting out request_timeout.
  void release_waiters_in_grace(time_point t, deferred_list& deferred) {
    std::vector<pending_acquire> released;
    for (auto& [hash, tok] : tokens) {
      (void)hash;
      if (tok.waiting.empty() || t >= tok.last_ok + options.credentials.token_grace) continue;
      for (auto& w : tok.waiting) released.push_back(std::move(w));
      tok.waiting.clear();
    }
    for (auto& w : released) acquire_locked(std::move(w.request), std::move(w.done), deferred, true);
  }

  // --- acquire -----------------------------------------------------------------

  void acquire(credential_request req, credential_broker::acquire_callback done) {
    deferred_list deferred;
    {
      std::unique_lock lock{mutex};
      acquire_locked(std::move(req), std::move(done), deferred);
    }
    for (auto& f : deferred) f();
  }

  static broker_error simple_error(broker_error_kind kind, std::string message) {
    broker_error e;
    e.kind = kind;
    e.message = std::move(message);
    return e;
  }

  // `retry`: a waiter coming back after a recheck (already counted).
  void acquire_locked(credential_request req, credential_broker::acquire_callback done, deferred_list& deferred,
                      bool retry = false) {
    if (!retry) ++stats.acquires;
    const time_point t = now();
    auto refuse = [&](broker_error e) {
      deferred.push_back([done = std::move(done), e = std::move(e)]() mutable { done(std::move(e)); });
    };
    if (shutting_down) {
      refuse(simple_error(broker_error_kind::shutting_down, "vaultwire is shutting down; reconnect"));
      return;
    }
    const std::string hash = req.token_hash.empty() ? credential_broker::token_digest(req.token) : req.token_hash;
    if (auto n = negative.find(hash); n != negative.end()) {
      if (t < n->second.until) {
        ++stats.negative_cache_hits;
        broker_error e;
        e.kind = broker_error_kind::token_rejected;
        e.vault = n->second.error;
        e.message = n->second.error.to_client_message();
        refuse(std::move(e));
        return;
      }
      negative.erase(n);
    }
    std::string key = hash;
    for (const std::string* part : {&req.vault_namespace, &req.mount, &req.role, &req.route}) {
      key += '\0';
      key += *part;
    }

    if (auto c = cache.find(key); c != cache.end()) {
      const auto entry = c->second;
      const bool fresh = servable(*entry, t);
      // While the breaker is open a cold miss could only fail: serve what is left.
      const bool outage = !fresh && breaker.open() && !entry->gone && entry->expires_at - t > outage_reuse_floor;
      if (fresh || outage) {
        auto& tok = tokens[hash];
        if (tok.token.empty()) tok.token = req.token.clone();
        auto serve = [&] {
          ++stats.cache_hits;
          if (outage) ++stats.outage_hits;
          deferred.push_back([done = std::move(done), h = make_handle(entry, true)]() mutable { done(std::move(h)); });
        };
        if (t < tok.next_check_at) {
          serve();
          return;
        }
        // Stale check. Stale-while-revalidate (header comment): within token_grace,
        // do not wait when a recheck is already in flight or Vault is not healthy.
        if (t < tok.last_ok + options.credentials.token_grace && (tok.recheck_in_flight || !breaker.healthy())) {
          ++stats.stale_hits;
          serve();
          start_recheck(hash, tok, deferred);
          return;
        }
        // Wait for lookup-self (one per token), then try again.
        tok.waiting.push_back({std::move(req), std::move(done)});
        start_recheck(hash, tok, deferred);
        return;
      }
      cache.erase(c);  // below the floor: new sessions get a new credential
    }

    if (auto f = flights.find(key); f != flights.end()) {
      ++stats.single_flight_joins;
      f->second.waiters.push_back(std::move(done));
      return;
    }
    const admission gate = breaker.admit(t);
    if (gate == admission::skip) {
      ++stats.fast_failures;
      broker_error e;
      e.kind = broker_error_kind::vault;
      e.vault = breaker.last_failure();
      e.message = breaker.message(t);
      refuse(std::move(e));
      return;
    }
    if (live.size() + flights.size() >= options.credentials.max_leases) {
      if (gate == admission::probe) breaker.probe_not_made();
      ++stats.budget_refusals;
      spdlog::warn("credentials: lease budget reached ({} live leases, max_leases = {}); refusing a new credential",
                   live.size() + flights.size(), options.credentials.max_leases);
      refuse(simple_error(broker_error_kind::lease_budget,
                          "vaultwire holds " + std::to_string(options.credentials.max_leases) +
                              " leases, its limit (max_leases); try again later"));
      return;
    }
    ++stats.vault_fetches;
    auto& fl = flights[key];
    fl.token = req.token.clone();
    fl.role = req.role;
    fl.mount = req.mount;
    fl.waiters.push_back(std::move(done));
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

  void on_fetched(const std::string& key, const std::string& hash, bool probe, vault_result<vault_credential> r) {
    deferred_list deferred;
    {
      std::lock_guard lock{mutex};
      const time_point t = now();
      note_vault(r ? nullptr : &r.error(), probe, t, deferred);
      // Always present (one completion per flight); extracted after note_vault so that
      // waiters it releases may still join this flight.
      if (auto node = flights.extract(key); !node.empty()) finish_fetch(key, hash, node.mapped(), r, t, deferred);
    }
    for (auto& f : deferred) f();
  }

  void finish_fetch(const std::string& key, const std::string& hash, flight& fl, vault_result<vault_credential>& r,
                    time_point t, deferred_list& deferred) {
    if (r) {
      vault_credential& c = r.value();
      auto e = std::make_shared<lease_entry>();
      e->key = key;
      e->token_hash = hash;
      e->lease_id = c.lease_id;
      e->username = c.username;
      e->password = std::move(c.password);
      e->role = fl.role;
      e->mount = fl.mount;
      e->duration = c.lease_duration;
      e->current_duration = c.lease_duration;
      e->renewable = c.renewable;
      e->expires_at = t + c.lease_duration;
      e->next_renew_at = next_renewal(t, c.lease_duration);
      e->idle_since = t;
      live[e->lease_id] = e;
      cache[key] = e;
      auto& tok = tokens[hash];
      const bool first_sight = tok.token.empty();
      if (first_sight) tok.token = std::move(fl.token);
      tok.last_ok = t;  // Vault just honoured the token
      tok.next_check_at = t + options.credentials.token_recheck;
      spdlog::info("credentials: new lease {} for role {} ({}s, {}renewable), {}, {} waiting", e->lease_id, e->role,
                   c.lease_duration.count(), c.renewable ? "" : "not ", token_name(hash), fl.waiters.size());
      bool first = true;
      for (auto& w : fl.waiters) {
        (first_sight ? tok.after_first_lookup : deferred)
            .push_back([w = std::move(w), h = make_handle(e, !first)]() mutable { w(std::move(h)); });
        first = false;
      }
      if (first_sight) {
        // Learn the accessor and policies (also the first recheck); the waiters and
        // the issue event follow its answer.
        tok.after_first_lookup.push_back([self = shared_from_this(), e] {
          deferred_list later;
          {
            std::lock_guard lock{self->mutex};
            self->audit(*e, credential_audit_event::kind::issue, "ok", "", later);
          }
          for (auto& f : later) f();
        });
        start_recheck(hash, tok, deferred);
        if (!tok.recheck_in_flight) flush_after_first_lookup(tok, deferred);  // the breaker skipped it
      } else {
        audit(*e, credential_audit_event::kind::issue, "ok", "", deferred);
      }
    } else {
      broker_error err;
      err.kind = broker_error_kind::vault;
      err.vault = r.error();
      err.message = r.error().to_client_message();
      if (r.error().token_rejected()) remember_rejection(hash, r.error(), t);
      spdlog::info("credentials: fetch for role {} failed ({}, {} waiting): {} {}", fl.role, token_name(hash),
                   fl.waiters.size(), to_string(r.error().kind), r.error().message);
      for (auto& w : fl.waiters) deferred.push_back([w = std::move(w), err]() mutable { w(err); });
    }
  }

  static void flush_after_first_lookup(token_entry& tok, deferred_list& deferred) {
    // The issue event first (it was queued last), then the waiters.
    if (!tok.after_first_lookup.empty()) {
      deferred.push_back(std::move(tok.after_first_lookup.back()));
      tok.after_first_lookup.pop_back();
    }
    for (auto& f : tok.after_first_lookup) deferred.push_back(std::move(f));
    tok.after_first_lookup.clear();
  }

  void remember_rejection(const std::string& hash, const vault_error& error, time_point t) {
    negative[hash] = {t + options.credentials.negative_cache, error};
  }

  // --- token recheck -------------------------------------------------------------

  void start_recheck(const std::string& hash, token_entry& tok, deferred_list& deferred) {
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

  void on_rechecked(const std::string& hash, bool probe, vault_result<vault_token_info> r) {
    deferred_list deferred;
    {
      std::lock_guard lock{mutex};
      const time_point t = now();
      const auto it = tokens.find(hash);
      std::vector<pending_acquire> waiting;
      if (it != tokens.end()) {
        it->second.recheck_in_flight = false;
        waiting = std::move(it->second.waiting);
        it->second.waiting.clear();
      }
      note_vault(r ? nullptr : &r.error(), probe, t, deferred);
      if (it != tokens.end()) {
        finish_recheck(hash, it->second, r, std::move(waiting), t, deferred);
        flush_after_first_lookup(it->second, deferred);
      }
    }
    for (auto& f : deferred) f();
  }

  void finish_recheck(const std::string& hash, token_entry& tok, vault_result<vault_token_info>& r,
                      std::vector<pending_acquire> waiting, time_point t, deferred_list& deferred) {
    if (r) {
      const bool first = !tok.has_info;
      tok.info = std::move(r.value());
      tok.has_info = true;
      tok.last_ok = t;
      tok.next_check_at = t + options.credentials.token_recheck;
      if (first)
        spdlog::info("credentials: token sha256:{} is accessor {} ({})", short_hash(hash), tok.info.accessor,
                     tok.info.display_name);
      for (auto& w : waiting) acquire_locked(std::move(w.request), std::move(w.done), deferred, true);
    } else if (r.error().token_rejected()) {
      ++stats.tokens_revoked;
      spdlog::warn("credentials: {} was rejected by Vault on recheck ({}); ending its sessions", token_name(hash),
                   r.error().message);
      remember_rejection(hash, r.error(), t);
      for (auto& [id, e] : live) {
        (void)id;
        if (e->token_hash != hash || e->gone) continue;
        e->gone = true;
        e->token_rejected = true;
        if (auto c = cache.find(e->key); c != cache.end() && c->second == e) cache.erase(c);
        collect_events(*e, lease_event::token_revoked, deferred);
      }
      // The waiters now meet the negative cache.
      for (auto& w : waiting) acquire_locked(std::move(w.request), std::move(w.done), deferred, true);
    } else {
      recheck_unreachable(hash, tok, r.error(), true, std::move(waiting), t, deferred);
    }
  }

  // A recheck that Vault did not answer (`real`), or that the open breaker did not
  // send: the last good check is trusted for token_grace, then waiters get 08001.
  void recheck_unreachable(const std::string& hash, token_entry& tok, const vault_error& error, bool real,
                           std::vector<pending_acquire> waiting, time_point t, deferred_list& deferred) {
    const auto grace_end = tok.last_ok + options.credentials.token_grace;
    if (t < grace_end) {
      ++stats.rechecks_in_grace;
      tok.next_check_at = std::min(t + options.credentials.token_recheck, grace_end);
      const auto left = std::chrono::duration_cast<seconds>(grace_end - t).count();
      if (real)
        spdlog::warn("credentials: recheck of {} failed ({} {}); trusting the last good check for up to {}s",
                     token_name(hash), to_string(error.kind), error.message, left);
      else
        spdlog::debug("credentials: recheck of {} skipped (circuit breaker open); trusting the last good check "
                      "for up to {}s",
                      token_name(hash), left);
      for (auto& w : waiting) acquire_locked(std::move(w.request), std::move(w.done), deferred, true);
      return;
    }
    broker_error err;
    err.kind = broker_error_kind::token_unverified;
    err.vault = error;
    err.message = real ? error.to_client_message() : breaker.message(t);
    for (auto& w : waiting) deferred.push_back([done = std::move(w.done), err]() mutable { done(err); });
  }

  // --- release, invalidate -----------------------------------------------------

  void release(const std::shared_ptr<lease_entry>& e, std::uint64_t session) {
    std::lock_guard lock{mutex};
    e->sessions.erase(session);
    if (e->sessions.empty()) e->idle_since = now();
  }

  void invalidate(const std::shared_ptr<lease_entry>& e) {
    std::lock_guard lock{mutex};
    if (auto c = cache.find(e->key); c != cache.end() && c->second == e) cache.erase(c);
    e->gone = true;
    spdlog::info("credentials: lease {} invalidated (the server refused it)", e->lease_id);
  }

  // --- maintenance -----------------------------------------------------------------

  // vaultwire's own token (token_file): lookup-self once per file version, then
  // renew-self at about two thirds of the TTL it reports, when it is renewable.
  void maintain_own_token() {
    if (!options.token_file || !vault.renew_self || !vault.lookup_self) return;
    pgwire::secret_string token = read_token_file();
    if (token.empty()) return;
    std::optional<std::filesystem::file_time_type> version;
    {
      std::lock_guard lock{file_mutex};
      version = file_mtime;
    }
    bool renew = false;
    admission gate = admission::call;
    {
      std::lock_guard lock{mutex};
      const time_point t = now();
      if (version != own_schedule_for && !own_renew_in_flight) {
        own_schedule_for = version;
        own_known = false;
        own_next_at = t;
      }
      if (own_renew_in_flight || t < own_next_at) return;
      gate = breaker.admit(t);
      if (gate == admission::skip) {
        ++stats.breaker_skips;
        own_next_at = breaker.retry_time(t);
        return;
      }
      own_renew_in_flight = true;
      renew = own_known;
    }
    auto self = shared_from_this();
    const bool probe = gate == admission::probe;
    auto done = [self, renew, probe](vault_result<vault_token_info> r) {
      self->on_own_token(renew, probe, std::move(r));
    };
    if (renew)
      vault.renew_self(std::move(token), seconds{0}, std::move(done));
    else
      vault.lookup_self(std::move(token), std::move(done));
  }

  void on_own_token(bool renewed, bool probe, vault_result<vault_token_info> r) {
    deferred_list deferred;
    {
      std::lock_guard lock{mutex};
      own_renew_in_flight = false;
      const time_point t = now();
      note_vault(r ? nullptr : &r.error(), probe, t, deferred);
      own_token_done(renewed, r, t);
    }
    for (auto& f : deferred) f();
  }

  void own_token_done(bool renewed, vault_result<vault_token_info>& r, time_point t) {
    if (!r) {
      ++stats.own_token_failures;
      spdlog::warn("credentials: {} of token_file's token failed: {} {}", renewed ? "renew-self" : "lookup-self",
                   to_string(r.error().kind), r.error().message);
      own_next_at = t + seconds{5};
      return;
    }
    const vault_token_info& info = r.value();
    if (renewed) {
      ++stats.own_token_renewals;
      spdlog::info("credentials: renewed token_file's token for {}s", info.ttl.count());
    } else {
      own_known = true;
      spdlog::info("credentials: token_file's token is accessor {} (ttl {}s, {}renewable)", info.accessor,
                   info.ttl.count(), info.renewable ? "" : "not ");
      if (!info.renewable || info.ttl.count() == 0) {
        own_next_at = time_point::max();  // nothing to renew until the file changes
        return;
      }
    }
    if (info.ttl.count() == 0) {
      own_next_at = time_point::max();
      return;
    }
    own_next_at = next_renewal(t, info.ttl);
  }

  void maintain() {
    maintain_own_token();
    deferred_list deferred;
    {
      std::lock_guard lock{mutex};
      const time_point t = now();
      const auto& cfg = options.credentials;
      std::set<std::string> tokens_in_use;
      for (auto it = live.begin(); it != live.end();) {
        auto e = it->second;
        if (e->revoke_in_flight) {
          ++it;
          continue;
        }
        if (e->sessions.empty()) {
          if (t >= e->expires_at) {
            // Vault has dropped it (or will now): forget it.
            spdlog::info("credentials: lease {} reached its TTL", e->lease_id);
            if (auto c = cache.find(e->key); c != cache.end() && c->second == e) cache.erase(c);
            it = live.erase(it);
            continue;
          }
          if (!e->abandoned && t - e->idle_since >= cfg.revoke_idle_after && t >= e->revoke_retry_at) {
            const admission gate = breaker.admit(t);
            if (gate == admission::skip) {
              // Kept cached and live (still servable); revoked once Vault is back.
              ++stats.breaker_skips;
              e->revoke_retry_at = breaker.retry_time(t);
              ++it;
              continue;
            }
            if (auto c = cache.find(e->key); c != cache.end() && c->second == e) cache.erase(c);
            e->gone = true;
            e->revoke_in_flight = true;
            deferred.push_back([self = shared_from_this(), e, probe = gate == admission::probe] {
              self->revoke(e, nullptr, probe);
            });
          }
          ++it;
          continue;
        }
        tokens_in_use.insert(e->token_hash);
        if (t >= e->expires_at) {
          if (!e->expired_sent) {
            e->expired_sent = true;
            e->gone = true;
            if (auto c = cache.find(e->key); c != cache.end() && c->second == e) cache.erase(c);
            if (!cfg.session_may_outlive_lease) collect_events(*e, lease_event::expired, deferred);
          }
          ++it;
          continue;
        }
        if (e->renewable && !e->at_max && !e->gone && !e->renew_in_flight && t >= e->next_renew_at) {
          const admission gate = breaker.admit(t);
          if (gate == admission::skip) {
            ++stats.breaker_skips;
            e->next_renew_at = breaker.retry_time(t);
          } else {
            e->renew_in_flight = true;
            deferred.push_back([self = shared_from_this(), e, probe = gate == admission::probe] {
              self->renew(e, probe);
            });
          }
        }
        if ((e->at_max || !e->renewable) && !e->expiring_sent && !cfg.session_may_outlive_lease &&
            e->expires_at - t <= cfg.expiry_notice) {
          e->expiring_sent = true;
          collect_events(*e, lease_event::expiring, deferred);
        }
        ++it;
      }
      // Live sessions' tokens are rechecked on the token_recheck schedule.
      for (const auto& hash : tokens_in_use) {
        auto tk = tokens.find(hash);
        if (tk == tokens.end()) continue;
        if (negative.count(hash) != 0) continue;  // already known rejected
        if (t >= tk->second.next_check_at) start_recheck(hash, tk->second, deferred);
      }
      // Half-open and nothing above took the probe: probe with a lookup-self of a
      // token we hold (live sessions' tokens first), so the breaker closes soon after
      // Vault is back even without traffic.
      if (breaker.probe_due(t)) {
        token_entry* pick = nullptr;
        std::string pick_hash;
        for (auto& [hash, tok] : tokens) {
          if (tok.recheck_in_flight || tok.token.empty() || negative.count(hash) != 0) continue;
          if (pick == nullptr || (tokens_in_use.count(hash) != 0 && tokens_in_use.count(pick_hash) == 0)) {
            pick = &tok;
            pick_hash = hash;
          }
        }
        if (pick != nullptr) start_recheck(pick_hash, *pick, deferred);
      }
      for (auto n = negative.begin(); n != negative.end();) n = t >= n->second.until ? negative.erase(n) : std::next(n);
      // Forget tokens nothing refers to any more (wipes the secret).
      std::set<std::string> referenced;
      for (const auto& [id, e] : live) {
        (void)id;
        referenced.insert(e->token_hash);
      }
      for (const auto& [k, f] : flights) {
        (void)f;
        referenced.insert(k.substr(0, k.find('\0')));
      }
      for (auto tk = tokens.begin(); tk != tokens.end();) {
        const bool busy = tk->second.recheck_in_flight || !tk->second.waiting.empty();
        if (busy || referenced.count(tk->first) != 0) {
          ++tk;
          continue;
        }
        spdlog::debug("credentials: {} forgotten: no lease or fetch uses it", token_name(tk->first));
        tk = tokens.erase(tk);
      }
    }
    for (auto& f : deferred) f();
  }

  void renew(const std::shared_ptr<lease_entry>& e, bool probe) {
    auto token = management_token(e->token_hash);
    auto self = shared_from_this();
    vault.renew_lease(e->lease_id, e->duration, std::move(token), [self, e, probe](vault_result<vault_lease_renewal> r) {
      self->on_renewed(e, probe, std::move(r));
    });
  }

  void on_renewed(const std::shared_ptr<lease_entry>& e, bool probe, vault_result<vault_lease_renewal> r) {
    deferred_list deferred;
    {
      std::lock_guard lock{mutex};
      e->renew_in_flight = false;
      const time_point t = now();
      note_vault(r ? nullptr : &r.error(), probe, t, deferred);
      if (r) {
        ++stats.renewals;
        audit(*e, credential_audit_event::kind::renew, "ok", "", deferred);
        const seconds got = r.value().lease_duration;
        e->current_duration = got;
        e->expires_at = t + got;
        e->next_renew_at = next_renewal(t, got);
        if (got + seconds{1} < e->duration || !r.value().renewable) {
          e->at_max = true;
          spdlog::info("credentials: lease {} renewed for {}s, its max TTL", e->lease_id, got.count());
        } else {
          spdlog::debug("credentials: lease {} renewed for {}s", e->lease_id, got.count());
        }
      } else {
        ++stats.renewal_failures;
        const auto kind = r.error().kind;
        audit(*e, credential_audit_event::kind::renew,
              kind == vault_error_kind::bad_request || kind == vault_error_kind::not_found ? "gone" : "failed",
              r.error().message, deferred);
        if (kind == vault_error_kind::bad_request || kind == vault_error_kind::not_found) {
          spdlog::warn("credentials: lease {} is gone ({}); ending its sessions", e->lease_id, r.error().message);
          e->gone = true;
          if (auto c = cache.find(e->key); c != cache.end() && c->second == e) cache.erase(c);
          collect_events(*e, lease_event::lease_gone, deferred);
        } else {
          spdlog::warn("credentials: renewing lease {} failed: {} {}", e->lease_id, to_string(kind),
                       r.error().message);
          const auto left = e->expires_at - t;
          e->next_renew_at =
              t + std::clamp<broker_clock::duration>(left / 4, std::chrono::seconds{1}, std::chrono::seconds{30});
          if (kind == vault_error_kind::forbidden) e->at_max = true;  // will not improve: let it run to its end
        }
      }
    }
    for (auto& f : deferred) f();
  }

  struct revoke_wait {
    std::mutex mutex;
    std::condition_variable cv;
    std::size_t pending = 0;
    std::size_t succeeded = 0;
  };

  void revoke(const std::shared_ptr<lease_entry>& e, std::shared_ptr<revoke_wait> wait, bool probe) {
    auto token = management_token(e->token_hash);
    auto self = shared_from_this();
    vault.revoke_lease(e->lease_id, std::move(token), [self, e, wait, probe](vault_result<void> r) {
      const bool ok = static_cast<bool>(r);
      self->on_revoked(e, probe, std::move(r));
      if (wait) {
        std::lock_guard lock{wait->mutex};
        --wait->pending;
        if (ok) ++wait->succeeded;
        wait->cv.notify_all();
      }
    });
  }

  void on_revoked(const std::shared_ptr<lease_entry>& e, bool probe, vault_result<void> r) {
    deferred_list deferred;
    {
      std::lock_guard lock{mutex};
      e->revoke_in_flight = false;
      note_vault(r ? nullptr : &r.error(), probe, now(), deferred);
      revoke_done(e, r, deferred);
    }
    for (auto& f : deferred) f();
  }

  void revoke_done(const std::shared_ptr<lease_entry>& e, const vault_result<void>& r, deferred_list& deferred) {
    {
      const std::string reason = shutting_down ? "shutdown" : e->token_rejected ? "token revoked" : "idle";
      std::string result = "ok";
      if (!r) {
        const auto k = r.error().kind;
        result = k == vault_error_kind::forbidden ? "denied"
                 : k == vault_error_kind::bad_request || k == vault_error_kind::not_found ? "gone"
                                                                                          : "failed";
      }
      audit(*e, credential_audit_event::kind::revoke, result, reason, deferred);
    }
    if (r) {
      ++stats.revokes;
      spdlog::info("credentials: revoked lease {}", e->lease_id);
      live.erase(e->lease_id);
      return;
    }
    if (e->token_rejected && (r.error().kind == vault_error_kind::forbidden ||
                              r.error().kind == vault_error_kind::bad_request ||
                              r.error().kind == vault_error_kind::not_found)) {
      // The revoke used the dead token itself (or the lease is already gone): Vault
      // revoked the token's leases when it revoked the token. Not a policy problem,
      // and the lease no longer counts against max_leases.
      spdlog::info("credentials: lease {} went with its revoked token ({})", e->lease_id, r.error().message);
      live.erase(e->lease_id);
      return;
    }
    if (r.error().kind == vault_error_kind::forbidden) {
      ++stats.revoke_denied;
      e->abandoned = true;  // kept (it still counts against max_leases) until its TTL
      if (!revoke_denied_logged) {
        revoke_denied_logged = true;
        spdlog::warn(
            "credentials: Vault denied revoking lease {} ({}); leases will end at their TTL. Set [vault] "
            "token_file, or allow update on sys/leases/revoke/<mount>/creds/<role>/* for the client's token",
            e->lease_id, r.error().message);
      }
      return;
    }
    ++stats.revoke_failures;
    e->idle_since = now();  // try again after revoke_idle_after
    spdlog::warn("credentials: revoking lease {} failed: {} {}", e->lease_id, to_string(r.error().kind),
                 r.error().message);
  }

  std::size_t revoke_all(milliseconds wait_for) {
    deferred_list deferred;
    std::vector<std::shared_ptr<lease_entry>> to_revoke;
    {
      std::lock_guard lock{mutex};
      shutting_down = true;
      cache.clear();
      for (auto& [id, e] : live) {
        (void)id;
        e->gone = true;
        collect_events(*e, lease_event::shutdown, deferred);
        if (options.credentials.revoke_on_shutdown && !e->revoke_in_flight && !e->abandoned) {
          e->revoke_in_flight = true;
          to_revoke.push_back(e);
        }
      }
    }
    for (auto& f : deferred) f();
    if (to_revoke.empty()) return 0;
    auto wait = std::make_shared<revoke_wait>();
    wait->pending = to_revoke.size();
    spdlog::info("credentials: revoking {} leases at shutdown", to_revoke.size());
    for (auto& e : to_revoke) revoke(e, wait, false);  // at shutdown even an open breaker is tried
    std::unique_lock lock{wait->mutex};
    wait->cv.wait_for(lock, wait_for, [&] { return wait->pending == 0; });
    return wait->succeeded;
  }

  void run_thread() {
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
};

}  // namespace detail

// --- credential_lease -----------------------------------------------------------

credential_lease::credential_lease(credential_lease&& o) noexcept
    : state_{std::move(o.state_)}, entry_{std::move(o.entry_)}, session_id_{o.session_id_}, from_cache_{o.from_cache_} {
  o.session_id_ = 0;
}

credential_lease& credential_lease::operator=(credential_lease&& o) noexcept {
  if (this != &o) {
    release();
    state_ = std::move(o.state_);
    entry_ = std::move(o.entry_);
    session_id_ = o.session_id_;
    from_cache_ = o.from_cache_;
    o.session_id_ = 0;
  }
  return *this;
}

credential_lease::~credential_lease() { release(); }

const std::string& credential_lease::lease_id() const { return entry_->lease_id; }
const std::string& credential_lease::username() const { return entry_->username; }
const pgwire::secret_string& credential_lease::password() const { return entry_->password; }

broker_clock::time_point credential_lease::expires_at() const {
  std::lock_guard lock{state_->mutex};
  return entry_->expires_at;
}

credential_lease::identity credential_lease::token_identity() const {
  std::lock_guard lock{state_->mutex};
  const auto it = state_->tokens.find(entry_->token_hash);
  if (it == state_->tokens.end() || !it->second.has_info) return {};
  const vault_token_info& info = it->second.info;
  return {info.accessor, info.display_name, info.entity_id};
}

std::string credential_lease::token_name() const {
  std::lock_guard lock{state_->mutex};
  return state_->token_name(entry_->token_hash);
}

void credential_lease::subscribe(std::function<void(lease_event)> callback) {
  std::optional<lease_event> missed;
  {
    std::lock_guard lock{state_->mutex};
    auto it = entry_->sessions.find(session_id_);
    if (it == entry_->sessions.end()) return;
    it->second = callback;
    missed = entry_->ended_by;
  }
  if (missed && callback) callback(*missed);  // outside the lock, on this thread
}

void credential_lease::release() noexcept {
  if (!entry_ || !state_) return;
  try {
    state_->release(entry_, session_id_);
  } catch (...) {
  }
  entry_.reset();
  state_.reset();
  session_id_ = 0;
}

// --- credential_broker ------------------------------------------------------------

credential_broker::credential_broker(vault_calls vault, credential_broker_options options)
    : state_{std::make_shared<detail::broker_state>(std::move(vault), std::move(options))} {
  if (state_->options.start_maintenance_thread) {
    detail::broker_state* s = state_.get();
    s->thread = std::thread([s] { s->run_thread(); });
  }
}

credential_broker::~credential_broker() {
  {
    std::lock_guard lock{state_->thread_mutex};
    state_->stop = true;
  }
  state_->thread_cv.notify_all();
  if (state_->thread.joinable()) state_->thread.join();
}

void credential_broker::acquire(credential_request request, acquire_callback done) {
  state_->acquire(std::move(request), std::move(done));
}

broker_result<credential_lease> credential_broker::acquire_blocking(credential_request request) {
  auto promise = std::make_shared<std::promise<broker_result<credential_lease>>>();
  auto future = promise->get_future();
  acquire(std::move(request), [promise](broker_result<credential_lease> r) { promise->set_value(std::move(r)); });
  return future.get();
}

void credential_broker::invalidate(const credential_lease& lease) {
  if (lease.entry_) state_->invalidate(lease.entry_);
}

void credential_broker::maintain() { state_->maintain(); }

std::size_t credential_broker::revoke_all(milliseconds wait) { return state_->revoke_all(wait); }

broker_stats credential_broker::stats() const {
  std::lock_guard lock{state_->mutex};
  broker_stats s = state_->stats;
  s.breaker_open = state_->breaker.open();
  s.consecutive_vault_failures = state_->breaker.consecutive_failures();
  s.live_leases = state_->live.size();
  s.cached_leases = state_->cache.size();
  s.sessions = 0;
  for (const auto& [id, e] : state_->live) {
    (void)id;
    s.sessions += e->sessions.size();
  }
  return s;
}

std::vector<lease_info> credential_broker::leases() const {
  std::lock_guard lock{state_->mutex};
  const time_point t = state_->now();
  std::vector<lease_info> out;
  out.reserve(state_->live.size());
  for (const auto& [id, e] : state_->live) {
    lease_info i;
    i.lease_id = id;
    i.role = e->role;
    i.mount = e->mount;
    i.ttl_left = e->expires_at > t ? std::chrono::duration_cast<seconds>(e->expires_at - t) : seconds{0};
    i.duration = e->current_duration;
    i.renewable = e->renewable;
    const auto c = state_->cache.find(e->key);
    i.cached = !e->gone && c != state_->cache.end() && c->second == e;
    i.at_max_ttl = e->at_max;
    i.revoke_denied = e->abandoned;
    i.sessions = e->sessions.size();
    const auto tok = state_->tokens.find(e->token_hash);
    if (tok != state_->tokens.end() && tok->second.has_info) i.token_accessor = tok->second.info.accessor;
    i.token_sha256_prefix = detail::broker_state::short_hash(e->token_hash);
    out.push_back(std::move(i));
  }
  return out;
}

milliseconds credential_broker::reuse_floor(seconds lease_duration) noexcept {
  const milliseconds quarter = std::chrono::duration_cast<milliseconds>(lease_duration) / 4;
  return std::clamp<milliseconds>(quarter, seconds{5}, seconds{60});
}

std::string credential_broker::token_digest(const pgwire::secret_string& token) {
  return token_digest(detail::sha256(token.view()));
}

std::string credential_broker::token_digest(const detail::sha256_digest& md) { return detail::to_hex(md); }

}  // namespace vaultwire
