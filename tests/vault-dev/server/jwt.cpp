// vault-dev: compact JWS parsing and signature checks with OpenSSL (see jwt.hpp).
#include "jwt.hpp"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <cstring>

namespace vd {

namespace {

int b64url_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

const EVP_MD* digest_for(const std::string& alg) {
  std::string bits = alg.size() >= 3 ? alg.substr(alg.size() - 3) : "";
  if (bits == "256") return EVP_sha256();
  if (bits == "384") return EVP_sha384();
  if (bits == "512") return EVP_sha512();
  return nullptr;
}

struct MdCtx {
  EVP_MD_CTX* p = EVP_MD_CTX_new();
  ~MdCtx() { EVP_MD_CTX_free(p); }
};

// go-jose's ecDecrypterSigner: ES256 needs P-256, ES384 P-384, ES512 P-521; the
// signature is R || S, each the curve's byte size.
bool verify_ecdsa(const ParsedJws& jws, EVP_PKEY* key, const EVP_MD* md) {
  int bits = EVP_PKEY_get_bits(key);
  int want = jws.alg == "ES256" ? 256 : jws.alg == "ES384" ? 384 : 521;
  if (bits != want) return false;
  std::size_t n = static_cast<std::size_t>((bits + 7) / 8);
  if (jws.signature.size() != 2 * n) return false;
  const auto* raw = reinterpret_cast<const unsigned char*>(jws.signature.data());
  ECDSA_SIG* sig = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(raw, static_cast<int>(n), nullptr);
  BIGNUM* s = BN_bin2bn(raw + n, static_cast<int>(n), nullptr);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return false;
  }
  unsigned char* der = nullptr;
  int der_len = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  if (der_len <= 0) return false;
  MdCtx ctx;
  bool ok = EVP_DigestVerifyInit(ctx.p, nullptr, md, nullptr, key) == 1 &&
            EVP_DigestVerify(ctx.p, der, static_cast<std::size_t>(der_len),
                             reinterpret_cast<const unsigned char*>(jws.signing_input.data()),
                             jws.signing_input.size()) == 1;
  OPENSSL_free(der);
  return ok;
}

}  // namespace

std::optional<std::string> base64url_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size() * 3 / 4);
  unsigned acc = 0;
  int nbits = 0;
  for (char c : s) {
    int v = b64url_value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<unsigned>(v);
    nbits += 6;
    if (nbits >= 8) {
      nbits -= 8;
      out.push_back(static_cast<char>((acc >> nbits) & 0xff));
    }
  }
  // RawURLEncoding: a lone trailing character cannot be, and leftover bits must be zero.
  if (nbits >= 6 || (acc & ((1u << nbits) - 1)) != 0) return std::nullopt;
  return out;
}

// go-jose v2 jws.go parseCompact: three dot-separated parts, each base64url; then the
// protected header and the payload (jwt.ParseSigned) must be JSON.
ParsedJws parse_jws(const std::string& token) {
  auto parts = split(token, '.');
  if (parts.size() != 3) throw JwtError("square/go-jose: compact JWS format must have three parts");
  auto header = base64url_decode(parts[0]);
  auto payload = base64url_decode(parts[1]);
  auto sig = base64url_decode(parts[2]);
  if (!header || !payload || !sig) throw JwtError("illegal base64 data");
  ParsedJws out;
  try {
    out.header = json::parse(*header);
    out.claims = json::parse(*payload);
  } catch (const std::exception&) {
    throw JwtError("square/go-jose: invalid JSON");
  }
  if (!out.header.is_object() || !out.claims.is_object()) throw JwtError("square/go-jose: invalid JSON");
  auto alg = out.header.find("alg");
  if (alg == out.header.end() || !alg->is_string()) throw JwtError("square/go-jose: missing algorithm");
  out.alg = alg->get<std::string>();
  out.signing_input = parts[0] + "." + parts[1];
  out.signature = std::move(*sig);
  return out;
}

std::vector<PublicKey> parse_public_keys_pem(const std::string& pem) {
  std::vector<PublicKey> keys;
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (!bio) throw JwtError("out of memory");
  for (;;) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long len = 0;
    if (PEM_read_bio(bio, &name, &header, &data, &len) != 1) break;
    const unsigned char* p = data;
    EVP_PKEY* key = nullptr;
    if (std::strcmp(name, "PUBLIC KEY") == 0) {
      key = d2i_PUBKEY(nullptr, &p, len);
    } else if (std::strcmp(name, "RSA PUBLIC KEY") == 0) {
      key = d2i_PublicKey(EVP_PKEY_RSA, nullptr, &p, len);
    } else if (std::strcmp(name, "CERTIFICATE") == 0) {
      X509* cert = d2i_X509(nullptr, &p, len);
      if (cert) key = X509_get_pubkey(cert);
      X509_free(cert);
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
    if (key) keys.emplace_back(key, EVP_PKEY_free);
  }
  BIO_free(bio);
  ERR_clear_error();  // the end of the PEM data queues an error; handlers share threads
  if (keys.empty()) throw JwtError("data does not contain any valid RSA or ECDSA public keys");
  return keys;
}

namespace {
bool verify_jws_inner(const ParsedJws& jws, const PublicKey& key);
}

bool verify_jws(const ParsedJws& jws, const PublicKey& key) {
  bool ok = verify_jws_inner(jws, key);
  ERR_clear_error();  // a failed verification queues errors; handlers share threads
  return ok;
}

namespace {
bool verify_jws_inner(const ParsedJws& jws, const PublicKey& key) {
  EVP_PKEY* k = key.get();
  const std::string& alg = jws.alg;
  const auto* sig = reinterpret_cast<const unsigned char*>(jws.signature.data());
  const auto* msg = reinterpret_cast<const unsigned char*>(jws.signing_input.data());
  int type = EVP_PKEY_get_base_id(k);
  if (alg == "EdDSA") {
    if (type != EVP_PKEY_ED25519) return false;
    MdCtx ctx;
    return EVP_DigestVerifyInit(ctx.p, nullptr, nullptr, nullptr, k) == 1 &&
           EVP_DigestVerify(ctx.p, sig, jws.signature.size(), msg, jws.signing_input.size()) == 1;
  }
  const EVP_MD* md = digest_for(alg);
  if (!md) return false;
  if (alg[0] == 'E' && alg[1] == 'S') return type == EVP_PKEY_EC && verify_ecdsa(jws, k, md);
  bool pss = alg[0] == 'P' && alg[1] == 'S';
  if (!pss && !(alg[0] == 'R' && alg[1] == 'S')) return false;
  if (type != EVP_PKEY_RSA) return false;
  MdCtx ctx;
  EVP_PKEY_CTX* pctx = nullptr;
  if (EVP_DigestVerifyInit(ctx.p, &pctx, md, nullptr, k) != 1) return false;
  if (pss && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
              EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_AUTO) != 1)) {
    return false;
  }
  return EVP_DigestVerify(ctx.p, sig, jws.signature.size(), msg, jws.signing_input.size()) == 1;
}

}  // namespace

}  // namespace vd
