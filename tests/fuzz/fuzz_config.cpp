// The configuration parser (toml++ and vaultwire's checks over it) given arbitrary
// text, with an empty environment and a base directory that does not exist, so a
// relative path names nothing. Also parse_duration on the whole input. Checks,
// besides the sanitizers:
// - exactly one of: a config and no errors, or errors and no config;
// - a parsed config has at least one listener and one route, and every duration
//   parse_duration accepts is within a year.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "vaultwire/config.hpp"

namespace {

std::optional<std::string> no_env(std::string_view) { return std::nullopt; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  if (const auto d = vaultwire::parse_duration(text)) {
    FUZZ_CHECK(d->count() >= 0 && *d <= std::chrono::hours(24 * 366));
  }

  const auto r = vaultwire::parse_config(text, {}, no_env, "/nonexistent/vaultwire-fuzz", "fuzz.toml");
  FUZZ_CHECK(r.ok() == r.errors.empty());
  if (r.ok()) {
    FUZZ_CHECK(!r.value->listeners.empty());
    FUZZ_CHECK(!r.value->routes.empty());
  }
  for (const auto& e : r.errors) FUZZ_CHECK(!e.empty());
  return 0;
}
