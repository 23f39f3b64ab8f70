// upstream_pool: idle upstream connections kept for reuse (DESIGN.md "upstream ...
// reuse"). When a client ends an idle session with
// Terminate (splice_options::keep_server_on_idle_terminate), the session checks its
// upstream in; a later client with the same (credential, database, startup
// parameters) checks it out instead of dialing and logging in again. Reuse is
// invisible to clients except in speed: the connection is reset (reset_query,
// DISCARD ALL by default) before it is kept, the new client gets the server's
// ParameterStatus set as it stands after the reset, and a fresh BackendKeyData
// secret (the session's job: `key` below is the server's and never leaves
// vaultwire).
//
// Private header of src/ (includes Asio). Thread-safe: every member may be called
// from any thread (one mutex). A kept stream has no operation outstanding and no
// owner but the pool, so the pool may close it from whichever thread calls
// sweep / evict_lease / clear / checkout. Streams stay bound to the executor of the
// session that checked them in until checkout rebinds them: clear() (or destroy)
// the pool before the io_context it was used with.
//
// Never handed out: a connection whose lease ends within 5 s (lease_margin), one
// idle longer than idle_timeout, one the server closed or wrote to while idle
// (poll() says readable or hung up, or TLS holds unread plaintext), one whose lease
// was evicted (evict_lease: lease events, invalidation, a token that failed its
// recheck — the session calls it).
#pragma once

#include <pgwire/messages.hpp>

#include <chrono>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "net/stream.hpp"
#include "vaultwire/config.hpp"
#include "credentials/broker.hpp"

namespace vaultwire::detail {

// One upstream connection at the server's ReadyForQuery 'I', with what a session
// needs to hand it to a client.
struct pooled_upstream {
  std::unique_ptr<stream> conn;
  std::string peer;                             // "host:port", for logs
  std::string local_address;                    // the connection's local IP, for cancels
  pgwire::backend_key_data key;                 // the server's cancel key (never given to clients)
  // Encoded ParameterStatus ('S') messages to replay to the next client, in the
  // server's order. At checkin: the login's set (upstream_pool::parameter_status_of
  // on the handover). After checkin: updated by name from the reset's replies.
  std::vector<std::uint8_t> parameter_status;
  std::string auth_method;                      // how the login authenticated, for logs
  std::string session_role;                     // SET ROLE after the reset (route.session_role)
  std::string lease_id;                         // for evict_lease and logs
  // The lease's end. Never kept or handed out within lease_margin of it; a default
  // (epoch) value counts as already ended.
  std::chrono::steady_clock::time_point lease_expires_at;
  // The session's hold on the credential, kept while the connection is pooled (the
  // lease stays renewed and is not revoked under it); released when the entry is
  // closed or handed out.
  credential_lease lease;
};

// A connection the pool gives up, and why (for the log).
struct pool_victim {
  pooled_upstream up;
  std::string why;
};

class upstream_pool : public std::enable_shared_from_this<upstream_pool> {
 public:
  // A connection is never kept or handed out this close to its lease's end.
  static constexpr std::chrono::seconds lease_margin{5};
  // The reset must reach ReadyForQuery within this; otherwise the connection is closed.
  static constexpr std::chrono::seconds reset_timeout{5};

  // Create with std::make_shared (checkin keeps the pool alive while it runs).
  explicit upstream_pool(pool_config cfg);
  ~upstream_pool();
  upstream_pool(const upstream_pool&) = delete;
  upstream_pool& operator=(const upstream_pool&) = delete;

  // The pool key: the credential (its lease id: one lease belongs to one credential
  // cache key, hence one token), the database, and the other startup parameters as
  // sent upstream (duplicates resolved as PostgreSQL does, the last wins; order does
  // not matter). Every field is length-prefixed, so no two inputs share a key.
  // `local_identity` (client_auth = "peer": "uid:<N>"): peers of one role share one
  // lease, and a pooled connection must never pass between local identities.
  [[nodiscard]] static std::string key_for(std::string_view lease_id, std::string_view database,
                                           const std::vector<std::pair<std::string, std::string>>& params,
                                           std::string_view local_identity = {});

  // The ParameterStatus messages of a login's handover bytes (ParameterStatus and
  // NoticeResponse mixed, as upstream_session::handover holds them), in order.
  // Stops at the first malformed message.
  [[nodiscard]] static std::vector<std::uint8_t> parameter_status_of(std::span<const std::uint8_t> handover);

  // An idle connection for `key`, rebound to `ex` (the caller's strand; use it only
  // there afterwards), newest first; nullopt when there is none. Entries found dead,
  // idle past idle_timeout or near their lease's end are closed on the way.
  [[nodiscard]] std::optional<pooled_upstream> checkout(const std::string& key,
                                                        const boost::asio::any_io_executor& ex);

  // checkout, or, when the key has no idle connection but one of its connections is
  // being reset (its client has just left), that one once the reset is done, waited for
  // at most reset_timeout. A reset is one round trip; a new login is a TCP and TLS
  // handshake, an authentication exchange and a new server process, so a client that
  // reconnects at once (pgbench -C, a driver without a pool) would otherwise miss the
  // connection it just left and leave a surplus one for the pool to close later.
  // Co_await it on `ex` (the caller's strand). nullopt: nothing idle and nothing being
  // reset for the key, or the reset failed.
  boost::asio::awaitable<std::optional<pooled_upstream>> checkout_or_wait(const std::string& key,
                                                                          const boost::asio::any_io_executor& ex);

  // Keeps `up` for `key` after resetting it, or closes it. Co_await it on the
  // executor `up.conn` is bound to (the session's strand, where the splice ran).
  // Preconditions: the server's last message was ReadyForQuery 'I' and nothing was
  // written to it since (splice_result::client_terminated_idle), no operation
  // outstanding on the stream.
  // The reset: reset_query as one simple Query, then SET ROLE session_role as a
  // second one in the same write when the route sets it; their replies are swallowed
  // (CommandComplete, RowDescription, DataRow, EmptyQueryResponse, NoticeResponse,
  // NotificationResponse; ParameterStatus updates up.parameter_status by name) and
  // must end with ReadyForQuery 'I' (one per Query) within reset_timeout, no
  // ErrorResponse. An empty reset_query and no session role send nothing (the
  // ParameterStatus set then stays the login's).
  // Then the entry is kept, the oldest of the key (max_idle_per_key) or of the pool
  // (max_idle_total) closed to make room. Returns true when kept; false when the
  // connection was closed instead: reuse off, the pool cleared, the lease near its
  // end or evicted meanwhile, the server wrote while idle or hung up, the reset
  // failed, a bound of 0.
  boost::asio::awaitable<bool> checkin(std::string key, pooled_upstream up);

  // Closes the idle entries of a lease, and makes a checkin of it that is still
  // resetting close its connection.
  void evict_lease(std::string_view lease_id);

  // Closes entries idle past idle_timeout, near their lease's end, or dead. Call it
  // periodically (a 1 s timer).
  void sweep();

  // Shutdown: closes every idle entry; checkins from now on (including those still
  // resetting) close their connection.
  void clear();
  // SIGHUP: closes every idle entry (made under the old CA, perhaps); the pool stays open.
  void close_idle(std::string_view why);

  struct stats_t {
    std::uint64_t checkins = 0;  // connections kept
    std::uint64_t reuses = 0;    // connections handed out by checkout or checkout_or_wait
    std::uint64_t handoffs = 0;  // of those, handed to a waiting checkout as their reset ended
    std::uint64_t discards = 0;  // connections the pool closed (any reason)
    std::size_t idle = 0;        // connections kept now
    std::size_t waiting = 0;     // checkouts waiting for a reset now
  };
  [[nodiscard]] stats_t stats() const;

  [[nodiscard]] const pool_config& config() const noexcept { return cfg_; }

 private:
  struct entry {
    std::string key;
    pooled_upstream up;
    std::chrono::steady_clock::time_point idle_since;
  };
  struct waiter;
  struct in_flight {
    std::string lease_id;
    std::string key;
    bool doomed = false;             // evict_lease / clear while resetting
    std::shared_ptr<waiter> parked;  // a checkout_or_wait to hand the connection to
  };

  // Runs the reset on the caller's strand. False: `why` says what went wrong.
  boost::asio::awaitable<bool> reset(pooled_upstream& up, std::string& why);
  // Closes (into `victims`) the oldest entry of `key` at max_idle_per_key, then the
  // oldest of all at max_idle_total, so that one more fits. Mutex held.
  void make_room_locked(const std::string& key, std::vector<pool_victim>& victims);
  // Wakes the checkout waiting on `f`, if any, without a connection. Mutex held.
  static void release_waiter_locked(in_flight& f);
  // Moves a handed-out connection to the caller's executor; closes it when that fails.
  bool rebind_or_close(pooled_upstream& up, const boost::asio::any_io_executor& ex);
  // Why an entry must not be kept or handed out now (empty: it may be).
  [[nodiscard]] static std::string unusable(const pooled_upstream& up, std::chrono::steady_clock::time_point now);

  const pool_config cfg_;
  mutable std::mutex mutex_;
  std::list<entry> idle_;  // oldest first
  std::map<std::uint64_t, in_flight> resetting_;
  std::uint64_t next_checkin_ = 0;
  bool closed_ = false;
  stats_t stats_;
};

}  // namespace vaultwire::detail
