// The SCRAM-SHA-256 server (a listener's side of a password login) fed what a hostile
// or broken client could send: gs2 headers and channel-binding flags, authzid,
// mandatory and optional extensions, nonces, c= data, proofs, attributes out of order.
// Input: one flags byte, then  client-first \0 client-final  (without the NUL the
// exchange ends after client-first). Flags: bit 0 the server offers PLUS (a
// certificate hash of 32 bytes 0x5a), bit 1 the client selects SCRAM-SHA-256-PLUS,
// bit 2 a mock exchange (unknown user). The verifier is the RFC 7677 one ("pencil",
// its salt, 4096 iterations), made once; the server nonce is the RFC's, so the RFC's
// client-final verifies. Checks, besides the sanitizers:
// - select_mechanism succeeds exactly for an offered mechanism;
// - an accepted client-first gets "r=<its nonce><server nonce>,s=<salt>,i=4096";
// - after a failure every later step fails with scram_bad_state;
// - authenticated() exactly when on_client_final succeeded, never for a mock, and
//   channel_bound() only with PLUS; a success answers "v=" and 44 base64 characters;
// - every error has a SQLSTATE other than XX000 but crypto_failure.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "pgwire/errc.hpp"
#include "pgwire/scram_server.hpp"
#include "pgwire/scram_verifier.hpp"

namespace {

using namespace pgwire;

constexpr std::string_view server_nonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";  // RFC 7677 section 3
constexpr std::string_view salt_b64 = "W22ZaJ0SNY7soEsUEjb6gQ==";

const scram_verifier& rfc_verifier() {
  static const scram_verifier v = [] {
    const std::string salt("\x5b\x6d\x99\x68\x9d\x12\x35\x8e\xec\xa0\x4b\x14\x12\x36\xfa\x81", 16);
    auto made = make_scram_verifier("pencil", 4096, salt);
    FUZZ_CHECK(made.has_value());
    return std::move(made).value();
  }();
  return v;
}

const secret_string& mock_secret() {
  static const secret_string s(std::string(scram_mock_secret_len, 'm'));
  return s;
}

bool is_bad_state(const std::error_code& e) { return e == errc::scram_bad_state; }

void check_error(const std::error_code& e) {
  FUZZ_CHECK(e.category() == error_category());
  if (e != errc::crypto_failure) FUZZ_CHECK(scram_server_sqlstate(e) != "XX000");
}

// The first step's nonce as the client sent it, for the server-first check: what
// follows the first ",r=" up to the next ','.
std::string_view sent_nonce(std::string_view first) {
  const auto at = first.find(",r=");
  if (at == std::string_view::npos) return {};
  const std::string_view rest = first.substr(at + 3);
  return rest.substr(0, rest.find(','));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t flags = data[0];
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  const auto nul = in.find('\0');
  const std::string_view client_first = in.substr(0, nul);
  const bool has_final = nul != std::string_view::npos;
  const std::string_view client_final = has_final ? in.substr(nul + 1) : std::string_view{};

  scram_server_options o;
  if ((flags & 1) != 0) o.cert_hash.assign(32, 0x5a);
  o.nonce_source = [] { return std::string(server_nonce); };
  const bool offers_plus = (flags & 1) != 0;
  const bool mock = (flags & 4) != 0;
  boost::outcome_v2::std_result<scram_server> made =
      mock ? scram_server::mock("ghost", mock_secret(), o)
           : boost::outcome_v2::std_result<scram_server>(scram_server(rfc_verifier().clone(), o));
  FUZZ_CHECK(made.has_value());
  scram_server& s = made.value();
  FUZZ_CHECK(s.mock() == mock);
  FUZZ_CHECK(s.mechanisms().size() == (offers_plus ? 2u : 1u));

  const bool plus = (flags & 2) != 0;
  auto selected = s.select_mechanism(plus ? scram_sha_256_plus_name : scram_sha_256_name);
  FUZZ_CHECK(selected.has_value() == (!plus || offers_plus));
  if (!selected) {
    FUZZ_CHECK(selected.error() == errc::scram_mechanism_not_offered);
    FUZZ_CHECK(is_bad_state(s.on_client_first(client_first).error()));
    return 0;
  }

  auto first = s.on_client_first(client_first);
  if (!first) {
    check_error(first.error());
    FUZZ_CHECK(!is_bad_state(first.error()));
    FUZZ_CHECK(is_bad_state(s.on_client_final(client_final).error()));
    FUZZ_CHECK(!s.authenticated());
    return 0;
  }
  const std::string_view sf = first.value();
  const std::string expected_prefix = "r=" + std::string(sent_nonce(client_first)) + std::string(server_nonce) + ",s=";
  FUZZ_CHECK(sf.starts_with(expected_prefix));
  FUZZ_CHECK(sf.ends_with(",i=4096"));
  if (!mock) FUZZ_CHECK(sf.find(",s=" + std::string(salt_b64) + ",") != std::string_view::npos);
  if (!has_final) {
    FUZZ_CHECK(is_bad_state(s.on_client_first(client_first).error()));
    return 0;
  }

  auto final = s.on_client_final(client_final);
  FUZZ_CHECK(final.has_value() == s.authenticated());
  if (final) {
    FUZZ_CHECK(!mock);
    FUZZ_CHECK(final.value().size() == 46 && final.value().starts_with("v="));
    FUZZ_CHECK(!s.channel_bound() || plus);
  } else {
    check_error(final.error());
    FUZZ_CHECK(!is_bad_state(final.error()));
  }
  FUZZ_CHECK(is_bad_state(s.on_client_final(client_final).error()));
  FUZZ_CHECK(!s.authenticated());
  return 0;
}
