#include "credentials/lease_cache.hpp"

#include <utility>

namespace vaultwire::detail {

std::string lease_cache::key_for(const std::string& token_hash, const credential_request& request) {
  std::string key = request.identity.empty() ? token_hash : "identity:" + request.identity;
  for (const std::string* part : {&request.vault_namespace, &request.mount, &request.role, &request.route}) {
    key += '\0';
    key += *part;
  }
  return key;
}

std::string lease_cache::role_key_for(const credential_request& request) {
  return request.vault_namespace + '\0' + request.mount + '\0' + request.role;
}

std::optional<lease_cache::hit> lease_cache::find(const std::string& key, time_point t, bool breaker_open) {
  const auto c = cache_.find(key);
  if (c == cache_.end()) return std::nullopt;
  const auto entry = c->second;
  // ends_at() and floor_basis(): a lease read with a token whose end is final is served
  // as one that ends with the token (lease_entry.hpp).
  const time_point end = entry->ends_at();
  const bool fresh = !entry->gone && end - t > credential_broker::reuse_floor(entry->floor_basis());
  const bool outage = !fresh && breaker_open && !entry->gone && end - t > outage_reuse_floor;
  if (fresh || outage) return hit{entry, outage};
  cache_.erase(c);
  return std::nullopt;
}

bool lease_cache::join(const std::string& key, credential_broker::acquire_callback& done) {
  const auto f = flights_.find(key);
  if (f == flights_.end()) return false;
  f->second.waiters.push_back(std::move(done));
  return true;
}

void lease_cache::begin_flight(const std::string& key, const credential_request& request,
                               credential_broker::acquire_callback done) {
  auto& fl = flights_[key];
  fl.token = request.token.clone();
  fl.role = request.role;
  fl.mount = request.mount;
  fl.role_key = role_key_for(request);
  fl.waiters.push_back(std::move(done));
}

std::optional<flight> lease_cache::end_flight(const std::string& key) {
  auto node = flights_.extract(key);
  if (node.empty()) return std::nullopt;
  return std::move(node.mapped());
}

std::shared_ptr<lease_entry> lease_cache::add(const std::string& key, const std::string& token_hash, const flight& fl,
                                              vault_credential& credential, time_point t) {
  auto e = std::make_shared<lease_entry>();
  e->key = key;
  e->token_hash = token_hash;
  e->lease_id = credential.lease_id;
  e->username = credential.username;
  e->password = std::move(credential.password);
  e->role = fl.role;
  e->mount = fl.mount;
  e->duration = credential.lease_duration;
  e->current_duration = credential.lease_duration;
  e->renewable = credential.renewable;
  e->expires_at = t + credential.lease_duration;
  e->idle_since = t;
  live_[e->lease_id] = e;
  cache_[key] = e;
  return e;
}

void lease_cache::uncache(const lease_entry& e) {
  if (auto c = cache_.find(e.key); c != cache_.end() && c->second.get() == &e) cache_.erase(c);
}

bool lease_cache::cached(const lease_entry& e) const {
  const auto c = cache_.find(e.key);
  return !e.gone && c != cache_.end() && c->second.get() == &e;
}

void lease_cache::forget(const lease_entry& e) {
  uncache(e);
  if (auto l = live_.find(e.lease_id); l != live_.end() && l->second.get() == &e) live_.erase(l);
}

std::set<std::string> lease_cache::referenced_tokens() const {
  std::set<std::string> out;
  for (const auto& [id, e] : live_) {
    (void)id;
    out.insert(e->token_hash);
  }
  for (const auto& [key, f] : flights_) {
    (void)f;
    out.insert(token_hash_of(key));
  }
  return out;
}

}  // namespace vaultwire::detail
