#include "proxy/upstream.hpp"

#include <pgwire/decoder.hpp>
#include <pgwire/encoder.hpp>
#include <pgwire/md5.hpp>
#include <pgwire/scram.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <spdlog/spdlog.h>

#include <atomic>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/this_coro.hpp>

#include "net/tcp.hpp"
#include "vaultwire/errc.hpp"

namespace vaultwire::detail {

namespace net = boost::asio;
using net::ip::tcp;

namespace {

// Messages the server sends during login are small; anything larger is a broken peer.
constexpr std::size_t max_login_message = 64 * 1024;

// ---- SCRAM key cache ----
//
// The keys derived from a credential's password (PBKDF2, the costly part of SCRAM),
// per credential, with the salt and iteration count they were derived for: a
// second login with the same credential skips PBKDF2 when the server sends the
// same salt and count (scram_client checks that). Only keys of an exchange the
// server completed (its signature verified) are kept. The map is keyed by an HMAC
// of user and password under a random per-process key, so nothing in it reveals
// the password; the keys are secret_strings, wiped when an entry is replaced or
// evicted (oldest first beyond the bound).
constexpr std::size_t scram_cache_capacity = 1024;

std::atomic<std::uint64_t> scram_derivations{0};

struct scram_cache_entry {
  std::string salt;
  std::uint32_t iterations = 0;
  pgwire::scram_keys keys;
};

class scram_key_cache {
 public:
  static scram_key_cache& instance() {
    static scram_key_cache cache;
    return cache;
  }

  // The lookup key for a credential; empty if HMAC failed (then nothing is cached).
  std::string key_for(const std::string& user, const pgwire::secret_string& password) const {
    pgwire::secret_string material;
    material.append(user);
    material.append('\0');
    material.append(password.view());
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (HMAC(EVP_sha256(), secret_, sizeof secret_, reinterpret_cast<const unsigned char*>(material.view().data()),
             material.size(), mac, &mac_len) == nullptr) {
      return {};
    }
    return std::string(reinterpret_cast<const char*>(mac), mac_len);
  }

  std::optional<scram_cache_entry> find(const std::string& key) {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return std::nullopt;
    return scram_cache_entry{it->second.salt, it->second.iterations, it->second.keys.clone()};
  }

  void put(const std::string& key, scram_cache_entry entry) {
    std::lock_guard lock(mutex_);
    auto [it, inserted] = entries_.insert_or_assign(key, std::move(entry));  // a replaced entry's keys are wiped
    if (!inserted) return;
    order_.push_back(key);
    while (order_.size() > scram_cache_capacity) {
      entries_.erase(order_.front());  // its secret_strings wipe themselves
      order_.pop_front();
    }
  }

 private:
  scram_key_cache() {
    if (RAND_bytes(secret_, sizeof secret_) != 1) throw std::runtime_error("RAND_bytes failed");
  }
  ~scram_key_cache() { OPENSSL_cleanse(secret_, sizeof secret_); }

  unsigned char secret_[32];
  std::mutex mutex_;
  std::map<std::string, scram_cache_entry> entries_;
  std::deque<std::string> order_;  // insertion order, for eviction
};

// A TCP connection to the cluster and the address it reached ("host:port").
struct dialed {
  std::unique_ptr<stream> conn;
  std::string peer;
};

// Resolves and connects to the first address that answers within the timeout.
// Failures are errc::upstream_unreachable, naming the last address tried.
net::awaitable<result<dialed>> dial(const upstream_target& t) {
  auto ex = co_await net::this_coro::executor;
  tcp::resolver resolver(ex);
  boost::system::error_code ec;
  auto results = co_await resolver.async_resolve(t.host, std::to_string(t.port),
                                                 net::redirect_error(net::use_awaitable, ec));
  if (ec) co_return failure{errc::upstream_unreachable, "cannot resolve " + t.host + ": " + ec.message()};
  std::string error;
  for (const auto& entry : results) {
    tcp::socket sock(ex);
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
      dialed d{nullptr, endpoint_text(entry.endpoint())};
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

// AuthenticationSASLContinue: the server-first message in, the client-final out.
bool continue_sasl(login_state& st, const pgwire::authentication& a) {
  if (!st.scram) {
    st.fail(errc::upstream_protocol, "the server sent SASLContinue without SASL");
    return false;
  }
  auto final_msg = st.scram->on_server_first(a.data);
  if (final_msg && !st.scram->used_cached_keys()) {
    scram_derivations.fetch_add(1, std::memory_order_relaxed);
    spdlog::debug("scram keys derived for user {} ({} iterations)", st.login.user, st.scram->iterations());
  }
  if (!final_msg) {
    st.fail(errc::upstream_protocol, "SCRAM exchange with the server failed: " + final_msg.error().message());
    return false;
  }
  if (!pgwire::encode_sasl_response(st.out, final_msg.value().view())) {
    st.fail(errc::upstream_protocol, "cannot encode the SCRAM response");
    return false;
  }
  return true;
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
    if (!st.out.empty()) {
      co_await st.s.write_all(st.out, ec);
      OPENSSL_cleanse(st.out.data(), st.out.size());  // it held a password or proof
      st.out.clear();
    }
  }
  st.fail(errc::upstream_unreachable, "write to the server failed: " + ec.message());
}

}  // namespace

std::uint64_t scram_keys_derived() noexcept { return scram_derivations.load(std::memory_order_relaxed); }

net::awaitable<upstream_session> connect_upstream(upstream_target target, upstream_login login) {
  upstream_session session;
  auto dial_result = co_await dial(target);
  if (!dial_result) {
    session.failed = std::move(dial_result).error();
    co_return session;
  }
  session.conn = std::move(dial_result.value().conn);
  session.peer = std::move(dial_result.value().peer);
  stream& s = *session.conn;
  if (target.tls && !co_await start_tls(s, target, session)) co_return session;

  login_state st{target, login, session, s, std::nullopt, {}, {}};
  if (!build_startup(login, session, st.out)) co_return session;
  std::error_code ec;
  co_await s.write_all(st.out, ec);
  st.out.clear();
  co_await exchange_login(st, ec);
  co_return session;
}

net::awaitable<void> send_upstream_cancel(upstream_target target, pgwire::cancel_request key) {
  auto dial_result = co_await dial(target);
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
