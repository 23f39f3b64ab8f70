#include "pgwire/md5.hpp"

#include <cstddef>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>

#include "pgwire/errc.hpp"

namespace pgwire {
namespace {

constexpr std::size_t md5_len = 16;
constexpr std::size_t md5_hex_len = 2 * md5_len;

// Wipes a fixed buffer when the scope ends, whatever the exit path.
template <std::size_t N>
struct wiped_buffer {
  unsigned char bytes[N] = {};
  wiped_buffer() = default;
  wiped_buffer(const wiped_buffer&) = delete;
  wiped_buffer& operator=(const wiped_buffer&) = delete;
  ~wiped_buffer() { OPENSSL_cleanse(bytes, N); }
};

[[nodiscard]] bool md5_of(const EVP_MD* md, std::string_view a, std::string_view b,
                          unsigned char (&out)[md5_len]) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (ctx == nullptr) return false;
  unsigned int len = 0;
  const bool ok = EVP_DigestInit_ex(ctx, md, nullptr) == 1 &&
                  EVP_DigestUpdate(ctx, a.data(), a.size()) == 1 &&
                  EVP_DigestUpdate(ctx, b.data(), b.size()) == 1 &&
                  EVP_DigestFinal_ex(ctx, out, &len) == 1 && len == md5_len;
  EVP_MD_CTX_free(ctx);  // also wipes the digest state
  return ok;
}

void to_hex(const unsigned char (&in)[md5_len], char* out) {
  static constexpr char digits[] = "0123456789abcdef";
  for (std::size_t i = 0; i < md5_len; ++i) {
    out[2 * i] = digits[in[i] >> 4];
    out[2 * i + 1] = digits[in[i] & 0x0f];
  }
}

}  // namespace

boost::outcome_v2::std_result<secret_string> md5_password_response(
    std::string_view user, std::string_view password, std::array<std::uint8_t, 4> salt) {
  EVP_MD* md = EVP_MD_fetch(nullptr, "MD5", nullptr);
  if (md == nullptr) {
    ERR_clear_error();
    return make_error_code(errc::crypto_failure);
  }

  wiped_buffer<md5_len> digest;
  wiped_buffer<md5_hex_len> inner_hex;  // password-equivalent: md5(password + user)
  secret_string result(3 + md5_hex_len, '\0');

  const std::string_view salt_view(reinterpret_cast<const char*>(salt.data()), salt.size());
  bool ok = md5_of(md, password, user, digest.bytes);
  if (ok) {
    to_hex(digest.bytes, reinterpret_cast<char*>(inner_hex.bytes));
    ok = md5_of(md,
                std::string_view(reinterpret_cast<const char*>(inner_hex.bytes), md5_hex_len),
                salt_view, digest.bytes);
  }
  EVP_MD_free(md);
  if (!ok) {
    ERR_clear_error();
    return make_error_code(errc::crypto_failure);
  }

  char* out = result.data();
  out[0] = 'm';
  out[1] = 'd';
  out[2] = '5';
  to_hex(digest.bytes, out + 3);
  return result;
}

}  // namespace pgwire
