// fleet_frame: how one instance of a fleet hands another a CancelRequest: the
// client's CancelRequest packet as it came (16 bytes), then the client's host (one
// length byte and up to 255 bytes), so the instance that looks the key up penalises
// the client for an unknown key, not the peer that carried it. Pure: bytes in, values
// out (no Asio, no logging).
#pragma once

#include <pgwire/messages.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace vaultwire::detail {

void encode_fleet_frame(std::vector<std::uint8_t>& out, const pgwire::cancel_request& key, std::string_view host);

struct fleet_frame {
  pgwire::cancel_request key;
  std::string host;
};
enum class fleet_frame_status { need_more, frame, error };
struct fleet_frame_decode {
  fleet_frame_status status = fleet_frame_status::need_more;
  fleet_frame frame;
  std::size_t consumed = 0;
};
// One frame from the start of `in`: need_more until it is whole; error when the first
// 16 bytes are not a CancelRequest packet.
[[nodiscard]] fleet_frame_decode decode_fleet_frame(std::span<const std::uint8_t> in);

}  // namespace vaultwire::detail
