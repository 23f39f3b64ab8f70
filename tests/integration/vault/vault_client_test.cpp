// vault_client against the real vault-dev server and a real PostgreSQL 15 (TLS):
// credentials, renew, revoke (the SQL user disappears), token lookup/renew, and the
// failures a client must see with the right SQLSTATE (403, sealed, 5xx, timeout,
// connection reset, closed port), plus HTTPS with a CA file.
#include <catch2/catch.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "support/pg_harness.hpp"
#include "support/vault_dev.hpp"
#include "vault/vault_await.hpp"
#include "vault/vault_client.hpp"

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

namespace {

using json = nlohmann::json;
using pgwire::secret_string;
using vaultwire::vault_client;
using vaultwire::vault_error_kind;
using vaultwire::vault_result;

// Enables the database engine at `database/`, a config `pg` for the harness and a
// role `app` (default TTL 5 minutes, max 1 hour).
void provision(const vwtest::vault_dev_process& vd, const vwtest::pg_server& pg) {
  vwtest::provision_database(vd, pg, "app");
  vwtest::write_owned_role(vd, "app", "5m", "1h");
}

bool role_exists(const vwtest::pg_server& pg, const std::string& user) {
  return pg.psql("select count(*) from pg_roles where rolname='" + user + "'").find('1') != std::string::npos;
}

// A free loopback port with nothing listening on it (bound, then closed).
int closed_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  socklen_t len = sizeof sa;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
  ::close(fd);
  return ntohs(sa.sin_port);
}

// Established TCP connections from this host to 127.0.0.1:port (/proc/net/tcp).
int established_connections_to(int port) {
  const auto r = vwtest::run_command("cat /proc/net/tcp");
  int count = 0;
  std::istringstream lines(r.output);
  std::string line;
  char want[16];
  std::snprintf(want, sizeof want, "0100007F:%04X", port);
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string sl, local, remote, state;
    fields >> sl >> local >> remote >> state;
    if (remote == want && state == "01") ++count;
  }
  return count;
}

// Runs an async call and waits for its one callback; records the callback's thread.
template <class T, class Start>
vault_result<T> await_result(Start start, std::thread::id* on_thread = nullptr) {
  auto promise = std::make_shared<std::promise<vault_result<T>>>();
  auto future = promise->get_future();
  start([promise, on_thread](vault_result<T> r) {
    if (on_thread != nullptr) *on_thread = std::this_thread::get_id();
    promise->set_value(std::move(r));
  });
  REQUIRE(future.wait_for(std::chrono::seconds(30)) == std::future_status::ready);
  return future.get();
}

std::string describe(const vaultwire::vault_error& e) {
  return std::string(vaultwire::to_string(e.kind)) + " " + std::to_string(e.http_status) + ": " + e.message;
}


// What read_in_coroutine saw.
struct coroutine_outcome {
  std::string username;
  std::string error;
  bool revoked = false;
  std::thread::id resumed_on;
  std::thread::id resumed_after_revoke_on;
};

// A named coroutine with by-value parameters (STYLE.md §2 rule 3).
boost::asio::awaitable<void> read_in_coroutine(vault_client* client, secret_string token, coroutine_outcome* out) {
  auto creds = co_await vaultwire::async_vault<vaultwire::vault_credential>(
      [&](auto done) { client->read_credentials("database", "app", token.clone(), std::move(done)); });
  out->resumed_on = std::this_thread::get_id();
  if (!creds) {
    out->error = describe(creds.error());
    co_return;
  }
  out->username = creds.value().username;
  auto revoked = co_await vaultwire::async_vault<void>(
      [&](auto done) { client->revoke_lease(creds.value().lease_id, std::move(token), std::move(done)); });
  out->resumed_after_revoke_on = std::this_thread::get_id();
  out->revoked = static_cast<bool>(revoked);
}

// A one-shot HTTP server on loopback: accepts one connection, records the request
// head, answers `reply` and closes. accepted() says whether anyone connected.
class one_shot_server {
 public:
  explicit one_shot_server(std::string reply) : reply_(std::move(reply)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0);
    REQUIRE(::listen(fd_, 4) == 0);
    socklen_t len = sizeof sa;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~one_shot_server() {
    ::shutdown(fd_, SHUT_RDWR);  // wakes accept()
    thread_.join();
    ::close(fd_);
  }
  one_shot_server(const one_shot_server&) = delete;
  one_shot_server& operator=(const one_shot_server&) = delete;

  [[nodiscard]] int port() const { return port_; }
  [[nodiscard]] std::string address() const { return "http://127.0.0.1:" + std::to_string(port_); }
  [[nodiscard]] std::string request() {
    std::lock_guard lock(mutex_);
    return request_;
  }
  [[nodiscard]] bool accepted() {
    std::lock_guard lock(mutex_);
    return accepted_;
  }

 private:
  void serve() {
    const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;
    std::string head;
    char buf[4096];
    while (head.find("\r\n\r\n") == std::string::npos) {
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      head.append(buf, static_cast<std::size_t>(n));
    }
    // The body, when the request has one.
    const auto length_at = head.find("Content-Length: ");
    const auto end = head.find("\r\n\r\n");
    if (length_at != std::string::npos && end != std::string::npos) {
      const std::size_t want = std::stoul(head.substr(length_at + 16));
      while (head.size() < end + 4 + want) {
        const ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        head.append(buf, static_cast<std::size_t>(n));
      }
    }
    {
      std::lock_guard lock(mutex_);
      accepted_ = true;
      request_ = head;
    }
    (void)::send(c, reply_.data(), reply_.size(), MSG_NOSIGNAL);
    ::shutdown(c, SHUT_WR);
    while (::recv(c, buf, sizeof buf, 0) > 0) {
    }
    ::close(c);
  }

  std::string reply_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::mutex mutex_;
  std::string request_;
  bool accepted_ = false;
};

// One PostgreSQL and one vault-dev for the sections below (Catch2 re-enters the test
// case per section; starting both each time would cost seconds per section). Each
// section leaves Vault unsealed and consumes the faults it injects.
struct shared_servers {
  vwtest::pg_server pg;
  vwtest::vault_dev_process vd;
  shared_servers() { provision(vd, pg); }
};

shared_servers& servers() {
  static shared_servers s;
  return s;
}

}  // namespace

TEST_CASE("vault_client reads, renews and revokes database credentials", "[integration][vault]") {
  auto& pg = servers().pg;
  auto& vd = servers().vd;
  vd.dev_post("fail/clear");
  vault_client client({.address = vd.address(), .request_timeout = std::chrono::seconds(2), .threads = 4});
  const secret_string root(vd.root_token());

  SECTION("read, renew, revoke; the SQL user comes and goes") {
    std::thread::id callback_thread;
    auto creds = await_result<vaultwire::vault_credential>(
        [&](auto done) { client.read_credentials("database", "app", root.clone(), std::move(done)); },
        &callback_thread);
    INFO((creds ? std::string() : describe(creds.error())));
    REQUIRE(creds);
    CHECK(callback_thread != std::this_thread::get_id());
    const auto& c = creds.value();
    // vault-dev's --root-token is -dev-root-token-id: display name "token".
    CHECK(c.username.starts_with("v-token-"));
    CHECK(c.lease_id.starts_with("database/creds/app/"));
    CHECK(c.lease_duration == std::chrono::minutes(5));
    CHECK(c.renewable);
    CHECK(c.password.size() >= 20);
    REQUIRE(role_exists(pg, c.username));

    auto renewed = client.renew_lease_blocking(c.lease_id, std::chrono::minutes(20), root);
    INFO((renewed ? std::string() : describe(renewed.error())));
    REQUIRE(renewed);
    CHECK(renewed.value().lease_id == c.lease_id);
    CHECK(renewed.value().lease_duration == std::chrono::minutes(20));
    CHECK(renewed.value().renewable);

    auto capped = client.renew_lease_blocking(c.lease_id, std::chrono::hours(2), root);
    REQUIRE(capped);
    CHECK(capped.value().lease_duration <= std::chrono::hours(1));
    CHECK_FALSE(capped.value().warnings.empty());

    auto revoked = await_result<void>(
        [&](auto done) { client.revoke_lease(c.lease_id, root.clone(), std::move(done)); });
    INFO((revoked ? std::string() : describe(revoked.error())));
    REQUIRE(revoked);
    CHECK_FALSE(role_exists(pg, c.username));
    CHECK(vd.dev_get("leases").find(c.lease_id) == std::string::npos);

    // Renewing a revoked lease is Vault's 400 "lease not found".
    auto gone = client.renew_lease_blocking(c.lease_id, std::chrono::seconds(0), root);
    REQUIRE_FALSE(gone);
    CHECK(gone.error().kind == vault_error_kind::bad_request);
    CHECK(gone.error().message == "lease not found");
  }

  SECTION("a bad token is forbidden: 28P01 with Vault's text, never the token") {
    const secret_string bad("hvs.NotARealTokenAtAll12345");
    auto r = client.read_credentials_blocking("database", "app", bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == vault_error_kind::forbidden);
    CHECK(r.error().http_status == 403);
    CHECK(r.error().sqlstate() == "28P01");
    CHECK(r.error().to_client_message() == "Vault rejected the token: permission denied");
    CHECK(r.error().to_client_message().find(bad.view()) == std::string::npos);

    CHECK(r.error().refusal == vaultwire::vault_refusal::bad_token);

    // A token whose policy lacks the role: ACL denial, multierror text condensed, told
    // apart on the raw errors[]: the token is valid, the role is denied (28000).
    const auto created = json::parse(
        vd.v1_ok("POST", "auth/token/create", json{{"policies", {"default"}}, {"ttl", "1h"}}.dump()));
    const secret_string weak(created["auth"]["client_token"].get<std::string>());
    auto denied = client.read_credentials_blocking("database", "app", weak);
    REQUIRE_FALSE(denied);
    CHECK(denied.error().kind == vault_error_kind::forbidden);
    CHECK(denied.error().message == "permission denied");
    CHECK(denied.error().policy_denied());
    CHECK(denied.error().sqlstate() == "28000");

    // Vault 1.17's words for a bad token: still a bad token.
    vd.dev_post("invalid-token", json{{"style", "1.17"}}.dump());
    auto bad_1_17 = client.read_credentials_blocking("database", "app", bad);
    vd.dev_post("invalid-token", json{{"style", "legacy"}}.dump());
    REQUIRE_FALSE(bad_1_17);
    CHECK(bad_1_17.error().refusal == vaultwire::vault_refusal::bad_token);
    CHECK(bad_1_17.error().message == "permission denied; invalid token");
    CHECK(bad_1_17.error().sqlstate() == "28P01");

    // An unknown role is Vault's 400.
    auto unknown = client.read_credentials_blocking("database", "nope", root);
    REQUIRE_FALSE(unknown);
    CHECK(unknown.error().kind == vault_error_kind::bad_request);
    CHECK(unknown.error().message == "unknown role: nope");
    CHECK(unknown.error().sqlstate() == "28P01");
  }

  SECTION("lookup-self and renew-self") {
    auto me = client.lookup_self_blocking(root);
    REQUIRE(me);
    CHECK(me.value().policies == std::vector<std::string>{"root"});
    CHECK(me.value().display_name == "token");
    CHECK(me.value().ttl == std::chrono::seconds(0));
    CHECK_FALSE(me.value().renewable);

    const auto created = json::parse(vd.v1_ok(
        "POST", "auth/token/create", json{{"policies", {"default"}}, {"ttl", "1h"}, {"display_name", "app"}}.dump()));
    const secret_string token(created["auth"]["client_token"].get<std::string>());
    const std::string accessor = created["auth"]["accessor"].get<std::string>();

    auto info = await_result<vaultwire::vault_token_info>(
        [&](auto done) { client.lookup_self(token.clone(), std::move(done)); });
    REQUIRE(info);
    CHECK(info.value().accessor == accessor);
    CHECK(info.value().display_name == "token-app");
    CHECK(info.value().renewable);
    CHECK(info.value().ttl > std::chrono::minutes(59));
    CHECK(info.value().ttl <= std::chrono::hours(1));

    auto renewed = client.renew_self_blocking(token, std::chrono::hours(2));
    INFO((renewed ? std::string() : describe(renewed.error())));
    REQUIRE(renewed);
    CHECK(renewed.value().accessor == accessor);
    CHECK(renewed.value().ttl == std::chrono::hours(2));

    // The root token cannot be renewed: 400 "lease is not renewable".
    auto root_renew = client.renew_self_blocking(root, std::chrono::seconds(0));
    REQUIRE_FALSE(root_renew);
    CHECK(root_renew.error().kind == vault_error_kind::bad_request);
  }

  SECTION("many concurrent requests: each callback exactly once, on a pool thread") {
    constexpr int n = 24;
    std::mutex m;
    std::vector<std::string> leases;
    std::set<std::thread::id> threads;
    std::atomic<int> failures{0};
    std::atomic<int> calls{0};
    std::promise<void> all_done;
    for (int i = 0; i < n; ++i) {
      client.read_credentials("database", "app", root.clone(), [&](vault_result<vaultwire::vault_credential> r) {
        std::lock_guard lock(m);
        threads.insert(std::this_thread::get_id());
        if (r) leases.push_back(r.value().lease_id);
        else ++failures;
        if (++calls == n) all_done.set_value();
      });
    }
    REQUIRE(all_done.get_future().wait_for(std::chrono::seconds(60)) == std::future_status::ready);
    CHECK(calls == n);
    CHECK(failures == 0);
    CHECK(threads.size() <= 4);
    CHECK(threads.count(std::this_thread::get_id()) == 0);
    CHECK(std::set<std::string>(leases.begin(), leases.end()).size() == leases.size());
    for (const auto& id : leases) CHECK(client.revoke_lease_blocking(id, root));
  }

  SECTION("sealed Vault: 08001 with the address and Vault's text") {
    vd.dev_post("seal");
    auto r = client.read_credentials_blocking("database", "app", root);
    vd.dev_post("unseal");
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == vault_error_kind::sealed);
    CHECK(r.error().http_status == 503);
    CHECK(r.error().sqlstate() == "08001");
    CHECK(r.error().to_client_message() == "Vault at " + vd.address() + " is unavailable: Vault is sealed (HTTP 503)");
    CHECK(client.read_credentials_blocking("database", "app", root));
  }

  SECTION("injected 500 and 429") {
    vd.dev_post("fail", json{{"path", "database/creds/app"}, {"status", 500}}.dump());
    auto r = client.read_credentials_blocking("database", "app", root);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == vault_error_kind::server_error);
    CHECK(r.error().message == "injected failure (vault-dev /_dev/fail)");
    CHECK(r.error().sqlstate() == "08001");

    vd.dev_post("fail", json{{"path", "database/creds/app"}, {"status", 429}}.dump());
    auto limited = client.read_credentials_blocking("database", "app", root);
    REQUIRE_FALSE(limited);
    CHECK(limited.error().kind == vault_error_kind::rate_limited);
    CHECK(limited.error().sqlstate() == "08001");
  }

  SECTION("a quota's 429 carries its Retry-After; a renewal's 400 for a failed database call is not a lease gone") {
    vd.dev_post("fail", json{{"path", "database/creds/app"},
                             {"status", 429},
                             {"errors", {"request path \"database/creds/app\": rate limit quota exceeded"}},
                             {"headers", {{"Retry-After", "17"}}}}
                            .dump());
    auto limited = client.read_credentials_blocking("database", "app", root);
    REQUIRE_FALSE(limited);
    CHECK(limited.error().kind == vault_error_kind::rate_limited);
    CHECK(limited.error().retry_after == std::chrono::seconds(17));
    CHECK(limited.error().message == "request path \"database/creds/app\": rate limit quota exceeded");

    auto c = client.read_credentials_blocking("database", "app", root);
    REQUIRE(c);
    const std::string db_down = "failed to renew entry: resp: (*logical.Response)(nil) err: dial error";
    vd.dev_post("fail", json{{"path", "sys/leases/renew"}, {"status", 400}, {"errors", {db_down}}}.dump());
    auto failed = client.renew_lease_blocking(c.value().lease_id, std::chrono::seconds(0), root);
    REQUIRE_FALSE(failed);
    CHECK(failed.error().kind == vault_error_kind::bad_request);
    CHECK(failed.error().message == db_down);
    CHECK(failed.error().refusal == vaultwire::vault_refusal::none);
    CHECK(client.revoke_lease_blocking(c.value().lease_id, root));
    auto gone = client.renew_lease_blocking(c.value().lease_id, std::chrono::seconds(0), root);
    REQUIRE_FALSE(gone);
    CHECK(gone.error().refusal == vaultwire::vault_refusal::lease_gone);
  }

  SECTION("a Vault slower than request_timeout is a timeout") {
    vd.dev_post("fail", json{{"path", "database/creds/app"}, {"mode", "delay"}, {"delay_ms", 4000}}.dump());
    const auto started = std::chrono::steady_clock::now();
    auto r = client.read_credentials_blocking("database", "app", root);
    const auto took = std::chrono::steady_clock::now() - started;
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == vault_error_kind::timeout);
    CHECK(r.error().sqlstate() == "08001");
    CHECK(r.error().to_client_message().starts_with("Vault at " + vd.address() + " did not answer in time"));
    CHECK(took >= std::chrono::milliseconds(1900));
    CHECK(took < std::chrono::milliseconds(3900));
  }

  SECTION("a connection reset mid-answer is unreachable; the next request works") {
    // Warm a keep-alive connection first, so the reset also hits a reused one.
    REQUIRE(client.lookup_self_blocking(root));
    vd.dev_post("fail", json{{"path", "database/creds/app"}, {"mode", "reset"}}.dump());
    auto r = client.read_credentials_blocking("database", "app", root);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == vault_error_kind::unreachable);
    CHECK(r.error().sqlstate() == "08001");
    CHECK(r.error().to_client_message().starts_with("cannot reach Vault at " + vd.address() + ": "));
    auto again = client.read_credentials_blocking("database", "app", root);
    INFO((again ? std::string() : describe(again.error())));
    CHECK(again);
  }

  SECTION("no connection to Vault outlives its request (it would hold the last answer)") {
    vault_client fresh({.address = vd.address(), .request_timeout = std::chrono::seconds(2), .threads = 2});
    for (int i = 0; i < 20; ++i) REQUIRE(fresh.lookup_self_blocking(root));
    for (int i = 0; i < 10; ++i) {
      REQUIRE(await_result<vaultwire::vault_token_info>(
          [&](auto done) { fresh.lookup_self(root.clone(), std::move(done)); }));
    }
    // Each request's handle was cleaned up before its result came back: its connection,
    // TLS read buffer and curl's download buffer went with it (wiped on free).
    CHECK(established_connections_to(vd.port()) == 0);
  }

  SECTION("a coroutine awaits the client and resumes on its own executor") {
    boost::asio::io_context io;
    coroutine_outcome out;
    boost::asio::co_spawn(io, read_in_coroutine(&client, root.clone(), &out), boost::asio::detached);
    io.run_for(std::chrono::seconds(30));
    INFO(out.error);
    REQUIRE(out.username.starts_with("v-token-"));
    CHECK(out.resumed_on == std::this_thread::get_id());
    CHECK(out.revoked);
    CHECK(out.resumed_after_revoke_on == std::this_thread::get_id());
    CHECK_FALSE(role_exists(pg, out.username));
  }

  SECTION("debug logs name requests and leases, never tokens or passwords") {
    std::ostringstream captured;
    auto logger = std::make_shared<spdlog::logger>("vault-log-scan",
                                                   std::make_shared<spdlog::sinks::ostream_sink_mt>(captured));
    logger->set_level(spdlog::level::trace);
    auto previous = spdlog::default_logger();
    spdlog::set_default_logger(logger);
    std::string lease_id;
    std::string password;
    {
      auto creds = client.read_credentials_blocking("database", "app", root);
      REQUIRE(creds);
      lease_id = creds.value().lease_id;
      password = std::string(creds.value().password.view());
      CHECK(client.renew_lease_blocking(lease_id, std::chrono::minutes(10), root));
      CHECK(client.lookup_self_blocking(root));
      CHECK(client.revoke_lease_blocking(lease_id, root));
      CHECK_FALSE(client.read_credentials_blocking("database", "app", secret_string("hvs.PlantedBadToken0000000")));
    }
    spdlog::set_default_logger(previous);
    const std::string log = captured.str();

    // Positive controls: the log has the lines, and the scan finds a planted secret.
    CHECK(log.find(lease_id) != std::string::npos);
    CHECK(log.find("GET database/creds/app -> 200") != std::string::npos);
    const auto secrets = json::parse(vd.dev_get("secrets"));
    std::vector<std::string> all = secrets["tokens"].get<std::vector<std::string>>();
    for (const auto& p : secrets["passwords"]) all.push_back(p.get<std::string>());
    all.push_back("hvs.PlantedBadToken0000000");
    REQUIRE(all.size() >= 3);
    CHECK(std::find(all.begin(), all.end(), password) != all.end());
    CHECK((log + vd.root_token()).find(vd.root_token()) != std::string::npos);
    for (const auto& secret : all) {
      INFO("secret #" << (&secret - all.data()));
      CHECK(log.find(secret) == std::string::npos);
    }
  }

  SECTION("generic request: list roles") {
    auto r = client.request_blocking("LIST", "database/roles", "", root);
    INFO((r ? std::string() : describe(r.error())));
    REQUIRE(r);
    CHECK(r.value().http_status == 200);
    CHECK(json::parse(r.value().body)["data"]["keys"] == json::array({"app"}));
    auto missing = client.request_blocking("GET", "database/roles/none", "", root);
    REQUIRE_FALSE(missing);
    CHECK(missing.error().kind == vault_error_kind::not_found);
  }
}

TEST_CASE("vault_client: a closed port is unreachable (08001)", "[integration][vault]") {
  const std::string address = "http://127.0.0.1:" + std::to_string(closed_port());
  vault_client client({.address = address, .request_timeout = std::chrono::seconds(2), .threads = 1});
  auto r = await_result<vaultwire::vault_credential>(
      [&](auto done) { client.read_credentials("database", "app", secret_string("hvs.x"), std::move(done)); });
  REQUIRE_FALSE(r);
  CHECK(r.error().kind == vault_error_kind::unreachable);
  CHECK(r.error().http_status == 0);
  CHECK(r.error().sqlstate() == "08001");
  CHECK(r.error().to_client_message().starts_with("cannot reach Vault at " + address + ": "));
}

TEST_CASE("vault_client speaks HTTPS with a CA file and refuses an unknown CA", "[integration][vault]") {
  const auto& pg = servers().pg;  // for its TLS material: a CA and a localhost certificate
  const std::string tls = pg.get("TLS_DIR");
  vwtest::vault_dev_process vd({.tls_cert = tls + "/server.crt", .tls_key = tls + "/server.key"});
  REQUIRE(vd.address().starts_with("https://"));
  const secret_string root(vd.root_token());
  // The certificate names localhost and 127.0.0.1.
  const std::string address = "https://localhost:" + std::to_string(vd.port());

  vault_client good({.address = address, .ca_file = pg.get("CA"), .request_timeout = std::chrono::seconds(3)});
  auto me = good.lookup_self_blocking(root);
  INFO((me ? std::string() : describe(me.error())));
  REQUIRE(me);
  CHECK(me.value().display_name == "token");

  vault_client wrong_ca(
      {.address = address, .ca_file = pg.get("OTHER_CA"), .request_timeout = std::chrono::seconds(3)});
  auto refused = wrong_ca.lookup_self_blocking(root);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().kind == vault_error_kind::unreachable);
  CHECK(refused.error().sqlstate() == "08001");
  INFO(refused.error().message);
  CHECK(refused.error().message.find("certificate") != std::string::npos);
}

TEST_CASE("vault_client follows one redirect with the same method, headers and body", "[integration][vault]") {
  // As Vault's client (api/client.go rawRequestWithContext): a 307 from a standby is
  // re-sent to the Location with the same method and body.
  one_shot_server active("HTTP/1.1 204 No Content\r\n\r\n");
  const std::string location = active.address() + "/v1/sys/leases/revoke";
  one_shot_server standby("HTTP/1.1 307 Temporary Redirect\r\nLocation: " + location +
                          "\r\nContent-Length: 0\r\n\r\n");
  vault_client client({.address = standby.address(),
                       .vault_namespace = "admin",
                       .request_timeout = std::chrono::seconds(2),
                       .threads = 1});
  const secret_string token("hvs.RedirectTestToken000000");
  auto r = client.revoke_lease_blocking("database/creds/app/abc", token, vaultwire::revoke_form::body);
  INFO((r ? std::string() : describe(r.error())));
  REQUIRE(r);
  for (const std::string& head : {standby.request(), active.request()}) {
    INFO(head);
    CHECK(head.starts_with("PUT /v1/sys/leases/revoke HTTP/1.1\r\n"));
    CHECK(head.find("X-Vault-Token: hvs.RedirectTestToken000000\r\n") != std::string::npos);
    CHECK(head.find("X-Vault-Namespace: admin\r\n") != std::string::npos);
    CHECK(head.find("X-Vault-Request: true\r\n") != std::string::npos);
    CHECK(head.ends_with("\r\n\r\n{\"lease_id\":\"database/creds/app/abc\"}"));
  }
}

TEST_CASE("vault_client follows no second redirect", "[integration][vault]") {
  one_shot_server third("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
  const std::string third_location = third.address() + "/v1/database/creds/app";
  one_shot_server second("HTTP/1.1 302 Found\r\nLocation: " + third_location + "\r\nContent-Length: 0\r\n\r\n");
  const std::string second_location = second.address() + "/v1/database/creds/app";
  one_shot_server first("HTTP/1.1 307 Temporary Redirect\r\nLocation: " + second_location +
                        "\r\nContent-Length: 0\r\n\r\n");
  vault_client client({.address = first.address(), .request_timeout = std::chrono::seconds(2), .threads = 1});
  const secret_string token("hvs.RedirectTestToken000000");
  auto r = client.read_credentials_blocking("database", "app", token);
  REQUIRE_FALSE(r);
  CHECK(r.error().kind == vault_error_kind::redirected);
  CHECK(r.error().http_status == 302);
  CHECK(r.error().sqlstate() == "08001");
  CHECK(r.error().to_client_message() ==
        "Vault at " + first.address() + " answered with a redirect vaultwire does not follow (HTTP 302 to " +
            third_location + " after a redirect to " + second_location +
            "; vaultwire follows one redirect); set vault.address to the active node");
  CHECK(second.request().starts_with("GET /v1/database/creds/app HTTP/1.1\r\n"));
  CHECK_FALSE(third.accepted());
}

TEST_CASE("vault_client with a namespace works only inside it", "[integration][vault]") {
  auto& vd = servers().vd;
  const secret_string root(vd.root_token());
  vault_client in_admin({.address = vd.address(), .vault_namespace = "admin"});
  vault_client outside({.address = vd.address()});
  auto created = in_admin.request_blocking("POST", "auth/token/create",
                                           json{{"policies", {"default"}}, {"ttl", "1h"}}.dump(), root);
  INFO((created ? std::string() : describe(created.error())));
  REQUIRE(created);
  auto body = json::parse(created.value().body);
  const secret_string token(body["auth"]["client_token"].get<std::string>());
  auto inside = in_admin.lookup_self_blocking(token);
  REQUIRE(inside);
  CHECK(inside.value().accessor == body["auth"]["accessor"].get<std::string>());
  auto other = outside.lookup_self_blocking(token);
  REQUIRE_FALSE(other);
  CHECK(other.error().kind == vault_error_kind::forbidden);
}
