// vault-dev: the TLS certificate auth method (builtin/credential/cert: path_certs.go,
// path_config.go, path_login.go). The client certificate is the one the client
// presented in the TLS handshake of the connection the login came on.
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstring>

#include "auth_methods.hpp"

namespace vd {

namespace {

using X509Ptr = std::shared_ptr<X509>;

X509Ptr wrap(X509* x) { return X509Ptr(x, X509_free); }

// path_login.go parsePEM: every CERTIFICATE or TRUSTED CERTIFICATE block that parses.
std::vector<X509Ptr> parse_pem_certs(const std::string& pem) {
  std::vector<X509Ptr> out;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!bio) return out;
  for (;;) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long len = 0;
    if (PEM_read_bio(bio, &name, &header, &data, &len) != 1) break;
    bool cert_block = std::strcmp(name, "CERTIFICATE") == 0 || std::strcmp(name, "TRUSTED CERTIFICATE") == 0;
    if (cert_block && (header == nullptr || header[0] == '\0')) {
      const unsigned char* p = data;
      if (X509* x = d2i_X509(nullptr, &p, len)) out.push_back(wrap(x));
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
  }
  BIO_free(bio);
  ERR_clear_error();  // the end of the PEM data queues an error; handlers share threads
  return out;
}

// x509.Certificate.IsCA: basicConstraints CA:TRUE.
bool is_ca(X509* x) { return (X509_get_extension_flags(x) & EXFLAG_CA) != 0; }

std::string asn1_utf8(const ASN1_STRING* s) {
  unsigned char* out = nullptr;
  int n = ASN1_STRING_to_UTF8(&out, s);
  if (n < 0) return "";
  std::string r(reinterpret_cast<char*>(out), static_cast<std::size_t>(n));
  OPENSSL_free(out);
  return r;
}

// pkix.Name.CommonName: the last CN of the subject.
std::string common_name(X509* x) {
  X509_NAME* n = X509_get_subject_name(x);
  int idx = -1, last = -1;
  while ((idx = X509_NAME_get_index_by_NID(n, NID_commonName, idx)) >= 0) last = idx;
  if (last < 0) return "";
  return asn1_utf8(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, last)));
}

std::vector<std::string> subject_values(X509* x, int nid) {
  std::vector<std::string> out;
  X509_NAME* n = X509_get_subject_name(x);
  int idx = -1;
  while ((idx = X509_NAME_get_index_by_NID(n, nid, idx)) >= 0) {
    out.push_back(asn1_utf8(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, idx))));
  }
  return out;
}

std::vector<std::string> sans(X509* x, int type) {
  std::vector<std::string> out;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* g = sk_GENERAL_NAME_value(names, i);
    if (g->type == type) out.push_back(asn1_utf8(g->d.ia5));
  }
  GENERAL_NAMES_free(names);
  return out;
}

// certutil.GetHexFormatted(b, ":").
std::string hex_colon(const ASN1_OCTET_STRING* s) {
  if (!s) return "";
  static const char* digits = "0123456789abcdef";
  std::string out;
  const unsigned char* p = ASN1_STRING_get0_data(s);
  for (int i = 0; i < ASN1_STRING_length(s); ++i) {
    if (i) out.push_back(':');
    out.push_back(digits[p[i] >> 4]);
    out.push_back(digits[p[i] & 15]);
  }
  return out;
}

std::string serial_decimal(X509* x) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), nullptr);
  if (!bn) return "";
  char* dec = BN_bn2dec(bn);
  std::string out = dec ? dec : "";
  OPENSSL_free(dec);
  BN_free(bn);
  return out;
}

bool same_octets(const ASN1_OCTET_STRING* a, const ASN1_OCTET_STRING* b) {
  if (!a || !b) return a == b;
  return ASN1_OCTET_STRING_cmp(a, b) == 0;
}

struct CertEntry {
  std::string name, certificate, display_name;
  std::vector<std::string> allowed_names, allowed_common_names, allowed_dns_sans, allowed_email_sans,
      allowed_uri_sans, allowed_organizational_units, required_extensions;
  TokenParams token;
  std::vector<X509Ptr> parsed;
};

const std::map<std::string, std::string> kDeprecated = {{"policies", "token_policies"},
                                                        {"ttl", "token_ttl"},
                                                        {"max_ttl", "token_max_ttl"},
                                                        {"period", "token_period"},
                                                        {"bound_cidrs", "token_bound_cidrs"}};

class CertAuth : public AuthBackend {
 public:
  bool exists(const std::string& rest) const override {
    if (starts_with(rest, "certs/")) return certs_.count(lower(rest.substr(6))) > 0;
    return true;
  }

  BackendReply handle(const std::string& op, const std::string& rest, const json& body, const SysView&) override {
    bool write = op == "create" || op == "update";
    if (rest == "config") {
      if (op == "read") {
        return BackendReply::ok(json{{"disable_binding", disable_binding_},
                                     {"enable_identity_alias_metadata", false},
                                     {"enable_metadata_on_failures", false},
                                     {"ocsp_cache_size", 100},
                                     {"role_cache_size", 200}});
      }
      if (!write) throw StatusError(405, "1 error occurred:\n\t* unsupported operation\n\n");
      if (body_has(body, "disable_binding")) {
        disable_binding_ = parse_bool_field(body_field(body, "disable_binding"), "disable_binding");
      }
      return {};
    }
    if (rest == "certs/") {
      if (op != "list") throw StatusError(405, "1 error occurred:\n\t* unsupported operation\n\n");
      std::vector<std::string> keys;
      for (auto& [n, _] : certs_) keys.push_back(n);
      if (keys.empty()) throw StatusError(404, "");
      return BackendReply::ok(json{{"keys", string_array(keys)}});
    }
    if (starts_with(rest, "certs/") && rest.find('/', 6) == std::string::npos) {
      std::string name = lower(rest.substr(6));
      if (op == "read") return cert_read(name);
      if (write) return cert_write(name, body);
      if (op == "delete") {
        certs_.erase(name);
        return {};
      }
      throw StatusError(405, "1 error occurred:\n\t* unsupported operation\n\n");
    }
    throw StatusError(404, "1 error occurred:\n\t* unsupported path\n\n");
  }

  // path_login.go pathLogin / verifyCredentials, in their order.
  LoginAuth login(const json& body, const PeerCerts& peer, const SysView&) override {
    if (!peer.tls) throw BadRequest("tls connection required");
    if (peer.der.empty()) throw BadRequest("client certificate must be supplied");
    std::vector<X509Ptr> presented;
    for (auto& der : peer.der) {
      const auto* p = reinterpret_cast<const unsigned char*>(der.data());
      if (X509* x = d2i_X509(nullptr, &p, static_cast<long>(der.size()))) presented.push_back(wrap(x));
    }
    if (presented.empty()) throw BadRequest("client certificate must be supplied");
    X509* client = presented[0].get();
    std::string cert_name = lower(body_string(body, "name"));

    // loadTrustedCerts: CA entries go into the root pool, others are matched as the leaf.
    std::vector<const CertEntry*> trusted, non_ca;
    for (auto& [n, e] : certs_) {
      if (!cert_name.empty() && n != cert_name) continue;
      if (e.parsed.empty()) continue;
      (is_ca(e.parsed[0].get()) ? trusted : non_ca).push_back(&e);
    }
    std::vector<X509Ptr> chain = verified_chain(trusted, presented);
    for (const CertEntry* e : non_ca) {
      X509* t = e->parsed[0].get();
      if (ASN1_INTEGER_cmp(X509_get0_serialNumber(t), X509_get0_serialNumber(client)) == 0 &&
          same_octets(X509_get0_authority_key_id(t), X509_get0_authority_key_id(client)) &&
          EVP_PKEY_eq(X509_get0_pubkey(t), X509_get0_pubkey(client)) == 1 && matches_constraints(client, *e)) {
        return login_auth(*e, client);
      }
    }
    // If no trusted chain was found, client is not authenticated.
    if (chain.empty()) throw BadRequest("invalid certificate or no client certificate supplied");
    for (const CertEntry* e : trusted) {
      for (auto& t : e->parsed) {
        for (auto& c : chain) {
          if (X509_cmp(t.get(), c.get()) == 0 && matches_constraints(client, *e)) return login_auth(*e, client);
        }
      }
    }
    throw BadRequest("no chain matching all constraints could be found for this login certificate");
  }

 private:
  // validateConnState: x509 Verify of the leaf with the configured CA certificates as
  // roots (any of them an anchor, as in Go), the rest of the presented chain as
  // intermediates and client authentication as the key usage. An unknown authority is
  // no chain; any other failure is an error.
  static std::vector<X509Ptr> verified_chain(const std::vector<const CertEntry*>& trusted,
                                             const std::vector<X509Ptr>& presented) {
    std::vector<X509Ptr> out;
    X509_STORE* store = X509_STORE_new();
    X509_STORE_CTX* ctx = X509_STORE_CTX_new();
    STACK_OF(X509)* untrusted = sk_X509_new_null();
    for (const CertEntry* e : trusted) {
      for (auto& c : e->parsed) X509_STORE_add_cert(store, c.get());
    }
    for (std::size_t i = 1; i < presented.size(); ++i) sk_X509_push(untrusted, presented[i].get());
    std::string error;
    if (store && ctx && untrusted && X509_STORE_CTX_init(ctx, store, presented[0].get(), untrusted) == 1) {
      X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
      X509_STORE_CTX_set_flags(ctx, X509_V_FLAG_PARTIAL_CHAIN);
      if (X509_verify_cert(ctx) == 1) {
        STACK_OF(X509)* ch = X509_STORE_CTX_get1_chain(ctx);
        for (int i = 0; i < sk_X509_num(ch); ++i) {
          X509* c = sk_X509_value(ch, i);
          X509_up_ref(c);
          out.push_back(wrap(c));
        }
        sk_X509_pop_free(ch, X509_free);
      } else {
        int err = X509_STORE_CTX_get_error(ctx);
        bool unknown_authority = err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
                                 err == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT ||
                                 err == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
                                 err == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
                                 err == X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE;
        if (!unknown_authority) error = X509_verify_cert_error_string(err);
      }
    }
    sk_X509_free(untrusted);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    ERR_clear_error();
    if (!error.empty()) throw StatusError(500, "failed to verify client's certificate: x509: " + error);
    return out;
  }

  // matchesConstraints: each allowed_* list, when set, must match (glob) one value.
  static bool matches_constraints(X509* client, const CertEntry& e) {
    std::string cn = common_name(client);
    auto dns = sans(client, GEN_DNS);
    auto emails = sans(client, GEN_EMAIL);
    auto any = [](const std::vector<std::string>& patterns, const std::vector<std::string>& values) {
      if (patterns.empty()) return true;
      for (auto& v : values) {
        if (list_contains_glob(patterns, v)) return true;
      }
      return false;
    };
    std::vector<std::string> names = {cn};
    names.insert(names.end(), dns.begin(), dns.end());
    names.insert(names.end(), emails.begin(), emails.end());
    return any(e.allowed_names, names) && any(e.allowed_common_names, {cn}) && any(e.allowed_dns_sans, dns) &&
           any(e.allowed_email_sans, emails) && any(e.allowed_uri_sans, sans(client, GEN_URI)) &&
           any(e.allowed_organizational_units, subject_values(client, NID_organizationalUnitName));
  }

  static LoginAuth login_auth(const CertEntry& e, X509* client) {
    LoginAuth a;
    a.display_name = e.display_name;
    a.metadata = {{"authority_key_id", hex_colon(X509_get0_authority_key_id(client))},
                  {"cert_name", e.name},
                  {"common_name", common_name(client)},
                  {"serial_number", serial_decimal(client)},
                  {"subject_key_id", hex_colon(X509_get0_subject_key_id(client))}};
    a.alias = common_name(client);
    a.token = e.token;
    return a;
  }

  BackendReply cert_read(const std::string& name) const {
    auto it = certs_.find(name);
    if (it == certs_.end()) throw StatusError(404, "");
    const CertEntry& e = it->second;
    json d = json::object();
    d["allowed_common_names"] = string_array(e.allowed_common_names);
    d["allowed_dns_sans"] = string_array(e.allowed_dns_sans);
    d["allowed_email_sans"] = string_array(e.allowed_email_sans);
    d["allowed_metadata_extensions"] = json::array();
    d["allowed_names"] = string_array(e.allowed_names);
    d["allowed_organizational_units"] = string_array(e.allowed_organizational_units);
    d["allowed_uri_sans"] = string_array(e.allowed_uri_sans);
    d["certificate"] = e.certificate;
    d["display_name"] = e.display_name;
    d["ocsp_ca_certificates"] = "";
    d["ocsp_enabled"] = false;
    d["ocsp_fail_open"] = false;
    d["ocsp_query_all_servers"] = false;
    d["ocsp_servers_override"] = json::array();
    d["required_extensions"] = string_array(e.required_extensions);
    e.token.populate(d);
    if (e.token.ttl > 0) d["ttl"] = e.token.ttl;
    if (e.token.max_ttl > 0) d["max_ttl"] = e.token.max_ttl;
    if (e.token.period > 0) d["period"] = e.token.period;
    if (!e.token.policies.empty()) d["policies"] = d["token_policies"];
    return BackendReply::ok(d);
  }

  // path_certs.go pathCertWrite.
  BackendReply cert_write(const std::string& name, const json& body) {
    CertEntry e;
    auto existing = certs_.find(name);
    if (existing != certs_.end()) e = existing->second;
    e.name = name;
    if (body_has(body, "certificate")) e.certificate = body_string(body, "certificate");
    if (body_has(body, "display_name")) e.display_name = body_string(body, "display_name");
    if (e.display_name.empty()) e.display_name = name;
    auto list = [&](const char* field, std::vector<std::string>& out) {
      if (body_has(body, field)) out = string_list(body_field(body, field), true);
    };
    list("allowed_names", e.allowed_names);
    list("allowed_common_names", e.allowed_common_names);
    list("allowed_dns_sans", e.allowed_dns_sans);
    list("allowed_email_sans", e.allowed_email_sans);
    list("allowed_uri_sans", e.allowed_uri_sans);
    list("allowed_organizational_units", e.allowed_organizational_units);
    list("required_extensions", e.required_extensions);
    if (!e.required_extensions.empty()) throw BadRequest("vault-dev: required_extensions is not supported");
    e.token.parse(body, kDeprecated);
    e.parsed = parse_pem_certs(e.certificate);
    if (e.parsed.empty()) throw BadRequest("failed to parse certificate");
    // A non-CA certificate with extended key usages must allow client authentication.
    X509* first = e.parsed[0].get();
    if (!is_ca(first) && (X509_get_extension_flags(first) & EXFLAG_XKUSAGE) != 0 &&
        (X509_get_extended_key_usage(first) & XKU_SSL_CLIENT) == 0 &&
        (X509_get_extended_key_usage(first) & XKU_ANYEKU) == 0) {
      throw BadRequest("nonCA certificates should have TLS client authentication set as an extended key usage");
    }
    certs_[name] = std::move(e);
    return {};
  }

  std::map<std::string, CertEntry> certs_;
  bool disable_binding_ = false;
};

}  // namespace

std::unique_ptr<AuthBackend> make_cert_backend() { return std::make_unique<CertAuth>(); }

}  // namespace vd
