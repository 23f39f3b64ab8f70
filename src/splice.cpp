#include "splice.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <vector>

#include <boost/asio/this_coro.hpp>

namespace vaultwire::detail {

namespace net = boost::asio;

namespace {

constexpr std::size_t pump_buffer_size = 32 * 1024;

std::span<std::uint8_t> thread_buffer() {
  thread_local std::array<std::uint8_t, pump_buffer_size> buffer;
  return buffer;
}

// What the idle watchdog knows, shared by both pumps: when bytes last moved, and
// whether the server's last bytes were a ReadyForQuery ('Z', length 5, status), so
// the session is waiting for the client rather than running a query.
struct activity {
  std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
  std::array<std::uint8_t, 6> server_tail{};  // the last 6 bytes from the server
  bool waiting_for_client = false;

  void from_client() {
    last = std::chrono::steady_clock::now();
    waiting_for_client = false;
  }
  void from_server(std::span<const std::uint8_t> bytes) {
    last = std::chrono::steady_clock::now();
    const std::size_t keep = std::min(bytes.size(), server_tail.size());
    std::copy(server_tail.begin() + static_cast<std::ptrdiff_t>(keep), server_tail.end(), server_tail.begin());
    std::copy(bytes.end() - static_cast<std::ptrdiff_t>(keep), bytes.end(),
              server_tail.end() - static_cast<std::ptrdiff_t>(keep));
    waiting_for_client = server_tail[0] == 'Z' && server_tail[1] == 0 && server_tail[2] == 0 &&
                         server_tail[3] == 0 && server_tail[4] == 5;
  }
};

struct pump_state {
  activity* seen = nullptr;  // shared by both pumps
  std::uint64_t bytes = 0;
  std::error_code read_error;   // eof_error() on a clean end
  std::error_code write_error;
  bool done = false;
};

// One direction. A named coroutine with by-value pointer parameters (STYLE.md §2
// rule 3); the caller keeps every pointee alive until `done`.
net::awaitable<void> pump(stream* from, stream* to, pump_state* st, bool from_server) {
  for (;;) {
    std::error_code ec;
    // The buffer is this thread's: read into it and hand the bytes to try_write with
    // no co_await between, so no other pump on this thread touches it meanwhile. After
    // a wait this coroutine may run on another io thread: fetch the buffer again.
    auto buf = thread_buffer();
    stream::want w = stream::want::nothing;
    std::size_t n = from->try_read(buf, w, ec);
    if (n == 0 && !ec) {
      co_await from->wait(w, ec);
      if (!ec) continue;
    }
    if (ec || n == 0) {
      st->read_error = ec ? ec : eof_error();
      break;
    }
    st->bytes += n;
    if (from_server) {
      st->seen->from_server(buf.first(n));
    } else {
      st->seen->from_client();
    }
    std::size_t written = to->try_write(buf.first(n), ec);
    if (!ec && written < n) {
      std::vector<std::uint8_t> rest(buf.begin() + static_cast<std::ptrdiff_t>(written),
                                     buf.begin() + static_cast<std::ptrdiff_t>(n));
      co_await to->write_all(rest, ec);
    }
    if (ec) {
      st->write_error = ec;
      break;
    }
  }
  if (st->read_error == eof_error() && !st->write_error && !from_server) {
    to->shutdown_send();  // the client is done sending: pass the half-close on
  } else if (st->read_error == eof_error() && !st->write_error) {
    // The server ended the session: everything it sent is written; close both.
    to->shutdown_send();
    from->close();
    to->close();
  } else {
    from->close();
    to->close();
  }
}

}  // namespace

net::awaitable<splice_result> splice(stream& client, stream& server,
                                     std::optional<std::chrono::milliseconds> idle_timeout,
                                     std::vector<std::uint8_t> idle_message) {
  auto ex = co_await net::this_coro::executor;
  activity seen;
  pump_state up, down;
  up.seen = down.seen = &seen;

  // The idle watchdog: one timer per session, re-armed to the last activity plus the
  // timeout. Idle means the server sent ReadyForQuery and nothing moved since: a
  // long-running query is not idle. Its handler runs on this strand. A completion already queued when the
  // splice ends finds `alive` false and touches nothing of this frame.
  net::steady_timer idle(ex);
  bool idle_fired = false;
  auto alive = std::make_shared<bool>(true);
  std::function<void(const boost::system::error_code&)> check_idle;
  check_idle = [&, alive](const boost::system::error_code& e) {
    if (e || !*alive) return;
    const auto now = std::chrono::steady_clock::now();
    const auto deadline = seen.waiting_for_client ? seen.last + *idle_timeout : now + *idle_timeout;
    if (now < deadline) {
      idle.expires_at(deadline);
      idle.async_wait(check_idle);
      return;
    }
    // Waiting for the client, and nothing moved for the whole timeout: no message is
    // half sent, so an ErrorResponse lands on a message boundary.
    idle_fired = true;
    std::error_code ignored;
    (void)client.try_write(idle_message, ignored);
    client.close();
    server.close();
  };
  if (idle_timeout) {
    idle.expires_after(*idle_timeout);
    idle.async_wait(check_idle);
  }

  net::steady_timer down_done(ex, std::chrono::steady_clock::time_point::max());
  net::co_spawn(ex, pump(&server, &client, &down, true), [&down, &down_done](std::exception_ptr) {
    down.done = true;
    down_done.cancel();
  });
  co_await pump(&client, &server, &up, false);
  if (!down.done) {
    boost::system::error_code ignored;
    co_await down_done.async_wait(net::redirect_error(net::use_awaitable, ignored));
  }
  *alive = false;
  idle.cancel();

  splice_result r;
  r.client_to_server = up.bytes;
  r.server_to_client = down.bytes;
  r.idle_timeout = idle_fired;
  if (idle_fired) {
    r.ended_by = "idle timeout";
  } else if (up.read_error == eof_error() && !up.write_error) {
    r.ended_by = "client";
  } else if (down.read_error == eof_error() && !down.write_error) {
    r.ended_by = "server";
  } else if (up.read_error && up.read_error != eof_error()) {
    r.ended_by = "client error: " + up.read_error.message();
  } else {
    r.ended_by = "server error: " + down.read_error.message();
  }
  co_return r;
}

}  // namespace vaultwire::detail
