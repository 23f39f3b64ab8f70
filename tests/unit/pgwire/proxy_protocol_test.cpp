// PROXY protocol v2: each family, LOCAL, TLVs, every split point, and each refusal
// as early as the bytes allow. Address text is checked against glibc's inet_ntop.
#include <arpa/inet.h>

#include <array>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "pgwire/errc.hpp"
#include "pgwire/proxy_protocol.hpp"
#include "codec_test_helpers.hpp"

using namespace pgwire;
using namespace pgwire_test;

namespace {

const byte_vector signature(proxy_v2_signature.begin(), proxy_v2_signature.end());

// Signature + version/command + family + length + body, written by hand so the
// decoder is not only checked against its own encoder.
byte_vector raw_header(std::uint8_t ver_cmd, std::uint8_t family, std::uint16_t length,
                       const byte_vector& body) {
  byte_vector out = signature;
  out.push_back(ver_cmd);
  out.push_back(family);
  out.push_back(static_cast<std::uint8_t>(length >> 8));
  out.push_back(static_cast<std::uint8_t>(length));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

byte_vector raw_header(std::uint8_t ver_cmd, std::uint8_t family, const byte_vector& body) {
  return raw_header(ver_cmd, family, static_cast<std::uint16_t>(body.size()), body);
}

byte_vector encode(const proxy_header& h, const byte_vector& tlvs = {}) {
  auto r = encode_proxy_v2(h, tlvs);
  REQUIRE(r.has_value());
  return r.value();
}

proxy_header inet(std::string src, std::uint16_t sport, std::string dst, std::uint16_t dport) {
  proxy_header h;
  h.family = proxy_family::inet;
  h.src_address = std::move(src);
  h.src_port = sport;
  h.dst_address = std::move(dst);
  h.dst_port = dport;
  return h;
}

proxy_header inet6(std::string src, std::uint16_t sport, std::string dst, std::uint16_t dport) {
  auto h = inet(std::move(src), sport, std::move(dst), dport);
  h.family = proxy_family::inet6;
  return h;
}

// Every proper prefix is need_more; the whole header (plus trailing client bytes)
// decodes to `expected` and consumes exactly the header.
void check_every_split(const byte_vector& header, const proxy_header& expected) {
  for (std::size_t n = 0; n < header.size(); ++n) {
    const auto r = decode_proxy_v2(bytes_view(header).first(n));
    INFO("prefix length " << n);
    REQUIRE(r.status == decode_status::need_more);
    CHECK(r.consumed == 0);
    CHECK_FALSE(r.error);
  }
  // The client's SSLRequest follows in the same read: it must not be consumed.
  const byte_vector with_client = concat(header, bytes({0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f}));
  const auto r = decode_proxy_v2(with_client);
  REQUIRE(r.status == decode_status::message);
  CHECK(r.consumed == header.size());
  CHECK_FALSE(r.error);
  CHECK(r.header == expected);
}

// The error comes at `at` bytes and at every longer prefix; shorter ones ask for more.
void check_error_at(const byte_vector& in, std::size_t at, pgwire::errc expected) {
  for (std::size_t n = 0; n <= in.size(); ++n) {
    INFO("prefix length " << n);
    const auto r = decode_proxy_v2(bytes_view(in).first(n));
    if (n < at) {
      CHECK(r.status == decode_status::need_more);
    } else {
      REQUIRE(r.status == decode_status::error);
      CHECK(r.error == make_error_code(expected));
      CHECK(r.consumed == 0);
    }
  }
}

byte_vector inet_body(std::array<int, 4> src, std::array<int, 4> dst, int sport, int dport) {
  byte_vector b;
  for (int v : src) b.push_back(static_cast<std::uint8_t>(v));
  for (int v : dst) b.push_back(static_cast<std::uint8_t>(v));
  b.push_back(static_cast<std::uint8_t>(sport >> 8));
  b.push_back(static_cast<std::uint8_t>(sport));
  b.push_back(static_cast<std::uint8_t>(dport >> 8));
  b.push_back(static_cast<std::uint8_t>(dport));
  return b;
}

std::string ntop6(const std::array<std::uint8_t, 16>& a) {
  char buf[INET6_ADDRSTRLEN];
  REQUIRE(inet_ntop(AF_INET6, a.data(), buf, sizeof buf) != nullptr);
  return buf;
}

}  // namespace

TEST_CASE("proxy v2: IPv4 over TCP, every split point", "[pgwire][proxy]") {
  const byte_vector h = raw_header(0x21, 0x11, inet_body({203, 0, 113, 7}, {10, 0, 0, 1}, 51234, 26257));
  CHECK(h.size() == 28);
  check_every_split(h, inet("203.0.113.7", 51234, "10.0.0.1", 26257));
  CHECK(encode(inet("203.0.113.7", 51234, "10.0.0.1", 26257)) == h);
  CHECK(decode_proxy_v2(h).header.has_address());
}

TEST_CASE("proxy v2: IPv6 over TCP, every split point", "[pgwire][proxy]") {
  byte_vector body(36, 0);
  body[0] = 0x20, body[1] = 0x01, body[2] = 0x0d, body[3] = 0xb8, body[15] = 0x01;  // 2001:db8::1
  body[16 + 10] = 0xff, body[16 + 11] = 0xff;                                          // ::ffff:192.0.2.1
  body[16 + 12] = 192, body[16 + 13] = 0, body[16 + 14] = 2, body[16 + 15] = 1;
  body[32] = 0xc3, body[33] = 0x50, body[34] = 0x66, body[35] = 0x91;  // 50000, 26257
  const byte_vector h = raw_header(0x21, 0x21, body);
  CHECK(h.size() == 52);
  const auto expected = inet6("2001:db8::1", 50000, "::ffff:192.0.2.1", 26257);
  check_every_split(h, expected);
  CHECK(encode(expected) == h);
}

TEST_CASE("proxy v2: UNIX stream addresses are paths", "[pgwire][proxy]") {
  proxy_header h;
  h.family = proxy_family::unix_stream;
  h.src_address = "/run/haproxy/client.sock";
  h.dst_address = "/run/vaultwire/.s.PGSQL.26257";
  const byte_vector bytes_ = encode(h);
  CHECK(bytes_.size() == 16 + 216);
  check_every_split(bytes_, h);
}

TEST_CASE("proxy v2: LOCAL carries no address (health checks)", "[pgwire][proxy]") {
  proxy_header local;
  local.local = true;
  SECTION("the usual LOCAL: family UNSPEC, length 0") {
    const byte_vector h = raw_header(0x20, 0x00, {});
    check_every_split(h, local);
    CHECK(encode(local) == h);
    CHECK_FALSE(decode_proxy_v2(h).header.has_address());
  }
  SECTION("LOCAL ignores whatever family and block it carries") {
    check_every_split(raw_header(0x20, 0x11, inet_body({1, 2, 3, 4}, {5, 6, 7, 8}, 1, 2)), local);
    check_every_split(raw_header(0x20, 0x77, bytes({1, 2, 3})), local);
  }
}

TEST_CASE("proxy v2: PROXY with family UNSPEC has no address", "[pgwire][proxy]") {
  const byte_vector h = raw_header(0x21, 0x00, {});
  proxy_header expected;
  check_every_split(h, expected);
  CHECK_FALSE(decode_proxy_v2(h).header.has_address());
  CHECK(encode(expected) == h);
}

TEST_CASE("proxy v2: TLVs after the addresses are skipped", "[pgwire][proxy]") {
  // PP2_TYPE_AUTHORITY "db.example", an empty PP2_TYPE_NOOP, a PP2_TYPE_AWS vpce id.
  byte_vector tlvs = bytes({0x02, 0, 10});
  tlvs = concat(tlvs, bytes_of("db.example"));
  tlvs = concat(tlvs, bytes({0x04, 0, 0}));
  tlvs = concat(tlvs, bytes({0xEA, 0, 23, 0x01}));
  tlvs = concat(tlvs, bytes_of("vpce-08d2bf15fac5001c9"));
  const auto expected = inet("198.51.100.22", 40000, "10.1.2.3", 5432);
  const byte_vector h = encode(expected, tlvs);
  CHECK(h.size() == 16 + 12 + tlvs.size());
  check_every_split(h, expected);

  SECTION("a TLV that runs past the end is refused") {
    const byte_vector bad = encode(expected, bytes({0x02, 0, 10, 'd', 'b'}));
    check_error_at(bad, bad.size(), errc::proxy_bad_tlv);
    const byte_vector stub = encode(expected, bytes({0x02, 0}));
    check_error_at(stub, stub.size(), errc::proxy_bad_tlv);
  }
}

TEST_CASE("proxy v2: no header, or a bad signature, is refused at the first wrong byte",
          "[pgwire][proxy]") {
  SECTION("a client that sends its SSLRequest directly") {
    check_error_at(bytes({0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f}), 1, errc::proxy_bad_signature);
  }
  SECTION("a startup packet") {
    check_error_at(bytes({0, 0, 0, 9, 0, 3, 0, 0, 0}), 1, errc::proxy_bad_signature);
  }
  SECTION("a wrong byte in the middle of the signature") {
    for (std::size_t i = 0; i < signature.size(); ++i) {
      byte_vector h = raw_header(0x21, 0x11, inet_body({1, 2, 3, 4}, {5, 6, 7, 8}, 1, 2));
      h[i] ^= 0x40;
      INFO("byte " << i);
      check_error_at(h, i + 1, errc::proxy_bad_signature);
    }
  }
}

TEST_CASE("proxy v2: a v1 text header is refused as unsupported", "[pgwire][proxy]") {
  const byte_vector v1 = bytes_of("PROXY TCP4 203.0.113.7 10.0.0.1 51234 26257\r\n");
  check_error_at(v1, 1, errc::proxy_v1_unsupported);
  const auto r = decode_proxy_v2(v1);
  CHECK_THAT(r.error.message(), Catch::Contains("v1") && Catch::Contains("only v2"));
  // Something else that starts with P: the first byte alone could be v1, the second
  // shows it is no PROXY header at all.
  const byte_vector post = bytes_of("POST / HTTP/1.1\r\n");
  CHECK(decode_proxy_v2(bytes_view(post).first(1)).error == make_error_code(errc::proxy_v1_unsupported));
  for (std::size_t n = 2; n <= post.size(); ++n) {
    CHECK(decode_proxy_v2(bytes_view(post).first(n)).error == make_error_code(errc::proxy_bad_signature));
  }
}

TEST_CASE("proxy v2: bad version and command", "[pgwire][proxy]") {
  const byte_vector body = inet_body({1, 2, 3, 4}, {5, 6, 7, 8}, 1, 2);
  for (const std::uint8_t v : {0x11, 0x31, 0x01, 0xf1}) {
    INFO("version/command " << int(v));
    check_error_at(raw_header(v, 0x11, body), 13, errc::proxy_bad_version);
  }
  for (const std::uint8_t v : {0x22, 0x2f}) {
    INFO("version/command " << int(v));
    check_error_at(raw_header(v, 0x11, body), 13, errc::proxy_bad_command);
  }
}

TEST_CASE("proxy v2: unsupported family or transport", "[pgwire][proxy]") {
  const byte_vector body = inet_body({1, 2, 3, 4}, {5, 6, 7, 8}, 1, 2);
  // UDP over IPv4/IPv6/UNIX, an unspecified transport with a family, unknown families.
  for (const std::uint8_t f : {0x12, 0x22, 0x32, 0x10, 0x20, 0x01, 0x41, 0xf1, 0x13}) {
    INFO("family " << int(f));
    check_error_at(raw_header(0x21, f, body), 14, errc::proxy_bad_family);
  }
}

TEST_CASE("proxy v2: length too short for the family", "[pgwire][proxy]") {
  // Refused as soon as the length field is there, before any body byte.
  check_error_at(raw_header(0x21, 0x11, 11, byte_vector(11, 0)), 16, errc::proxy_too_short);
  check_error_at(raw_header(0x21, 0x21, 12, byte_vector(12, 0)), 16, errc::proxy_too_short);
  check_error_at(raw_header(0x21, 0x31, 215, byte_vector(215, 0)), 16, errc::proxy_too_short);
  check_error_at(raw_header(0x21, 0x11, 0, {}), 16, errc::proxy_too_short);
}

TEST_CASE("proxy v2: length over the limit", "[pgwire][proxy]") {
  const auto base = inet("192.0.2.1", 1, "192.0.2.2", 2);
  SECTION("exactly at the default limit: accepted") {
    const byte_vector tlv = concat(bytes({0x04, 0x01, 0xf9}), byte_vector(0x1f9, 'x'));
    const byte_vector h = encode(base, tlv);
    REQUIRE(h.size() == max_proxy_v2_header);
    check_every_split(h, base);
  }
  SECTION("one byte over: refused as soon as the length field is there") {
    const byte_vector tlv = concat(bytes({0x04, 0x01, 0xfa}), byte_vector(0x1fa, 'x'));
    check_error_at(encode(base, tlv), 16, errc::proxy_too_long);
  }
  SECTION("the largest length field") {
    check_error_at(raw_header(0x21, 0x11, 0xffff, {}), 16, errc::proxy_too_long);
    check_error_at(raw_header(0x20, 0x00, 0xffff, {}), 16, errc::proxy_too_long);
  }
  SECTION("a caller's own limit") {
    const byte_vector h = encode(base);
    CHECK(decode_proxy_v2(h, 28).status == decode_status::message);
    CHECK(decode_proxy_v2(h, 27).error == make_error_code(errc::proxy_too_long));
  }
}

TEST_CASE("proxy v2: IPv6 text matches inet_ntop (fixed seed)", "[pgwire][proxy]") {
  std::mt19937 rng(20240601);
  std::uniform_int_distribution<int> byte(0, 255), zero(0, 2);
  for (int iter = 0; iter < 20000; ++iter) {
    std::array<std::uint8_t, 16> a{};
    // Mostly zero words so that runs of zeros, mapped and compatible forms occur.
    for (std::size_t w = 0; w < 8; ++w) {
      if (zero(rng) != 0) continue;
      a[2 * w] = static_cast<std::uint8_t>(byte(rng) < 128 ? 0 : byte(rng));
      a[2 * w + 1] = static_cast<std::uint8_t>(byte(rng));
    }
    if (iter % 7 == 0) {
      std::fill(a.begin(), a.begin() + 10, 0);
      a[10] = a[11] = 0xff;
    }
    INFO("iteration " << iter);
    const std::string text = format_ipv6(a);
    REQUIRE(text == ntop6(a));
    // And the encoder parses it back to the same bytes.
    const auto h = inet6(text, 1, "::1", 2);
    const auto r = decode_proxy_v2(encode(h));
    REQUIRE(r.status == decode_status::message);
    REQUIRE(r.header.src_address == text);
  }
  CHECK(format_ipv6({}) == "::");
  CHECK(format_ipv4({0, 0, 0, 0}) == "0.0.0.0");
  CHECK(format_ipv4({255, 255, 255, 255}) == "255.255.255.255");
}

TEST_CASE("proxy v2: the encoder refuses addresses that do not parse", "[pgwire][proxy]") {
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4 ", "a.b.c.d"}) {
    INFO(bad);
    CHECK_FALSE(encode_proxy_v2(inet(bad, 1, "1.2.3.4", 2)).has_value());
  }
  for (const char* bad : {"", ":", ":::", "1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "12345::",
                          "g::1", "::1.2.3", "1.2.3.4::", "1:2:3:4:5:6:7:1.2.3.4", ":1::2"}) {
    INFO(bad);
    CHECK_FALSE(encode_proxy_v2(inet6(bad, 1, "::1", 2)).has_value());
  }
  proxy_header u;
  u.family = proxy_family::unix_stream;
  u.src_address = std::string(108, 'a');
  CHECK_FALSE(encode_proxy_v2(u).has_value());
  for (const char* good : {"::", "::1", "1::", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7::", "::ffff:1.2.3.4",
                           "64:ff9b::192.0.2.33", "FE80::A"}) {
    INFO(good);
    std::array<std::uint8_t, 16> expected{};
    REQUIRE(inet_pton(AF_INET6, good, expected.data()) == 1);
    const auto r = decode_proxy_v2(encode(inet6(good, 1, "::1", 2)));
    REQUIRE(r.status == decode_status::message);
    CHECK(r.header.src_address == ntop6(expected));
  }
}

TEST_CASE("proxy v2: random bytes after a valid signature never crash (fixed seed)",
          "[pgwire][proxy]") {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> byte(0, 255), len(0, 300);
  for (int iter = 0; iter < 5000; ++iter) {
    byte_vector in = signature;
    const int n = len(rng);
    for (int i = 0; i < n; ++i) in.push_back(static_cast<std::uint8_t>(byte(rng)));
    if (iter % 2 == 0 && in.size() > 13) in[12] = static_cast<std::uint8_t>(0x20 | (byte(rng) & 1));
    const auto r = decode_proxy_v2(in);
    if (r.status == decode_status::message) {
      CHECK(r.consumed <= in.size());
      CHECK(r.consumed >= proxy_v2_fixed_size);
    } else {
      CHECK(r.consumed == 0);
    }
  }
}
