// vault_client: libcurl (easy interface) on a bounded boost::asio::thread_pool.
// The only file in vaultwire that includes <curl/curl.h> (STYLE.md §1).
//
// Connection reuse: each request borrows an easy handle from a small free list and
// gives it back; curl_easy_reset keeps a handle's live connections, DNS cache and
// TLS session cache, so keep-alive connections to Vault are reused. At most
// `threads` handles exist for the pool (blocking callers on other threads may add
// their own).
//
// What is wiped after each request: our header line with the token, curl's slist
// copy of it, the response body buffer, every string the JSON parser allocated.
// What is not under our control: curl's internal send buffer, OpenSSL's record
// buffers, and nlohmann's lexer scratch vector (reused per token, freed unwiped).
#include "vaultwire/vault_client.hpp"

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdint>
#include <exception>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "vaultwire/config.hpp"
#include "vaultwire/detail/asio.hpp"
#include "vaultwire/errc.hpp"

namespace vaultwire {

namespace net = boost::asio;

namespace {

// ------------------------------------------------------------------ JSON that wipes

// An allocator that wipes every byte it hands back, so the parser's token buffer and
// each parsed string (passwords, tokens echoed by lookup-self) leave nothing behind.
template <class T>
struct wiping_allocator {
  using value_type = T;
  wiping_allocator() noexcept = default;
  template <class U>
  wiping_allocator(const wiping_allocator<U>&) noexcept {}  // NOLINT(google-explicit-constructor)
  [[nodiscard]] T* allocate(std::size_t n) { return std::allocator<T>{}.allocate(n); }
  void deallocate(T* p, std::size_t n) noexcept {
    OPENSSL_cleanse(p, n * sizeof(T));
    std::allocator<T>{}.deallocate(p, n);
  }
  friend bool operator==(const wiping_allocator&, const wiping_allocator&) noexcept { return true; }
  friend bool operator!=(const wiping_allocator&, const wiping_allocator&) noexcept { return false; }
};

using wiped_string = std::basic_string<char, std::char_traits<char>, wiping_allocator<char>>;
using wiped_json = nlohmann::basic_json<std::map, std::vector, wiped_string, bool, std::int64_t, std::uint64_t,
                                        double, wiping_allocator>;

constexpr std::size_t max_body_bytes = 1 << 20;

vault_error make_error(vault_error_kind kind, int status, std::string message, std::string_view address,
                       std::string_view request) {
  vault_error e;
  e.kind = kind;
  e.http_status = status;
  e.message = std::move(message);
  e.address = std::string(address);
  e.request = std::string(request);
  return e;
}

// Parses a JSON object; a discarded value when the body is not one.
wiped_json parse_object(std::string_view body) {
  wiped_json j = wiped_json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return wiped_json(wiped_json::value_t::discarded);
  return j;
}

class shape_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

const wiped_json& member(const wiped_json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end()) throw shape_error(std::string("no \"") + key + "\"");
  return *it;
}

std::string string_member(const wiped_json& obj, const char* key, bool required_nonempty) {
  const auto& v = member(obj, key);
  if (!v.is_string()) throw shape_error(std::string("\"") + key + "\" is not a string");
  const auto& s = v.get_ref<const wiped_string&>();
  if (required_nonempty && s.empty()) throw shape_error(std::string("\"") + key + "\" is empty");
  return std::string(s.data(), s.size());
}

std::chrono::seconds seconds_member(const wiped_json& obj, const char* key) {
  const auto& v = member(obj, key);
  if (!v.is_number_integer() || v.get<std::int64_t>() < 0) {
    throw shape_error(std::string("\"") + key + "\" is not a non-negative integer");
  }
  return std::chrono::seconds(v.get<std::int64_t>());
}

bool bool_member(const wiped_json& obj, const char* key) {
  const auto& v = member(obj, key);
  if (!v.is_boolean()) throw shape_error(std::string("\"") + key + "\" is not a boolean");
  return v.get<bool>();
}

// An absent or null key is an empty list.
std::vector<std::string> strings_member(const wiped_json& obj, const char* key) {
  std::vector<std::string> out;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return out;
  if (!it->is_array()) throw shape_error(std::string("\"") + key + "\" is not a list");
  for (const auto& v : *it) {
    if (!v.is_string()) throw shape_error(std::string("\"") + key + "\" holds a non-string");
    const auto& s = v.get_ref<const wiped_string&>();
    out.emplace_back(s.data(), s.size());
  }
  return out;
}

const wiped_json& object_member(const wiped_json& obj, const char* key) {
  const auto& v = member(obj, key);
  if (!v.is_object()) throw shape_error(std::string("\"") + key + "\" is not an object");
  return v;
}

// Runs a parser over a 2xx body, turning shape errors into bad_response.
template <class T, class F>
vault_result<T> parse_with(std::string_view body, std::string_view address, std::string_view request, F f) {
  wiped_json j = parse_object(body);
  if (j.is_discarded()) {
    return make_error(vault_error_kind::bad_response, 0, "the answer is not a JSON object", address, request);
  }
  try {
    return f(j);
  } catch (const shape_error& e) {
    return make_error(vault_error_kind::bad_response, 0, std::string("unexpected answer: ") + e.what(), address,
                      request);
  } catch (const nlohmann::json::exception& e) {
    return make_error(vault_error_kind::bad_response, 0, std::string("unexpected answer: ") + e.what(), address,
                      request);
  }
}

std::string collapse_whitespace(std::string_view s) {
  std::string out;
  bool space = false;
  for (char c : s) {
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
      space = !out.empty();
      continue;
    }
    if (space) out.push_back(' ');
    space = false;
    out.push_back(c);
  }
  return out;
}

bool is_2xx(long status) { return status >= 200 && status < 300; }

}  // namespace

// ------------------------------------------------------------------ errors

std::string_view to_string(vault_error_kind kind) noexcept {
  switch (kind) {
    case vault_error_kind::forbidden: return "forbidden";
    case vault_error_kind::bad_request: return "bad_request";
    case vault_error_kind::not_found: return "not_found";
    case vault_error_kind::sealed: return "sealed";
    case vault_error_kind::rate_limited: return "rate_limited";
    case vault_error_kind::server_error: return "server_error";
    case vault_error_kind::redirected: return "redirected";
    case vault_error_kind::unreachable: return "unreachable";
    case vault_error_kind::timeout: return "timeout";
    case vault_error_kind::bad_response: return "bad_response";
  }
  return "unknown";
}

bool vault_error::token_rejected() const noexcept {
  return kind == vault_error_kind::forbidden || kind == vault_error_kind::bad_request ||
         kind == vault_error_kind::not_found;
}

std::string_view vault_error::sqlstate() const noexcept { return token_rejected() ? "28P01" : "08001"; }

std::error_code vault_error::code() const noexcept {
  return make_error_code(token_rejected() ? errc::vault_rejected_token : errc::vault_unavailable);
}

std::string vault_error::to_client_message() const {
  const std::string status = http_status > 0 ? "HTTP " + std::to_string(http_status) : std::string();
  const std::string text = message.empty() ? status : message;
  switch (kind) {
    case vault_error_kind::forbidden:
    case vault_error_kind::bad_request:
    case vault_error_kind::not_found:
      return "Vault rejected the token: " + text;
    case vault_error_kind::sealed:
    case vault_error_kind::rate_limited:
    case vault_error_kind::server_error:
      return "Vault at " + address + " is unavailable: " + text + (message.empty() ? "" : " (" + status + ")");
    case vault_error_kind::redirected:
      return "Vault at " + address + " answered with a redirect, which vaultwire does not follow (" + text +
             "); set vault.address to the active node";
    case vault_error_kind::unreachable:
      return "cannot reach Vault at " + address + ": " + text;
    case vault_error_kind::timeout:
      return "Vault at " + address + " did not answer in time: " + text;
    case vault_error_kind::bad_response:
      return "Vault at " + address + " sent an answer vaultwire cannot use: " + text;
  }
  return "Vault at " + address + ": " + text;
}

namespace detail {

std::string condense_vault_error(std::string_view text) {
  // Go multierror: "<n> error(s) occurred:\n\t* a\n\t* b\n\n".
  const auto header_end = text.find(" occurred:\n");
  if (header_end != std::string_view::npos) {
    const std::string_view head = text.substr(0, header_end);
    const bool counted = !head.empty() && std::isdigit(static_cast<unsigned char>(head.front())) &&
                         (head.ends_with(" error") || head.ends_with(" errors"));
    if (counted) {
      std::string_view rest = text.substr(header_end + std::string_view(" occurred:\n").size());
      std::string out;
      std::size_t pos = 0;
      while (pos <= rest.size()) {
        const std::size_t bullet = rest.find("\t* ", pos);
        if (bullet == std::string_view::npos) break;
        const std::size_t start = bullet + 3;
        const std::size_t next = rest.find("\n\t* ", start);
        const std::string_view item = rest.substr(start, next == std::string_view::npos ? std::string_view::npos
                                                                                         : next - start);
        std::string one = collapse_whitespace(item);
        if (!one.empty()) {
          if (!out.empty()) out += "; ";
          out += one;
        }
        if (next == std::string_view::npos) break;
        pos = next + 1;
      }
      if (!out.empty()) return out;
    }
  }
  return collapse_whitespace(text);
}

std::string condense_vault_errors(const std::vector<std::string>& errors) {
  std::string out;
  for (const auto& e : errors) {
    std::string one = condense_vault_error(e);
    if (one.empty()) continue;
    if (!out.empty()) out += "; ";
    out += one;
  }
  return out;
}

vault_error error_from_response(int http_status, std::string_view body, std::string_view location,
                                std::string_view address, std::string_view request) {
  std::string text;
  {
    wiped_json j = parse_object(body);
    if (!j.is_discarded()) {
      auto it = j.find("errors");
      if (it != j.end() && it->is_array()) {
        std::vector<std::string> errors;
        for (const auto& v : *it) {
          if (v.is_string()) {
            const auto& s = v.get_ref<const wiped_string&>();
            errors.emplace_back(s.data(), s.size());
          }
        }
        text = condense_vault_errors(errors);
      }
    }
  }
  vault_error_kind kind = vault_error_kind::bad_response;
  if (http_status >= 300 && http_status < 400) {
    kind = vault_error_kind::redirected;
    text = "HTTP " + std::to_string(http_status);
    if (!location.empty()) text += " to " + std::string(location);
  } else if (http_status == 403) {
    kind = vault_error_kind::forbidden;
  } else if (http_status == 404) {
    kind = vault_error_kind::not_found;
    if (text.empty()) text = "not found";
  } else if (http_status == 429) {
    kind = vault_error_kind::rate_limited;
    if (text.empty()) text = "too many requests";
  } else if (http_status >= 400 && http_status < 500) {
    kind = vault_error_kind::bad_request;
  } else if (http_status >= 500 && http_status < 600) {
    kind = (http_status == 503 && text.find("Vault is sealed") != std::string::npos)
               ? vault_error_kind::sealed
               : vault_error_kind::server_error;
  } else {
    kind = vault_error_kind::bad_response;
    if (text.empty()) text = "unexpected HTTP status " + std::to_string(http_status);
  }
  return make_error(kind, http_status, std::move(text), address, request);
}

vault_result<vault_credential> parse_credential(std::string_view body, std::string_view address,
                                                std::string_view request) {
  return parse_with<vault_credential>(body, address, request, [](const wiped_json& j) -> vault_result<vault_credential> {
    vault_credential c;
    c.lease_id = string_member(j, "lease_id", true);
    c.lease_duration = seconds_member(j, "lease_duration");
    c.renewable = bool_member(j, "renewable");
    const auto& data = object_member(j, "data");
    c.username = string_member(data, "username", true);
    const auto& pw = member(data, "password");
    if (!pw.is_string() || pw.get_ref<const wiped_string&>().empty()) {
      throw shape_error("\"password\" is not a non-empty string");
    }
    const auto& pws = pw.get_ref<const wiped_string&>();
    c.password = pgwire::secret_string(std::string_view(pws.data(), pws.size()));
    c.warnings = strings_member(j, "warnings");
    return c;
  });
}

vault_result<vault_lease_renewal> parse_lease_renewal(std::string_view body, std::string_view address,
                                                      std::string_view request) {
  return parse_with<vault_lease_renewal>(body, address, request,
                                         [](const wiped_json& j) -> vault_result<vault_lease_renewal> {
                                           vault_lease_renewal r;
                                           r.lease_id = string_member(j, "lease_id", true);
                                           r.lease_duration = seconds_member(j, "lease_duration");
                                           r.renewable = bool_member(j, "renewable");
                                           r.warnings = strings_member(j, "warnings");
                                           return r;
                                         });
}

vault_result<vault_token_info> parse_lookup_self(std::string_view body, std::string_view address,
                                                 std::string_view request) {
  return parse_with<vault_token_info>(body, address, request, [](const wiped_json& j) -> vault_result<vault_token_info> {
    const auto& data = object_member(j, "data");
    vault_token_info t;
    t.accessor = string_member(data, "accessor", false);
    t.ttl = seconds_member(data, "ttl");
    t.policies = strings_member(data, "policies");
    t.display_name = string_member(data, "display_name", false);
    t.entity_id = string_member(data, "entity_id", false);
    t.renewable = bool_member(data, "renewable");
    t.warnings = strings_member(j, "warnings");
    return t;
  });
}

vault_result<vault_token_info> parse_renew_self(std::string_view body, std::string_view address,
                                                std::string_view request) {
  return parse_with<vault_token_info>(body, address, request, [](const wiped_json& j) -> vault_result<vault_token_info> {
    const auto& auth = object_member(j, "auth");
    vault_token_info t;
    t.accessor = string_member(auth, "accessor", false);
    t.ttl = seconds_member(auth, "lease_duration");
    t.policies = strings_member(auth, "policies");
    t.renewable = bool_member(auth, "renewable");
    t.warnings = strings_member(j, "warnings");
    return t;
  });
}

std::string_view endpoint_label(std::string_view path) noexcept {
  if (const auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  while (!path.empty() && path.front() == '/') path.remove_prefix(1);
  if (path == "sys/leases/renew" || path.starts_with("sys/leases/renew/")) return "renew";
  if (path == "sys/leases/revoke" || path.starts_with("sys/leases/revoke/")) return "revoke";
  if (path == "auth/token/lookup-self") return "lookup-self";
  if (path == "auth/token/renew-self") return "renew-self";
  if (path == "sys/health") return "health";
  if (path.find("/creds/") != std::string_view::npos) return "creds";
  return "other";
}

std::string escape_path(std::string_view segment, bool keep_slash) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(segment.size());
  for (char ch : segment) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
      out.push_back(ch);
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 0xF]);
    }
  }
  return out;
}

}  // namespace detail

// ------------------------------------------------------------------ transport

namespace {

struct http_answer {
  long status = 0;
  pgwire::secret_string body;  // wiped when it goes
  std::string location;
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
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) throw std::runtime_error("curl_global_init failed");
  });
}

}  // namespace

class vault_client::impl {
 public:
  explicit impl(const vault_client_options& o) : options_(o), pool_(o.threads) {}

  impl(const impl&) = delete;
  impl& operator=(const impl&) = delete;

  ~impl() {
    shutdown();
    for (CURL* h : idle_) curl_easy_cleanup(h);
  }

  void shutdown() { pool_.join(); }

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
      return make_error(vault_error_kind::bad_response, 0, std::string("internal error: ") + e.what(),
                        current().address, "");
    }
  }

  // One HTTP exchange. A transport failure or a non-2xx answer is an error; the
  // answer's body is returned for the caller to parse (it is wiped on destruction).
  vault_result<http_answer> perform(std::string_view method, const std::string& path, std::string_view body,
                                    const pgwire::secret_string& token, const std::string& request_label) {
    CURL* h = acquire();
    struct releaser {
      impl* self;
      CURL* h;
      ~releaser() { self->release(h); }
    } release_on_exit{this, h};
    curl_easy_reset(h);

    const where at = current();
    const std::string url = at.address + "/v1/" + path;
    char errbuf[CURL_ERROR_SIZE] = {};
    http_answer answer;

    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.request_timeout.count()));
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.request_timeout.count()));
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!at.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, at.ca_file.c_str());
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &write_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &answer.body);

    header_list headers;
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

    const auto started = std::chrono::steady_clock::now();
    const CURLcode rc = curl_easy_perform(h);
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, nullptr);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, nullptr);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, nullptr);

    if (options_.observer) {
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
    if (rc != CURLE_OK) {
      const std::string detail = errbuf[0] != '\0' ? std::string(errbuf) : std::string(curl_easy_strerror(rc));
      spdlog::debug("vault: {} {} failed after {} ms: {}", method, path, ms, detail);
      if (rc == CURLE_WRITE_ERROR && answer.body.size() > 0) {
        return make_error(vault_error_kind::bad_response, 0, "the answer is larger than 1 MiB", at.address,
                          request_label);
      }
      if (rc == CURLE_OPERATION_TIMEDOUT) {
        // The setting to look at, not curl's byte count (that stays in the debug line).
        const auto t = options_.request_timeout.count();
        const std::string limit = t % 1000 == 0 ? std::to_string(t / 1000) + "s" : std::to_string(t) + "ms";
        return make_error(vault_error_kind::timeout, 0, "no answer within " + limit + " ([vault] request_timeout)",
                          at.address, request_label);
      }
      return make_error(vault_error_kind::unreachable, 0, detail, at.address, request_label);
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &answer.status);
    spdlog::debug("vault: {} {} -> {} in {} ms", method, path, answer.status, ms);
    if (!is_2xx(answer.status)) {
      char* redirect = nullptr;
      curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &redirect);
      return detail::error_from_response(static_cast<int>(answer.status), answer.body.view(),
                                         redirect != nullptr ? std::string_view(redirect) : std::string_view(),
                                         at.address, request_label);
    }
    return answer;
  }

  // Where requests go: SIGHUP may change it (reconfigure); each request reads it once.
  struct where {
    std::string address;
    std::string vault_namespace;
    std::string ca_file;
  };
  where current() {
    std::lock_guard lock(mutex_);
    return {options_.address, options_.vault_namespace, options_.ca_file};
  }
  void reconfigure(const where& w) {
    std::lock_guard lock(mutex_);
    options_.address = w.address;
    options_.vault_namespace = w.vault_namespace;
    options_.ca_file = w.ca_file;
  }

 private:
  CURL* acquire() {
    {
      std::lock_guard lock(mutex_);
      if (!idle_.empty()) {
        CURL* h = idle_.back();
        idle_.pop_back();
        return h;
      }
    }
    CURL* h = curl_easy_init();
    if (h == nullptr) throw std::runtime_error("curl_easy_init failed");
    return h;
  }

  void release(CURL* h) {
    std::lock_guard lock(mutex_);
    idle_.push_back(h);
  }

  vault_client_options options_;
  std::mutex mutex_;
  std::vector<CURL*> idle_;  // handles with live connections, ready for reuse
  net::thread_pool pool_;    // last member: joined first, while the rest still exists
};

// ------------------------------------------------------------------ vault_client

namespace {

vault_client_options validated(vault_client_options o) {
  while (!o.address.empty() && o.address.back() == '/') o.address.pop_back();
  if (!o.address.starts_with("http://") && !o.address.starts_with("https://")) {
    throw std::invalid_argument("vault address must start with http:// or https://: " + o.address);
  }
  if (o.threads == 0) throw std::invalid_argument("vault client needs at least one thread");
  if (o.request_timeout <= std::chrono::milliseconds::zero()) {
    throw std::invalid_argument("vault request_timeout must be positive");
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

void vault_client::reconfigure(std::string address, std::string vault_namespace, std::string ca_file) {
  vault_client_options o = options_;
  o.address = std::move(address);
  o.vault_namespace = std::move(vault_namespace);
  o.ca_file = std::move(ca_file);
  o = validated(std::move(o));
  impl_->reconfigure({o.address, o.vault_namespace, o.ca_file});
}

vault_client_options make_vault_client_options(const vault_config& config, std::size_t threads) {
  vault_client_options o;
  o.address = config.address;
  o.vault_namespace = config.namespace_.value_or(std::string());
  o.ca_file = config.ca_file ? config.ca_file->string() : std::string();
  o.request_timeout = config.request_timeout;
  o.threads = threads;
  return o;
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

vault_result<void> vault_client::revoke_lease_blocking(std::string_view lease_id, const pgwire::secret_string& token) {
  // The sys/leases/revoke/<lease_id> form, so a policy can scope revocation to one
  // role's leases: update on sys/leases/revoke/<mount>/creds/<role>/* (DESIGN.md).
  const std::string path = "sys/leases/revoke/" + detail::escape_path(lease_id, true);
  const std::string label = "PUT " + path;
  auto answer = impl_->perform("PUT", path, {}, token, label);
  if (!answer) return std::move(answer).error();
  spdlog::debug("vault: revoked lease {}", lease_id);
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
  impl_->submit<void>(std::move(done), [this, lease_id = std::move(lease_id), token = std::move(token)] {
    return revoke_lease_blocking(lease_id, token);
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

void vault_client::request(std::string method, std::string path, std::string json_body, pgwire::secret_string token,
                           callback<vault_response> done) {
  impl_->submit<vault_response>(std::move(done), [this, method = std::move(method), path = std::move(path),
                                                  json_body = std::move(json_body), token = std::move(token)] {
    return request_blocking(method, path, json_body, token);
  });
}

}  // namespace vaultwire
