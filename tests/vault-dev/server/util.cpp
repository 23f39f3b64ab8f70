// vault-dev: small helpers (randomness, time and duration formatting, strings).
#include "util.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <ctime>

namespace vd {

namespace {
constexpr std::string_view kBase62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

void rand_bytes(unsigned char* buf, std::size_t n) {
  if (RAND_bytes(buf, static_cast<int>(n)) != 1) throw std::runtime_error("RAND_bytes failed");
}
}  // namespace

std::string random_from(std::string_view charset, std::size_t n) {
  // Rejection sampling to avoid modulo bias.
  std::string out;
  out.reserve(n);
  const unsigned limit = 256 - (256 % charset.size());
  unsigned char buf[64];
  while (out.size() < n) {
    rand_bytes(buf, sizeof buf);
    for (unsigned char c : buf) {
      if (c >= limit) continue;
      out.push_back(charset[c % charset.size()]);
      if (out.size() == n) break;
    }
  }
  return out;
}

std::string random_base62(std::size_t n) { return random_from(kBase62, n); }

std::string random_uuid() {
  unsigned char b[16];
  rand_bytes(b, sizeof b);
  char out[37];
  std::snprintf(out, sizeof out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return out;
}

std::int64_t unix_seconds(TimePoint t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

TimePoint truncate_seconds(TimePoint t) {
  return TimePoint(std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()));
}

static std::tm utc_tm(std::int64_t secs) {
  std::time_t tt = static_cast<std::time_t>(secs);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  return tm;
}

std::string rfc3339nano(TimePoint t) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  std::int64_t secs = ns / 1000000000;
  std::int64_t frac = ns % 1000000000;
  if (frac < 0) {
    frac += 1000000000;
    --secs;
  }
  std::tm tm = utc_tm(secs);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec);
  std::string out = buf;
  if (frac != 0) {
    // Go's RFC3339Nano trims trailing zeros of the fraction.
    char fb[16];
    std::snprintf(fb, sizeof fb, "%09lld", static_cast<long long>(frac));
    std::string f = fb;
    while (!f.empty() && f.back() == '0') f.pop_back();
    out += "." + f;
  }
  return out + "Z";
}

// The PostgreSQL plugin formats {{expiration}} with expirationFormat "2006-01-02
// 15:04:05-0700" (plugins/database/postgresql/postgresql.go NewUser, changeUserExpiration)
// from time.Now().Add(...) (builtin/logical/database path_creds_create.go, secret_creds.go),
// a time in the server's local zone: the builtin plugin runs in-process, so the time is not
// turned into UTC by gRPC.
std::string pg_expiration(TimePoint t) {
  std::time_t tt = static_cast<std::time_t>(unix_seconds(t));
  std::tm tm{};
  localtime_r(&tt, &tm);
  long off = tm.tm_gmtoff;
  char sign = off < 0 ? '-' : '+';
  if (off < 0) off = -off;
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02d %02d:%02d:%02d%c%02ld%02ld", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, sign, off / 3600, (off % 3600) / 60);
  return buf;
}

std::string go_duration(std::chrono::nanoseconds d) {
  long long ns = d.count();
  if (ns == 0) return "0s";
  std::string sign;
  if (ns < 0) {
    sign = "-";
    ns = -ns;
  }
  if (ns < 1000000000LL) {
    char b[32];
    if (ns < 1000) {
      std::snprintf(b, sizeof b, "%lldns", ns);
    } else if (ns < 1000000) {
      std::snprintf(b, sizeof b, "%gµs", static_cast<double>(ns) / 1e3);
    } else {
      std::snprintf(b, sizeof b, "%gms", static_cast<double>(ns) / 1e6);
    }
    return sign + b;
  }
  long long secs = ns / 1000000000LL;
  long long frac = ns % 1000000000LL;
  long long h = secs / 3600, m = (secs / 60) % 60, s = secs % 60;
  std::string sec = std::to_string(s);
  if (frac) {
    char fb[16];
    std::snprintf(fb, sizeof fb, "%09lld", frac);
    std::string f = fb;
    while (!f.empty() && f.back() == '0') f.pop_back();
    sec += "." + f;
  }
  std::string out = sign;
  if (h > 0) {
    out += std::to_string(h) + "h" + std::to_string(m) + "m" + sec + "s";
  } else if (m > 0) {
    out += std::to_string(m) + "m" + sec + "s";
  } else {
    out += sec + "s";
  }
  return out;
}

static std::int64_t parse_go_duration(const std::string& s, std::string_view field) {
  auto fail = [&]() -> BadRequest {
    return BadRequest("error converting input " + s + " for field \"" + std::string(field) +
                      "\": time: invalid duration \"" + s + "\"");
  };
  std::size_t i = 0;
  bool neg = false;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) {
    neg = s[i] == '-';
    ++i;
  }
  if (i >= s.size()) throw fail();
  long double total = 0;
  while (i < s.size()) {
    std::size_t start = i;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
    if (start == i) throw fail();
    long double num = 0;
    try {
      num = std::stold(s.substr(start, i - start));
    } catch (...) {
      throw fail();
    }
    std::size_t us = i;
    while (i < s.size() && !std::isdigit(static_cast<unsigned char>(s[i])) && s[i] != '.') ++i;
    std::string unit = s.substr(us, i - us);
    long double mult;
    if (unit == "ns") mult = 1e-9L;
    else if (unit == "us" || unit == "µs") mult = 1e-6L;
    else if (unit == "ms") mult = 1e-3L;
    else if (unit == "s") mult = 1;
    else if (unit == "m") mult = 60;
    else if (unit == "h") mult = 3600;
    else if (unit == "d") mult = 86400;
    else throw fail();
    total += num * mult;
  }
  if (neg && total > 0) throw BadRequest("cannot provide negative value for field \"" + std::string(field) + "\"");
  if (total > 9.2e12L) throw fail();
  return static_cast<std::int64_t>(total);
}

std::int64_t parse_duration_seconds(const json& v, std::string_view field) {
  if (v.is_null()) return 0;
  if (v.is_number_integer() || v.is_number_unsigned()) {
    std::int64_t n = v.is_number_unsigned() ? static_cast<std::int64_t>(v.get<std::uint64_t>()) : v.get<std::int64_t>();
    if (n < 0) throw BadRequest("cannot provide negative value for field \"" + std::string(field) + "\"");
    return n;
  }
  if (v.is_number_float()) {
    double d = v.get<double>();
    if (d < 0) throw BadRequest("cannot provide negative value for field \"" + std::string(field) + "\"");
    if (!std::isfinite(d) || d > 9.2e12) throw BadRequest("invalid value for field \"" + std::string(field) + "\"");
    return static_cast<std::int64_t>(d);
  }
  if (v.is_string()) {
    std::string s = trim(v.get<std::string>());
    if (s.empty()) return 0;
    bool digits = true;
    std::size_t i = (s[0] == '-' || s[0] == '+') ? 1 : 0;
    if (i >= s.size()) digits = false;
    for (; i < s.size(); ++i) {
      if (!std::isdigit(static_cast<unsigned char>(s[i]))) digits = false;
    }
    if (digits) {
      if (s.size() > 15) throw BadRequest("invalid value for field \"" + std::string(field) + "\"");
      long long n = std::stoll(s);
      if (n < 0) throw BadRequest("cannot provide negative value for field \"" + std::string(field) + "\"");
      return n;
    }
    return parse_go_duration(s, field);
  }
  throw BadRequest("error converting input for field \"" + std::string(field) + "\": expected a duration");
}

std::optional<bool> parse_bool_str(std::string_view s) {
  if (s == "1" || s == "t" || s == "T" || s == "TRUE" || s == "true" || s == "True") return true;
  if (s == "0" || s == "f" || s == "F" || s == "FALSE" || s == "false" || s == "False") return false;
  return std::nullopt;
}

bool parse_bool_field(const json& v, std::string_view field) {
  if (v.is_null()) return false;
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v.get<double>() != 0;
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    if (s.empty()) return false;
    if (auto b = parse_bool_str(s)) return *b;
  }
  throw BadRequest("error converting input for field \"" + std::string(field) + "\": expected a boolean");
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(std::string_view s) {
  std::size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return std::string(s.substr(b, e - b));
}

bool starts_with(std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; }
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    std::size_t pos = s.find(sep, start);
    if (pos == std::string_view::npos) {
      out.emplace_back(s.substr(start));
      return out;
    }
    out.emplace_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

std::string replace_all(std::string s, std::string_view from, std::string_view to) {
  if (from.empty()) return s;
  std::size_t pos = 0;
  while ((pos = s.find(from, pos)) != std::string::npos) {
    s.replace(pos, from.size(), to);
    pos += to.size();
  }
  return s;
}

std::string url_path_escape(std::string_view s) {
  // Go's url.PathEscape: escapes everything except unreserved and a few
  // sub-delims allowed in a path segment ($&+,;=:@), and '/' is escaped.
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    bool keep = std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '$' || c == '&' ||
                c == '+' || c == ',' || c == ';' || c == '=' || c == ':' || c == '@';
    if (keep) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

std::string url_unescape(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() &&
        std::isxdigit(static_cast<unsigned char>(s[i + 1])) && std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else if (s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::optional<std::string> base64_decode_strict(std::string_view s) {
  if (s.empty() || s.size() % 4 != 0) return std::nullopt;
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '+' || c == '/';
    if (c == '=') ok = i >= s.size() - 2 && (i == s.size() - 1 || s[s.size() - 1] == '=');
    if (!ok) return std::nullopt;
  }
  std::string out(s.size() / 4 * 3 + 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), reinterpret_cast<const unsigned char*>(s.data()),
                          static_cast<int>(s.size()));
  if (n < 0) return std::nullopt;
  std::size_t pad = 0;
  if (s.back() == '=') ++pad;
  if (s.size() >= 2 && s[s.size() - 2] == '=') ++pad;
  out.resize(static_cast<std::size_t>(n) - pad);
  return out;
}

bool glob_match(std::string_view pattern, std::string_view s) {
  // Iterative '*' wildcard matcher.
  std::size_t p = 0, i = 0, star = std::string_view::npos, mark = 0;
  while (i < s.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = i;
    } else if (p < pattern.size() && pattern[p] == s[i]) {
      ++p;
      ++i;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      i = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

std::vector<std::string> string_list(const json& v, bool comma_split) {
  std::vector<std::string> out;
  if (v.is_null()) return out;
  if (v.is_array()) {
    for (const auto& e : v) {
      if (e.is_string()) {
        out.push_back(e.get<std::string>());
      } else if (!e.is_null()) {
        out.push_back(e.dump());
      }
    }
    return out;
  }
  if (v.is_string()) {
    std::string s = v.get<std::string>();
    if (!comma_split) {
      out.push_back(s);
      return out;
    }
    for (auto& part : split(s, ',')) {
      std::string t = trim(part);
      if (!t.empty()) out.push_back(t);
    }
    return out;
  }
  throw BadRequest("expected a list of strings");
}

}  // namespace vd
