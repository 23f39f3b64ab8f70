// SHA-256 of short inputs (client tokens) for the keys of in-memory maps: the
// credential cache and the login throttle, once per new connection each.
//
// OpenSSL 3's EVP_Digest(…, EVP_sha256(), …) looks the implementation up and
// allocates a context on every call; here the algorithm is fetched once and each
// thread reuses one context: this runs on every new connection.
#pragma once

#include <array>
#include <string>
#include <string_view>

namespace vaultwire::detail {

using sha256_digest = std::array<unsigned char, 32>;

// Throws std::runtime_error when OpenSSL fails (no SHA-256 provider).
[[nodiscard]] sha256_digest sha256(std::string_view data);

// Lower-case hex, 64 characters.
[[nodiscard]] std::string to_hex(const sha256_digest& digest);

}  // namespace vaultwire::detail
