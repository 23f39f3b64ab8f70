#include "pgwire/scram.hpp"

#include <algorithm>
#include <climits>
#include <utility>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>

#include "pgwire/errc.hpp"
#include "pgwire/saslprep.hpp"
#include "scram_common.hpp"

namespace pgwire {
namespace {

using boost::outcome_v2::std_result;
using detail::as_view;
using detail::attribute_value;
using detail::base64_decode;
using detail::base64_encode;
using detail::base64_len;
using detail::gs2_client_only;
using detail::gs2_none;
using detail::gs2_plus;
using detail::hmac_sha256;
using detail::is_alpha;
using detail::is_printable_nonce;
using detail::key_buffer;
using detail::parse_iterations;
using detail::sha256;
using detail::split_attributes;

constexpr std::size_t max_server_error_len = 256;

// attr-val = ALPHA "=" value, value non-empty (optional extensions).
bool is_extension(std::string_view part) noexcept {
  return part.size() >= 3 && is_alpha(part[0]) && part[1] == '=';
}

// saslname: ',' -> "=2C", '=' -> "=3D".
std::string escape_saslname(std::string_view user) {
  std::string out;
  out.reserve(user.size());
  for (const char c : user) {
    if (c == ',') out += "=2C";
    else if (c == '=') out += "=3D";
    else out += c;
  }
  return out;
}

std::string_view gs2_header(scram_channel_binding binding) noexcept {
  switch (binding) {
    case scram_channel_binding::none_supported: return gs2_none;
    case scram_channel_binding::client_supports_server_not: return gs2_client_only;
    case scram_channel_binding::tls_server_end_point: return gs2_plus;
  }
  return gs2_none;
}

template <class String>
std_result<scram_channel_binding> choose(std::span<const String> offered, bool tls_in_use,
                                         bool have_cert_hash, channel_binding_mode mode) {
  const auto offers = [&](std::string_view name) {
    return std::any_of(offered.begin(), offered.end(),
                       [&](const String& m) { return std::string_view(m) == name; });
  };
  const bool plus = offers(scram_sha_256_plus_name);
  const bool plain = offers(scram_sha_256_name);
  if (plus && !tls_in_use) return make_error_code(errc::scram_mechanism_unsupported);
  if (plus && have_cert_hash && mode != channel_binding_mode::disable) {
    return scram_channel_binding::tls_server_end_point;
  }
  if (mode == channel_binding_mode::require || !plain) {
    return make_error_code(errc::scram_mechanism_unsupported);
  }
  if (tls_in_use && !plus && mode != channel_binding_mode::disable) {
    return scram_channel_binding::client_supports_server_not;
  }
  return scram_channel_binding::none_supported;
}

}  // namespace

std::string_view scram_mechanism_name(scram_channel_binding binding) noexcept {
  return binding == scram_channel_binding::tls_server_end_point ? scram_sha_256_plus_name
                                                                 : scram_sha_256_name;
}

std_result<scram_channel_binding> choose_scram_mechanism(std::span<const std::string_view> offered,
                                                         bool tls_in_use, bool have_cert_hash,
                                                         channel_binding_mode mode) {
  return choose(offered, tls_in_use, have_cert_hash, mode);
}

std_result<scram_channel_binding> choose_scram_mechanism(std::span<const std::string> offered,
                                                         bool tls_in_use, bool have_cert_hash,
                                                         channel_binding_mode mode) {
  return choose(offered, tls_in_use, have_cert_hash, mode);
}

std_result<std::vector<std::uint8_t>> tls_server_end_point_hash(std::span<const std::uint8_t> der,
                                                                int signature_digest_nid) {
  const EVP_MD* md = nullptr;
  if (signature_digest_nid == NID_md5 || signature_digest_nid == NID_sha1) {
    md = EVP_sha256();  // RFC 5929 section 4.1
  } else {
    md = EVP_get_digestbynid(signature_digest_nid);
  }
  if (md == nullptr) {
    ERR_clear_error();
    return make_error_code(errc::scram_mechanism_unsupported);
  }
  std::vector<std::uint8_t> out(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  if (EVP_Digest(der.data(), der.size(), out.data(), &len, md, nullptr) != 1) {
    ERR_clear_error();
    return make_error_code(errc::crypto_failure);
  }
  out.resize(len);
  return out;
}

std_result<std::vector<std::uint8_t>> tls_server_end_point_hash(std::span<const std::uint8_t> der) {
  if (der.empty() || der.size() > static_cast<std::size_t>(LONG_MAX)) {
    return make_error_code(errc::crypto_failure);
  }
  const unsigned char* p = der.data();
  X509* cert = d2i_X509(nullptr, &p, static_cast<long>(der.size()));
  if (cert == nullptr) {
    ERR_clear_error();
    return make_error_code(errc::crypto_failure);
  }
  const bool whole = static_cast<std::size_t>(p - der.data()) == der.size();
  int digest_nid = NID_undef;
  const bool known = OBJ_find_sigid_algs(X509_get_signature_nid(cert), &digest_nid, nullptr) == 1;
  X509_free(cert);
  if (!whole) return make_error_code(errc::crypto_failure);
  if (!known || digest_nid == NID_undef) {
    ERR_clear_error();
    return make_error_code(errc::scram_mechanism_unsupported);
  }
  return tls_server_end_point_hash(der, digest_nid);
}

scram_keys scram_keys::clone() const {
  return {salted_password.clone(), client_key.clone(), server_key.clone()};
}

scram_client::scram_client(std::string_view password, scram_options options)
    : options_(std::move(options)), password_(saslprep(password).password) {}

scram_client::scram_client(const secret_string& password, scram_options options)
    : scram_client(password.view(), std::move(options)) {}

std::string_view scram_client::mechanism() const noexcept {
  return scram_mechanism_name(options_.channel_binding);
}

std_result<std::string> scram_client::client_first() {
  if (state_ != state::initial) {
    state_ = state::failed;
    return make_error_code(errc::scram_bad_state);
  }
  state_ = state::failed;  // until this step succeeds
  if (options_.channel_binding == scram_channel_binding::tls_server_end_point &&
      options_.cert_hash.empty()) {
    return make_error_code(errc::scram_mechanism_unsupported);
  }
  client_nonce_ = options_.nonce_source ? options_.nonce_source() : detail::random_nonce();
  if (!is_printable_nonce(client_nonce_)) return make_error_code(errc::crypto_failure);

  client_first_bare_ = "n=" + escape_saslname(options_.user) + ",r=" + client_nonce_;
  std::string message(gs2_header(options_.channel_binding));
  message += client_first_bare_;
  state_ = state::first_sent;
  return message;
}

std::string scram_client::channel_binding_attribute() const {
  std::string input(gs2_header(options_.channel_binding));
  if (options_.channel_binding == scram_channel_binding::tls_server_end_point) {
    input.append(reinterpret_cast<const char*>(options_.cert_hash.data()), options_.cert_hash.size());
  }
  return "c=" + base64_encode(input);
}

bool scram_client::cached_keys_match() const noexcept {
  return has_cached_keys_ && cached_iterations_ == iterations_ && cached_salt_ == salt_ &&
         cached_keys_.salted_password.size() == scram_key_len && cached_keys_.client_key.size() == scram_key_len &&
         cached_keys_.server_key.size() == scram_key_len;
}

std::error_code scram_client::derive_keys() {
  if (cached_keys_match()) {
    keys_ = std::move(cached_keys_);
    used_cached_keys_ = true;
    return {};
  }
  if (password_.size() > INT_MAX || salt_.size() > INT_MAX || iterations_ > INT_MAX) {
    return make_error_code(errc::crypto_failure);
  }
  secret_string salted(scram_key_len, '\0');
  if (PKCS5_PBKDF2_HMAC(password_.view().data(), static_cast<int>(password_.size()),
                        reinterpret_cast<const unsigned char*>(salt_.data()),
                        static_cast<int>(salt_.size()), static_cast<int>(iterations_),
                        EVP_sha256(), static_cast<int>(scram_key_len),
                        reinterpret_cast<unsigned char*>(salted.data())) != 1) {
    ERR_clear_error();
    return make_error_code(errc::crypto_failure);
  }
  key_buffer client_key;
  key_buffer server_key;
  if (!hmac_sha256(salted.view(), "Client Key", client_key.bytes) ||
      !hmac_sha256(salted.view(), "Server Key", server_key.bytes)) {
    ERR_clear_error();
    return make_error_code(errc::crypto_failure);
  }
  keys_.salted_password = std::move(salted);
  keys_.client_key = secret_string(as_view(client_key.bytes));
  keys_.server_key = secret_string(as_view(server_key.bytes));
  return {};
}

std_result<secret_string> scram_client::build_client_final(std::string_view server_first,
                                                           std::string_view server_nonce) {
  std::string without_proof = channel_binding_attribute();
  without_proof += ",r=";
  without_proof += server_nonce;

  std::string auth_message;
  auth_message.reserve(client_first_bare_.size() + server_first.size() + without_proof.size() + 2);
  auth_message += client_first_bare_;
  auth_message += ',';
  auth_message += server_first;
  auth_message += ',';
  auth_message += without_proof;

  key_buffer stored_key;
  key_buffer client_signature;
  key_buffer proof;
  key_buffer server_signature;
  if (!sha256(keys_.client_key.view(), stored_key.bytes) ||
      !hmac_sha256(as_view(stored_key.bytes), auth_message, client_signature.bytes) ||
      !hmac_sha256(keys_.server_key.view(), auth_message, server_signature.bytes)) {
    ERR_clear_error();
    return make_error_code(errc::crypto_failure);
  }
  const std::string_view client_key = keys_.client_key.view();
  for (std::size_t i = 0; i < scram_key_len; ++i) {
    proof.bytes[i] = static_cast<unsigned char>(static_cast<unsigned char>(client_key[i]) ^
                                                client_signature.bytes[i]);
  }
  expected_server_signature_ = secret_string(as_view(server_signature.bytes));

  char encoded[base64_len(scram_key_len)];
  base64_encode(proof.bytes, scram_key_len, encoded);
  secret_string message;
  message.reserve(without_proof.size() + 3 + sizeof encoded);
  message.append(without_proof);
  message.append(",p=");
  message.append(std::string_view(encoded, sizeof encoded));
  OPENSSL_cleanse(encoded, sizeof encoded);
  return message;
}

std_result<secret_string> scram_client::on_server_first(std::string_view server_first) {
  auto read = read_server_first(server_first);
  if (!read) return read.error();
  return finish_server_first();
}

std_result<bool> scram_client::read_server_first(std::string_view server_first) {
  if (state_ != state::first_sent) {
    state_ = state::failed;
    return make_error_code(errc::scram_bad_state);
  }
  state_ = state::failed;  // until this step succeeds
  const auto malformed = make_error_code(errc::scram_malformed_server_first);
  if (server_first.find('\0') != std::string_view::npos) return malformed;
  // reserved-mext "m=": a mandatory extension this client cannot know.
  if (server_first.starts_with("m=")) return malformed;

  const std::vector<std::string_view> parts = split_attributes(server_first);
  std::string_view nonce;
  if (!attribute_value(parts[0], 'r', nonce) || !is_printable_nonce(nonce)) return malformed;
  if (nonce.size() <= client_nonce_.size() ||
      CRYPTO_memcmp(nonce.data(), client_nonce_.data(), client_nonce_.size()) != 0) {
    return make_error_code(errc::scram_nonce_mismatch);
  }

  std::string_view salt_b64;
  if (parts.size() < 2 || !attribute_value(parts[1], 's', salt_b64)) return malformed;
  std::string salt;
  if (salt_b64.empty() || !base64_decode(salt_b64, salt) || salt.empty()) {
    return make_error_code(errc::scram_bad_salt);
  }

  std::string_view iterations_text;
  if (parts.size() < 3 || !attribute_value(parts[2], 'i', iterations_text)) return malformed;
  std::uint32_t iterations = 0;
  const std::uint32_t bound = std::min(options_.max_iterations, scram_max_iterations_limit);
  if (!parse_iterations(iterations_text, bound, iterations)) {
    return make_error_code(errc::scram_bad_iterations);
  }
  for (std::size_t i = 3; i < parts.size(); ++i) {
    if (!is_extension(parts[i])) return malformed;
  }

  salt_ = std::move(salt);
  iterations_ = iterations;
  server_nonce_ = std::string(nonce);
  server_first_ = std::string(server_first);
  state_ = state::server_first_read;
  return !cached_keys_match();
}

std_result<secret_string> scram_client::finish_server_first() {
  if (state_ != state::server_first_read) {
    state_ = state::failed;
    return make_error_code(errc::scram_bad_state);
  }
  state_ = state::failed;  // until this step succeeds
  if (const std::error_code ec = derive_keys()) return ec;
  has_keys_ = true;
  password_.clear();  // the keys replace it from here on
  cached_keys_ = scram_keys{};
  cached_salt_.clear();
  has_cached_keys_ = false;

  auto message = build_client_final(server_first_, server_nonce_);
  server_first_.clear();
  server_nonce_.clear();
  if (!message) return message.error();
  state_ = state::final_sent;
  return message;
}

std_result<void> scram_client::on_server_final(std::string_view server_final) {
  if (state_ != state::final_sent) {
    state_ = state::failed;
    return make_error_code(errc::scram_bad_state);
  }
  state_ = state::failed;  // until the signature is proven
  const auto malformed = make_error_code(errc::scram_malformed_server_final);

  std::string_view value;
  if (attribute_value(server_final, 'e', value)) {
    // server-error-value ends at the first ',' (extensions may follow).
    value = value.substr(0, std::min(value.find(','), max_server_error_len));
    server_error_.clear();
    for (const char c : value) server_error_ += c >= 0x20 && c <= 0x7e ? c : '?';
    return make_error_code(errc::scram_server_error);
  }

  if (server_final.find('\0') != std::string_view::npos) return malformed;
  const std::vector<std::string_view> parts = split_attributes(server_final);
  if (!attribute_value(parts[0], 'v', value)) return malformed;
  for (std::size_t i = 1; i < parts.size(); ++i) {
    if (!is_extension(parts[i])) return malformed;
  }
  std::string signature;
  if (!base64_decode(value, signature) || signature.size() != scram_key_len ||
      expected_server_signature_.size() != scram_key_len) {
    return malformed;
  }
  if (CRYPTO_memcmp(signature.data(), expected_server_signature_.view().data(), scram_key_len) != 0) {
    return make_error_code(errc::scram_bad_server_signature);
  }
  state_ = state::done;
  return boost::outcome_v2::success();
}

void scram_client::set_cached_keys(std::string_view salt, std::uint32_t iterations, scram_keys keys) {
  if (state_ != state::initial && state_ != state::first_sent) return;
  cached_salt_.assign(salt.data(), salt.size());
  cached_iterations_ = iterations;
  cached_keys_ = std::move(keys);
  has_cached_keys_ = true;
}

std_result<scram_keys> scram_client::keys() const {
  if (!has_keys_) return make_error_code(errc::scram_bad_state);
  return keys_.clone();
}

}  // namespace pgwire
