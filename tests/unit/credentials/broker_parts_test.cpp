// The broker's parts on their own, without the facade or a Vault: lease_cache
// (keys, reuse floor, outage reuse, single flight, budget), token_checker (recheck
// verdicts, grace, negative cache, probe choice, forgetting), lease_keeper (idle
// revocation, renewal and its answers, expiry events, revocation answers) and
// own_token (reading token_file, the renew-self schedule). Time is a plain
// time_point moved by hand.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "credentials/circuit_breaker.hpp"
#include "credentials/lease_cache.hpp"
#include "credentials/lease_keeper.hpp"
#include "credentials/own_token.hpp"
#include "credentials/token_checker.hpp"
#include "support/fake_vault.hpp"

namespace {

using namespace std::chrono_literals;
using pgwire::secret_string;
using vaultwire::credential_request;
using vaultwire::lease_event;
using vaultwire::vault_credential;
using vaultwire::vault_error_kind;
using vaultwire::vault_result;
using vaultwire::detail::circuit_breaker;
using vaultwire::detail::deferred_list;
using vaultwire::detail::flight;
using vaultwire::detail::lease_cache;
using vaultwire::detail::lease_keeper;
using vaultwire::detail::own_token;
using vaultwire::detail::time_point;
using vaultwire::detail::token_checker;
using vwtest::make_error;

const time_point t0 = time_point{} + 1000h;

credential_request request(const std::string& role = "app", const std::string& route = "main") {
  credential_request r;
  r.token = secret_string("s.token");
  r.mount = "database";
  r.role = role;
  r.route = route;
  return r;
}

vault_credential credential(const std::string& lease_id, std::chrono::seconds ttl, bool renewable = true) {
  vault_credential c;
  c.lease_id = lease_id;
  c.lease_duration = ttl;
  c.renewable = renewable;
  c.username = "v-app-1";
  c.password = secret_string("pw");
  return c;
}

// Puts a fetched credential in the cache the way the broker does: a flight, then add().
std::shared_ptr<vaultwire::detail::lease_entry> fetched(lease_cache& cache, const std::string& key,
                                                        const std::string& lease_id, std::chrono::seconds ttl,
                                                        time_point t, bool renewable = true) {
  cache.begin_flight(key, request(), [](vaultwire::broker_result<vaultwire::credential_lease>) {});
  auto fl = cache.end_flight(key);
  REQUIRE(fl.has_value());
  auto c = credential(lease_id, ttl, renewable);
  return cache.add(key, lease_cache::token_hash_of(key), *fl, c, t);
}

}  // namespace

TEST_CASE("lease_cache: the key separates token, namespace, mount, role and route", "[broker][parts]") {
  const auto base = lease_cache::key_for("aaaa", request());
  CHECK(lease_cache::token_hash_of(base) == "aaaa");
  CHECK(lease_cache::key_for("bbbb", request()) != base);
  CHECK(lease_cache::key_for("aaaa", request("other")) != base);
  CHECK(lease_cache::key_for("aaaa", request("app", "replica")) != base);
  auto ns = request();
  ns.vault_namespace = "team";
  CHECK(lease_cache::key_for("aaaa", ns) != base);
  // Parts are separated, not concatenated: ("ab", "c") is not ("a", "bc").
  auto r1 = request("ab", "c");
  auto r2 = request("a", "bc");
  CHECK(lease_cache::key_for("aaaa", r1) != lease_cache::key_for("aaaa", r2));
}

TEST_CASE("lease_cache: served above the reuse floor, dropped below it unless the breaker is open",
          "[broker][parts]") {
  lease_cache cache;
  const auto key = lease_cache::key_for("aaaa", request());
  auto e = fetched(cache, key, "lease/1", 100s, t0);  // floor: 25 s
  CHECK(cache.cached(*e));
  REQUIRE(cache.find(key, t0 + 74s, false).has_value());
  CHECK_FALSE(cache.find(key, t0 + 74s, false)->outage);

  SECTION("closed breaker: dropped at the floor, still live") {
    CHECK_FALSE(cache.find(key, t0 + 75s, false).has_value());
    CHECK_FALSE(cache.cached(*e));
    CHECK(cache.live().count("lease/1") == 1);
  }
  SECTION("open breaker: served down to outage_reuse_floor") {
    const auto hit = cache.find(key, t0 + 94s, true);
    REQUIRE(hit.has_value());
    CHECK(hit->outage);
    CHECK_FALSE(cache.find(key, t0 + 95s, true).has_value());
  }
  SECTION("a gone lease is never served") {
    e->gone = true;
    CHECK_FALSE(cache.find(key, t0, true).has_value());
  }
}

TEST_CASE("lease_cache: single flight and the budget count fetches in flight", "[broker][parts]") {
  lease_cache cache;
  const auto key = lease_cache::key_for("aaaa", request());
  int answered = 0;
  vaultwire::credential_broker::acquire_callback cb = [&](auto) { ++answered; };
  CHECK_FALSE(cache.join(key, cb));
  CHECK(cache.held() == 0);
  cache.begin_flight(key, request(), cb);
  CHECK(cache.held() == 1);
  auto second = cb;
  CHECK(cache.join(key, second));
  auto fl = cache.end_flight(key);
  REQUIRE(fl.has_value());
  CHECK(fl->waiters.size() == 2);
  CHECK(fl->token.view() == "s.token");
  CHECK_FALSE(cache.end_flight(key).has_value());
  CHECK(cache.held() == 0);
}

TEST_CASE("lease_cache: uncache drops only the lease the key serves, forget drops it from live",
          "[broker][parts]") {
  lease_cache cache;
  const auto key = lease_cache::key_for("aaaa", request());
  auto old_lease = fetched(cache, key, "lease/1", 100s, t0);
  auto new_lease = fetched(cache, key, "lease/2", 100s, t0);  // replaces it in the cache
  cache.uncache(*old_lease);
  CHECK(cache.cached(*new_lease));
  CHECK(cache.referenced_tokens() == std::set<std::string>{"aaaa"});
  cache.forget(*new_lease);
  CHECK_FALSE(cache.cached(*new_lease));
  CHECK(cache.live().size() == 1);
  CHECK(cache.live().count("lease/1") == 1);
}

TEST_CASE("token_checker: a hit is served, served stale, or waits", "[broker][parts]") {
  token_checker checker{10s, 300s, 2s};
  auto& tok = checker.entry("aaaa", secret_string("s.token"));
  checker.confirmed(tok, t0);
  CHECK(checker.on_hit(tok, t0 + 9s, true) == token_checker::verdict::serve);
  CHECK(checker.on_hit(tok, t0 + 10s, true) == token_checker::verdict::wait);
  CHECK(checker.on_hit(tok, t0 + 10s, false) == token_checker::verdict::serve_stale);
  tok.recheck_in_flight = true;
  CHECK(checker.on_hit(tok, t0 + 10s, true) == token_checker::verdict::serve_stale);
  // Past grace nothing is served without a recheck, healthy Vault or not.
  CHECK(checker.on_hit(tok, t0 + 300s, false) == token_checker::verdict::wait);
}

TEST_CASE("token_checker: an unanswered recheck is covered by grace, then not", "[broker][parts]") {
  token_checker checker{10s, 30s, 2s};
  auto& tok = checker.entry("aaaa", secret_string("s.token"));
  checker.confirmed(tok, t0);
  const auto left = checker.unverified(tok, t0 + 25s);
  REQUIRE(left.has_value());
  CHECK(*left == 5s);
  CHECK(tok.next_check_at == t0 + 30s);  // within grace, not t + token_recheck
  CHECK_FALSE(checker.unverified(tok, t0 + 30s).has_value());
  vaultwire::vault_token_info info;
  info.accessor = "acc1";
  CHECK(checker.looked_up(tok, info, t0 + 31s));
  CHECK_FALSE(checker.looked_up(tok, info, t0 + 32s));
  CHECK(tok.next_check_at == t0 + 42s);
  CHECK(checker.name("aaaa") == "accessor acc1");
  CHECK(checker.name("bbbbbbbbbbbb") == "token sha256:bbbbbbbb");
}

TEST_CASE("token_checker: the negative cache lasts negative_cache", "[broker][parts]") {
  token_checker checker{10s, 300s, 2s};
  checker.reject("aaaa", make_error(vault_error_kind::forbidden, 403, "permission denied"), t0);
  REQUIRE(checker.rejection("aaaa", t0 + 1999ms).has_value());
  CHECK(checker.rejection("aaaa", t0 + 1999ms)->http_status == 403);
  CHECK_FALSE(checker.rejection("bbbb", t0).has_value());
  CHECK_FALSE(checker.rejection("aaaa", t0 + 2s).has_value());
  CHECK_FALSE(checker.rejected("aaaa"));
}

TEST_CASE("token_checker: a policy's denial of one role is remembered for that role only", "[broker][parts]") {
  token_checker checker{10s, 300s, 2s};
  const auto acl = vwtest::vault_answer(403, {vwtest::acl_denied});
  REQUIRE(acl.policy_denied());
  const std::string role_a = std::string("aaaa") + '\0' + lease_cache::role_key_for(request("role-a"));
  const std::string role_b = std::string("aaaa") + '\0' + lease_cache::role_key_for(request("role-b"));
  checker.deny_role(role_a, acl, t0);
  REQUIRE(checker.role_denial(role_a, t0 + 1999ms).has_value());
  CHECK(checker.role_denial(role_a, t0 + 1999ms)->policy_denied());
  CHECK_FALSE(checker.role_denial(role_b, t0).has_value());
  CHECK_FALSE(checker.rejection("aaaa", t0).has_value());  // the token itself is not refused
  CHECK_FALSE(checker.rejected("aaaa"));
  CHECK_FALSE(checker.role_denial(role_a, t0 + 2s).has_value());
  checker.deny_role(role_a, acl, t0);
  checker.sweep({}, t0 + 3s);
  CHECK_FALSE(checker.role_denial(role_a, t0 + 1s).has_value());  // swept
}

TEST_CASE("token_checker: waiters within grace are released, rechecks come due, tokens are forgotten",
          "[broker][parts]") {
  token_checker checker{10s, 30s, 2s};
  auto& a = checker.entry("aaaa", secret_string("s.a"));
  auto& b = checker.entry("bbbb", secret_string("s.b"));
  checker.confirmed(a, t0);
  checker.confirmed(b, t0 - 60s);  // past grace
  a.waiting.push_back({request(), [](auto) {}});
  b.waiting.push_back({request(), [](auto) {}});
  CHECK(checker.release_in_grace(t0 + 11s).size() == 1);
  CHECK(a.waiting.empty());
  CHECK(b.waiting.size() == 1);

  CHECK(checker.due("aaaa", t0 + 9s) == nullptr);
  CHECK(checker.due("aaaa", t0 + 10s) == &a);
  checker.reject("aaaa", make_error(vault_error_kind::forbidden, 403, "denied"), t0 + 10s);
  CHECK(checker.due("aaaa", t0 + 10s) == nullptr);

  // The probe prefers a token with sessions and skips rejected ones.
  CHECK(checker.probe_candidate({}) == "bbbb");
  auto& c = checker.entry("cccc", secret_string("s.c"));
  CHECK(checker.probe_candidate({"cccc"}) == "cccc");
  c.recheck_in_flight = true;
  CHECK(checker.probe_candidate({"cccc"}) == "bbbb");

  // "bbbb" has a waiter and "cccc" a recheck in flight: kept; "aaaa" is not referenced.
  checker.sweep({}, t0 + 20s);
  CHECK(checker.find("aaaa") == nullptr);
  CHECK(checker.find("bbbb") != nullptr);
  CHECK(checker.find("cccc") != nullptr);
  CHECK_FALSE(checker.rejected("aaaa"));  // its rejection ended at t0 + 12 s
}

namespace {

struct keeper_fixture {
  vaultwire::credentials_config cfg;
  vaultwire::broker_stats stats;
  lease_cache cache;
  circuit_breaker breaker{stats, 300s};
  lease_keeper keeper{cfg, cache, breaker, stats};
  std::string key = lease_cache::key_for("aaaa", request());

  keeper_fixture() {
    cfg.revoke_idle_after = 60s;
    cfg.expiry_notice = 60s;
  }
  void break_vault(time_point t) {
    const auto down = make_error(vault_error_kind::unreachable, 0, "connection refused");
    for (unsigned i = 0; i < vaultwire::breaker_threshold; ++i) (void)breaker.note(&down, false, t);
    REQUIRE(breaker.open());
  }
};

}  // namespace

TEST_CASE("lease_keeper: an idle lease is revoked after revoke_idle_after, or forgotten at its TTL",
          "[broker][parts]") {
  keeper_fixture f;
  auto e = fetched(f.cache, f.key, "lease/1", 3600s, t0);
  deferred_list deferred;
  CHECK(f.keeper.sweep(t0 + 59s, deferred).revocations.empty());

  SECTION("revoked") {
    const auto plan = f.keeper.sweep(t0 + 60s, deferred);
    REQUIRE(plan.revocations.size() == 1);
    CHECK(plan.revocations[0].lease == e);
    CHECK(e->gone);
    CHECK(e->revoke_in_flight);
    CHECK_FALSE(f.cache.cached(*e));
    CHECK(f.keeper.sweep(t0 + 61s, deferred).revocations.empty());  // once
  }
  SECTION("the open breaker defers it, keeping it servable") {
    f.break_vault(t0 + 60s);
    CHECK(f.keeper.sweep(t0 + 60s, deferred).revocations.empty());
    CHECK(f.cache.cached(*e));
    CHECK(f.stats.breaker_skips == 1);
  }
  SECTION("forgotten at its TTL") {
    e->abandoned = true;
    (void)f.keeper.sweep(t0 + 3600s, deferred);
    CHECK(f.cache.live().empty());
  }
  CHECK(deferred.empty());
}

TEST_CASE("lease_keeper: leases in use are renewed, at max TTL their sessions hear expiring, then expired",
          "[broker][parts]") {
  keeper_fixture f;
  auto e = fetched(f.cache, f.key, "lease/1", 300s, t0);
  e->next_renew_at = t0 + 180s;
  std::vector<lease_event> heard;
  e->sessions.emplace(1, [&](lease_event ev) { heard.push_back(ev); });
  deferred_list deferred;
  CHECK(f.keeper.sweep(t0 + 179s, deferred).renewals.empty());
  auto plan = f.keeper.sweep(t0 + 180s, deferred);
  REQUIRE(plan.renewals.size() == 1);
  CHECK(plan.tokens_in_use == std::set<std::string>{"aaaa"});

  // Vault extends it by less than asked: its max TTL.
  vaultwire::vault_lease_renewal renewal;
  renewal.lease_duration = 100s;
  renewal.renewable = true;
  const auto note = f.keeper.renewed(*e, vault_result<vaultwire::vault_lease_renewal>(renewal), t0 + 181s, 0.0);
  CHECK(note.result == "ok");
  CHECK(e->at_max);
  CHECK(e->expires_at == t0 + 281s);
  CHECK(e->renew_in_flight);  // the broker clears it when the call completes

  (void)f.keeper.sweep(t0 + 220s, deferred);  // 61 s left: no notice yet
  CHECK(deferred.empty());
  (void)f.keeper.sweep(t0 + 221s, deferred);
  (void)f.keeper.sweep(t0 + 281s, deferred);
  for (auto& d : deferred) d();
  CHECK(heard == std::vector<lease_event>{lease_event::expiring, lease_event::expired});
  CHECK(e->ended_by == lease_event::expired);
}

namespace {

using renewal_result = vault_result<vaultwire::vault_lease_renewal>;

// Vault's answer to a renewal, as the client classifies it.
renewal_result renew_answer(int status, const std::string& text) {
  return renewal_result(vwtest::vault_answer(status, {text}, "PUT sys/leases/renew/lease/1"));
}

// Vault answers a renewal whose database call failed with 400 (expiration.go renewEntry).
const std::string db_down =
    "failed to renew entry: resp: (*logical.Response)(nil) err: failed to connect to `host=127.0.0.1 user=vault "
    "database=app`: dial error (dial tcp 127.0.0.1:5432: connect: connection refused)";

}  // namespace

TEST_CASE("lease_keeper: renewal answers that end the lease's sessions, or let it run to its TTL",
          "[broker][parts][renewal]") {
  keeper_fixture f;
  auto e = fetched(f.cache, f.key, "lease/1", 300s, t0);
  SECTION("lease not found, lease expired, irrevocable: gone, ending its sessions") {
    for (const char* text : {"lease not found", "lease expired",
                             "lease is expired and has failed previous revocation attempts"}) {
      INFO(text);
      e->gone = false;
      const auto note = f.keeper.renewed(*e, renew_answer(400, text), t0 + 180s, 0.0);
      CHECK(note.result == "gone");
      CHECK(note.reason == text);
      CHECK(note.event == lease_event::lease_gone);
      CHECK(e->gone);
      CHECK_FALSE(f.cache.cached(*e));
    }
    CHECK(f.stats.renewals_gone == 3);
    CHECK(f.stats.renewal_failures == 3);
  }
  SECTION("not renewable, past the max TTL (bare or from the backend): runs to its TTL") {
    for (const char* text : {"lease is not renewable", "past the max TTL, cannot renew",
                             "failed to renew entry: resp: (*logical.Response)(nil) err: past the max TTL, cannot "
                             "renew"}) {
      INFO(text);
      e->at_max = false;
      const auto note = f.keeper.renewed(*e, renew_answer(400, text), t0 + 180s, 0.0);
      CHECK(note.result == "final");
      CHECK_FALSE(note.event.has_value());
      CHECK(e->at_max);
      CHECK_FALSE(e->gone);
    }
    CHECK(f.stats.renewals_final == 3);
  }
  SECTION("forbidden: let it run to its end") {
    const auto note = f.keeper.renewed(*e, renew_answer(403, "permission denied"), t0 + 296s, 0.0);
    CHECK(note.result == "denied");
    CHECK_FALSE(note.event.has_value());
    CHECK(e->at_max);
    CHECK(f.stats.renewal_denied == 1);
  }
  CHECK(f.stats.renewal_retries == 0);
}

TEST_CASE("lease_keeper: any other renewal failure is retried with backoff while the TTL lasts, sessions kept",
          "[broker][parts][renewal]") {
  keeper_fixture f;
  auto e = fetched(f.cache, f.key, "lease/1", 300s, t0);
  bool ended = false;
  e->sessions.emplace(1, [&](lease_event) { ended = true; });
  // The database behind Vault is down: every renewal is answered 400.
  time_point t = t0 + 180s;  // 120 s left: retries wait 1, 2, 4, 8, 16 s, then a quarter of what is left
  const std::chrono::milliseconds waits[] = {1s, 2s, 4s, 8s, 16s, 22250ms};
  for (auto wait : waits) {
    const auto note = f.keeper.renewed(*e, renew_answer(400, db_down), t, 0.0);
    CHECK(note.result == "failed");
    CHECK(note.reason == db_down);
    CHECK_FALSE(note.event.has_value());
    CHECK(e->next_renew_at == t + wait);
    t = e->next_renew_at;
  }
  // Near the end: never later than a quarter of what is left, at least 1 s.
  t = t0 + 298s;
  (void)f.keeper.renewed(*e, renew_answer(400, db_down), t, 0.0);
  CHECK(e->next_renew_at == t + 1s);
  CHECK_FALSE(e->gone);
  CHECK_FALSE(e->at_max);
  CHECK(f.cache.cached(*e));
  CHECK_FALSE(ended);
  CHECK(f.stats.renewal_retries == 7);
  CHECK(f.stats.renewals_gone == 0);

  SECTION("a success resets the backoff") {
    vaultwire::vault_lease_renewal ok;
    ok.lease_duration = 300s;
    ok.renewable = true;
    (void)f.keeper.renewed(*e, renewal_result(ok), t0 + 299s, 0.0);
    CHECK(e->renew_failures == 0);
    (void)f.keeper.renewed(*e, renew_answer(500, "1 error occurred:\n\t* boom\n\n"), t0 + 400s, 0.0);
    CHECK(e->next_renew_at == t0 + 401s);
  }
  SECTION("Vault down, a role's 500, a 404: retried the same way") {
    for (auto r : {renewal_result(make_error(vault_error_kind::unreachable, 0, "Couldn't connect to server")),
                   renew_answer(500, "1 error occurred:\n\t* boom\n\n"), renew_answer(404, "")}) {
      CHECK(f.keeper.renewed(*e, r, t0 + 200s, 0.0).result == "failed");
    }
    CHECK_FALSE(e->gone);
  }
  SECTION("a 429's Retry-After is kept") {
    auto limited = vwtest::vault_answer(429, {"request path \"sys/leases/renew\": rate limit quota exceeded"});
    limited.retry_after = 20s;
    e->renew_failures = 0;
    (void)f.keeper.renewed(*e, renewal_result(limited), t0 + 200s, 0.0);
    CHECK(e->next_renew_at == t0 + 220s);
  }
}

TEST_CASE("lease_keeper: revocation answers", "[broker][parts]") {
  keeper_fixture f;
  auto e = fetched(f.cache, f.key, "lease/1", 300s, t0);
  const auto denied = make_error(vault_error_kind::forbidden, 403, "permission denied");
  SECTION("ok: forgotten") {
    const auto note = f.keeper.revoked(*e, vault_result<void>(boost::outcome_v2::success()), false, t0);
    CHECK(note.result == "ok");
    CHECK(note.reason == "idle");
    CHECK(f.cache.live().empty());
  }
  SECTION("denied: left to its TTL, still counted") {
    const auto note = f.keeper.revoked(*e, vault_result<void>(denied), true, t0);
    CHECK(note.result == "denied");
    CHECK(note.reason == "shutdown");
    CHECK(e->abandoned);
    CHECK(f.cache.held() == 1);
  }
  SECTION("denied for a revoked token: went with the token") {
    e->token_rejected = true;
    const auto note = f.keeper.revoked(*e, vault_result<void>(denied), false, t0);
    CHECK(note.reason == "token revoked");
    CHECK(f.cache.live().empty());
    CHECK(f.stats.revoke_denied == 0);
  }
  SECTION("Vault down: retried after revoke_idle_after") {
    const auto note = f.keeper.revoked(
        *e, vault_result<void>(make_error(vault_error_kind::timeout, 0, "Operation timed out")), false, t0 + 90s);
    CHECK(note.result == "failed");
    CHECK(e->idle_since == t0 + 90s);
    CHECK(f.cache.held() == 1);
  }
  SECTION("a 400 from a failed database call is a failure, retried, not a lease gone") {
    const std::string text = "failed to revoke entry: resp: (*logical.Response)(nil) err: failed to connect";
    const auto note =
        f.keeper.revoked(*e, vault_result<void>(vwtest::vault_answer(400, {text}, "PUT sys/leases/revoke")), false,
                         t0 + 90s);
    CHECK(note.result == "failed");
    CHECK(note.reason == "idle");
    CHECK(e->idle_since == t0 + 90s);
    CHECK(f.cache.held() == 1);
    CHECK(f.stats.revoke_failures == 1);
  }
  SECTION("Vault's lease-gone answer: gone, forgotten") {
    const auto note = f.keeper.revoked(
        *e, vault_result<void>(vwtest::vault_answer(400, {"lease not found"}, "PUT sys/leases/revoke")), false, t0);
    CHECK(note.result == "gone");
    CHECK(f.cache.live().empty());
    CHECK(f.stats.revoke_gone == 1);
  }
}

namespace {

struct token_file {
  std::filesystem::path dir = std::filesystem::temp_directory_path() /
                              ("vaultwire-own-token-" + std::to_string(::getpid()) + "-" +
                               std::to_string(reinterpret_cast<std::uintptr_t>(this)));
  std::filesystem::path path = dir / "token";
  token_file() { std::filesystem::create_directories(dir); }
  ~token_file() { std::filesystem::remove_all(dir); }
  void write(const std::string& text, std::chrono::seconds age) {
    std::ofstream{path, std::ios::trunc} << text;
    // A distinct mtime per version, whatever the file system's resolution.
    std::filesystem::last_write_time(path, std::filesystem::file_time_type::clock::now() - age);
  }
};

vault_result<vaultwire::vault_token_info> token_info(std::chrono::seconds ttl, bool renewable) {
  vaultwire::vault_token_info info;
  info.accessor = "own";
  info.ttl = ttl;
  info.renewable = renewable;
  return info;
}

}  // namespace

TEST_CASE("own_token: token_file is read when it changes, a bad file keeps the last good token",
          "[broker][parts]") {
  token_file file;
  own_token own{file.path};
  CHECK(own.read(t0).empty());  // no file yet
  file.write("s.first\n", 100s);
  CHECK(own.read(t0).view() == "s.first");
  file.write("", 50s);
  CHECK(own.read(t0).view() == "s.first");
  file.write("s.second \r\n", 10s);
  CHECK(own.read(t0).view() == "s.second");
}

TEST_CASE("own_token: looked up per file version, then renewed at about two thirds of its TTL",
          "[broker][parts]") {
  token_file file;
  own_token own{file.path};
  vaultwire::broker_stats stats;
  file.write("s.own", 100s);
  (void)own.read(t0);
  REQUIRE(own.due(t0) == own_token::step::lookup);
  own.begin();
  CHECK(own.due(t0) == own_token::step::none);  // one call at a time
  own.done(own_token::step::lookup, token_info(3600s, true), t0, 0.0, stats);
  CHECK(own.next_at() == t0 + 2160s);  // 60 % of the TTL at jitter 0
  CHECK(own.due(t0 + 2159s) == own_token::step::none);
  REQUIRE(own.due(t0 + 2160s) == own_token::step::renew);
  own.begin();
  own.done(own_token::step::renew, make_error(vault_error_kind::unreachable, 0, "down"), t0 + 2160s, 0.0, stats);
  CHECK(own.next_at() == t0 + 2165s);
  CHECK(stats.own_token_failures == 1);

  SECTION("not renewable: nothing more until the file changes") {
    own.begin();
    own.done(own_token::step::lookup, token_info(3600s, false), t0 + 2165s, 0.0, stats);
    CHECK(own.due(t0 + 100000s) == own_token::step::none);
    file.write("s.rotated", 5s);
    (void)own.read(t0);
    CHECK(own.due(t0 + 100000s) == own_token::step::lookup);
  }
  SECTION("the open breaker defers it") {
    own.defer(t0 + 2170s);
    CHECK(own.due(t0 + 2169s) == own_token::step::none);
    CHECK(own.due(t0 + 2170s) == own_token::step::renew);
  }
}
