// vault-dev: small helpers (randomness, time and duration formatting, strings).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace vd {

using json = nlohmann::ordered_json;
using Clock = std::chrono::system_clock;
using TimePoint = Clock::time_point;

// A validation error from a backend: answered as 400 with `msg` (plain text).
struct BadRequest : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// An error answered with `status` and errors [msg] as the text is (no multierror);
// an empty msg answers {"errors":[]}.
struct StatusError : std::runtime_error {
  StatusError(int s, const std::string& msg) : std::runtime_error(msg), status(s) {}
  int status;
};

// Random strings from OpenSSL RAND_bytes.
std::string random_base62(std::size_t n);
std::string random_from(std::string_view charset, std::size_t n);
std::string random_uuid();

// Time formatting.
std::string rfc3339nano(TimePoint t);           // 2022-05-25T20:49:28.561245166Z
std::string pg_expiration(TimePoint t);         // 2006-01-02 15:04:05-0700 (local zone)
std::int64_t unix_seconds(TimePoint t);
TimePoint truncate_seconds(TimePoint t);

// Go's time.Duration.String() for whole/fractional seconds (1h0m0s, 59m10s, 5s).
std::string go_duration(std::chrono::nanoseconds d);
// Parses Vault durations: int seconds, numeric strings, Go durations with d.
// Throws BadRequest on garbage or negative values. `field` is used in errors.
std::int64_t parse_duration_seconds(const json& v, std::string_view field);
std::optional<bool> parse_bool_str(std::string_view s);
bool parse_bool_field(const json& v, std::string_view field);

// Strings.
std::string lower(std::string s);
std::string trim(std::string_view s);
bool starts_with(std::string_view s, std::string_view p);
bool ends_with(std::string_view s, std::string_view p);
std::vector<std::string> split(std::string_view s, char sep);
std::string replace_all(std::string s, std::string_view from, std::string_view to);
std::string url_path_escape(std::string_view s);   // Go url.PathEscape
std::string url_unescape(std::string_view s);
std::optional<std::string> base64_decode_strict(std::string_view s);
// Glob with `*` anywhere (Vault's strutil.StrListContainsGlob semantics).
bool glob_match(std::string_view pattern, std::string_view s);
// A JSON value given as an array of strings or a comma-separated string.
std::vector<std::string> string_list(const json& v, bool comma_split);

}  // namespace vd
