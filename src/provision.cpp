// provision: see include/vaultwire/provision.hpp.
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
#include "vaultwire/vault_client.hpp"

namespace vaultwire {

namespace {

using json = nlohmann::json;

const std::string plugin_name = "postgresql-database-plugin";

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

void wipe(std::string& s) noexcept {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

// JSON string literal of `bytes` appended to `out` (RFC 8259 escaping).
void append_json_string(pgwire::secret_string& out, std::string_view bytes) {
  static constexpr char hex[] = "0123456789abcdef";
  out.append('"');
  for (const char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out.append('\\');
      out.append(ch);
    } else if (c < 0x20) {
      out.append("\\u00");
      out.append(hex[c >> 4]);
      out.append(hex[c & 0xF]);
    } else {
      out.append(ch);
    }
  }
  out.append('"');
}

std::string toml_string(std::string_view s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string hcl_string(std::string_view s) { return toml_string(s); }

bool valid_name(std::string_view s) {
  if (s.empty() || s.front() == '/' || s.back() == '/') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '/';
  });
}

// The value of an optional JSON string member, or "".
std::string str_member(const json& j, const char* key) {
  if (!j.is_object()) return {};
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::vector<std::string> str_list(const json& j) {
  std::vector<std::string> out;
  if (j.is_array()) {
    for (const auto& e : j) {
      if (e.is_string()) out.push_back(e.get<std::string>());
    }
  } else if (j.is_string()) {
    std::stringstream ss(j.get<std::string>());
    std::string item;
    while (std::getline(ss, item, ',')) {
      if (!item.empty()) out.push_back(item);
    }
  }
  return out;
}

// A GET answer's "data" (or the object itself for answers without one).
json data_of(std::string_view body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return json();
  if (j.contains("data") && j["data"].is_object()) return j["data"];
  return j;
}

std::string join(const std::vector<std::string>& v, std::string_view sep) {
  std::string out;
  for (const auto& s : v) {
    if (!out.empty()) out += sep;
    out += s;
  }
  return out;
}

// "127.0.0.1:26257" / "[::1]:26257" -> (host as written in a URL, port).
std::pair<std::string, std::string> split_host_port(std::string_view listen) {
  const auto colon = listen.rfind(':');
  if (colon == std::string_view::npos) return {std::string(listen), "26257"};
  return {std::string(listen.substr(0, colon)), std::string(listen.substr(colon + 1))};
}

std::string describe(const vault_error& e) {
  std::string s = e.request.empty() ? std::string() : e.request + ": ";
  if (e.http_status > 0) {
    s += "Vault answered HTTP " + std::to_string(e.http_status) + ": " +
         (e.message.empty() ? std::string("(no error text)") : e.message);
  } else {
    s += "Vault at " + e.address + ": " + std::string(to_string(e.kind)) + ": " + e.message;
  }
  return s;
}

// Reads the whole file ("-" = stdin) into a secret; one trailing "\n" / "\r\n" is
// dropped. Error text on failure (never the content).
std::string read_secret(const std::string& path, pgwire::secret_string& out) {
  std::string buf;
  if (path == "-") {
    buf.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::ifstream in(path, std::ios::binary);
    if (!in) return "cannot read " + path + ": " + std::strerror(errno);
    buf.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::size_t n = buf.size();
  if (n > 0 && buf[n - 1] == '\n') --n;
  if (n > 0 && buf[n - 1] == '\r') --n;
  out = pgwire::secret_string(std::string_view(buf.data(), n));
  wipe(buf);
  if (out.empty()) return (path == "-" ? std::string("stdin") : path) + " is empty";
  return {};
}

// Writes `secret` + "\n" to path with mode 0600 (a temporary file in the same
// directory, renamed over path). Error text on failure.
std::string write_secret_file(const std::string& path, const pgwire::secret_string& secret) {
  std::string tmpl = path + ".tmp-XXXXXX";
  const int fd = ::mkstemp(tmpl.data());  // mode 0600
  if (fd < 0) return "cannot create a file next to " + path + ": " + std::strerror(errno);
  bool ok = ::fchmod(fd, 0600) == 0;
  pgwire::secret_string content = secret.clone();
  content.append('\n');
  std::size_t off = 0;
  while (ok && off < content.size()) {
    const ssize_t w = ::write(fd, content.view().data() + off, content.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      ok = false;
      break;
    }
    off += static_cast<std::size_t>(w);
  }
  const int saved = errno;
  ok = ok && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmpl.c_str(), path.c_str()) != 0) {
    const int e = ok ? errno : saved;
    ::unlink(tmpl.c_str());
    return "cannot write " + path + ": " + std::strerror(e);
  }
  return {};
}

std::string vault_token_from_env() {
  std::string t = env_or_empty("VAULT_TOKEN");
  if (!t.empty()) return t;
  const std::string home = env_or_empty("HOME");
  if (home.empty()) return {};
  std::ifstream in(home + "/.vault-token", std::ios::binary);
  if (!in) return {};
  t.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r' || t.back() == ' ')) t.pop_back();
  return t;
}

json role_body(const provision_options& o) {
  return json{{"db_name", o.config_name},
              {"creation_statements", detail::creation_statements(o)},
              {"revocation_statements", detail::revocation_statements(o)},
              {"default_ttl", *detail::duration_seconds(o.default_ttl)},
              {"max_ttl", *detail::duration_seconds(o.max_ttl)}};
}

json token_body(const std::string& policy, const std::string& ttl, const char* display_name) {
  json b{{"policies", json::array({policy})}, {"renewable", true}};
  if (display_name) b["display_name"] = display_name;
  if (!ttl.empty()) b["ttl"] = ttl;
  return b;
}

std::string mount_path(const provision_options& o) { return detail::escape_path(o.mount, true); }
std::string config_path(const provision_options& o) {
  return mount_path(o) + "/config/" + detail::escape_path(o.config_name, false);
}
std::string role_path(const provision_options& o) {
  return mount_path(o) + "/roles/" + detail::escape_path(o.role, false);
}
std::string policy_path(const std::string& name) { return "sys/policies/acl/" + detail::escape_path(name, false); }

// Fills the defaults that depend on other options.
void complete(provision_options& o) {
  while (!o.mount.empty() && o.mount.back() == '/') o.mount.pop_back();
  while (!o.mount.empty() && o.mount.front() == '/') o.mount.erase(0, 1);
  if (o.policy.empty()) o.policy = o.role + "-client";
  if (o.vaultwire_policy.empty()) o.vaultwire_policy = o.role + "-vaultwire";
  if (o.route_ca_file.empty()) o.route_ca_file = o.sslrootcert;
  while (!o.vault_addr.empty() && o.vault_addr.back() == '/') o.vault_addr.pop_back();
}

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

  // POST auth/token/create; the token into `token`, a description (accessor, TTL,
  // policies) as the result.
  std::optional<std::string> mint(std::string_view step, const json& body, pgwire::secret_string& token) {
    auto r = vault_.request_blocking("POST", "auth/token/create", body.dump(), token_);
    if (!r) {
      fail(step, describe(r.error()));
      return std::nullopt;
    }
    json j = json::parse(r.value().body, nullptr, false);
    wipe(r.value().body);
    if (j.is_discarded() || !j.contains("auth") || !j["auth"].is_object() || !j["auth"].contains("client_token") ||
        !j["auth"]["client_token"].is_string()) {
      fail(step, "POST auth/token/create: Vault's answer has no auth.client_token");
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
    // A token already in the file that Vault still accepts, with the policy, is kept.
    if (std::filesystem::exists(path)) {
      pgwire::secret_string existing;
      if (read_secret(path, existing).empty()) {
        auto info = vault_.lookup_self_blocking(existing);
        if (info) {
          const auto& p = info.value().policies;
          if (std::find(p.begin(), p.end(), o_.vaultwire_policy) != p.end()) {
            report("vaultwire-token", path,
                   "unchanged (accessor " + info.value().accessor + ", ttl " +
                       std::to_string(info.value().ttl.count()) + "s)");
            return true;
          }
        }
      }
    }
    pgwire::secret_string token;
    const auto info = mint("vaultwire-token", token_body(o_.vaultwire_policy, o_.vaultwire_token_ttl, "vaultwire"),
                           token);
    if (!info) return false;
    if (const auto e = write_secret_file(path, token); !e.empty()) return fail("vaultwire-token", e);
    report("vaultwire-token", path, "created (" + *info + ")");
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
  std::fflush(rep);
}

}  // namespace

void provision_options_from_env(provision_options& o) {
  if (o.vault_addr.empty()) o.vault_addr = env_or_empty("VAULT_ADDR");
  if (o.vault_namespace.empty()) o.vault_namespace = env_or_empty("VAULT_NAMESPACE");
  if (o.vault_cacert.empty()) o.vault_cacert = env_or_empty("VAULT_CACERT");
}

namespace detail {

std::optional<long long> duration_seconds(std::string_view text) {
  if (text.empty()) return std::nullopt;
  if (std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (text.size() > 12) return std::nullopt;
    return std::stoll(std::string(text));
  }
  const auto ms = parse_duration(text);
  if (!ms || ms->count() % 1000 != 0) return std::nullopt;
  return ms->count() / 1000;
}

std::vector<std::string> validate_provision_options(const provision_options& o) {
  std::vector<std::string> p;
  if (!o.dry_run && o.vault_addr.empty()) p.push_back("no Vault address: set VAULT_ADDR or --vault-addr");
  if (!o.vault_addr.empty() && o.vault_addr.rfind("http://", 0) != 0 && o.vault_addr.rfind("https://", 0) != 0) {
    p.push_back("the Vault address must start with http:// or https://: " + o.vault_addr);
  }
  if (!valid_name(o.mount)) p.push_back("--mount: not a mount path: \"" + o.mount + "\"");
  for (const auto& [flag, v] : {std::pair<const char*, const std::string&>{"--role", o.role},
                                {"--db-config", o.config_name},
                                {"--policy", o.policy},
                                {"--vaultwire-policy", o.vaultwire_policy}}) {
    if (!v.empty() && (!valid_name(v) || v.find('/') != std::string::npos)) {
      p.push_back(std::string(flag) + ": letters, digits, '-', '_' and '.' only: \"" + v + "\"");
    }
  }
  if (o.role.empty()) p.push_back("--role is required");
  if (o.config_name.empty()) p.push_back("--db-config is required");
  if (o.db_host.empty()) p.push_back("--db-host is required");
  if (o.db_port < 1 || o.db_port > 65535) p.push_back("--db-port: out of range");
  if (o.database.empty()) p.push_back("--database is required");
  if (o.admin_user.empty()) p.push_back("--admin-user is required");
  if (o.owner_role.empty()) p.push_back("--owner-role is required (DESIGN.md: the NOLOGIN role that owns the objects)");
  static const std::set<std::string> modes{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"};
  if (!modes.count(o.sslmode)) p.push_back("--sslmode: unknown mode \"" + o.sslmode + "\"");
  if (!modes.count(o.client_sslmode)) p.push_back("--client-sslmode: unknown mode \"" + o.client_sslmode + "\"");
  if (!o.connection_url.empty() && (o.connection_url.find("{{username}}") == std::string::npos ||
                                    o.connection_url.find("{{password}}") == std::string::npos)) {
    p.push_back("--connection-url must contain {{username}} and {{password}} (Vault fills them in)");
  }
  // Vault splits statements on ';' (even inside quotes): none may carry one.
  if (o.owner_role.find(';') != std::string::npos) p.push_back("--owner-role may not contain ';'");
  for (const auto& g : o.grants) {
    if (g.empty() || g.find(';') != std::string::npos) p.push_back("--grant: empty or contains ';': \"" + g + "\"");
  }
  const auto def = duration_seconds(o.default_ttl);
  const auto max = duration_seconds(o.max_ttl);
  if (!def) p.push_back("--default-ttl: not a duration: \"" + o.default_ttl + "\"");
  if (!max) p.push_back("--max-ttl: not a duration: \"" + o.max_ttl + "\"");
  if (def && max && *max != 0 && *max < *def) p.push_back("--default-ttl is longer than --max-ttl");
  if (!o.token_ttl.empty() && !duration_seconds(o.token_ttl)) p.push_back("--token-ttl: not a duration");
  if (!o.vaultwire_token_ttl.empty() && !duration_seconds(o.vaultwire_token_ttl)) {
    p.push_back("--vaultwire-token-ttl: not a duration");
  }
  if (o.create_token && o.client_token_file.empty()) {
    p.push_back("--create-token needs --client-token-file PATH (written 0600), or - to print the token alone on "
                "stdout");
  }
  if (!o.create_token && !o.client_token_file.empty()) p.push_back("--client-token-file needs --create-token");
  if (o.vaultwire_token_file == "-") p.push_back("--vaultwire-token-file must be a file");
  return p;
}

std::string sql_identifier(std::string_view name) {
  const bool bare = !name.empty() && (std::islower(static_cast<unsigned char>(name[0])) || name[0] == '_') &&
                    std::all_of(name.begin(), name.end(), [](char c) {
                      return std::islower(static_cast<unsigned char>(c)) ||
                             std::isdigit(static_cast<unsigned char>(c)) || c == '_';
                    });
  if (bare) return std::string(name);
  std::string out = "\"";
  for (const char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string templated_connection_url(const provision_options& o) {
  if (!o.connection_url.empty()) return o.connection_url;
  std::string host = o.db_host;
  if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";
  std::string url = "postgresql://{{username}}:{{password}}@" + host + ":" + std::to_string(o.db_port) + "/" +
                    escape_path(o.database, false) + "?sslmode=" + o.sslmode;
  if (!o.sslrootcert.empty()) url += "&sslrootcert=" + escape_path(o.sslrootcert, true);
  if (!o.db_options.empty()) url += "&options=" + escape_path(o.db_options, false);
  return url;
}

std::vector<std::string> creation_statements(const provision_options& o) {
  const std::string owner = sql_identifier(o.owner_role);
  std::vector<std::string> s{
      "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}' IN ROLE " + owner +
          ";",
      "ALTER ROLE \"{{name}}\" SET ROLE " + owner + ";"};
  for (const auto& g : o.grants) s.push_back("GRANT " + g + " TO " + owner + ";");
  return s;
}

std::vector<std::string> revocation_statements(const provision_options& o) {
  const std::string owner = sql_identifier(o.owner_role);
  return {"REASSIGN OWNED BY \"{{name}}\" TO " + owner + ";", "DROP OWNED BY \"{{name}}\";",
          "DROP ROLE IF EXISTS \"{{name}}\";"};
}

std::string client_policy_hcl(const provision_options& o) {
  const std::string creds = o.mount + "/creds/" + o.role;
  return "# vaultwire provision: clients of role " + o.role +
         " read credentials and revoke their leases\n"
         "path " + hcl_string(creds) + " {\n  capabilities = [\"read\"]\n}\n"
         "path " + hcl_string("sys/leases/revoke/" + creds + "/*") + " {\n  capabilities = [\"update\"]\n}\n";
}

std::string vaultwire_policy_hcl(const provision_options& o) {
  const std::string creds = o.mount + "/creds/" + o.role;
  return "# vaultwire provision: vaultwire's own token renews and revokes the leases of role " + o.role +
         "\n"
         "path \"sys/leases/renew\" {\n  capabilities = [\"update\"]\n}\n"
         "path " + hcl_string("sys/leases/revoke/" + creds + "/*") + " {\n  capabilities = [\"update\"]\n}\n"
         "path \"auth/token/lookup-self\" {\n  capabilities = [\"read\"]\n}\n"
         "path \"auth/token/renew-self\" {\n  capabilities = [\"update\"]\n}\n";
}

std::string client_url(const provision_options& o) {
  auto [host, port] = split_host_port(o.listen);
  if (host == "0.0.0.0" || host.empty()) host = "127.0.0.1";
  if (host == "[::]") host = "[::1]";
  return "postgresql://" + escape_path(o.role, false) + ":$VAULT_CLIENT_TOKEN@" + host + ":" + port + "/" +
         escape_path(o.database, false) + "?sslmode=" + o.client_sslmode;
}

std::string route_toml(const provision_options& o) {
  std::string t = "[vault]\naddress = " + toml_string(o.vault_addr.empty() ? "$VAULT_ADDR" : o.vault_addr) + "\n";
  if (!o.vault_namespace.empty()) t += "namespace = " + toml_string(o.vault_namespace) + "\n";
  if (!o.vault_cacert.empty()) t += "ca_file = " + toml_string(o.vault_cacert) + "\n";
  t += "mount = " + toml_string(o.mount) + "\n";
  if (!o.vaultwire_token_file.empty()) {
    std::error_code ec;
    const auto abs = std::filesystem::absolute(o.vaultwire_token_file, ec);
    t += "token_file = " + toml_string(ec ? o.vaultwire_token_file : abs.string()) + "\n";
  }
  t += "\n[[listener]]\nbind = " + toml_string(o.listen) + "\nroute = " + toml_string(o.route_name) + "\n";
  t += "\n[route." + o.route_name + "]\nhost = " + toml_string(o.db_host) + "\nport = " + std::to_string(o.db_port) +
       "\n";
  if (!o.route_ca_file.empty()) t += "ca_file = " + toml_string(o.route_ca_file) + "\n";
  t += "roles = [" + toml_string(o.role) + "]\n";
  t += "default_database = " + toml_string(o.database) + "\n";
  if (!o.db_options.empty()) t += "options = " + toml_string(o.db_options) + "\n";
  return t;
}

std::string owner_role_sql(const provision_options& o) {
  const std::string owner = sql_identifier(o.owner_role);
  const std::string db = sql_identifier(o.database);
  std::string grants;
  for (const auto& g : o.grants) grants += "#   GRANT " + g + " TO " + owner + ";\n";
  return "# provision does not connect to the database. The owner role must exist there; if it does not,\n"
         "# create it once as the admin (in database " + o.database + "):\n"
         "#   CREATE ROLE " + owner + " NOLOGIN;\n"
         "#   GRANT CONNECT, TEMPORARY ON DATABASE " + db + " TO " + owner + ";\n"
         "#   GRANT USAGE, CREATE ON SCHEMA public TO " + owner + ";\n" + grants +
         "# Dynamic users are created IN ROLE " + owner + " with SET ROLE " + owner +
         ", so what they create is owned by it;\n"
         "# at revocation Vault runs REASSIGN OWNED / DROP OWNED / DROP ROLE in database " + o.database + ".\n";
}

std::vector<std::string> config_differences(std::string_view get_body, const provision_options& o) {
  const json d = data_of(get_body);
  std::vector<std::string> diffs;
  if (str_member(d, "plugin_name") != plugin_name) diffs.emplace_back("plugin_name");
  const json details = d.is_object() && d.contains("connection_details") ? d["connection_details"] : json();
  if (str_member(details, "connection_url") != templated_connection_url(o)) diffs.emplace_back("connection_url");
  if (str_member(details, "username") != o.admin_user) diffs.emplace_back("username");
  const auto allowed = str_list(d.is_object() && d.contains("allowed_roles") ? d["allowed_roles"] : json());
  if (std::find(allowed.begin(), allowed.end(), o.role) == allowed.end() &&
      std::find(allowed.begin(), allowed.end(), "*") == allowed.end()) {
    diffs.emplace_back("allowed_roles");
  }
  if (d.is_object() && d.contains("verify_connection") && d["verify_connection"] == false) {
    diffs.emplace_back("verify_connection");
  }
  return diffs;
}

std::vector<std::string> role_differences(std::string_view get_body, const provision_options& o) {
  const json d = data_of(get_body);
  const json want = role_body(o);
  std::vector<std::string> diffs;
  for (const char* key : {"db_name", "creation_statements", "revocation_statements", "default_ttl", "max_ttl"}) {
    if (!d.is_object() || !d.contains(key) || d[key] != want[key]) diffs.emplace_back(key);
  }
  return diffs;
}

std::string dry_run_text(const provision_options& o) {
  std::string t =
      "# dry run: nothing is sent. A real run reads each object (GET) and sends a write only where\n"
      "# Vault's object differs from this; X-Vault-Token is VAULT_TOKEN (not shown)" +
      std::string(o.vault_namespace.empty() ? "" : ", X-Vault-Namespace: " + o.vault_namespace) + ".\n";
  const std::string base = (o.vault_addr.empty() ? std::string("$VAULT_ADDR") : o.vault_addr) + "/v1/";
  auto req = [&](const std::string& method, const std::string& path, const std::string& body) {
    t += method + " " + base + path + (body.empty() ? "" : " " + body) + "\n";
  };
  req("GET", "sys/mounts", "");
  req("POST", "sys/mounts/" + mount_path(o),
      json{{"type", "database"}, {"description", "vaultwire: dynamic database credentials"}}.dump());
  req("GET", config_path(o), "");
  json cfg{{"plugin_name", plugin_name},
           {"connection_url", templated_connection_url(o)},
           {"username", o.admin_user},
           {"allowed_roles", json::array({o.role})},
           {"verify_connection", true},
           {"password", o.admin_password_file.empty()
                            ? "<not given: needed when the connection is new>"
                            : "<redacted: read from " +
                                  (o.admin_password_file == "-" ? std::string("stdin") : o.admin_password_file) +
                                  " when the connection is new or the admin user changes>"}};
  req("POST", config_path(o), cfg.dump());
  req("GET", role_path(o), "");
  req("POST", role_path(o), role_body(o).dump());
  req("GET", policy_path(o.policy), "");
  req("PUT", policy_path(o.policy), json{{"policy", client_policy_hcl(o)}}.dump());
  if (!o.vaultwire_token_file.empty()) {
    req("GET", policy_path(o.vaultwire_policy), "");
    req("PUT", policy_path(o.vaultwire_policy), json{{"policy", vaultwire_policy_hcl(o)}}.dump());
    req("GET", "auth/token/lookup-self", "(with the token in " + o.vaultwire_token_file + ", if any)");
    req("POST", "auth/token/create",
        token_body(o.vaultwire_policy, o.vaultwire_token_ttl, "vaultwire").dump() + " -> written to " +
            o.vaultwire_token_file + " (0600)");
  }
  if (o.create_token) {
    req("POST", "auth/token/create",
        token_body(o.policy, o.token_ttl, nullptr).dump() + " -> " +
            (o.client_token_file == "-" ? std::string("stdout") : o.client_token_file + " (0600)"));
  }
  return t;
}

}  // namespace detail

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
