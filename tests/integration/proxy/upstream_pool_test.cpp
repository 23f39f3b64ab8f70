// upstream_pool against a real PostgreSQL 15 (TLS, verify-full, SCRAM): upstream
// reuse. A connection checked in is reset (DISCARD ALL) before it is kept: session
// state a client left behind (a SET, a temporary table) is gone when the next client
// gets it, and the ParameterStatus set to replay is the server's after the reset.
// Bounds per key and in total, a failing reset, a connection the server killed while
// idle, evict_lease, idle_timeout, the lease margin, and a checkout that waits for a
// reset under way (on the same thread and on another).
#include <catch2/catch.hpp>

#include <poll.h>
#include <sys/socket.h>

#include <pgwire/decoder.hpp>
#include <pgwire/encoder.hpp>
#include <pgwire/messages.hpp>

#include <chrono>
#include <exception>
#include <functional>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "proxy/splice.hpp"
#include "proxy/upstream.hpp"
#include "proxy/upstream_pool.hpp"
#include "support/pg_harness.hpp"

namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;
using vaultwire::pool_config;
using vaultwire::detail::pooled_upstream;
using vaultwire::detail::stream;
using vaultwire::detail::upstream_login;
using vaultwire::detail::upstream_pool;
using vaultwire::detail::upstream_session;
using vaultwire::detail::upstream_target;
using param_list = std::vector<std::pair<std::string, std::string>>;

// Runs `a` on `ex` (an executor of `io`) until it completes.
template <class T, class Executor>
T run(net::io_context& io, const Executor& ex, net::awaitable<T> a) {
  std::optional<T> out;
  std::exception_ptr failure;
  net::co_spawn(ex, std::move(a), [&out, &failure](std::exception_ptr e, T v) {
    failure = e;
    if (!e) out.emplace(std::move(v));
  });
  io.restart();
  io.run_for(30s);
  if (failure) std::rethrow_exception(failure);
  REQUIRE(out.has_value());
  return std::move(*out);
}

// The replies to one simple Query, up to ReadyForQuery.
struct sql_reply {
  std::error_code error;          // the stream failed
  std::vector<std::string> rows;  // first column of each DataRow (NULL as "")
  std::string sqlstate;           // of an ErrorResponse
  char status = 0;                // of ReadyForQuery
  param_list parameter_status;
};

net::awaitable<sql_reply> simple_query(stream* s, std::string sql) {
  sql_reply out;
  std::vector<std::uint8_t> q;
  pgwire::message_builder b(q);
  b.begin('Q');
  b.add_cstring(sql);
  if (!b.finish()) co_return out;
  co_await s->write_all(q, out.error);
  std::vector<std::uint8_t> in;
  std::array<std::uint8_t, 4096> chunk{};
  while (!out.error) {
    const std::size_t n = co_await s->read_some(chunk, out.error);
    in.insert(in.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(n));
    for (;;) {
      const auto r = pgwire::decode_message(in, 1 << 20, pgwire::direction::backend);
      if (r.status != pgwire::decode_status::message) break;
      const auto& m = r.message;
      if (m.type == 'D' && m.body.size() >= 6) {
        const auto len = static_cast<std::int32_t>((std::uint32_t{m.body[2]} << 24) | (std::uint32_t{m.body[3]} << 16) |
                                                   (std::uint32_t{m.body[4]} << 8) | std::uint32_t{m.body[5]});
        out.rows.emplace_back(len < 0 ? std::string() : std::string(m.body.begin() + 6, m.body.begin() + 6 + len));
      } else if (m.type == 'E') {
        out.sqlstate = std::string(pgwire::parse_error_response(m.body).value().sqlstate());
      } else if (m.type == 'S') {
        auto ps = pgwire::parse_parameter_status(m.body).value();
        out.parameter_status.emplace_back(ps.name, ps.value);
      } else if (m.type == 'Z') {
        out.status = static_cast<char>(m.body[0]);
        co_return out;
      }
      in.erase(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(r.consumed));
    }
  }
  co_return out;
}

net::awaitable<bool> checkin_of(std::shared_ptr<upstream_pool> pool, std::string key, pooled_upstream up) {
  co_return co_await pool->checkin(std::move(key), std::move(up));
}

param_list params_of(const std::vector<std::uint8_t>& bytes) {
  param_list out;
  std::span<const std::uint8_t> rest(bytes);
  while (!rest.empty()) {
    const auto r = pgwire::decode_message(rest, 1 << 20, pgwire::direction::backend);
    REQUIRE(r.status == pgwire::decode_status::message);
    REQUIRE(r.message.type == 'S');
    auto ps = pgwire::parse_parameter_status(r.message.body).value();
    out.emplace_back(ps.name, ps.value);
    rest = rest.subspan(r.consumed);
  }
  return out;
}

std::vector<std::uint8_t> encode(const param_list& params) {
  std::vector<std::uint8_t> out;
  for (const auto& [n, v] : params) REQUIRE(pgwire::encode_parameter_status(out, n, v));
  return out;
}

std::string value_of(const param_list& params, const std::string& name) {
  for (const auto& [n, v] : params) {
    if (n == name) return v;
  }
  return "<missing>";
}

// PostgreSQL with TLS and SCRAM, logins as the harness's SCRAM user.
struct pool_fixture {
  vwtest::pg_server pg{{.auth = "scram-sha-256", .ssl_only = true}};
  vaultwire::detail::ssl_ctx ctx;
  upstream_target target;
  pgwire::secret_string password{pg.get("SCRAM_PASSWORD")};
  net::io_context io;

  pool_fixture() {
    vaultwire::detail::tls_client_context_options o;
    o.ca_file = pg.ca_file();
    auto made = vaultwire::detail::make_client_tls_context(o);
    REQUIRE(made);
    ctx = std::move(made).value();
    target.host = "localhost";
    target.port = static_cast<std::uint16_t>(pg.port());
    target.server_name = "localhost";
    target.tls = ctx;
  }

  // A fresh login, bound to io, as a session hands it to the pool.
  pooled_upstream login(const std::string& lease_id, std::chrono::steady_clock::duration lease_left = 1h) {
    upstream_login l;
    l.user = pg.get("SCRAM_USER");
    l.password = &password;
    l.parameters = {{"database", "defaultdb"}, {"application_name", "pool-test"}};
    auto s = run(io, io.get_executor(), vaultwire::detail::connect_upstream(target, std::move(l)));
    INFO((s.failed ? s.failed->message : ""));
    REQUIRE_FALSE(s.failed);
    REQUIRE(s.ready_status == 'I');
    pooled_upstream up;
    up.conn = std::move(s.conn);
    up.peer = s.peer;
    up.key = s.key;
    up.parameter_status = upstream_pool::parameter_status_of(s.handover);
    up.auth_method = s.auth_method;
    up.lease_id = lease_id;
    up.lease_expires_at = std::chrono::steady_clock::now() + lease_left;
    return up;
  }

  sql_reply sql(stream& s, const std::string& q) { return run(io, io.get_executor(), simple_query(&s, q)); }

  bool checkin(const std::shared_ptr<upstream_pool>& pool, const std::string& key, pooled_upstream up) {
    return run(io, io.get_executor(), checkin_of(pool, key, std::move(up)));
  }

  // Whether PostgreSQL still has a backend with this pid (as the superuser sees it).
  bool backend_alive(std::int32_t pid) {
    return pg.psql("select count(*) from pg_stat_activity where pid = " + std::to_string(pid)).find('1') !=
           std::string::npos;
  }
  // Waits (bounded) until the backend is gone.
  bool backend_gone(std::int32_t pid) {
    for (int i = 0; i < 100; ++i) {
      if (!backend_alive(pid)) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }
};

pool_config config() {
  pool_config c;
  c.idle_timeout = 60s;
  return c;
}

const param_list database_only{{"database", "defaultdb"}, {"application_name", "pool-test"}};

}  // namespace

TEST_CASE("upstream_pool: key_for is unambiguous and ignores parameter order", "[pool]") {
  CHECK(upstream_pool::key_for("l1", "db", {{"a", "1"}, {"b", "2"}}) ==
        upstream_pool::key_for("l1", "db", {{"b", "2"}, {"a", "1"}}));
  CHECK(upstream_pool::key_for("l1", "db", {{"a", "0"}, {"a", "1"}}) ==
        upstream_pool::key_for("l1", "db", {{"a", "1"}}));  // the last wins, as in PostgreSQL
  CHECK(upstream_pool::key_for("l1", "db", {}) != upstream_pool::key_for("l2", "db", {}));
  CHECK(upstream_pool::key_for("l1", "db", {}) != upstream_pool::key_for("l1", "db2", {}));
  CHECK(upstream_pool::key_for("l1", "db", {{"a", "1"}}) != upstream_pool::key_for("l1", "db", {{"a", "2"}}));
  // Boundaries cannot be shifted between fields.
  CHECK(upstream_pool::key_for("l1,", "db", {}) != upstream_pool::key_for("l1", ",db", {}));
  CHECK(upstream_pool::key_for("l", "1db", {}) != upstream_pool::key_for("l1", "db", {}));
  CHECK(upstream_pool::key_for("l1", "db", {{"a", "1b"}}) != upstream_pool::key_for("l1", "db", {{"a1", "b"}}));
  CHECK(upstream_pool::key_for("l1", "db", {{"a", std::string("1\0b", 3)}}) !=
        upstream_pool::key_for("l1", "db", {{"a", "1"}, {"b", ""}}));
}

TEST_CASE("upstream_pool: parameter_status_of keeps only the ParameterStatus messages", "[pool]") {
  std::vector<std::uint8_t> handover;
  REQUIRE(pgwire::encode_parameter_status(handover, "server_version", "15.0"));
  const std::vector<pgwire::error_field> notice{{'S', "NOTICE"}, {'M', "hello"}};
  REQUIRE(pgwire::encode_notice_response(handover, notice));
  REQUIRE(pgwire::encode_parameter_status(handover, "application_name", "x"));
  const param_list want{{"server_version", "15.0"}, {"application_name", "x"}};
  CHECK(params_of(upstream_pool::parameter_status_of(handover)) == want);
  CHECK(upstream_pool::parameter_status_of({}).empty());
}

TEST_CASE("upstream_pool: a reused connection is reset, its ParameterStatus set follows the reset",
          "[integration][pool][concurrency]") {
  pool_fixture f;
  auto pool = std::make_shared<upstream_pool>(config());
  const auto key = upstream_pool::key_for("lease-1", "defaultdb", database_only);

  auto up = f.login("lease-1");
  const auto pid = up.key.process_id;
  const param_list original = params_of(up.parameter_status);
  REQUIRE(value_of(original, "application_name") == "pool-test");

  // A client's session state.
  auto set = f.sql(*up.conn, "SET application_name = 'changed'");
  REQUIRE(set.status == 'I');
  CHECK(value_of(set.parameter_status, "application_name") == "changed");
  REQUIRE(f.sql(*up.conn, "CREATE TEMP TABLE t(x int)").status == 'I');
  REQUIRE(f.sql(*up.conn, "SELECT count(*) FROM t").rows == std::vector<std::string>{"0"});

  // The set to replay is stale on purpose: the reset's ParameterStatus must fix it
  // by name, in place.
  param_list stale = original;
  for (auto& [n, v] : stale) {
    if (n == "application_name") v = "stale";
  }
  up.parameter_status = encode(stale);
  REQUIRE(f.checkin(pool, key, std::move(up)));
  CHECK(pool->stats().idle == 1);
  CHECK(pool->stats().checkins == 1);

  CHECK_FALSE(pool->checkout(upstream_pool::key_for("lease-2", "defaultdb", database_only), f.io.get_executor()));
  CHECK_FALSE(pool->checkout(upstream_pool::key_for("lease-1", "otherdb", database_only), f.io.get_executor()));

  // Checked out onto another io_context: the stream is rebound and works there.
  net::io_context io2;
  auto again = pool->checkout(key, io2.get_executor());
  REQUIRE(again);
  CHECK(pool->stats().reuses == 1);
  CHECK(pool->stats().idle == 0);
  CHECK(again->key.process_id == pid);
  CHECK(params_of(again->parameter_status) == original);

  auto show = run(io2, io2.get_executor(), simple_query(again->conn.get(), "SHOW application_name"));
  CHECK(show.rows == std::vector<std::string>{"pool-test"});
  auto backend = run(io2, io2.get_executor(), simple_query(again->conn.get(), "SELECT pg_backend_pid()"));
  CHECK(backend.rows == std::vector<std::string>{std::to_string(pid)});
  auto temp = run(io2, io2.get_executor(), simple_query(again->conn.get(), "SELECT count(*) FROM t"));
  CHECK(temp.sqlstate == "42P01");  // the temporary table went with DISCARD ALL
  CHECK(temp.status == 'I');
  CHECK_FALSE(pool->checkout(key, f.io.get_executor()));
  again->conn.reset();
  pool->clear();
}

TEST_CASE("upstream_pool: reset_query is configurable, an empty one keeps session state",
          "[integration][pool][concurrency]") {
  pool_fixture f;
  auto cfg = config();
  cfg.reset_query = "";
  auto pool = std::make_shared<upstream_pool>(cfg);
  auto up = f.login("lease-1");
  REQUIRE(f.sql(*up.conn, "CREATE TEMP TABLE t(x int)").status == 'I');
  REQUIRE(f.checkin(pool, "k", std::move(up)));
  auto again = pool->checkout("k", f.io.get_executor());
  REQUIRE(again);
  CHECK(f.sql(*again->conn, "SELECT count(*) FROM t").rows == std::vector<std::string>{"0"});
  again->conn.reset();
  pool->clear();
}

TEST_CASE("upstream_pool: a failing reset, reuse off, a lease near its end and clear() close the connection",
          "[integration][pool][concurrency]") {
  pool_fixture f;
  SECTION("a reset that errors") {
    auto cfg = config();
    cfg.reset_query = "SELECT 1/0";
    auto pool = std::make_shared<upstream_pool>(cfg);
    auto up = f.login("lease-1");
    const auto pid = up.key.process_id;
    CHECK_FALSE(f.checkin(pool, "k", std::move(up)));
    CHECK(pool->stats().idle == 0);
    CHECK(pool->stats().discards == 1);
    CHECK(f.backend_gone(pid));
  }
  SECTION("a reset that leaves a transaction open") {
    auto cfg = config();
    cfg.reset_query = "BEGIN";
    auto pool = std::make_shared<upstream_pool>(cfg);
    CHECK_FALSE(f.checkin(pool, "k", f.login("lease-1")));
    CHECK(pool->stats().idle == 0);
  }
  SECTION("reuse off") {
    auto cfg = config();
    cfg.reuse = false;
    auto pool = std::make_shared<upstream_pool>(cfg);
    auto up = f.login("lease-1");
    const auto pid = up.key.process_id;
    CHECK_FALSE(f.checkin(pool, "k", std::move(up)));
    CHECK(pool->stats().discards == 1);
    CHECK(f.backend_gone(pid));
  }
  SECTION("a lease that ends within 5 s") {
    auto pool = std::make_shared<upstream_pool>(config());
    CHECK_FALSE(f.checkin(pool, "k", f.login("lease-1", 4s)));
    CHECK(pool->stats().idle == 0);
    // Kept with a little more than the margin left, then swept once inside it.
    REQUIRE(f.checkin(pool, "k", f.login("lease-1", 5s + 300ms)));
    CHECK(pool->stats().idle == 1);
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (pool->stats().idle > 0 && std::chrono::steady_clock::now() < deadline) {
      pool->sweep();
      std::this_thread::sleep_for(20ms);
    }
    CHECK(pool->stats().idle == 0);
  }
  SECTION("clear") {
    auto pool = std::make_shared<upstream_pool>(config());
    auto up = f.login("lease-1");
    const auto pid = up.key.process_id;
    REQUIRE(f.checkin(pool, "k", std::move(up)));
    pool->clear();
    CHECK(pool->stats().idle == 0);
    CHECK(f.backend_gone(pid));
    CHECK_FALSE(f.checkin(pool, "k", f.login("lease-1")));  // shut down: nothing more is kept
  }
}

TEST_CASE("upstream_pool: bounds per key and in total evict the oldest", "[integration][pool][concurrency]") {
  pool_fixture f;
  SECTION("max_idle_per_key") {
    auto cfg = config();
    cfg.max_idle_per_key = 1;
    auto pool = std::make_shared<upstream_pool>(cfg);
    auto a = f.login("lease-1");
    auto b = f.login("lease-1");
    const auto pid_a = a.key.process_id;
    const auto pid_b = b.key.process_id;
    REQUIRE(f.checkin(pool, "k", std::move(a)));
    REQUIRE(f.checkin(pool, "k", std::move(b)));
    CHECK(pool->stats().idle == 1);
    CHECK(pool->stats().discards == 1);
    CHECK(f.backend_gone(pid_a));
    auto got = pool->checkout("k", f.io.get_executor());
    REQUIRE(got);
    CHECK(got->key.process_id == pid_b);
    CHECK_FALSE(pool->checkout("k", f.io.get_executor()));
    got->conn.reset();
  }
  SECTION("max_idle_total") {
    auto cfg = config();
    cfg.max_idle_per_key = 2;
    cfg.max_idle_total = 2;
    auto pool = std::make_shared<upstream_pool>(cfg);
    REQUIRE(f.checkin(pool, "k1", f.login("lease-1")));
    REQUIRE(f.checkin(pool, "k2", f.login("lease-1")));
    REQUIRE(f.checkin(pool, "k3", f.login("lease-1")));
    CHECK(pool->stats().idle == 2);
    CHECK(pool->stats().discards == 1);
    CHECK_FALSE(pool->checkout("k1", f.io.get_executor()));
    CHECK(pool->checkout("k2", f.io.get_executor()));
    CHECK(pool->checkout("k3", f.io.get_executor()));
  }
}

TEST_CASE("upstream_pool: a connection the server ended while idle is not handed out",
          "[integration][pool][concurrency]") {
  pool_fixture f;
  auto pool = std::make_shared<upstream_pool>(config());
  auto up = f.login("lease-1");
  const auto pid = up.key.process_id;
  const int fd = up.conn->native_handle();
  REQUIRE(f.checkin(pool, "k", std::move(up)));
  REQUIRE(f.pg.psql("select pg_terminate_backend(" + std::to_string(pid) + ")").find('t') != std::string::npos);
  // The backend's FATAL and close reach the socket.
  pollfd p{fd, POLLIN, 0};
  REQUIRE(::poll(&p, 1, 10000) == 1);
  CHECK(pool->stats().idle == 1);
  CHECK_FALSE(pool->checkout("k", f.io.get_executor()));
  CHECK(pool->stats().idle == 0);
  CHECK(pool->stats().discards == 1);
  CHECK(pool->stats().reuses == 0);
}

TEST_CASE("upstream_pool: evict_lease and idle_timeout", "[integration][pool][concurrency]") {
  pool_fixture f;
  SECTION("evict_lease closes that lease's entries only") {
    auto pool = std::make_shared<upstream_pool>(config());
    const auto k1 = upstream_pool::key_for("lease-1", "defaultdb", database_only);
    const auto k2 = upstream_pool::key_for("lease-2", "defaultdb", database_only);
    REQUIRE(f.checkin(pool, k1, f.login("lease-1")));
    REQUIRE(f.checkin(pool, k1, f.login("lease-1")));
    REQUIRE(f.checkin(pool, k2, f.login("lease-2")));
    CHECK(pool->stats().idle == 3);
    pool->evict_lease("lease-1");
    CHECK(pool->stats().idle == 1);
    CHECK(pool->stats().discards == 2);
    CHECK_FALSE(pool->checkout(k1, f.io.get_executor()));
    CHECK(pool->checkout(k2, f.io.get_executor()));
  }
  SECTION("idle_timeout") {
    auto cfg = config();
    cfg.idle_timeout = 300ms;
    auto pool = std::make_shared<upstream_pool>(cfg);
    auto up = f.login("lease-1");
    const auto pid = up.key.process_id;
    REQUIRE(f.checkin(pool, "k", std::move(up)));
    const auto kept_at = std::chrono::steady_clock::now();
    pool->sweep();
    REQUIRE(pool->stats().idle == 1);  // not yet
    while (pool->stats().idle > 0 && std::chrono::steady_clock::now() < kept_at + 10s) {
      pool->sweep();
      std::this_thread::sleep_for(10ms);
    }
    CHECK(pool->stats().idle == 0);
    CHECK(std::chrono::steady_clock::now() - kept_at >= 300ms);
    CHECK(f.backend_gone(pid));
  }
  SECTION("an idle connection gives back the TLS buffers a busy session kept") {
    auto pool = std::make_shared<upstream_pool>(config());
    auto up = f.login("lease-1");
    stream* conn = up.conn.get();
    conn->keep_buffers(true);
    REQUIRE(f.checkin(pool, "k", std::move(up)));
    CHECK(conn->keeps_buffers());  // the reset ran with them
    const auto kept_at = std::chrono::steady_clock::now();
    while (conn->keeps_buffers() && std::chrono::steady_clock::now() < kept_at + 10s) {
      pool->sweep();
      std::this_thread::sleep_for(10ms);
    }
    CHECK_FALSE(conn->keeps_buffers());
    CHECK(std::chrono::steady_clock::now() - kept_at >= 900ms);
    REQUIRE(pool->stats().idle == 1);  // still pooled, and still answers
    auto again = pool->checkout("k", f.io.get_executor());
    REQUIRE(again);
    CHECK(f.sql(*again->conn, "select 7").rows == std::vector<std::string>{"7"});
  }
}

// The splice's TLS buffers (stream::keep_buffers): a session that keeps exchanging
// messages keeps the upstream's record buffers instead of allocating, freeing and
// wiping them per query; once quiet it frees them; at its end the upstream keeps
// them for the pool (whose sweep frees them once the connection idles).
TEST_CASE("splice: a busy session keeps its TLS buffers, a quiet one frees them", "[integration][splice][pool]") {
  pool_fixture f;
  auto up = f.login("lease-1");
  stream& server = *up.conn;
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
  const int peer = fds[1];
  stream client(stream::descriptor(f.io, fds[0]));
  vaultwire::detail::splice_control control;
  vaultwire::detail::splice_options options;
  options.keep_server_on_idle_terminate = true;
  std::optional<vaultwire::detail::splice_result> result;
  net::co_spawn(f.io, vaultwire::detail::splice(client, server, control, options),
                [&result](std::exception_ptr e, vaultwire::detail::splice_result r) {
                  if (e) std::rethrow_exception(e);
                  result = std::move(r);
                });

  // Runs the io_context until `done` holds (bounded).
  auto run_until = [&f](const std::function<bool()>& done) {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!done() && std::chrono::steady_clock::now() < deadline) {
      if (f.io.stopped()) f.io.restart();
      f.io.run_for(5ms);
    }
    return done();
  };
  // One query from the client's end, through the splice; the value it returned.
  auto query = [&](int n) {
    std::vector<std::uint8_t> q;
    pgwire::message_builder b(q);
    b.begin('Q');
    b.add_cstring("select " + std::to_string(n));
    REQUIRE(b.finish());
    REQUIRE(::send(peer, q.data(), q.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(q.size()));
    std::vector<std::uint8_t> in;
    std::string value;
    bool ready = false;
    REQUIRE(run_until([&] {
      std::uint8_t chunk[4096];
      for (ssize_t got; (got = ::recv(peer, chunk, sizeof chunk, MSG_DONTWAIT)) > 0;) in.insert(in.end(), chunk, chunk + got);
      for (;;) {
        const auto r = pgwire::decode_message(in, 1 << 20, pgwire::direction::backend);
        if (r.status != pgwire::decode_status::message) break;
        if (r.message.type == 'D') value.assign(r.message.body.begin() + 6, r.message.body.end());
        if (r.message.type == 'Z') ready = true;
        in.erase(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(r.consumed));
      }
      return ready;
    }));
    return value;
  };

  // A query or two: OpenSSL's default stays (an idle session holds no buffers).
  CHECK(query(1) == "1");
  CHECK(query(2) == "2");
  CHECK_FALSE(server.keeps_buffers());

  // A busy session keeps them.
  for (int i = 3; i <= 12; ++i) CHECK(query(i) == std::to_string(i));
  CHECK(server.keeps_buffers());

  // Quiet: freed, and the next query gets new ones.
  const auto frees = server.buffer_frees();
  CHECK(run_until([&] { return server.buffer_frees() > frees; }));
  CHECK(server.keeps_buffers());
  CHECK(query(13) == "13");

  // The client ends the idle session: the busy session's server connection goes
  // back still keeping its buffers (the pool's reset and the next session need them
  // at once; the pool's sweep gives them back when nobody does) and still answers.
  const std::vector<std::uint8_t> terminate{'X', 0, 0, 0, 4};
  REQUIRE(::send(peer, terminate.data(), terminate.size(), MSG_NOSIGNAL) == 5);
  REQUIRE(run_until([&] { return result.has_value(); }));
  CHECK(result->client_terminated_idle);
  CHECK(server.keeps_buffers());
  CHECK(server.buffer_frees() > frees);
  const auto after = f.sql(server, "select 42");
  CHECK(after.rows == std::vector<std::string>{"42"});
  ::close(peer);
}

namespace {

net::awaitable<std::optional<pooled_upstream>> checkout_or_wait_of(std::shared_ptr<upstream_pool> pool, std::string key) {
  co_return co_await pool->checkout_or_wait(key, co_await net::this_coro::executor);
}

struct wait_outcome {
  bool kept = false;                    // what the checkin returned
  std::optional<pooled_upstream> got;   // what the checkout got
  std::vector<std::string> order;       // which finished first
};

// A checkin and a checkout_or_wait on one io_context: the checkin starts first and is
// inside its reset when the checkout looks.
wait_outcome checkin_then_wait(pool_fixture& f, const std::shared_ptr<upstream_pool>& pool, pooled_upstream up,
                               std::function<void()> meanwhile = {}) {
  std::optional<bool> kept;
  std::optional<std::optional<pooled_upstream>> got;
  std::vector<std::string> order;
  net::co_spawn(f.io, checkin_of(pool, "k", std::move(up)), [&](std::exception_ptr e, bool k) {
    REQUIRE_FALSE(e);
    kept = k;
    order.emplace_back("checkin");
  });
  net::co_spawn(f.io, checkout_or_wait_of(pool, "k"), [&](std::exception_ptr e, std::optional<pooled_upstream> g) {
    REQUIRE_FALSE(e);
    got.emplace(std::move(g));
    order.emplace_back("checkout");
  });
  // `meanwhile` runs on another thread once the checkout is parked on the reset.
  std::thread side;
  if (meanwhile) {
    side = std::thread([&pool, &meanwhile] {
      while (pool->stats().waiting == 0) std::this_thread::sleep_for(1ms);
      meanwhile();
    });
  }
  f.io.restart();
  f.io.run_for(30s);
  if (side.joinable()) side.join();
  REQUIRE(kept);
  REQUIRE(got);
  return {*kept, std::move(*got), std::move(order)};
}

}  // namespace

TEST_CASE("upstream_pool: a checkout while a connection of its key is being reset gets that connection",
          "[integration][pool][concurrency]") {
  pool_fixture f;
  auto cfg = config();
  cfg.reset_query = "SELECT pg_sleep(0.2); DISCARD TEMP";
  SECTION("handed over when its reset ends, reset like any reused connection") {
    auto pool = std::make_shared<upstream_pool>(cfg);
    auto up = f.login("lease-1");
    const auto pid = up.key.process_id;
    REQUIRE(f.sql(*up.conn, "CREATE TEMP TABLE t(x int)").status == 'I');
    auto [kept, got, order] = checkin_then_wait(f, pool, std::move(up));
    CHECK(kept);
    CHECK(order == std::vector<std::string>{"checkin", "checkout"});
    REQUIRE(got);
    CHECK(got->key.process_id == pid);
    CHECK(f.sql(*got->conn, "SELECT count(*) FROM pg_tables WHERE tablename = 't'").rows ==
          std::vector<std::string>{"0"});
    const auto s = pool->stats();
    CHECK(s.handoffs == 1);
    CHECK(s.reuses == 1);
    CHECK(s.idle == 0);
    CHECK(s.discards == 0);
    got->conn.reset();
  }
  SECTION("a reset that fails leaves the checkout empty-handed, and the connection closed") {
    cfg.reset_query = "SELECT pg_sleep(0.2); SELECT 1/0";
    auto pool = std::make_shared<upstream_pool>(cfg);
    auto up = f.login("lease-1");
    const auto pid = up.key.process_id;
    auto [kept, got, order] = checkin_then_wait(f, pool, std::move(up));
    CHECK_FALSE(kept);
    CHECK_FALSE(got);
    CHECK(pool->stats().handoffs == 0);
    CHECK(pool->stats().discards == 1);
    CHECK(f.backend_gone(pid));
  }
  SECTION("clear() releases the waiting checkout before the reset ends") {
    cfg.reset_query = "SELECT pg_sleep(1)";
    auto pool = std::make_shared<upstream_pool>(cfg);
    auto [kept, got, order] = checkin_then_wait(f, pool, f.login("lease-1"), [&pool] { pool->clear(); });
    CHECK_FALSE(kept);
    CHECK_FALSE(got);
    CHECK(order == std::vector<std::string>{"checkout", "checkin"});
    CHECK(pool->stats().handoffs == 0);
  }
  SECTION("another key does not wait") {
    auto pool = std::make_shared<upstream_pool>(cfg);
    std::optional<std::optional<pooled_upstream>> other;
    net::co_spawn(f.io, checkin_of(pool, "k", f.login("lease-1")), [](std::exception_ptr e, bool) { REQUIRE_FALSE(e); });
    net::co_spawn(f.io, checkout_or_wait_of(pool, "other"), [&](std::exception_ptr e, std::optional<pooled_upstream> g) {
      REQUIRE_FALSE(e);
      other.emplace(std::move(g));
      CHECK(pool->stats().idle == 0);  // answered while the reset of "k" still runs
    });
    f.io.restart();
    f.io.run_for(30s);
    REQUIRE(other);
    CHECK_FALSE(*other);
    CHECK(pool->stats().idle == 1);
  }
}

TEST_CASE("upstream_pool: a connection reset on one thread is handed to a session on another",
          "[integration][pool][concurrency]") {
  pool_fixture f;
  auto cfg = config();
  cfg.reset_query = "SELECT pg_sleep(0.3); DISCARD TEMP";
  auto pool = std::make_shared<upstream_pool>(cfg);
  auto up = f.login("lease-1");
  const auto pid = up.key.process_id;
  net::io_context other;
  auto guard = net::make_work_guard(other);
  std::thread t([&other] { other.run(); });
  std::promise<std::pair<std::optional<std::int32_t>, std::vector<std::string>>> result;
  net::co_spawn(f.io, checkin_of(pool, "k", std::move(up)), [](std::exception_ptr e, bool) { REQUIRE_FALSE(e); });
  // The second session starts on its own thread once the reset is under way.
  net::post(f.io, [&] {
    net::co_spawn(other,
                  [&]() -> net::awaitable<void> {
                    auto got = co_await checkout_or_wait_of(pool, "k");
                    std::vector<std::string> rows;
                    if (got) rows = (co_await simple_query(got->conn.get(), "SELECT 1")).rows;
                    std::optional<std::int32_t> p;
                    if (got) p = got->key.process_id;
                    if (got) got->conn.reset();
                    result.set_value({p, rows});
                  },
                  net::detached);
  });
  f.io.restart();
  f.io.run_for(30s);
  auto fut = result.get_future();
  REQUIRE(fut.wait_for(30s) == std::future_status::ready);
  auto [p, rows] = fut.get();
  guard.reset();
  t.join();
  CHECK(p == pid);
  CHECK(rows == std::vector<std::string>{"1"});
  CHECK(pool->stats().reuses == 1);
  CHECK(pool->stats().idle == 0);
}
