#include "core/outcome.hpp"

namespace vaultwire {

std::string_view label(session_outcome o) noexcept {
  using enum session_outcome;
  switch (o) {
    case ok: return "ok";
    case client_gone: return "client_gone";
    case client_terminated: return "client_terminated";
    case client_tls_failed: return "client_tls_failed";
    case unencrypted_data_after_ssl_request: return "unencrypted_data_after_ssl_request";
    case cancel: return "cancel";
    case cancel_unknown_key: return "cancel_unknown_key";
    case cancel_malformed: return "cancel_malformed";
    case vault_rejected_token: return label_for(errc::vault_rejected_token);
    case vault_denied_role: return label_for(errc::vault_denied_role);
    case password_rejected: return label_for(errc::password_rejected);
    case role_not_allowed: return label_for(errc::role_not_allowed);
    case vault_unavailable: return label_for(errc::vault_unavailable);
    case upstream_unreachable: return label_for(errc::upstream_unreachable);
    case upstream_tls_failed: return label_for(errc::upstream_tls_failed);
    case upstream_auth_unsupported: return label_for(errc::upstream_auth_unsupported);
    case upstream_protocol: return label_for(errc::upstream_protocol);
    case too_many_clients: return label_for(errc::too_many_clients);
    case throttled: return label_for(errc::throttled);
    case protocol_violation: return label_for(errc::protocol_violation);
    case unsupported_protocol: return label_for(errc::unsupported_protocol);
    case startup_timeout: return label_for(errc::startup_timeout);
    case session_ended: return label_for(errc::session_ended);
    case client_idle_timeout: return label_for(errc::client_idle_timeout);
    case tls_error: return label_for(errc::tls_error);
    case lease_budget: return "lease_budget";
    case shutdown: return "shutdown";
    case upstream_refused: return "upstream_refused";
    case server_protocol_violation: return "server_protocol_violation";
    case client_protocol_violation: return "client_protocol_violation";
    case ended_now: return "ended_now";
    case ended_at_idle: return "ended_at_idle";
    case max_session_lifetime: return "max_session_lifetime";
    case revoke_grace: return "revoke_grace";
  }
  return "unknown";
}

session_outcome outcome_for(errc code) noexcept {
  using enum session_outcome;
  switch (code) {
    case errc::vault_rejected_token: return vault_rejected_token;
    case errc::vault_denied_role: return vault_denied_role;
    case errc::password_rejected: return password_rejected;
    case errc::role_not_allowed: return role_not_allowed;
    case errc::vault_unavailable: return vault_unavailable;
    case errc::upstream_unreachable: return upstream_unreachable;
    case errc::upstream_tls_failed: return upstream_tls_failed;
    case errc::upstream_auth_unsupported: return upstream_auth_unsupported;
    case errc::upstream_protocol: return upstream_protocol;
    case errc::too_many_clients: return too_many_clients;
    case errc::throttled: return throttled;
    case errc::protocol_violation: return protocol_violation;
    case errc::unsupported_protocol: return unsupported_protocol;
    case errc::startup_timeout: return startup_timeout;
    case errc::session_ended: return session_ended;
    case errc::client_idle_timeout: return client_idle_timeout;
    case errc::tls_error:
    case errc::setup_failed: return tls_error;  // a session never meets setup_failed
  }
  return protocol_violation;
}

}  // namespace vaultwire
