#include "pgwire/scram_server.hpp"

#include <algorithm>
#include <utility>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "pgwire/errc.hpp"
#include "pgwire/sqlstate.hpp"
#include "scram_common.hpp"

namespace pgwire {
namespace {

using boost::outcome_v2::std_result;

// "p=tls-server-end-point" without the two commas: the only channel-binding type
// PostgreSQL (and this server) takes.
constexpr std::string_view cbind_type = "tls-server-end-point";

// attr-val = ALPHA "=" value. PostgreSQL's read_any_attr takes an empty value too.
bool is_client_extension(std::string_view part) noexcept {
  return part.size() >= 2 && detail::is_alpha(part[0]) && part[1] == '=';
}

// The client-first-message-bare: [reserved-mext ","] username "," nonce ["," extensions].
std::error_code read_first_bare(std::string_view bare, std::string& client_nonce) {
  const auto malformed = make_error_code(errc::scram_malformed_client_first);
  // Any mandatory extension: PostgreSQL fails at once (RFC 5802 allows it) rather than
  // with e=extensions-not-supported in the server-final-message.
  if (bare.starts_with('m')) return make_error_code(errc::scram_extension_unsupported);
  const std::vector<std::string_view> parts = detail::split_attributes(bare);
  std::string_view value;
  if (!detail::attribute_value(parts[0], 'n', value)) return malformed;
  // PostgreSQL also takes an empty nonce (is_scram_printable of ""); an empty client
  // nonce leaves the exchange's freshness to the server alone, so it is refused here.
  if (parts.size() < 2 || !detail::attribute_value(parts[1], 'r', value) ||
      !detail::is_printable_nonce(value)) {
    return malformed;
  }
  for (std::size_t i = 2; i < parts.size(); ++i) {
    if (!is_client_extension(parts[i])) return malformed;
  }
  client_nonce.assign(value.data(), value.size());
  return {};
}

// The parts of a client-final-message: c=, r=, [extensions,] p=, nothing after.
struct client_final_parts {
  std::string_view channel_binding;
  std::string_view nonce;
  std::string_view proof;
  std::string_view without_proof;
};

std::error_code split_client_final(std::string_view message, client_final_parts& out) {
  const auto malformed = make_error_code(errc::scram_malformed_client_final);
  if (message.empty() || message.find('\0') != std::string_view::npos) return malformed;
  const std::vector<std::string_view> parts = detail::split_attributes(message);
  if (parts.size() < 3 || !detail::attribute_value(parts[0], 'c', out.channel_binding) ||
      !detail::attribute_value(parts[1], 'r', out.nonce) ||
      !detail::attribute_value(parts.back(), 'p', out.proof)) {
    return malformed;
  }
  // PostgreSQL reads extensions up to the first p= and wants the end of the message
  // right after it: an extension named p is a second proof.
  for (std::size_t i = 2; i + 1 < parts.size(); ++i) {
    if (!is_client_extension(parts[i]) || parts[i][0] == 'p') return malformed;
  }
  out.without_proof = message.substr(0, message.size() - parts.back().size() - 1);
  return {};
}

}  // namespace

std_result<secret_string> make_scram_mock_secret() {
  secret_string secret(scram_mock_secret_len, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(secret.data()), static_cast<int>(secret.size())) != 1) {
    ERR_clear_error();
    return make_error_code(errc::crypto_failure);
  }
  return secret;
}

std_result<std::string> scram_mock_salt(std::string_view user, const secret_string& mock_secret) {
  // auth-scram.c scram_mock_salt: SHA-256 over the user name, then the nonce.
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  const bool ok = ctx != nullptr && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) == 1 &&
                  EVP_DigestUpdate(ctx, user.data(), user.size()) == 1 &&
                  EVP_DigestUpdate(ctx, mock_secret.view().data(), mock_secret.size()) == 1 &&
                  EVP_DigestFinal_ex(ctx, digest, &len) == 1 && len >= scram_salt_len;
  EVP_MD_CTX_free(ctx);
  if (!ok) {
    ERR_clear_error();
    return make_error_code(errc::crypto_failure);
  }
  std::string salt(reinterpret_cast<const char*>(digest), scram_salt_len);
  OPENSSL_cleanse(digest, sizeof digest);
  return salt;
}

std::string_view scram_server_sqlstate(const std::error_code& ec) noexcept {
  if (ec.category() != error_category()) return sqlstate::internal_error;
  switch (static_cast<errc>(ec.value())) {
    case errc::scram_invalid_proof: return sqlstate::invalid_password;
    case errc::scram_channel_binding_downgrade:
    case errc::scram_channel_binding_mismatch: return sqlstate::invalid_authorization_specification;
    case errc::scram_authzid_unsupported:
    case errc::scram_extension_unsupported: return sqlstate::feature_not_supported;
    case errc::scram_malformed_client_first:
    case errc::scram_malformed_client_final:
    case errc::scram_final_nonce_mismatch:
    case errc::scram_mechanism_not_offered:
    case errc::scram_bad_state: return sqlstate::protocol_violation;
    default: return sqlstate::internal_error;
  }
}

scram_server::scram_server(scram_verifier verifier, scram_server_options options)
    : options_(std::move(options)), verifier_(std::move(verifier)) {}

std_result<scram_server> scram_server::mock(std::string_view user, const secret_string& mock_secret,
                                            scram_server_options options, std::uint32_t iterations) {
  if (iterations < 1 || iterations > scram_max_iterations_limit) {
    return make_error_code(errc::scram_bad_iterations);
  }
  auto salt = scram_mock_salt(user, mock_secret);
  if (!salt) return salt.error();
  // auth-scram.c mock_scram_secret: StoredKey and ServerKey are zeros; the exchange
  // is doomed whatever the proof.
  scram_verifier v;
  v.iterations = iterations;
  v.salt = std::move(salt).value();
  v.stored_key = secret_string(scram_key_len, '\0');
  v.server_key = secret_string(scram_key_len, '\0');
  scram_server s(std::move(v), std::move(options));
  s.mock_ = true;
  return s;
}

std::vector<std::string_view> scram_server::mechanisms() const {
  if (options_.cert_hash.empty()) return {scram_sha_256_name};
  return {scram_sha_256_plus_name, scram_sha_256_name};
}

std_result<void> scram_server::select_mechanism(std::string_view mechanism) {
  if (state_ != state::initial) {
    state_ = state::failed;
    return make_error_code(errc::scram_bad_state);
  }
  state_ = state::failed;  // until this step succeeds
  if (!verifier_.valid()) return make_error_code(errc::scram_bad_verifier);
  if (mechanism == scram_sha_256_plus_name && !options_.cert_hash.empty()) {
    plus_ = true;
  } else if (mechanism != scram_sha_256_name) {
    return make_error_code(errc::scram_mechanism_not_offered);
  }
  state_ = state::mechanism_selected;
  return boost::outcome_v2::success();
}

// gs2-header = gs2-cbind-flag "," [ authzid ] ","; the checks and their order follow
// auth-scram.c read_client_first_message.
std::error_code scram_server::read_gs2_header(std::string_view message, std::size_t& bare_at) {
  const auto malformed = make_error_code(errc::scram_malformed_client_first);
  std::size_t pos = 0;
  cbind_flag_ = message[0];
  switch (cbind_flag_) {
    case 'n':
    case 'y':
      if (plus_) return malformed;  // chose PLUS, then sends no binding data
      // "y": the client thinks the server cannot bind. When it can, something
      // between them removed SCRAM-SHA-256-PLUS from the list (RFC 5802 section 6).
      if (cbind_flag_ == 'y' && !options_.cert_hash.empty()) {
        return make_error_code(errc::scram_channel_binding_downgrade);
      }
      if (message.size() < 2 || message[1] != ',') return malformed;
      pos = 2;
      break;
    case 'p': {
      if (!plus_) return malformed;  // chose SCRAM-SHA-256, then sends binding data
      const std::size_t comma = message.find(',');
      if (comma == std::string_view::npos || message.substr(0, 2) != "p=" ||
          message.substr(2, comma - 2) != cbind_type) {
        return malformed;
      }
      pos = comma + 1;
      break;
    }
    default: return malformed;
  }
  if (pos < message.size() && message[pos] == 'a') return make_error_code(errc::scram_authzid_unsupported);
  if (pos >= message.size() || message[pos] != ',') return malformed;
  bare_at = pos + 1;
  return {};
}

std_result<std::string> scram_server::on_client_first(std::string_view client_first) {
  if (state_ != state::mechanism_selected) {
    state_ = state::failed;
    return make_error_code(errc::scram_bad_state);
  }
  state_ = state::failed;  // until this step succeeds
  if (client_first.empty() || client_first.find('\0') != std::string_view::npos) {
    return make_error_code(errc::scram_malformed_client_first);
  }
  std::size_t bare_at = 0;
  if (const std::error_code ec = read_gs2_header(client_first, bare_at)) return ec;
  const std::string_view bare = client_first.substr(bare_at);
  if (const std::error_code ec = read_first_bare(bare, client_nonce_)) return ec;

  server_nonce_ = options_.nonce_source ? options_.nonce_source() : detail::random_nonce();
  if (!detail::is_printable_nonce(server_nonce_)) return make_error_code(errc::crypto_failure);

  client_first_bare_.assign(bare.data(), bare.size());
  server_first_ = "r=";
  server_first_ += client_nonce_;
  server_first_ += server_nonce_;
  server_first_ += ",s=";
  server_first_ += detail::base64_encode(verifier_.salt);
  server_first_ += ",i=";
  server_first_ += std::to_string(verifier_.iterations);
  state_ = state::first_sent;
  return server_first_;
}

std::error_code scram_server::check_channel_binding(std::string_view value) const {
  if (plus_) {
    // cbind-input = gs2-header cbind-data, base64 (auth-scram.c read_client_final_message).
    std::string input(detail::gs2_plus);
    input.append(reinterpret_cast<const char*>(options_.cert_hash.data()), options_.cert_hash.size());
    if (value != detail::base64_encode(input)) return make_error_code(errc::scram_channel_binding_mismatch);
    return {};
  }
  // Without PLUS the gs2 header the client-first carried: "biws" is "n,,", "eSws" "y,,".
  // PostgreSQL calls any other value a protocol violation.
  const std::string_view header = cbind_flag_ == 'y' ? detail::gs2_client_only : detail::gs2_none;
  if (value != detail::base64_encode(header)) return make_error_code(errc::scram_malformed_client_final);
  return {};
}

// RFC 5802 section 3. The same work for a mock exchange (zero keys) as for a real
// one, and the doomed flag checked only after the comparison, as auth-scram.c does,
// so timing does not tell an unknown user from a wrong password.
std::error_code scram_server::verify_proof(std::string_view proof_b64, std::string_view auth_message,
                                           std::string& server_final) const {
  std::string proof;
  const bool decoded = detail::base64_decode(proof_b64, proof) && proof.size() == scram_key_len;
  detail::key_buffer client_proof;
  if (decoded) std::copy(proof.begin(), proof.end(), client_proof.bytes);
  cleanse_string(proof);
  if (!decoded) return make_error_code(errc::scram_malformed_client_final);

  detail::key_buffer client_signature;
  detail::key_buffer client_key;
  detail::key_buffer computed_stored_key;
  if (!detail::hmac_sha256(verifier_.stored_key.view(), auth_message, client_signature.bytes)) {
    ERR_clear_error();
    return make_error_code(errc::crypto_failure);
  }
  for (std::size_t i = 0; i < scram_key_len; ++i) {
    client_key.bytes[i] = static_cast<unsigned char>(client_proof.bytes[i] ^ client_signature.bytes[i]);
  }
  if (!detail::sha256(detail::as_view(client_key.bytes), computed_stored_key.bytes)) {
    ERR_clear_error();
    return make_error_code(errc::crypto_failure);
  }
  const bool match =
      CRYPTO_memcmp(computed_stored_key.bytes, verifier_.stored_key.view().data(), scram_key_len) == 0;
  if (!match || mock_) return make_error_code(errc::scram_invalid_proof);

  detail::key_buffer server_signature;
  if (!detail::hmac_sha256(verifier_.server_key.view(), auth_message, server_signature.bytes)) {
    ERR_clear_error();
    return make_error_code(errc::crypto_failure);
  }
  server_final = "v=";
  char encoded[detail::base64_len(scram_key_len)];
  detail::base64_encode(server_signature.bytes, scram_key_len, encoded);
  server_final.append(encoded, sizeof encoded);
  return {};
}

std_result<std::string> scram_server::on_client_final(std::string_view client_final) {
  if (state_ != state::first_sent) {
    state_ = state::failed;
    return make_error_code(errc::scram_bad_state);
  }
  state_ = state::failed;  // until the proof holds
  client_final_parts parts;
  if (const std::error_code ec = split_client_final(client_final, parts)) return ec;
  if (const std::error_code ec = check_channel_binding(parts.channel_binding)) return ec;
  // auth-scram.c verify_final_nonce: exactly the client's nonce then ours. Nonces are
  // not secrets: an ordinary comparison.
  if (parts.nonce.size() != client_nonce_.size() + server_nonce_.size() ||
      !parts.nonce.starts_with(client_nonce_) || !parts.nonce.ends_with(server_nonce_)) {
    return make_error_code(errc::scram_final_nonce_mismatch);
  }

  std::string auth_message;
  auth_message.reserve(client_first_bare_.size() + server_first_.size() + parts.without_proof.size() + 2);
  auth_message += client_first_bare_;
  auth_message += ',';
  auth_message += server_first_;
  auth_message += ',';
  auth_message += parts.without_proof;

  std::string server_final;
  if (const std::error_code ec = verify_proof(parts.proof, auth_message, server_final)) return ec;
  state_ = state::done;
  return server_final;
}

}  // namespace pgwire
