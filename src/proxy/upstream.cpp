#include "proxy/upstream.hpp"

#include <pgwire/decoder.hpp>
#include <pgwire/encoder.hpp>
#include <pgwire/md5.hpp>
#include <pgwire/scram.hpp>

#include <openssl/crypto.h>
#include <openssl/x509.h>

#include <spdlog/spdlog.h>

#include <atomic>
#include <optional>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>

#include "net/tcp.hpp"
#include "proxy/scram_key_cache.hpp"
#include "vaultwire/errc.hpp"

namespace vaultwire::detail {

namespace net = boost::asio;
using net::ip::tcp;

namespace {

// Messages the server sends during login are small; anything larger is a broken peer.
constexpr std::size_t max_login_message = 64 * 1024;

std::atomic<std::uint64_t> scram_derivations{0};

// A TCP connection to the cluster and the address it reached ("host:port").
struct dialed {
  std::unique_ptr<stream> conn;
  std::string peer;
  std::string local_address;
};

// Resolves and connects to the first address that answers within the timeout, from
// `source` (an IP) when given. Failures are errc::upstream_unreachable, naming the
// last address tried.
net::awaitable<result<dialed>> dial(const upstream_target& t, const std::string& source = {}) {
  auto ex = co_await net::this_coro::executor;
  tcp::resolver resolver(ex);
  boost::system::error_code ec;
  auto results = co_await resolver.async_resolve(t.host, std::to_string(t.port),
                                                 net::redirect_error(net::use_awaitable, ec));
  if (ec) co_return failure{errc::upstream_unreachable, "cannot resolve " + t.host + ": " + ec.message()};
  std::optional<net::ip::address> from;
  if (!source.empty()) {
    from = net::ip::make_address(source, ec);
    if (ec) co_return failure{errc::upstream_unreachable, "not an IP address to connect from: " + source};
  }
  std::string error = "no address of " + t.host + " to connect to from " + source;
  for (const auto& entry : results) {
    tcp::socket sock(ex);
    if (from) {
      if (from->is_v4() != entry.endpoint().address().is_v4()) continue;
      sock.open(entry.endpoint().protocol(), ec);
      if (!ec) sock.bind(tcp::endpoint(*from, 0), ec);
      if (ec) {
        error = "cannot connect from " + source + ": " + ec.message();
        continue;
      }
    }
    net::steady_timer timer(ex);
    timer.expires_after(t.connect_timeout);
    bool timed_out = false;
    // Closing the socket cancels the pending connect (STYLE.md §2 rule 4).
    timer.async_wait([&sock, &timed_out](const boost::system::error_code& wait_ec) {
      if (!wait_ec) {
        timed_out = true;
        boost::system::error_code ignored;
        sock.close(ignored);
      }
    });
    co_await sock.async_connect(entry.endpoint(), net::redirect_error(net::use_awaitable, ec));
    timer.cancel();
    if (!ec && sock.is_open()) {
      set_tcp_options(sock.native_handle(), t.tcp_keepalive);
      dialed d{nullptr, endpoint_text(entry.endpoint()), {}};
      boost::system::error_code local_ec;
      const auto local = sock.local_endpoint(local_ec);
      if (!local_ec) d.local_address = local.address().to_string();
      int fd = sock.release();
      d.conn = std::make_unique<stream>(stream::descriptor(ex, fd));
      co_return d;
    }
    error = "cannot connect to " + entry.endpoint().address().to_string() + ":" + std::to_string(t.port) +
            ": " + (timed_out ? std::string("timed out") : ec.message());
  }
  co_return failure{errc::upstream_unreachable, std::move(error)};
}

// Reads the next server message: its type, with its body copied out of buf into
// `body`. Failures are errc::upstream_protocol.
net::awaitable<result<char>> read_message(stream& s, std::vector<std::uint8_t>& buf,
                                          std::vector<std::uint8_t>& body) {
  for (;;) {
    auto d = pgwire::decode_message(buf, max_login_message, pgwire::direction::backend);
    if (d.status == pgwire::decode_status::message) {
      const char type = d.message.type;
      body.assign(d.message.body.begin(), d.message.body.end());
      buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(d.consumed));
      co_return type;
    }
    if (d.status == pgwire::decode_status::error)
      co_return failure{errc::upstream_protocol, "invalid message from the server during login: " + d.error.message()};
    std::uint8_t chunk[4096];
    std::error_code ec;
    std::size_t n = co_await s.read_some(chunk, ec);
    if (ec || n == 0) {
      co_return failure{errc::upstream_protocol, ec == eof_error() ? "the server closed the connection during login"
                                                                   : "read from the server failed: " + ec.message()};
    }
    buf.insert(buf.end(), chunk, chunk + n);
  }
}

// A message read during login, framed again as the server sent it (its body is at
// most max_login_message, so the builder cannot refuse it).
void append_frame(std::vector<std::uint8_t>& out, char type, const std::vector<std::uint8_t>& body) {
  pgwire::message_builder b(out);
  b.begin(type);
  b.add_bytes(pgwire::bytes_view(body));
  (void)b.finish();
}

// SSLRequest, one byte of answer, then TLS. Returns false with session.failed set.
net::awaitable<bool> start_tls(stream& s, const upstream_target& t, upstream_session& session) {
  std::vector<std::uint8_t> out;
  pgwire::encode_ssl_request(out);
  std::error_code ec;
  co_await s.write_all(out, ec);
  std::uint8_t answer = 0;
  std::size_t n = ec ? 0 : co_await s.read_some(std::span<std::uint8_t>(&answer, 1), ec);
  if (ec || n != 1) {
    session.failed = failure{errc::upstream_unreachable, "the server closed the connection after SSLRequest"};
    co_return false;
  }
  if (answer != 'S') {
    session.failed =
        failure{errc::upstream_tls_failed, "the server at " + session.peer + " does not accept TLS connections"};
    co_return false;
  }
  const std::string& name = t.server_name.empty() ? t.host : t.server_name;
  co_await s.tls_connect(t.tls.get(), name, t.verify_name, ec);
  if (ec) {
    session.failed = failure{errc::upstream_tls_failed, "TLS with the server " + name + " failed: " + s.tls_error()};
    co_return false;
  }
  co_return true;
}

// One login in progress: what the exchange with the server keeps between messages.
struct login_state {
  const upstream_target& target;
  const upstream_login& login;
  upstream_session& session;
  stream& s;
  std::optional<pgwire::scram_client> scram;
  std::string scram_cache_key;
  std::vector<std::uint8_t> out;  // the answer to the server's last request, if any
  // SASLContinue read, PBKDF2 still to run on login.scram_executor (then the answer).
  bool derive_pending = false;

  void fail(errc code, std::string message) { session.failed = failure{code, std::move(message)}; }
};

// The startup packet: the dynamic user and the client's parameters. False with
// session.failed set when they do not fit.
bool build_startup(const upstream_login& login, upstream_session& session, std::vector<std::uint8_t>& out) {
  pgwire::startup_message sm;
  sm.params.emplace_back("user", login.user);
  for (auto& p : login.parameters) sm.params.push_back(p);
  if (auto r = pgwire::encode_startup_message(out, sm); !r) {
    session.failed =
        failure{errc::protocol_violation, "cannot build the upstream startup packet: " + r.error().message()};
    return false;
  }
  return true;
}

// The tls-server-end-point hash of the server's certificate, for SCRAM-SHA-256-PLUS;
// empty without TLS or when it cannot be computed.
std::vector<std::uint8_t> server_certificate_hash(stream& s) {
  std::vector<std::uint8_t> hash;
  if (s.tls_active()) {
    X509* cert = SSL_get0_peer_certificate(s.ssl());
    int len = cert != nullptr ? i2d_X509(cert, nullptr) : 0;
    if (len > 0) {
      std::vector<std::uint8_t> der(static_cast<std::size_t>(len));
      unsigned char* p = der.data();
      i2d_X509(cert, &p);
      if (auto h = pgwire::tls_server_end_point_hash(der)) hash = std::move(h).value();
    }
  }
  return hash;
}

// AuthenticationSASL: picks the mechanism (with channel binding when TLS allows it),
// starts the SCRAM client with cached keys when there are any, and writes its
// client-first message to st.out.
bool start_sasl(login_state& st, const pgwire::authentication& a) {
  std::vector<std::uint8_t> hash = server_certificate_hash(st.s);
  auto choice = pgwire::choose_scram_mechanism(a.mechanisms, st.s.tls_active(), !hash.empty());
  if (!choice) {
    std::string offered;
    for (const auto& m : a.mechanisms) offered += (offered.empty() ? "" : ", ") + m;
    st.fail(errc::upstream_auth_unsupported, "the server offered no supported SASL mechanism (" + offered + ")");
    return false;
  }
  pgwire::scram_options so;
  so.channel_binding = choice.value();
  if (so.channel_binding == pgwire::scram_channel_binding::tls_server_end_point) so.cert_hash = hash;
  so.max_iterations = st.login.scram_max_iterations;
  st.scram.emplace(*st.login.password, std::move(so));
  st.scram_cache_key = scram_key_cache::instance().key_for(st.login.user, *st.login.password);
  if (!st.scram_cache_key.empty()) {
    if (auto cached = scram_key_cache::instance().find(st.scram_cache_key)) {
      st.scram->set_cached_keys(cached->salt, cached->iterations, std::move(cached->keys));
    }
  }
  st.session.auth_method = std::string(st.scram->mechanism());
  auto first = st.scram->client_first();
  if (!first || !pgwire::encode_sasl_initial_response(st.out, st.scram->mechanism(), first.value())) {
    st.fail(errc::upstream_protocol, "cannot build the SCRAM client-first message");
    return false;
  }
  return true;
}

// The client-final message (or the failure of the step that made it) as SASLResponse.
bool send_client_final(login_state& st, pgwire::outcome::std_result<pgwire::secret_string> final_msg) {
  if (!final_msg) {
    st.fail(errc::upstream_protocol, "SCRAM exchange with the server failed: " + final_msg.error().message());
    return false;
  }
  if (!st.scram->used_cached_keys()) {
    scram_derivations.fetch_add(1, std::memory_order_relaxed);
    spdlog::debug("scram keys derived for user {} ({} iterations)", st.login.user, st.scram->iterations());
  }
  if (!pgwire::encode_sasl_response(st.out, final_msg.value().view())) {
    st.fail(errc::upstream_protocol, "cannot encode the SCRAM response");
    return false;
  }
  return true;
}

// AuthenticationSASLContinue: the server-first message in, the client-final out, at
// once when the keys are cached; PBKDF2 is left for derive_elsewhere (derive_pending)
// when the login has a scram executor.
bool continue_sasl(login_state& st, const pgwire::authentication& a) {
  if (!st.scram) {
    st.fail(errc::upstream_protocol, "the server sent SASLContinue without SASL");
    return false;
  }
  auto must_derive = st.scram->read_server_first(a.data);
  if (!must_derive) {
    st.fail(errc::upstream_protocol, "SCRAM exchange with the server failed: " + must_derive.error().message());
    return false;
  }
  if (must_derive.value() && st.login.scram_executor) {
    st.derive_pending = true;
    return true;
  }
  return send_client_final(st, st.scram->finish_server_first());
}

struct derived {
  pgwire::secret_string message;
  std::error_code error;
};

net::awaitable<derived> finish_scram(pgwire::scram_client& scram) {
  auto m = scram.finish_server_first();
  if (!m) co_return derived{{}, m.error()};
  co_return derived{std::move(m).value(), {}};
}

// PBKDF2 on the scram executor while this coroutine waits; back on the session's
// thread, the client-final message goes to st.out.
net::awaitable<bool> derive_elsewhere(login_state& st) {
  st.derive_pending = false;
  derived d = co_await net::co_spawn(st.login.scram_executor, finish_scram(*st.scram), net::use_awaitable);
  if (d.error) co_return send_client_final(st, d.error);
  co_return send_client_final(st, std::move(d.message));
}

// AuthenticationSASLFinal: verifies the server's signature and caches the keys.
bool finish_sasl(login_state& st, const pgwire::authentication& a) {
  if (!st.scram) {
    st.fail(errc::upstream_protocol, "the server sent SASLFinal without SASL");
    return false;
  }
  if (auto v = st.scram->on_server_final(a.data); !v) {
    st.fail(errc::upstream_protocol, "the server failed SCRAM verification: " + v.error().message());
    return false;
  }
  // The server proved it knows these keys: keep them for the next login.
  if (!st.scram_cache_key.empty() && !st.scram->used_cached_keys()) {
    if (auto k = st.scram->keys()) {
      scram_cache_entry entry{std::string(st.scram->salt()), st.scram->iterations(), std::move(k).value()};
      scram_key_cache::instance().put(st.scram_cache_key, std::move(entry));
    }
  }
  return true;
}

// An Authentication request: its answer, if it needs one, goes to st.out. False with
// the failure in st.session.
bool answer_authentication(login_state& st, const std::vector<std::uint8_t>& body) {
  auto auth = pgwire::parse_authentication(body);
  if (!auth) {
    st.fail(errc::upstream_protocol, "invalid authentication request from the server");
    return false;
  }
  const auto& a = auth.value();
  switch (a.type) {
    case pgwire::auth_type::ok:
      if (st.scram && !st.scram->authenticated()) {
        st.fail(errc::upstream_protocol, "the server skipped the SCRAM server signature");
        return false;
      }
      return true;
    case pgwire::auth_type::cleartext_password:
      st.session.auth_method = "password";
      if (!st.target.tls) {
        // Never send a Vault-issued password in clear over the network.
        st.fail(errc::upstream_auth_unsupported,
                "the server asked for a cleartext password on a connection without TLS");
        return false;
      }
      if (!pgwire::encode_password_message(st.out, st.login.password->view())) {
        st.fail(errc::upstream_protocol, "cannot encode the password");
        return false;
      }
      return true;
    case pgwire::auth_type::md5_password: {
      st.session.auth_method = "md5";
      auto resp = pgwire::md5_password_response(st.login.user, st.login.password->view(), a.md5_salt);
      if (!resp || !pgwire::encode_password_message(st.out, resp.value().view())) {
        st.fail(errc::upstream_protocol, "cannot compute the MD5 response");
        return false;
      }
      return true;
    }
    case pgwire::auth_type::sasl: return start_sasl(st, a);
    case pgwire::auth_type::sasl_continue: return continue_sasl(st, a);
    case pgwire::auth_type::sasl_final: return finish_sasl(st, a);
    default:
      st.fail(errc::upstream_auth_unsupported,
              "the server asked for an authentication method vaultwire does not support (code " +
                  std::to_string(static_cast<int>(a.type)) + ")");
      return false;
  }
}

// Whether the login goes on after a message that is not an Authentication request.
enum class login_step { next, done };

// ErrorResponse, BackendKeyData, ReadyForQuery and what is handed over to the client.
// done: the login is over, with its result (or failure) in st.session. `unread` is
// what was read after this message.
login_step on_login_message(login_state& st, char type, const std::vector<std::uint8_t>& body,
                            const std::vector<std::uint8_t>& unread) {
  upstream_session& session = st.session;
  switch (type) {
    case pgwire::backend_type::error_response: {
      auto e = pgwire::parse_error_response(body);
      session.server_sqlstate = e ? std::string(e.value().sqlstate()) : "";
      session.failed = failure{errc::upstream_protocol, e ? "the server refused the login: " +
                                                                std::string(e.value().message())
                                                          : "the server refused the login"};
      append_frame(session.server_error, type, body);
      return login_step::done;
    }
    case pgwire::backend_type::backend_key_data: {
      auto k = pgwire::parse_backend_key_data(body);
      if (!k) {
        st.fail(errc::upstream_protocol, "invalid BackendKeyData from the server");
        return login_step::done;
      }
      session.key = k.value();
      return login_step::next;
    }
    case pgwire::backend_type::ready_for_query: {
      auto z = pgwire::parse_ready_for_query(body);
      if (!z) {
        st.fail(errc::upstream_protocol, "invalid ReadyForQuery from the server");
        return login_step::done;
      }
      session.ready_status = static_cast<char>(z.value().status);
      if (!unread.empty()) {
        st.fail(errc::upstream_protocol, "the server sent data after ReadyForQuery before any query");
      }
      return login_step::done;
    }
    case pgwire::backend_type::parameter_status:
    case pgwire::backend_type::notice_response:
      append_frame(session.handover, type, body);
      return login_step::next;
    default:
      st.fail(errc::upstream_protocol, std::string("unexpected message '") + type + "' from the server during login");
      return login_step::done;
  }
}

// The server's messages up to ReadyForQuery, answering its authentication requests.
// `ec` is the result of the last write (the startup packet's): a failed write ends
// the login.
net::awaitable<void> exchange_login(login_state& st, std::error_code ec) {
  std::vector<std::uint8_t> buf, body;
  while (!ec) {
    auto next = co_await read_message(st.s, buf, body);
    if (!next) {
      st.session.failed = std::move(next).error();
      co_return;
    }
    const char type = next.value();
    if (type != pgwire::backend_type::authentication) {
      if (on_login_message(st, type, body, buf) == login_step::done) co_return;
      continue;
    }
    if (!answer_authentication(st, body)) co_return;
    if (st.derive_pending && !co_await derive_elsewhere(st)) co_return;
    if (!st.out.empty()) {
      co_await st.s.write_all(st.out, ec);
      OPENSSL_cleanse(st.out.data(), st.out.size());  // it held a password or proof
      st.out.clear();
    }
  }
  st.fail(errc::upstream_unreachable, "write to the server failed: " + ec.message());
}

// The server's ErrorResponse with severity FATAL: the session ends with it.
std::vector<std::uint8_t> as_fatal(const std::vector<std::uint8_t>& body) {
  std::vector<std::uint8_t> out;
  auto e = pgwire::parse_error_response(body);
  if (!e) {
    append_frame(out, pgwire::backend_type::error_response, body);
    return out;
  }
  for (auto& [code, value] : e.value().fields) {
    if (code == 'S' || code == 'V') value = "FATAL";
  }
  if (!pgwire::encode_error_response(out, e.value().fields)) append_frame(out, pgwire::backend_type::error_response, body);
  return out;
}

// SET ROLE after the login's ReadyForQuery; the session is usable only if it ends
// at ReadyForQuery 'I' without an error.
net::awaitable<void> set_session_role(stream& s, const std::string& role, upstream_session& session) {
  std::vector<std::uint8_t> out;
  if (!append_set_role_query(out, role)) {
    session.failed = failure{errc::upstream_protocol, "the session role cannot be sent (it contains NUL)"};
    co_return;
  }
  std::error_code ec;
  co_await s.write_all(out, ec);
  if (ec) {
    session.failed = failure{errc::upstream_unreachable, "write to the server failed: " + ec.message()};
    co_return;
  }
  std::vector<std::uint8_t> buf, body;
  for (;;) {
    auto next = co_await read_message(s, buf, body);
    if (!next) {
      session.failed = std::move(next).error();
      co_return;
    }
    switch (next.value()) {
      case pgwire::backend_type::parameter_status:
      case pgwire::backend_type::notice_response:
        append_frame(session.handover, next.value(), body);
        break;
      case pgwire::backend_type::command_complete:
        break;
      case pgwire::backend_type::error_response: {
        auto e = pgwire::parse_error_response(body);
        session.server_sqlstate = e ? std::string(e.value().sqlstate()) : "";
        session.failed = failure{errc::upstream_protocol, "SET ROLE " + role + " failed: " +
                                                              (e ? std::string(e.value().message()) : "")};
        session.server_error = as_fatal(body);
        co_return;
      }
      case pgwire::backend_type::ready_for_query: {
        auto z = pgwire::parse_ready_for_query(body);
        if (!z || z.value().status != pgwire::transaction_status::idle || !buf.empty()) {
          session.failed = failure{errc::upstream_protocol, "unexpected reply to SET ROLE from the server"};
        }
        co_return;
      }
      default:
        session.failed = failure{errc::upstream_protocol,
                                 std::string("unexpected message '") + next.value() + "' in reply to SET ROLE"};
        co_return;
    }
  }
}

}  // namespace

bool append_set_role_query(std::vector<std::uint8_t>& out, std::string_view role) {
  std::string sql = "SET ROLE \"";
  for (const char c : role) {
    if (c == '\0') return false;
    if (c == '"') sql += '"';
    sql += c;
  }
  sql += '"';
  pgwire::message_builder b(out);
  b.begin(pgwire::frontend_type::query);
  b.add_cstring(sql);
  return static_cast<bool>(b.finish());
}

std::uint64_t scram_keys_derived() noexcept { return scram_derivations.load(std::memory_order_relaxed); }

net::awaitable<upstream_session> open_upstream(upstream_target target) {
  upstream_session session;
  auto dial_result = co_await dial(target);
  if (!dial_result) {
    session.failed = std::move(dial_result).error();
    co_return session;
  }
  session.conn = std::move(dial_result.value().conn);
  session.peer = std::move(dial_result.value().peer);
  session.local_address = std::move(dial_result.value().local_address);
  if (target.tls && !co_await start_tls(*session.conn, target, session)) session.conn.reset();
  co_return session;
}

net::awaitable<upstream_session> connect_upstream(upstream_target target, upstream_login login) {
  upstream_session session = co_await open_upstream(target);
  if (!session.conn) co_return session;
  co_return co_await log_in_upstream(std::move(session), std::move(target), std::move(login));
}

net::awaitable<upstream_session> log_in_upstream(upstream_session session, upstream_target target,
                                                 upstream_login login) {
  stream& s = *session.conn;
  login_state st{target, login, session, s, std::nullopt, {}, {}};
  if (!build_startup(login, session, st.out)) co_return session;
  std::error_code ec;
  co_await s.write_all(st.out, ec);
  st.out.clear();
  co_await exchange_login(st, ec);
  if (!session.failed && !login.session_role.empty()) co_await set_session_role(s, login.session_role, session);
  co_return session;
}

net::awaitable<void> send_upstream_cancel(upstream_target target, pgwire::cancel_request key,
                                          std::string source_address) {
  auto dial_result = co_await dial(target, source_address);
  if (!dial_result) co_return;
  std::unique_ptr<stream> conn = std::move(dial_result.value().conn);
  upstream_session scratch;
  scratch.peer = std::move(dial_result.value().peer);
  if (target.tls && !co_await start_tls(*conn, target, scratch)) co_return;
  std::vector<std::uint8_t> out;
  pgwire::encode_cancel_request(out, key);
  std::error_code ec;
  co_await conn->write_all(out, ec);
  conn->shutdown_send();
  // Wait for the server to close, so the request is not cut off by our close.
  std::uint8_t sink[64];
  while (!ec) {
    std::size_t n = co_await conn->read_some(sink, ec);
    if (n == 0) break;
  }
}

}  // namespace vaultwire::detail
