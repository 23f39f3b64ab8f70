// auth_throttle: backoff per (client host, token) with a fake clock.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "ops/throttle.hpp"

using namespace std::chrono_literals;
using vaultwire::throttle_config;
using vaultwire::detail::auth_throttle;

namespace {

struct fake_clock {
  auth_throttle::time_point t{std::chrono::hours{1}};
  void advance(std::chrono::milliseconds d) { t += d; }
};

auth_throttle make(fake_clock& c, std::size_t max_entries = 1000) {
  auth_throttle::options o;
  o.max_entries = max_entries;
  o.now = [&c] { return c.t; };
  return auth_throttle(std::move(o));
}

throttle_config cfg(std::chrono::milliseconds base = 1s, std::chrono::milliseconds max = 8s) {
  throttle_config c;
  c.base_delay = base;
  c.max_delay = max;
  return c;
}

std::string key(const char* host = "192.0.2.1", const char* token = "hvs.token-a") {
  return auth_throttle::make_key(host, pgwire::secret_string(token));
}

// Fails once (an allowed attempt) and returns the wait it set.
std::chrono::milliseconds fail(auth_throttle& t, const std::string& k, const throttle_config& c) {
  auto v = t.check(k);
  REQUIRE(v.allowed);
  t.failed(k, v.ticket, c);
  auto after = t.check(k);
  REQUIRE_FALSE(after.allowed);
  return after.backoff;
}

}  // namespace

TEST_CASE("throttle: the host of a peer, without the port", "[throttle]") {
  CHECK(auth_throttle::client_host("192.0.2.1:5432") == "192.0.2.1");
  CHECK(auth_throttle::client_host("[2001:db8::1]:5432") == "2001:db8::1");
  CHECK(auth_throttle::client_host("") == "unix");
  CHECK(auth_throttle::client_host("/run/app.sock") == "/run/app.sock");
}

TEST_CASE("throttle: the key holds the token's SHA-256, never the token", "[throttle]") {
  const std::string k = key("192.0.2.1", "hvs.secret-token-value");
  CHECK(k.find("hvs.secret-token-value") == std::string::npos);
  CHECK(k.size() == std::string("192.0.2.1").size() + 1 + 32);
  CHECK(k != key("192.0.2.1", "hvs.secret-token-valuf"));
  CHECK(k != key("192.0.2.2", "hvs.secret-token-value"));
  CHECK(k == key("192.0.2.1", "hvs.secret-token-value"));
}

TEST_CASE("throttle: a key with no failure is allowed", "[throttle]") {
  fake_clock c;
  auto t = make(c);
  for (int i = 0; i < 5; ++i) CHECK(t.check(key()).allowed);
  CHECK(t.stats().entries == 0);
}

TEST_CASE("throttle: the wait doubles per failure up to max_delay", "[throttle]") {
  fake_clock c;
  auto t = make(c);
  const auto conf = cfg(1s, 8s);
  const auto k = key();
  std::vector<std::chrono::milliseconds> waits;
  for (int i = 0; i < 6; ++i) {
    waits.push_back(fail(t, k, conf));
    // Refused until the wait is over (1 ms before it still refused), then allowed.
    c.advance(waits.back() - 1ms);
    auto v = t.check(k);
    CHECK_FALSE(v.allowed);
    CHECK(v.retry_after == 1ms);
    CHECK(v.failures == static_cast<std::uint32_t>(i + 1));
    c.advance(1ms);
  }
  CHECK(waits == std::vector<std::chrono::milliseconds>{1s, 2s, 4s, 8s, 8s, 8s});
}

TEST_CASE("throttle: retry_after is the time left, rounded up", "[throttle]") {
  fake_clock c;
  auto t = make(c);
  const auto k = key();
  (void)fail(t, k, cfg(1s));
  c.advance(300ms);
  auto v = t.check(k);
  CHECK_FALSE(v.allowed);
  CHECK(v.retry_after == 700ms);
  CHECK(v.backoff == 1s);
  CHECK(t.stats().refusals == 2);  // fail() checks once after the failure, then this one
}

TEST_CASE("throttle: refused attempts do not extend the wait", "[throttle]") {
  fake_clock c;
  auto t = make(c);
  const auto k = key();
  (void)fail(t, k, cfg(1s));
  for (int i = 0; i < 9; ++i) {
    c.advance(100ms);
    CHECK_FALSE(t.check(k).allowed);
  }
  c.advance(100ms);
  CHECK(t.check(k).allowed);
}

TEST_CASE("throttle: a success forgets the key", "[throttle]") {
  fake_clock c;
  auto t = make(c);
  const auto conf = cfg(1s, 60s);
  const auto k = key();
  (void)fail(t, k, conf);
  c.advance(1s);
  CHECK(fail(t, k, conf) == 2s);
  c.advance(2s);
  CHECK(t.check(k).allowed);
  t.succeeded(k);
  CHECK(t.stats().entries == 0);
  // The next failure starts at base_delay again.
  CHECK(fail(t, k, conf) == 1s);
}

TEST_CASE("throttle: other hosts and other tokens are not affected", "[throttle]") {
  fake_clock c;
  auto t = make(c);
  (void)fail(t, key("192.0.2.1", "hvs.a"), cfg());
  CHECK_FALSE(t.check(key("192.0.2.1", "hvs.a")).allowed);
  CHECK(t.check(key("192.0.2.1", "hvs.b")).allowed);
  CHECK(t.check(key("192.0.2.2", "hvs.a")).allowed);
}

TEST_CASE("throttle: logins that raced each other count as one failure", "[throttle]") {
  fake_clock c;
  auto t = make(c);
  const auto conf = cfg(1s, 60s);
  const auto k = key();
  // Three attempts checked before any failed (a client opening a pool at once).
  auto a = t.check(k), b = t.check(k), d = t.check(k);
  REQUIRE((a.allowed && b.allowed && d.allowed));
  t.failed(k, a.ticket, conf);
  c.advance(10ms);
  t.failed(k, b.ticket, conf);
  t.failed(k, d.ticket, conf);
  auto v = t.check(k);
  CHECK_FALSE(v.allowed);
  CHECK(v.backoff == 1s);
  CHECK(v.failures == 1);
  CHECK(v.retry_after == 990ms);
  // An attempt allowed after the wait doubles it.
  c.advance(990ms);
  CHECK(fail(t, k, conf) == 2s);
}

TEST_CASE("throttle: off (base_delay unset) records nothing", "[throttle]") {
  fake_clock c;
  auto t = make(c);
  throttle_config off;
  off.base_delay.reset();
  const auto k = key();
  auto v = t.check(k);
  t.failed(k, v.ticket, off);
  CHECK(t.check(k).allowed);
  CHECK(t.stats().entries == 0);
}

TEST_CASE("throttle: a key with no failure for 2 x max_delay is forgotten", "[throttle]") {
  fake_clock c;
  auto t = make(c);
  const auto conf = cfg(1s, 4s);
  const auto k = key();
  (void)fail(t, k, conf);
  c.advance(1s);
  CHECK(fail(t, k, conf) == 2s);
  c.advance(8s - 1ms);
  CHECK(t.check(k).allowed);
  CHECK(t.stats().entries == 1);  // still remembered: the next failure doubles
  c.advance(1ms);
  CHECK(t.check(k).allowed);
  CHECK(t.stats().entries == 0);
  CHECK(fail(t, k, conf) == 1s);
}

TEST_CASE("throttle: the table is bounded, the oldest failure goes first", "[throttle]") {
  fake_clock c;
  auto t = make(c, 3);
  const auto conf = cfg(1s, 60s);
  for (const char* token : {"hvs.1", "hvs.2", "hvs.3"}) {
    (void)fail(t, key("192.0.2.1", token), conf);
    c.advance(1ms);
  }
  // hvs.1 fails again: now the most recent; hvs.2 is the oldest.
  c.advance(1s);
  (void)fail(t, key("192.0.2.1", "hvs.1"), conf);
  (void)fail(t, key("192.0.2.1", "hvs.4"), conf);
  auto s = t.stats();
  CHECK(s.entries == 3);
  CHECK(s.evictions == 1);
  CHECK(t.check(key("192.0.2.1", "hvs.2")).allowed);  // evicted
  CHECK_FALSE(t.check(key("192.0.2.1", "hvs.1")).allowed);
  CHECK_FALSE(t.check(key("192.0.2.1", "hvs.4")).allowed);
  // A flood of new keys never grows it past the cap.
  for (int i = 0; i < 1000; ++i) {
    const std::string token = "hvs.flood-" + std::to_string(i);
    auto k = auth_throttle::make_key("198.51.100.7", pgwire::secret_string(token));
    t.failed(k, t.check(k).ticket, conf);
  }
  CHECK(t.stats().entries == 3);
}

TEST_CASE("throttle: concurrent use from several threads", "[throttle]") {
  auth_throttle t;  // the real clock
  const auto conf = cfg(1h, 1h);
  std::vector<std::thread> threads;
  for (int n = 0; n < 4; ++n) {
    threads.emplace_back([&t, &conf, n] {
      for (int i = 0; i < 2000; ++i) {
        const std::string token = "hvs." + std::to_string(n) + "-" + std::to_string(i % 50);
        auto k = auth_throttle::make_key("192.0.2.1", pgwire::secret_string(token));
        auto v = t.check(k);
        if (v.allowed) t.failed(k, v.ticket, conf);
        if (i % 7 == 0) t.succeeded(k);
      }
    });
  }
  for (auto& th : threads) th.join();
  // Every (thread, token) key was allowed exactly once unless a success forgot it.
  CHECK(t.stats().entries <= 200);
  CHECK(t.stats().refusals > 0);
}
