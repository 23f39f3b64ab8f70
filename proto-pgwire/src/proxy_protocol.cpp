#include "pgwire/proxy_protocol.hpp"

#include <algorithm>
#include <charconv>
#include <optional>
#include <string_view>

#include "pgwire/errc.hpp"

namespace pgwire {
namespace {

constexpr std::string_view v1_prefix = "PROXY ";
constexpr std::size_t inet_block = 12;
constexpr std::size_t inet6_block = 36;
constexpr std::size_t unix_path = 108;
constexpr std::size_t unix_block = 2 * unix_path;

constexpr std::uint8_t version_2 = 0x2;
constexpr std::uint8_t command_local = 0x0;
constexpr std::uint8_t command_proxy = 0x1;
constexpr std::uint8_t family_unspec = 0x00;
constexpr std::uint8_t family_inet_stream = 0x11;
constexpr std::uint8_t family_inet6_stream = 0x21;
constexpr std::uint8_t family_unix_stream = 0x31;

proxy_decode_result fail(errc e) {
  proxy_decode_result r;
  r.status = decode_status::error;
  r.error = e;
  return r;
}

// The signature check over the bytes present so far.
std::optional<errc> check_signature(bytes_view in) {
  const std::size_t n = std::min(in.size(), proxy_v2_signature.size());
  if (std::equal(in.begin(), in.begin() + static_cast<std::ptrdiff_t>(n), proxy_v2_signature.begin())) {
    return std::nullopt;
  }
  const std::size_t m = std::min(in.size(), v1_prefix.size());
  if (as_chars(in.first(m)) == v1_prefix.substr(0, m)) return errc::proxy_v1_unsupported;
  return errc::proxy_bad_signature;
}

std::size_t block_size(std::uint8_t family) {
  switch (family) {
    case family_inet_stream: return inet_block;
    case family_inet6_stream: return inet6_block;
    case family_unix_stream: return unix_block;
    default: return 0;
  }
}

std::string unix_path_text(bytes_view path) {
  const auto nul = std::find(path.begin(), path.end(), std::uint8_t{0});
  return std::string(as_chars(path.first(static_cast<std::size_t>(nul - path.begin()))));
}

// TLVs: type(1), length(2), value. Each must end inside the header.
bool tlvs_well_framed(bytes_view tlvs) {
  std::size_t pos = 0;
  while (pos < tlvs.size()) {
    if (tlvs.size() - pos < 3) return false;
    const std::size_t len = load_be16(tlvs, pos + 1);
    if (tlvs.size() - pos - 3 < len) return false;
    pos += 3 + len;
  }
  return true;
}

std::optional<std::array<std::uint8_t, 4>> parse_ipv4(std::string_view s) {
  std::array<std::uint8_t, 4> out{};
  for (std::size_t i = 0; i < 4; ++i) {
    if (i > 0) {
      if (s.empty() || s.front() != '.') return std::nullopt;
      s.remove_prefix(1);
    }
    if (s.empty() || (s.size() > 1 && s[0] == '0' && s[1] >= '0' && s[1] <= '9')) return std::nullopt;
    unsigned v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || v > 255 || p == s.data()) return std::nullopt;
    out[i] = static_cast<std::uint8_t>(v);
    s.remove_prefix(static_cast<std::size_t>(p - s.data()));
  }
  if (!s.empty()) return std::nullopt;
  return out;
}

// Groups separated by ':' (no "::" inside), each 1-4 hex digits; the last may be
// a dotted IPv4 address when `allow_v4_tail`. Appends 16-bit words to `words`.
bool parse_groups(std::string_view s, bool allow_v4_tail, std::vector<std::uint16_t>& words) {
  if (s.empty()) return true;
  while (true) {
    const auto colon = s.find(':');
    const std::string_view group = s.substr(0, colon);
    if (colon == std::string_view::npos && allow_v4_tail && group.find('.') != std::string_view::npos) {
      const auto v4 = parse_ipv4(group);
      if (!v4) return false;
      words.push_back(static_cast<std::uint16_t>(((*v4)[0] << 8) | (*v4)[1]));
      words.push_back(static_cast<std::uint16_t>(((*v4)[2] << 8) | (*v4)[3]));
      return true;
    }
    if (group.empty() || group.size() > 4) return false;
    unsigned v = 0;
    const auto [p, ec] = std::from_chars(group.data(), group.data() + group.size(), v, 16);
    if (ec != std::errc{} || p != group.data() + group.size()) return false;
    words.push_back(static_cast<std::uint16_t>(v));
    if (colon == std::string_view::npos) return true;
    s.remove_prefix(colon + 1);
  }
}

std::optional<std::array<std::uint8_t, 16>> parse_ipv6(std::string_view s) {
  std::vector<std::uint16_t> head, tail;
  const auto gap = s.find("::");
  bool ok = false;
  if (gap == std::string_view::npos) {
    ok = parse_groups(s, true, head) && head.size() == 8;
  } else {
    const auto rest = s.substr(gap + 2);
    ok = rest.find("::") == std::string_view::npos && parse_groups(s.substr(0, gap), false, head) &&
         parse_groups(rest, true, tail) && head.size() + tail.size() <= 7;
  }
  if (!ok) return std::nullopt;
  std::array<std::uint16_t, 8> words{};
  std::copy(head.begin(), head.end(), words.begin());
  std::copy(tail.begin(), tail.end(), words.end() - static_cast<std::ptrdiff_t>(tail.size()));
  std::array<std::uint8_t, 16> out{};
  for (std::size_t i = 0; i < 8; ++i) store_be16(out.data() + 2 * i, words[i]);
  return out;
}

void append_be16(std::vector<std::uint8_t>& out, std::uint16_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}

}  // namespace

std::string format_ipv4(const std::array<std::uint8_t, 4>& addr) {
  std::string out;
  for (std::size_t i = 0; i < 4; ++i) {
    if (i > 0) out += '.';
    out += std::to_string(addr[i]);
  }
  return out;
}

std::string format_ipv6(const std::array<std::uint8_t, 16>& addr) {
  std::array<std::uint16_t, 8> w{};
  for (std::size_t i = 0; i < 8; ++i) w[i] = load_be16(addr, 2 * i);
  // The first longest run of at least two zero words becomes "::".
  std::size_t best = 8, best_len = 0;
  for (std::size_t i = 0; i < 8;) {
    if (w[i] != 0) {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < 8 && w[j] == 0) ++j;
    if (j - i > best_len) {
      best = i;
      best_len = j - i;
    }
    i = j;
  }
  if (best_len < 2) best = 8;
  std::string out;
  static constexpr char hex[] = "0123456789abcdef";
  for (std::size_t i = 0; i < 8; ++i) {
    if (i == best) {
      out += "::";
      i += best_len - 1;
      continue;
    }
    if (i > 0 && i != best + best_len) out += ':';
    // IPv4-compatible (::a.b.c.d) and IPv4-mapped (::ffff:a.b.c.d), as glibc prints them.
    if (i == 6 && best == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff))) {
      out += format_ipv4({addr[12], addr[13], addr[14], addr[15]});
      break;
    }
    char buf[4];
    std::size_t n = 0;
    bool started = false;
    for (int shift = 12; shift >= 0; shift -= 4) {
      const unsigned nibble = (w[i] >> shift) & 0xf;
      if (nibble != 0 || started || shift == 0) {
        buf[n++] = hex[nibble];
        started = true;
      }
    }
    out.append(buf, n);
  }
  return out;
}

proxy_decode_result decode_proxy_v2(bytes_view in, std::size_t max_header) {
  if (const auto e = check_signature(in)) return fail(*e);
  if (in.size() < proxy_v2_signature.size() + 1) return {};

  const std::uint8_t ver_cmd = in[12];
  if ((ver_cmd >> 4) != version_2) return fail(errc::proxy_bad_version);
  const std::uint8_t command = ver_cmd & 0x0f;
  if (command != command_local && command != command_proxy) return fail(errc::proxy_bad_command);
  const bool local = command == command_local;
  if (in.size() < 14) return {};

  const std::uint8_t family = in[13];
  if (!local && family != family_unspec && block_size(family) == 0) return fail(errc::proxy_bad_family);
  if (in.size() < proxy_v2_fixed_size) return {};

  const std::size_t length = load_be16(in, 14);
  const std::size_t total = proxy_v2_fixed_size + length;
  if (total > max_header) return fail(errc::proxy_too_long);
  const std::size_t block = local ? 0 : block_size(family);
  if (length < block) return fail(errc::proxy_too_short);
  if (in.size() < total) return {};

  proxy_decode_result r;
  r.consumed = total;
  r.header.local = local;
  const bytes_view body = in.subspan(proxy_v2_fixed_size, length);
  if (!local) {
    switch (family) {
      case family_inet_stream: {
        r.header.family = proxy_family::inet;
        r.header.src_address = format_ipv4({body[0], body[1], body[2], body[3]});
        r.header.dst_address = format_ipv4({body[4], body[5], body[6], body[7]});
        r.header.src_port = load_be16(body, 8);
        r.header.dst_port = load_be16(body, 10);
        break;
      }
      case family_inet6_stream: {
        std::array<std::uint8_t, 16> src{}, dst{};
        std::copy_n(body.begin(), 16, src.begin());
        std::copy_n(body.begin() + 16, 16, dst.begin());
        r.header.family = proxy_family::inet6;
        r.header.src_address = format_ipv6(src);
        r.header.dst_address = format_ipv6(dst);
        r.header.src_port = load_be16(body, 32);
        r.header.dst_port = load_be16(body, 34);
        break;
      }
      case family_unix_stream:
        r.header.family = proxy_family::unix_stream;
        r.header.src_address = unix_path_text(body.subspan(0, unix_path));
        r.header.dst_address = unix_path_text(body.subspan(unix_path, unix_path));
        break;
      default: break;  // UNSPEC: no address
    }
    // LOCAL discards the whole block (the spec); PROXY's TLVs must be well framed.
    if (!tlvs_well_framed(body.subspan(block))) return fail(errc::proxy_bad_tlv);
  }
  r.status = decode_status::message;
  return r;
}

outcome::std_result<std::vector<std::uint8_t>> encode_proxy_v2(const proxy_header& header,
                                                               bytes_view tlvs) {
  std::vector<std::uint8_t> block;
  std::uint8_t family = family_unspec;
  if (!header.local) {
    switch (header.family) {
      case proxy_family::unspec: break;
      case proxy_family::inet: {
        const auto src = parse_ipv4(header.src_address);
        const auto dst = parse_ipv4(header.dst_address);
        if (!src || !dst) return std::make_error_code(std::errc::invalid_argument);
        family = family_inet_stream;
        block.insert(block.end(), src->begin(), src->end());
        block.insert(block.end(), dst->begin(), dst->end());
        append_be16(block, header.src_port);
        append_be16(block, header.dst_port);
        break;
      }
      case proxy_family::inet6: {
        const auto src = parse_ipv6(header.src_address);
        const auto dst = parse_ipv6(header.dst_address);
        if (!src || !dst) return std::make_error_code(std::errc::invalid_argument);
        family = family_inet6_stream;
        block.insert(block.end(), src->begin(), src->end());
        block.insert(block.end(), dst->begin(), dst->end());
        append_be16(block, header.src_port);
        append_be16(block, header.dst_port);
        break;
      }
      case proxy_family::unix_stream: {
        if (header.src_address.size() >= unix_path || header.dst_address.size() >= unix_path) {
          return std::make_error_code(std::errc::invalid_argument);
        }
        family = family_unix_stream;
        block.resize(unix_block, 0);
        std::copy(header.src_address.begin(), header.src_address.end(), block.begin());
        std::copy(header.dst_address.begin(), header.dst_address.end(),
                  block.begin() + static_cast<std::ptrdiff_t>(unix_path));
        break;
      }
    }
  }
  const std::size_t length = block.size() + tlvs.size();
  if (length > 0xffff) return make_error_code(errc::proxy_too_long);
  std::vector<std::uint8_t> out(proxy_v2_signature.begin(), proxy_v2_signature.end());
  out.push_back(static_cast<std::uint8_t>((version_2 << 4) | (header.local ? command_local : command_proxy)));
  out.push_back(family);
  append_be16(out, static_cast<std::uint16_t>(length));
  out.insert(out.end(), block.begin(), block.end());
  out.insert(out.end(), tlvs.begin(), tlvs.end());
  return out;
}

}  // namespace pgwire
