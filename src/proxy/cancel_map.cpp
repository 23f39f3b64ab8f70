#include "proxy/cancel_map.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <array>
#include <cstring>
#include <stdexcept>

namespace vaultwire::detail {

namespace {

// Cancel secrets come from OpenSSL's CSPRNG in batches: under OpenSSL 3 each
// RAND_bytes call costs microseconds (DRBG lookup, locking, the fork check), and
// every new connection needs a secret. The unused rest of a batch is this thread's.
std::int32_t random_cancel_secret() {
  struct batch {
    std::array<unsigned char, 256> bytes{};
    std::size_t used = sizeof bytes;
    ~batch() { OPENSSL_cleanse(bytes.data(), bytes.size()); }
  };
  thread_local batch b;
  std::int32_t secret = 0;
  if (b.used + sizeof secret > b.bytes.size()) {
    if (RAND_bytes(b.bytes.data(), static_cast<int>(b.bytes.size())) != 1) throw std::runtime_error("RAND_bytes failed");
    b.used = 0;
  }
  std::memcpy(&secret, b.bytes.data() + b.used, sizeof secret);
  OPENSSL_cleanse(b.bytes.data() + b.used, sizeof secret);  // handed out once
  b.used += sizeof secret;
  return secret;
}

}  // namespace

pgwire::backend_key_data cancel_map::issue(std::int32_t upstream_pid, cancel_target target) {
  std::lock_guard lock(mutex_);
  pgwire::backend_key_data key;
  key.process_id = upstream_pid;  // pg_backend_pid() and NOTIFY's pid agree with it
  for (;;) {
    std::int32_t secret = random_cancel_secret();
    if (instance_) {
      const auto bits = (static_cast<std::uint32_t>(secret) & 0x0fffffffu) | (*instance_ << 28);
      secret = static_cast<std::int32_t>(bits);
    }
    if (keys_.emplace(std::make_pair(upstream_pid, secret), target).second) {
      key.secret_key = secret;
      return key;
    }
  }
}

std::optional<cancel_target> cancel_map::find(const pgwire::cancel_request& key) {
  std::lock_guard lock(mutex_);
  auto it = keys_.find({key.process_id, key.secret_key});
  if (it == keys_.end()) return std::nullopt;
  return it->second;
}

void cancel_map::forget(const pgwire::backend_key_data& key) {
  std::lock_guard lock(mutex_);
  keys_.erase({key.process_id, key.secret_key});
}
}  // namespace vaultwire::detail
