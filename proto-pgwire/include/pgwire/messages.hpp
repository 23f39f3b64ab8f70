// Typed messages of the PostgreSQL protocol 3.0 that vaultwire inspects or writes
// itself, and parsers over a message body.
// https://www.postgresql.org/docs/current/protocol-message-formats.html
//
// A parse_x(body) function takes the body of one framed message (what
// decode_message returns: the bytes after Byte1 type and Int32 length) and returns
// a value that owns copies of every string, so the value outlives the buffer.
// Errors (never exceptions, never a read outside `body`):
//   errc::malformed_message  a field is short, a String has no NUL, a count or a
//                            code is out of range
//   errc::trailing_bytes     bytes follow the last field
// Message types are not checked here: the caller has matched the type byte.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "pgwire/errc.hpp"
#include "pgwire/frame.hpp"
#include "pgwire/secret.hpp"

namespace pgwire {

// Type bytes of the messages a backend (server) sends.
namespace backend_type {
inline constexpr char authentication = 'R';
inline constexpr char parameter_status = 'S';
inline constexpr char backend_key_data = 'K';
inline constexpr char ready_for_query = 'Z';
inline constexpr char error_response = 'E';
inline constexpr char notice_response = 'N';
inline constexpr char command_complete = 'C';
inline constexpr char data_row = 'D';
inline constexpr char row_description = 'T';
inline constexpr char empty_query_response = 'I';
inline constexpr char parse_complete = '1';
inline constexpr char bind_complete = '2';
inline constexpr char close_complete = '3';
inline constexpr char no_data = 'n';
inline constexpr char portal_suspended = 's';
inline constexpr char parameter_description = 't';
inline constexpr char copy_in_response = 'G';
inline constexpr char copy_out_response = 'H';
inline constexpr char copy_both_response = 'W';
inline constexpr char copy_data = 'd';
inline constexpr char copy_done = 'c';
inline constexpr char notification_response = 'A';
inline constexpr char function_call_response = 'V';
inline constexpr char negotiate_protocol_version = 'v';
}  // namespace backend_type

// Type bytes of the messages a frontend (client) sends after the startup packet.
namespace frontend_type {
inline constexpr char query = 'Q';
inline constexpr char parse = 'P';
inline constexpr char bind = 'B';
inline constexpr char execute = 'E';
inline constexpr char describe = 'D';
inline constexpr char close = 'C';
inline constexpr char sync = 'S';
inline constexpr char flush = 'H';
inline constexpr char function_call = 'F';
inline constexpr char copy_data = 'd';
inline constexpr char copy_done = 'c';
inline constexpr char copy_fail = 'f';
// PasswordMessage, SASLInitialResponse, SASLResponse and GSSResponse share 'p';
// which one it is follows from the authentication request it answers.
inline constexpr char password = 'p';
inline constexpr char terminate = 'X';
}  // namespace frontend_type

// ---- startup phase (no type byte; see decoder.hpp) ----

// StartupMessage. `params` keeps the wire order; duplicates pass as they came
// (PostgreSQL lets the last one win). Names and values never contain NUL.
struct startup_message {
  std::uint16_t major = 3;
  std::uint16_t minor = 0;
  std::vector<std::pair<std::string, std::string>> params;

  // The value of the last parameter named `name`, if any. The view is valid as
  // long as this object is not modified.
  [[nodiscard]] std::optional<std::string_view> find(std::string_view name) const noexcept;
};

struct ssl_request {};
struct gssenc_request {};

// CancelRequest as protocol 3.0 defines it: a 4-byte secret key. (Protocol 3.2
// allows longer keys; vaultwire negotiates clients down to 3.0.)
struct cancel_request {
  std::int32_t process_id = 0;
  std::int32_t secret_key = 0;
};

// What decode_startup_packet produced; monostate when it produced nothing.
using startup_packet =
    std::variant<std::monostate, startup_message, ssl_request, gssenc_request, cancel_request>;

// ---- backend messages ----

enum class auth_type : std::int32_t {
  ok = 0,
  kerberos_v5 = 2,
  cleartext_password = 3,
  md5_password = 5,
  gss = 7,
  gss_continue = 8,
  sspi = 9,
  sasl = 10,
  sasl_continue = 11,
  sasl_final = 12,
};

// An Authentication* message ('R'). Which members are meaningful depends on `type`.
struct authentication {
  auth_type type = auth_type::ok;
  std::array<std::uint8_t, 4> md5_salt{};  // md5_password
  std::vector<std::string> mechanisms;     // sasl: names in the server's order
  std::string data;                        // gss_continue, sasl_continue, sasl_final
};

// One field of ErrorResponse / NoticeResponse: the field code ('S', 'V', 'C', 'M',
// ...; never 0) and its value (never contains NUL).
// https://www.postgresql.org/docs/current/protocol-error-fields.html
using error_field = std::pair<char, std::string>;

// The fields of an ErrorResponse or NoticeResponse, in wire order. The accessors
// return the first field with that code, or an empty view when there is none; the
// views are valid as long as `fields` is not modified.
struct error_fields {
  std::vector<error_field> fields;

  [[nodiscard]] std::string_view field(char code) const noexcept;
  [[nodiscard]] bool has_field(char code) const noexcept;
  // The non-localized severity ('V', since 9.6) when present, else 'S'.
  [[nodiscard]] std::string_view severity() const noexcept;
  [[nodiscard]] std::string_view sqlstate() const noexcept { return field('C'); }
  [[nodiscard]] std::string_view message() const noexcept { return field('M'); }
  [[nodiscard]] std::string_view detail() const noexcept { return field('D'); }
  [[nodiscard]] std::string_view hint() const noexcept { return field('H'); }
};

struct error_response : error_fields {};   // 'E' from the backend
struct notice_response : error_fields {};  // 'N'

struct parameter_status {  // 'S'
  std::string name;
  std::string value;
};

// BackendKeyData ('K') as protocol 3.0 defines it: a 4-byte secret key.
struct backend_key_data {
  std::int32_t process_id = 0;
  std::int32_t secret_key = 0;
};

enum class transaction_status : char { idle = 'I', in_transaction = 'T', failed = 'E' };

struct ready_for_query {  // 'Z'
  transaction_status status = transaction_status::idle;
};

// NegotiateProtocolVersion ('v'). The 3.0 documentation calls the first Int32 the
// "newest minor protocol version", but PostgreSQL sends its full newest version
// code (PG_PROTOCOL_LATEST: 196608 for 3.0) and libpq reads it that way; send
// protocol_version_3_0. The value is kept as it came; use protocol_major() /
// protocol_minor() on it.
struct negotiate_protocol_version {
  std::int32_t newest_minor = protocol_version_3_0;
  std::vector<std::string> unrecognized;  // option names ("_pq_.x"), in wire order
};

// ---- frontend messages ----

// PasswordMessage ('p'): a cleartext password or "md5" + 32 hex digits. The
// password is a secret; note the caller's input buffer held it too.
struct password_message {
  secret_string password;
};

// SASLInitialResponse ('p'). `data` is absent when the length field is -1. The
// mechanism name is never empty (an empty one is malformed_message).
struct sasl_initial_response {
  std::string mechanism;
  std::optional<std::string> data;
};

// SASLResponse ('p'). For SCRAM this is the client-final-message with the proof.
struct sasl_response {
  secret_string data;
};

struct terminate {};  // 'X'

// ---- parsers ----

// An authentication code outside auth_type (SCMCredential 6 or anything newer) is
// malformed_message; the code is the body's first Int32 if the caller wants to
// name it. sasl: at least one mechanism, each non-empty, the list ended by an
// empty String.
[[nodiscard]] outcome::std_result<authentication> parse_authentication(bytes_view body);
[[nodiscard]] outcome::std_result<error_response> parse_error_response(bytes_view body);
[[nodiscard]] outcome::std_result<notice_response> parse_notice_response(bytes_view body);
[[nodiscard]] outcome::std_result<parameter_status> parse_parameter_status(bytes_view body);
[[nodiscard]] outcome::std_result<backend_key_data> parse_backend_key_data(bytes_view body);
[[nodiscard]] outcome::std_result<ready_for_query> parse_ready_for_query(bytes_view body);
[[nodiscard]] outcome::std_result<negotiate_protocol_version> parse_negotiate_protocol_version(
    bytes_view body);
[[nodiscard]] outcome::std_result<password_message> parse_password_message(bytes_view body);
[[nodiscard]] outcome::std_result<sasl_initial_response> parse_sasl_initial_response(
    bytes_view body);
[[nodiscard]] outcome::std_result<sasl_response> parse_sasl_response(bytes_view body);
[[nodiscard]] outcome::std_result<terminate> parse_terminate(bytes_view body);

// The parameter list of a StartupMessage: the bytes after the version code, i.e.
// name/value String pairs ended by a single NUL that must be the last byte.
// A name without a value or a missing terminator: malformed_message; bytes after
// the terminator: trailing_bytes. decode_startup_packet calls this.
[[nodiscard]] outcome::std_result<std::vector<std::pair<std::string, std::string>>>
parse_startup_params(bytes_view params);

}  // namespace pgwire
