// proxy: the shared state of a running vaultwire (routes with their TLS contexts,
// the Vault client, the cancel-key map, the session registry) and one client
// session's life. Private header of src/ (includes Asio).
#pragma once

#include <openssl/ssl.h>

#include <atomic>
#include <functional>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "config/users_file.hpp"
#include "ops/cancel_penalty.hpp"
#include "ops/audit.hpp"
#include "proxy/cancel_map.hpp"
#include "net/stream.hpp"
#include "ops/throttle.hpp"
#include "proxy/upstream.hpp"
#include "proxy/vault_guard.hpp"
#include "vaultwire/config.hpp"
#include "credentials/broker.hpp"
#include "vault/vault_client.hpp"

namespace vaultwire::detail {

class fleet_links;  // proxy/fleet.hpp


// A route as the proxy uses it: the config at start plus its TLS context.
// SIGHUP may replace the context (a rotated CA): connections take a reference for
// their handshake, so the old context lives until its last handshake is done.
struct route_runtime {
  route_config config;
  ssl_ctx tls;  // empty for sslmode = disable; set before start, then replace_tls()
  // The target with a reference on the current context (held by the target).
  [[nodiscard]] upstream_target target(const limits_config& limits) const;
  void replace_tls(ssl_ctx fresh);

 private:
  mutable std::mutex tls_mutex_;
};

class session;
class upstream_pool;

struct proxy_state {
  const config* cfg = nullptr;  // as started: what a reload cannot change (binds, threads, broker)
  // What sessions read (limits, routes' roles and options): the started config, then
  // each good SIGHUP reload's. A session takes one snapshot when it starts.
  [[nodiscard]] std::shared_ptr<const config> current() const {
    std::lock_guard lock(current_mutex);
    if (current_cfg) return current_cfg;
    return std::shared_ptr<const config>(std::shared_ptr<const config>{}, cfg);  // not owned: cfg outlives us
  }
  void set_current(std::shared_ptr<const config> c) {
    std::lock_guard lock(current_mutex);
    current_cfg = std::move(c);
  }
  mutable std::mutex current_mutex;
  std::shared_ptr<const config> current_cfg;
  std::map<std::string, std::unique_ptr<route_runtime>> routes;
  std::unique_ptr<audit_log> audit;  // [audit] file; null when none. Outlives the broker (declared before it)
  std::unique_ptr<vault_client> vault;
  std::unique_ptr<credential_broker> broker;  // uses vault: declared after it, destroyed before it
  // Whether Vault was seen to refuse a made-up token (it does not replace client
  // tokens). Null: no check (tests that build their own state).
  std::shared_ptr<vault_guard> vault_check;
  // How sessions reach the cluster. Empty: connect_upstream() (upstream.cpp): the TCP
  // dial, TLS and the login. The component tests put a scripted upstream here.
  std::function<boost::asio::awaitable<upstream_session>(upstream_target, upstream_login)> upstream_connector;
  std::shared_ptr<upstream_pool> pool;        // null when [pool] reuse = false; holds lease handles
  // SCRAM key derivation (PBKDF2, up to route.scram_max_iterations) runs here, never on
  // a session thread. Null: on the session's thread (tests that build their own state).
  std::unique_ptr<boost::asio::thread_pool> crypto;
  std::atomic<std::uint64_t> upstream_logins{0};
  std::atomic<std::uint64_t> upstream_reuses{0};
  cancel_map cancels;
  // Sources whose last CancelRequest carried an unknown key, for a second.
  cancel_penalty cancel_penalties;
  // [fleet]: the kept connections to the peers; null outside a fleet.
  std::shared_ptr<fleet_links> fleet;
  // The secret behind the salts of mock SCRAM exchanges (unknown users of a password
  // listener): one for the process's life, so an unknown user's salt never changes.
  pgwire::secret_string scram_mock_secret;
  std::atomic<std::uint64_t> next_session_id{1};
  std::atomic<std::uint32_t> active_clients{0};
  std::atomic<bool> stopping{false};
  // Failed logins per (client host, token): [throttle] (the settings come with each
  // session's config snapshot, so a reload applies to the next failure).
  auth_throttle throttle;

  // Sessions per Vault role, from the startup packet to the end ([limits]
  // max_connections_per_role). Counted for every role, capped or not, so a cap added
  // by a reload sees the sessions already running. Keys are roles a route allows.
  // False (and nothing taken) when `role` already has `cap` sessions.
  [[nodiscard]] bool take_role_slot(const std::string& role, std::optional<std::uint32_t> cap) {
    std::lock_guard lock(roles_mutex);
    std::uint32_t& n = role_sessions[role];
    if (cap && n >= *cap) return false;
    ++n;
    return true;
  }
  void release_role_slot(const std::string& role) {
    std::lock_guard lock(roles_mutex);
    auto it = role_sessions.find(role);
    if (it != role_sessions.end() && it->second > 0) --it->second;
  }
  std::mutex roles_mutex;
  std::map<std::string, std::uint32_t> role_sessions;

  // Live sessions by id, with the lease each uses once it has a credential.
  struct session_entry {
    std::weak_ptr<detail::session> session;
    std::string lease_id;
  };
  std::mutex sessions_mutex;
  std::map<std::uint64_t, session_entry> sessions;
};

// One listener's view: its config and, when it terminates client TLS, a context.
struct listener_runtime {
  const listener_config* config = nullptr;
  const route_runtime* route = nullptr;
  ssl_ctx tls;  // empty for a plaintext listener; set before start, then replace_tls()
  // A reference on the current context, or an empty one.
  [[nodiscard]] ssl_ctx acquire_tls() const;
  // SIGHUP: a new certificate and key; handshakes under way keep the old context.
  void replace_tls(ssl_ctx fresh);
  // client_auth = "password": the users file as last loaded (at start, then on each
  // SIGHUP); null on other listeners. An exchange under way keeps the set it began with.
  [[nodiscard]] std::shared_ptr<const local_users> acquire_users() const;
  void replace_users(std::shared_ptr<const local_users> fresh);

 private:
  mutable std::mutex tls_mutex_;  // guards tls and users_
  std::shared_ptr<const local_users> users_;
};

// Starts a session on its own strand for an accepted socket.
void start_session(std::shared_ptr<proxy_state> state, const listener_runtime* listener,
                   stream::descriptor socket, std::string peer);

// Asks every live session to end (57P01 to clients still in admission; a close of
// both sides for spliced ones), for shutdown.
void stop_all_sessions(proxy_state& state);
// The first step of a graceful shutdown: spliced sessions end with 57P01 at their next
// idle point (a transaction finishes first); sessions not yet spliced are refused now.
void drain_all_sessions(proxy_state& state);

// Ending sessions before their clients do: the kill-switch (`on_revoke`) and lease
// expiry. Callable from any thread; each request is posted to the session's strand.
// The client gets a FATAL ErrorResponse with `sqlstate` and `message`, then both
// sides close.
//  - at_idle: when the server's last message was ReadyForQuery 'I' and nothing is
//    in flight, at once; otherwise right after the splice forwards the
//    ReadyForQuery 'I' that makes the session idle. This request cuts no
//    transaction (the kill-switch bounds the wait with [credentials] revoke_grace,
//    then asks for now).
//  - now: at once (the ErrorResponse only when the client stream is at a message
//    boundary; a message is never cut). Makes an armed at_idle immediate. A request
//    still in flight on the server is cancelled (CancelRequest) before the upstream
//    connection is closed, which rolls an open transaction back.
enum class end_mode { at_idle, now };
// False when there is no live session `id`.
bool end_session(proxy_state& state, std::uint64_t id, end_mode mode, std::string sqlstate, std::string message);
// Every live session whose credential is the lease `lease_id`; returns how many.
std::size_t end_sessions_for_lease(proxy_state& state, std::string_view lease_id, end_mode mode,
                                   const std::string& sqlstate, const std::string& message);
// A NoticeResponse (severity WARNING, SQLSTATE 01000) to the client, written only at a
// message boundary right after a ReadyForQuery: at once when the session waits for
// its client, else after the next ReadyForQuery. Dropped once the session ended.
bool notice_session(proxy_state& state, std::uint64_t id, std::string message);
std::size_t notice_sessions_for_lease(proxy_state& state, std::string_view lease_id, const std::string& message);

}  // namespace vaultwire::detail
