// Writing messages: an append-only builder (after pgbouncer's pktbuf) and one
// encode function per message vaultwire writes.
// https://www.postgresql.org/docs/current/protocol-message-formats.html
//
// Every function appends whole messages to a caller-owned std::vector; it never
// clears it, so several messages can be batched into one write. On error nothing
// is appended: `out` keeps the size it had. Errors:
//   malformed_message  a String that would contain NUL (it would end the String
//                      early and desynchronise the peer), an empty name where the
//                      empty String is a terminator, an out-of-range enum value
//   length_too_long    a message longer than an Int32 length can say (startup
//                      packet: longer than max_startup_packet)
// Messages that carry secrets (PasswordMessage, SASLResponse) leave them in `out`:
// the caller wipes that buffer once written.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "pgwire/errc.hpp"
#include "pgwire/frame.hpp"
#include "pgwire/messages.hpp"

namespace pgwire {

// Builds one message at a time at the end of `out`:
//   message_builder b(out);
//   b.begin('S'); b.add_cstring(name); b.add_cstring(value);
//   if (auto r = b.finish(); !r) ...
// finish() patches the length. An add_* that cannot be written faithfully (a
// NUL in add_cstring, any add_* outside begin/finish) makes finish() fail and
// remove the partial message. `out` must outlive the builder; the builder does
// not own it.
class message_builder {
 public:
  explicit message_builder(std::vector<std::uint8_t>& out) noexcept : out_(out) {}

  // Starts a typed message: Byte1 type, Int32 length placeholder. A message that
  // was begun and not finished is discarded first.
  void begin(char type);
  // Starts a startup-phase packet, which has no type byte.
  void begin_untyped();

  void add_byte(std::uint8_t v);
  void add_int16(std::int16_t v);
  void add_int32(std::int32_t v);
  // A String: the bytes, then NUL. `s` must not contain NUL.
  void add_cstring(std::string_view s);
  // Raw bytes (Byte n); any value allowed.
  void add_bytes(bytes_view b);
  void add_bytes(std::string_view b) { add_bytes(as_bytes(b)); }
  // Marks the open message as invalid: finish() will remove it and return `e`.
  // For checks the builder cannot make itself (an empty name in a list).
  void fail(errc e) noexcept;

  // Patches the length of the open message. `max_length` caps the length field.
  // On error the partial message is removed.
  [[nodiscard]] outcome::std_result<void> finish(std::size_t max_length = max_length_field);

  // True between begin*() and finish().
  [[nodiscard]] bool open() const noexcept { return open_; }

 private:
  void discard() noexcept;
  [[nodiscard]] bool writable() noexcept;

  std::vector<std::uint8_t>& out_;
  std::size_t start_ = 0;       // where the open message begins in out_
  std::size_t length_at_ = 0;   // where its Int32 length goes
  bool open_ = false;
  std::error_code error_;       // first problem since begin*()
};

// ---- startup phase (frontend) ----

// Version from msg.major/minor; every name non-empty; the packet must fit in
// max_startup_packet.
[[nodiscard]] outcome::std_result<void> encode_startup_message(std::vector<std::uint8_t>& out,
                                                               const startup_message& msg);
void encode_ssl_request(std::vector<std::uint8_t>& out);
void encode_gssenc_request(std::vector<std::uint8_t>& out);
void encode_cancel_request(std::vector<std::uint8_t>& out, const cancel_request& msg);

// ---- authentication (backend) ----

void encode_authentication_ok(std::vector<std::uint8_t>& out);
void encode_authentication_cleartext_password(std::vector<std::uint8_t>& out);
void encode_authentication_md5_password(std::vector<std::uint8_t>& out,
                                        const std::array<std::uint8_t, 4>& salt);
// At least one mechanism; names non-empty without NUL.
[[nodiscard]] outcome::std_result<void> encode_authentication_sasl(
    std::vector<std::uint8_t>& out, std::span<const std::string_view> mechanisms);
[[nodiscard]] outcome::std_result<void> encode_authentication_sasl(
    std::vector<std::uint8_t>& out, std::span<const std::string> mechanisms);
[[nodiscard]] outcome::std_result<void> encode_authentication_sasl_continue(
    std::vector<std::uint8_t>& out, std::string_view data);
[[nodiscard]] outcome::std_result<void> encode_authentication_sasl_final(
    std::vector<std::uint8_t>& out, std::string_view data);
// Any authentication value, dispatching on msg.type (gss_continue carries data).
[[nodiscard]] outcome::std_result<void> encode_authentication(std::vector<std::uint8_t>& out,
                                                              const authentication& msg);

// ---- authentication (frontend) ----

[[nodiscard]] outcome::std_result<void> encode_password_message(std::vector<std::uint8_t>& out,
                                                                std::string_view password);
// data == nullopt writes length -1 (no initial response).
[[nodiscard]] outcome::std_result<void> encode_sasl_initial_response(
    std::vector<std::uint8_t>& out, std::string_view mechanism,
    std::optional<std::string_view> data);
[[nodiscard]] outcome::std_result<void> encode_sasl_response(std::vector<std::uint8_t>& out,
                                                             std::string_view data);

// ---- ErrorResponse / NoticeResponse (backend) ----

// Field codes non-zero, values without NUL; written in the given order.
[[nodiscard]] outcome::std_result<void> encode_error_response(
    std::vector<std::uint8_t>& out, std::span<const error_field> fields);
[[nodiscard]] outcome::std_result<void> encode_notice_response(
    std::vector<std::uint8_t>& out, std::span<const error_field> fields);

enum class error_severity { error, fatal, panic, warning, notice, debug, info, log };

// The English severity word ("FATAL", ...).
[[nodiscard]] std::string_view to_string(error_severity s) noexcept;

// Collects the fields vaultwire's own errors carry and lays them out in the order
// PostgreSQL writes them: S, V, C, M, D, H, then extra fields in call order.
// 'S' and 'V' both get the English severity (vaultwire does not localize).
//   encode_error_response(out, error_builder(error_severity::fatal)
//       .sqlstate(sqlstate::invalid_password).message("...").fields());
class error_builder {
 public:
  explicit error_builder(error_severity severity = error_severity::error) noexcept
      : severity_(severity) {}

  error_builder& severity(error_severity s) noexcept {
    severity_ = s;
    return *this;
  }
  error_builder& sqlstate(std::string_view code) {
    sqlstate_ = code;
    return *this;
  }
  error_builder& message(std::string_view text) {
    message_ = text;
    return *this;
  }
  error_builder& detail(std::string_view text) {
    detail_ = text;
    return *this;
  }
  error_builder& hint(std::string_view text) {
    hint_ = text;
    return *this;
  }
  // Any other field ('P', 'W', ...), kept in call order. C, M, D and H act like
  // the setters; S and V are ignored (the severity decides them).
  error_builder& field(char code, std::string_view value);

  [[nodiscard]] std::vector<error_field> fields() const;

 private:
  error_severity severity_;
  std::optional<std::string> sqlstate_;
  std::optional<std::string> message_;
  std::optional<std::string> detail_;
  std::optional<std::string> hint_;
  std::vector<error_field> extra_;
};

// ---- other backend messages ----

[[nodiscard]] outcome::std_result<void> encode_parameter_status(std::vector<std::uint8_t>& out,
                                                                std::string_view name,
                                                                std::string_view value);
void encode_backend_key_data(std::vector<std::uint8_t>& out, const backend_key_data& msg);
// status must be one of the three enumerators.
[[nodiscard]] outcome::std_result<void> encode_ready_for_query(std::vector<std::uint8_t>& out,
                                                               transaction_status status);
// newest_version: see negotiate_protocol_version (send protocol_version_3_0).
[[nodiscard]] outcome::std_result<void> encode_negotiate_protocol_version(
    std::vector<std::uint8_t>& out, std::int32_t newest_version,
    std::span<const std::string> unrecognized);

// ---- other frontend messages ----

void encode_terminate(std::vector<std::uint8_t>& out);

}  // namespace pgwire
