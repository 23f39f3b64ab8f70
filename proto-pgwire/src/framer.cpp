#include "pgwire/framer.hpp"

#include <algorithm>

namespace pgwire {

frame_step message_framer::next(bytes_view in) noexcept {
  frame_step s;
  if (failed_) {
    s.status = decode_status::error;
    s.error = refused_.error;
    return s;
  }
  std::size_t i = 0;
  while (i < in.size()) {
    if (remaining_ == 0) {
      // Between messages or inside a header: gather the 5 header bytes, then let
      // parse_message_header judge them.
      const std::size_t take = std::min<std::size_t>(header_.size() - header_len_, in.size() - i);
      std::copy_n(in.begin() + static_cast<std::ptrdiff_t>(i), take, header_.begin() + header_len_);
      header_len_ = static_cast<std::uint8_t>(header_len_ + take);
      i += take;
      if (header_len_ < header_.size()) break;
      const auto h = parse_message_header(header_, max_length_);
      if (h.status != decode_status::message) {
        failed_ = true;
        refused_ = h;
        s.status = decode_status::error;
        s.error = h.error;
        s.consumed = i;
        return s;
      }
      header_len_ = 0;
      type_ = h.type;
      remaining_ = h.length - 4;
      first_ = 0;
      first_pending_ = remaining_ > 0;
      if (remaining_ == 0) return message_ends(i);  // an empty body ends with its header
      continue;
    }
    const std::size_t take = std::min<std::size_t>(remaining_, in.size() - i);
    if (first_pending_) {
      first_ = in[i];
      first_pending_ = false;
    }
    remaining_ -= static_cast<std::uint32_t>(take);
    i += take;
    if (remaining_ == 0) return message_ends(i);
  }
  s.consumed = i;
  return s;
}

frame_step message_framer::message_ends(std::size_t consumed) const noexcept {
  frame_step s;
  s.status = decode_status::message;
  s.consumed = consumed;
  s.type = type_;
  s.first = first_;
  return s;
}

}  // namespace pgwire
