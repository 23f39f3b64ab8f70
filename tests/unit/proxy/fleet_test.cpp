// The fleet's pure parts: the frame one instance hands another, the instance bits of
// a cancel key, and the penalty for an unknown key.
#include <catch2/catch.hpp>

#include <pgwire/encoder.hpp>

#include <chrono>
#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "ops/cancel_penalty.hpp"
#include "proxy/cancel_map.hpp"
#include "proxy/fleet_frame.hpp"

using vaultwire::detail::cancel_map;
using vaultwire::detail::cancel_penalty;
using vaultwire::detail::decode_fleet_frame;
using vaultwire::detail::encode_fleet_frame;
using status = vaultwire::detail::fleet_frame_status;

TEST_CASE("fleet frame: a CancelRequest and the client's host, whole or in pieces", "[fleet]") {
  std::vector<std::uint8_t> out;
  encode_fleet_frame(out, {1234, static_cast<std::int32_t>(0x9abcdef0u)}, "192.0.2.7");
  encode_fleet_frame(out, {5, 6}, "");
  REQUIRE(out.size() == 16 + 1 + 9 + 16 + 1);
  for (std::size_t cut = 0; cut < 26; ++cut) {
    INFO(cut);
    CHECK(decode_fleet_frame(std::span(out).first(cut)).status == status::need_more);
  }
  auto d = decode_fleet_frame(out);
  REQUIRE(d.status == status::frame);
  CHECK(d.consumed == 26);
  CHECK(d.frame.key.process_id == 1234);
  CHECK(static_cast<std::uint32_t>(d.frame.key.secret_key) == 0x9abcdef0u);
  CHECK(d.frame.host == "192.0.2.7");
  d = decode_fleet_frame(std::span(out).subspan(26));
  REQUIRE(d.status == status::frame);
  CHECK(d.frame.host.empty());
  CHECK(d.consumed == 17);
  // A host longer than a length byte holds is cut, never overflows it.
  out.clear();
  encode_fleet_frame(out, {1, 2}, std::string(300, 'h'));
  CHECK(decode_fleet_frame(out).frame.host == std::string(255, 'h'));
}

TEST_CASE("fleet frame: anything but a CancelRequest first is an error", "[fleet]") {
  std::vector<std::uint8_t> ssl;
  pgwire::encode_ssl_request(ssl);
  ssl.resize(17, 0);
  CHECK(decode_fleet_frame(ssl).status == status::error);
  std::vector<std::uint8_t> junk(40, 0xff);
  CHECK(decode_fleet_frame(junk).status == status::error);
}

TEST_CASE("cancel keys: in a fleet the top 4 bits name the instance, the rest stay random", "[fleet]") {
  cancel_map plain;
  std::set<std::uint32_t> top;
  for (int i = 0; i < 200; ++i) top.insert(static_cast<std::uint32_t>(plain.issue(1, {}).secret_key) >> 28);
  CHECK(top.size() > 4);  // outside a fleet every bit is random
  cancel_map fleet;
  fleet.set_instance(11);
  std::set<std::uint32_t> low;
  for (int i = 0; i < 200; ++i) {
    const auto key = fleet.issue(2, {});
    CHECK(cancel_map::instance_of({key.process_id, key.secret_key}) == 11);
    low.insert(static_cast<std::uint32_t>(key.secret_key) & 0x0fffffffu);
    CHECK(fleet.find({key.process_id, key.secret_key}).has_value());
  }
  CHECK(low.size() == 200);
}

TEST_CASE("cancel penalty: an unknown key holds its source back for a second, others not", "[fleet]") {
  using namespace std::chrono_literals;
  cancel_penalty p;
  const auto t = cancel_penalty::clock::time_point{} + 100s;
  CHECK(p.allowed("192.0.2.1", t));
  p.penalise("192.0.2.1", t);
  CHECK_FALSE(p.allowed("192.0.2.1", t + 999ms));
  CHECK(p.allowed("192.0.2.2", t + 10ms));
  CHECK(p.allowed("192.0.2.1", t + 1s));
  CHECK(p.size() == 0);  // a served penalty is forgotten
  cancel_penalty small(2);
  small.penalise("a", t);
  small.penalise("b", t);
  small.penalise("c", t + 2s);  // full: the served ones go
  CHECK(small.allowed("a", t + 2s));
  CHECK_FALSE(small.allowed("c", t + 2s));
}
