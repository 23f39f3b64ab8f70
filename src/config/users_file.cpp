// The users file (users_file.hpp): parser, permission check, and the line `vaultwire
// passwd` prints.
#include "config/users_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <utility>

#include <openssl/crypto.h>

namespace vaultwire {
namespace {

constexpr std::size_t max_file_size = 16u << 20;

bool is_blank(char c) noexcept { return c == ' ' || c == '\t'; }

// Fields of one line, split on runs of spaces and tabs.
std::vector<std::string_view> fields_of(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_blank(line[i])) ++i;
    const std::size_t start = i;
    while (i < line.size() && !is_blank(line[i])) ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

// A name quoted for a message: printable ASCII kept, other bytes as '?', at most 64.
std::string quoted(std::string_view name) {
  std::string out = "\"";
  for (std::size_t i = 0; i < name.size() && i < 64; ++i) {
    const char c = name[i];
    out += c >= 0x20 && c < 0x7f ? c : '?';
  }
  if (name.size() > 64) out += "...";
  out += '"';
  return out;
}

// A name for the `vaultwire passwd` hint: itself when it is a plain one, else `fallback`.
std::string_view hint_name(std::string_view name, bool role, std::string_view fallback) {
  if (!valid_users_file_name(name, role) || name.size() > 64) return fallback;
  for (const char c : name) {
    if (static_cast<unsigned char>(c) >= 0x7f || c == '`' || c == '\\' || c == '"' || c == '\'') return fallback;
  }
  return name;
}

// "0640" for a mode.
std::string octal_mode(unsigned mode) {
  std::string out(4, '0');
  for (int i = 3; i >= 0; --i, mode >>= 3) out[static_cast<std::size_t>(i)] = static_cast<char>('0' + (mode & 7));
  return out;
}

std::string at_line(std::string_view source, int line) {
  return std::string(source) + ":" + std::to_string(line) + ": ";
}

// Reads one non-comment line into `users`, or appends its errors.
void read_line(std::string_view line, int number, std::string_view source, local_users& users,
               std::vector<std::string>& errors) {
  const std::vector<std::string_view> f = fields_of(line);
  if (f.empty() || f[0].starts_with('#')) return;
  if (f.size() != 3) {
    errors.push_back(at_line(source, number) + "expected <user> <SCRAM verifier> <vault role>, found " +
                     std::to_string(f.size()) + " field" + (f.size() == 1 ? "" : "s"));
    return;
  }
  const std::string_view user = f[0];
  const std::string_view role = f[2];
  const std::size_t before = errors.size();
  if (!valid_users_file_name(user, false)) {
    errors.push_back(at_line(source, number) + "user " + quoted(user) +
                     ": a user name cannot have spaces, control characters or a leading '#'");
  }
  auto verifier = pgwire::parse_scram_verifier(f[1]);
  if (!verifier) {
    errors.push_back(at_line(source, number) + "user " + quoted(user) +
                     ": the verifier is not SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"
                     " (make the line with `vaultwire passwd " + std::string(hint_name(user, false, "USER")) +
                     " --role " + std::string(hint_name(role, true, "ROLE")) + "`)");
  }
  if (!valid_users_file_name(role, true)) {
    errors.push_back(at_line(source, number) + "user " + quoted(user) + ": role " + quoted(role) +
                     ": a Vault role name cannot have '/', spaces, control characters or a leading '#'");
  }
  if (const auto it = users.find(user); it != users.end()) {
    errors.push_back(at_line(source, number) + "user " + quoted(user) + " is already defined on line " +
                     std::to_string(it->second.line));
  }
  if (errors.size() != before) return;
  users.emplace(std::string(user), local_user{std::move(verifier).value(), std::string(role), number});
}

// Appends the whole file to `text`; an error message on failure. Closes `fd`.
std::optional<std::string> read_fd(int fd, std::string& text) {
  char buf[8192];
  std::optional<std::string> error;
  while (true) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = std::generic_category().message(errno);
      break;
    }
    if (n == 0) break;
    if (text.size() + static_cast<std::size_t>(n) > max_file_size) {
      error = "larger than 16 MiB";
      break;
    }
    text.append(buf, static_cast<std::size_t>(n));
  }
  OPENSSL_cleanse(buf, sizeof buf);
  ::close(fd);
  return error;
}

}  // namespace

bool valid_users_file_name(std::string_view name, bool role) noexcept {
  if (name.empty() || name[0] == '#') return false;
  for (const char c : name) {
    const auto b = static_cast<unsigned char>(c);
    if (b <= 0x20 || b == 0x7f) return false;
    if (role && c == '/') return false;
  }
  return true;
}

users_file_result parse_users_file(std::string_view text, std::string_view source_name) {
  local_users users;
  std::vector<std::string> errors;
  int number = 0;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(start, end - start);
    if (line.ends_with('\r')) line.remove_suffix(1);
    read_line(line, ++number, source_name, users, errors);
    start = end + 1;
  }
  if (!errors.empty()) return {std::nullopt, std::move(errors)};
  return {std::move(users), {}};
}

users_file_result load_users_file(const std::filesystem::path& file) {
  const std::string name = file.string();
  const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    return {std::nullopt, {name + ": cannot open: " + std::generic_category().message(e)}};
  }
  // The mode of the file opened, not of a path that may have changed since.
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return {std::nullopt, {name + ": cannot stat: " + std::generic_category().message(e)}};
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return {std::nullopt, {name + ": not a regular file"}};
  }
  if ((st.st_mode & 077) != 0) {
    ::close(fd);
    return {std::nullopt,
            {name + ": mode " + octal_mode(static_cast<unsigned>(st.st_mode & 07777)) +
             " gives group or others access; it holds password verifiers: chmod 600 " + name}};
  }
  std::string text;
  if (auto error = read_fd(fd, text)) {
    pgwire::cleanse_string(text);
    return {std::nullopt, {name + ": cannot read: " + *error}};
  }
  users_file_result r = parse_users_file(text, name);
  pgwire::cleanse_string(text);
  return r;
}

pgwire::secret_string format_users_file_line(std::string_view user, const pgwire::scram_verifier& verifier,
                                             std::string_view role) {
  const pgwire::secret_string v = verifier.format();
  pgwire::secret_string line;
  line.reserve(user.size() + v.size() + role.size() + 3);
  line.append(user);
  line.append(' ');
  line.append(v.view());
  line.append(' ');
  line.append(role);
  line.append('\n');
  return line;
}

}  // namespace vaultwire
