// Framing primitives of the PostgreSQL frontend/backend protocol 3.0: byte views,
// big-endian integer access, the startup-phase codes and a bounds-checked reader
// that the message parsers are built on.
// https://www.postgresql.org/docs/current/protocol-overview.html#PROTOCOL-MESSAGE-CONCEPTS
//
// Every integer on the wire is big-endian. A typed message is Byte1 type, Int32
// length (counting itself, not the type byte), then length - 4 body bytes. The
// startup-phase packets (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest)
// have no type byte: Int32 length (counting itself), Int32 code, then the rest.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include <boost/outcome/std_result.hpp>

namespace pgwire {

namespace outcome = boost::outcome_v2;

// A read-only view of bytes owned by someone else. Whoever hands one out states
// how long the bytes stay valid; a view never keeps them alive.
using bytes_view = std::span<const std::uint8_t>;

// Version codes: the most significant 16 bits are the major version, the least
// significant 16 bits the minor version.
[[nodiscard]] constexpr std::int32_t make_protocol_version(std::uint16_t major,
                                                           std::uint16_t minor) noexcept {
  return static_cast<std::int32_t>((static_cast<std::uint32_t>(major) << 16) | minor);
}
[[nodiscard]] constexpr std::uint16_t protocol_major(std::int32_t code) noexcept {
  return static_cast<std::uint16_t>(static_cast<std::uint32_t>(code) >> 16);
}
[[nodiscard]] constexpr std::uint16_t protocol_minor(std::int32_t code) noexcept {
  return static_cast<std::uint16_t>(static_cast<std::uint32_t>(code) & 0xffffu);
}

inline constexpr std::int32_t protocol_version_3_0 = 196608;      // 3.0
inline constexpr std::int32_t ssl_request_code = 80877103;        // 1234.5679
inline constexpr std::int32_t gssenc_request_code = 80877104;     // 1234.5680
inline constexpr std::int32_t cancel_request_code = 80877102;     // 1234.5678
inline constexpr std::uint16_t special_request_major = 1234;      // major of the three above
static_assert(protocol_version_3_0 == make_protocol_version(3, 0));
static_assert(ssl_request_code == make_protocol_version(1234, 5679));
static_assert(gssenc_request_code == make_protocol_version(1234, 5680));
static_assert(cancel_request_code == make_protocol_version(1234, 5678));

// PostgreSQL refuses a startup packet longer than this (MAX_STARTUP_PACKET_LENGTH).
inline constexpr std::size_t max_startup_packet = 10000;
// Int32 length + Int32 code: the smallest startup-phase packet (SSLRequest).
inline constexpr std::size_t startup_header_size = 8;
// A CancelRequest in protocol 3.0: length, code, process id, secret key.
inline constexpr std::size_t cancel_request_size = 16;
// Byte1 type + Int32 length.
inline constexpr std::size_t message_header_size = 5;
// The largest value an Int32 length field can carry.
inline constexpr std::size_t max_length_field = 0x7fffffff;

// Big-endian loads. Precondition: `offset + width <= in.size()`; use byte_reader
// where the input length is not already checked.
[[nodiscard]] constexpr std::uint16_t load_be16(bytes_view in, std::size_t offset) noexcept {
  return static_cast<std::uint16_t>((in[offset] << 8) | in[offset + 1]);
}
[[nodiscard]] constexpr std::uint32_t load_be32(bytes_view in, std::size_t offset) noexcept {
  return (static_cast<std::uint32_t>(in[offset]) << 24) |
         (static_cast<std::uint32_t>(in[offset + 1]) << 16) |
         (static_cast<std::uint32_t>(in[offset + 2]) << 8) |
         static_cast<std::uint32_t>(in[offset + 3]);
}

// Big-endian stores. Precondition: `out` has room for the width.
constexpr void store_be16(std::uint8_t* out, std::uint16_t v) noexcept {
  out[0] = static_cast<std::uint8_t>(v >> 8);
  out[1] = static_cast<std::uint8_t>(v);
}
constexpr void store_be32(std::uint8_t* out, std::uint32_t v) noexcept {
  out[0] = static_cast<std::uint8_t>(v >> 24);
  out[1] = static_cast<std::uint8_t>(v >> 16);
  out[2] = static_cast<std::uint8_t>(v >> 8);
  out[3] = static_cast<std::uint8_t>(v);
}

// Views a string's bytes as bytes_view (valid as long as the string's buffer).
[[nodiscard]] inline bytes_view as_bytes(std::string_view s) noexcept {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}
// Views bytes as a string_view (valid as long as the bytes).
[[nodiscard]] inline std::string_view as_chars(bytes_view b) noexcept {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// A cursor over a message body. Every read checks bounds: a read that does not
// fit returns nullopt and leaves the cursor where it was. The views it returns
// point into the input and are valid as long as the input's buffer.
class byte_reader {
 public:
  explicit constexpr byte_reader(bytes_view in) noexcept : in_(in) {}

  [[nodiscard]] constexpr std::size_t remaining() const noexcept { return in_.size() - pos_; }
  [[nodiscard]] constexpr bool empty() const noexcept { return remaining() == 0; }
  [[nodiscard]] constexpr std::size_t position() const noexcept { return pos_; }

  [[nodiscard]] constexpr std::optional<std::uint8_t> byte() noexcept {
    if (remaining() < 1) return std::nullopt;
    return in_[pos_++];
  }
  [[nodiscard]] constexpr std::optional<std::int16_t> int16() noexcept {
    if (remaining() < 2) return std::nullopt;
    const auto v = static_cast<std::int16_t>(load_be16(in_, pos_));
    pos_ += 2;
    return v;
  }
  [[nodiscard]] constexpr std::optional<std::int32_t> int32() noexcept {
    if (remaining() < 4) return std::nullopt;
    const auto v = static_cast<std::int32_t>(load_be32(in_, pos_));
    pos_ += 4;
    return v;
  }
  // A NUL-terminated String: the bytes before the NUL; the NUL is consumed.
  // nullopt when no NUL is left in the input.
  [[nodiscard]] std::optional<std::string_view> cstring() noexcept {
    for (std::size_t i = pos_; i < in_.size(); ++i) {
      if (in_[i] == 0) {
        const auto s = as_chars(in_.subspan(pos_, i - pos_));
        pos_ = i + 1;
        return s;
      }
    }
    return std::nullopt;
  }
  [[nodiscard]] constexpr std::optional<bytes_view> bytes(std::size_t n) noexcept {
    if (remaining() < n) return std::nullopt;
    const auto b = in_.subspan(pos_, n);
    pos_ += n;
    return b;
  }
  // Everything left; the reader is then empty.
  [[nodiscard]] constexpr bytes_view rest() noexcept {
    const auto b = in_.subspan(pos_);
    pos_ = in_.size();
    return b;
  }

 private:
  bytes_view in_;
  std::size_t pos_ = 0;
};

}  // namespace pgwire
