// vault_transport: how one request reaches Vault, the way Vault's own client reaches
// it (hashicorp/vault api/client.go): the URL and socket for an address (http://,
// https://, unix:///path), the TLS settings (CA file or CA directory, client
// certificate, server name, verification). Private to src/vault/ (includes curl).
#pragma once

#include <curl/curl.h>
#include <openssl/x509.h>

#include <optional>
#include <string>
#include <string_view>

namespace vaultwire::detail {

// Where requests go and how: the part of vault_client_options SIGHUP may change.
struct vault_endpoint {
  std::string address;  // http(s)://host[:port] or unix:///path, no trailing '/'
  std::string vault_namespace;
  std::string ca_file;
  std::string ca_path;
  std::string client_cert;
  std::string client_key;
  std::string tls_server_name;
  bool skip_verify = false;
};

// The path after unix://, or "" for an http(s) address.
[[nodiscard]] std::string unix_socket_of(std::string_view address);

// The URL of a request to `path` (after /v1/): the address, or http://localhost for a
// unix socket (the host Vault's client puts in the URL, api/client.go ParseAddress).
[[nodiscard]] std::string request_url(const vault_endpoint& at, std::string_view path);

// What curl is given for one exchange with `url`.
struct request_target {
  std::string url;          // with tls_server_name as its host for https
  std::string scheme;       // "http" or "https", lower case
  std::string connect_to;   // "name:port:host:port" (CURLOPT_CONNECT_TO) with tls_server_name
  std::string host_header;  // "Host: host[:port]": the address's authority, as Go sends it
};
// Empty with `error` set when `url` does not parse.
[[nodiscard]] std::optional<request_target> target_for(const std::string& url, const vault_endpoint& at,
                                                       std::string& error);

// What the TLS context callback needs; lives until curl_easy_perform returns.
struct tls_setup {
  std::string ca_path;
  std::string error;  // why the callback refused the connection
};

// Verification (or not), Vault's CA, the client certificate, and the callback that
// wipes decrypted answers and loads the CA directory. `tls` must outlive the perform.
void set_tls_options(CURL* h, const vault_endpoint& at, tls_setup& tls);

// Every certificate of every regular file below `dir` (recursively, like Vault's
// client reads VAULT_CAPATH with go-rootcerts LoadCAPath) into `store`. False, with
// `error` naming the file, when a file cannot be read or holds no PEM certificate.
[[nodiscard]] bool load_ca_directory(X509_STORE* store, const std::string& dir, std::string& error);

}  // namespace vaultwire::detail
