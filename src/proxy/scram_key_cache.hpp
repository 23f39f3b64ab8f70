// scram_key_cache: the keys derived from a credential's password (PBKDF2, the costly
// part of SCRAM), per credential, with the salt and iteration count they were
// derived for: a second login with the same credential skips PBKDF2 when the server
// sends the same salt and count (scram_client checks that). Only keys of an exchange
// the server completed (its signature verified) are kept. The map is keyed by an
// HMAC of user and password under a random per-process key, so nothing in it reveals
// the password; the keys are secret_strings, wiped when an entry is replaced or
// evicted (oldest first beyond the bound). Thread-safe. No Asio.
#pragma once

#include <pgwire/scram.hpp>
#include <pgwire/secret.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>

namespace vaultwire::detail {

struct scram_cache_entry {
  std::string salt;
  std::uint32_t iterations = 0;
  pgwire::scram_keys keys;
};

class scram_key_cache {
 public:
  static constexpr std::size_t capacity = 1024;

  static scram_key_cache& instance();

  // The lookup key for a credential; empty if HMAC failed (then nothing is cached).
  [[nodiscard]] std::string key_for(const std::string& user, const pgwire::secret_string& password) const;
  [[nodiscard]] std::optional<scram_cache_entry> find(const std::string& key);
  void put(const std::string& key, scram_cache_entry entry);

  scram_key_cache(const scram_key_cache&) = delete;
  scram_key_cache& operator=(const scram_key_cache&) = delete;

 private:
  scram_key_cache();
  ~scram_key_cache();

  unsigned char secret_[32];
  std::mutex mutex_;
  std::map<std::string, scram_cache_entry> entries_;
  std::deque<std::string> order_;  // insertion order, for eviction
};

}  // namespace vaultwire::detail
