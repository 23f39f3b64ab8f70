// SASLprep (RFC 4013) of a SCRAM password, applied the way PostgreSQL applies it
// (src/common/saslprep.c, src/interfaces/libpq/fe-auth-scram.c scram_init):
//
// - A password of ASCII bytes only (no byte >= 0x80) is used unchanged, control
//   characters included: it is not prepared at all.
// - Otherwise the password is prepared with the RFC 4013 stringprep profile
//   (ICU usprep, unassigned code points rejected). When that is impossible the
//   raw bytes are used instead, as libpq and the server both do: invalid UTF-8,
//   a prohibited character, a bidi violation, an unassigned code point, a result
//   that is empty after mapping, or any other preparation failure.
//
// Known difference: PostgreSQL checks the prohibited tables before NFKC and with
// a newer Unicode version for normalization; ICU checks after NFKC with the
// Unicode 3.2 data RFC 3454 specifies. The two agree on every realistic password.
#pragma once

#include <string_view>

#include "pgwire/secret.hpp"

namespace pgwire {

enum class saslprep_status {
  ascii,         // unchanged: ASCII only
  prepared,      // the prepared string (possibly equal to the input)
  invalid_utf8,  // raw bytes: not valid UTF-8
  prohibited,    // raw bytes: prohibited/unassigned character, bidi error, empty result
  failed,        // raw bytes: ICU could not run the profile (no data, no memory)
};

struct saslprep_result {
  secret_string password;  // the bytes to feed to PBKDF2
  saslprep_status status;
};

// Never fails: every failure falls back to the raw bytes, as PostgreSQL does.
// Intermediate UTF-16 buffers are wiped; ICU's internal scratch buffers are not
// under our control.
[[nodiscard]] saslprep_result saslprep(std::string_view password);

}  // namespace pgwire
