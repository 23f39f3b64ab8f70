// vault-dev: what happens in front of the Vault state machine, as Vault's HTTP layer
// and Vault Proxy do it: a standby's redirect to the active node, and Vault Proxy's
// use_auto_auth_token = "force". No Asio here: http_server.cpp calls in.
#pragma once

#include <optional>
#include <string>

#include "vault.hpp"

namespace vd {

struct FrontOptions {
  // --standby-of URL: this node is a standby whose active node advertises URL (its
  // api_addr); every /v1 request but sys/health and sys/seal-status is redirected.
  std::string standby_of;
  // --auto-auth-force TOKEN: Vault Proxy with use_auto_auth_token = "force" whose
  // auto-auth token is TOKEN.
  std::string auto_auth_token;
};

// A standby's answer to `req`, or nullopt when the request is served here.
std::optional<Response> standby_redirect(const FrontOptions& o, const Request& req);

// Vault Proxy, before forwarding: the client's token is replaced by the auto-auth token.
void force_auto_auth(const FrontOptions& o, Request& req);
// Vault Proxy, after: a 200 lookup-self or renew-self made with the auto-auth token
// loses the token's id and accessor.
void sanitize_auto_auth(const FrontOptions& o, const Request& req, Response& r);

}  // namespace vd
