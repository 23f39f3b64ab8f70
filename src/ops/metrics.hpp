// metrics: vaultwire's Prometheus metrics, behind a plain interface.
// Private header of src/: no prometheus-cpp and no Asio here; metrics.cpp is the
// only file that includes prometheus-cpp.
//
// One process-wide registry. Every function is thread-safe and never throws; callers
// count on any thread. Label values come from small fixed sets (session results,
// errc labels, normalised Vault endpoints, HTTP status codes): never a token, a
// password, a lease id or a user name.
//
// Two kinds of metric:
// - events counted where they happen (the functions below);
// - values other modules already keep (the broker's counters, the live client count,
//   upstream logins and reuses, the pool), read at scrape time from the functions
//   given to set_sources() and turned into metric families by a prometheus-cpp
//   Collectable. prometheus-cpp's TextSerializer writes the exposition of both.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "credentials/broker.hpp"

namespace vaultwire::metrics {

using seconds_d = std::chrono::duration<double>;

// A client connection ended (the session's log_end()): `result` is the session's
// result label ("ok", "client_gone", "vault_rejected_token", "role_not_allowed", ...).
// Counts vaultwire_client_connections_total{result}, observes the session duration,
// adds the bytes, and counts auth failures (results that mean "who you are or what
// you asked for was refused") in vaultwire_auth_failures_total{reason}.
void client_connection_closed(std::string_view result, seconds_d duration, std::uint64_t bytes_client_to_server,
                              std::uint64_t bytes_server_to_client);

// A CancelRequest connection: "forwarded" (the key was one vaultwire issued) or
// "unknown_key".
void cancel_request(std::string_view result);

// One upstream dial + TLS + login (not a reuse): "ok", "refused" (the server's
// ErrorResponse) or the errc label of the failure; and how long it took.
void upstream_connect(std::string_view result, seconds_d latency);

// One HTTP exchange with Vault (vault_client_options::observer): a normalised
// endpoint ("creds", "renew", "revoke", "lookup-self", "renew-self", "login",
// "health", "other"), the HTTP status ("200", "403", ...) or the transport failure ("timeout",
// "unreachable", "too_large"), and the time it took.
void vault_request(std::string_view endpoint, std::string_view code, seconds_d latency);

// A SIGHUP reload: applied, or refused (the running configuration stays).
void config_reload(bool ok);

// Counters of the upstream pool (upstream_pool::stats_t, copied to keep Asio out).
struct pool_counts {
  std::uint64_t checkins = 0;
  std::uint64_t discards = 0;
  std::uint64_t idle = 0;
};

// What is read at scrape time. Each function is called with the sources' lock held
// (so clear_sources() waits for a scrape in progress); an empty function leaves its
// metrics out.
struct sources {
  std::function<std::uint64_t()> active_clients;
  std::function<broker_stats()> broker;
  std::function<std::uint64_t()> upstream_logins;
  std::function<std::uint64_t()> upstream_reuses;
  std::function<pool_counts()> pool;
};

void set_sources(sources s);
// After it returns no source function is running or will run.
void clear_sources();

// Every metric in the Prometheus text exposition format (version 0.0.4).
[[nodiscard]] std::string scrape();

// The Content-Type of scrape()'s output.
inline constexpr std::string_view content_type = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace vaultwire::metrics
