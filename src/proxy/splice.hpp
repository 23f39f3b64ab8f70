// splice: after the handover, copy bytes both ways between the client and the
// server until either side ends. Private header of src/ (includes Asio).
//
// Data path contract: each pump reads into a per-thread buffer and writes the
// bytes straight out with a non-blocking write in the same turn; only a partial
// write copies the rest into a buffer of its own while it waits. An idle
// connection holds no splice buffer. When one side ends cleanly the other gets a
// half-close (shutdown of sending); on an error both are closed. The exception:
// with splice_options::keep_busy_server, a client that goes away while the server is
// busy leaves the server stream to the caller, to cancel the request first.
//
// Both directions are framed as they pass (pgwire::message_framer: the 5-byte
// headers only, no copy, no allocation), so the splice always knows whether the
// server's last complete message was ReadyForQuery and with which status, and
// whether the client has anything in flight. That is what lets vaultwire speak to the client
// itself — an idle timeout, the end of a session at its next idle point, a notice —
// without cutting a message or a transaction in half.
// https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <system_error>
#include <vector>

#include "net/stream.hpp"
#include "pgwire/framer.hpp"

namespace vaultwire::detail {

// What the session asks of its splice, and what the splice knows about the
// conversation. Owned by the session; every member is used on the session's strand
// only (the pumps, the idle watchdog and the session's posted handlers run there).
// It may be used before the splice runs: requests made then are kept and acted on
// when the splice starts.
class splice_control {
 public:
  // The handover ended with ReadyForQuery(status): the initial framing state.
  void start(stream& client, stream& server, char ready_status);
  // Once the splice has returned: no more requests reach the streams.
  void finish();

  // Ends the session at its next idle point: now, when the server's last message
  // was ReadyForQuery 'I' and nothing is in flight either way; otherwise right after
  // the splice forwards the ReadyForQuery 'I' that makes it idle. `error_response`
  // (an encoded ErrorResponse) is written to the client, then both sides close.
  void end_at_idle(std::vector<std::uint8_t> error_response, std::string reason);
  // Ends the session now: `error_response` goes to the client when its stream is at
  // a message boundary with no write pending (otherwise the client only sees the
  // close, since a message cannot be cut), then both sides close.
  void end_now(std::vector<std::uint8_t> error_response, std::string reason);
  // Queues an encoded NoticeResponse for the client: written at once when the
  // session waits for its client (waiting_for_client(), any transaction status),
  // else right after the next ReadyForQuery is forwarded.
  void notice(std::span<const std::uint8_t> notice_response);

  // The server waits for the client: its last message was ReadyForQuery, the
  // client has no message in flight (counted by Query / Sync / FunctionCall against
  // ReadyForQuery, partial or unsynced extended-protocol messages included), and no
  // write is pending either way. `status` 'I' also requires no open transaction.
  [[nodiscard]] bool waiting_for_client() const noexcept;
  [[nodiscard]] bool idle() const noexcept { return waiting_for_client() && rfq_status_ == 'I'; }
  // The server may be working on something the client sent: a Query, Sync or
  // FunctionCall not yet answered by ReadyForQuery, or extended-protocol messages
  // without their Sync (an Execute runs as soon as it arrives).
  [[nodiscard]] bool server_busy() const noexcept { return outstanding_ > 0 || batch_open_; }

  // The client ended an idle session with Terminate and the splice kept the server
  // (splice_options::keep_server_on_idle_terminate): the server stream is no longer
  // the splice's. An end_now / end_at_idle after this closes the server after all
  // (the session asked for an end), and this turns false.
  [[nodiscard]] bool client_terminated_idle() const noexcept { return client_terminated_idle_ && !ended_; }

  // With splice_options::keep_busy_server: the splice ended while the server was
  // busy (server_busy()), and left the server stream to its caller (see there).
  [[nodiscard]] bool server_kept_busy() const noexcept { return server_kept_busy_; }

  [[nodiscard]] bool ended() const noexcept { return ended_; }
  [[nodiscard]] const std::string& end_reason() const noexcept { return end_reason_; }
  [[nodiscard]] bool end_armed() const noexcept { return end_armed_; }

 private:
  friend struct splice_access;

  // Writes the ErrorResponse best effort (if the client stream is at a boundary)
  // and closes both streams.
  void end_here();
  [[nodiscard]] bool client_at_boundary() const noexcept {
    return server_framer_.at_boundary() && !down_writing_ && client_backlog_.empty();
  }
  void write_notices_now();
  // keep_busy_server_ and server_busy(): the server stream is left open for the
  // caller, its pending waits cancelled (no I/O on it); true. Otherwise false.
  bool keep_server_if_busy();

  stream* client_ = nullptr;
  stream* server_ = nullptr;
  bool running_ = false;

  // server -> client
  pgwire::message_framer server_framer_;
  bool last_was_rfq_ = true;
  char rfq_status_ = 'I';
  bool down_writing_ = false;  // the down pump waits on a partial write to the client
  // The rest of an injected message whose non-blocking write was partial: the down
  // pump writes it before any further server bytes.
  std::vector<std::uint8_t> client_backlog_;

  // client -> server
  pgwire::message_framer client_framer_;
  std::uint64_t outstanding_ = 0;  // Query / Sync / FunctionCall not yet answered by ReadyForQuery
  bool batch_open_ = false;        // extended-protocol messages since the last Sync
  char last_command_ = 0;          // the client's last Query / FunctionCall / Execute
  std::uint64_t syncs_since_execute_ = 0;
  bool copy_in_ = false;           // the server sent CopyInResponse; no CopyDone / CopyFail yet
  bool up_writing_ = false;

  std::chrono::steady_clock::time_point last_activity_ = std::chrono::steady_clock::now();

  bool keep_server_on_idle_terminate_ = false;  // from splice_options
  bool client_terminated_idle_ = false;         // the splice swallowed an idle Terminate
  bool keep_busy_server_ = false;               // from splice_options
  bool server_kept_busy_ = false;               // the splice ended busy and left the server open

  std::vector<std::uint8_t> notices_;  // encoded NoticeResponses waiting for a ReadyForQuery
  bool end_armed_ = false;
  bool end_now_pending_ = false;  // requested before the splice started
  std::vector<std::uint8_t> end_message_;
  std::string end_reason_;
  bool ended_ = false;
};

struct splice_result {
  std::uint64_t client_to_server = 0;
  std::uint64_t server_to_client = 0;
  std::string ended_by;  // "client", "server", "idle timeout", "client error: ...", ...
  bool idle_timeout = false;
  bool ended_by_request = false;  // end_at_idle / end_now
  // The server (or client) broke the framing: what was wrong, for the log.
  std::string protocol_violation;
  // With splice_options::keep_server_on_idle_terminate: the client sent Terminate
  // while the session was idle. The Terminate was not forwarded; the client stream
  // is closed; the server stream is open and untouched: no operation outstanding,
  // nothing written to it since the client's last message, and anything the server
  // sent after its ReadyForQuery 'I' left unread in the socket (upstream_pool then
  // refuses it as dead). ended_by is "client". False whenever anything else ended
  // the splice.
  bool client_terminated_idle = false;
  // With splice_options::keep_busy_server: the splice ended while the server was still
  // working on the client's request. The server stream is open, nothing has been read
  // from or written to it since, and the caller is to cancel the request before it
  // closes it. ended_by says what ended the splice.
  bool server_busy = false;
};

struct splice_options {
  // With idle_timeout set, a session waiting for its client (see
  // splice_control::waiting_for_client) with no bytes either way for that long gets
  // `idle_message` (an ErrorResponse) and both sides closed.
  std::optional<std::chrono::milliseconds> idle_timeout;
  std::vector<std::uint8_t> idle_message;
  char ready_status = 'I';  // of the ReadyForQuery the handover sent
  // Keep the server when the client ends an idle session: when one read from the
  // client is exactly one Terminate ('X', length 4) at a message boundary while
  // splice_control::idle() holds, the splice swallows it, closes the client side
  // only, stops reading the server (its pending wait is cancelled; the server
  // stream stays open) and returns with client_terminated_idle. In every other case
  // (a Terminate inside a transaction, behind a query in flight, or sharing a read
  // with other bytes) Terminate is forwarded as usual.
  bool keep_server_on_idle_terminate = false;
  // Leave the server to the caller when the splice ends while the server is busy
  // (splice_control::server_busy()) because the client side ended (EOF, or an error
  // reading from or writing to it) or end_now cut the session: PostgreSQL does not
  // notice a closed socket while a statement runs (unless client_connection_check_interval
  // is set), so closing it would leave the statement and its locks running. The
  // client stream is closed; the server stream stays open with no I/O pending and
  // splice_result::server_busy is set. Anything else (the server's own end, a broken
  // frame, a failed write to the server) closes both as usual.
  bool keep_busy_server = false;
};

// Runs until both directions are done. Both streams and `control` outlive the call.
boost::asio::awaitable<splice_result> splice(stream& client, stream& server, splice_control& control,
                                             splice_options options);

}  // namespace vaultwire::detail
