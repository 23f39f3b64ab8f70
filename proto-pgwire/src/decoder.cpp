#include "pgwire/decoder.hpp"

#include <utility>

#include "pgwire/errc.hpp"

namespace pgwire {
namespace {

startup_decode_result startup_error(std::error_code e) {
  startup_decode_result r;
  r.status = decode_status::error;
  r.error = e;
  return r;
}

header_decode_result header_error(std::error_code e, char type, std::uint32_t length) {
  header_decode_result r;
  r.status = decode_status::error;
  r.error = e;
  r.type = type;
  r.length = length;
  return r;
}

// A special request (SSLRequest, GSSENCRequest) is exactly its 8-byte header.
startup_decode_result special_request(bytes_view in, std::size_t length, startup_packet packet) {
  if (length != startup_header_size) return startup_error(errc::malformed_message);
  if (in.size() < length) return {};
  startup_decode_result r;
  r.status = decode_status::message;
  r.consumed = length;
  r.packet = std::move(packet);
  return r;
}

}  // namespace

startup_decode_result decode_startup_packet(bytes_view in, std::size_t max_length) {
  if (in.size() < 4) return {};
  const std::size_t length = load_be32(in, 0);
  if (length < startup_header_size) return startup_error(errc::length_too_short);
  if (length > max_length || length > max_length_field) {
    return startup_error(errc::length_too_long);
  }
  if (in.size() < startup_header_size) return {};

  // The code is judged as soon as it is there, before the rest of the packet.
  const auto code = static_cast<std::int32_t>(load_be32(in, 4));
  switch (code) {
    case ssl_request_code: return special_request(in, length, ssl_request{});
    case gssenc_request_code: return special_request(in, length, gssenc_request{});
    case cancel_request_code: {
      if (length != cancel_request_size) return startup_error(errc::malformed_message);
      if (in.size() < length) return {};
      startup_decode_result r;
      r.status = decode_status::message;
      r.consumed = length;
      r.packet = cancel_request{static_cast<std::int32_t>(load_be32(in, 8)),
                                static_cast<std::int32_t>(load_be32(in, 12))};
      return r;
    }
    default: break;
  }
  // 1234.x other than the three above, 2.0, 4.0, garbage: all refused.
  if (protocol_major(code) != 3) return startup_error(errc::unsupported_protocol);

  if (in.size() < length) return {};
  auto params = parse_startup_params(in.subspan(startup_header_size, length - startup_header_size));
  if (!params) return startup_error(params.error());
  startup_decode_result r;
  r.status = decode_status::message;
  r.consumed = length;
  r.packet = startup_message{protocol_major(code), protocol_minor(code), std::move(params).value()};
  return r;
}

bool is_known_message_type(char type, direction dir) noexcept {
  if (dir == direction::frontend) {
    switch (type) {
      case 'B': case 'C': case 'c': case 'D': case 'd': case 'E': case 'F': case 'f':
      case 'H': case 'P': case 'p': case 'Q': case 'S': case 'X':
        return true;
      default:
        return false;
    }
  }
  switch (type) {
    case '1': case '2': case '3': case 'A': case 'C': case 'c': case 'D': case 'd':
    case 'E': case 'G': case 'H': case 'I': case 'K': case 'N': case 'n': case 'R':
    case 'S': case 's': case 'T': case 't': case 'V': case 'v': case 'W': case 'Z':
      return true;
    default:
      return false;
  }
}

header_decode_result parse_message_header(bytes_view in, std::size_t max_length) noexcept {
  if (in.size() < message_header_size) return {};
  const auto type = static_cast<char>(in[0]);
  const std::uint32_t length = load_be32(in, 1);
  if (length < 4) return header_error(errc::length_too_short, type, length);
  if (length > max_length || length > max_length_field) {
    return header_error(errc::length_too_long, type, length);
  }
  header_decode_result r;
  r.status = decode_status::message;
  r.type = type;
  r.length = length;
  r.frame_size = std::size_t{1} + length;
  return r;
}

header_decode_result decode_message_header(bytes_view in, std::size_t max_length,
                                           direction dir) {
  if (in.empty()) return {};
  const auto type = static_cast<char>(in[0]);
  if (!is_known_message_type(type, dir)) return header_error(errc::unknown_message_type, type, 0);
  return parse_message_header(in, max_length);
}

message_decode_result decode_message(bytes_view in, std::size_t max_length, direction dir) {
  const auto header = decode_message_header(in, max_length, dir);
  message_decode_result r;
  r.status = header.status;
  r.error = header.error;
  if (header.status != decode_status::message) return r;
  if (in.size() < header.frame_size) {
    r.status = decode_status::need_more;
    return r;
  }
  r.consumed = header.frame_size;
  r.message.type = header.type;
  r.message.body = in.subspan(message_header_size, header.frame_size - message_header_size);
  return r;
}

}  // namespace pgwire
