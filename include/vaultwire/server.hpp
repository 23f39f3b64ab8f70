// The proxy's main loop: listeners, sessions, shutdown on SIGINT / SIGTERM, reload
// on SIGHUP.
#pragma once

#include <functional>

#include "vaultwire/config.hpp"

namespace vaultwire {

// Runs vaultwire with a validated configuration until SIGINT or SIGTERM; then it
// stops accepting, ends every session (revoking their leases) and returns 0.
// Returns non-zero when it cannot start (a listener that cannot bind, a bad
// certificate), after logging why.
//
// SIGHUP calls `reload` (loads the file again) and applies what can change while
// running: listener certificates and keys, routes' CA files and client certificates,
// Vault's address, namespace and CA file, routes' roles, options and databases,
// limits, the log level; idle pooled upstream
// connections are closed. A bad file keeps the running configuration (logged); keys
// that need a restart are named in the log. Without `reload`, SIGHUP is logged and
// ignored.
using config_reloader = std::function<config_result()>;
int run_server(const config& cfg, config_reloader reload = {});

}  // namespace vaultwire
