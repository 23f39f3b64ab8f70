// The credential and login phases: the login throttle, the credential from the
// broker (its cache or Vault), and the upstream connection (an idle pooled one, or
// a new login with the credential). Also the lease events that end a session.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "core/text.hpp"
#include "credentials/broker_await.hpp"
#include "ops/metrics.hpp"
#include "vault/vault_await.hpp"
#include "proxy/session.hpp"

namespace vaultwire::detail {

namespace net = boost::asio;

namespace {

// Only vault_rejected_token feeds the failed-login throttle: a policy's denial of one
// role (vault_denied_role) says nothing against the token.
session_outcome outcome_of(const broker_error& e) {
  switch (e.kind) {
    case broker_error_kind::vault:
      if (e.vault.policy_denied()) return session_outcome::vault_denied_role;
      return e.vault.token_rejected() ? session_outcome::vault_rejected_token : session_outcome::vault_unavailable;
    case broker_error_kind::token_rejected: return session_outcome::vault_rejected_token;
    case broker_error_kind::role_denied: return session_outcome::vault_denied_role;
    case broker_error_kind::token_unverified: return session_outcome::vault_unavailable;
    case broker_error_kind::lease_budget: return session_outcome::lease_budget;
    case broker_error_kind::shutting_down: return session_outcome::shutdown;
  }
  return session_outcome::vault_unavailable;
}

// vaultwire's own Vault identity, as stable as its configuration: the login method,
// its mount and what names the role (never a secret: names and paths).
std::string own_login_identity(const vault_config& v) {
  const vault_auth_config& a = v.auth;
  std::string who = a.role.value_or(a.name.value_or(""));
  if (who.empty() && a.role_id_file) who = a.role_id_file->string();
  if (a.method == vault_auth_method::token_file || a.method == vault_auth_method::none)
    who = v.token_file ? v.token_file->string() : "";
  return std::string(to_string(a.method)) + '\0' + a.mount + '\0' + who;
}

// What the client is told when its token or lease ends (the FATAL 57P01's message).
std::string revocation_cause(lease_event event) {
  return event == lease_event::token_revoked
             ? "the Vault token that opened this session was revoked or has expired"
             : "Vault no longer knows this session's database credential (its lease was revoked)";
}

std::string_view reconnect_hint(lease_event event) {
  return event == lease_event::token_revoked ? "reconnect with a valid token" : "reconnect";
}

}  // namespace

// Auth-failure throttling, before Vault is asked ([throttle] base_delay set).
net::awaitable<bool> session::pass_throttle() {
  throttle_key_ = auth_throttle::make_key(auth_throttle::client_host(peer_), token_sha256_);
  const auth_throttle::verdict v = state_->throttle.check(throttle_key_);
  if (!v.allowed) {
    spdlog::info("{} login throttled: {} failed logins in a row with this token, {} left of {}", prefix(), v.failures,
                 duration_text(v.retry_after), duration_text(v.backoff));
    co_await refuse(errc::throttled, throttle_message(v, "with this token"));
    co_return false;
  }
  throttle_ticket_ = v.ticket;
  co_return true;
}

std::string session::throttle_message(const auth_throttle::verdict& v, std::string_view subject) const {
  const auto secs = std::max<long long>(1, (v.retry_after.count() + 999) / 1000);
  return "too many failed logins from " + auth_throttle::client_host(peer_) + " " + std::string(subject) + " (" +
         std::to_string(v.failures) + " in a row, waiting " + duration_text(v.backoff) + "); retry after " +
         std::to_string(secs) + "s";
}

// Until Vault has been seen to refuse a made-up token (vault_guard), each new session
// checks first: behind a Vault Proxy that puts its own token in place of the client's,
// any password would get a credential.
net::awaitable<bool> session::pass_vault_check() {
  auto answer = co_await async_vault<vault_response>(
      [&](auto done) { request_token_substitution_check(*state_->vault, std::move(done)); });
  const token_substitution_check check = token_substitution_of(answer, cfg_->vault.address);
  state_->vault_check->record(check);
  if (check.verdict == token_substitution::absent) co_return true;
  spdlog::info("{} refused: Vault not verified: {}", prefix(), check.message);
  co_await refuse(errc::vault_unavailable, check.message);
  co_return false;
}

bool session::vault_verified() const { return !state_->vault_check || state_->vault_check->verified(); }

// The broker's answer, posted to the session's executor (from a Vault pool thread,
// or from acquire() itself when known at once); it cancels `wake`.
struct session::credential_wait {
  explicit credential_wait(const executor_type& ex) : wake(ex, std::chrono::steady_clock::time_point::max()) {}
  bool fetching = false;  // this acquire sent a creds request to Vault
  std::optional<broker_result<credential_lease>> result;
  net::steady_timer wake;
};

// An upstream connection (TCP and TLS, nothing sent after the handshake) opened while
// the broker asks Vault for the credential.
struct session::upstream_predial {
  explicit upstream_predial(const executor_type& ex) : wake(ex, std::chrono::steady_clock::time_point::max()) {}
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  std::chrono::steady_clock::duration took{};
  std::optional<upstream_session> opened;
  net::steady_timer wake;
};

// Not a coroutine: g++ 12 mishandles lambdas with owning captures in coroutine frames.
std::shared_ptr<session::credential_wait> session::request_credential(credential_request request) {
  auto wait = std::make_shared<credential_wait>(executor());
  auto done = [wait, ex = executor()](broker_result<credential_lease> r) {
    auto result = std::make_shared<broker_result<credential_lease>>(std::move(r));
    net::post(ex, [wait, result] {
      wait->result = std::move(*result);
      wait->wake.cancel();
    });
  };
  wait->fetching = state_->broker->acquire(std::move(request), std::move(done));
  return wait;
}

// A new lease has no pooled connection, so the login will dial: the TCP connect and
// the TLS handshake run while Vault answers. Only the session whose acquire sent the
// creds request: many sessions joining one request would open their connections all
// at once while the database runs Vault's CREATE ROLE. Not with a scripted upstream
// (tests).
void session::start_predial() {
  if (state_->upstream_connector || stopping_) return;
  auto p = std::make_shared<upstream_predial>(executor());
  predial_ = p;
  net::co_spawn(executor(), open_upstream(listener_->route->target(cfg_->limits)),
                [p](std::exception_ptr error, upstream_session opened) {
                  p->took = std::chrono::steady_clock::now() - p->started;
                  if (error) opened.failed = failure{errc::upstream_unreachable, "connecting to the server failed"};
                  p->opened = std::move(opened);
                  p->wake.cancel();
                });
}

// The credential: the broker's cache, or Vault on its worker pool. `refetch`: the
// server refused the one held (28P01); the broker stops serving it and fetches anew.
net::awaitable<bool> session::acquire_credential(bool refetch) {
  credential_request request;
  request.token = token_->clone();
  request.token_hash = credential_broker::token_digest(token_sha256_);
  request.vault_namespace = cfg_->vault.namespace_.value_or("");  // as the Vault client sends it (SIGHUP may change it)
  request.mount = state_->cfg->vault.mount;
  request.role = role_;
  request.route = listener_->config->route;
  if (!local_identity_.empty()) request.identity = own_login_identity(cfg_->vault);
  broker_result<credential_lease> r = broker_error{};
  if (refetch) {
    r = co_await async_acquire(*state_->broker, std::move(request), &lease_);
  } else {
    auto wait = request_credential(std::move(request));
    if (wait->fetching) start_predial();
    boost::system::error_code ignored;
    while (!wait->result) co_await wait->wake.async_wait(net::redirect_error(net::use_awaitable, ignored));
    r = std::move(*wait->result);
  }
  if (!r) {
    const broker_error& e = r.error();
    const session_outcome outcome = outcome_of(e);
    if (outcome == session_outcome::vault_rejected_token && !throttle_key_.empty()) {
      state_->throttle.failed(throttle_key_, throttle_ticket_, cfg_->throttle);
    }
    co_await refuse_with(e.sqlstate(), e.to_client_message(), outcome);
    co_return false;
  }
  lease_ = std::move(r).value();
  username_ = lease_.username();
  lease_id_ = lease_.lease_id();
  token_identity_ = lease_.token_identity();
  {
    std::lock_guard lock(state_->sessions_mutex);
    if (auto it = state_->sessions.find(id_); it != state_->sessions.end()) it->second.lease_id = lease_id_;
  }
  watch_lease();
  co_return true;
}

// Not a coroutine: g++ 12 mishandles lambdas with owning captures in coroutine frames.
void session::watch_lease() {
  // The broker calls back on its own threads: hop to this session's strand.
  std::weak_ptr<session> weak = weak_from_this();
  lease_.subscribe([weak](lease_event event) {
    if (auto self = weak.lock()) {
      net::post(self->executor(), [self, event] { self->on_lease_event(event); });
    }
  });
}

// Why the credential ends, for the client: Vault revokes a lease at its max TTL, and
// with the token that read it (vaultwire's own, once it is replaced rather than renewed).
std::string session::expiry_cause() const {
  return lease_.ends_with_token() ? "vaultwire's Vault token that read it reaches its max TTL"
                                  : "its lease reached Vault's max TTL";
}

// The kill-switch and expiry at a transaction boundary (DESIGN.md "Credentials and
// leases"), on the session's strand.
void session::on_lease_event(lease_event event) {
  if (!lease_ || phase_ == session_phase::done || control_.ended()) return;
  const std::string sqlstate(sqlstate_for(errc::session_ended));
  switch (event) {
    case lease_event::token_revoked:
    case lease_event::lease_gone:
      on_revoked(event);
      return;
    case lease_event::expiring: {
      const auto left = std::chrono::duration_cast<std::chrono::seconds>(lease_.expires_at() - broker_clock::now());
      const std::string why = expiry_cause();
      spdlog::info("{} lease {} cannot be renewed past its end ({}): ends in {}s; the session ends at its next idle "
                   "point", prefix(), lease_id_, why, std::max<long long>(0, left.count()));
      notice_on_strand("the database credential of this session expires in " +
                       std::to_string(std::max<long long>(0, left.count())) + "s (" + why +
                       "); the session ends at its next idle point; reconnect to continue");
      end_on_strand(end_mode::at_idle, sqlstate,
                    "terminating connection: the database credential of this session expires (" + why +
                        "); reconnect");
      return;
    }
    case lease_event::expired:
      end_on_strand(end_mode::now, sqlstate,
                    "terminating connection: the database credential of this session expired (" + expiry_cause() +
                        "); reconnect");
      return;
    case lease_event::shutdown:
      return;  // the server's stop path ends every session
  }
}

// The token was revoked or the lease is gone: on_revoke says how the session ends.
// With at_idle, [credentials] revoke_grace bounds the wait for the idle point.
void session::on_revoked(lease_event event) {
  const on_revoke_policy policy = cfg_->credentials.on_revoke;
  spdlog::warn("{} {} (lease {}, {}); on_revoke = {}", prefix(),
               event == lease_event::token_revoked ? "token revoked or expired" : "lease gone", lease_id_,
               lease_.token_name(), to_string(policy));
  if (policy == on_revoke_policy::ignore) return;
  const std::string message =
      "terminating connection: " + revocation_cause(event) + "; " + std::string(reconnect_hint(event));
  const std::string sqlstate(sqlstate_for(errc::session_ended));
  if (policy == on_revoke_policy::now) {
    end_on_strand(end_mode::now, sqlstate, message);
    return;
  }
  end_on_strand(end_mode::at_idle, sqlstate, message);
  arm_revoke_grace(event);
}

// [credentials] revoke_grace, counted from when vaultwire learns of the revocation:
// a session still not idle then ends where it is, inside its transaction (end_now:
// a running query is cancelled on the server before the connection is closed). The
// database user is gone or going: an open transaction must not hold its locks and
// run its statements without bound.
void session::arm_revoke_grace(lease_event event) {
  if (revoke_grace_armed_ || control_.ended()) return;
  revoke_grace_armed_ = true;
  revoke_grace_timer_ = make_timer();
  revoke_grace_timer_->expires_after(cfg_->credentials.revoke_grace);
  auto self = shared_from_this();
  revoke_grace_timer_->async_wait([self, event](const boost::system::error_code& ec) {
    if (ec || self->phase_ == session_phase::done || self->control_.ended()) return;
    const std::string grace = duration_text(self->cfg_->credentials.revoke_grace);
    spdlog::warn("{} not idle {} after the {}: ending the session inside its transaction ([credentials] "
                 "revoke_grace)",
                 self->prefix(), grace, event == lease_event::token_revoked ? "token's revocation" : "lease's end");
    const std::string message = "terminating connection: " + revocation_cause(event) +
                                ", and its transaction was still open after [credentials] revoke_grace (" + grace +
                                "); the transaction is rolled back; " + std::string(reconnect_hint(event));
    self->end_on_strand(end_mode::now, std::string(sqlstate_for(errc::session_ended)), message);
    if (self->end_request_ && self->end_request_->message == message) {
      self->end_request_->outcome = session_outcome::revoke_grace;
      if (self->stopping_) self->stop_outcome_ = session_outcome::revoke_grace;  // ended before the splice
    }
  });
}

// An idle pooled connection or a new login. The server refusing a cached credential
// (28P01) drops it and fetches a fresh one, once (DESIGN.md "Credentials and
// leases"). False when the session ends here (the client has been told why).
net::awaitable<bool> session::connect_upstream_phase() {
  // Not `if (stopping_ || !co_await ...) co_await ...;`: g++ 12 builds a broken
  // resume table for that statement at the top of a coroutine (the first resume hits
  // ud2).
  bool pooled = false;
  if (!stopping_) pooled = co_await take_pooled_upstream();
  if (pooled) predial_.reset();  // closes the connection opened during the Vault call
  if (!pooled) {
    co_await login_upstream();
  }
  if (!stopping_ && upstream_.server_sqlstate == "28P01" && lease_.from_cache()) {
    spdlog::warn("{} the server refused cached credential {} (28P01): fetching a fresh one", prefix(), lease_id_);
    if (upstream_.conn) upstream_.conn->close();
    upstream_ = upstream_session{};
    if (!co_await acquire_credential(true)) co_return false;
    co_await login_upstream();
  }
  if (stopping_ || upstream_.failed || !upstream_.conn) {
    co_await refuse_failed_login();
    co_return false;
  }
  if (!throttle_key_.empty()) state_->throttle.succeeded(throttle_key_);
  co_return true;
}

// An idle connection of the pool for this credential, database and parameters, or
// one of them whose reset is under way.
net::awaitable<bool> session::take_pooled_upstream() {
  if (!state_->pool) co_return false;
  pool_key_ = upstream_pool::key_for(lease_id_, database_, params_, local_identity_);
  auto up = co_await state_->pool->checkout_or_wait(pool_key_, executor());
  if (!up) co_return false;
  upstream_.conn = std::move(up->conn);
  upstream_.peer = std::move(up->peer);
  upstream_.local_address = std::move(up->local_address);
  upstream_.key = up->key;
  upstream_.handover = std::move(up->parameter_status);
  upstream_.ready_status = 'I';
  upstream_.auth_method = std::move(up->auth_method);
  reused_ = true;
  state_->upstream_reuses.fetch_add(1, std::memory_order_relaxed);
  co_return true;  // up->lease (the pool's hold on the same lease) is released here
}

// A new upstream connection logged in with the credential: the client's startup
// parameters, the route's database prefix and options.
net::awaitable<void> session::login_upstream() {
  if (stopping_) co_return;
  const route_config& route = route_config_();
  upstream_login login;
  login.user = lease_.username();
  login.password = &lease_.password();
  login.parameters.emplace_back("database", route.database_prefix.value_or("") + database_);
  std::string options;
  for (auto& [name, value] : params_) {
    if (name == "options") {
      options = value;
    } else {
      login.parameters.emplace_back(name, value);
    }
  }
  if (route.options) options += (options.empty() ? "" : " ") + *route.options;
  if (!options.empty()) login.parameters.emplace_back("options", options);
  login.session_role = route.session_role.value_or("");
  login.scram_max_iterations = route.scram_max_iterations;
  if (state_->crypto) login.scram_executor = state_->crypto->get_executor();
  auto dial_started = std::chrono::steady_clock::now();
  std::optional<upstream_session> opened;
  std::chrono::steady_clock::duration idle{};
  if (predial_) opened = co_await take_predial(dial_started, idle);
  if (state_->upstream_connector) {
    upstream_ = co_await state_->upstream_connector(listener_->route->target(cfg_->limits), std::move(login));
  } else if (opened && opened->conn) {
    upstream_login again = login;
    upstream_ = co_await log_in_upstream(std::move(*opened), listener_->route->target(cfg_->limits), std::move(login));
    const bool connection_lost = upstream_.failed && upstream_.server_error.empty() &&
                                 (upstream_.failed->code == errc::upstream_protocol ||
                                  upstream_.failed->code == errc::upstream_unreachable);
    if (connection_lost && idle >= std::chrono::seconds{1} && !stopping_) {
      // The server may have closed the idle connection before the login began
      // (PostgreSQL's authentication_timeout, 1 s at least, runs from the accept:
      // postmaster.c BackendInitialize, STARTUP_PACKET_TIMEOUT): once more on a new
      // connection.
      spdlog::debug("{} login on the connection opened during the Vault call failed ({}); dialling again", prefix(),
                    upstream_.failed->message);
      upstream_ = co_await connect_upstream(listener_->route->target(cfg_->limits), std::move(again));
    }
  } else if (opened) {
    upstream_ = std::move(*opened);  // the dial or TLS failed: the same refusal as without the head start
  } else {
    upstream_ = co_await connect_upstream(listener_->route->target(cfg_->limits), std::move(login));
  }
  metrics::upstream_connect(!upstream_.server_error.empty() ? std::string_view("refused")
                            : upstream_.failed ? label_for(upstream_.failed->code)
                                              : std::string_view("ok"),
                            std::chrono::steady_clock::now() - dial_started);
  state_->upstream_logins.fetch_add(1, std::memory_order_relaxed);
  if (state_->pool) pool_key_ = upstream_pool::key_for(lease_id_, database_, params_, local_identity_);
}

// The connection start_predial opened, once it is ready; nullopt when it is older than
// predial_max_age (it is closed: the login dials anew). `dial_started` moves back by
// the time the dial itself took, for the connect-duration metric.
net::awaitable<std::optional<upstream_session>> session::take_predial(
    std::chrono::steady_clock::time_point& dial_started, std::chrono::steady_clock::duration& idle) {
  std::shared_ptr<upstream_predial> p = std::move(predial_);
  boost::system::error_code ignored;
  while (!p->opened) co_await p->wake.async_wait(net::redirect_error(net::use_awaitable, ignored));
  idle = std::chrono::steady_clock::now() - p->started - p->took;
  if (idle > predial_max_age) co_return std::nullopt;
  dial_started -= p->took;
  co_return std::move(p->opened);
}

// No upstream: shutdown or an end request came first, the server refused the login
// (its own ErrorResponse goes to the client), or vaultwire could not log in.
net::awaitable<void> session::refuse_failed_login() {
  if (stopping_) {
    outcome_ = stop_outcome_;
    if (end_request_) refused_message_ = end_request_->message;
  } else if (!upstream_.server_error.empty()) {
    // A refused credential (class 28) counts as a failed login for the throttle.
    if (upstream_.server_sqlstate.starts_with("28") && !throttle_key_.empty()) {
      state_->throttle.failed(throttle_key_, throttle_ticket_, cfg_->throttle);
    }
    outcome_ = session_outcome::upstream_refused;
    refused_message_ = upstream_.failed ? upstream_.failed->message : std::string();
    std::error_code ec;
    co_await client_.write_all(upstream_.server_error, ec);
    client_.shutdown_send();
  } else {
    const failure why = upstream_.failed.value_or(failure{errc::upstream_unreachable, "no connection to the server"});
    co_await refuse(why.code, why.message);
  }
}

}  // namespace vaultwire::detail
