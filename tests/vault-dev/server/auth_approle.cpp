// vault-dev: the AppRole auth method (builtin/credential/approle: path_role.go,
// path_login.go, validation.go; website api-docs/auth/approle).
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <algorithm>

#include "auth_methods.hpp"

namespace vd {

namespace {

// validation.go createHMAC: secret IDs are kept only as HMAC-SHA256 under the role's key.
std::string hmac_hex(const std::string& key, const std::string& value) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(value.data()),
       value.size(), md, &n);
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < n; ++i) {
    out.push_back(digits[md[i] >> 4]);
    out.push_back(digits[md[i] & 15]);
  }
  return out;
}

struct SecretId {
  std::string accessor;
  std::int64_t num_uses = 0;  // 0: unlimited
  std::int64_t ttl = 0;
  TimePoint creation{}, expiration{}, last_updated{};  // expiration epoch: never
  std::map<std::string, std::string> metadata;
  std::vector<std::string> cidr_list, token_bound_cidrs;
};

struct Role {
  std::string name;
  std::string role_id;
  std::string hmac_key = random_uuid();
  bool bind_secret_id = true;
  std::vector<std::string> secret_id_bound_cidrs;
  std::int64_t secret_id_num_uses = 0, secret_id_ttl = 0;
  bool local_secret_ids = false;
  TokenParams token;
  std::map<std::string, SecretId> secret_ids;  // by HMAC of the secret ID
};

class Approle : public AuthBackend {
 public:
  bool exists(const std::string& rest) const override {
    // Only role/<name> has an ExistenceCheck (pathRoleExistenceCheck); the other
    // writable paths are update operations.
    if (!starts_with(rest, "role/")) return true;
    std::string name = rest.substr(5);
    if (name.find('/') != std::string::npos) return true;
    return roles_.count(lower(name)) > 0;
  }

  BackendReply handle(const std::string& op, const std::string& rest, const json& body, const SysView& sys) override {
    bool write = op == "create" || op == "update";
    if (rest == "role/") {
      if (op != "list") throw StatusError(405, "1 error occurred:\n\t* unsupported operation\n\n");
      return list_roles(roles_);
    }
    if (!starts_with(rest, "role/")) throw StatusError(404, "1 error occurred:\n\t* unsupported path\n\n");
    std::string tail = rest.substr(5);
    auto slash = tail.find('/');
    std::string name = lower(tail.substr(0, slash));
    std::string sub = slash == std::string::npos ? "" : tail.substr(slash + 1);
    if (name.empty()) throw StatusError(404, "1 error occurred:\n\t* unsupported path\n\n");
    if (sub.empty()) {
      if (op == "read") return role_read(name);
      if (write) return role_write(name, body, op == "create", sys);
      if (op == "delete") {
        auto it = roles_.find(name);
        if (it != roles_.end()) {
          role_ids_.erase(it->second.role_id);
          roles_.erase(it);
        }
        return {};
      }
      throw StatusError(405, "1 error occurred:\n\t* unsupported operation\n\n");
    }
    auto it = roles_.find(name);
    if (sub == "role-id") {
      if (op == "read") {
        if (it == roles_.end()) throw StatusError(404, "");
        return BackendReply::ok(json{{"role_id", it->second.role_id}});
      }
      if (!write) throw StatusError(405, "1 error occurred:\n\t* unsupported operation\n\n");
      Role& r = need_role(name);
      std::string id = trim(body_string(body, "role_id"));
      if (id.empty()) throw BadRequest("missing role_id");
      auto owner = role_ids_.find(id);
      if (owner != role_ids_.end() && owner->second != name) throw BadRequest("role_id already in use");
      role_ids_.erase(r.role_id);
      r.role_id = id;
      role_ids_[id] = name;
      return {};
    }
    if (sub == "secret-id/" && op == "list") {
      if (it == roles_.end()) throw StatusError(404, "role \"" + name + "\" does not exist");
      std::vector<std::string> keys;
      expire_secret_ids(it->second);
      for (auto& [_, s] : it->second.secret_ids) keys.push_back(s.accessor);
      if (keys.empty()) throw StatusError(404, "");
      std::sort(keys.begin(), keys.end());
      return BackendReply::ok(json{{"keys", string_array(keys)}});
    }
    if (sub == "secret-id" || sub == "custom-secret-id") {
      if (!write) throw StatusError(405, "1 error occurred:\n\t* unsupported operation\n\n");
      std::string secret = sub == "secret-id" ? random_uuid() : body_string(body, "secret_id");
      if (secret.empty()) throw BadRequest("missing secret_id");
      return secret_id_create(need_role(name), secret, body, sys);
    }
    if (sub == "secret-id/lookup" || sub == "secret-id/destroy" || sub == "secret-id-accessor/lookup" ||
        sub == "secret-id-accessor/destroy") {
      if (!write && op != "delete") throw StatusError(405, "1 error occurred:\n\t* unsupported operation\n\n");
      Role& r = need_role(name);
      expire_secret_ids(r);
      bool by_accessor = starts_with(sub, "secret-id-accessor/");
      std::string key;
      if (by_accessor) {
        std::string acc = trim(body_string(body, "secret_id_accessor"));
        if (acc.empty()) throw BadRequest("missing secret_id_accessor");
        for (auto& [k, s] : r.secret_ids) {
          if (s.accessor == acc) key = k;
        }
        // path_role.go pathRoleSecretIDAccessorLookupUpdate / DestroyUpdate.
        if (key.empty()) throw BadRequest("failed to find accessor entry for secret_id_accessor: \"" + acc + "\"");
      } else {
        std::string secret = trim(body_string(body, "secret_id"));
        if (secret.empty()) throw BadRequest("missing secret_id");
        key = hmac_hex(r.hmac_key, secret);
      }
      auto s = r.secret_ids.find(key);
      if (ends_with(sub, "/destroy")) {
        if (s != r.secret_ids.end()) r.secret_ids.erase(s);
        return {};
      }
      if (s == r.secret_ids.end()) return {};
      return BackendReply::ok(secret_id_data(s->second, sys));
    }
    throw StatusError(404, "1 error occurred:\n\t* unsupported path\n\n");
  }

  // path_login.go pathLoginUpdate. Every refusal is a 400 with Vault's text; an unknown
  // role ID, an unknown, expired or used-up secret ID are all "invalid role or secret ID".
  // An expired secret ID is refused as the backend's tidy (PeriodicFunc, once a minute)
  // leaves it: deleted.
  LoginAuth login(const json& body, const PeerCerts&, const SysView&) override {
    std::string role_id = trim(body_string(body, "role_id"));
    if (role_id.empty()) throw BadRequest("missing role_id");
    auto idx = role_ids_.find(role_id);
    if (idx == role_ids_.end()) throw BadRequest("invalid role or secret ID");
    auto rit = roles_.find(idx->second);
    if (rit == roles_.end()) throw BadRequest("invalid role or secret ID");
    Role& role = rit->second;
    std::map<std::string, std::string> metadata;
    std::vector<std::string> token_cidrs = role.token.bound_cidrs;
    if (role.bind_secret_id) {
      std::string secret = trim(body_string(body, "secret_id"));
      if (secret.empty()) throw BadRequest("missing secret_id");
      expire_secret_ids(role);
      auto s = role.secret_ids.find(hmac_hex(role.hmac_key, secret));
      if (s == role.secret_ids.end()) throw BadRequest("invalid role or secret ID");
      // A secret ID with uses left loses one; its last use deletes it and still logs in.
      if (s->second.num_uses > 0) {
        if (s->second.num_uses == 1) {
          metadata = s->second.metadata;
          if (!s->second.token_bound_cidrs.empty()) token_cidrs = s->second.token_bound_cidrs;
          role.secret_ids.erase(s);
        } else {
          --s->second.num_uses;
          s->second.last_updated = Clock::now();
          metadata = s->second.metadata;
          if (!s->second.token_bound_cidrs.empty()) token_cidrs = s->second.token_bound_cidrs;
        }
      } else {
        metadata = s->second.metadata;
        if (!s->second.token_bound_cidrs.empty()) token_cidrs = s->second.token_bound_cidrs;
      }
    }
    // Always include the role name, for later filtering.
    metadata["role_name"] = role.name;
    LoginAuth a;
    a.metadata = metadata;
    a.alias = role.role_id;
    a.token = role.token;
    a.token.bound_cidrs = token_cidrs;
    return a;
  }

 private:
  Role& need_role(const std::string& name) {
    auto it = roles_.find(name);
    // path_role.go handleRoleSecretIDCommon: ErrorResponse with ErrUnsupportedPath, a 404
    // with the response's text (sdk/logical/response_util.go RespondErrorCommon); used
    // for the role's other sub-paths too.
    if (it == roles_.end()) throw StatusError(404, "role \"" + name + "\" does not exist");
    return it->second;
  }

  static void expire_secret_ids(Role& r) {
    auto now = Clock::now();
    for (auto it = r.secret_ids.begin(); it != r.secret_ids.end();) {
      if (it->second.expiration != TimePoint{} && it->second.expiration <= now) {
        it = r.secret_ids.erase(it);
      } else {
        ++it;
      }
    }
  }

  // validation.go deriveSecretIDTTL: a negative TTL or one past the mount's max lease
  // TTL becomes that max.
  static std::int64_t derive_ttl(std::int64_t ttl, const SysView& sys) {
    return ttl < 0 || ttl > sys.max_ttl ? sys.max_ttl : ttl;
  }

  static json secret_id_data(const SecretId& s, const SysView& sys) {
    json d = json::object();
    d["cidr_list"] = string_array(s.cidr_list);
    d["creation_time"] = rfc3339nano(s.creation);
    d["expiration_time"] = s.expiration == TimePoint{} ? "0001-01-01T00:00:00Z" : rfc3339nano(s.expiration);
    d["last_updated_time"] = rfc3339nano(s.last_updated);
    json meta = json::object();
    for (auto& [k, v] : s.metadata) meta[k] = v;
    d["metadata"] = meta;
    d["secret_id_accessor"] = s.accessor;
    d["secret_id_num_uses"] = s.num_uses;
    d["secret_id_ttl"] = derive_ttl(s.ttl, sys);
    d["token_bound_cidrs"] = string_array(s.token_bound_cidrs);
    return d;
  }

  // path_role.go pathRoleRead.
  BackendReply role_read(const std::string& name) {
    auto it = roles_.find(name);
    if (it == roles_.end()) throw StatusError(404, "");
    const Role& r = it->second;
    json d = json::object();
    d["bind_secret_id"] = r.bind_secret_id;
    d["local_secret_ids"] = r.local_secret_ids;
    d["secret_id_bound_cidrs"] = string_array(r.secret_id_bound_cidrs);
    d["secret_id_num_uses"] = r.secret_id_num_uses;
    d["secret_id_ttl"] = r.secret_id_ttl;
    r.token.populate(d);
    // Backwards compat data.
    if (r.token.period > 0) d["period"] = r.token.period;
    if (!r.token.policies.empty()) d["policies"] = d["token_policies"];
    return BackendReply::ok(d);
  }

  // path_role.go pathRoleCreateUpdate, then setRoleEntry's checks.
  BackendReply role_write(const std::string& name, const json& body, bool create, const SysView& sys) {
    Role r;
    auto existing = roles_.find(name);
    if (existing != roles_.end()) r = existing->second;
    r.name = name;
    std::string previous_role_id = r.role_id;
    if (body_has(body, "role_id")) {
      r.role_id = body_string(body, "role_id");
    } else if (create) {
      r.role_id = random_uuid();
    }
    if (r.role_id.empty()) throw BadRequest("invalid role_id supplied, or failed to generate a role_id");
    if (body_has(body, "bind_secret_id")) r.bind_secret_id = parse_bool_field(body_field(body, "bind_secret_id"), "bind_secret_id");
    if (body_has(body, "secret_id_bound_cidrs")) {
      r.secret_id_bound_cidrs = string_list(body_field(body, "secret_id_bound_cidrs"), true);
    } else if (body_has(body, "bound_cidr_list")) {
      r.secret_id_bound_cidrs = string_list(body_field(body, "bound_cidr_list"), true);
    }
    if (body_has(body, "secret_id_num_uses")) r.secret_id_num_uses = body_int(body, "secret_id_num_uses", 0);
    if (r.secret_id_num_uses < 0) throw BadRequest("secret_id_num_uses cannot be negative");
    if (body_has(body, "secret_id_ttl")) r.secret_id_ttl = parse_duration_seconds(body_field(body, "secret_id_ttl"), "secret_id_ttl");
    if (body_has(body, "local_secret_ids") && create) {
      r.local_secret_ids = parse_bool_field(body_field(body, "local_secret_ids"), "local_secret_ids");
    }
    r.token.parse(body, {{"policies", "token_policies"}, {"period", "token_period"}});
    if (r.token.period > sys.max_ttl) {
      throw BadRequest("period of \"" + go_duration(std::chrono::seconds(r.token.period)) +
                       "\" is greater than the backend's maximum lease TTL of \"" +
                       go_duration(std::chrono::seconds(sys.max_ttl)) + "\"");
    }
    BackendReply reply;
    if (r.token.max_ttl > sys.max_ttl) {
      reply.warnings.push_back(
          "token_max_ttl is greater than the backend mount's maximum TTL value; issued tokens' max TTL value will be "
          "truncated");
    }
    // validateRoleConstraints.
    if (!r.bind_secret_id && r.secret_id_bound_cidrs.empty() && r.token.bound_cidrs.empty()) {
      throw BadRequest("at least one constraint should be enabled on the role");
    }
    auto owner = role_ids_.find(r.role_id);
    if (owner != role_ids_.end() && owner->second != name) throw BadRequest("role_id already in use");
    if (!previous_role_id.empty() && previous_role_id != r.role_id) role_ids_.erase(previous_role_id);
    role_ids_[r.role_id] = name;
    roles_[name] = std::move(r);
    if (!reply.warnings.empty()) {
      reply.status = 200;
      reply.data = nullptr;
    }
    return reply;
  }

  // path_role.go handleRoleSecretIDCommon and validation.go registerSecretIDEntry.
  BackendReply secret_id_create(Role& r, const std::string& secret, const json& body, const SysView& sys) {
    if (!r.bind_secret_id) throw BadRequest("bind_secret_id is not set on the role");
    SecretId s;
    s.num_uses = r.secret_id_num_uses;
    s.ttl = r.secret_id_ttl;
    if (body_has(body, "cidr_list")) s.cidr_list = string_list(body_field(body, "cidr_list"), true);
    if (body_has(body, "token_bound_cidrs")) s.token_bound_cidrs = string_list(body_field(body, "token_bound_cidrs"), true);
    const json& meta = body_field(body, "metadata");
    json meta_obj = meta;
    if (meta.is_string() && !meta.get<std::string>().empty()) {
      try {
        meta_obj = json::parse(meta.get<std::string>());
      } catch (const std::exception& e) {
        throw BadRequest(std::string("failed to parse metadata: ") + e.what());
      }
    }
    if (meta_obj.is_object()) {
      for (auto it = meta_obj.begin(); it != meta_obj.end(); ++it) {
        if (!it.value().is_string()) throw BadRequest("failed to parse metadata: values must be strings");
        s.metadata[it.key()] = it.value().get<std::string>();
      }
    }
    if (body_has(body, "num_uses")) {
      std::int64_t n = body_int(body, "num_uses", 0);
      if (n < 0) throw BadRequest("num_uses cannot be negative");
      if ((n == 0 && r.secret_id_num_uses > 0) || (r.secret_id_num_uses > 0 && n > r.secret_id_num_uses)) {
        throw BadRequest("num_uses cannot be higher than the role's secret_id_num_uses");
      }
      s.num_uses = n;
    }
    if (body_has(body, "ttl")) {
      std::int64_t ttl = parse_duration_seconds(body_field(body, "ttl"), "ttl");
      if ((ttl == 0 && r.secret_id_ttl > 0) || (r.secret_id_ttl > 0 && ttl > r.secret_id_ttl)) {
        throw BadRequest("ttl cannot be longer than the role's secret_id_ttl");
      }
      s.ttl = ttl;
    }
    std::string key = hmac_hex(r.hmac_key, secret);
    if (r.secret_ids.count(key)) throw StatusError(500, "failed to store secret_id: SecretID is already registered");
    auto now = Clock::now();
    s.creation = s.last_updated = now;
    std::int64_t ttl = derive_ttl(s.ttl, sys);
    if (ttl != 0) s.expiration = now + std::chrono::seconds(ttl);
    s.accessor = random_uuid();
    json d = json::object();
    d["secret_id"] = secret;
    d["secret_id_accessor"] = s.accessor;
    d["secret_id_num_uses"] = s.num_uses;
    d["secret_id_ttl"] = ttl;
    r.secret_ids[key] = std::move(s);
    return BackendReply::ok(d);
  }

  std::map<std::string, Role> roles_;
  std::map<std::string, std::string> role_ids_;  // role ID -> role name
};

}  // namespace

std::unique_ptr<AuthBackend> make_approle_backend() { return std::make_unique<Approle>(); }

}  // namespace vd
