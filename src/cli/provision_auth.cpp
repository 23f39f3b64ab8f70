// provision --vaultwire-auth: the pure parts (vaultwire/provision.hpp, namespace
// detail) of setting up the auth method vaultwire logs in with ([vault.auth]).
//
// Vault API facts used here:
// - POST sys/auth/:path {type, description} enables a method; GET sys/auth lists them
//   as "<path>/" -> {type, ...} (developer.hashicorp.com/vault/api-docs/system/auth).
// - Every role takes the common token fields token_policies, token_period, token_type;
//   a periodic token renews to its period with no max TTL (api-docs/auth/approle,
//   "Create/Update AppRole": token_period; the same fields in the other methods).
// - approle: POST auth/<m>/role/:name (bind_secret_id, secret_id_ttl 0 = never
//   expires), GET role/:name/role-id, POST role/:name/secret-id, POST
//   role/:name/secret-id/lookup (api-docs/auth/approle).
// - kubernetes: POST auth/<m>/config (kubernetes_host required, kubernetes_ca_cert,
//   pem_keys), POST auth/<m>/role/:name (bound_service_account_names,
//   bound_service_account_namespaces) (api-docs/auth/kubernetes).
// - jwt: POST auth/<m>/config (jwt_validation_pubkeys), POST auth/<m>/role/:name
//   (role_type "jwt", user_claim, bound_audiences, bound_claims; a role needs at least
//   one bound constraint, path_role.go) (api-docs/auth/jwt).
// - cert: POST auth/<m>/certs/:name (certificate: a CA, or a non-CA certificate that
//   must then match the presented one exactly; allowed_common_names narrows a CA to
//   certificates with that CN) (api-docs/auth/cert).
#include <algorithm>
#include <filesystem>
#include <set>

#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "cli/provision_util.hpp"
#include "vaultwire/config.hpp"

namespace vaultwire {

using namespace provision_util;

namespace detail {

namespace {

std::string absolute_path(const std::string& path) {
  std::error_code ec;
  const auto abs = std::filesystem::absolute(path, ec);
  return ec ? path : abs.string();
}

json token_fields(const provision_options& o) {
  return json{{"token_policies", json::array({o.vaultwire_policy})},
              {"token_period", duration_seconds(o.vaultwire_token_period).value_or(0)},
              {"token_type", "service"}};
}

}  // namespace

std::vector<std::string> pem_blocks(std::string_view text) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (true) {
    const auto begin = text.find("-----BEGIN ", pos);
    if (begin == std::string_view::npos) break;
    const auto end = text.find("-----END ", begin);
    if (end == std::string_view::npos) break;
    const auto eol = text.find('\n', end);
    const auto stop = eol == std::string_view::npos ? text.size() : eol;
    out.push_back(std::string(text.substr(begin, stop - begin)) + "\n");
    pos = stop;
  }
  return out;
}

std::string certificate_common_name(std::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return {};
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (cert == nullptr) return {};
  std::string cn(256, '\0');
  const int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn.data(),
                                          static_cast<int>(cn.size()));
  X509_free(cert);
  cn.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  return cn;
}

std::string auth_mount(const provision_options& o) {
  return o.vaultwire_auth_mount.empty() ? o.vaultwire_auth : o.vaultwire_auth_mount;
}

std::string auth_role_path(const provision_options& o) {
  return "auth/" + escape_path(auth_mount(o), true) + (o.vaultwire_auth == "cert" ? "/certs/" : "/role/") +
         escape_path(o.vaultwire_auth_role, false);
}

std::string auth_config_path(const provision_options& o) {
  return "auth/" + escape_path(auth_mount(o), true) + "/config";
}

std::string auth_config_json(const provision_options& o, file_text_fn text) {
  if (o.vaultwire_auth == "kubernetes") {
    json b{{"kubernetes_host", o.kubernetes_host}};
    if (!o.kubernetes_ca_file.empty()) b["kubernetes_ca_cert"] = text(o.kubernetes_ca_file);
    if (!o.kubernetes_pem_keys_file.empty()) {
      const std::string t = text(o.kubernetes_pem_keys_file);
      auto blocks = pem_blocks(t);
      b["pem_keys"] = blocks.empty() ? json::array({t}) : json(blocks);
    }
    return b.dump();
  }
  if (o.vaultwire_auth == "jwt") {
    const std::string t = text(o.jwt_validation_pubkey_file);
    auto blocks = pem_blocks(t);
    return json{{"jwt_validation_pubkeys", blocks.empty() ? json::array({t}) : json(blocks)}}.dump();
  }
  return {};
}

std::string auth_role_json(const provision_options& o, file_text_fn text) {
  json b = token_fields(o);
  if (o.vaultwire_auth == "approle") {
    b["bind_secret_id"] = true;
    b["secret_id_ttl"] = 0;
  } else if (o.vaultwire_auth == "kubernetes") {
    b["bound_service_account_names"] = json::array({o.service_account});
    b["bound_service_account_namespaces"] = json::array({o.service_account_namespace});
  } else if (o.vaultwire_auth == "jwt") {
    b["role_type"] = "jwt";
    b["user_claim"] = o.user_claim;
    if (!o.bound_audience.empty()) b["bound_audiences"] = json::array({o.bound_audience});
    if (!o.bound_claims.empty()) {
      json claims = json::object();
      for (const auto& c : o.bound_claims) {
        const auto eq = c.find('=');
        claims[c.substr(0, eq)] = eq == std::string::npos ? std::string() : c.substr(eq + 1);
      }
      b["bound_claims"] = claims;
    }
  } else if (o.vaultwire_auth == "cert") {
    if (o.vaultwire_client_ca.empty()) {
      b["certificate"] = text(o.vaultwire_client_cert);
    } else {
      // The CA trusts every certificate it issued: only those with vaultwire's CN log in.
      b["certificate"] = text(o.vaultwire_client_ca);
      const std::string cn = certificate_common_name(text(o.vaultwire_client_cert));
      b["allowed_common_names"] =
          json::array({cn.empty() ? "<the common name of " + o.vaultwire_client_cert + ">" : cn});
    }
    b["display_name"] = o.vaultwire_auth_role;
  }
  return b.dump();
}

std::vector<std::string> auth_differences(std::string_view get_body, std::string_view want) {
  const json d = data_of(get_body);
  const json w = json::parse(want, nullptr, false);
  std::vector<std::string> diffs;
  if (!w.is_object()) return diffs;
  for (const auto& [key, value] : w.items()) {
    if (!d.is_object() || !d.contains(key)) {
      diffs.push_back(key);
      continue;
    }
    const json& have = d[key];
    // Vault answers comma-separated list fields as arrays; a string is compared as one.
    if (value.is_array() && have.is_array()) {
      if (str_list(value) != str_list(have) || value.size() != have.size()) diffs.push_back(key);
    } else if (value.is_string() && have.is_string()) {
      // A PEM's trailing newline is not significant.
      auto a = value.get<std::string>();
      auto b = have.get<std::string>();
      while (!a.empty() && a.back() == '\n') a.pop_back();
      while (!b.empty() && b.back() == '\n') b.pop_back();
      if (a != b) diffs.push_back(key);
    } else if (have != value) {
      diffs.push_back(key);
    }
  }
  return diffs;
}

std::string auth_toml(const provision_options& o) {
  if (o.vaultwire_auth.empty()) return {};
  std::string t = "\n[vault.auth]\nmethod = " + toml_string(o.vaultwire_auth) + "\n";
  if (auth_mount(o) != o.vaultwire_auth) t += "mount = " + toml_string(auth_mount(o)) + "\n";
  if (o.vaultwire_auth == "approle") {
    t += "role_id_file = " + toml_string(absolute_path(o.role_id_file)) + "\n";
    t += "secret_id_file = " + toml_string(absolute_path(o.secret_id_file)) + "\n";
  } else if (o.vaultwire_auth == "kubernetes" || o.vaultwire_auth == "jwt") {
    t += "role = " + toml_string(o.vaultwire_auth_role) + "\n";
    if (!o.vaultwire_jwt_file.empty()) t += "jwt_file = " + toml_string(absolute_path(o.vaultwire_jwt_file)) + "\n";
  } else if (o.vaultwire_auth == "cert") {
    t += "name = " + toml_string(o.vaultwire_auth_role) + "\n";
  }
  return t;
}

namespace {

// The required flags of the chosen method.
void method_problems(const provision_options& o, std::vector<std::string>& p) {
  const std::string& m = o.vaultwire_auth;
  const bool approle = m == "approle", k8s = m == "kubernetes", jwt = m == "jwt", cert = m == "cert";
  if (approle) {
    if (o.role_id_file.empty() || o.secret_id_file.empty()) {
      p.push_back("--vaultwire-auth approle needs --role-id-file PATH and --secret-id-file PATH (written 0600)");
    } else if (o.role_id_file == o.secret_id_file) {
      p.push_back("--role-id-file and --secret-id-file must differ");
    }
    if (o.role_id_file == "-" || o.secret_id_file == "-") p.push_back("--role-id-file / --secret-id-file must be files");
  }
  if (k8s) {
    if (o.kubernetes_host.empty()) p.push_back("--vaultwire-auth kubernetes needs --kubernetes-host URL");
    if (o.service_account.empty()) p.push_back("--service-account may not be empty");
    if (o.service_account_namespace.empty()) p.push_back("--namespace may not be empty");
  }
  if (jwt) {
    if (o.jwt_validation_pubkey_file.empty()) {
      p.push_back("--vaultwire-auth jwt needs --jwt-validation-pubkey-file PATH (PEM public keys)");
    }
    if (o.vaultwire_jwt_file.empty()) {
      p.push_back("--vaultwire-auth jwt needs --vaultwire-jwt-file PATH (where vaultwire reads its JWT)");
    }
    if (o.bound_audience.empty() && o.bound_claims.empty()) {
      p.push_back("--vaultwire-auth jwt needs --bound-audience or --bound-claim (Vault refuses a jwt role "
                  "without a bound constraint)");
    }
    for (const auto& c : o.bound_claims) {
      const auto eq = c.find('=');
      if (eq == std::string::npos || eq == 0) p.push_back("--bound-claim: not key=value: \"" + c + "\"");
    }
    if (o.user_claim.empty()) p.push_back("--user-claim may not be empty");
  }
  if (cert) {
    if (o.vaultwire_client_cert.empty() || o.vaultwire_client_key.empty()) {
      p.push_back("--vaultwire-auth cert needs --vaultwire-client-cert FILE and --vaultwire-client-key FILE (the "
                  "certificate vaultwire presents to Vault and its key)");
    }
    if (!o.vault_addr.empty() && o.vault_addr.rfind("https://", 0) != 0) {
      p.push_back("--vaultwire-auth cert: the login is the TLS handshake, Vault's address must be https://");
    }
  }
}

}  // namespace

std::vector<std::string> validate_auth_options(const provision_options& o) {
  std::vector<std::string> p;
  const std::string& m = o.vaultwire_auth;
  const bool approle = m == "approle", k8s = m == "kubernetes", jwt = m == "jwt", cert = m == "cert";
  auto only = [&](bool used, const std::string& value, const char* flag, const char* methods) {
    if (!used && !value.empty()) p.push_back(std::string(flag) + " is used only with --vaultwire-auth " + methods);
  };
  only(approle, o.role_id_file, "--role-id-file", "approle");
  only(approle, o.secret_id_file, "--secret-id-file", "approle");
  only(k8s, o.kubernetes_host, "--kubernetes-host", "kubernetes");
  only(k8s, o.kubernetes_ca_file, "--kubernetes-ca-file", "kubernetes");
  only(k8s, o.kubernetes_pem_keys_file, "--kubernetes-pem-keys-file", "kubernetes");
  only(jwt, o.jwt_validation_pubkey_file, "--jwt-validation-pubkey-file", "jwt");
  only(jwt, o.bound_audience, "--bound-audience", "jwt");
  if (!jwt && !o.bound_claims.empty()) p.push_back("--bound-claim is used only with --vaultwire-auth jwt");
  only(k8s || jwt, o.vaultwire_jwt_file, "--vaultwire-jwt-file", "kubernetes or jwt");
  only(cert, o.vaultwire_client_cert, "--vaultwire-client-cert", "cert");
  only(cert, o.vaultwire_client_key, "--vaultwire-client-key", "cert");
  only(cert, o.vaultwire_client_ca, "--vaultwire-client-ca", "cert");
  if (m.empty()) {
    if (!o.vaultwire_auth_mount.empty()) p.push_back("--vaultwire-auth-mount needs --vaultwire-auth");
    return p;
  }
  if (!approle && !k8s && !jwt && !cert) {
    p.push_back("--vaultwire-auth: \"" + m + "\" is none of approle, kubernetes, jwt, cert");
    return p;
  }
  if (!o.vaultwire_token_file.empty()) {
    p.push_back("--vaultwire-auth and --vaultwire-token-file exclude each other (vaultwire either logs in or "
                "reads a token file)");
  }
  if (!valid_name(auth_mount(o))) p.push_back("--vaultwire-auth-mount: not a mount path: \"" + auth_mount(o) + "\"");
  if (auth_mount(o) == "token") p.push_back("--vaultwire-auth-mount: token/ is the token method's mount");
  if (o.vaultwire_auth_role.empty() || o.vaultwire_auth_role.find('/') != std::string::npos) {
    p.push_back("--vaultwire-auth-role: empty or contains '/'");
  }
  const auto period = duration_seconds(o.vaultwire_token_period);
  if (!period || *period <= 0) {
    p.push_back("--vaultwire-token-period: not a positive duration: \"" + o.vaultwire_token_period +
                "\" (vaultwire renews its token within the period, without end)");
  }
  if (!o.vaultwire_token_ttl.empty()) p.push_back("--vaultwire-token-ttl is for --vaultwire-token-file");
  method_problems(o, p);
  return p;
}

}  // namespace detail

}  // namespace vaultwire
