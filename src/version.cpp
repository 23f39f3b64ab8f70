#include "vaultwire/version.hpp"

#include <openssl/opensslv.h>

namespace vaultwire {

std::string_view version() noexcept { return VAULTWIRE_VERSION; }

std::string version_banner() {
  std::string s = "vaultwire ";
  s += version();
  s += " (";
  s += OPENSSL_VERSION_TEXT;
  s += ")";
  return s;
}

}  // namespace vaultwire
