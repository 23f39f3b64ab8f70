#include "scram_common.hpp"

#include <algorithm>
#include <climits>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

namespace pgwire::detail {
namespace {

constexpr char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int base64_value(char c) noexcept {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

void base64_encode(const unsigned char* in, std::size_t n, char* out) {
  std::size_t o = 0;
  std::size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    const std::uint32_t v = (std::uint32_t{in[i]} << 16) | (std::uint32_t{in[i + 1]} << 8) | in[i + 2];
    out[o++] = b64_alphabet[(v >> 18) & 63];
    out[o++] = b64_alphabet[(v >> 12) & 63];
    out[o++] = b64_alphabet[(v >> 6) & 63];
    out[o++] = b64_alphabet[v & 63];
  }
  if (i < n) {
    std::uint32_t v = std::uint32_t{in[i]} << 16;
    if (i + 1 < n) v |= std::uint32_t{in[i + 1]} << 8;
    out[o++] = b64_alphabet[(v >> 18) & 63];
    out[o++] = b64_alphabet[(v >> 12) & 63];
    out[o++] = i + 1 < n ? b64_alphabet[(v >> 6) & 63] : '=';
    out[o++] = '=';
  }
}

std::string base64_encode(std::string_view in) {
  std::string out(base64_len(in.size()), '\0');
  base64_encode(reinterpret_cast<const unsigned char*>(in.data()), in.size(), out.data());
  return out;
}

bool base64_decode(std::string_view in, std::string& out) {
  if (in.size() % 4 != 0) return false;
  out.reserve(out.size() + in.size() / 4 * 3);
  for (std::size_t i = 0; i < in.size(); i += 4) {
    const bool last = i + 4 == in.size();
    int pad = 0;
    if (last && in[i + 3] == '=') pad = in[i + 2] == '=' ? 2 : 1;
    std::uint32_t v = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      int d = 0;
      if (k < 4 - static_cast<std::size_t>(pad)) {
        d = base64_value(in[i + k]);
        if (d < 0) return false;
      }
      v = (v << 6) | static_cast<std::uint32_t>(d);
    }
    out.push_back(static_cast<char>((v >> 16) & 0xff));
    if (pad < 2) out.push_back(static_cast<char>((v >> 8) & 0xff));
    if (pad < 1) out.push_back(static_cast<char>(v & 0xff));
  }
  return true;
}

bool is_printable_nonce(std::string_view s) noexcept {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x21 && c <= 0x7e && c != ','; });
}

bool is_alpha(char c) noexcept { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

std::vector<std::string_view> split_attributes(std::string_view msg) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = msg.find(',', start);
    if (comma == std::string_view::npos) {
      parts.push_back(msg.substr(start));
      return parts;
    }
    parts.push_back(msg.substr(start, comma - start));
    start = comma + 1;
  }
}

bool attribute_value(std::string_view part, char attr, std::string_view& value) noexcept {
  if (part.size() < 2 || part[0] != attr || part[1] != '=') return false;
  value = part.substr(2);
  return true;
}

bool parse_iterations(std::string_view s, std::uint32_t bound, std::uint32_t& out) noexcept {
  if (s.empty() || s.size() > 10) return false;
  std::uint64_t v = 0;
  for (const char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (v < 1 || v > bound) return false;
  out = static_cast<std::uint32_t>(v);
  return true;
}

bool hmac_sha256(std::string_view key, std::string_view data, unsigned char (&out)[scram_key_len]) {
  if (key.size() > INT_MAX) return false;
  unsigned int len = 0;
  const unsigned char* r =
      HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return r != nullptr && len == scram_key_len;
}

bool sha256(std::string_view data, unsigned char (&out)[scram_key_len]) {
  unsigned int len = 0;
  return EVP_Digest(data.data(), data.size(), out, &len, EVP_sha256(), nullptr) == 1 &&
         len == scram_key_len;
}

bool salted_password(std::string_view password, std::string_view salt, std::uint32_t iterations,
                     unsigned char (&out)[scram_key_len]) {
  if (password.size() > INT_MAX || salt.size() > INT_MAX || iterations < 1 || iterations > INT_MAX) {
    return false;
  }
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<const unsigned char*>(salt.data()),
                        static_cast<int>(salt.size()), static_cast<int>(iterations), EVP_sha256(),
                        static_cast<int>(scram_key_len), out) != 1) {
    ERR_clear_error();
    return false;
  }
  return true;
}

std::string random_nonce() {
  unsigned char raw[raw_nonce_len];
  if (RAND_bytes(raw, sizeof raw) != 1) {
    ERR_clear_error();
    return {};
  }
  std::string out(base64_len(sizeof raw), '\0');
  base64_encode(raw, sizeof raw, out.data());
  OPENSSL_cleanse(raw, sizeof raw);
  return out;
}

}  // namespace pgwire::detail
