#include "proxy/splice.hpp"

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

constexpr std::size_t pump_buffer_size = 64 * 1024;  // a plaintext read, or every TLS record already buffered, in one write

std::span<std::uint8_t> thread_buffer() {
  thread_local std::array<std::uint8_t, pump_buffer_size> buffer;
  return buffer;
}

// TLS record buffers (stream::keep_buffers): a session that keeps exchanging
// messages keeps them, and saves an allocation, a free and a wipe of two 17 KB
// buffers per query; once it has been quiet for buffer_hold they are freed, so an idle
// session holds none. A session that runs a query or two and then idles never keeps
// them.
constexpr auto buffer_hold = std::chrono::milliseconds(200);
constexpr unsigned keep_buffers_after_reads = 8;

struct pump_state {
  std::uint64_t bytes = 0;
  std::error_code read_error;   // eof_error() on a clean end
  std::error_code write_error;
  std::string violation;        // the framing broke: both sides closed
  bool done = false;
};

}  // namespace

// ---- splice_control ----

bool splice_control::waiting_for_client() const noexcept {
  return server_framer_.at_boundary() && last_was_rfq_ && client_framer_.at_boundary() && outstanding_ == 0 &&
         !batch_open_ && !down_writing_ && !up_writing_ && client_backlog_.empty();
}

void splice_control::start(stream& client, stream& server, char ready_status) {
  client_ = &client;
  server_ = &server;
  running_ = true;
  last_was_rfq_ = true;
  rfq_status_ = ready_status;
  last_activity_ = std::chrono::steady_clock::now();
  if (end_now_pending_) {
    end_here();
    return;
  }
  if (!notices_.empty()) write_notices_now();
  if (end_armed_ && idle()) end_here();
}

void splice_control::finish() {
  running_ = false;
  client_ = server_ = nullptr;
  std::vector<std::uint8_t>().swap(client_backlog_);
  std::vector<std::uint8_t>().swap(notices_);
}

void splice_control::end_at_idle(std::vector<std::uint8_t> error_response, std::string reason) {
  if (ended_) return;
  end_message_ = std::move(error_response);
  end_reason_ = std::move(reason);
  end_armed_ = true;
  if (running_ && idle()) end_here();
}

void splice_control::end_now(std::vector<std::uint8_t> error_response, std::string reason) {
  if (ended_) return;
  end_message_ = std::move(error_response);
  end_reason_ = std::move(reason);
  if (!running_) {
    end_now_pending_ = true;
    return;
  }
  end_here();
}

void splice_control::notice(std::span<const std::uint8_t> notice_response) {
  if (ended_ || client_terminated_idle_) return;  // the client is gone
  notices_.insert(notices_.end(), notice_response.begin(), notice_response.end());
  if (running_ && waiting_for_client()) write_notices_now();
}

void splice_control::write_notices_now() {
  std::error_code ec;
  const std::size_t n = client_->try_write(notices_, ec);
  if (!ec && n < notices_.size()) {
    // The rest goes out before any further server bytes (the down pump's first step).
    client_backlog_.assign(notices_.begin() + static_cast<std::ptrdiff_t>(n), notices_.end());
  }
  notices_.clear();
}

void splice_control::end_here() {
  ended_ = true;
  end_armed_ = false;
  end_now_pending_ = false;
  if (client_ == nullptr) return;
  if (client_terminated_idle_) {
    // The client stream is closed (its SSL may still name the old descriptor
    // number: leave it alone). The kept server is not to be kept after all.
    server_->close();
    return;
  }
  if (client_at_boundary() && !end_message_.empty()) {
    std::error_code ignored;
    (void)client_->try_write(end_message_, ignored);  // best effort: the client may not be reading
  }
  client_->shutdown_send();
  client_->close();
  if (!keep_server_if_busy()) server_->close();
}

bool splice_control::keep_server_if_busy() {
  if (server_kept_busy_) return true;
  if (!keep_busy_server_ || client_terminated_idle_ || server_ == nullptr || !server_busy()) return false;
  server_kept_busy_ = true;
  boost::system::error_code ignored;
  server_->socket().cancel(ignored);  // wakes a pump waiting on the server; no I/O on it
  return true;
}

// The pumps' access to the control's state (all on the session's strand).
struct splice_access {
  // Frames bytes from the server before they are forwarded. False: the framing
  // broke; `what` says how.
  static bool from_server(splice_control& c, std::span<const std::uint8_t> bytes, std::string& what) {
    c.last_activity_ = std::chrono::steady_clock::now();
    bool bad_status = false;
    const bool ok = c.server_framer_.feed(bytes, [&c, &bad_status](char type, std::uint8_t first) {
      if (type == 'Z') {
        // ReadyForQuery: https://www.postgresql.org/docs/current/protocol-message-formats.html
        if (first != 'I' && first != 'T' && first != 'E') bad_status = true;
        c.last_was_rfq_ = true;
        c.rfq_status_ = static_cast<char>(first);
        if (c.outstanding_ > 0) --c.outstanding_;
      } else {
        c.last_was_rfq_ = false;
        if (type == 'G') {
          // CopyInResponse. The server ignores Sync while in copy-in mode, and a
          // COPY started by Execute is followed by the client's Sync (libpq sends
          // another after CopyDone): Syncs seen since that Execute, and those until
          // CopyDone / CopyFail, get no ReadyForQuery.
          // https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-COPY
          c.copy_in_ = true;
          if (c.last_command_ == 'E') c.outstanding_ -= std::min(c.outstanding_, c.syncs_since_execute_);
          c.syncs_since_execute_ = 0;
        }
      }
    });
    if (!ok) {
      const auto& h = c.server_framer_.refused();
      what = "the server sent a message ('" + printable(h.type) + "') with the impossible length " +
             std::to_string(h.length);
      return false;
    }
    if (bad_status) {
      what = "the server sent a ReadyForQuery with an invalid transaction status";
      return false;
    }
    return true;
  }

  static bool from_client(splice_control& c, std::span<const std::uint8_t> bytes, std::string& what) {
    c.last_activity_ = std::chrono::steady_clock::now();
    const bool ok = c.client_framer_.feed(bytes, [&c](char type, std::uint8_t) {
      switch (type) {
        case 'S':  // Sync
          c.batch_open_ = false;
          if (c.copy_in_) break;  // ignored by a server in copy-in mode
          ++c.syncs_since_execute_;
          ++c.outstanding_;
          break;
        case 'Q':  // Query
        case 'F':  // FunctionCall
          ++c.outstanding_;  // each is answered by one ReadyForQuery
          c.batch_open_ = false;
          c.last_command_ = type;
          break;
        case 'c':  // CopyDone, CopyFail: copy-in mode ends
        case 'f':
          c.copy_in_ = false;
          break;
        case 'P':  // Parse, Bind, Describe, Execute, Close, Flush: unsynced until Sync
        case 'B':
        case 'D':
        case 'E':
        case 'C':
        case 'H':
          c.batch_open_ = true;
          if (type == 'E') {
            c.last_command_ = 'E';
            c.syncs_since_execute_ = 0;
          }
          break;
        default:  // CopyData / CopyDone / CopyFail belong to a Query in flight; Terminate
          break;
      }
    });
    if (!ok) {
      const auto& h = c.client_framer_.refused();
      what = "the client sent a message ('" + printable(h.type) + "') with the impossible length " +
             std::to_string(h.length);
    }
    return ok;
  }

  static std::string printable(char t) {
    return t >= 0x21 && t <= 0x7e ? std::string(1, t) : "\\x" + std::to_string(static_cast<unsigned char>(t));
  }

  static void set_writing(splice_control& c, bool from_server, bool writing) {
    (from_server ? c.down_writing_ : c.up_writing_) = writing;
  }
  static std::vector<std::uint8_t> take_backlog(splice_control& c) {
    std::vector<std::uint8_t> out;
    out.swap(c.client_backlog_);
    return out;
  }

  // After the down pump forwarded bytes: queued notices after a ReadyForQuery, then
  // an armed end at an idle point. The pump checks after_server_bytes_pending first,
  // so the common case costs no coroutine frame.
  static bool after_server_bytes_pending(const splice_control& c) { return !c.notices_.empty() || c.end_armed_; }
  static net::awaitable<void> after_server_bytes(splice_control& c, stream& client, std::error_code& ec) {
    if (!c.notices_.empty() && c.last_was_rfq_ && c.server_framer_.at_boundary()) {
      std::vector<std::uint8_t> out;
      out.swap(c.notices_);
      c.down_writing_ = true;
      co_await client.write_all(out, ec);
      c.down_writing_ = false;
      if (ec) co_return;
    }
    if (c.end_armed_ && c.idle()) c.end_here();
  }

  static std::chrono::steady_clock::time_point last_activity(const splice_control& c) { return c.last_activity_; }

  static void configure(splice_control& c, const splice_options& o) {
    c.keep_server_on_idle_terminate_ = o.keep_server_on_idle_terminate;
    c.client_terminated_idle_ = false;
    c.keep_busy_server_ = o.keep_busy_server;
    c.server_kept_busy_ = false;
  }
  // The server stream is no longer the splice's (the client swallowed an idle
  // Terminate, or the client side ended while the server was busy): the pumps stop
  // without touching it.
  static bool server_released(const splice_control& c) { return c.client_terminated_idle_ || c.server_kept_busy_; }
  // A pump stopped because the client side ended: reading from it failed or hit EOF
  // (the up pump), or writing to it failed (the down pump). A busy server is kept.
  static void on_pump_stopped(splice_control& c, const pump_state& st, bool from_server) {
    if (!st.violation.empty()) return;
    const bool client_gone = from_server ? static_cast<bool>(st.write_error) : static_cast<bool>(st.read_error);
    if (client_gone) (void)c.keep_server_if_busy();
  }

  // Bytes of one client read: exactly one Terminate at a message boundary while
  // idle, with keep_server_on_idle_terminate set. Then the Terminate is not
  // forwarded and the down pump's wait on the server is cancelled (the stream
  // stays open); returns true. Otherwise false: forward as usual.
  // https://www.postgresql.org/docs/current/protocol-flow.html#PROTOCOL-FLOW-TERMINATION
  static bool swallow_idle_terminate(splice_control& c, std::span<const std::uint8_t> bytes, stream& server) {
    static constexpr std::array<std::uint8_t, 5> terminate{'X', 0, 0, 0, 4};
    if (!c.keep_server_on_idle_terminate_ || c.ended_ || c.end_armed_ || !c.idle()) return false;
    if (!std::equal(bytes.begin(), bytes.end(), terminate.begin(), terminate.end())) return false;
    c.client_terminated_idle_ = true;
    c.last_activity_ = std::chrono::steady_clock::now();
    boost::system::error_code ignored;
    server.socket().cancel(ignored);  // wakes the down pump's wait; no I/O on the server
    return true;
  }
};

namespace {

// Decides when the splice's two streams keep their TLS buffers, and frees them when
// the session goes quiet. Lives in splice()'s frame; its timer's handler runs on the
// session's strand and touches nothing once `alive` is false. The timer and `alive`
// are made on the first arm: a session that idles from the start never has them.
class buffer_keeper {
 public:
  buffer_keeper(const net::any_io_executor& ex, stream& client, stream& server, const splice_control& ctl)
      : ex_(&ex), client_(&client), server_(&server), ctl_(&ctl) {}

  // After each read a pump makes. Cheap while the timer is armed, that is, while
  // the session is busy.
  void on_read() {
    if (armed_) return;
    if (!keeping_) {
      if (++reads_ < keep_buffers_after_reads) return;
      keeping_ = true;
      client_->keep_buffers(true);
      server_->keep_buffers(true);
    }
    arm(std::chrono::steady_clock::now() + buffer_hold);
  }

  // The pumps are done: the client's stream goes back to OpenSSL's default, its
  // buffers freed. The server's stream keeps them: a busy session's connection goes
  // back to the pool, whose reset and next session would allocate them at once; the
  // pool frees them once the connection has sat idle (upstream_pool::sweep), and a
  // connection that is closed frees them with its SSL.
  void stop() {
    if (timer_) {
      *alive_ = false;
      timer_->cancel();
    }
    if (!keeping_) return;
    client_->keep_buffers(false);
  }

 private:
  void arm(std::chrono::steady_clock::time_point at) {
    if (!timer_) {
      timer_ = std::make_unique<net::steady_timer>(*ex_);
      alive_ = std::make_shared<bool>(true);
    }
    armed_ = true;
    timer_->expires_at(at);
    timer_->async_wait([this, alive = alive_](const boost::system::error_code& e) {
      if (!*alive) return;
      armed_ = false;
      if (!e) on_timer();
    });
  }

  void on_timer() {
    const auto now = std::chrono::steady_clock::now();
    const auto quiet_since = splice_access::last_activity(*ctl_);
    if (now - quiet_since < buffer_hold) {
      arm(quiet_since + buffer_hold);
      return;
    }
    const bool client_freed = client_->free_buffers();
    const bool server_freed = server_->free_buffers();
    // Refused while bytes wait in a buffer (a write the peer is slow to take): later.
    if (!client_freed || !server_freed) arm(now + buffer_hold);
  }

  const net::any_io_executor* ex_;  // splice()'s, which outlives the keeper
  std::unique_ptr<net::steady_timer> timer_;
  stream* client_;
  stream* server_;
  const splice_control* ctl_;
  std::shared_ptr<bool> alive_;
  unsigned reads_ = 0;
  bool keeping_ = false;
  bool armed_ = false;
};

struct idle_watchdog {
  explicit idle_watchdog(const net::any_io_executor& ex) : timer(ex) {}
  net::steady_timer timer;
  std::function<void(const boost::system::error_code&)> check;
};

// What a pump leaves of its two streams once it stops, by how it stopped.
void close_after_pump(stream& from, stream& to, const pump_state& st, const splice_control& ctl,
                      bool from_server) {
  if (ctl.server_kept_busy()) {
    (from_server ? to : from).close();  // the client's side only: the server is the caller's
  } else if (ctl.client_terminated_idle()) {
    // The client said Terminate while idle: end its side as PostgreSQL would
    // (close_notify, FIN, close). The server stream stays open and untouched.
    if (!from_server) {
      from.shutdown_send();
      from.close();
    }
  } else if (ctl.ended() || !st.violation.empty()) {
    from.close();
    to.close();
  } else if (st.read_error == eof_error() && !st.write_error && !from_server) {
    to.shutdown_send();  // the client is done sending: pass the half-close on
  } else if (st.read_error == eof_error() && !st.write_error) {
    // The server ended the session: everything it sent is written; close both.
    to.shutdown_send();
    from.close();
    to.close();
  } else {
    from.close();
    to.close();
  }
}

// One direction. A named coroutine with by-value pointer parameters (STYLE.md §2
// rule 3); the caller keeps every pointee alive until `done`.
net::awaitable<void> pump(stream* from, stream* to, pump_state* st, splice_control* ctl, buffer_keeper* keeper,
                          bool from_server) {
  for (;;) {
    std::error_code ec;
    if (from_server) {
      // The rest of an injected notice goes out before any further server bytes.
      auto backlog = splice_access::take_backlog(*ctl);
      if (!backlog.empty()) {
        splice_access::set_writing(*ctl, true, true);
        co_await to->write_all(backlog, ec);
        splice_access::set_writing(*ctl, true, false);
        if (ec) {
          st->write_error = ec;
          break;
        }
      }
    }
    if (ctl->ended()) break;
    if (splice_access::server_released(*ctl)) break;
    // The buffer is this thread's: read into it and hand the bytes to try_write with
    // no co_await between, so no other pump on this thread touches it meanwhile. After
    // a wait this coroutine may run on another io thread: fetch the buffer again.
    auto buf = thread_buffer();
    stream::want w = stream::want::nothing;
    std::size_t n = from->try_read(buf, w, ec);
    if (n == 0 && !ec) {
      boost::system::error_code wait_ec;
      co_await from->wait(w, wait_ec);
      if (splice_access::server_released(*ctl)) break;  // woken by the cancel: the server is not ours
      if (!wait_ec) continue;
      ec = wait_ec;
    }
    if (ec || n == 0) {
      st->read_error = ec ? ec : eof_error();
      break;
    }
    const auto bytes = buf.first(n);
    if (!from_server && splice_access::swallow_idle_terminate(*ctl, bytes, *to)) break;
    st->bytes += n;
    keeper->on_read();
    // Framed before it is forwarded: bytes that break the framing never pass.
    const bool framed = from_server ? splice_access::from_server(*ctl, bytes, st->violation)
                                    : splice_access::from_client(*ctl, bytes, st->violation);
    if (!framed) break;
    std::size_t written = to->try_write(bytes, ec);
    if (!ec && written < n) {
      std::vector<std::uint8_t> rest(bytes.begin() + static_cast<std::ptrdiff_t>(written), bytes.end());
      splice_access::set_writing(*ctl, from_server, true);
      co_await to->write_all(rest, ec);
      splice_access::set_writing(*ctl, from_server, false);
    }
    if (!ec && from_server && splice_access::after_server_bytes_pending(*ctl)) {
      co_await splice_access::after_server_bytes(*ctl, *to, ec);
    }
    if (ec) {
      st->write_error = ec;
      break;
    }
  }
  splice_access::on_pump_stopped(*ctl, *st, from_server);
  close_after_pump(*from, *to, *st, *ctl, from_server);
}

// The splice's result once both pumps are done: bytes each way and what ended it.
splice_result splice_outcome(const pump_state& up, const pump_state& down, const splice_control& control,
                             bool idle_fired) {
  splice_result r;
  r.client_to_server = up.bytes;
  r.server_to_client = down.bytes;
  r.idle_timeout = idle_fired;
  r.protocol_violation = !down.violation.empty() ? down.violation : up.violation;
  r.client_terminated_idle = control.client_terminated_idle();
  r.server_busy = control.server_kept_busy();
  if (idle_fired) {
    r.ended_by = "idle timeout";
  } else if (control.ended()) {
    r.ended_by = control.end_reason();
    r.ended_by_request = true;
  } else if (r.client_terminated_idle) {
    r.ended_by = "client";
  } else if (!down.violation.empty()) {
    r.ended_by = "server protocol violation";
  } else if (!up.violation.empty()) {
    r.ended_by = "client protocol violation";
  } else if (up.read_error == eof_error() && !up.write_error) {
    r.ended_by = "client";
  } else if (down.read_error == eof_error() && !down.write_error) {
    r.ended_by = "server";
  } else if (up.read_error && up.read_error != eof_error()) {
    r.ended_by = "client error: " + up.read_error.message();
  } else {
    r.ended_by = "server error: " + down.read_error.message();
  }
  return r;
}

}  // namespace

net::awaitable<splice_result> splice(stream& client, stream& server, splice_control& control,
                                     splice_options options) {
  auto ex = co_await net::this_coro::executor;
  pump_state up, down;
  splice_access::configure(control, options);
  control.start(client, server, options.ready_status);

  // The idle watchdog ([limits] client_idle_timeout, made only when set): one timer per
  // session, re-armed to the last activity plus the timeout. Idle means the server
  // waits for the client (its last message was ReadyForQuery, nothing in flight) and
  // nothing moved since: a long-running query is not idle. Its handler runs on this
  // strand. A completion already queued when the splice ends finds `alive` false and
  // touches nothing of this frame.
  std::unique_ptr<idle_watchdog> idle;
  bool idle_fired = false;
  std::shared_ptr<bool> alive;
  if (options.idle_timeout && !control.ended()) {
    idle = std::make_unique<idle_watchdog>(ex);
    alive = std::make_shared<bool>(true);
    idle->check = [&, alive](const boost::system::error_code& e) {
      if (e || !*alive || control.ended() || control.client_terminated_idle()) return;
      const auto now = std::chrono::steady_clock::now();
      const auto deadline = control.waiting_for_client()
                                ? splice_access::last_activity(control) + *options.idle_timeout
                                : now + *options.idle_timeout;
      if (now < deadline) {
        idle->timer.expires_at(deadline);
        idle->timer.async_wait(idle->check);
        return;
      }
      // Waiting for the client at a message boundary: the ErrorResponse lands whole.
      idle_fired = true;
      control.end_now(std::move(options.idle_message), "idle timeout");
    };
    idle->timer.expires_after(*options.idle_timeout);
    idle->timer.async_wait(idle->check);
  }

  if (!control.ended()) {
    buffer_keeper keeper(ex, client, server, control);
    net::steady_timer down_done(ex, std::chrono::steady_clock::time_point::max());
    net::co_spawn(ex, pump(&server, &client, &down, &control, &keeper, true), [&down, &down_done](std::exception_ptr) {
      down.done = true;
      down_done.cancel();
    });
    co_await pump(&client, &server, &up, &control, &keeper, false);
    if (!down.done) {
      boost::system::error_code ignored;
      co_await down_done.async_wait(net::redirect_error(net::use_awaitable, ignored));
    }
    keeper.stop();
  }
  if (idle) {
    *alive = false;
    idle->timer.cancel();
  }

  splice_result r = splice_outcome(up, down, control, idle_fired);
  control.finish();
  co_return r;
}

}  // namespace vaultwire::detail
