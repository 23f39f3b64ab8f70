// Helpers shared by the pgwire codec tests (decoder, messages, encoder).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "pgwire/decoder.hpp"
#include "pgwire/frame.hpp"

namespace pgwire_test {

using byte_vector = std::vector<std::uint8_t>;

// Bytes from a mix of small integers and characters: bytes({'R', 0, 0, 0, 8}).
inline byte_vector bytes(std::initializer_list<int> values) {
  byte_vector out;
  for (const int v : values) out.push_back(static_cast<std::uint8_t>(v));
  return out;
}

inline byte_vector bytes_of(std::string_view s) { return byte_vector(s.begin(), s.end()); }

inline byte_vector concat(byte_vector a, const byte_vector& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

inline void append_be32(byte_vector& out, std::uint32_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 24));
  out.push_back(static_cast<std::uint8_t>(v >> 16));
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}

// A typed frame around `body`, with the length computed.
inline byte_vector frame(char type, const byte_vector& body) {
  byte_vector out{static_cast<std::uint8_t>(type)};
  append_be32(out, static_cast<std::uint32_t>(body.size() + 4));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

// A startup-phase packet: length, then `rest` (which starts with the code).
inline byte_vector untyped_frame(const byte_vector& rest) {
  byte_vector out;
  append_be32(out, static_cast<std::uint32_t>(rest.size() + 4));
  out.insert(out.end(), rest.begin(), rest.end());
  return out;
}

inline pgwire::bytes_view view(const byte_vector& v) { return {v.data(), v.size()}; }

// Every proper prefix of `whole` (including the empty one) must be need_more with
// nothing consumed; `whole` must be one message of exactly whole.size() bytes, and
// it must still be that one message when more bytes follow it.
inline void require_every_split_message(const byte_vector& whole, pgwire::direction dir,
                                        std::size_t max_length = 1 << 20) {
  for (std::size_t n = 0; n < whole.size(); ++n) {
    INFO("prefix length " << n << " of " << whole.size());
    const auto r = pgwire::decode_message(view(whole).first(n), max_length, dir);
    REQUIRE(r.status == pgwire::decode_status::need_more);
    REQUIRE(r.consumed == 0);
    REQUIRE_FALSE(r.error);
  }
  const auto full = pgwire::decode_message(view(whole), max_length, dir);
  REQUIRE(full.status == pgwire::decode_status::message);
  REQUIRE(full.consumed == whole.size());
  REQUIRE(full.message.type == static_cast<char>(whole[0]));
  REQUIRE(full.message.body.size() == whole.size() - 5);
  REQUIRE(full.message.body.data() == whole.data() + 5);

  const auto more = concat(whole, bytes({'Z', 0, 0}));
  const auto next = pgwire::decode_message(view(more), max_length, dir);
  REQUIRE(next.status == pgwire::decode_status::message);
  REQUIRE(next.consumed == whole.size());
}

// The same for startup-phase packets.
inline void require_every_split_startup(const byte_vector& whole,
                                        std::size_t max_length = pgwire::max_startup_packet) {
  for (std::size_t n = 0; n < whole.size(); ++n) {
    INFO("prefix length " << n << " of " << whole.size());
    const auto r = pgwire::decode_startup_packet(view(whole).first(n), max_length);
    REQUIRE(r.status == pgwire::decode_status::need_more);
    REQUIRE(r.consumed == 0);
    REQUIRE_FALSE(r.error);
    REQUIRE(std::holds_alternative<std::monostate>(r.packet));
  }
  const auto full = pgwire::decode_startup_packet(view(whole), max_length);
  REQUIRE(full.status == pgwire::decode_status::message);
  REQUIRE(full.consumed == whole.size());
  REQUIRE_FALSE(std::holds_alternative<std::monostate>(full.packet));

  const auto more = concat(whole, bytes({'p', 0, 0, 0, 9}));
  const auto next = pgwire::decode_startup_packet(view(more), max_length);
  REQUIRE(next.status == pgwire::decode_status::message);
  REQUIRE(next.consumed == whole.size());
}

}  // namespace pgwire_test
