#include <catch2/catch.hpp>

#include <openssl/obj_mac.h>

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "pgwire/errc.hpp"
#include "pgwire/scram.hpp"

using pgwire::errc;
using pgwire::scram_channel_binding;
using pgwire::scram_client;
using pgwire::scram_options;

namespace {

// RFC 7677 section 3.
constexpr std::string_view rfc_nonce = "rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view rfc_server_nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr std::string_view rfc_salt_b64 = "W22ZaJ0SNY7soEsUEjb6gQ==";
constexpr std::string_view rfc_server_first =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
// The RFC's value. (Note the '+' in "UjhN+Ute9": some copies of the vector mistype it.)
constexpr std::string_view rfc_client_final =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr std::string_view rfc_server_final = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

// Keys of the RFC exchange, computed independently with Python (hashlib.pbkdf2_hmac, hmac).
constexpr std::string_view rfc_salted_password_hex =
    "c4a49510323ab4f952cac1fa99441939e78ea74d6be81ddf7096e87513dc615d";
constexpr std::string_view rfc_client_key_hex =
    "a60fc923d67e8644a92d16b96eda5ef4656b0c725c484374be25535576996e8b";
constexpr std::string_view rfc_server_key_hex =
    "c1f3cbc1c13a9d35a14c0990eed97629ea225863e566a4314ab99f3f00e5d9d5";

std::string to_hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (const char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

std::string to_hex(const std::vector<std::uint8_t>& bytes) {
  return to_hex(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

std::vector<std::uint8_t> from_hex(std::string_view hex) {
  std::vector<std::uint8_t> out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  }
  return out;
}

template <class T>
std::error_code error_of(const boost::outcome_v2::std_result<T>& r) {
  return r ? std::error_code{} : r.error();
}

std::function<std::string()> fixed_nonce(std::string nonce) {
  return [nonce = std::move(nonce)] { return nonce; };
}

scram_options rfc_options() {
  scram_options o;
  o.user = "user";
  o.nonce_source = fixed_nonce(std::string(rfc_nonce));
  return o;
}

// A client that has sent its client-first with the RFC nonce and empty user.
scram_client started_client(scram_options o = {}) {
  if (!o.nonce_source) o.nonce_source = fixed_nonce(std::string(rfc_nonce));
  scram_client c("pencil", std::move(o));
  auto first = c.client_first();
  REQUIRE(first.has_value());
  return c;
}

constexpr std::string_view cert_ecdsa_sha384_hex =
    "3082016c30820113a00302010202142b16b97990647397439d2b5cc50f6269a5d784fd300a06082a8648ce3d04030330"
    "0c310a300806035504030c0174301e170d3236313132373230333435345a170d3336313132343230333435345a300c31"
    "0a300806035504030c01743059301306072a8648ce3d020106082a8648ce3d03010703420004b10fecb0b15c2d15fe64"
    "510e62cf4a7534135c54d0f6553318c528b9471436cec2bf5dd759b9f4563d1fb8da05399ee5ca5d408c5136227fc8e5"
    "ce80c7fe8014a3533051301d0603551d0e04160414a6c56ed9aa4b21b401be4d6a815a672a972d8acb301f0603551d23"
    "041830168014a6c56ed9aa4b21b401be4d6a815a672a972d8acb300f0603551d130101ff040530030101ff300a06082a"
    "8648ce3d0403030347003044022049753d0b211dfd3354abd24f9851cc14170100cbba5bb42b5e1c02b068d6186c0220"
    "3cb5a20e4176510e3136cfe339df55d16618076cfc0d7245b33ffaac051e2568";
constexpr std::string_view cert_ecdsa_sha1_hex =
    "3082016b30820112a003020102021449d7e9972b1d5a6baa102054cbd95317df8590a2300906072a8648ce3d0401300c"
    "310a300806035504030c0174301e170d3236313132373230333435345a170d3336313132343230333435345a300c310a"
    "300806035504030c01743059301306072a8648ce3d020106082a8648ce3d03010703420004a47f822a0f66ba87909597"
    "2ae4868047cc7283eb5a0c683ffceafd5ec390caa582690b68ea40a580fef74a4b4482ba45313f73770be341c0e9ed3e"
    "b73fcbb363a3533051301d0603551d0e041604140bb3ec1da8172841a1f3c66266864a20e52795dc301f0603551d2304"
    "18301680140bb3ec1da8172841a1f3c66266864a20e52795dc300f0603551d130101ff040530030101ff300906072a86"
    "48ce3d04010348003045022100c64e9df84e12e59c17bde1430338d5fe0fb05c2a3826cc0a818f17e4344e394302203b"
    "7698c1a1f3e1808d418a4210f821fdf5a201110597ea564f5c90bc5b0177a9";
constexpr std::string_view cert_ed25519_hex =
    "3082012c3081dfa003020102021420baa40bc6a355301956c67c77f9069c0f05da1e300506032b6570300c310a300806"
    "035504030c0174301e170d3236313132373230333435345a170d3336313132343230333435345a300c310a3008060355"
    "04030c0174302a300506032b657003210062a6d302b3c09257731dcd70d4f9b547fa7a89d0cc2d3810730ae2191bd5c1"
    "02a3533051301d0603551d0e0416041436f3dc3197feeb479efa96a28427ec362e5d4bbb301f0603551d230418301680"
    "1436f3dc3197feeb479efa96a28427ec362e5d4bbb300f0603551d130101ff040530030101ff300506032b6570034100"
    "e6526af24618f99b3cd297c0a8674112426a89632b8bc9e11119c704737582711f519922e0b099a7498156818e735cab"
    "6599b7079a3dc31e32dabc392b399905";

}  // namespace

TEST_CASE("SCRAM-SHA-256 reproduces the RFC 7677 exchange", "[pgwire][scram]") {
  scram_client c("pencil", rfc_options());
  CHECK(c.mechanism() == "SCRAM-SHA-256");

  auto first = c.client_first();
  REQUIRE(first.has_value());
  CHECK(first.value() == "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");

  auto final = c.on_server_first(rfc_server_first);
  REQUIRE(final.has_value());
  CHECK(final.value().view() == rfc_client_final);
  CHECK(c.iterations() == 4096);
  CHECK(to_hex(c.salt()) == "5b6d99689d12358eeca04b141236fa81");  // base64-decoded by Python
  CHECK_FALSE(c.authenticated());

  auto done = c.on_server_final(rfc_server_final);
  REQUIRE(done.has_value());
  CHECK(c.authenticated());
  CHECK_FALSE(c.channel_bound());
}

TEST_CASE("SCRAM sends an empty user by default, as libpq does", "[pgwire][scram]") {
  scram_options o;
  o.nonce_source = fixed_nonce("abc");
  scram_client c("pencil", std::move(o));
  auto first = c.client_first();
  REQUIRE(first.has_value());
  CHECK(first.value() == "n,,n=,r=abc");
}

TEST_CASE("SCRAM escapes ',' and '=' in the user name", "[pgwire][scram]") {
  scram_options o;
  o.user = "a,b=c";
  o.nonce_source = fixed_nonce("abc");
  scram_client c("pencil", std::move(o));
  auto first = c.client_first();
  REQUIRE(first.has_value());
  CHECK(first.value() == "n,,n=a=2Cb=3Dc,r=abc");
}

TEST_CASE("SCRAM applies SASLprep to the password", "[pgwire][scram]") {
  // U+00AD (soft hyphen) is mapped to nothing, so "pen<SHY>cil" proves like "pencil".
  scram_client c("pen\xc2\xad" "cil", rfc_options());
  REQUIRE(c.client_first().has_value());
  auto final = c.on_server_first(rfc_server_first);
  REQUIRE(final.has_value());
  CHECK(final.value().view() == rfc_client_final);

  pgwire::secret_string secret("pencil");
  scram_client from_secret(secret, rfc_options());
  REQUIRE(from_secret.client_first().has_value());
  auto final2 = from_secret.on_server_first(rfc_server_first);
  REQUIRE(final2.has_value());
  CHECK(final2.value().view() == rfc_client_final);
}

TEST_CASE("SCRAM with a wrong password produces a different proof", "[pgwire][scram]") {
  scram_client c("pencil2", rfc_options());
  REQUIRE(c.client_first().has_value());
  auto final = c.on_server_first(rfc_server_first);
  REQUIRE(final.has_value());
  CHECK(final.value().view() != rfc_client_final);
  // The genuine server's signature does not verify for a different password.
  CHECK(error_of(c.on_server_final(rfc_server_final)) == errc::scram_bad_server_signature);
}

TEST_CASE("SCRAM fails closed on a wrong or malformed server-final", "[pgwire][scram]") {
  struct bad_final {
    std::string message;
    errc expected;
  };
  std::string flipped(rfc_server_final);
  flipped[5] = flipped[5] == 'A' ? 'B' : 'A';
  const bad_final cases[] = {
      {flipped, errc::scram_bad_server_signature},
      {"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", errc::scram_bad_server_signature},
      {"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4", errc::scram_malformed_server_final},
      {"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl9", errc::scram_malformed_server_final},
      {"v=", errc::scram_malformed_server_final},
      {"v=!!!!", errc::scram_malformed_server_final},
      {"", errc::scram_malformed_server_final},
      {"x=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=", errc::scram_malformed_server_final},
      {std::string(rfc_server_final) + ",", errc::scram_malformed_server_final},
      {std::string(rfc_server_final) + ",junk", errc::scram_malformed_server_final},
      {std::string("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=\0", 47),
       errc::scram_malformed_server_final},
      {"e=invalid-proof", errc::scram_server_error},
  };
  for (const auto& bad : cases) {
    INFO("server-final: " << bad.message);
    scram_client c("pencil", rfc_options());
    REQUIRE(c.client_first().has_value());
    REQUIRE(c.on_server_first(rfc_server_first).has_value());
    CHECK(error_of(c.on_server_final(bad.message)) == bad.expected);
    CHECK_FALSE(c.authenticated());
    // Failed for good: even the genuine signature is now refused.
    CHECK(error_of(c.on_server_final(rfc_server_final)) == errc::scram_bad_state);
    CHECK_FALSE(c.authenticated());
  }
}

TEST_CASE("SCRAM accepts well-formed extensions after the server signature", "[pgwire][scram]") {
  scram_client c("pencil", rfc_options());
  REQUIRE(c.client_first().has_value());
  REQUIRE(c.on_server_first(rfc_server_first).has_value());
  REQUIRE(c.on_server_final(std::string(rfc_server_final) + ",x=ext").has_value());
  CHECK(c.authenticated());
}

TEST_CASE("SCRAM reports the server's e= value", "[pgwire][scram]") {
  scram_client c("pencil", rfc_options());
  REQUIRE(c.client_first().has_value());
  REQUIRE(c.on_server_first(rfc_server_first).has_value());
  CHECK(error_of(c.on_server_final("e=invalid-proof,x=y")) == errc::scram_server_error);
  CHECK(c.server_error() == "invalid-proof");

  scram_client d("pencil", rfc_options());
  REQUIRE(d.client_first().has_value());
  REQUIRE(d.on_server_first(rfc_server_first).has_value());
  CHECK(error_of(d.on_server_final(std::string("e=bad\x01\xff" "x", 8))) == errc::scram_server_error);
  CHECK(d.server_error() == "bad??x");
}

TEST_CASE("SCRAM rejects malformed server-first messages with the right error", "[pgwire][scram]") {
  const std::string ours(rfc_nonce);
  const std::string r = "r=" + ours + "srv";
  const std::string s = ",s=" + std::string(rfc_salt_b64);
  struct bad_first {
    std::string message;
    errc expected;
  };
  const bad_first cases[] = {
      {"", errc::scram_malformed_server_first},
      {"garbage", errc::scram_malformed_server_first},
      {"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096", errc::scram_malformed_server_first},  // no r
      {r + ",i=4096", errc::scram_malformed_server_first},                        // no s
      {r + s, errc::scram_malformed_server_first},                                // no i
      {r + ",i=4096" + s, errc::scram_malformed_server_first},                    // order
      {s.substr(1) + "," + r + ",i=4096", errc::scram_malformed_server_first},    // order
      {"m=must," + r + s + ",i=4096", errc::scram_malformed_server_first},        // mandatory ext
      {r + s + ",i=4096,", errc::scram_malformed_server_first},                   // empty ext
      {r + s + ",i=4096,junk", errc::scram_malformed_server_first},               // bad ext
      {r + s + ",i=4096,=x", errc::scram_malformed_server_first},                 // bad ext
      {"r=" + ours + "s p" + s + ",i=4096", errc::scram_malformed_server_first},  // space in nonce
      {"r=" + ours + std::string("\0x", 2) + s + ",i=4096", errc::scram_malformed_server_first},
      {"r=," + s.substr(1) + ",i=4096", errc::scram_malformed_server_first},  // empty nonce
      {"r=other" + s + ",i=4096", errc::scram_nonce_mismatch},
      {"r=" + ours + s + ",i=4096", errc::scram_nonce_mismatch},                 // adds nothing
      {"r=" + ours.substr(0, 10) + s + ",i=4096", errc::scram_nonce_mismatch},  // shorter
      {"r=X" + ours + s + ",i=4096", errc::scram_nonce_mismatch},               // not a prefix
      {r + ",s=,i=4096", errc::scram_bad_salt},
      {r + ",s=***,i=4096", errc::scram_bad_salt},
      {r + ",s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096", errc::scram_bad_salt},    // bad length
      {r + ",s=W22ZaJ0SNY7s=EsUEjb6gQ==,i=4096", errc::scram_bad_salt},   // '=' inside
      {r + ",s=====,i=4096", errc::scram_bad_salt},
      {r + s + ",i=0", errc::scram_bad_iterations},
      {r + s + ",i=-1", errc::scram_bad_iterations},
      {r + s + ",i=abc", errc::scram_bad_iterations},
      {r + s + ",i=", errc::scram_bad_iterations},
      {r + s + ",i=+4096", errc::scram_bad_iterations},
      {r + s + ",i=4096x", errc::scram_bad_iterations},
      {r + s + ",i= 4096", errc::scram_bad_iterations},
      {r + s + ",i=100001", errc::scram_bad_iterations},  // over the default bound
      {r + s + ",i=4294967296", errc::scram_bad_iterations},
      {r + s + ",i=99999999999999999999999", errc::scram_bad_iterations},
  };
  for (const auto& bad : cases) {
    INFO("server-first: " << bad.message);
    scram_client c = started_client();
    CHECK(error_of(c.on_server_first(bad.message)) == bad.expected);
    CHECK(error_of(c.keys()) == errc::scram_bad_state);
    // Failed for good.
    CHECK(error_of(c.on_server_first(rfc_server_first)) == errc::scram_bad_state);
    CHECK(error_of(c.on_server_final(rfc_server_final)) == errc::scram_bad_state);
  }
}

TEST_CASE("SCRAM iteration bound is configurable and inclusive", "[pgwire][scram]") {
  scram_options at_bound = rfc_options();
  at_bound.max_iterations = 4096;
  scram_client ok("pencil", std::move(at_bound));
  REQUIRE(ok.client_first().has_value());
  auto final = ok.on_server_first(rfc_server_first);
  REQUIRE(final.has_value());
  CHECK(final.value().view() == rfc_client_final);

  scram_options below = rfc_options();
  below.max_iterations = 4095;
  scram_client refused("pencil", std::move(below));
  REQUIRE(refused.client_first().has_value());
  CHECK(error_of(refused.on_server_first(rfc_server_first)) == errc::scram_bad_iterations);
}

TEST_CASE("SCRAM accepts well-formed optional extensions after i=", "[pgwire][scram]") {
  scram_client c = started_client();
  auto final = c.on_server_first(std::string(rfc_server_first) + ",x=1,y=two");
  REQUIRE(final.has_value());
  CHECK(final.value().view().starts_with(
      "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p="));
}

TEST_CASE("SCRAM steps called out of order fail with scram_bad_state", "[pgwire][scram]") {
  SECTION("server-first before client-first") {
    scram_client c("pencil", rfc_options());
    CHECK(error_of(c.on_server_first(rfc_server_first)) == errc::scram_bad_state);
    CHECK(error_of(c.client_first()) == errc::scram_bad_state);
  }
  SECTION("server-final before server-first") {
    scram_client c("pencil", rfc_options());
    REQUIRE(c.client_first().has_value());
    CHECK(error_of(c.on_server_final(rfc_server_final)) == errc::scram_bad_state);
    CHECK(error_of(c.on_server_first(rfc_server_first)) == errc::scram_bad_state);
  }
  SECTION("client-first twice") {
    scram_client c("pencil", rfc_options());
    REQUIRE(c.client_first().has_value());
    CHECK(error_of(c.client_first()) == errc::scram_bad_state);
  }
  SECTION("server-first twice") {
    scram_client c("pencil", rfc_options());
    REQUIRE(c.client_first().has_value());
    REQUIRE(c.on_server_first(rfc_server_first).has_value());
    CHECK(error_of(c.on_server_first(rfc_server_first)) == errc::scram_bad_state);
  }
  SECTION("server-final after completion") {
    scram_client c("pencil", rfc_options());
    REQUIRE(c.client_first().has_value());
    REQUIRE(c.on_server_first(rfc_server_first).has_value());
    REQUIRE(c.on_server_final(rfc_server_final).has_value());
    CHECK(error_of(c.on_server_final(rfc_server_final)) == errc::scram_bad_state);
  }
}

TEST_CASE("SCRAM-SHA-256-PLUS binds the certificate hash", "[pgwire][scram]") {
  std::vector<std::uint8_t> hash(32);
  for (std::size_t i = 0; i < hash.size(); ++i) hash[i] = static_cast<std::uint8_t>(i);
  scram_options o;
  o.channel_binding = scram_channel_binding::tls_server_end_point;
  o.cert_hash = hash;
  o.nonce_source = fixed_nonce(std::string(rfc_nonce));
  scram_client c("pencil", std::move(o));
  CHECK(c.mechanism() == "SCRAM-SHA-256-PLUS");

  auto first = c.client_first();
  REQUIRE(first.has_value());
  CHECK(first.value() == "p=tls-server-end-point,,n=,r=rOprNGfwEbeRWgbNEkqO");

  // Expected values computed independently with Python:
  // c = base64("p=tls-server-end-point,," + bytes(range(32))).
  auto final = c.on_server_first(rfc_server_first);
  REQUIRE(final.has_value());
  CHECK(final.value().view() ==
        "c=cD10bHMtc2VydmVyLWVuZC1wb2ludCwsAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=,"
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        "p=Q8h71kjaoMzNI7dPksDrhRE/5mTUObF0fUHVIgBOWQg=");
  REQUIRE(c.on_server_final("v=ykwoqH8mLqO5AQCeuwwf6lsj9f8zyJZT/CcvAbN4Ssc=").has_value());
  CHECK(c.authenticated());
  CHECK(c.channel_bound());
}

TEST_CASE("SCRAM-SHA-256-PLUS without a certificate hash refuses to start", "[pgwire][scram]") {
  scram_options o;
  o.channel_binding = scram_channel_binding::tls_server_end_point;
  scram_client c("pencil", std::move(o));
  CHECK(error_of(c.client_first()) == errc::scram_mechanism_unsupported);
}

TEST_CASE("SCRAM gs2 flag y: client supports channel binding, server does not", "[pgwire][scram]") {
  scram_options o;
  o.channel_binding = scram_channel_binding::client_supports_server_not;
  o.nonce_source = fixed_nonce(std::string(rfc_nonce));
  scram_client c("pencil", std::move(o));
  CHECK(c.mechanism() == "SCRAM-SHA-256");
  auto first = c.client_first();
  REQUIRE(first.has_value());
  CHECK(first.value() == "y,,n=,r=rOprNGfwEbeRWgbNEkqO");
  auto final = c.on_server_first(rfc_server_first);
  REQUIRE(final.has_value());
  CHECK(final.value().view().starts_with("c=eSws,r="));  // base64("y,,")
}

TEST_CASE("SCRAM exposes the derived keys", "[pgwire][scram]") {
  scram_client c("pencil", rfc_options());
  CHECK(error_of(c.keys()) == errc::scram_bad_state);
  REQUIRE(c.client_first().has_value());
  CHECK(error_of(c.keys()) == errc::scram_bad_state);
  REQUIRE(c.on_server_first(rfc_server_first).has_value());
  auto keys = c.keys();
  REQUIRE(keys.has_value());
  CHECK(to_hex(keys.value().salted_password.view()) == rfc_salted_password_hex);
  CHECK(to_hex(keys.value().client_key.view()) == rfc_client_key_hex);
  CHECK(to_hex(keys.value().server_key.view()) == rfc_server_key_hex);
  CHECK_FALSE(c.used_cached_keys());
}

TEST_CASE("SCRAM cached keys skip PBKDF2 only when salt and iterations match", "[pgwire][scram]") {
  scram_client first("pencil", rfc_options());
  REQUIRE(first.client_first().has_value());
  REQUIRE(first.on_server_first(rfc_server_first).has_value());
  REQUIRE(first.on_server_final(rfc_server_final).has_value());
  auto keys = first.keys();
  REQUIRE(keys.has_value());
  const std::string salt(first.salt());

  SECTION("matching salt and iterations: same proof, from the cache") {
    scram_client c("pencil", rfc_options());
    c.set_cached_keys(salt, 4096, keys.value().clone());
    REQUIRE(c.client_first().has_value());
    auto final = c.on_server_first(rfc_server_first);
    REQUIRE(final.has_value());
    CHECK(c.used_cached_keys());
    CHECK(final.value().view() == rfc_client_final);
    REQUIRE(c.on_server_final(rfc_server_final).has_value());
  }
  SECTION("the cached keys are really used (wrong keys give a wrong proof)") {
    scram_client c("pencil", rfc_options());
    pgwire::scram_keys zero{pgwire::secret_string(32, '\0'), pgwire::secret_string(32, '\0'),
                            pgwire::secret_string(32, '\0')};
    c.set_cached_keys(salt, 4096, std::move(zero));
    REQUIRE(c.client_first().has_value());
    auto final = c.on_server_first(rfc_server_first);
    REQUIRE(final.has_value());
    CHECK(c.used_cached_keys());
    CHECK(final.value().view() != rfc_client_final);
    CHECK(error_of(c.on_server_final(rfc_server_final)) == errc::scram_bad_server_signature);
  }
  SECTION("different iterations: derived again") {
    scram_client c("pencil", rfc_options());
    c.set_cached_keys(salt, 4097, keys.value().clone());
    REQUIRE(c.client_first().has_value());
    auto final = c.on_server_first(rfc_server_first);
    REQUIRE(final.has_value());
    CHECK_FALSE(c.used_cached_keys());
    CHECK(final.value().view() == rfc_client_final);
  }
  SECTION("different salt: derived again") {
    scram_client c("pencil", rfc_options());
    c.set_cached_keys("another salt", 4096, keys.value().clone());
    REQUIRE(c.client_first().has_value());
    auto final = c.on_server_first(rfc_server_first);
    REQUIRE(final.has_value());
    CHECK_FALSE(c.used_cached_keys());
    CHECK(final.value().view() == rfc_client_final);
  }
}

TEST_CASE("SCRAM nonce source: default is random printable, failures are reported", "[pgwire][scram]") {
  scram_client a("pencil");
  scram_client b("pencil");
  auto fa = a.client_first();
  auto fb = b.client_first();
  REQUIRE(fa.has_value());
  REQUIRE(fb.has_value());
  REQUIRE(fa.value().starts_with("n,,n=,r="));
  const std::string nonce = fa.value().substr(8);
  CHECK(nonce.size() == 24);  // base64 of 18 random bytes
  for (const char ch : nonce) CHECK(ch != ',');
  CHECK(fa.value() != fb.value());

  for (const char* bad : {"", "a,b", "sp ace"}) {
    INFO("nonce '" << bad << "'");
    scram_options o;
    o.nonce_source = fixed_nonce(bad);
    scram_client c("pencil", std::move(o));
    CHECK(error_of(c.client_first()) == errc::crypto_failure);
  }
}

TEST_CASE("choose_scram_mechanism follows libpq's rules", "[pgwire][scram]") {
  using pgwire::channel_binding_mode;
  const std::vector<std::string_view> both = {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"};
  const std::vector<std::string_view> plain = {"SCRAM-SHA-256"};
  const std::vector<std::string_view> plus_only = {"SCRAM-SHA-256-PLUS"};
  const std::vector<std::string_view> none = {"OAUTHBEARER"};
  const auto choose = [](const std::vector<std::string_view>& offered, bool tls, bool hash,
                         channel_binding_mode mode = channel_binding_mode::prefer) {
    return pgwire::choose_scram_mechanism(offered, tls, hash, mode);
  };

  CHECK(choose(both, true, true).value() == scram_channel_binding::tls_server_end_point);
  CHECK(choose(both, true, false).value() == scram_channel_binding::none_supported);
  CHECK(choose(both, true, true, channel_binding_mode::disable).value() ==
        scram_channel_binding::none_supported);
  CHECK(error_of(choose(both, false, false)) == errc::scram_mechanism_unsupported);
  CHECK(error_of(choose(plus_only, false, true)) == errc::scram_mechanism_unsupported);
  CHECK(error_of(choose(plus_only, true, false)) == errc::scram_mechanism_unsupported);
  CHECK(choose(plus_only, true, true).value() == scram_channel_binding::tls_server_end_point);

  CHECK(choose(plain, true, true).value() == scram_channel_binding::client_supports_server_not);
  CHECK(choose(plain, true, false).value() == scram_channel_binding::client_supports_server_not);
  CHECK(choose(plain, false, false).value() == scram_channel_binding::none_supported);
  CHECK(choose(plain, true, true, channel_binding_mode::disable).value() ==
        scram_channel_binding::none_supported);

  CHECK(error_of(choose(plain, true, true, channel_binding_mode::require)) ==
        errc::scram_mechanism_unsupported);
  CHECK(error_of(choose(both, true, false, channel_binding_mode::require)) ==
        errc::scram_mechanism_unsupported);
  CHECK(choose(both, true, true, channel_binding_mode::require).value() ==
        scram_channel_binding::tls_server_end_point);

  CHECK(error_of(choose(none, true, true)) == errc::scram_mechanism_unsupported);
  CHECK(error_of(choose({}, false, false)) == errc::scram_mechanism_unsupported);

  const std::vector<std::string> owned = {"SCRAM-SHA-256"};
  CHECK(pgwire::choose_scram_mechanism(owned, false, false).value() ==
        scram_channel_binding::none_supported);
  CHECK(pgwire::scram_mechanism_name(scram_channel_binding::tls_server_end_point) ==
        "SCRAM-SHA-256-PLUS");
  CHECK(pgwire::scram_mechanism_name(scram_channel_binding::client_supports_server_not) ==
        "SCRAM-SHA-256");
}

TEST_CASE("tls_server_end_point_hash with a digest NID", "[pgwire][scram]") {
  const std::string_view hello = "hello";
  const std::span<const std::uint8_t> bytes(reinterpret_cast<const std::uint8_t*>(hello.data()),
                                            hello.size());
  // Expected digests of "hello" from Python's hashlib.
  const std::string sha256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
  CHECK(to_hex(pgwire::tls_server_end_point_hash(bytes, NID_sha256).value()) == sha256);
  CHECK(to_hex(pgwire::tls_server_end_point_hash(bytes, NID_md5).value()) == sha256);   // upgraded
  CHECK(to_hex(pgwire::tls_server_end_point_hash(bytes, NID_sha1).value()) == sha256);  // upgraded
  CHECK(to_hex(pgwire::tls_server_end_point_hash(bytes, NID_sha384).value()) ==
        "59e1748777448c69de6b800d7a33bbfb9ff1b463e44354c3553bcdb9c666fa90"
        "125a3c79f90397bdf5f6a13de828684f");
  CHECK(pgwire::tls_server_end_point_hash(bytes, NID_sha512).value().size() == 64);
  CHECK(error_of(pgwire::tls_server_end_point_hash(bytes, NID_undef)) ==
        errc::scram_mechanism_unsupported);
}

TEST_CASE("tls_server_end_point_hash reads the digest from the certificate", "[pgwire][scram]") {
  // Self-signed certificates made with `openssl req -x509`; expected hashes of the
  // DER files from Python's hashlib.
  const auto sha384_cert = from_hex(cert_ecdsa_sha384_hex);
  auto h384 = pgwire::tls_server_end_point_hash(sha384_cert);
  REQUIRE(h384.has_value());
  CHECK(to_hex(h384.value()) ==
        "af8543bd6a61e07a1e9219da5dc19862e1260ff5d584609db55e22bf14f8f638"
        "5e1250b500144faebd832cf7ac4507d9");

  const auto sha1_cert = from_hex(cert_ecdsa_sha1_hex);
  auto h1 = pgwire::tls_server_end_point_hash(sha1_cert);
  REQUIRE(h1.has_value());
  CHECK(to_hex(h1.value()) == "1e8593d88202ab8429dc96a5c577a371f4036fe2ad217195760cb104e0e480c6");

  // Ed25519 has no separate digest: PostgreSQL cannot bind it either.
  CHECK(error_of(pgwire::tls_server_end_point_hash(from_hex(cert_ed25519_hex))) ==
        errc::scram_mechanism_unsupported);

  std::vector<std::uint8_t> trailing = sha1_cert;
  trailing.push_back(0);
  CHECK(error_of(pgwire::tls_server_end_point_hash(trailing)) == errc::crypto_failure);
  std::vector<std::uint8_t> truncated(sha1_cert.begin(), sha1_cert.end() - 1);
  CHECK(error_of(pgwire::tls_server_end_point_hash(truncated)) == errc::crypto_failure);
  CHECK(error_of(pgwire::tls_server_end_point_hash(std::span<const std::uint8_t>{})) ==
        errc::crypto_failure);
}

TEST_CASE("SCRAM survives random and mutated server messages", "[pgwire][scram]") {
  std::mt19937 rng(0x5c7a4d);  // fixed seed: reproducible
  const auto pick = [&](std::size_t n) {
    return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
  };
  const std::string alphabet = std::string("rsimvex=,+/0123456789AbQ%$ ") + '\0' + "\x80\xff";
  const std::string valid_first = "r=abcSERVER,s=c2FsdA==,i=2";
  const auto random_text = [&](std::size_t max_len) {
    std::string out(pick(max_len + 1), '\0');
    for (char& c : out) c = alphabet[pick(alphabet.size())];
    return out;
  };
  const auto mutate = [&](std::string s) {
    const std::size_t edits = 1 + pick(4);
    for (std::size_t e = 0; e < edits; ++e) {
      switch (pick(3)) {
        case 0:
          if (!s.empty()) s[pick(s.size())] = alphabet[pick(alphabet.size())];
          break;
        case 1:
          s.insert(s.begin() + static_cast<std::ptrdiff_t>(pick(s.size() + 1)),
                   alphabet[pick(alphabet.size())]);
          break;
        default:
          s.resize(pick(s.size() + 1));
          break;
      }
    }
    return s;
  };

  int accepted = 0;
  int rejected = 0;
  for (int round = 0; round < 3000; ++round) {
    scram_options o;
    o.max_iterations = 16;
    o.nonce_source = fixed_nonce("abc");
    scram_client c("pencil", std::move(o));
    REQUIRE(c.client_first().has_value());

    const std::string first = pick(3) == 0 ? random_text(60) : mutate(valid_first);
    auto final = c.on_server_first(first);
    if (!final) {
      ++rejected;
      REQUIRE(error_of(c.on_server_final("v=AAAA")) == errc::scram_bad_state);
      continue;
    }
    ++accepted;
    REQUIRE(final.value().view().starts_with("c=biws,r=abc"));

    std::string server_final;
    switch (pick(3)) {
      case 0: server_final = random_text(60); break;
      case 1: server_final = mutate("v=ykwoqH8mLqO5AQCeuwwf6lsj9f8zyJZT/CcvAbN4Ssc="); break;
      default: server_final = mutate("e=other-error"); break;
    }
    // No random message can carry the right signature.
    REQUIRE_FALSE(c.on_server_final(server_final).has_value());
    REQUIRE_FALSE(c.authenticated());
  }
  // The generator reached both the accepting and the rejecting paths.
  CHECK(accepted > 50);
  CHECK(rejected > 50);
}

TEST_CASE("SCRAM read_server_first and finish_server_first are on_server_first in two steps", "[pgwire][scram]") {
  scram_client c("pencil", rfc_options());
  REQUIRE(c.client_first().has_value());
  auto must_derive = c.read_server_first(rfc_server_first);
  REQUIRE(must_derive.has_value());
  CHECK(must_derive.value());     // no cached keys: PBKDF2 must run
  CHECK(c.iterations() == 4096);  // known before the costly step
  auto final = c.finish_server_first();
  REQUIRE(final.has_value());
  CHECK(final.value().view() == rfc_client_final);
  CHECK(c.on_server_final(rfc_server_final).has_value());

  SECTION("matching cached keys need no derivation") {
    auto keys = c.keys();
    REQUIRE(keys.has_value());
    scram_client again("pencil", rfc_options());
    again.set_cached_keys(c.salt(), 4096, keys.value().clone());
    REQUIRE(again.client_first().has_value());
    auto need = again.read_server_first(rfc_server_first);
    REQUIRE(need.has_value());
    CHECK_FALSE(need.value());
    auto f = again.finish_server_first();
    REQUIRE(f.has_value());
    CHECK(f.value().view() == rfc_client_final);
    CHECK(again.used_cached_keys());
  }
  SECTION("finish without a read, or twice, is a state error") {
    scram_client fresh = started_client();
    CHECK(error_of(fresh.finish_server_first()) == errc::scram_bad_state);
    CHECK(error_of(c.finish_server_first()) == errc::scram_bad_state);
  }
  SECTION("the iteration bound is checked when reading") {
    scram_options o = rfc_options();
    o.max_iterations = 4095;
    scram_client low("pencil", std::move(o));
    REQUIRE(low.client_first().has_value());
    CHECK(error_of(low.read_server_first(rfc_server_first)) == errc::scram_bad_iterations);
  }
}
