// Message bodies: what each parser accepts, and truncation, trailing bytes and
// missing NULs for each.
#include <cstdint>
#include <random>
#include <string>
#include <string_view>

#include <catch2/catch.hpp>

#include "pgwire/errc.hpp"
#include "pgwire/messages.hpp"
#include "codec_test_helpers.hpp"

using namespace pgwire;
using namespace pgwire_test;
using namespace std::string_view_literals;

namespace {

// Every proper prefix of a body whose every field is required fails to parse.
template <typename Parse>
void require_every_prefix_fails(const byte_vector& body, Parse parse) {
  for (std::size_t n = 0; n < body.size(); ++n) {
    INFO("prefix length " << n << " of " << body.size());
    const auto r = parse(view(body).first(n));
    REQUIRE(r.has_error());
    REQUIRE(r.error() == errc::malformed_message);
  }
  REQUIRE(parse(view(body)).has_value());
}

template <typename Parse>
void require_trailing_bytes_refused(const byte_vector& body, Parse parse) {
  const auto longer = concat(body, bytes({'x'}));
  const auto r = parse(view(longer));
  REQUIRE(r.has_error());
  REQUIRE(r.error() == errc::trailing_bytes);
}

byte_vector auth_body(std::int32_t code, const byte_vector& rest = {}) {
  byte_vector out;
  append_be32(out, static_cast<std::uint32_t>(code));
  return concat(out, rest);
}

}  // namespace

TEST_CASE("parse_authentication: each request type", "[pgwire][messages]") {
  SECTION("ok, cleartext, kerberos, gss, sspi carry nothing") {
    for (const auto t : {auth_type::ok, auth_type::cleartext_password, auth_type::kerberos_v5,
                         auth_type::gss, auth_type::sspi}) {
      const auto body = auth_body(static_cast<std::int32_t>(t));
      INFO("code " << static_cast<int>(t));
      const auto r = parse_authentication(view(body));
      REQUIRE(r.has_value());
      REQUIRE(r.value().type == t);
      require_every_prefix_fails(body, parse_authentication);
      require_trailing_bytes_refused(body, parse_authentication);
    }
  }
  SECTION("md5 carries a 4-byte salt") {
    const auto body = auth_body(5, bytes({0xde, 0xad, 0xbe, 0xef}));
    const auto r = parse_authentication(view(body));
    REQUIRE(r.has_value());
    REQUIRE(r.value().type == auth_type::md5_password);
    REQUIRE(r.value().md5_salt == std::array<std::uint8_t, 4>{0xde, 0xad, 0xbe, 0xef});
    require_every_prefix_fails(body, parse_authentication);
    require_trailing_bytes_refused(body, parse_authentication);
  }
  SECTION("sasl lists mechanisms, ended by an empty name") {
    const auto body = auth_body(10, bytes_of("SCRAM-SHA-256-PLUS\0SCRAM-SHA-256\0\0"sv));
    const auto r = parse_authentication(view(body));
    REQUIRE(r.has_value());
    REQUIRE(r.value().type == auth_type::sasl);
    REQUIRE(r.value().mechanisms ==
            std::vector<std::string>{"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"});
    require_every_prefix_fails(body, parse_authentication);
    require_trailing_bytes_refused(body, parse_authentication);
  }
  SECTION("sasl with no mechanism at all is malformed") {
    const auto body = auth_body(10, bytes({0}));
    REQUIRE(parse_authentication(view(body)).error() == errc::malformed_message);
  }
  SECTION("sasl_continue, sasl_final and gss_continue carry the rest as data") {
    for (const auto t : {auth_type::sasl_continue, auth_type::sasl_final, auth_type::gss_continue}) {
      INFO("code " << static_cast<int>(t));
      const auto body = auth_body(static_cast<std::int32_t>(t), bytes_of("r=abc,s=\0xyz"sv));
      const auto r = parse_authentication(view(body));
      REQUIRE(r.has_value());
      REQUIRE(r.value().type == t);
      REQUIRE(r.value().data == "r=abc,s=\0xyz"sv);
      const auto empty = auth_body(static_cast<std::int32_t>(t));
      REQUIRE(parse_authentication(view(empty)).value().data.empty());
    }
  }
  SECTION("unknown codes are refused") {
    for (const std::int32_t code : {-1, 1, 4, 6, 13, 0x7fffffff}) {
      INFO("code " << code);
      const auto body = auth_body(code);
      const auto r = parse_authentication(view(body));
      REQUIRE(r.has_error());
      REQUIRE(r.error() == errc::malformed_message);
    }
  }
}

TEST_CASE("parse_error_response / parse_notice_response", "[pgwire][messages]") {
  const auto body = bytes_of("SFEHLER\0VFATAL\0C28P01\0Mpassword authentication failed\0"
                             "Dsome detail\0Hsome hint\0Rauth_failed\0\0"sv);
  const auto r = parse_error_response(view(body));
  REQUIRE(r.has_value());
  const auto& e = r.value();
  REQUIRE(e.fields.size() == 7);
  REQUIRE(e.fields[0] == error_field{'S', "FEHLER"});
  REQUIRE(e.fields[6] == error_field{'R', "auth_failed"});
  REQUIRE(e.severity() == "FATAL");  // 'V' wins over the localized 'S'
  REQUIRE(e.sqlstate() == "28P01");
  REQUIRE(e.message() == "password authentication failed");
  REQUIRE(e.detail() == "some detail");
  REQUIRE(e.hint() == "some hint");
  REQUIRE(e.field('R') == "auth_failed");
  REQUIRE(e.field('P').empty());
  REQUIRE_FALSE(e.has_field('P'));
  require_every_prefix_fails(body, parse_error_response);
  require_trailing_bytes_refused(body, parse_error_response);

  SECTION("severity falls back to 'S' before 9.6") {
    const auto old = bytes_of("SERROR\0C42501\0Mdenied\0\0"sv);
    const auto n = parse_notice_response(view(old));
    REQUIRE(n.has_value());
    REQUIRE(n.value().severity() == "ERROR");
    REQUIRE(n.value().detail().empty());
    require_every_prefix_fails(old, parse_notice_response);
    require_trailing_bytes_refused(old, parse_notice_response);
  }
  SECTION("no fields at all is a valid, empty response") {
    const auto empty = bytes({0});
    REQUIRE(parse_error_response(view(empty)).value().fields.empty());
    REQUIRE(parse_error_response(view(empty)).value().severity().empty());
  }
  SECTION("a field value without NUL is malformed") {
    REQUIRE(parse_error_response(view(bytes_of("SFATAL"sv))).error() ==
            errc::malformed_message);
  }
}

TEST_CASE("parse_parameter_status", "[pgwire][messages]") {
  const auto body = bytes_of("server_version\x00" "15.4\0"sv);
  const auto r = parse_parameter_status(view(body));
  REQUIRE(r.has_value());
  REQUIRE(r.value().name == "server_version");
  REQUIRE(r.value().value == "15.4");
  require_every_prefix_fails(body, parse_parameter_status);
  require_trailing_bytes_refused(body, parse_parameter_status);
  REQUIRE(parse_parameter_status(view(bytes_of("a\0\0"sv))).value().value.empty());
}

TEST_CASE("parse_backend_key_data", "[pgwire][messages]") {
  const auto body = bytes({0, 0, 0x30, 0x39, 0x80, 0, 0, 1});
  const auto r = parse_backend_key_data(view(body));
  REQUIRE(r.has_value());
  REQUIRE(r.value().process_id == 12345);
  REQUIRE(r.value().secret_key == static_cast<std::int32_t>(0x80000001u));
  require_every_prefix_fails(body, parse_backend_key_data);
  // A protocol 3.2 key (longer than 4 bytes) is not 3.0.
  require_trailing_bytes_refused(body, parse_backend_key_data);
}

TEST_CASE("parse_ready_for_query", "[pgwire][messages]") {
  REQUIRE(parse_ready_for_query(view(bytes({'I'}))).value().status == transaction_status::idle);
  REQUIRE(parse_ready_for_query(view(bytes({'T'}))).value().status ==
          transaction_status::in_transaction);
  REQUIRE(parse_ready_for_query(view(bytes({'E'}))).value().status ==
          transaction_status::failed);
  for (const int bad : {0, int{'i'}, int{'X'}, int{'Z'}, 0xff}) {
    INFO("status byte " << bad);
    REQUIRE(parse_ready_for_query(view(bytes({bad}))).error() == errc::malformed_message);
  }
  require_every_prefix_fails(bytes({'I'}), parse_ready_for_query);
  require_trailing_bytes_refused(bytes({'I'}), parse_ready_for_query);
}

TEST_CASE("parse_negotiate_protocol_version", "[pgwire][messages]") {
  byte_vector body;
  append_be32(body, static_cast<std::uint32_t>(protocol_version_3_0));
  append_be32(body, 2);
  body = concat(body, bytes_of("_pq_.a\0_pq_.b\0"sv));
  const auto r = parse_negotiate_protocol_version(view(body));
  REQUIRE(r.has_value());
  REQUIRE(protocol_major(r.value().newest_minor) == 3);
  REQUIRE(protocol_minor(r.value().newest_minor) == 0);
  REQUIRE(r.value().unrecognized == std::vector<std::string>{"_pq_.a", "_pq_.b"});
  require_every_prefix_fails(body, parse_negotiate_protocol_version);
  require_trailing_bytes_refused(body, parse_negotiate_protocol_version);

  SECTION("counts that do not match the names") {
    for (const std::uint32_t count : {0xffffffffu, 0x7fffffffu, 3u}) {
      INFO("count " << count);
      byte_vector lie;
      append_be32(lie, static_cast<std::uint32_t>(protocol_version_3_0));
      append_be32(lie, count);
      lie = concat(lie, bytes_of("_pq_.a\0_pq_.b\0"sv));
      REQUIRE(parse_negotiate_protocol_version(view(lie)).error() == errc::malformed_message);
    }
    byte_vector fewer;
    append_be32(fewer, static_cast<std::uint32_t>(protocol_version_3_0));
    append_be32(fewer, 1);
    fewer = concat(fewer, bytes_of("_pq_.a\0_pq_.b\0"sv));
    REQUIRE(parse_negotiate_protocol_version(view(fewer)).error() == errc::trailing_bytes);
  }
}

TEST_CASE("parse_password_message", "[pgwire][messages]") {
  const auto body = bytes_of("hvs.CAESIJ\0"sv);
  const auto r = parse_password_message(view(body));
  REQUIRE(r.has_value());
  REQUIRE(r.value().password.view() == "hvs.CAESIJ");
  require_every_prefix_fails(body, parse_password_message);
  // Bytes after the NUL (an embedded NUL, as the server sees it) are refused.
  require_trailing_bytes_refused(body, parse_password_message);
  REQUIRE(parse_password_message(view(bytes_of("\0"sv))).value().password.empty());
}

TEST_CASE("parse_sasl_initial_response", "[pgwire][messages]") {
  byte_vector body = bytes_of("SCRAM-SHA-256\0"sv);
  append_be32(body, 7);
  body = concat(body, bytes_of("n,,n=,r"sv));
  const auto r = parse_sasl_initial_response(view(body));
  REQUIRE(r.has_value());
  REQUIRE(r.value().mechanism == "SCRAM-SHA-256");
  REQUIRE(r.value().data == std::optional<std::string>("n,,n=,r"));
  require_every_prefix_fails(body, parse_sasl_initial_response);
  require_trailing_bytes_refused(body, parse_sasl_initial_response);

  SECTION("length -1 means no data") {
    byte_vector none = bytes_of("SCRAM-SHA-256\0"sv);
    append_be32(none, 0xffffffffu);
    const auto n = parse_sasl_initial_response(view(none));
    REQUIRE(n.has_value());
    REQUIRE_FALSE(n.value().data.has_value());
    require_trailing_bytes_refused(none, parse_sasl_initial_response);
  }
  SECTION("length 0 is present and empty") {
    byte_vector zero = bytes_of("X\0"sv);
    append_be32(zero, 0);
    REQUIRE(parse_sasl_initial_response(view(zero)).value().data == std::optional<std::string>(""));
  }
  SECTION("an empty mechanism name is malformed (found by fuzz_messages)") {
    // tests/fuzz/regressions/fuzz_messages/sasl_initial_empty_mechanism: it parsed,
    // and encode_sasl_initial_response then refused to write it back.
    for (const std::uint32_t length : {0xffffffffu, 0u}) {
      INFO("length " << length);
      byte_vector empty = bytes_of("\0"sv);
      append_be32(empty, length);
      REQUIRE(parse_sasl_initial_response(view(empty)).error() == errc::malformed_message);
    }
  }
  SECTION("negative lengths below -1 and lengths past the end are malformed") {
    for (const std::uint32_t length : {0xfffffffeu, 0x80000000u, 8u, 0x7fffffffu}) {
      INFO("length " << length);
      byte_vector bad = bytes_of("SCRAM-SHA-256\0"sv);
      append_be32(bad, length);
      bad = concat(bad, bytes_of("n,,n=,r"sv));
      REQUIRE(parse_sasl_initial_response(view(bad)).error() == errc::malformed_message);
    }
  }
}

TEST_CASE("parse_sasl_response and parse_terminate", "[pgwire][messages]") {
  const auto body = bytes_of("c=biws,r=abc,p=xyz"sv);
  REQUIRE(parse_sasl_response(view(body)).value().data.view() == "c=biws,r=abc,p=xyz");
  REQUIRE(parse_sasl_response(view(bytes({0, 1, 0}))).value().data.view() == "\0\1\0"sv);
  REQUIRE(parse_terminate({}).has_value());
  REQUIRE(parse_terminate(view(bytes({0}))).error() == errc::trailing_bytes);
}

TEST_CASE("parse_startup_params", "[pgwire][messages]") {
  const auto body = bytes_of("user\0bob\0\0"sv);
  REQUIRE(parse_startup_params(view(body)).value().size() == 1);
  require_every_prefix_fails(body, parse_startup_params);
  require_trailing_bytes_refused(body, parse_startup_params);
}

TEST_CASE("parsers: random bodies never crash", "[pgwire][messages][random]") {
  std::mt19937 rng(7);  // fixed seed
  std::uniform_int_distribution<int> byte_dist(0, 255);
  std::uniform_int_distribution<int> size_dist(0, 40);
  std::size_t ok = 0;
  std::size_t bad_category = 0;
  auto tally = [&](const auto& r) {
    if (r.has_value()) {
      ++ok;
    } else if (r.error().category() != error_category()) {
      ++bad_category;
    }
  };
  for (int i = 0; i < 20000; ++i) {
    byte_vector body(static_cast<std::size_t>(size_dist(rng)));
    for (auto& b : body) b = static_cast<std::uint8_t>(byte_dist(rng) % 4 == 0 ? 0 : byte_dist(rng));
    // Make the authentication code and counts plausible some of the time.
    if (i % 2 == 0 && body.size() >= 4) {
      body[0] = body[1] = body[2] = 0;
      body[3] = static_cast<std::uint8_t>(byte_dist(rng) % 14);
    }
    const auto v = view(body);
    tally(parse_authentication(v));
    tally(parse_error_response(v));
    tally(parse_notice_response(v));
    tally(parse_parameter_status(v));
    tally(parse_backend_key_data(v));
    tally(parse_ready_for_query(v));
    tally(parse_negotiate_protocol_version(v));
    tally(parse_password_message(v));
    tally(parse_sasl_initial_response(v));
    tally(parse_sasl_response(v));
    tally(parse_terminate(v));
    tally(parse_startup_params(v));
  }
  REQUIRE(bad_category == 0);
  // Random bodies both pass and fail (sasl_response alone passes 20,000 times).
  REQUIRE(ok > 20000);
  REQUIRE(ok < 12 * 20000);
}
