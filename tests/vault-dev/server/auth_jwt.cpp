// vault-dev: the JWT auth method with static keys (hashicorp/vault-plugin-auth-jwt:
// path_config.go, path_role.go, path_login.go, claims.go) and the Kubernetes auth
// method with pem_keys (hashicorp/vault-plugin-auth-kubernetes: path_config.go,
// path_role.go, path_login.go). Signatures are checked by jwt.cpp.
#include <algorithm>
#include <cmath>

#include "auth_methods.hpp"
#include "jwt.hpp"

namespace vd {

namespace {

[[noreturn]] void unsupported_path() { throw StatusError(404, "1 error occurred:\n\t* unsupported path\n\n"); }
[[noreturn]] void unsupported_op() { throw StatusError(405, "1 error occurred:\n\t* unsupported operation\n\n"); }

// go-jose v2 jwt/errors.go.
const char* const kErrIssuer = "square/go-jose/jwt: validation failed, invalid issuer claim (iss)";
const char* const kErrSubject = "square/go-jose/jwt: validation failed, invalid subject claim (sub)";
const char* const kErrNotValidYet = "square/go-jose/jwt: validation failed, token not valid yet (nbf)";
const char* const kErrExpired = "square/go-jose/jwt: validation failed, token is expired (exp)";
const char* const kErrIssuedInFuture = "square/go-jose/jwt: validation field, token issued in the future (iat)";

// go-jose NumericDate: a JSON number of seconds; absent is 0.
std::int64_t numeric_date(const json& claims, const char* name) {
  auto it = claims.find(name);
  if (it == claims.end() || !it->is_number()) return 0;
  if (it->is_number_float()) return static_cast<std::int64_t>(std::floor(it->get<double>()));
  return it->get<std::int64_t>();
}

// go-jose Audience: a string or a list of strings.
std::vector<std::string> audience(const json& claims) {
  auto it = claims.find("aud");
  if (it == claims.end() || it->is_null()) return {};
  if (it->is_string()) return {it->get<std::string>()};
  std::vector<std::string> out;
  if (it->is_array()) {
    for (auto& a : *it) {
      if (a.is_string()) out.push_back(a.get<std::string>());
    }
  }
  return out;
}

std::string claim_string(const json& claims, const char* name) {
  auto it = claims.find(name);
  return it != claims.end() && it->is_string() ? it->get<std::string>() : "";
}

// go-jose jwt.Claims.ValidateWithLeeway: issuer, subject, then nbf, exp and iat against
// now, each with the leeway.
void validate_with_leeway(const json& claims, const std::string& issuer, const std::string& subject,
                          std::int64_t nbf, std::int64_t exp, std::int64_t iat, std::int64_t leeway) {
  if (!issuer.empty() && issuer != claim_string(claims, "iss")) throw BadRequest(std::string("error validating claims: ") + kErrIssuer);
  if (!subject.empty() && subject != claim_string(claims, "sub")) throw BadRequest(std::string("error validating claims: ") + kErrSubject);
  std::int64_t now = unix_seconds(Clock::now());
  if (now + leeway < nbf) throw BadRequest(std::string("error validating claims: ") + kErrNotValidYet);
  if (now - leeway > exp) throw BadRequest(std::string("error validating claims: ") + kErrExpired);
  if (now + leeway < iat) throw BadRequest(std::string("error validating claims: ") + kErrIssuedInFuture);
}

// claims.go getClaim: a name starting with '/' is a JSON pointer into the claims.
const json* get_claim(const json& claims, const std::string& name) {
  if (!starts_with(name, "/")) {
    auto it = claims.find(name);
    return it == claims.end() || it->is_null() ? nullptr : &*it;
  }
  try {
    const json& v = claims.at(json::json_pointer(name));
    return v.is_null() ? nullptr : &v;
  } catch (const std::exception&) {
    return nullptr;
  }
}

// claims.go normalizeList: a string or a list.
bool normalize_list(const json& v, std::vector<json>& out) {
  out.clear();
  if (v.is_string()) {
    out.push_back(v);
    return true;
  }
  if (v.is_array()) {
    for (auto& e : v) out.push_back(e);
    return true;
  }
  return false;
}

// claims.go validateBoundClaims and matchFound (glob matching for bound_claims_type glob).
void validate_bound_claims(const json& bound, bool globs, const json& claims) {
  for (auto it = bound.begin(); it != bound.end(); ++it) {
    const json* actual = get_claim(claims, it.key());
    if (!actual) throw BadRequest("error validating claims: claim \"" + it.key() + "\" is missing");
    std::vector<json> act, exp;
    if (!normalize_list(*actual, act)) {
      throw BadRequest("error validating claims: received claim is not a string or list: " + actual->dump());
    }
    if (!normalize_list(it.value(), exp)) {
      throw BadRequest("error validating claims: bound claim is not a string or list: " + it.value().dump());
    }
    bool found = false;
    for (auto& e : exp) {
      for (auto& a : act) {
        if (globs) {
          if (e.is_string() && a.is_string() && glob_match(e.get<std::string>(), a.get<std::string>())) found = true;
        } else if (e == a) {
          found = true;
        }
      }
    }
    if (!found) {
      throw BadRequest("error validating claims: claim \"" + it.key() + "\" does not match any associated bound claim values");
    }
  }
}

const std::map<std::string, std::string> kDeprecatedTokenFields = {
    {"policies", "token_policies"}, {"ttl", "token_ttl"},        {"max_ttl", "token_max_ttl"},
    {"period", "token_period"},     {"num_uses", "token_num_uses"}, {"bound_cidrs", "token_bound_cidrs"}};

// The backwards-compatible copies a role read shows for the deprecated fields.
void populate_deprecated(json& d, const TokenParams& t) {
  if (!t.policies.empty()) d["policies"] = d["token_policies"];
  if (t.ttl > 0) d["ttl"] = t.ttl;
  if (t.max_ttl > 0) d["max_ttl"] = t.max_ttl;
  if (t.period > 0) d["period"] = t.period;
  if (t.num_uses > 0) d["num_uses"] = t.num_uses;
  if (!t.bound_cidrs.empty()) d["bound_cidrs"] = d["token_bound_cidrs"];
}

// ------------------------------------------------------------------------ jwt
constexpr std::int64_t kClaimDefaultLeeway = 150;  // claims.go claimDefaultLeeway
constexpr std::int64_t kJoseDefaultLeeway = 60;    // go-jose jwt.DefaultLeeway

struct JwtConfig {
  std::vector<std::string> pubkeys_pem;
  std::vector<PublicKey> keys;
  std::string bound_issuer, default_role;
  std::vector<std::string> supported_algs;
};

struct JwtRole {
  std::string role_type = "oidc";
  std::vector<std::string> bound_audiences, allowed_redirect_uris, oidc_scopes;
  std::string user_claim, bound_subject, groups_claim;
  json bound_claims = nullptr;
  std::string bound_claims_type = "string";
  json claim_mappings = nullptr;
  std::int64_t clock_skew_leeway = kJoseDefaultLeeway, expiration_leeway = kClaimDefaultLeeway,
               not_before_leeway = kClaimDefaultLeeway;
  TokenParams token;
};

class JwtAuth : public AuthBackend {
 public:
  bool exists(const std::string& rest) const override {
    if (starts_with(rest, "role/")) return roles_.count(lower(rest.substr(5))) > 0;
    return true;
  }

  BackendReply handle(const std::string& op, const std::string& rest, const json& body, const SysView&) override {
    bool write = op == "create" || op == "update";
    if (rest == "config") {
      if (op == "read") return config_read();
      if (write) return config_write(body);
      unsupported_op();
    }
    if (rest == "role/") {
      if (op != "list") unsupported_op();
      return list_roles(roles_);
    }
    if (starts_with(rest, "role/") && rest.find('/', 5) == std::string::npos) {
      std::string name = lower(rest.substr(5));
      if (op == "read") {
        auto it = roles_.find(name);
        if (it == roles_.end()) throw StatusError(404, "");
        return BackendReply::ok(role_data(it->second));
      }
      if (write) return role_write(name, body);
      if (op == "delete") {
        roles_.erase(name);
        return {};
      }
      unsupported_op();
    }
    unsupported_path();
  }

  // path_login.go pathLogin with configured jwt_validation_pubkeys (StaticKeys), in its
  // order; every refusal is a logical.ErrorResponse, a 400.
  LoginAuth login(const json& body, const PeerCerts&, const SysView&) override {
    if (!config_) throw BadRequest("could not load configuration");
    std::string role_name = lower(body_string(body, "role"));
    if (role_name.empty()) role_name = config_->default_role;
    if (role_name.empty()) throw BadRequest("missing role");
    auto rit = roles_.find(role_name);
    if (rit == roles_.end()) throw BadRequest("role \"" + role_name + "\" could not be found");
    const JwtRole& role = rit->second;
    if (role.role_type == "oidc") throw BadRequest("role with oidc role_type is not allowed");
    std::string token = body_string(body, "jwt");
    if (token.empty()) throw BadRequest("missing token");

    ParsedJws jws;
    try {
      jws = parse_jws(token);
    } catch (const JwtError& e) {
      throw BadRequest(std::string("error parsing token: ") + e.what());
    }
    bool valid = false;
    for (auto& k : config_->keys) {
      if (verify_jws(jws, k)) {
        valid = true;
        break;
      }
    }
    if (!valid) throw BadRequest("no known key successfully validated the token signature");
    const json& claims = jws.claims;

    // Without exp or nbf the missing one is derived from the others with the role's
    // leeways (150 s when 0, none when negative).
    std::int64_t iat = numeric_date(claims, "iat"), exp = numeric_date(claims, "exp"), nbf = numeric_date(claims, "nbf");
    if (iat == 0 && exp == 0 && nbf == 0) throw BadRequest("no issue time, notbefore, or expiration time encoded in token");
    if (exp == 0) {
      std::int64_t latest_start = nbf > iat ? nbf : iat;
      std::int64_t leeway = role.expiration_leeway < 0 ? 0 : role.expiration_leeway == 0 ? kClaimDefaultLeeway : role.expiration_leeway;
      exp = latest_start + leeway;
    }
    if (nbf == 0) {
      if (iat != 0) {
        nbf = iat;
      } else {
        std::int64_t leeway = role.not_before_leeway < 0 ? 0 : role.not_before_leeway == 0 ? kClaimDefaultLeeway : role.not_before_leeway;
        nbf = exp - leeway;
      }
    }
    std::vector<std::string> aud = audience(claims);
    if (!aud.empty() && role.bound_audiences.empty()) {
      throw BadRequest("audience claim found in JWT but no audiences bound to the role");
    }
    std::int64_t cks = role.clock_skew_leeway < 0 ? 0 : role.clock_skew_leeway == 0 ? kJoseDefaultLeeway : role.clock_skew_leeway;
    validate_with_leeway(claims, config_->bound_issuer, role.bound_subject, nbf, exp, iat, cks);
    // claims.go validateAudience (strict).
    if (!role.bound_audiences.empty()) {
      bool match = false;
      for (auto& b : role.bound_audiences) {
        for (auto& a : aud) match = match || a == b;
      }
      if (!match) throw BadRequest("error validating claims: aud claim does not match any bound audience");
    }
    if (role.bound_claims.is_object()) validate_bound_claims(role.bound_claims, role.bound_claims_type == "glob", claims);

    // createIdentity: the user claim names the alias and the token's display name.
    const json* user = get_claim(claims, role.user_claim);
    if (!user) throw BadRequest("claim \"" + role.user_claim + "\" not found in token");
    if (!user->is_string()) throw BadRequest("claim \"" + role.user_claim + "\" could not be converted to string");
    LoginAuth a;
    a.display_name = user->get<std::string>();
    a.alias = a.display_name;
    a.metadata["role"] = role_name;
    if (role.claim_mappings.is_object()) {
      for (auto it = role.claim_mappings.begin(); it != role.claim_mappings.end(); ++it) {
        const json* v = get_claim(claims, it.key());
        if (!v) continue;
        if (!v->is_string()) throw BadRequest("error converting claim '" + it.key() + "' to string");
        if (it.value().is_string()) a.metadata[it.value().get<std::string>()] = v->get<std::string>();
      }
    }
    a.token = role.token;
    return a;
  }

 private:
  BackendReply config_read() const {
    if (!config_) throw StatusError(404, "");
    json d = json::object();
    d["bound_issuer"] = config_->bound_issuer;
    d["default_role"] = config_->default_role;
    d["jwks_ca_pem"] = "";
    d["jwks_url"] = "";
    d["jwt_supported_algs"] = string_array(config_->supported_algs);
    d["jwt_validation_pubkeys"] = string_array(config_->pubkeys_pem);
    d["namespace_in_state"] = true;
    d["oidc_client_id"] = "";
    d["oidc_discovery_ca_pem"] = "";
    d["oidc_discovery_url"] = "";
    d["oidc_response_mode"] = "";
    d["oidc_response_types"] = json::array();
    d["provider_config"] = json::object();
    return BackendReply::ok(d);
  }

  // path_config.go pathConfigWrite: exactly one way to get keys. vault-dev has no outbound
  // HTTP, so OIDC discovery and JWKS URLs are refused.
  BackendReply config_write(const json& body) {
    auto c = std::make_shared<JwtConfig>();
    c->pubkeys_pem = string_list(body_field(body, "jwt_validation_pubkeys"), false);
    c->bound_issuer = body_string(body, "bound_issuer");
    c->default_role = lower(body_string(body, "default_role"));
    c->supported_algs = string_list(body_field(body, "jwt_supported_algs"), true);
    int methods = (c->pubkeys_pem.empty() ? 0 : 1) + (body_string(body, "oidc_discovery_url").empty() ? 0 : 1) +
                  (body_string(body, "jwks_url").empty() ? 0 : 1);
    if (methods != 1) throw BadRequest("exactly one of 'jwt_validation_pubkeys', 'jwks_url' or 'oidc_discovery_url' must be set");
    if (c->pubkeys_pem.empty()) {
      throw BadRequest("vault-dev: only 'jwt_validation_pubkeys' is supported (no OIDC discovery or JWKS fetching)");
    }
    for (auto& pem : c->pubkeys_pem) {
      try {
        for (auto& k : parse_public_keys_pem(pem)) c->keys.push_back(k);
      } catch (const JwtError& e) {
        throw BadRequest(std::string("error parsing public key: ") + e.what());
      }
    }
    config_ = c;
    return {};
  }

  static json role_data(const JwtRole& r) {
    json d = json::object();
    d["allowed_redirect_uris"] = string_array(r.allowed_redirect_uris);
    d["bound_audiences"] = string_array(r.bound_audiences);
    d["bound_claims"] = r.bound_claims;
    d["bound_claims_type"] = r.bound_claims_type;
    d["bound_subject"] = r.bound_subject;
    d["claim_mappings"] = r.claim_mappings;
    d["clock_skew_leeway"] = r.clock_skew_leeway;
    d["expiration_leeway"] = r.expiration_leeway;
    d["groups_claim"] = r.groups_claim;
    d["max_age"] = 0;
    d["not_before_leeway"] = r.not_before_leeway;
    d["oidc_scopes"] = string_array(r.oidc_scopes);
    d["role_type"] = r.role_type;
    d["user_claim"] = r.user_claim;
    d["user_claim_json_pointer"] = false;
    d["verbose_oidc_logging"] = false;
    r.token.populate(d);
    populate_deprecated(d, r.token);
    return d;
  }

  // path_role.go pathRoleCreateUpdate, its checks in its order.
  BackendReply role_write(const std::string& name, const json& body) {
    JwtRole r;
    auto existing = roles_.find(name);
    if (existing != roles_.end()) r = existing->second;
    if (body_has(body, "role_type")) {
      std::string t = lower(body_string(body, "role_type"));
      if (t != "oidc" && t != "jwt") throw BadRequest("invalid 'role_type': " + t);
      r.role_type = t;
    }
    r.token.parse(body, kDeprecatedTokenFields);
    if (body_has(body, "clock_skew_leeway")) r.clock_skew_leeway = body_signed_duration(body, "clock_skew_leeway");
    if (body_has(body, "expiration_leeway")) r.expiration_leeway = body_signed_duration(body, "expiration_leeway");
    if (body_has(body, "not_before_leeway")) r.not_before_leeway = body_signed_duration(body, "not_before_leeway");
    if (body_has(body, "bound_audiences")) r.bound_audiences = string_list(body_field(body, "bound_audiences"), true);
    if (body_has(body, "bound_subject")) r.bound_subject = body_string(body, "bound_subject");
    if (body_has(body, "bound_claims_type")) {
      std::string t = body_string(body, "bound_claims_type");
      if (t != "string" && t != "glob") throw BadRequest("invalid 'bound_claims_type': " + t);
      r.bound_claims_type = t;
    }
    if (body_has(body, "bound_claims")) {
      const json& bc = body_field(body, "bound_claims");
      if (!bc.is_object()) throw BadRequest("error converting input for field \"bound_claims\": expected a map");
      if (r.bound_claims_type == "glob") {
        for (auto it = bc.begin(); it != bc.end(); ++it) {
          std::vector<json> vals;
          if (!normalize_list(it.value(), vals)) throw BadRequest("claim is not a string or list: " + it.value().dump());
          for (auto& v : vals) {
            if (!v.is_string()) throw BadRequest("claim is not a string: " + v.dump());
          }
        }
      }
      r.bound_claims = bc.empty() ? json(nullptr) : bc;
    }
    if (body_has(body, "claim_mappings")) r.claim_mappings = body_field(body, "claim_mappings");
    if (body_has(body, "user_claim")) r.user_claim = body_string(body, "user_claim");
    if (r.user_claim.empty()) throw BadRequest("a user claim must be defined on the role");
    if (body_has(body, "groups_claim")) r.groups_claim = body_string(body, "groups_claim");
    if (body_has(body, "oidc_scopes")) r.oidc_scopes = string_list(body_field(body, "oidc_scopes"), true);
    if (body_has(body, "allowed_redirect_uris")) {
      r.allowed_redirect_uris = string_list(body_field(body, "allowed_redirect_uris"), true);
    }
    if (r.role_type == "oidc" && r.allowed_redirect_uris.empty()) {
      throw BadRequest("'allowed_redirect_uris' must be set if 'role_type' is 'oidc' or unspecified.");
    }
    if (r.role_type != "oidc" && r.bound_audiences.empty() && r.token.bound_cidrs.empty() && r.bound_subject.empty() &&
        !r.bound_claims.is_object()) {
      throw BadRequest("must have at least one bound constraint when creating/updating a role");
    }
    roles_[name] = std::move(r);
    return {};
  }

  std::shared_ptr<JwtConfig> config_;
  std::map<std::string, JwtRole> roles_;
};

// ----------------------------------------------------------------- kubernetes
constexpr std::int64_t kCapDefaultLeeway = 150;  // hashicorp/cap jwt.go DefaultLeewaySeconds

struct K8sConfig {
  std::string host, ca_cert, issuer, token_reviewer_jwt;
  std::vector<std::string> pem_keys;
  std::vector<PublicKey> keys;
  bool disable_iss_validation = true, disable_local_ca_jwt = false;
};

struct K8sRole {
  std::vector<std::string> names, namespaces;
  std::string audience, alias_name_source = "serviceaccount_uid";
  TokenParams token;
};

// path_login.go serviceAccount and its name(), namespace(), uid(): the legacy
// secret-based claims at the top level, unless a projected token's "kubernetes.io"
// object (namespace, serviceaccount {name, uid}) is there, which wins.
struct ServiceAccount {
  std::string name, uid, ns, secret_name;
  explicit ServiceAccount(const json& c) {
    auto str = [&](const json& j, const char* k) {
      auto it = j.find(k);
      return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    name = str(c, "kubernetes.io/serviceaccount/service-account.name");
    uid = str(c, "kubernetes.io/serviceaccount/service-account.uid");
    ns = str(c, "kubernetes.io/serviceaccount/namespace");
    secret_name = str(c, "kubernetes.io/serviceaccount/secret.name");
    auto k8s = c.find("kubernetes.io");
    if (k8s != c.end() && k8s->is_object()) {
      ns = str(*k8s, "namespace");
      auto sa = k8s->find("serviceaccount");
      if (sa != k8s->end() && sa->is_object()) {
        name = str(*sa, "name");
        uid = str(*sa, "uid");
      }
    }
  }
};

class KubernetesAuth : public AuthBackend {
 public:
  bool exists(const std::string& rest) const override {
    if (rest == "config") return config_ != nullptr;
    if (starts_with(rest, "role/")) return roles_.count(rest.substr(5)) > 0;
    return true;
  }

  BackendReply handle(const std::string& op, const std::string& rest, const json& body, const SysView&) override {
    bool write = op == "create" || op == "update";
    if (rest == "config") {
      if (op == "read") return config_read();
      if (write) return config_write(body);
      unsupported_op();
    }
    if (rest == "role/") {
      if (op != "list") unsupported_op();
      return list_roles(roles_);
    }
    if (starts_with(rest, "role/") && rest.find('/', 5) == std::string::npos) {
      std::string name = rest.substr(5);
      if (op == "read") {
        auto it = roles_.find(name);
        if (it == roles_.end()) throw StatusError(404, "");
        return BackendReply::ok(role_data(it->second));
      }
      if (write) return role_write(name, body);
      if (op == "delete") {
        roles_.erase(name);
        return {};
      }
      unsupported_op();
    }
    unsupported_path();
  }

  // path_login.go pathLogin and parseAndValidateJWT. Real Vault then asks the
  // Kubernetes TokenReview API whether the token is still valid; vault-dev cannot, and
  // accepts a token whose signature one of the configured pem_keys verifies (the keys
  // real Vault also checks signatures with when they are set). A bad signature is
  // logical.ErrPermissionDenied, the other refusals logical.CodedError(403, ...); a
  // login's error reaches the client as it is (request_handling.go handleLoginRequest
  // returns the route's error unwrapped).
  LoginAuth login(const json& body, const PeerCerts&, const SysView&) override {
    std::string role_name = body_string(body, "role");
    if (role_name.empty()) throw BadRequest("missing role");
    std::string token = body_string(body, "jwt");
    if (token.empty()) throw BadRequest("missing jwt");
    auto rit = roles_.find(role_name);
    if (rit == roles_.end()) throw BadRequest("invalid role name \"" + role_name + "\"");
    const K8sRole& role = rit->second;
    if (!config_) throw StatusError(500, "could not load backend configuration");
    if (config_->keys.empty()) {
      throw StatusError(500,
                        "vault-dev: no pem_keys in the kubernetes config; vault-dev checks service account JWTs "
                        "against pem_keys and never calls the TokenReview API");
    }
    // hashicorp/cap jwt.go validateAll (ValidateAllowMissingIatNbfExp), in its order. A
    // token that cannot be parsed or whose signature no key verifies fails "error
    // verifying token signature: ...", which path_login.go turns into
    // logical.ErrPermissionDenied.
    ParsedJws jws;
    bool valid = false;
    try {
      jws = parse_jws(token);
      for (auto& k : config_->keys) valid = valid || verify_jws(jws, k);
    } catch (const JwtError&) {
      valid = false;
    }
    if (!valid) throw StatusError(403, "permission denied");
    const json& c = jws.claims;
    // Only a configured issuer is expected (with none, parseAndValidateJWT fills in
    // kubernetes/serviceaccount for the config but not for the check).
    if (!config_->disable_iss_validation && !config_->issuer.empty() && claim_string(c, "iss") != config_->issuer) {
      throw StatusError(403, "invalid issuer (iss) claim");
    }
    if (!role.audience.empty()) {
      bool match = false;
      for (auto& a : audience(c)) match = match || a == role.audience;
      if (!match) throw StatusError(403, "invalid audience (aud) claim: audience claim does not match any expected audience");
    }
    // Without iat, nbf and exp no time is checked; a missing exp or nbf is derived with
    // 150 s, and all three are checked with go-jose's minute of clock skew.
    std::int64_t iat = numeric_date(c, "iat"), exp = numeric_date(c, "exp"), nbf = numeric_date(c, "nbf");
    if (iat != 0 || exp != 0 || nbf != 0) {
      if (exp == 0) exp = (nbf > iat ? nbf : iat) + kCapDefaultLeeway;
      if (nbf == 0) nbf = iat != 0 ? iat : exp - kCapDefaultLeeway;
      std::int64_t now = unix_seconds(Clock::now());
      if (now + kJoseDefaultLeeway < nbf) throw StatusError(403, "invalid not before (nbf) claim: token not yet valid");
      if (now - kJoseDefaultLeeway > exp) throw StatusError(403, "invalid expiration time (exp) claim: token is expired");
      if (iat != 0 && now + kJoseDefaultLeeway < iat) {
        throw StatusError(403, "invalid issued at (iat) claim: token issued in the future");
      }
    }
    ServiceAccount sa(c);
    if (role.names.size() > 1 || role.names[0] != "*") {
      if (!list_contains_glob(role.names, sa.name)) throw StatusError(403, "service account name not authorized");
    }
    if (role.namespaces[0] != "*" && !list_contains_glob(role.namespaces, sa.ns)) {
      throw StatusError(403, "namespace not authorized");
    }
    if (sa.uid.empty()) throw StatusError(500, "could not parse UID from claims");
    LoginAuth a;
    a.display_name = sa.ns + "-" + sa.name;
    a.alias = role.alias_name_source == "serviceaccount_name" ? sa.ns + "/" + sa.name : sa.uid;
    a.metadata = {{"role", role_name},
                  {"service_account_name", sa.name},
                  {"service_account_namespace", sa.ns},
                  {"service_account_secret_name", sa.secret_name},
                  {"service_account_uid", sa.uid}};
    a.token = role.token;
    return a;
  }

 private:
  BackendReply config_read() const {
    if (!config_) throw StatusError(404, "");
    json d = json::object();
    d["disable_iss_validation"] = config_->disable_iss_validation;
    d["disable_local_ca_jwt"] = config_->disable_local_ca_jwt;
    d["issuer"] = config_->issuer;
    d["kubernetes_ca_cert"] = config_->ca_cert;
    d["kubernetes_host"] = config_->host;
    d["pem_keys"] = string_array(config_->pem_keys);
    d["token_reviewer_jwt_set"] = !config_->token_reviewer_jwt.empty();
    d["use_annotations_as_alias_metadata"] = false;
    return BackendReply::ok(d);
  }

  // path_config.go pathConfigWrite.
  BackendReply config_write(const json& body) {
    auto c = std::make_shared<K8sConfig>();
    if (config_) *c = *config_;
    if (body_has(body, "kubernetes_host")) c->host = body_string(body, "kubernetes_host");
    if (c->host.empty()) throw BadRequest("no host provided");
    if (body_has(body, "kubernetes_ca_cert")) c->ca_cert = body_string(body, "kubernetes_ca_cert");
    if (body_has(body, "issuer")) c->issuer = body_string(body, "issuer");
    if (body_has(body, "token_reviewer_jwt")) c->token_reviewer_jwt = body_string(body, "token_reviewer_jwt");
    if (body_has(body, "disable_iss_validation")) {
      c->disable_iss_validation = parse_bool_field(body_field(body, "disable_iss_validation"), "disable_iss_validation");
    }
    if (body_has(body, "disable_local_ca_jwt")) {
      c->disable_local_ca_jwt = parse_bool_field(body_field(body, "disable_local_ca_jwt"), "disable_local_ca_jwt");
    }
    if (body_has(body, "pem_keys")) {
      c->pem_keys = string_list(body_field(body, "pem_keys"), true);
      c->keys.clear();
      for (auto& pem : c->pem_keys) {
        try {
          for (auto& k : parse_public_keys_pem(pem)) c->keys.push_back(k);
        } catch (const JwtError& e) {
          throw BadRequest(e.what());
        }
      }
    }
    config_ = c;
    return {};
  }

  static json role_data(const K8sRole& r) {
    json d = json::object();
    d["alias_name_source"] = r.alias_name_source;
    d["audience"] = r.audience;
    d["bound_service_account_names"] = string_array(r.names);
    d["bound_service_account_namespace_selector"] = "";
    d["bound_service_account_namespaces"] = string_array(r.namespaces);
    r.token.populate(d);
    populate_deprecated(d, r.token);
    return d;
  }

  // path_role.go pathRoleCreateUpdate.
  BackendReply role_write(const std::string& name, const json& body) {
    K8sRole r;
    auto existing = roles_.find(name);
    if (existing != roles_.end()) r = existing->second;
    r.token.parse(body, kDeprecatedTokenFields);
    if (body_has(body, "bound_service_account_names")) {
      r.names = string_list(body_field(body, "bound_service_account_names"), true);
    }
    if (r.names.empty()) throw BadRequest("\"bound_service_account_names\" can not be empty");
    if (body_has(body, "bound_service_account_namespaces")) {
      r.namespaces = string_list(body_field(body, "bound_service_account_namespaces"), true);
    }
    if (r.namespaces.empty()) throw BadRequest("\"bound_service_account_namespaces\" can not be empty");
    auto mixes_star = [](const std::vector<std::string>& v) {
      return v.size() > 1 && std::find(v.begin(), v.end(), "*") != v.end();
    };
    if (mixes_star(r.names) || mixes_star(r.namespaces)) throw BadRequest("can not mix \"*\" with values");
    if (body_has(body, "audience")) r.audience = body_string(body, "audience");
    if (body_has(body, "alias_name_source")) {
      std::string s = body_string(body, "alias_name_source");
      if (s != "serviceaccount_uid" && s != "serviceaccount_name") {
        throw BadRequest("invalid alias_name_source \"" + s + "\"");
      }
      r.alias_name_source = s;
    }
    roles_[name] = std::move(r);
    return {};
  }

  std::shared_ptr<K8sConfig> config_;
  std::map<std::string, K8sRole> roles_;
};

}  // namespace

std::unique_ptr<AuthBackend> make_jwt_backend() { return std::make_unique<JwtAuth>(); }
std::unique_ptr<AuthBackend> make_kubernetes_backend() { return std::make_unique<KubernetesAuth>(); }

}  // namespace vd
