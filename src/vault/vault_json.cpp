// The pure half of the Vault client: Vault's JSON answers and error bodies become
// vault_credential / vault_token_info / vault_error values. No libcurl, no Asio, no
// logging, so the fuzz targets (tests/fuzz) build it alone; vault_client.cpp does
// the transport.
#include <openssl/crypto.h>

#include <time.h>

#include <algorithm>
#include <cctype>
#include <ctime>
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "vaultwire/errc.hpp"
#include "vault/vault_client.hpp"

namespace vaultwire {

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

// An absent or null key is `absent`.
bool optional_bool_member(const wiped_json& obj, const char* key, bool absent) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return absent;
  if (!it->is_boolean()) throw shape_error(std::string("\"") + key + "\" is not a boolean");
  return it->get<bool>();
}

// An absent or null key is "".
std::string optional_string_member(const wiped_json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return {};
  if (!it->is_string()) throw shape_error(std::string("\"") + key + "\" is not a string");
  const auto& s = it->get_ref<const wiped_string&>();
  return std::string(s.data(), s.size());
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
    return detail::make_vault_error(vault_error_kind::bad_response, 0, "the answer is not a JSON object", address,
                                    request);
  }
  try {
    return f(j);
  } catch (const shape_error& e) {
    return detail::make_vault_error(vault_error_kind::bad_response, 0, std::string("unexpected answer: ") + e.what(),
                                    address, request);
  } catch (const nlohmann::json::exception& e) {
    return detail::make_vault_error(vault_error_kind::bad_response, 0, std::string("unexpected answer: ") + e.what(),
                                    address, request);
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

std::string_view to_string(vault_refusal refusal) noexcept {
  switch (refusal) {
    case vault_refusal::none: return "none";
    case vault_refusal::bad_token: return "bad_token";
    case vault_refusal::policy_denied: return "policy_denied";
    case vault_refusal::lease_gone: return "lease_gone";
    case vault_refusal::lease_final: return "lease_final";
  }
  return "unknown";
}

bool vault_error::token_rejected() const noexcept {
  if (policy_denied()) return false;
  return kind == vault_error_kind::forbidden || kind == vault_error_kind::bad_request ||
         kind == vault_error_kind::not_found;
}

namespace {

errc errc_of(const vault_error& e) noexcept {
  if (e.policy_denied()) return errc::vault_denied_role;
  return e.token_rejected() ? errc::vault_rejected_token : errc::vault_unavailable;
}

}  // namespace

std::string_view vault_error::sqlstate() const noexcept { return sqlstate_for(errc_of(*this)); }

std::error_code vault_error::code() const noexcept { return make_error_code(errc_of(*this)); }

std::string vault_error::to_client_message() const {
  const std::string status = http_status > 0 ? "HTTP " + std::to_string(http_status) : std::string();
  const std::string text = message.empty() ? status : message;
  if (policy_denied()) return "Vault's policy for the token denies " + request + ": " + text;
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
      return "Vault at " + address + " answered with a redirect vaultwire does not follow (" + text +
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

vault_error make_vault_error(vault_error_kind kind, int status, std::string message, std::string_view address,
                             std::string_view request) {
  vault_error e;
  e.kind = kind;
  e.http_status = status;
  e.message = std::move(message);
  e.address = std::string(address);
  e.request = std::string(request);
  return e;
}

namespace {

// The items of a Go multierror ("<n> error(s) occurred:\n\t* a\n\t* b\n\n"), each
// with its whitespace collapsed, `wrapped` set; any other text is one item.
std::vector<std::string> multierror_items(std::string_view text, bool& wrapped) {
  wrapped = false;
  std::vector<std::string> items;
  const auto header_end = text.find(" occurred:\n");
  if (header_end != std::string_view::npos) {
    const std::string_view head = text.substr(0, header_end);
    const bool counted = !head.empty() && std::isdigit(static_cast<unsigned char>(head.front())) &&
                         (head.ends_with(" error") || head.ends_with(" errors"));
    if (counted) {
      std::string_view rest = text.substr(header_end + std::string_view(" occurred:\n").size());
      std::size_t pos = 0;
      while (pos <= rest.size()) {
        const std::size_t bullet = rest.find("\t* ", pos);
        if (bullet == std::string_view::npos) break;
        const std::size_t start = bullet + 3;
        const std::size_t next = rest.find("\n\t* ", start);
        const std::string_view item = rest.substr(start, next == std::string_view::npos ? std::string_view::npos
                                                                                         : next - start);
        std::string one = collapse_whitespace(item);
        if (!one.empty()) items.push_back(std::move(one));
        if (next == std::string_view::npos) break;
        pos = next + 1;
      }
      wrapped = !items.empty();
      if (wrapped) return items;
    }
  }
  std::string one = collapse_whitespace(text);
  if (!one.empty()) items.push_back(std::move(one));
  return items;
}

}  // namespace

std::string condense_vault_error(std::string_view text) {
  bool wrapped = false;
  std::string out;
  for (const auto& item : multierror_items(text, wrapped)) {
    if (!out.empty()) out += "; ";
    out += item;
  }
  return out;
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
  vault_refusal refusal = vault_refusal::none;
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
        refusal = classify_refusal(http_status, errors);
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
  vault_error e = make_vault_error(kind, http_status, std::move(text), address, request);
  e.refusal = refusal;
  return e;
}

namespace {

// A lease answer's text, bare or after renewEntry's "failed to renew entry: resp: %#v
// err: %w" (expiration.go): the backend's CalculateTTL error arrives wrapped.
bool says(const std::string& item, std::string_view text) {
  if (item == text) return true;
  const std::string wrapped = "err: " + std::string(text);
  return item.size() > wrapped.size() && item.ends_with(wrapped);
}

vault_refusal classify_forbidden(const std::vector<std::string>& errors) {
  bool bare_denied = false;
  bool wrapped_denied = false;
  for (const auto& raw : errors) {
    bool wrapped = false;
    for (const auto& item : multierror_items(raw, wrapped)) {
      if (item == "invalid token") return vault_refusal::bad_token;
      if (item == "permission denied") (wrapped ? wrapped_denied : bare_denied) = true;
    }
  }
  if (bare_denied) return vault_refusal::bad_token;
  return wrapped_denied ? vault_refusal::policy_denied : vault_refusal::none;
}

vault_refusal classify_lease_answer(const std::vector<std::string>& errors) {
  // expiration.go leaseEntry.renewable (and, before Vault 1.0, "lease not found or
  // lease is not renewable"); sdk/framework/lease.go CalculateTTL.
  static constexpr std::string_view gone[] = {"lease not found", "lease expired",
                                               "lease is expired and has failed previous revocation attempts",
                                               "lease not found or lease is not renewable"};
  static constexpr std::string_view final_texts[] = {"lease is not renewable", "past the max TTL, cannot renew"};
  for (const auto& raw : errors) {
    bool wrapped = false;
    for (const auto& item : multierror_items(raw, wrapped)) {
      for (auto t : gone) {
        if (says(item, t)) return vault_refusal::lease_gone;
      }
      for (auto t : final_texts) {
        if (says(item, t)) return vault_refusal::lease_final;
      }
    }
  }
  return vault_refusal::none;
}

}  // namespace

vault_refusal classify_refusal(int http_status, const std::vector<std::string>& errors) {
  if (http_status == 403) return classify_forbidden(errors);
  if (http_status == 400) return classify_lease_answer(errors);
  return vault_refusal::none;
}

std::chrono::seconds parse_retry_after(std::string_view value, std::int64_t now) {
  constexpr std::int64_t cap = 3600;
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t' || value.back() == '\r')) {
    value.remove_suffix(1);
  }
  if (value.empty()) return std::chrono::seconds{0};
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (value.size() > 6) return std::chrono::seconds{cap};
    std::int64_t n = 0;
    for (char c : value) n = n * 10 + (c - '0');
    return std::chrono::seconds{std::min(n, cap)};
  }
  // An HTTP-date (IMF-fixdate, RFC 9110 §5.6.7): "Sun, 06 Nov 1994 08:49:37 GMT".
  std::tm tm{};
  const std::string text(value);
  const char* end = ::strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') return std::chrono::seconds{0};
  const std::int64_t at = ::timegm(&tm);
  if (at <= now) return std::chrono::seconds{0};
  return std::chrono::seconds{std::min(at - now, cap)};
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
    // A token without a lease (a root token from `vault operator init` or generate-root)
    // has no "renewable" in its lookup: token_store.go handleLookup sets it, with
    // issue_time, only from the token's lease times.
    t.renewable = optional_bool_member(data, "renewable", false);
    // handleLookup sends "orphan": true only for a token without a parent.
    t.orphan = optional_bool_member(data, "orphan", false);
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

vault_result<vault_login> parse_login(std::string_view body, std::string_view address, std::string_view request) {
  return parse_with<vault_login>(body, address, request, [](const wiped_json& j) -> vault_result<vault_login> {
    const auto& auth = object_member(j, "auth");
    // With login MFA configured Vault answers with mfa_requirement and no token
    // (sdk/logical/translate_response.go HTTPAuth.MFARequirement); vaultwire has no one
    // to answer the challenge.
    if (auto mfa = auth.find("mfa_requirement"); mfa != auth.end() && !mfa->is_null()) {
      throw shape_error("the login asks for MFA (auth.mfa_requirement), which vaultwire cannot answer");
    }
    const auto& token = member(auth, "client_token");
    if (!token.is_string() || token.get_ref<const wiped_string&>().empty()) {
      throw shape_error("\"client_token\" is not a non-empty string");
    }
    vault_login r;
    const auto& ts = token.get_ref<const wiped_string&>();
    r.client_token = pgwire::secret_string(std::string_view(ts.data(), ts.size()));
    r.accessor = optional_string_member(auth, "accessor");
    r.ttl = seconds_member(auth, "lease_duration");
    r.renewable = optional_bool_member(auth, "renewable", false);
    // HTTPAuth always carries token_type ("service" or "batch"); the docs' sample
    // answers leave it out, and a token without one is a service token.
    if (std::string type = optional_string_member(auth, "token_type"); !type.empty()) r.token_type = std::move(type);
    r.policies = strings_member(auth, "policies");
    r.entity_id = optional_string_member(auth, "entity_id");
    r.orphan = optional_bool_member(auth, "orphan", false);
    r.warnings = strings_member(j, "warnings");
    return r;
  });
}

void append_json_string(pgwire::secret_string& out, std::string_view text) {
  static constexpr char hex[] = "0123456789abcdef";
  out.append('"');
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') {
      out.append('\\');
      out.append(ch);
    } else if (c < 0x20) {
      out.append("\\u00");
      out.append(hex[c >> 4]);
      out.append(hex[c & 0xF]);
    } else {
      out.append(ch);
    }
  }
  out.append('"');
}

pgwire::secret_string login_body(std::initializer_list<std::pair<std::string_view, std::string_view>> fields) {
  std::size_t worst = 2;
  for (const auto& [k, v] : fields) worst += 6 * (k.size() + v.size()) + 6;
  pgwire::secret_string out;
  out.reserve(worst);  // one buffer: nothing to wipe on the way
  out.append('{');
  bool first = true;
  for (const auto& [k, v] : fields) {
    if (!first) out.append(',');
    first = false;
    append_json_string(out, k);
    out.append(':');
    append_json_string(out, v);
  }
  out.append('}');
  return out;
}

std::string_view endpoint_label(std::string_view path) noexcept {
  if (const auto q = path.find('?'); q != std::string_view::npos) path = path.substr(0, q);
  while (!path.empty() && path.front() == '/') path.remove_prefix(1);
  // auth/<mount>/login: the mount is the operator's name, and it stays out of the label.
  if (path.starts_with("auth/") && path.ends_with("/login")) return "login";
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

}  // namespace vaultwire
