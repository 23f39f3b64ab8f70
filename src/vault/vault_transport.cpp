// vault_transport: see vault_transport.hpp. Also make_vault_client_options (vault_client.hpp): the
// options of a request from the [vault] section.
#include "vault/vault_transport.hpp"

#include "vault/vault_client.hpp"
#include "vaultwire/config.hpp"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <system_error>

namespace vaultwire::detail {

namespace {

constexpr std::string_view unix_prefix = "unix://";

struct url_handle {
  CURLU* u = curl_url();
  ~url_handle() { curl_url_cleanup(u); }
  url_handle() = default;
  url_handle(const url_handle&) = delete;
  url_handle& operator=(const url_handle&) = delete;

  [[nodiscard]] std::string get(CURLUPart part, unsigned flags = 0) const {
    char* v = nullptr;
    if (curl_url_get(u, part, &v, flags) != CURLUE_OK || v == nullptr) return {};
    std::string s(v);
    curl_free(v);
    return s;
  }
};

// Every certificate of one PEM file into `store`; false when it holds none.
bool load_pem_file(X509_STORE* store, const std::filesystem::path& file, std::string& error) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new_file(file.c_str(), "r"), &BIO_free);
  if (!bio) {
    error = "cannot read " + file.string() + ": " + std::generic_category().message(errno);
    return false;
  }
  int found = 0;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    X509_STORE_add_cert(store, cert);  // a certificate already there is not an error
    X509_free(cert);
    ++found;
  }
  ERR_clear_error();  // the end of the file reads as an error
  if (found == 0) error = "no PEM certificate in " + file.string();
  return found > 0;
}

// curl's TLS context for Vault: decrypted answers (credential passwords, tokens that
// lookup-self echoes) are wiped from OpenSSL's read buffer once curl has read them;
// a CA directory is loaded into the context's store (curl's own CAPATH would need
// `openssl rehash` names, which Vault's client does not).
CURLcode configure_tls_context(CURL*, void* ssl_ctx, void* data) {
  auto* ctx = static_cast<SSL_CTX*>(ssl_ctx);
  SSL_CTX_set_options(ctx, SSL_OP_CLEANSE_PLAINTEXT);
  auto* setup = static_cast<tls_setup*>(data);
  if (setup != nullptr && !setup->ca_path.empty() &&
      !load_ca_directory(SSL_CTX_get_cert_store(ctx), setup->ca_path, setup->error)) {
    return CURLE_SSL_CACERT_BADFILE;
  }
  return CURLE_OK;
}

}  // namespace

std::string unix_socket_of(std::string_view address) {
  if (!address.starts_with(unix_prefix)) return {};
  return std::string(address.substr(unix_prefix.size()));
}

std::string request_url(const vault_endpoint& at, std::string_view path) {
  const std::string base = at.address.starts_with(unix_prefix) ? std::string("http://localhost") : at.address;
  return base + "/v1/" + std::string(path);
}

std::optional<request_target> target_for(const std::string& url, const vault_endpoint& at, std::string& error) {
  url_handle u;
  if (u.u == nullptr || curl_url_set(u.u, CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) {
    error = "cannot parse the URL " + url;
    return std::nullopt;
  }
  request_target t;
  t.url = url;
  t.scheme = u.get(CURLUPART_SCHEME);
  if (at.tls_server_name.empty() || t.scheme != "https" || !unix_socket_of(at.address).empty()) return t;
  // Vault's client sets tls.Config.ServerName (api/client.go configureTLS): the name for
  // SNI and verification, while it still connects to the URL's host and sends its Host.
  const std::string host = u.get(CURLUPART_HOST);
  const std::string port = u.get(CURLUPART_PORT, CURLU_DEFAULT_PORT);
  const std::string given_port = u.get(CURLUPART_PORT);
  if (curl_url_set(u.u, CURLUPART_HOST, at.tls_server_name.c_str(), 0) != CURLUE_OK) {
    error = "vault.tls_server_name " + at.tls_server_name + " is not a host name";
    return std::nullopt;
  }
  t.url = u.get(CURLUPART_URL);
  t.connect_to = at.tls_server_name + ":" + port + ":" + host + ":" + port;
  t.host_header = "Host: " + host + (given_port.empty() ? "" : ":" + given_port);
  return t;
}

void set_tls_options(CURL* h, const vault_endpoint& at, tls_setup& tls) {
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, at.skip_verify ? 0L : 1L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, at.skip_verify ? 0L : 2L);
  // As go-rootcerts: a CA file, else a CA directory, replaces the system store.
  if (!at.ca_file.empty()) {
    curl_easy_setopt(h, CURLOPT_CAINFO, at.ca_file.c_str());
    curl_easy_setopt(h, CURLOPT_CAPATH, nullptr);
  } else if (!at.ca_path.empty()) {
    curl_easy_setopt(h, CURLOPT_CAINFO, nullptr);
    curl_easy_setopt(h, CURLOPT_CAPATH, nullptr);
    tls.ca_path = at.ca_path;
  }
  if (!at.client_cert.empty()) {
    curl_easy_setopt(h, CURLOPT_SSLCERT, at.client_cert.c_str());
    curl_easy_setopt(h, CURLOPT_SSLKEY, at.client_key.c_str());
  }
  curl_easy_setopt(h, CURLOPT_SSL_CTX_FUNCTION, &configure_tls_context);
  curl_easy_setopt(h, CURLOPT_SSL_CTX_DATA, &tls);
}

bool load_ca_directory(X509_STORE* store, const std::string& dir, std::string& error) {
  namespace fs = std::filesystem;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::error_code st_ec;
    if (it->is_directory(st_ec)) continue;
    if (!load_pem_file(store, it->path(), error)) return false;
  }
  if (ec) {
    error = "cannot read the CA directory " + dir + ": " + ec.message();
    return false;
  }
  return true;
}

}  // namespace vaultwire::detail

namespace vaultwire {

// Where a request goes and how, from the configuration.
vault_client_options make_vault_client_options(const vault_config& config, std::size_t threads) {
  const auto path = [](const std::optional<std::filesystem::path>& p) { return p ? p->string() : std::string(); };
  vault_client_options o;
  o.address = config.address;
  o.vault_namespace = config.namespace_.value_or(std::string());
  o.ca_file = path(config.ca_file);
  o.ca_path = path(config.ca_path);
  o.client_cert = path(config.client_cert);
  o.client_key = path(config.client_key);
  o.tls_server_name = config.tls_server_name.value_or(std::string());
  o.skip_verify = config.skip_verify;
  o.request_timeout = config.request_timeout;
  o.threads = threads;
  return o;
}

}  // namespace vaultwire
