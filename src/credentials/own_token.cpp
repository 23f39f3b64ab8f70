#include "credentials/own_token.hpp"

#include <fstream>
#include <sstream>
#include <system_error>

#include <spdlog/spdlog.h>

namespace vaultwire::detail {

pgwire::secret_string own_token::read() {
  std::lock_guard lock{file_mutex_};
  std::error_code ec;
  const auto mtime = std::filesystem::last_write_time(file_, ec);
  if (ec) {
    if (!warned_) spdlog::warn("credentials: cannot stat token_file {}: {}", file_.string(), ec.message());
    warned_ = true;
    return token_.clone();  // the last good one, if any
  }
  if (mtime_ && *mtime_ == mtime) return token_.clone();
  std::ifstream in{file_, std::ios::binary};
  std::ostringstream text;
  text << in.rdbuf();
  std::string s = std::move(text).str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  if (!in || s.empty()) {
    pgwire::cleanse_string(s);
    if (!warned_)
      spdlog::warn("credentials: token_file {} is unreadable or empty; keeping the previous token", file_.string());
    warned_ = true;
    return token_.clone();
  }
  token_ = pgwire::secret_string(std::move(s));
  mtime_ = mtime;
  warned_ = false;
  spdlog::info("credentials: read token_file {}", file_.string());
  return token_.clone();
}

own_token::step own_token::due(time_point t) {
  std::optional<std::filesystem::file_time_type> version;
  {
    std::lock_guard lock{file_mutex_};
    version = mtime_;
  }
  if (version != scheduled_for_ && !in_flight_) {
    scheduled_for_ = version;
    known_ = false;
    next_at_ = t;
  }
  if (in_flight_ || t < next_at_) return step::none;
  return known_ ? step::renew : step::lookup;
}

void own_token::done(step what, const vault_result<vault_token_info>& r, time_point t, double jitter,
                     broker_stats& stats) {
  in_flight_ = false;
  const bool renewed = what == step::renew;
  if (!r) {
    ++stats.own_token_failures;
    spdlog::warn("credentials: {} of token_file's token failed: {} {}", renewed ? "renew-self" : "lookup-self",
                 to_string(r.error().kind), r.error().message);
    next_at_ = t + std::chrono::seconds{5};
    return;
  }
  const vault_token_info& info = r.value();
  if (renewed) {
    ++stats.own_token_renewals;
    spdlog::info("credentials: renewed token_file's token for {}s", info.ttl.count());
  } else {
    known_ = true;
    spdlog::info("credentials: token_file's token is accessor {} (ttl {}s, {}renewable)", info.accessor,
                 info.ttl.count(), info.renewable ? "" : "not ");
  }
  if (info.ttl.count() == 0 || (!renewed && !info.renewable)) {
    next_at_ = time_point::max();  // nothing to renew until the file changes
    return;
  }
  next_at_ = next_renewal(t, info.ttl, jitter);
}

}  // namespace vaultwire::detail
