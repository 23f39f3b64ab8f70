// The audit log: one JSON object per line ("JSON lines") for each session start and
// end and each credential issue, renewal and revocation, appended to [audit] file.
//
// No secrets, by construction: audit_event has no field that could hold a token,
// password or SCRAM value (a token is named by its accessor, a credential by its
// lease id), and every string is escaped by nlohmann::json, so a value cannot forge
// a field or a line. Bytes that are not UTF-8 are replaced with U+FFFD.
//
// A line looks like (fields in this order; a field that does not apply is absent):
//   {"time":"2024-06-01T12:34:56.789Z","event":"session_end","session":"C-000042",
//    "client":"203.0.113.7:51234","listener":"127.0.0.1:26257","role":"crdb-role",
//    "database":"defaultdb","token_accessor":"...","token_display_name":"token-app",
//    "entity_id":"...","lease_id":"database/creds/crdb-role/abc","db_user":"v-token-...",
//    "result":"ok","sqlstate":"57P01","reason":"...","bytes_in":512,"bytes_out":2048,
//    "duration_ms":1234}
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace vaultwire::detail {

enum class audit_event_type {
  session_start,
  session_end,
  credential_issue,
  credential_renew,
  credential_revoke,
};

// "session_start", "session_end", "credential_issue", "credential_renew",
// "credential_revoke": the value of the "event" field.
[[nodiscard]] std::string_view to_string(audit_event_type type) noexcept;

// One audit record. Fill in what applies; unset optionals are left out of the line.
struct audit_event {
  audit_event_type type = audit_event_type::session_start;
  // When it happened; the default is the moment the event is built.
  std::chrono::system_clock::time_point time = std::chrono::system_clock::now();
  std::optional<std::uint64_t> session_id;  // written "C-%06llu", as in the log prefix
  std::optional<std::string> client_address;  // "203.0.113.7:51234" (PROXY header's when used)
  std::optional<std::string> local_identity;  // client_auth = "peer": "uid:1000", the kernel's word for the client
  std::optional<std::string> listener;        // the listener's bind address or socket path
  std::optional<std::string> role;            // the Vault role (the client's user name)
  std::optional<std::string> database;
  std::optional<std::string> token_accessor;  // never the token itself
  std::optional<std::string> token_display_name;
  std::optional<std::string> entity_id;
  std::optional<std::string> lease_id;
  std::optional<std::string> db_user;  // the dynamic database user name
  std::optional<std::string> result;   // "ok", or an error label ("vault_rejected_token", ...)
  std::optional<std::string> sqlstate;  // what the client was told, when it was refused or ended
  std::optional<std::string> reason;    // why, for revocations and ends ("idle", "shutdown", ...)
  std::optional<std::uint64_t> bytes_in;   // client -> server
  std::optional<std::uint64_t> bytes_out;  // server -> client
  std::optional<std::int64_t> duration_ms;
};

// The line for `event`, with its trailing '\n'. Never throws for bad UTF-8.
[[nodiscard]] std::string to_json_line(const audit_event& event);

// "2024-06-01T12:34:56.789Z": RFC 3339, UTC, milliseconds.
[[nodiscard]] std::string format_rfc3339_ms(std::chrono::system_clock::time_point t);

class audit_log;

struct [[nodiscard]] audit_open_result {
  std::unique_ptr<audit_log> log;  // set on success
  std::error_code error;           // errno of open(2) on failure (system_category)
  std::string message;             // on failure: "cannot open audit log \"PATH\": <strerror>"
};

// An open audit file. Thread-safe: write() and reopen() may be called from any
// thread at the same time (one mutex). Each line goes out with one write(2) on an
// O_APPEND descriptor, so lines from this process never interleave and a reader
// sees whole lines (a short write, only when the disk fills, is finished with
// further write calls under the same lock).
//
// Failures never throw and never stop the caller: a failed write is counted, and
// logged once (spdlog error) when writes start failing and once (info) when they
// work again. The file is created 0600 if missing (an existing file's mode is
// kept: logrotate's `create` decides it).
class audit_log {
 public:
  // Opens `path` for appending (O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600).
  [[nodiscard]] static audit_open_result open(const std::filesystem::path& path);

  audit_log(const audit_log&) = delete;
  audit_log& operator=(const audit_log&) = delete;
  ~audit_log();

  // Appends the event's line. Never throws.
  void write(const audit_event& event) noexcept;

  // SIGHUP / logrotate: opens the path again and switches to the new descriptor.
  // On failure the old descriptor stays in use (writes go on to the renamed file)
  // and the error is returned and logged.
  [[nodiscard]] std::error_code reopen();

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  [[nodiscard]] std::uint64_t lines_written() const noexcept { return written_.load(); }
  [[nodiscard]] std::uint64_t write_failures() const noexcept { return failures_.load(); }

 private:
  audit_log(std::filesystem::path path, int fd) : path_(std::move(path)), fd_(fd) {}
  int write_all(std::string_view line);  // under mu_; 0 or an errno value

  const std::filesystem::path path_;
  std::mutex mu_;
  int fd_;                // guarded by mu_
  bool failing_ = false;  // guarded by mu_: the last write failed
  std::atomic<std::uint64_t> written_{0};
  std::atomic<std::uint64_t> failures_{0};
};

}  // namespace vaultwire::detail
