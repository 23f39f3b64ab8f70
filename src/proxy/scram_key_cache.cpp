#include "proxy/scram_key_cache.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>
#include <utility>

namespace vaultwire::detail {

scram_key_cache& scram_key_cache::instance() {
  static scram_key_cache cache;
  return cache;
}

scram_key_cache::scram_key_cache() {
  if (RAND_bytes(secret_, sizeof secret_) != 1) throw std::runtime_error("RAND_bytes failed");
}

scram_key_cache::~scram_key_cache() { OPENSSL_cleanse(secret_, sizeof secret_); }

std::string scram_key_cache::key_for(const std::string& user, const pgwire::secret_string& password) const {
  pgwire::secret_string material;
  material.append(user);
  material.append('\0');
  material.append(password.view());
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  if (HMAC(EVP_sha256(), secret_, sizeof secret_, reinterpret_cast<const unsigned char*>(material.view().data()),
           material.size(), mac, &mac_len) == nullptr) {
    return {};
  }
  return std::string(reinterpret_cast<const char*>(mac), mac_len);
}

std::optional<scram_cache_entry> scram_key_cache::find(const std::string& key) {
  std::lock_guard lock(mutex_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return std::nullopt;
  return scram_cache_entry{it->second.salt, it->second.iterations, it->second.keys.clone()};
}

void scram_key_cache::put(const std::string& key, scram_cache_entry entry) {
  std::lock_guard lock(mutex_);
  auto [it, inserted] = entries_.insert_or_assign(key, std::move(entry));  // a replaced entry's keys are wiped
  if (!inserted) return;
  order_.push_back(key);
  while (order_.size() > capacity) {
    entries_.erase(order_.front());  // its secret_strings wipe themselves
    order_.pop_front();
  }
}

}  // namespace vaultwire::detail
