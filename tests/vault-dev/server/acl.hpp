// vault-dev: HCL subset parser, policies and the ACL engine (vault-api.md §3).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "util.hpp"

namespace vd {

enum Cap : std::uint32_t {
  CapDeny = 1,
  CapCreate = 2,
  CapRead = 4,
  CapUpdate = 8,
  CapDelete = 16,
  CapList = 32,
  CapSudo = 64,
  CapPatch = 128,
  CapSubscribe = 256,
};

// Parses the HCL subset used by Vault policies and password policies into JSON.
// Attributes become keys; a block `name "l1" "l2" { ... }` is appended to the
// array under `name` as an object with "__labels":[l1,l2] plus its body.
// Throws BadRequest("At L:C: ...") on syntax errors.
json parse_hcl(std::string_view text);

struct PathRule {
  std::string pattern;
  std::uint32_t caps = 0;
};

struct Policy {
  std::string name;
  std::string raw;  // as uploaded (decoded from base64 when it was)
  std::vector<PathRule> rules;
};

// Parses an ACL policy (HCL or JSON, optionally base64). Throws BadRequest with
// Vault's texts ("failed to parse policy: ...", "path \"x\": invalid capability \"y\"").
Policy parse_policy(const std::string& name, const std::string& text);

std::vector<std::string> cap_names(std::uint32_t caps);

class Acl {
 public:
  Acl() = default;
  void add(const Policy& p);
  bool root = false;
  // Capabilities for `path` (0 = no rule / denied). `list` applies the LIST
  // trailing-slash rules.
  std::uint32_t capabilities(const std::string& path, bool list) const;

 private:
  std::map<std::string, std::uint32_t> exact_;
  std::map<std::string, std::uint32_t> glob_;
};

// Vault's root-protected paths (need sudo).
bool is_sudo_path(const std::string& path);

extern const char* const kDefaultPolicy;

}  // namespace vd
