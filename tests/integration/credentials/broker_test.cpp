// credential_broker against the real vault-dev and PostgreSQL 15 (TLS): single
// flight under 200 concurrent acquires (vault-dev's /_dev/counters), one credential
// per token, idle revoke dropping the SQL user, revocation with [vault]
// token_file's token when the client's token may not revoke, and a Vault outage
// (every /v1 call stalled past request_timeout, or Vault sealed): cached
// credentials keep serving, the circuit breaker opens, cold requests fail fast with
// 08001, and the breaker closes once Vault answers again.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/pg_harness.hpp"
#include "support/vault_dev.hpp"
#include "credentials/broker.hpp"
#include "credentials/broker_await.hpp"
#include "vault/vault_client.hpp"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;
using pgwire::secret_string;
using vaultwire::broker_result;
using vaultwire::credential_broker;
using vaultwire::credential_lease;

// database/ engine, config `pg` for the harness, role `app` (5 min, max 1 h), and a
// policy `creds-only` that may read database/creds/app and nothing under sys/leases.
void provision_broker(const vwtest::vault_dev_process& vd, const vwtest::pg_server& pg) {
  vwtest::provision_database(vd, pg, "app,short,capped");
  vwtest::write_owned_role(vd, "app", "5m", "1h");
  // Short leases for renewal: `short` renews freely, `capped` reaches its max TTL.
  vwtest::write_owned_role(vd, "short", "6s", "1h");
  vwtest::write_owned_role(vd, "capped", "6s", "9s");
  vd.v1_ok("POST", "sys/policies/acl/creds-only",
           json{{"policy", "path \"database/creds/app\" { capabilities = [\"read\"] }"}}.dump());
}

secret_string make_token(const vwtest::vault_dev_process& vd, const std::vector<std::string>& policies) {
  const auto created =
      json::parse(vd.v1_ok("POST", "auth/token/create", json{{"policies", policies}, {"ttl", "1h"}}.dump()));
  return secret_string(created["auth"]["client_token"].get<std::string>());
}

bool role_exists(const vwtest::pg_server& pg, const std::string& user) {
  return pg.psql("select count(*) from pg_roles where rolname='" + user + "'").find('1') != std::string::npos;
}

int creds_requests(const vwtest::vault_dev_process& vd) {
  const auto counters = json::parse(vd.dev_get("counters"));
  const auto& paths = counters["paths"];
  return paths.contains("database/creds/app") ? paths["database/creds/app"].get<int>() : 0;
}

// Polls `done` every 50 ms for up to `limit`.
template <class F>
bool eventually(F done, std::chrono::milliseconds limit = 20s) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(50ms);
  }
  return done();
}

vaultwire::credential_request request(const secret_string& token, const std::string& role = "app") {
  vaultwire::credential_request r;
  r.token = token.clone();
  r.mount = "database";
  r.role = role;
  r.route = "main";
  return r;
}

// What acquire_in_coroutine saw.
struct acquire_outcome {
  std::string username;
  std::string sqlstate;
  bool from_cache = false;
  std::thread::id resumed_on;
};

// A named coroutine with by-value parameters (STYLE.md §2 rule 3).
boost::asio::awaitable<void> acquire_in_coroutine(credential_broker* broker, secret_string token,
                                                  acquire_outcome* out) {
  auto r = co_await vaultwire::async_acquire(*broker, request(token));
  out->resumed_on = std::this_thread::get_id();
  if (!r) {
    out->sqlstate = std::string{r.error().sqlstate()};
    co_return;
  }
  out->username = r.value().username();
  out->from_cache = r.value().from_cache();
}

struct servers {
  vwtest::pg_server pg;
  vwtest::vault_dev_process vd;
  vaultwire::vault_client client;

  servers() : client{make_options(vd)} { provision_broker(vd, pg); }

  static vaultwire::vault_client_options make_options(const vwtest::vault_dev_process& vd) {
    vaultwire::vault_client_options o;
    o.address = vd.address();
    o.threads = 8;
    return o;
  }

  vaultwire::credential_broker_options broker_options(std::chrono::milliseconds revoke_idle_after) const {
    vaultwire::credential_broker_options o;
    o.credentials.revoke_idle_after = revoke_idle_after;
    o.credentials.token_recheck = 1s;
    o.tick = 50ms;
    return o;
  }
};

}  // namespace

TEST_CASE("broker: 200 concurrent acquires with one token make one creds request",
          "[integration][broker][concurrency]") {
  servers s;
  credential_broker broker{vaultwire::vault_calls_for(s.client), s.broker_options(60s)};
  const secret_string token = make_token(s.vd, {"creds-only"});
  s.vd.dev_post("counters/reset");

  constexpr int n = 200;
  std::mutex m;
  std::condition_variable cv;
  std::vector<broker_result<credential_lease>> results;
  std::vector<std::thread> threads;
  std::atomic<bool> go{false};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      while (!go) std::this_thread::yield();
      for (int i = 0; i < n / 8; ++i) {
        broker.acquire(request(token), [&](broker_result<credential_lease> r) {
          std::lock_guard lock{m};
          results.push_back(std::move(r));
          cv.notify_all();
        });
      }
    });
  }
  go = true;
  for (auto& t : threads) t.join();
  {
    std::unique_lock lock{m};
    REQUIRE(cv.wait_for(lock, 30s, [&] { return results.size() == n; }));
  }
  std::set<std::string> users;
  for (auto& r : results) {
    INFO((r ? std::string{} : r.error().message));
    REQUIRE(r);
    users.insert(r.value().username());
  }
  CHECK(users.size() == 1);
  CHECK(creds_requests(s.vd) == 1);
  CHECK(role_exists(s.pg, *users.begin()));
  CHECK(broker.stats().sessions == n);

  SECTION("a second token gets its own credential") {
    const secret_string other = make_token(s.vd, {"creds-only"});
    auto b = broker.acquire_blocking(request(other));
    REQUIRE(b);
    CHECK(b.value().username() != *users.begin());
    CHECK(role_exists(s.pg, b.value().username()));
    CHECK(creds_requests(s.vd) == 2);
    // And the first token still gets its own from the cache.
    auto a = broker.acquire_blocking(request(token));
    REQUIRE(a);
    CHECK(a.value().username() == *users.begin());
    CHECK(creds_requests(s.vd) == 2);
  }
}

TEST_CASE("broker: an idle lease is revoked after revoke_idle_after and its user dropped",
          "[integration][broker][concurrency]") {
  servers s;
  credential_broker broker{vaultwire::vault_calls_for(s.client), s.broker_options(1s)};
  // The root token may revoke.
  const secret_string token(s.vd.root_token());
  std::string user;
  {
    auto a = broker.acquire_blocking(request(token));
    REQUIRE(a);
    user = a.value().username();
    REQUIRE(role_exists(s.pg, user));
    std::this_thread::sleep_for(1500ms);  // in use: not revoked
    CHECK(role_exists(s.pg, user));
    CHECK(broker.stats().revokes == 0);
  }
  const auto released = std::chrono::steady_clock::now();
  CHECK(eventually([&] { return !role_exists(s.pg, user); }));
  CHECK(std::chrono::steady_clock::now() - released >= 1s);
  // Vault drops the user before it answers; the broker counts after the answer.
  CHECK(eventually([&] { return broker.stats().revokes == 1 && broker.stats().live_leases == 0; }));
}

TEST_CASE("broker: token_file revokes when the client's token may not", "[integration][broker][concurrency]") {
  servers s;
  const secret_string client_token = make_token(s.vd, {"creds-only"});

  SECTION("without token_file: Vault denies, the lease is left to its TTL") {
    credential_broker broker{vaultwire::vault_calls_for(s.client), s.broker_options(500ms)};
    std::string user;
    {
      auto a = broker.acquire_blocking(request(client_token));
      REQUIRE(a);
      user = a.value().username();
    }
    CHECK(eventually([&] { return broker.stats().revoke_denied == 1; }));
    CHECK(role_exists(s.pg, user));
    CHECK(broker.stats().live_leases == 1);
  }
  SECTION("with token_file: revoked with vaultwire's own token") {
    const fs::path dir = fs::temp_directory_path() / ("vaultwire-broker-it-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const fs::path file = dir / "token";
    // vaultwire's identity: a token whose policy may revoke leases with the lease id in
    // the body (the form vaultwire's own token uses).
    s.vd.v1_ok("POST", "sys/policies/acl/vaultwire",
               json{{"policy", "path \"sys/leases/revoke\" { capabilities = [\"update\"] }"}}.dump());
    const secret_string own = make_token(s.vd, {"vaultwire"});
    std::ofstream{file} << own.view() << "\n";
    auto options = s.broker_options(500ms);
    options.token_file = file;
    credential_broker broker{vaultwire::vault_calls_for(s.client), options};
    std::string user;
    {
      auto a = broker.acquire_blocking(request(client_token));
      REQUIRE(a);
      user = a.value().username();
      REQUIRE(role_exists(s.pg, user));
    }
    CHECK(eventually([&] { return !role_exists(s.pg, user); }));
    // Vault drops the user before it answers; the broker counts after the answer.
    CHECK(eventually([&] { return broker.stats().revokes == 1; }));
    CHECK(broker.stats().revoke_denied == 0);
    fs::remove_all(dir);
  }
}

TEST_CASE("broker: revoke_all at shutdown drops every user", "[integration][broker][concurrency]") {
  servers s;
  credential_broker broker{vaultwire::vault_calls_for(s.client), s.broker_options(60s)};
  const secret_string token(s.vd.root_token());
  auto a = broker.acquire_blocking(request(token));
  REQUIRE(a);
  const std::string user = a.value().username();
  CHECK(broker.revoke_all() == 1);
  CHECK_FALSE(role_exists(s.pg, user));
  auto late = broker.acquire_blocking(request(token));
  REQUIRE_FALSE(late);
  CHECK(late.error().sqlstate() == "57P01");
}

TEST_CASE("broker: a lease in use is renewed and VALID UNTIL advances, at max TTL sessions hear of it",
          "[integration][broker][concurrency]") {
  servers s;
  auto options = s.broker_options(60s);
  options.credentials.expiry_notice = 4s;
  credential_broker broker{vaultwire::vault_calls_for(s.client), options};
  const secret_string token(s.vd.root_token());
  auto valid_until = [&](const std::string& user) {
    return s.pg.psql("select extract(epoch from rolvaliduntil)::bigint from pg_roles where rolname='" + user + "'");
  };

  auto a = broker.acquire_blocking(request(token, "short"));
  REQUIRE(a);
  const std::string user = a.value().username();
  const std::string first = valid_until(user);
  const auto first_expiry = a.value().expires_at();
  std::mutex m;
  std::vector<vaultwire::lease_event> events;
  a.value().subscribe([&](vaultwire::lease_event e) {
    std::lock_guard lock{m};
    events.push_back(e);
  });
  // Renewed at about 4 s (two thirds of 6 s), then every ~4 s: alive past 6 s.
  CHECK(eventually([&] { return broker.stats().renewals >= 2; }, 15s));
  CHECK(a.value().expires_at() > first_expiry);
  CHECK(std::stol(valid_until(user)) > std::stol(first));
  CHECK(role_exists(s.pg, user));

  auto c = broker.acquire_blocking(request(token, "capped"));
  REQUIRE(c);
  std::vector<vaultwire::lease_event> capped_events;
  c.value().subscribe([&](vaultwire::lease_event e) {
    std::lock_guard lock{m};
    capped_events.push_back(e);
  });
  CHECK(eventually(
      [&] {
        std::lock_guard lock{m};
        return capped_events.size() == 2;
      },
      20s));
  {
    std::lock_guard lock{m};
    CHECK(capped_events == std::vector<vaultwire::lease_event>{vaultwire::lease_event::expiring,
                                                               vaultwire::lease_event::expired});
    CHECK(events.empty());  // the freely renewing lease is untouched
  }
  CHECK(broker.stats().renewal_failures == 0);
}

TEST_CASE("broker: async_acquire resumes the coroutine on its own executor", "[integration][broker][concurrency]") {
  servers s;
  credential_broker broker{vaultwire::vault_calls_for(s.client), s.broker_options(60s)};
  const secret_string token(s.vd.root_token());
  boost::asio::io_context io;
  acquire_outcome miss, hit, refused;
  // A miss completes on a vault_client pool thread, a hit inside acquire(): both
  // resume on the io_context's thread (this one).
  boost::asio::co_spawn(io, acquire_in_coroutine(&broker, token.clone(), &miss), boost::asio::detached);
  io.run();
  io.restart();
  boost::asio::co_spawn(io, acquire_in_coroutine(&broker, token.clone(), &hit), boost::asio::detached);
  io.run();
  CHECK(miss.resumed_on == std::this_thread::get_id());
  CHECK(hit.resumed_on == std::this_thread::get_id());
  REQUIRE_FALSE(miss.username.empty());
  CHECK_FALSE(miss.from_cache);
  CHECK(hit.username == miss.username);
  CHECK(hit.from_cache);

  broker.revoke_all();
  io.restart();
  boost::asio::co_spawn(io, acquire_in_coroutine(&broker, token.clone(), &refused), boost::asio::detached);
  io.run();
  CHECK(refused.sqlstate == "57P01");
  CHECK(refused.resumed_on == std::this_thread::get_id());
}

namespace {

// vault-dev stalls every /v1 request for `delay` (a frozen Vault, as with SIGSTOP:
// connections are accepted, nothing is answered in time).
void freeze_vault(const vwtest::vault_dev_process& vd, std::chrono::milliseconds delay) {
  vd.dev_post("fail", json{{"path", ""}, {"count", 1000000}, {"mode", "delay"}, {"delay_ms", delay.count()}}.dump());
}

std::chrono::milliseconds timed(const std::function<void()>& f) {
  const auto start = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
}

}  // namespace

TEST_CASE("broker: a frozen Vault: cached credentials keep serving, cold requests fail fast, the breaker closes after",
          "[integration][broker][breaker][concurrency]") {
  servers s;
  auto client_options = servers::make_options(s.vd);
  client_options.request_timeout = 1s;
  vaultwire::vault_client client{client_options};
  credential_broker broker{vaultwire::vault_calls_for(client), s.broker_options(60s)};  // token_recheck 1 s

  // Five tokens with a session each: their rechecks are what Vault fails first.
  std::vector<secret_string> tokens;
  std::vector<credential_lease> sessions;
  for (int i = 0; i < 5; ++i) {
    tokens.push_back(make_token(s.vd, {"creds-only"}));
    auto a = broker.acquire_blocking(request(tokens.back()));
    REQUIRE(a);
    sessions.push_back(std::move(a).value());
  }
  const secret_string cold = make_token(s.vd, {"creds-only"});  // never used before the freeze
  const int creds_before = creds_requests(s.vd);

  freeze_vault(s.vd, 2500ms);
  // Connections keep coming with a warm cache (pgbench -C): none fails; once the
  // breaker is open none waits for Vault.
  int errors = 0;
  std::chrono::milliseconds slowest{0}, slowest_open{0};
  const auto until = std::chrono::steady_clock::now() + 5s;
  for (int i = 0; std::chrono::steady_clock::now() < until; ++i) {
    const bool open = broker.stats().breaker_open;
    const auto took = timed([&] {
      auto r = broker.acquire_blocking(request(tokens[i % tokens.size()]));
      if (!r) ++errors;
    });
    slowest = std::max(slowest, took);
    if (open) slowest_open = std::max(slowest_open, took);
    std::this_thread::sleep_for(10ms);
  }
  const auto stats = broker.stats();
  CHECK(errors == 0);
  CHECK(slowest < 1500ms);  // at most one recheck's request_timeout
  CHECK(stats.breaker_open);
  CHECK(stats.breaker_opens == 1);
  CHECK(slowest_open < 250ms);
  CHECK(stats.stale_hits > 0);

  // A cold request fails at once with 08001 without a creds request (unless it is
  // the probe; the maintenance thread takes probes as soon as they are due).
  int fast = 0;
  std::string message;
  for (int i = 0; i < 3; ++i) {
    const auto took = timed([&] {
      auto r = broker.acquire_blocking(request(cold));
      REQUIRE_FALSE(r);
      CHECK(r.error().sqlstate() == "08001");
      if (r.error().message.find("is unreachable (") != std::string::npos) message = r.error().message;
    });
    if (took < 250ms) ++fast;
  }
  CHECK(fast >= 2);
  CHECK(broker.stats().fast_failures >= 2);
  CHECK(creds_requests(s.vd) - creds_before == 3 - fast);
  CHECK(message.rfind("Vault at " + s.vd.address() + " is unreachable (", 0) == 0);
  CHECK(message.find(cold.view()) == std::string::npos);
  INFO(message);

  // Vault answers again: a probe closes the breaker and cold requests work.
  s.vd.dev_post("fail/clear");
  CHECK(eventually([&] { return !broker.stats().breaker_open; }, 45s));
  CHECK(broker.stats().breaker_closes == 1);
  auto fresh = broker.acquire_blocking(request(cold));
  REQUIRE(fresh);
  CHECK(role_exists(s.pg, fresh.value().username()));
}

TEST_CASE("broker: a sealed Vault opens the breaker, cached credentials keep serving, unsealed it closes",
          "[integration][broker][breaker][concurrency]") {
  servers s;
  credential_broker broker{vaultwire::vault_calls_for(s.client), s.broker_options(60s)};
  const secret_string token = make_token(s.vd, {"creds-only"});
  const secret_string cold = make_token(s.vd, {"creds-only"});
  auto a = broker.acquire_blocking(request(token));
  REQUIRE(a);

  s.vd.dev_post("seal");
  for (unsigned i = 0; i < vaultwire::breaker_threshold && !broker.stats().breaker_open; ++i) {
    auto r = broker.acquire_blocking(request(cold));
    REQUIRE_FALSE(r);
    CHECK(r.error().sqlstate() == "08001");
  }
  REQUIRE(broker.stats().breaker_open);
  auto fast = broker.acquire_blocking(request(cold));
  REQUIRE_FALSE(fast);
  CHECK(fast.error().message.find("is unreachable (") != std::string::npos);
  CHECK(fast.error().message.find("Vault is sealed (HTTP 503)") != std::string::npos);
  for (int i = 0; i < 20; ++i) {
    auto hit = broker.acquire_blocking(request(token));
    REQUIRE(hit);
    CHECK(hit.value().username() == a.value().username());
    std::this_thread::sleep_for(100ms);  // across token_recheck (1 s)
  }
  CHECK(broker.stats().rechecks_in_grace > 0);

  s.vd.dev_post("unseal");
  CHECK(eventually([&] { return !broker.stats().breaker_open; }, 45s));
  auto fresh = broker.acquire_blocking(request(cold));
  REQUIRE(fresh);
  CHECK(role_exists(s.pg, fresh.value().username()));
}
