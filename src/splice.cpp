#include "splice.hpp"

#include <array>
#include <chrono>
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

struct pump_state {
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

net::awaitable<splice_result> splice(stream& client, stream& server) {
  auto ex = co_await net::this_coro::executor;
  pump_state up, down;
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
  splice_result r;
  r.client_to_server = up.bytes;
  r.server_to_client = down.bytes;
  if (up.read_error == eof_error() && !up.write_error) {
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
