// Ending a live session from vaultwire's side — end_at_idle, end_now and notice,
// the calls the kill-switch (on_revoke) and lease expiry make — driven through the
// product's own API (proxy.hpp) on a real session: a vaultwire listener in this
// process, a credential from vault-dev, PostgreSQL 15 with TLS upstream, and a
// raw pgwire client so the test sees every message and exactly when it arrives.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <pgwire/decoder.hpp>
#include <pgwire/encoder.hpp>
#include <pgwire/messages.hpp>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "net/listener.hpp"
#include "proxy/proxy.hpp"
#include "support/pg_harness.hpp"
#include "support/vault_dev.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>

namespace {

namespace net = boost::asio;
using json = nlohmann::json;
using namespace std::chrono_literals;
using vaultwire::detail::end_mode;
using vaultwire::detail::proxy_state;

// vault-dev + PostgreSQL + an in-process vaultwire with one plaintext listener.
struct proxy_fixture {
  vwtest::pg_server pg;
  vwtest::vault_dev_process vd;
  vaultwire::config cfg;
  std::shared_ptr<proxy_state> state = std::make_shared<proxy_state>();
  vaultwire::detail::listener_runtime listener;
  net::io_context io;
  net::executor_work_guard<net::io_context::executor_type> work = net::make_work_guard(io);
  // The server's own listener, with one session thread: this test's io.
  vaultwire::detail::listener_set sockets{io, {&io}, state->stopping};
  std::thread runner;
  int port = 0;
  std::ostringstream log;
  std::shared_ptr<spdlog::logger> previous = spdlog::default_logger();

  proxy_fixture() {
    vwtest::provision_database(vd, pg, "app");
    vwtest::write_owned_role(vd, "app", "1h", "2h");
    const std::string toml = "[vault]\naddress = \"" + vd.address() +
                             "\"\n[[listener]]\nbind = \"127.0.0.1:26257\"\nroute = \"main\"\n[route.main]\n"
                             "host = \"localhost\"\nport = " +
                             pg.get("PORT") + "\nca_file = \"" + pg.get("CA") +
                             "\"\nroles = [\"app\"]\ndefault_database = \"defaultdb\"\n";
    auto loaded = vaultwire::parse_config(toml);
    std::string errors;
    for (const auto& e : loaded.errors) errors += e + "\n";
    INFO(toml << errors);
    REQUIRE(loaded.ok());
    cfg = std::move(*loaded.value);
    state->cfg = &cfg;
    auto route = std::make_unique<vaultwire::detail::route_runtime>();
    route->config = cfg.routes.at("main");
    vaultwire::detail::tls_client_context_options o;
    o.ca_file = pg.get("CA");
    auto made = vaultwire::detail::make_client_tls_context(o);
    REQUIRE(made);
    route->tls = std::move(made).value();
    listener.config = &cfg.listeners.at(0);
    listener.route = route.get();
    state->routes["main"] = std::move(route);
    state->vault = std::make_unique<vaultwire::vault_client>(vaultwire::make_vault_client_options(cfg.vault));
    vaultwire::credential_broker_options bo;
    bo.credentials = cfg.credentials;
    state->broker = std::make_unique<vaultwire::credential_broker>(vaultwire::vault_calls_for(*state->vault), bo);

    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(log);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("session-end-test", sink));
    spdlog::set_level(spdlog::level::debug);

    const auto listening = sockets.listen_tcp(
        {"session-end-test", "127.0.0.1", 0, false, std::chrono::seconds{60}},
        [this](net::io_context& context, int fd, std::string peer) {
          vaultwire::detail::start_session(state, &listener,
                                           vaultwire::detail::stream::descriptor(context.get_executor(), fd),
                                           std::move(peer));
        });
    REQUIRE(listening);
    port = listening.value();
    runner = std::thread([this] { io.run(); });
  }

  ~proxy_fixture() {
    net::post(io, [this] { sockets.stop(); });
    vaultwire::detail::stop_all_sessions(*state);
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (state->active_clients.load() > 0 && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
    }
    work.reset();
    io.stop();
    runner.join();
    (void)state->broker->revoke_all();
    state->broker.reset();
    state->vault.reset();
    spdlog::set_default_logger(previous);
  }

  std::string output() {
    spdlog::default_logger()->flush();
    return log.str();
  }

  // The lease of the only live session that has one.
  std::string lease_of_live_session() {
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
      {
        std::lock_guard lock(state->sessions_mutex);
        for (auto& [id, entry] : state->sessions) {
          if (!entry.lease_id.empty() && !entry.session.expired()) return entry.lease_id;
        }
      }
      std::this_thread::sleep_for(10ms);
    }
    FAIL("no live session with a lease");
    return {};
  }

  void wait_log(const std::string& text) {
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (output().find(text) == std::string::npos) {
      if (std::chrono::steady_clock::now() > deadline) FAIL("no log line with: " << text << "\n" << output());
      std::this_thread::sleep_for(20ms);
    }
  }
};

struct message {
  char type = 0;
  std::vector<std::uint8_t> body;
};

// A blocking pgwire client over plaintext TCP that sees every message.
class raw_client {
 public:
  explicit raw_client(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(static_cast<std::uint16_t>(port));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) == 0);
  }
  ~raw_client() { ::close(fd_); }

  void send(const std::vector<std::uint8_t>& bytes) {
    REQUIRE(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
  }

  // The next message, or nullopt at end of stream or after `timeout` without one.
  std::optional<message> next(std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto d = pgwire::decode_message(buf_, 1 << 20, pgwire::direction::backend);
      if (d.status == pgwire::decode_status::message) {
        message m{d.message.type, {d.message.body.begin(), d.message.body.end()}};
        buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(d.consumed));
        return m;
      }
      REQUIRE(d.status == pgwire::decode_status::need_more);
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
      std::uint8_t chunk[4096];
      const ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n <= 0) {
        eof_ = true;
        return std::nullopt;
      }
      buf_.insert(buf_.end(), chunk, chunk + n);
    }
  }

  [[nodiscard]] bool at_eof() {
    if (!buf_.empty()) return false;
    auto m = next(5s);
    return !m && eof_;
  }

  // StartupMessage, up to vaultwire's AuthenticationCleartextPassword.
  void start() {
    std::vector<std::uint8_t> out;
    pgwire::startup_message sm;
    sm.params = {{"user", "app"}, {"database", "defaultdb"}};
    REQUIRE(pgwire::encode_startup_message(out, sm));
    send(out);
    auto auth = next();
    REQUIRE(auth);
    REQUIRE(auth->type == 'R');
  }

  // Startup with the token as the password, up to the first ReadyForQuery.
  void login(const std::string& token) {
    start();
    std::vector<std::uint8_t> out;
    REQUIRE(pgwire::encode_password_message(out, token));
    send(out);
    for (;;) {
      auto m = next();
      REQUIRE(m);
      if (m->type == 'E') FAIL("login refused");
      if (m->type == 'Z') break;
    }
  }

  void send_query(const std::string& sql) {
    // Query: 'Q', length, the SQL text NUL-terminated.
    std::vector<std::uint8_t> out{'Q', 0, 0, 0, 0};
    out.insert(out.end(), sql.begin(), sql.end());
    out.push_back(0);
    pgwire::store_be32(out.data() + 1, static_cast<std::uint32_t>(out.size() - 1));
    send(out);
  }

  // Reads up to and including ReadyForQuery; returns its status and the types seen.
  char finish_query(std::string* types = nullptr) {
    for (;;) {
      auto m = next();
      REQUIRE(m);
      if (types != nullptr) *types += m->type;
      if (m->type == 'Z') return static_cast<char>(m->body.at(0));
    }
  }

  char query(const std::string& sql) {
    send_query(sql);
    return finish_query();
  }

 private:
  int fd_ = -1;
  std::vector<std::uint8_t> buf_;
  bool eof_ = false;
};

std::map<char, std::string> fields_of(const message& m) {
  std::map<char, std::string> f;
  std::size_t i = 0;
  while (i < m.body.size() && m.body[i] != 0) {
    const char code = static_cast<char>(m.body[i++]);
    std::string value;
    while (i < m.body.size() && m.body[i] != 0) value += static_cast<char>(m.body[i++]);
    ++i;
    f[code] = value;
  }
  return f;
}

void require_fatal(raw_client& c, const std::string& sqlstate, const std::string& text,
                   std::chrono::milliseconds within = 5s) {
  auto m = c.next(within);
  REQUIRE(m);
  REQUIRE(m->type == 'E');
  auto f = fields_of(*m);
  CHECK(f['S'] == "FATAL");
  CHECK(f['C'] == sqlstate);
  CHECK(f['M'] == text);
  CHECK(c.at_eof());
}

const std::string reason = "terminating connection: the Vault token was revoked; reconnect";

}  // namespace

TEST_CASE("end_at_idle ends an idle session at once with the FATAL", "[integration][session][concurrency]") {
  proxy_fixture px;
  raw_client c(px.port);
  c.login(px.vd.root_token());
  REQUIRE(c.query("select 1") == 'I');
  const auto lease = px.lease_of_live_session();
  REQUIRE(vaultwire::detail::end_sessions_for_lease(*px.state, lease, end_mode::at_idle, "57P01", reason) == 1);
  require_fatal(c, "57P01", reason);
  px.wait_log("session closed: result ended_at_idle (" + reason + ")");
  // An unknown lease selects nothing.
  CHECK(vaultwire::detail::end_sessions_for_lease(*px.state, "database/creds/app/none", end_mode::now, "57P01",
                                                  reason) == 0);
}

TEST_CASE("end_at_idle does not cut a transaction: the session ends after COMMIT",
          "[integration][session][concurrency]") {
  proxy_fixture px;
  raw_client c(px.port);
  c.login(px.vd.root_token());
  REQUIRE(c.query("begin") == 'T');
  REQUIRE(c.query("create table end_at_idle_t (x int)") == 'T');
  const auto lease = px.lease_of_live_session();
  REQUIRE(vaultwire::detail::end_sessions_for_lease(*px.state, lease, end_mode::at_idle, "57P01", reason) == 1);
  // Inside the transaction: nothing from vaultwire, and statements still run.
  CHECK_FALSE(c.next(700ms));
  REQUIRE(c.query("insert into end_at_idle_t values (1)") == 'T');
  CHECK_FALSE(c.next(300ms));
  // COMMIT: its reply with ReadyForQuery 'I' arrives whole, then the FATAL.
  std::string types;
  REQUIRE(c.query("commit") == 'I');
  require_fatal(c, "57P01", reason);
  // The transaction was committed.
  CHECK(px.pg.psql("select count(*) from end_at_idle_t").find('1') != std::string::npos);
  px.wait_log("session closed: result ended_at_idle");
}

TEST_CASE("end_at_idle waits for a running query, a notice waits for its ReadyForQuery",
          "[integration][session][concurrency]") {
  proxy_fixture px;
  raw_client c(px.port);
  c.login(px.vd.root_token());
  REQUIRE(c.query("select 1") == 'I');
  const auto lease = px.lease_of_live_session();
  c.send_query("select pg_sleep(1.2), 42");
  std::this_thread::sleep_for(200ms);  // the query is in flight
  REQUIRE(vaultwire::detail::notice_sessions_for_lease(*px.state, lease, "your credential expires in 60s") == 1);
  REQUIRE(vaultwire::detail::end_sessions_for_lease(*px.state, lease, end_mode::at_idle, "57P01", reason) == 1);
  // The query's reply arrives whole and first: row description, row, complete, ready.
  std::string types;
  REQUIRE(c.finish_query(&types) == 'I');
  CHECK(types == "TDCZ");
  auto n = c.next();
  REQUIRE(n);
  REQUIRE(n->type == 'N');
  auto f = fields_of(*n);
  CHECK(f['S'] == "WARNING");
  CHECK(f['C'] == "01000");
  CHECK(f['M'] == "your credential expires in 60s");
  require_fatal(c, "57P01", reason);
}

TEST_CASE("a notice to an idle session arrives at once and the session goes on",
          "[integration][session][concurrency]") {
  proxy_fixture px;
  raw_client c(px.port);
  c.login(px.vd.root_token());
  REQUIRE(c.query("begin") == 'T');  // waiting for the client, inside a transaction
  const auto lease = px.lease_of_live_session();
  REQUIRE(vaultwire::detail::notice_sessions_for_lease(*px.state, lease, "heads up") == 1);
  auto n = c.next(3s);
  REQUIRE(n);
  REQUIRE(n->type == 'N');
  CHECK(fields_of(*n)['M'] == "heads up");
  REQUIRE(c.query("select 2") == 'T');
  REQUIRE(c.query("commit") == 'I');
}

TEST_CASE("end_now ends a session inside a transaction at once", "[integration][session][concurrency]") {
  proxy_fixture px;
  raw_client c(px.port);
  c.login(px.vd.root_token());
  REQUIRE(c.query("begin") == 'T');
  const auto lease = px.lease_of_live_session();
  // at_idle first (armed: a transaction is open), then now makes it immediate.
  REQUIRE(vaultwire::detail::end_sessions_for_lease(*px.state, lease, end_mode::at_idle, "57P01", reason) == 1);
  CHECK_FALSE(c.next(500ms));
  REQUIRE(vaultwire::detail::end_sessions_for_lease(*px.state, lease, end_mode::now, "57P01",
                                                    "terminating connection: the credential expired; reconnect") == 1);
  require_fatal(c, "57P01", "terminating connection: the credential expired; reconnect");
  px.wait_log("session closed: result ended_now");
}

TEST_CASE("end_now during admission refuses with the FATAL, by session id", "[integration][session][concurrency]") {
  proxy_fixture px;
  raw_client c(px.port);
  c.start();  // waiting for the token
  std::uint64_t id = 0;
  {
    std::lock_guard lock(px.state->sessions_mutex);
    REQUIRE(px.state->sessions.size() == 1);
    id = px.state->sessions.begin()->first;
  }
  CHECK_FALSE(vaultwire::detail::end_session(*px.state, id + 1000, end_mode::now, "57P01", reason));
  REQUIRE(vaultwire::detail::end_session(*px.state, id, end_mode::now, "57P01", reason));
  require_fatal(c, "57P01", reason);
  px.wait_log("session closed: result ended_now (" + reason + ")");
}
