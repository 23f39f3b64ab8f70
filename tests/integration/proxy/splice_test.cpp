// splice() against a scripted server in-process (socket pairs, no TLS): the cases a
// real PostgreSQL will not produce on demand — an impossible message length, a
// ReadyForQuery split across reads — and the exact point where an armed
// end_at_idle speaks.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "proxy/splice.hpp"

namespace {

namespace net = boost::asio;
using vaultwire::detail::splice_control;
using vaultwire::detail::splice_result;
using vaultwire::detail::stream;

std::vector<std::uint8_t> msg(char type, const std::string& body) {
  std::vector<std::uint8_t> out{static_cast<std::uint8_t>(type)};
  const auto len = static_cast<std::uint32_t>(body.size() + 4);
  for (int shift : {24, 16, 8, 0}) out.push_back(static_cast<std::uint8_t>(len >> shift));
  out.insert(out.end(), body.begin(), body.end());
  return out;
}

void put(int fd, const std::vector<std::uint8_t>& bytes) {
  REQUIRE(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
}

// Everything readable on fd now (non-blocking); `eof` set at end of stream.
std::vector<std::uint8_t> drain(int fd, bool& eof) {
  std::vector<std::uint8_t> out;
  std::uint8_t chunk[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
    if (n > 0) {
      out.insert(out.end(), chunk, chunk + n);
      continue;
    }
    eof = n == 0;
    return out;
  }
}

// Writes `out` to `s`, then reads what `s` receives first (the scripted peer's reply).
net::awaitable<std::vector<std::uint8_t>> exchange(stream* s, std::vector<std::uint8_t> out, std::error_code* ec) {
  co_await s->write_all(out, *ec);
  if (*ec) co_return std::vector<std::uint8_t>{};
  std::vector<std::uint8_t> in(4096);
  const std::size_t n = co_await s->read_some(in, *ec);
  in.resize(n);
  co_return in;
}

vaultwire::detail::splice_options keep_server() {
  vaultwire::detail::splice_options o;
  o.keep_server_on_idle_terminate = true;
  return o;
}

const std::vector<std::uint8_t> terminate_message{'X', 0, 0, 0, 4};

// A splice between two socket pairs; the test holds the far ends.
struct rig {
  net::io_context io;
  int client_peer = -1, server_peer = -1;
  std::optional<stream> client, server;
  splice_control control;
  std::optional<splice_result> result;

  explicit rig(vaultwire::detail::splice_options options = {}) {
    int c[2], s[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, c) == 0);
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, s) == 0);
    client_peer = c[1];
    server_peer = s[1];
    client.emplace(stream::descriptor(io, c[0]));
    server.emplace(stream::descriptor(io, s[0]));
    net::co_spawn(io, vaultwire::detail::splice(*client, *server, control, std::move(options)),
                  [this](std::exception_ptr e, splice_result r) {
                    if (e) std::rethrow_exception(e);
                    result = std::move(r);
                  });
    io.run_for(std::chrono::milliseconds(20));
  }
  ~rig() {
    // Both peers gone: the splice ends, then the streams go.
    ::close(client_peer);
    ::close(server_peer);
    for (int i = 0; i < 50 && !result; ++i) io.run_for(std::chrono::milliseconds(20));
    client.reset();
    server.reset();
  }
  void run() {
    io.restart();  // once the splice returned, the io_context ran out of work and stopped
    io.run_for(std::chrono::milliseconds(100));
  }
};

}  // namespace

TEST_CASE("splice: a ReadyForQuery split across reads is tracked", "[integration][splice]") {
  rig r;
  CHECK(r.control.idle());  // the handover ended with ReadyForQuery 'I'
  put(r.client_peer, msg('Q', std::string("begin\0", 6)));
  r.run();
  CHECK_FALSE(r.control.waiting_for_client());  // a query in flight
  auto reply = msg('C', std::string("BEGIN\0", 6));
  auto z = msg('Z', "T");
  reply.insert(reply.end(), z.begin(), z.begin() + 3);
  put(r.server_peer, reply);
  r.run();
  CHECK_FALSE(r.control.waiting_for_client());  // half a header
  put(r.server_peer, std::vector<std::uint8_t>(z.begin() + 3, z.end()));
  r.run();
  CHECK(r.control.waiting_for_client());
  CHECK_FALSE(r.control.idle());  // in a transaction
  bool eof = false;
  CHECK(drain(r.client_peer, eof).size() == reply.size() + 3);
}

TEST_CASE("splice: an impossible length from the server closes both sides", "[integration][splice]") {
  rig r;
  auto bytes = msg('C', std::string("SELECT 1\0", 9));
  bytes.insert(bytes.end(), {'D', 0, 0, 0, 2});
  put(r.server_peer, bytes);
  r.run();
  REQUIRE(r.result);
  CHECK(r.result->ended_by == "server protocol violation");
  CHECK(r.result->protocol_violation == "the server sent a message ('D') with the impossible length 2");
  bool eof = false;
  CHECK(drain(r.client_peer, eof).empty());  // nothing of the read that broke the framing passes
  CHECK(eof);
  drain(r.server_peer, eof);
  CHECK(eof);
}

TEST_CASE("splice: an armed end_at_idle speaks right after the ReadyForQuery 'I'", "[integration][splice]") {
  rig r;
  put(r.client_peer, msg('Q', std::string("select 1\0", 9)));
  r.run();
  auto fatal = msg('E', std::string("SFATAL\0C57P01\0Mbye\0\0", 20));
  r.control.end_at_idle(fatal, "test");
  r.run();
  CHECK(r.control.end_armed());
  CHECK_FALSE(r.result);
  auto reply = msg('C', std::string("SELECT 1\0", 9));
  auto z = msg('Z', "I");
  reply.insert(reply.end(), z.begin(), z.end());
  put(r.server_peer, reply);
  r.run();
  REQUIRE(r.result);
  CHECK(r.result->ended_by_request);
  bool eof = false;
  auto got = drain(r.client_peer, eof);
  auto want = reply;
  want.insert(want.end(), fatal.begin(), fatal.end());
  CHECK(got == want);
  CHECK(eof);
}

TEST_CASE("splice: a COPY FROM STDIN started by Execute ends idle (its first Sync gets no ReadyForQuery)",
          "[integration][splice]") {
  rig r;
  // libpq's PQexecParams("COPY t FROM STDIN"): Parse, Bind, Describe, Execute, Sync.
  std::vector<std::uint8_t> c;
  for (auto& m : {msg('P', std::string("\0COPY t FROM STDIN\0\0\0", 22)), msg('B', std::string(8, '\0')),
                  msg('D', std::string("P\0", 2)), msg('E', std::string(5, '\0')), msg('S', "")}) {
    c.insert(c.end(), m.begin(), m.end());
  }
  put(r.client_peer, c);
  r.run();
  std::vector<std::uint8_t> s;
  for (auto& m : {msg('1', ""), msg('2', ""), msg('n', ""), msg('G', std::string("\0\0\0", 3))}) {
    s.insert(s.end(), m.begin(), m.end());
  }
  put(r.server_peer, s);
  r.run();
  CHECK_FALSE(r.control.waiting_for_client());
  // The data, CopyDone and libpq's second Sync; the server answers once.
  c.clear();
  for (auto& m : {msg('d', "1\n"), msg('c', ""), msg('S', "")}) c.insert(c.end(), m.begin(), m.end());
  put(r.client_peer, c);
  r.run();
  CHECK_FALSE(r.control.waiting_for_client());
  s.clear();
  for (auto& m : {msg('C', std::string("COPY 1\0", 7)), msg('Z', "I")}) s.insert(s.end(), m.begin(), m.end());
  put(r.server_peer, s);
  r.run();
  CHECK(r.control.idle());
  // Pipelined simple queries: idle only after the second ReadyForQuery.
  c.clear();
  for (auto& m : {msg('Q', std::string("select 1\0", 9)), msg('Q', std::string("select 2\0", 9))}) {
    c.insert(c.end(), m.begin(), m.end());
  }
  put(r.client_peer, c);
  r.run();
  put(r.server_peer, msg('Z', "I"));
  r.run();
  CHECK_FALSE(r.control.idle());
  put(r.server_peer, msg('Z', "I"));
  r.run();
  CHECK(r.control.idle());
}

TEST_CASE("splice: an idle Terminate ends the client side only and leaves the server stream usable",
          "[integration][splice][pool]") {
  rig r(keep_server());
  // A query and its answer first: idle again afterwards.
  const auto q = msg('Q', std::string("select 1\0", 9));
  put(r.client_peer, q);
  r.run();
  auto reply = msg('C', std::string("SELECT 1\0", 9));
  const auto z = msg('Z', "I");
  reply.insert(reply.end(), z.begin(), z.end());
  put(r.server_peer, reply);
  r.run();
  REQUIRE(r.control.idle());
  put(r.client_peer, terminate_message);
  r.run();
  REQUIRE(r.result);
  CHECK(r.result->client_terminated_idle);
  CHECK(r.result->ended_by == "client");
  CHECK(r.result->client_to_server == q.size());  // the Terminate is not counted: it never went
  bool eof = false;
  CHECK(drain(r.client_peer, eof) == reply);
  CHECK(eof);  // the client side is closed
  eof = false;
  CHECK(drain(r.server_peer, eof) == q);  // the server got the query, not the Terminate
  CHECK_FALSE(eof);                       // and its connection is open
  REQUIRE(r.server->native_handle() >= 0);

  // The server stream still works on its own: a query out, the scripted reply in.
  std::error_code ec;
  std::optional<std::vector<std::uint8_t>> got;
  const auto q2 = msg('Q', std::string("select 2\0", 9));
  net::co_spawn(r.io, exchange(&*r.server, q2, &ec),
                [&got](std::exception_ptr e, std::vector<std::uint8_t> v) {
                  if (e) std::rethrow_exception(e);
                  got = std::move(v);
                });
  r.run();
  CHECK(drain(r.server_peer, eof) == q2);
  CHECK_FALSE(got);
  auto reply2 = msg('C', std::string("SELECT 1\0", 9));
  reply2.insert(reply2.end(), z.begin(), z.end());
  put(r.server_peer, reply2);
  r.run();
  REQUIRE(got);
  CHECK_FALSE(ec);
  CHECK(*got == reply2);
}

TEST_CASE("splice: a Terminate that is not at an idle point is forwarded as before", "[integration][splice][pool]") {
  SECTION("a query in flight") {
    rig r(keep_server());
    const auto q = msg('Q', std::string("select pg_sleep(1)\0", 19));
    put(r.client_peer, q);
    r.run();
    put(r.client_peer, terminate_message);
    r.run();
    CHECK_FALSE(r.result);
    bool eof = false;
    auto want = q;
    want.insert(want.end(), terminate_message.begin(), terminate_message.end());
    CHECK(drain(r.server_peer, eof) == want);
  }
  SECTION("inside a transaction") {
    rig r(keep_server());
    const auto q = msg('Q', std::string("begin\0", 6));
    put(r.client_peer, q);
    r.run();
    auto reply = msg('C', std::string("BEGIN\0", 6));
    const auto z = msg('Z', "T");
    reply.insert(reply.end(), z.begin(), z.end());
    put(r.server_peer, reply);
    r.run();
    REQUIRE(r.control.waiting_for_client());
    put(r.client_peer, terminate_message);
    r.run();
    CHECK_FALSE(r.result);
    bool eof = false;
    auto want = q;
    want.insert(want.end(), terminate_message.begin(), terminate_message.end());
    CHECK(drain(r.server_peer, eof) == want);
    // The client goes; the server ends the session as PostgreSQL does: both closed.
    ::shutdown(r.client_peer, SHUT_WR);
    ::shutdown(r.server_peer, SHUT_WR);
    r.run();
    REQUIRE(r.result);
    CHECK_FALSE(r.result->client_terminated_idle);
  }
  SECTION("split across reads") {
    rig r(keep_server());
    put(r.client_peer, std::vector<std::uint8_t>(terminate_message.begin(), terminate_message.begin() + 3));
    r.run();
    put(r.client_peer, std::vector<std::uint8_t>(terminate_message.begin() + 3, terminate_message.end()));
    r.run();
    CHECK_FALSE(r.result);
    bool eof = false;
    CHECK(drain(r.server_peer, eof) == terminate_message);
  }
  SECTION("without keep_server_on_idle_terminate") {
    rig r;
    put(r.client_peer, terminate_message);
    r.run();
    CHECK_FALSE(r.result);
    bool eof = false;
    CHECK(drain(r.server_peer, eof) == terminate_message);
  }
}

namespace {

// Reads three times from `s`, each after the test opens `gate` (cancels it).
net::awaitable<void> read_three(stream* s, net::steady_timer* gate, std::vector<std::string>* got) {
  for (int i = 0; i < 3; ++i) {
    boost::system::error_code gate_ec;
    if (i > 0) co_await gate->async_wait(net::redirect_error(net::use_awaitable, gate_ec));
    std::vector<std::uint8_t> in(4096);
    std::error_code ec;
    const std::size_t n = co_await s->read_some(in, ec);
    if (ec) co_return;
    got->emplace_back(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(n));
  }
}

// A stream on one end of a socket pair, read_three running on it; the test holds
// the other end.
struct reader {
  net::io_context io;
  std::optional<stream> s;
  int peer = -1;
  net::steady_timer gate{io, std::chrono::steady_clock::time_point::max()};
  std::vector<std::string> got;

  reader() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    s.emplace(stream::descriptor(io, fds[0]));
    peer = fds[1];
    net::co_spawn(io, read_three(&*s, &gate, &got), net::detached);
  }
  ~reader() { ::close(peer); }
};

}  // namespace

// Asio's registration is edge-triggered: a read wait must still see bytes whose edge
// the reactor took while no wait was queued (a wait that skips the re-arm loses them).
TEST_CASE("stream: a read wait after a drained read sees bytes that came in between", "[integration][splice]") {
  reader r;
  auto& io = r.io;
  auto& gate = r.gate;
  auto& got = r.got;
  const int peer = r.peer;
  io.run_for(std::chrono::milliseconds(20));  // the first read found nothing and waits
  CHECK(got.empty());

  put(peer, {'o', 'n', 'e'});
  for (int i = 0; i < 100 && got.size() < 1; ++i) io.run_for(std::chrono::milliseconds(10));
  REQUIRE(got == std::vector<std::string>{"one"});

  // Bytes arrive while the reader waits on the gate: the reactor takes their edge
  // with no read wait queued. The next read starts from the drained state.
  put(peer, {'t', 'w', 'o'});
  io.run_for(std::chrono::milliseconds(20));
  gate.cancel();
  for (int i = 0; i < 100 && got.size() < 2; ++i) io.run_for(std::chrono::milliseconds(10));
  REQUIRE(got == std::vector<std::string>{"one", "two"});

  // Nothing in between: the wait is queued, and the next bytes end it.
  io.run_for(std::chrono::milliseconds(10));
  gate.cancel();
  io.run_for(std::chrono::milliseconds(20));
  CHECK(got.size() == 2);
  put(peer, {'t', 'h', 'r', 'e', 'e'});
  for (int i = 0; i < 100 && got.size() < 3; ++i) io.run_for(std::chrono::milliseconds(10));
  CHECK(got == std::vector<std::string>{"one", "two", "three"});
}

// Bytes and the peer's FIN in one epoll report: the read that takes the bytes comes
// back short without seeing the end, and no new edge follows. The wait after it must
// still report the end of stream (a wait that trusts the short read hangs here).
TEST_CASE("stream: an end of stream that came with the last bytes ends the next read", "[integration][splice]") {
  reader r;
  auto& io = r.io;
  auto& gate = r.gate;
  auto& got = r.got;
  const int peer = r.peer;
  io.run_for(std::chrono::milliseconds(20));  // waiting, its wait queued in the reactor
  put(peer, {'l', 'a', 's', 't'});
  REQUIRE(::shutdown(peer, SHUT_WR) == 0);
  for (int i = 0; i < 100 && got.empty(); ++i) io.run_for(std::chrono::milliseconds(10));
  REQUIRE(got == std::vector<std::string>{"last"});
  gate.cancel();
  // read_three stops at the end of stream: no second element, and the coroutine is done.
  for (int i = 0; i < 100 && !io.stopped(); ++i) io.run_for(std::chrono::milliseconds(10));
  CHECK(io.stopped());
  CHECK(got == std::vector<std::string>{"last"});
}
