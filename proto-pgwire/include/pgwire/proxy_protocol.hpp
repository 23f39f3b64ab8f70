// PROXY protocol version 2 (binary): the header a load balancer (HAProxy, AWS NLB,
// ...) sends before the client's first byte to say who the client really is.
// https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt section 2.2
//
// Layout (all integers big-endian):
//   12 bytes  signature \r\n\r\n\0\r\nQUIT\n
//    1 byte   version (high nibble, must be 2) | command (low nibble: 0 LOCAL, 1 PROXY)
//    1 byte   address family (high nibble: 0 UNSPEC, 1 INET, 2 INET6, 3 UNIX)
//             | transport (low nibble: 0 UNSPEC, 1 STREAM, 2 DGRAM)
//    2 bytes  length of everything after these 16 bytes
//   then      INET:  src addr(4) dst addr(4) src port(2) dst port(2)       = 12 bytes
//             INET6: src addr(16) dst addr(16) src port(2) dst port(2)     = 36 bytes
//             UNIX:  src path(108) dst path(108)                           = 216 bytes
//   then      TLVs (type(1) length(2) value) up to the end; checked for framing, skipped
//
// Only version 2 is accepted. A version 1 text header ("PROXY TCP4 ...") is refused
// with proxy_v1_unsupported, anything else that is not the signature with
// proxy_bad_signature: a listener with proxy_protocol = true refuses a connection
// without a valid header.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <system_error>
#include <vector>

#include "pgwire/decoder.hpp"
#include "pgwire/frame.hpp"

namespace pgwire {

inline constexpr std::array<std::uint8_t, 12> proxy_v2_signature = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
// Signature, version/command, family/transport, length.
inline constexpr std::size_t proxy_v2_fixed_size = 16;
// The default cap on a whole header (16 fixed bytes + the length field's bytes).
// The spec's figure: a receiver reading 536 bytes holds any v1 header and any v2
// header with room for TLVs (a UNIX block alone is 216). Headers with more TLVs
// than that (HAProxy's SSL TLVs with long certificate names) need a larger cap.
inline constexpr std::size_t max_proxy_v2_header = 536;

enum class proxy_family {
  unspec,       // no address: LOCAL, or PROXY with family UNSPEC
  inet,         // TCP over IPv4
  inet6,        // TCP over IPv6
  unix_stream,  // a UNIX stream socket; addresses are paths, ports are 0
};

// What a header says. When `has_address()` is false (a LOCAL header, e.g. the load
// balancer's own health check, or a PROXY header with family UNSPEC) the caller
// uses the socket's own peer and local address.
struct proxy_header {
  bool local = false;  // command LOCAL: the proxy itself opened the connection
  proxy_family family = proxy_family::unspec;
  // Text like inet_ntop's: "203.0.113.7", "2001:db8::1", "::ffff:192.0.2.1"; for
  // unix_stream the path up to its first NUL (bytes as sent, not validated).
  std::string src_address;
  std::uint16_t src_port = 0;
  std::string dst_address;
  std::uint16_t dst_port = 0;

  [[nodiscard]] bool has_address() const noexcept {
    return !local && family != proxy_family::unspec;
  }
  friend bool operator==(const proxy_header&, const proxy_header&) = default;
};

struct proxy_decode_result {
  decode_status status = decode_status::need_more;  // `message`: a complete header
  std::size_t consumed = 0;  // on `message`: 16 + the length field; else 0
  std::error_code error;     // set on `error`
  proxy_header header;       // set on `message`
};

// Decodes a PROXY v2 header at the front of `in` (the first bytes a client sent).
// Like decode_startup_packet it keeps no state: on need_more read more and call
// again with the whole buffer. On `message` the first `consumed` bytes are the
// header; the bytes after them are the client's own (its SSLRequest or startup
// packet) and must be kept. Errors come as early as the bytes allow, so a peer
// cannot make the caller wait for a header it will refuse anyway:
//   proxy_v1_unsupported  the bytes so far are a prefix of "PROXY " (a v1 header)
//   proxy_bad_signature   any other byte that differs from the v2 signature
//   proxy_bad_version     version nibble != 2
//   proxy_bad_command     command nibble not LOCAL (0) or PROXY (1)
//   proxy_bad_family      PROXY with a family/transport other than UNSPEC (0x00),
//                         INET/INET6/UNIX over STREAM (0x11, 0x21, 0x31); LOCAL
//                         accepts any family byte and ignores the address block
//   proxy_too_short       the length field is below what the family needs
//   proxy_too_long        16 + length > max_header
//   proxy_bad_tlv         a TLV that runs past the end of the header
// `max_header` caps the whole header; values below 16 + 216 refuse UNIX headers.
[[nodiscard]] proxy_decode_result decode_proxy_v2(bytes_view in,
                                                  std::size_t max_header = max_proxy_v2_header);

// Builds a PROXY v2 header (for tests and tools). LOCAL headers carry family UNSPEC
// and no addresses. Otherwise the addresses must parse for the family (inet:
// dotted quad; inet6: RFC 4291 text, "::" and a dotted IPv4 tail allowed;
// unix_stream: a path of at most 107 bytes). `tlvs` is appended as is after the
// address block (already TLV-framed, or deliberately malformed for a test).
// Errors: std::errc::invalid_argument for an address that does not parse,
// proxy_too_long when the length field would overflow.
[[nodiscard]] outcome::std_result<std::vector<std::uint8_t>> encode_proxy_v2(
    const proxy_header& header, bytes_view tlvs = {});

// Formats 4 or 16 address bytes the way glibc's inet_ntop does (RFC 5952: lowercase,
// the longest run of two or more zero groups as "::", IPv4-mapped and -compatible
// addresses with a dotted tail). Exposed for tests.
[[nodiscard]] std::string format_ipv4(const std::array<std::uint8_t, 4>& addr);
[[nodiscard]] std::string format_ipv6(const std::array<std::uint8_t, 16>& addr);

}  // namespace pgwire
