#include "vaultwire/errc.hpp"

#include <pgwire/sqlstate.hpp>

#include <string>

namespace vaultwire {
namespace {

class category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "vaultwire"; }
  std::string message(int value) const override { return std::string(label_for(static_cast<errc>(value))); }
};

}  // namespace

const std::error_category& error_category() noexcept {
  static const category instance;
  return instance;
}

std::string_view sqlstate_for(errc e) noexcept {
  namespace s = pgwire::sqlstate;
  switch (e) {
    case errc::vault_rejected_token:
    case errc::password_rejected: return s::invalid_password;
    case errc::role_not_allowed:
    case errc::vault_denied_role: return s::invalid_authorization_specification;
    case errc::vault_unavailable:
    case errc::upstream_unreachable:
    case errc::upstream_tls_failed:
    case errc::upstream_auth_unsupported:
    case errc::upstream_protocol: return s::sqlclient_unable_to_establish_sqlconnection;
    case errc::too_many_clients: return s::too_many_connections;
    case errc::throttled: return s::sqlserver_rejected_establishment_of_sqlconnection;
    case errc::protocol_violation:
    case errc::unsupported_protocol:
    case errc::startup_timeout: return s::protocol_violation;
    case errc::session_ended: return s::admin_shutdown;
    case errc::client_idle_timeout: return s::idle_session_timeout;
    case errc::tls_error: return s::connection_failure;
    case errc::setup_failed: return s::internal_error;
  }
  return s::internal_error;
}

std::string_view label_for(errc e) noexcept {
  switch (e) {
    case errc::vault_rejected_token: return "vault_rejected_token";
    case errc::role_not_allowed: return "role_not_allowed";
    case errc::vault_unavailable: return "vault_unavailable";
    case errc::upstream_unreachable: return "upstream_unreachable";
    case errc::upstream_tls_failed: return "upstream_tls_failed";
    case errc::upstream_auth_unsupported: return "upstream_auth_unsupported";
    case errc::upstream_protocol: return "upstream_protocol";
    case errc::too_many_clients: return "too_many_clients";
    case errc::throttled: return "throttled";
    case errc::protocol_violation: return "protocol_violation";
    case errc::unsupported_protocol: return "unsupported_protocol";
    case errc::startup_timeout: return "startup_timeout";
    case errc::session_ended: return "session_ended";
    case errc::client_idle_timeout: return "client_idle_timeout";
    case errc::tls_error: return "tls_error";
    case errc::setup_failed: return "setup_failed";
    case errc::vault_denied_role: return "vault_denied_role";
    case errc::password_rejected: return "password_rejected";
  }
  return "unknown";
}

}  // namespace vaultwire
