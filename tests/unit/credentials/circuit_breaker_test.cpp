// circuit_breaker on its own, with a hand-moved clock: when it opens, what it admits
// while open, the probe and its doubling backoff, and what closes it.
#include <catch2/catch.hpp>

#include "credentials/circuit_breaker.hpp"

namespace {

using namespace std::chrono_literals;
using vaultwire::breaker_initial_backoff;
using vaultwire::breaker_max_backoff;
using vaultwire::breaker_threshold;
using vaultwire::vault_error;
using vaultwire::vault_error_kind;
using breaker = vaultwire::detail::circuit_breaker;
using admission = breaker::admission;

vault_error failure(vault_error_kind kind, int status = 0) {
  vault_error e;
  e.kind = kind;
  e.http_status = status;
  e.message = "connection refused";
  e.address = "https://vault.test:8200";
  return e;
}

struct fixture {
  vaultwire::broker_stats stats;
  breaker b{stats, 300s};
  breaker::time_point t = breaker::time_point{} + 1000h;

  void fail(unsigned n, vault_error_kind kind = vault_error_kind::unreachable) {
    const vault_error e = failure(kind);
    for (unsigned i = 0; i < n; ++i) b.note(&e, false, t);
  }
};

}  // namespace

TEST_CASE("circuit_breaker: opens after breaker_threshold unreachable failures in a row", "[unit][breaker]") {
  fixture f;
  f.fail(breaker_threshold - 1);
  CHECK_FALSE(f.b.open());
  CHECK_FALSE(f.b.healthy());  // failing, not open yet
  CHECK(f.b.admit(f.t) == admission::call);
  f.fail(1);
  CHECK(f.b.open());
  CHECK(f.stats.breaker_opens == 1);
  CHECK(f.stats.vault_outages == breaker_threshold);
  CHECK(f.b.consecutive_failures() == breaker_threshold);
  CHECK(f.b.last_failure().address == "https://vault.test:8200");
}

TEST_CASE("circuit_breaker: an answer from Vault, even a refusal, resets the count", "[unit][breaker]") {
  fixture f;
  f.fail(breaker_threshold - 1);
  const vault_error denied = failure(vault_error_kind::forbidden, 403);
  CHECK_FALSE(f.b.note(&denied, false, f.t));
  CHECK(f.b.healthy());
  f.fail(breaker_threshold - 1);
  CHECK_FALSE(f.b.open());
  f.b.note(nullptr, false, f.t);
  CHECK(f.b.consecutive_failures() == 0);
}

TEST_CASE("circuit_breaker: outages count, a request's own error does not", "[unit][breaker]") {
  for (auto e : {failure(vault_error_kind::unreachable), failure(vault_error_kind::timeout),
                 failure(vault_error_kind::sealed, 503), failure(vault_error_kind::server_error, 502),
                 failure(vault_error_kind::server_error, 503), failure(vault_error_kind::server_error, 504)}) {
    INFO(vaultwire::to_string(e.kind) << " " << e.http_status);
    CHECK(breaker::is_outage(e));
  }
  // A 500 is one backend's failure for one request (a role's bad statement, "not an
  // allowed role"); a 429 is a quota on a path or a client.
  for (auto e : {failure(vault_error_kind::server_error, 500), failure(vault_error_kind::server_error, 501),
                 failure(vault_error_kind::rate_limited, 429), failure(vault_error_kind::forbidden, 403),
                 failure(vault_error_kind::bad_request, 400), failure(vault_error_kind::not_found, 404),
                 failure(vault_error_kind::redirected, 307), failure(vault_error_kind::bad_response)}) {
    INFO(vaultwire::to_string(e.kind) << " " << e.http_status);
    CHECK_FALSE(breaker::is_outage(e));
  }
}

TEST_CASE("circuit_breaker: 429s and 500s in a row never open it, and reset the count", "[unit][breaker]") {
  fixture f;
  const vault_error limited = failure(vault_error_kind::rate_limited, 429);
  const vault_error role_broken = failure(vault_error_kind::server_error, 500);
  for (int i = 0; i < 7; ++i) CHECK_FALSE(f.b.note(&limited, false, f.t));
  for (int i = 0; i < 7; ++i) CHECK_FALSE(f.b.note(&role_broken, false, f.t));
  CHECK_FALSE(f.b.open());
  CHECK(f.b.healthy());
  CHECK(f.stats.vault_outages == 0);
  f.fail(breaker_threshold - 1);
  CHECK(f.b.consecutive_failures() == breaker_threshold - 1);
  CHECK_FALSE(f.b.note(&limited, false, f.t));  // Vault answered
  CHECK(f.b.consecutive_failures() == 0);
  const vault_error gateway = failure(vault_error_kind::server_error, 502);
  for (unsigned i = 0; i < breaker_threshold; ++i) CHECK(f.b.note(&gateway, false, f.t));
  CHECK(f.b.open());
}

TEST_CASE("circuit_breaker: open, it skips calls until one probe, whose wait doubles while it fails",
          "[unit][breaker]") {
  fixture f;
  f.fail(breaker_threshold);
  REQUIRE(f.b.open());
  CHECK(f.b.admit(f.t) == admission::skip);
  CHECK(f.b.retry_time(f.t) == f.t + breaker_initial_backoff);
  CHECK(f.b.message(f.t) ==
        "Vault at https://vault.test:8200 is unreachable (5 consecutive failures; last: connection refused); "
        "retrying in 1s");
  CHECK_FALSE(f.b.probe_due(f.t));

  f.t += breaker_initial_backoff;
  CHECK(f.b.probe_due(f.t));
  CHECK(f.b.admit(f.t) == admission::probe);
  CHECK(f.b.admit(f.t) == admission::skip);  // one probe at a time
  CHECK(f.stats.breaker_probes == 1);

  const vault_error down = failure(vault_error_kind::unreachable);
  CHECK(f.b.note(&down, true, f.t));
  CHECK(f.stats.breaker_probe_failures == 1);
  CHECK(f.b.retry_time(f.t) == f.t + 2 * breaker_initial_backoff);

  // The wait doubles up to breaker_max_backoff.
  for (int i = 0; i < 10; ++i) {
    f.t = f.b.retry_time(f.t);
    REQUIRE(f.b.admit(f.t) == admission::probe);
    f.b.note(&down, true, f.t);
  }
  CHECK(f.b.retry_time(f.t) == f.t + breaker_max_backoff);
}

TEST_CASE("circuit_breaker: a probe not made leaves the next call to probe", "[unit][breaker]") {
  fixture f;
  f.fail(breaker_threshold);
  f.t += breaker_initial_backoff;
  REQUIRE(f.b.admit(f.t) == admission::probe);
  f.b.probe_not_made();
  CHECK(f.b.admit(f.t) == admission::probe);
}

TEST_CASE("circuit_breaker: a probe Vault answers closes it", "[unit][breaker]") {
  fixture f;
  f.fail(breaker_threshold);
  f.t += breaker_initial_backoff;
  REQUIRE(f.b.admit(f.t) == admission::probe);
  CHECK_FALSE(f.b.note(nullptr, true, f.t));
  CHECK_FALSE(f.b.open());
  CHECK(f.b.healthy());
  CHECK(f.stats.breaker_closes == 1);
  CHECK(f.b.admit(f.t) == admission::call);
}
