#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>

#include "pgwire/errc.hpp"
#include "pgwire/scram.hpp"
#include "pgwire/scram_server.hpp"
#include "pgwire/scram_verifier.hpp"

using pgwire::errc;
using pgwire::make_scram_verifier;
using pgwire::parse_scram_verifier;
using pgwire::scram_verifier;

namespace {

// RFC 7677's password and salt, 4096 iterations. The keys were computed independently
// with Python (hashlib.pbkdf2_hmac, hmac, hashlib.sha256) from RFC 5802's definitions:
// StoredKey = H(HMAC(SaltedPassword, "Client Key")), ServerKey = HMAC(SaltedPassword,
// "Server Key").
constexpr std::string_view rfc_verifier =
    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
const std::string rfc_salt("\x5b\x6d\x99\x68\x9d\x12\x35\x8e\xec\xa0\x4b\x14\x12\x36\xfa\x81", 16);
constexpr std::string_view rfc_stored_key_hex = "586e5df283e6dceb5c3e791d8b8528ec191e664045ce971792e2e6b5bb13e2a6";
constexpr std::string_view rfc_server_key_hex = "c1f3cbc1c13a9d35a14c0990eed97629ea225863e566a4314ab99f3f00e5d9d5";

// Verifiers made by a real PostgreSQL (15.18, Debian 12's postgresql-15, started with
// tests/support/pg-harness, server_encoding UTF8):
//   SET password_encryption = 'scram-sha-256';
//   CREATE ROLE x_pencil PASSWORD 'pencil';
//   CREATE ROLE x_unicode PASSWORD U&'p\00e4ss\00adw\00f6rd\2163';
//   SELECT rolpassword FROM pg_authid WHERE rolname IN ('x_pencil', 'x_unicode');
// Python's hashlib confirms the second was derived from the SASLprep'd "p\u00e4ssw\u00f6rdIV",
// not from the raw bytes.
struct pg_made {
  std::string_view password;
  std::string_view verifier;
};
const pg_made postgres_verifiers[] = {
    {"pencil", "SCRAM-SHA-256$4096:Z+ikC2U2ji429o9bldKnFQ==$9+EF/b0fLJGRAHDUeDKPMU8jFFxplBT9KMzEbvV6IC4="
               ":WMh4OHFfp04lUSv4kC7uHQc4FKM6r+ecnOL130fCW84="},
    // Non-ASCII: SASLprep maps U+00AD (soft hyphen) to nothing and NFKC-normalizes
    // U+2163 (ROMAN NUMERAL FOUR) to "IV", on both sides.
    {"p\xc3\xa4ss\xc2\xadw\xc3\xb6rd\xe2\x85\xa3", "SCRAM-SHA-256$4096:yvnoLTdz8EYLqLhB2Qod5g==$kVnMudNSN25/bQVFjmKFqz5V3AL1rXFpLYmh48OEVcc="
     ":/yNNNitzTvMIRs+It8c2hp9RM9EgolBnMfyrJYtzBEM="},
};

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

template <class T>
std::error_code error_of(const boost::outcome_v2::std_result<T>& r) {
  return r ? std::error_code{} : r.error();
}

bool logs_in(const scram_verifier& verifier, std::string_view password) {
  pgwire::scram_server s(verifier.clone());
  pgwire::scram_client c(password);
  if (!s.select_mechanism(c.mechanism())) return false;
  auto first = c.client_first();
  if (!first) return false;
  auto server_first = s.on_client_first(first.value());
  if (!server_first) return false;
  auto final = c.on_server_first(server_first.value());
  if (!final) return false;
  auto server_final = s.on_client_final(final.value().view());
  return server_final && c.on_server_final(server_final.value()) && s.authenticated();
}

}  // namespace

TEST_CASE("make_scram_verifier reproduces the keys of RFC 7677's password", "[pgwire][scram_verifier]") {
  auto v = make_scram_verifier("pencil", 4096, rfc_salt);
  REQUIRE(v.has_value());
  CHECK(v.value().valid());
  CHECK(v.value().iterations == 4096);
  CHECK(v.value().salt == rfc_salt);
  CHECK(to_hex(v.value().stored_key.view()) == rfc_stored_key_hex);
  CHECK(to_hex(v.value().server_key.view()) == rfc_server_key_hex);
  CHECK(v.value().format().view() == rfc_verifier);
}

TEST_CASE("scram_verifier reads and writes what PostgreSQL stores", "[pgwire][scram_verifier]") {
  for (const auto& pg : postgres_verifiers) {
    INFO(pg.verifier);
    auto v = parse_scram_verifier(pg.verifier);
    REQUIRE(v.has_value());
    CHECK(v.value().valid());
    CHECK(v.value().iterations == 4096);
    CHECK(v.value().salt.size() == pgwire::scram_salt_len);
    CHECK(v.value().format().view() == pg.verifier);
    // Our derivation (SASLprep included) gives PostgreSQL's keys for its salt.
    auto ours = make_scram_verifier(pg.password, v.value().iterations, v.value().salt);
    REQUIRE(ours.has_value());
    CHECK(ours.value().format().view() == pg.verifier);
    // And the server logs the password in with it.
    CHECK(logs_in(v.value(), pg.password));
    CHECK_FALSE(logs_in(v.value(), "pencil2"));
  }
}

TEST_CASE("parse_scram_verifier refuses what is not a verifier", "[pgwire][scram_verifier]") {
  const std::string salt = "W22ZaJ0SNY7soEsUEjb6gQ==";
  const std::string stored = "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=";
  const std::string server = "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
  const std::string keys = "$" + stored + ":" + server;
  const std::string bad[] = {
      "",
      "pencil",
      "md5" + std::string(32, 'a'),
      "SCRAM-SHA-256",
      "SCRAM-SHA-256$",
      "scram-sha-256$4096:" + salt + keys,         // scheme is case-sensitive
      "SCRAM-SHA-1$4096:" + salt + keys,
      " SCRAM-SHA-256$4096:" + salt + keys,
      "SCRAM-SHA-256$4096:" + salt + keys + " ",
      "SCRAM-SHA-256$4096:" + salt + keys + "\n",
      "SCRAM-SHA-256$:" + salt + keys,             // no count
      "SCRAM-SHA-256$0:" + salt + keys,
      "SCRAM-SHA-256$-1:" + salt + keys,
      "SCRAM-SHA-256$+4096:" + salt + keys,
      "SCRAM-SHA-256$ 4096:" + salt + keys,
      "SCRAM-SHA-256$4096x:" + salt + keys,
      "SCRAM-SHA-256$2147483648:" + salt + keys,   // over INT_MAX
      "SCRAM-SHA-256$99999999999:" + salt + keys,
      "SCRAM-SHA-256$4096:" + keys,                // empty salt
      "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=" + keys,
      "SCRAM-SHA-256$4096:" + salt + "$" + stored,  // one key
      "SCRAM-SHA-256$4096:" + salt + "$" + stored + ":",
      "SCRAM-SHA-256$4096:" + salt + "$:" + server,
      "SCRAM-SHA-256$4096:" + salt + keys + ":" + server,  // three keys
      "SCRAM-SHA-256$4096:" + salt + keys + "$x",
      "SCRAM-SHA-256$4096:" + salt + "$" + stored.substr(4) + ":" + server,  // 29 bytes
      "SCRAM-SHA-256$4096:" + salt + "$" + stored + "AAAA:" + server,        // 35 bytes
      "SCRAM-SHA-256$4096:" + salt + "$" + stored + ":" + server.substr(0, 43),
      "SCRAM-SHA-256$4096$" + salt + keys,          // separators swapped
      "SCRAM-SHA-256$4096:" + salt + ":" + stored + "$" + server,
      std::string("SCRAM-SHA-256$4096:") + salt + keys + std::string(1, '\0'),
  };
  for (const auto& text : bad) {
    INFO(text);
    CHECK(error_of(parse_scram_verifier(text)) == errc::scram_bad_verifier);
  }
  // The biggest count a verifier may carry (PKCS5_PBKDF2_HMAC takes an int).
  auto max = parse_scram_verifier("SCRAM-SHA-256$2147483647:" + salt + keys);
  REQUIRE(max.has_value());
  CHECK(max.value().iterations == 2147483647u);
}

TEST_CASE("make_scram_verifier: a fresh 16-byte salt and PostgreSQL's count by default", "[pgwire][scram_verifier]") {
  auto a = make_scram_verifier("pencil");
  auto b = make_scram_verifier("pencil");
  REQUIRE(a.has_value());
  REQUIRE(b.has_value());
  CHECK(a.value().iterations == 4096);
  CHECK(a.value().salt.size() == 16);
  CHECK(a.value().salt != b.value().salt);
  CHECK(a.value().stored_key.view() != b.value().stored_key.view());
  auto round = parse_scram_verifier(a.value().format().view());
  REQUIRE(round.has_value());
  CHECK(round.value().format().view() == a.value().format().view());
  CHECK(logs_in(a.value(), "pencil"));
}

TEST_CASE("make_scram_verifier applies SASLprep as PostgreSQL does", "[pgwire][scram_verifier]") {
  // U+00AD maps to nothing: the same verifier as "pencil".
  auto shy = make_scram_verifier("pen\xc2\xad" "cil", 4096, rfc_salt);
  REQUIRE(shy.has_value());
  CHECK(shy.value().format().view() == rfc_verifier);
  // Invalid UTF-8: the raw bytes, the same as the client uses.
  auto raw = make_scram_verifier("\xff\xfe" "pencil", 4096, rfc_salt);
  REQUIRE(raw.has_value());
  CHECK(raw.value().format().view() != rfc_verifier);
  CHECK(logs_in(raw.value(), "\xff\xfe" "pencil"));
  // From a secret_string.
  auto secret = make_scram_verifier(pgwire::secret_string("pencil"), 4096, rfc_salt);
  REQUIRE(secret.has_value());
  CHECK(secret.value().format().view() == rfc_verifier);
}

TEST_CASE("make_scram_verifier refuses iteration counts PBKDF2 cannot take", "[pgwire][scram_verifier]") {
  CHECK(error_of(make_scram_verifier("pencil", 0)) == errc::scram_bad_iterations);
  CHECK(error_of(make_scram_verifier("pencil", 0x80000000u)) == errc::scram_bad_iterations);
  auto one = make_scram_verifier("pencil", 1, rfc_salt);
  REQUIRE(one.has_value());
  CHECK(one.value().format().view().starts_with("SCRAM-SHA-256$1:W22ZaJ0SNY7soEsUEjb6gQ==$"));
}

TEST_CASE("scram_verifier: clone, valid, and format of a broken one", "[pgwire][scram_verifier]") {
  auto v = parse_scram_verifier(rfc_verifier);
  REQUIRE(v.has_value());
  const scram_verifier copy = v.value().clone();
  CHECK(copy.format().view() == rfc_verifier);
  CHECK_FALSE(scram_verifier{}.valid());
  scram_verifier broken = v.value().clone();
  broken.server_key = pgwire::secret_string(std::string(64, 'x'));
  CHECK_FALSE(broken.valid());
  CHECK(error_of(parse_scram_verifier(broken.format().view())) == errc::scram_bad_verifier);
}
