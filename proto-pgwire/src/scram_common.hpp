// What the SCRAM client (scram.cpp), the server (scram_server.cpp) and the stored
// verifier (scram_verifier.cpp) share: base64, the RFC 5802 attribute syntax and the
// SHA-256 primitives. Private to pgwire (not under include/).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/crypto.h>

#include "pgwire/scram.hpp"

namespace pgwire::detail {

inline constexpr std::string_view gs2_none = "n,,";
inline constexpr std::string_view gs2_client_only = "y,,";
inline constexpr std::string_view gs2_plus = "p=tls-server-end-point,,";
// Random bytes in a nonce before base64: libpq's and the backend's SCRAM_RAW_NONCE_LEN.
inline constexpr std::size_t raw_nonce_len = 18;

// A fixed buffer for one key-sized intermediate secret, wiped on scope exit.
struct key_buffer {
  unsigned char bytes[scram_key_len] = {};
  key_buffer() = default;
  key_buffer(const key_buffer&) = delete;
  key_buffer& operator=(const key_buffer&) = delete;
  ~key_buffer() { OPENSSL_cleanse(bytes, sizeof bytes); }
};

// ---- base64 (RFC 4648, with padding) ----

constexpr std::size_t base64_len(std::size_t n) { return (n + 2) / 3 * 4; }
// Writes base64_len(n) characters to out.
void base64_encode(const unsigned char* in, std::size_t n, char* out);
[[nodiscard]] std::string base64_encode(std::string_view in);
// Strict decoding: length a multiple of 4, only alphabet characters, '=' only as
// the last one or two characters. Appends to out; false on any violation.
[[nodiscard]] bool base64_decode(std::string_view in, std::string& out);

// ---- message syntax (RFC 5802 section 7) ----

// printable = %x21-2B / %x2D-7E  (no ','), at least one character.
[[nodiscard]] bool is_printable_nonce(std::string_view s) noexcept;
[[nodiscard]] bool is_alpha(char c) noexcept;
// Splits on ','; always at least one part.
[[nodiscard]] std::vector<std::string_view> split_attributes(std::string_view msg);
// The value of "<attr>=<value>", or false when `part` is not that attribute.
[[nodiscard]] bool attribute_value(std::string_view part, char attr, std::string_view& value) noexcept;
// A decimal count without sign or spaces, 1 ..= bound.
[[nodiscard]] bool parse_iterations(std::string_view s, std::uint32_t bound, std::uint32_t& out) noexcept;

// ---- crypto ----

[[nodiscard]] bool hmac_sha256(std::string_view key, std::string_view data,
                               unsigned char (&out)[scram_key_len]);
[[nodiscard]] bool sha256(std::string_view data, unsigned char (&out)[scram_key_len]);
// Hi(password, salt, i) of RFC 5802 (PBKDF2-HMAC-SHA-256, one block).
[[nodiscard]] bool salted_password(std::string_view password, std::string_view salt,
                                   std::uint32_t iterations, unsigned char (&out)[scram_key_len]);
[[nodiscard]] inline std::string_view as_view(const unsigned char (&bytes)[scram_key_len]) noexcept {
  return {reinterpret_cast<const char*>(bytes), scram_key_len};
}
// raw_nonce_len bytes of RAND_bytes, base64; empty when the generator fails.
[[nodiscard]] std::string random_nonce();

}  // namespace pgwire::detail
