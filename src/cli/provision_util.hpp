// Helpers shared by provision's files: Vault paths and request bodies, JSON and TOML
// quoting, secrets read from and written to files.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/text.hpp"
#include "pgwire/secret.hpp"
#include "vault/vault_client.hpp"
#include "vaultwire/provision.hpp"

namespace vaultwire::provision_util {

using json = nlohmann::json;

inline const std::string plugin_name = "postgresql-database-plugin";
// Tokens are minted as orphans: children of the administrator's token would be revoked
// with it, and their leases with them (vault/token_store.go revokes a token's whole
// tree). This path needs no root or sudo, only `update` on it
// (website/content/api-docs/auth/token.mdx).
inline constexpr std::string_view token_create_path = "auth/token/create-orphan";

std::string env_or_empty(const char* name);
void wipe(std::string& s) noexcept;
using detail::append_json_string;
std::string toml_string(std::string_view s);
std::string hcl_string(std::string_view s);
bool valid_name(std::string_view s);
// The value of an optional JSON string member, or "".
std::string str_member(const json& j, const char* key);
std::vector<std::string> str_list(const json& j);
// A GET answer's "data" (or the object itself for answers without one).
json data_of(std::string_view body);
using detail::join;
// "127.0.0.1:26257" / "[::1]:26257" -> (host as written in a URL, port).
std::pair<std::string, std::string> split_host_port(std::string_view listen);
std::string describe(const vault_error& e);
// Reads the whole file ("-" = stdin) into a secret; one trailing "\n" / "\r\n" is
// dropped. Error text on failure (never the content).
std::string read_secret(const std::string& path, pgwire::secret_string& out);
// Writes `secret` + "\n" to path with mode 0600 (a temporary file in the same
// directory, renamed over path). Error text on failure.
std::string write_secret_file(const std::string& path, const pgwire::secret_string& secret);
std::string vault_token_from_env();
json role_body(const provision_options& o);
json token_body(const std::string& policy, const std::string& ttl, const char* display_name);
std::string mount_path(const provision_options& o);
std::string config_path(const provision_options& o);
std::string role_path(const provision_options& o);
std::string policy_path(const std::string& name);
// Fills the defaults that depend on other options.
void complete(provision_options& o);

}  // namespace vaultwire::provision_util
