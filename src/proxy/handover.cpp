// The handover and splice phases: the login's result handed to the client with
// vaultwire's own cancel key, the byte splice until either side ends, and then the
// upstream connection's fate (kept in the pool for the next client, or closed).
#include <pgwire/encoder.hpp>

#include <spdlog/spdlog.h>

#include "ops/metrics.hpp"
#include "proxy/session.hpp"

namespace vaultwire::detail {

namespace net = boost::asio;

// AuthenticationOk, the server's ParameterStatus and notices, vaultwire's
// BackendKeyData, ReadyForQuery. False when the client is gone.
net::awaitable<bool> session::hand_over() {
  issued_key_ = state_->cancels.issue(
      upstream_.key.process_id,
      cancel_target{listener_->route, {upstream_.key.process_id, upstream_.key.secret_key}, upstream_.local_address});
  std::vector<std::uint8_t> out;
  pgwire::encode_authentication_ok(out);
  out.insert(out.end(), upstream_.handover.begin(), upstream_.handover.end());
  pgwire::encode_backend_key_data(out, *issued_key_);
  (void)pgwire::encode_ready_for_query(out, static_cast<pgwire::transaction_status>(upstream_.ready_status));
  std::error_code ec;
  co_await client_.write_all(out, ec);
  if (state_->pool && !reused_) pool_parameters_ = upstream_pool::parameter_status_of(upstream_.handover);
  if (state_->pool && reused_) pool_parameters_ = std::move(upstream_.handover);
  pool_parameters_.shrink_to_fit();  // kept for the session's life: no spare capacity
  std::vector<std::uint8_t>().swap(upstream_.handover);
  if (ec) {
    outcome_ = session_outcome::client_gone;
    co_return false;
  }
  if (spdlog::should_log(spdlog::level::info)) {  // the prefix is built only for a line that is written
    spdlog::info("{} session open: user {} lease {} upstream {} auth {} connection {} ({})", prefix(), username_,
                 lease_id_, upstream_.peer, upstream_.auth_method, reused_ ? "reused" : "new", lease_.token_name());
  }
  audit_start();
  co_return true;
}

// Bytes both ways until either side ends, vaultwire ends the session (shutdown, an
// end request, the idle timeout), or a side breaks the framing.
net::awaitable<void> session::run_splice() {
  const auto& limits = cfg_->limits;
  phase_ = session_phase::spliced;
  splice_options so;
  so.idle_timeout = limits.client_idle_timeout;
  so.ready_status = upstream_.ready_status;
  so.keep_server_on_idle_terminate = state_->pool != nullptr;
  so.keep_busy_server = true;  // release_upstream() cancels the request, then closes
  if (limits.client_idle_timeout) {
    build_error(so.idle_message, sqlstate_for(errc::client_idle_timeout),
                "terminating connection: idle for longer than " +
                    std::to_string(limits.client_idle_timeout->count()) + "ms ([limits] client_idle_timeout)");
  }
  arm_lifetime_timer();
  traffic_ = co_await splice(client_, *upstream_.conn, control_, std::move(so));
  lifetime_timer_.reset();  // cancels its wait, if armed
  if (!traffic_.protocol_violation.empty()) {
    spdlog::warn("{} {}: both sides closed", prefix(), traffic_.protocol_violation);
  }
  if (stopping_) {
    outcome_ = stop_outcome_;
  } else if (traffic_.idle_timeout) {
    outcome_ = session_outcome::client_idle_timeout;
  } else if (traffic_.ended_by_request && end_request_) {
    outcome_ = end_request_->outcome;
    refused_message_ = end_request_->message;
  } else if (!traffic_.protocol_violation.empty()) {
    outcome_ = traffic_.ended_by == "server protocol violation" ? session_outcome::server_protocol_violation
                                                                : session_outcome::client_protocol_violation;
  }
}

// After the splice: the cancel key is forgotten at once; a client that left with
// Terminate while idle leaves its upstream to the pool, which resets it and keeps it
// for the next client with this credential, database and parameters.
net::awaitable<void> session::release_upstream() {
  phase_ = session_phase::done;
  if (issued_key_) state_->cancels.forget(*issued_key_);
  issued_key_.reset();
  client_.close();
  if (traffic_.client_terminated_idle && state_->pool && !stopping_ && !end_request_ && lease_) {
    const bool kept = co_await state_->pool->checkin(pool_key_, pooled_from_session());
    if (spdlog::should_log(spdlog::level::debug))
      spdlog::debug("{} upstream connection {}", prefix(), kept ? "kept for reuse" : "closed (not reusable)");
  } else {
    if (traffic_.server_busy) co_await cancel_upstream_request();
    upstream_.conn->close();
  }
}

struct session::cancel_wait {
  cancel_wait(const net::any_io_executor& ex, std::chrono::steady_clock::duration bound) : timer(ex, bound) {}
  net::steady_timer timer;  // expires at the bound; cancelled when the cancel is done
  bool done = false;
};

// The splice ended while the server still worked on the client's request: the client
// went away mid-query, or vaultwire ended the session there. PostgreSQL does not
// notice a closed socket while a statement runs (only with
// client_connection_check_interval), so closing alone would leave the statement and its
// locks running: a CancelRequest first, then the caller closes. The cancel is waited
// for at most upstream_connect_timeout; it goes on by itself after that.
// https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-CANCELING-REQUESTS
net::awaitable<void> session::cancel_upstream_request() {
  spdlog::info("{} the session ended ({}) with a request in flight: cancelling it on the server, then closing",
               prefix(), traffic_.ended_by);
  metrics::cancel_request("session_end");
  auto wait = start_upstream_cancel();
  if (!wait->done) {
    boost::system::error_code ignored;
    co_await wait->timer.async_wait(net::redirect_error(net::use_awaitable, ignored));
  }
}

// Not a coroutine: g++ 12 mishandles lambdas with owning captures in coroutine frames.
std::shared_ptr<session::cancel_wait> session::start_upstream_cancel() {
  auto wait = std::make_shared<cancel_wait>(executor(), cfg_->limits.upstream_connect_timeout);
  const pgwire::cancel_request key{upstream_.key.process_id, upstream_.key.secret_key};
  net::co_spawn(executor(), send_upstream_cancel(listener_->route->target(cfg_->limits), key, upstream_.local_address),
                [wait](std::exception_ptr) {
                  wait->done = true;
                  wait->timer.cancel();
                });
  return wait;
}

// What the pool keeps of this session's upstream; the lease hold moves with it and is
// watched so that a lease event closes the idle connection.
pooled_upstream session::pooled_from_session() {
  pooled_upstream up;
  up.conn = std::move(upstream_.conn);
  up.peer = upstream_.peer;
  up.local_address = upstream_.local_address;
  up.key = upstream_.key;
  up.parameter_status = std::move(pool_parameters_);
  up.auth_method = upstream_.auth_method;
  up.session_role = route_config_().session_role.value_or("");
  up.lease_id = lease_id_;
  up.lease_expires_at = lease_.expires_at();
  up.lease = std::move(lease_);
  std::weak_ptr<upstream_pool> pool = state_->pool;
  std::string lease_id = lease_id_;
  up.lease.subscribe([pool, lease_id](lease_event) {
    if (auto p = pool.lock()) p->evict_lease(lease_id);
  });
  return up;
}

}  // namespace vaultwire::detail
