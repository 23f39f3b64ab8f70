// credential_broker, the facade (broker.hpp has the contract): it owns the one mutex
// and orders the parts' decisions into Vault calls, acquire answers and session
// events. The parts: lease_cache (cache and single flight), token_checker (rechecks,
// grace, the negative cache), circuit_breaker, lease_keeper (renew, revoke, idle) and
// own_token (token_file, or a [vault.auth] login). No Asio here: the broker is driven by vault_calls callbacks
// and by maintain(), which its own thread calls every options.tick; broker_await.hpp
// adapts acquire() to a coroutine.
//
// Locking: broker_state::mutex guards every part and every lease entry's mutable
// fields. Work that calls out (Vault calls, acquire callbacks, event callbacks) is
// collected under the lock into a deferred_list and run after unlocking, so fakes that
// complete inline and callbacks that re-enter the broker are safe.
#include "credentials/broker.hpp"

#include <algorithm>
#include <condition_variable>
#include <future>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <thread>
#include <utility>

#include <spdlog/spdlog.h>

#include "core/digest.hpp"
#include "credentials/broker_state.hpp"

namespace vaultwire {

using std::chrono::milliseconds;
using std::chrono::seconds;
using detail::time_point;

std::string_view to_string(broker_error_kind kind) noexcept {
  switch (kind) {
    case broker_error_kind::vault: return "vault";
    case broker_error_kind::token_rejected: return "token_rejected";
    case broker_error_kind::role_denied: return "role_denied";
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
    case broker_error_kind::role_denied: return errc::vault_denied_role;
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
  c.revoke_lease = [p](std::string lease_id, pgwire::secret_string token, revoke_form form,
                       vault_client::callback<void> done) {
    p->revoke_lease(std::move(lease_id), std::move(token), form, std::move(done));
  };
  c.renew_self = [p](pgwire::secret_string token, seconds increment, vault_client::callback<vault_token_info> done) {
    p->renew_self(std::move(token), increment, std::move(done));
  };
  c.login = [p](std::string mount, pgwire::secret_string body, vault_client::callback<vault_login> done) {
    p->login(std::move(mount), std::move(body), std::move(done));
  };
  return c;
}


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
  return entry_->ends_at();
}

bool credential_lease::ends_with_token() const {
  std::lock_guard lock{state_->mutex};
  return entry_->token_ends_at < entry_->expires_at;
}

credential_lease::identity credential_lease::token_identity() const {
  std::lock_guard lock{state_->mutex};
  const detail::token_entry* tok = state_->tokens.find(entry_->token_hash);
  if (tok == nullptr || !tok->has_info) return {};
  const vault_token_info& info = tok->info;
  return {info.accessor, info.display_name, info.entity_id};
}

std::string credential_lease::token_name() const {
  std::lock_guard lock{state_->mutex};
  return state_->tokens.name(entry_->token_hash);
}

void credential_lease::subscribe(std::function<void(lease_event)> callback) {
  std::optional<lease_event> missed;
  {
    std::lock_guard lock{state_->mutex};
    auto it = entry_->sessions.find(session_id_);
    if (it == entry_->sessions.end()) return;
    missed = entry_->ended_by;
    // A copy only for the rare event already missed (called below, outside the lock).
    if (missed && callback) {
      it->second = callback;
    } else {
      it->second = std::move(callback);
      callback = nullptr;
    }
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

bool credential_broker::acquire(credential_request request, acquire_callback done) {
  return state_->acquire(std::move(request), std::move(done));
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

void credential_broker::refetch(credential_lease& refused, credential_request request, acquire_callback done) {
  invalidate(refused);
  refused.release();
  acquire(std::move(request), std::move(done));
}

void credential_broker::maintain() { state_->maintain(); }

std::size_t credential_broker::revoke_all(milliseconds wait) { return state_->revoke_all(wait); }

broker_stats credential_broker::stats() const {
  std::lock_guard lock{state_->mutex};
  broker_stats s = state_->stats;
  if (state_->own && state_->own->logs_in()) s.own_login_method = to_string(state_->own->method());
  s.breaker_open = state_->breaker.open();
  s.consecutive_vault_failures = state_->breaker.consecutive_failures();
  s.live_leases = state_->cache.live().size();
  s.cached_leases = state_->cache.cached_count();
  s.sessions = 0;
  for (const auto& [id, e] : state_->cache.live()) {
    (void)id;
    s.sessions += e->sessions.size();
  }
  return s;
}

std::string credential_broker::own_token_problem() const {
  std::lock_guard lock{state_->mutex};
  if (!state_->own) return {};
  return state_->own->problem(state_->now());
}

pgwire::secret_string credential_broker::own_token() const {
  // `own` is set at construction and never reset; read() takes only the token's mutex.
  if (!state_->own) return {};
  return state_->own->read(state_->now());
}

std::vector<lease_info> credential_broker::leases() const {
  std::lock_guard lock{state_->mutex};
  const time_point t = state_->now();
  std::vector<lease_info> out;
  out.reserve(state_->cache.live().size());
  for (const auto& [id, e] : state_->cache.live()) {
    lease_info i;
    i.lease_id = id;
    i.role = e->role;
    i.mount = e->mount;
    const auto end = e->ends_at();
    i.ttl_left = end > t ? std::chrono::duration_cast<seconds>(end - t) : seconds{0};
    i.duration = e->current_duration;
    i.renewable = e->renewable;
    i.cached = state_->cache.cached(*e);
    i.at_max_ttl = e->at_max;
    i.revoke_denied = e->abandoned;
    i.sessions = e->sessions.size();
    const detail::token_entry* tok = state_->tokens.find(e->token_hash);
    if (tok != nullptr && tok->has_info) i.token_accessor = tok->info.accessor;
    i.token_sha256_prefix = detail::short_hash(e->token_hash);
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
