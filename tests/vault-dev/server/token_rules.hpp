// vault-dev: the token store's rules that need no server state: which policies a child
// token gets and a token's TTL at creation and renewal (vault/token_store.go,
// vault/expiration.go, sdk/framework/lease.go).
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

}  // namespace vd
