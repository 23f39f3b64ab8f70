// vault-dev: libpq connection pool and the PostgreSQL plugin's statements (vault-api.md §5).
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

struct pg_conn;

namespace vd {

struct PgError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class PgPool {
 public:
  PgPool(std::string conninfo, int max_open);
  ~PgPool();
  PgPool(const PgPool&) = delete;
  PgPool& operator=(const PgPool&) = delete;

  class Handle {
   public:
    Handle(PgPool* p, pg_conn* c) : pool_(p), conn_(c) {}
    Handle(Handle&& o) noexcept : pool_(o.pool_), conn_(o.conn_) { o.conn_ = nullptr; }
    Handle& operator=(Handle&&) = delete;
    ~Handle();
    pg_conn* get() const { return conn_; }

   private:
    PgPool* pool_;
    pg_conn* conn_;
  };

  Handle acquire();  // throws PgError (connect failure, timeout)

  // Opens one connection and closes it; returns "" or the driver's error.
  static std::string verify(const std::string& conninfo);

 private:
  void release(pg_conn* c);
  static pg_conn* connect(const std::string& conninfo, std::string& err);

  std::string conninfo_;
  int max_open_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<pg_conn*> idle_;
  int open_ = 0;
};

// Splits one statement element as Vault does (base64, JSON array, ';').
std::vector<std::string> split_statements(const std::vector<std::string>& elements);

// Creates a user: every statement in one transaction. Throws PgError with
// "failed to execute query: ERROR: ... (SQLSTATE ...)".
// `password_sql` is what replaces {{password}} (plaintext or SCRAM verifier).
void pg_create_user(PgPool& pool, const std::vector<std::string>& statements, const std::string& username,
                    const std::string& password, const std::string& expiration, const std::string& password_auth);

void pg_renew_user(PgPool& pool, const std::vector<std::string>& statements, const std::string& username,
                   const std::string& expiration);

void pg_revoke_user(PgPool& pool, const std::vector<std::string>& statements, const std::string& username);

}  // namespace vd
