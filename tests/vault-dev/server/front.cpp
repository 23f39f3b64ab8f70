// vault-dev: see front.hpp. Each behaviour cites the Vault source it follows.
#include "front.hpp"

#include <nlohmann/json.hpp>

namespace vd {

using json = nlohmann::json;

std::optional<Response> standby_redirect(const FrontOptions& o, const Request& req) {
  if (o.standby_of.empty()) return std::nullopt;
  // http/handler.go Handler: sys/health and sys/seal-status are served by every node;
  // the rest goes through handleRequestForwarding, which on a standby that cannot
  // forward falls back to respondStandby.
  if (req.path == "sys/health" || req.path == "sys/seal-status") return std::nullopt;
  // respondStandby: Location = the leader's scheme and host, the request's path and
  // raw query; status 307 ("we don't actually know if its permanent and the request
  // method should be preserved"); no body.
  Response r;
  r.status = 307;
  std::string location = o.standby_of + "/v1/" + req.path;
  if (!req.raw_query.empty()) location += "?" + req.raw_query;
  r.headers.emplace_back("Location", location);
  return r;
}

void force_auto_auth(const FrontOptions& o, Request& req) {
  if (o.auto_auth_token.empty()) return;
  // command/agentproxyshared/cache/handler.go ProxyHandler: with forceAutoAuthToken the
  // X-Vault-Token header is deleted; a request without a token then gets the
  // auto-auth token (useAutoAuthToken).
  req.token = o.auto_auth_token;
}

void sanitize_auto_auth(const FrontOptions& o, const Request& req, Response& r) {
  if (o.auto_auth_token.empty() || r.status != 200 || req.token != o.auto_auth_token) return;
  // handler.go sanitizeAutoAuthTokenResponse: for lookup-self and renew-self made with
  // the auto-auth token, data.id and data.accessor (lookup) or auth.client_token and
  // auth.accessor (renew) are removed before the answer reaches the client.
  if (req.path != "auth/token/lookup-self" && req.path != "auth/token/renew-self") return;
  json j = json::parse(r.body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return;
  if (j.contains("data") && j["data"].is_object()) {
    j["data"].erase("id");
    j["data"].erase("accessor");
  } else if (j.contains("auth") && j["auth"].is_object()) {
    j["auth"]["client_token"] = "";
    j["auth"]["accessor"] = "";
  }
  r.body = j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace vd
