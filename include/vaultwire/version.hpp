#pragma once

#include <string>
#include <string_view>

namespace vaultwire {

// What this binary is and what it runs on: `vaultwire version` prints it, the
// start-up log and the build_info metric carry it. Contains no secrets.
struct build_info {
  std::string version;       // CMake project() version, e.g. "0.1.0"
  std::string commit;        // git commit at build time ("-dirty" if the tree was); "unknown" outside git
  std::string openssl;       // runtime OpenSSL_version(), e.g. "OpenSSL 3.0.11 19 Sep 2023"
  std::string openssl_build; // OPENSSL_VERSION_TEXT compiled against
  std::string libcurl;       // runtime curl_version_info(), e.g. "7.88.1"
  std::string boost;         // compiled against (header-only use), e.g. "1.74.0"
  std::string spdlog;        // compiled against
  std::string tomlplusplus;  // compiled against
};

// The release version, from CMake's project() version.
[[nodiscard]] std::string_view version() noexcept;
// Computed once; the reference is valid for the life of the process.
[[nodiscard]] const build_info& get_build_info();
// One line for the start-up log: "vaultwire 0.1.0 (commit 85bdf83c1a2b, OpenSSL 3.0.11 19 Sep 2023)".
[[nodiscard]] std::string version_banner();
// `vaultwire version`: the first line "vaultwire <version>", then one "<name>: <value>"
// line each for commit, OpenSSL, libcurl, Boost, spdlog, toml++. Scripts may parse it.
[[nodiscard]] std::string version_report();

}  // namespace vaultwire
