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

// Resolves and connects to the first address that answers within the timeout.
net::awaitable<std::unique_ptr<stream>> dial(const upstream_target& t, std::string& peer, std::string& error) {
  auto ex = co_await net::this_coro::executor;
  tcp::resolver resolver(ex);
  boost::system::error_code ec;
  auto results = co_await resolver.async_resolve(t.host, std::to_string(t.port),
                                                 net::redirect_error(net::use_awaitable, ec));
  if (ec) {
    error = "cannot resolve " + t.host + ": " + ec.message();
    co_return nullptr;
  }
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
      peer = endpoint_text(entry.endpoint());
      int fd = sock.release();
      co_return std::make_unique<stream>(stream::descriptor(ex, fd));
    }
    error = "cannot connect to " + entry.endpoint().address().to_string() + ":" + std::to_string(t.port) +
            ": " + (timed_out ? std::string("timed out") : ec.message());
  }
  co_return nullptr;
}

// Reads the next server message into type/body (body copied out of buf).
net::awaitable<bool> read_message(stream& s, std::vector<std::uint8_t>& buf, char& type,
                                  std::vector<std::uint8_t>& body, std::string& error) {
  for (;;) {
    auto d = pgwire::decode_message(buf, max_login_message, pgwire::direction::backend);
    if (d.status == pgwire::decode_status::message) {
      type = d.message.type;
      body.assign(d.message.body.begin(), d.message.body.end());
      buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(d.consumed));
      co_return true;
    }
    if (d.status == pgwire::decode_status::error) {
      error = "invalid message from the server during login: " + d.error.message();
      co_return false;
    }
    std::uint8_t chunk[4096];
    std::error_code ec;
    std::size_t n = co_await s.read_some(chunk, ec);
    if (ec || n == 0) {
      error = ec == eof_error() ? "the server closed the connection during login"
                                : "read from the server failed: " + ec.message();
      co_return false;
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

// SSLRequest, one byte of answer, then TLS. Returns false with session.error set.
net::awaitable<bool> start_tls(stream& s, const upstream_target& t, upstream_session& session) {
  std::vector<std::uint8_t> out;
  pgwire::encode_ssl_request(out);
  std::error_code ec;
  co_await s.write_all(out, ec);
  std::uint8_t answer = 0;
  std::size_t n = ec ? 0 : co_await s.read_some(std::span<std::uint8_t>(&answer, 1), ec);
  if (ec || n != 1) {
    session.error = make_error_code(errc::upstream_unreachable);
    session.message = "the server closed the connection after SSLRequest";
    co_return false;
  }
  if (answer != 'S') {
    session.error = make_error_code(errc::upstream_tls_failed);
    session.message = "the server at " + session.peer + " does not accept TLS connections";
    co_return false;
  }
  const std::string& name = t.server_name.empty() ? t.host : t.server_name;
  co_await s.tls_connect(t.tls.get(), name, t.verify_name, ec);
  if (ec) {
    session.error = make_error_code(errc::upstream_tls_failed);
    session.message = "TLS with the server " + name + " failed: " + s.tls_error();
    co_return false;
  }
  co_return true;
}

}  // namespace

std::uint64_t scram_keys_derived() noexcept { return scram_derivations.load(std::memory_order_relaxed); }

net::awaitable<upstream_session> connect_upstream(upstream_target target, upstream_login login) {
  upstream_session session;
  std::string dial_error;
  session.conn = co_await dial(target, session.peer, dial_error);
  if (!session.conn) {
    session.error = make_error_code(errc::upstream_unreachable);
    session.message = dial_error;
    co_return session;
  }
  stream& s = *session.conn;
  if (target.tls && !co_await start_tls(s, target, session)) co_return session;

  std::vector<std::uint8_t> out;
  pgwire::startup_message sm;
  sm.params.emplace_back("user", login.user);
  for (auto& p : login.parameters) sm.params.push_back(p);
  if (auto r = pgwire::encode_startup_message(out, sm); !r) {
    session.error = make_error_code(errc::protocol_violation);
    session.message = "cannot build the upstream startup packet: " + r.error().message();
    co_return session;
  }
  std::error_code ec;
  co_await s.write_all(out, ec);
  out.clear();

  std::optional<pgwire::scram_client> scram;
  std::string scram_cache_key;
  std::vector<std::uint8_t> buf, body;
  char type = 0;
  std::string error;
  auto fail = [&session](errc code, std::string message) {
    session.error = make_error_code(code);
    session.message = std::move(message);
  };
  while (!ec) {
    if (!co_await read_message(s, buf, type, body, error)) {
      fail(errc::upstream_protocol, error);
      co_return session;
    }
    switch (type) {
      case pgwire::backend_type::authentication: {
        auto auth = pgwire::parse_authentication(body);
        if (!auth) {
          fail(errc::upstream_protocol, "invalid authentication request from the server");
          co_return session;
        }
        const auto& a = auth.value();
        switch (a.type) {
          case pgwire::auth_type::ok:
            if (scram && !scram->authenticated()) {
              fail(errc::upstream_protocol, "the server skipped the SCRAM server signature");
              co_return session;
            }
            break;
          case pgwire::auth_type::cleartext_password:
            session.auth_method = "password";
            if (!target.tls) {
              // Never send a Vault-issued password in clear over the network.
              fail(errc::upstream_auth_unsupported,
                   "the server asked for a cleartext password on a connection without TLS");
              co_return session;
            }
            if (!pgwire::encode_password_message(out, login.password->view())) {
              fail(errc::upstream_protocol, "cannot encode the password");
              co_return session;
            }
            break;
          case pgwire::auth_type::md5_password: {
            session.auth_method = "md5";
            auto resp = pgwire::md5_password_response(login.user, login.password->view(), a.md5_salt);
            if (!resp || !pgwire::encode_password_message(out, resp.value().view())) {
              fail(errc::upstream_protocol, "cannot compute the MD5 response");
              co_return session;
            }
            break;
          }
          case pgwire::auth_type::sasl: {
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
            auto choice = pgwire::choose_scram_mechanism(a.mechanisms, s.tls_active(), !hash.empty());
            if (!choice) {
              std::string offered;
              for (const auto& m : a.mechanisms) offered += (offered.empty() ? "" : ", ") + m;
              fail(errc::upstream_auth_unsupported, "the server offered no supported SASL mechanism (" + offered + ")");
              co_return session;
            }
            pgwire::scram_options so;
            so.channel_binding = choice.value();
            if (so.channel_binding == pgwire::scram_channel_binding::tls_server_end_point) so.cert_hash = hash;
            scram.emplace(*login.password, std::move(so));
            scram_cache_key = scram_key_cache::instance().key_for(login.user, *login.password);
            if (!scram_cache_key.empty()) {
              if (auto cached = scram_key_cache::instance().find(scram_cache_key)) {
                scram->set_cached_keys(cached->salt, cached->iterations, std::move(cached->keys));
              }
            }
            session.auth_method = std::string(scram->mechanism());
            auto first = scram->client_first();
            if (!first || !pgwire::encode_sasl_initial_response(out, scram->mechanism(), first.value())) {
              fail(errc::upstream_protocol, "cannot build the SCRAM client-first message");
              co_return session;
            }
            break;
          }
          case pgwire::auth_type::sasl_continue: {
            if (!scram) {
              fail(errc::upstream_protocol, "the server sent SASLContinue without SASL");
              co_return session;
            }
            auto final_msg = scram->on_server_first(a.data);
            if (final_msg && !scram->used_cached_keys()) {
              scram_derivations.fetch_add(1, std::memory_order_relaxed);
              spdlog::debug("scram keys derived for user {} ({} iterations)", login.user, scram->iterations());
            }
            if (!final_msg) {
              fail(errc::upstream_protocol, "SCRAM exchange with the server failed: " + final_msg.error().message());
              co_return session;
            }
            if (!pgwire::encode_sasl_response(out, final_msg.value().view())) {
              fail(errc::upstream_protocol, "cannot encode the SCRAM response");
              co_return session;
            }
            break;
          }
          case pgwire::auth_type::sasl_final:
            if (!scram) {
              fail(errc::upstream_protocol, "the server sent SASLFinal without SASL");
              co_return session;
            }
            if (auto v = scram->on_server_final(a.data); !v) {
              fail(errc::upstream_protocol, "the server failed SCRAM verification: " + v.error().message());
              co_return session;
            }
            // The server proved it knows these keys: keep them for the next login.
            if (!scram_cache_key.empty() && !scram->used_cached_keys()) {
              if (auto k = scram->keys()) {
                scram_key_cache::instance().put(
                    scram_cache_key, scram_cache_entry{std::string(scram->salt()), scram->iterations(), std::move(k).value()});
              }
            }
            break;
          default:
            fail(errc::upstream_auth_unsupported,
                 "the server asked for an authentication method vaultwire does not support (code " +
                     std::to_string(static_cast<int>(a.type)) + ")");
            co_return session;
        }
        if (!out.empty()) {
          co_await s.write_all(out, ec);
          OPENSSL_cleanse(out.data(), out.size());  // it held a password or proof
          out.clear();
        }
        break;
      }
      case pgwire::backend_type::error_response: {
        auto e = pgwire::parse_error_response(body);
        session.error = make_error_code(errc::upstream_protocol);
        session.server_sqlstate = e ? std::string(e.value().sqlstate()) : "";
        session.message = e ? "the server refused the login: " + std::string(e.value().message())
                            : "the server refused the login";
        append_frame(session.server_error, type, body);
        co_return session;
      }
      case pgwire::backend_type::backend_key_data: {
        auto k = pgwire::parse_backend_key_data(body);
        if (!k) {
          fail(errc::upstream_protocol, "invalid BackendKeyData from the server");
          co_return session;
        }
        session.key = k.value();
        break;
      }
      case pgwire::backend_type::ready_for_query: {
        auto z = pgwire::parse_ready_for_query(body);
        if (!z) {
          fail(errc::upstream_protocol, "invalid ReadyForQuery from the server");
          co_return session;
        }
        session.ready_status = static_cast<char>(z.value().status);
        if (!buf.empty()) {
          fail(errc::upstream_protocol, "the server sent data after ReadyForQuery before any query");
          co_return session;
        }
        co_return session;
      }
      case pgwire::backend_type::parameter_status:
      case pgwire::backend_type::notice_response:
        append_frame(session.handover, type, body);
        break;
      default:
        fail(errc::upstream_protocol,
             std::string("unexpected message '") + type + "' from the server during login");
        co_return session;
    }
  }
  fail(errc::upstream_unreachable, "write to the server failed: " + ec.message());
  co_return session;
}

net::awaitable<void> send_upstream_cancel(upstream_target target, pgwire::cancel_request key) {
  std::string peer, error;
  auto conn = co_await dial(target, peer, error);
  if (!conn) co_return;
  upstream_session scratch;
  scratch.peer = peer;
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
