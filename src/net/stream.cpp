#include "net/stream.hpp"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <cerrno>
#include <climits>

#include <boost/asio/error.hpp>
#include <boost/asio/write.hpp>

#include "core/secure_memory.hpp"
#include "vaultwire/errc.hpp"

namespace vaultwire::detail {

namespace net = boost::asio;

std::string openssl_error_text() {
  std::string out;
  unsigned long e = 0;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

std::error_code eof_error() {
  return std::error_code(boost::system::error_code(net::error::eof));
}

namespace {

// SSL_get_error needs an empty error queue before the call it explains. Usually it
// is empty already: peeking is cheaper than ERR_clear_error's walk over every slot,
// which ran three times per query on the data path.
void clear_openssl_errors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

bool is_ip_literal(const std::string& name) {
  in6_addr a6{};
  in_addr a4{};
  return inet_pton(AF_INET, name.c_str(), &a4) == 1 || inet_pton(AF_INET6, name.c_str(), &a6) == 1;
}

}  // namespace

stream::stream(descriptor sd) : sd_(std::move(sd)) {
  boost::system::error_code ignored;
  sd_.non_blocking(true, ignored);
}

stream::~stream() {
  if (ssl_ != nullptr) SSL_free(ssl_);
}

void stream::watch_socket_reads() {
  BIO* rbio = SSL_get_rbio(ssl_);
  BIO_set_callback_arg(rbio, reinterpret_cast<char*>(this));
  BIO_set_callback_ex(rbio, &stream::on_socket_read);
}

// Runs after each read on the socket BIO (with read-ahead, OpenSSL asks for all the
// room left in its read buffer): a read that failed or came back short drained it.
long stream::on_socket_read(BIO* b, int oper, const char*, std::size_t len, int, long, int ret,
                            std::size_t* processed) {
  if (oper == (BIO_CB_READ | BIO_CB_RETURN)) {
    auto* self = reinterpret_cast<stream*>(BIO_get_callback_arg(b));
    self->drained_ = ret <= 0 || processed == nullptr || *processed < len;
  }
  return ret;
}

template <typename Op>
net::awaitable<int> stream::drive(Op op, std::error_code& ec) {
  for (;;) {
    ERR_clear_error();
    int rc = op();
    if (rc > 0) co_return rc;
    int err = SSL_get_error(ssl_, rc);
    boost::system::error_code wait_ec;
    switch (err) {
      case SSL_ERROR_WANT_READ:
        co_await sd_.async_wait(descriptor::wait_read, net::redirect_error(net::use_awaitable, wait_ec));
        drained_ = false;
        break;
      case SSL_ERROR_WANT_WRITE:
        co_await sd_.async_wait(descriptor::wait_write, net::redirect_error(net::use_awaitable, wait_ec));
        break;
      case SSL_ERROR_ZERO_RETURN:
        ec = eof_error();
        co_return 0;
      case SSL_ERROR_SYSCALL:
        if (ERR_peek_error() == 0) {
          // The peer closed without close_notify: treat as end of stream.
          ec = eof_error();
          co_return 0;
        }
        [[fallthrough]];
      default:
        tls_error_ = openssl_error_text();
        ec = make_error_code(errc::tls_error);
        co_return rc;
    }
    if (wait_ec) {
      ec = wait_ec;
      co_return -1;
    }
  }
}

net::awaitable<void> stream::tls_accept(SSL_CTX* ctx, std::error_code& ec) {
  ssl_ = SSL_new(ctx);
  if (ssl_ == nullptr || SSL_set_fd(ssl_, sd_.native_handle()) != 1) {
    tls_error_ = openssl_error_text();
    ec = make_error_code(errc::tls_error);
    co_return;
  }
  watch_socket_reads();
  SSL* s = ssl_;
  co_await drive([s] { return SSL_accept(s); }, ec);
}

net::awaitable<void> stream::tls_connect(SSL_CTX* ctx, const std::string& server_name, bool verify_name,
                                         std::error_code& ec) {
  ssl_ = SSL_new(ctx);
  if (ssl_ == nullptr || SSL_set_fd(ssl_, sd_.native_handle()) != 1) {
    tls_error_ = openssl_error_text();
    ec = make_error_code(errc::tls_error);
    co_return;
  }
  watch_socket_reads();
  const bool ip = is_ip_literal(server_name);
  if (!ip) SSL_set_tlsext_host_name(ssl_, server_name.c_str());
  if (verify_name) {
    if (ip) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), server_name.c_str());
    } else {
      SSL_set1_host(ssl_, server_name.c_str());
    }
  }
  SSL* s = ssl_;
  int rc = co_await drive([s] { return SSL_connect(s); }, ec);
  if (rc <= 0 && !ec) ec = make_error_code(errc::tls_error);
  if (ec) {
    long verify = SSL_get_verify_result(ssl_);
    if (verify != X509_V_OK) {
      tls_error_ = std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
    } else if (tls_error_.empty()) {
      tls_error_ = ec == eof_error() ? "server closed the connection during the TLS handshake"
                                         : ec.message();
    }
  }
}

net::awaitable<std::size_t> stream::read_some(std::span<std::uint8_t> buf, std::error_code& ec) {
  for (;;) {
    want w = want::nothing;
    std::size_t n = try_read(buf, w, ec);
    if (n > 0 || ec) co_return n;
    boost::system::error_code wait_ec;
    co_await wait(w, wait_ec);
    if (wait_ec) {
      ec = wait_ec;
      co_return 0;
    }
  }
}

std::size_t stream::try_read(std::span<std::uint8_t> buf, want& w, std::error_code& ec) {
  w = want::nothing;
  if (drained_ && (ssl_ == nullptr || SSL_has_pending(ssl_) == 0)) {
    w = want::read;  // wait() clears drained_
    return 0;
  }
  if (ssl_ == nullptr) {
    for (;;) {
      ssize_t n = ::recv(sd_.native_handle(), buf.data(), buf.size(), MSG_DONTWAIT);
      if (n > 0) {
        drained_ = static_cast<std::size_t>(n) < buf.size();
        return static_cast<std::size_t>(n);
      }
      if (n == 0) {
        ec = eof_error();
        return 0;
      }
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        w = want::read;
      } else {
        ec = std::error_code(errno, std::system_category());
      }
      return 0;
    }
  }
  clear_openssl_errors();
  const int len = static_cast<int>(std::min<std::size_t>(buf.size(), INT_MAX));
  int n = SSL_read(ssl_, buf.data(), len);
  if (n > 0) {
    // One SSL_read returns at most one record (16 KiB). With read-ahead the socket
    // read brought more: take the records already here, so one write passes them on.
    // A successful SSL_read leaves the error queue empty.
    std::size_t got = static_cast<std::size_t>(n);
    while (got < buf.size() && SSL_has_pending(ssl_) == 1) {
      const int more = SSL_read(ssl_, buf.data() + got, static_cast<int>(std::min<std::size_t>(buf.size() - got, INT_MAX)));
      if (more <= 0) {
        clear_openssl_errors();  // wants the socket or failed: the next call reports it
        break;
      }
      got += static_cast<std::size_t>(more);
    }
    return got;
  }
  switch (SSL_get_error(ssl_, n)) {
    case SSL_ERROR_WANT_READ:
      w = want::read;
      return 0;
    case SSL_ERROR_WANT_WRITE:
      w = want::write;
      return 0;
    case SSL_ERROR_ZERO_RETURN:
      ec = eof_error();
      return 0;
    case SSL_ERROR_SYSCALL:
      if (ERR_peek_error() == 0) {
        ec = eof_error();  // closed without close_notify
        return 0;
      }
      [[fallthrough]];
    default:
      tls_error_ = openssl_error_text();
      ec = make_error_code(errc::tls_error);
      return 0;
  }
}

net::awaitable<void> stream::wait(want w, boost::system::error_code& ec) {
  // Only this stream's one read reads the socket, so forgetting drained_ now is the
  // same as forgetting it when the wait ends: the next try_read reads.
  if (w != want::write) drained_ = false;
  return sd_.async_wait(w == want::write ? descriptor::wait_write : descriptor::wait_read,
                        net::redirect_error(net::use_awaitable, ec));
}

net::awaitable<void> stream::write_all(std::span<const std::uint8_t> data, std::error_code& ec) {
  if (ssl_ == nullptr) {
    boost::system::error_code bec;
    co_await net::async_write(sd_, net::buffer(data.data(), data.size()),
                              net::redirect_error(net::use_awaitable, bec));
    ec = bec;
    co_return;
  }
  std::size_t done = 0;
  SSL* s = ssl_;
  while (done < data.size()) {
    const std::uint8_t* p = data.data() + done;
    const int len = static_cast<int>(std::min<std::size_t>(data.size() - done, INT_MAX));
    int n = co_await drive([s, p, len] { return SSL_write(s, p, len); }, ec);
    if (ec) co_return;
    done += static_cast<std::size_t>(n);
  }
}

std::size_t stream::try_write(std::span<const std::uint8_t> data, std::error_code& ec) {
  if (data.empty()) return 0;
  if (ssl_ == nullptr) {
    for (;;) {
      ssize_t n = ::send(sd_.native_handle(), data.data(), data.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n >= 0) return static_cast<std::size_t>(n);
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return 0;
      ec = std::error_code(errno, std::system_category());
      return 0;
    }
  }
  clear_openssl_errors();
  const int len = static_cast<int>(std::min<std::size_t>(data.size(), INT_MAX));
  int n = SSL_write(ssl_, data.data(), len);
  if (n > 0) return static_cast<std::size_t>(n);
  int err = SSL_get_error(ssl_, n);
  if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) return 0;
  tls_error_ = openssl_error_text();
  ec = make_error_code(errc::tls_error);
  return 0;
}

bool stream::has_buffered_plaintext() const { return ssl_ != nullptr && SSL_has_pending(ssl_) == 1; }

void stream::keep_buffers(bool keep) {
  if (ssl_ == nullptr) return;
  if (keep) {
    SSL_clear_mode(ssl_, SSL_MODE_RELEASE_BUFFERS);
  } else {
    SSL_set_mode(ssl_, SSL_MODE_RELEASE_BUFFERS);
    (void)free_buffers();  // else OpenSSL frees each as it empties
  }
}

bool stream::free_buffers() {
  if (ssl_ == nullptr) return true;
  // Refused while a buffer holds bytes: a record read ahead, plaintext not read yet
  // (checked here too: before CVE-2024-4741's fix OpenSSL freed the buffer under it),
  // or a partial write OpenSSL must finish.
  if (SSL_has_pending(ssl_) == 1 || SSL_free_buffers(ssl_) != 1) return false;
  ++buffer_frees_;
  return true;
}

void stream::rebind(const descriptor::executor_type& ex) {
  if (!sd_.is_open()) {
    sd_ = descriptor(ex);
    return;
  }
  if (sd_.get_executor() == ex) return;  // already there: keep the registration
  const int fd = sd_.release();  // deregistered from the old reactor, still open
  sd_ = descriptor(ex, fd);
  boost::system::error_code ignored;
  sd_.non_blocking(true, ignored);
}

void stream::shutdown_send() {
  if (ssl_ != nullptr) {
    ERR_clear_error();
    SSL_shutdown(ssl_);  // best effort; non-blocking
    ERR_clear_error();
  }
  ::shutdown(sd_.native_handle(), SHUT_WR);
}

void stream::close() {
  boost::system::error_code ignored;
  sd_.close(ignored);
}

namespace {

// Read-ahead: one read(2) takes what the socket holds, up to the read buffer,
// instead of a header and a body per record. The buffer keeps OpenSSL's default
// size (one full record): it is allocated while bytes wait in it and released, and
// wiped twice (SSL_OP_CLEANSE_PLAINTEXT, then the cleansing free), whenever it
// empties (SSL_MODE_RELEASE_BUFFERS), so an idle stream holds none. A larger buffer
// would be wiped in full on every release, costing more than the reads it saves.
void set_read_ahead(SSL_CTX* ctx) { SSL_CTX_set_read_ahead(ctx, 1); }

// Decrypted bytes (a client's token, the credential's password) are wiped once read.
// With secure_memory installed, OpenSSL's free wipes every block, and the read
// buffer is freed whenever it empties (SSL_MODE_RELEASE_BUFFERS);
// SSL_OP_CLEANSE_PLAINTEXT would wipe it a second time on each release, a full
// record's size per drained read. Without secure_memory, the option does the wiping.
void wipe_plaintext(SSL_CTX* ctx) {
  if (!secure_memory::installed_for_openssl()) SSL_CTX_set_options(ctx, SSL_OP_CLEANSE_PLAINTEXT);
}

}  // namespace

namespace {

// The settings every data-path context shares: TLS 1.2+, plaintext wiped, buffers
// released when idle, partial writes, read-ahead.
result<ssl_ctx> data_path_context(const SSL_METHOD* method) {
  ssl_ctx owned(SSL_CTX_new(method));
  SSL_CTX* ctx = owned.get();
  if (ctx == nullptr) return failure{errc::setup_failed, openssl_error_text()};
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  wipe_plaintext(ctx);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  set_read_ahead(ctx);
  return owned;
}

// A certificate chain and its key, which must match.
bool load_certificate(SSL_CTX* ctx, const std::string& cert_file, const std::string& key_file) {
  return SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) == 1 &&
         SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) == 1 &&
         SSL_CTX_check_private_key(ctx) == 1;
}

}  // namespace

result<ssl_ctx> make_client_tls_context(const tls_client_context_options& o) {
  auto made = data_path_context(TLS_client_method());
  if (!made) return made;
  SSL_CTX* ctx = made.value().get();
  // vaultwire never resumes an upstream session (each SSL starts afresh), so a TLS 1.2
  // server's session ticket would only sit in the SSL_SESSION for the connection's
  // life: without the session_ticket extension the server sends none (OpenSSL 3.0
  // ssl/t1_lib.c tls_use_ticket, ssl/statem/extensions_clnt.c
  // tls_construct_ctos_session_ticket). Client sessions are not cached either:
  // SSL_CTX_new's cache mode is SSL_SESS_CACHE_SERVER.
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
  SSL_CTX_set_verify(ctx, o.verify_peer ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  if (!o.ca_file.empty() && SSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr) != 1)
    return failure{errc::setup_failed, "cannot load CA file " + o.ca_file + ": " + openssl_error_text()};
  if (!o.client_cert.empty() && !load_certificate(ctx, o.client_cert, o.client_key))
    return failure{errc::setup_failed, "cannot load client certificate " + o.client_cert + ": " + openssl_error_text()};
  return made;
}

result<ssl_ctx> make_server_tls_context(const std::string& cert_file, const std::string& key_file) {
  auto made = data_path_context(TLS_server_method());
  if (!made) return made;
  if (!load_certificate(made.value().get(), cert_file, key_file))
    return failure{errc::setup_failed, "cannot load listener certificate " + cert_file + ": " + openssl_error_text()};
  return made;
}

}  // namespace vaultwire::detail
