// vault-dev: what the auth methods share (see auth_methods.hpp): tokenutil's token_*
// fields and the field helpers.
#include "auth_methods.hpp"

namespace vd {

const json& body_field(const json& body, const char* name) {
  static const json null_json;
  auto it = body.find(name);
  return it == body.end() ? null_json : *it;
}

bool body_has(const json& body, const char* name) { return !body_field(body, name).is_null(); }

std::string body_string(const json& body, const char* name) {
  const json& v = body_field(body, name);
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number() || v.is_boolean()) return v.dump();
  throw BadRequest(std::string("error converting input for field \"") + name + "\": expected a string");
}

std::int64_t body_int(const json& body, const char* name, std::int64_t def) {
  const json& v = body_field(body, name);
  if (v.is_null()) return def;
  if (v.is_number_integer() || v.is_number_unsigned()) return v.get<std::int64_t>();
  if (v.is_number_float()) return static_cast<std::int64_t>(v.get<double>());
  if (v.is_string()) {
    try {
      std::size_t used = 0;
      std::int64_t n = std::stoll(v.get<std::string>(), &used);
      if (used == v.get<std::string>().size()) return n;
    } catch (...) {
    }
  }
  throw BadRequest(std::string("error converting input for field \"") + name + "\": expected an integer");
}

std::int64_t body_signed_duration(const json& body, const char* name) {
  const json& v = body_field(body, name);
  if (v.is_number_integer()) return v.get<std::int64_t>();
  if (v.is_string()) {
    std::string s = trim(v.get<std::string>());
    if (starts_with(s, "-")) return -parse_duration_seconds(json(s.substr(1)), name);
  }
  return parse_duration_seconds(v, name);
}

json string_array(const std::vector<std::string>& v) {
  json a = json::array();
  for (auto& s : v) a.push_back(s);
  return a;
}

bool list_contains_glob(const std::vector<std::string>& patterns, const std::string& s) {
  for (auto& p : patterns) {
    if (glob_match(p, s)) return true;
  }
  return false;
}

// sdk/helper/tokenutil/tokenutil.go ParseTokenFields, field by field in its order; a
// deprecated field is taken only when its token_* field is absent (UpgradeValue).
void TokenParams::parse(const json& body, const std::map<std::string, std::string>& deprecated) {
  auto source = [&](const char* field) -> const json& {
    if (body_has(body, field)) return body_field(body, field);
    for (auto& [old_name, new_name] : deprecated) {
      if (new_name == field && body_has(body, old_name.c_str())) return body_field(body, old_name.c_str());
    }
    return body_field(body, field);
  };
  auto duration = [&](const char* field, std::int64_t& out) {
    const json& v = source(field);
    if (!v.is_null()) out = parse_duration_seconds(v, field);
  };
  if (const json& v = source("token_bound_cidrs"); !v.is_null()) bound_cidrs = string_list(v, true);
  duration("token_explicit_max_ttl", explicit_max_ttl);
  duration("token_max_ttl", max_ttl);
  if (max_ttl < 0) throw BadRequest("'token_max_ttl' cannot be negative");
  if (const json& v = source("token_no_default_policy"); !v.is_null()) {
    no_default_policy = parse_bool_field(v, "token_no_default_policy");
  }
  duration("token_period", period);
  if (period < 0) throw BadRequest("'token_period' cannot be negative");
  if (const json& v = source("token_policies"); !v.is_null()) policies = string_list(v, true);
  if (const json& v = source("token_type"); !v.is_null()) {
    std::string t = v.is_string() ? v.get<std::string>() : v.dump();
    if (t.empty() || t == "default") {
      type = "default";
    } else if (t == "service" || t == "batch") {
      type = t;
    } else {
      throw BadRequest("invalid 'token_type' value \"" + t + "\"");
    }
  }
  if (const json& v = source("token_num_uses"); !v.is_null()) num_uses = body_int(json{{"token_num_uses", v}}, "token_num_uses", 0);
  if (num_uses < 0) throw BadRequest("'token_num_uses' cannot be negative");
  if (type == "batch") {
    if (period != 0) {
      throw BadRequest("'token_type' cannot be 'batch' or 'default_batch' when set to generate periodic tokens");
    }
    if (num_uses != 0) {
      throw BadRequest(
          "'token_type' cannot be 'batch' or 'default_batch' when set to generate tokens with limited use count");
    }
  }
  duration("token_ttl", ttl);
  if (ttl < 0) throw BadRequest("'token_ttl' cannot be negative");
  if (ttl > 0 && max_ttl > 0 && ttl > max_ttl) throw BadRequest("'token_ttl' cannot be greater than 'token_max_ttl'");
}

// tokenutil PopulateTokenData.
void TokenParams::populate(json& data) const {
  data["token_bound_cidrs"] = string_array(bound_cidrs);
  data["token_explicit_max_ttl"] = explicit_max_ttl;
  data["token_max_ttl"] = max_ttl;
  data["token_no_default_policy"] = no_default_policy;
  data["token_num_uses"] = num_uses;
  data["token_period"] = period;
  data["token_policies"] = string_array(policies);
  data["token_ttl"] = ttl;
  data["token_type"] = type;
}

std::unique_ptr<AuthBackend> make_auth_backend(const std::string& type) {
  if (type == "approle") return make_approle_backend();
  if (type == "jwt") return make_jwt_backend();
  if (type == "kubernetes") return make_kubernetes_backend();
  if (type == "cert") return make_cert_backend();
  return nullptr;
}

}  // namespace vd
