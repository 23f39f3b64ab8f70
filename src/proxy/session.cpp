// One client connection's life (DESIGN.md "Connection flow"):
//   admission (SSLRequest / GSSENCRequest / CancelRequest / StartupMessage,
//   NegotiateProtocolVersion, role check, cleartext password = the Vault token)
//   -> credential from Vault -> upstream login -> handover -> splice -> revoke.
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <pgwire/decoder.hpp>
#include <pgwire/encoder.hpp>
#include <pgwire/proxy_protocol.hpp>
#include <pgwire/sqlstate.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <span>
#include <type_traits>

#include <boost/asio/this_coro.hpp>

#include "core/digest.hpp"
#include "core/text.hpp"
#include "ops/metrics.hpp"
#include "proxy/proxy.hpp"
#include "proxy/splice.hpp"
#include "proxy/upstream_pool.hpp"
#include "credentials/broker_await.hpp"
#include "vaultwire/errc.hpp"

namespace vaultwire::detail {

namespace net = boost::asio;
using namespace std::chrono_literals;

// ---- route_runtime / cancel_map ----

void route_runtime::replace_tls(ssl_ctx fresh) {
  {
    std::lock_guard lock(tls_mutex_);
    std::swap(tls, fresh);
  }
  // `fresh` now holds the old context's reference, dropped here, outside the lock.
}

ssl_ctx listener_runtime::acquire_tls() const {
  std::lock_guard lock(tls_mutex_);
  return tls;
}

void listener_runtime::replace_tls(ssl_ctx fresh) {
  {
    std::lock_guard lock(tls_mutex_);
    std::swap(tls, fresh);
  }
}

upstream_target route_runtime::target(const limits_config& limits) const {
  upstream_target t;
  t.host = config.host;
  t.port = config.port;
  t.server_name = config.server_name.empty() ? config.host : config.server_name;
  {
    std::lock_guard lock(tls_mutex_);
    t.tls = tls;
  }
  t.verify_name = config.sslmode == ssl_mode::verify_full;
  t.connect_timeout = limits.upstream_connect_timeout;
  t.tcp_keepalive = std::chrono::duration_cast<std::chrono::seconds>(limits.tcp_keepalive);
  return t;
}

namespace {

// Cancel secrets come from OpenSSL's CSPRNG in batches: under OpenSSL 3 each
// RAND_bytes call costs microseconds (DRBG lookup, locking, the fork check), and
// every new connection needs a secret. The unused rest of a batch is this thread's.
std::int32_t random_cancel_secret() {
  struct batch {
    std::array<unsigned char, 256> bytes{};
    std::size_t used = sizeof bytes;
    ~batch() { OPENSSL_cleanse(bytes.data(), bytes.size()); }
  };
  thread_local batch b;
  std::int32_t secret = 0;
  if (b.used + sizeof secret > b.bytes.size()) {
    if (RAND_bytes(b.bytes.data(), static_cast<int>(b.bytes.size())) != 1) throw std::runtime_error("RAND_bytes failed");
    b.used = 0;
  }
  std::memcpy(&secret, b.bytes.data() + b.used, sizeof secret);
  OPENSSL_cleanse(b.bytes.data() + b.used, sizeof secret);  // handed out once
  b.used += sizeof secret;
  return secret;
}

}  // namespace

pgwire::backend_key_data cancel_map::issue(std::int32_t upstream_pid, cancel_target target) {
  std::lock_guard lock(mutex_);
  pgwire::backend_key_data key;
  key.process_id = upstream_pid;  // pg_backend_pid() and NOTIFY's pid agree with it
  for (;;) {
    const std::int32_t secret = random_cancel_secret();
    if (keys_.emplace(std::make_pair(upstream_pid, secret), target).second) {
      key.secret_key = secret;
      return key;
    }
  }
}

std::optional<cancel_target> cancel_map::find(const pgwire::cancel_request& key) {
  std::lock_guard lock(mutex_);
  auto it = keys_.find({key.process_id, key.secret_key});
  if (it == keys_.end()) return std::nullopt;
  return it->second;
}

void cancel_map::forget(const pgwire::backend_key_data& key) {
  std::lock_guard lock(mutex_);
  keys_.erase({key.process_id, key.secret_key});
}

// ---- awaiting the Vault client's callbacks ----

namespace {

constexpr std::size_t max_auth_message = 8 * 1024;

std::string describe_peer(const std::string& peer) { return peer.empty() ? "unix" : peer; }

// What was wrong with a startup packet the decoder refused, for the client: the
// length or the protocol version it carried (PostgreSQL names them too).
std::string describe_startup_error(std::span<const std::uint8_t> in, std::error_code error) {
  if (in.size() >= 4 && (error == pgwire::errc::length_too_long || error == pgwire::errc::length_too_short)) {
    const std::uint32_t length = pgwire::load_be32(in, 0);
    if (error == pgwire::errc::length_too_long) {
      return "invalid startup packet: length " + std::to_string(length) + " is over the limit of " +
             std::to_string(pgwire::max_startup_packet) + " bytes";
    }
    return "invalid startup packet: length " + std::to_string(length) + " is below the minimum of " +
           std::to_string(pgwire::startup_header_size) + " bytes";
  }
  if (in.size() >= pgwire::startup_header_size && error == pgwire::errc::unsupported_protocol) {
    const std::uint32_t code = pgwire::load_be32(in, 4);
    return "unsupported frontend protocol " + std::to_string(code >> 16) + "." + std::to_string(code & 0xffff) +
           ": vaultwire speaks protocol 3.0";
  }
  return "invalid startup packet: " + error.message();
}

}  // namespace

// ---- the session ----

class session : public std::enable_shared_from_this<session> {
 public:
  session(std::shared_ptr<proxy_state> state, const listener_runtime* listener, stream::descriptor sd,
          std::string peer, std::uint64_t id)
      : state_(std::move(state)),
        cfg_(state_->current()),
        listener_(listener),
        client_(std::move(sd)),
        peer_(std::move(peer)),
        id_(id),
        startup_timer_(client_.socket().get_executor()),
        lifetime_timer_(client_.socket().get_executor()) {}
  ~session() { release_role_slot(); }

  net::awaitable<void> run();
  [[nodiscard]] stream::descriptor::executor_type executor() { return client_.socket().get_executor(); }
  // From another thread: end this session (shutdown).
  void stop() {
    auto self = shared_from_this();
    net::post(client_.socket().get_executor(), [self] { self->stop_on_strand(); });
  }
  // Shutdown with a grace period: a spliced session ends at its next idle point (no
  // transaction cut); one still in admission or login is refused now.
  void drain() {
    auto self = shared_from_this();
    net::post(client_.socket().get_executor(), [self] { self->drain_on_strand(); });
  }

  // From another thread (each posts to the session's strand), for the kill-switch
  // and lease expiry. See splice_control for the exact points where vaultwire
  // speaks. Before the splice starts: end_now refuses (FATAL) and closes;
  // end_at_idle and notice wait for the splice, whose first state is the
  // handover's ReadyForQuery.
  void end_at_idle(std::string sqlstate, std::string message) {
    auto self = shared_from_this();
    net::post(executor(), [self, sqlstate = std::move(sqlstate), message = std::move(message)]() mutable {
      self->end_on_strand(end_mode::at_idle, sqlstate, std::move(message));
    });
  }
  void end_now(std::string sqlstate, std::string message) {
    auto self = shared_from_this();
    net::post(executor(), [self, sqlstate = std::move(sqlstate), message = std::move(message)]() mutable {
      self->end_on_strand(end_mode::now, sqlstate, std::move(message));
    });
  }
  void notice(std::string message) {
    auto self = shared_from_this();
    net::post(executor(), [self, message = std::move(message)] { self->notice_on_strand(message); });
  }

 private:
  void drain_on_strand() {
    if (spliced_ && !finished_ && !control_.ended()) {
      stopping_ = true;
      std::vector<std::uint8_t> out;
      build_error(out, sqlstate_for(errc::session_ended), "terminating connection: vaultwire is shutting down; reconnect");
      control_.end_at_idle(std::move(out), "shutdown");
      sqlstate_ = std::string(sqlstate_for(errc::session_ended));
      return;
    }
    stop_on_strand();
  }

  void stop_on_strand() {
    stopping_ = true;
    if (spliced_ && !finished_ && !control_.ended()) {
      // The splice frames both directions: the 57P01 goes out at a message
      // boundary (never inside a message), then both sides close.
      std::vector<std::uint8_t> out;
      build_error(out, sqlstate_for(errc::session_ended), "terminating connection: vaultwire is shutting down; reconnect");
      control_.end_now(std::move(out), "shutdown");
      sqlstate_ = std::string(sqlstate_for(errc::session_ended));
      return;
    }
    if (!spliced_) {
      refuse_now(errc::session_ended, "vaultwire is shutting down; reconnect");
    }
    client_.close();
    if (upstream_.conn) upstream_.conn->close();
  }

  void end_on_strand(end_mode mode, const std::string& sqlstate, std::string message) {
    if (control_.ended() || finished_) return;
    if (end_requested_ && mode == end_mode::at_idle) return;  // a second request may only make it immediate
    end_requested_ = true;
    end_label_ = mode == end_mode::now ? "ended_now" : "ended_at_idle";
    end_text_ = message;
    sqlstate_ = sqlstate;
    std::vector<std::uint8_t> out;
    build_error(out, sqlstate, message);
    if (mode == end_mode::now && !spliced_) {
      stopping_ = true;
      stop_label_ = end_label_;
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

  void notice_on_strand(const std::string& message) {
    if (control_.ended() || finished_) return;
    std::vector<std::uint8_t> out;
    auto fields = pgwire::error_builder(pgwire::error_severity::warning).sqlstate("01000").message(message).fields();
    if (!pgwire::encode_notice_response(out, fields)) return;
    control_.notice(out);
  }

  // Logs prefix like pgbouncer's: session id, peer, database, role.
  std::string prefix() const {
    char id[32];
    std::snprintf(id, sizeof id, "C-%06llu", static_cast<unsigned long long>(id_));
    return std::string(id) + ": " + (database_.empty() ? "?" : database_) + "/" + (role_.empty() ? "?" : role_) +
           "@" + describe_peer(peer_);
  }

  // Best effort, never blocks: used by timers and shutdown.
  void refuse_now(errc code, const std::string& message) {
    sqlstate_ = std::string(sqlstate_for(code));
    std::vector<std::uint8_t> out;
    build_error(out, sqlstate_for(code), message);
    std::error_code ec;
    (void)client_.try_write(out, ec);
  }

  static void build_error(std::vector<std::uint8_t>& out, std::string_view sqlstate, const std::string& message) {
    auto fields = pgwire::error_builder(pgwire::error_severity::fatal).sqlstate(sqlstate).message(message).fields();
    (void)pgwire::encode_error_response(out, fields);
  }

  net::awaitable<void> refuse(errc code, const std::string& message) {
    co_await refuse_with(sqlstate_for(code), message, label_for(code));
  }

  net::awaitable<void> refuse_with(std::string_view sqlstate, const std::string& message, std::string_view label) {
    result_ = std::string(label);
    refused_message_ = message;
    sqlstate_ = std::string(sqlstate);
    std::vector<std::uint8_t> out;
    build_error(out, sqlstate, message);
    std::error_code ec;
    co_await client_.write_all(out, ec);
    client_.shutdown_send();
  }

  // Appends what the client sent next to `buf`. The bytes may be a PasswordMessage
  // (the token): the chunk is wiped, and so is the old buffer when `buf` must grow.
  net::awaitable<bool> read_more(std::vector<std::uint8_t>& buf) {
    std::uint8_t chunk[4096];
    std::error_code ec;
    std::size_t n = co_await client_.read_some(chunk, ec);
    if (ec || n == 0) {
      if (result_ == "ok") result_ = "client_gone";
      co_return false;
    }
    if (buf.size() + n > buf.capacity()) {
      std::vector<std::uint8_t> grown;
      grown.reserve(std::max(buf.size() + n, 2 * buf.capacity()));
      grown.assign(buf.begin(), buf.end());
      OPENSSL_cleanse(buf.data(), buf.size());
      buf.swap(grown);
    }
    buf.insert(buf.end(), chunk, chunk + n);
    OPENSSL_cleanse(chunk, n);
    co_return true;
  }

  net::awaitable<bool> admission();
  net::awaitable<bool> read_proxy_header();
  void audit_start();
  [[nodiscard]] audit_event session_event(audit_event_type type) const;
  net::awaitable<bool> read_token();
  net::awaitable<void> cancel(pgwire::cancel_request key);
  net::awaitable<bool> acquire_credential();
  net::awaitable<void> login_upstream();
  void watch_lease();
  void on_lease_event(lease_event event);
  bool take_pooled_upstream();
  pooled_upstream pooled_from_session();
  void log_end();
  void forget_session();
  void release_role_slot();
  void arm_lifetime_timer();
  [[nodiscard]] std::string throttle_message(const auth_throttle::verdict& v) const;

  // This session's route settings (roles, options, database): from its config snapshot.
  const route_config& route_config_() const { return cfg_->routes.at(listener_->config->route); }

  std::shared_ptr<proxy_state> state_;
  std::shared_ptr<const config> cfg_;  // the configuration when the session started (SIGHUP swaps the next)
  const listener_runtime* listener_;
  stream client_;
  std::string peer_;
  std::uint64_t id_;
  net::steady_timer startup_timer_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();

  std::vector<std::pair<std::string, std::string>> params_;  // client startup, minus user
  std::string role_, database_;
  std::optional<pgwire::secret_string> token_;
  sha256_digest token_sha256_{};  // of token_, once: the throttle's key and the broker's
  credential_lease lease_;
  std::string username_ = "-", lease_id_ = "-";  // for the log, kept after the lease is released
  upstream_session upstream_;
  bool reused_ = false;                        // upstream_ came from the pool
  std::string pool_key_;
  std::vector<std::uint8_t> pool_parameters_;  // the login's ParameterStatus set, kept for the pool
  std::optional<pgwire::backend_key_data> issued_key_;
  splice_result traffic_;
  std::string result_ = "ok";
  credential_lease::identity token_identity_;  // accessor, display name, entity: for the audit log; never the token
  std::string sqlstate_;  // of the ErrorResponse vaultwire sent the client, if any (audit)
  std::vector<std::uint8_t> early_bytes_;  // client bytes read after a PROXY header: the start of admission
  std::string refused_message_;
  bool spliced_ = false;
  bool stopping_ = false;
  std::string stop_label_ = "shutdown";  // result_ when stopping_
  splice_control control_;
  bool end_requested_ = false;
  bool finished_ = false;  // the splice has returned (or never will run)
  std::string end_label_, end_text_;
  bool timed_out_ = false;
  bool over_limit_ = false;
  bool role_slot_ = false;      // this session counts against role_ ([limits] max_connections_per_role)
  std::string throttle_key_;    // (client host, token SHA-256): [throttle]; empty when off
  std::uint64_t throttle_ticket_ = 0;
  net::steady_timer lifetime_timer_;  // [limits] max_session_lifetime
};

net::awaitable<bool> session::admission() {
  std::vector<std::uint8_t> buf = std::move(early_bytes_);
  bool tls_done = false;
  bool ssl_asked = false, gss_asked = false;
  for (;;) {
    auto d = pgwire::decode_startup_packet(buf);
    if (d.status == pgwire::decode_status::need_more) {
      if (!co_await read_more(buf)) co_return false;  // client left; nothing to say
      continue;
    }
    if (d.status == pgwire::decode_status::error) {
      if (d.error == pgwire::errc::malformed_message && buf.size() >= pgwire::startup_header_size &&
          static_cast<std::int32_t>(pgwire::load_be32(buf, 4)) == pgwire::cancel_request_code) {
        // A CancelRequest of the wrong length: closed without a word, as PostgreSQL
        // does (the sender never reads an answer).
        result_ = "cancel_malformed";
        co_return false;
      }
      co_await refuse(d.error == pgwire::errc::unsupported_protocol ? errc::unsupported_protocol
                                                                     : errc::protocol_violation,
                      describe_startup_error(buf, d.error));
      co_return false;
    }
    std::vector<std::uint8_t> rest(buf.begin() + static_cast<std::ptrdiff_t>(d.consumed), buf.end());
    buf.swap(rest);

    // One SSLRequest and one GSSENCRequest at most, and no GSSENCRequest over TLS
    // (PostgreSQL's ssl_done / gss_done): a repeat is refused, not answered again.
    const bool is_ssl = std::holds_alternative<pgwire::ssl_request>(d.packet);
    const bool is_gss = std::holds_alternative<pgwire::gssenc_request>(d.packet);
    if ((is_ssl && ssl_asked) || (is_gss && (gss_asked || tls_done))) {
      co_await refuse(errc::protocol_violation, std::string("invalid startup packet: ") +
                                                    (is_ssl ? "SSLRequest" : "GSSENCRequest") +
                                                    " after encryption was already negotiated on this connection");
      co_return false;
    }
    ssl_asked = ssl_asked || is_ssl;
    gss_asked = gss_asked || is_gss;

    if (is_ssl) {
      if (!buf.empty()) {
        // Bytes after an SSLRequest and before the handshake: a man in the middle
        // could have injected them (CVE-2021-23222). Disconnect.
        result_ = "unencrypted_data_after_ssl_request";
        co_return false;
      }
      const ssl_ctx tls = tls_done ? ssl_ctx{} : listener_->acquire_tls();
      if (!tls) {
        std::uint8_t no = 'N';
        std::error_code ec;
        co_await client_.write_all(std::span<const std::uint8_t>(&no, 1), ec);
        if (ec) co_return false;
        continue;
      }
      std::uint8_t yes = 'S';
      std::error_code ec;
      co_await client_.write_all(std::span<const std::uint8_t>(&yes, 1), ec);
      if (!ec) co_await client_.tls_accept(tls.get(), ec);  // the connection takes its own reference
      if (ec) {
        result_ = "client_tls_failed";
        spdlog::info("{} client TLS handshake failed: {}", prefix(), client_.tls_error());
        co_return false;
      }
      tls_done = true;
      continue;
    }
    if (is_gss) {
      std::uint8_t no = 'N';
      std::error_code ec;
      co_await client_.write_all(std::span<const std::uint8_t>(&no, 1), ec);
      if (ec) co_return false;
      if (!buf.empty()) {
        // Sent before the answer was read, as PostgreSQL refuses it too.
        co_await refuse(errc::protocol_violation, "received unencrypted data after GSSAPI encryption request");
        co_return false;
      }
      continue;
    }
    if (auto* c = std::get_if<pgwire::cancel_request>(&d.packet)) {
      co_await cancel(*c);
      co_return false;
    }
    auto& sm = std::get<pgwire::startup_message>(d.packet);
    if (!buf.empty()) {
      co_await refuse(errc::protocol_violation, "unexpected data after the startup packet");
      co_return false;
    }
    if (over_limit_) {
      co_await refuse(errc::too_many_clients, "too many client connections (limit " +
                                                  std::to_string(cfg_->limits.max_client_connections) + ")");
      co_return false;
    }
    // Protocol 3.x above 3.0, or _pq_ options: tell the client what we speak.
    std::vector<std::string> unrecognized;
    for (const auto& [name, value] : sm.params) {
      if (name.starts_with("_pq_.")) unrecognized.push_back(name);
    }
    if (sm.minor > 0 || !unrecognized.empty()) {
      std::vector<std::uint8_t> out;
      if (pgwire::encode_negotiate_protocol_version(out, pgwire::protocol_version_3_0, unrecognized)) {
        std::error_code ec;
        co_await client_.write_all(out, ec);
        if (ec) co_return false;
      }
    }
    std::optional<std::string> user, database;
    for (auto& [name, value] : sm.params) {
      if (name == "user") {
        user = value;
      } else if (name == "database") {
        database = value;
      } else if (!name.starts_with("_pq_.")) {
        params_.emplace_back(name, value);
      }
    }
    if (!user || user->empty()) {
      co_await refuse(errc::role_not_allowed, "no user name in the startup packet: the user name selects the Vault role");
      co_return false;
    }
    for (const char ch : *user) {
      // A newline or other control byte would forge lines in the log, which names the role.
      if (const auto c = static_cast<unsigned char>(ch); c < 0x20 || c == 0x7f) {
        co_await refuse(errc::role_not_allowed, "invalid user name: it holds a control character");
        co_return false;
      }
    }
    role_ = *user;
    const route_config& route = route_config_();
    // libpq defaults the database to the user name: the route's default replaces it.
    if ((!database || database->empty() || *database == role_) && route.default_database) {
      database = *route.default_database;
    }
    database_ = database.value_or(role_);
    bool allowed = false;
    std::string roles;
    for (const auto& r : route.roles) {
      allowed = allowed || r == role_;
      roles += (roles.empty() ? "" : ", ") + r;
    }
    if (!allowed) {
      co_await refuse(errc::role_not_allowed,
                      "role \"" + role_ + "\" is not allowed on this listener; allowed roles: " + roles);
      co_return false;
    }
    // Per-role cap: before the token is read, so Vault is never asked.
    const auto& caps = cfg_->limits.max_connections_per_role;
    const auto cap = caps.find(role_);
    if (!state_->take_role_slot(role_, cap == caps.end() ? std::nullopt : std::optional(cap->second))) {
      co_await refuse(errc::too_many_clients, "too many connections for role \"" + role_ + "\" (limit " +
                                                  std::to_string(cap->second) +
                                                  ", [limits] max_connections_per_role)");
      co_return false;
    }
    role_slot_ = true;
    co_return co_await read_token();
  }
}

// A listener behind a load balancer: the PROXY protocol v2 header comes first and
// names the client. A connection without a valid one is refused.
net::awaitable<bool> session::read_proxy_header() {
  std::vector<std::uint8_t> buf;
  for (;;) {
    auto d = pgwire::decode_proxy_v2(buf);
    if (d.status == pgwire::decode_status::need_more) {
      if (!co_await read_more(buf)) co_return false;
      continue;
    }
    if (d.status == pgwire::decode_status::error) {
      co_await refuse(errc::protocol_violation, "invalid PROXY protocol header: " + d.error.message() +
                                                    "; this listener expects a PROXY protocol v2 header first "
                                                    "(proxy_protocol = true)");
      co_return false;
    }
    if (d.header.has_address()) {
      const auto& a = d.header.src_address;
      peer_ = d.header.family == pgwire::proxy_family::inet6 ? "[" + a + "]:" + std::to_string(d.header.src_port)
              : d.header.family == pgwire::proxy_family::inet ? a + ":" + std::to_string(d.header.src_port)
                                                               : a;
    }
    early_bytes_.assign(buf.begin() + static_cast<std::ptrdiff_t>(d.consumed), buf.end());
    co_return true;
  }
}

net::awaitable<bool> session::read_token() {
  std::vector<std::uint8_t> out;
  pgwire::encode_authentication_cleartext_password(out);
  std::error_code ec;
  co_await client_.write_all(out, ec);
  if (ec) co_return false;
  std::vector<std::uint8_t> buf;
  for (;;) {
    auto d = pgwire::decode_message(buf, max_auth_message, pgwire::direction::frontend);
    if (d.status == pgwire::decode_status::need_more) {
      if (!co_await read_more(buf)) {
        OPENSSL_cleanse(buf.data(), buf.size());
        co_return false;
      }
      continue;
    }
    if (d.status == pgwire::decode_status::error) {
      OPENSSL_cleanse(buf.data(), buf.size());
      co_await refuse(errc::protocol_violation, "invalid message during authentication: " + d.error.message());
      co_return false;
    }
    if (d.message.type == pgwire::frontend_type::terminate) {
      result_ = "client_terminated";  // the client gave up before sending a token
      co_return false;
    }
    if (d.message.type != pgwire::frontend_type::password) {
      co_await refuse(errc::protocol_violation,
                      std::string("expected a password message, got message type '") + d.message.type + "'");
      co_return false;
    }
    auto p = pgwire::parse_password_message(d.message.body);
    const bool trailing = d.consumed != buf.size();
    OPENSSL_cleanse(buf.data(), buf.size());
    if (!p) {
      co_await refuse(errc::protocol_violation, "invalid password message: " + p.error().message());
      co_return false;
    }
    if (trailing) {
      // Nothing may follow the token before AuthenticationOk: bytes read here would be lost.
      co_await refuse(errc::protocol_violation, "unexpected data after the password message");
      co_return false;
    }
    if (p.value().password.empty()) {
      co_await refuse(errc::vault_rejected_token, "no password supplied: give a Vault token as the password");
      co_return false;
    }
    // A Vault token is printable ASCII; anything else would reach Vault's HTTP header
    // as it is (a CR LF could add a header). Refused without asking Vault.
    for (const char ch : p.value().password.view()) {
      if (const auto c = static_cast<unsigned char>(ch); c < 0x21 || c > 0x7e) {
        co_await refuse(errc::vault_rejected_token,
                        "the password is not a Vault token: it holds a byte outside printable ASCII");
        co_return false;
      }
    }
    token_.emplace(std::move(p.value().password));
    token_sha256_ = sha256(token_->view());
    co_return true;
  }
}

net::awaitable<void> session::cancel(pgwire::cancel_request key) {
  result_ = "cancel";
  auto target = state_->cancels.find(key);
  if (!target) {
    result_ = "cancel_unknown_key";  // dropped silently, as PostgreSQL does
    metrics::cancel_request("unknown_key");
    co_return;
  }
  metrics::cancel_request("forwarded");
  co_await send_upstream_cancel(target->route->target(cfg_->limits), target->upstream_key);
}

net::awaitable<bool> session::acquire_credential() {
  credential_request request;
  request.token = token_->clone();
  request.token_hash = credential_broker::token_digest(token_sha256_);
  request.vault_namespace = cfg_->vault.namespace_.value_or("");  // as the Vault client sends it (SIGHUP may change it)
  request.mount = state_->cfg->vault.mount;
  request.role = role_;
  request.route = listener_->config->route;
  auto r = co_await async_acquire(*state_->broker, std::move(request));
  if (!r) {
    const broker_error& e = r.error();
    std::string_view label = "vault_unavailable";
    switch (e.kind) {
      case broker_error_kind::vault: label = e.vault.token_rejected() ? "vault_rejected_token" : "vault_unavailable"; break;
      case broker_error_kind::token_rejected: label = "vault_rejected_token"; break;
      case broker_error_kind::token_unverified: label = "vault_unavailable"; break;
      case broker_error_kind::lease_budget: label = "lease_budget"; break;
      case broker_error_kind::shutting_down: label = "shutdown"; break;
    }
    if (label == "vault_rejected_token" && !throttle_key_.empty()) {
      state_->throttle.failed(throttle_key_, throttle_ticket_, cfg_->throttle);
    }
    co_await refuse_with(e.sqlstate(), e.to_client_message(), label);
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

// An idle connection of the pool for this credential, database and parameters.
bool session::take_pooled_upstream() {
  if (!state_->pool) return false;
  pool_key_ = upstream_pool::key_for(lease_id_, database_, params_);
  auto up = state_->pool->checkout(pool_key_, executor());
  if (!up) return false;
  upstream_.conn = std::move(up->conn);
  upstream_.peer = std::move(up->peer);
  upstream_.key = up->key;
  upstream_.handover = std::move(up->parameter_status);
  upstream_.ready_status = 'I';
  upstream_.auth_method = std::move(up->auth_method);
  reused_ = true;
  state_->upstream_reuses.fetch_add(1, std::memory_order_relaxed);
  return true;  // up->lease (the pool's hold on the same lease) is released here
}

// What the pool keeps of this session's upstream; the lease hold moves with it and is
// watched so that a lease event closes the idle connection.
pooled_upstream session::pooled_from_session() {
  pooled_upstream up;
  up.conn = std::move(upstream_.conn);
  up.peer = upstream_.peer;
  up.key = upstream_.key;
  up.parameter_status = std::move(pool_parameters_);
  up.auth_method = upstream_.auth_method;
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

// The kill-switch and expiry at a transaction boundary (DESIGN.md "Credentials and
// leases"), on the session's strand.
void session::on_lease_event(lease_event event) {
  if (!lease_ || finished_ || control_.ended()) return;
  const credentials_config& policy = cfg_->credentials;
  const std::string sqlstate(sqlstate_for(errc::session_ended));
  switch (event) {
    case lease_event::token_revoked:
    case lease_event::lease_gone: {
      const std::string message =
          event == lease_event::token_revoked
              ? "terminating connection: the Vault token that opened this session was revoked or has expired; "
                "reconnect with a valid token"
              : "terminating connection: Vault no longer knows this session's database credential (its lease was "
                "revoked); reconnect";
      spdlog::warn("{} {} (lease {}, {}); on_revoke = {}", prefix(),
                   event == lease_event::token_revoked ? "token revoked or expired" : "lease gone", lease_id_,
                   lease_.token_name(), to_string(policy.on_revoke));
      if (policy.on_revoke == on_revoke_policy::ignore) return;
      end_on_strand(policy.on_revoke == on_revoke_policy::now ? end_mode::now : end_mode::at_idle, sqlstate, message);
      return;
    }
    case lease_event::expiring: {
      const auto left = std::chrono::duration_cast<std::chrono::seconds>(lease_.expires_at() - broker_clock::now());
      spdlog::info("{} lease {} cannot be renewed past its max TTL: ends in {}s; the session ends at its next idle point",
                   prefix(), lease_id_, std::max<long long>(0, left.count()));
      notice_on_strand("the database credential of this session expires in " +
                       std::to_string(std::max<long long>(0, left.count())) +
                       "s (its Vault lease reached the role's max TTL); the session ends at its next idle point; "
                       "reconnect to continue");
      end_on_strand(end_mode::at_idle, sqlstate,
                    "terminating connection: the database credential of this session expires (its lease reached "
                    "Vault's max TTL); reconnect");
      return;
    }
    case lease_event::expired:
      end_on_strand(end_mode::now, sqlstate,
                    "terminating connection: the database credential of this session expired (its lease reached "
                    "Vault's max TTL); reconnect");
      return;
    case lease_event::shutdown:
      return;  // the server's stop path ends every session
  }
}

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
  const auto dial_started = std::chrono::steady_clock::now();
  upstream_ = co_await connect_upstream(listener_->route->target(cfg_->limits), std::move(login));
  metrics::upstream_connect(!upstream_.server_error.empty() ? std::string_view("refused")
                            : upstream_.error ? label_for(static_cast<errc>(upstream_.error.value()))
                                              : std::string_view("ok"),
                            std::chrono::steady_clock::now() - dial_started);
  state_->upstream_logins.fetch_add(1, std::memory_order_relaxed);
  if (state_->pool) pool_key_ = upstream_pool::key_for(lease_id_, database_, params_);
}

net::awaitable<void> session::run() {
  auto self = shared_from_this();
  const auto& limits = cfg_->limits;
  // The startup timeout covers admission: a timer that refuses and closes.
  startup_timer_.expires_after(limits.startup_timeout);
  startup_timer_.async_wait([self](const boost::system::error_code& ec) {
    if (ec) return;
    self->timed_out_ = true;
    self->result_ = "startup_timeout";
    self->refuse_now(errc::startup_timeout, "startup not finished within " +
                                                duration_text(self->cfg_->limits.startup_timeout) +
                                                " ([limits] startup_timeout)");
    self->client_.close();
  });

  // Over the limit, the refusal still waits for the StartupMessage (as PostgreSQL
  // does): a client that began with an SSLRequest reads it after the TLS answer, not
  // in place of it, and a CancelRequest is still served.
  over_limit_ = state_->active_clients.fetch_add(1) >= limits.max_client_connections;

  bool admitted = (!listener_->config->proxy_protocol || co_await read_proxy_header()) && co_await admission();
  startup_timer_.cancel();
  if (!admitted || timed_out_ || stopping_) {
    if (end_requested_ && stopping_) {
      result_ = stop_label_;
      refused_message_ = end_text_;
    }
    state_->active_clients.fetch_sub(1);
    if (result_ != "cancel" && result_ != "cancel_unknown_key") {
      log_end();
    } else {
      forget_session();  // a cancel connection is not a session: no log line
    }
    co_return;
  }

  // Auth-failure throttling, before Vault is asked ([throttle]).
  if (cfg_->throttle.base_delay) {
    throttle_key_ = auth_throttle::make_key(auth_throttle::client_host(peer_), token_sha256_);
    const auth_throttle::verdict v = state_->throttle.check(throttle_key_);
    if (!v.allowed) {
      spdlog::info("{} login throttled: {} failed logins in a row with this token, {} left of {}", prefix(), v.failures,
                   duration_text(v.retry_after), duration_text(v.backoff));
      co_await refuse(errc::throttled, throttle_message(v));
      state_->active_clients.fetch_sub(1);
      log_end();
      co_return;
    }
    throttle_ticket_ = v.ticket;
  }

  // The credential: the broker's cache, or Vault on its worker pool.
  if (!co_await acquire_credential()) {
    state_->active_clients.fetch_sub(1);
    log_end();
    co_return;
  }
  if (stopping_ || !take_pooled_upstream()) co_await login_upstream();
  if (!stopping_ && upstream_.server_sqlstate == "28P01" && lease_.from_cache()) {
    // The server refused a cached credential: drop it and fetch a fresh one, once.
    spdlog::warn("{} the server refused cached credential {} (28P01): fetching a fresh one", prefix(), lease_id_);
    if (upstream_.conn) upstream_.conn->close();
    upstream_ = upstream_session{};
    state_->broker->invalidate(lease_);
    lease_.release();
    if (!co_await acquire_credential()) {
      state_->active_clients.fetch_sub(1);
      log_end();
      co_return;
    }
    co_await login_upstream();
  }

  if (stopping_ || upstream_.error || !upstream_.conn) {
    if (stopping_) {
      result_ = stop_label_;
      if (end_requested_) refused_message_ = end_text_;
    } else if (!upstream_.server_error.empty()) {
      // The server refused the login: its own ErrorResponse goes to the client. A
      // refused credential (class 28) counts as a failed login for the throttle.
      if (upstream_.server_sqlstate.starts_with("28") && !throttle_key_.empty()) {
        state_->throttle.failed(throttle_key_, throttle_ticket_, cfg_->throttle);
      }
      result_ = "upstream_refused";
      refused_message_ = upstream_.message;
      std::error_code ec;
      co_await client_.write_all(upstream_.server_error, ec);
      client_.shutdown_send();
    } else {
      co_await refuse(static_cast<errc>(upstream_.error.value()), upstream_.message);
    }
    if (upstream_.conn) upstream_.conn->close();
    lease_.release();
    state_->active_clients.fetch_sub(1);
    log_end();
    co_return;
  }

  if (!throttle_key_.empty()) state_->throttle.succeeded(throttle_key_);

  // Handover: AuthenticationOk, the server's ParameterStatus / notices, our key, ReadyForQuery.
  issued_key_ = state_->cancels.issue(upstream_.key.process_id,
                                      cancel_target{listener_->route, {upstream_.key.process_id, upstream_.key.secret_key}});
  std::vector<std::uint8_t> out;
  pgwire::encode_authentication_ok(out);
  out.insert(out.end(), upstream_.handover.begin(), upstream_.handover.end());
  pgwire::encode_backend_key_data(out, *issued_key_);
  (void)pgwire::encode_ready_for_query(out, static_cast<pgwire::transaction_status>(upstream_.ready_status));
  std::error_code ec;
  co_await client_.write_all(out, ec);
  if (state_->pool && !reused_) pool_parameters_ = upstream_pool::parameter_status_of(upstream_.handover);
  if (state_->pool && reused_) pool_parameters_ = std::move(upstream_.handover);
  std::vector<std::uint8_t>().swap(upstream_.handover);
  if (!ec) {
    if (spdlog::should_log(spdlog::level::info)) {  // the prefix is built only for a line that is written
      spdlog::info("{} session open: user {} lease {} upstream {} auth {} connection {} ({})", prefix(), username_,
                   lease_id_, upstream_.peer, upstream_.auth_method, reused_ ? "reused" : "new", lease_.token_name());
    }
    audit_start();
    spliced_ = true;
    splice_options so;
    so.idle_timeout = limits.client_idle_timeout;
    so.ready_status = upstream_.ready_status;
    so.keep_server_on_idle_terminate = state_->pool != nullptr;
    if (limits.client_idle_timeout) {
      build_error(so.idle_message, sqlstate_for(errc::client_idle_timeout),
                  "terminating connection: idle for longer than " +
                      std::to_string(limits.client_idle_timeout->count()) + "ms ([limits] client_idle_timeout)");
    }
    arm_lifetime_timer();
    traffic_ = co_await splice(client_, *upstream_.conn, control_, std::move(so));
    lifetime_timer_.cancel();
    if (!traffic_.protocol_violation.empty()) {
      spdlog::warn("{} {}: both sides closed", prefix(), traffic_.protocol_violation);
    }
    if (stopping_) {
      result_ = stop_label_;
    } else if (traffic_.idle_timeout) {
      result_ = std::string(label_for(errc::client_idle_timeout));
    } else if (traffic_.ended_by_request) {
      result_ = end_label_;
      refused_message_ = end_text_;
    } else if (!traffic_.protocol_violation.empty()) {
      result_ = traffic_.ended_by == "server protocol violation" ? "server_protocol_violation"
                                                                 : "client_protocol_violation";
    }
  } else {
    result_ = "client_gone";
  }
  finished_ = true;
  state_->cancels.forget(*issued_key_);
  client_.close();
  if (traffic_.client_terminated_idle && state_->pool && !stopping_ && !end_requested_ && lease_) {
    // The client left with Terminate while idle: the pool resets the connection and
    // keeps it for the next client with this credential, database and parameters.
    const bool kept = co_await state_->pool->checkin(pool_key_, pooled_from_session());
    if (spdlog::should_log(spdlog::level::debug))
      spdlog::debug("{} upstream connection {}", prefix(), kept ? "kept for reuse" : "closed (not reusable)");
  } else {
    upstream_.conn->close();
  }
  lease_.release();
  state_->active_clients.fetch_sub(1);
  log_end();
}

// What every audit event of this session carries: who, where, and with which
// credential (the parts known so far). Never the token.
audit_event session::session_event(audit_event_type type) const {
  audit_event e;
  e.type = type;
  e.session_id = id_;
  e.client_address = describe_peer(peer_);
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
  if (state_->audit) {
    audit_event e = session_event(audit_event_type::session_end);
    e.result = result_;
    if (!sqlstate_.empty()) e.sqlstate = sqlstate_;
    if (!refused_message_.empty()) e.reason = refused_message_;
    e.bytes_in = traffic_.client_to_server;
    e.bytes_out = traffic_.server_to_client;
    e.duration_ms = ms.count();
    state_->audit->write(e);
  }
  if (spdlog::should_log(spdlog::level::info)) {
    spdlog::info("{} session closed: result {}{}{} user {} lease {} duration {}ms bytes in {} out {}{}", prefix(),
                 result_, refused_message_.empty() ? "" : " (", refused_message_.empty() ? "" : refused_message_ + ")",
                 username_, lease_id_, ms.count(), traffic_.client_to_server, traffic_.server_to_client,
                 traffic_.ended_by.empty() ? "" : ", ended by " + traffic_.ended_by);
  }
  metrics::client_connection_closed(result_, std::chrono::steady_clock::now() - started_, traffic_.client_to_server,
                                    traffic_.server_to_client);
  forget_session();
}

// [limits] max_session_lifetime: counted from the connection's start; at expiry the
// session ends with 57P01 at its next idle point, like a lease at its max TTL (a
// transaction is never cut; a session that never becomes idle runs on).
void session::arm_lifetime_timer() {
  const auto& lifetime = cfg_->limits.max_session_lifetime;
  if (!lifetime) return;
  lifetime_timer_.expires_at(started_ + *lifetime);
  auto self = shared_from_this();
  lifetime_timer_.async_wait([self](const boost::system::error_code& ec) {
    if (ec) return;
    const std::string message = "terminating connection: the session reached its maximum lifetime of " +
                                duration_text(*self->cfg_->limits.max_session_lifetime) +
                                " ([limits] max_session_lifetime); reconnect";
    spdlog::info("{} maximum session lifetime reached: the session ends at its next idle point", self->prefix());
    self->end_on_strand(end_mode::at_idle, std::string(sqlstate_for(errc::session_ended)), message);
    if (self->end_text_ == message) self->end_label_ = "max_session_lifetime";
  });
}

std::string session::throttle_message(const auth_throttle::verdict& v) const {
  const auto secs = std::max<long long>(1, (v.retry_after.count() + 999) / 1000);
  return "too many failed logins from " + auth_throttle::client_host(peer_) + " with this token (" +
         std::to_string(v.failures) + " in a row, waiting " + duration_text(v.backoff) + "); retry after " +
         std::to_string(secs) + "s";
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

void start_session(std::shared_ptr<proxy_state> state, const listener_runtime* listener, stream::descriptor socket,
                   std::string peer) {
  const std::uint64_t id = state->next_session_id.fetch_add(1);
  auto s = std::make_shared<session>(state, listener, std::move(socket), std::move(peer), id);
  {
    std::lock_guard lock(state->sessions_mutex);
    state->sessions[id] = proxy_state::session_entry{s, {}};
  }
  net::co_spawn(s->executor(), [s] { return s->run(); }, [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("session failed with an exception (a bug): {}", ex.what());
    }
  });
}

namespace {

std::vector<std::shared_ptr<session>> live_sessions(proxy_state& state) {
  std::vector<std::shared_ptr<session>> live;
  std::lock_guard lock(state.sessions_mutex);
  for (auto& [id, entry] : state.sessions) {
    if (auto s = entry.session.lock()) live.push_back(std::move(s));
  }
  return live;
}

}  // namespace

void stop_all_sessions(proxy_state& state) {
  for (auto& s : live_sessions(state)) s->stop();
}

void drain_all_sessions(proxy_state& state) {
  for (auto& s : live_sessions(state)) s->drain();
}

namespace {

// The live sessions whose credential is `lease_id` (all of them when empty).
std::vector<std::shared_ptr<session>> sessions_for_lease(proxy_state& state, std::string_view lease_id) {
  std::vector<std::shared_ptr<session>> live;
  std::lock_guard lock(state.sessions_mutex);
  for (auto& [id, entry] : state.sessions) {
    if (!lease_id.empty() && entry.lease_id != lease_id) continue;
    if (auto s = entry.session.lock()) live.push_back(std::move(s));
  }
  return live;
}

std::shared_ptr<session> find_session(proxy_state& state, std::uint64_t id) {
  std::lock_guard lock(state.sessions_mutex);
  auto it = state.sessions.find(id);
  return it == state.sessions.end() ? nullptr : it->second.session.lock();
}

}  // namespace

bool end_session(proxy_state& state, std::uint64_t id, end_mode mode, std::string sqlstate, std::string message) {
  auto s = find_session(state, id);
  if (!s) return false;
  if (mode == end_mode::now) {
    s->end_now(std::move(sqlstate), std::move(message));
  } else {
    s->end_at_idle(std::move(sqlstate), std::move(message));
  }
  return true;
}

std::size_t end_sessions_for_lease(proxy_state& state, std::string_view lease_id, end_mode mode,
                                   const std::string& sqlstate, const std::string& message) {
  if (lease_id.empty()) return 0;
  auto live = sessions_for_lease(state, lease_id);
  for (auto& s : live) {
    if (mode == end_mode::now) {
      s->end_now(sqlstate, message);
    } else {
      s->end_at_idle(sqlstate, message);
    }
  }
  return live.size();
}

bool notice_session(proxy_state& state, std::uint64_t id, std::string message) {
  auto s = find_session(state, id);
  if (!s) return false;
  s->notice(std::move(message));
  return true;
}

std::size_t notice_sessions_for_lease(proxy_state& state, std::string_view lease_id, const std::string& message) {
  if (lease_id.empty()) return 0;
  auto live = sessions_for_lease(state, lease_id);
  for (auto& s : live) s->notice(message);
  return live.size();
}

}  // namespace vaultwire::detail
