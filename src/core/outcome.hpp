// How a client connection ended: one value per way, each with the label that the
// session's closing log line, the audit log's `result` and the metric
// vaultwire_client_connections_closed_total{result} carry (CockroachDB's sqlproxy
// keeps the same single list, errorCode, in pkg/ccl/sqlproxyccl/error.go).
#pragma once

#include <string_view>

#include "vaultwire/errc.hpp"

namespace vaultwire {

enum class session_outcome {
  ok,                                  // the client or the server ended a spliced session
  client_gone,                         // the client closed before the session was spliced
  client_terminated,                   // Terminate instead of a token
  client_tls_failed,                   // the client's TLS handshake failed
  unencrypted_data_after_ssl_request,  // bytes between SSLRequest and the handshake
  cancel,                              // a CancelRequest forwarded (not a session: no log line)
  cancel_unknown_key,                  // a CancelRequest for no live key (not a session either)
  cancel_malformed,                    // a CancelRequest of the wrong length
  // Refusals with a vaultwire::errc (outcome_for() maps them).
  vault_rejected_token,
  vault_denied_role,
  password_rejected,
  role_not_allowed,
  vault_unavailable,
  upstream_unreachable,
  upstream_tls_failed,
  upstream_auth_unsupported,
  upstream_protocol,
  too_many_clients,
  throttled,
  protocol_violation,
  unsupported_protocol,
  startup_timeout,
  session_ended,
  client_idle_timeout,
  tls_error,
  // The broker's refusals that have no errc of their own.
  lease_budget,  // [credentials] max_leases
  shutdown,      // vaultwire is shutting down
  upstream_refused,           // the server refused the login: its ErrorResponse was passed on
  server_protocol_violation,  // the splice found a broken frame from the server
  client_protocol_violation,  // ... from the client
  ended_now,                  // ended by vaultwire at once (kill-switch, expiry, admin)
  ended_at_idle,              // ended by vaultwire at the next idle point
  max_session_lifetime,       // [limits] max_session_lifetime
  revoke_grace,               // token revoked or lease gone, and not idle within [credentials] revoke_grace
};

// The snake_case label ("vault_rejected_token", ...): stable, operators match on it.
[[nodiscard]] std::string_view label(session_outcome o) noexcept;
// The outcome of a refusal with `code`.
[[nodiscard]] session_outcome outcome_for(errc code) noexcept;
// CancelRequest connections: counted on their own, not logged as sessions.
[[nodiscard]] constexpr bool is_cancel(session_outcome o) noexcept {
  return o == session_outcome::cancel || o == session_outcome::cancel_unknown_key;
}

}  // namespace vaultwire
