// vault-dev: JSON Web Tokens (compact JWS) and PEM public keys with OpenSSL, for the
// jwt and kubernetes auth methods. Only signature checking lives here; which claims
// must hold is each auth method's business.
#pragma once

#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "util.hpp"

struct evp_pkey_st;

namespace vd {

// A JWS or key that cannot be parsed; what() is the text the auth method reports.
struct JwtError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ParsedJws {
  json header;
  json claims;  // the payload, a JSON object
  std::string alg;
  std::string signing_input;  // base64url(header) "." base64url(payload)
  std::string signature;      // raw bytes
};

// Parses header.payload.signature (base64url without padding). Throws JwtError with
// go-jose's texts ("square/go-jose: compact JWS format must have three parts", ...).
ParsedJws parse_jws(const std::string& token);

using PublicKey = std::shared_ptr<evp_pkey_st>;

// Every PUBLIC KEY, RSA PUBLIC KEY and CERTIFICATE (its public key) block of `pem`, as
// Vault's certutil.ParsePublicKeyPEM takes them. Throws JwtError when there is none.
std::vector<PublicKey> parse_public_keys_pem(const std::string& pem);

// Whether `key` verifies the JWS signature under its "alg": RS256/384/512, PS256/384/512,
// ES256/384/512 (the curve must fit the algorithm, as go-jose checks) and EdDSA. A key
// of the wrong type for the algorithm does not verify.
bool verify_jws(const ParsedJws& jws, const PublicKey& key);

std::optional<std::string> base64url_decode(std::string_view s);

}  // namespace vd
