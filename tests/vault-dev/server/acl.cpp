// vault-dev: HCL subset parser, policies and the ACL engine (vault-api.md §3).
#include "acl.hpp"

#include <algorithm>
#include <cctype>

namespace vd {

// Vault's default policy, verbatim (vault/policy_store.go defaultPolicy; the text that
// `vault read sys/policy/default` shows).
const char* const kDefaultPolicy = R"(
# Allow tokens to look up their own properties
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Allow tokens to renew themselves
path "auth/token/renew-self" {
    capabilities = ["update"]
}

# Allow tokens to revoke themselves
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path
path "sys/capabilities-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own entity by id or name
path "identity/entity/id/{{identity.entity.id}}" {
  capabilities = ["read"]
}
path "identity/entity/name/{{identity.entity.name}}" {
  capabilities = ["read"]
}


# Allow a token to look up its resultant ACL from all policies. This is useful
# for UIs. It is an internal path because the format may change at any time
# based on how the internal ACL features and capabilities change.
path "sys/internal/ui/resultant-acl" {
    capabilities = ["read"]
}

# Allow a token to renew a lease via lease_id in the request body; old path for
# old clients, new path for newer
path "sys/renew" {
    capabilities = ["update"]
}
path "sys/leases/renew" {
    capabilities = ["update"]
}

# Allow looking up lease properties. This requires knowing the lease ID ahead
# of time and does not divulge any sensitive information.
path "sys/leases/lookup" {
    capabilities = ["update"]
}

# Allow a token to manage its own cubbyhole
path "cubbyhole/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}

# Allow a token to wrap arbitrary values in a response-wrapping token
path "sys/wrapping/wrap" {
    capabilities = ["update"]
}

# Allow a token to look up the creation time and TTL of a given
# response-wrapping token
path "sys/wrapping/lookup" {
    capabilities = ["update"]
}

# Allow a token to unwrap a response-wrapping token. This is a convenience to
# avoid client token swapping since this is also part of the response wrapping
# policy.
path "sys/wrapping/unwrap" {
    capabilities = ["update"]
}

# Allow general purpose tools
path "sys/tools/hash" {
    capabilities = ["update"]
}
path "sys/tools/hash/*" {
    capabilities = ["update"]
}

# Allow checking the status of a Control Group request if the user has the
# accessor
path "sys/control-group/request" {
    capabilities = ["update"]
}

# Allow a token to make requests to the Authorization Endpoint for OIDC providers.
path "identity/oidc/provider/+/authorize" {
    capabilities = ["read", "update"]
}
)";

// ---------------------------------------------------------------- HCL parser
namespace {

struct Tok {
  enum Kind { Ident, String, Number, Punct, End } kind = End;
  std::string text;
  int line = 1, col = 1;
};

class Lexer {
 public:
  explicit Lexer(std::string_view s) : s_(s) {}

  Tok next() {
    skip();
    Tok t;
    t.line = line_;
    t.col = col_;
    if (i_ >= s_.size()) return t;
    char c = s_[i_];
    if (c == '"') {
      adv();
      t.kind = Tok::String;
      while (true) {
        if (i_ >= s_.size() || s_[i_] == '\n') err(t, "literal not terminated");
        char d = s_[i_];
        adv();
        if (d == '"') break;
        if (d == '\\') {
          if (i_ >= s_.size()) err(t, "literal not terminated");
          char e = s_[i_];
          adv();
          switch (e) {
            case 'n': t.text += '\n'; break;
            case 't': t.text += '\t'; break;
            case 'r': t.text += '\r'; break;
            case '"': t.text += '"'; break;
            case '\\': t.text += '\\'; break;
            default: t.text += '\\'; t.text += e; break;
          }
        } else {
          t.text += d;
        }
      }
      return t;
    }
    if (c == '<' && i_ + 1 < s_.size() && s_[i_ + 1] == '<') {
      // Heredoc: <<EOF ... EOF
      adv();
      adv();
      std::string marker;
      if (i_ < s_.size() && s_[i_] == '-') adv();
      while (i_ < s_.size() && s_[i_] != '\n') {
        marker += s_[i_];
        adv();
      }
      marker = trim(marker);
      if (marker.empty()) err(t, "heredoc expected marker");
      if (i_ < s_.size()) adv();
      t.kind = Tok::String;
      while (true) {
        if (i_ >= s_.size()) err(t, "heredoc not terminated");
        std::size_t eol = s_.find('\n', i_);
        std::string_view line = s_.substr(i_, eol == std::string_view::npos ? s_.size() - i_ : eol - i_);
        for (std::size_t k = 0; k < line.size() + (eol == std::string_view::npos ? 0 : 1); ++k) adv();
        if (trim(line) == marker) break;
        t.text += std::string(line) + "\n";
      }
      return t;
    }
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      t.kind = Tok::Ident;
      while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '_' ||
                                s_[i_] == '-' || s_[i_] == '.')) {
        t.text += s_[i_];
        adv();
      }
      return t;
    }
    if (std::isdigit(static_cast<unsigned char>(c)) || c == '-') {
      t.kind = Tok::Number;
      t.text += c;
      adv();
      while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '.')) {
        t.text += s_[i_];
        adv();
      }
      return t;
    }
    if (c == '=' || c == '{' || c == '}' || c == '[' || c == ']' || c == ',' || c == ':') {
      t.kind = Tok::Punct;
      t.text = std::string(1, c);
      adv();
      return t;
    }
    err(t, std::string("illegal char '") + c + "'");
  }

  [[noreturn]] static void err(const Tok& t, const std::string& msg) {
    throw BadRequest("At " + std::to_string(t.line) + ":" + std::to_string(t.col) + ": " + msg);
  }

 private:
  void adv() {
    if (s_[i_] == '\n') {
      ++line_;
      col_ = 1;
    } else {
      ++col_;
    }
    ++i_;
  }
  void skip() {
    while (i_ < s_.size()) {
      char c = s_[i_];
      if (std::isspace(static_cast<unsigned char>(c))) {
        adv();
      } else if (c == '#' || (c == '/' && i_ + 1 < s_.size() && s_[i_ + 1] == '/')) {
        while (i_ < s_.size() && s_[i_] != '\n') adv();
      } else if (c == '/' && i_ + 1 < s_.size() && s_[i_ + 1] == '*') {
        adv();
        adv();
        while (i_ < s_.size() && !(s_[i_] == '*' && i_ + 1 < s_.size() && s_[i_ + 1] == '/')) adv();
        if (i_ < s_.size()) {
          adv();
          adv();
        }
      } else {
        break;
      }
    }
  }
  std::string_view s_;
  std::size_t i_ = 0;
  int line_ = 1, col_ = 1;
};

class Parser {
 public:
  explicit Parser(std::string_view s) : lx_(s) { cur_ = lx_.next(); }

  json parse_body(bool nested) {
    json obj = json::object();
    while (true) {
      if (cur_.kind == Tok::End) {
        if (nested) Lexer::err(cur_, "expected '}' but found EOF");
        return obj;
      }
      if (cur_.kind == Tok::Punct && cur_.text == "}") {
        if (!nested) Lexer::err(cur_, "unexpected '}'");
        return obj;
      }
      if (cur_.kind == Tok::Punct && cur_.text == ",") {
        advance();
        continue;
      }
      if (cur_.kind != Tok::Ident && cur_.kind != Tok::String) Lexer::err(cur_, "expected a key, got '" + cur_.text + "'");
      std::string key = cur_.text;
      advance();
      std::vector<std::string> labels;
      while (cur_.kind == Tok::String || cur_.kind == Tok::Ident) {
        labels.push_back(cur_.text);
        advance();
      }
      if (cur_.kind == Tok::Punct && (cur_.text == "=" || cur_.text == ":")) {
        if (!labels.empty()) Lexer::err(cur_, "unexpected '='");
        advance();
        obj[key] = parse_value();
        continue;
      }
      if (cur_.kind == Tok::Punct && cur_.text == "{") {
        advance();
        json body = parse_body(true);
        advance();  // '}'
        json labs = json::array();
        for (auto& l : labels) labs.push_back(l);
        body["__labels"] = labs;
        if (!obj.contains(key) || !obj[key].is_array()) obj[key] = json::array();
        obj[key].push_back(std::move(body));
        continue;
      }
      Lexer::err(cur_, "key '" + key + "' expected start of object ('{') or assignment ('=')");
    }
  }

 private:
  json parse_value() {
    Tok t = cur_;
    if (t.kind == Tok::String) {
      advance();
      return t.text;
    }
    if (t.kind == Tok::Number) {
      advance();
      try {
        if (t.text.find('.') != std::string::npos) return std::stod(t.text);
        return std::stoll(t.text);
      } catch (...) {
        Lexer::err(t, "invalid number '" + t.text + "'");
      }
    }
    if (t.kind == Tok::Ident) {
      advance();
      if (t.text == "true") return true;
      if (t.text == "false") return false;
      return t.text;
    }
    if (t.kind == Tok::Punct && t.text == "[") {
      advance();
      json arr = json::array();
      while (true) {
        if (cur_.kind == Tok::Punct && cur_.text == "]") {
          advance();
          return arr;
        }
        if (cur_.kind == Tok::End) Lexer::err(cur_, "expected ']'");
        arr.push_back(parse_value());
        if (cur_.kind == Tok::Punct && cur_.text == ",") {
          advance();
        } else if (!(cur_.kind == Tok::Punct && cur_.text == "]")) {
          Lexer::err(cur_, "expected ',' or ']' in list");
        }
      }
    }
    if (t.kind == Tok::Punct && t.text == "{") {
      advance();
      json body = parse_body(true);
      advance();
      return body;
    }
    Lexer::err(t, "Unknown token: " + std::to_string(t.line) + ":" + std::to_string(t.col) + " " +
                      (t.kind == Tok::End ? std::string("EOF") : t.text));
  }

  void advance() { cur_ = lx_.next(); }
  Lexer lx_;
  Tok cur_;
};

std::uint32_t parse_cap(const std::string& path, const std::string& c) {
  if (c == "deny") return CapDeny;
  if (c == "create") return CapCreate;
  if (c == "read") return CapRead;
  if (c == "update") return CapUpdate;
  if (c == "delete") return CapDelete;
  if (c == "list") return CapList;
  if (c == "sudo") return CapSudo;
  if (c == "patch") return CapPatch;
  if (c == "subscribe") return CapSubscribe;
  throw BadRequest("failed to parse policy: path \"" + path + "\": invalid capability \"" + c + "\"");
}

std::uint32_t legacy_policy(const std::string& path, const std::string& p) {
  if (p == "deny") return CapDeny;
  if (p == "read") return CapRead | CapList;
  if (p == "write") return CapRead | CapList | CapCreate | CapUpdate | CapDelete;
  if (p == "sudo") return CapRead | CapList | CapCreate | CapUpdate | CapDelete | CapSudo;
  if (p.empty()) return 0;
  throw BadRequest("failed to parse policy: path \"" + path + "\": invalid policy \"" + p + "\"");
}

void add_rule(Policy& pol, std::string pattern, const json& body) {
  if (!body.is_object()) throw BadRequest("failed to parse policy: path \"" + pattern + "\": expected an object");
  if (starts_with(pattern, "/")) pattern = pattern.substr(1);
  if (pattern.find("+*") != std::string::npos) {
    throw BadRequest("failed to parse policy: path \"" + pattern + "\": invalid use of wildcards ('+*' is forbidden)");
  }
  std::uint32_t caps = 0;
  if (body.contains("policy") && body["policy"].is_string()) caps |= legacy_policy(pattern, body["policy"].get<std::string>());
  if (body.contains("capabilities")) {
    const json& c = body["capabilities"];
    if (c.is_array()) {
      for (const auto& e : c) {
        if (!e.is_string()) throw BadRequest("failed to parse policy: path \"" + pattern + "\": invalid capability");
        caps |= parse_cap(pattern, e.get<std::string>());
      }
    } else if (c.is_string()) {
      caps |= parse_cap(pattern, c.get<std::string>());
    }
  }
  if (caps & CapDeny) caps = CapDeny;
  pol.rules.push_back({pattern, caps});
}

}  // namespace

json parse_hcl(std::string_view text) {
  Parser p(text);
  return p.parse_body(false);
}

Policy parse_policy(const std::string& name, const std::string& text_in) {
  Policy pol;
  pol.name = name;
  std::string text = text_in;
  if (auto dec = base64_decode_strict(trim(text))) text = *dec;
  pol.raw = text;
  std::string t = trim(text);
  if (!t.empty() && t[0] == '{') {
    json j;
    try {
      j = json::parse(t);
    } catch (const std::exception& e) {
      throw BadRequest(std::string("failed to parse policy: ") + e.what());
    }
    if (!j.is_object()) throw BadRequest("failed to parse policy: expected an object");
    if (j.contains("path")) {
      const json& paths = j["path"];
      auto add_map = [&](const json& m) {
        if (!m.is_object()) throw BadRequest("failed to parse policy: path: expected an object");
        for (auto it = m.begin(); it != m.end(); ++it) {
          if (it.value().is_array()) {
            for (const auto& b : it.value()) add_rule(pol, it.key(), b);
          } else {
            add_rule(pol, it.key(), it.value());
          }
        }
      };
      if (paths.is_array()) {
        for (const auto& m : paths) add_map(m);
      } else {
        add_map(paths);
      }
    }
    return pol;
  }
  json doc;
  try {
    doc = parse_hcl(text);
  } catch (const BadRequest& e) {
    throw BadRequest(std::string("failed to parse policy: ") + e.what());
  }
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    const std::string& key = it.key();
    if (key == "path") {
      if (!it.value().is_array()) throw BadRequest("failed to parse policy: path: expected a block");
      for (const auto& blk : it.value()) {
        const json& labs = blk["__labels"];
        if (labs.size() != 1) throw BadRequest("failed to parse policy: path: expected exactly one label");
        json body = blk;
        body.erase("__labels");
        add_rule(pol, labs[0].get<std::string>(), body);
      }
    } else if (key != "name") {
      throw BadRequest("failed to parse policy: invalid key \"" + key + "\" on line 1");
    }
  }
  return pol;
}

std::vector<std::string> cap_names(std::uint32_t caps) {
  std::vector<std::string> out;
  if (caps & CapDeny) return {"deny"};
  if (caps & CapCreate) out.push_back("create");
  if (caps & CapDelete) out.push_back("delete");
  if (caps & CapList) out.push_back("list");
  if (caps & CapPatch) out.push_back("patch");
  if (caps & CapRead) out.push_back("read");
  if (caps & CapSubscribe) out.push_back("subscribe");
  if (caps & CapSudo) out.push_back("sudo");
  if (caps & CapUpdate) out.push_back("update");
  if (out.empty()) out.push_back("deny");
  return out;
}

void Acl::add(const Policy& p) {
  if (p.name == "root") {
    root = true;
    return;
  }
  for (const auto& r : p.rules) {
    bool glob = r.pattern.find('+') != std::string::npos || ends_with(r.pattern, "*");
    auto& m = glob ? glob_ : exact_;
    std::uint32_t& c = m[r.pattern];
    c |= r.caps;
    if (c & CapDeny) c = CapDeny;
  }
}

namespace {

bool glob_rule_matches(const std::string& pattern, const std::string& path) {
  bool prefix = ends_with(pattern, "*");
  std::string pat = prefix ? pattern.substr(0, pattern.size() - 1) : pattern;
  if (pat.find('+') == std::string::npos) {
    return prefix ? starts_with(path, pat) : path == pat;
  }
  auto pp = split(pat, '/');
  auto sp = split(path, '/');
  if (!prefix && pp.size() != sp.size()) return false;
  if (prefix && sp.size() < pp.size()) return false;
  for (std::size_t i = 0; i < pp.size(); ++i) {
    bool last = i + 1 == pp.size();
    if (pp[i] == "+") {
      if (sp[i].empty() && !(last && prefix)) return false;
      continue;
    }
    if (last && prefix) {
      if (!starts_with(sp[i], pp[i])) return false;
    } else if (pp[i] != sp[i]) {
      return false;
    }
  }
  return true;
}

struct Rank {
  std::size_t first_wild;
  bool trailing_star;
  std::size_t plus_count;
  std::size_t len;
  const std::string* pattern;
};

Rank rank_of(const std::string& p) {
  std::size_t fw = p.find_first_of("+*");
  return Rank{fw == std::string::npos ? p.size() : fw, ends_with(p, "*"),
              static_cast<std::size_t>(std::count(p.begin(), p.end(), '+')), p.size(), &p};
}

// true when a beats b
bool better(const Rank& a, const Rank& b) {
  if (a.first_wild != b.first_wild) return a.first_wild > b.first_wild;
  if (a.trailing_star != b.trailing_star) return !a.trailing_star;
  if (a.plus_count != b.plus_count) return a.plus_count < b.plus_count;
  if (a.len != b.len) return a.len > b.len;
  return *a.pattern > *b.pattern;
}

}  // namespace

std::uint32_t Acl::capabilities(const std::string& path, bool list) const {
  if (root) return CapCreate | CapRead | CapUpdate | CapDelete | CapList | CapSudo | CapPatch;
  auto ex = exact_.find(path);
  if (ex != exact_.end()) return ex->second;
  if (list && ends_with(path, "/")) {
    auto ex2 = exact_.find(path.substr(0, path.size() - 1));
    if (ex2 != exact_.end()) return ex2->second;
  }
  auto best_for = [&](const std::string& p) -> const std::uint32_t* {
    const std::uint32_t* best = nullptr;
    Rank best_rank{};
    for (const auto& [pat, caps] : glob_) {
      if (!glob_rule_matches(pat, p)) continue;
      Rank r = rank_of(pat);
      if (!best || better(r, best_rank)) {
        best = &caps;
        best_rank = r;
      }
    }
    return best;
  };
  if (list && ends_with(path, "/")) {
    if (auto* c = best_for(path.substr(0, path.size() - 1))) return *c;
  }
  if (auto* c = best_for(path)) return *c;
  return 0;
}

// logical_system.go NewSystemBackend PathsSpecial.Root (sys/seal and sys/step-down are
// enforced through PolicyCheckOpts.RootPrivsRequired and listed there too). A pattern
// ending in `*` is a prefix, any other is matched exactly (router.go RootPath), so
// sys/audit-hash is not sys/audit and LIST sys/leases/ is not sys/leases.
bool is_sudo_path(const std::string& path) {
  static const char* const exact[] = {
      "sys/remount", "sys/audit", "sys/raw", "sys/rotate", "sys/config/cors", "sys/leases", "sys/seal",
      "sys/step-down", "sys/replication/primary/secondary-token",
      "sys/replication/performance/primary/secondary-token", "sys/replication/dr/primary/secondary-token",
      "sys/replication/reindex", "sys/replication/dr/reindex", "sys/replication/performance/reindex"};
  static const char* const prefixes[] = {
      "sys/auth/", "sys/audit/", "sys/raw/", "sys/config/auditing/", "sys/config/ui/headers/",
      "sys/plugins/catalog/", "sys/plugins/runtimes/catalog/", "sys/revoke-prefix/", "sys/revoke-force/",
      "sys/leases/revoke-prefix/", "sys/leases/revoke-force/", "sys/leases/lookup/",
      "sys/storage/raft/snapshot-auto/config/", "sys/internal/inspect/"};
  for (const char* e : exact) {
    if (path == e) return true;
  }
  for (const char* p : prefixes) {
    if (starts_with(path, p)) return true;
  }
  return false;
}

}  // namespace vd
