// vaultwire-load: a PostgreSQL load generator on libpq's asynchronous API.
//
// One thread drives every connection: PQconnectStartParams/PQconnectPoll to log in,
// PQsendQuery/PQconsumeInput/PQisBusy/PQgetResult to run queries, all multiplexed
// with one level-triggered epoll set on PQsocket. Each connection is a `slot`; a slot
// cycles idle -> connecting -> querying (-> idle again with --reconnect or after a
// failure). New connection starts are paced by --rate.
//
// Secrets: tokens (the password of every connection) are pgwire::secret_string,
// read from a file or minted from Vault, and are never printed. libpq's error texts
// do not contain the password; the few examples printed are still scrubbed of every
// token before they are shown.
#include <CLI/CLI.hpp>
#include <libpq-fe.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "pgwire/secret.hpp"
#include "vault/vault_client.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using pgwire::secret_string;

volatile std::sig_atomic_t g_stop = 0;
extern "C" void on_signal(int) { g_stop = 1; }

struct options {
  std::string conninfo;
  std::string tokens_file;
  int mint = 0;
  std::vector<std::string> policies;
  std::string mint_ttl = "1h";
  int connections = 1;
  double rate = 0;
  double duration = 10;
  std::string query = "SELECT 1";
  bool reconnect = false;
  bool json = false;
  bool quiet = false;
  double timeout = 30;
};

// The sorted-sample percentiles of one latency distribution, in milliseconds.
struct latency_summary {
  std::size_t count = 0;
  double p50 = 0, p90 = 0, p99 = 0, max = 0;
};

latency_summary summarize(std::vector<double>& us) {
  latency_summary s;
  s.count = us.size();
  if (us.empty()) return s;
  std::sort(us.begin(), us.end());
  const auto at = [&](double q) {
    // Nearest rank.
    auto rank = static_cast<std::size_t>(q * static_cast<double>(us.size()) + 0.999999);
    rank = std::clamp<std::size_t>(rank, 1, us.size());
    return us[rank - 1] / 1000.0;
  };
  s.p50 = at(0.50);
  s.p90 = at(0.90);
  s.p99 = at(0.99);
  s.max = us.back() / 1000.0;
  return s;
}

// Tokens, one a line; blank lines and surrounding whitespace ignored.
[[nodiscard]] std::optional<std::vector<secret_string>> read_tokens(const std::string& path, std::string& error) {
  std::ifstream in(path);
  if (!in) {
    error = "cannot open the tokens file " + path;
    return std::nullopt;
  }
  std::vector<secret_string> out;
  std::string line;
  while (std::getline(in, line)) {
    const auto b = line.find_first_not_of(" \t\r\n");
    const auto e = line.find_last_not_of(" \t\r\n");
    if (b != std::string::npos) out.emplace_back(std::string_view(line).substr(b, e - b + 1));
    pgwire::cleanse_string(line);
  }
  if (out.empty()) {
    error = "the tokens file " + path + " holds no token";
    return std::nullopt;
  }
  return out;
}

std::string env_or(const char* name, std::string fallback = {}) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : fallback;
}

// N child tokens from VAULT_ADDR with VAULT_TOKEN (POST auth/token/create).
[[nodiscard]] std::optional<std::vector<secret_string>> mint_tokens(const options& o, std::string& error) {
  const auto address = env_or("VAULT_ADDR");
  if (address.empty()) {
    error = "--mint needs VAULT_ADDR";
    return std::nullopt;
  }
  secret_string parent(env_or("VAULT_TOKEN"));
  if (parent.empty()) {
    error = "--mint needs VAULT_TOKEN";
    return std::nullopt;
  }
  vaultwire::vault_client_options vo;
  vo.address = address;
  vo.vault_namespace = env_or("VAULT_NAMESPACE");
  vo.ca_file = env_or("VAULT_CACERT");
  vo.threads = 1;
  vaultwire::vault_client client(std::move(vo));
  const auto body = nlohmann::json{{"policies", o.policies}, {"ttl", o.mint_ttl}}.dump();
  std::vector<secret_string> out;
  for (int i = 0; i < o.mint; ++i) {
    auto r = client.request_blocking("POST", "auth/token/create", body, parent);
    if (!r) {
      error = "minting token " + std::to_string(i + 1) + ": " + r.error().request + " at " + r.error().address +
              ": " + r.error().message;
      return std::nullopt;
    }
    auto& text = r.value().body;
    auto doc = nlohmann::json::parse(text, nullptr, false);
    pgwire::cleanse_string(text);
    const auto* token = doc.is_object() && doc.contains("auth") && doc["auth"].is_object() &&
                                doc["auth"].contains("client_token") && doc["auth"]["client_token"].is_string()
                            ? &doc["auth"]["client_token"].get_ref<std::string&>()
                            : nullptr;
    if (!token) {
      error = "minting token " + std::to_string(i + 1) + ": the answer has no auth.client_token";
      return std::nullopt;
    }
    out.emplace_back(*token);
    pgwire::cleanse_string(doc["auth"]["client_token"].get_ref<std::string&>());
  }
  return out;
}

enum class phase { idle, connecting, querying };

struct slot {
  PGconn* conn = nullptr;
  phase state = phase::idle;
  int fd = -1;
  std::uint32_t events = 0;
  clock_type::time_point connect_start{};
  clock_type::time_point query_start{};
  clock_type::time_point deadline{};
  bool first_result_done = false;
  bool query_error = false;  // an error result was counted for the current query
};

class load_runner {
 public:
  load_runner(options o, std::vector<secret_string> tokens) : o_(std::move(o)), tokens_(std::move(tokens)) {}
  ~load_runner() {
    for (auto& s : slots_)
      if (s.conn) PQfinish(s.conn);
    if (epfd_ >= 0) ::close(epfd_);
  }

  [[nodiscard]] bool prepare(std::string& error) {
    char* err = nullptr;
    PQconninfoOption* parsed = PQconninfoParse(o_.conninfo.c_str(), &err);
    if (!parsed) {
      error = "conninfo: " + std::string(err ? err : "out of memory");
      if (err) PQfreemem(err);
      return false;
    }
    bool has_gss = false;
    for (auto* opt = parsed; opt->keyword; ++opt) {
      if (!opt->val || std::string_view(opt->keyword) == "password") continue;
      if (std::string_view(opt->keyword) == "gssencmode") has_gss = true;
      keys_.emplace_back(opt->keyword);
      values_.emplace_back(opt->val);
    }
    PQconninfoFree(parsed);
    // No GSSAPI probe on every connection unless the template asks for it.
    if (!has_gss) {
      keys_.emplace_back("gssencmode");
      values_.emplace_back("disable");
    }
    keys_.emplace_back("fallback_application_name");
    values_.emplace_back("vaultwire-load");
    epfd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) {
      error = "epoll_create1 failed";
      return false;
    }
    slots_.resize(static_cast<std::size_t>(o_.connections));
    for (std::size_t i = 0; i < slots_.size(); ++i) idle_.push_back(i);
    return true;
  }

  int run();

 private:
  void start_connections(clock_type::time_point now);
  void start_one(std::size_t i, clock_type::time_point now);
  void on_event(std::size_t i, std::uint32_t ev, clock_type::time_point now);
  void advance_connect(std::size_t i, PostgresPollingStatusType st, clock_type::time_point now);
  void send_query(std::size_t i, clock_type::time_point now);
  void read_results(std::size_t i, clock_type::time_point now);
  void watch(std::size_t i, std::uint32_t events);
  void close_slot(std::size_t i);
  void fail_connection(std::size_t i, const std::string& sqlstate, std::string_view message);
  void count_error(const std::string& sqlstate, std::string_view message);
  void check_timeouts(clock_type::time_point now);
  void progress(clock_type::time_point now);
  int report(double elapsed);
  [[nodiscard]] std::string scrub(std::string_view text) const;

  options o_;
  std::vector<secret_string> tokens_;
  std::size_t next_token_ = 0;
  std::vector<std::string> keys_, values_;
  int epfd_ = -1;
  std::vector<slot> slots_;
  std::deque<std::size_t> idle_;
  clock_type::time_point begin_{};
  std::uint64_t started_ = 0;
  // After --duration: nothing new starts; logins and queries in flight finish (each
  // within --timeout) and are counted, as pgbench does.
  bool draining_ = false;

  // Counters.
  std::uint64_t connections_ok_ = 0;
  std::uint64_t queries_ = 0;
  std::uint64_t errors_ = 0;
  std::size_t open_ = 0;
  std::map<std::string, std::uint64_t> errors_by_state_;
  std::map<std::string, std::string> error_examples_;
  std::vector<double> connect_us_, query_us_;
  std::uint64_t last_queries_ = 0, last_connections_ = 0;
  clock_type::time_point last_progress_{};
};

const std::regex& sqlstate_re() {
  // PQERRORS_VERBOSE: "FATAL:  28P01: password authentication failed ...".
  static const std::regex re("(?:FATAL|ERROR|PANIC):  ([0-9A-Z]{5}): ");
  return re;
}

std::string sqlstate_of_message(std::string_view message) {
  std::match_results<std::string_view::const_iterator> m;
  if (std::regex_search(message.begin(), message.end(), m, sqlstate_re())) return m[1].str();
  return "08006";
}

std::string first_line(std::string_view s) {
  const auto nl = s.find('\n');
  return std::string(s.substr(0, nl));
}

std::string vaultwire_load_scrub(std::string text, const std::vector<secret_string>& tokens) {
  for (const auto& t : tokens) {
    if (t.empty()) continue;
    for (auto p = text.find(t.view()); p != std::string::npos; p = text.find(t.view(), p))
      text.replace(p, t.size(), "<token>");
  }
  return text;
}

std::string load_runner::scrub(std::string_view text) const {
  return vaultwire_load_scrub(std::string(text), tokens_);
}

void load_runner::count_error(const std::string& sqlstate, std::string_view message) {
  ++errors_;
  ++errors_by_state_[sqlstate];
  if (!error_examples_.contains(sqlstate)) error_examples_[sqlstate] = scrub(first_line(message));
}

void load_runner::watch(std::size_t i, std::uint32_t events) {
  auto& s = slots_[i];
  const int fd = PQsocket(s.conn);
  if (fd != s.fd) {
    // libpq moved to another socket (next address): the old fd is closed already,
    // which removed it from the set; drop it anyway in case the number lives on.
    if (s.fd >= 0) ::epoll_ctl(epfd_, EPOLL_CTL_DEL, s.fd, nullptr);
    s.fd = fd;
    s.events = 0;
  }
  if (fd < 0) return;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = i;
  if (s.events == events && events != 0) return;
  // MOD first; ENOENT when libpq closed and reopened the same fd number (the close
  // removed the registration).
  if (::epoll_ctl(epfd_, EPOLL_CTL_MOD, fd, &ev) != 0) ::epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev);
  s.events = events;
}

void load_runner::close_slot(std::size_t i) {
  auto& s = slots_[i];
  if (s.fd >= 0) ::epoll_ctl(epfd_, EPOLL_CTL_DEL, s.fd, nullptr);
  if (s.conn) PQfinish(s.conn);
  if (s.state == phase::querying) --open_;
  s = slot{};
  idle_.push_back(i);
}

void load_runner::fail_connection(std::size_t i, const std::string& sqlstate, std::string_view message) {
  count_error(sqlstate, message);
  close_slot(i);
}

void load_runner::start_one(std::size_t i, clock_type::time_point now) {
  auto& s = slots_[i];
  std::vector<const char*> k, v;
  k.reserve(keys_.size() + 2);
  v.reserve(keys_.size() + 2);
  for (std::size_t j = 0; j < keys_.size(); ++j) {
    k.push_back(keys_[j].c_str());
    v.push_back(values_[j].c_str());
  }
  // The password points into the secret_string for the duration of the call; libpq
  // keeps its own copy (and frees it on PQfinish).
  secret_string password(tokens_[next_token_++ % tokens_.size()].view());
  password.append('\0');
  k.push_back("password");
  v.push_back(password.view().data());
  k.push_back(nullptr);
  v.push_back(nullptr);
  ++started_;
  s.connect_start = now;
  s.deadline = now + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(o_.timeout));
  s.first_result_done = false;
  s.conn = PQconnectStartParams(k.data(), v.data(), 0);
  s.state = phase::connecting;
  if (!s.conn) {
    count_error("08006", "out of memory");
    s = slot{};
    idle_.push_back(i);
    return;
  }
  // Verbose error texts carry the SQLSTATE of a FATAL sent during login.
  PQsetErrorVerbosity(s.conn, PQERRORS_VERBOSE);
  if (PQstatus(s.conn) == CONNECTION_BAD) {
    const std::string msg = PQerrorMessage(s.conn);
    fail_connection(i, sqlstate_of_message(msg), msg);
    return;
  }
  advance_connect(i, PGRES_POLLING_WRITING, now);
}

void load_runner::start_connections(clock_type::time_point now) {
  while (!idle_.empty() && !g_stop) {
    if (o_.rate > 0) {
      const double elapsed = std::chrono::duration<double>(now - begin_).count();
      if (static_cast<double>(started_) >= o_.rate * elapsed + 1.0) return;
    }
    const auto i = idle_.front();
    idle_.pop_front();
    start_one(i, now);
  }
}

void load_runner::advance_connect(std::size_t i, PostgresPollingStatusType st, clock_type::time_point now) {
  auto& s = slots_[i];
  switch (st) {
    case PGRES_POLLING_READING:
      watch(i, EPOLLIN);
      return;
    case PGRES_POLLING_WRITING:
      watch(i, EPOLLOUT);
      return;
    case PGRES_POLLING_OK:
      ++connections_ok_;
      ++open_;
      s.state = phase::querying;
      if (PQsetnonblocking(s.conn, 1) != 0) {
        const std::string msg = PQerrorMessage(s.conn);
        fail_connection(i, "08006", msg);
        return;
      }
      send_query(i, now);
      return;
    default: {
      const std::string msg = PQerrorMessage(s.conn);
      fail_connection(i, sqlstate_of_message(msg), msg);
      return;
    }
  }
}

void load_runner::send_query(std::size_t i, clock_type::time_point now) {
  auto& s = slots_[i];
  s.query_start = now;
  s.query_error = false;
  s.deadline = now + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(o_.timeout));
  if (PQsendQuery(s.conn, o_.query.c_str()) == 0) {
    const std::string msg = PQerrorMessage(s.conn);
    fail_connection(i, sqlstate_of_message(msg), msg);
    return;
  }
  const int f = PQflush(s.conn);
  if (f < 0) {
    const std::string msg = PQerrorMessage(s.conn);
    fail_connection(i, sqlstate_of_message(msg), msg);
    return;
  }
  watch(i, f == 1 ? (EPOLLIN | EPOLLOUT) : EPOLLIN);
}

void load_runner::read_results(std::size_t i, clock_type::time_point now) {
  auto& s = slots_[i];
  if (PQconsumeInput(s.conn) == 0) {
    const std::string msg = PQerrorMessage(s.conn);
    fail_connection(i, s.query_error ? "08006" : sqlstate_of_message(msg), msg);
    return;
  }
  while (!PQisBusy(s.conn)) {
    PGresult* r = PQgetResult(s.conn);
    if (!r) {
      // The query is complete.
      if (!s.query_error) {
        ++queries_;
        query_us_.push_back(std::chrono::duration<double, std::micro>(now - s.query_start).count());
        if (!s.first_result_done)
          connect_us_.push_back(std::chrono::duration<double, std::micro>(now - s.connect_start).count());
      }
      s.first_result_done = true;
      if (PQstatus(s.conn) == CONNECTION_BAD) {
        if (!s.query_error) count_error("08006", PQerrorMessage(s.conn));
        close_slot(i);
      } else if (o_.reconnect || draining_) {
        close_slot(i);
      } else if (!g_stop) {
        send_query(i, now);
      }
      return;
    }
    const auto st = PQresultStatus(r);
    if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR || st == PGRES_BAD_RESPONSE) {
      const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      if (!s.query_error) count_error(state ? state : "08006", PQresultErrorMessage(r));
      s.query_error = true;
    } else if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
      PQclear(r);
      fail_connection(i, "0A000", "COPY is not supported by vaultwire-load");
      return;
    }
    PQclear(r);
  }
}

void load_runner::on_event(std::size_t i, std::uint32_t ev, clock_type::time_point now) {
  auto& s = slots_[i];
  if (!s.conn) return;
  if (s.state == phase::connecting) {
    advance_connect(i, PQconnectPoll(s.conn), now);
    return;
  }
  if (ev & EPOLLOUT) {
    const int f = PQflush(s.conn);
    if (f < 0) {
      const std::string msg = PQerrorMessage(s.conn);
      fail_connection(i, sqlstate_of_message(msg), msg);
      return;
    }
    watch(i, f == 1 ? (EPOLLIN | EPOLLOUT) : EPOLLIN);
  }
  if (ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_results(i, now);
}

void load_runner::check_timeouts(clock_type::time_point now) {
  for (std::size_t i = 0; i < slots_.size(); ++i) {
    const auto& s = slots_[i];
    if (s.conn && s.deadline < now) fail_connection(i, "timeout", "no answer within --timeout");
  }
}

void load_runner::progress(clock_type::time_point now) {
  const double since = std::chrono::duration<double>(now - last_progress_).count();
  const double t = std::chrono::duration<double>(now - begin_).count();
  std::fprintf(stderr, "[%6.1fs] open %zu  queries/s %.0f  connections/s %.0f  errors %llu\n", t, open_,
               static_cast<double>(queries_ - last_queries_) / since,
               static_cast<double>(connections_ok_ - last_connections_) / since,
               static_cast<unsigned long long>(errors_));
  last_queries_ = queries_;
  last_connections_ = connections_ok_;
  last_progress_ = now;
}

int load_runner::run() {
  begin_ = clock_type::now();
  last_progress_ = begin_;
  const auto end = begin_ + std::chrono::duration_cast<clock_type::duration>(std::chrono::duration<double>(o_.duration));
  auto next_timeout_check = begin_;
  std::vector<epoll_event> events(std::min<std::size_t>(slots_.size(), 1024) + 1);
  auto now = begin_;
  while (!g_stop && (now < end || idle_.size() < slots_.size())) {
    if (now >= end) draining_ = true;
    if (!draining_) start_connections(now);
    int wait_ms = 100;
    if (!idle_.empty() && o_.rate > 0 && !draining_) wait_ms = 1;
    const int n = ::epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), wait_ms);
    now = clock_type::now();
    for (int e = 0; e < n; ++e) on_event(static_cast<std::size_t>(events[e].data.u64), events[e].events, now);
    if (now >= next_timeout_check) {
      check_timeouts(now);
      next_timeout_check = now + std::chrono::milliseconds(100);
    }
    if (now - last_progress_ >= std::chrono::seconds(1) && !o_.quiet) progress(now);
  }
  const double elapsed = std::chrono::duration<double>(now - begin_).count();
  for (std::size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i].conn) close_slot(i);
  return report(elapsed);
}

int load_runner::report(double elapsed) {
  const auto conn = summarize(connect_us_);
  const auto query = summarize(query_us_);
  const double cps = elapsed > 0 ? static_cast<double>(connections_ok_) / elapsed : 0;
  const double qps = elapsed > 0 ? static_cast<double>(queries_) / elapsed : 0;
  if (o_.json) {
    const auto lat = [](const latency_summary& s) {
      return nlohmann::json{{"count", s.count}, {"p50", s.p50}, {"p90", s.p90}, {"p99", s.p99}, {"max", s.max}};
    };
    nlohmann::json j{{"duration_s", elapsed},
                     {"connections", o_.connections},
                     {"rate", o_.rate},
                     {"reconnect", o_.reconnect},
                     {"query", o_.query},
                     {"tokens", tokens_.size()},
                     {"connections_started", started_},
                     {"connections_ok", connections_ok_},
                     {"connections_per_s", cps},
                     {"queries", queries_},
                     {"queries_per_s", qps},
                     {"errors", errors_},
                     {"errors_by_sqlstate", errors_by_state_},
                     {"error_examples", error_examples_},
                     {"latency_ms", {{"connect_to_first_result", lat(conn)}, {"query", lat(query)}}}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("duration          %.2f s\n", elapsed);
    std::printf("connections       %llu opened (%.1f/s), %llu started, %d concurrent%s\n",
                static_cast<unsigned long long>(connections_ok_), cps, static_cast<unsigned long long>(started_),
                o_.connections, o_.reconnect ? ", one per query" : "");
    std::printf("queries           %llu (%.1f/s)\n", static_cast<unsigned long long>(queries_), qps);
    std::printf("errors            %llu\n", static_cast<unsigned long long>(errors_));
    for (const auto& [state, count] : errors_by_state_)
      std::printf("  %-8s %10llu  e.g. %s\n", state.c_str(), static_cast<unsigned long long>(count),
                  error_examples_[state].c_str());
    std::printf("latency (ms)        count      p50      p90      p99      max\n");
    const auto row = [](const char* name, const latency_summary& s) {
      std::printf("  %-16s %8zu %8.3f %8.3f %8.3f %8.3f\n", name, s.count, s.p50, s.p90, s.p99, s.max);
    };
    row("connect->result", conn);
    row("query", query);
  }
  std::fflush(stdout);
  return errors_ > 0 ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "vaultwire-load: open many PostgreSQL connections (through vaultwire or directly) from one thread "
      "with libpq's asynchronous API, run a query on each in a closed loop, and report throughput, errors "
      "by SQLSTATE and latency percentiles."};
  options o;
  app.add_option("conninfo", o.conninfo,
                 "libpq connection string or URL without the password, e.g.\n"
                 "\"host=127.0.0.1 port=26257 user=crdb-role dbname=defaultdb sslmode=disable\"")
      ->required();
  auto* tokens_file = app.add_option("--tokens-file", o.tokens_file,
                                     "file of Vault tokens, one a line, used as passwords round-robin");
  auto* mint = app.add_option("--mint", o.mint,
                              "mint N tokens from VAULT_ADDR with VAULT_TOKEN (POST auth/token/create)")
                   ->check(CLI::PositiveNumber);
  app.add_option("--policy", o.policies, "policy of the minted tokens (repeatable)")->needs(mint);
  app.add_option("--mint-ttl", o.mint_ttl, "TTL of the minted tokens")->capture_default_str()->needs(mint);
  tokens_file->excludes(mint);
  app.add_option("-c,--connections", o.connections, "concurrent connections")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("-r,--rate", o.rate, "new connections per second (0 = as fast as possible)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("-T,--duration", o.duration, "seconds to run")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("-q,--query", o.query, "simple-protocol query each connection runs in a loop")
      ->capture_default_str();
  app.add_flag("-C,--reconnect", o.reconnect, "a new connection per query (like pgbench -C)");
  app.add_option("--timeout", o.timeout, "seconds a login or a query may take before it counts as an error")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_flag("--json", o.json, "print the final report as JSON on stdout");
  app.add_flag("--quiet", o.quiet, "no progress line on stderr");
  app.footer(
      "Tokens: --tokens-file or --mint N (with --policy P; VAULT_ADDR, VAULT_TOKEN and optionally\n"
      "VAULT_NAMESPACE, VAULT_CACERT). Tokens are passwords: they are never printed.\n"
      "\n"
      "Progress: a line a second on stderr (connections open, queries/s, connections/s, errors).\n"
      "Report (stdout): connections/s, queries/s, errors by SQLSTATE (query errors from the\n"
      "ErrorResponse; failed logins by the SQLSTATE of their FATAL, else 08006; \"timeout\" after\n"
      "--timeout), latency p50/p90/p99/max of connect-to-first-result and of the query round trip.\n"
      "At the end nothing new starts; logins and queries in flight finish (within --timeout) and\n"
      "count, as in pgbench; the rates are over the whole run, this drain included.\n"
      "\n"
      "Exit status: 0 when no error occurred, 1 when any did, 2 for bad arguments or setup.\n"
      "\n"
      "Example, 500 connections through vaultwire for 30 s:\n"
      "  vaultwire-load -c 500 -T 30 --tokens-file tokens.txt \\\n"
      "    \"host=127.0.0.1 port=26257 user=crdb-role dbname=defaultdb sslmode=disable\"\n"
      "Use numeric host addresses (or hostaddr=): libpq resolves names with blocking getaddrinfo.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (o.tokens_file.empty() && o.mint == 0) {
    std::fprintf(stderr, "vaultwire-load: give --tokens-file FILE or --mint N\n");
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);

  std::string error;
  std::optional<std::vector<secret_string>> tokens;
  try {
    tokens = o.mint > 0 ? mint_tokens(o, error) : read_tokens(o.tokens_file, error);
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (!tokens) {
    std::fprintf(stderr, "vaultwire-load: %s\n", error.c_str());
    return 2;
  }
  if (!o.quiet && o.mint > 0) std::fprintf(stderr, "vaultwire-load: minted %d tokens\n", o.mint);

  // Thousands of connections need as many descriptors: raise the soft limit to the hard one.
  if (rlimit rl{}; ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);
  load_runner runner(std::move(o), std::move(*tokens));
  if (!runner.prepare(error)) {
    std::fprintf(stderr, "vaultwire-load: %s\n", error.c_str());
    return 2;
  }
  return runner.run();
}
