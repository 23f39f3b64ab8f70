#include "proxy/fleet_frame.hpp"

#include <pgwire/decoder.hpp>
#include <pgwire/encoder.hpp>

#include <variant>

namespace vaultwire::detail {

namespace {

constexpr std::size_t cancel_packet_size = 16;
constexpr std::size_t max_frame_host = 255;

}  // namespace

void encode_fleet_frame(std::vector<std::uint8_t>& out, const pgwire::cancel_request& key, std::string_view host) {
  pgwire::encode_cancel_request(out, key);
  const std::string_view h = host.substr(0, max_frame_host);
  out.push_back(static_cast<std::uint8_t>(h.size()));
  out.insert(out.end(), h.begin(), h.end());
}

fleet_frame_decode decode_fleet_frame(std::span<const std::uint8_t> in) {
  fleet_frame_decode d;
  if (in.size() < cancel_packet_size + 1) return d;
  auto packet = pgwire::decode_startup_packet(in.first(cancel_packet_size));
  const auto* key = packet.status == pgwire::decode_status::message && packet.consumed == cancel_packet_size
                        ? std::get_if<pgwire::cancel_request>(&packet.packet)
                        : nullptr;
  if (key == nullptr) {
    d.status = fleet_frame_status::error;
    return d;
  }
  const std::size_t host_size = in[cancel_packet_size];
  if (in.size() < cancel_packet_size + 1 + host_size) return d;
  d.status = fleet_frame_status::frame;
  d.frame.key = *key;
  d.frame.host.assign(reinterpret_cast<const char*>(in.data()) + cancel_packet_size + 1, host_size);
  d.consumed = cancel_packet_size + 1 + host_size;
  return d;
}

}  // namespace vaultwire::detail
