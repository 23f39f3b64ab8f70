// credential_broker with a fake Vault (vault_calls that record each call and answer
// inline or later) and a fake clock: floor and TTL math, key separation between
// tokens, single flight, negative cache, budget (53300), token recheck and grace,
// idle revoke timing (client token and token_file), renewal and events, shutdown.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "vaultwire/credentials.hpp"

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

struct fake_clock {
  std::atomic<vaultwire::broker_clock::time_point> now{vaultwire::broker_clock::time_point{} + 1000h};
  void advance(std::chrono::milliseconds d) { now = now.load() + d; }
};

vault_error make_error(vault_error_kind kind, int status, std::string message) {
  vault_error e;
  e.kind = kind;
  e.http_status = status;
  e.message = std::move(message);
  e.address = "http://vault.test";
  return e;
}

// A scripted Vault. In inline mode every call answers before returning; otherwise
// creds requests wait in `pending_creds` until complete_creds().
struct fake_vault {
  std::mutex mutex;
  bool hold_creds = false;
  std::chrono::seconds lease_duration{100s};
  bool renewable = true;
  std::optional<vault_error> creds_error;
  std::optional<vault_error> lookup_error;
  std::optional<vault_error> renew_error;
  std::optional<vault_error> revoke_error;
  std::chrono::seconds renew_grant{0};  // 0: grant the increment asked for
  int serial = 0;

  std::vector<std::string> creds_tokens;   // token of each read_credentials
  std::vector<std::string> lookup_tokens;
  std::vector<std::pair<std::string, std::string>> revokes;  // lease id, token
  std::vector<std::pair<std::string, std::chrono::seconds>> renews;
  std::vector<std::string> renew_self_tokens;
  std::chrono::seconds own_ttl{30s};
  std::vector<vaultwire::vault_client::callback<vaultwire::vault_credential>> pending_creds;

  vault_result<vaultwire::vault_credential> next_credential(const std::string& token) {
    if (creds_error) return *creds_error;
    vaultwire::vault_credential c;
    ++serial;
    c.lease_id = "database/creds/app/lease-" + std::to_string(serial);
    c.username = "v-" + token + "-" + std::to_string(serial);
    c.password = secret_string("pw-" + std::to_string(serial));
    c.lease_duration = lease_duration;
    c.renewable = renewable;
    return c;
  }

  vaultwire::vault_calls calls() {
    vaultwire::vault_calls c;
    c.read_credentials = [this](std::string, std::string, secret_string token, auto done) {
      std::unique_lock lock{mutex};
      creds_tokens.emplace_back(token.view());
      if (hold_creds) {
        pending_creds.push_back(std::move(done));
        return;
      }
      auto r = next_credential(std::string{token.view()});
      lock.unlock();
      done(std::move(r));
    };
    c.lookup_self = [this](secret_string token, auto done) {
      std::unique_lock lock{mutex};
      lookup_tokens.emplace_back(token.view());
      vault_result<vaultwire::vault_token_info> r = vaultwire::vault_token_info{};
      if (lookup_error) {
        r = *lookup_error;
      } else {
        r.value().accessor = "acc-" + std::string{token.view()};
        r.value().display_name = "token-test";
        r.value().ttl = own_ttl;
        r.value().renewable = true;
      }
      lock.unlock();
      done(std::move(r));
    };
    c.renew_lease = [this](std::string lease_id, std::chrono::seconds increment, secret_string, auto done) {
      std::unique_lock lock{mutex};
      renews.emplace_back(lease_id, increment);
      vault_result<vaultwire::vault_lease_renewal> r = vaultwire::vault_lease_renewal{};
      if (renew_error) {
        r = *renew_error;
      } else {
        r.value().lease_id = lease_id;
        r.value().lease_duration = renew_grant.count() != 0 ? renew_grant : increment;
        r.value().renewable = true;
      }
      lock.unlock();
      done(std::move(r));
    };
    c.renew_self = [this](secret_string token, std::chrono::seconds, auto done) {
      std::unique_lock lock{mutex};
      renew_self_tokens.emplace_back(token.view());
      vault_result<vaultwire::vault_token_info> r = vaultwire::vault_token_info{};
      r.value().ttl = own_ttl;
      r.value().renewable = true;
      lock.unlock();
      done(std::move(r));
    };
    c.revoke_lease = [this](std::string lease_id, secret_string token, auto done) {
      std::unique_lock lock{mutex};
      revokes.emplace_back(lease_id, std::string{token.view()});
      vault_result<void> r = boost::outcome_v2::success();
      if (revoke_error) r = *revoke_error;
      lock.unlock();
      done(std::move(r));
    };
    return c;
  }

  // Answers every held creds request (with one credential, or the error).
  void complete_creds(const std::string& token) {
    std::unique_lock lock{mutex};
    auto pending = std::move(pending_creds);
    pending_creds.clear();
    std::vector<vault_result<vaultwire::vault_credential>> results;
    for (std::size_t i = 0; i < pending.size(); ++i) results.push_back(next_credential(token));
    lock.unlock();
    for (std::size_t i = 0; i < pending.size(); ++i) pending[i](std::move(results[i]));
  }

  std::size_t creds_count() {
    std::lock_guard lock{mutex};
    return creds_tokens.size();
  }
};

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

TEST_CASE("broker: concurrent misses for one key share one Vault request", "[broker]") {
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

TEST_CASE("broker: leases with sessions are renewed; max TTL gives expiring then expired", "[broker]") {
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
  f.clock.advance(2s);  // retry after a quarter of the 12 s left, at least 1 s
  f.broker->maintain();
  CHECK(f.vault.renews.size() == 1);
  f.clock.advance(1s);
  f.broker->maintain();
  CHECK(f.vault.renews.size() == 2);
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

TEST_CASE("broker: the maintenance thread revokes idle leases on its own", "[broker]") {
  fake_vault vault;
  vaultwire::credential_broker_options o;
  o.credentials.revoke_idle_after = 100ms;
  o.tick = 20ms;
  credential_broker broker{vault.calls(), o};
  REQUIRE(broker.acquire_blocking(fixture::request("t1")));
  for (int i = 0; i < 250 && broker.stats().revokes == 0; ++i) std::this_thread::sleep_for(20ms);
  CHECK(broker.stats().revokes == 1);
}
