// The proxy's main loop: listeners, sessions, shutdown on SIGINT / SIGTERM.
#pragma once

#include "vaultwire/config.hpp"

namespace vaultwire {

// Runs vaultwire with a validated configuration until SIGINT or SIGTERM; then it
// stops accepting, ends every session (revoking their leases) and returns 0.
// Returns non-zero when it cannot start (a listener that cannot bind, a bad
// certificate), after logging why.
int run_server(const config& cfg);

}  // namespace vaultwire
