#include "pgwire/errc.hpp"

namespace pgwire {
namespace {

class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "pgwire"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::length_too_short: return "message length below the minimum";
      case errc::length_too_long: return "message length over the limit";
      case errc::unsupported_protocol: return "unsupported frontend protocol version";
      case errc::unknown_message_type: return "unknown message type";
      case errc::malformed_message: return "malformed message";
      case errc::trailing_bytes: return "unexpected bytes after the end of a message";
      case errc::unexpected_message: return "unexpected message";
      case errc::scram_bad_state: return "SCRAM step called out of order";
      case errc::scram_malformed_server_first: return "malformed SCRAM server-first-message";
      case errc::scram_nonce_mismatch: return "SCRAM server nonce does not extend the client nonce";
      case errc::scram_bad_iterations: return "SCRAM iteration count is invalid or too large";
      case errc::scram_bad_salt: return "SCRAM salt is invalid";
      case errc::scram_malformed_server_final: return "malformed SCRAM server-final-message";
      case errc::scram_server_error: return "SCRAM server reported an error";
      case errc::scram_bad_server_signature: return "SCRAM server signature does not match";
      case errc::scram_mechanism_unsupported: return "no supported SASL mechanism offered";
      case errc::crypto_failure: return "cryptographic operation failed";
      case errc::proxy_bad_signature: return "no PROXY protocol v2 header (bad signature)";
      case errc::proxy_v1_unsupported:
        return "PROXY protocol v1 (text) header received; only v2 (binary) is supported";
      case errc::proxy_bad_version: return "PROXY protocol header version is not 2";
      case errc::proxy_bad_command: return "PROXY protocol v2 command is neither LOCAL nor PROXY";
      case errc::proxy_bad_family:
        return "PROXY protocol v2 address family or transport not supported (want TCP or UNIX stream)";
      case errc::proxy_too_short: return "PROXY protocol v2 length too short for the address family";
      case errc::proxy_too_long: return "PROXY protocol v2 header over the size limit";
      case errc::proxy_bad_tlv: return "PROXY protocol v2 TLV runs past the end of the header";
      case errc::scram_bad_verifier:
        return "SCRAM verifier is not SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>";
      case errc::scram_mechanism_not_offered: return "client selected an invalid SASL authentication mechanism";
      case errc::scram_malformed_client_first: return "malformed SCRAM client-first-message";
      case errc::scram_malformed_client_final: return "malformed SCRAM client-final-message";
      case errc::scram_authzid_unsupported: return "client uses authorization identity, but it is not supported";
      case errc::scram_extension_unsupported: return "client requires an unsupported SCRAM extension";
      case errc::scram_channel_binding_downgrade:
        return "SCRAM channel binding negotiation error: the client supports channel binding but thinks "
               "the server does not, and this server does";
      case errc::scram_channel_binding_mismatch: return "SCRAM channel binding check failed";
      case errc::scram_final_nonce_mismatch: return "invalid SCRAM response: nonce does not match";
      case errc::scram_invalid_proof: return "SCRAM proof does not match (wrong password or unknown user)";
    }
    return "unknown pgwire error";
  }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const category instance;
  return instance;
}

}  // namespace pgwire
