#include "credentials/own_token.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <system_error>

#include <spdlog/spdlog.h>

#include "core/text.hpp"
#include "credentials/broker.hpp"

namespace vaultwire::detail {

namespace {

using std::chrono::seconds;

constexpr std::size_t max_secret_file = 64 * 1024;
constexpr seconds first_login_retry{1};
constexpr seconds max_login_retry{60};
// How long before the leases read with a token stop being served its replacement
// login is sent: time for the login to answer (replacement_login_at).
constexpr seconds relogin_lead{2};

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

std::string errno_text(int e) { return std::generic_category().message(e); }

}  // namespace

pgwire::secret_string read_secret_file(const std::filesystem::path& file, std::string& error) {
  error.clear();
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = "cannot read \"" + file.string() + "\": " + errno_text(errno);
    return {};
  }
  // Up to one byte more than allowed, to tell a file that is too large.
  pgwire::secret_string buffer(max_secret_file + 1, '\0');
  std::size_t used = 0;
  while (used < buffer.size()) {
    const ::ssize_t n = ::read(fd, buffer.data() + used, buffer.size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = "cannot read \"" + file.string() + "\": " + errno_text(errno);
      ::close(fd);
      return {};
    }
    if (n == 0) break;
    used += static_cast<std::size_t>(n);
  }
  ::close(fd);
  if (used > max_secret_file) {
    error = "\"" + file.string() + "\" is larger than 64 KiB";
    return {};
  }
  std::string_view text(buffer.data(), used);
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  if (text.empty()) {
    error = "\"" + file.string() + "\" is empty";
    return {};
  }
  return pgwire::secret_string(text);  // `buffer` is wiped when it goes
}

// --- read ------------------------------------------------------------------------

pgwire::secret_string own_token::read(time_point t, std::uint64_t* generation) {
  std::lock_guard lock{token_mutex_};
  if (login_) {
    if (token_.empty() || t >= expires_at_) return {};
    if (generation != nullptr) *generation = generation_;
    return token_.clone();
  }
  if (generation != nullptr) *generation = generation_;
  std::error_code ec;
  const auto mtime = std::filesystem::last_write_time(file_, ec);
  if (ec) {
    if (!warned_) spdlog::warn("credentials: cannot stat token_file {}: {}", file_.string(), ec.message());
    warned_ = true;
    return token_.clone();  // the last good one, if any
  }
  if (mtime_ && *mtime_ == mtime) return token_.clone();
  std::string error;
  pgwire::secret_string fresh = read_secret_file(file_, error);
  if (fresh.empty()) {
    if (!warned_) spdlog::warn("credentials: token_file: {}; keeping the previous token", error);
    warned_ = true;
    return token_.clone();
  }
  token_ = std::move(fresh);
  mtime_ = mtime;
  ++generation_;
  if (generation != nullptr) *generation = generation_;
  warned_ = false;
  spdlog::info("credentials: read token_file {}", file_.string());
  return token_.clone();
}

// --- the schedule ------------------------------------------------------------------

own_token::step own_token::due(time_point t) { return login_ ? due_login(t) : due_file(t); }

own_token::step own_token::due_file(time_point t) {
  std::optional<std::filesystem::file_time_type> version;
  {
    std::lock_guard lock{token_mutex_};
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

own_token::step own_token::due_login(time_point t) {
  if (in_flight_) return step::none;
  bool held = false;
  {
    std::lock_guard lock{token_mutex_};
    if (!token_.empty() && t >= expires_at_) {
      drop_locked("reached the end of its TTL", false);
      renew_next_ = false;
      // A login retry already scheduled keeps its backoff; otherwise log in now.
      if (login_failures_ == 0) next_at_ = t;
    }
    held = !token_.empty();
  }
  if (t < next_at_) return step::none;
  return held && renew_next_ ? step::renew : step::login;
}

void own_token::begin() {
  in_flight_ = true;
  std::lock_guard lock{token_mutex_};
  in_flight_generation_ = generation_;
}

void own_token::done(step what, const vault_result<vault_token_info>& r, time_point t, double jitter,
                     broker_stats& stats) {
  in_flight_ = false;
  if (login_) {
    renewed(r, t, jitter, stats);
  } else {
    done_file(what, r, t, jitter, stats);
  }
}

void own_token::done_file(step what, const vault_result<vault_token_info>& r, time_point t, double jitter,
                          broker_stats& stats) {
  const bool renewal = what == step::renew;
  if (!r) {
    ++stats.own_token_failures;
    spdlog::warn("credentials: {} of token_file's token failed: {} {}", renewal ? "renew-self" : "lookup-self",
                 to_string(r.error().kind), r.error().message);
    next_at_ = t + seconds{5};
    return;
  }
  const vault_token_info& info = r.value();
  if (renewal) {
    ++stats.own_token_renewals;
    spdlog::info("credentials: renewed token_file's token for {}s", info.ttl.count());
  } else {
    known_ = true;
    spdlog::info("credentials: token_file's token is accessor {} (ttl {}s, {}renewable)", info.accessor,
                 info.ttl.count(), info.renewable ? "" : "not ");
  }
  if (info.ttl.count() == 0 || (!renewal && !info.renewable)) {
    next_at_ = time_point::max();  // nothing to renew until the file changes
    return;
  }
  next_at_ = next_renewal(t, info.ttl, jitter);
}

// A login token's renew-self answered.
void own_token::renewed(const vault_result<vault_token_info>& r, time_point t, double jitter, broker_stats& stats) {
  std::lock_guard lock{token_mutex_};
  if (in_flight_generation_ != generation_ || token_.empty()) return;  // replaced or dropped meanwhile
  if (!r) {
    ++stats.own_token_failures;
    renew_next_ = false;
    next_at_ = t;
    if (r.error().refusal == vault_refusal::bad_token) {
      drop_locked("was refused by Vault as invalid or revoked (renew-self: " + r.error().message + ")");
      return;
    }
    spdlog::warn("credentials: renew-self of vaultwire's Vault token {} failed: {} {}; logging in again", accessor_,
                 to_string(r.error().kind), r.error().message);
    return;
  }
  ++stats.own_token_renewals;
  const vault_token_info& info = r.value();
  expires_at_ = info.ttl.count() == 0 ? time_point::max() : t + info.ttl;
  granted_ttl_ = info.ttl;
  if (info.ttl.count() == 0) {
    next_at_ = time_point::max();
    spdlog::info("credentials: renewed vaultwire's Vault token {}: it no longer expires", accessor_);
    return;
  }
  next_at_ = next_renewal(t, info.ttl, jitter);
  // Vault grants at most what is left before the token's max TTL (sdk/framework/
  // lease.go CalculateTTL): less than asked means the end is near, and only a new
  // login goes past it.
  if (!info.renewable || info.ttl < issued_ttl_) {
    renew_next_ = false;
    next_at_ = replacement_login_at(t, info.ttl, jitter, false);
    spdlog::info("credentials: renewed vaultwire's Vault token {} for {}s (less than {}s asked: its max TTL is near); "
                 "logging in again before it ends",
                 accessor_, info.ttl.count(), issued_ttl_.count());
    return;
  }
  renew_next_ = true;
  spdlog::info("credentials: renewed vaultwire's Vault token {} for {}s", accessor_, info.ttl.count());
}

// --- logins --------------------------------------------------------------------------

std::string own_token::login_path() const { return login_ ? "auth/" + login_->mount + "/login" : std::string(); }

own_token::login_request own_token::make_login() const {
  login_request req;
  if (!login_) {
    req.error = "no login method";
    return req;
  }
  const vault_auth_config& a = *login_;
  req.mount = a.mount;
  std::string error;
  const auto read_file = [&error, &req](const std::optional<std::filesystem::path>& file, std::string_view key) {
    if (!file) error = "not set";
    pgwire::secret_string s = file ? read_secret_file(*file, error) : pgwire::secret_string();
    if (s.empty() && req.error.empty()) req.error = "vault.auth." + std::string(key) + ": " + error;
    return s;
  };
  switch (a.method) {
    case vault_auth_method::approle: {
      // api-docs/auth/approle "Login with AppRole": role_id, and secret_id unless the
      // role has bind_secret_id = false (Vault Agent's approle method sends only the
      // role ID when no secret ID file is set).
      const pgwire::secret_string role_id = read_file(a.role_id_file, "role_id_file");
      if (!req.error.empty()) return req;
      if (!a.secret_id_file) {
        req.body = login_body({{"role_id", role_id.view()}});
        return req;
      }
      const pgwire::secret_string secret_id = read_file(a.secret_id_file, "secret_id_file");
      if (!req.error.empty()) return req;
      req.body = login_body({{"role_id", role_id.view()}, {"secret_id", secret_id.view()}});
      return req;
    }
    case vault_auth_method::kubernetes:
    case vault_auth_method::jwt: {
      // api-docs/auth/kubernetes "Login" and api-docs/auth/jwt "JWT login": role and jwt
      // (the JWT method's role may be left to the mount's default_role).
      const pgwire::secret_string jwt = read_file(a.jwt_file, "jwt_file");
      if (!req.error.empty()) return req;
      req.body = a.role ? login_body({{"role", *a.role}, {"jwt", jwt.view()}}) : login_body({{"jwt", jwt.view()}});
      return req;
    }
    case vault_auth_method::cert:
      // api-docs/auth/cert "Login with TLS certificate method": the client certificate
      // of the TLS handshake ([vault] client_cert) is the credential; `name` picks the
      // certificate role, else Vault tries every one.
      req.body = a.name ? login_body({{"name", *a.name}}) : pgwire::secret_string("{}");
      return req;
    case vault_auth_method::none:
    case vault_auth_method::token_file:
      break;
  }
  req.error = "no login method";
  return req;
}

void own_token::logged_in(vault_result<vault_login> r, time_point t, double jitter, broker_stats& stats) {
  in_flight_ = false;
  if (!r) {
    const vault_error& e = r.error();
    // 400/403/404: Vault refused these credentials (a wrong or expired secret ID, a
    // JWT the role does not accept); anything else is Vault not answering as it should.
    const bool denied = e.token_rejected() || e.policy_denied();
    std::string why = denied ? "Vault refused the login at " + login_path() + ": " +
                                   (e.message.empty() ? "HTTP " + std::to_string(e.http_status)
                                                      : e.message + " (HTTP " + std::to_string(e.http_status) + ")")
                             : "login at " + login_path() + " failed: " + e.to_client_message();
    login_failed(std::move(why), denied, t, jitter, stats);
    return;
  }
  vault_login& l = r.value();
  ++stats.own_logins_ok;
  login_failures_ = 0;
  last_failure_.clear();
  issued_ttl_ = l.ttl;
  // Batch tokens cannot be renewed (api-docs/auth/token; their lease is fixed): they
  // are replaced by a new login, as are tokens Vault says are not renewable.
  renew_next_ = l.renewable && l.token_type != "batch";
  {
    std::lock_guard lock{token_mutex_};
    token_ = std::move(l.client_token);
    accessor_ = l.accessor.empty() ? std::string("(no accessor)") : l.accessor;
    ++generation_;
    expires_at_ = l.ttl.count() == 0 ? time_point::max() : t + l.ttl;
    granted_ttl_ = l.ttl;
    token_hash_ = credential_broker::token_digest(token_);
  }
  next_at_ = l.ttl.count() == 0 ? time_point::max()
             : renew_next_      ? next_renewal(t, l.ttl, jitter)
                                : replacement_login_at(t, l.ttl, jitter, true);
  spdlog::info("credentials: logged in to Vault with method {} at {}: token {} ({}, ttl {}s, {}; {})",
               to_string(login_->method), login_path(), accessor_, l.token_type, l.ttl.count(),
               l.renewable ? "renewable" : "not renewable",
               l.ttl.count() == 0 ? "it does not expire"
               : renew_next_      ? "renewed at about two thirds of its TTL"
                                  : std::string{"replaced by a new login in "} +
                                   duration_text(std::chrono::duration_cast<std::chrono::milliseconds>(next_at_ - t)));
}

void own_token::login_not_sent(const std::string& why, time_point t, double jitter, broker_stats& stats) {
  in_flight_ = false;
  login_failed("login at " + login_path() + " not sent: " + why, false, t, jitter, stats);
}

void own_token::login_failed(std::string why, bool denied, time_point t, double jitter, broker_stats& stats) {
  ++(denied ? stats.own_logins_denied : stats.own_logins_failed);
  ++login_failures_;
  const unsigned doublings = std::min(login_failures_ - 1, 6u);  // 2^6 s > 60 s
  const seconds base = std::min<seconds>(first_login_retry * (1u << doublings), max_login_retry);
  const auto wait = std::min<broker_clock::duration>(
      std::chrono::duration_cast<broker_clock::duration>(std::chrono::duration<double>(
          static_cast<double>(base.count()) * (1.0 + 0.25 * std::clamp(jitter, 0.0, 1.0)))),
      max_login_retry);
  next_at_ = t + wait;
  renew_next_ = false;
  spdlog::warn("credentials: {}; retrying in {}", why,
               duration_text(std::chrono::duration_cast<std::chrono::milliseconds>(wait)));
  last_failure_ = std::move(why);
}

void own_token::rejected(std::uint64_t generation, time_point t) {
  if (!login_) return;
  std::lock_guard lock{token_mutex_};
  if (generation != generation_ || token_.empty()) return;
  drop_locked("was refused by Vault as invalid or revoked");
  renew_next_ = false;
  if (login_failures_ == 0) next_at_ = t;
}

void own_token::rejected_digest(const std::string& token_hash, time_point t) {
  if (!login_) return;
  std::uint64_t generation = 0;
  {
    std::lock_guard lock{token_mutex_};
    if (token_.empty() || credential_broker::token_digest(token_) != token_hash) return;
    generation = generation_;
  }
  rejected(generation, t);
}

void own_token::drop_locked(std::string_view why, bool overwrite_failure) {
  spdlog::warn("credentials: vaultwire's Vault token {} {}; dropped it, logging in again", accessor_, why);
  // A login failure already noted says more about why no token follows than the end
  // of the TTL does; Vault's refusal of the token is news either way.
  if (overwrite_failure || last_failure_.empty())
    last_failure_ = "vaultwire's Vault token " + accessor_ + " " + std::string(why);
  token_.clear();
  token_hash_.clear();
  ++generation_;
  expires_at_ = time_point::max();
}

// A token whose end is final is replaced at about two thirds of its TTL, as a renewal
// would come, but no later than reuse_floor(ttl) + relogin_lead before its end: the
// leases read with it stop being served reuse_floor(the shorter of the lease's and the
// token's TTL) before the token's end (lease_cache::find, lease_entry::floor_basis), and
// the new token must be held by then, so that new sessions read their lease with it
// rather than with the dying token. Two thirds alone come too late for short TTLs: a
// renewal that grants 10 s plans the login 6 s later, while the leases stop being
// served 5 s before the end. A login's own token is not replaced before half its TTL,
// so that a token too short for the floor does not make a login per tick (a lease read
// with it is barely served from the cache either, like any lease that short); a
// renewal's short grant is replaced at once if need be (the login gives a full TTL).
time_point own_token::replacement_login_at(time_point t, seconds ttl, double jitter, bool fresh) {
  const auto lifetime = std::chrono::duration_cast<broker_clock::duration>(ttl);
  const time_point before_floor = t + lifetime - credential_broker::reuse_floor(ttl) - relogin_lead;
  const time_point earliest = fresh ? t + lifetime / 2 : t;
  return std::max(earliest, std::min(next_renewal(t, ttl, jitter), before_floor));
}

std::optional<own_token::token_end> own_token::final_end() const {
  if (!login_ || renew_next_) return std::nullopt;
  std::lock_guard lock{token_mutex_};
  if (token_.empty() || expires_at_ == time_point::max()) return std::nullopt;
  return token_end{token_hash_, expires_at_, granted_ttl_};
}

std::string own_token::problem(time_point t) const {
  if (!login_) return {};
  {
    std::lock_guard lock{token_mutex_};
    if (!token_.empty() && t < expires_at_) return {};
  }
  if (!last_failure_.empty()) return last_failure_;
  return in_flight_ ? "the login at " + login_path() + " has not answered yet"
                    : "no login at " + login_path() + " has been made yet";
}

}  // namespace vaultwire::detail
