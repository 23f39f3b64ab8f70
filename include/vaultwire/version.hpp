#pragma once

#include <string>
#include <string_view>

namespace vaultwire {

// The release version, from CMake's project() version.
[[nodiscard]] std::string_view version() noexcept;
// One line for `vaultwire version` and the start-up log: version and OpenSSL build.
[[nodiscard]] std::string version_banner();

}  // namespace vaultwire
