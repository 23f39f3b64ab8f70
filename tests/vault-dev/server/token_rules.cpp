// vault-dev: token store rules without server state (see token_rules.hpp).
#include "token_rules.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>
#include <set>

namespace vd {

namespace {

constexpr std::int64_t kTokenDefaultTTL = 2764800;  // the system default lease TTL, 768h
constexpr std::int64_t kTokenMaxTTL = 2764800;      // the system max lease TTL, 768h

// policyutil.SanitizePolicies: trimmed and lowercased, empty names dropped, "root"
// alone when present, "default" added on request, deduplicated and sorted.
std::vector<std::string> sanitize(const std::vector<std::string>& in, bool add_default) {
  std::set<std::string> s;
  for (auto& p : in) {
    std::string t = lower(trim(p));
    if (t == "root") return {"root"};
    if (!t.empty()) s.insert(t);
  }
  if (add_default) s.insert("default");
  return {s.begin(), s.end()};
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string hex(const unsigned char* p, unsigned n) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (unsigned i = 0; i < n; ++i) {
    out.push_back(digits[p[i] >> 4]);
    out.push_back(digits[p[i] & 15]);
  }
  return out;
}

std::string seconds_text(std::int64_t s) { return go_duration(std::chrono::seconds(s)); }

}  // namespace

std::vector<std::string> child_token_policies(const std::vector<std::string>& requested,
                                              const std::vector<std::string>& parent, bool sudo,
                                              bool no_default_policy) {
  // handleCreateCommon's switch, in its order: no policies → the parent's, "default"
  // only if the parent has it; not sudo → a subset of the parent's (an explicit
  // "default" included), "default" added if the parent has it; sudo → "default" added.
  bool add_default = false;
  std::vector<std::string> chosen = requested;
  if (requested.empty()) {
    chosen = sanitize(parent, false);
  } else if (!sudo) {
    std::vector<std::string> from_parent = sanitize(parent, false);
    for (auto& p : sanitize(requested, false)) {
      if (!contains(from_parent, p)) throw BadRequest("child policies must be subset of parent");
    }
    add_default = !no_default_policy && contains(parent, "default");
  } else {
    add_default = !no_default_policy;
  }
  std::vector<std::string> out = sanitize(chosen, add_default);
  // no_default_policy strips "default" even when it was asked for by name.
  if (no_default_policy) out.erase(std::remove(out.begin(), out.end(), "default"), out.end());
  // A sudo token must not mint a root token (privilege escalation).
  if (contains(out, "root") && !contains(parent, "root")) {
    throw BadRequest("root tokens may not be created without parent token being root");
  }
  return out;
}

TokenTtl token_calculate_ttl(std::int64_t increment, std::int64_t backend_ttl, std::int64_t period,
                             std::int64_t explicit_max, TimePoint start) {
  const TimePoint now = truncate_seconds(Clock::now());
  start = start == TimePoint{} ? now : truncate_seconds(start);
  std::int64_t max = kTokenMaxTTL;
  if (explicit_max > 0 && explicit_max < max) max = explicit_max;
  TokenTtl r;
  std::int64_t bound = 0;  // seconds after start the TTL may not pass; 0: none
  if (period > 0) {
    if (period > max) {
      r.warnings.push_back("period of \"" + seconds_text(period) + "\" exceeded the effective max_ttl of \"" +
                           seconds_text(max) + "\"; period value is capped accordingly");
      period = max;
    }
    r.ttl = period;
    bound = explicit_max;
  } else {
    r.ttl = increment > 0 ? increment : backend_ttl > 0 ? backend_ttl : kTokenDefaultTTL;
    bound = max;
  }
  if (bound > 0) {
    const std::int64_t left = unix_seconds(start) + bound - unix_seconds(now);
    if (left < 0) throw BadRequest("past the max TTL, cannot renew");
    if (left < r.ttl) {
      r.warnings.push_back("TTL of \"" + seconds_text(r.ttl) + "\" exceeded the effective max_ttl of \"" +
                           seconds_text(left) + "\"; TTL value is capped accordingly");
      r.ttl = left;
    }
  }
  return r;
}

TokenTtl calculate_ttl(std::int64_t sys_default, std::int64_t sys_max, std::int64_t increment,
                       std::int64_t backend_ttl, std::int64_t period, std::int64_t backend_max,
                       std::int64_t explicit_max, TimePoint start) {
  const TimePoint now = truncate_seconds(Clock::now());
  start = start == TimePoint{} ? now : truncate_seconds(start);
  std::int64_t max = sys_max;
  if (backend_max > 0 && backend_max < max) max = backend_max;
  if (explicit_max > 0 && explicit_max < max) max = explicit_max;
  if (max <= 0) throw BadRequest("max TTL must be greater than zero");
  TokenTtl r;
  std::int64_t bound = 0;  // the TTL may not reach past start + bound; 0: no bound
  if (period > 0) {
    if (period > max) {
      r.warnings.push_back("period of \"" + seconds_text(period) + "\" exceeded the effective max_ttl of \"" +
                           seconds_text(max) + "\"; period value is capped accordingly");
      period = max;
    }
    r.ttl = period;
    bound = explicit_max;
  } else {
    r.ttl = increment > 0 ? increment : backend_ttl > 0 ? backend_ttl : sys_default;
    bound = max;
  }
  if (bound > 0) {
    const std::int64_t left = unix_seconds(start) + bound - unix_seconds(now);
    if (left <= 0) throw BadRequest("past the max TTL, cannot renew");
    if (left < r.ttl) {
      r.warnings.push_back("TTL of \"" + seconds_text(r.ttl) + "\" exceeded the effective max_ttl of \"" +
                           seconds_text(left) + "\"; TTL value is capped accordingly");
      r.ttl = left;
    }
  }
  return r;
}

std::vector<std::string> sanitize_policies(const std::vector<std::string>& in, bool add_default) {
  return sanitize(in, add_default);
}

std::string token_salted_id(const std::string& salt, const std::string& token_id, bool root_namespace) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (root_namespace && token_id.find('.') == std::string::npos) {
    // salt.SaltID(salt, id, salt.SHA1Hash): the older form, kept for dot-less IDs.
    const std::string comb = salt + token_id;
    if (EVP_Digest(comb.data(), comb.size(), md, &n, EVP_sha1(), nullptr) != 1) throw std::runtime_error("SHA1 failed");
    return hex(md, n);
  }
  // salt.GetHMAC: HMAC-SHA256 keyed with the salt.
  if (!HMAC(EVP_sha256(), salt.data(), static_cast<int>(salt.size()),
            reinterpret_cast<const unsigned char*>(token_id.data()), token_id.size(), md, &n)) {
    throw std::runtime_error("HMAC-SHA256 failed");
  }
  // Appended, not "h" + hex(...): g++ 12 at -O2 reports a false -Wrestrict on the latter.
  std::string out = "h";
  out += hex(md, n);
  return out;
}

}  // namespace vd
