// vault_guard: see vault_guard.hpp.
#include "proxy/vault_guard.hpp"

#include <spdlog/spdlog.h>

namespace vaultwire::detail {

bool vault_guard::verified() const {
  std::lock_guard lock(mutex_);
  return verified_;
}

void vault_guard::record(const token_substitution_check& check) {
  std::lock_guard lock(mutex_);
  const bool was = verified_;
  verified_ = check.verdict == token_substitution::absent;
  if (verified_) {
    if (!was) spdlog::info("vault: Vault at {} refused a made-up token: it does not replace client tokens", check.address);
    reason_.clear();
    return;
  }
  const std::string reason = check.message;
  if (check.verdict == token_substitution::present && reason != reason_) {
    spdlog::error("vault: {}; new sessions are refused", reason);
  }
  reason_ = reason;
}

void vault_guard::reload_refused(std::string cause) {
  std::lock_guard lock(mutex_);
  reload_refused_ = std::move(cause);
}

void vault_guard::reload_applied(bool vault_changed, const token_substitution_check* check) {
  {
    std::lock_guard lock(mutex_);
    reload_refused_.clear();
    if (!vault_changed) return;
    verified_ = false;
    reason_ = "not checked yet";
  }
  if (check != nullptr) record(*check);
}

std::string vault_guard::reload_refusal() const {
  std::lock_guard lock(mutex_);
  if (reload_refused_.empty()) return {};
  return "reload refused, running the previous configuration: " + reload_refused_;
}

std::string vault_guard::unverified_reason() const {
  std::lock_guard lock(mutex_);
  if (verified_) return {};
  return "vaultwire has not seen Vault refuse a made-up token (the check that it does not replace client "
         "tokens): " +
         reason_;
}

void vault_guard::check_in_background(vault_client& client, std::string address) {
  {
    std::lock_guard lock(mutex_);
    if (verified_ || in_flight_) return;
    in_flight_ = true;
  }
  std::weak_ptr<vault_guard> weak = weak_from_this();
  request_token_substitution_check(client, [weak, address = std::move(address)](vault_result<vault_response> r) {
    auto self = weak.lock();
    if (!self) return;
    self->record(token_substitution_of(r, address));
    std::lock_guard lock(self->mutex_);
    self->in_flight_ = false;
  });
}

}  // namespace vaultwire::detail
