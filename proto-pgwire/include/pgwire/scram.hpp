// SCRAM-SHA-256 and SCRAM-SHA-256-PLUS client (RFC 5802, RFC 7677, channel binding
// tls-server-end-point from RFC 5929), as PostgreSQL's SASL authentication uses it:
// https://www.postgresql.org/docs/current/sasl-authentication.html
//
// A state machine over strings: it never touches a socket. The caller moves the
// strings in and out of AuthenticationSASL / SASLInitialResponse /
// AuthenticationSASLContinue / SASLResponse / AuthenticationSASLFinal messages:
//
//   scram_client c(password, {.channel_binding = b, .cert_hash = h});
//   auto first = c.client_first();              // SASLInitialResponse data
//   auto final = c.on_server_first(continue_);   // SASLResponse data (a secret)
//   auto ok    = c.on_server_final(final_);      // fails closed on a bad signature
//
// on_server_first is read_server_first then finish_server_first: a caller that keeps
// PBKDF2 off its I/O thread calls them apart and runs the second elsewhere when the
// first says keys must be derived (the client must not be touched meanwhile).
//
// Every failure moves the client to a failed state in which each further step
// returns errc::scram_bad_state. Keys, proofs and the prepared password are held
// in secret_string and wiped; intermediate buffers are wiped before return.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <boost/outcome/std_result.hpp>

#include "pgwire/secret.hpp"

namespace pgwire {

inline constexpr std::string_view scram_sha_256_name = "SCRAM-SHA-256";
inline constexpr std::string_view scram_sha_256_plus_name = "SCRAM-SHA-256-PLUS";

// Length of SHA-256 output: SaltedPassword, ClientKey, ServerKey, proofs.
inline constexpr std::size_t scram_key_len = 32;

// PostgreSQL's default scram_iterations is 4096. A server that asks for more than
// the bound is refused (errc::scram_bad_iterations): every PBKDF2 iteration is CPU
// spent on the proxy's reactor thread. 100,000 costs a few tens of milliseconds.
inline constexpr std::uint32_t scram_default_max_iterations = 100'000;
// The largest bound accepted (PKCS5_PBKDF2_HMAC takes an int); larger bounds clamp.
inline constexpr std::uint32_t scram_max_iterations_limit = 0x7fffffff;

// The gs2 channel-binding flag the client sends (RFC 5802 section 6).
enum class scram_channel_binding {
  none_supported,              // "n,,"  client does not support channel binding
  client_supports_server_not,  // "y,,"  client supports it, thinks the server does not
  tls_server_end_point,        // "p=tls-server-end-point,,"  SCRAM-SHA-256-PLUS
};

// The caller's channel-binding policy, like libpq's channel_binding option.
enum class channel_binding_mode { disable, prefer, require };

// "SCRAM-SHA-256-PLUS" for tls_server_end_point, "SCRAM-SHA-256" otherwise.
[[nodiscard]] std::string_view scram_mechanism_name(scram_channel_binding binding) noexcept;

// Chooses the mechanism and gs2 flag from the list an AuthenticationSASL message
// offers, following libpq (fe-auth.c pg_SASL_init, fe-auth-scram.c):
// - SCRAM-SHA-256-PLUS offered without TLS: error (a stripped TLS layer or a
//   tampered list; the server would refuse the downgrade anyway).
// - PLUS offered, TLS in use, a certificate hash available, mode != disable:
//   tls_server_end_point.
// - mode == require and PLUS not chosen: error.
// - SCRAM-SHA-256 offered: client_supports_server_not when TLS is in use, mode !=
//   disable and the server did not offer PLUS (lets the server detect a stripped
//   PLUS); otherwise none_supported ("n,,": also when PLUS was offered but no
//   certificate hash could be computed, because "y" would then fail the exchange).
// - neither: error.
// Errors: errc::scram_mechanism_unsupported.
[[nodiscard]] boost::outcome_v2::std_result<scram_channel_binding> choose_scram_mechanism(
    std::span<const std::string_view> offered, bool tls_in_use, bool have_cert_hash,
    channel_binding_mode mode = channel_binding_mode::prefer);
[[nodiscard]] boost::outcome_v2::std_result<scram_channel_binding> choose_scram_mechanism(
    std::span<const std::string> offered, bool tls_in_use, bool have_cert_hash,
    channel_binding_mode mode = channel_binding_mode::prefer);

// tls-server-end-point channel-binding data (RFC 5929 section 4.1): the hash of
// the server certificate's DER encoding with the digest of the certificate's
// signature algorithm, MD5 and SHA-1 replaced by SHA-256.
// `signature_digest_nid` is that digest's NID (NID_sha256, NID_sha384, ...).
// Errors: errc::scram_mechanism_unsupported for a NID without a digest.
[[nodiscard]] boost::outcome_v2::std_result<std::vector<std::uint8_t>> tls_server_end_point_hash(
    std::span<const std::uint8_t> der, int signature_digest_nid);
// The same, reading the signature algorithm from the certificate the way
// PostgreSQL does (OBJ_find_sigid_algs: RSA-PSS and EdDSA certificates have no
// single digest and yield errc::scram_mechanism_unsupported, as in PostgreSQL).
// A DER that does not parse as one certificate, or has trailing bytes:
// errc::crypto_failure.
[[nodiscard]] boost::outcome_v2::std_result<std::vector<std::uint8_t>> tls_server_end_point_hash(
    std::span<const std::uint8_t> der);

// Keys derived from (password, salt, iterations). Caching them lets a later
// exchange with the same salt and iteration count skip PBKDF2.
struct scram_keys {
  secret_string salted_password;  // Hi(Normalize(password), salt, i), 32 bytes
  secret_string client_key;       // HMAC(SaltedPassword, "Client Key")
  secret_string server_key;       // HMAC(SaltedPassword, "Server Key")

  [[nodiscard]] scram_keys clone() const;
};

struct scram_options {
  scram_channel_binding channel_binding = scram_channel_binding::none_supported;
  // tls_server_end_point only: tls_server_end_point_hash() of the server
  // certificate of this connection. Not a secret. Required non-empty for PLUS.
  std::vector<std::uint8_t> cert_hash;
  std::uint32_t max_iterations = scram_default_max_iterations;
  // The SCRAM user name. PostgreSQL ignores it (the role comes from the startup
  // packet) and libpq sends it empty; set it only to check RFC test vectors.
  // '=' and ',' are escaped as RFC 5802 requires; no SASLprep is applied.
  std::string user;
  // Returns the printable client nonce (RFC 5802 "printable": 0x21-0x7E but ',').
  // Empty function: 18 bytes of RAND_bytes, base64, like libpq. Returning an
  // empty string signals failure (errc::crypto_failure).
  std::function<std::string()> nonce_source;
};

class scram_client {
 public:
  // The password is SASLprep'd here (see saslprep.hpp), as libpq's scram_init does,
  // and wiped once on_server_first has derived the keys.
  explicit scram_client(std::string_view password, scram_options options = {});
  explicit scram_client(const secret_string& password, scram_options options = {});

  scram_client(scram_client&&) noexcept = default;
  scram_client& operator=(scram_client&&) noexcept = default;
  scram_client(const scram_client&) = delete;
  scram_client& operator=(const scram_client&) = delete;
  ~scram_client() = default;

  // The mechanism to name in SASLInitialResponse.
  [[nodiscard]] std::string_view mechanism() const noexcept;

  // The client-first-message: gs2 header, "n=<user>,r=<nonce>". Not a secret.
  // Errors: scram_bad_state (called twice or after a failure); crypto_failure
  // (the nonce source failed or returned a non-printable nonce);
  // scram_mechanism_unsupported (tls_server_end_point without a cert hash).
  [[nodiscard]] boost::outcome_v2::std_result<std::string> client_first();

  // Parses the server-first-message ([m=...,]r=,s=,i=[,ext...]) and returns the
  // client-final-message (c=,r=,p=). Runs PBKDF2 unless cached keys match.
  // Errors: scram_bad_state, scram_malformed_server_first (missing or misordered
  // attribute, NUL or non-printable nonce, a mandatory extension m=, a malformed
  // trailing extension), scram_nonce_mismatch (r= does not start with our nonce or
  // adds nothing), scram_bad_salt (empty or invalid base64), scram_bad_iterations
  // (not a decimal number, 0, or over max_iterations), crypto_failure.
  [[nodiscard]] boost::outcome_v2::std_result<secret_string> on_server_first(
      std::string_view server_first);

  // The two halves of on_server_first. read_server_first parses and checks the
  // message (the errors above but crypto_failure) and returns whether PBKDF2 must
  // run (no cached keys for the server's salt and count): the costly step, with
  // iterations() already known. finish_server_first derives or takes the keys and
  // returns the client-final-message (errors: scram_bad_state unless
  // read_server_first succeeded just before, crypto_failure).
  [[nodiscard]] boost::outcome_v2::std_result<bool> read_server_first(std::string_view server_first);
  [[nodiscard]] boost::outcome_v2::std_result<secret_string> finish_server_first();

  // Checks the server-final-message. Success means the server proved it knows
  // the password's ServerKey. Errors: scram_bad_state, scram_server_error (e=...;
  // the value is then in server_error()), scram_malformed_server_final (no v=, v=
  // not base64 of 32 bytes, malformed extension), scram_bad_server_signature.
  [[nodiscard]] boost::outcome_v2::std_result<void> on_server_final(
      std::string_view server_final);

  // Seeds keys computed earlier for the same password. on_server_first uses them
  // instead of PBKDF2 when the server's decoded salt and iteration count equal
  // `salt` and `iterations`; otherwise it derives the keys as usual. The client
  // cannot check that the keys belong to its password: the caller's cache must be
  // keyed by the credential. Cache only keys of an exchange whose
  // on_server_final succeeded. Ignored after on_server_first has run; keys that
  // are not 32 bytes each are never used.
  void set_cached_keys(std::string_view salt, std::uint32_t iterations, scram_keys keys);

  // The derived keys (copies). Available once on_server_first succeeded.
  // Errors: scram_bad_state before that.
  [[nodiscard]] boost::outcome_v2::std_result<scram_keys> keys() const;

  // Whether on_server_first took the keys from set_cached_keys.
  [[nodiscard]] bool used_cached_keys() const noexcept { return used_cached_keys_; }
  // The server's decoded salt bytes and iteration count, after on_server_first.
  [[nodiscard]] std::string_view salt() const noexcept { return salt_; }
  [[nodiscard]] std::uint32_t iterations() const noexcept { return iterations_; }
  // The e= value of a server-final error (printable ASCII, at most 256 bytes;
  // other bytes shown as '?'). Not a secret. Empty otherwise.
  [[nodiscard]] std::string_view server_error() const noexcept { return server_error_; }
  // True once on_server_final succeeded.
  [[nodiscard]] bool authenticated() const noexcept { return state_ == state::done; }
  // True once authenticated with SCRAM-SHA-256-PLUS.
  [[nodiscard]] bool channel_bound() const noexcept {
    return authenticated() && options_.channel_binding == scram_channel_binding::tls_server_end_point;
  }

 private:
  enum class state { initial, first_sent, server_first_read, final_sent, done, failed };

  [[nodiscard]] boost::outcome_v2::std_result<secret_string> build_client_final(
      std::string_view server_first, std::string_view server_nonce);
  [[nodiscard]] std::error_code derive_keys();
  [[nodiscard]] bool cached_keys_match() const noexcept;
  [[nodiscard]] std::string channel_binding_attribute() const;

  scram_options options_;
  secret_string password_;  // after SASLprep
  state state_ = state::initial;

  std::string client_nonce_;
  std::string client_first_bare_;
  std::string server_first_;  // between read_server_first and finish_server_first
  std::string server_nonce_;
  std::string salt_;  // decoded
  std::uint32_t iterations_ = 0;

  bool has_cached_keys_ = false;
  bool used_cached_keys_ = false;
  std::string cached_salt_;
  std::uint32_t cached_iterations_ = 0;
  scram_keys cached_keys_;

  bool has_keys_ = false;
  scram_keys keys_;
  secret_string expected_server_signature_;
  std::string server_error_;
};

}  // namespace pgwire
