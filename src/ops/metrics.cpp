// The only file that includes prometheus-cpp. See metrics.hpp.
#include "ops/metrics.hpp"

#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <spdlog/spdlog.h>

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "vaultwire/version.hpp"

namespace vaultwire::metrics {

namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

// Results of a client connection that are authentication or authorisation refusals.
constexpr std::array<std::string_view, 6> auth_failure_results{
    "vault_rejected_token", "vault_denied_role", "password_rejected", "role_not_allowed", "throttled",
    "token_unverified"};

Histogram::BucketBoundaries latency_buckets() {
  return {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

Histogram::BucketBoundaries session_buckets() {
  return {0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400};
}

// The values other modules keep, as metric families at scrape time.
class source_collector final : public prometheus::Collectable {
 public:
  void set(sources s) {
    std::lock_guard lock(mutex_);
    sources_ = std::move(s);
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    std::lock_guard lock(mutex_);
    if (sources_.active_clients) {
      out.push_back(gauge("vaultwire_client_connections_active",
                          "Client connections open now (admission, credential, upstream login or spliced)",
                          static_cast<double>(sources_.active_clients())));
    }
    if (sources_.upstream_logins || sources_.upstream_reuses) {
      auto f = family("vaultwire_upstream_connections_total",
                      "Upstream connections a session used, by kind: new (dial and login) or reused (from the pool)",
                      prometheus::MetricType::Counter);
      if (sources_.upstream_logins) add_counter(f, {{"kind", "new"}}, sources_.upstream_logins());
      if (sources_.upstream_reuses) add_counter(f, {{"kind", "reused"}}, sources_.upstream_reuses());
      out.push_back(std::move(f));
    }
    if (sources_.pool) {
      const pool_counts p = sources_.pool();
      out.push_back(counter("vaultwire_upstream_pool_checkins_total",
                            "Upstream connections kept by the pool for reuse", p.checkins));
      out.push_back(counter("vaultwire_upstream_pool_discards_total",
                            "Upstream connections the pool closed (idle timeout, lease end, server hang-up, ...)",
                            p.discards));
      out.push_back(gauge("vaultwire_upstream_pool_idle", "Idle upstream connections kept by the pool now",
                          static_cast<double>(p.idle)));
    }
    if (sources_.broker) broker_families(sources_.broker(), out);
    return out;
  }

 private:
  using labels = std::vector<prometheus::ClientMetric::Label>;

  static prometheus::MetricFamily family(std::string name, std::string help, prometheus::MetricType type) {
    prometheus::MetricFamily f;
    f.name = std::move(name);
    f.help = std::move(help);
    f.type = type;
    return f;
  }
  static void add_counter(prometheus::MetricFamily& f, labels l, std::uint64_t v) {
    prometheus::ClientMetric m;
    m.label = std::move(l);
    m.counter.value = static_cast<double>(v);
    f.metric.push_back(std::move(m));
  }
  static void add_gauge(prometheus::MetricFamily& f, labels l, double v) {
    prometheus::ClientMetric m;
    m.label = std::move(l);
    m.gauge.value = v;
    f.metric.push_back(std::move(m));
  }
  static prometheus::MetricFamily counter(std::string name, std::string help, std::uint64_t v) {
    auto f = family(std::move(name), std::move(help), prometheus::MetricType::Counter);
    add_counter(f, {}, v);
    return f;
  }
  static prometheus::MetricFamily gauge(std::string name, std::string help, double v) {
    auto f = family(std::move(name), std::move(help), prometheus::MetricType::Gauge);
    add_gauge(f, {}, v);
    return f;
  }

  // Renewals and revocations by result.
  static void lease_families(const broker_stats& b, std::vector<prometheus::MetricFamily>& out) {
    {
      auto f = family("vaultwire_lease_renewals_total",
                      "Lease renewals by result: ok, retried (a failure that may pass: tried again with backoff "
                      "while the TTL lasts), gone (Vault no longer has the lease: its sessions ended), final (it "
                      "cannot be extended: it runs to its TTL), denied (403: it runs to its TTL)",
                      prometheus::MetricType::Counter);
      add_counter(f, {{"result", "ok"}}, b.renewals);
      add_counter(f, {{"result", "retried"}}, b.renewal_retries);
      add_counter(f, {{"result", "gone"}}, b.renewals_gone);
      add_counter(f, {{"result", "final"}}, b.renewals_final);
      add_counter(f, {{"result", "denied"}}, b.renewal_denied);
      out.push_back(std::move(f));
    }
    {
      auto f = family("vaultwire_lease_revocations_total",
                      "Lease revocations by result: ok, denied (403: left to its TTL), gone (Vault no longer had "
                      "it), failed (retried later)",
                      prometheus::MetricType::Counter);
      add_counter(f, {{"result", "ok"}}, b.revokes);
      add_counter(f, {{"result", "denied"}}, b.revoke_denied);
      add_counter(f, {{"result", "gone"}}, b.revoke_gone);
      add_counter(f, {{"result", "failed"}}, b.revoke_failures);
      out.push_back(std::move(f));
    }
  }

  static void broker_families(const broker_stats& b, std::vector<prometheus::MetricFamily>& out) {
    out.push_back(gauge("vaultwire_leases_active", "Vault leases vaultwire holds now (they count against max_leases)",
                        static_cast<double>(b.live_leases)));
    out.push_back(gauge("vaultwire_leases_cached", "Leases servable to new sessions now",
                        static_cast<double>(b.cached_leases)));
    out.push_back(gauge("vaultwire_lease_sessions", "Sessions (and pooled upstream connections) holding a lease now",
                        static_cast<double>(b.sessions)));
    {
      auto f = family("vaultwire_credential_requests_total",
                      "Credential requests by how the cache answered: hit (cached credential), miss (a Vault "
                      "request), shared (joined a request in flight), negative (token rejected moments ago), "
                      "role_denied (Vault's policy denied this token the role moments ago), budget_refused "
                      "(max_leases), fast_failed (Vault outage: circuit breaker open), quota_held (the role's "
                      "Retry-After after a 429 lasts)",
                      prometheus::MetricType::Counter);
      add_counter(f, {{"result", "hit"}}, b.cache_hits);
      add_counter(f, {{"result", "miss"}}, b.vault_fetches);
      add_counter(f, {{"result", "shared"}}, b.single_flight_joins);
      add_counter(f, {{"result", "negative"}}, b.negative_cache_hits);
      add_counter(f, {{"result", "budget_refused"}}, b.budget_refusals);
      add_counter(f, {{"result", "fast_failed"}}, b.fast_failures);
      add_counter(f, {{"result", "role_denied"}}, b.role_negative_hits);
      add_counter(f, {{"result", "quota_held"}}, b.quota_holds);
      out.push_back(std::move(f));
    }
    out.push_back(counter("vaultwire_credential_stale_hits_total",
                          "Cache hits served while their token's recheck was pending or failing (within token_grace)",
                          b.stale_hits));
    lease_families(b, out);
    {
      auto f = family("vaultwire_token_rechecks_total",
                      "Token rechecks (auth/token/lookup-self) by result: sent, revoked (Vault answered 403), "
                      "in_grace (Vault unreachable; the last good check was trusted)",
                      prometheus::MetricType::Counter);
      add_counter(f, {{"result", "sent"}}, b.token_rechecks);
      add_counter(f, {{"result", "revoked"}}, b.tokens_revoked);
      add_counter(f, {{"result", "in_grace"}}, b.rechecks_in_grace);
      out.push_back(std::move(f));
    }
    {
      auto f = family("vaultwire_own_token_renewals_total",
                      "Renewals (renew-self) of vaultwire's own Vault token ([vault] token_file or a [vault.auth] "
                      "login's) by result",
                      prometheus::MetricType::Counter);
      add_counter(f, {{"result", "ok"}}, b.own_token_renewals);
      add_counter(f, {{"result", "failed"}}, b.own_token_failures);
      out.push_back(std::move(f));
    }
    if (!b.own_login_method.empty()) {
      const std::string method{b.own_login_method};
      auto f = family("vaultwire_vault_logins_total",
                      "vaultwire's own logins to Vault ([vault.auth]) by method and result: ok, denied (Vault "
                      "refused the credentials: 400, 403, 404), failed (anything else, a file unreadable included)",
                      prometheus::MetricType::Counter);
      add_counter(f, {{"method", method}, {"result", "ok"}}, b.own_logins_ok);
      add_counter(f, {{"method", method}, {"result", "denied"}}, b.own_logins_denied);
      add_counter(f, {{"method", method}, {"result", "failed"}}, b.own_logins_failed);
      out.push_back(std::move(f));
    }
    out.push_back(counter("vaultwire_vault_outage_failures_total",
                          "Broker Vault calls that failed as an outage (connect, timeout, 502/503/504, sealed); a "
                          "500 or a 429 is that request's own error and is not counted",
                          b.vault_outages));
    out.push_back(gauge("vaultwire_vault_breaker_open", "1 while the Vault circuit breaker is open",
                        b.breaker_open ? 1.0 : 0.0));
    {
      auto f = family("vaultwire_vault_breaker_transitions_total", "Circuit breaker transitions",
                      prometheus::MetricType::Counter);
      add_counter(f, {{"to", "open"}}, b.breaker_opens);
      add_counter(f, {{"to", "closed"}}, b.breaker_closes);
      out.push_back(std::move(f));
    }
    out.push_back(counter("vaultwire_vault_breaker_skips_total",
                          "Rechecks, renewals and revocations not sent while the breaker was open", b.breaker_skips));
  }

  mutable std::mutex mutex_;
  sources sources_;
};

struct registry_t {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
  source_collector collector;

  Family<Counter>& connections = prometheus::BuildCounter()
                                     .Name("vaultwire_client_connections_total")
                                     .Help("Client connections that ended, by result (CancelRequest connections "
                                           "are counted in vaultwire_cancel_requests_total)")
                                     .Register(*registry);
  Family<Histogram>& session_duration = prometheus::BuildHistogram()
                                            .Name("vaultwire_session_duration_seconds")
                                            .Help("Client connection duration, from accept to close")
                                            .Register(*registry);
  Family<Counter>& bytes = prometheus::BuildCounter()
                               .Name("vaultwire_bytes_total")
                               .Help("Bytes spliced between clients and servers, by direction (counted when the "
                                     "session ends)")
                               .Register(*registry);
  Family<Counter>& auth_failures = prometheus::BuildCounter()
                                       .Name("vaultwire_auth_failures_total")
                                       .Help("Client connections refused for authentication or authorisation, by "
                                             "reason")
                                       .Register(*registry);
  Family<Counter>& cancels = prometheus::BuildCounter()
                                 .Name("vaultwire_cancel_requests_total")
                                 .Help("CancelRequests by result: a client's forwarded to the server, unknown_key, or "
                                       "rate_limited (its source sent an unknown key within a second); session_end: "
                                       "vaultwire's own, for a request in flight when its session ended; in a fleet, "
                                       "peer_sent / peer_unreachable (to the instance that issued the key) and "
                                       "peer_received")
                                 .Register(*registry);
  Family<Histogram>& upstream_connect = prometheus::BuildHistogram()
                                            .Name("vaultwire_upstream_connect_seconds")
                                            .Help("Upstream dial, TLS and login time, by result")
                                            .Register(*registry);
  Family<Counter>& vault_requests = prometheus::BuildCounter()
                                        .Name("vaultwire_vault_requests_total")
                                        .Help("HTTP requests to Vault by endpoint and status code (or transport "
                                              "failure)")
                                        .Register(*registry);
  Family<Histogram>& vault_latency = prometheus::BuildHistogram()
                                         .Name("vaultwire_vault_request_seconds")
                                         .Help("Vault request latency by endpoint")
                                         .Register(*registry);
  Family<Counter>& reloads = prometheus::BuildCounter()
                                 .Name("vaultwire_config_reloads_total")
                                 .Help("Configuration reloads (SIGHUP) by result")
                                 .Register(*registry);
  Family<Gauge>& build = prometheus::BuildGauge()
                             .Name("vaultwire_build_info")
                             .Help("Always 1; the labels name the build")
                             .Register(*registry);

  registry_t() {
    const build_info& b = get_build_info();
    build.Add({{"version", b.version}, {"commit", b.commit}, {"openssl", b.openssl}, {"libcurl", b.libcurl},
               {"boost", b.boost}})
        .Set(1);
    // Series that exist from the start, so a scraper sees 0 rather than nothing.
    connections.Add({{"result", "ok"}});
    bytes.Add({{"direction", "client_to_server"}});
    bytes.Add({{"direction", "server_to_client"}});
    cancels.Add({{"result", "forwarded"}});
    cancels.Add({{"result", "unknown_key"}});
    reloads.Add({{"result", "ok"}});
    reloads.Add({{"result", "failed"}});
  }
};

registry_t& reg() {
  static registry_t r;
  return r;
}

// Metrics must never take a session down: a failure is logged and dropped.
template <class F>
void guarded(const char* what, F f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    spdlog::error("metrics: {} failed: {}", what, e.what());
  } catch (...) {
    spdlog::error("metrics: {} failed", what);
  }
}

// The connections series of one result. Family::Add builds a label map and hashes it
// under the family's lock; results are a handful of fixed words, so each is looked up
// once and then found here without allocating.
prometheus::Counter& connections_series(registry_t& r, std::string_view result) {
  static std::mutex mutex;
  static std::map<std::string, prometheus::Counter*, std::less<>> series;
  std::lock_guard lock{mutex};
  if (auto it = series.find(result); it != series.end()) return *it->second;
  std::string label(result);
  auto& c = r.connections.Add({{"result", label}});
  series.emplace(std::move(label), &c);
  return c;
}

}  // namespace

void client_connection_closed(std::string_view result, seconds_d duration, std::uint64_t bytes_client_to_server,
                              std::uint64_t bytes_server_to_client) {
  guarded("client_connection_closed", [&] {
    auto& r = reg();
    const std::string_view label = result.empty() ? std::string_view{"unknown"} : result;
    connections_series(r, label).Increment();
    // The series with fixed labels are looked up once (Family::Add hashes the labels
    // under the family's lock on every call); the registry lives as long as the process.
    static auto& duration_series = r.session_duration.Add({}, session_buckets());
    static auto& up = r.bytes.Add({{"direction", "client_to_server"}});
    static auto& down = r.bytes.Add({{"direction", "server_to_client"}});
    duration_series.Observe(duration.count());
    if (bytes_client_to_server > 0) up.Increment(static_cast<double>(bytes_client_to_server));
    if (bytes_server_to_client > 0) down.Increment(static_cast<double>(bytes_server_to_client));
    for (auto reason : auth_failure_results) {
      if (result == reason) r.auth_failures.Add({{"reason", std::string(label)}}).Increment();
    }
  });
}

void cancel_request(std::string_view result) {
  guarded("cancel_request", [&] { reg().cancels.Add({{"result", std::string(result)}}).Increment(); });
}

void upstream_connect(std::string_view result, seconds_d latency) {
  guarded("upstream_connect", [&] {
    reg().upstream_connect.Add({{"result", std::string(result)}}, latency_buckets()).Observe(latency.count());
  });
}

void vault_request(std::string_view endpoint, std::string_view code, seconds_d latency) {
  guarded("vault_request", [&] {
    auto& r = reg();
    r.vault_requests.Add({{"endpoint", std::string(endpoint)}, {"code", std::string(code)}}).Increment();
    r.vault_latency.Add({{"endpoint", std::string(endpoint)}}, latency_buckets()).Observe(latency.count());
  });
}

void config_reload(bool ok) {
  guarded("config_reload", [&] { reg().reloads.Add({{"result", ok ? "ok" : "failed"}}).Increment(); });
}

void set_sources(sources s) { reg().collector.set(std::move(s)); }

void clear_sources() { reg().collector.set({}); }

std::string scrape() {
  auto& r = reg();
  std::vector<prometheus::MetricFamily> families = r.registry->Collect();
  auto more = r.collector.Collect();
  families.insert(families.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace vaultwire::metrics
