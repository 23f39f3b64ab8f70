// connect_upstream against a real PostgreSQL 15 (TLS, verify-full, SCRAM): the
// SCRAM key cache (issue 5 item 8). Logging in again with the same credential
// skips PBKDF2 — counted by scram_keys_derived() — while the server still sees,
// and logs, a full SCRAM login each time; another password misses the cache.
#include <catch2/catch.hpp>

#include <exception>
#include <optional>
#include <string>
#include <thread>

#include "proxy/upstream.hpp"
#include "support/pg_harness.hpp"

namespace {

namespace net = boost::asio;
using vaultwire::detail::upstream_login;
using vaultwire::detail::upstream_session;
using vaultwire::detail::upstream_target;

upstream_session login_once(const upstream_target& target, const std::string& user,
                            const pgwire::secret_string& password) {
  upstream_login login;
  login.user = user;
  login.password = &password;
  login.parameters = {{"database", "defaultdb"}, {"application_name", "scram-cache-test"}};
  net::io_context io;
  std::optional<upstream_session> out;
  net::co_spawn(io, vaultwire::detail::connect_upstream(target, std::move(login)),
                [&out](std::exception_ptr e, upstream_session s) {
                  if (e) std::rethrow_exception(e);
                  out.emplace(std::move(s));
                });
  io.run_for(std::chrono::seconds(30));
  REQUIRE(out.has_value());
  out->conn.reset();  // the stream belongs to this io_context: gone before it is
  return std::move(*out);
}

std::size_t count_of(const std::string& haystack, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = haystack.find(needle); at != std::string::npos; at = haystack.find(needle, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("SCRAM keys are derived once per credential, every login is still a real login",
          "[integration][upstream][scram]") {
  vwtest::pg_server pg({.auth = "scram-sha-256", .ssl_only = true});
  vaultwire::detail::tls_client_context_options o;
  o.ca_file = pg.ca_file();
  auto made = vaultwire::detail::make_client_tls_context(o);
  REQUIRE(made);
  vaultwire::detail::ssl_ctx ctx = std::move(made).value();
  upstream_target target;
  target.host = "localhost";
  target.port = static_cast<std::uint16_t>(pg.port());
  target.server_name = "localhost";
  target.tls = ctx;

  const std::string user = pg.get("SCRAM_USER");
  const pgwire::secret_string password(pg.get("SCRAM_PASSWORD"));
  const std::string authenticated = "connection authenticated: identity=\"" + user + "\" method=scram-sha-256";

  const auto before = vaultwire::detail::scram_keys_derived();
  for (int i = 0; i < 20; ++i) {
    auto s = login_once(target, user, password);
    INFO("login " << i << ": " << (s.failed ? s.failed->message : ""));
    REQUIRE_FALSE(s.failed);
    REQUIRE(s.auth_method == "SCRAM-SHA-256-PLUS");
  }
  CHECK(vaultwire::detail::scram_keys_derived() - before == 1);
  CHECK(count_of(pg.log(), authenticated) == 20);

  // Another password for the same user: a different credential, so a cache miss
  // (PBKDF2 again), and the server refuses it. Nothing is cached for it: a second
  // try derives again.
  const pgwire::secret_string wrong("not-the-password");
  for (int i = 0; i < 2; ++i) {
    auto s = login_once(target, user, wrong);
    REQUIRE(s.failed);
    CHECK(s.server_sqlstate == "28P01");
  }
  CHECK(vaultwire::detail::scram_keys_derived() - before == 3);

  // The right credential still hits the cache.
  auto s = login_once(target, user, password);
  REQUIRE_FALSE(s.failed);
  CHECK(vaultwire::detail::scram_keys_derived() - before == 3);
  CHECK(count_of(pg.log(), authenticated) == 21);
}

// With a scram executor, PBKDF2 runs there and not on the login's thread: the login
// cannot finish until that executor runs; with the keys cached it needs it no more.
TEST_CASE("SCRAM keys are derived on the scram executor", "[integration][upstream][scram]") {
  vwtest::pg_server pg({.auth = "scram-sha-256", .ssl_only = true});
  vaultwire::detail::tls_client_context_options o;
  o.ca_file = pg.ca_file();
  auto made = vaultwire::detail::make_client_tls_context(o);
  REQUIRE(made);
  upstream_target target;
  target.host = "localhost";
  target.port = static_cast<std::uint16_t>(pg.port());
  target.tls = std::move(made).value();
  const pgwire::secret_string password(pg.get("SCRAM_PASSWORD"));

  // One login whose scram executor is `crypto`; how many handlers ran there. With
  // `run_crypto`, this thread runs `crypto` until the login is over (a work guard
  // keeps it waiting for the login's post); without, `crypto` is never run.
  auto login_with = [&](bool run_crypto) {
    net::io_context crypto;
    auto work = net::make_work_guard(crypto);
    upstream_login login;
    login.user = pg.get("SCRAM_USER");
    login.password = &password;
    login.parameters = {{"database", "defaultdb"}};
    login.scram_executor = crypto.get_executor();
    net::io_context io;
    std::optional<upstream_session> out;
    net::co_spawn(io, vaultwire::detail::connect_upstream(target, std::move(login)),
                  [&out, &work](std::exception_ptr e, upstream_session s) {
                    work.reset();
                    if (e) std::rethrow_exception(e);
                    s.conn.reset();
                    out.emplace(std::move(s));
                  });
    std::thread login_thread([&io] { io.run_for(std::chrono::seconds(30)); });
    const std::size_t handlers = run_crypto ? crypto.run() : 0;
    login_thread.join();
    REQUIRE(out.has_value());
    INFO((out->failed ? out->failed->message : std::string()));
    CHECK_FALSE(out->failed);
    return handlers;
  };

  const auto before = vaultwire::detail::scram_keys_derived();
  CHECK(login_with(true) >= 1);
  CHECK(vaultwire::detail::scram_keys_derived() - before == 1);
  CHECK(login_with(false) == 0);  // cached keys: the login finishes without `crypto`
  CHECK(vaultwire::detail::scram_keys_derived() - before == 1);
}
