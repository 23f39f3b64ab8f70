// stream: one side of a proxied connection — a connected socket (TCP or Unix) and,
// once started, a TLS session driven directly with OpenSSL on the non-blocking
// descriptor (DESIGN.md "TLS and memory on the data path"). Readiness comes from
// Asio's async_wait; OpenSSL runs with SSL_MODE_RELEASE_BUFFERS, so an idle TLS
// stream holds no record buffers (a busy splice keeps them: keep_buffers, and so does
// the pooled connection it leaves, until the pool's sweep finds it idle). This is
// the one place that touches SSL_read / SSL_write on the data path, so kTLS can be
// tried here later.
//
// Private header of src/: it includes Asio. Not thread-safe: all calls on one
// stream happen on one strand. One read and one write may be outstanding at once
// (the two splice pumps), never two of the same kind.
#pragma once

#include <openssl/ssl.h>

#include <cstdint>
#include <span>
#include <string>
#include <system_error>

#include "core/result.hpp"
#include "core/ssl_ctx.hpp"
#include "net/asio.hpp"

#include <boost/asio/posix/stream_descriptor.hpp>

namespace vaultwire::detail {

class stream {
 public:
  using descriptor = boost::asio::posix::stream_descriptor;

  explicit stream(descriptor sd);
  ~stream();
  stream(const stream&) = delete;
  stream& operator=(const stream&) = delete;

  // Server side (a client connecting to vaultwire). On failure ec is set and
  // tls_error() says why.
  boost::asio::awaitable<void> tls_accept(SSL_CTX* ctx, std::error_code& ec);
  // Client side (vaultwire to the cluster): SNI when server_name is a DNS name,
  // verification of the chain and of the name (or IP) against the context's CA.
  boost::asio::awaitable<void> tls_connect(SSL_CTX* ctx, const std::string& server_name, bool verify_name,
                                           std::error_code& ec);

  // Reads what is available (at least one byte), waiting as needed. End of stream:
  // returns 0 with ec == eof_error(). Not for per-thread buffers (see try_read).
  boost::asio::awaitable<std::size_t> read_some(std::span<std::uint8_t> buf, std::error_code& ec);

  // What a non-blocking call needs before it can make progress.
  enum class want { nothing, read, write };
  // One non-blocking read attempt: bytes read (> 0); or 0 with `w` saying what to
  // wait for (wait(), then try again); or 0 with ec set (eof_error() at the end).
  // No co_await between choosing `buf` and using the bytes: the splice reads into a
  // per-thread buffer, and a coroutine may resume on another thread after a wait.
  [[nodiscard]] std::size_t try_read(std::span<std::uint8_t> buf, want& w, std::error_code& ec);
  // Waits for the readiness try_read asked for (want::read or want::write). Asio's
  // operation itself, not a coroutine around it: the pumps wait once per message.
  boost::asio::awaitable<void> wait(want w, boost::system::error_code& ec);
  // One non-blocking write attempt: returns how many bytes went out (0 when the
  // socket is full). After a partial result the caller must send the rest, the
  // same bytes, through write_all (OpenSSL requires the retry to carry them).
  [[nodiscard]] std::size_t try_write(std::span<const std::uint8_t> data, std::error_code& ec);
  // Writes everything or fails.
  boost::asio::awaitable<void> write_all(std::span<const std::uint8_t> data, std::error_code& ec);
  // Bytes TLS already took from the socket (decrypted, or read ahead) but not yet
  // read (TLS only).
  [[nodiscard]] bool has_buffered_plaintext() const;

  // TLS record buffers (a full record each way, about 17 KB). By default OpenSSL frees
  // each one as it empties (SSL_MODE_RELEASE_BUFFERS), and the cleansing free wipes it:
  // an idle stream holds none, but a busy one pays an allocation, a free and a wipe
  // of both per query. keep_buffers(true) keeps them between records (a busy splice);
  // free_buffers() frees them if they hold nothing (true) and they come back on the
  // next record; keep_buffers(false) frees them and restores the default. No-ops
  // without TLS.
  void keep_buffers(bool keep);
  bool free_buffers();
  // Whether keep_buffers(true) is in force, and how many free_buffers() calls freed
  // (for tests).
  [[nodiscard]] bool keeps_buffers() const {
    return ssl_ != nullptr && (SSL_get_mode(ssl_) & SSL_MODE_RELEASE_BUFFERS) == 0;
  }
  [[nodiscard]] std::uint32_t buffer_frees() const { return buffer_frees_; }

  // Moves the stream to another executor (another session's strand, possibly
  // another io_context): the descriptor is released from its reactor and wrapped
  // again with `ex`; the TLS session (SSL*) and any bytes buffered in it are kept.
  // Precondition: no operation outstanding on the stream, and the caller is the
  // only user of it. Afterwards use the stream only from `ex`. A closed stream stays
  // closed (bound to `ex`). A stream already on `ex` is left as it is.
  void rebind(const descriptor::executor_type& ex);

  // Half-close: TLS close_notify (best effort), then shutdown(SHUT_WR).
  void shutdown_send();
  void close();

  [[nodiscard]] bool tls_active() const { return ssl_ != nullptr; }
  [[nodiscard]] const std::string& tls_error() const { return tls_error_; }
  [[nodiscard]] SSL* ssl() const { return ssl_; }
  [[nodiscard]] int native_handle() { return sd_.native_handle(); }
  [[nodiscard]] descriptor& socket() { return sd_; }

 private:
  // Runs one OpenSSL call until it completes, waiting for readiness as it asks.
  template <typename Op>
  boost::asio::awaitable<int> drive(Op op, std::error_code& ec);

  // Watches the socket reads OpenSSL makes, to keep drained_ current (TLS only).
  void watch_socket_reads();
  static long on_socket_read(BIO* b, int oper, const char* argp, std::size_t len, int argi, long argl, int ret,
                             std::size_t* processed);

  descriptor sd_;
  SSL* ssl_ = nullptr;
  std::string tls_error_;
  // The last read(2) on the socket returned fewer bytes than it asked for, so the
  // socket held nothing more at that moment: the next try_read asks for a wait
  // instead of a read that would only say EAGAIN. Safe because wait() is Asio's
  // non-speculative async_wait, which re-arms the descriptor (EPOLL_CTL_MOD) and so
  // reports bytes that arrived in between at once.
  bool drained_ = false;
  std::uint32_t buffer_frees_ = 0;
};

// A TLS context for connecting to the cluster: TLS 1.2+, CA file, optional client
// certificate. Errors name the file. Release buffers when idle.
struct tls_client_context_options {
  std::string ca_file;
  std::string client_cert;
  std::string client_key;
  bool verify_peer = true;  // false only for sslmode=require / allow_insecure_upstream
};
// Failures are errc::setup_failed, naming the file.
[[nodiscard]] result<ssl_ctx> make_client_tls_context(const tls_client_context_options& o);
[[nodiscard]] result<ssl_ctx> make_server_tls_context(const std::string& cert_file, const std::string& key_file);

// End of stream, as read_some reports it.
[[nodiscard]] std::error_code eof_error();

// The OpenSSL error queue as text (and cleared).
std::string openssl_error_text();

}  // namespace vaultwire::detail
