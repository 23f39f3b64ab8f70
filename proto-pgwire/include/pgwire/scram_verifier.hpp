// A SCRAM-SHA-256 verifier in PostgreSQL's stored form (what pg_authid.rolpassword
// holds, the "SCRAM secret"):
//
//   SCRAM-SHA-256$<iterations>:<salt base64>$<StoredKey base64>:<ServerKey base64>
//
// as PostgreSQL writes it (src/common/scram-common.c scram_build_secret) and reads it
// (src/backend/libpq/auth-scram.c parse_scram_secret); base64 with padding.
// https://www.postgresql.org/docs/current/auth-password.html
//
// It is not the password, but it is a secret all the same: StoredKey and one
// observed exchange give ClientKey (a login without the password), and ServerKey
// lets its holder pose as the server. Both keys live in secret_string, and the
// text form is returned as one.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <boost/outcome/std_result.hpp>

#include "pgwire/scram.hpp"
#include "pgwire/secret.hpp"

namespace pgwire {

// PostgreSQL's default scram_iterations.
inline constexpr std::uint32_t scram_default_iterations = 4096;
// PostgreSQL's SCRAM_DEFAULT_SALT_LEN.
inline constexpr std::size_t scram_salt_len = 16;

struct scram_verifier {
  std::uint32_t iterations = 0;  // 1 ..= scram_max_iterations_limit
  std::string salt;              // the decoded bytes, never empty; not a secret (clients see it)
  secret_string stored_key;      // H(ClientKey), scram_key_len bytes
  secret_string server_key;      // HMAC(SaltedPassword, "Server Key"), scram_key_len bytes

  [[nodiscard]] scram_verifier clone() const;
  // The stored form above.
  [[nodiscard]] secret_string format() const;
  // Whether the fields have the sizes and ranges above (parse and make guarantee it).
  [[nodiscard]] bool valid() const noexcept;
};

// Reads the stored form. Stricter than PostgreSQL's parse_scram_secret, which takes
// any strtol() number and an empty salt: here the iteration count is decimal digits
// only (1 ..= scram_max_iterations_limit), the salt non-empty, the base64 canonical,
// and each key exactly 32 bytes. Every verifier PostgreSQL writes passes.
// Errors: scram_bad_verifier (which part is wrong is not said: the text is a secret
// and the fix is the same, make a new one).
[[nodiscard]] boost::outcome_v2::std_result<scram_verifier> parse_scram_verifier(std::string_view text);

// Builds a verifier from a password the way PostgreSQL's pg_be_scram_build_secret
// does: SASLprep (saslprep.hpp; the raw bytes when it fails), then
// SaltedPassword = Hi(password, salt, iterations), StoredKey = H(HMAC(SaltedPassword,
// "Client Key")), ServerKey = HMAC(SaltedPassword, "Server Key"). An empty `salt`
// means scram_salt_len bytes from RAND_bytes; tests pass one to get known answers.
// Errors: scram_bad_iterations (0 or over scram_max_iterations_limit),
// crypto_failure. The prepared password and SaltedPassword are wiped.
[[nodiscard]] boost::outcome_v2::std_result<scram_verifier> make_scram_verifier(
    std::string_view password, std::uint32_t iterations = scram_default_iterations,
    std::string_view salt = {});
[[nodiscard]] boost::outcome_v2::std_result<scram_verifier> make_scram_verifier(
    const secret_string& password, std::uint32_t iterations = scram_default_iterations,
    std::string_view salt = {});

}  // namespace pgwire
