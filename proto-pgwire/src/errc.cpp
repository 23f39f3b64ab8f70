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
