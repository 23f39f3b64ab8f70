// startup_rules: the one rule for the startup parameters a client sends through any
// route: a client cannot change how vaultwire authenticates upstream, nor pick
// another cluster than its route's. Pure (no Asio, no I/O).
//
// Refused (08P01, the message names the parameter):
// - a startup parameter named `crdb:...` (CockroachDB reads these before
//   authentication and some switch its method: pkg/sql/pgwire/pre_serve_options.go),
//   or named `role` / `session_authorization` (PostgreSQL applies startup parameters
//   as settings at login);
// - inside `options`, in `-c key=value`, `-ckey=value` or `--key=value` form (the
//   forms PostgreSQL's pg_split_opts and CockroachDB's sqlproxy read), the keys
//   `role`, `session_authorization` and any `crdb:` key (`crdb:jwt_auth_enabled`).
//
// Clusters: a route fixes one with `--cluster=NAME` / `-ccluster=NAME` in its
// options, a database_prefix `NAME.`, or a server name whose first label is a
// CockroachDB Serverless cluster identifier (`<name>-<tenant id>`, SNI routing). The
// client's own cluster, in options or in its database (`NAME.db` or
// `cluster:NAME/db`, as pkg/ccl/sqlproxyccl/proxy_handler.go reads them), is then
// refused when it names another cluster and dropped when it names the same one, so
// exactly one reaches the server. A route that fixes none leaves it alone. More than
// one cluster flag in the client's options is refused either way (the Serverless
// proxy's "multiple cluster flags provided").
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vaultwire/config.hpp"

namespace vaultwire::detail {

// The cluster a route fixes, or "" when it fixes none.
[[nodiscard]] std::string route_cluster(const route_config& route);

// Applies the rule to the client's parameters (all but user and database) and its
// database, rewriting them where a same-cluster flag or prefix is dropped. nullopt:
// accepted; otherwise the message for the client's 08P01.
[[nodiscard]] std::optional<std::string> apply_startup_rules(const route_config& route,
                                                             std::vector<std::pair<std::string, std::string>>& params,
                                                             std::string& database);

// PostgreSQL's `options` split into arguments (whitespace separates, a backslash
// takes the next character literally) and joined back with those escapes.
[[nodiscard]] std::vector<std::string> split_options(std::string_view options);
[[nodiscard]] std::string join_options(const std::vector<std::string>& args);

}  // namespace vaultwire::detail
