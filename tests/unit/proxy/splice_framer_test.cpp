// message_framer (src/proxy/splice.hpp): pgwire message boundaries from 5-byte headers,
// across every split point of the stream, and the impossible lengths that must
// stop the splice.
#include <catch2/catch.hpp>

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "proxy/splice.hpp"

namespace {

using vaultwire::detail::message_framer;

void append(std::vector<std::uint8_t>& out, char type, const std::string& body) {
  out.push_back(static_cast<std::uint8_t>(type));
  const auto len = static_cast<std::uint32_t>(body.size() + 4);
  out.push_back(static_cast<std::uint8_t>(len >> 24));
  out.push_back(static_cast<std::uint8_t>(len >> 16));
  out.push_back(static_cast<std::uint8_t>(len >> 8));
  out.push_back(static_cast<std::uint8_t>(len));
  out.insert(out.end(), body.begin(), body.end());
}

using seen = std::vector<std::pair<char, std::uint8_t>>;

std::vector<std::uint8_t> sample() {
  std::vector<std::uint8_t> s;
  append(s, '1', "");                           // ParseComplete: empty body
  append(s, 'T', std::string(40, 'x'));         // RowDescription
  append(s, 'D', std::string(70000, 'y'));      // a DataRow larger than one read
  append(s, 'C', std::string("SELECT 1\0", 9));  // CommandComplete
  append(s, 'Z', "T");                          // ReadyForQuery, in a transaction
  append(s, 'Z', "I");
  return s;
}

const seen expected{{'1', 0}, {'T', 'x'}, {'D', 'y'}, {'C', 'S'}, {'Z', 'T'}, {'Z', 'I'}};

}  // namespace

TEST_CASE("message_framer: one read", "[unit][splice]") {
  message_framer f;
  seen got;
  REQUIRE(f.feed(sample(), [&got](char t, std::uint8_t first) { got.emplace_back(t, first); }));
  CHECK(got == expected);
  CHECK(f.at_boundary());
}

TEST_CASE("message_framer: every split into two reads, and byte by byte", "[unit][splice]") {
  const auto s = sample();
  // Every split point of the small messages (the start and the end of the stream).
  std::vector<std::size_t> points;
  for (std::size_t i = 0; i <= 60; ++i) points.push_back(i);
  for (std::size_t i = s.size() - 30; i <= s.size(); ++i) points.push_back(i);
  for (std::size_t cut : points) {
    message_framer f;
    seen got;
    auto on = [&got](char t, std::uint8_t first) { got.emplace_back(t, first); };
    REQUIRE(f.feed(std::span(s).first(cut), on));
    REQUIRE(f.feed(std::span(s).subspan(cut), on));
    INFO("cut at " << cut);
    CHECK(got == expected);
    CHECK(f.at_boundary());
  }
  message_framer f;
  seen got;
  for (std::size_t i = 0; i < s.size(); ++i) {
    REQUIRE(f.feed(std::span(s).subspan(i, 1), [&got](char t, std::uint8_t first) { got.emplace_back(t, first); }));
    const bool boundary = i + 1 == 5 || i + 1 == s.size();
    if (boundary) CHECK(f.at_boundary());
  }
  CHECK(got == expected);
}

TEST_CASE("message_framer: random read sizes (fixed seed)", "[unit][splice]") {
  const auto s = sample();
  std::mt19937 rng(5);
  for (int round = 0; round < 200; ++round) {
    message_framer f;
    seen got;
    std::size_t at = 0;
    while (at < s.size()) {
      const std::size_t n = std::min<std::size_t>(s.size() - at, 1 + rng() % 9000);
      REQUIRE(f.feed(std::span(s).subspan(at, n), [&got](char t, std::uint8_t first) { got.emplace_back(t, first); }));
      at += n;
    }
    CHECK(got == expected);
  }
}

TEST_CASE("message_framer: an impossible length stops it", "[unit][splice]") {
  for (std::uint32_t bad : {0U, 1U, 3U, 0x80000000U, 0xffffffffU}) {
    std::vector<std::uint8_t> s;
    append(s, 'Z', "I");
    s.push_back('D');
    s.push_back(static_cast<std::uint8_t>(bad >> 24));
    s.push_back(static_cast<std::uint8_t>(bad >> 16));
    s.push_back(static_cast<std::uint8_t>(bad >> 8));
    s.push_back(static_cast<std::uint8_t>(bad));
    message_framer f;
    int messages = 0;
    // Split inside the bad header: the partial header is carried, then refused.
    REQUIRE(f.feed(std::span(s).first(8), [&messages](char, std::uint8_t) { ++messages; }));
    CHECK_FALSE(f.feed(std::span(s).subspan(8), [&messages](char, std::uint8_t) { ++messages; }));
    CHECK(messages == 1);
    CHECK(f.bad_length() == bad);
    CHECK(f.bad_type() == 'D');
  }
  // 4 is the smallest possible length (an empty body).
  std::vector<std::uint8_t> ok{'1', 0, 0, 0, 4};
  message_framer f;
  CHECK(f.feed(ok, [](char, std::uint8_t) {}));
}
