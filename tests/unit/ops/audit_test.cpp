// The audit log: JSON lines that parse, only the fields set, whole lines under
// concurrent writers, reopen after logrotate's rename, clear open errors, and write
// failures counted instead of thrown (/dev/full).
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "ops/audit.hpp"

namespace fs = std::filesystem;
using namespace vaultwire::detail;

namespace {

struct temp_dir {
  fs::path path;
  temp_dir() {
    std::string tmpl = (fs::temp_directory_path() / "vaultwire-audit-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

std::vector<std::string> read_lines(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (!all.empty()) REQUIRE(all.back() == '\n');  // no torn last line
  std::vector<std::string> lines;
  std::size_t start = 0;
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (all[i] == '\n') {
      lines.push_back(all.substr(start, i - start));
      start = i + 1;
    }
  }
  return lines;
}

std::vector<nlohmann::json> read_json(const fs::path& p) {
  std::vector<nlohmann::json> out;
  for (const auto& line : read_lines(p)) {
    INFO(line);
    REQUIRE(nlohmann::json::accept(line));
    out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

std::unique_ptr<audit_log> open_ok(const fs::path& p) {
  auto r = audit_log::open(p);
  INFO(r.message);
  REQUIRE(r.log);
  CHECK_FALSE(r.error);
  return std::move(r.log);
}

audit_event full_session_end() {
  audit_event e;
  e.type = audit_event_type::session_end;
  e.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1717245296789));
  e.session_id = 42;
  e.client_address = "203.0.113.7:51234";
  e.listener = "127.0.0.1:26257";
  e.role = "crdb-role";
  e.database = "defaultdb";
  e.token_accessor = "hmac-accessor-1";
  e.token_display_name = "token-app";
  e.entity_id = "7d2e3179-f69b-450c-7179-ac8ee8bd8ca9";
  e.lease_id = "database/creds/crdb-role/abc123";
  e.db_user = "v-token-crdb-rol-xyz";
  e.result = "session_ended";
  e.sqlstate = "57P01";
  e.reason = "token revoked";
  e.bytes_in = 512;
  e.bytes_out = 1ULL << 40;
  e.duration_ms = 1234;
  return e;
}

}  // namespace

TEST_CASE("audit: every field of a session_end, in order", "[audit]") {
  const std::string line = to_json_line(full_session_end());
  CHECK(line ==
        R"({"time":"2024-06-01T12:34:56.789Z","event":"session_end","session":"C-000042",)"
        R"("client":"203.0.113.7:51234","listener":"127.0.0.1:26257","role":"crdb-role",)"
        R"("database":"defaultdb","token_accessor":"hmac-accessor-1","token_display_name":"token-app",)"
        R"("entity_id":"7d2e3179-f69b-450c-7179-ac8ee8bd8ca9","lease_id":"database/creds/crdb-role/abc123",)"
        R"("db_user":"v-token-crdb-rol-xyz","result":"session_ended","sqlstate":"57P01",)"
        R"("reason":"token revoked","bytes_in":512,"bytes_out":1099511627776,"duration_ms":1234})"
        "\n");
}

TEST_CASE("audit: fields not set are absent", "[audit]") {
  audit_event e;
  e.type = audit_event_type::credential_renew;
  e.lease_id = "database/creds/r/1";
  const auto j = nlohmann::json::parse(to_json_line(e));
  CHECK(j.size() == 3);
  CHECK(j["event"] == "credential_renew");
  CHECK(j["lease_id"] == "database/creds/r/1");
  CHECK(j.contains("time"));
  CHECK(to_string(audit_event_type::session_start) == "session_start");
  CHECK(to_string(audit_event_type::credential_issue) == "credential_issue");
  CHECK(to_string(audit_event_type::credential_revoke) == "credential_revoke");
}

TEST_CASE("audit: RFC 3339 UTC time with milliseconds", "[audit]") {
  using namespace std::chrono;
  CHECK(format_rfc3339_ms(system_clock::time_point{}) == "1970-01-01T00:00:00.000Z");
  CHECK(format_rfc3339_ms(system_clock::time_point(milliseconds(951782400007))) ==
        "2000-02-29T00:00:00.007Z");
  CHECK(format_rfc3339_ms(system_clock::time_point(milliseconds(-1))) == "1969-12-31T23:59:59.999Z");
  // A fresh event is stamped now.
  const auto j = nlohmann::json::parse(to_json_line(audit_event{}));
  const std::string t = j["time"];
  CHECK(t.size() == 24);
  CHECK(t.back() == 'Z');
}

TEST_CASE("audit: hostile strings stay inside their field and their line", "[audit]") {
  audit_event e;
  e.type = audit_event_type::session_start;
  e.role = "r\"}\n{\"password\":\"hunter2\"";
  e.database = std::string("bad utf-8 \xff\xfe and a NUL ") + '\0' + " byte";
  e.client_address = "ünïcödé\r\n\t";
  const std::string line = to_json_line(e);
  CHECK(line.find('\n') == line.size() - 1);
  for (const char c : line) CHECK(static_cast<unsigned char>(c) < 0x80);  // plain ASCII
  const auto j = nlohmann::json::parse(line);
  CHECK(j["role"] == "r\"}\n{\"password\":\"hunter2\"");
  CHECK_FALSE(j.contains("password"));
  CHECK(j["client"] == "ünïcödé\r\n\t");
  CHECK(j["database"].get<std::string>().find("\xef\xbf\xbd") != std::string::npos);  // U+FFFD
}

TEST_CASE("audit: the keys a line can have name no secret", "[audit]") {
  const auto j = nlohmann::json::parse(to_json_line(full_session_end()));
  const std::set<std::string> allowed = {
      "time",     "event",          "session",   "client",      "listener",  "role",
      "database", "token_accessor", "token_display_name", "entity_id", "lease_id", "db_user",
      "result",   "sqlstate",       "reason",    "bytes_in",    "bytes_out", "duration_ms"};
  std::set<std::string> keys;
  for (const auto& item : j.items()) keys.insert(item.key());
  CHECK(keys == allowed);
  for (const auto& k : keys) {
    CHECK(k.find("password") == std::string::npos);
    CHECK(k.find("secret") == std::string::npos);
    CHECK((k == "token_accessor" || k == "token_display_name" || k.find("token") == std::string::npos));
  }
}

TEST_CASE("audit_log: appends parseable lines to a 0600 file", "[audit]") {
  temp_dir d;
  const fs::path p = d.path / "audit.jsonl";
  {
    auto log = open_ok(p);
    CHECK(log->path() == p);
    log->write(full_session_end());
    audit_event issue;
    issue.type = audit_event_type::credential_issue;
    issue.session_id = 7;
    issue.lease_id = "database/creds/crdb-role/def";
    issue.db_user = "v-token-1";
    issue.result = "ok";
    log->write(issue);
    CHECK(log->lines_written() == 2);
    CHECK(log->write_failures() == 0);
  }
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  // Opening again appends, it does not truncate.
  open_ok(p)->write(audit_event{});
  const auto lines = read_json(p);
  REQUIRE(lines.size() == 3);
  CHECK(lines[0]["event"] == "session_end");
  CHECK(lines[0]["session"] == "C-000042");
  CHECK(lines[1]["event"] == "credential_issue");
  CHECK(lines[1]["session"] == "C-000007");
  CHECK(lines[1]["db_user"] == "v-token-1");
  CHECK(lines[2]["event"] == "session_start");
}

TEST_CASE("audit_log: concurrent writers produce whole lines only", "[audit]") {
  temp_dir d;
  const fs::path p = d.path / "audit.jsonl";
  auto log = open_ok(p);
  constexpr int threads = 8, per_thread = 400;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&log, t] {
      for (int i = 0; i < per_thread; ++i) {
        audit_event e;
        e.type = audit_event_type::session_end;
        e.session_id = static_cast<std::uint64_t>(t);
        e.bytes_in = static_cast<std::uint64_t>(i);
        // Long enough (> PIPE_BUF) that a torn write would show.
        e.database = std::string(static_cast<std::size_t>(5000 + t), static_cast<char>('a' + t));
        log->write(e);
      }
    });
  }
  for (auto& th : pool) th.join();
  CHECK(log->lines_written() == threads * per_thread);

  const auto lines = read_json(p);
  REQUIRE(lines.size() == static_cast<std::size_t>(threads * per_thread));
  std::map<std::uint64_t, std::uint64_t> next;  // per writer, lines come in its order
  for (const auto& j : lines) {
    const std::uint64_t t = std::stoull(j["session"].get<std::string>().substr(2));  // "C-00000t"
    REQUIRE(t < threads);
    CHECK(j["database"] == std::string(5000 + t, static_cast<char>('a' + t)));
    CHECK(j["bytes_in"] == next[t]);
    ++next[t];
  }
  for (int t = 0; t < threads; ++t) CHECK(next[static_cast<std::uint64_t>(t)] == per_thread);
}

TEST_CASE("audit_log: reopen after logrotate's rename writes to the new file", "[audit]") {
  temp_dir d;
  const fs::path p = d.path / "audit.jsonl";
  const fs::path rotated = d.path / "audit.jsonl.1";
  auto log = open_ok(p);
  audit_event e;
  e.lease_id = "before";
  log->write(e);
  fs::rename(p, rotated);
  e.lease_id = "after rename, before reopen";
  log->write(e);  // still the old descriptor: goes to the rotated file
  CHECK_FALSE(fs::exists(p));
  CHECK_FALSE(log->reopen());
  REQUIRE(fs::exists(p));
  e.lease_id = "after reopen";
  log->write(e);

  const auto old_lines = read_json(rotated);
  REQUIRE(old_lines.size() == 2);
  CHECK(old_lines[0]["lease_id"] == "before");
  CHECK(old_lines[1]["lease_id"] == "after rename, before reopen");
  const auto new_lines = read_json(p);
  REQUIRE(new_lines.size() == 1);
  CHECK(new_lines[0]["lease_id"] == "after reopen");

  SECTION("a failed reopen keeps the old file") {
    fs::remove(p);
    fs::remove_all(d.path);  // the directory is gone: open(2) fails with ENOENT
    const auto ec = log->reopen();
    CHECK(ec == std::errc::no_such_file_or_directory);
    log->write(e);  // the unlinked old file still takes the line
    CHECK(log->write_failures() == 0);
  }
}

TEST_CASE("audit_log: an unwritable path is a clear open error", "[audit]") {
  temp_dir d;
  SECTION("missing directory") {
    const fs::path p = d.path / "no-such-dir" / "audit.jsonl";
    const auto r = audit_log::open(p);
    CHECK_FALSE(r.log);
    CHECK(r.error == std::errc::no_such_file_or_directory);
    CHECK(r.message == "cannot open audit log \"" + p.string() + "\": No such file or directory");
  }
  SECTION("a directory") {
    const auto r = audit_log::open(d.path);
    CHECK_FALSE(r.log);
    CHECK(r.error == std::errc::is_a_directory);
    CHECK_THAT(r.message, Catch::Contains(d.path.string()) && Catch::Contains("Is a directory"));
  }
  SECTION("no permission (skipped as root, which may write anywhere)") {
    if (::geteuid() == 0) return;
    const fs::path ro = d.path / "ro";
    fs::create_directory(ro);
    fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec);
    const auto r = audit_log::open(ro / "audit.jsonl");
    CHECK_FALSE(r.log);
    CHECK(r.error == std::errc::permission_denied);
    CHECK_THAT(r.message, Catch::Contains("Permission denied"));
    fs::permissions(ro, fs::perms::owner_all);
  }
}

TEST_CASE("audit_log: a full disk is counted, never thrown", "[audit]") {
  if (!fs::exists("/dev/full")) return;
  auto log = open_ok("/dev/full");
  for (int i = 0; i < 5; ++i) log->write(full_session_end());
  CHECK(log->write_failures() == 5);
  CHECK(log->lines_written() == 0);
}
