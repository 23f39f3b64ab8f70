// Typed messages after the startup phase, framed with decode_message and parsed
// with the parse_* function for their type, in both directions. The first input
// byte picks the direction (bit 0), the length cap (bit 1: the 8 KiB a session
// uses for login messages, else 1 MiB) and the splice framer's read size (bits 2-7:
// 1 to 64 bytes); the rest is a stream of messages. Checks, besides the sanitizers:
// - decode_message_header agrees with decode_message on type and frame size, and
//   with parse_message_header on everything but an unknown type;
// - a frame is never complete for a proper prefix;
// - every message that parses encodes back to exactly the bytes it came from;
// - message_framer, fed the whole stream in reads of that size, reports exactly the
//   messages (type, first body byte) that parse_message_header finds walking the
//   stream in one buffer, unknown types included, and is refused exactly where that
//   walk meets a bad length, with the same error.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "fuzz_check.hpp"
#include "pgwire/decoder.hpp"
#include "pgwire/encoder.hpp"
#include "pgwire/errc.hpp"
#include "pgwire/framer.hpp"
#include "pgwire/messages.hpp"
#include "pgwire/scram.hpp"

namespace {

using namespace pgwire;

void same_bytes(const std::vector<std::uint8_t>& encoded, bytes_view frame) {
  FUZZ_CHECK(encoded.size() == frame.size());
  FUZZ_CHECK(std::equal(encoded.begin(), encoded.end(), frame.begin()));
}

void backend(char type, bytes_view body, bytes_view frame) {
  std::vector<std::uint8_t> out;
  switch (type) {
    case backend_type::authentication: {
      auto m = parse_authentication(body);
      if (!m) return;
      if (m.value().type == auth_type::sasl) {
        FUZZ_CHECK(!m.value().mechanisms.empty());
        const bool tls = m.value().mechanisms.size() % 2 == 0;
        for (auto mode : {channel_binding_mode::disable, channel_binding_mode::prefer, channel_binding_mode::require}) {
          (void)choose_scram_mechanism(m.value().mechanisms, tls, true, mode);
          (void)choose_scram_mechanism(m.value().mechanisms, false, false, mode);
        }
      }
      FUZZ_CHECK(encode_authentication(out, m.value()).has_value());
      same_bytes(out, frame);
      return;
    }
    case backend_type::error_response:
    case backend_type::notice_response: {
      auto m = parse_error_response(body);
      auto n = parse_notice_response(body);
      FUZZ_CHECK(m.has_value() == n.has_value());
      if (!m) return;
      (void)m.value().severity();
      (void)m.value().sqlstate();
      (void)m.value().message();
      (void)m.value().detail();
      (void)m.value().hint();
      for (const auto& [code, value] : m.value().fields) {
        FUZZ_CHECK(code != 0 && value.find('\0') == std::string::npos);
      }
      if (type == backend_type::error_response) {
        FUZZ_CHECK(encode_error_response(out, m.value().fields).has_value());
      } else {
        FUZZ_CHECK(encode_notice_response(out, n.value().fields).has_value());
      }
      same_bytes(out, frame);
      return;
    }
    case backend_type::parameter_status: {
      auto m = parse_parameter_status(body);
      if (!m) return;
      FUZZ_CHECK(encode_parameter_status(out, m.value().name, m.value().value).has_value());
      same_bytes(out, frame);
      return;
    }
    case backend_type::backend_key_data: {
      auto m = parse_backend_key_data(body);
      if (!m) return;
      encode_backend_key_data(out, m.value());
      same_bytes(out, frame);
      return;
    }
    case backend_type::ready_for_query: {
      auto m = parse_ready_for_query(body);
      if (!m) return;
      FUZZ_CHECK(encode_ready_for_query(out, m.value().status).has_value());
      same_bytes(out, frame);
      return;
    }
    case backend_type::negotiate_protocol_version: {
      auto m = parse_negotiate_protocol_version(body);
      if (!m) return;
      FUZZ_CHECK(
          encode_negotiate_protocol_version(out, m.value().newest_minor, m.value().unrecognized).has_value());
      same_bytes(out, frame);
      return;
    }
    default: return;
  }
}

void frontend(char type, bytes_view body, bytes_view frame) {
  std::vector<std::uint8_t> out;
  if (type == frontend_type::terminate) {
    if (parse_terminate(body)) {
      encode_terminate(out);
      same_bytes(out, frame);
    }
    return;
  }
  if (type != frontend_type::password) return;
  // Which of the four 'p' messages it is depends on what the proxy asked for;
  // every parser sees every body.
  if (auto m = parse_password_message(body)) {
    FUZZ_CHECK(encode_password_message(out, m.value().password.view()).has_value());
    same_bytes(out, frame);
  }
  out.clear();
  if (auto m = parse_sasl_initial_response(body)) {
    std::optional<std::string_view> data;
    if (m.value().data) data = *m.value().data;
    FUZZ_CHECK(encode_sasl_initial_response(out, m.value().mechanism, data).has_value());
    same_bytes(out, frame);
  }
  out.clear();
  if (auto m = parse_sasl_response(body)) {
    FUZZ_CHECK(encode_sasl_response(out, m.value().data.view()).has_value());
    same_bytes(out, frame);
  }
}

using framed = std::vector<std::pair<char, std::uint8_t>>;

void check_framer(bytes_view in, std::size_t max_length, std::size_t read_size) {
  framed want;
  std::error_code want_error;
  std::size_t at = 0;
  for (;;) {
    const auto h = parse_message_header(in.subspan(at), max_length);
    if (h.status == decode_status::error) {
      want_error = h.error;
      break;
    }
    if (h.status == decode_status::need_more || h.frame_size > in.size() - at) break;
    FUZZ_CHECK(h.length >= 4 && h.length <= max_length && h.frame_size == std::size_t{1} + h.length);
    want.emplace_back(h.type, h.frame_size > message_header_size ? in[at + message_header_size] : 0);
    at += h.frame_size;
  }

  message_framer f(max_length);
  framed got;
  bool ok = true;
  for (std::size_t pos = 0; ok && pos < in.size(); pos += read_size) {
    ok = f.feed(in.subspan(pos, std::min(read_size, in.size() - pos)),
                [&got](char type, std::uint8_t first) { got.emplace_back(type, first); });
  }
  FUZZ_CHECK(got == want);
  FUZZ_CHECK(ok == !want_error && f.failed() == static_cast<bool>(want_error));
  if (want_error) {
    FUZZ_CHECK(f.refused().error == want_error && !f.at_boundary());
  } else {
    FUZZ_CHECK(f.at_boundary() == (at == in.size()));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const direction dir = (data[0] & 1) != 0 ? direction::backend : direction::frontend;
  const std::size_t max_length = (data[0] & 2) != 0 ? 8192 : (1u << 20);
  bytes_view in(data + 1, size - 1);
  check_framer(in, max_length, 1 + (data[0] >> 2));

  for (int messages = 0; messages < 64 && !in.empty(); ++messages) {
    const auto h = decode_message_header(in, max_length, dir);
    const auto r = decode_message(in, max_length, dir);
    if (h.error != errc::unknown_message_type) {
      const auto p = parse_message_header(in, max_length);
      FUZZ_CHECK(p.status == h.status && p.error == h.error && p.type == h.type && p.length == h.length &&
                 p.frame_size == h.frame_size);
    }
    if (r.status == decode_status::error) {
      FUZZ_CHECK(h.status == decode_status::error && h.error == r.error && r.consumed == 0);
      return 0;
    }
    if (h.status == decode_status::message) {
      FUZZ_CHECK(is_known_message_type(h.type, dir));
      FUZZ_CHECK(h.frame_size >= message_header_size && h.frame_size <= max_length + 1);
    }
    if (r.status == decode_status::need_more) {
      FUZZ_CHECK(r.consumed == 0);
      if (h.status == decode_status::message) FUZZ_CHECK(h.frame_size > in.size());
      return 0;
    }
    FUZZ_CHECK(h.status == decode_status::message && h.type == r.message.type && h.frame_size == r.consumed);
    FUZZ_CHECK(r.consumed <= in.size() && r.message.body.size() == r.consumed - message_header_size);
    FUZZ_CHECK(decode_message(in.first(r.consumed - 1), max_length, dir).status == decode_status::need_more);

    const bytes_view frame = in.first(r.consumed);
    if (dir == direction::backend) {
      backend(r.message.type, r.message.body, frame);
    } else {
      frontend(r.message.type, r.message.body, frame);
    }
    in = in.subspan(r.consumed);
  }
  return 0;
}
