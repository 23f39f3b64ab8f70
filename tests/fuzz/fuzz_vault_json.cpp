// Vault's answers as vault_client parses them (src/vault/vault_json.cpp): every input is
// given, as the body, to each 2xx parser (database creds, lease renew, lookup-self,
// renew-self, an auth method's login) and to the error path for a non-2xx status. A hostile or broken
// Vault (or whoever sits between) controls these bytes. Checks, besides the
// sanitizers:
// - a parsed credential has a lease id, a user name and a password, and no
//   negative durations; a parsed login has a client token;
// - no error text (the message, and to_client_message) contains the password or
//   the token the body carried, unless it is there without it too (fixed text, or
//   Vault's own errors[]): an error never leaks a secret;
// - every error on the 2xx path is bad_response (08001).
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "fuzz_check.hpp"
#include "vault/vault_client.hpp"

namespace {

using namespace vaultwire;

constexpr std::string_view address = "https://vault.example:8200";

// Where the secrets sit in Vault's answers: the database password, the token
// echoed by lookup-self (data.id) and renew-self (auth.client_token).
struct secret_at {
  const char* section;
  const char* key;
  std::string value;
};

std::vector<secret_at> secrets_in(const nlohmann::json& j) {
  std::vector<secret_at> out;
  if (!j.is_object()) return out;
  for (const char* section : {"data", "auth"}) {
    const auto s = j.find(section);
    if (s == j.end() || !s->is_object()) continue;
    for (const char* key : {"password", "id", "client_token"}) {
      const auto v = s->find(key);
      if (v != s->end() && v->is_string() && v->get_ref<const std::string&>().size() >= 4) {
        out.push_back({section, key, v->get<std::string>()});
      }
    }
  }
  return out;
}

// The text of an error as a client or a log line could see it; empty on success.
template <class T>
std::string error_text(const vault_result<T>& r) {
  if (r) return {};
  return r.error().message + '\n' + r.error().to_client_message();
}

// No error text contains a secret of the body. A secret that does show up may come
// from fixed text instead (the address, a key name, Vault's own errors[] that the
// error quotes on purpose): the body is parsed again with only that secret changed,
// and the text still holding it clears it.
template <class F>
void no_leak(std::string_view body, const nlohmann::json& j, const std::vector<secret_at>& secrets, F text_of) {
  const std::string text = text_of(body);
  for (const auto& s : secrets) {
    if (text.find(s.value) == std::string::npos) continue;
    nlohmann::json masked = j;
    masked[s.section][s.key] = std::string(s.value.size(), s.value[0] == '#' ? '%' : '#');
    const std::string again = text_of(masked.dump());
    FUZZ_CHECK(again.find(s.value) != std::string::npos);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  const auto j = nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
  const auto secrets = secrets_in(j);

  const auto creds = detail::parse_credential(body, address, "GET database/creds/app");
  if (creds) {
    const auto& c = creds.value();
    FUZZ_CHECK(!c.lease_id.empty() && !c.username.empty() && !c.password.view().empty());
    FUZZ_CHECK(c.lease_duration.count() >= 0);
  } else {
    FUZZ_CHECK(creds.error().kind == vault_error_kind::bad_response && creds.error().sqlstate() == "08001");
  }
  const auto renewal = detail::parse_lease_renewal(body, address, "PUT sys/leases/renew");
  if (renewal) FUZZ_CHECK(!renewal.value().lease_id.empty() && renewal.value().lease_duration.count() >= 0);
  const auto lookup = detail::parse_lookup_self(body, address, "GET auth/token/lookup-self");
  if (lookup) FUZZ_CHECK(lookup.value().ttl.count() >= 0);
  const auto renew_self = detail::parse_renew_self(body, address, "POST auth/token/renew-self");
  if (renew_self) FUZZ_CHECK(renew_self.value().ttl.count() >= 0);
  const auto login = detail::parse_login(body, address, "POST auth/approle/login");
  if (login) FUZZ_CHECK(!login.value().client_token.empty() && login.value().ttl.count() >= 0);
  for (const auto& e : {error_text(renewal), error_text(lookup), error_text(renew_self), error_text(login)}) {
    if (!e.empty()) FUZZ_CHECK(e.find("sent an answer vaultwire cannot use") != std::string::npos);
  }

  // The error path for one status, picked by the input's length.
  static constexpr int statuses[] = {307, 400, 403, 404, 429, 500, 503, 0};
  const int status = statuses[size % std::size(statuses)];
  const auto error_of = [status](std::string_view b) {
    return detail::error_from_response(status, b, "https://standby:8200/v1/x", address, "GET x");
  };
  const auto e = error_of(body);
  FUZZ_CHECK(e.http_status == status);
  FUZZ_CHECK(e.token_rejected() == (status == 400 || status == 403 || status == 404));

  if (!secrets.empty()) {
    no_leak(body, j, secrets, [](std::string_view b) {
      return error_text(detail::parse_credential(b, address, "GET database/creds/app"));
    });
    no_leak(body, j, secrets, [](std::string_view b) {
      return error_text(detail::parse_lookup_self(b, address, "GET auth/token/lookup-self"));
    });
    no_leak(body, j, secrets, [](std::string_view b) {
      return error_text(detail::parse_renew_self(b, address, "POST auth/token/renew-self"));
    });
    no_leak(body, j, secrets, [](std::string_view b) {
      return error_text(detail::parse_login(b, address, "POST auth/approle/login"));
    });
    no_leak(body, j, secrets, [&error_of](std::string_view b) {
      const auto err = error_of(b);
      return err.message + '\n' + err.to_client_message();
    });
  }
  (void)detail::condense_vault_error(body);
  return 0;
}
