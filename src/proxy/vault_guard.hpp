// vault_guard: whether the Vault that vaultwire talks to has been seen to refuse a
// made-up token, i.e. does not replace client tokens with its own (Vault Proxy or
// Vault Agent with use_auto_auth_token = "force": see token_substitution in
// vault/vault_client.hpp). Until it has, every new session checks on its way in
// (one lookup-self), so a token is never sent where any password would do; /readyz
// names what is wrong. Thread-safe; no Asio.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "vault/vault_client.hpp"

namespace vaultwire::detail {

class vault_guard : public std::enable_shared_from_this<vault_guard> {
 public:
  [[nodiscard]] bool verified() const;

  // A check of the running configuration's Vault: absent verifies it; present or
  // unknown leave it unverified, with the message as the reason /readyz gives.
  // Logs a change.
  void record(const token_substitution_check& check);

  // A reload pointed at a Vault that replaces tokens and kept the running
  // configuration: /readyz answers 503 with `cause` until a reload is applied.
  void reload_refused(std::string cause);
  // A reload was applied: forgets a refused one. `vault_changed`: the new Vault has
  // not been checked (`check`, when it was, says how it answered).
  void reload_applied(bool vault_changed, const token_substitution_check* check);

  // Why /readyz is not ready, or "": a refused reload first, then an unverified Vault.
  [[nodiscard]] std::string reload_refusal() const;
  [[nodiscard]] std::string unverified_reason() const;

  // While unverified and no check is in flight: checks `client` in the background
  // (its answer goes to record()). `address` is the one to name.
  void check_in_background(vault_client& client, std::string address);

 private:
  mutable std::mutex mutex_;
  bool verified_ = false;
  bool in_flight_ = false;
  std::string reason_ = "not checked yet";  // while unverified
  std::string reload_refused_;
};

}  // namespace vaultwire::detail
