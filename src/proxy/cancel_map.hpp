// cancel_map: the cancel keys vaultwire gave its clients, each mapped to the
// upstream key and route a CancelRequest for it is forwarded to.
#pragma once

#include <pgwire/messages.hpp>

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>

namespace vaultwire::detail {

struct route_runtime;

// What a CancelRequest for a key vaultwire issued is forwarded to.
struct cancel_target {
  const route_runtime* route = nullptr;
  pgwire::cancel_request upstream_key;
  // The local IP address of the session's upstream connection: the cancel leaves from
  // it, because a proxy in front of the cluster (CockroachDB's Serverless proxy) drops
  // a CancelRequest from another source address than its session's. Empty: any.
  std::string source_address;
};

// Keys of live sessions only: a session forgets its key when it ends.
class cancel_map {
 public:
  // In a fleet ([fleet] instance_id), the top 4 bits of every secret issued from now
  // on name this instance and the other 28 come from the CSPRNG; outside one all 32
  // are random. Set once, before the first issue().
  void set_instance(std::uint32_t id) { instance_ = id & 0xf; }
  // The instance a key names (its secret's top 4 bits): meaningful in a fleet only.
  [[nodiscard]] static std::uint32_t instance_of(const pgwire::cancel_request& key) noexcept {
    return static_cast<std::uint32_t>(key.secret_key) >> 28;
  }
  // A fresh key (CSPRNG secret) for the upstream process id, remembered until forget().
  pgwire::backend_key_data issue(std::int32_t upstream_pid, cancel_target target);
  std::optional<cancel_target> find(const pgwire::cancel_request& key);
  void forget(const pgwire::backend_key_data& key);

 private:
  std::mutex mutex_;
  std::map<std::pair<std::int32_t, std::int32_t>, cancel_target> keys_;
  std::optional<std::uint32_t> instance_;
};

}  // namespace vaultwire::detail
