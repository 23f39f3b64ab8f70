// Streaming framer: the message boundaries of one direction of a pgwire stream
// after startup, for a caller that forwards bytes as they come instead of
// buffering whole messages (a splice). Every message is a type byte and a
// big-endian Int32 length that counts itself but not the type.
// https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS
//
// The framer is fed the stream in reads of any size. It keeps a partial header
// (at most 5 bytes) from one read to the next and counts down the rest of the
// current body; it never copies or keeps a body, and it never allocates. Headers
// are read by parse_message_header, so the type byte is not judged: a type the
// framer does not know is framed and passed on like any other, and only an
// impossible length stops it (fail closed: the stream is out of sync).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <system_error>

#include "pgwire/decoder.hpp"
#include "pgwire/frame.hpp"

namespace pgwire {

// One step of message_framer::next.
//   need_more  every byte given was taken (consumed == in.size()) and no message
//              ended within them
//   message    a message ended at in[consumed - 1]; the bytes after it are not taken
//   error      a header was refused (error says why); the framer stays refused
struct frame_step {
  decode_status status = decode_status::need_more;
  std::size_t consumed = 0;
  std::error_code error;    // on `error`: length_too_short or length_too_long
  char type = 0;            // on `message`
  std::uint8_t first = 0;   // on `message`: the first body byte, 0 for an empty body
};

class message_framer {
 public:
  // `max_length` caps the length field, as for parse_message_header; by default
  // only what an Int32 length can carry.
  explicit message_framer(std::size_t max_length = max_length_field) noexcept : max_length_(max_length) {}

  // Takes bytes from the front of `in` up to the end of the next message. Call it
  // again with the bytes after `consumed` until it says need_more. `in` is read
  // during the call only.
  [[nodiscard]] frame_step next(bytes_view in) noexcept;

  // Feeds a whole read: calls on_message(type, first) (as in frame_step) for each
  // message that ends within `in`, in order. Returns false when a header is
  // refused: messages before it were reported, and refused() says what it held.
  template <class OnMessage>
  [[nodiscard]] bool feed(bytes_view in, OnMessage&& on_message);

  // Between two messages: no partial header, no body left, not refused.
  [[nodiscard]] bool at_boundary() const noexcept { return header_len_ == 0 && remaining_ == 0 && !failed_; }
  [[nodiscard]] bool failed() const noexcept { return failed_; }
  // Once failed(): the refused header (type, length as read, error).
  [[nodiscard]] const header_decode_result& refused() const noexcept { return refused_; }

 private:
  // The step for a message that ends at in[consumed - 1].
  [[nodiscard]] frame_step message_ends(std::size_t consumed) const noexcept;

  std::size_t max_length_;
  std::array<std::uint8_t, message_header_size> header_{};
  std::uint8_t header_len_ = 0;
  char type_ = 0;                // of the message whose body is counted down
  bool first_pending_ = false;   // the next body byte is the first
  std::uint8_t first_ = 0;
  std::uint32_t remaining_ = 0;  // body bytes of the current message still to come
  bool failed_ = false;
  header_decode_result refused_;
};

template <class OnMessage>
bool message_framer::feed(bytes_view in, OnMessage&& on_message) {
  while (!in.empty()) {
    const frame_step s = next(in);
    if (s.status == decode_status::error) return false;
    if (s.status == decode_status::message) on_message(s.type, s.first);
    in = in.subspan(s.consumed);
  }
  return !failed_;
}

}  // namespace pgwire
