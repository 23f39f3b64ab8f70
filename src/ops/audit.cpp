#include "ops/audit.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <ctime>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace vaultwire::detail {
namespace {

int open_fd(const std::filesystem::path& path) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

void put(nlohmann::ordered_json& j, const char* key, const std::optional<std::string>& v) {
  if (v) j[key] = *v;
}

template <typename T>
void put(nlohmann::ordered_json& j, const char* key, const std::optional<T>& v) {
  if (v) j[key] = *v;
}

}  // namespace

std::string_view to_string(audit_event_type type) noexcept {
  switch (type) {
    case audit_event_type::session_start: return "session_start";
    case audit_event_type::session_end: return "session_end";
    case audit_event_type::credential_issue: return "credential_issue";
    case audit_event_type::credential_renew: return "credential_renew";
    case audit_event_type::credential_revoke: return "credential_revoke";
  }
  return "unknown";
}

std::string format_rfc3339_ms(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto ms_total = time_point_cast<milliseconds>(t).time_since_epoch().count();
  auto secs = static_cast<std::time_t>(ms_total / 1000);
  auto ms = static_cast<int>(ms_total % 1000);
  if (ms < 0) {  // before 1970: floor, not truncate
    ms += 1000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];  // room for any int the format could see (keeps -Wformat-truncation quiet)
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
  return buf;
}

std::string to_json_line(const audit_event& e) {
  nlohmann::ordered_json j;
  j["time"] = format_rfc3339_ms(e.time);
  j["event"] = std::string(to_string(e.type));
  if (e.session_id) {
    char id[32];
    std::snprintf(id, sizeof id, "C-%06llu", static_cast<unsigned long long>(*e.session_id));
    j["session"] = id;
  }
  put(j, "client", e.client_address);
  put(j, "local_identity", e.local_identity);
  put(j, "listener", e.listener);
  put(j, "role", e.role);
  put(j, "database", e.database);
  put(j, "token_accessor", e.token_accessor);
  put(j, "token_display_name", e.token_display_name);
  put(j, "entity_id", e.entity_id);
  put(j, "lease_id", e.lease_id);
  put(j, "db_user", e.db_user);
  put(j, "result", e.result);
  put(j, "sqlstate", e.sqlstate);
  put(j, "reason", e.reason);
  put(j, "bytes_in", e.bytes_in);
  put(j, "bytes_out", e.bytes_out);
  put(j, "duration_ms", e.duration_ms);
  // ensure_ascii: a line is plain ASCII whatever the strings held; replace: bytes
  // that are not UTF-8 become U+FFFD instead of an exception.
  std::string line = j.dump(-1, ' ', true, nlohmann::ordered_json::error_handler_t::replace);
  line += '\n';
  return line;
}

audit_open_result audit_log::open(const std::filesystem::path& path) {
  audit_open_result r;
  const int fd = open_fd(path);
  if (fd < 0) {
    r.error = std::error_code(errno, std::system_category());
    r.message = "cannot open audit log \"" + path.string() + "\": " + r.error.message();
    return r;
  }
  r.log.reset(new audit_log(path, fd));
  return r;
}

audit_log::~audit_log() {
  if (fd_ >= 0) ::close(fd_);
}

int audit_log::write_all(std::string_view line) {
  while (!line.empty()) {
    const ssize_t n = ::write(fd_, line.data(), line.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (n == 0) return EIO;
    line.remove_prefix(static_cast<std::size_t>(n));
  }
  return 0;
}

void audit_log::write(const audit_event& event) noexcept {
  try {
    const std::string line = to_json_line(event);
    std::lock_guard lock(mu_);
    const int err = write_all(line);
    if (err == 0) {
      written_.fetch_add(1);
      if (failing_) {
        failing_ = false;
        spdlog::info("audit log {}: writing again ({} lines lost in total)", path_.string(), failures_.load());
      }
      return;
    }
    failures_.fetch_add(1);
    if (!failing_) {
      failing_ = true;
      spdlog::error("audit log {}: write failed: {}; counting lost lines until writes succeed again",
                    path_.string(), std::error_code(err, std::system_category()).message());
    }
  } catch (...) {
    // Out of memory while building the line: count it and go on.
    failures_.fetch_add(1);
  }
}

std::error_code audit_log::reopen() {
  const int fd = open_fd(path_);
  if (fd < 0) {
    const std::error_code ec(errno, std::system_category());
    spdlog::error("audit log {}: reopen failed: {}; still writing to the old file", path_.string(),
                  ec.message());
    return ec;
  }
  int old;
  {
    std::lock_guard lock(mu_);
    old = fd_;
    fd_ = fd;
  }
  ::close(old);
  spdlog::info("audit log {}: reopened", path_.string());
  return {};
}

}  // namespace vaultwire::detail
