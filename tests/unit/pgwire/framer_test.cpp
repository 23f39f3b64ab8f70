// message_framer: pgwire message boundaries from 5-byte headers across every split
// point of the stream, several messages in one read, unknown types passed through,
// and the impossible lengths that must stop it.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "codec_test_helpers.hpp"
#include "pgwire/errc.hpp"
#include "pgwire/framer.hpp"

using namespace pgwire;
using namespace pgwire_test;

namespace {

void append(byte_vector& out, char type, const std::string& body) {
  const auto f = frame(type, bytes_of(body));
  out.insert(out.end(), f.begin(), f.end());
}

// A message header with any length field.
void append_header(byte_vector& out, char type, std::uint32_t length) {
  out.push_back(static_cast<std::uint8_t>(type));
  append_be32(out, length);
}

using seen = std::vector<std::pair<char, std::uint8_t>>;

byte_vector sample() {
  byte_vector s;
  append(s, '1', "");                            // ParseComplete: empty body
  append(s, 'T', std::string(40, 'x'));          // RowDescription
  append(s, 'D', std::string(70000, 'y'));       // a DataRow larger than one read
  append(s, 'C', std::string("SELECT 1\0", 9));  // CommandComplete
  append(s, 'Z', "T");                           // ReadyForQuery, in a transaction
  append(s, 'Z', "I");
  return s;
}

const seen expected{{'1', 0}, {'T', 'x'}, {'D', 'y'}, {'C', 'S'}, {'Z', 'T'}, {'Z', 'I'}};

// Feeds `s` in reads of the given sizes (the last read takes the rest).
seen feed_in_reads(message_framer& f, const byte_vector& s, const std::vector<std::size_t>& reads) {
  seen got;
  std::size_t at = 0;
  auto on = [&got](char t, std::uint8_t first) { got.emplace_back(t, first); };
  for (const std::size_t n : reads) {
    const std::size_t take = std::min(n, s.size() - at);
    REQUIRE(f.feed(view(s).subspan(at, take), on));
    at += take;
  }
  REQUIRE(f.feed(view(s).subspan(at), on));
  return got;
}

}  // namespace

TEST_CASE("message_framer: one read", "[pgwire][framer]") {
  message_framer f;
  seen got;
  REQUIRE(f.feed(view(sample()), [&got](char t, std::uint8_t first) { got.emplace_back(t, first); }));
  CHECK(got == expected);
  CHECK(f.at_boundary());
  CHECK_FALSE(f.failed());
}

TEST_CASE("message_framer: several messages in one read, one step each", "[pgwire][framer]") {
  byte_vector s;
  append(s, 'Z', "I");
  append(s, '1', "");
  append(s, 'C', "x");
  s.push_back('D');  // and the first byte of a fourth
  message_framer f;
  bytes_view in = view(s);

  auto step = f.next(in);
  REQUIRE(step.status == decode_status::message);
  CHECK(step.consumed == 6);
  CHECK(step.type == 'Z');
  CHECK(step.first == 'I');
  CHECK(f.at_boundary());
  in = in.subspan(step.consumed);

  step = f.next(in);
  REQUIRE(step.status == decode_status::message);
  CHECK(step.consumed == 5);
  CHECK(step.type == '1');
  CHECK(step.first == 0);
  in = in.subspan(step.consumed);

  step = f.next(in);
  REQUIRE(step.status == decode_status::message);
  CHECK(step.consumed == 6);
  CHECK(step.type == 'C');
  CHECK(step.first == 'x');
  in = in.subspan(step.consumed);

  step = f.next(in);
  CHECK(step.status == decode_status::need_more);
  CHECK(step.consumed == 1);
  CHECK_FALSE(f.at_boundary());

  step = f.next(bytes_view{});
  CHECK(step.status == decode_status::need_more);
  CHECK(step.consumed == 0);
}

TEST_CASE("message_framer: every split into two reads, and byte by byte", "[pgwire][framer]") {
  const auto s = sample();
  // Every split point of the small messages (the start and the end of the stream).
  std::vector<std::size_t> points;
  for (std::size_t i = 0; i <= 60; ++i) points.push_back(i);
  for (std::size_t i = s.size() - 30; i <= s.size(); ++i) points.push_back(i);
  for (std::size_t cut : points) {
    INFO("cut at " << cut);
    message_framer f;
    CHECK(feed_in_reads(f, s, {cut}) == expected);
    CHECK(f.at_boundary());
  }
  // Where each message of sample() ends.
  std::vector<std::size_t> ends;
  for (std::size_t at = 0; at < s.size();) {
    at += 1 + load_be32(view(s), at + 1);
    ends.push_back(at);
  }
  REQUIRE(ends.size() == expected.size());
  message_framer f;
  seen got;
  for (std::size_t i = 0; i < s.size(); ++i) {
    REQUIRE(f.feed(view(s).subspan(i, 1), [&got](char t, std::uint8_t first) { got.emplace_back(t, first); }));
    INFO("after byte " << i);
    CHECK(f.at_boundary() == (std::find(ends.begin(), ends.end(), i + 1) != ends.end()));
  }
  CHECK(got == expected);
}

TEST_CASE("message_framer: random read sizes (fixed seed)", "[pgwire][framer]") {
  const auto s = sample();
  std::mt19937 rng(5);
  for (int round = 0; round < 200; ++round) {
    std::vector<std::size_t> reads;
    for (std::size_t at = 0; at < s.size();) {
      reads.push_back(1 + rng() % 9000);
      at += reads.back();
    }
    message_framer f;
    CHECK(feed_in_reads(f, s, reads) == expected);
  }
}

TEST_CASE("message_framer: unknown types are framed and passed through", "[pgwire][framer]") {
  // Neither direction defines these: decode_message refuses them, the framer does not.
  byte_vector s;
  append(s, '\0', "");
  append(s, '!', "abc");
  append(s, static_cast<char>(0xff), std::string(300, 'q'));
  append(s, 'Z', "I");
  REQUIRE(decode_message(view(s), 8192, direction::backend).error == errc::unknown_message_type);
  REQUIRE(decode_message(view(s), 8192, direction::frontend).error == errc::unknown_message_type);
  const seen want{{'\0', 0}, {'!', 'a'}, {static_cast<char>(0xff), 'q'}, {'Z', 'I'}};
  for (std::size_t cut = 0; cut <= s.size(); ++cut) {
    INFO("cut at " << cut);
    message_framer f;
    CHECK(feed_in_reads(f, s, {cut}) == want);
    CHECK(f.at_boundary());
  }
}

TEST_CASE("message_framer: a length below 4 is refused", "[pgwire][framer]") {
  for (std::uint32_t bad : {0U, 1U, 2U, 3U}) {
    INFO("length " << bad);
    byte_vector s;
    append(s, 'Z', "I");
    append_header(s, 'D', bad);
    append(s, 'Z', "I");  // never reached
    message_framer f;
    int messages = 0;
    auto on = [&messages](char, std::uint8_t) { ++messages; };
    // Split inside the bad header: the partial header is carried, then refused.
    REQUIRE(f.feed(view(s).first(8), on));
    CHECK_FALSE(f.feed(view(s).subspan(8), on));
    CHECK(messages == 1);
    REQUIRE(f.failed());
    CHECK_FALSE(f.at_boundary());
    CHECK(f.refused().error == errc::length_too_short);
    CHECK(f.refused().type == 'D');
    CHECK(f.refused().length == bad);
  }
  // 4 is the smallest possible length (an empty body).
  message_framer f;
  CHECK(f.feed(view(bytes({'1', 0, 0, 0, 4})), [](char, std::uint8_t) {}));
  CHECK(f.at_boundary());
}

TEST_CASE("message_framer: a length over the max is refused from the header alone", "[pgwire][framer]") {
  SECTION("the default max: what an Int32 length can carry") {
    for (std::uint32_t bad : {0x80000000U, 0x80000001U, 0xffffffffU}) {
      INFO("length " << bad);
      byte_vector s;
      append_header(s, 'D', bad);
      message_framer f;
      const auto step = f.next(view(s));
      REQUIRE(step.status == decode_status::error);
      CHECK(step.error == errc::length_too_long);
      CHECK(step.consumed == 5);
      CHECK(f.refused().type == 'D');
      CHECK(f.refused().length == bad);
    }
    byte_vector s;
    append_header(s, 'D', 0x7fffffffU);  // the largest allowed: its body is awaited
    message_framer f;
    const auto step = f.next(view(s));
    CHECK(step.status == decode_status::need_more);
    CHECK(step.consumed == 5);
    CHECK_FALSE(f.failed());
  }
  SECTION("a max of the caller's") {
    byte_vector s;
    append(s, 'd', std::string(96, 'x'));  // length 100: at the max
    append_header(s, 'd', 101);
    message_framer f(100);
    int messages = 0;
    CHECK_FALSE(f.feed(view(s), [&messages](char, std::uint8_t) { ++messages; }));
    CHECK(messages == 1);
    CHECK(f.refused().error == errc::length_too_long);
    CHECK(f.refused().length == 101);
  }
}

TEST_CASE("message_framer: stays refused", "[pgwire][framer]") {
  byte_vector s;
  append_header(s, 'D', 2);
  message_framer f;
  REQUIRE(f.next(view(s)).status == decode_status::error);
  byte_vector good;
  append(good, 'Z', "I");
  const auto step = f.next(view(good));
  CHECK(step.status == decode_status::error);
  CHECK(step.error == errc::length_too_short);
  CHECK(step.consumed == 0);
  CHECK_FALSE(f.feed(view(good), [](char, std::uint8_t) { FAIL("a message after a refusal"); }));
  CHECK_FALSE(f.feed(bytes_view{}, [](char, std::uint8_t) {}));
}
