// The session's run() (its phases, in order), the requests that reach it from other
// threads, its refusals, and its end. The phases themselves are in admission.cpp,
// login.cpp and handover.cpp (session.hpp lists them).
#include "proxy/session.hpp"

#include <pgwire/encoder.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "core/text.hpp"
#include "ops/metrics.hpp"
#include "vaultwire/errc.hpp"

namespace vaultwire::detail {

namespace net = boost::asio;

namespace {

std::string describe_peer(const std::string& peer) { return peer.empty() ? "unix" : peer; }

constexpr std::string_view shutdown_message = "terminating connection: vaultwire is shutting down; reconnect";

}  // namespace

session::session(std::shared_ptr<proxy_state> state, const listener_runtime* listener, stream::descriptor sd,
                 std::string peer, std::uint64_t id)
    : state_(std::move(state)),
      cfg_(state_->current()),
      listener_(listener),
      client_(std::move(sd)),
      peer_(std::move(peer)),
      id_(id) {}

session::~session() { release_role_slot(); }

net::awaitable<void> session::run() {
  auto self = shared_from_this();
  finish_guard end(*this);
  arm_startup_timer();
  // Over the limit, the refusal still waits for the StartupMessage (as PostgreSQL
  // does): a client that began with an SSLRequest reads it after the TLS answer, not
  // in place of it, and a CancelRequest is still served.
  over_limit_ = state_->active_clients.fetch_add(1) >= cfg_->limits.max_client_connections;
  counted_ = true;

  if (!co_await admit()) co_return;
  phase_ = session_phase::credential;
  // A peer login guessed no secret (the kernel named the client), so the failed-login
  // throttle has nothing to count; and its credential is read with vaultwire's own
  // token, so the check for a Vault Proxy that substitutes its token for the client's
  // (any password would pass) does not concern it.
  const bool peer_login = !local_identity_.empty();
  if (cfg_->throttle.base_delay && !peer_login && !co_await pass_throttle()) co_return;
  if (!peer_login && !vault_verified() && !co_await pass_vault_check()) co_return;
  if (!co_await acquire_credential()) co_return;
  phase_ = session_phase::login;
  if (!co_await connect_upstream_phase()) co_return;
  drop_login_state();
  if (!co_await hand_over()) co_return;
  co_await run_splice();
  co_await release_upstream();
}

// ---- requests from other threads

void session::stop() {
  auto self = shared_from_this();
  net::post(executor(), [self] { self->stop_on_strand(); });
}

void session::drain() {
  auto self = shared_from_this();
  net::post(executor(), [self] { self->drain_on_strand(); });
}

void session::end_at_idle(std::string sqlstate, std::string message) {
  auto self = shared_from_this();
  net::post(executor(), [self, sqlstate = std::move(sqlstate), message = std::move(message)]() mutable {
    self->end_on_strand(end_mode::at_idle, sqlstate, std::move(message));
  });
}

void session::end_now(std::string sqlstate, std::string message) {
  auto self = shared_from_this();
  net::post(executor(), [self, sqlstate = std::move(sqlstate), message = std::move(message)]() mutable {
    self->end_on_strand(end_mode::now, sqlstate, std::move(message));
  });
}

void session::notice(std::string message) {
  auto self = shared_from_this();
  net::post(executor(), [self, message = std::move(message)] { self->notice_on_strand(message); });
}

void session::drain_on_strand() {
  if (phase_ == session_phase::spliced && !control_.ended()) {
    stopping_ = true;
    std::vector<std::uint8_t> out;
    build_error(out, sqlstate_for(errc::session_ended), std::string(shutdown_message));
    control_.end_at_idle(std::move(out), "shutdown");
    sqlstate_ = std::string(sqlstate_for(errc::session_ended));
    return;
  }
  stop_on_strand();
}

void session::stop_on_strand() {
  stopping_ = true;
  if (phase_ == session_phase::spliced && !control_.ended()) {
    // The splice frames both directions: the 57P01 goes out at a message
    // boundary (never inside a message), then both sides close.
    std::vector<std::uint8_t> out;
    build_error(out, sqlstate_for(errc::session_ended), std::string(shutdown_message));
    control_.end_now(std::move(out), "shutdown");
    sqlstate_ = std::string(sqlstate_for(errc::session_ended));
    return;
  }
  if (phase_ < session_phase::spliced) refuse_now(errc::session_ended, "vaultwire is shutting down; reconnect");
  client_.close();
  if (upstream_.conn) upstream_.conn->close();
}

void session::end_on_strand(end_mode mode, const std::string& sqlstate, std::string message) {
  if (control_.ended() || phase_ == session_phase::done) return;
  if (end_request_ && mode == end_mode::at_idle) return;  // a second request may only make it immediate
  end_request_ = end_request{mode == end_mode::now ? session_outcome::ended_now : session_outcome::ended_at_idle,
                             message};
  sqlstate_ = sqlstate;
  std::vector<std::uint8_t> out;
  build_error(out, sqlstate, message);
  if (mode == end_mode::now && phase_ < session_phase::spliced) {
    stopping_ = true;
    stop_outcome_ = end_request_->outcome;
    std::error_code ec;
    (void)client_.try_write(out, ec);  // best effort, as for shutdown
    client_.close();
    if (upstream_.conn) upstream_.conn->close();
    return;
  }
  spdlog::debug("{} end requested ({}): {}", prefix(), mode == end_mode::now ? "now" : "at idle", message);
  if (mode == end_mode::now) {
    control_.end_now(std::move(out), "vaultwire (now)");
  } else {
    control_.end_at_idle(std::move(out), "vaultwire (at idle)");
  }
}

void session::notice_on_strand(const std::string& message) {
  if (control_.ended() || phase_ == session_phase::done) return;
  std::vector<std::uint8_t> out;
  auto fields = pgwire::error_builder(pgwire::error_severity::warning).sqlstate("01000").message(message).fields();
  if (!pgwire::encode_notice_response(out, fields)) return;
  control_.notice(out);
}

std::unique_ptr<net::steady_timer> session::make_timer() { return std::make_unique<net::steady_timer>(executor()); }

void session::drop_login_state() {
  token_.reset();  // secret_string wipes it
  std::vector<std::pair<std::string, std::string>>().swap(params_);
  std::vector<std::uint8_t>().swap(early_bytes_);
}

// The startup timeout covers admission: a timer that refuses and closes.
void session::arm_startup_timer() {
  startup_timer_ = make_timer();
  startup_timer_->expires_after(cfg_->limits.startup_timeout);
  auto self = shared_from_this();
  startup_timer_->async_wait([self](const boost::system::error_code& ec) {
    if (ec) return;
    self->timed_out_ = true;
    self->outcome_ = session_outcome::startup_timeout;
    self->refuse_now(errc::startup_timeout, "startup not finished within " +
                                                duration_text(self->cfg_->limits.startup_timeout) +
                                                " ([limits] startup_timeout)");
    self->client_.close();
  });
}

// [limits] max_session_lifetime: counted from the connection's start; at expiry the
// session ends with 57P01 at its next idle point, like a lease at its max TTL (a
// transaction is never cut; a session that never becomes idle runs on).
void session::arm_lifetime_timer() {
  const auto& lifetime = cfg_->limits.max_session_lifetime;
  if (!lifetime) return;
  lifetime_timer_ = make_timer();
  lifetime_timer_->expires_at(started_ + *lifetime);
  auto self = shared_from_this();
  lifetime_timer_->async_wait([self](const boost::system::error_code& ec) {
    if (ec) return;
    const std::string message = "terminating connection: the session reached its maximum lifetime of " +
                                duration_text(*self->cfg_->limits.max_session_lifetime) +
                                " ([limits] max_session_lifetime); reconnect";
    spdlog::info("{} maximum session lifetime reached: the session ends at its next idle point", self->prefix());
    self->end_on_strand(end_mode::at_idle, std::string(sqlstate_for(errc::session_ended)), message);
    if (self->end_request_ && self->end_request_->message == message) {
      self->end_request_->outcome = session_outcome::max_session_lifetime;
    }
  });
}

// ---- refusals

void session::refuse_now(errc code, const std::string& message) {
  sqlstate_ = std::string(sqlstate_for(code));
  std::vector<std::uint8_t> out;
  build_error(out, sqlstate_for(code), message);
  std::error_code ec;
  (void)client_.try_write(out, ec);
}

void session::build_error(std::vector<std::uint8_t>& out, std::string_view sqlstate, const std::string& message) {
  auto fields = pgwire::error_builder(pgwire::error_severity::fatal).sqlstate(sqlstate).message(message).fields();
  (void)pgwire::encode_error_response(out, fields);
}

net::awaitable<void> session::refuse(errc code, const std::string& message) {
  co_await refuse_with(sqlstate_for(code), message, outcome_for(code));
}

net::awaitable<void> session::refuse_with(std::string_view sqlstate, const std::string& message,
                                          session_outcome outcome) {
  outcome_ = outcome;
  refused_message_ = message;
  sqlstate_ = std::string(sqlstate);
  std::vector<std::uint8_t> out;
  build_error(out, sqlstate, message);
  std::error_code ec;
  co_await client_.write_all(out, ec);
  client_.shutdown_send();
}

// ---- the end

// Whatever phase the session stopped in: the cancel key forgotten, the upstream
// closed (unless the pool took it), the lease released, the counters and the log.
void session::finish() {
  phase_ = session_phase::done;
  for (auto* timer : {&startup_timer_, &lifetime_timer_, &revoke_grace_timer_}) {
    if (*timer) (*timer)->cancel();
  }
  if (issued_key_) state_->cancels.forget(*issued_key_);
  issued_key_.reset();
  if (upstream_.conn) upstream_.conn->close();
  lease_.release();
  if (counted_) state_->active_clients.fetch_sub(1);
  counted_ = false;
  if (is_cancel(outcome_)) {
    forget_session();  // a cancel connection is not a session: no log line
  } else {
    log_end();
  }
}

std::string session::prefix() const {
  char id[32];
  std::snprintf(id, sizeof id, "C-%06llu", static_cast<unsigned long long>(id_));
  return std::string(id) + ": " + (database_.empty() ? "?" : database_) + "/" + (role_.empty() ? "?" : role_) + "@" +
         describe_peer(peer_) + (local_identity_.empty() ? "" : "(" + local_identity_ + ")");
}

// What every audit event of this session carries: who, where, and with which
// credential (the parts known so far). Never the token.
audit_event session::session_event(audit_event_type type) const {
  audit_event e;
  e.type = type;
  e.session_id = id_;
  e.client_address = describe_peer(peer_);
  if (!local_identity_.empty()) e.local_identity = local_identity_;
  e.listener = listener_->config->bind;
  if (!role_.empty()) e.role = role_;
  if (!database_.empty()) e.database = database_;
  if (lease_id_ != "-") e.lease_id = lease_id_;
  if (username_ != "-") e.db_user = username_;
  if (!token_identity_.accessor.empty()) e.token_accessor = token_identity_.accessor;
  if (!token_identity_.display_name.empty()) e.token_display_name = token_identity_.display_name;
  if (!token_identity_.entity_id.empty()) e.entity_id = token_identity_.entity_id;
  return e;
}

void session::audit_start() {
  if (!state_->audit) return;
  audit_event e = session_event(audit_event_type::session_start);
  e.result = "ok";
  e.reason = reused_ ? "reused upstream connection" : "new upstream connection";
  state_->audit->write(e);
}

void session::log_end() {
  release_role_slot();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started_);
  const std::string_view result = label(outcome_);
  if (state_->audit) {
    audit_event e = session_event(audit_event_type::session_end);
    e.result = std::string(result);
    if (!sqlstate_.empty()) e.sqlstate = sqlstate_;
    if (!refused_message_.empty()) e.reason = refused_message_;
    e.bytes_in = traffic_.client_to_server;
    e.bytes_out = traffic_.server_to_client;
    e.duration_ms = ms.count();
    state_->audit->write(e);
  }
  if (spdlog::should_log(spdlog::level::info)) {
    spdlog::info("{} session closed: result {}{}{} user {} lease {} duration {}ms bytes in {} out {}{}", prefix(),
                 result, refused_message_.empty() ? "" : " (", refused_message_.empty() ? "" : refused_message_ + ")",
                 username_, lease_id_, ms.count(), traffic_.client_to_server, traffic_.server_to_client,
                 traffic_.ended_by.empty() ? "" : ", ended by " + traffic_.ended_by);
  }
  metrics::client_connection_closed(result, std::chrono::steady_clock::now() - started_, traffic_.client_to_server,
                                    traffic_.server_to_client);
  forget_session();
}

void session::release_role_slot() {
  if (!role_slot_) return;
  role_slot_ = false;
  state_->release_role_slot(role_);
}

void session::forget_session() {
  std::lock_guard lock(state_->sessions_mutex);
  state_->sessions.erase(id_);
}

}  // namespace vaultwire::detail
