// ssl_ctx: the one way vaultwire holds an OpenSSL SSL_CTX.
#pragma once

#include <openssl/ssl.h>

#include <utility>

namespace vaultwire::detail {

// A counted reference on an SSL_CTX: a copy takes a reference (SSL_CTX_up_ref), the
// destructor drops one. Everything that uses a context holds one of these, so a
// context replaced by a reload lives until the last connection that took it is done
// with it, and no path can leak or double-free one. Not thread-safe itself: a value
// shared between threads is read and replaced under its owner's lock.
class ssl_ctx {
 public:
  ssl_ctx() noexcept = default;
  // Takes over the caller's reference (e.g. SSL_CTX_new's).
  explicit ssl_ctx(SSL_CTX* adopted) noexcept : ctx_(adopted) {}
  ssl_ctx(const ssl_ctx& other) noexcept : ctx_(other.ctx_) {
    if (ctx_ != nullptr) SSL_CTX_up_ref(ctx_);
  }
  ssl_ctx(ssl_ctx&& other) noexcept : ctx_(std::exchange(other.ctx_, nullptr)) {}
  ssl_ctx& operator=(ssl_ctx other) noexcept {
    std::swap(ctx_, other.ctx_);
    return *this;
  }
  ~ssl_ctx() {
    if (ctx_ != nullptr) SSL_CTX_free(ctx_);
  }

  // Borrowed: valid while this value (or another reference) lives.
  [[nodiscard]] SSL_CTX* get() const noexcept { return ctx_; }
  explicit operator bool() const noexcept { return ctx_ != nullptr; }

 private:
  SSL_CTX* ctx_ = nullptr;
};

}  // namespace vaultwire::detail
