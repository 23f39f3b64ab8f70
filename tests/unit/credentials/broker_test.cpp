// credential_broker with a fake Vault (vault_calls that record each call and answer
// inline or later) and a fake clock: floor and TTL math, key separation between
// tokens, single flight, negative cache, budget (53300), token recheck and grace,
// idle revoke timing (client token and token_file), renewal and events, shutdown,
// and the Vault-outage rules: circuit breaker, fast failures, probes with backoff,
// skipped renewals/revocations, stale-while-revalidate for rechecks.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "credentials/broker.hpp"
#include "support/fake_vault.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using pgwire::secret_string;
using vaultwire::broker_error_kind;
using vaultwire::broker_result;
using vaultwire::credential_broker;
using vaultwire::credential_lease;
using vaultwire::lease_event;
using vaultwire::vault_error;
using vaultwire::vault_error_kind;
using vaultwire::vault_result;

using vwtest::fake_clock;
using vwtest::fake_vault;
using vwtest::make_error;

struct fixture {
  fake_clock clock;
  fake_vault vault;
  vaultwire::credential_broker_options options;
  std::unique_ptr<credential_broker> broker;

  explicit fixture(std::function<void(vaultwire::credential_broker_options&)> tweak = {}) {
    options.start_maintenance_thread = false;
    options.clock = [this] { return clock.now.load(); };
    options.jitter = [] { return 0.0; };  // renew at 60 % of the TTL
    if (tweak) tweak(options);
    broker = std::make_unique<credential_broker>(vault.calls(), options);
  }

  static vaultwire::credential_request request(const std::string& token, const std::string& role = "app",
                                               const std::string& route = "main") {
    vaultwire::credential_request r;
    r.token = secret_string(token);
    r.mount = "database";
    r.role = role;
    r.route = route;
    return r;
  }

  broker_result<credential_lease> acquire(const std::string& token, const std::string& role = "app",
                                          const std::string& route = "main") {
    return broker->acquire_blocking(request(token, role, route));
  }

  // An acquire that must be answered before acquire() returns (a hit, a refusal, or
  // the inline fake): a test fails here instead of hanging when it is not.
  broker_result<credential_lease> acquire_now(const std::string& token) {
    std::optional<broker_result<credential_lease>> out;
    broker->acquire(request(token), [&](broker_result<credential_lease> r) { out.emplace(std::move(r)); });
    REQUIRE(out.has_value());
    return std::move(*out);
  }
};

}  // namespace

TEST_CASE("broker: the reuse floor is 25 % of the lease, clamped to 5-60 s", "[broker]") {
  CHECK(credential_broker::reuse_floor(0s) == 5s);
  CHECK(credential_broker::reuse_floor(10s) == 5s);
  CHECK(credential_broker::reuse_floor(20s) == 5s);
  CHECK(credential_broker::reuse_floor(100s) == 25s);
  CHECK(credential_broker::reuse_floor(240s) == 60s);
  CHECK(credential_broker::reuse_floor(3600s) == 60s);
}

TEST_CASE("broker: the token digest is SHA-256 in hex", "[broker]") {
  CHECK(credential_broker::token_digest(secret_string("abc")) ==
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("broker: a cached credential is reused while its TTL is above the floor", "[broker]") {
  fixture f;  // lease 100 s: floor 25 s
  auto a = f.acquire("t1");
  REQUIRE(a);
  CHECK_FALSE(a.value().from_cache());
  CHECK(a.value().username() == "v-t1-1");
  CHECK(a.value().password().view() == "pw-1");
  CHECK(a.value().expires_at() == f.clock.now.load() + 100s);
  CHECK(f.vault.creds_count() == 1);

  f.clock.advance(74s);  // 26 s left
  auto b = f.acquire("t1");
  REQUIRE(b);
  CHECK(b.value().from_cache());
  CHECK(b.value().lease_id() == a.value().lease_id());
  CHECK(f.vault.creds_count() == 1);
  CHECK(f.broker->stats().sessions == 2);

  f.clock.advance(2s);  // 24 s left: below the floor
  auto c = f.acquire("t1");
  REQUIRE(c);
  CHECK_FALSE(c.value().from_cache());
  CHECK(c.value().lease_id() != a.value().lease_id());
  CHECK(f.vault.creds_count() == 2);
  CHECK(f.broker->stats().live_leases == 2);
  CHECK(f.broker->stats().cached_leases == 1);
}

TEST_CASE("broker: a short lease is reused only above the 5 s floor", "[broker]") {
  fixture f;
  f.vault.lease_duration = 8s;
  REQUIRE(f.acquire("t1"));
  f.clock.advance(2s);  // 6 s left
  CHECK(f.acquire("t1").value().from_cache());
  f.clock.advance(1s);  // 5 s left: not above the floor
  CHECK_FALSE(f.acquire("t1").value().from_cache());
  CHECK(f.vault.creds_count() == 2);
}

TEST_CASE("broker: credentials are never shared between tokens, roles or routes", "[broker]") {
  fixture f;
  auto a = f.acquire("token-a");
  auto b = f.acquire("token-b");
  REQUIRE(a);
  REQUIRE(b);
  CHECK(a.value().username() != b.value().username());
  CHECK(f.vault.creds_tokens == std::vector<std::string>{"token-a", "token-b"});
  // Each token gets its own again from the cache.
  CHECK(f.acquire("token-a").value().username() == a.value().username());
  CHECK(f.acquire("token-b").value().username() == b.value().username());
  CHECK(f.vault.creds_count() == 2);
  // Another role or route is another key.
  CHECK(f.acquire("token-a", "reader").value().username() != a.value().username());
  CHECK(f.acquire("token-a", "app", "other").value().username() != a.value().username());
  CHECK(f.vault.creds_count() == 4);
}

TEST_CASE("broker: concurrent misses for one key share one Vault request", "[broker][concurrency]") {
  fixture f;
  f.vault.hold_creds = true;
  constexpr int n = 64;
  std::mutex m;
  std::vector<broker_result<credential_lease>> results;
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&] {
      f.broker->acquire(fixture::request("t1"), [&](broker_result<credential_lease> r) {
        std::lock_guard lock{m};
        results.push_back(std::move(r));
      });
    });
  }
  for (auto& t : threads) t.join();
  CHECK(f.vault.creds_count() == 1);
  CHECK(results.empty());
  CHECK(f.broker->stats().single_flight_joins == n - 1);
  f.vault.complete_creds("t1");
  REQUIRE(results.size() == n);
  int fresh = 0;
  for (auto& r : results) {
    REQUIRE(r);
    CHECK(r.value().lease_id() == results.front().value().lease_id());
    if (!r.value().from_cache()) ++fresh;
  }
  CHECK(fresh == 1);
  CHECK(f.broker->stats().sessions == n);
  results.clear();
  CHECK(f.broker->stats().sessions == 0);
}

TEST_CASE("broker: a failed fetch gives every waiter the same error", "[broker]") {
  fixture f;
  f.vault.hold_creds = true;
  std::vector<broker_result<credential_lease>> results;
  for (int i = 0; i < 3; ++i)
    f.broker->acquire(fixture::request("t1"), [&](broker_result<credential_lease> r) { results.push_back(std::move(r)); });
  f.vault.creds_error = make_error(vault_error_kind::sealed, 503, "Vault is sealed");
  f.vault.complete_creds("t1");
  REQUIRE(results.size() == 3);
  for (auto& r : results) {
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == broker_error_kind::vault);
    CHECK(r.error().sqlstate() == "08001");
    CHECK(r.error().vault.message == "Vault is sealed");
  }
  // Not a rejection: the next acquire asks Vault again.
  f.vault.hold_creds = false;
  f.vault.creds_error.reset();
  CHECK(f.acquire("t1"));
  CHECK(f.vault.creds_count() == 2);
}

TEST_CASE("broker: a rejected token is refused without Vault for negative_cache", "[broker]") {
  fixture f;  // negative_cache 2 s
  f.vault.creds_error = make_error(vault_error_kind::forbidden, 403, "permission denied");
  auto a = f.acquire("bad");
  REQUIRE_FALSE(a);
  CHECK(a.error().kind == broker_error_kind::vault);
  CHECK(a.error().sqlstate() == "28P01");
  CHECK(a.error().to_client_message() == "Vault rejected the token: permission denied");
  for (int i = 0; i < 10; ++i) {
    auto again = f.acquire("bad");
    REQUIRE_FALSE(again);
    CHECK(again.error().kind == broker_error_kind::token_rejected);
    CHECK(again.error().sqlstate() == "28P01");
    CHECK(again.error().to_client_message() == "Vault rejected the token: permission denied");
  }
  CHECK(f.vault.creds_count() == 1);
  CHECK(f.broker->stats().negative_cache_hits == 10);
  // Another token is not affected.
  f.vault.creds_error.reset();
  CHECK(f.acquire("good"));
  CHECK(f.vault.creds_count() == 2);
  // After negative_cache the token is asked about again.
  f.clock.advance(1999ms);
  CHECK_FALSE(f.acquire("bad"));
  CHECK(f.vault.creds_count() == 2);
  f.clock.advance(1ms);
  CHECK(f.acquire("bad"));
  CHECK(f.vault.creds_count() == 3);
}

TEST_CASE("broker: a new token's creds request and lookup-self go to Vault together", "[broker]") {
  fixture f;
  f.vault.hold_creds = true;
  f.vault.hold_lookups = true;
  std::vector<broker_result<credential_lease>> got;
  CHECK(f.broker->acquire(fixture::request("t1"), [&](auto r) { got.push_back(std::move(r)); }));
  // Both calls are out before either answers.
  CHECK(f.vault.creds_count() == 1);
  CHECK(f.vault.lookup_count() == 1);
  CHECK(f.vault.pending_creds.size() == 1);
  CHECK(f.vault.pending_lookups.size() == 1);
  SECTION("creds first: the credential waits for the lookup, then names the token") {
    f.vault.complete_creds("t1");
    CHECK(got.empty());
    f.vault.complete_lookups("t1");
    REQUIRE(got.size() == 1);
    REQUIRE(got[0]);
    CHECK(got[0].value().token_identity().accessor == "acc-t1");
  }
  SECTION("lookup first: the credential is served when creds answer") {
    f.vault.complete_lookups("t1");
    CHECK(got.empty());
    f.vault.complete_creds("t1");
    REQUIRE(got.size() == 1);
    REQUIRE(got[0]);
    CHECK(got[0].value().token_identity().accessor == "acc-t1");
  }
  SECTION("a second acquire joins the request out: it sends nothing, and is served with the first") {
    CHECK_FALSE(f.broker->acquire(fixture::request("t1"), [&](auto r) { got.push_back(std::move(r)); }));
    CHECK(f.vault.creds_count() == 1);
    CHECK(f.vault.lookup_count() == 1);
    f.vault.complete_lookups("t1");
    f.vault.complete_creds("t1");
    REQUIRE(got.size() == 2);
    CHECK(got[0]);
    CHECK(got[1]);
  }
  SECTION("a second role of the same token does not look it up again") {
    f.broker->acquire(fixture::request("t1", "other"), [&](auto r) { got.push_back(std::move(r)); });
    CHECK(f.vault.creds_count() == 2);
    CHECK(f.vault.lookup_count() == 1);
    f.vault.complete_creds("t1");
    CHECK(got.empty());
    f.vault.complete_lookups("t1");
    REQUIRE(got.size() == 2);
    CHECK(got[0]);
    CHECK(got[1]);
  }
  SECTION("Vault rejects the token in the lookup while creds are read: nothing is served") {
    f.vault.complete_lookups("t1", make_error(vault_error_kind::forbidden, 403, "permission denied"));
    CHECK(got.empty());
    f.vault.complete_creds("t1");  // answered before the revocation reached it
    REQUIRE(got.size() == 1);
    REQUIRE_FALSE(got[0]);
    CHECK(got[0].error().kind == broker_error_kind::token_rejected);
    CHECK(got[0].error().sqlstate() == "28P01");
    f.vault.hold_creds = false;
    auto again = f.acquire_now("t1");
    REQUIRE_FALSE(again);
    CHECK(again.error().kind == broker_error_kind::token_rejected);
    CHECK(f.vault.creds_count() == 1);
    // The lease Vault issued is held (it counts against max_leases) until revoked.
    REQUIRE(f.broker->leases().size() == 1);
  }
  f.vault.hold_creds = false;
  f.vault.hold_lookups = false;
  f.vault.complete_creds("t1");
  f.vault.complete_lookups("t1");
}

TEST_CASE("broker: max_leases refuses a new credential with 53300", "[broker]") {
  fixture f{[](auto& o) { o.credentials.max_leases = 2; }};
  auto a = f.acquire("t1");
  auto b = f.acquire("t2");
  REQUIRE(a);
  REQUIRE(b);
  auto c = f.acquire("t3");
  REQUIRE_FALSE(c);
  CHECK(c.error().kind == broker_error_kind::lease_budget);
  CHECK(c.error().sqlstate() == "53300");
  CHECK(c.error().to_client_message() == "vaultwire holds 2 leases, its limit (max_leases); try again later");
  CHECK(f.vault.creds_count() == 2);
  CHECK(f.broker->stats().budget_refusals == 1);
  // Cached credentials are still served.
  CHECK(f.acquire("t1"));
  // A revoked lease frees its place.
  a.value().release();
  CHECK(f.broker->stats().sessions == 1);
  f.clock.advance(60s);
  f.broker->maintain();
  CHECK(f.broker->stats().live_leases == 1);
  CHECK(f.acquire("t3"));
}

TEST_CASE("broker: fetches in flight count against max_leases", "[broker]") {
  fixture f{[](auto& o) { o.credentials.max_leases = 1; }};
  f.vault.hold_creds = true;
  std::vector<broker_result<credential_lease>> results;
  f.broker->acquire(fixture::request("t1"), [&](auto r) { results.push_back(std::move(r)); });
  f.broker->acquire(fixture::request("t2"), [&](auto r) { results.push_back(std::move(r)); });
  REQUIRE(results.size() == 1);
  CHECK(results[0].error().sqlstate() == "53300");
  f.vault.complete_creds("t1");
  REQUIRE(results.size() == 2);
  CHECK(results[1]);
}

TEST_CASE("broker: a lease without sessions is revoked after revoke_idle_after", "[broker]") {
  fixture f;  // revoke_idle_after 60 s
  auto a = f.acquire("t1");
  auto b = f.acquire("t1");
  REQUIRE(a);
  const std::string lease = a.value().lease_id();
  a.value().release();
  f.clock.advance(100s - 60s - 1s);
  f.broker->maintain();
  CHECK(f.vault.revokes.empty());  // b still uses it
  b.value().release();
  const auto released_at = f.clock.now.load();
  f.clock.advance(59s);
  f.broker->maintain();
  CHECK(f.vault.revokes.empty());
  (void)released_at;
  f.clock.advance(1s);
  // The lease is below its floor by now, but the revoke is what matters here.
  f.broker->maintain();
  REQUIRE(f.vault.revokes.size() == 1);
  CHECK(f.vault.revokes[0] == std::pair<std::string, std::string>{lease, "t1"});  // the client's token
  // ... in the path form, which the client's policy can scope to its role.
  CHECK(f.vault.revoke_forms == std::vector<vaultwire::revoke_form>{vaultwire::revoke_form::path});
  CHECK(f.broker->stats().revokes == 1);
  CHECK(f.broker->stats().live_leases == 0);
  f.broker->maintain();
  CHECK(f.vault.revokes.size() == 1);
}

TEST_CASE("broker: a session returning before revoke_idle_after keeps the lease", "[broker]") {
  fixture f{[](auto& o) { o.credentials.revoke_idle_after = 2s; }};
  auto a = f.acquire("t1");
  REQUIRE(a);
  a.value().release();
  f.clock.advance(1500ms);
  f.broker->maintain();
  auto b = f.acquire("t1");
  REQUIRE(b);
  CHECK(b.value().from_cache());
  f.clock.advance(1500ms);
  f.broker->maintain();
  CHECK(f.vault.revokes.empty());
  b.value().release();
  f.clock.advance(2s);
  f.broker->maintain();
  CHECK(f.vault.revokes.size() == 1);
  // The next acquire fetches a new credential.
  CHECK_FALSE(f.acquire("t1").value().from_cache());
}

TEST_CASE("broker: token_file's token revokes, re-read when the file changes", "[broker]") {
  const fs::path dir = fs::temp_directory_path() / ("vaultwire-broker-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path file = dir / "token";
  std::ofstream{file} << "admin-token-1\n";
  fixture f{[&](auto& o) {
    o.token_file = file;
    o.credentials.revoke_idle_after = 1s;
  }};
  REQUIRE(f.acquire("client-1"));  // released at once
  f.clock.advance(1s);
  f.broker->maintain();
  REQUIRE(f.vault.revokes.size() == 1);
  CHECK(f.vault.revokes[0].second == "admin-token-1");
  // vaultwire's own token sends the lease id in the body: Vault Proxy's lease cache
  // acts on that form only.
  CHECK(f.vault.revoke_forms == std::vector<vaultwire::revoke_form>{vaultwire::revoke_form::body});

  std::ofstream{file} << "admin-token-2\n";
  fs::last_write_time(file, fs::last_write_time(file) + 5s);
  REQUIRE(f.acquire("client-1"));
  f.clock.advance(1s);
  f.broker->maintain();
  REQUIRE(f.vault.revokes.size() == 2);
  CHECK(f.vault.revokes[1].second == "admin-token-2");
  fs::remove_all(dir);
}

TEST_CASE("broker: token_file's token is looked up, then renewed with renew-self", "[broker]") {
  const fs::path dir = fs::temp_directory_path() / ("vaultwire-broker-own-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path file = dir / "token";
  std::ofstream{file} << "own-1\n";
  fixture f{[&](auto& o) { o.token_file = file; }};  // own_ttl 30 s, jitter 0: renew at 18 s
  f.broker->maintain();
  CHECK(f.vault.lookup_tokens == std::vector<std::string>{"own-1"});
  CHECK(f.vault.renew_self_tokens.empty());
  f.clock.advance(17s);
  f.broker->maintain();
  CHECK(f.vault.renew_self_tokens.empty());
  f.clock.advance(1s);
  f.broker->maintain();
  CHECK(f.vault.renew_self_tokens == std::vector<std::string>{"own-1"});
  CHECK(f.broker->stats().own_token_renewals == 1);
  // A new file: looked up again, the old schedule forgotten.
  std::ofstream{file} << "own-2\n";
  fs::last_write_time(file, fs::last_write_time(file) + 5s);
  f.broker->maintain();
  CHECK(f.vault.lookup_tokens == std::vector<std::string>{"own-1", "own-2"});
  f.clock.advance(18s);
  f.broker->maintain();
  CHECK(f.vault.renew_self_tokens == std::vector<std::string>{"own-1", "own-2"});
  fs::remove_all(dir);
}

TEST_CASE("broker: a revoke Vault denies is counted and the lease left to its TTL", "[broker]") {
  fixture f{[](auto& o) { o.credentials.revoke_idle_after = 1s; }};
  f.vault.revoke_error = make_error(vault_error_kind::forbidden, 403, "permission denied");
  REQUIRE(f.acquire("t1"));
  REQUIRE(f.acquire("t2"));
  f.clock.advance(1s);
  f.broker->maintain();
  CHECK(f.vault.revokes.size() == 2);
  CHECK(f.broker->stats().revoke_denied == 2);
  CHECK(f.broker->stats().live_leases == 2);  // still counted against the budget
  f.clock.advance(10s);
  f.broker->maintain();
  CHECK(f.vault.revokes.size() == 2);  // not retried
  f.clock.advance(90s);                // past the TTL
  f.broker->maintain();
  CHECK(f.broker->stats().live_leases == 0);
}

TEST_CASE("broker: a cached hit rechecks its token after token_recheck", "[broker]") {
  fixture f;  // token_recheck 10 s, token_grace 5 m
  f.vault.lease_duration = 1h;
  auto a = f.acquire("t1");
  REQUIRE(a);
  // The first sight looks the token up once (accessor for the logs).
  CHECK(f.vault.lookup_tokens == std::vector<std::string>{"t1"});
  CHECK(a.value().token_name() == "accessor acc-t1");
  std::vector<lease_event> events;
  a.value().subscribe([&](lease_event e) { events.push_back(e); });
  f.clock.advance(9s);
  CHECK(f.acquire("t1"));
  CHECK(f.vault.lookup_tokens.size() == 1);
  f.clock.advance(2s);
  CHECK(f.acquire("t1"));
  CHECK(f.vault.lookup_tokens.size() == 2);

  SECTION("Vault unreachable: the last good check holds for token_grace") {
    f.vault.lookup_error = make_error(vault_error_kind::unreachable, 0, "Couldn't connect to server");
    f.clock.advance(11s);
    CHECK(f.acquire("t1"));
    CHECK(f.broker->stats().rechecks_in_grace == 1);
    f.clock.advance(5min);
    auto late = f.acquire("t1");
    REQUIRE_FALSE(late);
    CHECK(late.error().kind == broker_error_kind::token_unverified);
    CHECK(late.error().sqlstate() == "08001");
    CHECK(events.empty());
  }
  SECTION("revoked: refused, and the sessions hear of it") {
    f.vault.lookup_error = make_error(vault_error_kind::forbidden, 403, "permission denied");
    f.clock.advance(11s);
    auto r = f.acquire("t1");
    REQUIRE_FALSE(r);
    CHECK(r.error().sqlstate() == "28P01");
    CHECK(events == std::vector<lease_event>{lease_event::token_revoked});
    CHECK(f.broker->stats().tokens_revoked == 1);
    CHECK(f.broker->stats().cached_leases == 0);
    // Another token's credential is untouched.
    f.vault.lookup_error.reset();
    CHECK(f.acquire("t2"));
  }
}

TEST_CASE("broker: a revoked token's lease stops counting against the budget once idle", "[broker]") {
  fixture f{[](auto& o) {
    o.credentials.token_recheck = 1s;
    o.credentials.revoke_idle_after = 1s;
    o.credentials.max_leases = 1;
  }};
  auto a = f.acquire("t1");
  REQUIRE(a);
  // Vault revoked the token (and with it its leases): the recheck says 403, and so
  // does the revoke made with the same dead token.
  f.vault.lookup_error = make_error(vault_error_kind::forbidden, 403, "permission denied");
  f.vault.revoke_error = make_error(vault_error_kind::forbidden, 403, "permission denied");
  f.clock.advance(1100ms);
  f.broker->maintain();
  CHECK(f.broker->stats().tokens_revoked == 1);
  CHECK(f.broker->stats().live_leases == 1);  // a session still holds it
  a.value().release();
  f.clock.advance(1100ms);
  f.broker->maintain();
  CHECK(f.vault.revokes.size() == 1);
  CHECK(f.broker->stats().revoke_denied == 0);  // not a policy problem
  CHECK(f.broker->stats().live_leases == 0);
  f.vault.lookup_error.reset();
  f.vault.revoke_error.reset();
  CHECK(f.acquire("t2"));  // the budget is free again
}

TEST_CASE("broker: live sessions' tokens are rechecked by maintain", "[broker]") {
  fixture f{[](auto& o) { o.credentials.token_recheck = 1s; }};
  auto a = f.acquire("t1");
  REQUIRE(a);
  std::vector<lease_event> events;
  a.value().subscribe([&](lease_event e) { events.push_back(e); });
  f.vault.lookup_error = make_error(vault_error_kind::forbidden, 403, "permission denied");
  f.clock.advance(500ms);
  f.broker->maintain();
  CHECK(events.empty());
  f.clock.advance(600ms);
  f.broker->maintain();
  CHECK(events == std::vector<lease_event>{lease_event::token_revoked});
}

TEST_CASE("broker: leases with sessions are renewed, max TTL gives expiring then expired", "[broker]") {
  fixture f{[](auto& o) { o.credentials.expiry_notice = 5s; }};
  f.vault.lease_duration = 30s;
  auto a = f.acquire("t1");
  REQUIRE(a);
  std::vector<lease_event> events;
  a.value().subscribe([&](lease_event e) { events.push_back(e); });
  const auto start = f.clock.now.load();
  f.clock.advance(17s);
  f.broker->maintain();
  CHECK(f.vault.renews.empty());
  f.clock.advance(1s);  // 60 % of 30 s (jitter 0)
  f.broker->maintain();
  REQUIRE(f.vault.renews.size() == 1);
  CHECK(f.vault.renews[0].second == 30s);
  CHECK(a.value().expires_at() == start + 18s + 30s);
  CHECK(f.broker->stats().renewals == 1);

  // Vault grants less than asked: the max TTL.
  f.vault.renew_grant = 12s;
  f.clock.advance(18s);
  f.broker->maintain();
  REQUIRE(f.vault.renews.size() == 2);
  CHECK(a.value().expires_at() == f.clock.now.load() + 12s);
  CHECK(events.empty());
  f.clock.advance(7s);  // 5 s left
  f.broker->maintain();
  CHECK(f.vault.renews.size() == 2);  // no more renewals
  CHECK(events == std::vector<lease_event>{lease_event::expiring});
  f.clock.advance(5s);
  f.broker->maintain();
  CHECK(events == std::vector<lease_event>{lease_event::expiring, lease_event::expired});
  CHECK_FALSE(f.acquire("t1").value().from_cache());
}

TEST_CASE("broker: a lease Vault no longer knows ends its sessions", "[broker]") {
  fixture f;
  f.vault.lease_duration = 30s;
  auto a = f.acquire("t1");
  REQUIRE(a);
  std::vector<lease_event> events;
  a.value().subscribe([&](lease_event e) { events.push_back(e); });
  f.vault.renew_error = make_error(vault_error_kind::bad_request, 400, "lease not found");
  f.clock.advance(20s);
  f.broker->maintain();
  CHECK(events == std::vector<lease_event>{lease_event::lease_gone});
  CHECK(f.broker->stats().renewal_failures == 1);
  CHECK_FALSE(f.acquire("t1").value().from_cache());
}

TEST_CASE("broker: a failed renewal is retried before the lease ends", "[broker]") {
  fixture f;
  f.vault.lease_duration = 30s;
  auto a = f.acquire("t1");
  REQUIRE(a);
  f.vault.renew_error = make_error(vault_error_kind::unreachable, 0, "Couldn't connect to server");
  f.clock.advance(18s);
  f.broker->maintain();
  CHECK(f.vault.renews.size() == 1);
  f.clock.advance(999ms);  // the first retry after 1 s
  f.broker->maintain();
  CHECK(f.vault.renews.size() == 1);
  f.clock.advance(1ms);
  f.broker->maintain();
  CHECK(f.vault.renews.size() == 2);
  f.clock.advance(1999ms);  // then 2 s
  f.broker->maintain();
  CHECK(f.vault.renews.size() == 2);
  f.clock.advance(1ms);
  f.broker->maintain();
  CHECK(f.vault.renews.size() == 3);
}

TEST_CASE("broker: a renewal answered 400 by Vault's failing database keeps the sessions and is retried",
          "[broker][renewal]") {
  fixture f;
  f.vault.lease_duration = 30s;
  auto a = f.acquire("t1");
  REQUIRE(a);
  std::vector<lease_event> events;
  a.value().subscribe([&](lease_event e) { events.push_back(e); });
  // expiration.go renewEntry: Vault answers every renewal error with 400.
  f.vault.renew_error = vwtest::vault_answer(
      400, {"failed to renew entry: resp: (*logical.Response)(nil) err: failed to connect to `host=127.0.0.1 "
            "user=vault database=app`: dial error (dial tcp 127.0.0.1:5432: connect: connection refused)"},
      "PUT sys/leases/renew/database/creds/app/lease-1");
  // Tries at 18 s, then 1, 2 and 2.25 s later (a quarter of what is left).
  for (auto step : {18000ms, 1000ms, 2000ms, 2250ms}) {
    f.clock.advance(step);
    f.broker->maintain();
  }
  CHECK(f.vault.renews.size() == 4);
  CHECK(events.empty());
  CHECK(f.broker->stats().renewal_retries == 4);
  CHECK(f.broker->stats().renewals_gone == 0);
  CHECK_FALSE(f.broker->stats().breaker_open);  // Vault answered
  // The database is back: the next retry renews, and the lease goes on.
  f.vault.renew_error.reset();
  f.clock.advance(2s);
  f.broker->maintain();
  CHECK(f.vault.renews.size() == 5);
  CHECK(f.broker->stats().renewals == 1);
  CHECK(a.value().expires_at() == f.clock.now.load() + 30s);
  CHECK(events.empty());

  SECTION("never back: the sessions end at the lease's TTL, not before") {
    f.vault.renew_error = vwtest::vault_answer(400, {"failed to renew entry: resp: (*logical.Response)(nil) err: "
                                                     "pq: the database system is shutting down"});
    for (int i = 0; i < 29; ++i) {
      f.clock.advance(1s);
      f.broker->maintain();
    }
    CHECK(events.empty());
    f.clock.advance(1s);
    f.broker->maintain();
    CHECK(events == std::vector<lease_event>{lease_event::expired});
  }
}

TEST_CASE("broker: invalidate drops the credential so the next acquire fetches", "[broker]") {
  fixture f;
  auto a = f.acquire("t1");
  REQUIRE(a);
  f.broker->invalidate(a.value());
  auto b = f.acquire("t1");
  REQUIRE(b);
  CHECK_FALSE(b.value().from_cache());
  CHECK(b.value().lease_id() != a.value().lease_id());
  CHECK(f.vault.creds_count() == 2);
}

TEST_CASE("broker: refetch releases the refused credential and fetches a fresh one, others keep theirs",
          "[broker]") {
  fixture f;
  auto first = f.acquire("t1");
  REQUIRE(first);
  auto refused = f.acquire("t1");  // the cached one, as a second session gets it
  REQUIRE(refused);
  REQUIRE(refused.value().from_cache());
  const std::string refused_id = refused.value().lease_id();
  std::optional<broker_result<credential_lease>> fresh;
  f.broker->refetch(refused.value(), fixture::request("t1"),
                    [&](broker_result<credential_lease> r) { fresh.emplace(std::move(r)); });
  REQUIRE(fresh.has_value());  // the inline fake answers before refetch returns
  REQUIRE(*fresh);
  CHECK_FALSE(refused.value());  // this session's hold is released
  CHECK_FALSE(fresh->value().from_cache());
  CHECK(fresh->value().lease_id() != refused_id);
  CHECK(f.vault.creds_count() == 2);
  CHECK(first.value().lease_id() == refused_id);  // the other session keeps its handle
  CHECK(f.broker->stats().sessions == 2);
  auto next = f.acquire("t1");
  REQUIRE(next);
  CHECK(next.value().lease_id() == fresh->value().lease_id());
}

TEST_CASE("broker: revoke_all revokes every lease and refuses new acquires", "[broker]") {
  SECTION("revoke_on_shutdown = true") {
    fixture f;
    auto a = f.acquire("t1");
    REQUIRE(f.acquire("t2"));  // idle, not yet revoked
    std::vector<lease_event> events;
    a.value().subscribe([&](lease_event e) { events.push_back(e); });
    CHECK(f.broker->revoke_all() == 2);
    CHECK(f.vault.revokes.size() == 2);
    CHECK(events == std::vector<lease_event>{lease_event::shutdown});
    auto late = f.acquire("t1");
    REQUIRE_FALSE(late);
    CHECK(late.error().sqlstate() == "57P01");
    CHECK(f.broker->stats().live_leases == 0);
  }
  SECTION("revoke_on_shutdown = false") {
    fixture f{[](auto& o) { o.credentials.revoke_on_shutdown = false; }};
    REQUIRE(f.acquire("t1"));
    CHECK(f.broker->revoke_all() == 0);
    CHECK(f.vault.revokes.empty());
  }
}

TEST_CASE("broker: handles outlive the broker", "[broker]") {
  auto f = std::make_unique<fixture>();
  auto a = f->acquire("t1");
  REQUIRE(a);
  f->broker.reset();
  CHECK(a.value().username() == "v-t1-1");
  a.value().release();
}

TEST_CASE("broker: the maintenance thread revokes idle leases on its own", "[broker][concurrency]") {
  fake_vault vault;
  vaultwire::credential_broker_options o;
  o.credentials.revoke_idle_after = 100ms;
  o.tick = 20ms;
  credential_broker broker{vault.calls(), o};
  REQUIRE(broker.acquire_blocking(fixture::request("t1")));
  for (int i = 0; i < 250 && broker.stats().revokes == 0; ++i) std::this_thread::sleep_for(20ms);
  CHECK(broker.stats().revokes == 1);
}

// --- Vault outage: circuit breaker, fast failures, stale-while-revalidate --------

namespace {

using vaultwire::breaker_threshold;

vault_error unreachable() { return make_error(vault_error_kind::unreachable, 0, "Couldn't connect to server"); }

// Opens the breaker with cold misses of a token nobody else uses. The first miss
// costs two failed calls (the new token's creds request and lookup-self).
void open_breaker(fixture& f) {
  const auto before = f.vault.creds_count();
  for (unsigned i = 0; i + 1 < breaker_threshold; ++i) REQUIRE_FALSE(f.acquire_now("hvs.cold"));
  REQUIRE(f.vault.creds_count() == before + breaker_threshold - 1);
  REQUIRE(f.vault.lookup_tokens.back() == "hvs.cold");
  REQUIRE(f.broker->stats().breaker_open);
}

std::string breaker_message(int failures, const std::string& last, int retry_s) {
  return "Vault at http://vault.test is unreachable (" + std::to_string(failures) + " consecutive failures; last: " +
         last + "); retrying in " + std::to_string(retry_s) + "s";
}

}  // namespace

TEST_CASE("breaker: opens after consecutive unreachable failures, cold acquires then fail fast with 08001",
          "[broker][breaker]") {
  fixture f;
  SECTION("no Vault call while open, and a message a person can act on") {
    f.vault.creds_error = unreachable();
    for (unsigned i = 1; i < breaker_threshold; ++i) {
      auto r = f.acquire_now("hvs.secret-1");
      REQUIRE_FALSE(r);
      CHECK(r.error().sqlstate() == "08001");
    }
    CHECK(f.vault.creds_count() == breaker_threshold - 1);
    CHECK_FALSE(f.broker->stats().breaker_open);
    CHECK(f.broker->stats().consecutive_vault_failures == breaker_threshold - 1);
    REQUIRE_FALSE(f.acquire_now("hvs.secret-1"));  // the fifth opens it
    CHECK(f.vault.creds_count() == breaker_threshold);
    CHECK(f.broker->stats().breaker_open);
    CHECK(f.broker->stats().breaker_opens == 1);

    f.clock.advance(400ms);
    for (int i = 0; i < 20; ++i) {
      auto fast = f.acquire_now("hvs.secret-2");
      REQUIRE_FALSE(fast);
      CHECK(fast.error().kind == broker_error_kind::vault);
      CHECK(fast.error().sqlstate() == "08001");
      CHECK(fast.error().to_client_message() == breaker_message(5, "Couldn't connect to server", 1));
      CHECK(fast.error().message.find("secret") == std::string::npos);
    }
    CHECK(f.vault.creds_count() == breaker_threshold);  // not one more Vault call
    CHECK(f.broker->stats().fast_failures == 20);
    CHECK(f.broker->stats().vault_fetches == breaker_threshold);
  }
  SECTION("timeouts, 502-504 and sealed count; an answer from Vault resets the count") {
    for (auto e : {make_error(vault_error_kind::timeout, 0, "Operation timed out"),
                   make_error(vault_error_kind::server_error, 502, "bad gateway"),
                   make_error(vault_error_kind::server_error, 504, "gateway timeout"),
                   make_error(vault_error_kind::sealed, 503, "Vault is sealed")}) {
      f.vault.creds_error = e;
      REQUIRE_FALSE(f.acquire_now("t1"));
    }
    CHECK(f.broker->stats().consecutive_vault_failures == 4);
    f.vault.creds_error = make_error(vault_error_kind::forbidden, 403, "permission denied");
    REQUIRE_FALSE(f.acquire_now("bad"));  // Vault answered: not an outage
    CHECK(f.broker->stats().consecutive_vault_failures == 0);
    f.vault.creds_error = make_error(vault_error_kind::sealed, 503, "Vault is sealed");
    for (unsigned i = 1; i < breaker_threshold; ++i) REQUIRE_FALSE(f.acquire_now("t1"));
    CHECK_FALSE(f.broker->stats().breaker_open);
    REQUIRE_FALSE(f.acquire_now("t1"));
    CHECK(f.broker->stats().breaker_open);
    auto fast = f.acquire_now("t1");
    REQUIRE_FALSE(fast);
    CHECK(fast.error().to_client_message() == breaker_message(5, "Vault is sealed (HTTP 503)", 1));
    CHECK(f.vault.creds_count() == 10);
  }
}

TEST_CASE("breaker: while open, cache hits keep serving and rechecks trust the last good check",
          "[broker][breaker]") {
  fixture f{[](auto& o) { o.credentials.token_recheck = 1s; }};  // token_grace 5 min
  f.vault.lease_duration = 1h;
  const auto t0 = f.clock.now.load();
  auto a = f.acquire_now("t1");
  REQUIRE(a);
  CHECK(f.vault.lookup_count_for("t1") == 1);  // first sight
  std::vector<lease_event> events;
  a.value().subscribe([&](lease_event e) { events.push_back(e); });

  f.vault.outage(unreachable());
  open_breaker(f);  // at t0; first probe allowed at t0 + 1 s
  const auto creds = f.vault.creds_count();

  f.clock.advance(500ms);  // the check is still fresh
  CHECK(f.acquire_now("t1").value().from_cache());
  CHECK(f.vault.lookup_count_for("t1") == 1);

  f.clock.advance(600ms);  // stale, and the breaker lets one probe through: this recheck
  auto b = f.acquire_now("t1");
  REQUIRE(b);
  CHECK(b.value().from_cache());
  CHECK(f.vault.lookup_count_for("t1") == 2);
  CHECK(f.broker->stats().breaker_probes == 1);
  CHECK(f.broker->stats().breaker_probe_failures == 1);  // next probe at t0 + 1.1 s + 2 s
  CHECK(f.broker->stats().stale_hits == 1);

  f.clock.advance(1s);  // stale again; no probe allowed: no Vault call at all
  const auto skips = f.broker->stats().breaker_skips;
  for (int i = 0; i < 10; ++i) CHECK(f.acquire_now("t1").value().from_cache());
  CHECK(f.vault.lookup_count_for("t1") == 2);
  CHECK(f.broker->stats().breaker_skips == skips + 1);  // one skipped recheck, then the check is "fresh" again
  CHECK(f.broker->stats().rechecks_in_grace == 2);
  CHECK_FALSE(f.acquire_now("hvs.other"));  // a cold miss still fails fast
  CHECK(f.vault.creds_count() == creds);

  // The next probe hangs (a frozen Vault): hits are still served meanwhile.
  f.vault.hold_lookups = true;
  f.clock.advance(1100ms);
  CHECK(f.acquire_now("t1").value().from_cache());
  CHECK(f.vault.lookup_count_for("t1") == 3);
  f.clock.advance(1100ms);
  CHECK(f.acquire_now("t1").value().from_cache());
  CHECK(f.vault.lookup_count_for("t1") == 3);  // one probe at a time

  // Past token_grace (from the last good check at t0) a hit is refused with 08001.
  f.clock.now = t0 + 5min + 1s;
  std::vector<broker_result<credential_lease>> late;
  f.broker->acquire(fixture::request("t1"), [&](auto r) { late.push_back(std::move(r)); });
  CHECK(late.empty());  // waits for the probe in flight
  f.vault.complete_lookups("t1", unreachable());
  REQUIRE(late.size() == 1);
  REQUIRE_FALSE(late[0]);
  CHECK(late[0].error().kind == broker_error_kind::token_unverified);
  CHECK(late[0].error().sqlstate() == "08001");
  // With the breaker open and no probe due: refused at once, no Vault call.
  auto refused = f.acquire_now("t1");
  REQUIRE_FALSE(refused);
  CHECK(refused.error().kind == broker_error_kind::token_unverified);
  CHECK(refused.error().sqlstate() == "08001");
  CHECK(refused.error().to_client_message().find("is unreachable") != std::string::npos);
  CHECK(f.vault.lookup_count_for("t1") == 3);
  CHECK(events.empty());  // sessions are not ended by an outage
}

TEST_CASE("breaker: a probe after the backoff closes it, a failed probe doubles the backoff",
          "[broker][breaker]") {
  fixture f;
  SECTION("the next cold miss is the probe") {
    f.vault.outage(unreachable());
    open_breaker(f);
    std::size_t creds = f.vault.creds_count();
    int failures = breaker_threshold;
    for (const int backoff : {1, 2, 4, 8, 16, 30, 30}) {
      auto fast = f.acquire_now("c");
      REQUIRE_FALSE(fast);
      CHECK(fast.error().to_client_message() == breaker_message(failures, "Couldn't connect to server", backoff));
      f.clock.advance(std::chrono::seconds{backoff} - 1ms);
      REQUIRE_FALSE(f.acquire_now("c"));
      CHECK(f.vault.creds_count() == creds);  // not yet
      f.clock.advance(1ms);
      REQUIRE_FALSE(f.acquire_now("c"));  // the probe, which fails
      CHECK(f.vault.creds_count() == ++creds);
      ++failures;
    }
    CHECK(f.broker->stats().breaker_probes == 7);
    CHECK(f.broker->stats().breaker_probe_failures == 7);
    CHECK(f.broker->stats().breaker_opens == 1);

    f.vault.recover();
    f.clock.advance(30s);
    auto ok = f.acquire_now("c");  // the probe, answered
    REQUIRE(ok);
    CHECK_FALSE(ok.value().from_cache());
    CHECK_FALSE(f.broker->stats().breaker_open);
    CHECK(f.broker->stats().breaker_closes == 1);
    CHECK(f.broker->stats().consecutive_vault_failures == 0);
    CHECK(f.broker->stats().breaker_probes == 8);
    CHECK(f.acquire_now("d"));  // normal again
    CHECK(f.broker->stats().breaker_probes == 8);
    CHECK(f.vault.creds_count() == creds + 2);
  }
  SECTION("without traffic, maintain() probes with a token it holds") {
    auto a = f.acquire_now("t1");
    REQUIRE(a);
    CHECK(f.vault.lookup_count_for("t1") == 1);
    f.vault.outage(unreachable());
    open_breaker(f);
    f.clock.advance(999ms);
    f.broker->maintain();
    CHECK(f.vault.lookup_count_for("t1") == 1);
    f.clock.advance(1ms);
    f.broker->maintain();  // probe: fails, next in 2 s
    CHECK(f.vault.lookup_count_for("t1") == 2);
    CHECK(f.vault.lookup_tokens.back() == "t1");
    CHECK(f.broker->stats().breaker_open);
    f.vault.recover();
    f.clock.advance(1s);
    f.broker->maintain();
    CHECK(f.vault.lookup_count_for("t1") == 2);
    f.clock.advance(1s);
    f.broker->maintain();  // probe: answered
    CHECK(f.vault.lookup_count_for("t1") == 3);
    CHECK_FALSE(f.broker->stats().breaker_open);
    CHECK(f.broker->stats().breaker_closes == 1);
  }
}

TEST_CASE("breaker: an idle revocation and a renewal are skipped while open and done after recovery",
          "[broker][breaker]") {
  SECTION("idle revocation") {
    fixture f{[](auto& o) { o.credentials.revoke_idle_after = 500ms; }};
    auto kept = f.acquire_now("t1");
    REQUIRE(kept);
    std::string idle_lease;
    {
      auto idle = f.acquire_now("t2");
      REQUIRE(idle);
      idle_lease = idle.value().lease_id();
    }
    f.vault.outage(unreachable());
    open_breaker(f);  // first probe at +1 s
    f.clock.advance(600ms);
    f.broker->maintain();
    CHECK(f.vault.revokes.empty());
    CHECK(f.broker->stats().breaker_skips == 1);
    CHECK(f.broker->stats().live_leases == 2);
    CHECK(f.broker->stats().cached_leases == 2);  // still servable during the outage
    f.clock.advance(300ms);
    f.broker->maintain();
    CHECK(f.vault.revokes.empty());
    CHECK(f.broker->stats().breaker_skips == 1);  // retried at the probe time, not every tick

    f.vault.recover();
    f.clock.advance(100ms);
    f.broker->maintain();  // the revocation is the probe
    REQUIRE(f.vault.revokes.size() == 1);
    CHECK(f.vault.revokes[0].first == idle_lease);
    CHECK(f.broker->stats().revokes == 1);
    CHECK(f.broker->stats().live_leases == 1);
    CHECK_FALSE(f.broker->stats().breaker_open);
    CHECK(f.broker->stats().breaker_probes == 1);
  }
  SECTION("renewal") {
    fixture f;
    f.vault.lease_duration = 30s;  // renewed at 18 s
    auto a = f.acquire_now("t1");
    REQUIRE(a);
    const auto start = f.clock.now.load();
    f.clock.advance(17500ms);
    f.vault.outage(unreachable());
    open_breaker(f);  // first probe at 18.5 s
    f.clock.advance(600ms);
    f.broker->maintain();
    CHECK(f.vault.renews.empty());
    f.clock.advance(300ms);
    f.broker->maintain();
    CHECK(f.vault.renews.empty());
    f.vault.recover();
    f.clock.advance(100ms);
    f.broker->maintain();  // the renewal is the probe
    REQUIRE(f.vault.renews.size() == 1);
    CHECK(a.value().expires_at() == start + 18500ms + 30s);
    CHECK_FALSE(f.broker->stats().breaker_open);
    CHECK(f.vault.lookup_count_for("t1") == 1);  // the token's recheck was skipped, not sent
  }
}

TEST_CASE("breaker: while open, a cached credential below the floor is served while it lasts", "[broker][breaker]") {
  fixture f;  // lease 100 s: floor 25 s
  auto a = f.acquire_now("t1");
  REQUIRE(a);
  f.vault.outage(unreachable());
  f.clock.advance(79s);
  open_breaker(f);
  f.clock.advance(500ms);  // 20.5 s left
  auto b = f.acquire_now("t1");
  REQUIRE(b);
  CHECK(b.value().lease_id() == a.value().lease_id());
  CHECK(f.broker->stats().outage_hits == 1);
  f.clock.advance(16s);  // 4.5 s left: too little to log in with
  auto c = f.acquire_now("t1");
  REQUIRE_FALSE(c);
  CHECK(c.error().sqlstate() == "08001");
}

TEST_CASE("broker: stale-while-revalidate: a recheck in flight does not hold up cache hits", "[broker][breaker]") {
  fixture f{[](auto& o) { o.credentials.token_recheck = 1s; }};
  f.vault.lease_duration = 1h;
  auto a = f.acquire_now("t1");
  auto other = f.acquire_now("t2");
  REQUIRE(a);
  REQUIRE(other);
  CHECK(f.vault.lookup_count() == 2);
  f.vault.hold_lookups = true;
  f.clock.advance(1100ms);

  // Vault healthy, nothing in flight: the first stale hit waits for lookup-self.
  std::vector<broker_result<credential_lease>> waiting;
  f.broker->acquire(fixture::request("t1"), [&](auto r) { waiting.push_back(std::move(r)); });
  CHECK(waiting.empty());
  CHECK(f.vault.lookup_count() == 3);
  // While it is in flight, hits within token_grace are served at once.
  std::vector<broker_result<credential_lease>> served;
  for (int i = 0; i < 5; ++i)
    f.broker->acquire(fixture::request("t1"), [&](auto r) { served.push_back(std::move(r)); });
  REQUIRE(served.size() == 5);
  for (auto& r : served) CHECK(r);
  CHECK(f.vault.lookup_count() == 3);
  CHECK(f.broker->stats().stale_hits == 5);
  std::vector<lease_event> events;
  served[0].value().subscribe([&](lease_event e) { events.push_back(e); });

  SECTION("a revoked token is still caught by that recheck") {
    f.vault.complete_lookups("t1", make_error(vault_error_kind::forbidden, 403, "permission denied"));
    REQUIRE(waiting.size() == 1);
    REQUIRE_FALSE(waiting[0]);
    CHECK(waiting[0].error().sqlstate() == "28P01");
    CHECK(events == std::vector<lease_event>{lease_event::token_revoked});  // served meanwhile: ended now
    // A session served meanwhile that subscribes only now still hears of it.
    std::vector<lease_event> late;
    served[1].value().subscribe([&](lease_event e) { late.push_back(e); });
    CHECK(late == std::vector<lease_event>{lease_event::token_revoked});
    auto again = f.acquire_now("t1");
    REQUIRE_FALSE(again);
    CHECK(again.error().sqlstate() == "28P01");
    CHECK(f.vault.lookup_count() == 3);
  }
  SECTION("a good answer serves the waiter") {
    f.vault.complete_lookups("t1");
    REQUIRE(waiting.size() == 1);
    CHECK(waiting[0]);
    CHECK(events.empty());
    std::vector<lease_event> late;
    served[1].value().subscribe([&](lease_event e) { late.push_back(e); });
    CHECK(late.empty());
  }
  SECTION("the first unreachable failure releases the waiters in grace") {
    std::vector<broker_result<credential_lease>> waiting2;
    f.broker->acquire(fixture::request("t2"), [&](auto r) { waiting2.push_back(std::move(r)); });
    CHECK(waiting2.empty());
    CHECK(f.vault.lookup_count() == 4);
    // t2's lookup fails as "unreachable": t1's waiter is served too, though its own
    // lookup-self is still in flight (Vault looks down: do not wait for it).
    f.vault.complete_lookups("t2", unreachable());
    REQUIRE(waiting2.size() == 1);
    CHECK(waiting2[0]);
    REQUIRE(waiting.size() == 1);
    CHECK(waiting[0]);
    CHECK(f.vault.pending_lookups.size() == 1);
    // Vault not known healthy: a stale hit does not wait for a new recheck either.
    f.clock.advance(1100ms);
    std::vector<broker_result<credential_lease>> more;
    f.broker->acquire(fixture::request("t2"), [&](auto r) { more.push_back(std::move(r)); });
    REQUIRE(more.size() == 1);
    CHECK(more[0]);
    CHECK(f.vault.lookup_count() == 5);  // revalidating in the background
    // Vault answers again: the next stale hit waits as usual.
    f.vault.complete_lookups("t2");
    CHECK(f.broker->stats().consecutive_vault_failures == 0);
    f.clock.advance(1100ms);
    std::vector<broker_result<credential_lease>> strict;
    f.broker->acquire(fixture::request("t2"), [&](auto r) { strict.push_back(std::move(r)); });
    CHECK(strict.empty());
    f.vault.complete_lookups("t2");
    CHECK(strict.size() == 1);
  }
  f.vault.hold_lookups = false;
  f.vault.complete_lookups("t1");
  f.vault.complete_lookups("t2");
}

// --- Vault's per-request answers: a policy's denial of one role, a quota's 429, a 500 --

TEST_CASE("broker: Vault's ACL denial of one role refuses that role with 28000, not the token",
          "[broker][acl]") {
  fixture f;  // negative_cache 2 s
  f.vault.creds_error_for_role["role-a"] = vwtest::vault_answer(403, {vwtest::acl_denied}, "GET database/creds/role-a");
  auto a = f.acquire("t1", "role-a");
  REQUIRE_FALSE(a);
  CHECK(a.error().kind == broker_error_kind::role_denied);
  CHECK(a.error().sqlstate() == "28000");
  CHECK(a.error().to_client_message() ==
        "Vault's policy for this token does not allow role \"role-a\" (GET database/creds/role-a: permission "
        "denied); the token may still open other roles");
  CHECK(f.broker->stats().role_denials == 1);
  CHECK(f.vault.lookup_count() == 1);  // lookup-self decides about the token itself

  SECTION("the token still opens the roles its policy allows; role A is remembered for negative_cache") {
    auto b = f.acquire("t1", "role-b");
    REQUIRE(b);
    CHECK(f.vault.creds_count_for("role-b") == 1);
    for (int i = 0; i < 5; ++i) {
      auto again = f.acquire("t1", "role-a");
      REQUIRE_FALSE(again);
      CHECK(again.error().kind == broker_error_kind::role_denied);
      CHECK(again.error().sqlstate() == "28000");
    }
    CHECK(f.vault.creds_count_for("role-a") == 1);
    CHECK(f.broker->stats().role_negative_hits == 5);
    CHECK(f.broker->stats().negative_cache_hits == 0);
    // Another token is asked about role A itself.
    REQUIRE_FALSE(f.acquire("t2", "role-a"));
    CHECK(f.vault.creds_count_for("role-a") == 2);
    f.clock.advance(2s);
    REQUIRE_FALSE(f.acquire("t1", "role-a"));
    CHECK(f.vault.creds_count_for("role-a") == 3);
  }
  SECTION("lookup-self fails too: then the token is refused for every role") {
    f.clock.advance(10s);  // token_recheck: the token's check is due again
    f.vault.lookup_error = make_error(vault_error_kind::forbidden, 403, "permission denied");
    REQUIRE_FALSE(f.acquire("t1", "role-a"));  // a recheck is due again: it finds the token bad
    auto b = f.acquire("t1", "role-b");
    REQUIRE_FALSE(b);
    CHECK(b.error().kind == broker_error_kind::token_rejected);
    CHECK(b.error().sqlstate() == "28P01");
    CHECK(f.vault.creds_count_for("role-b") == 0);
  }
  SECTION("a bad token's 403 (bare, or Vault 1.17's \"invalid token\") still refuses the token for every role") {
    for (const auto& text : {std::string("permission denied"), vwtest::invalid_token_1_17}) {
      INFO(text);
      f.clock.advance(10s);
      f.vault.creds_error_for_role["role-a"] = vwtest::vault_answer(403, {text}, "GET database/creds/role-a");
      auto bad = f.acquire("bad", "role-a");
      REQUIRE_FALSE(bad);
      CHECK(bad.error().kind == broker_error_kind::vault);
      CHECK(bad.error().sqlstate() == "28P01");
      auto other = f.acquire("bad", "role-b");
      REQUIRE_FALSE(other);
      CHECK(other.error().kind == broker_error_kind::token_rejected);
    }
    CHECK(f.vault.creds_count_for("role-b") == 0);
    CHECK(f.broker->stats().role_denials == 1);  // t1's, above
  }
}

TEST_CASE("broker: a lookup-self the token's policy denies confirms the token", "[broker][acl]") {
  fixture f;
  f.vault.lookup_error = vwtest::vault_answer(403, {vwtest::acl_denied}, "GET auth/token/lookup-self");
  REQUIRE(f.acquire("t1"));
  f.clock.advance(11s);  // token_recheck 10 s: the next hit waits for lookup-self
  auto again = f.acquire("t1");
  REQUIRE(again);
  CHECK(again.value().from_cache());
  CHECK(f.vault.lookup_count() == 2);
  CHECK(f.broker->stats().tokens_revoked == 0);
}

TEST_CASE("broker: a 429 with Retry-After holds that role, for every token, until then", "[broker][quota]") {
  fixture f;
  auto limited = vwtest::vault_answer(429, {"request path \"database/creds/role-a\": rate limit quota exceeded"},
                                      "GET database/creds/role-a");
  limited.retry_after = 3s;
  f.vault.creds_error_for_role["role-a"] = limited;
  auto a = f.acquire("t1", "role-a");
  REQUIRE_FALSE(a);
  CHECK(a.error().sqlstate() == "08001");
  CHECK(a.error().to_client_message() ==
        "Vault at http://vault.test is unavailable: request path \"database/creds/role-a\": rate limit quota "
        "exceeded (HTTP 429); retry after 3s");
  f.clock.advance(1s);
  auto other_token = f.acquire("t2", "role-a");
  REQUIRE_FALSE(other_token);
  CHECK(other_token.error().sqlstate() == "08001");
  CHECK(other_token.error().to_client_message() ==
        "Vault at http://vault.test refused more requests for role \"role-a\" (request path "
        "\"database/creds/role-a\": rate limit quota exceeded, HTTP 429); retry after 2s");
  CHECK(f.vault.creds_count_for("role-a") == 1);  // no Vault call while it lasts
  CHECK(f.broker->stats().quota_holds == 1);
  CHECK(f.acquire("t2", "role-b"));  // another role is not held
  f.clock.advance(2s);
  f.vault.creds_error_for_role.clear();
  CHECK(f.acquire("t2", "role-a"));
  CHECK(f.vault.creds_count_for("role-a") == 2);
  CHECK_FALSE(f.broker->stats().breaker_open);
}

TEST_CASE("broker: 429s and 500s for one role never open the breaker for other tokens and roles",
          "[broker][breaker][quota]") {
  fixture f;
  for (auto e : {vwtest::vault_answer(429, {"request path \"database/creds/role-a\": rate limit quota exceeded"}),
                 vwtest::vault_answer(500, {"1 error occurred:\n\t* \"role-a\" is not an allowed role\n\n"})}) {
    INFO(e.http_status);
    f.vault.creds_error_for_role["role-a"] = e;
    const auto before = f.vault.creds_count_for("role-a");
    for (int i = 0; i < 7; ++i) {
      auto r = f.acquire("t1", "role-a");
      REQUIRE_FALSE(r);
      CHECK(r.error().sqlstate() == "08001");
    }
    CHECK(f.vault.creds_count_for("role-a") == before + 7);  // each is that request's own error
    f.vault.creds_error_for_role.clear();
    CHECK_FALSE(f.broker->stats().breaker_open);
    CHECK(f.broker->stats().consecutive_vault_failures == 0);
    CHECK(f.acquire("t-" + std::to_string(e.http_status), "role-b"));  // another token's first login
  }
  CHECK(f.broker->stats().vault_outages == 0);
  CHECK(f.broker->stats().fast_failures == 0);
}

TEST_CASE("broker: requests with one identity share a credential across tokens", "[broker]") {
  fixture f;
  auto with_identity = [&](const std::string& token) {
    auto r = fixture::request(token);
    r.identity = "approle\nauth/approle\n/etc/vaultwire/role-id";
    return f.broker->acquire_blocking(std::move(r));
  };
  auto a = with_identity("own-token-1");
  REQUIRE(a);
  // vaultwire logged in again: a new token, the same identity, the same lease.
  auto b = with_identity("own-token-2");
  REQUIRE(b);
  CHECK(b.value().username() == a.value().username());
  CHECK(f.vault.creds_count() == 1);
  // A client token of the same role is still another key.
  CHECK(f.acquire("own-token-2").value().username() != a.value().username());
  CHECK(f.vault.creds_count() == 2);
}
