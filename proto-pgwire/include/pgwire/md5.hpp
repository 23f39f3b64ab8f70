// The response to AuthenticationMD5Password.
// https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-START-UP
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include <boost/outcome/std_result.hpp>

#include "pgwire/secret.hpp"

namespace pgwire {

// "md5" + hex(md5(hex(md5(password + user)) + salt)), lower-case hex, 35 bytes.
// The result is what a PasswordMessage carries (without the NUL terminator).
// Fails with errc::crypto_failure when OpenSSL cannot compute MD5 (e.g. a FIPS
// provider without it). Every intermediate buffer is wiped.
[[nodiscard]] boost::outcome_v2::std_result<secret_string> md5_password_response(
    std::string_view user, std::string_view password, std::array<std::uint8_t, 4> salt);

}  // namespace pgwire
