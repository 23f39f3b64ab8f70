// reload: SIGHUP, in two steps so that a new Vault can be checked in between (it
// must not replace client tokens: vault_guard). prepare_reload loads the file and
// builds every new TLS context without changing anything; apply_reload swaps them in
// all at once; refuse_reload keeps the running configuration. Private header of src/
// (includes Asio through proxy.hpp); used by server.cpp, on the control context.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/proxy.hpp"
#include "vaultwire/server.hpp"

namespace vaultwire::detail {

// The TLS context towards a route's cluster: its CA (or the system store), its
// client certificate.
[[nodiscard]] result<ssl_ctx> make_route_tls(const route_config& route);

void set_log_level(log_level level);

// A configuration loaded for SIGHUP, every new TLS context built, nothing applied.
struct prepared_reload {
  std::shared_ptr<const config> next;
  std::vector<ssl_ctx> listener_tls;  // one per listener; empty where plaintext
  std::vector<std::shared_ptr<const local_users>> listener_users;  // one per listener; null unless "password"
  std::map<std::string, ssl_ctx> route_tls;
  std::vector<std::string> restart;  // keys whose change needs a restart
  // Vault's address, namespace or TLS settings differ from the running ones: the new
  // Vault is checked before the reload is applied.
  bool vault_changed = false;
};

// Nullopt (logged and counted as a failed reload) when the file is bad, listeners or
// routes were added or removed, or a certificate, key or CA file does not load.
[[nodiscard]] std::optional<prepared_reload> prepare_reload(
    const proxy_state& state, const std::vector<std::unique_ptr<listener_runtime>>& listeners,
    const config_reloader& load);

// Applies it: the TLS contexts, Vault's address and TLS settings, the configuration
// sessions read, the log level; idle pooled connections are closed. `check` is how the
// new Vault answered the token-substitution check, when it was made.
void apply_reload(proxy_state& state, const std::vector<std::unique_ptr<listener_runtime>>& listeners,
                  prepared_reload prepared, const token_substitution_check* check);

// Keeps the running configuration: logs `why` and counts a failed reload.
void reload_failed(const std::string& why);

// Keeps the running configuration: logs `cause`, counts a failed reload, and /readyz
// answers 503 with it until a reload is applied.
void refuse_reload(proxy_state& state, const std::string& cause);

}  // namespace vaultwire::detail
