// vault-dev: the Vault state machine and request handlers (see vault-api.md).
#include "vault.hpp"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <functional>
#include <iostream>
#include <limits>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <thread>

#include "acl.hpp"
#include "auth_methods.hpp"
#include "pg.hpp"
#include "token_rules.hpp"
#include "util.hpp"

namespace vd {

namespace {

constexpr std::int64_t kSysDefaultTTL = 2764800;  // 768h
constexpr std::int64_t kSysMaxTTL = 2764800;
constexpr const char* kVersion = "1.15.2";

std::string multierror(const std::string& m) { return "1 error occurred:\n\t* " + m + "\n\n"; }

// Thrown by handlers; turned into {"errors":[...]}.
struct ApiError {
  int status;
  std::vector<std::string> errors;
};

[[noreturn]] void fail(int status, const std::string& msg) { throw ApiError{status, {msg}}; }
[[noreturn]] void fail_multi(int status, const std::string& msg) { throw ApiError{status, {multierror(msg)}}; }
[[noreturn]] void not_found() { throw ApiError{404, {}}; }
[[noreturn]] void unsupported_path() { fail_multi(404, "unsupported path"); }
[[noreturn]] void unsupported_op() { fail_multi(405, "unsupported operation"); }
[[noreturn]] void permission_denied() { fail_multi(403, "permission denied"); }

Response errors_resp(int status, const std::vector<std::string>& errs) {
  json j = json::object();
  j["errors"] = json::array();
  for (auto& e : errs) j["errors"].push_back(e);
  return {status, j.dump(-1, ' ', false, json::error_handler_t::replace)};
}

// Go marshals maps with sorted keys.
json sorted(const json& j) {
  if (j.is_object()) {
    std::map<std::string, json> m;
    for (auto it = j.begin(); it != j.end(); ++it) m[it.key()] = sorted(it.value());
    json out = json::object();
    for (auto& [k, v] : m) out[k] = std::move(v);
    return out;
  }
  if (j.is_array()) {
    json out = json::array();
    for (auto& e : j) out.push_back(sorted(e));
    return out;
  }
  return j;
}

json envelope(const std::string& mount_type) {
  json e = json::object();
  e["request_id"] = random_uuid();
  e["lease_id"] = "";
  e["renewable"] = false;
  e["lease_duration"] = 0;
  e["data"] = nullptr;
  e["wrap_info"] = nullptr;
  e["warnings"] = nullptr;
  e["auth"] = nullptr;
  e["mount_type"] = mount_type;
  return e;
}

Response ok(const json& env) { return {200, env.dump(-1, ' ', false, json::error_handler_t::replace)}; }
Response no_content() { return {204, ""}; }

// copy_top: the routes of http/handler.go injectDataIntoTopRoutes. logical.HTTPSysInjector
// writes every data key before the envelope's own keys; a decoder keeps the envelope's
// value for a key that is in both, so such a key is not copied.
Response data_resp(const std::string& mount_type, const json& data, bool copy_top = false) {
  json e = envelope(mount_type);
  json d = sorted(data);
  e["data"] = d;
  if (!copy_top) return ok(e);
  json top = json::object();
  for (auto it = d.begin(); it != d.end(); ++it) {
    if (!e.contains(it.key())) top[it.key()] = it.value();
  }
  for (auto it = e.begin(); it != e.end(); ++it) top[it.key()] = it.value();
  return ok(top);
}

json warnings_json(const std::vector<std::string>& w) {
  if (w.empty()) return nullptr;
  json a = json::array();
  for (auto& s : w) a.push_back(s);
  return a;
}

json str_array(const std::vector<std::string>& v) {
  json a = json::array();
  for (auto& s : v) a.push_back(s);
  return a;
}

const json& field(const json& body, const char* name) {
  static const json null_json;
  auto it = body.find(name);
  if (it == body.end()) return null_json;
  return *it;
}

bool has(const json& body, const char* name) { return !field(body, name).is_null(); }

std::string str_field(const json& body, const char* name) {
  const json& v = field(body, name);
  if (v.is_null()) return "";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number() || v.is_boolean()) return v.dump(-1, ' ', false, json::error_handler_t::replace);
  throw BadRequest(std::string("error converting input for field \"") + name + "\": expected a string");
}

std::int64_t int_field(const json& body, const char* name, std::int64_t def) {
  const json& v = field(body, name);
  if (v.is_null()) return def;
  if (v.is_number_integer() || v.is_number_unsigned()) return v.get<std::int64_t>();
  if (v.is_number_float()) return static_cast<std::int64_t>(v.get<double>());
  if (v.is_string()) {
    try {
      return std::stoll(v.get<std::string>());
    } catch (...) {
    }
  }
  throw BadRequest(std::string("error converting input for field \"") + name + "\": expected an integer");
}

// ------------------------------------------------------------------ model
struct Role {
  std::string db_name;
  std::vector<std::string> creation, revocation, rollback, renew;
  std::int64_t default_ttl = 0, max_ttl = 0;
};

struct DbConfig {
  json details = json::object();  // connection_details incl. username/password
  std::string plugin_name;
  std::vector<std::string> allowed_roles;
  std::string password_policy;
  bool verify_connection = true;
  std::vector<std::string> root_rotation_statements;
  std::shared_ptr<PgPool> pool;
  std::string password_auth;      // "password" | "scram-sha-256"
  std::string username_template;  // "" = default
};

struct Mount {
  std::string path;  // "database/"
  std::string type;
  std::string description;
  std::string accessor;
  std::string uuid;
  std::int64_t default_ttl = 0, max_ttl = 0;
  json options = nullptr;
  std::map<std::string, std::shared_ptr<DbConfig>> configs;
  std::map<std::string, Role> roles;
};

// An enabled auth method (vault/auth.go MountEntry in the auth table): path without
// the "auth/" prefix, e.g. "approle/".
struct AuthMount {
  std::string path;
  std::string type;
  std::string description;
  std::string accessor;
  std::string uuid;
  std::int64_t default_ttl = 0, max_ttl = 0;
  // MountConfig.TokenType: default-service (the default), default-batch, service, batch.
  std::string token_type = "default-service";
  std::unique_ptr<AuthBackend> backend;
};

struct PasswordPolicy {
  std::string raw;
  int length = 20;
  std::vector<std::pair<std::string, int>> rules;  // charset, min-chars
};

struct Namespace {
  std::string name;
  std::string id;  // "" for root
  std::map<std::string, Policy> policies;
  std::map<std::string, std::shared_ptr<Mount>> mounts;
  std::map<std::string, PasswordPolicy> password_policies;
  std::map<std::string, std::shared_ptr<AuthMount>> auth_mounts;  // by path, "approle/"
  // The token auth method's accessor, as sys/auth lists it.
  std::string token_auth_accessor = "auth_token_" + random_uuid().substr(0, 8);
  // The namespace's token salt (token_store.go Salt: a UUID per namespace), which keys
  // the salted token IDs in token lease IDs.
  std::string token_salt = random_uuid();
};

struct Token {
  std::string id, accessor, ns;
  bool everywhere = false;  // the dev root token: a root token in every namespace
  std::vector<std::string> policies;
  std::string parent;
  std::set<std::string> children;
  std::set<std::string> leases;
  std::string display_name;
  std::string path;
  TimePoint issue_time{};
  TimePoint expire{};  // epoch = never
  TimePoint last_renewal{};
  std::int64_t creation_ttl = 0, explicit_max_ttl = 0, period = 0;
  // The TTL in the token's lease (expiration.go leaseEntry.Auth.TTL): the creation TTL,
  // then the TTL of the last renewal. Renewing without an increment renews by it.
  std::int64_t auth_ttl = 0;
  bool renewable = false;
  bool orphan = false;
  // No lease entry at all, like the root token of `vault operator init` or
  // generate-root (the dev root token is made through auth/token/create and has one).
  bool leaseless = false;
  int num_uses = 0;
  json meta = nullptr;
  // A batch token (token_store.go TokenTypeBatch): no accessor, no lease, not renewable
  // or revocable, cannot make child tokens.
  bool batch = false;
  std::string entity_id;
  // Made by an auth method's login: a renewal recalculates the TTL as the method's
  // pathLoginRenew asks (its role's token_ttl / token_max_ttl / token_period) within the
  // auth mount's TTLs.
  bool login = false;
  std::int64_t login_ttl = 0, login_max_ttl = 0;
  std::int64_t login_sys_default = 0, login_sys_max = 0;
};

struct Lease {
  std::string id, ns, mount_path, role, db_name, username;
  TimePoint issue{}, expire{}, last_renewal{};
  bool renewable = true;
  std::vector<std::string> revocation;  // snapshot of the role's statements
  std::string token_id, token_accessor;
  bool revoking = false;
  bool irrevocable = false;
  int attempts = 0;
  TimePoint next_attempt{};
  std::string last_error;
};

struct FaultRule {
  std::string path;
  std::string method;
  int count = 1;
  int status = 503;
  int delay_ms = 0;
  std::string mode = "status";
  std::vector<std::string> errors;
  std::vector<std::pair<std::string, std::string>> headers;
};

struct MountTtl {
  std::int64_t def = 0, max = 0;
};

struct TtlResult {
  std::int64_t ttl = 0;
  std::vector<std::string> warnings;
};

// Vault's framework.CalculateTTL (without periods).
TtlResult calc_ttl(std::int64_t increment, std::int64_t backend_ttl, std::int64_t backend_max, std::int64_t explicit_max,
                   TimePoint start, MountTtl mt) {
  auto now = truncate_seconds(Clock::now());
  start = start == TimePoint{} ? now : truncate_seconds(start);
  std::int64_t max = mt.max > 0 ? mt.max : kSysMaxTTL;
  if (backend_max > 0 && backend_max < max) max = backend_max;
  if (explicit_max > 0 && explicit_max < max) max = explicit_max;
  TtlResult r;
  r.ttl = increment > 0 ? increment : backend_ttl > 0 ? backend_ttl : (mt.def > 0 ? mt.def : kSysDefaultTTL);
  std::int64_t max_valid = unix_seconds(start) + max - unix_seconds(now);
  if (max_valid <= 0) throw BadRequest("past the max TTL, cannot renew");
  if (r.ttl > max_valid) {
    r.warnings.push_back("TTL of \"" + go_duration(std::chrono::seconds(r.ttl)) + "\" exceeded the effective max_ttl of \"" +
                         go_duration(std::chrono::seconds(max_valid)) + "\"; TTL value is capped accordingly");
    r.ttl = max_valid;
  }
  return r;
}

// http/logical.go buildLogicalRequestNoAuth: a GET's `list` value is empty or one that
// strconv.ParseBool takes; any other is a 400 with no error text.
bool list_value_ok(const Request& req) {
  auto it = req.query.find("list");
  return it == req.query.end() || it->second.empty() || parse_bool_str(it->second).has_value();
}

// Go's strconv.Atoi: an optional sign and decimal digits, nothing else, within int64.
std::optional<std::int64_t> go_atoi(const std::string& s) {
  std::size_t i = s.empty() || (s[0] != '+' && s[0] != '-') ? 0 : 1;
  if (i == s.size()) return std::nullopt;
  std::int64_t v = 0;
  for (std::size_t k = i; k < s.size(); ++k) {
    if (!std::isdigit(static_cast<unsigned char>(s[k]))) return std::nullopt;
    int d = s[k] - '0';
    if (v > (std::numeric_limits<std::int64_t>::max() - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return s[0] == '-' ? -v : v;
}

json time_or_null(TimePoint t) { return t == TimePoint{} ? json(nullptr) : json(rfc3339nano(t)); }

// expiration.go revokeExponentialBackoff: after the n-th failed revocation the next try
// comes after (1 << n) * revokeRetryBase, picked uniformly within ±50 % of that
// (revokeRetryBase is 10 s: the first retry after 10-30 s). Vault's errIsUnrecoverable
// errors (ErrUnrecoverable, ErrUnsupportedOperation, ErrUnsupportedPath,
// ErrInvalidRequest) make a lease irrevocable at once; no database revocation error here
// is one of them.
std::chrono::milliseconds revoke_backoff(int base_ms, int attempt) {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  double exp = std::ldexp(static_cast<double>(base_ms), std::min(attempt, 40));
  return std::chrono::milliseconds(static_cast<std::int64_t>(exp / 2 + unit(rng) * exp));
}

class WorkQueue {
 public:
  void start(int n) {
    for (int i = 0; i < n; ++i) threads_.emplace_back([this] { run(); });
  }
  void post(std::function<void()> f) {
    {
      std::lock_guard lk(m_);
      q_.push_back(std::move(f));
    }
    cv_.notify_one();
  }
  void shutdown() {
    {
      std::lock_guard lk(m_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  void run() {
    for (;;) {
      std::function<void()> f;
      {
        std::unique_lock lk(m_);
        cv_.wait(lk, [&] { return stop_ || !q_.empty(); });
        if (stop_) return;
        f = std::move(q_.front());
        q_.pop_front();
      }
      try {
        f();
      } catch (const std::exception& e) {
        std::cerr << "vault-dev: background job failed: " << e.what() << std::endl;
      }
    }
  }
  std::mutex m_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  std::vector<std::thread> threads_;
  bool stop_ = false;
};

std::string generate_password(const PasswordPolicy* pp) {
  PasswordPolicy def;
  if (!pp) {
    def.length = 20;
    def.rules = {{"abcdefghijklmnopqrstuvwxyz", 1}, {"ABCDEFGHIJKLMNOPQRSTUVWXYZ", 1}, {"0123456789", 1}, {"-", 1}};
    pp = &def;
  }
  std::string charset;
  for (auto& [cs, _] : pp->rules) {
    for (char c : cs) {
      if (charset.find(c) == std::string::npos) charset += c;
    }
  }
  if (charset.empty()) throw std::runtime_error("password policy has no charset");
  for (int attempt = 0; attempt < 10000; ++attempt) {
    std::string pw = random_from(charset, static_cast<std::size_t>(pp->length));
    bool good = true;
    for (auto& [cs, min] : pp->rules) {
      int n = 0;
      for (char c : pw) {
        if (cs.find(c) != std::string::npos) ++n;
      }
      if (n < min) {
        good = false;
        break;
      }
    }
    if (good) return pw;
  }
  throw std::runtime_error("unable to generate password: could not satisfy the password policy");
}

PasswordPolicy parse_password_policy(const std::string& text_in) {
  std::string text = text_in;
  if (auto dec = base64_decode_strict(trim(text))) text = *dec;
  json doc;
  try {
    doc = parse_hcl(text);
  } catch (const BadRequest& e) {
    throw BadRequest(std::string("invalid password policy: ") + e.what());
  }
  PasswordPolicy pp;
  pp.raw = text;
  if (!doc.contains("length") || !doc["length"].is_number_integer()) {
    throw BadRequest("invalid password policy: length must be specified");
  }
  pp.length = doc["length"].get<int>();
  if (pp.length < 4 || pp.length > 100) throw BadRequest("invalid password policy: length must be between 4 and 100");
  if (doc.contains("rule") && doc["rule"].is_array()) {
    for (auto& r : doc["rule"]) {
      std::string cs = r.value("charset", std::string());
      int min = r.contains("min-chars") && r["min-chars"].is_number_integer() ? r["min-chars"].get<int>() : 0;
      if (cs.empty()) throw BadRequest("invalid password policy: charset rule requires a charset");
      pp.rules.emplace_back(cs, min);
    }
  }
  if (pp.rules.empty()) throw BadRequest("invalid password policy: no rules");
  return pp;
}

// ------------------------------------------- username templates (subset)
struct TplVars {
  std::string display_name, role_name;
};

class TplEval {
 public:
  TplEval(std::string_view expr, const TplVars& v) : s_(expr), v_(v) {}
  std::string run() {
    std::string r = pipeline();
    skip();
    if (i_ != s_.size()) throw BadRequest("unable to generate username: unexpected input in template");
    return r;
  }

 private:
  void skip() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool at_end_of_command() {
    skip();
    return i_ >= s_.size() || s_[i_] == '|' || s_[i_] == ')';
  }
  std::string pipeline() {
    std::string val = command(nullptr);
    skip();
    while (i_ < s_.size() && s_[i_] == '|') {
      ++i_;
      val = command(&val);
      skip();
    }
    return val;
  }
  std::string operand() {
    skip();
    if (i_ >= s_.size()) throw BadRequest("unable to generate username: unexpected end of template");
    char c = s_[i_];
    if (c == '(') {
      ++i_;
      std::string v = pipeline();
      skip();
      if (i_ >= s_.size() || s_[i_] != ')') throw BadRequest("unable to generate username: missing ')'");
      ++i_;
      return v;
    }
    if (c == '"') {
      ++i_;
      std::string out;
      while (i_ < s_.size() && s_[i_] != '"') {
        if (s_[i_] == '\\' && i_ + 1 < s_.size()) ++i_;
        out += s_[i_++];
      }
      ++i_;
      return out;
    }
    std::string w = word();
    if (w == ".DisplayName") return v_.display_name;
    if (w == ".RoleName") return v_.role_name;
    if (!w.empty() && (std::isdigit(static_cast<unsigned char>(w[0])) || w[0] == '-')) return w;
    return call(w, nullptr);
  }
  std::string word() {
    skip();
    std::size_t b = i_;
    while (i_ < s_.size() && !std::isspace(static_cast<unsigned char>(s_[i_])) && s_[i_] != '|' && s_[i_] != ')' &&
           s_[i_] != '(')
      ++i_;
    return std::string(s_.substr(b, i_ - b));
  }
  std::string command(const std::string* piped) {
    skip();
    if (!piped) {
      std::size_t save = i_;
      std::string w = word();
      if (w.empty() || w[0] == '.' || w[0] == '"' || w[0] == '(') {
        i_ = save;
        return operand();
      }
      return call(w, nullptr);
    }
    return call(word(), piped);
  }
  std::vector<std::string> args(const std::string* piped) {
    std::vector<std::string> a;
    while (!at_end_of_command()) a.push_back(operand());
    if (piped) a.push_back(*piped);
    return a;
  }
  static int num(const std::string& s) {
    try {
      return std::stoi(s);
    } catch (...) {
      throw BadRequest("unable to generate username: expected a number, got \"" + s + "\"");
    }
  }
  std::string call(const std::string& fn, const std::string* piped) {
    auto a = args(piped);
    auto need = [&](std::size_t n) {
      if (a.size() != n) throw BadRequest("unable to generate username: wrong number of args for " + fn);
    };
    if (fn == "unix_time") return std::to_string(unix_seconds(Clock::now()));
    if (fn == "unix_time_millis") {
      return std::to_string(
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch()).count());
    }
    if (fn == "uuid") return random_uuid();
    if (fn == "random") {
      need(1);
      return random_base62(static_cast<std::size_t>(std::max(0, num(a[0]))));
    }
    if (fn == "truncate") {
      need(2);
      std::size_t n = static_cast<std::size_t>(std::max(0, num(a[0])));
      return a[1].substr(0, std::min(n, a[1].size()));
    }
    if (fn == "lowercase") {
      need(1);
      return lower(a[0]);
    }
    if (fn == "uppercase") {
      need(1);
      std::string s = a[0];
      for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      return s;
    }
    if (fn == "replace") {
      need(3);
      return replace_all(a[2], a[0], a[1]);
    }
    if (fn == "printf") {
      if (a.empty()) throw BadRequest("unable to generate username: printf needs a format");
      std::string out;
      std::size_t k = 1;
      const std::string& f = a[0];
      for (std::size_t i = 0; i < f.size(); ++i) {
        if (f[i] == '%' && i + 1 < f.size()) {
          char d = f[++i];
          if (d == '%') {
            out += '%';
          } else {
            out += k < a.size() ? a[k++] : std::string("%!") + d + "(MISSING)";
          }
        } else {
          out += f[i];
        }
      }
      return out;
    }
    throw BadRequest("unable to generate username: function \"" + fn + "\" not defined");
  }
  std::string_view s_;
  std::size_t i_ = 0;
  const TplVars& v_;
};

std::string render_template(const std::string& tpl, const TplVars& vars) {
  std::string out;
  std::size_t i = 0;
  while (i < tpl.size()) {
    std::size_t open = tpl.find("{{", i);
    if (open == std::string::npos) {
      out += tpl.substr(i);
      break;
    }
    out += tpl.substr(i, open - i);
    std::size_t close = tpl.find("}}", open + 2);
    if (close == std::string::npos) throw BadRequest("unable to generate username: unclosed action");
    std::string expr = tpl.substr(open + 2, close - open - 2);
    if (!expr.empty() && expr.front() == '-') expr.erase(0, 1);
    if (!expr.empty() && expr.back() == '-') expr.pop_back();
    out += TplEval(expr, vars).run();
    i = close + 2;
  }
  return out;
}

std::string generate_username(const std::string& tpl, const TplVars& v) {
  if (tpl.empty()) {
    auto t8 = [](const std::string& s) { return s.substr(0, std::min<std::size_t>(8, s.size())); };
    std::string u = "v-" + t8(v.display_name) + "-" + t8(v.role_name) + "-" + random_base62(20) + "-" +
                    std::to_string(unix_seconds(Clock::now()));
    return u.substr(0, std::min<std::size_t>(63, u.size()));
  }
  return render_template(tpl, v);
}

std::string sanitize_display_name(const std::string& dn) {
  if (dn.empty()) return "token";
  std::string full = "token-" + dn;
  for (char& c : full) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') c = '-';
  }
  // token_store.go handleCreateCommon: strings.TrimSuffix(full, "-") drops one dash.
  if (!full.empty() && full.back() == '-') full.pop_back();
  return full;
}

// Masks a literal password of a URL's userinfo as builtin/logical/database
// path_config_connection.go connectionReadHandler does: strings.Replace(connURL, password,
// "*****", -1) with the password url.Parse decoded, so every occurrence of it goes.
std::string mask_url_password(const std::string& url, bool* had_literal) {
  if (had_literal) *had_literal = false;
  auto scheme = url.find("://");
  if (scheme == std::string::npos) return url;
  auto host_start = scheme + 3;
  auto slash = url.find_first_of("/?", host_start);
  auto at = url.rfind('@', slash == std::string::npos ? std::string::npos : slash);
  if (at == std::string::npos || at < host_start) return url;
  auto colon = url.find(':', host_start);
  if (colon == std::string::npos || colon > at) return url;
  std::string pw = url.substr(colon + 1, at - colon - 1);
  if (pw.empty() || pw.find("{{") != std::string::npos) return url;
  if (had_literal) *had_literal = true;
  // url.Parse decodes %XX in userinfo (a '+' stays a '+').
  std::string decoded;
  for (std::size_t i = 0; i < pw.size(); ++i) {
    if (pw[i] == '%' && i + 2 < pw.size() && std::isxdigit(static_cast<unsigned char>(pw[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(pw[i + 2]))) {
      decoded.push_back(static_cast<char>(std::stoi(pw.substr(i + 1, 2), nullptr, 16)));
      i += 2;
    } else {
      decoded.push_back(pw[i]);
    }
  }
  return decoded.empty() ? url : replace_all(url, decoded, "*****");
}

}  // namespace

// ======================================================================= Impl
struct Vault::Impl {
  Options opts;
  std::mutex mu;
  std::condition_variable revoke_cv;
  bool sealed = false;
  // How an unknown, revoked or expired token is refused. Before Vault 1.17 the token
  // check fails with the bare logical.ErrPermissionDenied ("permission denied");
  // Vault 1.17 adds logical.ErrInvalidToken to it (hashicorp/vault PR #25953, "Added
  // new Invalid Token Error Message"; website/content/docs/concepts/tokens.mdx "Error
  // Responses"), which the multierror renders as two items. A missing token stays bare.
  bool invalid_token_1_17 = false;
  std::map<std::string, Namespace> namespaces;
  std::map<std::string, Token> tokens;
  std::map<std::string, std::string> accessors;
  std::map<std::string, Lease> leases;
  std::vector<std::string> issued_tokens, issued_passwords, issued_secret_ids;
  // Entity IDs by auth mount accessor and alias name: a login's alias maps to one
  // entity (identity store CreateOrFetchEntity), so logins as the same alias share it.
  std::map<std::string, std::string> entities;
  std::string cluster_id = random_uuid();
  std::string cluster_name = "vault-cluster-" + lower(random_base62(8));

  std::mutex cmu;
  std::int64_t total = 0;
  std::map<std::string, std::int64_t> by_path, by_request;
  std::vector<FaultRule> faults;

  std::thread bg;
  std::condition_variable bg_cv;
  bool stopping = false;
  WorkQueue revoke_q;

  explicit Impl(Options o) : opts(std::move(o)) {
    Token root;
    root.id = opts.root_token;
    root.accessor = random_base62(24);
    root.everywhere = true;
    root.policies = {"root"};
    root.display_name = "root";
    root.path = "auth/token/root";
    root.issue_time = Clock::now();
    root.orphan = true;
    root.leaseless = opts.root_token_from_init;
    if (!opts.root_token_from_init) {
      // command/server.go enableDev: a -dev-root-token-id token is made by auth/token/create
      // with {"id", "policies":["root"], "no_parent":true, "no_default_policy":true} and no
      // display_name, so handleCreateCommon's defaults apply and RegisterAuth gives it a lease.
      root.display_name = "token";
      root.path = "auth/token/create";
    }
    accessors[root.accessor] = root.id;
    issued_tokens.push_back(root.id);
    tokens[root.id] = root;
    ns_get("");
    revoke_q.start(4);
    bg = std::thread([this] { background(); });
  }

  void shutdown() {
    {
      std::lock_guard lk(mu);
      if (stopping) return;
      stopping = true;
    }
    bg_cv.notify_all();
    if (bg.joinable()) bg.join();
    revoke_q.shutdown();
  }

  Namespace& ns_get(const std::string& name) {
    auto it = namespaces.find(name);
    if (it != namespaces.end()) return it->second;
    Namespace ns;
    ns.name = name;
    ns.id = name.empty() ? "" : random_base62(5);
    ns.policies["default"] = parse_policy("default", kDefaultPolicy);
    return namespaces[name] = std::move(ns);
  }

  std::string ns_suffix(const Namespace& ns) const { return ns.id.empty() ? "" : "." + ns.id; }

  Token* find_token(const std::string& id, const std::string& ns) {
    auto it = tokens.find(id);
    if (it == tokens.end()) return nullptr;
    Token& t = it->second;
    if (t.expire != TimePoint{} && t.expire <= Clock::now()) return nullptr;
    if (!(t.ns == ns || t.everywhere)) return nullptr;
    return &t;
  }

  Acl acl_for(const Token& t, const Namespace& ns) const {
    Acl a;
    if (t.everywhere) a.root = true;
    for (auto& p : t.policies) {
      if (p == "root") {
        a.root = true;
        continue;
      }
      auto it = ns.policies.find(p);
      if (it != ns.policies.end()) a.add(it->second);
    }
    return a;
  }

  // ---------------------------------------------------------- token ops
  Token& mint_token(Namespace& ns, const std::string& custom_id) {
    Token t;
    t.id = custom_id.empty() ? "hvs." + random_base62(24) : custom_id;
    t.accessor = random_base62(24) + ns_suffix(ns);
    t.ns = ns.name;
    t.issue_time = Clock::now();
    accessors[t.accessor] = t.id;
    issued_tokens.push_back(t.id);
    std::string id = t.id;
    return tokens[id] = std::move(t);
  }

  // Revokes a token tree (locked). Leases are expired lazily (expire := now).
  void revoke_token_locked(const std::string& id, bool orphan_children = false) {
    auto it = tokens.find(id);
    if (it == tokens.end()) return;
    auto now = Clock::now();
    std::set<std::string> children = it->second.children;
    for (auto& c : children) {
      if (orphan_children) {
        auto ct = tokens.find(c);
        if (ct != tokens.end()) {
          ct->second.parent.clear();
          ct->second.orphan = true;
        }
      } else {
        revoke_token_locked(c);
      }
    }
    it = tokens.find(id);
    if (it == tokens.end()) return;
    for (auto& lid : it->second.leases) {
      auto l = leases.find(lid);
      if (l != leases.end() && l->second.expire > now) {
        l->second.expire = now;
        l->second.next_attempt = TimePoint{};
      }
    }
    if (!it->second.parent.empty()) {
      auto p = tokens.find(it->second.parent);
      if (p != tokens.end()) p->second.children.erase(id);
    }
    accessors.erase(it->second.accessor);
    tokens.erase(it);
    bg_cv.notify_all();
  }

  json auth_block(const Token& t) const {
    json a = json::object();
    std::int64_t ld = t.expire == TimePoint{} ? 0 : std::max<std::int64_t>(0, unix_seconds(t.expire) - unix_seconds(Clock::now()));
    a["client_token"] = t.id;
    a["accessor"] = t.accessor;
    a["policies"] = str_array(t.policies);
    a["token_policies"] = str_array(t.policies);
    a["metadata"] = t.meta;
    a["lease_duration"] = ld;
    a["renewable"] = t.renewable && !t.batch && t.expire != TimePoint{};
    a["entity_id"] = t.entity_id;
    a["token_type"] = t.batch ? "batch" : "service";
    a["orphan"] = t.orphan;
    a["mfa_requirement"] = nullptr;
    a["num_uses"] = t.num_uses;
    return a;
  }

  json token_data(const Token& t, bool with_id) const {
    json d = json::object();
    auto now = Clock::now();
    d["accessor"] = t.accessor;
    d["creation_time"] = unix_seconds(t.issue_time);
    d["creation_ttl"] = t.creation_ttl;
    d["display_name"] = t.display_name;
    d["entity_id"] = t.entity_id;
    d["expire_time"] = time_or_null(t.expire);
    d["explicit_max_ttl"] = t.explicit_max_ttl;
    d["id"] = with_id ? t.id : "";
    // token_store.go handleLookup: "renewable", "issue_time" and the last renewal come
    // from the token's lease times; a token without a lease has none of them.
    // A batch token's lease times come from the token itself (expiration.go
    // FetchLeaseTimesByToken): issued at its creation second, never renewable.
    if (t.batch) d["issue_time"] = rfc3339nano(truncate_seconds(t.issue_time));
    else if (!t.leaseless) d["issue_time"] = rfc3339nano(t.issue_time);
    d["meta"] = t.meta;
    d["num_uses"] = t.num_uses;
    d["orphan"] = t.orphan;
    d["path"] = t.path;
    d["policies"] = str_array(t.policies);
    if (!t.leaseless) d["renewable"] = t.renewable && !t.batch && t.expire != TimePoint{};
    d["ttl"] = t.expire == TimePoint{} ? 0 : std::max<std::int64_t>(0, unix_seconds(t.expire) - unix_seconds(now));
    d["type"] = t.batch ? "batch" : "service";
    if (t.period) d["period"] = t.period;
    if (t.last_renewal != TimePoint{}) {
      d["last_renewal"] = rfc3339nano(t.last_renewal);
      d["last_renewal_time"] = unix_seconds(t.last_renewal);
    }
    if (t.ns.empty() == false) d["namespace_path"] = t.ns + "/";
    return d;
  }

  // --------------------------------------------------------- lease revoke
  // The lease must be marked `revoking` by the caller. Returns "" or the error.
  std::string do_revoke_marked(const std::string& id, bool background) {
    std::shared_ptr<PgPool> pool;
    std::vector<std::string> stmts;
    std::string username;
    std::string err;
    {
      std::lock_guard lk(mu);
      auto it = leases.find(id);
      if (it == leases.end()) return "";
      Lease& l = it->second;
      username = l.username;
      stmts = l.revocation;
      auto& ns = ns_get(l.ns);
      auto m = ns.mounts.find(l.mount_path);
      std::string db_name = l.db_name;
      if (m != ns.mounts.end()) {
        auto r = m->second->roles.find(l.role);
        if (r != m->second->roles.end()) {
          stmts = r->second.revocation;
          db_name = r->second.db_name;
        }
        auto c = m->second->configs.find(db_name);
        if (c != m->second->configs.end()) pool = c->second->pool;
      }
      if (!pool) err = "failed to find entry for connection with name: \"" + db_name + "\"";
    }
    if (err.empty()) {
      try {
        pg_revoke_user(*pool, stmts, username);
      } catch (const std::exception& e) {
        err = e.what();
      }
    }
    {
      std::lock_guard lk(mu);
      auto it = leases.find(id);
      if (it != leases.end()) {
        Lease& l = it->second;
        if (err.empty()) {
          auto t = tokens.find(l.token_id);
          if (t != tokens.end()) t->second.leases.erase(id);
          leases.erase(it);
        } else {
          l.revoking = false;
          l.last_error = err;
          if (background) {
            ++l.attempts;
            if (l.attempts >= opts.retry_max_attempts) {
              l.irrevocable = true;
              std::cerr << "vault-dev: lease " << id << " is irrevocable after " << l.attempts << " attempts" << std::endl;
            } else {
              l.next_attempt = Clock::now() + revoke_backoff(opts.retry_base_ms, l.attempts);
            }
          }
        }
      }
    }
    revoke_cv.notify_all();
    return err;
  }

  // Waits for a concurrent revocation, then revokes. Returns "" or the error.
  std::string revoke_sync(const std::string& id, bool background) {
    {
      std::unique_lock lk(mu);
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      for (;;) {
        auto it = leases.find(id);
        if (it == leases.end()) return "";
        if (!it->second.revoking) {
          it->second.revoking = true;
          break;
        }
        if (revoke_cv.wait_until(lk, deadline) == std::cv_status::timeout) return "revocation still in progress";
      }
    }
    return do_revoke_marked(id, background);
  }

  void background() {
    std::unique_lock lk(mu);
    while (!stopping) {
      bg_cv.wait_for(lk, std::chrono::milliseconds(100));
      if (stopping) break;
      auto now = Clock::now();
      std::vector<std::string> expired;
      for (auto& [id, t] : tokens) {
        if (t.expire != TimePoint{} && t.expire <= now) expired.push_back(id);
      }
      for (auto& id : expired) revoke_token_locked(id);
      std::vector<std::string> jobs;
      for (auto& [id, l] : leases) {
        if (!l.revoking && !l.irrevocable && l.expire <= now && l.next_attempt <= now) {
          l.revoking = true;
          jobs.push_back(id);
        }
      }
      for (auto& id : jobs) revoke_q.post([this, id] { do_revoke_marked(id, true); });
    }
  }

  // ---------------------------------------------------------- dispatch
  struct Ctx {
    const Request* req;
    std::string path;
    std::string op;  // read list create update delete patch
    json body;
    std::string ns;
    Token tok;  // copy of the caller
    Acl acl;
    bool sudo = false;  // sudo on the request path
    bool last_use = false;  // num_uses reached 0 with this request
  };

  static json parse_body(const std::string& body) {
    if (trim(body).empty()) return json::object();
    // Refuse absurd nesting before parsing (dump/compare recurse).
    int depth = 0;
    bool in_str = false, esc = false;
    for (char ch : body) {
      if (in_str) {
        if (esc) esc = false;
        else if (ch == '\\') esc = true;
        else if (ch == '"') in_str = false;
        continue;
      }
      if (ch == '"') in_str = true;
      else if (ch == '[' || ch == '{') {
        if (++depth > 256) throw BadRequest("failed to parse JSON input: exceeded max nesting depth");
      } else if (ch == ']' || ch == '}') {
        --depth;
      }
    }
    json j;
    try {
      j = json::parse(body);
    } catch (const std::exception& e) {
      throw BadRequest(std::string("failed to parse JSON input: ") + e.what());
    }
    if (j.is_null()) return json::object();
    if (!j.is_object()) {
      throw BadRequest("failed to parse JSON input: json: cannot unmarshal " +
                       std::string(j.is_array() ? "array" : j.type_name()) +
                       " into Go value of type map[string]interface {}");
    }
    return j;
  }

  std::shared_ptr<Mount> find_mount(Namespace& ns, const std::string& path, std::string* rest) {
    std::shared_ptr<Mount> best;
    for (auto& [p, m] : ns.mounts) {
      if (starts_with(path, p) || path + "/" == p) {
        if (!best || p.size() > best->path.size()) best = m;
      }
    }
    if (best && rest) *rest = path.size() >= best->path.size() ? path.substr(best->path.size()) : "";
    return best;
  }

  // Existence check for create/update (locked).
  bool exists_for_write(Namespace& ns, const std::string& path) {
    std::string rest;
    if (starts_with(path, "auth/") && !starts_with(path, "auth/token/")) {
      auto am = find_auth_mount(ns, path.substr(5), &rest);
      return !am || am->backend->exists(rest);
    }
    auto m = find_mount(ns, path, &rest);
    if (!m) return true;
    if (starts_with(rest, "config/")) return m->configs.count(rest.substr(7)) > 0;
    if (starts_with(rest, "roles/")) return m->roles.count(rest.substr(6)) > 0;
    return true;
  }

  Response dispatch(const Request& req) {
    std::string path = req.path;
    std::string op;
    const std::string& method = req.method;
    if (method == "GET" || method == "HEAD") {
      op = "read";
      auto it = req.query.find("list");
      if (it != req.query.end() && parse_bool_str(it->second).value_or(false)) op = "list";
    } else if (method == "LIST") {
      op = "list";
    } else if (method == "POST" || method == "PUT") {
      op = "write";
    } else if (method == "DELETE") {
      op = "delete";
    } else if (method == "PATCH") {
      op = "patch";
    } else {
      unsupported_op();
    }
    if (op == "list" && !ends_with(path, "/")) path += "/";

    if (path == "sys/health") return health(req);
    if (path == "sys/seal-status") return seal_status();
    if (method == "GET" && !list_value_ok(req)) throw ApiError{400, {}};

    Ctx ctx;
    ctx.req = &req;
    ctx.ns = req.ns;
    {
      std::lock_guard lk(mu);
      if (sealed) fail(503, "Vault is sealed");
    }
    ctx.body = parse_body(req.body);
    // request_handling.go handleCancelableRequest refuses it before looking at the token.
    if ((op == "write" || op == "patch") && ends_with(path, "/")) fail(400, "cannot write to a path ending in '/'");
    // An auth method's login path is unauthenticated (its PathsSpecial.Unauthenticated):
    // the request's token, if any, is not looked at (request_handling.go handleLoginRequest).
    if (auto r = try_login(req, path, op, ctx.body)) return std::move(*r);
    {
      std::lock_guard lk(mu);
      Namespace& ns = ns_get(req.ns);
      Token* t = req.token.empty() ? nullptr : find_token(req.token, req.ns);
      if (!t && invalid_token_1_17 && !req.token.empty()) {
        throw ApiError{403, {"2 errors occurred:\n\t* permission denied\n\t* invalid token\n\n"}};
      }
      if (!t) fail(403, "permission denied");
      ctx.tok = *t;
      ctx.acl = acl_for(*t, ns);
      if (op == "write") op = exists_for_write(ns, path) ? "update" : "create";
      std::uint32_t need = op == "read"     ? CapRead
                           : op == "list"   ? CapList
                           : op == "create" ? CapCreate
                           : op == "update" ? CapUpdate
                           : op == "delete" ? CapDelete
                                            : CapPatch;
      std::uint32_t caps = ctx.acl.capabilities(path, op == "list");
      ctx.sudo = (caps & CapSudo) != 0;
      if (!ctx.acl.root) {
        if ((caps & CapDeny) || !(caps & need) || (is_sudo_path(path) && !(caps & CapSudo))) permission_denied();
      }
      // Limited-use tokens: count this use; the last one revokes the token afterwards.
      if (t->num_uses > 0) {
        ctx.last_use = --t->num_uses == 0;
        ctx.tok.num_uses = t->num_uses;
      }
    }
    ctx.path = path;
    ctx.op = op;
    struct LastUse {
      Impl* self;
      const Ctx& c;
      ~LastUse() {
        if (!c.last_use) return;
        std::lock_guard lk(self->mu);
        self->revoke_token_locked(c.tok.id);
      }
    } last_use{this, ctx};
    return route(ctx);
  }

  Response route(Ctx& c) {
    const std::string& p = c.path;
    if (starts_with(p, "sys/")) return route_sys(c);
    if (starts_with(p, "auth/token/")) return route_token(c);
    if (starts_with(p, "auth/")) return route_auth(c);
    std::shared_ptr<Mount> m;
    std::string rest;
    {
      std::lock_guard lk(mu);
      m = find_mount(ns_get(c.ns), p, &rest);
    }
    if (!m) {
      std::string shown = p;
      fail(404, "no handler for route \"" + shown + "\". route entry not found.");
    }
    return route_database(c, m, rest);
  }

  // ---------------------------------------------------------------- sys
  Response health(const Request& req) {
    bool is_sealed;
    {
      std::lock_guard lk(mu);
      is_sealed = sealed;
    }
    // http/sys_health.go fetchStatusCode: strconv.Atoi and no range check; a bad value
    // makes getSysHealth return no body, answered as respondError(w, 400, nil).
    auto code_param = [&](const char* name, std::int64_t def) {
      auto it = req.query.find(name);
      if (it == req.query.end()) return def;
      auto v = go_atoi(it->second);
      if (!v) throw ApiError{400, {}};
      return *v;
    };
    // standbyok / perfstandbyok: a bad value is a 400 whose error handleSysHealthGet
    // logs and does not send (respondError(w, code, nil)): {"errors":[]}.
    auto ok_param = [&](const char* name) {
      auto it = req.query.find(name);
      if (it == req.query.end()) return false;
      auto b = parse_bool_str(it->second);
      if (!b) throw ApiError{400, {}};
      return *b;
    };
    const bool standby_ok = ok_param("standbyok");
    ok_param("perfstandbyok");
    code_param("uninitcode", 501);
    const std::int64_t sealedcode = code_param("sealedcode", 503);
    const std::int64_t standbycode = code_param("standbycode", 429);
    const std::int64_t active = code_param("activecode", 200);
    code_param("drsecondarycode", 472);
    code_param("performancestandbycode", 473);
    // Sealed first, then a standby's code unless standbyok (getSysHealth's switch).
    std::int64_t code = is_sealed ? sealedcode : (opts.standby && !standby_ok) ? standbycode : active;
    // Go's ResponseWriter.WriteHeader panics on a code outside 100-999
    // (net/http checkWriteHeaderCode): the connection closes without an answer.
    if (code < 100 || code > 999) {
      Response dropped;
      dropped.drop = true;
      return dropped;
    }
    int status = static_cast<int>(code);
    if (req.method == "HEAD") return {status, ""};
    json b = json::object();
    b["initialized"] = true;
    b["sealed"] = is_sealed;
    b["standby"] = opts.standby;
    b["performance_standby"] = false;
    b["replication_performance_mode"] = "disabled";
    b["replication_dr_mode"] = "disabled";
    b["server_time_utc"] = unix_seconds(Clock::now());
    b["version"] = kVersion;
    // HealthResponse's cluster_name and cluster_id are omitempty, filled only if !sealed.
    if (!is_sealed) {
      b["cluster_name"] = cluster_name;
      b["cluster_id"] = cluster_id;
    }
    return {status, b.dump(-1, ' ', false, json::error_handler_t::replace)};
  }

  Response seal_status() {
    bool s;
    {
      std::lock_guard lk(mu);
      s = sealed;
    }
    json b = json::object();
    b["type"] = "shamir";
    b["initialized"] = true;
    b["sealed"] = s;
    b["t"] = 1;
    b["n"] = 1;
    b["progress"] = 0;
    b["nonce"] = "";
    b["version"] = kVersion;
    b["build_date"] = "2023-11-06T11:33:28Z";
    b["migration"] = false;
    b["cluster_name"] = cluster_name;
    b["cluster_id"] = cluster_id;
    b["recovery_seal"] = false;
    b["storage_type"] = "inmem";
    return {200, b.dump(-1, ' ', false, json::error_handler_t::replace)};
  }

  json mount_entry(const Mount& m) const {
    json cfg = json::object();
    cfg["default_lease_ttl"] = m.default_ttl;
    cfg["force_no_cache"] = false;
    cfg["max_lease_ttl"] = m.max_ttl;
    json e = json::object();
    e["accessor"] = m.accessor;
    e["config"] = cfg;
    e["description"] = m.description;
    e["external_entropy_access"] = false;
    e["local"] = false;
    e["options"] = m.options;
    e["plugin_version"] = "";
    e["running_plugin_version"] = std::string("v") + kVersion + "+builtin.vault";
    e["running_sha256"] = "";
    e["seal_wrap"] = false;
    e["type"] = m.type;
    e["uuid"] = m.uuid;
    return e;
  }

  static std::string normalize_mount_path(std::string p) {
    while (starts_with(p, "/")) p.erase(0, 1);
    while (ends_with(p, "/")) p.pop_back();
    return p + "/";
  }

  // mount.go protectedMounts, matched by prefix.
  static bool reserved_mount(const std::string& p) {
    for (const char* m : {"audit/", "auth/", "sys/", "cubbyhole/", "identity/"}) {
      if (starts_with(p, m)) return true;
    }
    return false;
  }

  Response route_sys(Ctx& c) {
    const std::string& p = c.path;
    const std::string& op = c.op;
    bool write = op == "create" || op == "update";
    // ---- mounts
    if (p == "sys/mounts" || p == "sys/mounts/") {
      if (op != "read") unsupported_op();
      std::lock_guard lk(mu);
      Namespace& ns = ns_get(c.ns);
      json d = json::object();
      for (const char* builtin : {"cubbyhole/", "identity/", "sys/"}) {
        Mount b;
        b.path = builtin;
        b.type = std::string(builtin).substr(0, std::string(builtin).size() - 1);
        b.type = b.type == "sys" ? "system" : b.type;
        b.accessor = b.type + "_00000000";
        b.uuid = "00000000-0000-0000-0000-000000000000";
        d[builtin] = mount_entry(b);
      }
      for (auto& [mp, m] : ns.mounts) d[mp] = mount_entry(*m);
      return data_resp("system", d, true);
    }
    if (starts_with(p, "sys/mounts/")) {
      std::string mp = p.substr(11);
      bool tune = ends_with(mp, "/tune");
      if (tune) mp = mp.substr(0, mp.size() - 5);
      mp = normalize_mount_path(mp);
      if (tune) return mount_tune(c, mp);
      if (write) return mount_enable(c, mp);
      if (op == "delete") return mount_disable(c, mp);
      if (op == "read") {
        std::lock_guard lk(mu);
        auto& ns = ns_get(c.ns);
        auto it = ns.mounts.find(mp);
        if (it == ns.mounts.end()) fail(400, "No secret engine mount at " + mp);
        return data_resp("system", mount_entry(*it->second), true);
      }
      unsupported_op();
    }
    // ---- auth methods
    if (p == "sys/auth" || p == "sys/auth/") {
      if (op != "read") unsupported_op();
      std::lock_guard lk(mu);
      Namespace& ns = ns_get(c.ns);
      json d = json::object();
      d["token/"] = auth_entry_json("token", "token based credentials", ns.token_auth_accessor,
                                    "00000000-0000-0000-0000-000000000000", 0, 0, "default-service");
      for (auto& [mp, m] : ns.auth_mounts) {
        d[mp] = auth_entry_json(m->type, m->description, m->accessor, m->uuid, m->default_ttl, m->max_ttl, m->token_type);
      }
      return data_resp("system", d, true);
    }
    if (starts_with(p, "sys/auth/")) {
      std::string mp = p.substr(9);
      bool tune = ends_with(mp, "/tune");
      if (tune) mp = mp.substr(0, mp.size() - 5);
      mp = normalize_mount_path(mp);
      if (tune) return auth_tune(c, mp);
      if (write) return auth_enable(c, mp);
      if (op == "delete") return auth_disable(c, mp);
      if (op == "read") {
        std::lock_guard lk(mu);
        auto& ns = ns_get(c.ns);
        auto it = ns.auth_mounts.find(mp);
        // logical_system.go handleReadAuth: an ErrorResponse, so a 400.
        if (it == ns.auth_mounts.end()) fail(400, "No auth engine at " + mp);
        const AuthMount& m = *it->second;
        return data_resp("system", auth_entry_json(m.type, m.description, m.accessor, m.uuid, m.default_ttl, m.max_ttl, m.token_type), true);
      }
      unsupported_op();
    }
    // ---- policies
    if (p == "sys/policy" || p == "sys/policy/" || p == "sys/policies/acl/" || p == "sys/policies/acl") {
      if (op != "read" && op != "list") unsupported_op();
      bool legacy = starts_with(p, "sys/policy");
      if (!legacy && op != "list") unsupported_op();
      std::lock_guard lk(mu);
      auto& ns = ns_get(c.ns);
      std::vector<std::string> names;
      for (auto& [n, _] : ns.policies) names.push_back(n);
      names.push_back("root");
      std::sort(names.begin(), names.end());
      json d = json::object();
      d["keys"] = str_array(names);
      if (legacy) d["policies"] = str_array(names);
      return data_resp("system", d, legacy);
    }
    if (starts_with(p, "sys/policy/") || starts_with(p, "sys/policies/acl/")) {
      bool legacy = starts_with(p, "sys/policy/");
      std::string name = lower(p.substr(legacy ? 11 : 17));
      if (name.empty() || ends_with(name, "/")) unsupported_path();
      if (op == "read") {
        std::lock_guard lk(mu);
        auto& ns = ns_get(c.ns);
        json d = json::object();
        d["name"] = name;
        if (name == "root") {
          d[legacy ? "rules" : "policy"] = "";
        } else {
          auto it = ns.policies.find(name);
          if (it == ns.policies.end()) not_found();
          d[legacy ? "rules" : "policy"] = it->second.raw;
        }
        return data_resp("system", d, legacy);
      }
      if (write) return policy_write(c, name, legacy);
      if (op == "delete") {
        // policy_store.go DeletePolicy: fmt.Errorf("cannot delete default policy").
        if (name == "default") fail(400, "cannot delete default policy");
        if (name == "root") fail(400, "cannot delete \"root\" policy");
        std::lock_guard lk(mu);
        ns_get(c.ns).policies.erase(name);
        return no_content();
      }
      unsupported_op();
    }
    if (starts_with(p, "sys/policies/password/")) return password_policy(c, p.substr(22));
    // ---- capabilities
    if (p == "sys/capabilities-self" || p == "sys/capabilities") {
      if (!write) unsupported_op();
      std::vector<std::string> paths = string_list(field(c.body, "paths"), true);
      if (paths.empty()) paths = string_list(field(c.body, "path"), true);
      std::lock_guard lk(mu);
      auto& ns = ns_get(c.ns);
      Acl acl = c.acl;
      if (p == "sys/capabilities") {
        std::string tok = str_field(c.body, "token");
        Token* t = find_token(tok, c.ns);
        if (!t) fail(400, "invalid token");
        acl = acl_for(*t, ns);
      }
      json d = json::object();
      for (auto& path : paths) {
        json caps = acl.root ? json::array({"root"}) : str_array(cap_names(acl.capabilities(path, false)));
        d[path] = caps;
      }
      if (paths.size() == 1) d["capabilities"] = d[paths[0]];
      return data_resp("system", d, true);
    }
    // ---- leases
    if (starts_with(p, "sys/leases/") || p == "sys/renew" || starts_with(p, "sys/renew/") || p == "sys/revoke" ||
        starts_with(p, "sys/revoke/") || starts_with(p, "sys/revoke-prefix/") || starts_with(p, "sys/revoke-force/")) {
      std::string sub = starts_with(p, "sys/leases/") ? p.substr(11) : p.substr(4);
      return route_leases(c, sub);
    }
    unsupported_path();
  }

  // logical_system.go handlePoliciesSet: on sys/policy/:name an empty `policy` takes
  // `rules` with a deprecation warning (the answer is then that response, 200); the empty
  // check and the parse come before SetPolicy refuses "root".
  Response policy_write(Ctx& c, const std::string& name, bool legacy) {
    std::string text = str_field(c.body, "policy");
    bool from_rules = text.empty() && legacy;
    if (from_rules) text = str_field(c.body, "rules");
    if (trim(text).empty()) fail(400, "'policy' parameter not supplied or empty");
    Policy pol = parse_policy(name, text);
    if (name == "root") fail(400, "cannot update \"root\" policy");
    std::lock_guard lk(mu);
    ns_get(c.ns).policies[name] = std::move(pol);
    if (!from_rules) return no_content();
    json e = envelope("system");
    e["warnings"] = json::array({"'rules' is deprecated, please use 'policy' instead"});
    return ok(e);
  }

  Response mount_enable(Ctx& c, const std::string& mp) {
    const json& type = field(c.body, "type");
    if (!type.is_string() || type.get<std::string>().empty()) fail(400, "backend type must be specified as a string");
    std::string t = type.get<std::string>();
    const json& cfg = field(c.body, "config");
    std::int64_t def = 0, max = 0;
    if (cfg.is_object()) {
      def = parse_duration_seconds(field(cfg, "default_lease_ttl"), "default_lease_ttl");
      max = parse_duration_seconds(field(cfg, "max_lease_ttl"), "max_lease_ttl");
    }
    if (def > 0 && max > 0 && def > max) fail(400, "given default lease TTL greater than given max lease TTL");
    // mount.go Core.mount: protectedMounts by prefix, then singletonMounts by type (coded
    // 403s that handleError's error response turns into 400s), then mountInternal's
    // conflicts; the plugin catalog is asked after those.
    if (reserved_mount(mp)) fail(400, "cannot mount \"" + mp + "\"");
    for (const char* single : {"cubbyhole", "system", "token", "identity"}) {
      if (t == single) fail(400, "mount type of \"" + t + "\" is not mountable");
    }
    std::lock_guard lk(mu);
    auto& ns = ns_get(c.ns);
    if (ns.mounts.count(mp)) fail(400, "path is already in use at " + mp);
    for (auto& [existing, _] : ns.mounts) {
      if (starts_with(mp, existing) || starts_with(existing, mp)) fail(400, "path is already in use at " + existing);
    }
    if (t != "database") fail(400, "plugin not found in the catalog: " + t);
    auto m = std::make_shared<Mount>();
    m->path = mp;
    m->type = t;
    m->description = str_field(c.body, "description");
    m->accessor = t + "_" + lower(random_base62(8));
    m->uuid = random_uuid();
    m->default_ttl = def;
    m->max_ttl = max;
    m->options = field(c.body, "options").is_object() ? field(c.body, "options") : json(nullptr);
    ns.mounts[mp] = m;
    return no_content();
  }

  Response mount_tune(Ctx& c, const std::string& mp) {
    std::lock_guard lk(mu);
    auto& ns = ns_get(c.ns);
    auto it = ns.mounts.find(mp);
    if (it == ns.mounts.end()) fail(400, "cannot fetch mount entry for \"" + mp + "\"");
    Mount& m = *it->second;
    if (c.op == "read") {
      json d = json::object();
      d["default_lease_ttl"] = m.default_ttl > 0 ? m.default_ttl : kSysDefaultTTL;
      d["max_lease_ttl"] = m.max_ttl > 0 ? m.max_ttl : kSysMaxTTL;
      d["force_no_cache"] = false;
      d["description"] = m.description;
      return data_resp("system", d, true);
    }
    if (c.op != "create" && c.op != "update") unsupported_op();
    std::int64_t def = has(c.body, "default_lease_ttl") ? parse_duration_seconds(field(c.body, "default_lease_ttl"), "default_lease_ttl") : m.default_ttl;
    std::int64_t max = has(c.body, "max_lease_ttl") ? parse_duration_seconds(field(c.body, "max_lease_ttl"), "max_lease_ttl") : m.max_ttl;
    if (def > 0 && max > 0 && def > max) fail(400, "given default lease TTL greater than given max lease TTL");
    m.default_ttl = def;
    m.max_ttl = max;
    if (has(c.body, "description")) m.description = str_field(c.body, "description");
    return no_content();
  }

  Response mount_disable(Ctx& c, const std::string& mp) {
    // mount.go Core.unmount refuses the protected mounts that exist (handleUnmount answers
    // 204 for a path that is no mount, such as auth/ or audit/).
    if (mp == "sys/" || mp == "cubbyhole/" || mp == "identity/") fail(400, "cannot unmount \"" + mp + "\"");
    std::vector<std::string> ids;
    {
      std::lock_guard lk(mu);
      auto& ns = ns_get(c.ns);
      if (!ns.mounts.count(mp)) return no_content();
      for (auto& [id, l] : leases) {
        if (l.ns == c.ns && l.mount_path == mp) ids.push_back(id);
      }
    }
    for (auto& id : ids) {
      std::string err = revoke_sync(id, false);
      if (!err.empty()) fail(400, "failed to revoke \"" + id + "\": failed to revoke entry: resp: (*logical.Response)(nil) err: " + err);
    }
    std::lock_guard lk(mu);
    ns_get(c.ns).mounts.erase(mp);
    return no_content();
  }

  Response password_policy(Ctx& c, std::string name) {
    bool gen = ends_with(name, "/generate");
    if (gen) name = name.substr(0, name.size() - 9);
    if (name.empty()) unsupported_path();
    std::lock_guard lk(mu);
    auto& ns = ns_get(c.ns);
    if (gen) {
      if (c.op != "read") unsupported_op();
      auto it = ns.password_policies.find(name);
      if (it == ns.password_policies.end()) fail(400, "policy \"" + name + "\" does not exist");
      json d = json::object();
      d["password"] = generate_password(&it->second);
      return data_resp("system", d);
    }
    if (c.op == "read") {
      auto it = ns.password_policies.find(name);
      if (it == ns.password_policies.end()) not_found();
      json d = json::object();
      d["policy"] = it->second.raw;
      return data_resp("system", d);
    }
    if (c.op == "create" || c.op == "update") {
      std::string text = str_field(c.body, "policy");
      if (trim(text).empty()) fail(400, "missing policy");
      ns.password_policies[name] = parse_password_policy(text);
      return no_content();
    }
    if (c.op == "delete") {
      ns.password_policies.erase(name);
      return no_content();
    }
    unsupported_op();
  }

  // --------------------------------------------------------- auth methods
  // The auth mount `sub` (a path after "auth/") is under, longest match (locked).
  std::shared_ptr<AuthMount> find_auth_mount(Namespace& ns, const std::string& sub, std::string* rest) {
    std::shared_ptr<AuthMount> best;
    for (auto& [p, m] : ns.auth_mounts) {
      if (starts_with(sub, p) || sub + "/" == p) {
        if (!best || p.size() > best->path.size()) best = m;
      }
    }
    if (best && rest) *rest = sub.size() >= best->path.size() ? sub.substr(best->path.size()) : "";
    return best;
  }

  static SysView auth_sys_view(const AuthMount& m) {
    SysView v;
    v.default_ttl = m.default_ttl > 0 ? m.default_ttl : kSysDefaultTTL;
    v.max_ttl = m.max_ttl > 0 ? m.max_ttl : kSysMaxTTL;
    if (m.max_ttl > 0 && m.default_ttl <= 0 && v.default_ttl > v.max_ttl) v.default_ttl = v.max_ttl;
    return v;
  }

  std::optional<Response> try_login(const Request& req, const std::string& path, const std::string& op,
                                    const json& body) {
    if (!starts_with(path, "auth/") || starts_with(path, "auth/token/")) return std::nullopt;
    std::lock_guard lk(mu);
    Namespace& ns = ns_get(req.ns);
    std::string rest;
    auto m = find_auth_mount(ns, path.substr(5), &rest);
    if (!m || !m->backend->is_login(rest)) return std::nullopt;
    if (op != "write") unsupported_op();
    PeerCerts peer;
    peer.tls = req.tls;
    peer.der = req.peer_certs_der;
    SysView sys = auth_sys_view(*m);
    LoginAuth la = m->backend->login(body, peer, sys);
    return login_token(ns, *m, path, la, sys);
  }

  // request_handling.go LoginCreateToken and RegisterAuth: the token of a successful
  // login (locked). The display name is the mount's path (slashes as dashes) joined to
  // what the method names, e.g. "approle", "jwt-alice", "kubernetes-ns-sa", "cert-web".
  Response login_token(Namespace& ns, const AuthMount& m, const std::string& path, const LoginAuth& la,
                       const SysView& sys) {
    std::string display = replace_all(m.path, "/", "-") + la.display_name;
    if (ends_with(display, "-")) display.pop_back();
    // router.go routeCommon: the mount's tuned token_type decides, or fills in the role's.
    const std::string& rt = la.token.type;
    std::string type;
    if (m.token_type == "service" || m.token_type == "batch") {
      type = m.token_type;
    } else if (m.token_type == "default-batch") {
      type = rt == "service" ? "service" : "batch";
    } else {
      type = rt == "batch" ? "batch" : "service";
    }
    TokenTtl tr = calculate_ttl(sys.default_ttl, sys.max_ttl, 0, la.token.ttl, la.token.period, la.token.max_ttl,
                                la.token.explicit_max_ttl, TimePoint{});
    std::vector<std::string> policies = sanitize_policies(la.token.policies, !la.token.no_default_policy);
    for (auto& p : policies) {
      if (p == "root") fail(400, "auth methods cannot create root tokens");
    }
    std::string& entity = entities[m.accessor + "\n" + la.alias];
    if (entity.empty()) entity = random_uuid();
    Token t;
    t.batch = type == "batch";
    // The dev-server token form: hvs. / hvb. and 24 base62 characters.
    t.id = (t.batch ? "hvb." : "hvs.") + random_base62(24);
    if (!t.batch) t.accessor = random_base62(24) + ns_suffix(ns);
    t.ns = ns.name;
    t.issue_time = Clock::now();
    t.policies = policies;
    t.display_name = display;
    t.path = path;
    t.creation_ttl = tr.ttl;
    t.auth_ttl = tr.ttl;
    t.explicit_max_ttl = la.token.explicit_max_ttl;
    t.period = la.token.period;
    t.renewable = !t.batch;
    t.num_uses = static_cast<int>(la.token.num_uses);
    json meta = json::object();
    for (auto& [k, v] : la.metadata) meta[k] = v;
    t.meta = meta;
    t.orphan = true;
    t.expire = t.issue_time + std::chrono::seconds(tr.ttl);
    t.entity_id = entity;
    t.login = true;
    t.login_ttl = la.token.ttl;
    t.login_max_ttl = la.token.max_ttl;
    t.login_sys_default = sys.default_ttl;
    t.login_sys_max = sys.max_ttl;
    if (!t.batch) accessors[t.accessor] = t.id;
    issued_tokens.push_back(t.id);
    std::string id = t.id;
    Token& stored = tokens[id] = std::move(t);
    json e = envelope(m.type);
    e["warnings"] = warnings_json(tr.warnings);
    e["auth"] = auth_block(stored);
    e["auth"]["lease_duration"] = tr.ttl;  // auth.TTL, the token's TTL as made
    return ok(e);
  }

  Response route_auth(Ctx& c) {
    std::lock_guard lk(mu);
    Namespace& ns = ns_get(c.ns);
    std::string rest;
    auto m = find_auth_mount(ns, c.path.substr(5), &rest);
    if (!m) fail(404, "no handler for route \"" + c.path + "\". route entry not found.");
    BackendReply r = m->backend->handle(c.op, rest, c.body, auth_sys_view(*m));
    if (r.data.is_object() && r.data.contains("secret_id") && r.data["secret_id"].is_string()) {
      issued_secret_ids.push_back(r.data["secret_id"].get<std::string>());
    }
    if (r.status == 204 && r.warnings.empty()) return no_content();
    json e = envelope(m->type);
    if (!r.data.is_null()) e["data"] = sorted(r.data);
    e["warnings"] = warnings_json(r.warnings);
    return ok(e);
  }

  // logical_system.go mountInfo for an auth table entry.
  static json auth_entry_json(const std::string& type, const std::string& description, const std::string& accessor,
                              const std::string& uuid, std::int64_t def, std::int64_t max,
                              const std::string& token_type) {
    json cfg = json::object();
    cfg["default_lease_ttl"] = def;
    cfg["force_no_cache"] = false;
    cfg["max_lease_ttl"] = max;
    cfg["token_type"] = token_type;
    json e = json::object();
    e["accessor"] = accessor;
    e["config"] = cfg;
    e["deprecation_status"] = "supported";
    e["description"] = description;
    e["external_entropy_access"] = false;
    e["local"] = false;
    e["options"] = nullptr;
    e["plugin_version"] = "";
    e["running_plugin_version"] = std::string("v") + kVersion + "+builtin.vault";
    e["running_sha256"] = "";
    e["seal_wrap"] = false;
    e["type"] = type;
    e["uuid"] = uuid;
    return e;
  }

  static std::string parse_token_type(const json& v) {
    std::string t = v.is_string() ? v.get<std::string>() : "";
    if (v.is_null() || t.empty()) return "default-service";
    // logical_system.go handleEnableAuth / handleTuneWriteCommon.
    if (t != "default-service" && t != "default-batch" && t != "service" && t != "batch") {
      fail(400, "invalid value for \"token_type\"");
    }
    return t;
  }

  // logical_system.go handleEnableAuth, then auth.go enableCredentialInternal: path
  // conflicts (the token method's token/ included) before the type is looked up.
  Response auth_enable(Ctx& c, const std::string& mp) {
    const json& type = field(c.body, "type");
    if (!type.is_string() || type.get<std::string>().empty()) fail(400, "backend type must be specified as a string");
    std::string t = type.get<std::string>();
    const json& cfg = field(c.body, "config");
    std::int64_t def = 0, max = 0;
    std::string token_type = "default-service";
    if (cfg.is_object()) {
      def = parse_duration_seconds(field(cfg, "default_lease_ttl"), "default_lease_ttl");
      max = parse_duration_seconds(field(cfg, "max_lease_ttl"), "max_lease_ttl");
      token_type = parse_token_type(field(cfg, "token_type"));
    }
    if (def > 0 && max > 0 && def > max) fail(400, "given default lease TTL greater than given max lease TTL");
    if (mp == "/") fail(400, "backend path must be specified");
    std::lock_guard lk(mu);
    auto& ns = ns_get(c.ns);
    std::vector<std::string> existing = {"token/"};
    for (auto& [p, _] : ns.auth_mounts) existing.push_back(p);
    for (auto& p : existing) {
      if (starts_with(p, mp) || starts_with(mp, p)) fail(400, "path is already in use at " + p);
    }
    if (t == "token") fail(400, "token credential backend cannot be instantiated");
    auto backend = make_auth_backend(t);
    if (!backend) fail(400, "plugin not found in the catalog: " + t);
    auto m = std::make_shared<AuthMount>();
    m->path = mp;
    m->type = t;
    m->description = str_field(c.body, "description");
    // mount.go generateMountAccessor: "auth_<type>_" and 8 hex characters of a UUID.
    m->accessor = "auth_" + t + "_" + random_uuid().substr(0, 8);
    m->uuid = random_uuid();
    m->default_ttl = def;
    m->max_ttl = max;
    m->token_type = token_type;
    m->backend = std::move(backend);
    ns.auth_mounts[mp] = m;
    return no_content();
  }

  // auth.go disableCredential: the token method stays; the tokens its logins made are
  // revoked with their leases (expiration RevokePrefix over auth/<path>).
  Response auth_disable(Ctx& c, const std::string& mp) {
    if (mp == "token/") fail(400, "token credential backend cannot be disabled");
    {
      std::lock_guard lk(mu);
      if (!ns_get(c.ns).auth_mounts.count(mp)) return no_content();
    }
    revoke_token_leases(c.ns, "auth/" + mp);
    std::lock_guard lk(mu);
    ns_get(c.ns).auth_mounts.erase(mp);
    return no_content();
  }

  Response auth_tune(Ctx& c, const std::string& mp) {
    std::lock_guard lk(mu);
    auto& ns = ns_get(c.ns);
    auto it = ns.auth_mounts.find(mp);
    if (it == ns.auth_mounts.end()) fail(400, "cannot fetch mount entry for \"auth/" + mp + "\"");
    AuthMount& m = *it->second;
    if (c.op == "read") {
      json d = json::object();
      d["default_lease_ttl"] = m.default_ttl > 0 ? m.default_ttl : kSysDefaultTTL;
      d["description"] = m.description;
      d["force_no_cache"] = false;
      d["max_lease_ttl"] = m.max_ttl > 0 ? m.max_ttl : kSysMaxTTL;
      d["token_type"] = m.token_type;
      return data_resp("system", d, true);
    }
    if (c.op != "create" && c.op != "update") unsupported_op();
    std::int64_t def = has(c.body, "default_lease_ttl") ? parse_duration_seconds(field(c.body, "default_lease_ttl"), "default_lease_ttl") : m.default_ttl;
    std::int64_t max = has(c.body, "max_lease_ttl") ? parse_duration_seconds(field(c.body, "max_lease_ttl"), "max_lease_ttl") : m.max_ttl;
    if (def > 0 && max > 0 && def > max) fail(400, "given default lease TTL greater than given max lease TTL");
    if (has(c.body, "token_type")) m.token_type = parse_token_type(field(c.body, "token_type"));
    m.default_ttl = def;
    m.max_ttl = max;
    if (has(c.body, "description")) m.description = str_field(c.body, "description");
    return no_content();
  }

  // -------------------------------------------------------------- leases
  Response route_leases(Ctx& c, const std::string& sub) {
    if (auto r = token_lease_route(c, sub)) return std::move(*r);
    bool write = c.op == "create" || c.op == "update";
    if (sub == "renew" || starts_with(sub, "renew/")) {
      if (!write) unsupported_op();
      std::string id = str_field(c.body, "lease_id");
      if (id.empty() && sub.size() > 6) id = sub.substr(6);
      return lease_renew(c, id);
    }
    if (sub == "revoke" || starts_with(sub, "revoke/")) {
      if (!write) unsupported_op();
      std::string id = str_field(c.body, "lease_id");
      if (id.empty() && sub.size() > 7) id = sub.substr(7);
      return lease_revoke(c, id);
    }
    if (starts_with(sub, "revoke-prefix/") || starts_with(sub, "revoke-force/")) {
      if (!write) unsupported_op();
      bool force = starts_with(sub, "revoke-force/");
      return lease_revoke_prefix(c, sub.substr(force ? 13 : 14), force);
    }
    if (sub == "lookup") {
      if (!write) unsupported_op();
      return lease_lookup(c, str_field(c.body, "lease_id"));
    }
    if (starts_with(sub, "lookup/")) {
      if (c.op != "list") unsupported_op();
      return lease_list(c, sub.substr(7));
    }
    unsupported_path();
  }

  Response lease_renew(Ctx& c, const std::string& id) {
    if (id.empty()) fail(400, "lease_id must be specified");
    std::int64_t increment = parse_duration_seconds(field(c.body, "increment"), "increment");
    Role role;
    std::shared_ptr<PgPool> pool;
    std::string username;
    TimePoint issue;
    MountTtl mt;
    {
      std::lock_guard lk(mu);
      auto it = leases.find(id);
      if (it == leases.end() || it->second.ns != c.ns) fail(400, "lease not found");
      Lease& l = it->second;
      auto now = Clock::now();
      // expiration.go leaseEntry.renewable, in its order.
      if (l.irrevocable) fail(400, "lease is expired and has failed previous revocation attempts");
      if (l.expire <= now) fail(400, "lease expired");
      if (!l.renewable) fail(400, "lease is not renewable");
      auto& ns = ns_get(c.ns);
      auto m = ns.mounts.find(l.mount_path);
      if (m == ns.mounts.end()) fail(400, "lease not found");
      auto r = m->second->roles.find(l.role);
      if (r == m->second->roles.end()) {
        fail(400, "failed to renew entry: resp: (*logical.Response)(nil) err: error during renew: could not find role with name \"" +
                      l.role + "\"");
      }
      role = r->second;
      auto cf = m->second->configs.find(role.db_name);
      if (cf == m->second->configs.end()) {
        fail(400, "failed to renew entry: resp: (*logical.Response)(nil) err: failed to find entry for connection with name: \"" +
                      role.db_name + "\"");
      }
      pool = cf->second->pool;
      username = l.username;
      issue = l.issue;
      mt = {m->second->default_ttl, m->second->max_ttl};
    }
    // The database backend's renew (secret_creds.go secretCredsRenew) runs CalculateTTL;
    // expiration.go renewEntry wraps its error.
    TtlResult tr;
    try {
      tr = calc_ttl(increment, role.default_ttl, role.max_ttl, 0, issue, mt);
    } catch (const BadRequest& e) {
      fail(400, std::string("failed to renew entry: resp: (*logical.Response)(nil) err: ") + e.what());
    }
    if (tr.ttl > 0) {
      try {
        pg_renew_user(*pool, role.renew, username, pg_expiration(Clock::now() + std::chrono::seconds(tr.ttl + 5)));
      } catch (const std::exception& e) {
        fail(400, std::string("failed to renew entry: resp: (*logical.Response)(nil) err: ") + e.what());
      }
    }
    {
      std::lock_guard lk(mu);
      auto it = leases.find(id);
      if (it == leases.end()) fail(400, "lease not found");
      auto now = Clock::now();
      it->second.expire = now + std::chrono::seconds(tr.ttl);
      it->second.last_renewal = now;
    }
    json e = envelope("system");
    e["lease_id"] = id;
    e["renewable"] = true;
    e["lease_duration"] = tr.ttl;
    e["warnings"] = warnings_json(tr.warnings);
    return ok(e);
  }

  Response lease_revoke(Ctx& c, const std::string& id) {
    if (id.empty()) fail(400, "lease_id must be specified");
    bool sync = has(c.body, "sync") ? parse_bool_field(field(c.body, "sync"), "sync") : true;
    {
      std::lock_guard lk(mu);
      auto it = leases.find(id);
      // logical_system.go handleRevoke: sync=false is LazyRevoke (nil for an unknown lease)
      // and then 202 whatever happened.
      if (it == leases.end() || it->second.ns != c.ns) return sync ? no_content() : Response{202, ""};
      if (!sync) {
        it->second.expire = std::min(it->second.expire, Clock::now());
        it->second.next_attempt = TimePoint{};
        bg_cv.notify_all();
        return {202, ""};
      }
    }
    std::string err = revoke_sync(id, false);
    if (!err.empty()) fail(400, "failed to revoke entry: resp: (*logical.Response)(nil) err: " + err);
    return no_content();
  }

  Response lease_revoke_prefix(Ctx& c, const std::string& prefix, bool force) {
    std::vector<std::string> ids;
    {
      std::lock_guard lk(mu);
      if (leases.count(prefix) && leases[prefix].ns == c.ns) {
        ids.push_back(prefix);
      } else {
        std::string pre = prefix.empty() || ends_with(prefix, "/") ? prefix : prefix + "/";
        for (auto& [id, l] : leases) {
          if (l.ns == c.ns && starts_with(id, pre)) ids.push_back(id);
        }
      }
    }
    for (std::size_t i = 0; i < ids.size(); ++i) {
      std::string err = revoke_sync(ids[i], false);
      if (!err.empty()) {
        if (force) {
          std::lock_guard lk(mu);
          auto it = leases.find(ids[i]);
          if (it != leases.end()) {
            auto t = tokens.find(it->second.token_id);
            if (t != tokens.end()) t->second.leases.erase(ids[i]);
            leases.erase(it);
          }
          continue;
        }
        fail(400, "failed to revoke \"" + ids[i] + "\" (" + std::to_string(i + 1) + " / " + std::to_string(ids.size()) +
                      "): failed to revoke entry: resp: (*logical.Response)(nil) err: " + err);
      }
    }
    return no_content();
  }

  Response lease_lookup(Ctx& c, const std::string& id) {
    if (id.empty()) fail(400, "lease_id must be specified");
    std::lock_guard lk(mu);
    auto it = leases.find(id);
    if (it == leases.end() || it->second.ns != c.ns) fail(400, "invalid lease");
    const Lease& l = it->second;
    json d = json::object();
    d["expire_time"] = time_or_null(l.expire);
    d["id"] = l.id;
    d["issue_time"] = rfc3339nano(l.issue);
    d["last_renewal"] = time_or_null(l.last_renewal);
    // handleLeaseLookup: leaseTimes.renewable(), false for an expired or irrevocable lease.
    d["renewable"] = l.renewable && !l.irrevocable && l.expire > Clock::now();
    // leaseEntry.ttl: ExpireTime.Sub(time.Now().Round(time.Second)) in whole seconds,
    // negative once the lease has expired.
    auto now_rounded = std::chrono::floor<std::chrono::seconds>(Clock::now() + std::chrono::milliseconds(500));
    d["ttl"] = std::chrono::duration_cast<std::chrono::seconds>(l.expire - now_rounded).count();
    return data_resp("system", d);
  }

  Response lease_list(Ctx& c, const std::string& prefix) {
    std::set<std::string> keys;
    {
      std::lock_guard lk(mu);
      for (auto& [id, l] : leases) {
        if (l.ns != c.ns || !starts_with(id, prefix)) continue;
        std::string rest = id.substr(prefix.size());
        auto slash = rest.find('/');
        keys.insert(slash == std::string::npos ? rest : rest.substr(0, slash + 1));
      }
      add_token_lease_keys(c.ns, prefix, keys);
    }
    keys.erase("");
    if (keys.empty()) not_found();
    json d = json::object();
    d["keys"] = str_array({keys.begin(), keys.end()});
    return data_resp("system", d);
  }

  // --------------------------------------------------------------- tokens
  Response route_token(Ctx& c) {
    std::string sub = c.path.substr(11);
    bool write = c.op == "create" || c.op == "update";
    if (sub == "create" || sub == "create-orphan" || starts_with(sub, "create/")) {
      if (!write) unsupported_op();
      if (starts_with(sub, "create/")) fail(400, "unknown role " + sub.substr(7));
      return token_create(c, sub == "create-orphan");
    }
    if (sub == "lookup-self") {
      if (c.op != "read" && !write) unsupported_op();
      std::lock_guard lk(mu);
      Token* t = find_token(c.tok.id, c.ns);
      if (!t) permission_denied();
      return data_resp("token", token_data(*t, true));
    }
    if (sub == "lookup" || starts_with(sub, "lookup/")) {
      if (c.op != "read" && !write) unsupported_op();
      std::string id = str_field(c.body, "token");
      if (id.empty() && sub.size() > 7) id = sub.substr(7);
      // token_store.go handleLookup: no token given → the caller's own.
      if (id.empty()) id = c.tok.id;
      std::lock_guard lk(mu);
      Token* t = find_token(id, c.ns);
      if (!t) fail(403, "bad token");
      return data_resp("token", token_data(*t, true));
    }
    if (sub == "lookup-accessor" || starts_with(sub, "lookup-accessor/")) {
      if (!write) unsupported_op();
      std::string acc = str_field(c.body, "accessor");
      if (acc.empty() && sub.size() > 16) acc = sub.substr(16);
      std::lock_guard lk(mu);
      auto it = accessors.find(acc);
      Token* t = it == accessors.end() ? nullptr : find_token(it->second, c.ns);
      if (!t) fail(400, "invalid accessor");
      return data_resp("token", token_data(*t, false));
    }
    if (sub == "renew-self" || sub == "renew" || starts_with(sub, "renew/") || sub == "renew-accessor") {
      if (!write) unsupported_op();
      std::lock_guard lk(mu);
      Token* t = nullptr;
      if (sub == "renew-self") {
        t = find_token(c.tok.id, c.ns);
      } else if (sub == "renew-accessor") {
        auto it = accessors.find(str_field(c.body, "accessor"));
        if (it != accessors.end()) t = find_token(it->second, c.ns);
        if (!t) fail(400, "invalid accessor");
      } else {
        std::string id = str_field(c.body, "token");
        if (id.empty() && sub.size() > 6) id = sub.substr(6);
        // token_store.go handleRenew.
        if (id.empty()) fail(400, "missing token ID");
        t = find_token(id, c.ns);
        if (!t) fail(400, "token not found");
      }
      if (!t) permission_denied();
      return token_renew(c, *t);
    }
    if (sub == "revoke-self") {
      if (!write) unsupported_op();
      std::lock_guard lk(mu);
      // token_store.go revokeCommon.
      if (c.tok.batch) fail(400, "batch tokens cannot be revoked");
      revoke_token_locked(c.tok.id);
      return no_content();
    }
    if (sub == "revoke" || sub == "revoke-orphan" || starts_with(sub, "revoke/")) {
      if (!write) unsupported_op();
      bool orphan = sub == "revoke-orphan";
      if (orphan && !c.acl.root && !c.sudo) fail(400, "root or sudo privileges required to revoke and orphan");
      std::string id = str_field(c.body, "token");
      if (id.empty() && sub.size() > 7 && !orphan) id = sub.substr(7);
      if (id.empty()) fail(400, "missing token ID");
      std::lock_guard lk(mu);
      // token_store.go: revokeCommon ignores an unknown token, handleRevokeOrphan refuses it.
      Token* target = find_token(id, c.ns);
      if (!target) {
        if (orphan) fail(400, "token to revoke not found");
        return no_content();
      }
      if (target->batch) fail(400, "batch tokens cannot be revoked");
      revoke_token_locked(id, orphan);
      return no_content();
    }
    if (sub == "revoke-accessor" || starts_with(sub, "revoke-accessor/")) {
      if (!write) unsupported_op();
      std::string acc = str_field(c.body, "accessor");
      if (acc.empty() && sub.size() > 16) acc = sub.substr(16);
      std::lock_guard lk(mu);
      auto it = accessors.find(acc);
      Token* t = it == accessors.end() ? nullptr : find_token(it->second, c.ns);
      if (!t) fail(400, "invalid accessor");
      revoke_token_locked(t->id);
      return no_content();
    }
    if (sub == "accessors/") {
      if (c.op != "list") unsupported_op();
      std::lock_guard lk(mu);
      std::vector<std::string> keys;
      for (auto& [acc, id] : accessors) {
        auto t = tokens.find(id);
        if (t != tokens.end() && t->second.ns == c.ns) keys.push_back(acc);
      }
      if (keys.empty()) not_found();
      json d = json::object();
      d["keys"] = str_array(keys);
      return data_resp("token", d);
    }
    unsupported_path();
  }

  Response token_create(Ctx& c, bool orphan_endpoint) {
    const json& b = c.body;
    bool privileged = c.acl.root || c.sudo;
    bool no_parent = parse_bool_field(field(b, "no_parent"), "no_parent");
    bool orphan = orphan_endpoint || no_parent;
    bool no_default = parse_bool_field(field(b, "no_default_policy"), "no_default_policy");
    bool renewable = has(b, "renewable") ? parse_bool_field(field(b, "renewable"), "renewable") : true;
    std::int64_t ttl = parse_duration_seconds(field(b, "ttl"), "ttl");
    if (ttl == 0 && has(b, "lease")) ttl = parse_duration_seconds(field(b, "lease"), "lease");
    std::int64_t explicit_max = parse_duration_seconds(field(b, "explicit_max_ttl"), "explicit_max_ttl");
    std::int64_t period = parse_duration_seconds(field(b, "period"), "period");
    std::int64_t num_uses = int_field(b, "num_uses", 0);
    if (num_uses < 0) fail(400, "number of uses cannot be negative");
    std::string display = sanitize_display_name(str_field(b, "display_name"));
    std::string custom_id = str_field(b, "id");
    if (!custom_id.empty() && !privileged) fail(400, "root or sudo privileges required to specify token id");
    std::string type = str_field(b, "type");
    if (!type.empty() && type != "service" && type != "default" && type != "batch") fail(400, "invalid 'type' value");
    json meta = nullptr;
    if (field(b, "meta").is_object()) {
      meta = json::object();
      for (auto it = field(b, "meta").begin(); it != field(b, "meta").end(); ++it) {
        meta[it.key()] = it.value().is_string() ? it.value().get<std::string>() : it.value().dump(-1, ' ', false, json::error_handler_t::replace);
      }
      meta = sorted(meta);
    }
    std::vector<std::string> requested = string_list(field(b, "policies"), true);

    std::lock_guard lk(mu);
    Namespace& ns = ns_get(c.ns);
    Token* parent = find_token(c.tok.id, c.ns);
    if (!parent) permission_denied();
    // token_store.go handleCreateCommon, before anything else.
    if (parent->batch) fail(400, "batch tokens cannot create more tokens");
    // handleCreateCommon's order: policies, orphan, period, TTL, then the warnings.
    std::vector<std::string> policies = child_token_policies(requested, parent->policies, privileged, no_default);
    if (no_parent && !privileged) fail(400, "root or sudo privileges required to create orphan token");
    if (period > 0 && !privileged) fail(400, "root or sudo privileges required to create periodic token");
    bool is_root_policy = policies.size() == 1 && policies[0] == "root";
    std::vector<std::string> warnings;
    std::int64_t final_ttl = ttl;
    // Only a root-policy token without ttl or period skips CalculateTTL (never expires).
    if (period > 0 || ttl > 0 || !is_root_policy) {
      TokenTtl tr = token_calculate_ttl(0, ttl, period, explicit_max, Clock::now());
      final_ttl = tr.ttl;
      warnings = std::move(tr.warnings);
    }
    // Root tokens are still bound by the explicit max TTL.
    if (final_ttl == 0 && explicit_max > 0) final_ttl = explicit_max;
    if (final_ttl == 0) {
      // The parent entry's TTL, not the time it has left.
      if (parent->creation_ttl != 0) fail(400, "expiring root tokens cannot create non-expiring root tokens");
      renewable = false;
    }
    if (!custom_id.empty()) {
      warnings.push_back(
          "Supplying a custom ID for the token uses the weaker SHA1 hashing instead of the more secure SHA2-256 HMAC "
          "for token obfuscation. SHA1 hashed tokens on the wire leads to less secure lookups.");
    }
    if (!custom_id.empty() && tokens.count(custom_id)) fail(400, "cannot use a token ID that is in use");
    for (auto& p : policies) {
      if (p != "root" && p != "default" && !ns.policies.count(p)) warnings.push_back("Policy \"" + p + "\" does not exist");
    }
    std::string parent_id = parent->id;
    Token& t = mint_token(ns, custom_id);
    t.policies = policies;
    t.display_name = display;
    t.path = c.path;
    t.creation_ttl = final_ttl;
    t.auth_ttl = final_ttl;
    t.explicit_max_ttl = explicit_max;
    t.period = period;
    t.renewable = renewable && final_ttl > 0;
    t.num_uses = static_cast<int>(num_uses);
    t.meta = meta;
    t.orphan = orphan;
    if (final_ttl > 0) t.expire = t.issue_time + std::chrono::seconds(final_ttl);
    if (!orphan) {
      t.parent = parent_id;
      tokens[parent_id].children.insert(t.id);
    }
    json e = envelope("token");
    e["warnings"] = warnings_json(warnings);
    e["auth"] = auth_block(t);
    return ok(e);
  }

  // Locked by the caller.
  Response token_renew(Ctx& c, Token& t) {
    // token_store.go handleRenew refuses a batch token before looking for its lease.
    if (t.batch) fail(400, "batch tokens cannot be renewed");
    // expiration.go RenewToken: no lease entry for the token.
    if (t.leaseless) fail(400, "invalid lease ID");
    if (t.expire == TimePoint{} || !t.renewable) fail(400, "lease is not renewable");
    std::int64_t increment = parse_duration_seconds(field(c.body, "increment"), "increment");
    // expiration.go RenewToken: CalculateTTL(increment, the lease's Auth.TTL, period,
    // explicit max, issue time); without an increment the token keeps its own TTL.
    // A login's token: renewAuthEntry asks the auth method (pathLoginRenew: the role's
    // token_ttl, token_max_ttl and token_period), then CalculateTTL with the auth mount's
    // system view.
    TokenTtl tr = t.login ? calculate_ttl(t.login_sys_default, t.login_sys_max, increment, t.login_ttl, t.period,
                                          t.login_max_ttl, t.explicit_max_ttl, t.issue_time)
                          : token_calculate_ttl(increment, t.auth_ttl, t.period, t.explicit_max_ttl, t.issue_time);
    std::int64_t ttl = tr.ttl;
    std::vector<std::string> warnings = std::move(tr.warnings);
    t.auth_ttl = ttl;
    auto now = Clock::now();
    t.expire = now + std::chrono::seconds(ttl);
    t.last_renewal = now;
    json e = envelope("token");
    e["warnings"] = warnings_json(warnings);
    e["auth"] = auth_block(t);
    return ok(e);
  }

  // ------------------------------------------------------------ token leases
  // expiration.go RegisterAuth: a token's lease is path.Join(token path, SaltID(token)),
  // plus ".<namespace id>" outside the root namespace; "" for a token without a lease.
  std::string token_lease_id(const Token& t) {
    if (t.leaseless || t.batch) return "";
    Namespace& ns = ns_get(t.ns);
    return t.path + "/" + token_salted_id(ns.token_salt, t.id, t.ns.empty()) + ns_suffix(ns);
  }

  Token* token_by_lease(const std::string& lease_id, const std::string& ns) {
    if (!starts_with(lease_id, "auth/")) return nullptr;
    for (auto& [id, t] : tokens) {
      if (t.ns == ns && token_lease_id(t) == lease_id) return find_token(id, ns);
    }
    return nullptr;
  }

  // LIST sys/leases/lookup/<prefix> lists the token leases too (locked).
  void add_token_lease_keys(const std::string& ns, const std::string& prefix, std::set<std::string>& keys) {
    for (auto& [id, t] : tokens) {
      if (t.ns != ns) continue;
      std::string lease = token_lease_id(t);
      if (lease.empty() || !starts_with(lease, prefix)) continue;
      std::string rest = lease.substr(prefix.size());
      auto slash = rest.find('/');
      keys.insert(slash == std::string::npos ? rest : rest.substr(0, slash + 1));
    }
  }

  // expiration.go revokePrefixCommon: the lease named by `prefix`, else every lease
  // under prefix/; a token's lease is revoked with its token tree (revokeEntry).
  void revoke_token_leases(const std::string& ns, const std::string& prefix) {
    std::lock_guard lk(mu);
    if (Token* t = token_by_lease(prefix, ns)) return revoke_token_locked(t->id);
    std::string under = ends_with(prefix, "/") ? prefix : prefix + "/";
    std::vector<std::string> ids;
    for (auto& [id, t] : tokens) {
      std::string lease = t.ns == ns ? token_lease_id(t) : "";
      if (!lease.empty() && starts_with(lease, under)) ids.push_back(id);
    }
    for (auto& id : ids) revoke_token_locked(id);
  }

  json token_lease_data(const Token& t, const std::string& lease_id) const {
    // logical_system.go handleLeaseLookup over the lease times of the token's lease.
    json d = json::object();
    d["expire_time"] = time_or_null(t.expire);
    d["id"] = lease_id;
    d["issue_time"] = rfc3339nano(t.issue_time);
    d["last_renewal"] = time_or_null(t.last_renewal);
    d["renewable"] = t.renewable && t.expire != TimePoint{};
    d["ttl"] = t.expire == TimePoint{} ? 0 : std::max<std::int64_t>(0, unix_seconds(t.expire) - unix_seconds(Clock::now()));
    return d;
  }

  // sys/leases requests that name a token's lease; nothing for secret leases. A
  // revoke-prefix revokes the token leases under it, then goes on to the secret leases.
  std::optional<Response> token_lease_route(Ctx& c, const std::string& sub) {
    if (c.op != "create" && c.op != "update") return std::nullopt;
    bool by_prefix = starts_with(sub, "revoke-prefix/") || starts_with(sub, "revoke-force/");
    if (by_prefix) {
      std::string prefix = sub.substr(sub.find('/') + 1);
      if (!prefix.empty()) revoke_token_leases(c.ns, prefix);
      return std::nullopt;
    }
    bool renew = sub == "renew" || starts_with(sub, "renew/");
    bool revoke = sub == "revoke" || starts_with(sub, "revoke/");
    if (!renew && !revoke && sub != "lookup") return std::nullopt;
    std::string id = str_field(c.body, "lease_id");
    if (id.empty() && sub != "lookup" && sub.find('/') != std::string::npos) id = sub.substr(sub.find('/') + 1);
    std::lock_guard lk(mu);
    Token* t = token_by_lease(id, c.ns);
    if (!t) return std::nullopt;
    if (sub == "lookup") return data_resp("system", token_lease_data(*t, id));
    if (renew) {
      // expiration.go Renew: the lease must be renewable, and still a token's is refused.
      if (t->expire == TimePoint{} || !t->renewable) fail(400, "lease is not renewable");
      fail(400, "tokens cannot be renewed through this endpoint");
    }
    // logical_system.go handleRevoke: sync=false answers 202 (here the token goes at once).
    bool sync = has(c.body, "sync") ? parse_bool_field(field(c.body, "sync"), "sync") : true;
    revoke_token_locked(t->id);
    if (!sync) return Response{202, ""};
    return no_content();
  }

  // ------------------------------------------------------------- database
  Response route_database(Ctx& c, const std::shared_ptr<Mount>& m, const std::string& rest) {
    const std::string& op = c.op;
    bool write = op == "create" || op == "update";
    if (rest == "config/" || rest == "roles/") {
      if (op != "list") unsupported_op();
      std::vector<std::string> keys;
      {
        std::lock_guard lk(mu);
        if (rest == "config/") {
          for (auto& [k, _] : m->configs) keys.push_back(k);
        } else {
          for (auto& [k, _] : m->roles) keys.push_back(k);
        }
      }
      if (keys.empty()) not_found();
      json d = json::object();
      d["keys"] = str_array(keys);
      return data_resp("database", d);
    }
    if (starts_with(rest, "config/")) {
      std::string name = rest.substr(7);
      if (name.find('/') != std::string::npos) unsupported_path();
      if (op == "read") return db_config_read(m, name);
      if (write) return db_config_write(c, m, name);
      if (op == "delete") {
        std::lock_guard lk(mu);
        m->configs.erase(name);
        return no_content();
      }
      unsupported_op();
    }
    if (starts_with(rest, "roles/")) {
      std::string name = rest.substr(6);
      if (name.find('/') != std::string::npos) unsupported_path();
      if (op == "read") return db_role_read(m, name);
      if (write) return db_role_write(c, m, name);
      if (op == "delete") {
        std::lock_guard lk(mu);
        m->roles.erase(name);
        return no_content();
      }
      unsupported_op();
    }
    if (starts_with(rest, "creds/")) {
      std::string name = rest.substr(6);
      if (name.empty() || name.find('/') != std::string::npos) unsupported_path();
      if (op != "read") unsupported_op();
      return db_creds(c, m, name);
    }
    unsupported_path();
  }

  Response db_config_read(const std::shared_ptr<Mount>& m, const std::string& name) {
    std::lock_guard lk(mu);
    auto it = m->configs.find(name);
    if (it == m->configs.end()) not_found();
    const DbConfig& cfg = *it->second;
    json details = cfg.details;
    details.erase("password");
    if (details.contains("connection_url") && details["connection_url"].is_string()) {
      details["connection_url"] = mask_url_password(details["connection_url"].get<std::string>(), nullptr);
    }
    json d = json::object();
    d["allowed_roles"] = str_array(cfg.allowed_roles);
    d["connection_details"] = details;
    d["password_policy"] = cfg.password_policy;
    d["plugin_name"] = cfg.plugin_name;
    d["plugin_version"] = "";
    d["root_credentials_rotate_statements"] = str_array(cfg.root_rotation_statements);
    d["verify_connection"] = cfg.verify_connection;
    return data_resp("database", d);
  }

  Response db_config_write(Ctx& c, const std::shared_ptr<Mount>& m, const std::string& name) {
    DbConfig cfg;
    {
      std::lock_guard lk(mu);
      auto it = m->configs.find(name);
      if (it != m->configs.end()) cfg = *it->second;
    }
    cfg.pool.reset();
    const json& b = c.body;
    if (has(b, "plugin_name")) cfg.plugin_name = str_field(b, "plugin_name");
    if (cfg.plugin_name.empty()) fail(400, "empty plugin name");
    cfg.verify_connection = has(b, "verify_connection") ? parse_bool_field(field(b, "verify_connection"), "verify_connection") : true;
    if (field(b, "allowed_roles").is_array() || field(b, "allowed_roles").is_string()) {
      cfg.allowed_roles = string_list(field(b, "allowed_roles"), true);
    }
    if (has(b, "password_policy")) cfg.password_policy = str_field(b, "password_policy");
    if (has(b, "root_rotation_statements")) cfg.root_rotation_statements = string_list(field(b, "root_rotation_statements"), false);
    static const std::set<std::string> top = {"plugin_name", "plugin_version", "verify_connection", "allowed_roles",
                                              "password_policy", "root_rotation_statements", "name"};
    for (auto it = b.begin(); it != b.end(); ++it) {
      if (top.count(it.key()) || it.value().is_null()) continue;
      cfg.details[it.key()] = it.value();
    }
    if (cfg.plugin_name != "postgresql-database-plugin") {
      fail(400, "error creating database object: unable to get plugin: plugin not found in the catalog: " + cfg.plugin_name);
    }
    std::string url = cfg.details.contains("connection_url") ? str_field(cfg.details, "connection_url") : "";
    if (trim(url).empty()) fail(400, "error creating database object: connection_url cannot be empty");
    std::string username = cfg.details.contains("username") ? str_field(cfg.details, "username") : "";
    std::string password = cfg.details.contains("password") ? str_field(cfg.details, "password") : "";
    if (username.find("{{") != std::string::npos || password.find("{{") != std::string::npos) {
      fail(400, "error creating database object: username and/or password cannot contain the template variables");
    }
    std::string pwauth = cfg.details.contains("password_authentication") ? str_field(cfg.details, "password_authentication") : "";
    if (pwauth.empty()) pwauth = "password";
    if (pwauth != "password" && pwauth != "scram-sha-256") {
      fail(400, "error creating database object: '" + pwauth + "' is not a valid password authentication type");
    }
    cfg.password_auth = pwauth;
    cfg.username_template = cfg.details.contains("username_template") ? str_field(cfg.details, "username_template") : "";
    bool disable_escaping = cfg.details.contains("disable_escaping") && parse_bool_field(cfg.details["disable_escaping"], "disable_escaping");
    std::string conninfo = url;
    conninfo = replace_all(conninfo, "{{username}}", disable_escaping ? username : url_path_escape(username));
    conninfo = replace_all(conninfo, "{{password}}", disable_escaping ? password : url_path_escape(password));
    int max_open = cfg.details.contains("max_open_connections") ? static_cast<int>(int_field(cfg.details, "max_open_connections", 4)) : 4;
    if (max_open <= 0) max_open = 4;
    if (cfg.verify_connection) {
      std::string err = PgPool::verify(conninfo);
      if (!err.empty()) {
        if (!password.empty()) err = replace_all(err, password, "[password]");
        fail(400, "error creating database object: error verifying connection: " + err);
      }
    }
    cfg.pool = std::make_shared<PgPool>(conninfo, max_open);
    bool literal = false;
    mask_url_password(url, &literal);
    {
      std::lock_guard lk(mu);
      m->configs[name] = std::make_shared<DbConfig>(std::move(cfg));
    }
    if (literal) {
      json e = envelope("database");
      e["warnings"] = json::array(
          {"Password found in connection_url, use a templated url to enable root rotation and prevent read access to "
           "password information."});
      return ok(e);
    }
    return no_content();
  }

  Response db_role_read(const std::shared_ptr<Mount>& m, const std::string& name) {
    std::lock_guard lk(mu);
    auto it = m->roles.find(name);
    if (it == m->roles.end()) not_found();
    const Role& r = it->second;
    json d = json::object();
    d["creation_statements"] = str_array(r.creation);
    d["credential_type"] = "password";
    d["db_name"] = r.db_name;
    d["default_ttl"] = r.default_ttl;
    d["max_ttl"] = r.max_ttl;
    d["renew_statements"] = str_array(r.renew);
    d["revocation_statements"] = str_array(r.revocation);
    d["rollback_statements"] = str_array(r.rollback);
    return data_resp("database", d);
  }

  Response db_role_write(Ctx& c, const std::shared_ptr<Mount>& m, const std::string& name) {
    const json& b = c.body;
    auto stmts = [&](const char* f, std::vector<std::string>& out) {
      if (!has(b, f)) return;
      std::vector<std::string> v = string_list(field(b, f), false);
      out.clear();
      for (auto& s : v) {
        if (!s.empty()) out.push_back(s);
      }
    };
    std::lock_guard lk(mu);
    auto it = m->roles.find(name);
    bool create = it == m->roles.end();
    Role r = create ? Role{} : it->second;
    if (has(b, "db_name")) r.db_name = str_field(b, "db_name");
    if (r.db_name.empty()) fail(400, "database name is required");
    stmts("creation_statements", r.creation);
    stmts("revocation_statements", r.revocation);
    stmts("rollback_statements", r.rollback);
    stmts("renew_statements", r.renew);
    if (has(b, "default_ttl")) r.default_ttl = parse_duration_seconds(field(b, "default_ttl"), "default_ttl");
    if (has(b, "max_ttl")) r.max_ttl = parse_duration_seconds(field(b, "max_ttl"), "max_ttl");
    if (r.max_ttl != 0 && r.max_ttl < r.default_ttl) fail(400, "ttl cannot be greater than max_ttl");
    m->roles[name] = r;
    return no_content();
  }

  Response db_creds(Ctx& c, const std::shared_ptr<Mount>& m, const std::string& name) {
    Role role;
    std::shared_ptr<DbConfig> cfg;
    MountTtl mt;
    PasswordPolicy pp;
    bool have_pp = false;
    {
      std::lock_guard lk(mu);
      auto it = m->roles.find(name);
      if (it == m->roles.end()) fail(400, "unknown role: " + name);
      role = it->second;
      auto cf = m->configs.find(role.db_name);
      if (cf == m->configs.end()) fail_multi(500, "failed to find entry for connection with name: \"" + role.db_name + "\"");
      cfg = cf->second;
      bool allowed = false;
      for (auto& a : cfg->allowed_roles) {
        if (a == "*" || glob_match(a, name)) allowed = true;
      }
      if (!allowed) fail_multi(500, "\"" + name + "\" is not an allowed role");
      mt = {m->default_ttl, m->max_ttl};
      if (!cfg->password_policy.empty()) {
        auto& ns = ns_get(c.ns);
        auto p = ns.password_policies.find(cfg->password_policy);
        if (p == ns.password_policies.end()) {
          fail_multi(500, "unable to generate password: policy \"" + cfg->password_policy + "\" does not exist");
        }
        pp = p->second;
        have_pp = true;
      }
    }
    if (role.creation.empty()) fail_multi(500, "empty creation statements");
    TtlResult tr = calc_ttl(0, role.default_ttl, role.max_ttl, 0, TimePoint{}, mt);
    auto now = Clock::now();
    std::string username = generate_username(cfg->username_template, {c.tok.display_name, name});
    std::string password = generate_password(have_pp ? &pp : nullptr);
    std::string expiration = pg_expiration(now + std::chrono::seconds(tr.ttl + 5));
    try {
      pg_create_user(*cfg->pool, role.creation, username, password, expiration, cfg->password_auth);
    } catch (const std::exception& e) {
      fail_multi(500, e.what());
    }
    std::string lease_id;
    std::int64_t lease_ttl = tr.ttl;
    {
      std::lock_guard lk(mu);
      auto& ns = ns_get(c.ns);
      lease_id = m->path + "creds/" + name + "/" + random_base62(24) + ns_suffix(ns);
      Lease l;
      l.id = lease_id;
      l.ns = c.ns;
      l.mount_path = m->path;
      l.role = name;
      l.db_name = role.db_name;
      l.username = username;
      l.issue = now;
      l.expire = now + std::chrono::seconds(tr.ttl);
      l.revocation = role.revocation;
      l.token_id = c.tok.id;
      l.token_accessor = c.tok.accessor;
      auto t = tokens.find(c.tok.id);
      if (t != tokens.end() && t->second.batch) {
        // expiration.go Register: an orphan batch token indexes no lease, and its leases
        // end when it does at the latest; the answer's TTL is what is left, rounded.
        if (l.expire > t->second.expire) {
          l.expire = t->second.expire;
          lease_ttl = std::chrono::duration_cast<std::chrono::seconds>(l.expire - Clock::now() + std::chrono::milliseconds(500)).count();
        }
      } else if (t != tokens.end()) {
        t->second.leases.insert(lease_id);
      } else {
        l.expire = Clock::now();  // the token died meanwhile
      }
      leases[lease_id] = std::move(l);
      issued_passwords.push_back(password);
    }
    json e = envelope("database");
    e["lease_id"] = lease_id;
    e["renewable"] = true;
    e["lease_duration"] = lease_ttl;
    json d = json::object();
    d["password"] = password;
    d["username"] = username;
    e["data"] = d;
    e["warnings"] = warnings_json(tr.warnings);
    return ok(e);
  }

  // ------------------------------------------------------------ /_dev/
  Fault take_fault(const Request& req) {
    std::lock_guard lk(cmu);
    ++total;
    ++by_path[req.path];
    ++by_request[req.method + " " + req.path];
    for (auto it = faults.begin(); it != faults.end(); ++it) {
      if (!starts_with(req.path, it->path)) continue;
      if (!it->method.empty() && it->method != req.method) continue;
      Fault f;
      f.delay_ms = it->delay_ms;
      if (it->mode == "reset") f.reset = true;
      else if (it->mode == "status") f.status = it->status;
      f.errors = it->errors;
      f.headers = it->headers;
      if (--it->count <= 0) faults.erase(it);
      return f;
    }
    return {};
  }

  json lease_json(const Lease& l) const {
    json j = json::object();
    j["lease_id"] = l.id;
    j["username"] = l.username;
    j["role"] = l.role;
    j["namespace"] = l.ns;
    j["expire_time"] = rfc3339nano(l.expire);
    j["token_accessor"] = l.token_accessor;
    j["mount"] = l.mount_path;
    j["db_name"] = l.db_name;
    j["issue_time"] = rfc3339nano(l.issue);
    j["revoking"] = l.revoking;
    j["irrevocable"] = l.irrevocable;
    j["revoke_attempts"] = l.attempts;
    j["last_error"] = l.last_error;
    j["next_attempt"] = l.irrevocable ? json(nullptr) : time_or_null(l.next_attempt);
    return j;
  }

  Response handle_dev(const Request& req) {
    const std::string& p = req.path;
    const std::string& m = req.method;
    json body = parse_body(req.body);
    json ok_json = json::object({{"ok", true}});
    if (p == "counters" && m == "GET") {
      std::lock_guard lk(cmu);
      json j = json::object();
      j["total"] = total;
      j["paths"] = json::object();
      for (auto& [k, v] : by_path) j["paths"][k] = v;
      j["requests"] = json::object();
      for (auto& [k, v] : by_request) j["requests"][k] = v;
      return {200, j.dump(-1, ' ', false, json::error_handler_t::replace)};
    }
    if (p == "counters/reset" && m == "POST") {
      std::lock_guard lk(cmu);
      total = 0;
      by_path.clear();
      by_request.clear();
      return {200, ok_json.dump(-1, ' ', false, json::error_handler_t::replace)};
    }
    if (p == "fail" && m == "POST") {
      // `errors` and `headers` shape Vault's answers that vault-dev cannot provoke on
      // demand: a renewal whose database call failed is 400 "failed to renew entry: resp:
      // (*logical.Response)(nil) err: <driver error>" (expiration.go renewEntry wraps
      // it; logical_system.go handleRenew answers it via handleErrorNoReadOnlyForward);
      // a quota's refusal is 429 {"errors":["request path \"<path>\": rate limit quota
      // exceeded"]} with Retry-After in whole seconds when rate-limit response headers
      // are on (http/util.go rateLimitQuotaWrapping, vault/quotas/quotas_rate_limit.go).
      FaultRule r;
      r.path = str_field(body, "path");
      while (starts_with(r.path, "/")) r.path.erase(0, 1);
      if (starts_with(r.path, "v1/")) r.path.erase(0, 3);
      r.method = str_field(body, "method");
      for (char& ch : r.method) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
      r.count = static_cast<int>(int_field(body, "count", 1));
      r.status = static_cast<int>(int_field(body, "status", 503));
      r.delay_ms = static_cast<int>(int_field(body, "delay_ms", 0));
      r.mode = str_field(body, "mode");
      if (r.mode.empty()) r.mode = "status";
      if (body.contains("errors")) {
        if (!body["errors"].is_array()) fail(400, "errors must be a list of strings");
        for (auto& e : body["errors"]) {
          if (!e.is_string()) fail(400, "errors must be a list of strings");
          r.errors.push_back(e.get<std::string>());
        }
      }
      if (body.contains("headers")) {
        if (!body["headers"].is_object()) fail(400, "headers must be an object of strings");
        for (auto it = body["headers"].begin(); it != body["headers"].end(); ++it) {
          if (!it.value().is_string()) fail(400, "headers must be an object of strings");
          r.headers.emplace_back(it.key(), it.value().get<std::string>());
        }
      }
      if (r.mode != "status" && r.mode != "delay" && r.mode != "reset") fail(400, "mode must be status, delay or reset");
      if (r.status < 100 || r.status > 599) fail(400, "status must be an HTTP status code");
      if (r.count > 0) {
        std::lock_guard lk(cmu);
        faults.push_back(r);
      }
      return {200, ok_json.dump(-1, ' ', false, json::error_handler_t::replace)};
    }
    if ((p == "fail" && m == "DELETE") || (p == "fail/clear" && m == "POST")) {
      std::lock_guard lk(cmu);
      faults.clear();
      return {200, ok_json.dump(-1, ' ', false, json::error_handler_t::replace)};
    }
    if (p == "fail" && m == "GET") {
      std::lock_guard lk(cmu);
      json a = json::array();
      for (auto& r : faults) {
        json h = json::object();
        for (auto& [k, v] : r.headers) h[k] = v;
        a.push_back({{"path", r.path}, {"method", r.method}, {"count", r.count}, {"status", r.status},
                     {"delay_ms", r.delay_ms}, {"mode", r.mode}, {"errors", str_array(r.errors)}, {"headers", h}});
      }
      return {200, a.dump(-1, ' ', false, json::error_handler_t::replace)};
    }
    if (p == "invalid-token" && (m == "POST" || m == "GET")) {
      std::lock_guard lk(mu);
      if (m == "POST") {
        std::string style = str_field(body, "style");
        if (style != "1.17" && style != "legacy") fail(400, "style must be 1.17 or legacy");
        invalid_token_1_17 = style == "1.17";
      }
      return {200, json::object({{"style", invalid_token_1_17 ? "1.17" : "legacy"}})
                       .dump(-1, ' ', false, json::error_handler_t::replace)};
    }
    if ((p == "seal" || p == "unseal") && m == "POST") {
      std::lock_guard lk(mu);
      sealed = p == "seal";
      return {200, json::object({{"sealed", sealed}}).dump(-1, ' ', false, json::error_handler_t::replace)};
    }
    if (p == "expire/lease" && m == "POST") {
      std::string id = str_field(body, "lease_id");
      {
        std::lock_guard lk(mu);
        auto it = leases.find(id);
        if (it == leases.end()) fail(404, "lease not found");
        it->second.expire = std::min(it->second.expire, Clock::now());
      }
      std::string err = revoke_sync(id, true);
      json j = json::object({{"lease_id", id}, {"revoked", err.empty()}});
      if (!err.empty()) j["error"] = err;
      return {200, j.dump(-1, ' ', false, json::error_handler_t::replace)};
    }
    if (p == "expire/token" && m == "POST") {
      std::vector<std::string> lease_ids;
      std::size_t revoked_count = 0;
      {
        std::lock_guard lk(mu);
        std::string id = str_field(body, "token");
        if (id.empty()) {
          auto it = accessors.find(str_field(body, "accessor"));
          if (it != accessors.end()) id = it->second;
        }
        auto it = tokens.find(id);
        if (it == tokens.end()) fail(404, "token not found");
        std::size_t tokens_before = tokens.size();
        // Leases of the whole subtree are expired (lazily) by revoke_token_locked.
        std::set<std::string> before_leases;
        for (auto& [lid, l] : leases) {
          if (l.expire > Clock::now()) before_leases.insert(lid);
        }
        revoke_token_locked(id);
        revoked_count = tokens_before - tokens.size();
        for (auto& lid : before_leases) {
          auto l = leases.find(lid);
          if (l != leases.end() && l->second.expire <= Clock::now()) lease_ids.push_back(lid);
        }
      }
      json ls = json::array();
      for (auto& lid : lease_ids) {
        std::string err = revoke_sync(lid, true);
        json j = json::object({{"lease_id", lid}, {"revoked", err.empty()}});
        if (!err.empty()) j["error"] = err;
        ls.push_back(j);
      }
      return {200, json::object({{"revoked_tokens", revoked_count}, {"leases", ls}}).dump(-1, ' ', false, json::error_handler_t::replace)};
    }
    if (p == "leases" && m == "GET") {
      std::lock_guard lk(mu);
      json a = json::array();
      for (auto& [id, l] : leases) a.push_back(lease_json(l));
      return {200, a.dump(-1, ' ', false, json::error_handler_t::replace)};
    }
    if (p == "tokens" && m == "GET") {
      std::lock_guard lk(mu);
      json a = json::array();
      for (auto& [id, t] : tokens) {
        json j = json::object();
        j["accessor"] = t.accessor;
        j["namespace"] = t.ns;
        j["policies"] = str_array(t.policies);
        j["display_name"] = t.display_name;
        j["expire_time"] = time_or_null(t.expire);
        auto par = tokens.find(t.parent);
        j["parent_accessor"] = par == tokens.end() ? "" : par->second.accessor;
        j["leases"] = t.leases.size();
        a.push_back(j);
      }
      return {200, a.dump(-1, ' ', false, json::error_handler_t::replace)};
    }
    if (p == "root-token" && m == "POST") {
      // A root token as `vault operator init` or generate-root makes it: no lease.
      std::lock_guard lk(mu);
      Token t;
      t.id = "hvs." + random_base62(24);
      t.accessor = random_base62(24);
      t.policies = {"root"};
      t.display_name = "root";
      t.path = "auth/token/root";
      t.issue_time = Clock::now();
      t.orphan = true;
      t.leaseless = true;
      accessors[t.accessor] = t.id;
      issued_tokens.push_back(t.id);
      tokens[t.id] = t;
      return {200, json::object({{"token", t.id}, {"accessor", t.accessor}}).dump()};
    }
    if (p == "secrets" && m == "GET") {
      std::lock_guard lk(mu);
      json j = json::object();
      j["tokens"] = str_array(issued_tokens);
      j["passwords"] = str_array(issued_passwords);
      j["secret_ids"] = str_array(issued_secret_ids);
      return {200, j.dump(-1, ' ', false, json::error_handler_t::replace)};
    }
    fail(404, "unknown /_dev/ endpoint: " + m + " /_dev/" + p);
  }
};

// ==================================================================== Vault
Vault::Vault(Options opts) : impl_(std::make_unique<Impl>(std::move(opts))) {}
Vault::~Vault() { impl_->shutdown(); }

const std::string& Vault::root_token() const { return impl_->opts.root_token; }

Fault Vault::take_fault(const Request& req) { return impl_->take_fault(req); }

void Vault::shutdown() { impl_->shutdown(); }

namespace {
template <class F>
Response guarded(F&& f) {
  try {
    return f();
  } catch (const ApiError& e) {
    return errors_resp(e.status, e.errors);
  } catch (const BadRequest& e) {
    return errors_resp(400, {e.what()});
  } catch (const StatusError& e) {
    std::string msg = e.what();
    return errors_resp(e.status, msg.empty() ? std::vector<std::string>{} : std::vector<std::string>{msg});
  } catch (const std::exception& e) {
    return errors_resp(500, {multierror(e.what())});
  }
}
}  // namespace

Response Vault::handle_v1(const Request& req) {
  return guarded([&] { return impl_->dispatch(req); });
}

Response Vault::handle_dev(const Request& req) {
  return guarded([&] { return impl_->handle_dev(req); });
}

}  // namespace vd
