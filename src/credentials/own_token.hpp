// own_token: vaultwire's own Vault token. It renews and revokes leases in place of the
// client's token. It comes one of two ways ([vault.auth] method):
//
// - token_file ([vault] token_file): a file written by Vault Agent or an operator. The
//   token is looked up (lookup-self) when the file (re)appears, then renewed with
//   renew-self at about two thirds of the TTL Vault reports, when it is renewable. The
//   file is re-read when its mtime changes; when it is missing, unreadable or empty the
//   last good token is kept (one warning per failure streak).
// - a login (approle, kubernetes, jwt, cert): vaultwire logs in with POST
//   auth/<mount>/login, reading the method's files afresh at each login (secret IDs and
//   service-account tokens rotate). Then:
//   * a renewable service token is renewed with renew-self at about two thirds of its
//     TTL, asking for the TTL the login gave; a renewal that grants less (the max TTL
//     is near) or says it is no longer renewable plans a new login at about two thirds
//     of what is left;
//   * a batch token, or one that is not renewable, is replaced by a new login at about
//     two thirds of its TTL;
//   * either way, once a token's end is final (final_end()) its replacement login
//     comes early enough that the new token is held before the leases read with the
//     old one stop being served (replacement_login_at() has the rule);
//   * a failed renewal is followed by a new login at once; the held token stays in use
//     until it expires or Vault says it is bad;
//   * a renew-self (or a lease call made with the token) that Vault answers with its
//     bad-token refusal (vault_refusal::bad_token) drops the token at once and logs in;
//   * a failed login is retried after 1 s, doubling up to 60 s (times 1 to 1.25 with
//     jitter, at most 60 s); the last failure (never a secret) is what problem() says.
//   A token past its TTL is dropped (read() stops returning it at once).
//
// The token is held as a secret_string and never logged: logs name it by accessor.
// Login bodies (secret ID, JWT) are secret_strings too, wiped once sent.
//
// Threads: read() and make_login() are thread-safe (read() takes the token's own
// mutex, make_login() touches no state: file I/O stays outside the broker's lock).
// Everything else (the upkeep schedule: due, begin, defer, done, logged_in, ...) is
// guarded by the broker's mutex; it takes the token's mutex inside (lock order: the
// broker's, then this one's).
#pragma once

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>

#include "credentials/lease_entry.hpp"

namespace vaultwire::detail {

// The contents of a small file (a token, a secret ID, a JWT) with surrounding
// whitespace trimmed, read without leaving unwiped copies. Empty with `error` set
// (naming the path and the cause, never the contents) when it cannot be read, is
// empty, or is larger than 64 KiB.
[[nodiscard]] pgwire::secret_string read_secret_file(const std::filesystem::path& file, std::string& error);

class own_token {
 public:
  // [vault] token_file (method token_file).
  explicit own_token(std::filesystem::path file) : file_(std::move(file)) {}
  // A login method: `login.logs_in()` must be true.
  explicit own_token(vault_auth_config login) : login_(std::move(login)) {}

  [[nodiscard]] bool logs_in() const noexcept { return login_.has_value(); }
  [[nodiscard]] vault_auth_method method() const noexcept {
    return login_ ? login_->method : vault_auth_method::token_file;
  }

  // The token to use at `t`: token_file's (re-read when the file changed), or the
  // last login's while it has not expired; empty when none is held. `generation`,
  // when given, is set to the token's generation (for rejected()).
  [[nodiscard]] pgwire::secret_string read(time_point t, std::uint64_t* generation = nullptr);

  // The upkeep due at `t`. lookup: token_file's new version; renew: renew-self of the
  // token read() gives; login: make_login() and send it.
  enum class step { none, lookup, renew, login };
  [[nodiscard]] step due(time_point t);
  void begin();
  // The circuit breaker skipped the call: try again at `retry_at`.
  void defer(time_point retry_at) noexcept { next_at_ = retry_at; }
  // The increment a renew-self asks for: the TTL the login gave (0, Vault's choice,
  // for token_file's token).
  [[nodiscard]] std::chrono::seconds renew_increment() const noexcept { return issued_ttl_; }
  // The lookup-self or renew-self completed at `t` (`jitter` in [0, 1) places the next renewal).
  void done(step what, const vault_result<vault_token_info>& r, time_point t, double jitter, broker_stats& stats);

  // A login's request: the mount and the body, with the method's files read now.
  // `error` is set instead when a file cannot be read (the body is then empty).
  struct login_request {
    std::string mount;
    pgwire::secret_string body;
    std::string error;
  };
  [[nodiscard]] login_request make_login() const;
  // The login completed at `t`.
  void logged_in(vault_result<vault_login> r, time_point t, double jitter, broker_stats& stats);
  // The login was not sent: make_login() failed with `why` (counted as a failed login).
  void login_not_sent(const std::string& why, time_point t, double jitter, broker_stats& stats);

  // A call made with the token of `generation` was answered with Vault's bad-token
  // refusal: a login method drops it (unless it was replaced since) and logs in at
  // once. Nothing for token_file (its file is the only source).
  void rejected(std::uint64_t generation, time_point t);
  // A recheck found the token with digest `token_hash` (credential_broker::token_digest)
  // rejected: when it is the token held, as rejected() for its generation.
  void rejected_digest(const std::string& token_hash, time_point t);

  // For /readyz: empty while a valid token is held (or for token_file), else why none
  // is (the last login's failure; never a secret).
  [[nodiscard]] std::string problem(time_point t) const;

  // When the next upkeep is due (time_point::max() when there is nothing to renew).
  [[nodiscard]] time_point next_at() const noexcept { return next_at_; }

  // The held login token's end once it is final: the token will be replaced by a new
  // login, never renewed again (a batch or non-renewable token, a renew-self that
  // granted less than asked, said it is no longer renewable, or failed). Its digest
  // (credential_broker::token_digest), when its TTL ends and the TTL it was last
  // granted. Empty for token_file, without a token, or while it is still renewed.
  struct token_end {
    std::string token_hash;
    time_point at{};
    std::chrono::seconds ttl{0};
  };
  [[nodiscard]] std::optional<token_end> final_end() const;

 private:
  // Drops the token (token_mutex_ held) and notes `why` for problem(), over an
  // earlier login failure only when `overwrite_failure`.
  void drop_locked(std::string_view why, bool overwrite_failure = true);
  void login_failed(std::string why, bool denied, time_point t, double jitter, broker_stats& stats);
  [[nodiscard]] std::string login_path() const;
  step due_file(time_point t);
  step due_login(time_point t);
  void done_file(step what, const vault_result<vault_token_info>& r, time_point t, double jitter, broker_stats& stats);
  void renewed(const vault_result<vault_token_info>& r, time_point t, double jitter, broker_stats& stats);
  // When a token granted `ttl` at `t`, whose end is final, is replaced by a new login.
  // `fresh`: a login's token (else a renewal's grant).
  [[nodiscard]] static time_point replacement_login_at(time_point t, std::chrono::seconds ttl, double jitter,
                                                       bool fresh);

  std::filesystem::path file_;             // token_file
  std::optional<vault_auth_config> login_;  // a login method

  mutable std::mutex token_mutex_;  // guards the members up to the next comment
  pgwire::secret_string token_;
  std::uint64_t generation_ = 0;  // changes with each new or dropped token
  time_point expires_at_ = time_point::max();  // login: when the token's TTL ends
  std::chrono::seconds granted_ttl_{0};        // login: the TTL last granted (login or renew-self)
  std::string token_hash_;                     // login: credential_broker::token_digest(token_)
  std::string accessor_;                       // login: the token's accessor
  std::optional<std::filesystem::file_time_type> mtime_;  // token_file: the version read
  bool warned_ = false;  // token_file: one warning per failure streak, not one per tick

  // Guarded by the broker's mutex.
  std::optional<std::filesystem::file_time_type> scheduled_for_;  // token_file: the version scheduled
  bool known_ = false;  // token_file: lookup-self answered for this version
  bool in_flight_ = false;
  std::uint64_t in_flight_generation_ = 0;  // the token a renew-self in flight renews
  time_point next_at_{};
  bool renew_next_ = false;                // login: the next step renews (else it logs in)
  std::chrono::seconds issued_ttl_{0};     // login: the TTL the last login gave
  unsigned login_failures_ = 0;            // login: failures in a row (the backoff)
  std::string last_failure_;               // login: the last failure or drop, for problem()
};

}  // namespace vaultwire::detail
