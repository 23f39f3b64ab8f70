// token_checker: what the broker believes about each client token (broker.hpp's
// header comment has the rules): when it was last confirmed by Vault, whether a cache
// hit must wait for a recheck (auth/token/lookup-self) or may be served while one runs
// (stale-while-revalidate), how long a recheck Vault did not answer is covered by
// token_grace, the negative cache of tokens Vault rejected, and the (token, role)
// negative cache of Vault's ACL denials (a valid token whose policy lacks one role).
//
// It decides; the broker makes the Vault calls and owns the lock. Tokens are keyed by
// their SHA-256 (hex); the token itself is kept only as a secret_string, for the
// rechecks, and is wiped when no lease or fetch refers to it any more.
//
// Not thread-safe: the broker calls it under its mutex (lease_entry.hpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "credentials/lease_entry.hpp"

namespace vaultwire::detail {

struct token_entry {
  pgwire::secret_string token;
  time_point last_ok{};        // last time Vault confirmed the token
  time_point next_check_at{};  // a hit at or after this waits for lookup-self
  bool recheck_in_flight = false;
  bool has_info = false;
  vault_token_info info;
  std::vector<pending_acquire> waiting;  // hits waiting for the recheck
  // A new token's first credential is handed out once its first lookup-self has
  // answered (whatever the answer), so every log line and audit event of its
  // sessions can name the token by accessor. The lookup goes to Vault beside the
  // first creds request, not after it: a cold login waits for the slower of the two.
  enum class first_lookup : std::uint8_t { not_asked, in_flight, answered };
  first_lookup first = first_lookup::not_asked;
  std::vector<unique_task> after_first_lookup;
};

class token_checker {
 public:
  // `recheck`: [credentials] token_recheck; `grace`: token_grace; `negative`: negative_cache.
  token_checker(std::chrono::milliseconds recheck, std::chrono::milliseconds grace, std::chrono::milliseconds negative)
      : recheck_(recheck), grace_(grace), negative_ttl_(negative) {}

  // The negative cache: Vault's rejection of this token, while it lasts.
  [[nodiscard]] std::optional<vault_error> rejection(const std::string& hash, time_point t);
  void reject(const std::string& hash, const vault_error& error, time_point t);
  [[nodiscard]] bool rejected(const std::string& hash) const { return negative_.count(hash) != 0; }
  // The (token, role) negative cache, for negative_cache: `key` is the token's hash, a
  // NUL and lease_cache::role_key_for (namespace, mount, role). It never refuses the
  // token for another role.
  [[nodiscard]] std::optional<vault_error> role_denial(const std::string& key, time_point t);
  void deny_role(const std::string& key, const vault_error& error, time_point t);

  // The entry for a token, created on first sight (keeping a copy of `token`).
  token_entry& entry(const std::string& hash, const pgwire::secret_string& token);
  [[nodiscard]] token_entry* find(const std::string& hash);
  [[nodiscard]] const token_entry* find(const std::string& hash) const;

  // What a cache hit of this token does at `t`: serve at once (checked recently),
  // serve and recheck in the background (stale, but within grace while a recheck is
  // in flight or Vault is not known healthy), or wait for a recheck.
  enum class verdict { serve, serve_stale, wait };
  [[nodiscard]] verdict on_hit(const token_entry& tok, time_point t, bool vault_healthy) const;

  // Vault honoured the token at `t` (a fetch with it succeeded).
  void confirmed(token_entry& tok, time_point t) const;
  // A recheck succeeded: true when this was the token's first lookup-self.
  bool looked_up(token_entry& tok, vault_token_info info, time_point t) const;
  // A recheck Vault did not answer (or the open breaker did not send): the time of
  // grace left, with the next check moved within it; nullopt when grace is over.
  [[nodiscard]] std::optional<std::chrono::seconds> unverified(token_entry& tok, time_point t) const;

  // Waiting acquires of every token still within grace at `t` (Vault is failing:
  // they are served now instead of waiting out request_timeout).
  [[nodiscard]] std::vector<pending_acquire> release_in_grace(time_point t);
  // The token, when it has sessions and its recheck is due at `t` (null when it is
  // unknown or already known rejected).
  [[nodiscard]] token_entry* due(const std::string& hash, time_point t);
  // A token for the circuit breaker's probe: one not being rechecked and not
  // rejected, preferring one of `in_use`; empty when there is none.
  [[nodiscard]] std::string probe_candidate(const std::set<std::string>& in_use) const;
  // Drops expired rejections and the tokens no lease or fetch refers to (`referenced`).
  void sweep(const std::set<std::string>& referenced, time_point t);

  // How logs name a token: "accessor <a>" once lookup-self has answered, else a digest prefix.
  [[nodiscard]] std::string name(const std::string& hash) const;

 private:
  struct negative_entry {
    time_point until{};
    vault_error error;
  };
  std::chrono::milliseconds recheck_;
  std::chrono::milliseconds grace_;
  std::chrono::milliseconds negative_ttl_;
  std::map<std::string, token_entry> tokens_;      // token hash → token
  std::map<std::string, negative_entry> negative_;  // token hash → rejection
  std::map<std::string, negative_entry> role_negative_;  // token hash + role key → ACL denial
};

}  // namespace vaultwire::detail
