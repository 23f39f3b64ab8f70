// SQLSTATE codes vaultwire puts in its own ErrorResponses ('C' field).
// https://www.postgresql.org/docs/current/errcodes-appendix.html
#pragma once

#include <string_view>

namespace pgwire::sqlstate {

// Class 08: connection exception.
inline constexpr std::string_view sqlclient_unable_to_establish_sqlconnection = "08001";
inline constexpr std::string_view sqlserver_rejected_establishment_of_sqlconnection = "08004";
inline constexpr std::string_view connection_failure = "08006";
inline constexpr std::string_view protocol_violation = "08P01";
// Class 0A: feature not supported.
inline constexpr std::string_view feature_not_supported = "0A000";
// Class 28: invalid authorization specification.
inline constexpr std::string_view invalid_authorization_specification = "28000";
inline constexpr std::string_view invalid_password = "28P01";
// Class 42: insufficient privilege.
inline constexpr std::string_view insufficient_privilege = "42501";
// Class 53: insufficient resources.
inline constexpr std::string_view too_many_connections = "53300";
// Class 57: operator intervention.
inline constexpr std::string_view query_canceled = "57014";
inline constexpr std::string_view admin_shutdown = "57P01";
inline constexpr std::string_view idle_session_timeout = "57P05";
// Class XX: internal error.
inline constexpr std::string_view internal_error = "XX000";

}  // namespace pgwire::sqlstate
