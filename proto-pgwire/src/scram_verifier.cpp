#include "pgwire/scram_verifier.hpp"

#include <string>
#include <utility>

#include <openssl/err.h>
#include <openssl/rand.h>

#include "pgwire/errc.hpp"
#include "pgwire/saslprep.hpp"
#include "scram_common.hpp"

namespace pgwire {
namespace {

using boost::outcome_v2::std_result;

constexpr std::string_view scheme = "SCRAM-SHA-256$";

// Decodes one base64 key into a secret; false unless it is exactly scram_key_len bytes.
bool decode_key(std::string_view b64, secret_string& out) {
  std::string bytes;
  const bool ok = detail::base64_decode(b64, bytes) && bytes.size() == scram_key_len;
  if (ok) out = secret_string(std::move(bytes));
  cleanse_string(bytes);
  return ok;
}

// Appends the base64 of a key; nothing for a key of the wrong size (valid() is false).
void append_key(secret_string& out, const secret_string& key) {
  if (key.size() != scram_key_len) return;
  char encoded[detail::base64_len(scram_key_len)];
  detail::base64_encode(reinterpret_cast<const unsigned char*>(key.view().data()), key.size(), encoded);
  out.append(std::string_view(encoded, sizeof encoded));
  OPENSSL_cleanse(encoded, sizeof encoded);
}

}  // namespace

scram_verifier scram_verifier::clone() const {
  return {iterations, salt, stored_key.clone(), server_key.clone()};
}

bool scram_verifier::valid() const noexcept {
  return iterations >= 1 && iterations <= scram_max_iterations_limit && !salt.empty() &&
         stored_key.size() == scram_key_len && server_key.size() == scram_key_len;
}

// The layout of scram-common.c scram_build_secret: "SCRAM-SHA-256$%d:" salt '$'
// StoredKey ':' ServerKey.
secret_string scram_verifier::format() const {
  secret_string out;
  const std::string count = std::to_string(iterations);
  const std::string salt_b64 = detail::base64_encode(salt);
  out.reserve(scheme.size() + count.size() + salt_b64.size() + 2 +
              2 * detail::base64_len(scram_key_len) + 1);
  out.append(scheme);
  out.append(count);
  out.append(':');
  out.append(salt_b64);
  out.append('$');
  append_key(out, stored_key);
  out.append(':');
  append_key(out, server_key);
  return out;
}

std_result<scram_verifier> parse_scram_verifier(std::string_view text) {
  const auto bad = make_error_code(errc::scram_bad_verifier);
  if (!text.starts_with(scheme)) return bad;
  text.remove_prefix(scheme.size());

  const auto colon = text.find(':');
  const auto dollar = text.find('$');
  if (colon == std::string_view::npos || dollar == std::string_view::npos || dollar < colon) return bad;
  const std::string_view count = text.substr(0, colon);
  const std::string_view salt_b64 = text.substr(colon + 1, dollar - colon - 1);
  const std::string_view keys = text.substr(dollar + 1);
  const auto key_colon = keys.find(':');
  if (key_colon == std::string_view::npos) return bad;

  scram_verifier v;
  if (!detail::parse_iterations(count, scram_max_iterations_limit, v.iterations)) return bad;
  if (!detail::base64_decode(salt_b64, v.salt) || v.salt.empty()) return bad;
  // base64 has no ':' or '$', so a third field or a stray separator fails to decode.
  if (!decode_key(keys.substr(0, key_colon), v.stored_key) ||
      !decode_key(keys.substr(key_colon + 1), v.server_key)) {
    return bad;
  }
  return v;
}

std_result<scram_verifier> make_scram_verifier(std::string_view password, std::uint32_t iterations,
                                               std::string_view salt) {
  if (iterations < 1 || iterations > scram_max_iterations_limit) {
    return make_error_code(errc::scram_bad_iterations);
  }
  scram_verifier v;
  v.iterations = iterations;
  if (salt.empty()) {
    v.salt.assign(scram_salt_len, '\0');
    if (RAND_bytes(reinterpret_cast<unsigned char*>(v.salt.data()), static_cast<int>(v.salt.size())) != 1) {
      ERR_clear_error();
      return make_error_code(errc::crypto_failure);
    }
  } else {
    v.salt.assign(salt.data(), salt.size());
  }

  // pg_saslprep, falling back to the raw password (auth-scram.c pg_be_scram_build_secret).
  const secret_string prepared = saslprep(password).password;
  detail::key_buffer salted;
  detail::key_buffer client_key;
  detail::key_buffer stored_key;
  detail::key_buffer server_key;
  if (!detail::salted_password(prepared.view(), v.salt, iterations, salted.bytes) ||
      !detail::hmac_sha256(detail::as_view(salted.bytes), "Client Key", client_key.bytes) ||
      !detail::sha256(detail::as_view(client_key.bytes), stored_key.bytes) ||
      !detail::hmac_sha256(detail::as_view(salted.bytes), "Server Key", server_key.bytes)) {
    ERR_clear_error();
    return make_error_code(errc::crypto_failure);
  }
  v.stored_key = secret_string(detail::as_view(stored_key.bytes));
  v.server_key = secret_string(detail::as_view(server_key.bytes));
  return v;
}

std_result<scram_verifier> make_scram_verifier(const secret_string& password, std::uint32_t iterations,
                                               std::string_view salt) {
  return make_scram_verifier(password.view(), iterations, salt);
}

}  // namespace pgwire
