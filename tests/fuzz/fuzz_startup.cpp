// The first bytes a client sends: an optional PROXY v2 header, then the
// startup-phase packets (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest),
// decoded the way a session reads them. Besides the sanitizers, checks that
// - a complete packet is reported at the same length for any longer buffer and never
//   for a proper prefix of it (the decoders keep no state between calls);
// - what a PROXY header decodes to encodes back to a header that decodes the same;
// - a decoded StartupMessage encodes back to the same bytes.
#include <cstddef>
#include <cstdint>
#include <variant>
#include <vector>

#include "fuzz_check.hpp"
#include "pgwire/decoder.hpp"
#include "pgwire/encoder.hpp"
#include "pgwire/proxy_protocol.hpp"

namespace {

using namespace pgwire;

void check_result_shape(decode_status status, std::size_t consumed, const std::error_code& error,
                        std::size_t size) {
  switch (status) {
    case decode_status::need_more: FUZZ_CHECK(consumed == 0 && !error); break;
    case decode_status::message: FUZZ_CHECK(consumed > 0 && consumed <= size && !error); break;
    case decode_status::error: FUZZ_CHECK(consumed == 0 && error); break;
  }
}

// Returns the bytes after the header (or all of `in` when the input holds none).
bytes_view proxy_phase(bytes_view in) {
  const auto r = decode_proxy_v2(in);
  check_result_shape(r.status, r.consumed, r.error, in.size());
  if (r.status != decode_status::message) return in;

  FUZZ_CHECK(r.consumed >= proxy_v2_fixed_size && r.consumed <= max_proxy_v2_header);
  // A proper prefix is never a complete header.
  FUZZ_CHECK(decode_proxy_v2(in.first(r.consumed - 1)).status != decode_status::message);
  const auto exact = decode_proxy_v2(in.first(r.consumed));
  FUZZ_CHECK(exact.status == decode_status::message && exact.consumed == r.consumed && exact.header == r.header);

  // Re-encoded without TLVs, the header says the same thing. The encoder takes
  // UNIX paths of at most 107 bytes (room for a NUL); the decoder also reads a
  // full 108-byte sun_path, as Linux allows.
  if (r.header.family == proxy_family::unix_stream &&
      (r.header.src_address.size() > 107 || r.header.dst_address.size() > 107)) {
    return in.subspan(r.consumed);
  }
  auto encoded = encode_proxy_v2(r.header);
  FUZZ_CHECK(encoded.has_value());
  const auto again = decode_proxy_v2(encoded.value());
  FUZZ_CHECK(again.status == decode_status::message && again.consumed == encoded.value().size());
  if (r.header.local) {
    FUZZ_CHECK(again.header.local && !again.header.has_address());
  } else {
    FUZZ_CHECK(again.header == r.header);
  }
  return in.subspan(r.consumed);
}

// Decodes startup packets until the input runs out or one is final (a
// StartupMessage, a CancelRequest or an error); after an SSLRequest or
// GSSENCRequest a refused client sends its next packet on the same connection.
void startup_phase(bytes_view in) {
  for (int packets = 0; packets < 8; ++packets) {
    const auto r = decode_startup_packet(in);
    check_result_shape(r.status, r.consumed, r.error, in.size());
    if (r.status != decode_status::message) {
      FUZZ_CHECK(std::holds_alternative<std::monostate>(r.packet));
      return;
    }
    FUZZ_CHECK(r.consumed >= startup_header_size && r.consumed <= max_startup_packet);
    FUZZ_CHECK(load_be32(in, 0) == r.consumed);
    FUZZ_CHECK(decode_startup_packet(in.first(r.consumed - 1)).status != decode_status::message);
    // A smaller cap than the packet refuses it as soon as the length is there.
    const auto capped = decode_startup_packet(in, r.consumed - 1);
    FUZZ_CHECK(capped.status == decode_status::error && capped.error == errc::length_too_long);

    if (const auto* m = std::get_if<startup_message>(&r.packet)) {
      FUZZ_CHECK(m->major == 3);
      (void)m->find("user");
      (void)m->find("database");
      std::vector<std::uint8_t> out;
      if (encode_startup_message(out, *m)) {
        FUZZ_CHECK(out.size() == r.consumed);
        FUZZ_CHECK(std::equal(out.begin(), out.end(), in.begin()));
      }
      return;
    }
    if (const auto* c = std::get_if<cancel_request>(&r.packet)) {
      FUZZ_CHECK(r.consumed == cancel_request_size);
      std::vector<std::uint8_t> out;
      encode_cancel_request(out, *c);
      FUZZ_CHECK(std::equal(out.begin(), out.end(), in.begin(), in.begin() + cancel_request_size));
      return;
    }
    FUZZ_CHECK(std::holds_alternative<ssl_request>(r.packet) || std::holds_alternative<gssenc_request>(r.packet));
    FUZZ_CHECK(r.consumed == startup_header_size);
    in = in.subspan(r.consumed);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const bytes_view in(data, size);
  // A listener with proxy_protocol = true reads a header first; one without reads
  // the startup packet at once. Both see every input.
  startup_phase(proxy_phase(in));
  startup_phase(in);
  return 0;
}
