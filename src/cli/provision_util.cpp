#include "cli/provision_util.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>

#include <openssl/crypto.h>

namespace vaultwire::provision_util {



std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string();
}

void wipe(std::string& s) noexcept {
  if (!s.empty()) OPENSSL_cleanse(s.data(), s.size());
  s.clear();
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

}  // namespace vaultwire::provision_util
