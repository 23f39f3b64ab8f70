// vault-dev: the token store's rules that need no server state: which policies a child
// token gets, a token's TTL at creation and renewal, and the salted token ID that names
// a token's lease (vault/token_store.go, vault/expiration.go, sdk/framework/lease.go).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "util.hpp"

namespace vd {

// The child's policies, as token_store.go handleCreateCommon chooses them for a request
// without a token role. `sudo`: the caller is root or has sudo on the create path.
// Throws BadRequest with Vault's text when the request is refused.
std::vector<std::string> child_token_policies(const std::vector<std::string>& requested,
                                              const std::vector<std::string>& parent, bool sudo,
                                              bool no_default_policy);

struct TokenTtl {
  std::int64_t ttl = 0;
  std::vector<std::string> warnings;
};

// sdk/framework/lease.go CalculateTTL on the token store's mount (the system default
// and max lease TTL, 768h), periods included. Throws BadRequest past the max TTL.
TokenTtl token_calculate_ttl(std::int64_t increment, std::int64_t backend_ttl, std::int64_t period,
                             std::int64_t explicit_max, TimePoint start);

// sdk/framework/lease.go CalculateTTL with the mount's system view (sys_default and
// sys_max: the mount's tuned TTLs or the system's): a period, when set, is the TTL (capped
// by the effective max) and only an explicit max bounds it; otherwise increment, the
// backend's TTL or the default, capped by what is left of the max after `start`.
TokenTtl calculate_ttl(std::int64_t sys_default, std::int64_t sys_max, std::int64_t increment,
                       std::int64_t backend_ttl, std::int64_t period, std::int64_t backend_max,
                       std::int64_t explicit_max, TimePoint start);

// policyutil.SanitizePolicies: trimmed and lowercased, empty names dropped, "root" alone
// when present, "default" added on request, deduplicated and sorted.
std::vector<std::string> sanitize_policies(const std::vector<std::string>& in, bool add_default);

// token_store.go SaltID: hex SHA1(salt + id) for a dot-less ID in the root namespace,
// otherwise "h" + hex HMAC-SHA256(key = salt, id).
std::string token_salted_id(const std::string& salt, const std::string& token_id, bool root_namespace);

}  // namespace vd
