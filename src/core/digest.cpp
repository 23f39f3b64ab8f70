#include "core/digest.hpp"

#include <openssl/evp.h>

#include <stdexcept>

namespace vaultwire::detail {

namespace {

struct thread_context {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~thread_context() { EVP_MD_CTX_free(ctx); }
  thread_context() = default;
  thread_context(const thread_context&) = delete;
  thread_context& operator=(const thread_context&) = delete;
};

}  // namespace

sha256_digest sha256(std::string_view data) {
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  thread_local thread_context t;
  sha256_digest out{};
  unsigned int len = 0;
  if (md == nullptr || t.ctx == nullptr || EVP_DigestInit_ex2(t.ctx, md, nullptr) != 1 ||
      EVP_DigestUpdate(t.ctx, data.data(), data.size()) != 1 || EVP_DigestFinal_ex(t.ctx, out.data(), &len) != 1 ||
      len != out.size()) {
    throw std::runtime_error("SHA-256 failed");
  }
  return out;
}

std::string to_hex(const sha256_digest& digest) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(digest.size() * 2);
  for (const unsigned char b : digest) {
    out += hex[b >> 4];
    out += hex[b & 0xf];
  }
  return out;
}

}  // namespace vaultwire::detail
