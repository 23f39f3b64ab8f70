// SCRAM-SHA-256 and SCRAM-SHA-256-PLUS server (RFC 5802, RFC 7677, channel binding
// tls-server-end-point from RFC 5929), as PostgreSQL's backend runs it
// (src/backend/libpq/auth-scram.c): https://www.postgresql.org/docs/current/sasl-authentication.html
//
// A state machine over strings, like scram_client: it never touches a socket. A
// caller (a listener that admits local users by password) drives it so:
//
//   1. Look up the startup packet's user. Known:
//        scram_server s(verifier.clone(), {.cert_hash = h});
//      Unknown (or no usable verifier):
//        auto s = scram_server::mock(user, mock_secret, {.cert_hash = h});
//      A mock exchange looks like a real one to the client (a stable salt per user
//      name, the same messages, the same work) and fails at the proof exactly as a
//      wrong password does, so the exchange does not tell who exists.
//   2. Send AuthenticationSASL listing s.mechanisms() (SCRAM-SHA-256-PLUS first when
//      a certificate hash is set, i.e. on TLS).
//   3. SASLInitialResponse {mechanism, data}: s.select_mechanism(mechanism). When
//      `data` is absent (length -1), send AuthenticationSASLContinue with empty data
//      and take the next SASLResponse's data as the client-first-message, as
//      PostgreSQL does. Then s.on_client_first(data) gives the server-first-message:
//      send it in AuthenticationSASLContinue.
//   4. SASLResponse {data}: s.on_client_final(data.view()) gives the
//      server-final-message: send it in AuthenticationSASLFinal, then
//      AuthenticationOk.
//   On any error: an ErrorResponse (FATAL, SQLSTATE scram_server_sqlstate(error)) and
//   close. scram_invalid_proof is the answer for a wrong password and for an unknown
//   user alike; tell the client "password authentication failed for user ...", as
//   PostgreSQL does, and log mock() (unknown user) and the error's message() for
//   the operator. No error message holds a secret or bytes from the client.
//
// Every failure moves the server to a failed state in which each further step
// returns errc::scram_bad_state. The verifier's keys stay in secret_string;
// intermediate keys, the proof and the client key are wiped before return.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <boost/outcome/std_result.hpp>

#include "pgwire/scram.hpp"
#include "pgwire/scram_verifier.hpp"
#include "pgwire/secret.hpp"

namespace pgwire {

// PostgreSQL's MOCK_AUTH_NONCE_LEN: the size of the per-server secret behind mock salts.
inline constexpr std::size_t scram_mock_secret_len = 32;

// A fresh per-server secret for scram_mock_salt (RAND_bytes). Keep one for the
// process's life at least: with a new secret every unknown user's salt changes while
// known users keep theirs, which tells them apart (PostgreSQL keeps its nonce in
// pg_control for the cluster's life). Errors: crypto_failure.
[[nodiscard]] boost::outcome_v2::std_result<secret_string> make_scram_mock_secret();

// The salt of a mock exchange: the first scram_salt_len bytes of
// SHA-256(user || mock_secret), as PostgreSQL's scram_mock_salt hashes the user name
// with the cluster's mock authentication nonce. The same user gets the same salt on
// every attempt, different users get different ones. Errors: crypto_failure.
[[nodiscard]] boost::outcome_v2::std_result<std::string> scram_mock_salt(std::string_view user,
                                                                         const secret_string& mock_secret);

struct scram_server_options {
  // tls_server_end_point_hash() of the certificate this connection's TLS presents;
  // empty on a connection without TLS. Non-empty: SCRAM-SHA-256-PLUS is offered, a
  // PLUS client's c= must carry this hash, and a client that says "y" (it supports
  // channel binding but thinks the server does not) is refused as a downgrade.
  // Not a secret.
  std::vector<std::uint8_t> cert_hash;
  // Returns the printable server nonce (RFC 5802 "printable": 0x21-0x7E but ',').
  // Empty function: 18 bytes of RAND_bytes, base64, like PostgreSQL. Returning an
  // empty or non-printable string signals failure (errc::crypto_failure).
  std::function<std::string()> nonce_source;
};

// The SQLSTATE PostgreSQL answers a SCRAM failure with (auth-scram.c, auth.c):
// 28P01 scram_invalid_proof; 28000 scram_channel_binding_downgrade and
// scram_channel_binding_mismatch; 0A000 scram_authzid_unsupported and
// scram_extension_unsupported; 08P01 the malformed messages, scram_bad_state,
// scram_final_nonce_mismatch and scram_mechanism_not_offered; XX000 anything else.
[[nodiscard]] std::string_view scram_server_sqlstate(const std::error_code& ec) noexcept;

class scram_server {
 public:
  // An exchange for a known user. A verifier that is not valid() makes every step
  // fail with scram_bad_verifier.
  explicit scram_server(scram_verifier verifier, scram_server_options options = {});

  // An exchange for an unknown user: salt scram_mock_salt(user, mock_secret),
  // `iterations` (PostgreSQL uses its default; keep it equal to what real users'
  // verifiers have), zero keys; it always ends in scram_invalid_proof.
  // Errors: crypto_failure, scram_bad_iterations (0 or over the limit).
  [[nodiscard]] static boost::outcome_v2::std_result<scram_server> mock(
      std::string_view user, const secret_string& mock_secret, scram_server_options options = {},
      std::uint32_t iterations = scram_default_iterations);

  scram_server(scram_server&&) noexcept = default;
  scram_server& operator=(scram_server&&) noexcept = default;
  scram_server(const scram_server&) = delete;
  scram_server& operator=(const scram_server&) = delete;
  ~scram_server() = default;

  // The names for AuthenticationSASL, most preferred first (auth-scram.c
  // scram_get_mechanisms): SCRAM-SHA-256-PLUS (when cert_hash is set), SCRAM-SHA-256.
  [[nodiscard]] std::vector<std::string_view> mechanisms() const;

  // The SASLInitialResponse's mechanism. Errors: scram_mechanism_not_offered (not in
  // mechanisms()), scram_bad_state (not the first step), scram_bad_verifier.
  [[nodiscard]] boost::outcome_v2::std_result<void> select_mechanism(std::string_view mechanism);

  // Reads the client-first-message (gs2 header, [m=,] n=, r=[, extensions]) and
  // returns the server-first-message "r=<client nonce><server nonce>,s=<salt>,i=<n>".
  // The n= user name is ignored, as PostgreSQL ignores it (the startup packet names
  // the user). Errors: scram_bad_state; scram_malformed_client_first (empty, a NUL,
  // an unknown gs2 flag or channel-binding type, "n"/"y" after choosing PLUS or "p"
  // after choosing SCRAM-SHA-256, a missing or misordered n= or r=, an empty or
  // non-printable nonce, a malformed extension); scram_authzid_unsupported (a=);
  // scram_extension_unsupported (m=); scram_channel_binding_downgrade ("y" while
  // PLUS is offered); crypto_failure (the nonce source failed).
  [[nodiscard]] boost::outcome_v2::std_result<std::string> on_client_first(std::string_view client_first);

  // Reads the client-final-message (c=, r=[, extensions], p=) and, when the proof
  // holds, returns the server-final-message "v=<ServerSignature>". The proof is
  // checked as RFC 5802 section 3 says: ClientKey = proof XOR HMAC(StoredKey,
  // AuthMessage), and H(ClientKey) compared with StoredKey in constant time
  // (CRYPTO_memcmp). Errors: scram_bad_state; scram_malformed_client_final (empty, a
  // NUL, a missing or misordered attribute, a proof that is not base64 of 32 bytes,
  // anything after p=, or c= other than the gs2 header without PLUS);
  // scram_channel_binding_mismatch (PLUS and c= is not the gs2 header plus our
  // certificate hash); scram_final_nonce_mismatch; scram_invalid_proof (wrong
  // password, or a mock exchange); crypto_failure.
  [[nodiscard]] boost::outcome_v2::std_result<std::string> on_client_final(std::string_view client_final);

  // True once on_client_final succeeded.
  [[nodiscard]] bool authenticated() const noexcept { return state_ == state::done; }
  // True once authenticated with SCRAM-SHA-256-PLUS.
  [[nodiscard]] bool channel_bound() const noexcept { return authenticated() && plus_; }
  // True for an exchange made by mock(): for the operator's log, never the client.
  [[nodiscard]] bool mock() const noexcept { return mock_; }

 private:
  enum class state { initial, mechanism_selected, first_sent, done, failed };

  [[nodiscard]] std::error_code read_gs2_header(std::string_view message, std::size_t& bare_at);
  [[nodiscard]] std::error_code check_channel_binding(std::string_view value) const;
  [[nodiscard]] std::error_code verify_proof(std::string_view proof_b64, std::string_view auth_message,
                                             std::string& server_final) const;

  scram_server_options options_;
  scram_verifier verifier_;
  bool mock_ = false;
  bool plus_ = false;    // the client chose SCRAM-SHA-256-PLUS
  char cbind_flag_ = 0;  // the gs2 flag of the client-first-message: 'n', 'y' or 'p'
  state state_ = state::initial;

  std::string client_nonce_;
  std::string server_nonce_;
  std::string client_first_bare_;
  std::string server_first_;
};

}  // namespace pgwire
