// vaultwire's own Vault token from a [vault.auth] login (own_token.hpp): the login
// bodies made from the method's files (read afresh at each login), the schedule on its
// own with a hand-moved clock, and the broker driving it with the scripted Vault and
// a fake clock: login at start, renew-self at about two thirds of the TTL, a batch or
// non-renewable token replaced by a new login, a failed renewal followed by a login, a
// renewal short of what was asked (max TTL near), failed logins retried with a
// doubling backoff, Vault's bad-token refusal dropping the token at once, the token's
// end, the circuit breaker, and what /readyz reads (own_token_problem).
#include <catch2/catch.hpp>

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "credentials/broker.hpp"
#include "credentials/own_token.hpp"
#include "support/fake_vault.hpp"

namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using pgwire::secret_string;
using vaultwire::broker_stats;
using vaultwire::credential_broker;
using vaultwire::vault_auth_config;
using vaultwire::vault_auth_method;
using vaultwire::vault_error_kind;
using vaultwire::vault_login;
using vaultwire::vault_result;
using vaultwire::detail::own_token;
using vaultwire::detail::time_point;
using vwtest::fake_clock;
using vwtest::fake_vault;
using vwtest::make_error;

const time_point t0 = time_point{} + 1000h;

// A scratch directory for the method's files, removed at the end of the test.
struct files {
  fs::path dir;
  files() {
    static std::atomic<int> n{0};
    dir = fs::temp_directory_path() / ("vaultwire-own-login-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    fs::create_directories(dir);
  }
  ~files() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  files(const files&) = delete;
  files& operator=(const files&) = delete;
  fs::path write(const std::string& name, const std::string& content) const {
    const fs::path p = dir / name;
    std::ofstream{p, std::ios::trunc} << content;
    return p;
  }
};

vault_auth_config approle(const files& f, bool with_secret_id = true) {
  vault_auth_config a;
  a.method = vault_auth_method::approle;
  a.mount = "approle";
  a.role_id_file = f.write("role-id", "role-1\n");
  if (with_secret_id) a.secret_id_file = f.write("secret-id", "secret-1\n");
  return a;
}

nlohmann::json body_of(const own_token::login_request& r) {
  REQUIRE(r.error.empty());
  return nlohmann::json::parse(r.body.view());
}

vault_result<vault_login> login_answer(const std::string& token, std::chrono::seconds ttl, bool renewable,
                                       const std::string& type = "service") {
  vault_login l;
  l.client_token = secret_string(token);
  l.accessor = "acc-" + token;
  l.ttl = ttl;
  l.renewable = renewable;
  l.token_type = type;
  return l;
}

vault_result<vaultwire::vault_token_info> renewal(std::chrono::seconds ttl, bool renewable = true) {
  vaultwire::vault_token_info info;
  info.ttl = ttl;
  info.renewable = renewable;
  return info;
}

}  // namespace

// --- the files and the bodies --------------------------------------------------------

TEST_CASE("own_token: a secret file is read trimmed, a bad one is an error naming the path only",
          "[broker][own_token]") {
  files f;
  std::string error;
  CHECK(vaultwire::detail::read_secret_file(f.write("a", "  s3cr3t-value \r\n"), error).view() == "s3cr3t-value");
  CHECK(error.empty());
  CHECK(vaultwire::detail::read_secret_file(f.write("b", " \n"), error).empty());
  CHECK(error == "\"" + (f.dir / "b").string() + "\" is empty");
  CHECK(vaultwire::detail::read_secret_file(f.dir / "missing", error).empty());
  CHECK(error == "cannot read \"" + (f.dir / "missing").string() + "\": No such file or directory");
  CHECK(vaultwire::detail::read_secret_file(f.write("big", std::string(64 * 1024 + 1, 'x')), error).empty());
  CHECK(error == "\"" + (f.dir / "big").string() + "\" is larger than 64 KiB");
  CHECK(vaultwire::detail::read_secret_file(f.write("max", std::string(64 * 1024, 'y')), error).size() == 64 * 1024);
}

TEST_CASE("own_token: each method's login body, from files read at each login", "[broker][own_token]") {
  files f;
  SECTION("approle: role_id and secret_id (api-docs/auth/approle); a rotated secret ID is read again") {
    own_token own{approle(f)};
    auto r = own.make_login();
    CHECK(r.mount == "approle");
    CHECK(body_of(r) == nlohmann::json{{"role_id", "role-1"}, {"secret_id", "secret-1"}});
    f.write("secret-id", "secret-2");
    CHECK(body_of(own.make_login()) == nlohmann::json{{"role_id", "role-1"}, {"secret_id", "secret-2"}});
  }
  SECTION("approle without secret_id_file: the role ID alone (bind_secret_id = false)") {
    own_token own{approle(f, false)};
    CHECK(body_of(own.make_login()) == nlohmann::json{{"role_id", "role-1"}});
  }
  SECTION("approle: a secret ID that cannot be read is an error naming the key, not the contents") {
    auto a = approle(f);
    own_token own{a};
    fs::remove(*a.secret_id_file);
    auto r = own.make_login();
    CHECK(r.body.empty());
    CHECK(r.error == "vault.auth.secret_id_file: cannot read \"" + a.secret_id_file->string() +
                         "\": No such file or directory");
    f.write("secret-id", "\n");
    CHECK(own.make_login().error == "vault.auth.secret_id_file: \"" + a.secret_id_file->string() + "\" is empty");
  }
  SECTION("kubernetes and jwt: role and jwt (api-docs/auth/kubernetes, jwt); jwt may leave the role out") {
    vault_auth_config k;
    k.method = vault_auth_method::kubernetes;
    k.mount = "k8s/cluster-1";
    k.role = "vaultwire";
    k.jwt_file = f.write("sa-token", "eyJhbGciOi.payload.sig\n");
    auto r = own_token{k}.make_login();
    CHECK(r.mount == "k8s/cluster-1");
    CHECK(body_of(r) == nlohmann::json{{"role", "vaultwire"}, {"jwt", "eyJhbGciOi.payload.sig"}});
    vault_auth_config j = k;
    j.method = vault_auth_method::jwt;
    j.role.reset();
    CHECK(body_of(own_token{j}.make_login()) == nlohmann::json{{"jwt", "eyJhbGciOi.payload.sig"}});
  }
  SECTION("cert: the certificate role's name, or an empty object (api-docs/auth/cert)") {
    vault_auth_config c;
    c.method = vault_auth_method::cert;
    c.mount = "cert";
    CHECK(own_token{c}.make_login().body.view() == "{}");
    c.name = "web \"1\"";
    CHECK(body_of(own_token{c}.make_login()) == nlohmann::json{{"name", "web \"1\""}});
  }
}

TEST_CASE("own_token: login bodies escape what JSON needs escaped", "[broker][own_token]") {
  const auto body = vaultwire::detail::login_body({{"role_id", "a\"b\\c"}, {"secret_id", std::string("x\n\x01y", 4)}});
  CHECK(body.view() == R"({"role_id":"a\"b\\c","secret_id":"x\u000a\u0001y"})");
  CHECK(nlohmann::json::parse(body.view())["secret_id"] == std::string("x\n\x01y", 4));
  CHECK(vaultwire::detail::login_body({}).view() == "{}");
}

// --- the schedule alone --------------------------------------------------------------

TEST_CASE("own_token: logs in first, renews at about two thirds of the TTL asking for the login's TTL",
          "[broker][own_token]") {
  files f;
  own_token own{approle(f)};
  broker_stats stats;
  CHECK(own.read(t0).empty());
  CHECK(own.problem(t0) == "no login at auth/approle/login has been made yet");
  REQUIRE(own.due(t0) == own_token::step::login);
  own.begin();
  CHECK(own.due(t0) == own_token::step::none);  // one call at a time
  CHECK(own.problem(t0) == "the login at auth/approle/login has not answered yet");
  own.logged_in(login_answer("tok-1", 3600s, true), t0, 0.0, stats);
  CHECK(stats.own_logins_ok == 1);
  CHECK(own.read(t0).view() == "tok-1");
  CHECK(own.problem(t0).empty());
  CHECK(own.renew_increment() == 3600s);
  CHECK(own.next_at() == t0 + 2160s);  // 60 % at jitter 0
  CHECK(own.due(t0 + 2159s) == own_token::step::none);
  REQUIRE(own.due(t0 + 2160s) == own_token::step::renew);
  own.begin();
  own.done(own_token::step::renew, renewal(3600s), t0 + 2160s, 0.0, stats);
  CHECK(stats.own_token_renewals == 1);
  CHECK(own.next_at() == t0 + 2160s + 2160s);
  CHECK(own.due(t0 + 4320s) == own_token::step::renew);

  SECTION("a renewal short of what was asked (max TTL near): a new login at two thirds of what is left") {
    own.begin();
    own.done(own_token::step::renew, renewal(100s), t0 + 4320s, 0.0, stats);
    CHECK(own.next_at() == t0 + 4320s + 60s);
    CHECK(own.due(t0 + 4380s) == own_token::step::login);
    CHECK(own.read(t0 + 4380s).view() == "tok-1");  // still in use until replaced
  }
  SECTION("a renewal that says the token is no longer renewable: a new login") {
    own.begin();
    own.done(own_token::step::renew, renewal(3600s, false), t0 + 4320s, 0.0, stats);
    CHECK(own.due(t0 + 4320s + 2160s) == own_token::step::login);
  }
  SECTION("a failed renewal: a new login at once, the token kept meanwhile") {
    own.begin();
    own.done(own_token::step::renew, make_error(vault_error_kind::server_error, 500, "internal error"), t0 + 4320s,
             0.0, stats);
    CHECK(stats.own_token_failures == 1);
    CHECK(own.due(t0 + 4320s) == own_token::step::login);
    CHECK(own.read(t0 + 4320s).view() == "tok-1");
    CHECK(own.problem(t0 + 4320s).empty());
  }
  SECTION("Vault's bad-token refusal of renew-self: the token is dropped at once") {
    own.begin();
    own.done(own_token::step::renew, vwtest::vault_answer(403, {"permission denied"}, "POST auth/token/renew-self"),
             t0 + 4320s, 0.0, stats);
    CHECK(own.read(t0 + 4320s).empty());
    CHECK_FALSE(own.problem(t0 + 4320s).empty());
    CHECK(own.due(t0 + 4320s) == own_token::step::login);
  }
}

TEST_CASE("own_token: a batch or non-renewable token is replaced by a login, one past its TTL is dropped",
          "[broker][own_token]") {
  files f;
  own_token own{approle(f)};
  broker_stats stats;
  const bool batch = GENERATE(true, false);
  INFO((batch ? "batch" : "service, renewable = false"));
  REQUIRE(own.due(t0) == own_token::step::login);
  own.begin();
  own.logged_in(batch ? login_answer("hvb.1", 300s, false, "batch") : login_answer("hvs.1", 300s, false), t0, 0.0,
                stats);
  CHECK(own.due(t0 + 179s) == own_token::step::none);
  REQUIRE(own.due(t0 + 180s) == own_token::step::login);
  own.begin();
  own.logged_in(make_error(vault_error_kind::unreachable, 0, "Couldn't connect to server"), t0 + 180s, 0.0, stats);
  CHECK(stats.own_logins_failed == 1);
  CHECK(own.read(t0 + 299s).view() == (batch ? "hvb.1" : "hvs.1"));
  CHECK(own.problem(t0 + 299s).empty());
  // Its TTL over: no token to hand out, and /readyz hears the last failure.
  CHECK(own.read(t0 + 300s).empty());
  CHECK(own.problem(t0 + 300s) ==
        "login at auth/approle/login failed: cannot reach Vault at http://vault.test: Couldn't connect to server");
}

TEST_CASE("own_token: failed logins are retried after 1 s, doubling up to 60 s, with jitter",
          "[broker][own_token]") {
  files f;
  own_token own{approle(f)};
  broker_stats stats;
  time_point t = t0;
  const std::vector<std::chrono::seconds> waits{1s, 2s, 4s, 8s, 16s, 32s, 60s, 60s};
  for (auto wait : waits) {
    REQUIRE(own.due(t) == own_token::step::login);
    own.begin();
    own.logged_in(vwtest::vault_answer(400, {"invalid role or secret ID"}, "POST auth/approle/login"), t, 0.0, stats);
    CHECK(own.next_at() == t + wait);
    CHECK(own.due(t + wait - 1ms) == own_token::step::none);
    t += wait;
  }
  CHECK(stats.own_logins_denied == waits.size());
  CHECK(stats.own_logins_failed == 0);
  CHECK(own.problem(t) == "Vault refused the login at auth/approle/login: invalid role or secret ID (HTTP 400)");
  // Jitter stretches a wait by up to a quarter, never past 60 s.
  own.begin();
  own.logged_in(make_error(vault_error_kind::sealed, 503, "Vault is sealed"), t, 0.99, stats);
  CHECK(own.next_at() == t + 60s);
  own_token other{approle(f)};
  REQUIRE(other.due(t0) == own_token::step::login);
  other.begin();
  other.logged_in(make_error(vault_error_kind::sealed, 503, "Vault is sealed"), t0, 1.0, stats);
  CHECK(other.next_at() == t0 + 1250ms);
  // A success ends the streak: the next failure waits 1 s again.
  other.begin();
  other.logged_in(login_answer("tok", 100s, false), t0 + 2s, 0.0, stats);
  REQUIRE(other.due(t0 + 62s) == own_token::step::login);
  other.begin();
  other.logged_in(make_error(vault_error_kind::sealed, 503, "Vault is sealed"), t0 + 62s, 0.0, stats);
  CHECK(other.next_at() == t0 + 63s);
}

TEST_CASE("own_token: a lease call's bad-token refusal drops the token it was made with, not a newer one",
          "[broker][own_token]") {
  files f;
  own_token own{approle(f)};
  broker_stats stats;
  REQUIRE(own.due(t0) == own_token::step::login);
  own.begin();
  own.logged_in(login_answer("tok-1", 3600s, true), t0, 0.0, stats);
  std::uint64_t first = 0;
  CHECK(own.read(t0, &first).view() == "tok-1");
  CHECK(first != 0);
  REQUIRE(own.due(t0 + 2160s) == own_token::step::renew);
  own.begin();
  own.done(own_token::step::renew, make_error(vault_error_kind::timeout, 0, "no answer"), t0 + 2160s, 0.0, stats);
  REQUIRE(own.due(t0 + 2160s) == own_token::step::login);
  own.begin();
  own.logged_in(login_answer("tok-2", 3600s, true), t0 + 2161s, 0.0, stats);
  own.rejected(first, t0 + 2162s);  // about tok-1: nothing to drop
  std::uint64_t second = 0;
  CHECK(own.read(t0 + 2162s, &second).view() == "tok-2");
  CHECK(second != first);
  own.rejected(second, t0 + 2163s);
  CHECK(own.read(t0 + 2163s).empty());
  CHECK(own.due(t0 + 2163s) == own_token::step::login);
}

TEST_CASE("own_token: a final token's end is known, and its replacement login comes before its leases stop being served",
          "[broker][own_token]") {
  files f;
  own_token own{approle(f)};
  broker_stats stats;
  REQUIRE(own.due(t0) == own_token::step::login);
  own.begin();
  SECTION("renewable: not final until a renewal grants less than asked") {
    own.logged_in(login_answer("tok-1", 30s, true), t0, 0.0, stats);
    CHECK_FALSE(own.final_end());
    REQUIRE(own.due(t0 + 18s) == own_token::step::renew);
    own.begin();
    own.done(own_token::step::renew, renewal(10s), t0 + 18s, 0.0, stats);
    const auto end = own.final_end();
    REQUIRE(end);
    CHECK(end->token_hash == credential_broker::token_digest(secret_string("tok-1")));
    CHECK(end->at == t0 + 28s);
    CHECK(end->ttl == 10s);
    // Leases read with it stop being served reuse_floor(10 s) = 5 s before its end, at
    // 23 s: the login comes 2 s before that, not at two thirds of the grant (24 s).
    CHECK(own.next_at() == t0 + 21s);
  }
  SECTION("a failed renewal makes it final too") {
    own.logged_in(login_answer("tok-1", 30s, true), t0, 0.0, stats);
    REQUIRE(own.due(t0 + 18s) == own_token::step::renew);
    own.begin();
    own.done(own_token::step::renew, make_error(vault_error_kind::timeout, 0, "no answer"), t0 + 18s, 0.0, stats);
    REQUIRE(own.final_end());
    CHECK(own.final_end()->at == t0 + 30s);
    CHECK(own.final_end()->ttl == 30s);
  }
  SECTION("not renewable: final from the login; a long TTL keeps two thirds") {
    own.logged_in(login_answer("hvs.1", 300s, false), t0, 0.0, stats);
    REQUIRE(own.final_end());
    CHECK(own.final_end()->at == t0 + 300s);
    CHECK(own.next_at() == t0 + 180s);  // the floor's bound: 300 - 60 - 2 = 238 s
  }
  SECTION("a 20 s token: 13 s (20 - 5 - 2) at the latest, two thirds come first") {
    own.logged_in(login_answer("hvb.1", 20s, false, "batch"), t0, 0.0, stats);
    CHECK(own.next_at() == t0 + 12s);
    own.begin();
    own.logged_in(login_answer("hvb.2", 20s, false, "batch"), t0 + 12s, 0.9, stats);
    CHECK(own.next_at() == t0 + 12s + 13s);  // two thirds at this jitter would be 13.8 s
  }
  SECTION("too short for the floor: at half its TTL, not at once") {
    own.logged_in(login_answer("hvb.1", 4s, false, "batch"), t0, 0.0, stats);
    CHECK(own.next_at() == t0 + 2s);
  }
  SECTION("a dropped token has none") {
    own.logged_in(login_answer("hvs.1", 300s, false), t0, 0.0, stats);
    std::uint64_t generation = 0;
    REQUIRE_FALSE(own.read(t0, &generation).empty());
    own.rejected(generation, t0 + 1s);
    CHECK_FALSE(own.final_end());
  }
}

// --- the broker driving it --------------------------------------------------------------

namespace {

struct login_fixture {
  files dir;
  fake_clock clock;
  fake_vault vault;
  vaultwire::credential_broker_options options;
  std::unique_ptr<credential_broker> broker;

  explicit login_fixture(std::function<void(vaultwire::credential_broker_options&)> tweak = {}) {
    options.start_maintenance_thread = false;
    options.clock = [this] { return clock.now.load(); };
    options.jitter = [] { return 0.0; };  // renewals at 60 % of the TTL, backoff without stretch
    options.auth = approle(dir);
    options.credentials.revoke_idle_after = 1s;
    if (tweak) tweak(options);
    broker = std::make_unique<credential_broker>(vault.calls(), options);
  }

  vaultwire::broker_result<vaultwire::credential_lease> acquire(const std::string& token) {
    vaultwire::credential_request r;
    r.token = secret_string(token);
    r.mount = "database";
    r.role = "app";
    r.route = "main";
    return broker->acquire_blocking(std::move(r));
  }
  void tick(std::chrono::milliseconds d = 0ms) {
    clock.advance(d);
    broker->maintain();
  }
  std::vector<std::string> renewed_tokens() {
    std::lock_guard lock{vault.mutex};
    return vault.renew_self_tokens;
  }
};

}  // namespace

TEST_CASE("broker login: logs in at start, the token renews and revokes leases, renew-self at two thirds",
          "[broker][own_token]") {
  login_fixture f;  // login_ttl 30 s, renewable service token: renew at 18 s
  CHECK(f.broker->own_token_problem() == "no login at auth/approle/login has been made yet");
  f.tick();
  REQUIRE(f.vault.login_count() == 1);
  CHECK(f.vault.logins[0].first == "approle");
  CHECK(nlohmann::json::parse(f.vault.logins[0].second) ==
        nlohmann::json{{"role_id", "role-1"}, {"secret_id", "secret-1"}});
  CHECK(f.broker->own_token_problem().empty());
  const auto s = f.broker->stats();
  CHECK(s.own_login_method == "approle");
  CHECK(s.own_logins_ok == 1);
  f.tick();
  CHECK(f.vault.login_count() == 1);  // one login, not one per tick

  // Leases are revoked with vaultwire's token, the lease id in the body.
  REQUIRE(f.acquire("client-1"));
  f.tick(1s);
  REQUIRE(f.vault.revokes.size() == 1);
  CHECK(f.vault.revokes[0].second == "login-token-1");
  CHECK(f.vault.revoke_forms == std::vector<vaultwire::revoke_form>{vaultwire::revoke_form::body});

  f.tick(16s);  // 17 s
  CHECK(f.vault.renew_self_count() == 0);
  f.tick(1s);  // 18 s
  CHECK(f.renewed_tokens() == std::vector<std::string>{"login-token-1"});
  CHECK(f.vault.renew_self_increments == std::vector<std::chrono::seconds>{30s});  // the login's TTL
  CHECK(f.broker->stats().own_token_renewals == 1);
  f.tick(18s);
  CHECK(f.renewed_tokens().size() == 2);
  CHECK(f.vault.login_count() == 1);
}

TEST_CASE("broker login: a batch token, or a service token that is not renewable, is replaced by a new login",
          "[broker][own_token]") {
  login_fixture f;
  const bool batch = GENERATE(true, false);
  f.vault.login_renewable = false;
  if (batch) f.vault.login_token_type = "batch";
  f.tick();
  REQUIRE(f.vault.login_count() == 1);
  f.tick(17s);
  CHECK(f.vault.login_count() == 1);
  f.tick(1s);  // 18 s
  CHECK(f.vault.login_count() == 2);
  CHECK(f.vault.renew_self_count() == 0);
  REQUIRE(f.acquire("client-1"));
  f.tick(1s);
  REQUIRE(f.vault.revokes.size() == 1);
  CHECK(f.vault.revokes[0].second == "login-token-2");
}

TEST_CASE("broker login: the next login reads a rotated secret ID", "[broker][own_token]") {
  login_fixture f;
  f.vault.login_token_type = "batch";
  f.vault.login_renewable = false;
  f.tick();
  f.dir.write("secret-id", "secret-2\n");
  f.tick(18s);
  REQUIRE(f.vault.login_count() == 2);
  CHECK(nlohmann::json::parse(f.vault.logins[0].second)["secret_id"] == "secret-1");
  CHECK(nlohmann::json::parse(f.vault.logins[1].second)["secret_id"] == "secret-2");
}

TEST_CASE("broker login: a failed renewal is followed by a login, a short one by a login before the end",
          "[broker][own_token]") {
  login_fixture f;
  f.tick();
  SECTION("renew-self fails: the next tick logs in") {
    f.vault.renew_self_error = make_error(vault_error_kind::server_error, 500, "internal error");
    f.tick(18s);
    CHECK(f.vault.renew_self_count() == 1);
    CHECK(f.vault.login_count() == 1);
    CHECK(f.broker->own_token_problem().empty());  // the token is still valid meanwhile
    f.tick(200ms);
    CHECK(f.vault.login_count() == 2);
    CHECK(f.broker->stats().own_token_failures == 1);
  }
  SECTION("renew-self grants less than asked: a login before the token's leases stop being served") {
    f.vault.renew_self_grant = 10s;
    f.tick(18s);
    CHECK(f.vault.renew_self_count() == 1);
    f.tick(2900ms);
    CHECK(f.vault.login_count() == 1);
    // 3 s after the renewal: 10 s less the reuse floor of 10 s (5 s) less the login's
    // 2 s lead, sooner than two thirds of it (6 s).
    f.tick(100ms);
    CHECK(f.vault.login_count() == 2);
    f.vault.renew_self_grant.reset();
    f.tick(18s);
    CHECK(f.renewed_tokens() == std::vector<std::string>{"login-token-1", "login-token-2"});
  }
}

TEST_CASE("broker login: Vault's bad-token refusal drops the token at once and logs in again",
          "[broker][own_token]") {
  login_fixture f;
  f.tick();
  SECTION("on renew-self") {
    f.vault.renew_self_error = vwtest::vault_answer(403, {"permission denied"}, "POST auth/token/renew-self");
    f.tick(18s);
    CHECK(f.broker->own_token_problem() ==
          "vaultwire's Vault token login-acc-1 was refused by Vault as invalid or revoked (renew-self: permission "
          "denied)");
    CHECK(f.vault.login_count() == 1);
    f.vault.renew_self_error.reset();
    f.tick();
    CHECK(f.vault.login_count() == 2);
    CHECK(f.broker->own_token_problem().empty());
  }
  SECTION("on a lease revocation made with it") {
    f.vault.revoke_error = vwtest::vault_answer(403, {vwtest::invalid_token_1_17}, "PUT sys/leases/revoke");
    REQUIRE(f.acquire("client-1"));
    f.tick(1s);
    REQUIRE(f.vault.revokes.size() == 1);
    CHECK(f.vault.revokes[0].second == "login-token-1");
    CHECK_FALSE(f.broker->own_token_problem().empty());
    f.tick();
    CHECK(f.vault.login_count() == 2);
    CHECK(f.broker->own_token_problem().empty());
  }
  SECTION("but not on the ACL's denial of one path (the token is fine)") {
    f.vault.revoke_error = vwtest::vault_answer(403, {vwtest::acl_denied}, "PUT sys/leases/revoke");
    REQUIRE(f.acquire("client-1"));
    f.tick(1s);
    REQUIRE(f.vault.revokes.size() == 1);
    CHECK(f.broker->own_token_problem().empty());
    f.tick();
    CHECK(f.vault.login_count() == 1);
  }
}

TEST_CASE("broker login: failed logins back off, are counted by result, and say why for /readyz",
          "[broker][own_token]") {
  login_fixture f;
  f.vault.login_error = vwtest::vault_answer(400, {"invalid role or secret ID"}, "POST auth/approle/login");
  f.tick();  // 0 s
  CHECK(f.vault.login_count() == 1);
  f.tick(999ms);
  CHECK(f.vault.login_count() == 1);
  f.tick(1ms);  // 1 s
  CHECK(f.vault.login_count() == 2);
  f.tick(1999ms);
  CHECK(f.vault.login_count() == 2);
  f.tick(1ms);  // 3 s
  CHECK(f.vault.login_count() == 3);
  const std::string why = f.broker->own_token_problem();
  CHECK(why == "Vault refused the login at auth/approle/login: invalid role or secret ID (HTTP 400)");
  CHECK(why.find("secret-1") == std::string::npos);
  CHECK(f.broker->stats().own_logins_denied == 3);

  f.vault.login_error = make_error(vault_error_kind::unreachable, 0, "Couldn't connect to server");
  f.tick(4s);  // 7 s
  CHECK(f.vault.login_count() == 4);
  CHECK(f.broker->stats().own_logins_failed == 1);
  CHECK(f.broker->own_token_problem() ==
        "login at auth/approle/login failed: cannot reach Vault at http://vault.test: Couldn't connect to server");

  // A secret ID file gone: no request, a failed login that names the key.
  fs::remove(f.dir.dir / "secret-id");
  f.tick(8s);  // 15 s
  CHECK(f.vault.login_count() == 4);
  CHECK(f.broker->stats().own_logins_failed == 2);
  CHECK(f.broker->own_token_problem() == "login at auth/approle/login not sent: vault.auth.secret_id_file: cannot read \"" +
                                             (f.dir.dir / "secret-id").string() + "\": No such file or directory");

  f.dir.write("secret-id", "secret-3");
  f.vault.login_error.reset();
  f.tick(16s);  // 31 s
  CHECK(f.vault.login_count() == 5);
  CHECK(nlohmann::json::parse(f.vault.logins.back().second)["secret_id"] == "secret-3");
  CHECK(f.broker->own_token_problem().empty());
  CHECK(f.broker->stats().own_logins_ok == 1);
}

TEST_CASE("broker login: a token past its TTL is not used, leases fall back to the client's token",
          "[broker][own_token]") {
  login_fixture f;
  f.tick();
  // Vault answers with errors that are not outages, so the breaker stays closed.
  f.vault.renew_self_error = make_error(vault_error_kind::server_error, 500, "internal error");
  f.vault.login_error = make_error(vault_error_kind::server_error, 500, "internal error");
  auto lease = f.acquire("client-1");  // held: no idle revocation yet
  REQUIRE(lease);
  f.tick(18s);  // renew-self fails; logins fail from 18.2 s on
  for (int i = 0; i < 59; ++i) f.tick(200ms);  // 29.8 s
  CHECK(f.broker->own_token_problem().empty());
  f.tick(200ms);  // 30 s: the token's TTL is over
  CHECK(f.broker->own_token_problem() ==
        "login at auth/approle/login failed: Vault at http://vault.test is unavailable: internal error (HTTP 500)");
  lease.value().release();
  f.tick(1s);
  REQUIRE(f.vault.revokes.size() == 1);
  CHECK(f.vault.revokes[0].second == "client-1");
  CHECK(f.vault.revoke_forms[0] == vaultwire::revoke_form::path);
}

TEST_CASE("broker login: logins count toward the circuit breaker, and one may be its probe", "[broker][own_token]") {
  login_fixture f;
  f.vault.login_error = make_error(vault_error_kind::unreachable, 0, "Couldn't connect to server");
  // Failed logins at 0, 1, 3, 7 and 15 s: the fifth opens the breaker.
  for (auto wait : {0s, 1s, 2s, 4s, 8s}) f.tick(wait);
  CHECK(f.vault.login_count() == vaultwire::breaker_threshold);
  CHECK(f.broker->stats().breaker_open);
  f.vault.login_error.reset();
  f.tick(16s);  // the next login, let through as the probe
  CHECK(f.vault.login_count() == vaultwire::breaker_threshold + 1);
  const auto s = f.broker->stats();
  CHECK(s.breaker_probes == 1);
  CHECK_FALSE(s.breaker_open);
  CHECK(f.broker->own_token_problem().empty());
}

TEST_CASE("broker login: token_file keeps its own upkeep and never reports a problem", "[broker][own_token]") {
  files d;
  const fs::path file = d.write("token", "own-1\n");
  login_fixture f{[&](auto& o) {
    o.auth = vault_auth_config{};
    o.auth.method = vault_auth_method::token_file;
    o.token_file = file;
  }};
  f.tick();
  CHECK(f.vault.login_count() == 0);
  CHECK(f.vault.lookup_count_for("own-1") == 1);
  CHECK(f.broker->own_token_problem().empty());
  CHECK(f.broker->stats().own_login_method.empty());
}

TEST_CASE("broker login: sessions on vaultwire's own token end when a recheck finds it revoked, then a new login",
          "[broker][own_token][peer]") {
  login_fixture f;
  CHECK(f.broker->own_token().empty());  // no login yet
  f.tick();
  REQUIRE(f.vault.login_count() == 1);
  REQUIRE(f.broker->own_token().view() == "login-token-1");
  // A peer session reads its credential with the own token, and is rechecked like a client's.
  auto lease = f.acquire(std::string{f.broker->own_token().view()});
  REQUIRE(lease);
  std::atomic<int> revoked{0};
  lease.value().subscribe([&](vaultwire::lease_event e) {
    if (e == vaultwire::lease_event::token_revoked) ++revoked;
  });
  {
    std::lock_guard lock{f.vault.mutex};
    f.vault.lookup_error = vwtest::vault_answer(403, {vwtest::invalid_token_1_17}, "GET auth/token/lookup-self");
  }
  f.tick(f.options.credentials.token_recheck + 1s);
  CHECK(revoked == 1);
  // The rejected own token is dropped at once; the next maintenance logs in again.
  CHECK(f.broker->own_token().empty());
  CHECK_FALSE(f.broker->own_token_problem().empty());
  f.tick();
  CHECK(f.vault.login_count() == 2);
  CHECK(f.broker->own_token().view() == "login-token-2");
}

TEST_CASE("broker login: a lease read with a non-renewable own token ends with the token, before its own TTL",
          "[broker][own_token][peer]") {
  login_fixture f{[](auto& o) { o.credentials.expiry_notice = 5s; }};
  f.vault.login_renewable = false;  // 30 s, replaced by a new login at 18 s
  f.vault.lease_duration = 3600s;
  const auto start = f.clock.now.load();
  f.tick();
  REQUIRE(f.broker->own_token().view() == "login-token-1");
  // A peer session's lease, read with vaultwire's token: Vault revokes it with the
  // token at 30 s, not at its own TTL.
  auto lease = f.acquire("login-token-1");
  REQUIRE(lease);
  CHECK(lease.value().expires_at() == start + 30s);
  std::vector<vaultwire::lease_event> events;
  lease.value().subscribe([&](vaultwire::lease_event e) { events.push_back(e); });
  // A client's token is not vaultwire's: its lease keeps its TTL.
  auto client = f.acquire("client-1");
  CHECK(client.value().expires_at() == start + 3600s);

  SECTION("the next login comes first: new sessions read with the new token, the old lease's sessions end") {
    f.tick(17s);
    CHECK(f.acquire("login-token-1").value().from_cache());
    f.tick(1s);  // 18 s
    REQUIRE(f.vault.login_count() == 2);
    REQUIRE(f.broker->own_token().view() == "login-token-2");
    auto next = f.acquire(std::string{f.broker->own_token().view()});
    REQUIRE(next);
    CHECK_FALSE(next.value().from_cache());
    CHECK(next.value().lease_id() != lease.value().lease_id());
    {
      std::lock_guard lock{f.vault.mutex};
      CHECK(f.vault.creds_tokens.back() == "login-token-2");
    }
    CHECK(next.value().expires_at() == start + 18s + 30s);
    f.tick(6s);  // 24 s: 6 s left, more than expiry_notice
    CHECK(events.empty());
    // Within expiry_notice of the token's end: the notice a lease at its max TTL gives
    // (the session ends at its next idle point with 57P01).
    f.tick(1s);
    CHECK(events == std::vector<vaultwire::lease_event>{vaultwire::lease_event::expiring});
    f.tick(5s);  // 30 s: the token and its leases are gone
    CHECK(events ==
          std::vector<vaultwire::lease_event>{vaultwire::lease_event::expiring, vaultwire::lease_event::expired});
  }
  SECTION("the next login fails: the lease is served until the floor before the token's end, then not") {
    f.vault.login_error = make_error(vault_error_kind::server_error, 500, "internal error");
    f.tick(18s);
    CHECK(f.vault.login_count() == 2);
    REQUIRE(f.broker->own_token().view() == "login-token-1");  // still valid
    f.tick(4s);  // 22 s: 8 s left, above the floor of a 30 s token (7.5 s)
    auto hit = f.acquire("login-token-1");
    CHECK(hit.value().from_cache());
    CHECK(hit.value().lease_id() == lease.value().lease_id());
    f.tick(500ms);  // 7.5 s left
    auto miss = f.acquire("login-token-1");
    CHECK_FALSE(miss.value().from_cache());
    CHECK(miss.value().lease_id() != lease.value().lease_id());
    CHECK(miss.value().expires_at() == start + 30s);
  }
}

TEST_CASE("broker login: a renew-self short of what was asked ends the token's leases with it, the next login "
          "comes before they stop being served",
          "[broker][own_token][peer]") {
  login_fixture f{[](auto& o) { o.credentials.expiry_notice = 5s; }};
  f.vault.lease_duration = 3600s;
  const auto start = f.clock.now.load();
  f.tick();  // a renewable 30 s token: renew-self at 18 s
  auto lease = f.acquire("login-token-1");
  REQUIRE(lease);
  std::vector<vaultwire::lease_event> events;
  lease.value().subscribe([&](vaultwire::lease_event e) { events.push_back(e); });
  CHECK(lease.value().expires_at() == start + 3600s);  // the token is renewed: nothing ends the lease early yet

  f.vault.renew_self_grant = 10s;  // the token's max TTL is near
  f.tick(18s);
  REQUIRE(f.vault.renew_self_count() == 1);
  CHECK(lease.value().expires_at() == start + 28s);
  CHECK(events.empty());
  // The lease is served while more than reuse_floor(10 s) = 5 s is left, up to 23 s;
  // the next login comes before that, at 21 s.
  f.tick(2900ms);
  CHECK(f.vault.login_count() == 1);
  CHECK(f.acquire("login-token-1").value().from_cache());
  f.tick(100ms);  // 21 s
  REQUIRE(f.vault.login_count() == 2);
  REQUIRE(f.broker->own_token().view() == "login-token-2");
  auto next = f.acquire("login-token-2");
  CHECK_FALSE(next.value().from_cache());
  CHECK(next.value().expires_at() == start + 21s + 3600s);  // a renewable token again
  f.tick(1900ms);  // 22.9 s
  CHECK(f.acquire("login-token-1").value().from_cache());
  CHECK(events.empty());
  f.tick(100ms);  // 23 s: 5 s left, the expiry notice
  CHECK(events == std::vector<vaultwire::lease_event>{vaultwire::lease_event::expiring});
  f.tick(5s);  // 28 s
  CHECK(events ==
        std::vector<vaultwire::lease_event>{vaultwire::lease_event::expiring, vaultwire::lease_event::expired});
  CHECK_FALSE(f.acquire("login-token-1").value().from_cache());
}
