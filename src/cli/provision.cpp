// provision: see vaultwire/provision.hpp.
#include "vaultwire/provision.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <set>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>
#include <openssl/crypto.h>

#include "pgwire/secret.hpp"
#include "vaultwire/config.hpp"
#include "cli/provision_util.hpp"
#include "vault/vault_client.hpp"

namespace vaultwire {

namespace {

using namespace provision_util;

// One provisioning run against Vault. Each step prints one report line
// "<step> <path>: created|updated (fields)|unchanged" or an error naming the step.
class provisioner {
 public:
  provisioner(const provision_options& o, vault_client& vault, pgwire::secret_string token, std::FILE* rep,
              std::FILE* err, std::FILE* out)
      : o_(o), vault_(vault), token_(std::move(token)), rep_(rep), err_(err), out_(out) {}

  int run() {
    if (!mount() || !config() || !role() || !policy("policy", o_.policy, detail::client_policy_hcl(o_))) return 1;
    if (!o_.vaultwire_token_file.empty()) {
      if (!policy("vaultwire-policy", o_.vaultwire_policy, detail::vaultwire_policy_hcl(o_))) return 1;
      if (!vaultwire_token()) return 1;
    }
    if (!o_.vaultwire_auth.empty()) {
      if (!policy("vaultwire-policy", o_.vaultwire_policy, detail::vaultwire_policy_hcl(o_))) return 1;
      if (!auth_method() || !auth_object("auth-config", detail::auth_config_path(o_), true) ||
          !auth_object("auth-role", detail::auth_role_path(o_), false)) {
        return 1;
      }
      if (o_.vaultwire_auth == "approle" && !approle_ids()) return 1;
    }
    if (o_.create_token && !client_token()) return 1;
    return 0;
  }

 private:
  bool fail(std::string_view step, const std::string& what) {
    std::fprintf(err_, "error: step %.*s: %s\n", static_cast<int>(step.size()), step.data(), what.c_str());
    return false;
  }

  void report(std::string_view step, const std::string& path, const std::string& status) {
    std::fprintf(rep_, "%.*s %s: %s\n", static_cast<int>(step.size()), step.data(), path.c_str(), status.c_str());
    std::fflush(rep_);
  }

  // nullopt: the object does not exist (404). An error: fail() was called.
  struct read_result {
    bool ok = false;
    std::optional<std::string> body;
  };
  read_result read(std::string_view step, const std::string& path) {
    auto r = vault_.request_blocking("GET", path, {}, token_);
    if (!r) {
      if (r.error().kind == vault_error_kind::not_found) return {true, std::nullopt};
      fail(step, describe(r.error()));
      return {false, std::nullopt};
    }
    return {true, std::move(r.value().body)};
  }

  bool write(std::string_view step, std::string_view method, const std::string& path, std::string_view body) {
    auto r = vault_.request_blocking(method, path, body, token_);
    if (!r) return fail(step, describe(r.error()));
    if (!r.value().body.empty()) {
      const json j = json::parse(r.value().body, nullptr, false);
      if (j.is_object() && j.contains("warnings") && j["warnings"].is_array()) {
        for (const auto& w : j["warnings"]) {
          if (w.is_string()) {
            std::fprintf(err_, "warning: step %.*s: Vault: %s\n", static_cast<int>(step.size()), step.data(),
                         w.get<std::string>().c_str());
          }
        }
      }
    }
    return true;
  }

  bool mount() {
    const auto r = read("mount", "sys/mounts");
    if (!r.ok) return false;
    const json d = data_of(r.body.value_or("{}"));
    const std::string key = o_.mount + "/";
    if (d.is_object() && d.contains(key)) {
      const std::string type = str_member(d[key], "type");
      if (type != "database") {
        return fail("mount", "sys/mounts/" + o_.mount + " is already a mount of type \"" + type +
                                 "\", not \"database\"; choose another --mount");
      }
      report("mount", key, "unchanged");
      return true;
    }
    const json body{{"type", "database"}, {"description", "vaultwire: dynamic database credentials"}};
    if (!write("mount", "POST", "sys/mounts/" + mount_path(o_), body.dump())) return false;
    report("mount", key, "created");
    return true;
  }

  bool config() {
    const std::string path = config_path(o_);
    const auto r = read("config", path);
    if (!r.ok) return false;
    std::vector<std::string> diffs;
    std::vector<std::string> allowed{o_.role};
    if (r.body) {
      diffs = detail::config_differences(*r.body, o_);
      const json d = data_of(*r.body);
      const auto existing = str_list(d.is_object() && d.contains("allowed_roles") ? d["allowed_roles"] : json());
      allowed = existing;
      if (std::find(existing.begin(), existing.end(), o_.role) == existing.end() &&
          std::find(existing.begin(), existing.end(), "*") == existing.end()) {
        allowed.push_back(o_.role);  // other roles sharing the connection keep working
      }
      if (diffs.empty() && !o_.write_password) {
        report("config", path, "unchanged");
        return true;
      }
    }
    const bool need_password = !r.body || o_.write_password ||
                               std::find(diffs.begin(), diffs.end(), "username") != diffs.end();
    json body{{"plugin_name", plugin_name},
              {"connection_url", detail::templated_connection_url(o_)},
              {"username", o_.admin_user},
              {"allowed_roles", allowed},
              {"verify_connection", true}};
    std::string head = body.dump();  // no secret in it
    pgwire::secret_string full;
    if (need_password) {
      if (o_.admin_password_file.empty()) {
        return fail("config", std::string(r.body ? "the admin user changes" : "the connection is new") +
                                  ": the admin password is needed; give --admin-password-file PATH (or - for stdin)");
      }
      pgwire::secret_string password;
      if (const auto e = read_secret(o_.admin_password_file, password); !e.empty()) return fail("config", e);
      full.reserve(head.size() + password.size() * 6 + 16);
      full.append(std::string_view(head).substr(0, head.size() - 1));
      full.append(",\"password\":");
      append_json_string(full, password.view());
      full.append('}');
    } else {
      full.append(head);
    }
    if (!write("config", "POST", path, full.view())) return false;
    if (!r.body) {
      report("config", path, "created");
    } else {
      if (need_password && std::find(diffs.begin(), diffs.end(), "password") == diffs.end()) {
        diffs.push_back("password");
      }
      report("config", path, "updated (" + join(diffs, ", ") + ")");
    }
    return true;
  }

  bool role() {
    const std::string path = role_path(o_);
    const auto r = read("role", path);
    if (!r.ok) return false;
    std::vector<std::string> diffs;
    if (r.body) {
      diffs = detail::role_differences(*r.body, o_);
      if (diffs.empty()) {
        report("role", path, "unchanged");
        return true;
      }
    }
    if (!write("role", "POST", path, role_body(o_).dump())) return false;
    report("role", path, r.body ? "updated (" + join(diffs, ", ") + ")" : "created");
    return true;
  }

  bool policy(std::string_view step, const std::string& name, const std::string& hcl) {
    const std::string path = policy_path(name);
    const auto r = read(step, path);
    if (!r.ok) return false;
    if (r.body) {
      if (str_member(data_of(*r.body), "policy") == hcl) {
        report(step, path, "unchanged");
        return true;
      }
    }
    if (!write(step, "PUT", path, json{{"policy", hcl}}.dump())) return false;
    report(step, path, r.body ? "updated (policy)" : "created");
    return true;
  }

  // POST auth/token/create-orphan (a child of the administrator's token would die
  // with it, and its leases with it); the token into `token`, a description
  // (accessor, TTL, policies) as the result.
  std::optional<std::string> mint(std::string_view step, const json& body, pgwire::secret_string& token) {
    auto r = vault_.request_blocking("POST", token_create_path, body.dump(), token_);
    if (!r) {
      fail(step, describe(r.error()));
      return std::nullopt;
    }
    json j = json::parse(r.value().body, nullptr, false);
    wipe(r.value().body);
    if (j.is_discarded() || !j.contains("auth") || !j["auth"].is_object() || !j["auth"].contains("client_token") ||
        !j["auth"]["client_token"].is_string()) {
      fail(step, "POST " + std::string(token_create_path) + ": Vault's answer has no auth.client_token");
      return std::nullopt;
    }
    auto& secret = j["auth"]["client_token"].get_ref<std::string&>();
    token = pgwire::secret_string(std::string_view(secret));
    wipe(secret);
    const json& a = j["auth"];
    std::string info = "accessor " + str_member(a, "accessor");
    if (a.contains("lease_duration") && a["lease_duration"].is_number()) {
      info += ", ttl " + std::to_string(a["lease_duration"].get<long long>()) + "s";
    }
    info += ", policies " + join(str_list(a.contains("policies") ? a["policies"] : json()), ",");
    return info;
  }

  bool vaultwire_token() {
    const std::string& path = o_.vaultwire_token_file;
    // A token already in the file that Vault still accepts, with the policy, is kept,
    // unless it has a parent (it would die with it).
    std::string replaced;
    if (std::filesystem::exists(path)) {
      pgwire::secret_string existing;
      if (read_secret(path, existing).empty()) {
        auto info = vault_.lookup_self_blocking(existing);
        if (info) {
          const auto& p = info.value().policies;
          const bool has_policy = std::find(p.begin(), p.end(), o_.vaultwire_policy) != p.end();
          if (has_policy && info.value().orphan) {
            report("vaultwire-token", path,
                   "unchanged (accessor " + info.value().accessor + ", ttl " +
                       std::to_string(info.value().ttl.count()) + "s)");
            return true;
          }
          if (has_policy) replaced = "; replaces accessor " + info.value().accessor + ", which was not an orphan";
        }
      }
    }
    pgwire::secret_string token;
    const auto info = mint("vaultwire-token", token_body(o_.vaultwire_policy, o_.vaultwire_token_ttl, "vaultwire"),
                           token);
    if (!info) return false;
    if (const auto e = write_secret_file(path, token); !e.empty()) return fail("vaultwire-token", e);
    report("vaultwire-token", path, "created (" + *info + replaced + ")");
    return true;
  }

  // sys/auth/<mount>: enabled unless a method of that type is there already.
  bool auth_method() {
    const std::string mount = detail::auth_mount(o_);
    const auto r = read("auth-mount", "sys/auth");
    if (!r.ok) return false;
    const json d = data_of(r.body.value_or("{}"));
    const std::string key = mount + "/";
    if (d.is_object() && d.contains(key)) {
      const std::string type = str_member(d[key], "type");
      if (type != o_.vaultwire_auth) {
        return fail("auth-mount", "sys/auth/" + mount + " is already an auth method of type \"" + type +
                                      "\", not \"" + o_.vaultwire_auth + "\"; choose another --vaultwire-auth-mount");
      }
      report("auth-mount", "auth/" + key, "unchanged");
      return true;
    }
    const json body{{"type", o_.vaultwire_auth}, {"description", "vaultwire: its own login"}};
    if (!write("auth-mount", "POST", "sys/auth/" + detail::escape_path(mount, true), body.dump())) return false;
    report("auth-mount", "auth/" + key, "created");
    return true;
  }

  // The method's config (kubernetes, jwt) or vaultwire's role: read, compared, written
  // when it differs. The files it names hold public material (CA, public keys, a
  // certificate).
  bool auth_object(std::string_view step, const std::string& path, bool config) {
    std::string file_error;
    const auto text = [&file_error](const std::string& file) {
      std::ifstream in(file, std::ios::binary);
      if (!in) {
        if (file_error.empty()) file_error = "cannot read " + file + ": " + std::strerror(errno);
        return std::string();
      }
      std::string t((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      if (t.empty() && file_error.empty()) file_error = file + " is empty";
      return t;
    };
    const std::string want = config ? detail::auth_config_json(o_, text) : detail::auth_role_json(o_, text);
    if (want.empty()) return true;  // approle and cert have no config to write
    if (!file_error.empty()) return fail(step, file_error);
    if (!config && !o_.vaultwire_client_ca.empty() &&
        detail::certificate_common_name(text(o_.vaultwire_client_cert)).empty()) {
      return fail(step, o_.vaultwire_client_cert + ": no certificate with a common name (CN) in it, which "
                                                   "allowed_common_names would bind the CA to");
    }
    const auto r = read(step, path);
    if (!r.ok) return false;
    std::vector<std::string> diffs;
    if (r.body) {
      diffs = detail::auth_differences(*r.body, want);
      if (diffs.empty()) {
        report(step, path, "unchanged");
        return true;
      }
    }
    if (!write(step, "POST", path, want)) return false;
    report(step, path, r.body ? "updated (" + join(diffs, ", ") + ")" : "created");
    return true;
  }

  // AppRole: the role ID and a secret ID in 0600 files. A secret ID already in its file
  // that Vault still knows (secret-id/lookup) is kept; else a new one is generated.
  bool approle_ids() {
    const std::string role_path = detail::auth_role_path(o_);
    auto r = vault_.request_blocking("GET", role_path + "/role-id", {}, token_);
    if (!r) return fail("role-id", describe(r.error()));
    const std::string role_id = str_member(data_of(r.value().body), "role_id");
    if (role_id.empty()) return fail("role-id", "GET " + role_path + "/role-id: Vault's answer has no role_id");
    pgwire::secret_string existing_role;
    const bool same_role = std::filesystem::exists(o_.role_id_file) &&
                           read_secret(o_.role_id_file, existing_role).empty() && existing_role.view() == role_id;
    if (same_role) {
      report("role-id", o_.role_id_file, "unchanged");
    } else {
      if (const auto e = write_secret_file(o_.role_id_file, pgwire::secret_string(std::string_view(role_id)));
          !e.empty()) {
        return fail("role-id", e);
      }
      report("role-id", o_.role_id_file, "written");
    }
    if (same_role && std::filesystem::exists(o_.secret_id_file)) {
      pgwire::secret_string existing;
      if (read_secret(o_.secret_id_file, existing).empty()) {
        pgwire::secret_string body;
        body.append("{\"secret_id\":");
        append_json_string(body, existing.view());
        body.append('}');
        auto l = vault_.request_blocking("POST", role_path + "/secret-id/lookup", body.view(), token_);
        if (!l) return fail("secret-id", describe(l.error()));
        const json d = data_of(l.value().body);
        if (d.is_object() && d.contains("secret_id_accessor")) {
          report("secret-id", o_.secret_id_file,
                 "unchanged (accessor " + str_member(d, "secret_id_accessor") + ")");
          return true;
        }
      }
    }
    auto g = vault_.request_blocking("POST", role_path + "/secret-id", "{}", token_);
    if (!g) return fail("secret-id", describe(g.error()));
    json j = json::parse(g.value().body, nullptr, false);
    wipe(g.value().body);
    if (j.is_discarded() || !j.contains("data") || !j["data"].is_object() || !j["data"].contains("secret_id") ||
        !j["data"]["secret_id"].is_string()) {
      return fail("secret-id", "POST " + role_path + "/secret-id: Vault's answer has no data.secret_id");
    }
    auto& secret = j["data"]["secret_id"].get_ref<std::string&>();
    const pgwire::secret_string secret_id{std::string_view(secret)};
    wipe(secret);
    if (const auto e = write_secret_file(o_.secret_id_file, secret_id); !e.empty()) return fail("secret-id", e);
    report("secret-id", o_.secret_id_file, "created (accessor " + str_member(j["data"], "secret_id_accessor") + ")");
    return true;
  }

  bool client_token() {
    pgwire::secret_string token;
    const auto info = mint("client-token", token_body(o_.policy, o_.token_ttl, nullptr), token);
    if (!info) return false;
    if (o_.client_token_file == "-") {
      std::fwrite(token.view().data(), 1, token.size(), out_);
      std::fputc('\n', out_);
      std::fflush(out_);
      report("client-token", "stdout", "created (" + *info + ")");
      return true;
    }
    if (const auto e = write_secret_file(o_.client_token_file, token); !e.empty()) return fail("client-token", e);
    report("client-token", o_.client_token_file, "created (" + *info + ")");
    return true;
  }

  const provision_options& o_;
  vault_client& vault_;
  pgwire::secret_string token_;
  std::FILE* rep_;
  std::FILE* err_;
  std::FILE* out_;
};

void print_guide(const provision_options& o, std::FILE* rep) {
  const std::string url = detail::client_url(o);
  std::fprintf(rep, "\n# Connect through vaultwire; the password is the client's Vault token:\n");
  if (o.create_token && o.client_token_file != "-") {
    std::fprintf(rep, "export VAULT_CLIENT_TOKEN=\"$(cat %s)\"\n", o.client_token_file.c_str());
  }
  std::fprintf(rep, "cockroach sql --url \"%s\"\n", url.c_str());
  std::fprintf(rep, "psql \"%s\"\n", url.c_str());
  std::fprintf(rep, "\n# ---- vaultwire.toml ----\n%s# ---- end of vaultwire.toml ----\n", detail::route_toml(o).c_str());
  std::fprintf(rep, "\n%s", detail::owner_role_sql(o).c_str());
  if (const auto notes = detail::connection_notes(o); !notes.empty()) std::fprintf(rep, "\n%s", notes.c_str());
  std::fflush(rep);
}

}  // namespace

void provision_options_from_env(provision_options& o) {
  if (o.vault_addr.empty()) o.vault_addr = env_or_empty("VAULT_ADDR");
  if (o.vault_namespace.empty()) o.vault_namespace = env_or_empty("VAULT_NAMESPACE");
  if (o.vault_cacert.empty()) o.vault_cacert = env_or_empty("VAULT_CACERT");
}


int run_provision(provision_options o, std::FILE* out, std::FILE* err) {
  complete(o);
  const auto problems = detail::validate_provision_options(o);
  if (!problems.empty()) {
    for (const auto& p : problems) std::fprintf(err, "error: %s\n", p.c_str());
    return 2;
  }
  // With the client token on stdout, stdout carries nothing else.
  std::FILE* rep = o.client_token_file == "-" ? err : out;
  if (o.dry_run) {
    std::fputs(detail::dry_run_text(o).c_str(), rep);
    print_guide(o, rep);
    return 0;
  }
  std::string token = vault_token_from_env();
  if (token.empty()) {
    std::fprintf(err, "error: no Vault token: set VAULT_TOKEN (or log in so that ~/.vault-token exists)\n");
    return 2;
  }
  vault_client_options vo;
  vo.address = o.vault_addr;
  vo.vault_namespace = o.vault_namespace;
  vo.ca_file = o.vault_cacert;
  vo.request_timeout = o.request_timeout;
  vo.threads = 1;
  try {
    vault_client vault(vo);
    std::fprintf(rep, "# vaultwire provision: Vault %s%s, mount %s/, role %s\n", o.vault_addr.c_str(),
                 o.vault_namespace.empty() ? "" : (" namespace " + o.vault_namespace).c_str(), o.mount.c_str(),
                 o.role.c_str());
    provisioner p(o, vault, pgwire::secret_string(std::string_view(token)), rep, err, out);
    wipe(token);
    const int rc = p.run();
    if (rc != 0) return rc;
  } catch (const std::exception& e) {
    wipe(token);
    std::fprintf(err, "error: %s\n", e.what());
    return 2;
  }
  print_guide(o, rep);
  return 0;
}

}  // namespace vaultwire
