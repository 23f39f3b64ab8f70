// vaultwire's error codes. Each maps to the SQLSTATE a client sees (DESIGN.md
// "Errors a client sees") and to a short label for logs and metrics.
#pragma once

#include <string_view>
#include <system_error>

namespace vaultwire {

enum class errc {
  vault_rejected_token = 1,  // 28P01: no password, or Vault rejected the token (403 bad token, 400)
  role_not_allowed,          // 28000: user names a role the route does not allow
  vault_unavailable,         // 08001: unreachable, timeout, sealed, 429, 5xx
  upstream_unreachable,      // 08001: resolve / connect failed or timed out
  upstream_tls_failed,       // 08001: no TLS, handshake or verification failure
  upstream_auth_unsupported, // 08001: the server asked for a method we do not speak
  upstream_protocol,         // 08001: the server broke the protocol during login
  too_many_clients,          // 53300
  throttled,                 // 08004
  protocol_violation,        // 08P01: malformed / oversized packet, bad sequence
  unsupported_protocol,      // 08P01: protocol 2, unknown request code
  startup_timeout,           // 08P01
  session_ended,             // 57P01: token revoked, lease gone, shutdown
  client_idle_timeout,       // 57P05: no bytes either way for [limits] client_idle_timeout
  tls_error,                 // a TLS record layer failure on an established stream
  setup_failed,              // a listener, certificate, key or CA file that cannot be set up (startup, reload; no client sees it)
  vault_denied_role,         // 28000: the token is valid but Vault's policy for it denies the role (ACL, 403)
  password_rejected,         // 28P01: a local user's SCRAM exchange failed (wrong password, unknown user)
};

[[nodiscard]] const std::error_category& error_category() noexcept;

[[nodiscard]] inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), error_category()};
}

// The SQLSTATE for a refusal with this code ("XX000" for codes that never reach a client).
[[nodiscard]] std::string_view sqlstate_for(errc e) noexcept;
// A short snake_case label for logs and metrics ("vault_rejected_token", ...).
[[nodiscard]] std::string_view label_for(errc e) noexcept;

}  // namespace vaultwire

template <>
struct std::is_error_code_enum<vaultwire::errc> : std::true_type {};
