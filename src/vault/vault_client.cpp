// vault_client: libcurl (easy interface) on a bounded boost::asio::thread_pool.
// With vault_transport.cpp (the URL, socket and TLS of a request), the only code in
// vaultwire that includes <curl/curl.h> (STYLE.md §1).
//
// No connection reuse: each request gets a new easy handle, cleaned up after it, so
// one TCP (and TLS) connection per request. A kept handle would hold the last answer
// (a credential's password) in curl's download buffer and in its connection's TLS
// read buffer until its next request; curl_easy_cleanup frees both, and every free
// wipes (secure_memory). Vault requests are per credential, renewal, revocation and
// token recheck, not per client connection, so the extra handshakes are few.
//
// What is wiped after each request: our header line with the token, curl's slist
// copy of it, a login's request body (the caller's secret_string; curl reads it in
// place, CURLOPT_POSTFIELDS), the response body buffer, every string the JSON parser
// allocated.
// curl's own buffers are wiped when curl frees them (curl_global_init_mem with
// secure_memory), OpenSSL's read buffer once curl has read it (SSL_OP_CLEANSE_PLAINTEXT).
// Not under our control: nlohmann's lexer scratch vector (reused per token, freed
// unwiped; later tokens of the same answer overwrite it).
#include "vault/vault_client.hpp"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdint>
#include <ctime>
#include <exception>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "vaultwire/config.hpp"
#include "core/text.hpp"
#include "net/asio.hpp"
#include "vaultwire/errc.hpp"
#include "core/secure_memory.hpp"
#include "vault/vault_transport.hpp"

namespace vaultwire {

namespace net = boost::asio;

// ------------------------------------------------------------------ transport

namespace {

constexpr std::size_t max_body_bytes = 1 << 20;

bool is_2xx(long status) { return status >= 200 && status < 300; }

// The answer's Retry-After (Vault's rate limit quotas send it with a 429 when
// rate-limit response headers are on: http/util.go rateLimitQuotaWrapping), or "".
std::string_view retry_after_header(CURL* h) {
  struct curl_header* header = nullptr;
  if (curl_easy_header(h, "Retry-After", 0, CURLH_HEADER, -1, &header) != CURLHE_OK || header == nullptr) return {};
  return header->value != nullptr ? std::string_view(header->value) : std::string_view();
}

struct http_answer {
  long status = 0;
  pgwire::secret_string body;  // wiped when it goes
  std::string location;
  std::string retry_after;  // a 429's Retry-After header, as sent
};

std::size_t write_body(char* data, std::size_t size, std::size_t nmemb, void* user) {
  auto* body = static_cast<pgwire::secret_string*>(user);
  const std::size_t n = size * nmemb;
  if (body->size() + n > max_body_bytes) return 0;  // CURLE_WRITE_ERROR
  body->append(std::string_view(data, n));          // append wipes a buffer it outgrows
  return n;
}

// Owns a header list; wipes every line (one holds the token) before freeing it.
class header_list {
 public:
  header_list() = default;
  header_list(const header_list&) = delete;
  header_list& operator=(const header_list&) = delete;
  ~header_list() {
    for (curl_slist* p = list_; p != nullptr; p = p->next) {
      if (p->data != nullptr) OPENSSL_cleanse(p->data, std::char_traits<char>::length(p->data));
    }
    curl_slist_free_all(list_);
  }
  // `line` must be NUL-terminated at line.data()[line.size()].
  void add(const char* line) {
    curl_slist* next = curl_slist_append(list_, line);
    if (next == nullptr) throw std::bad_alloc();
    list_ = next;
  }
  [[nodiscard]] curl_slist* get() const noexcept { return list_; }

 private:
  curl_slist* list_ = nullptr;
};

void global_init_once() {
  static std::once_flag flag;
  std::call_once(flag, [] {
    // curl's own buffers (the request it builds carries X-Vault-Token, the download
    // buffer Vault's answer) are wiped when curl frees them.
    if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, &secure_memory::malloc, &secure_memory::free,
                             &secure_memory::realloc, &secure_memory::strdup, &secure_memory::calloc) != CURLE_OK) {
      throw std::runtime_error("curl_global_init failed");
    }
  });
}

bool is_followed_redirect(long status) { return status == 301 || status == 302 || status == 307; }

}  // namespace

class vault_client::impl {
 public:
  using where = detail::vault_endpoint;

  explicit impl(const vault_client_options& o) : options_(o), at_(endpoint_of(o)), pool_(o.threads) {}

  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;

  ~impl() { shutdown(); }

  void shutdown() { pool_.join(); }

  static where endpoint_of(const vault_client_options& o) {
    return {o.address,     o.vault_namespace, o.ca_file,         o.ca_path,
            o.client_cert, o.client_key,      o.tls_server_name, o.skip_verify};
  }

  // Queues `work` (returning vault_result<T>) and calls `done` with its result, on a
  // pool thread, exactly once.
  template <class T, class Work>
  void submit(callback<T> done, Work work) {
    net::post(pool_, [done = std::move(done), work = std::move(work), this]() mutable {
      vault_result<T> r = run_guarded<T>(work);
      try {
        done(std::move(r));
      } catch (const std::exception& e) {
        spdlog::error("vault: a completion callback threw: {}", e.what());
      } catch (...) {
        spdlog::error("vault: a completion callback threw");
      }
    });
  }

  template <class T, class Work>
  vault_result<T> run_guarded(Work& work) {
    try {
      return work();
    } catch (const std::exception& e) {
      return detail::make_vault_error(vault_error_kind::bad_response, 0,
                                      std::string("internal error: ") + e.what(), current().address, "");
    }
  }

  // One request, following one redirect as Vault's client does (api/client.go
  // rawRequestWithContext: 301, 302 or 307, the same method and body, never from https
  // to another scheme). A transport failure or a non-2xx final answer is an error; the
  // answer's body is returned for the caller to parse (it is wiped on destruction).
  vault_result<http_answer> perform(std::string_view method, const std::string& path, std::string_view body,
                                    const pgwire::secret_string& token, const std::string& request_label) {
    const where at = current();
    const std::string first_url = detail::request_url(at, path);
    auto answer = exchange(at, first_url, method, path, body, token, request_label);
    if (!answer || !is_followed_redirect(answer.value().status) || answer.value().location.empty()) {
      return finish(std::move(answer), at, request_label);
    }
    const std::string location = answer.value().location;
    std::string error;
    const auto from = detail::target_for(first_url, at, error);
    const auto to = detail::target_for(location, at, error);
    if (from && to && from->scheme == "https" && to->scheme != "https") {
      return detail::make_vault_error(vault_error_kind::redirected, static_cast<int>(answer.value().status),
                                      "HTTP " + std::to_string(answer.value().status) + " to " + location +
                                          " refused: a redirect from https to " + to->scheme +
                                          " would send the token in clear",
                                      at.address, request_label);
    }
    spdlog::debug("vault: {} {} redirected (HTTP {}) to {}", method, path, answer.value().status, location);
    auto second = exchange(at, location, method, path, body, token, request_label);
    if (second && second.value().status >= 300 && second.value().status < 400) {
      const long status = second.value().status;
      return detail::make_vault_error(vault_error_kind::redirected, static_cast<int>(status),
                                      "HTTP " + std::to_string(status) + " to " + second.value().location +
                                          " after a redirect to " + location + "; vaultwire follows one redirect",
                                      at.address, request_label);
    }
    return finish(std::move(second), at, request_label);
  }

  where current() {
    std::lock_guard lock(mutex_);
    return at_;
  }
  // SIGHUP may change where requests go; each request reads it once.
  void reconfigure(const where& w) {
    std::lock_guard lock(mutex_);
    at_ = w;
  }

 private:
  // A 2xx passes; any other status (a redirect not followed among them) is the error
  // it names.
  static vault_result<http_answer> finish(vault_result<http_answer> answer, const where& at,
                                          const std::string& request_label) {
    if (!answer || is_2xx(answer.value().status)) return answer;
    const http_answer& a = answer.value();
    vault_error e =
        detail::error_from_response(static_cast<int>(a.status), a.body.view(), a.location, at.address, request_label);
    if (a.status == 429) e.retry_after = detail::parse_retry_after(a.retry_after, std::time(nullptr));
    return e;
  }

  // One HTTP exchange with `url`: an answer of any status (its Location kept), or the
  // transport failure.
  vault_result<http_answer> exchange(const where& at, const std::string& url, std::string_view method,
                                     const std::string& path, std::string_view body,
                                     const pgwire::secret_string& token, const std::string& request_label) {
    std::string target_error;
    const auto target = detail::target_for(url, at, target_error);
    if (!target) return detail::make_vault_error(vault_error_kind::unreachable, 0, target_error, at.address, request_label);
    CURL* h = acquire();
    struct releaser {
      impl* self;
      CURL* h;
      ~releaser() { self->release(h); }
    } release_on_exit{this, h};
    curl_easy_reset(h);

    char errbuf[CURL_ERROR_SIZE] = {};
    http_answer answer;
    detail::tls_setup tls;
    curl_slist* connect_to = nullptr;
    set_transport_options(h, at, *target, errbuf, answer, tls, connect_to);
    header_list headers;  // curl reads it during curl_easy_perform
    if (!target->host_header.empty()) headers.add(target->host_header.c_str());
    set_request(h, headers, at, method, body, token);

    const auto started = std::chrono::steady_clock::now();
    const CURLcode rc = curl_easy_perform(h);
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, nullptr);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, nullptr);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, nullptr);
    curl_easy_setopt(h, CURLOPT_CONNECT_TO, nullptr);
    curl_slist_free_all(connect_to);

    report_to_observer(h, rc, answer, path, started);
    if (rc != CURLE_OK) {
      std::string detail = !tls.error.empty() ? tls.error
                           : errbuf[0] != '\0' ? std::string(errbuf)
                                               : std::string(curl_easy_strerror(rc));
      if (url != detail::request_url(at, path)) detail += " (after a redirect to " + url + ")";
      spdlog::debug("vault: {} {} failed after {} ms: {}", method, path, ms, detail);
      return transport_error(rc, detail, answer, at, request_label);
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &answer.status);
    spdlog::debug("vault: {} {} -> {} in {} ms", method, path, answer.status, ms);
    if (!is_2xx(answer.status)) {
      char* redirect = nullptr;
      curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &redirect);
      if (redirect != nullptr) answer.location = redirect;
      if (answer.status == 429) answer.retry_after = std::string(retry_after_header(h));
    }
    return answer;
  }

  // Where the request goes and how: URL (and, for unix:// addresses, the socket),
  // timeouts, TLS, and the answer's body into `answer` (bounded by write_body).
  // `tls` and `connect_to` (freed by the caller) must live until perform returns.
  void set_transport_options(CURL* h, const where& at, const detail::request_target& target, char* errbuf,
                             http_answer& answer, detail::tls_setup& tls, curl_slist*& connect_to) {
    curl_easy_setopt(h, CURLOPT_URL, target.url.c_str());
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);  // one redirect, by perform()
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.request_timeout.count()));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.request_timeout.count()));
    if (const std::string socket = detail::unix_socket_of(at.address); !socket.empty()) {
      curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, socket.c_str());  // curl copies it
    }
    if (!target.connect_to.empty()) {
      connect_to = curl_slist_append(nullptr, target.connect_to.c_str());
      curl_easy_setopt(h, CURLOPT_CONNECT_TO, connect_to);
    }
    detail::set_tls_options(h, at, tls);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &write_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &answer.body);
  }

  // The method, its body, and the headers: the token, the namespace, Vault's request
  // marker. `headers` and `body` must live until curl_easy_perform returns.
  static void set_request(CURL* h, header_list& headers, const where& at, std::string_view method,
                          std::string_view body, const pgwire::secret_string& token) {
    if (!token.empty()) {
      pgwire::secret_string line;
      line.reserve(token.size() + 32);
      line.append("X-Vault-Token: ");
      line.append(token.view());
      line.append('\0');  // curl wants a C string; the NUL is wiped with the rest
      headers.add(line.data());
    }
    if (!at.vault_namespace.empty()) {
      headers.add(("X-Vault-Namespace: " + at.vault_namespace).c_str());
    }
    headers.add("X-Vault-Request: true");
    headers.add("Expect:");
    if (method == "GET") {
      curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else {
      const std::string verb(method);
      curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, verb.c_str());  // curl copies it
      if (!body.empty() || method == "POST" || method == "PUT") {
        headers.add("Content-Type: application/json");
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
        // Not copied: `body` outlives perform. Never NULL (curl would read stdin).
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.empty() ? "" : body.data());
      }
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  }

  // The request's outcome for options_.observer (metrics): the HTTP status, or
  // timeout, too_large or unreachable. An observer that throws is logged, not passed on.
  void report_to_observer(CURL* h, CURLcode rc, const http_answer& answer, const std::string& path,
                          std::chrono::steady_clock::time_point started) {
    if (!options_.observer) return;
    long status = 0;
    if (rc == CURLE_OK) curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    const std::string code = rc == CURLE_OK                     ? std::to_string(status)
                             : rc == CURLE_OPERATION_TIMEDOUT ? std::string("timeout")
                             : rc == CURLE_WRITE_ERROR && answer.body.size() > 0 ? std::string("too_large")
                                                                                 : std::string("unreachable");
    try {
      options_.observer(detail::endpoint_label(path), code,
                        std::chrono::duration<double>(std::chrono::steady_clock::now() - started));
    } catch (const std::exception& e) {
      spdlog::error("vault: the request observer threw: {}", e.what());
    } catch (...) {
      spdlog::error("vault: the request observer threw");
    }
  }

  // A request that got no HTTP answer: curl failed with `rc`, `curl_error` says how.
  vault_result<http_answer> transport_error(CURLcode rc, const std::string& curl_error, const http_answer& answer,
                                            const where& at, const std::string& request_label) {
    if (rc == CURLE_WRITE_ERROR && answer.body.size() > 0) {
      return detail::make_vault_error(vault_error_kind::bad_response, 0, "the answer is larger than 1 MiB",
                                      at.address, request_label);
    }
    if (rc == CURLE_OPERATION_TIMEDOUT) {
      // The setting to look at, not curl's byte count (that stays in the debug line).
      return detail::make_vault_error(vault_error_kind::timeout, 0,
                                      "no answer within " + detail::duration_text(options_.request_timeout) +
                                          " ([vault] request_timeout)",
                                      at.address,
                                      request_label);
    }
    return detail::make_vault_error(vault_error_kind::unreachable, 0, curl_error, at.address, request_label);
  }

  CURL* acquire() {
    CURL* h = curl_easy_init();
    if (h == nullptr) throw std::runtime_error("curl_easy_init failed");
    return h;
  }

  // A handle is not kept: its download buffer and its connection's TLS read buffer
  // would hold the last answer (a credential's password) until the next request on
  // it. curl_easy_cleanup frees both, and every free wipes (secure_memory).
  void release(CURL* h) { curl_easy_cleanup(h); }

  vault_client_options options_;  // the timeout and the observer; not changed after construction
  std::mutex mutex_;              // guards at_ (reconfigure() while requests run)
  where at_;
  net::thread_pool pool_;  // last member: joined first, while the rest still exists
};

std::string libcurl_version() {
  const curl_version_info_data* info = curl_version_info(CURLVERSION_NOW);
  return (info != nullptr && info->version != nullptr) ? info->version : "unknown";
}

// ------------------------------------------------------------------ vault_client

namespace {

vault_client_options validated(vault_client_options o) {
  if (o.address.starts_with("unix://")) {
    if (detail::unix_socket_of(o.address).empty() || detail::unix_socket_of(o.address).front() != '/') {
      throw std::invalid_argument("a unix:// vault address names an absolute path: " + o.address);
    }
  } else {
    while (!o.address.empty() && o.address.back() == '/') o.address.pop_back();
    if (!o.address.starts_with("http://") && !o.address.starts_with("https://")) {
      throw std::invalid_argument("vault address must start with http://, https:// or unix://: " + o.address);
    }
  }
  if (o.threads == 0) throw std::invalid_argument("vault client needs at least one thread");
  if (o.request_timeout <= std::chrono::milliseconds::zero()) {
    throw std::invalid_argument("vault request_timeout must be positive");
  }
  if (o.client_cert.empty() != o.client_key.empty()) {
    throw std::invalid_argument("a client certificate for Vault needs both the certificate and the key");
  }
  if (o.ca_file.empty() && !o.ca_path.empty()) {
    // As Vault's client, which reads the directory when it is configured: a bad file
    // is an error now, not at the first request.
    std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), &X509_STORE_free);
    std::string error;
    if (!store || !detail::load_ca_directory(store.get(), o.ca_path, error)) {
      throw std::invalid_argument("vault.ca_path: " + error);
    }
  }
  return o;
}

std::string trim_slashes(std::string_view s) {
  while (!s.empty() && s.front() == '/') s.remove_prefix(1);
  while (!s.empty() && s.back() == '/') s.remove_suffix(1);
  return std::string(s);
}

std::string increment_body(std::string_view lease_id, std::chrono::seconds increment) {
  nlohmann::json j = nlohmann::json::object();
  if (!lease_id.empty()) j["lease_id"] = lease_id;
  if (increment.count() > 0) j["increment"] = increment.count();
  return j.dump();
}

}  // namespace

void vault_client::reconfigure(const vault_client_options& next) {
  vault_client_options o = options_;
  o.address = next.address;
  o.vault_namespace = next.vault_namespace;
  o.ca_file = next.ca_file;
  o.ca_path = next.ca_path;
  o.client_cert = next.client_cert;
  o.client_key = next.client_key;
  o.tls_server_name = next.tls_server_name;
  o.skip_verify = next.skip_verify;
  impl_->reconfigure(impl::endpoint_of(validated(std::move(o))));
}

vault_client::vault_client(vault_client_options options) : options_(validated(std::move(options))) {
  global_init_once();
  impl_ = std::make_unique<impl>(options_);
}

vault_client::~vault_client() { impl_->shutdown(); }

vault_result<vault_credential> vault_client::read_credentials_blocking(std::string_view mount, std::string_view role,
                                                                      const pgwire::secret_string& token) {
  const std::string path = detail::escape_path(trim_slashes(mount), true) + "/creds/" + detail::escape_path(role, false);
  const std::string label = "GET " + path;
  auto answer = impl_->perform("GET", path, {}, token, label);
  if (!answer) return std::move(answer).error();
  auto c = detail::parse_credential(answer.value().body.view(), options_.address, label);
  if (c) spdlog::debug("vault: credential lease {} for {}s", c.value().lease_id, c.value().lease_duration.count());
  return c;
}

vault_result<vault_lease_renewal> vault_client::renew_lease_blocking(std::string_view lease_id,
                                                                    std::chrono::seconds increment,
                                                                    const pgwire::secret_string& token) {
  const std::string label = "PUT sys/leases/renew";
  auto answer = impl_->perform("PUT", "sys/leases/renew", increment_body(lease_id, increment), token, label);
  if (!answer) return std::move(answer).error();
  auto r = detail::parse_lease_renewal(answer.value().body.view(), options_.address, label);
  if (r) spdlog::debug("vault: renewed lease {} for {}s", r.value().lease_id, r.value().lease_duration.count());
  return r;
}

vault_result<void> vault_client::revoke_lease_blocking(std::string_view lease_id, const pgwire::secret_string& token,
                                                       revoke_form form) {
  // See revoke_form: the path form lets a policy scope revocation to one role's leases;
  // the body form is the one Vault Proxy's lease cache notices.
  const std::string path =
      form == revoke_form::path ? "sys/leases/revoke/" + detail::escape_path(lease_id, true) : "sys/leases/revoke";
  const std::string body = form == revoke_form::path ? std::string() : nlohmann::json{{"lease_id", std::string(lease_id)}}.dump();
  const std::string label = "PUT " + path;
  auto answer = impl_->perform("PUT", path, body, token, label);
  if (!answer) return std::move(answer).error();
  spdlog::debug("vault: revoked lease {}{}", lease_id, form == revoke_form::body ? " (lease_id in the body)" : "");
  return boost::outcome_v2::success();
}

vault_result<vault_token_info> vault_client::lookup_self_blocking(const pgwire::secret_string& token) {
  const std::string label = "GET auth/token/lookup-self";
  auto answer = impl_->perform("GET", "auth/token/lookup-self", {}, token, label);
  if (!answer) return std::move(answer).error();
  auto t = detail::parse_lookup_self(answer.value().body.view(), options_.address, label);
  if (t) spdlog::debug("vault: token {} has {}s left", t.value().accessor, t.value().ttl.count());
  return t;
}

vault_result<vault_token_info> vault_client::renew_self_blocking(const pgwire::secret_string& token,
                                                                std::chrono::seconds increment) {
  const std::string label = "POST auth/token/renew-self";
  auto answer = impl_->perform("POST", "auth/token/renew-self", increment_body({}, increment), token, label);
  if (!answer) return std::move(answer).error();
  auto t = detail::parse_renew_self(answer.value().body.view(), options_.address, label);
  if (t) spdlog::debug("vault: renewed token {} for {}s", t.value().accessor, t.value().ttl.count());
  return t;
}

vault_result<vault_login> vault_client::login_blocking(std::string_view mount, const pgwire::secret_string& body) {
  // api-docs/auth/{approle,kubernetes,jwt,cert}: POST /auth/<mount>/login, no token.
  // The path names the mount only; the body (a secret ID, a JWT) is never logged.
  const std::string path = "auth/" + detail::escape_path(trim_slashes(mount), true) + "/login";
  const std::string label = "POST " + path;
  auto answer = impl_->perform("POST", path, body.view(), pgwire::secret_string(), label);
  if (!answer) return std::move(answer).error();
  auto r = detail::parse_login(answer.value().body.view(), options_.address, label);
  if (r) {
    spdlog::debug("vault: logged in at {}: token {} for {}s", path,
                  r.value().accessor.empty() ? std::string_view("(no accessor)") : r.value().accessor,
                  r.value().ttl.count());
  }
  return r;
}

vault_result<vault_response> vault_client::request_blocking(std::string_view method, std::string_view path,
                                                            std::string_view json_body,
                                                            const pgwire::secret_string& token) {
  const std::string p = trim_slashes(path);
  const std::string label = std::string(method) + " " + p;
  auto answer = impl_->perform(method, p, json_body, token, label);
  if (!answer) return std::move(answer).error();
  vault_response r;
  r.http_status = static_cast<int>(answer.value().status);
  r.body = std::string(answer.value().body.view());
  return r;
}

void vault_client::read_credentials(std::string mount, std::string role, pgwire::secret_string token,
                                    callback<vault_credential> done) {
  impl_->submit<vault_credential>(std::move(done),
                                  [this, mount = std::move(mount), role = std::move(role), token = std::move(token)] {
                                    return read_credentials_blocking(mount, role, token);
                                  });
}

void vault_client::renew_lease(std::string lease_id, std::chrono::seconds increment, pgwire::secret_string token,
                               callback<vault_lease_renewal> done) {
  impl_->submit<vault_lease_renewal>(std::move(done),
                                     [this, lease_id = std::move(lease_id), increment, token = std::move(token)] {
                                       return renew_lease_blocking(lease_id, increment, token);
                                     });
}

void vault_client::revoke_lease(std::string lease_id, pgwire::secret_string token, callback<void> done) {
  revoke_lease(std::move(lease_id), std::move(token), revoke_form::path, std::move(done));
}

void vault_client::revoke_lease(std::string lease_id, pgwire::secret_string token, revoke_form form,
                                callback<void> done) {
  impl_->submit<void>(std::move(done), [this, lease_id = std::move(lease_id), token = std::move(token), form] {
    return revoke_lease_blocking(lease_id, token, form);
  });
}

void vault_client::lookup_self(pgwire::secret_string token, callback<vault_token_info> done) {
  impl_->submit<vault_token_info>(std::move(done),
                                  [this, token = std::move(token)] { return lookup_self_blocking(token); });
}

void vault_client::renew_self(pgwire::secret_string token, std::chrono::seconds increment,
                              callback<vault_token_info> done) {
  impl_->submit<vault_token_info>(std::move(done), [this, token = std::move(token), increment] {
    return renew_self_blocking(token, increment);
  });
}

void vault_client::login(std::string mount, pgwire::secret_string body, callback<vault_login> done) {
  impl_->submit<vault_login>(std::move(done), [this, mount = std::move(mount), body = std::move(body)] {
    return login_blocking(mount, body);
  });
}

void vault_client::request(std::string method, std::string path, std::string json_body, pgwire::secret_string token,
                           callback<vault_response> done) {
  impl_->submit<vault_response>(std::move(done), [this, method = std::move(method), path = std::move(path),
                                                  json_body = std::move(json_body), token = std::move(token)] {
    return request_blocking(method, path, json_body, token);
  });
}

}  // namespace vaultwire
