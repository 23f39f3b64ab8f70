// Framing decoder: finds one packet at the front of a byte buffer and says whether
// it is complete. Like Envoy's postgres decoder it answers in three ways:
//   need_more  the buffer holds a proper prefix of a packet; read more and call
//              again with the whole buffer (nothing is consumed, no state is kept)
//   message    one packet is complete: `consumed` bytes form it
//   error      the bytes can never become a valid packet; disconnect (fail closed)
// Errors are reported as early as the bytes allow: an unknown type as soon as the
// type byte is there, a bad length as soon as the length is there, so a peer
// cannot make the proxy wait for (or buffer) a body it will refuse anyway.
// A caller that forwards a stream as it comes, without buffering whole messages,
// frames it with message_framer (framer.hpp) instead.
// https://www.postgresql.org/docs/current/protocol-message-formats.html
#pragma once

#include <cstddef>
#include <cstdint>
#include <system_error>

#include "pgwire/frame.hpp"
#include "pgwire/messages.hpp"

namespace pgwire {

enum class decode_status { need_more, message, error };

// Who sent the bytes: frontend = a client, backend = a server.
enum class direction { frontend, backend };

// ---- startup phase ----

struct startup_decode_result {
  decode_status status = decode_status::need_more;
  std::size_t consumed = 0;  // packet length on `message`, else 0
  std::error_code error;     // set on `error`
  startup_packet packet;     // set on `message`, else monostate
};

// Decodes the first packet a client sends (and the one after a refused
// SSLRequest/GSSENCRequest): StartupMessage, SSLRequest, GSSENCRequest or
// CancelRequest. `max_length` caps the packet's length field (which counts itself).
// Errors:
//   length_too_short      length < 8
//   length_too_long       length > max_length
//   unsupported_protocol  major version != 3 (2.0 included), or a 1234.x code
//                         other than the three special requests
//   malformed_message     SSLRequest/GSSENCRequest not 8 bytes, CancelRequest not
//                         16 bytes, or a bad parameter list (see
//                         parse_startup_params; trailing_bytes from there too)
// Minor versions above 0 are accepted and reported in startup_message::minor so
// the caller can answer with NegotiateProtocolVersion.
[[nodiscard]] startup_decode_result decode_startup_packet(
    bytes_view in, std::size_t max_length = max_startup_packet);

// ---- typed messages ----

// One framed message. `body` points into the buffer given to decode_message and
// is valid as long as that buffer is neither freed nor overwritten.
struct message_view {
  char type = 0;
  bytes_view body;
};

struct message_decode_result {
  decode_status status = decode_status::need_more;
  std::size_t consumed = 0;  // 1 + length on `message`, else 0
  std::error_code error;     // set on `error`
  message_view message;      // set on `message`
};

// The 5-byte header alone, for callers that stream a body instead of buffering
// it (splice mode): `message` once the header is complete and valid.
struct header_decode_result {
  decode_status status = decode_status::need_more;
  std::error_code error;
  char type = 0;               // in[0]: set on `message` and on `error`
  std::uint32_t length = 0;    // the length field as read: set on `message` and on a
                               // length error, so the caller can say what was wrong
  std::size_t frame_size = 0;  // 1 + length: header and body together; on `message`
};

// Whether `type` is a message type that `dir` may send in protocol 3.0.
[[nodiscard]] bool is_known_message_type(char type, direction dir) noexcept;

// Reads the header at the front of `in` without judging the type byte: the one
// place a typed message header is read, for callers that pass unknown types
// through (the splice's message_framer) and, through decode_message_header, for
// those that do not. `max_length` caps the length field (which counts itself but
// not the type byte). need_more until the 5 header bytes are there; then errors
// length_too_short (< 4) and length_too_long (> max_length or > 2^31 - 1).
[[nodiscard]] header_decode_result parse_message_header(bytes_view in, std::size_t max_length) noexcept;

// parse_message_header, plus the type check: unknown_message_type for a type
// `dir` may not send, as soon as in[0] is there (before the length).
[[nodiscard]] header_decode_result decode_message_header(bytes_view in, std::size_t max_length,
                                                         direction dir);

// Frames the first message of `in`: the header checks above, then need_more
// until the whole body is there. Does not look inside the body.
[[nodiscard]] message_decode_result decode_message(bytes_view in, std::size_t max_length,
                                                   direction dir);

}  // namespace pgwire
