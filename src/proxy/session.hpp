// session: one client connection's life (DESIGN.md "Connection flow"), as its
// phases, each a function that can be read alone (run() in session.cpp lists them):
//   admission   SSLRequest / GSSENCRequest / CancelRequest / StartupMessage,
//               NegotiateProtocolVersion, role check, the token (or a peer's
//               uid, or a local user's SCRAM exchange) (admission.cpp)
//   credential  the throttle, then the broker's cache or Vault (login.cpp)
//   login       an idle pooled upstream, or a new login; a refused cached
//               credential is dropped and fetched once more (login.cpp)
//   handover    AuthenticationOk, ParameterStatus, vaultwire's BackendKeyData,
//               ReadyForQuery; then the splice (handover.cpp)
//   end         finish(): logs, audits, counts and releases once, whichever phase
//               the session stopped in (an RAII guard in run() calls it).
// Private header of src/proxy/ (includes Asio). Every member runs on the session's
// strand (its client socket's executor) unless it says otherwise.
#pragma once

#include <openssl/crypto.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <pgwire/scram_server.hpp>

#include "core/digest.hpp"
#include "core/outcome.hpp"
#include "credentials/broker.hpp"
#include "ops/audit.hpp"
#include "ops/throttle.hpp"
#include "proxy/proxy.hpp"
#include "proxy/splice.hpp"
#include "proxy/upstream.hpp"
#include "proxy/upstream_pool.hpp"

#include <boost/asio/steady_timer.hpp>

namespace vaultwire::detail {

// Bytes that may hold a token or a SCRAM proof: wiped when they go.
struct wiped_bytes {
  std::vector<std::uint8_t> v;
  wiped_bytes() = default;
  wiped_bytes(const wiped_bytes&) = delete;
  wiped_bytes& operator=(const wiped_bytes&) = delete;
  ~wiped_bytes() { OPENSSL_cleanse(v.data(), v.size()); }
};

// Where a session is; the phases only move forward.
enum class session_phase {
  admission,   // until the token is read
  credential,  // the throttle and the broker
  login,       // the upstream connection
  spliced,     // handover sent, bytes flowing
  done,        // finish() has run: nothing more is said to the client
};

class session : public std::enable_shared_from_this<session> {
 public:
  session(std::shared_ptr<proxy_state> state, const listener_runtime* listener, stream::descriptor sd,
          std::string peer, std::uint64_t id);
  ~session();

  boost::asio::awaitable<void> run();
  [[nodiscard]] stream::descriptor::executor_type executor() { return client_.socket().get_executor(); }

  // Callable from any thread; each posts to the session's strand.
  // stop: shutdown now. drain: shutdown with a grace period (a spliced session ends
  // at its next idle point, no transaction cut; one still in admission or login is
  // refused now). end_at_idle / end_now: the kill-switch and lease expiry (see
  // splice_control for the exact points where vaultwire speaks); before the splice,
  // end_now refuses (FATAL) and closes, end_at_idle and notice wait for the splice,
  // whose first state is the handover's ReadyForQuery. Whenever the splice ends with
  // a request in flight on the server (stop, end_now, or the client gone mid-query),
  // the request is cancelled before the upstream connection is closed.
  void stop();
  void drain();
  void end_at_idle(std::string sqlstate, std::string message);
  void end_now(std::string sqlstate, std::string message);
  void notice(std::string message);

 private:
  class finish_guard;

  // A request from outside to end the session (kill-switch, expiry, lifetime).
  struct end_request {
    session_outcome outcome = session_outcome::ended_at_idle;
    std::string message;
  };

  // ---- control, on the strand (session.cpp)
  void drain_on_strand();
  void stop_on_strand();
  void end_on_strand(end_mode mode, const std::string& sqlstate, std::string message);
  void notice_on_strand(const std::string& message);
  void on_lease_event(lease_event event);
  [[nodiscard]] std::string expiry_cause() const;
  void on_revoked(lease_event event);
  void watch_lease();
  void arm_startup_timer();
  void arm_lifetime_timer();
  void arm_revoke_grace(lease_event event);
  // A timer on the session's strand (startup_timer_ and the others are made with it).
  [[nodiscard]] std::unique_ptr<boost::asio::steady_timer> make_timer();
  // Once logged in: drops what only admission and the login needed (the token, the
  // startup parameters), so an idle spliced session holds none of it.
  void drop_login_state();

  // ---- refusals: a FATAL ErrorResponse, then the client's side is shut (session.cpp)
  // Best effort, never blocks: for timers and shutdown.
  void refuse_now(errc code, const std::string& message);
  static void build_error(std::vector<std::uint8_t>& out, std::string_view sqlstate, const std::string& message);
  boost::asio::awaitable<void> refuse(errc code, const std::string& message);
  boost::asio::awaitable<void> refuse_with(std::string_view sqlstate, const std::string& message,
                                           session_outcome outcome);

  // ---- admission (admission.cpp)
  boost::asio::awaitable<bool> admit();
  boost::asio::awaitable<bool> read_more(std::vector<std::uint8_t>& buf);
  boost::asio::awaitable<bool> read_proxy_header();
  boost::asio::awaitable<bool> admission();
  boost::asio::awaitable<bool> negotiate_encryption(bool is_ssl, const std::vector<std::uint8_t>& rest,
                                                    bool& tls_done);
  boost::asio::awaitable<bool> admit_startup(pgwire::startup_message& sm);
  // role_ against the route's roles, then its [limits] max_connections_per_role slot.
  boost::asio::awaitable<bool> admit_role();
  // The client's next message, which must be a 'p' (PasswordMessage, SASLInitialResponse
  // or SASLResponse share the type) with nothing after it; its body into `body`, which
  // the caller wipes. `expected` names the message for a refusal ("password message").
  boost::asio::awaitable<bool> read_auth_message(std::vector<std::uint8_t>& body, std::string_view expected);
  boost::asio::awaitable<bool> read_token();
  // client_auth = "peer": the kernel's uid and gid of the client against the
  // listener's [[listener.peer]] rules, then vaultwire's own token in place of one.
  boost::asio::awaitable<bool> admit_peer();
  // client_auth = "password": a SCRAM exchange against the listener's users file, the
  // user's role through admit_role(), then vaultwire's own token.
  boost::asio::awaitable<bool> admit_password();
  // The next SASLResponse's data (wiped with `data`).
  boost::asio::awaitable<bool> read_sasl_response(std::vector<std::uint8_t>& body, pgwire::secret_string& data);
  boost::asio::awaitable<bool> run_scram(pgwire::scram_server& scram, std::error_code& failure,
                                         std::string& server_final);
  boost::asio::awaitable<bool> write_auth(const std::vector<std::uint8_t>& out);
  boost::asio::awaitable<void> refuse_password(std::error_code failure, const std::string& user, bool known);
  // Local identities: vaultwire's own token in place of the client's.
  boost::asio::awaitable<bool> take_own_token();
  boost::asio::awaitable<void> cancel(pgwire::cancel_request key);

  // ---- credential and login (login.cpp)
  boost::asio::awaitable<bool> pass_throttle();
  boost::asio::awaitable<bool> pass_vault_check();
  [[nodiscard]] bool vault_verified() const;
  boost::asio::awaitable<bool> acquire_credential(bool refetch = false);
  struct credential_wait;
  struct upstream_predial;
  using executor_type = stream::descriptor::executor_type;
  std::shared_ptr<credential_wait> request_credential(credential_request request);
  void start_predial();
  boost::asio::awaitable<std::optional<upstream_session>> take_predial(
      std::chrono::steady_clock::time_point& dial_started, std::chrono::steady_clock::duration& idle);
  // A connection opened during the Vault call and idle longer than this is not used:
  // PostgreSQL closes one that sends no startup packet within authentication_timeout
  // (60 s by default, 1 s at least).
  static constexpr std::chrono::seconds predial_max_age{10};
  boost::asio::awaitable<bool> connect_upstream_phase();
  boost::asio::awaitable<void> login_upstream();
  boost::asio::awaitable<void> refuse_failed_login();
  boost::asio::awaitable<bool> take_pooled_upstream();
  // `subject`: what the failures share besides the host ("with this token").
  [[nodiscard]] std::string throttle_message(const auth_throttle::verdict& v, std::string_view subject) const;

  // ---- handover, splice and the upstream's fate (handover.cpp)
  boost::asio::awaitable<bool> hand_over();
  boost::asio::awaitable<void> run_splice();
  boost::asio::awaitable<void> release_upstream();
  boost::asio::awaitable<void> cancel_upstream_request();
  struct cancel_wait;
  std::shared_ptr<cancel_wait> start_upstream_cancel();
  pooled_upstream pooled_from_session();

  // ---- end (session.cpp)
  void finish();
  void log_end();
  void audit_start();
  [[nodiscard]] audit_event session_event(audit_event_type type) const;
  void forget_session();
  void release_role_slot();

  // Log prefix like pgbouncer's: session id, peer, database, role.
  [[nodiscard]] std::string prefix() const;
  // This session's route settings (roles, options, database): from its config snapshot.
  [[nodiscard]] const route_config& route_config_() const { return cfg_->routes.at(listener_->config->route); }

  std::shared_ptr<proxy_state> state_;
  std::shared_ptr<const config> cfg_;  // the configuration when the session started (SIGHUP swaps the next)
  const listener_runtime* listener_;
  stream client_;
  std::string peer_;
  std::uint64_t id_;
  // Made only when armed (the startup timer is dropped after admission, the lifetime
  // timer after the splice): most sessions spend their life idle in the splice with
  // none of the three running, and each is 112 bytes (bench/ANALYSIS.md, S4).
  std::unique_ptr<boost::asio::steady_timer> startup_timer_;       // admission only
  std::unique_ptr<boost::asio::steady_timer> lifetime_timer_;      // [limits] max_session_lifetime
  std::unique_ptr<boost::asio::steady_timer> revoke_grace_timer_;  // [credentials] revoke_grace
  bool revoke_grace_armed_ = false;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  session_phase phase_ = session_phase::admission;
  session_outcome outcome_ = session_outcome::ok;

  // Admission.
  bool counted_ = false;     // counts in active_clients (released by finish())
  bool over_limit_ = false;  // more clients than max_client_connections: refused at the StartupMessage
  bool timed_out_ = false;   // the startup timer fired
  bool role_slot_ = false;   // counts against role_ ([limits] max_connections_per_role)
  std::vector<std::uint8_t> early_bytes_;  // client bytes read after a PROXY header: the start of admission
  // Until the login is done (drop_login_state): the client's startup parameters, minus
  // user, and its token.
  std::vector<std::pair<std::string, std::string>> params_;
  std::optional<pgwire::secret_string> token_;
  std::string role_, database_;
  // client_auth = "peer": "uid:<N>", "password": "user:<name>", once admitted (log,
  // audit, pool key); empty otherwise.
  // token_ then holds vaultwire's own token, never the client's.
  std::string local_identity_;
  sha256_digest token_sha256_{};  // of token_, once: the throttle's key and the broker's
  std::string throttle_key_;      // (client host, token SHA-256): [throttle]; empty when off
  std::uint64_t throttle_ticket_ = 0;

  // Credential and upstream.
  credential_lease lease_;
  credential_lease::identity token_identity_;  // accessor, display name, entity: for the audit log; never the token
  std::string username_ = "-", lease_id_ = "-";  // for the log, kept after the lease is released
  upstream_session upstream_;
  std::shared_ptr<upstream_predial> predial_;  // TCP and TLS begun while Vault answers; null when not
  bool reused_ = false;  // upstream_ came from the pool
  std::string pool_key_;
  std::vector<std::uint8_t> pool_parameters_;  // the login's ParameterStatus set, kept for the pool
  std::optional<pgwire::backend_key_data> issued_key_;

  // Splice and the end.
  splice_control control_;
  splice_result traffic_;
  bool stopping_ = false;  // shutdown, or end_now before the splice
  session_outcome stop_outcome_ = session_outcome::shutdown;  // outcome_ when stopping_
  std::optional<end_request> end_request_;
  std::string sqlstate_;  // of the ErrorResponse vaultwire sent the client, if any (audit)
  std::string refused_message_;
};

// Ends a session exactly once, whichever way run() leaves (a phase that refuses, a
// client gone, an exception): PgBouncer's disconnect_client(), as a scope guard.
class session::finish_guard {
 public:
  explicit finish_guard(session& s) noexcept : s_(s) {}
  finish_guard(const finish_guard&) = delete;
  finish_guard& operator=(const finish_guard&) = delete;
  ~finish_guard() {
    try {
      s_.finish();
    } catch (...) {  // a destructor may not throw; finish() only fails when memory runs out
    }
  }

 private:
  session& s_;
};

}  // namespace vaultwire::detail
