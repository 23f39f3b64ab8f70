// A session in-process, through its seams: the client on a socketpair, the broker with
// a scripted Vault (tests/support/fake_vault.hpp), and a scripted upstream put in
// proxy_state::upstream_connector (another socketpair per login). No PostgreSQL, no
// vault-dev: the cases here are the admission, refusal, login and handover rules
// that need no real server, including the ones a real server will not produce on
// demand (a cached credential refused with 28P01). Each session's outcome is read
// back from the audit log, where the session's end writes its result label.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <pgwire/decoder.hpp>
#include <pgwire/encoder.hpp>
#include <pgwire/messages.hpp>

#include <chrono>
#include <deque>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include <boost/asio/this_coro.hpp>
#include <nlohmann/json.hpp>

#include "ops/audit.hpp"
#include "proxy/proxy.hpp"
#include "proxy/upstream.hpp"
#include "support/fake_vault.hpp"

namespace {

namespace net = boost::asio;
using namespace std::chrono_literals;
using vaultwire::detail::stream;
using bytes = std::vector<std::uint8_t>;

constexpr auto deadline = 5s;  // nothing here takes more than milliseconds unless it hangs

std::pair<int, int> socket_pair() {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  return {sv[0], sv[1]};
}

// The test's end of a socketpair: writes are blocking (small), reads run the
// io_context until bytes arrive, so the session makes progress in the same thread.
class peer {
 public:
  peer(net::io_context& io, int fd) : io_(io), fd_(fd) {}
  peer(const peer&) = delete;
  peer& operator=(const peer&) = delete;
  ~peer() {
    if (fd_ >= 0) ::close(fd_);
  }

  void send(const bytes& b) { REQUIRE(::send(fd_, b.data(), b.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(b.size())); }

  // One byte (the answer to SSLRequest), or nullopt when the other side closed.
  std::optional<char> next_byte() {
    if (!fill(1)) return std::nullopt;
    const char c = static_cast<char>(buf_.front());
    buf_.erase(buf_.begin());
    return c;
  }

  // The next framed message (type, body), or nullopt when the other side closed.
  std::optional<std::pair<char, bytes>> next_message() {
    for (;;) {
      auto d = pgwire::decode_message(buf_, 1 << 20, pgwire::direction::backend);
      if (d.status == pgwire::decode_status::message) {
        std::pair<char, bytes> m{d.message.type, bytes(d.message.body.begin(), d.message.body.end())};
        buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(d.consumed));
        return m;
      }
      REQUIRE(d.status == pgwire::decode_status::need_more);
      if (!fill(buf_.size() + 1)) return std::nullopt;
    }
  }

  // Raw bytes as the other side wrote them (the scripted upstream reads frontend
  // messages this way).
  bytes next_bytes(std::size_t n) {
    REQUIRE(fill(n));
    bytes out(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(n));
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(n));
    return out;
  }

  // True once the other side has closed (everything it sent before is skipped).
  bool closed() {
    while (fill(buf_.size() + 1)) buf_.clear();
    return true;
  }

  // Whether the other side has closed by now, without running the io_context (so
  // nothing the session would do next has happened yet). Unread bytes are left.
  bool closed_now() const {
    std::uint8_t byte;
    const ssize_t r = ::recv(fd_, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    return r == 0;
  }

  // The client goes away: the socket is closed as a killed process' would be.
  void vanish() {
    ::close(fd_);
    fd_ = -1;
  }

 private:
  // Runs the io_context until `n` bytes are buffered (true) or the peer closed (false).
  bool fill(std::size_t n) {
    const auto until = std::chrono::steady_clock::now() + deadline;
    while (buf_.size() < n) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 0) > 0) {
        std::uint8_t chunk[4096];
        const ssize_t r = ::recv(fd_, chunk, sizeof chunk, 0);
        if (r <= 0) return false;
        buf_.insert(buf_.end(), chunk, chunk + r);
        continue;
      }
      REQUIRE(std::chrono::steady_clock::now() < until);
      io_.restart();
      io_.run_for(1ms);
    }
    return true;
  }

  net::io_context& io_;
  int fd_;
  bytes buf_;
};

bytes startup(std::vector<std::pair<std::string, std::string>> params, std::uint16_t minor = 0) {
  pgwire::startup_message m;
  m.minor = minor;
  m.params = std::move(params);
  bytes out;
  REQUIRE(pgwire::encode_startup_message(out, m));
  return out;
}

bytes password(std::string_view token) {
  bytes out;
  REQUIRE(pgwire::encode_password_message(out, token));
  return out;
}

pgwire::error_response error_of(const std::optional<std::pair<char, bytes>>& m) {
  REQUIRE(m);
  REQUIRE(m->first == 'E');
  auto e = pgwire::parse_error_response(m->second);
  REQUIRE(e);
  return e.value();
}

bytes query_message(std::string_view sql) {
  bytes out{'Q'};
  const auto len = static_cast<std::uint32_t>(4 + sql.size() + 1);
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<std::uint8_t>(len >> shift));
  out.insert(out.end(), sql.begin(), sql.end());
  out.push_back(0);
  return out;
}

bytes ready_for_query(pgwire::transaction_status status) {
  bytes out;
  REQUIRE(pgwire::encode_ready_for_query(out, status));
  return out;
}

// Runs `io` until `done()` holds (bounded: a hang fails the test).
template <typename Done>
void run_until(net::io_context& io, Done done) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (!done()) {
    REQUIRE(std::chrono::steady_clock::now() < until);
    io.restart();
    io.run_for(1ms);
  }
}

// A plain TCP listener on loopback at the route's address. The upstream sessions are
// scripted on socketpairs; what reaches this listener is a CancelRequest the session
// sends on a new connection, as it would to the server's postmaster.
class cancel_listener {
 public:
  cancel_listener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd_, 8) == 0);
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
  }
  cancel_listener(const cancel_listener&) = delete;
  cancel_listener& operator=(const cancel_listener&) = delete;
  ~cancel_listener() {
    hang_up();
    ::close(fd_);
  }

  [[nodiscard]] std::uint16_t port() const { return port_; }

  // A connection waits to be accepted (checked without running the io_context).
  [[nodiscard]] bool pending() const {
    pollfd p{fd_, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
  }

  // Runs the sessions until a connection arrives with its 16 bytes: the
  // CancelRequest. The connection stays open until hang_up(), as a server's stays
  // until it has acted on the request.
  pgwire::cancel_request next_cancel(net::io_context& io) {
    run_until(io, [this] { return pending(); });
    conn_ = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    REQUIRE(conn_ >= 0);
    bytes got;
    run_until(io, [&] {
      std::uint8_t chunk[64];
      const ssize_t r = ::recv(conn_, chunk, sizeof chunk, MSG_DONTWAIT);
      if (r > 0) got.insert(got.end(), chunk, chunk + r);
      return got.size() >= 16;
    });
    const auto d = pgwire::decode_startup_packet(got);
    REQUIRE(d.status == pgwire::decode_status::message);
    REQUIRE(std::holds_alternative<pgwire::cancel_request>(d.packet));
    return std::get<pgwire::cancel_request>(d.packet);
  }

  void hang_up() {
    if (conn_ >= 0) ::close(conn_);
    conn_ = -1;
  }

 private:
  int fd_ = -1;
  int conn_ = -1;
  std::uint16_t port_ = 0;
};

// What the scripted upstream does with the next login.
struct upstream_script {
  std::optional<std::string> refuse_sqlstate;  // the server's ErrorResponse instead of a session
};

struct login_seen {
  std::string user;
  std::string password;
  std::vector<std::pair<std::string, std::string>> parameters;
};

struct session_fixture;
net::awaitable<vaultwire::detail::upstream_session> scripted_connect(session_fixture* f,
                                                                     vaultwire::detail::upstream_target target,
                                                                     vaultwire::detail::upstream_login login);

// The route's port: the scripted upstream needs none, but a CancelRequest the session
// sends itself goes there (see cancel_listener).
std::string base_config(std::uint16_t route_port) {
  return R"(
[vault]
address = "http://127.0.0.1:1"
[[listener]]
bind = "127.0.0.1:6432"
route = "main"
[route.main]
host = "127.0.0.1"
port = )" + std::to_string(route_port) + R"(
sslmode = "disable"
allow_insecure_upstream = true
roles = ["crdb-role"]
default_database = "defaultdb"
[pool]
reuse = false
[throttle]
base_delay = "off"
)";
}

struct session_fixture {
  net::io_context io;
  vwtest::fake_clock clock;
  vwtest::fake_vault vault;
  vaultwire::config cfg;
  std::shared_ptr<vaultwire::detail::proxy_state> state = std::make_shared<vaultwire::detail::proxy_state>();
  vaultwire::detail::listener_runtime listener;
  std::filesystem::path audit_path;
  std::deque<upstream_script> scripts;  // one per login; empty: accept
  std::vector<login_seen> logins;
  std::vector<std::unique_ptr<peer>> upstreams;  // the test's end of each accepted login

  explicit session_fixture(std::string_view extra_config = "", std::uint16_t route_port = 26257) {
    auto loaded = vaultwire::parse_config(base_config(route_port) + std::string(extra_config), {}, {});
    const std::string first_error = loaded.errors.empty() ? std::string() : loaded.errors.front();
    INFO(first_error);
    REQUIRE(loaded.ok());
    cfg = std::move(*loaded.value);
    state->cfg = &cfg;
    auto route = std::make_unique<vaultwire::detail::route_runtime>();
    route->config = cfg.routes.at("main");
    listener.config = &cfg.listeners.at(0);
    listener.route = route.get();
    state->routes["main"] = std::move(route);
    char dir[] = "/tmp/vwtest-component.XXXXXX";
    REQUIRE(::mkdtemp(dir) != nullptr);
    audit_path = std::filesystem::path(dir) / "audit.log";
    auto audit = vaultwire::detail::audit_log::open(audit_path);
    REQUIRE(audit.log);
    state->audit = std::move(audit.log);
    vaultwire::credential_broker_options bo;
    bo.credentials = cfg.credentials;
    bo.start_maintenance_thread = false;
    bo.clock = [this] { return clock.now.load(); };
    // Vault's answer to a creds request comes later, on the io_context, as the real
    // client's comes from its pool: the session really waits for it.
    auto calls = vault.calls();
    auto later = calls;
    later.read_credentials = [this, inner = calls.read_credentials](std::string mount, std::string role,
                                                                     pgwire::secret_string token, auto done) {
      auto t = std::make_shared<pgwire::secret_string>(std::move(token));
      net::post(io, [inner, mount, role, t, done] { inner(mount, role, t->clone(), done); });
    };
    state->broker = std::make_unique<vaultwire::credential_broker>(later, bo);
    state->upstream_connector = [this](vaultwire::detail::upstream_target t, vaultwire::detail::upstream_login l) {
      return scripted_connect(this, std::move(t), std::move(l));
    };
  }

  ~session_fixture() {
    vaultwire::detail::stop_all_sessions(*state);
    for (int i = 0; i < 1000 && !sessions_gone(); ++i) {
      io.restart();
      io.run_for(1ms);
    }
    std::filesystem::remove_all(audit_path.parent_path());
  }

  // A recheck of every live session's token, which Vault answers 403: the broker's
  // lease_event::token_revoked.
  void revoke_tokens() {
    vault.lookup_error = vwtest::make_error(vaultwire::vault_error_kind::forbidden, 403, "permission denied");
    clock.advance(cfg.credentials.token_recheck + 1s);
    state->broker->maintain();
  }

  // A renewal Vault answers "lease not found": lease_event::lease_gone.
  void lose_leases() {
    vault.renew_error = vwtest::make_error(vaultwire::vault_error_kind::bad_request, 400, "lease not found");
    clock.advance(vault.lease_duration - 5s);  // past the renewal point, short of the end
    state->broker->maintain();
  }

  bool sessions_gone() {
    std::lock_guard lock(state->sessions_mutex);
    return state->sessions.empty();
  }

  // A new client connection: the session runs on `io`, the test holds the client's end.
  std::unique_ptr<peer> connect() {
    auto [ours, theirs] = socket_pair();
    vaultwire::detail::start_session(state, &listener, stream::descriptor(io, ours), "192.0.2.7:50000");
    return std::make_unique<peer>(io, theirs);
  }

  // Startup, the cleartext password request, the token.
  std::unique_ptr<peer> log_in(std::string_view token, std::string user = "crdb-role") {
    auto client = connect();
    client->send(startup({{"user", std::move(user)}, {"database", "defaultdb"}, {"application_name", "t"}}));
    auto m = client->next_message();
    REQUIRE(m);
    REQUIRE(m->first == 'R');  // AuthenticationCleartextPassword
    client->send(password(token));
    return client;
  }

  // The `result` of every session_end line of the audit log so far.
  std::vector<std::string> results() {
    std::vector<std::string> out;
    std::ifstream in(audit_path);
    for (std::string line; std::getline(in, line);) {
      const auto j = nlohmann::json::parse(line);
      if (j.at("event") == "session_end") out.push_back(j.at("result").get<std::string>());
    }
    return out;
  }

  // Runs the sessions until the audit log has `n` session ends.
  std::vector<std::string> wait_results(std::size_t n) {
    const auto until = std::chrono::steady_clock::now() + deadline;
    while (results().size() < n) {
      REQUIRE(std::chrono::steady_clock::now() < until);
      io.restart();
      io.run_for(1ms);
    }
    return results();
  }

  vaultwire::detail::upstream_session next_upstream(const net::any_io_executor& ex, vaultwire::detail::upstream_login l) {
    logins.push_back({l.user, std::string(l.password->view()), l.parameters});
    upstream_script script;
    if (!scripts.empty()) {
      script = scripts.front();
      scripts.pop_front();
    }
    vaultwire::detail::upstream_session s;
    s.peer = "scripted";
    if (script.refuse_sqlstate) {
      auto fields = pgwire::error_builder(pgwire::error_severity::fatal)
                        .sqlstate(*script.refuse_sqlstate)
                        .message("password authentication failed for user \"" + l.user + "\"")
                        .fields();
      REQUIRE(pgwire::encode_error_response(s.server_error, fields));
      s.server_sqlstate = *script.refuse_sqlstate;
      s.failed = vaultwire::failure{vaultwire::errc::upstream_protocol, "the server refused the login"};
      return s;
    }
    auto [ours, theirs] = socket_pair();
    s.conn = std::make_unique<stream>(stream::descriptor(ex, ours));
    s.key = {4242, 77};
    REQUIRE(pgwire::encode_parameter_status(s.handover, "server_version", "15.0"));
    s.ready_status = 'I';
    s.auth_method = "scripted";
    upstreams.push_back(std::make_unique<peer>(io, theirs));
    return s;
  }
};

net::awaitable<vaultwire::detail::upstream_session> scripted_connect(session_fixture* f,
                                                                     vaultwire::detail::upstream_target,
                                                                     vaultwire::detail::upstream_login login) {
  const auto ex = co_await net::this_coro::executor;
  co_return f->next_upstream(ex, std::move(login));
}

// Reads the handover: AuthenticationOk, ParameterStatus, BackendKeyData, ReadyForQuery.
pgwire::backend_key_data read_handover(peer& client) {
  auto ok = client.next_message();
  REQUIRE(ok);
  REQUIRE(ok->first == 'R');
  auto ps = client.next_message();
  REQUIRE(ps);
  CHECK(ps->first == 'S');
  auto key = client.next_message();
  REQUIRE(key);
  REQUIRE(key->first == 'K');
  auto k = pgwire::parse_backend_key_data(key->second);
  REQUIRE(k);
  auto rfq = client.next_message();
  REQUIRE(rfq);
  CHECK(rfq->first == 'Z');
  return k.value();
}

}  // namespace

TEST_CASE("session: a login is handed over with vaultwire's cancel key and spliced both ways",
          "[component][session]") {
  session_fixture f;
  auto client = f.log_in("hvs.token-a");
  const auto key = read_handover(*client);
  CHECK(key.process_id == 4242);  // pg_backend_pid() agrees
  CHECK(key.secret_key != 77);    // the server's secret never reaches the client
  REQUIRE(f.logins.size() == 1);
  CHECK(f.logins[0].user == "v-hvs.token-a-1");  // the fake Vault's credential
  CHECK(f.logins[0].password == "pw-1");
  CHECK(std::find(f.logins[0].parameters.begin(), f.logins[0].parameters.end(),
                  std::pair<std::string, std::string>{"application_name", "t"}) != f.logins[0].parameters.end());

  bytes query;
  query.push_back('Q');
  const std::string sql = "SELECT 1";
  const std::uint32_t len = static_cast<std::uint32_t>(4 + sql.size() + 1);
  for (int shift = 24; shift >= 0; shift -= 8) query.push_back(static_cast<std::uint8_t>(len >> shift));
  query.insert(query.end(), sql.begin(), sql.end());
  query.push_back(0);
  client->send(query);
  CHECK(f.upstreams.at(0)->next_bytes(query.size()) == query);
  bytes ready;
  REQUIRE(pgwire::encode_ready_for_query(ready, pgwire::transaction_status::idle));
  f.upstreams[0]->send(ready);
  auto back = client->next_message();
  REQUIRE(back);
  CHECK(back->first == 'Z');

  bytes terminate;
  pgwire::encode_terminate(terminate);
  client->send(terminate);
  CHECK(f.upstreams[0]->next_bytes(terminate.size()) == terminate);  // no pool: Terminate goes to the server
  f.upstreams[0].reset();  // which closes, as PostgreSQL does
  CHECK(client->closed());
  CHECK(f.wait_results(1) == std::vector<std::string>{"ok"});
}

TEST_CASE("session: refusals before Vault is asked", "[component][session]") {
  session_fixture f;
  SECTION("SSLRequest on a plaintext listener is answered N, then a role the route does not allow: 28000") {
    auto client = f.connect();
    bytes ssl;
    pgwire::encode_ssl_request(ssl);
    client->send(ssl);
    CHECK(client->next_byte() == 'N');
    client->send(startup({{"user", "not-a-role"}}));
    const auto e = error_of(client->next_message());
    CHECK(e.sqlstate() == "28000");
    CHECK(e.message() == "role \"not-a-role\" is not allowed on this listener; allowed roles: crdb-role");
    CHECK(f.wait_results(1) == std::vector<std::string>{"role_not_allowed"});
  }
  SECTION("no user name: 28000") {
    auto client = f.connect();
    client->send(startup({{"database", "defaultdb"}}));
    CHECK(error_of(client->next_message()).sqlstate() == "28000");
    CHECK(f.wait_results(1) == std::vector<std::string>{"role_not_allowed"});
  }
  SECTION("protocol 3.1 gets NegotiateProtocolVersion before authentication") {
    auto client = f.connect();
    client->send(startup({{"user", "crdb-role"}}, 1));
    auto m = client->next_message();
    REQUIRE(m);
    CHECK(m->first == 'v');
    CHECK(client->next_message()->first == 'R');
  }
  SECTION("an empty password: 28P01 without asking Vault") {
    auto client = f.log_in("");
    const auto e = error_of(client->next_message());
    CHECK(e.sqlstate() == "28P01");
    CHECK(e.message() == "no password supplied: give a Vault token as the password");
    CHECK(f.vault.creds_count() == 0);
    CHECK(f.wait_results(1) == std::vector<std::string>{"vault_rejected_token"});
  }
  SECTION("a password that is not a Vault token: 28P01 without asking Vault") {
    auto client = f.log_in("hvs.\x01");
    CHECK(error_of(client->next_message()).sqlstate() == "28P01");
    CHECK(f.vault.creds_count() == 0);
  }
  SECTION("Terminate instead of a token ends quietly") {
    auto client = f.connect();
    client->send(startup({{"user", "crdb-role"}}));
    CHECK(client->next_message()->first == 'R');
    bytes terminate;
    pgwire::encode_terminate(terminate);
    client->send(terminate);
    CHECK(client->closed());
    CHECK(f.wait_results(1) == std::vector<std::string>{"client_terminated"});
  }
}

TEST_CASE("session: Vault's answers become the client's refusals", "[component][session]") {
  session_fixture f;
  SECTION("403: 28P01 with Vault's text") {
    f.vault.creds_error = vwtest::make_error(vaultwire::vault_error_kind::forbidden, 403, "permission denied");
    auto client = f.log_in("hvs.revoked");
    const auto e = error_of(client->next_message());
    CHECK(e.sqlstate() == "28P01");
    CHECK(std::string(e.message()).find("permission denied") != std::string::npos);
    CHECK(f.logins.empty());
    CHECK(f.wait_results(1) == std::vector<std::string>{"vault_rejected_token"});
  }
  SECTION("403, Vault's ACL denial of the role: 28000 naming the role, not a rejected token") {
    f.vault.creds_error = vwtest::vault_answer(403, {vwtest::acl_denied}, "GET database/creds/crdb-role");
    auto client = f.log_in("hvs.valid-for-another-role");
    const auto e = error_of(client->next_message());
    CHECK(e.sqlstate() == "28000");
    CHECK(std::string(e.message()) ==
          "Vault's policy for this token does not allow role \"crdb-role\" (GET database/creds/crdb-role: "
          "permission denied); the token may still open other roles");
    CHECK(f.logins.empty());
    CHECK(f.wait_results(1) == std::vector<std::string>{"vault_denied_role"});
  }
  SECTION("unreachable: 08001") {
    f.vault.creds_error = vwtest::make_error(vaultwire::vault_error_kind::unreachable, 0, "connection refused");
    auto client = f.log_in("hvs.any");
    CHECK(error_of(client->next_message()).sqlstate() == "08001");
    CHECK(f.wait_results(1) == std::vector<std::string>{"vault_unavailable"});
  }
}

TEST_CASE("session: the server's refusal is passed through as it is", "[component][session]") {
  session_fixture f;
  f.scripts.push_back({"28P01"});
  auto client = f.log_in("hvs.token-b");
  const auto e = error_of(client->next_message());
  CHECK(e.sqlstate() == "28P01");
  CHECK(e.message() == "password authentication failed for user \"v-hvs.token-b-1\"");
  CHECK(f.vault.creds_count() == 1);  // a fresh credential is not fetched again
  CHECK(f.wait_results(1) == std::vector<std::string>{"upstream_refused"});
}

TEST_CASE("session: a cached credential the server refuses (28P01) is dropped and fetched once more",
          "[component][session]") {
  session_fixture f;
  {
    auto first = f.log_in("hvs.token-c");
    read_handover(*first);
  }  // the client goes away; its credential stays cached for the token
  CHECK(f.upstreams.at(0)->closed());  // vaultwire passes the end on to the server
  f.upstreams[0].reset();
  CHECK(f.wait_results(1).size() == 1);
  f.scripts.push_back({"28P01"});  // e.g. the user was dropped behind Vault's back
  auto second = f.log_in("hvs.token-c");
  read_handover(*second);
  CHECK(f.vault.creds_count() == 2);
  REQUIRE(f.logins.size() == 3);
  CHECK(f.logins[1].user == f.logins[0].user);  // the cached credential first
  CHECK(f.logins[2].user == "v-hvs.token-c-2");  // then a fresh one
}

TEST_CASE("session: limits refuse at the StartupMessage", "[component][session]") {
  SECTION("max_client_connections: 53300") {
    session_fixture f("[limits]\nmax_client_connections = 1\n");
    auto first = f.log_in("hvs.token-d");
    read_handover(*first);
    auto second = f.connect();
    second->send(startup({{"user", "crdb-role"}}));
    const auto e = error_of(second->next_message());
    CHECK(e.sqlstate() == "53300");
    CHECK(e.message() == "too many client connections (limit 1)");
  }
  SECTION("startup_timeout: 08P01, for nothing sent and for half a StartupMessage") {
    session_fixture f("[limits]\nstartup_timeout = \"50ms\"\n");
    auto silent = f.connect();
    auto half = f.connect();
    // A length of 40 and protocol 3.0, then nothing more.
    half->send(bytes{0, 0, 0, 40, 0, 3, 0, 0});
    for (auto* client : {silent.get(), half.get()}) {
      const auto e = error_of(client->next_message());
      CHECK(e.sqlstate() == "08P01");
      CHECK(e.message() == "startup not finished within 50ms ([limits] startup_timeout)");
      CHECK(client->closed());
    }
    CHECK(f.wait_results(2) == std::vector<std::string>{"startup_timeout", "startup_timeout"});
  }
}

namespace {

const std::string token_revoked_at_idle =
    "terminating connection: the Vault token that opened this session was revoked or has expired; reconnect with "
    "a valid token";
const std::string token_revoked_after_grace =
    "terminating connection: the Vault token that opened this session was revoked or has expired, and its "
    "transaction was still open after [credentials] revoke_grace (200ms); the transaction is rolled back; reconnect "
    "with a valid token";
const std::string lease_gone_after_grace =
    "terminating connection: Vault no longer knows this session's database credential (its lease was revoked), and "
    "its transaction was still open after [credentials] revoke_grace (200ms); the transaction is rolled back; "
    "reconnect";

// BEGIN through the splice; the scripted server answers ReadyForQuery 'T'.
void open_transaction(peer& client, peer& server) {
  const bytes begin = query_message("BEGIN");
  client.send(begin);
  CHECK(server.next_bytes(begin.size()) == begin);
  server.send(ready_for_query(pgwire::transaction_status::in_transaction));
  auto z = client.next_message();
  REQUIRE(z);
  REQUIRE(z->first == 'Z');
}

}  // namespace

TEST_CASE("session: after revoke_grace a revoked session ends inside its transaction", "[component][session]") {
  cancel_listener cancels;
  session_fixture f("[credentials]\nrevoke_grace = \"200ms\"\n", cancels.port());
  auto client = f.log_in("hvs.token-g");
  read_handover(*client);
  peer& server = *f.upstreams.at(0);
  open_transaction(*client, server);

  std::string expected;
  SECTION("the token revoked") {
    f.revoke_tokens();
    expected = token_revoked_after_grace;
  }
  SECTION("the lease gone") {
    f.lose_leases();
    expected = lease_gone_after_grace;
  }
  // The transaction never becomes idle: at_idle alone would wait for ever.
  const auto e = error_of(client->next_message());
  CHECK(e.sqlstate() == "57P01");
  CHECK(e.message() == expected);
  CHECK(client->closed());
  CHECK(server.closed());  // which rolls the transaction back
  CHECK_FALSE(cancels.pending());  // nothing was running: no CancelRequest
  CHECK(f.wait_results(1) == std::vector<std::string>{"revoke_grace"});
}

TEST_CASE("session: a query running when vaultwire ends the session is cancelled on the server, then closed",
          "[component][session]") {
  cancel_listener cancels;
  std::string policy, expected, result;
  SECTION("after revoke_grace") {
    policy = "revoke_grace = \"200ms\"\n";
    expected = token_revoked_after_grace;
    result = "revoke_grace";
  }
  SECTION("on_revoke = now") {
    policy = "on_revoke = \"now\"\n";
    expected = token_revoked_at_idle;
    result = "ended_now";
  }
  session_fixture f("[credentials]\n" + policy, cancels.port());
  auto client = f.log_in("hvs.token-h");
  read_handover(*client);
  peer& server = *f.upstreams.at(0);
  open_transaction(*client, server);
  const bytes sleep = query_message("SELECT pg_sleep(60)");
  client->send(sleep);
  CHECK(server.next_bytes(sleep.size()) == sleep);  // the server runs it and says nothing yet

  f.revoke_tokens();
  const auto e = error_of(client->next_message());
  CHECK(e.sqlstate() == "57P01");
  CHECK(e.message() == expected);
  // The CancelRequest carries the server's own key, and comes before the close.
  const auto key = cancels.next_cancel(f.io);
  CHECK(key.process_id == 4242);
  CHECK(key.secret_key == 77);
  CHECK_FALSE(server.closed_now());
  cancels.hang_up();  // the server has acted on it
  CHECK(server.closed());
  CHECK(f.wait_results(1) == std::vector<std::string>{result});
}

TEST_CASE("session: with on_revoke = ignore, revoke_grace does not end the session", "[component][session]") {
  session_fixture f("[credentials]\non_revoke = \"ignore\"\nrevoke_grace = \"100ms\"\n");
  auto client = f.log_in("hvs.token-i");
  read_handover(*client);
  peer& server = *f.upstreams.at(0);
  open_transaction(*client, server);
  f.revoke_tokens();
  // Well past the grace, the transaction still carries queries.
  const auto until = std::chrono::steady_clock::now() + 500ms;
  while (std::chrono::steady_clock::now() < until) {
    f.io.restart();
    f.io.run_for(10ms);
  }
  CHECK_FALSE(server.closed_now());
  open_transaction(*client, server);
}

TEST_CASE("session: a client gone mid-query: the query is cancelled on the server, then the connection closed",
          "[component][session]") {
  cancel_listener cancels;
  session_fixture f("", cancels.port());
  auto client = f.log_in("hvs.token-j");
  read_handover(*client);
  peer& server = *f.upstreams.at(0);
  bytes in_flight;
  SECTION("a simple Query") { in_flight = query_message("SELECT pg_sleep(60)"); }
  SECTION("an Execute before its Sync (the server runs it at once)") {
    in_flight = bytes{'E', 0, 0, 0, 9, 0, 0, 0, 0, 0};  // the unnamed portal, no row limit
  }
  SECTION("nothing in flight, inside a transaction: no CancelRequest, the end is passed on") {
    open_transaction(*client, server);
    client->vanish();
    CHECK(server.closed());  // the half-close reaches the server, which ends the session
    f.upstreams[0].reset();
    CHECK(f.wait_results(1) == std::vector<std::string>{"ok"});
    CHECK_FALSE(cancels.pending());
    return;
  }
  client->send(in_flight);
  CHECK(server.next_bytes(in_flight.size()) == in_flight);
  client->vanish();  // killed: PostgreSQL would not notice during the statement

  const auto key = cancels.next_cancel(f.io);
  CHECK(key.process_id == 4242);
  CHECK(key.secret_key == 77);
  CHECK_FALSE(server.closed_now());
  cancels.hang_up();
  CHECK(server.closed());
  CHECK(f.wait_results(1) == std::vector<std::string>{"ok"});
}
