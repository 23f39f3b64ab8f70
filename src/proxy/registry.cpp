// The registry of live sessions (proxy_state::sessions): starting a session, and the
// requests that reach sessions from other threads (shutdown, the kill-switch, lease
// expiry, the admin API).
#include <spdlog/spdlog.h>

#include <exception>

#include "proxy/session.hpp"

namespace vaultwire::detail {

namespace net = boost::asio;

void start_session(std::shared_ptr<proxy_state> state, const listener_runtime* listener, stream::descriptor socket,
                   std::string peer) {
  const std::uint64_t id = state->next_session_id.fetch_add(1);
  auto s = std::make_shared<session>(state, listener, std::move(socket), std::move(peer), id);
  {
    std::lock_guard lock(state->sessions_mutex);
    state->sessions[id] = proxy_state::session_entry{s, {}};
  }
  net::co_spawn(s->executor(), [s] { return s->run(); }, [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      spdlog::error("session failed with an exception (a bug): {}", ex.what());
    }
  });
}

namespace {

std::vector<std::shared_ptr<session>> live_sessions(proxy_state& state) {
  std::vector<std::shared_ptr<session>> live;
  std::lock_guard lock(state.sessions_mutex);
  for (auto& [id, entry] : state.sessions) {
    if (auto s = entry.session.lock()) live.push_back(std::move(s));
  }
  return live;
}

}  // namespace

void stop_all_sessions(proxy_state& state) {
  for (auto& s : live_sessions(state)) s->stop();
}

void drain_all_sessions(proxy_state& state) {
  for (auto& s : live_sessions(state)) s->drain();
}

namespace {

// The live sessions whose credential is `lease_id` (all of them when empty).
std::vector<std::shared_ptr<session>> sessions_for_lease(proxy_state& state, std::string_view lease_id) {
  std::vector<std::shared_ptr<session>> live;
  std::lock_guard lock(state.sessions_mutex);
  for (auto& [id, entry] : state.sessions) {
    if (!lease_id.empty() && entry.lease_id != lease_id) continue;
    if (auto s = entry.session.lock()) live.push_back(std::move(s));
  }
  return live;
}

std::shared_ptr<session> find_session(proxy_state& state, std::uint64_t id) {
  std::lock_guard lock(state.sessions_mutex);
  auto it = state.sessions.find(id);
  return it == state.sessions.end() ? nullptr : it->second.session.lock();
}

}  // namespace

bool end_session(proxy_state& state, std::uint64_t id, end_mode mode, std::string sqlstate, std::string message) {
  auto s = find_session(state, id);
  if (!s) return false;
  if (mode == end_mode::now) {
    s->end_now(std::move(sqlstate), std::move(message));
  } else {
    s->end_at_idle(std::move(sqlstate), std::move(message));
  }
  return true;
}

std::size_t end_sessions_for_lease(proxy_state& state, std::string_view lease_id, end_mode mode,
                                   const std::string& sqlstate, const std::string& message) {
  if (lease_id.empty()) return 0;
  auto live = sessions_for_lease(state, lease_id);
  for (auto& s : live) {
    if (mode == end_mode::now) {
      s->end_now(sqlstate, message);
    } else {
      s->end_at_idle(sqlstate, message);
    }
  }
  return live.size();
}

bool notice_session(proxy_state& state, std::uint64_t id, std::string message) {
  auto s = find_session(state, id);
  if (!s) return false;
  s->notice(std::move(message));
  return true;
}

std::size_t notice_sessions_for_lease(proxy_state& state, std::string_view lease_id, const std::string& message) {
  if (lease_id.empty()) return 0;
  auto live = sessions_for_lease(state, lease_id);
  for (auto& s : live) s->notice(message);
  return live.size();
}

}  // namespace vaultwire::detail
