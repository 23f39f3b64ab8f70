// Build and runtime versions: the libraries' own answers where they give one at run
// time (OpenSSL, libcurl), else what vaultwire was compiled against.
#include "vaultwire/version.hpp"

#include <openssl/crypto.h>
#include <openssl/opensslv.h>
#include <spdlog/version.h>

#include <boost/version.hpp>

#include "vault/vault_client.hpp"
#include "vaultwire_git_commit.hpp"  // generated at build time: VAULTWIRE_GIT_COMMIT

#ifndef VAULTWIRE_TOMLPLUSPLUS_VERSION
#define VAULTWIRE_TOMLPLUSPLUS_VERSION "unknown"
#endif

namespace vaultwire {

namespace {

build_info make_build_info() {
  build_info b;
  b.version = VAULTWIRE_VERSION;
  b.commit = VAULTWIRE_GIT_COMMIT;
  b.openssl = OpenSSL_version(OPENSSL_VERSION);
  b.openssl_build = OPENSSL_VERSION_TEXT;
  b.libcurl = libcurl_version();
  b.boost = std::to_string(BOOST_VERSION / 100000) + "." + std::to_string(BOOST_VERSION / 100 % 1000) + "." +
            std::to_string(BOOST_VERSION % 100);
  b.spdlog = std::to_string(SPDLOG_VER_MAJOR) + "." + std::to_string(SPDLOG_VER_MINOR) + "." +
             std::to_string(SPDLOG_VER_PATCH);
  b.tomlplusplus = VAULTWIRE_TOMLPLUSPLUS_VERSION;
  return b;
}

}  // namespace

std::string_view version() noexcept { return VAULTWIRE_VERSION; }

const build_info& get_build_info() {
  static const build_info info = make_build_info();
  return info;
}

std::string version_banner() {
  const auto& b = get_build_info();
  return "vaultwire " + b.version + " (commit " + b.commit + ", " + b.openssl + ")";
}

std::string version_report() {
  const auto& b = get_build_info();
  std::string s = "vaultwire " + b.version + "\n";
  s += "commit: " + b.commit + "\n";
  s += "OpenSSL: " + b.openssl;
  if (b.openssl != b.openssl_build) s += " (built with " + b.openssl_build + ")";
  s += "\n";
  s += "libcurl: " + b.libcurl + "\n";
  s += "Boost: " + b.boost + "\n";
  s += "spdlog: " + b.spdlog + "\n";
  s += "toml++: " + b.tomlplusplus + "\n";
  return s;
}

}  // namespace vaultwire
