// A scripted Vault for tests that need the broker without a Vault server: every
// call is recorded and answered inline (or held until the test completes it), and a
// clock the test advances. Used by the broker's unit tests and the session's
// component tests.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "credentials/broker.hpp"

namespace vwtest {

using namespace std::chrono_literals;
using pgwire::secret_string;
using vaultwire::vault_error;
using vaultwire::vault_error_kind;
using vaultwire::vault_result;

struct fake_clock {
  std::atomic<vaultwire::broker_clock::time_point> now{vaultwire::broker_clock::time_point{} + 1000h};
  void advance(std::chrono::milliseconds d) { now = now.load() + d; }
};

// An error with Vault's classification of `message` as its only errors[] entry
// ("permission denied" bare is a bad token; "lease not found" a lease gone).
inline vault_error make_error(vault_error_kind kind, int status, std::string message) {
  vault_error e;
  e.kind = kind;
  e.http_status = status;
  e.refusal = vaultwire::detail::classify_refusal(status, {message});
  e.message = std::move(message);
  e.address = "http://vault.test";
  return e;
}

// The error the Vault client makes of an answer with this status and errors[] as
// Vault writes them (multierror text and all), for `request`.
inline vault_error vault_answer(int status, const std::vector<std::string>& errors,
                                const std::string& request = "GET database/creds/app") {
  nlohmann::json body = {{"errors", errors}};
  return vaultwire::detail::error_from_response(status, body.dump(), "", "http://vault.test", request);
}

// Vault's ACL denial (CheckToken's multierror) and its refusal of a bad token (bare
// before Vault 1.17, with "invalid token" from 1.17 on).
inline const std::string acl_denied = "1 error occurred:\n\t* permission denied\n\n";
inline const std::string invalid_token_1_17 = "2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n";

// A scripted Vault. In inline mode every call answers before returning; otherwise
// creds requests wait in `pending_creds` until complete_creds().
struct fake_vault {
  std::mutex mutex;
  bool hold_creds = false;
  std::chrono::seconds lease_duration{100s};
  bool renewable = true;
  std::optional<vault_error> creds_error;
  std::map<std::string, vault_error> creds_error_for_role;  // answers for one role (after creds_error)
  std::optional<vault_error> lookup_error;
  std::optional<vault_error> renew_error;
  std::optional<vault_error> revoke_error;
  std::chrono::seconds renew_grant{0};  // 0: grant the increment asked for
  int serial = 0;

  std::vector<std::string> creds_tokens;   // token of each read_credentials
  std::vector<std::string> creds_roles;    // role of each read_credentials
  std::vector<std::string> lookup_tokens;
  std::vector<std::pair<std::string, std::string>> revokes;  // lease id, token
  std::vector<vaultwire::revoke_form> revoke_forms;         // one per revokes entry
  std::vector<std::pair<std::string, std::chrono::seconds>> renews;
  std::vector<std::string> renew_self_tokens;
  std::vector<std::chrono::seconds> renew_self_increments;  // one per renew_self_tokens entry
  std::chrono::seconds own_ttl{30s};
  // renew-self: an error, or what it grants (own_ttl unless set) and whether the token
  // stays renewable.
  std::optional<vault_error> renew_self_error;
  std::optional<std::chrono::seconds> renew_self_grant;
  bool renew_self_renewable = true;
  // auth/<mount>/login: each call's mount and body; the answer is an error, or a new
  // token "login-token-<n>" (accessor "login-acc-<n>") with these properties.
  std::vector<std::pair<std::string, std::string>> logins;
  std::optional<vault_error> login_error;
  std::chrono::seconds login_ttl{30s};
  bool login_renewable = true;
  std::string login_token_type = "service";
  int login_serial = 0;
  std::vector<vaultwire::vault_client::callback<vaultwire::vault_credential>> pending_creds;
  bool hold_lookups = false;  // lookup-self calls wait in pending_lookups
  std::vector<std::pair<std::string, vaultwire::vault_client::callback<vaultwire::vault_token_info>>> pending_lookups;

  // Vault stops answering: every call fails with `e` (until recover()).
  void outage(const vault_error& e) {
    std::lock_guard lock{mutex};
    creds_error = lookup_error = renew_error = revoke_error = renew_self_error = login_error = e;
  }
  void recover() {
    std::lock_guard lock{mutex};
    creds_error.reset();
    lookup_error.reset();
    renew_error.reset();
    revoke_error.reset();
    renew_self_error.reset();
    login_error.reset();
  }

  vault_result<vaultwire::vault_credential> next_credential(const std::string& token, const std::string& role = {}) {
    if (creds_error) return *creds_error;
    if (auto it = creds_error_for_role.find(role); it != creds_error_for_role.end()) return it->second;
    vaultwire::vault_credential c;
    ++serial;
    c.lease_id = "database/creds/app/lease-" + std::to_string(serial);
    c.username = "v-" + token + "-" + std::to_string(serial);
    c.password = secret_string("pw-" + std::to_string(serial));
    c.lease_duration = lease_duration;
    c.renewable = renewable;
    return c;
  }

  vaultwire::vault_calls calls() {
    vaultwire::vault_calls c;
    c.read_credentials = [this](std::string, std::string role, secret_string token, auto done) {
      std::unique_lock lock{mutex};
      creds_tokens.emplace_back(token.view());
      creds_roles.push_back(role);
      if (hold_creds) {
        pending_creds.push_back(std::move(done));
        return;
      }
      auto r = next_credential(std::string{token.view()}, role);
      lock.unlock();
      done(std::move(r));
    };
    c.lookup_self = [this](secret_string token, auto done) {
      std::unique_lock lock{mutex};
      lookup_tokens.emplace_back(token.view());
      if (hold_lookups) {
        pending_lookups.emplace_back(std::string{token.view()}, std::move(done));
        return;
      }
      vault_result<vaultwire::vault_token_info> r = vaultwire::vault_token_info{};
      if (lookup_error) {
        r = *lookup_error;
      } else {
        r.value().accessor = "acc-" + std::string{token.view()};
        r.value().display_name = "token-test";
        r.value().ttl = own_ttl;
        r.value().renewable = true;
      }
      lock.unlock();
      done(std::move(r));
    };
    c.renew_lease = [this](std::string lease_id, std::chrono::seconds increment, secret_string, auto done) {
      std::unique_lock lock{mutex};
      renews.emplace_back(lease_id, increment);
      vault_result<vaultwire::vault_lease_renewal> r = vaultwire::vault_lease_renewal{};
      if (renew_error) {
        r = *renew_error;
      } else {
        r.value().lease_id = lease_id;
        r.value().lease_duration = renew_grant.count() != 0 ? renew_grant : increment;
        r.value().renewable = true;
      }
      lock.unlock();
      done(std::move(r));
    };
    c.renew_self = [this](secret_string token, std::chrono::seconds increment, auto done) {
      std::unique_lock lock{mutex};
      renew_self_tokens.emplace_back(token.view());
      renew_self_increments.push_back(increment);
      vault_result<vaultwire::vault_token_info> r = vaultwire::vault_token_info{};
      if (renew_self_error) {
        r = *renew_self_error;
      } else {
        r.value().ttl = renew_self_grant.value_or(own_ttl);
        r.value().renewable = renew_self_renewable;
      }
      lock.unlock();
      done(std::move(r));
    };
    c.login = [this](std::string mount, secret_string body, auto done) {
      std::unique_lock lock{mutex};
      logins.emplace_back(mount, std::string{body.view()});
      vault_result<vaultwire::vault_login> r = vaultwire::vault_login{};
      if (login_error) {
        r = *login_error;
      } else {
        ++login_serial;
        r.value().client_token = secret_string("login-token-" + std::to_string(login_serial));
        r.value().accessor = "login-acc-" + std::to_string(login_serial);
        r.value().ttl = login_ttl;
        r.value().renewable = login_renewable;
        r.value().token_type = login_token_type;
      }
      lock.unlock();
      done(std::move(r));
    };
    c.revoke_lease = [this](std::string lease_id, secret_string token, vaultwire::revoke_form form, auto done) {
      std::unique_lock lock{mutex};
      revokes.emplace_back(lease_id, std::string{token.view()});
      revoke_forms.push_back(form);
      vault_result<void> r = boost::outcome_v2::success();
      if (revoke_error) r = *revoke_error;
      lock.unlock();
      done(std::move(r));
    };
    return c;
  }

  // Answers every held creds request (with one credential, or the error).
  void complete_creds(const std::string& token) {
    std::unique_lock lock{mutex};
    auto pending = std::move(pending_creds);
    pending_creds.clear();
    std::vector<vault_result<vaultwire::vault_credential>> results;
    for (std::size_t i = 0; i < pending.size(); ++i) results.push_back(next_credential(token));
    lock.unlock();
    for (std::size_t i = 0; i < pending.size(); ++i) pending[i](std::move(results[i]));
  }

  std::size_t creds_count() {
    std::lock_guard lock{mutex};
    return creds_tokens.size();
  }
  std::size_t lookup_count() {
    std::lock_guard lock{mutex};
    return lookup_tokens.size();
  }
  std::size_t login_count() {
    std::lock_guard lock{mutex};
    return logins.size();
  }
  std::size_t renew_self_count() {
    std::lock_guard lock{mutex};
    return renew_self_tokens.size();
  }
  std::size_t lookup_count_for(const std::string& token) {
    std::lock_guard lock{mutex};
    return static_cast<std::size_t>(std::count(lookup_tokens.begin(), lookup_tokens.end(), token));
  }
  std::size_t creds_count_for(const std::string& role) {
    std::lock_guard lock{mutex};
    return static_cast<std::size_t>(std::count(creds_roles.begin(), creds_roles.end(), role));
  }

  // Answers the held lookup-self calls for `token`: an error, or the token's info.
  void complete_lookups(const std::string& token, std::optional<vault_error> error = std::nullopt) {
    std::unique_lock lock{mutex};
    std::vector<vaultwire::vault_client::callback<vaultwire::vault_token_info>> done;
    for (auto it = pending_lookups.begin(); it != pending_lookups.end();) {
      if (it->first != token) {
        ++it;
        continue;
      }
      done.push_back(std::move(it->second));
      it = pending_lookups.erase(it);
    }
    lock.unlock();
    for (auto& d : done) {
      vault_result<vaultwire::vault_token_info> r = vaultwire::vault_token_info{};
      if (error) {
        r = *error;
      } else {
        r.value().accessor = "acc-" + token;
        r.value().ttl = own_ttl;
      }
      d(std::move(r));
    }
  }
};

}  // namespace vwtest
