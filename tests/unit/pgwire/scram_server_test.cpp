#include <catch2/catch.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "pgwire/errc.hpp"
#include "pgwire/scram.hpp"
#include "pgwire/scram_server.hpp"
#include "pgwire/scram_verifier.hpp"

using pgwire::errc;
using pgwire::scram_channel_binding;
using pgwire::scram_client;
using pgwire::scram_options;
using pgwire::scram_server;
using pgwire::scram_server_options;
using pgwire::scram_verifier;
using pgwire::secret_string;

namespace {

// RFC 7677 section 3.
constexpr std::string_view rfc_client_first = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr std::string_view rfc_server_nonce_part = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr std::string_view rfc_server_first =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr std::string_view rfc_client_final =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr std::string_view rfc_server_final = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
// W22ZaJ0SNY7soEsUEjb6gQ== decoded.
const std::string rfc_salt("\x5b\x6d\x99\x68\x9d\x12\x35\x8e\xec\xa0\x4b\x14\x12\x36\xfa\x81", 16);

constexpr std::string_view client_nonce = "clientNONCE";
constexpr std::string_view server_nonce = "serverNONCE";
constexpr std::string_view nonce = "clientNONCEserverNONCE";

template <class T>
std::error_code error_of(const boost::outcome_v2::std_result<T>& r) {
  return r ? std::error_code{} : r.error();
}

std::function<std::string()> fixed_nonce(std::string_view n) {
  return [n = std::string(n)] { return n; };
}

scram_verifier verifier_for(std::string_view password, std::string_view salt = {}) {
  auto v = pgwire::make_scram_verifier(password, pgwire::scram_default_iterations, salt);
  REQUIRE(v.has_value());
  return std::move(v).value();
}

scram_server_options server_options(std::vector<std::uint8_t> cert_hash = {},
                                    std::string_view nonce_part = server_nonce) {
  scram_server_options o;
  o.cert_hash = std::move(cert_hash);
  o.nonce_source = fixed_nonce(nonce_part);
  return o;
}

std::vector<std::uint8_t> hash_of(std::uint8_t seed) {
  std::vector<std::uint8_t> h(32);
  for (std::size_t i = 0; i < h.size(); ++i) h[i] = static_cast<std::uint8_t>(seed + i);
  return h;
}

// Drives one whole exchange between a scram_client and a scram_server, the way a
// listener moves the strings: the first error from either side, or none.
struct exchange_result {
  std::error_code error;
  std::string server_first;
};

exchange_result run_exchange(scram_client& c, scram_server& s) {
  exchange_result r;
  if (auto m = s.select_mechanism(c.mechanism()); !m) return {m.error(), {}};
  auto first = c.client_first();
  if (!first) return {first.error(), {}};
  auto server_first = s.on_client_first(first.value());
  if (!server_first) return {server_first.error(), {}};
  r.server_first = server_first.value();
  auto final = c.on_server_first(server_first.value());
  if (!final) return {final.error(), r.server_first};
  auto server_final = s.on_client_final(final.value().view());
  if (!server_final) return {server_final.error(), r.server_first};
  if (auto done = c.on_server_final(server_final.value()); !done) return {done.error(), r.server_first};
  return r;
}

scram_client client_for(std::string_view password, scram_channel_binding binding = scram_channel_binding::none_supported,
                        std::vector<std::uint8_t> cert_hash = {}) {
  scram_options o;
  o.channel_binding = binding;
  o.cert_hash = std::move(cert_hash);
  return scram_client(password, std::move(o));
}

// A server past select_mechanism and on_client_first with fixed nonces, gs2 flag n.
scram_server started_server(std::string_view password = "pencil") {
  scram_server s(verifier_for(password), server_options());
  REQUIRE(s.select_mechanism("SCRAM-SHA-256").has_value());
  REQUIRE(s.on_client_first("n,,n=,r=" + std::string(client_nonce)).has_value());
  return s;
}

}  // namespace

TEST_CASE("SCRAM server reproduces the RFC 7677 exchange", "[pgwire][scram_server]") {
  scram_server s(verifier_for("pencil", rfc_salt), server_options({}, rfc_server_nonce_part));
  CHECK(s.mechanisms() == std::vector<std::string_view>{"SCRAM-SHA-256"});
  REQUIRE(s.select_mechanism("SCRAM-SHA-256").has_value());

  auto first = s.on_client_first(rfc_client_first);
  REQUIRE(first.has_value());
  CHECK(first.value() == rfc_server_first);
  CHECK_FALSE(s.authenticated());

  auto final = s.on_client_final(rfc_client_final);
  REQUIRE(final.has_value());
  CHECK(final.value() == rfc_server_final);
  CHECK(s.authenticated());
  CHECK_FALSE(s.channel_bound());
  CHECK_FALSE(s.mock());
  // Done: nothing more is taken.
  CHECK(error_of(s.on_client_final(rfc_client_final)) == errc::scram_bad_state);
}

TEST_CASE("SCRAM server and scram_client agree, with and without channel binding", "[pgwire][scram_server]") {
  const std::string password = "correct horse battery staple";
  const auto cert = hash_of(7);

  SECTION("n: no channel binding, no TLS") {
    scram_server s(verifier_for(password), server_options());
    scram_client c = client_for(password);
    const auto r = run_exchange(c, s);
    CHECK_FALSE(r.error);
    CHECK(s.authenticated());
    CHECK(c.authenticated());
    CHECK_FALSE(s.channel_bound());
  }
  SECTION("y: the client could bind, the server (no TLS) cannot") {
    scram_server s(verifier_for(password), server_options());
    scram_client c = client_for(password, scram_channel_binding::client_supports_server_not);
    CHECK_FALSE(run_exchange(c, s).error);
    CHECK(s.authenticated());
  }
  SECTION("n on TLS: PLUS offered, the client does not bind") {
    scram_server s(verifier_for(password), server_options(cert));
    scram_client c = client_for(password);
    CHECK_FALSE(run_exchange(c, s).error);
    CHECK(s.authenticated());
    CHECK_FALSE(s.channel_bound());
  }
  SECTION("PLUS with the same certificate hash") {
    scram_server s(verifier_for(password), server_options(cert));
    CHECK(s.mechanisms() == std::vector<std::string_view>{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"});
    scram_client c = client_for(password, scram_channel_binding::tls_server_end_point, cert);
    CHECK_FALSE(run_exchange(c, s).error);
    CHECK(s.authenticated());
    CHECK(s.channel_bound());
    CHECK(c.channel_bound());
  }
  SECTION("PLUS with another certificate's hash: a man in the middle") {
    scram_server s(verifier_for(password), server_options(cert));
    scram_client c = client_for(password, scram_channel_binding::tls_server_end_point, hash_of(8));
    const auto r = run_exchange(c, s);
    CHECK(r.error == errc::scram_channel_binding_mismatch);
    CHECK(pgwire::scram_server_sqlstate(r.error) == "28000");
    CHECK_FALSE(s.authenticated());
    CHECK_FALSE(c.authenticated());
  }
  SECTION("PLUS with a hash of another length") {
    scram_server s(verifier_for(password), server_options(cert));
    std::vector<std::uint8_t> longer = cert;
    longer.resize(48, 0);
    scram_client c = client_for(password, scram_channel_binding::tls_server_end_point, longer);
    CHECK(run_exchange(c, s).error == errc::scram_channel_binding_mismatch);
  }
  SECTION("a non-ASCII password, SASLprep'd on both sides") {
    const std::string unicode = "I\xc3\xb1t\xc3\xabrn\xc3\xa2ti\xc3\xb4n\xe2\x85\xa3l";
    scram_server s(verifier_for(unicode), server_options());
    scram_client c = client_for(unicode);
    CHECK_FALSE(run_exchange(c, s).error);
  }
}

TEST_CASE("SCRAM server refuses a wrong password with invalid proof", "[pgwire][scram_server]") {
  scram_server s(verifier_for("pencil"), server_options());
  scram_client c = client_for("pencil2");
  const auto r = run_exchange(c, s);
  CHECK(r.error == errc::scram_invalid_proof);
  CHECK(pgwire::scram_server_sqlstate(r.error) == "28P01");
  CHECK_FALSE(s.authenticated());
  CHECK_FALSE(s.mock());
  CHECK(error_of(s.on_client_final(rfc_client_final)) == errc::scram_bad_state);
}

TEST_CASE("SCRAM server: a proof with one bit flipped is refused", "[pgwire][scram_server]") {
  scram_server s(verifier_for("pencil", rfc_salt), server_options({}, rfc_server_nonce_part));
  REQUIRE(s.select_mechanism("SCRAM-SHA-256").has_value());
  REQUIRE(s.on_client_first(rfc_client_first).has_value());
  std::string flipped(rfc_client_final);
  // "...p=dHzb..." -> "...p=dHzc...": the first proof byte differs.
  const auto at = flipped.find(",p=") + 6;
  flipped[at] = flipped[at] == 'b' ? 'c' : 'b';
  CHECK(error_of(s.on_client_final(flipped)) == errc::scram_invalid_proof);
}

TEST_CASE("SCRAM server mocks an exchange for an unknown user", "[pgwire][scram_server]") {
  auto secret = pgwire::make_scram_mock_secret();
  REQUIRE(secret.has_value());
  REQUIRE(secret.value().size() == pgwire::scram_mock_secret_len);

  const auto server_first_for = [&](std::string_view user, const secret_string& key) {
    auto s = scram_server::mock(user, key, server_options());
    REQUIRE(s.has_value());
    CHECK(s.value().mock());
    REQUIRE(s.value().select_mechanism("SCRAM-SHA-256").has_value());
    auto first = s.value().on_client_first("n,,n=,r=" + std::string(client_nonce));
    REQUIRE(first.has_value());
    return first.value();
  };

  const std::string ghost = server_first_for("ghost", secret.value());
  // The same shape as a real user's: a 16-byte salt, PostgreSQL's default count.
  CHECK(ghost.starts_with("r=" + std::string(nonce) + ",s="));
  CHECK(ghost.size() == std::string_view("r=,s=,i=4096").size() + nonce.size() + 24);
  CHECK(ghost.ends_with("=,i=4096"));
  // The same salt on every attempt for one user; another user or server secret differs.
  CHECK(server_first_for("ghost", secret.value()) == ghost);
  CHECK(server_first_for("ghost2", secret.value()) != ghost);
  auto other_secret = pgwire::make_scram_mock_secret();
  REQUIRE(other_secret.has_value());
  CHECK(server_first_for("ghost", other_secret.value()) != ghost);

  auto salt = pgwire::scram_mock_salt("ghost", secret.value());
  REQUIRE(salt.has_value());
  CHECK(salt.value().size() == pgwire::scram_salt_len);

  // The exchange runs to the proof and fails there as a wrong password does, even
  // for a client that knows the salt and sends a well-formed proof.
  auto s = scram_server::mock("ghost", secret.value(), server_options());
  REQUIRE(s.has_value());
  scram_client c = client_for("anything");
  const auto r = run_exchange(c, s.value());
  CHECK(r.error == errc::scram_invalid_proof);
  CHECK(pgwire::scram_server_sqlstate(r.error) == "28P01");
  CHECK_FALSE(s.value().authenticated());

  CHECK(error_of(scram_server::mock("ghost", secret.value(), server_options(), 0)) == errc::scram_bad_iterations);
}

TEST_CASE("SCRAM server: a mock exchange refuses a proof that holds for a real verifier with its salt",
          "[pgwire][scram_server]") {
  // Knowing the mock salt does not help: a password that logs in against a real
  // verifier with that very salt (and count) is refused by the mock. (The doomed flag
  // itself cannot be observed from outside: the mock's zero StoredKey matches no proof.)
  const secret_string secret(std::string(32, 'k'));
  auto salt = pgwire::scram_mock_salt("ghost", secret);
  REQUIRE(salt.has_value());
  scram_server real(verifier_for("pencil", salt.value()), server_options());
  scram_client c1 = client_for("pencil");
  REQUIRE_FALSE(run_exchange(c1, real).error);

  auto mock = scram_server::mock("ghost", secret, server_options());
  REQUIRE(mock.has_value());
  scram_client c2 = client_for("pencil");
  CHECK(run_exchange(c2, mock.value()).error == errc::scram_invalid_proof);
}

TEST_CASE("SCRAM server refuses a channel-binding downgrade", "[pgwire][scram_server]") {
  // The client says "y": it supports binding but saw no PLUS. The server offered it,
  // so the list was tampered with (auth-scram.c read_client_first_message).
  scram_server s(verifier_for("pencil"), server_options(hash_of(1)));
  REQUIRE(s.select_mechanism("SCRAM-SHA-256").has_value());
  const auto r = s.on_client_first("y,,n=,r=abc");
  CHECK(error_of(r) == errc::scram_channel_binding_downgrade);
  CHECK(pgwire::scram_server_sqlstate(error_of(r)) == "28000");
  CHECK_FALSE(s.authenticated());

  // What a real client does: libpq-style choice over the list without PLUS, on TLS.
  const std::vector<std::string_view> stripped = {"SCRAM-SHA-256"};
  auto binding = pgwire::choose_scram_mechanism(stripped, true, true);
  REQUIRE(binding.has_value());
  REQUIRE(binding.value() == scram_channel_binding::client_supports_server_not);
  scram_server s2(verifier_for("pencil"), server_options(hash_of(1)));
  scram_client c = client_for("pencil", binding.value());
  CHECK(run_exchange(c, s2).error == errc::scram_channel_binding_downgrade);
}

TEST_CASE("SCRAM server takes only the mechanisms it offered", "[pgwire][scram_server]") {
  SECTION("PLUS without TLS") {
    scram_server s(verifier_for("pencil"), server_options());
    CHECK(error_of(s.select_mechanism("SCRAM-SHA-256-PLUS")) == errc::scram_mechanism_not_offered);
    CHECK(error_of(s.select_mechanism("SCRAM-SHA-256")) == errc::scram_bad_state);
  }
  SECTION("unknown names") {
    for (const std::string_view name : {"SCRAM-SHA-1", "", "scram-sha-256", "SCRAM-SHA-256 "}) {
      scram_server s(verifier_for("pencil"), server_options(hash_of(1)));
      CHECK(error_of(s.select_mechanism(name)) == errc::scram_mechanism_not_offered);
    }
  }
  SECTION("client-first before the mechanism") {
    scram_server s(verifier_for("pencil"), server_options());
    CHECK(error_of(s.on_client_first("n,,n=,r=abc")) == errc::scram_bad_state);
  }
}

TEST_CASE("SCRAM server rejects malformed client-first messages with the right error", "[pgwire][scram_server]") {
  struct bad_first {
    std::string message;
    errc expected;
    bool plus = false;  // the client chose SCRAM-SHA-256-PLUS
  };
  const bad_first cases[] = {
      {"", errc::scram_malformed_client_first},
      {"x,,n=,r=abc", errc::scram_malformed_client_first},
      {"n", errc::scram_malformed_client_first},
      {"n,", errc::scram_malformed_client_first},
      {"n,,", errc::scram_malformed_client_first},
      {"nn,,n=,r=abc", errc::scram_malformed_client_first},
      {"n,x,n=,r=abc", errc::scram_malformed_client_first},
      {"n,,r=abc", errc::scram_malformed_client_first},           // no n=
      {"n,,r=abc,n=", errc::scram_malformed_client_first},        // order
      {"n,,n=", errc::scram_malformed_client_first},              // no r=
      {"n,,n=,r=", errc::scram_malformed_client_first},           // empty nonce
      {"n,,n=,r=a b", errc::scram_malformed_client_first},        // space in nonce
      {"n,,n=,r=ab\x7f", errc::scram_malformed_client_first},     // DEL in nonce
      {"n,,n=,r=ab\xc3\xa9", errc::scram_malformed_client_first}, // non-ASCII
      {"n,,n=,r=abc,", errc::scram_malformed_client_first},       // empty extension
      {"n,,n=,r=abc,1=x", errc::scram_malformed_client_first},    // bad extension name
      {"n,,n=,r=abc,xx", errc::scram_malformed_client_first},     // no '='
      {std::string("n,,n=,r=ab\0c", 11), errc::scram_malformed_client_first},
      {"p=tls-server-end-point,,n=,r=abc", errc::scram_malformed_client_first},  // binds after plain
      {"n,a=admin,n=,r=abc", errc::scram_authzid_unsupported},
      {"n,,m=ext,n=,r=abc", errc::scram_extension_unsupported},
      {"n,,n=,r=abc", errc::scram_malformed_client_first, true},  // chose PLUS, no binding
      {"y,,n=,r=abc", errc::scram_malformed_client_first, true},
      {"p=tls-unique,,n=,r=abc", errc::scram_malformed_client_first, true},
      {"p=tls-server-end-point", errc::scram_malformed_client_first, true},
      {"p=tls-server-end-point,", errc::scram_malformed_client_first, true},
      {"p,,n=,r=abc", errc::scram_malformed_client_first, true},
      {"p=tls-server-end-point,a=x,n=,r=abc", errc::scram_authzid_unsupported, true},
  };
  for (const auto& bad : cases) {
    INFO("client-first: " << bad.message << (bad.plus ? " (PLUS)" : ""));
    scram_server s(verifier_for("pencil"), server_options(hash_of(3)));
    REQUIRE(s.select_mechanism(bad.plus ? "SCRAM-SHA-256-PLUS" : "SCRAM-SHA-256").has_value());
    const auto r = s.on_client_first(bad.message);
    CHECK(error_of(r) == bad.expected);
    CHECK(pgwire::scram_server_sqlstate(error_of(r)) ==
          (bad.expected == errc::scram_malformed_client_first ? "08P01" : "0A000"));
    // Failed for good.
    CHECK(error_of(s.on_client_first("n,,n=,r=abc")) == errc::scram_bad_state);
    CHECK(error_of(s.on_client_final("c=biws,r=abc,p=AAAA")) == errc::scram_bad_state);
  }
}

TEST_CASE("SCRAM server accepts what RFC 5802 allows in client-first", "[pgwire][scram_server]") {
  // A user name (ignored, as PostgreSQL ignores it), optional extensions, empty ones
  // as PostgreSQL's read_any_attr takes them.
  for (const std::string_view first : {"n,,n=someone,r=abc", "n,,n=a=2Cb,r=abc,x=1,y=", "n,,n=,r=abc"}) {
    INFO(first);
    scram_server s(verifier_for("pencil"), server_options());
    REQUIRE(s.select_mechanism("SCRAM-SHA-256").has_value());
    auto r = s.on_client_first(first);
    REQUIRE(r.has_value());
    CHECK(r.value().starts_with("r=abcserverNONCE,s="));
  }
}

TEST_CASE("SCRAM server rejects malformed client-final messages with the right error", "[pgwire][scram_server]") {
  const std::string r = ",r=" + std::string(nonce);
  const std::string p = ",p=" + std::string(43, 'A') + "=";  // 32 zero bytes
  struct bad_final {
    std::string message;
    errc expected;
  };
  const bad_final cases[] = {
      {"", errc::scram_malformed_client_final},
      {"c=biws", errc::scram_malformed_client_final},
      {"c=biws" + r, errc::scram_malformed_client_final},                     // no proof
      {r.substr(1) + p, errc::scram_malformed_client_final},                  // no c=
      {"c=biws" + p, errc::scram_malformed_client_final},                     // no r=
      {r.substr(1) + ",c=biws" + p, errc::scram_malformed_client_final},      // order
      {"c=biws" + r + p + ",x=1", errc::scram_malformed_client_final},        // after p=
      {"c=biws" + r + p + p, errc::scram_malformed_client_final},             // two proofs
      {"c=biws" + r + ",1=x" + p, errc::scram_malformed_client_final},        // bad extension
      {"c=biws" + r + ",p=AAAA", errc::scram_malformed_client_final},         // short proof
      {"c=biws" + r + ",p=" + std::string(44, 'A'), errc::scram_malformed_client_final},
      {"c=biws" + r + ",p=!!!!", errc::scram_malformed_client_final},
      {"c=biws" + r + ",p=", errc::scram_malformed_client_final},
      {std::string("c=biws\0", 7) + r + p, errc::scram_malformed_client_final},
      {"c=eSws" + r + p, errc::scram_malformed_client_final},                 // "y,," after "n"
      {"c=" + r + p, errc::scram_malformed_client_final},
      {"c=biws,r=clientNONCE" + p, errc::scram_final_nonce_mismatch},        // server part missing
      {"c=biws,r=clientNONCEserverNONCEx" + p, errc::scram_final_nonce_mismatch},
      {"c=biws,r=xlientNONCEserverNONCE" + p, errc::scram_final_nonce_mismatch},
      {"c=biws,r=clientNONCEserverNONCf" + p, errc::scram_final_nonce_mismatch},
      {"c=biws" + r + p, errc::scram_invalid_proof},                          // well-formed, wrong
      {"c=biws" + r + ",x=ext" + p, errc::scram_invalid_proof},              // extension is fine
  };
  for (const auto& bad : cases) {
    INFO("client-final: " << bad.message);
    scram_server s = started_server();
    const auto res = s.on_client_final(bad.message);
    CHECK(error_of(res) == bad.expected);
    CHECK_FALSE(s.authenticated());
    CHECK(error_of(s.on_client_final(bad.message)) == errc::scram_bad_state);
  }
}

TEST_CASE("SCRAM server: the gs2 flag y is echoed as eSws", "[pgwire][scram_server]") {
  scram_server s(verifier_for("pencil"), server_options());
  REQUIRE(s.select_mechanism("SCRAM-SHA-256").has_value());
  REQUIRE(s.on_client_first("y,,n=,r=" + std::string(client_nonce)).has_value());
  const std::string p = ",p=" + std::string(43, 'A') + "=";
  // "biws" ("n,,") after a "y" client-first is not the header it sent.
  CHECK(error_of(s.on_client_final("c=biws,r=" + std::string(nonce) + p)) == errc::scram_malformed_client_final);

  scram_server s2(verifier_for("pencil"), server_options());
  REQUIRE(s2.select_mechanism("SCRAM-SHA-256").has_value());
  REQUIRE(s2.on_client_first("y,,n=,r=" + std::string(client_nonce)).has_value());
  CHECK(error_of(s2.on_client_final("c=eSws,r=" + std::string(nonce) + p)) == errc::scram_invalid_proof);
}

TEST_CASE("SCRAM server steps out of order, bad verifiers and nonce sources", "[pgwire][scram_server]") {
  SECTION("client-final before client-first") {
    scram_server s(verifier_for("pencil"), server_options());
    REQUIRE(s.select_mechanism("SCRAM-SHA-256").has_value());
    CHECK(error_of(s.on_client_final(rfc_client_final)) == errc::scram_bad_state);
    CHECK(error_of(s.on_client_first(rfc_client_first)) == errc::scram_bad_state);
  }
  SECTION("client-first twice") {
    scram_server s = started_server();
    CHECK(error_of(s.on_client_first(rfc_client_first)) == errc::scram_bad_state);
  }
  SECTION("select_mechanism twice") {
    scram_server s(verifier_for("pencil"), server_options());
    REQUIRE(s.select_mechanism("SCRAM-SHA-256").has_value());
    CHECK(error_of(s.select_mechanism("SCRAM-SHA-256")) == errc::scram_bad_state);
  }
  SECTION("a verifier that is not valid") {
    scram_verifier v = verifier_for("pencil");
    v.stored_key = secret_string("short");
    scram_server s(std::move(v), server_options());
    CHECK(error_of(s.select_mechanism("SCRAM-SHA-256")) == errc::scram_bad_verifier);
    scram_server empty{scram_verifier{}, server_options()};
    CHECK(error_of(empty.select_mechanism("SCRAM-SHA-256")) == errc::scram_bad_verifier);
  }
  SECTION("a nonce source that fails or is not printable") {
    for (const std::string_view bad : {"", "a,b", "a b"}) {
      scram_server s(verifier_for("pencil"), server_options({}, bad));
      REQUIRE(s.select_mechanism("SCRAM-SHA-256").has_value());
      CHECK(error_of(s.on_client_first(rfc_client_first)) == errc::crypto_failure);
    }
  }
  SECTION("the default nonce is random and printable") {
    scram_server_options o;
    scram_server a(verifier_for("pencil"), o);
    scram_server b(verifier_for("pencil"), o);
    REQUIRE(a.select_mechanism("SCRAM-SHA-256").has_value());
    REQUIRE(b.select_mechanism("SCRAM-SHA-256").has_value());
    auto fa = a.on_client_first("n,,n=,r=abc");
    auto fb = b.on_client_first("n,,n=,r=abc");
    REQUIRE(fa.has_value());
    REQUIRE(fb.has_value());
    const std::string na = fa.value().substr(2, fa.value().find(',') - 2);
    CHECK(na.size() == 3 + 24);  // "abc" + base64 of 18 bytes
    CHECK(na != fb.value().substr(2, fb.value().find(',') - 2));
  }
}

TEST_CASE("scram_server_sqlstate follows PostgreSQL", "[pgwire][scram_server]") {
  const std::pair<errc, std::string_view> table[] = {
      {errc::scram_invalid_proof, "28P01"},
      {errc::scram_channel_binding_downgrade, "28000"},
      {errc::scram_channel_binding_mismatch, "28000"},
      {errc::scram_authzid_unsupported, "0A000"},
      {errc::scram_extension_unsupported, "0A000"},
      {errc::scram_malformed_client_first, "08P01"},
      {errc::scram_malformed_client_final, "08P01"},
      {errc::scram_final_nonce_mismatch, "08P01"},
      {errc::scram_mechanism_not_offered, "08P01"},
      {errc::scram_bad_state, "08P01"},
      {errc::crypto_failure, "XX000"},
      {errc::scram_bad_verifier, "XX000"},
  };
  for (const auto& [code, state] : table) {
    INFO(make_error_code(code).message());
    CHECK(pgwire::scram_server_sqlstate(make_error_code(code)) == state);
  }
  CHECK(pgwire::scram_server_sqlstate(std::make_error_code(std::errc::io_error)) == "XX000");
}
