// Encoding: exact bytes for a few messages, every message round-tripped through
// encode -> decode -> parse, and refusal of values that would corrupt framing.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <catch2/catch.hpp>

#include "pgwire/decoder.hpp"
#include "pgwire/encoder.hpp"
#include "pgwire/errc.hpp"
#include "pgwire/sqlstate.hpp"
#include "codec_test_helpers.hpp"

using namespace pgwire;
using namespace pgwire_test;
using namespace std::string_view_literals;

namespace {

// Decodes `out` as exactly one message of `dir` with type `type`, checks every
// split point, and returns its body (a view into `out`).
bytes_view single_message(const byte_vector& out, direction dir, char type) {
  require_every_split_message(out, dir);
  const auto r = decode_message(view(out), 1 << 20, dir);
  REQUIRE(r.status == decode_status::message);
  REQUIRE(r.consumed == out.size());
  REQUIRE(r.message.type == type);
  return r.message.body;
}

startup_packet single_startup(const byte_vector& out) {
  require_every_split_startup(out);
  auto r = decode_startup_packet(view(out));
  REQUIRE(r.status == decode_status::message);
  REQUIRE(r.consumed == out.size());
  return std::move(r.packet);
}

}  // namespace

TEST_CASE("encoder: exact bytes", "[pgwire][encoder]") {
  byte_vector out;
  encode_authentication_ok(out);
  REQUIRE(out == bytes({'R', 0, 0, 0, 8, 0, 0, 0, 0}));

  out.clear();
  encode_ssl_request(out);
  REQUIRE(out == bytes({0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}));

  out.clear();
  REQUIRE(encode_ready_for_query(out, transaction_status::idle).has_value());
  REQUIRE(out == bytes({'Z', 0, 0, 0, 5, 'I'}));

  out.clear();
  encode_terminate(out);
  REQUIRE(out == bytes({'X', 0, 0, 0, 4}));

  out.clear();
  REQUIRE(encode_parameter_status(out, "a", "b").has_value());
  REQUIRE(out == bytes({'S', 0, 0, 0, 8, 'a', 0, 'b', 0}));

  out.clear();
  REQUIRE(encode_sasl_initial_response(out, "M", std::nullopt).has_value());
  REQUIRE(out == bytes({'p', 0, 0, 0, 10, 'M', 0, 0xff, 0xff, 0xff, 0xff}));
}

TEST_CASE("encoder: messages append, nothing is cleared", "[pgwire][encoder]") {
  byte_vector out;
  encode_authentication_ok(out);
  REQUIRE(encode_parameter_status(out, "server_version", "15.4").has_value());
  encode_backend_key_data(out, {4242, 99});
  REQUIRE(encode_ready_for_query(out, transaction_status::idle).has_value());

  std::vector<char> types;
  std::size_t offset = 0;
  while (offset < out.size()) {
    const auto r = decode_message(view(out).subspan(offset), 8192, direction::backend);
    REQUIRE(r.status == decode_status::message);
    types.push_back(r.message.type);
    offset += r.consumed;
  }
  REQUIRE(offset == out.size());
  REQUIRE(types == std::vector<char>{'R', 'S', 'K', 'Z'});
}

TEST_CASE("round trip: startup-phase packets", "[pgwire][encoder][roundtrip]") {
  SECTION("StartupMessage, order and duplicates kept") {
    startup_message in;
    in.minor = 2;
    in.params = {{"user", "crdb-role"}, {"database", "defaultdb"}, {"options", ""},
                 {"user", "again"}};
    byte_vector out;
    REQUIRE(encode_startup_message(out, in).has_value());
    const auto packet = single_startup(out);
    const auto& msg = std::get<startup_message>(packet);
    REQUIRE(msg.major == 3);
    REQUIRE(msg.minor == 2);
    REQUIRE(msg.params == in.params);
  }
  SECTION("SSLRequest, GSSENCRequest, CancelRequest") {
    byte_vector ssl;
    encode_ssl_request(ssl);
    REQUIRE(std::holds_alternative<ssl_request>(single_startup(ssl)));
    byte_vector gss;
    encode_gssenc_request(gss);
    REQUIRE(std::holds_alternative<gssenc_request>(single_startup(gss)));
    byte_vector cancel;
    encode_cancel_request(cancel, {-7, static_cast<std::int32_t>(0xfeedf00du)});
    const auto c = std::get<cancel_request>(single_startup(cancel));
    REQUIRE(c.process_id == -7);
    REQUIRE(c.secret_key == static_cast<std::int32_t>(0xfeedf00du));
  }
}

TEST_CASE("round trip: authentication requests", "[pgwire][encoder][roundtrip]") {
  SECTION("each type through encode_authentication") {
    std::vector<authentication> cases(10);
    cases[0].type = auth_type::ok;
    cases[1].type = auth_type::kerberos_v5;
    cases[2].type = auth_type::cleartext_password;
    cases[3].type = auth_type::md5_password;
    cases[3].md5_salt = {1, 0, 255, 7};
    cases[4].type = auth_type::gss;
    cases[5].type = auth_type::gss_continue;
    cases[5].data = std::string("\0gss\xff", 5);
    cases[6].type = auth_type::sspi;
    cases[7].type = auth_type::sasl;
    cases[7].mechanisms = {"SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"};
    cases[8].type = auth_type::sasl_continue;
    cases[8].data = "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096";
    cases[9].type = auth_type::sasl_final;
    cases[9].data = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
    for (const auto& in : cases) {
      INFO("code " << static_cast<int>(in.type));
      byte_vector out;
      REQUIRE(encode_authentication(out, in).has_value());
      const auto r = parse_authentication(single_message(out, direction::backend, 'R'));
      REQUIRE(r.has_value());
      REQUIRE(r.value().type == in.type);
      REQUIRE(r.value().md5_salt == in.md5_salt);
      REQUIRE(r.value().mechanisms == in.mechanisms);
      REQUIRE(r.value().data == in.data);
    }
  }
  SECTION("the dedicated functions") {
    byte_vector out;
    encode_authentication_cleartext_password(out);
    REQUIRE(parse_authentication(single_message(out, direction::backend, 'R')).value().type ==
            auth_type::cleartext_password);

    out.clear();
    encode_authentication_md5_password(out, {9, 8, 7, 6});
    const auto md5 = parse_authentication(single_message(out, direction::backend, 'R')).value();
    REQUIRE(md5.type == auth_type::md5_password);
    REQUIRE(md5.md5_salt == std::array<std::uint8_t, 4>{9, 8, 7, 6});

    out.clear();
    const std::array<std::string_view, 1> mechs{"SCRAM-SHA-256"};
    REQUIRE(encode_authentication_sasl(out, mechs).has_value());
    REQUIRE(parse_authentication(single_message(out, direction::backend, 'R')).value().mechanisms ==
            std::vector<std::string>{"SCRAM-SHA-256"});

    out.clear();
    REQUIRE(encode_authentication_sasl_continue(out, "server-first").has_value());
    const auto cont = parse_authentication(single_message(out, direction::backend, 'R')).value();
    REQUIRE(cont.type == auth_type::sasl_continue);
    REQUIRE(cont.data == "server-first");

    out.clear();
    REQUIRE(encode_authentication_sasl_final(out, "server-final").has_value());
    const auto fin = parse_authentication(single_message(out, direction::backend, 'R')).value();
    REQUIRE(fin.type == auth_type::sasl_final);
    REQUIRE(fin.data == "server-final");
  }
}

TEST_CASE("round trip: authentication responses", "[pgwire][encoder][roundtrip]") {
  byte_vector out;
  REQUIRE(encode_password_message(out, "md5a3556571e93b0d20722ba62be61e8c2d").has_value());
  REQUIRE(parse_password_message(single_message(out, direction::frontend, 'p'))
              .value()
              .password.view() == "md5a3556571e93b0d20722ba62be61e8c2d");

  out.clear();
  REQUIRE(encode_sasl_initial_response(out, "SCRAM-SHA-256", "n,,n=,r=rOprNGfwEbeRWgbNEkqO"sv)
              .has_value());
  const auto first =
      parse_sasl_initial_response(single_message(out, direction::frontend, 'p')).value();
  REQUIRE(first.mechanism == "SCRAM-SHA-256");
  REQUIRE(first.data == std::optional<std::string>("n,,n=,r=rOprNGfwEbeRWgbNEkqO"));

  out.clear();
  REQUIRE(encode_sasl_initial_response(out, "SCRAM-SHA-256", std::nullopt).has_value());
  REQUIRE_FALSE(parse_sasl_initial_response(single_message(out, direction::frontend, 'p'))
                    .value()
                    .data.has_value());

  out.clear();
  const std::string final_message("c=biws,r=x,p=\0binary", 20);
  REQUIRE(encode_sasl_response(out, final_message).has_value());
  REQUIRE(parse_sasl_response(single_message(out, direction::frontend, 'p')).value().data.view() ==
          final_message);

  out.clear();
  encode_terminate(out);
  REQUIRE(parse_terminate(single_message(out, direction::frontend, 'X')).has_value());
}

TEST_CASE("round trip: other backend messages", "[pgwire][encoder][roundtrip]") {
  byte_vector out;
  REQUIRE(encode_parameter_status(out, "application_name", "").has_value());
  const auto ps = parse_parameter_status(single_message(out, direction::backend, 'S')).value();
  REQUIRE(ps.name == "application_name");
  REQUIRE(ps.value.empty());

  out.clear();
  encode_backend_key_data(out, {123, static_cast<std::int32_t>(0x80000000u)});
  const auto key = parse_backend_key_data(single_message(out, direction::backend, 'K')).value();
  REQUIRE(key.process_id == 123);
  REQUIRE(key.secret_key == static_cast<std::int32_t>(0x80000000u));

  for (const auto status : {transaction_status::idle, transaction_status::in_transaction,
                            transaction_status::failed}) {
    out.clear();
    REQUIRE(encode_ready_for_query(out, status).has_value());
    REQUIRE(parse_ready_for_query(single_message(out, direction::backend, 'Z')).value().status ==
            status);
  }

  out.clear();
  const std::vector<std::string> options{"_pq_.command_trigger", "_pq_.other"};
  REQUIRE(encode_negotiate_protocol_version(out, protocol_version_3_0, options).has_value());
  const auto npv =
      parse_negotiate_protocol_version(single_message(out, direction::backend, 'v')).value();
  REQUIRE(npv.newest_minor == protocol_version_3_0);
  REQUIRE(npv.unrecognized == options);

  out.clear();
  REQUIRE(encode_negotiate_protocol_version(out, protocol_version_3_0, {}).has_value());
  REQUIRE(parse_negotiate_protocol_version(single_message(out, direction::backend, 'v'))
              .value()
              .unrecognized.empty());
}

TEST_CASE("round trip: ErrorResponse and NoticeResponse through error_builder",
          "[pgwire][encoder][roundtrip]") {
  const auto fields = error_builder(error_severity::fatal)
                          .hint("check the token")  // call order does not matter
                          .message("Vault rejected the token")
                          .sqlstate(sqlstate::invalid_password)
                          .detail("permission denied")
                          .field('R', "vaultwire")
                          .fields();
  REQUIRE(fields == std::vector<error_field>{{'S', "FATAL"},
                                             {'V', "FATAL"},
                                             {'C', "28P01"},
                                             {'M', "Vault rejected the token"},
                                             {'D', "permission denied"},
                                             {'H', "check the token"},
                                             {'R', "vaultwire"}});

  byte_vector out;
  REQUIRE(encode_error_response(out, fields).has_value());
  const auto e = parse_error_response(single_message(out, direction::backend, 'E')).value();
  REQUIRE(e.fields == fields);
  REQUIRE(e.severity() == "FATAL");
  REQUIRE(e.sqlstate() == "28P01");
  REQUIRE(e.message() == "Vault rejected the token");
  REQUIRE(e.detail() == "permission denied");
  REQUIRE(e.hint() == "check the token");

  out.clear();
  const auto notice = error_builder(error_severity::warning)
                          .sqlstate(sqlstate::admin_shutdown)
                          .message("lease expires soon")
                          .fields();
  REQUIRE(encode_notice_response(out, notice).has_value());
  const auto n = parse_notice_response(single_message(out, direction::backend, 'N')).value();
  REQUIRE(n.fields == notice);
  REQUIRE(n.severity() == "WARNING");
  REQUIRE(n.hint().empty());

  SECTION("the builder keeps S and V to the severity") {
    const auto f = error_builder().field('S', "PANIC").field('V', "LOG").fields();
    REQUIRE(f == std::vector<error_field>{{'S', "ERROR"}, {'V', "ERROR"}});
  }
}

TEST_CASE("encoder: values that would corrupt framing are refused, out untouched",
          "[pgwire][encoder]") {
  byte_vector out = bytes({'K', 'E', 'E', 'P'});
  const auto before = out;
  const std::string nul("a\0b", 3);

  REQUIRE(encode_password_message(out, nul).error() == errc::malformed_message);
  REQUIRE(encode_parameter_status(out, nul, "v").error() == errc::malformed_message);
  REQUIRE(encode_parameter_status(out, "n", nul).error() == errc::malformed_message);
  REQUIRE(encode_sasl_initial_response(out, nul, "x"sv).error() == errc::malformed_message);
  REQUIRE(encode_sasl_initial_response(out, "", "x"sv).error() == errc::malformed_message);

  const std::array<std::string_view, 2> with_empty{"SCRAM-SHA-256", ""};
  REQUIRE(encode_authentication_sasl(out, with_empty).error() == errc::malformed_message);
  const std::array<std::string_view, 1> with_nul{nul};
  REQUIRE(encode_authentication_sasl(out, with_nul).error() == errc::malformed_message);
  REQUIRE(encode_authentication_sasl(out, std::span<const std::string_view>{}).error() ==
          errc::malformed_message);

  const std::vector<error_field> nul_value{{'S', "ERROR"}, {'M', nul}};
  REQUIRE(encode_error_response(out, nul_value).error() == errc::malformed_message);
  const std::vector<error_field> zero_code{{'S', "ERROR"}, {'\0', "x"}};
  REQUIRE(encode_notice_response(out, zero_code).error() == errc::malformed_message);

  const std::vector<std::string> bad_options{"_pq_.a", nul};
  REQUIRE(encode_negotiate_protocol_version(out, protocol_version_3_0, bad_options).error() ==
          errc::malformed_message);

  REQUIRE(encode_ready_for_query(out, static_cast<transaction_status>('x')).error() ==
          errc::malformed_message);

  authentication unknown;
  unknown.type = static_cast<auth_type>(6);
  REQUIRE(encode_authentication(out, unknown).error() == errc::malformed_message);

  startup_message empty_name;
  empty_name.params = {{"user", "bob"}, {"", "x"}};
  REQUIRE(encode_startup_message(out, empty_name).error() == errc::malformed_message);
  startup_message nul_value_startup;
  nul_value_startup.params = {{"user", nul}};
  REQUIRE(encode_startup_message(out, nul_value_startup).error() == errc::malformed_message);

  REQUIRE(out == before);
}

TEST_CASE("encoder: a startup packet over 10,000 bytes is refused", "[pgwire][encoder]") {
  startup_message big;
  big.params = {{"user", "bob"}, {"options", std::string(10000, 'x')}};
  byte_vector out;
  REQUIRE(encode_startup_message(out, big).error() == errc::length_too_long);
  REQUIRE(out.empty());

  startup_message fits;  // 8 + "user\0" + value + "\0" + "\0" == 10,000
  fits.params = {{"user", std::string(10000 - 8 - 5 - 2, 'u')}};
  REQUIRE(encode_startup_message(out, fits).has_value());
  REQUIRE(out.size() == 10000);
  REQUIRE(decode_startup_packet(view(out)).status == decode_status::message);
}

TEST_CASE("message_builder: contract", "[pgwire][encoder][builder]") {
  byte_vector out;
  message_builder b(out);

  SECTION("finish patches the length; int16 is big-endian") {
    b.begin('d');
    b.add_int16(-2);
    b.add_int32(0x01020304);
    b.add_bytes(bytes_view(bytes({9})));
    REQUIRE(b.open());
    REQUIRE(b.finish().has_value());
    REQUIRE_FALSE(b.open());
    REQUIRE(out == bytes({'d', 0, 0, 0, 11, 0xff, 0xfe, 1, 2, 3, 4, 9}));
  }
  SECTION("an unfinished message is discarded by the next begin") {
    b.begin('Q');
    b.add_cstring("abandoned");
    b.begin('S');
    REQUIRE(b.finish().has_value());
    REQUIRE(out == bytes({'S', 0, 0, 0, 4}));
  }
  SECTION("writes outside begin/finish fail the next finish") {
    b.add_int32(1);
    REQUIRE(out.empty());
    REQUIRE(b.finish().error() == errc::malformed_message);
  }
  SECTION("a NUL in a String removes the partial message") {
    out = bytes({'K'});
    b.begin('Q');
    b.add_cstring(std::string_view("se\0lect", 7));
    b.add_cstring("more");
    REQUIRE(b.finish().error() == errc::malformed_message);
    REQUIRE(out == bytes({'K'}));
    // The builder is usable again.
    b.begin('H');
    REQUIRE(b.finish().has_value());
    REQUIRE(out == bytes({'K', 'H', 0, 0, 0, 4}));
  }
  SECTION("a caller's cap on the length") {
    b.begin('p');
    b.add_bytes("12345678"sv);
    REQUIRE(b.finish(11).error() == errc::length_too_long);
    REQUIRE(out.empty());
    b.begin('p');
    b.add_bytes("12345678"sv);
    REQUIRE(b.finish(12).has_value());
    REQUIRE(out.size() == 13);
  }
  SECTION("fail() marks the message invalid") {
    b.begin('S');
    b.fail(errc::malformed_message);
    REQUIRE(b.finish().error() == errc::malformed_message);
    REQUIRE(out.empty());
  }
}

TEST_CASE("sqlstate constants", "[pgwire][sqlstate]") {
  const std::string_view all[] = {
      sqlstate::invalid_password, sqlstate::invalid_authorization_specification,
      sqlstate::sqlclient_unable_to_establish_sqlconnection,
      sqlstate::sqlserver_rejected_establishment_of_sqlconnection, sqlstate::protocol_violation,
      sqlstate::too_many_connections, sqlstate::admin_shutdown, sqlstate::connection_failure,
      sqlstate::feature_not_supported, sqlstate::insufficient_privilege, sqlstate::query_canceled,
      sqlstate::internal_error};
  for (const auto code : all) {
    INFO(code);
    REQUIRE(code.size() == 5);
  }
  REQUIRE(sqlstate::invalid_password == "28P01");
  REQUIRE(sqlstate::protocol_violation == "08P01");
  REQUIRE(sqlstate::sqlclient_unable_to_establish_sqlconnection == "08001");
  REQUIRE(sqlstate::too_many_connections == "53300");
  REQUIRE(sqlstate::admin_shutdown == "57P01");
}
