// vault-dev: libpq connection pool and the PostgreSQL plugin's statements (vault-api.md §5).
#include "pg.hpp"

#include <libpq-fe.h>

#include <chrono>
#include <regex>

#include "util.hpp"

namespace vd {

namespace {

std::string conn_error(PGconn* c) {
  std::string e = c ? PQerrorMessage(c) : "out of memory";
  return trim(e);
}

std::string result_error(PGresult* r, PGconn* c) {
  if (!r) return conn_error(c);
  const char* sev = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
  if (!sev) sev = PQresultErrorField(r, PG_DIAG_SEVERITY);
  const char* msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  const char* code = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  if (!msg) {
    std::string e = PQresultErrorMessage(r);
    e = trim(e);
    return e.empty() ? conn_error(c) : e;
  }
  std::string out = std::string(sev ? sev : "ERROR") + ": " + msg;
  if (code) out += std::string(" (SQLSTATE ") + code + ")";
  return out;
}

// Runs one statement; throws PgError with pgx-like text.
void exec(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  ExecStatusType st = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_EMPTY_QUERY) {
    std::string e = result_error(r, c);
    if (r) PQclear(r);
    throw PgError(e);
  }
  PQclear(r);
}

std::vector<std::vector<std::string>> query(PGconn* c, const std::string& sql, const std::vector<std::string>& params) {
  std::vector<const char*> vals;
  for (auto& p : params) vals.push_back(p.c_str());
  PGresult* r = PQexecParams(c, sql.c_str(), static_cast<int>(vals.size()), nullptr, vals.data(), nullptr, nullptr, 0);
  if (!r || PQresultStatus(r) != PGRES_TUPLES_OK) {
    std::string e = result_error(r, c);
    if (r) PQclear(r);
    throw PgError(e);
  }
  std::vector<std::vector<std::string>> rows;
  for (int i = 0; i < PQntuples(r); ++i) {
    std::vector<std::string> row;
    for (int j = 0; j < PQnfields(r); ++j) row.emplace_back(PQgetisnull(r, i, j) ? "" : PQgetvalue(r, i, j));
    rows.push_back(std::move(row));
  }
  PQclear(r);
  return rows;
}

std::string quote_ident(const std::string& s) { return "\"" + replace_all(s, "\"", "\"\"") + "\""; }

std::string substitute(std::string q, const std::map<std::string, std::string>& vars) {
  for (const auto& [k, v] : vars) q = replace_all(q, "{{" + k + "}}", v);
  return q;
}

// Vault's containsMultilineStatement: END as a word outside quoted strings.
bool contains_multiline(const std::string& stmt) {
  std::string without;
  char quote = 0;
  for (char c : stmt) {
    if (quote) {
      if (c == quote) quote = 0;
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
      continue;
    }
    without += c;
  }
  static const std::regex end_re("\\bEND\\b");
  return std::regex_search(without, end_re);
}

std::vector<std::string> parse_arbitrary(const std::string& input_in) {
  std::string input = input_in;
  if (auto dec = base64_decode_strict(input)) input = *dec;
  try {
    auto j = nlohmann::json::parse(input);
    if (j.is_array()) {
      std::vector<std::string> out;
      bool ok = true;
      for (auto& e : j) {
        if (!e.is_string()) {
          ok = false;
          break;
        }
        out.push_back(e.get<std::string>());
      }
      if (ok) return out;
    }
  } catch (...) {
  }
  std::vector<std::string> out;
  for (auto& p : split(input, ';')) {
    std::string t = trim(p);
    if (!t.empty()) out.push_back(t);
  }
  return out;
}

class Txn {
 public:
  explicit Txn(PGconn* c) : c_(c) { exec(c_, "BEGIN"); }
  void commit() {
    exec(c_, "COMMIT");
    done_ = true;
  }
  ~Txn() {
    if (!done_) {
      PGresult* r = PQexec(c_, "ROLLBACK");
      if (r) PQclear(r);
    }
  }

 private:
  PGconn* c_;
  bool done_ = false;
};

void run_statements(PGconn* c, const std::vector<std::string>& elements, const std::map<std::string, std::string>& vars,
                    bool wrap_error) {
  Txn tx(c);
  for (const auto& el : elements) {
    std::vector<std::string> queries;
    if (contains_multiline(el)) {
      queries.push_back(el);
    } else {
      queries = parse_arbitrary(el);
    }
    for (const auto& q : queries) {
      try {
        exec(c, substitute(q, vars));
      } catch (const PgError& e) {
        if (wrap_error) throw PgError(std::string("failed to execute query: ") + e.what());
        throw;
      }
    }
  }
  tx.commit();
}

}  // namespace

PgPool::PgPool(std::string conninfo, int max_open) : conninfo_(std::move(conninfo)), max_open_(max_open > 0 ? max_open : 4) {}

PgPool::~PgPool() {
  for (auto* c : idle_) PQfinish(c);
}

PgPool::Handle::~Handle() {
  if (conn_) pool_->release(conn_);
}

PGconn* PgPool::connect(const std::string& conninfo, std::string& err) {
  const char* keys[] = {"connect_timeout", "dbname", nullptr};
  const char* vals[] = {"10", conninfo.c_str(), nullptr};
  PGconn* c = PQconnectdbParams(keys, vals, 1);
  if (!c || PQstatus(c) != CONNECTION_OK) {
    err = conn_error(c);
    if (c) PQfinish(c);
    return nullptr;
  }
  return c;
}

std::string PgPool::verify(const std::string& conninfo) {
  std::string err;
  PGconn* c = connect(conninfo, err);
  if (!c) return err.empty() ? "connection failed" : err;
  PQfinish(c);
  return "";
}

PgPool::Handle PgPool::acquire() {
  std::unique_lock lk(mu_);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  for (;;) {
    if (!idle_.empty()) {
      PGconn* c = idle_.back();
      idle_.pop_back();
      lk.unlock();
      // A connection the server ended while it sat idle (a restart, pg_terminate_backend)
      // still says CONNECTION_OK until read: read what is there (libpq's socket is
      // non-blocking) and reconnect when it is gone, as database/sql does for Vault's
      // plugin, instead of failing the request. (The first read may only take the
      // server's FATAL message; the second then sees the end of the stream.)
      if (PQconsumeInput(c) == 0 || PQconsumeInput(c) == 0 || PQstatus(c) != CONNECTION_OK) {
        PQreset(c);
        if (PQstatus(c) != CONNECTION_OK) {
          std::string e = conn_error(c);
          PQfinish(c);
          lk.lock();
          --open_;
          cv_.notify_one();
          throw PgError(e);
        }
      }
      return Handle(this, c);
    }
    if (open_ < max_open_) {
      ++open_;
      lk.unlock();
      std::string err;
      PGconn* c = connect(conninfo_, err);
      if (!c) {
        lk.lock();
        --open_;
        cv_.notify_one();
        throw PgError(err);
      }
      return Handle(this, c);
    }
    if (cv_.wait_until(lk, deadline) == std::cv_status::timeout) {
      throw PgError("timed out waiting for a free database connection");
    }
  }
}

void PgPool::release(PGconn* c) {
  bool bad = PQstatus(c) != CONNECTION_OK || PQtransactionStatus(c) != PQTRANS_IDLE;
  if (bad) PQfinish(c);
  std::lock_guard lk(mu_);
  if (bad) {
    --open_;
  } else {
    idle_.push_back(c);
  }
  cv_.notify_one();
}

std::vector<std::string> split_statements(const std::vector<std::string>& elements) {
  std::vector<std::string> out;
  for (const auto& el : elements) {
    if (contains_multiline(el)) {
      out.push_back(el);
    } else {
      for (auto& q : parse_arbitrary(el)) out.push_back(q);
    }
  }
  return out;
}

void pg_create_user(PgPool& pool, const std::vector<std::string>& statements, const std::string& username,
                    const std::string& password, const std::string& expiration, const std::string& password_auth) {
  auto h = pool.acquire();
  std::string pw = password;
  if (password_auth == "scram-sha-256") {
    char* enc = PQencryptPasswordConn(h.get(), password.c_str(), username.c_str(), "scram-sha-256");
    if (!enc) throw PgError("unable to generate password verifier: " + conn_error(h.get()));
    pw = enc;
    PQfreemem(enc);
  }
  std::map<std::string, std::string> vars{
      {"name", username}, {"username", username}, {"password", pw}, {"expiration", expiration}};
  run_statements(h.get(), statements, vars, true);
}

void pg_renew_user(PgPool& pool, const std::vector<std::string>& statements_in, const std::string& username,
                   const std::string& expiration) {
  std::vector<std::string> statements = statements_in;
  if (statements.empty()) statements.push_back("ALTER ROLE \"{{name}}\" VALID UNTIL '{{expiration}}';");
  auto h = pool.acquire();
  std::map<std::string, std::string> vars{{"name", username}, {"username", username}, {"expiration", expiration}};
  run_statements(h.get(), statements, vars, false);
}

void pg_revoke_user(PgPool& pool, const std::vector<std::string>& statements, const std::string& username) {
  auto h = pool.acquire();
  PGconn* c = h.get();
  if (!statements.empty()) {
    std::map<std::string, std::string> vars{{"name", username}, {"username", username}};
    run_statements(c, statements, vars, false);
    return;
  }
  // The plugin's default revocation (defaultRevokeUser): not transactional.
  auto exists = query(c, "SELECT exists (SELECT rolname FROM pg_roles WHERE rolname=$1);", {username});
  if (exists.empty() || exists[0][0] != "t") return;
  std::vector<std::string> stmts;
  auto schemas =
      query(c, "SELECT DISTINCT table_schema FROM information_schema.role_column_grants WHERE grantee=$1;", {username});
  const std::string u = quote_ident(username);
  for (auto& row : schemas) {
    stmts.push_back("REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA " + quote_ident(row[0]) + " FROM " + u + ";");
    stmts.push_back("REVOKE USAGE ON SCHEMA " + quote_ident(row[0]) + " FROM " + u + ";");
  }
  stmts.push_back("REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA public FROM " + u + ";");
  stmts.push_back("REVOKE ALL PRIVILEGES ON ALL SEQUENCES IN SCHEMA public FROM " + u + ";");
  stmts.push_back("REVOKE USAGE ON SCHEMA public FROM " + u + ";");
  auto dbname = query(c, "SELECT current_database();", {});
  if (!dbname.empty() && !dbname[0][0].empty()) {
    stmts.push_back("REVOKE CONNECT ON DATABASE " + quote_ident(dbname[0][0]) + " FROM " + u + ";");
  }
  std::string last_error;
  for (const auto& s : stmts) {
    try {
      exec(c, s);
    } catch (const PgError& e) {
      last_error = e.what();
    }
  }
  if (!last_error.empty()) throw PgError("could not perform all revocation statements: " + last_error);
  exec(c, "DROP ROLE IF EXISTS " + u + ";");
}

}  // namespace vd
