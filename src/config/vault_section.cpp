// The [vault] section and its [vault.auth] table: where Vault is, how to reach it, and
// how vaultwire gets a token of its own.
#include <sys/un.h>

#include <algorithm>

#include "config/reader.hpp"

namespace vaultwire::config_reader {

namespace {

// vault.address: the file, else VAULT_AGENT_ADDR, else VAULT_ADDR (Vault's client
// prefers the agent's address, api/client.go NewClient); --vault-addr over all.
void read_vault_address(loader& l, section& sec, const config_overrides& o, const env_lookup& env,
                        vault_config& v) {
  sourced address = file_or_env(sec, "address", env, "VAULT_AGENT_ADDR");
  if (!address.value && address.from_env) address = file_or_env(sec, "address", env, "VAULT_ADDR");
  if (o.vault_addr) address = {o.vault_addr, "--vault-addr", false, false};
  if (!address.value) {
    if (!address.bad_type)
      l.error("vault.address", "required (set it in [vault], VAULT_AGENT_ADDR, VAULT_ADDR or --vault-addr)");
    return;
  }
  std::string a = *address.value;
  if (a.rfind("unix://", 0) == 0) {
    // Vault's client dials the path after unix:// (api/client.go ParseAddress).
    const std::string path = a.substr(7);
    if (path.empty() || path.front() != '/') {
      l.error(address.label, in_quotes(a) + " must name the socket's absolute path, e.g. unix:///run/vault-agent.sock");
    } else if (path.size() >= sizeof(sockaddr_un::sun_path)) {
      l.error(address.label, in_quotes(a) + ": a unix socket path has at most " +
                                 std::to_string(sizeof(sockaddr_un::sun_path) - 1) + " bytes");
    } else {
      v.address = std::move(a);
    }
    return;
  }
  auto has_prefix = [&](std::string_view p) { return a.rfind(p, 0) == 0; };
  const std::size_t scheme = has_prefix("https://") ? 8 : has_prefix("http://") ? 7 : 0;
  while (a.size() > scheme && a.back() == '/') a.pop_back();
  if (scheme == 0) {
    l.error(address.label, in_quotes(a) + " must start with http://, https:// or unix://");
  } else if (a.size() == scheme || a[scheme] == '/') {
    l.error(address.label, in_quotes(a) + " has no host");
  } else {
    v.address = std::move(a);
  }
}

// A path from the file (relative to it) or from a variable (relative to the working
// directory, as the shell meant it).
std::optional<fs::path> checked_path(loader& l, const sourced& s, bool directory) {
  const fs::path saved = l.base_dir;
  if (s.from_env) l.base_dir.clear();
  auto p = directory ? l.check_dir(s.label, *s.value) : l.check_file(s.label, *s.value);
  l.base_dir = saved;
  return p;
}

// Go's strconv.ParseBool, which Vault's client uses for VAULT_SKIP_VERIFY.
std::optional<bool> go_bool(std::string_view s) {
  for (std::string_view t : {"1", "t", "T", "TRUE", "true", "True"})
    if (s == t) return true;
  for (std::string_view f : {"0", "f", "F", "FALSE", "false", "False"})
    if (s == f) return false;
  return std::nullopt;
}

// Vault's CA (ca_file, ca_path), the client certificate, the TLS server name and
// VAULT_SKIP_VERIFY. A pair the file names either half of ignores both variables.
// Returns whether a client certificate or key was named (in the file or the
// environment), whether or not it loads.
bool read_vault_tls(loader& l, section& sec, const env_lookup& env, vault_config& v) {
  const bool file_ca = sec.get("ca_file") != nullptr || sec.get("ca_path") != nullptr;
  if (sourced ca = file_or_env(sec, "ca_file", env, "VAULT_CACERT", !file_ca); ca.value)
    v.ca_file = checked_path(l, ca, false);
  if (sourced dir = file_or_env(sec, "ca_path", env, "VAULT_CAPATH", !file_ca); dir.value)
    v.ca_path = checked_path(l, dir, true);

  const bool file_cert = sec.get("client_cert") != nullptr || sec.get("client_key") != nullptr;
  const sourced cert = file_or_env(sec, "client_cert", env, "VAULT_CLIENT_CERT", !file_cert);
  const sourced key = file_or_env(sec, "client_key", env, "VAULT_CLIENT_KEY", !file_cert);
  if (cert.value && !key.value && !key.bad_type) l.error(key.label, "required when " + cert.label + " is set");
  if (key.value && !cert.value && !cert.bad_type) l.error(cert.label, "required when " + key.label + " is set");
  if (cert.value) v.client_cert = checked_path(l, cert, false);
  if (key.value) v.client_key = checked_path(l, key, false);
  const bool named_client_cert = cert.value.has_value() || key.value.has_value();

  v.tls_server_name = file_or_env(sec, "tls_server_name", env, "VAULT_TLS_SERVER_NAME").value;
  if (auto b = sec.get_bool("allow_insecure")) v.allow_insecure = *b;
  const std::optional<std::string> skip = env ? env("VAULT_SKIP_VERIFY") : std::nullopt;
  if (!skip) return named_client_cert;
  const std::optional<bool> parsed = go_bool(*skip);
  if (!parsed) {
    l.error("VAULT_SKIP_VERIFY", in_quotes(*skip) + " is not true or false");
  } else if (*parsed && !v.allow_insecure) {
    l.error("VAULT_SKIP_VERIFY", "set to " + in_quotes(*skip) +
                                     ": vaultwire does not turn off the verification of Vault's certificate unless "
                                     "[vault] allow_insecure = true; unset it, or give Vault's CA in vault.ca_file");
  } else if (*parsed) {
    v.skip_verify = true;
    l.warnings.push_back("VAULT_SKIP_VERIFY: Vault's certificate is not verified ([vault] allow_insecure = true): "
                         "whoever sits between vaultwire and Vault reads every client's token");
  }
  return named_client_cert;
}

// The [vault.auth] keys each method reads; any other key of the table is an error
// for that method (a key meant for another method would be silently ignored).
constexpr unsigned bit(vault_auth_method m) { return 1u << static_cast<unsigned>(m); }
struct auth_key_use {
  std::string_view key;
  unsigned methods;        // bit() of each method that reads it
  std::string_view users;  // the same, for the error
};
constexpr auth_key_use auth_key_uses[] = {
    {"mount",
     bit(vault_auth_method::approle) | bit(vault_auth_method::kubernetes) | bit(vault_auth_method::jwt) |
         bit(vault_auth_method::cert),
     "approle, kubernetes, jwt, cert"},
    {"token_file", bit(vault_auth_method::token_file), "token_file"},
    {"role_id_file", bit(vault_auth_method::approle), "approle"},
    {"secret_id_file", bit(vault_auth_method::approle), "approle"},
    {"role", bit(vault_auth_method::kubernetes) | bit(vault_auth_method::jwt), "kubernetes, jwt"},
    {"jwt_file", bit(vault_auth_method::kubernetes) | bit(vault_auth_method::jwt), "kubernetes, jwt"},
    {"name", bit(vault_auth_method::cert), "cert"},
};

// [vault.auth] method token_file: its token_file, or [vault] token_file (the same
// setting written the older way), not two different files.
void read_auth_token_file(loader& l, section& auth, const section& vault_sec, vault_config& v) {
  const bool top = vault_sec.get("token_file") != nullptr;
  auto f = auth.get_nonempty_string("token_file");
  if (!f) {
    if (!top && auth.get("token_file") == nullptr)
      l.error(auth.key("token_file"), "required with method \"token_file\" (the file holding vaultwire's token)");
    return;  // [vault] token_file, read already
  }
  const auto p = l.check_file(auth.key("token_file"), *f);
  if (top) {
    if (p && v.token_file && fs::absolute(*p) != fs::absolute(*v.token_file))
      l.error(auth.key("token_file"), in_quotes(p->string()) + " differs from vault.token_file (" +
                                          in_quotes(v.token_file->string()) + "); set one of the two");
    return;
  }
  v.token_file = p;
}

// The login methods' keys: the mount, the files and names each needs.
void read_auth_login(loader& l, section& auth, bool named_client_cert, vault_config& v) {
  vault_auth_config& a = v.auth;
  a.mount = std::string{to_string(a.method)};
  if (auto m = auth.get_string("mount")) {
    std::string_view mv = *m;
    while (!mv.empty() && mv.front() == '/') mv.remove_prefix(1);
    while (!mv.empty() && mv.back() == '/') mv.remove_suffix(1);
    if (mv.empty())
      l.error(auth.key("mount"), "must name the auth method's mount (default " + in_quotes(a.mount) + ")");
    else
      a.mount = std::string{mv};
  }
  const std::string method = in_quotes(to_string(a.method));
  switch (a.method) {
    case vault_auth_method::approle:
      if (auto f = auth.get_nonempty_string("role_id_file"))
        a.role_id_file = l.check_file(auth.key("role_id_file"), *f);
      else if (auth.get("role_id_file") == nullptr)
        l.error(auth.key("role_id_file"), "required with method " + method + " (the file holding the role ID)");
      if (auto f = auth.get_nonempty_string("secret_id_file"))
        a.secret_id_file = l.check_file(auth.key("secret_id_file"), *f);
      break;
    case vault_auth_method::kubernetes:
    case vault_auth_method::jwt: {
      a.role = auth.get_nonempty_string("role");
      // The JWT method falls back to the mount's default_role (api-docs/auth/jwt, "JWT
      // login": role is optional); the Kubernetes method has none (api-docs/auth/kubernetes).
      if (!a.role && a.method == vault_auth_method::kubernetes && auth.get("role") == nullptr)
        l.error(auth.key("role"), "required with method " + method + " (the Vault role to log in as)");
      if (auto f = auth.get_nonempty_string("jwt_file")) {
        a.jwt_file = l.check_file(auth.key("jwt_file"), *f);
      } else if (auth.get("jwt_file") == nullptr) {
        if (a.method == vault_auth_method::kubernetes)
          a.jwt_file = l.check_file(auth.key("jwt_file") + " (default)", fs::path{kubernetes_service_account_token});
        else
          l.error(auth.key("jwt_file"), "required with method " + method + " (the file holding the JWT)");
      }
      break;
    }
    case vault_auth_method::cert:
      a.name = auth.get_nonempty_string("name");
      // The login is the TLS handshake with the client certificate (api-docs/auth/cert,
      // "Login with TLS certificate method"): it needs https and a certificate.
      if (!named_client_cert)
        l.error("vault.client_cert", "required with vault.auth.method " + method +
                                         " (with vault.client_key, or VAULT_CLIENT_CERT and VAULT_CLIENT_KEY): "
                                         "the login presents that certificate");
      if (!v.address.empty() && v.address.rfind("https://", 0) != 0)
        l.error(auth.key("method"), method + " logs in with the TLS client certificate, which needs an https:// "
                                             "vault.address (not " + in_quotes(v.address) + ")");
      break;
    case vault_auth_method::none:
    case vault_auth_method::token_file:
      break;
  }
}

// [vault.auth]; without it, [vault] token_file alone is method token_file.
void read_vault_auth(loader& l, section& vault_sec, bool named_client_cert, vault_config& v) {
  const toml::table* t = vault_sec.get_table("auth");
  if (t == nullptr) {
    if (vault_sec.get("token_file") != nullptr) v.auth.method = vault_auth_method::token_file;
    return;
  }
  section auth{l,
               t,
               "vault.auth",
               {"method", "mount", "token_file", "role_id_file", "secret_id_file", "role", "jwt_file", "name"}};
  std::optional<vault_auth_method> method;
  if (auto m = auth.get_string("method")) {
    method = parse_enum(*m, vault_auth_methods);
    if (!method) l.error(auth.key("method"), in_quotes(*m) + " is not one of " + enum_names(vault_auth_methods));
  } else if (auth.get("method") == nullptr) {
    l.error(auth.key("method"), "required (one of " + enum_names(vault_auth_methods) + ")");
  }
  if (!method) {
    auth.finish();
    return;
  }
  v.auth.method = *method;
  const std::string name = in_quotes(to_string(*method));
  for (const auto& use : auth_key_uses) {
    if (auth.get(use.key) != nullptr && (use.methods & bit(*method)) == 0)
      l.error(auth.key(use.key), "not used by method " + name + " (only by " + std::string{use.users} + ")");
  }
  if (*method == vault_auth_method::token_file) {
    read_auth_token_file(l, auth, vault_sec, v);
  } else {
    if (vault_sec.get("token_file") != nullptr)
      l.error("vault.token_file", "set while vault.auth.method is " + name +
                                      ": vaultwire has one token of its own; remove vault.token_file, or set "
                                      "vault.auth.method = \"token_file\"");
    v.token_file.reset();
    read_auth_login(l, auth, named_client_cert, v);
  }
  auth.finish();
}

}  // namespace

void read_vault(loader& l, const toml::table* t, const config_overrides& o, const env_lookup& env,
                vault_config& v) {
  section sec{l,
              t,
              "vault",
              {"address", "namespace", "ca_file", "ca_path", "client_cert", "client_key", "tls_server_name",
               "allow_insecure", "mount", "request_timeout", "token_file", "auth"}};
  read_vault_address(l, sec, o, env, v);
  sourced ns = file_or_env(sec, "namespace", env, "VAULT_NAMESPACE");
  v.namespace_ = std::move(ns.value);
  const bool named_client_cert = read_vault_tls(l, sec, env, v);

  if (auto m = sec.get_string("mount")) {
    std::string_view mv = *m;
    while (!mv.empty() && mv.front() == '/') mv.remove_prefix(1);
    while (!mv.empty() && mv.back() == '/') mv.remove_suffix(1);
    if (mv.empty())
      l.error(sec.key("mount"), "must name the database secrets engine's mount");
    else
      v.mount = std::string{mv};
  }
  if (auto d = sec.get_duration("request_timeout")) v.request_timeout = **d;
  if (auto f = sec.get_nonempty_string("token_file")) v.token_file = l.check_file(sec.key("token_file"), *f);
  read_vault_auth(l, sec, named_client_cert, v);
  sec.finish();
}

}  // namespace vaultwire::config_reader
