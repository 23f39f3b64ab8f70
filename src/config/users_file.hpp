// The users file: local users who log in to vaultwire with a password (SCRAM-SHA-256)
// instead of a Vault token, and the Vault role each one's sessions use. One line per
// user, fields separated by spaces or tabs:
//
//   <user> <SCRAM verifier> <vault role>
//
// `vaultwire passwd USER --role ROLE` prints such a line. The verifier is PostgreSQL's
// stored form (pgwire/scram_verifier.hpp), so `SELECT rolpassword FROM pg_authid` of a
// SCRAM role works too. Blank lines and lines whose first non-blank character is '#'
// are ignored; a line may end in CR LF.
//
// Names: a user or role is non-empty, has no whitespace, control character or DEL,
// and does not start with '#'; a role has no '/' either (a Vault role name).
//
// The verifiers are secrets (scram_verifier.hpp says why): the file must not be
// readable, writable or executable by group or others, and no message ever quotes a
// verifier or the text of a line, only line numbers and user names.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pgwire/scram_verifier.hpp"
#include "pgwire/secret.hpp"

namespace vaultwire {

struct local_user {
  pgwire::scram_verifier verifier;  // valid()
  std::string role;                 // the Vault role this user's sessions use
  int line = 0;                     // where the file defines the user, for messages
};

// User name -> entry.
using local_users = std::map<std::string, local_user, std::less<>>;

// Exactly one of: `value` set and `errors` empty, or `value` empty and `errors`
// non-empty (every problem of the file, each "<source>:<line>: ..." or "<source>: ...").
struct [[nodiscard]] users_file_result {
  std::optional<local_users> value;
  std::vector<std::string> errors;

  [[nodiscard]] bool ok() const noexcept { return value.has_value(); }
  explicit operator bool() const noexcept { return ok(); }
};

// Parses the text of a users file; `source_name` starts each error. Refuses a line
// without exactly three fields, a bad name, a verifier that does not parse, and a
// user defined twice (naming both lines). A file without users is valid.
users_file_result parse_users_file(std::string_view text, std::string_view source_name);

// Reads and parses `file`: a regular file (symbolic links followed) whose mode has no
// bit of 077 set, at most 16 MiB. The buffer that held the text is wiped.
users_file_result load_users_file(const std::filesystem::path& file);

// Whether `name` may be a user (role = false) or a Vault role (role = true) in the file.
[[nodiscard]] bool valid_users_file_name(std::string_view name, bool role) noexcept;

// One line of the file, with its newline: "<user> <verifier> <role>\n". The caller
// has checked the names with valid_users_file_name and the verifier with valid().
[[nodiscard]] pgwire::secret_string format_users_file_line(std::string_view user,
                                                           const pgwire::scram_verifier& verifier,
                                                           std::string_view role);

}  // namespace vaultwire
