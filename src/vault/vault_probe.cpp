// The check for a Vault Proxy or Vault Agent that replaces client tokens: see
// token_substitution in vault_client.hpp.
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <stdexcept>

#include "vault/vault_client.hpp"

namespace vaultwire {

namespace {

// 128 random bits in a form Vault never issues (its tokens are hvs./hvb./s. followed
// by base62 or base64url), so no Vault knows it; no dot, so Vault reads no namespace
// suffix in it and answers 403 permission denied; the prefix names it in Vault's audit.
pgwire::secret_string made_up_token() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) throw std::runtime_error("RAND_bytes failed");
  static constexpr char hex[] = "0123456789abcdef";
  std::string t = "vaultwire-check-";
  for (unsigned char b : bytes) {
    t.push_back(hex[b >> 4]);
    t.push_back(hex[b & 15]);
  }
  return pgwire::secret_string(t);
}

}  // namespace

void request_token_substitution_check(vault_client& client, vault_client::callback<vault_response> done) {
  client.request("GET", "auth/token/lookup-self", "", made_up_token(), std::move(done));
}

token_substitution_check token_substitution_of(vault_result<vault_response>& answer, std::string_view address) {
  token_substitution_check c;
  c.address = std::string(address);
  if (answer) {
    // A proxy that replaced the token answered with its own token's lookup.
    std::string& body = answer.value().body;
    OPENSSL_cleanse(body.data(), body.size());
    c.verdict = token_substitution::present;
    c.message = "Vault at " + std::string(address) + " answered auth/token/lookup-self with HTTP " +
                std::to_string(answer.value().http_status) +
                " for a made-up token: what listens there replaces each client's token with its own (Vault "
                "Proxy or Vault Agent with use_auto_auth_token = \"force\"), so any password would get a "
                "database credential; point vault.address at Vault, or at a proxy without \"force\"";
    return c;
  }
  if (answer.error().token_rejected()) {
    c.verdict = token_substitution::absent;
    return c;
  }
  c.verdict = token_substitution::unknown;
  c.message = answer.error().to_client_message();
  return c;
}

token_substitution_check check_token_substitution_blocking(vault_client& client, std::string_view address) {
  auto answer = client.request_blocking("GET", "auth/token/lookup-self", "", made_up_token());
  return token_substitution_of(answer, address);
}

}  // namespace vaultwire
