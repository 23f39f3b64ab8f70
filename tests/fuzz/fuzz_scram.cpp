// The SCRAM-SHA-256 client (the proxy's side of the upstream login) fed what a
// hostile or broken server could send: server-first and server-final messages with
// long nonces, bad base64, odd iteration counts, unknown or mandatory extensions.
// Input: one flags byte, then  password \0 server-first \0 server-final  (a missing
// part ends the exchange there). Flags: bits 0-1 the gs2 channel-binding flag (n, y,
// p with a certificate hash), bit 2 seeds cached keys for the RFC 7677 salt,
// bit 3 sends the RFC's user name. The client nonce is the RFC 7677 one, so the
// seeds can reach a valid server signature. The iteration bound is 4096, the
// PostgreSQL default: every input runs at most 4096 PBKDF2 rounds. Checks, besides
// the sanitizers:
// - an accepted server-first has 1 <= i <= the bound and a salt, and the nonce it
//   echoes starts with ours;
// - after a failure every later step fails with scram_bad_state;
// - authenticated() exactly when on_server_final succeeded.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "pgwire/errc.hpp"
#include "pgwire/scram.hpp"

namespace {

using namespace pgwire;

constexpr std::string_view client_nonce = "rOprNGfwEbeRWgbNEkqO";  // RFC 7677 section 3
constexpr std::uint32_t bound = 4096;

// Splits off the text before the first NUL; false when there is none.
bool next_part(std::string_view& in, std::string_view& part) {
  const auto nul = in.find('\0');
  if (nul == std::string_view::npos) {
    part = in;
    in = {};
    return false;
  }
  part = in.substr(0, nul);
  in.remove_prefix(nul + 1);
  return true;
}

bool is_bad_state(const std::error_code& e) { return e == errc::scram_bad_state; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::uint8_t flags = data[0];
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);

  scram_options o;
  o.max_iterations = bound;
  o.nonce_source = [] { return std::string(client_nonce); };
  switch (flags & 3) {
    case 1: o.channel_binding = scram_channel_binding::client_supports_server_not; break;
    case 2:
      o.channel_binding = scram_channel_binding::tls_server_end_point;
      o.cert_hash.assign(32, 0x5a);
      break;
    default: o.channel_binding = scram_channel_binding::none_supported; break;
  }
  if ((flags & 8) != 0) o.user = "user";

  std::string_view password;
  std::string_view server_first;
  std::string_view server_final;
  const bool has_first = next_part(in, password);
  const bool has_final = has_first && next_part(in, server_first);
  if (has_final) server_final = in;

  scram_client c(password, std::move(o));
  if ((flags & 4) != 0) {
    scram_keys k{secret_string(std::string(scram_key_len, 'S')), secret_string(std::string(scram_key_len, 'C')),
                 secret_string(std::string(scram_key_len, 'K'))};
    // The RFC 7677 salt W22ZaJ0SNY7soEsUEjb6gQ== decoded.
    const std::string salt("\x5b\x6d\x99\x68\x9d\x12\x35\x8e\xec\xa0\x4b\x14\x12\x36\xfa\x81", 16);
    c.set_cached_keys(salt, 4096, std::move(k));
  }

  auto first = c.client_first();
  FUZZ_CHECK(first.has_value());
  FUZZ_CHECK(first.value().find(client_nonce) != std::string::npos);
  if (!has_first) return 0;

  auto final_message = c.on_server_first(server_first);
  if (!final_message) {
    FUZZ_CHECK(!is_bad_state(final_message.error()));
    FUZZ_CHECK(!c.keys().has_value());
    FUZZ_CHECK(is_bad_state(c.on_server_final(server_final).error()));
    FUZZ_CHECK(!c.authenticated());
    return 0;
  }
  FUZZ_CHECK(c.iterations() >= 1 && c.iterations() <= bound);
  FUZZ_CHECK(!c.salt().empty());
  FUZZ_CHECK(c.keys().has_value());
  const std::string_view fm = final_message.value().view();
  FUZZ_CHECK(fm.find(",r=" + std::string(client_nonce)) != std::string_view::npos);
  FUZZ_CHECK(fm.find(",p=") != std::string_view::npos);
  if (!has_final) {
    // The step cannot run twice (and the failure ends the exchange).
    FUZZ_CHECK(is_bad_state(c.on_server_first(server_first).error()));
    FUZZ_CHECK(is_bad_state(c.on_server_final(server_final).error()));
    return 0;
  }

  auto done = c.on_server_final(server_final);
  FUZZ_CHECK(done.has_value() == c.authenticated());
  if (!done) {
    FUZZ_CHECK(!is_bad_state(done.error()));
    if (done.error() == errc::scram_server_error) {
      FUZZ_CHECK(c.server_error().size() <= 256);
      for (char ch : c.server_error()) FUZZ_CHECK(ch >= 0x20 && ch <= 0x7e);
    }
  }
  FUZZ_CHECK(is_bad_state(c.on_server_final(server_final).error()));
  FUZZ_CHECK(is_bad_state(c.on_server_first(server_first).error()));
  return 0;
}
