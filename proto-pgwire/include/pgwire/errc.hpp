// Error codes of the pgwire library. Every fallible pgwire function reports one of
// these through std::error_code (directly or inside a boost::outcome_v2::std_result).
#pragma once

#include <string>
#include <system_error>

namespace pgwire {

enum class errc {
  // framing
  length_too_short = 1,    // a length field below 4 (or below the fixed part)
  length_too_long,         // over the caller's cap (startup packet: 10,000 bytes)
  unsupported_protocol,    // a startup version vaultwire does not speak (e.g. 2.0)
  unknown_message_type,    // a type byte not defined for this direction
  // message bodies
  malformed_message,       // a body that does not parse: missing NUL, short field...
  trailing_bytes,          // a body with bytes after its last field
  unexpected_message,      // a well-formed message where another was required
  // SCRAM (RFC 5802 / 7677)
  scram_bad_state,              // a step called out of order
  scram_malformed_server_first,
  scram_nonce_mismatch,         // server nonce does not extend the client nonce
  scram_bad_iterations,         // 0, unparsable, or over the configured bound
  scram_bad_salt,
  scram_malformed_server_final,
  scram_server_error,           // server-final carried e=...
  scram_bad_server_signature,   // fails closed: the server did not prove the key
  scram_mechanism_unsupported,
  crypto_failure,               // OpenSSL reported an error
  // PROXY protocol v2 (proxy_protocol.hpp)
  proxy_bad_signature,   // the first bytes are not the v2 signature
  proxy_v1_unsupported,  // a v1 text header ("PROXY TCP4 ..."): only v2 is accepted
  proxy_bad_version,     // version nibble != 2
  proxy_bad_command,     // command neither LOCAL nor PROXY
  proxy_bad_family,      // address family / transport not supported
  proxy_too_short,       // length below the family's address block
  proxy_too_long,        // header over the cap
  proxy_bad_tlv,         // a TLV runs past the end of the header
  // SCRAM server and stored verifiers (scram_server.hpp, scram_verifier.hpp)
  scram_bad_verifier,               // a stored verifier that does not parse
  scram_mechanism_not_offered,      // the client chose a mechanism the server did not offer
  scram_malformed_client_first,
  scram_malformed_client_final,
  scram_authzid_unsupported,        // client-first names an authorization identity (a=)
  scram_extension_unsupported,      // client-first asks for a mandatory extension (m=)
  scram_channel_binding_downgrade,  // gs2 flag "y" while the server offers PLUS
  scram_channel_binding_mismatch,   // PLUS: c= is not our certificate hash
  scram_final_nonce_mismatch,       // client-final's nonce is not the exchange's
  scram_invalid_proof,              // wrong password, or an unknown user (mock exchange)
};

[[nodiscard]] const std::error_category& error_category() noexcept;

[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

}  // namespace pgwire

template <>
struct std::is_error_code_enum<pgwire::errc> : std::true_type {};
