#include "credentials/circuit_breaker.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace vaultwire::detail {

namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

std::string condensed(const vault_error& e) {
  const std::string status = e.http_status > 0 ? "HTTP " + std::to_string(e.http_status) : std::string();
  if (e.message.empty()) return status.empty() ? std::string{to_string(e.kind)} : status;
  return status.empty() ? e.message : e.message + " (" + status + ")";
}

}  // namespace

bool circuit_breaker::is_outage(const vault_error& error) noexcept {
  switch (error.kind) {
    case vault_error_kind::unreachable:
    case vault_error_kind::timeout:
    case vault_error_kind::sealed: return true;
    case vault_error_kind::server_error:
      return error.http_status == 502 || error.http_status == 503 || error.http_status == 504;
    default: return false;
  }
}

circuit_breaker::admission circuit_breaker::admit(time_point t) {
  if (!open_) return admission::call;
  if (probe_in_flight_ || t < retry_at_) return admission::skip;
  probe_in_flight_ = true;
  ++stats_.breaker_probes;
  spdlog::debug("credentials: circuit breaker half-open: probing Vault at {}", last_.address);
  return admission::probe;
}

circuit_breaker::time_point circuit_breaker::retry_time(time_point t) const {
  return std::max(t + milliseconds{1}, retry_at_);
}

std::string circuit_breaker::message(time_point t) const {
  std::string retry = "retrying now";
  if (!probe_in_flight_ && t < retry_at_) {
    retry = "retrying in " + std::to_string(std::chrono::ceil<seconds>(retry_at_ - t).count()) + "s";
  }
  return "Vault at " + last_.address + " is unreachable (" + std::to_string(failures_) +
         " consecutive failures; last: " + condensed(last_) + "); " + retry;
}

bool circuit_breaker::note(const vault_error* error, bool probe, time_point t) {
  if (probe) probe_in_flight_ = false;
  if (error == nullptr || !is_outage(*error)) {
    if (open_) {
      open_ = false;
      ++stats_.breaker_closes;
      spdlog::info("credentials: circuit breaker closed: Vault at {} answers again (after {}s open, {} failures)",
                   last_.address, std::chrono::duration_cast<seconds>(t - opened_at_).count(), failures_);
    }
    failures_ = 0;
    return false;
  }
  ++stats_.vault_outages;
  ++failures_;
  last_ = *error;
  if (open_) {
    if (probe) {
      ++stats_.breaker_probe_failures;
      backoff_ = std::min<broker_clock::duration>(backoff_ * 2, breaker_max_backoff);
      retry_at_ = t + backoff_;
      spdlog::debug("credentials: probe of Vault at {} failed ({}); next in {}ms", last_.address, condensed(last_),
                    std::chrono::duration_cast<milliseconds>(backoff_).count());
    }
  } else if (failures_ >= breaker_threshold) {
    open_ = true;
    opened_at_ = t;
    backoff_ = breaker_initial_backoff;
    retry_at_ = t + backoff_;
    ++stats_.breaker_opens;
    spdlog::warn(
        "credentials: circuit breaker open: Vault at {} is unreachable ({} consecutive failures; last: {} {}); "
        "new credentials fail fast with 08001, cached ones are served (token_grace {}s); probing every {}-{}s",
        last_.address, failures_, to_string(last_.kind), condensed(last_),
        std::chrono::duration_cast<seconds>(grace_).count(), breaker_initial_backoff.count(),
        breaker_max_backoff.count());
  }
  return true;
}

}  // namespace vaultwire::detail
