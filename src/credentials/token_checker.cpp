#include "credentials/token_checker.hpp"

#include <algorithm>
#include <utility>

#include <spdlog/spdlog.h>

namespace vaultwire::detail {

std::optional<vault_error> token_checker::rejection(const std::string& hash, time_point t) {
  const auto n = negative_.find(hash);
  if (n == negative_.end()) return std::nullopt;
  if (t < n->second.until) return n->second.error;
  negative_.erase(n);
  return std::nullopt;
}

void token_checker::reject(const std::string& hash, const vault_error& error, time_point t) {
  negative_[hash] = {t + negative_ttl_, error};
}

std::optional<vault_error> token_checker::role_denial(const std::string& key, time_point t) {
  const auto n = role_negative_.find(key);
  if (n == role_negative_.end()) return std::nullopt;
  if (t < n->second.until) return n->second.error;
  role_negative_.erase(n);
  return std::nullopt;
}

void token_checker::deny_role(const std::string& key, const vault_error& error, time_point t) {
  role_negative_[key] = {t + negative_ttl_, error};
}

token_entry& token_checker::entry(const std::string& hash, const pgwire::secret_string& token) {
  auto& tok = tokens_[hash];
  if (tok.token.empty()) tok.token = token.clone();
  return tok;
}

token_entry* token_checker::find(const std::string& hash) {
  const auto it = tokens_.find(hash);
  return it == tokens_.end() ? nullptr : &it->second;
}

const token_entry* token_checker::find(const std::string& hash) const {
  const auto it = tokens_.find(hash);
  return it == tokens_.end() ? nullptr : &it->second;
}

token_checker::verdict token_checker::on_hit(const token_entry& tok, time_point t, bool vault_healthy) const {
  if (t < tok.next_check_at) return verdict::serve;
  if (t < tok.last_ok + grace_ && (tok.recheck_in_flight || !vault_healthy)) return verdict::serve_stale;
  return verdict::wait;
}

void token_checker::confirmed(token_entry& tok, time_point t) const {
  tok.last_ok = t;
  tok.next_check_at = t + recheck_;
}

bool token_checker::looked_up(token_entry& tok, vault_token_info info, time_point t) const {
  const bool first = !tok.has_info;
  tok.info = std::move(info);
  tok.has_info = true;
  confirmed(tok, t);
  return first;
}

std::optional<std::chrono::seconds> token_checker::unverified(token_entry& tok, time_point t) const {
  const auto grace_end = tok.last_ok + grace_;
  if (t >= grace_end) return std::nullopt;
  tok.next_check_at = std::min<time_point>(t + recheck_, grace_end);
  return std::chrono::duration_cast<std::chrono::seconds>(grace_end - t);
}

std::vector<pending_acquire> token_checker::release_in_grace(time_point t) {
  std::vector<pending_acquire> released;
  for (auto& [hash, tok] : tokens_) {
    (void)hash;
    if (tok.waiting.empty() || t >= tok.last_ok + grace_) continue;
    for (auto& w : tok.waiting) released.push_back(std::move(w));
    tok.waiting.clear();
  }
  return released;
}

token_entry* token_checker::due(const std::string& hash, time_point t) {
  const auto it = tokens_.find(hash);
  if (it == tokens_.end() || rejected(hash)) return nullptr;
  return t >= it->second.next_check_at ? &it->second : nullptr;
}

std::string token_checker::probe_candidate(const std::set<std::string>& in_use) const {
  const std::string* pick = nullptr;
  for (const auto& [hash, tok] : tokens_) {
    if (tok.recheck_in_flight || tok.token.empty() || rejected(hash)) continue;
    if (pick == nullptr || (in_use.count(hash) != 0 && in_use.count(*pick) == 0)) pick = &hash;
  }
  return pick == nullptr ? std::string{} : *pick;
}

void token_checker::sweep(const std::set<std::string>& referenced, time_point t) {
  for (auto* m : {&negative_, &role_negative_}) {
    for (auto n = m->begin(); n != m->end();) n = t >= n->second.until ? m->erase(n) : std::next(n);
  }
  for (auto tk = tokens_.begin(); tk != tokens_.end();) {
    const bool busy = tk->second.recheck_in_flight || !tk->second.waiting.empty();
    if (busy || referenced.count(tk->first) != 0) {
      ++tk;
      continue;
    }
    spdlog::debug("credentials: {} forgotten: no lease or fetch uses it", name(tk->first));
    tk = tokens_.erase(tk);
  }
}

std::string token_checker::name(const std::string& hash) const {
  const token_entry* tok = find(hash);
  if (tok != nullptr && tok->has_info && !tok->info.accessor.empty()) return "accessor " + tok->info.accessor;
  return "token sha256:" + short_hash(hash);
}

}  // namespace vaultwire::detail
