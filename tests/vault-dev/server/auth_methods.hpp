// vault-dev: the auth methods behind sys/auth (approle, jwt, kubernetes, cert). Each
// backend keeps its configuration and roles and checks logins; making the token from a
// login is the token store's job (vault.cpp). No Asio here, no locking: vault.cpp calls
// in under its state lock.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "util.hpp"

namespace vd {

// sdk/helper/tokenutil TokenParams: the token_* fields every auth method's roles carry.
struct TokenParams {
  std::vector<std::string> policies;
  std::vector<std::string> bound_cidrs;
  std::int64_t ttl = 0, max_ttl = 0, explicit_max_ttl = 0, period = 0;
  std::int64_t num_uses = 0;
  bool no_default_policy = false;
  std::string type = "default";  // logical.TokenType.String(): default | service | batch

  // ParseTokenFields over the fields present in `body`, then the checks it makes on the
  // result. `deprecated` maps an old field name to its token_* field (tokenutil
  // UpgradeValue: the old one counts only when the new one is absent). Throws BadRequest.
  void parse(const json& body, const std::map<std::string, std::string>& deprecated);
  // PopulateTokenData.
  void populate(json& data) const;
};

// The mount's system view: its tuned TTLs or the system's (768h).
struct SysView {
  std::int64_t default_ttl = 2764800, max_ttl = 2764800;
};

// The TLS client certificate chain of the connection a request came on (leaf first, DER).
struct PeerCerts {
  bool tls = false;
  std::vector<std::string> der;
};

// What a backend's login returns (logical.Auth): the token store adds the mount's
// name to display_name and makes the token.
struct LoginAuth {
  std::string display_name;
  std::map<std::string, std::string> metadata;
  std::string alias;  // the entity alias name
  TokenParams token;
};

// A backend's answer: status 200 with data (and warnings), 204 without.
struct BackendReply {
  int status = 204;
  json data = nullptr;
  std::vector<std::string> warnings;
  static BackendReply ok(json d) {
    BackendReply r;
    r.status = 200;
    r.data = std::move(d);
    return r;
  }
};

class AuthBackend {
 public:
  virtual ~AuthBackend() = default;
  // A request to auth/<mount>/<rest> other than a login; op is read, list, create,
  // update or delete (LIST paths end in '/'). Throws BadRequest / StatusError.
  virtual BackendReply handle(const std::string& op, const std::string& rest, const json& body,
                              const SysView& sys) = 0;
  // The existence check that makes a write "create" or "update" for the ACL.
  virtual bool exists(const std::string& rest) const = 0;
  // The path's unauthenticated login endpoint (PathsSpecial.Unauthenticated).
  virtual bool is_login(const std::string& rest) const { return rest == "login"; }
  virtual LoginAuth login(const json& body, const PeerCerts& peer, const SysView& sys) = 0;
};

// nullptr for a type vault-dev does not have.
std::unique_ptr<AuthBackend> make_auth_backend(const std::string& type);

std::unique_ptr<AuthBackend> make_approle_backend();
std::unique_ptr<AuthBackend> make_jwt_backend();
std::unique_ptr<AuthBackend> make_kubernetes_backend();
std::unique_ptr<AuthBackend> make_cert_backend();

// Helpers shared by the backends.
const json& body_field(const json& body, const char* name);
bool body_has(const json& body, const char* name);
std::string body_string(const json& body, const char* name);
std::int64_t body_int(const json& body, const char* name, std::int64_t def);
// framework.TypeDurationSecond that may be negative (the jwt leeways take -1).
std::int64_t body_signed_duration(const json& body, const char* name);
json string_array(const std::vector<std::string>& v);
// A LIST of a backend's roles: {"keys": [...]} in name order, or the bare 404 Vault
// answers a LIST that finds nothing (logical.ListResponse with no keys).
template <class Roles>
BackendReply list_roles(const Roles& roles) {
  std::vector<std::string> keys;
  for (const auto& [name, role] : roles) keys.push_back(name);
  if (keys.empty()) throw StatusError(404, "");
  return BackendReply::ok(json{{"keys", string_array(keys)}});
}
// strutil.StrListContainsGlob.
bool list_contains_glob(const std::vector<std::string>& patterns, const std::string& s);

}  // namespace vd
