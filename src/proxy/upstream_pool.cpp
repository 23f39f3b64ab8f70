#include "proxy/upstream_pool.hpp"

#include <poll.h>

#include <pgwire/decoder.hpp>
#include <pgwire/encoder.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <exception>
#include <iterator>
#include <optional>

#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "proxy/upstream.hpp"

namespace vaultwire::detail {

namespace net = boost::asio;
using clock_type = std::chrono::steady_clock;

namespace {

// How long an idle connection keeps the TLS record buffers its last session kept.
constexpr auto buffer_idle = std::chrono::seconds(1);

// Replies to a reset query are small; anything larger is not a reset.
constexpr std::size_t max_reset_message = 1024 * 1024;

// The server closed the connection, or wrote while nobody asked (a FATAL before
// it exits, a notification, an asynchronous ParameterStatus): either way the next
// client must not get it. Bytes TLS already decrypted count as written.
bool looks_dead(stream& s) {
  const int fd = s.native_handle();
  if (fd < 0 || s.has_buffered_plaintext()) return true;
  pollfd p{fd, POLLIN | POLLRDHUP, 0};
  const int r = ::poll(&p, 1, 0);
  return r != 0;  // readable, hung up, an error, or poll itself failed
}

bool hung_up(stream& s) {
  const int fd = s.native_handle();
  if (fd < 0) return true;
  pollfd p{fd, POLLRDHUP, 0};
  return ::poll(&p, 1, 0) != 0;
}

// Closes a connection the pool gives up. A live server gets Terminate (and TLS
// close_notify) first, so it ends the backend as for any client that says goodbye;
// a closed one just the close. No operation may be outstanding on the stream.
void close_upstream(pooled_upstream& up, std::string_view why) {
  spdlog::debug("upstream pool: closing {} (lease {}): {}", up.peer, up.lease_id, why);
  if (!up.conn) return;
  if (!hung_up(*up.conn)) {
    std::vector<std::uint8_t> bye;
    pgwire::encode_terminate(bye);
    std::error_code ignored;
    (void)up.conn->try_write(bye, ignored);
    up.conn->shutdown_send();
  }
  up.conn->close();
  up.conn.reset();
}

using victim = pool_victim;

void close_all(std::vector<victim>& victims) {
  for (auto& v : victims) close_upstream(v.up, v.why);
  victims.clear();
}

using param_list = std::vector<std::pair<std::string, std::string>>;

// The ParameterStatus messages of `bytes` as (name, value), in order; other
// messages are skipped. Stops at the first malformed message.
param_list decode_parameter_status(std::span<const std::uint8_t> bytes) {
  param_list out;
  while (!bytes.empty()) {
    const auto r = pgwire::decode_message(bytes, max_reset_message, pgwire::direction::backend);
    if (r.status != pgwire::decode_status::message) break;
    if (r.message.type == pgwire::backend_type::parameter_status) {
      auto ps = pgwire::parse_parameter_status(r.message.body);
      if (!ps) break;
      out.emplace_back(std::move(ps.value().name), std::move(ps.value().value));
    }
    bytes = bytes.subspan(r.consumed);
  }
  return out;
}

std::vector<std::uint8_t> encode_parameter_status(const param_list& params) {
  std::vector<std::uint8_t> out;
  for (const auto& [name, value] : params) (void)pgwire::encode_parameter_status(out, name, value);
  return out;
}

void update_parameter(param_list& params, std::string name, std::string value) {
  auto it = std::find_if(params.begin(), params.end(), [&name](const auto& p) { return p.first == name; });
  if (it != params.end()) {
    it->second = std::move(value);
  } else {
    params.emplace_back(std::move(name), std::move(value));
  }
}

void append_field(std::string& out, std::string_view s) {
  out += std::to_string(s.size());
  out += ':';
  out += s;
  out += ',';
}

// The reset's write: reset_query as one simple Query, then SET ROLE. Returns how many
// queries it holds, or -1 (and `why`) when one cannot be sent.
int reset_queries(const std::string& reset_query, const std::string& session_role, std::vector<std::uint8_t>& out,
                  std::string& why) {
  // One allocation for the whole write: the builder would otherwise grow it per field.
  out.reserve(reset_query.size() + session_role.size() + 64);
  int queries = 0;
  if (!reset_query.empty()) {
    pgwire::message_builder b(out);
    b.begin(pgwire::frontend_type::query);
    b.add_cstring(reset_query);
    if (!b.finish()) {
      why = "the reset query cannot be sent (it contains NUL)";
      return -1;
    }
    ++queries;
  }
  if (!session_role.empty()) {
    if (!append_set_role_query(out, session_role)) {
      why = "the session role cannot be sent (it contains NUL)";
      return -1;
    }
    ++queries;
  }
  return queries;
}

// The timer that bounds a reset: closing the stream cancels the pending read or
// write (STYLE.md §2 rule 4). Runs on the coroutine's strand; a completion queued
// after the reset finished finds `alive` false and touches nothing.
struct reset_guard {
  bool alive = true;
  bool fired = false;
};

// What one reply of the reset means: keep reading, done (ReadyForQuery 'I'), or failed.
enum class reply { more, done, failed };

// `params` is set (decoded) before a ParameterStatus reaches here.
reply on_reset_reply(const pgwire::message_view& m, std::optional<param_list>& params, std::string& why) {
  switch (m.type) {
    case pgwire::backend_type::command_complete:
    case pgwire::backend_type::row_description:
    case pgwire::backend_type::data_row:
    case pgwire::backend_type::empty_query_response:
    case pgwire::backend_type::notice_response:
    case pgwire::backend_type::notification_response:
      return reply::more;
    case pgwire::backend_type::parameter_status: {
      auto ps = pgwire::parse_parameter_status(m.body);
      if (!ps) {
        why = "the reset's ParameterStatus is malformed";
        return reply::failed;
      }
      update_parameter(*params, std::move(ps.value().name), std::move(ps.value().value));
      return reply::more;
    }
    case pgwire::backend_type::error_response: {
      auto e = pgwire::parse_error_response(m.body);
      why = e ? "the reset failed: " + std::string(e.value().sqlstate()) + " " + std::string(e.value().message())
              : std::string("the reset failed (malformed ErrorResponse)");
      return reply::failed;
    }
    case pgwire::backend_type::ready_for_query: {
      auto z = pgwire::parse_ready_for_query(m.body);
      if (!z) {
        why = "the reset's ReadyForQuery is malformed";
        return reply::failed;
      }
      if (z.value().status != pgwire::transaction_status::idle) {
        why = "the reset left the session in a transaction";
        return reply::failed;
      }
      return reply::done;
    }
    default:
      why = std::string("the reset got an unexpected message '") + m.type + "'";
      return reply::failed;
  }
}

// Decodes the replies in `bytes` and returns how many bytes it used. `state` becomes
// done after the last query's ReadyForQuery, or failed (with `why`). `params` is
// decoded from the connection's set `current` at the first ParameterStatus.
std::size_t take_reset_replies(std::span<const std::uint8_t> bytes, int& queries, reply& state,
                               std::span<const std::uint8_t> current, std::optional<param_list>& params,
                               std::string& why) {
  std::size_t used = 0;
  while (state == reply::more) {
    const auto r = pgwire::decode_message(bytes.subspan(used), max_reset_message, pgwire::direction::backend);
    if (r.status == pgwire::decode_status::need_more) break;
    if (r.status == pgwire::decode_status::error) {
      why = "the reset's reply is malformed: " + r.error.message();
      state = reply::failed;
      break;
    }
    if (r.message.type == pgwire::backend_type::parameter_status && !params) params = decode_parameter_status(current);
    state = on_reset_reply(r.message, params, why);
    used += r.consumed;
    if (state == reply::done && --queries > 0) state = reply::more;
  }
  return used;
}

}  // namespace

upstream_pool::upstream_pool(pool_config cfg) : cfg_(std::move(cfg)) {}

upstream_pool::~upstream_pool() { clear(); }

std::string upstream_pool::key_for(std::string_view lease_id, std::string_view database,
                                   const std::vector<std::pair<std::string, std::string>>& params,
                                   std::string_view local_identity) {
  // The last value of each name, by name: what the server ends up with.
  std::map<std::string_view, std::string_view> effective;
  for (const auto& [name, value] : params) effective[name] = value;
  std::string out;
  append_field(out, lease_id);
  append_field(out, database);
  append_field(out, local_identity);
  out += std::to_string(effective.size()) + ';';
  for (const auto& [name, value] : effective) {
    append_field(out, name);
    append_field(out, value);
  }
  return out;
}

std::vector<std::uint8_t> upstream_pool::parameter_status_of(std::span<const std::uint8_t> handover) {
  std::vector<std::uint8_t> out;
  while (!handover.empty()) {
    const auto r = pgwire::decode_message(handover, max_reset_message, pgwire::direction::backend);
    if (r.status != pgwire::decode_status::message) break;
    if (r.message.type == pgwire::backend_type::parameter_status) {
      out.insert(out.end(), handover.begin(), handover.begin() + static_cast<std::ptrdiff_t>(r.consumed));
    }
    handover = handover.subspan(r.consumed);
  }
  return out;
}

std::string upstream_pool::unusable(const pooled_upstream& up, clock_type::time_point now) {
  if (!up.conn) return "no connection";
  if (now + lease_margin >= up.lease_expires_at) return "its lease ends within 5 s";
  if (looks_dead(*up.conn)) return "the server closed it or wrote while it was idle";
  return {};
}

// A checkout_or_wait parked on a connection being reset. `handed` is written under the
// pool's mutex; the timer belongs to the waiter's executor, so the checkin that hands
// the connection over cancels it there (a timer is not safe to touch across threads).
struct upstream_pool::waiter {
  explicit waiter(const net::any_io_executor& ex) : timer(ex) {}
  net::steady_timer timer;
  std::optional<pooled_upstream> handed;

  static void wake(const std::shared_ptr<waiter>& w) {
    net::post(w->timer.get_executor(), [w] { w->timer.cancel(); });
  }
};

void upstream_pool::release_waiter_locked(in_flight& f) {
  if (!f.parked) return;
  waiter::wake(f.parked);
  f.parked.reset();
}

bool upstream_pool::rebind_or_close(pooled_upstream& up, const net::any_io_executor& ex) {
  try {
    up.conn->rebind(ex);
    spdlog::debug("upstream pool: reusing {} (lease {})", up.peer, up.lease_id);
    return true;
  } catch (const std::exception& e) {  // the new reactor refused the descriptor
    close_upstream(up, std::string("cannot move it to the new session: ") + e.what());
    std::lock_guard lock(mutex_);
    --stats_.reuses;
    ++stats_.discards;
    return false;
  }
}

std::optional<pooled_upstream> upstream_pool::checkout(const std::string& key, const net::any_io_executor& ex) {
  for (;;) {
    std::optional<pooled_upstream> out;
    std::vector<victim> victims;
    {
      std::lock_guard lock(mutex_);
      const auto now = clock_type::now();
      // Newest first: the warmest connection, and the older ones age out.
      auto it = idle_.end();
      while (it != idle_.begin()) {
        const auto cur = std::prev(it);
        if (cur->key != key) {
          it = cur;
          continue;
        }
        std::string why = now - cur->idle_since >= cfg_.idle_timeout ? "idle timeout" : unusable(cur->up, now);
        if (why.empty()) {
          out.emplace(std::move(cur->up));
          idle_.erase(cur);
          ++stats_.reuses;
          break;
        }
        victims.push_back({std::move(cur->up), std::move(why)});
        idle_.erase(cur);
        ++stats_.discards;
      }
    }
    close_all(victims);
    if (!out) return std::nullopt;
    if (rebind_or_close(*out, ex)) return out;
  }
}

net::awaitable<std::optional<pooled_upstream>> upstream_pool::checkout_or_wait(const std::string& key,
                                                                               const net::any_io_executor& ex) {
  auto self = shared_from_this();  // the pool outlives the wait
  std::optional<pooled_upstream> out = checkout(key, ex);
  if (out) co_return out;
  auto w = std::make_shared<waiter>(ex);
  std::uint64_t id = 0;
  {
    std::lock_guard lock(mutex_);
    for (auto& [i, f] : resetting_) {
      if (f.key == key && !f.doomed && !f.parked) {
        f.parked = w;
        id = i;
        break;
      }
    }
  }
  if (id == 0) co_return std::nullopt;
  w->timer.expires_after(reset_timeout);
  boost::system::error_code ignored;
  co_await w->timer.async_wait(net::redirect_error(net::use_awaitable, ignored));
  {
    std::lock_guard lock(mutex_);
    if (w->handed) {
      out = std::move(w->handed);
    } else if (const auto f = resetting_.find(id); f != resetting_.end() && f->second.parked == w) {
      f->second.parked.reset();  // the reset outlasted the wait; its checkin keeps the connection
    }
  }
  if (out && !rebind_or_close(*out, ex)) out.reset();
  co_return out;
}

net::awaitable<bool> upstream_pool::checkin(std::string key, pooled_upstream up) {
  auto self = shared_from_this();  // the pool outlives this coroutine
  std::string why;
  std::uint64_t id = 0;
  {
    std::lock_guard lock(mutex_);
    if (!cfg_.reuse) {
      why = "reuse is off";
    } else if (closed_) {
      why = "the pool is closed";
    } else if (cfg_.max_idle_per_key == 0 || cfg_.max_idle_total == 0) {
      why = "the pool keeps no connections";
    } else {
      why = unusable(up, clock_type::now());
    }
    if (why.empty()) {
      id = ++next_checkin_;
      resetting_.emplace(id, in_flight{up.lease_id, key, false, nullptr});
    } else {
      ++stats_.discards;
    }
  }
  if (!why.empty()) {
    close_upstream(up, why);
    co_return false;
  }

  bool ok = false;
  try {
    ok = co_await reset(up, why);
  } catch (const std::exception& e) {
    why = std::string("the reset threw: ") + e.what();
  }

  std::vector<victim> victims;
  std::shared_ptr<waiter> waiting;
  {
    std::lock_guard lock(mutex_);
    const auto f = resetting_.find(id);
    const bool doomed = f->second.doomed;
    waiting = std::move(f->second.parked);
    resetting_.erase(f);
    const auto now = clock_type::now();
    if (ok && doomed) {
      ok = false;
      why = closed_ ? "the pool was cleared" : "its lease was evicted";
    } else if (ok) {
      why = unusable(up, now);  // the reset took time
      ok = why.empty();
    }
    if (ok && waiting) {
      spdlog::debug("upstream pool: handing {} (lease {}) to a waiting session", up.peer, up.lease_id);
      waiting->handed.emplace(std::move(up));
      ++stats_.checkins;
      ++stats_.reuses;
      ++stats_.handoffs;
    } else if (ok) {
      make_room_locked(key, victims);
      spdlog::debug("upstream pool: keeping {} (lease {})", up.peer, up.lease_id);
      idle_.push_back(entry{std::move(key), std::move(up), now});
      ++stats_.checkins;
    } else {
      ++stats_.discards;
    }
  }
  if (waiting) waiter::wake(waiting);
  close_all(victims);
  if (!ok) close_upstream(up, why);
  co_return ok;
}

void upstream_pool::make_room_locked(const std::string& key, std::vector<victim>& victims) {
  const auto of_key = static_cast<std::size_t>(
      std::count_if(idle_.begin(), idle_.end(), [&key](const entry& e) { return e.key == key; }));
  if (of_key >= cfg_.max_idle_per_key) {
    auto oldest = std::find_if(idle_.begin(), idle_.end(), [&key](const entry& e) { return e.key == key; });
    victims.push_back({std::move(oldest->up), "max_idle_per_key"});
    idle_.erase(oldest);
    ++stats_.discards;
  }
  while (!idle_.empty() && idle_.size() >= cfg_.max_idle_total) {
    victims.push_back({std::move(idle_.front().up), "max_idle_total"});
    idle_.pop_front();
    ++stats_.discards;
  }
}

net::awaitable<bool> upstream_pool::reset(pooled_upstream& up, std::string& why) {
  std::vector<std::uint8_t> query;
  int queries = reset_queries(cfg_.reset_query, up.session_role, query, why);
  if (queries <= 0) co_return queries == 0;

  stream& s = *up.conn;
  net::steady_timer timer(co_await net::this_coro::executor);
  auto guard = std::make_shared<reset_guard>();
  timer.expires_after(reset_timeout);
  timer.async_wait([guard, conn = &s](const boost::system::error_code& e) {
    if (e || !guard->alive) return;
    guard->fired = true;
    conn->close();
  });

  // The connection's ParameterStatus set is decoded only if the reply changes it:
  // DISCARD ALL after an ordinary session reports nothing.
  std::optional<param_list> params;
  reply state = reply::more;
  std::error_code ec;
  co_await s.write_all(query, ec);
  // A reply usually arrives whole in one read and is decoded where it was read;
  // `in` holds only what a read left incomplete.
  std::vector<std::uint8_t> in;
  std::array<std::uint8_t, 4096> chunk{};
  while (!ec && state == reply::more) {
    const std::size_t n = co_await s.read_some(chunk, ec);
    if (ec) break;
    std::span<const std::uint8_t> bytes(chunk.data(), n);
    if (!in.empty()) {
      in.insert(in.end(), chunk.begin(), chunk.begin() + static_cast<std::ptrdiff_t>(n));
      bytes = in;
    }
    const std::size_t used = take_reset_replies(bytes, queries, state, up.parameter_status, params, why);
    const bool left_over = used < bytes.size();
    if (in.empty()) {
      if (left_over) in.assign(bytes.begin() + static_cast<std::ptrdiff_t>(used), bytes.end());
    } else {
      in.erase(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(used));
    }
    if (state == reply::done && left_over) {
      why = "the server sent more after the reset's ReadyForQuery";
      state = reply::failed;
    }
  }
  guard->alive = false;
  timer.cancel();
  if (ec) {
    why = guard->fired ? "no ReadyForQuery within the reset timeout" : "the reset failed: " + ec.message();
    co_return false;
  }
  if (state != reply::done) co_return false;
  if (s.has_buffered_plaintext()) {
    why = "the server sent more after the reset's ReadyForQuery";
    co_return false;
  }
  if (params) up.parameter_status = encode_parameter_status(*params);
  co_return true;
}

void upstream_pool::evict_lease(std::string_view lease_id) {
  std::vector<victim> victims;
  {
    std::lock_guard lock(mutex_);
    for (auto it = idle_.begin(); it != idle_.end();) {
      if (it->up.lease_id == lease_id) {
        victims.push_back({std::move(it->up), "its lease was evicted"});
        it = idle_.erase(it);
        ++stats_.discards;
      } else {
        ++it;
      }
    }
    for (auto& [id, f] : resetting_) {
      if (f.lease_id != lease_id) continue;
      f.doomed = true;
      release_waiter_locked(f);
    }
  }
  close_all(victims);
}

void upstream_pool::sweep() {
  std::vector<victim> victims;
  {
    std::lock_guard lock(mutex_);
    const auto now = clock_type::now();
    for (auto it = idle_.begin(); it != idle_.end();) {
      std::string why = now - it->idle_since >= cfg_.idle_timeout ? "idle timeout" : unusable(it->up, now);
      if (!why.empty()) {
        victims.push_back({std::move(it->up), std::move(why)});
        it = idle_.erase(it);
        ++stats_.discards;
      } else {
        // A busy session hands its connection over with the TLS buffers kept (see the
        // splice's buffer_keeper); one nobody took for a while gives them back. No
        // operation is outstanding on an idle entry, and the pool's lock keeps
        // checkouts away meanwhile.
        if (now - it->idle_since >= buffer_idle && it->up.conn->keeps_buffers()) it->up.conn->keep_buffers(false);
        ++it;
      }
    }
  }
  close_all(victims);
}

void upstream_pool::close_idle(std::string_view why) {
  std::vector<victim> victims;
  {
    std::lock_guard lock(mutex_);
    for (auto& e : idle_) victims.push_back({std::move(e.up), std::string(why)});
    stats_.discards += idle_.size();
    idle_.clear();
    for (auto& [id, f] : resetting_) {
      f.doomed = true;
      release_waiter_locked(f);
    }
  }
  close_all(victims);
}

void upstream_pool::clear() {
  std::vector<victim> victims;
  {
    std::lock_guard lock(mutex_);
    closed_ = true;
    for (auto& e : idle_) victims.push_back({std::move(e.up), "the pool is cleared"});
    stats_.discards += idle_.size();
    idle_.clear();
    for (auto& [id, f] : resetting_) {
      f.doomed = true;
      release_waiter_locked(f);
    }
  }
  close_all(victims);
}

upstream_pool::stats_t upstream_pool::stats() const {
  std::lock_guard lock(mutex_);
  stats_t s = stats_;
  s.idle = idle_.size();
  s.waiting = static_cast<std::size_t>(
      std::count_if(resetting_.begin(), resetting_.end(), [](const auto& r) { return r.second.parked != nullptr; }));
  return s;
}

}  // namespace vaultwire::detail
