#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "config/users_file.hpp"
#include "pgwire/scram_verifier.hpp"

// Every error message is asserted in full: a message that stops naming its line, or a
// check that stops firing, fails here.

namespace {

namespace fs = std::filesystem;
using strings = std::vector<std::string>;
using vaultwire::parse_users_file;

// The RFC 7677 verifier ("pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096), computed with
// Python's hashlib.pbkdf2_hmac / hmac from RFC 5802's definitions.
constexpr std::string_view pencil =
    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
    ":wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";

std::string line(std::string_view user, std::string_view verifier, std::string_view role) {
  return std::string(user) + " " + std::string(verifier) + " " + std::string(role) + "\n";
}

struct temp_dir {
  fs::path path;
  temp_dir() {
    static std::atomic<int> n{0};
    path = fs::temp_directory_path() /
           ("vaultwire-users-test-" + std::to_string(::getpid()) + "-" + std::to_string(n++));
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  fs::path file(const std::string& name, std::string_view content, ::mode_t mode) const {
    const fs::path p = path / name;
    std::ofstream{p} << content;
    REQUIRE(::chmod(p.c_str(), mode) == 0);
    return p;
  }
};

}  // namespace

TEST_CASE("users file: users, comments, blank lines, tabs and CR LF", "[config][users_file]") {
  const std::string text = "# local users of the sidecar\n"
                           "\n" +
                           line("alice", pencil, "app") +
                           "   # an indented comment\n"
                           "bob\t" + std::string(pencil) + "\t\treporting\r\n"
                           "   \t \n"
                           "  carol   " + std::string(pencil) + "   app  ";  // no final newline
  const auto r = parse_users_file(text, "users");
  REQUIRE(r.errors == strings{});
  REQUIRE(r.ok());
  const auto& users = *r.value;
  REQUIRE(users.size() == 3);
  CHECK(users.at("alice").role == "app");
  CHECK(users.at("alice").line == 3);
  CHECK(users.at("bob").role == "reporting");
  CHECK(users.at("bob").line == 5);
  CHECK(users.at("carol").line == 7);
  CHECK(users.at("carol").role == "app");
  const auto& v = users.at("alice").verifier;
  CHECK(v.valid());
  CHECK(v.iterations == 4096);
  CHECK(v.format().view() == pencil);
}

TEST_CASE("users file: an empty file or one of comments has no users", "[config][users_file]") {
  for (const std::string_view text : {"", "\n\n", "# nobody yet\n"}) {
    const auto r = parse_users_file(text, "users");
    REQUIRE(r.ok());
    CHECK(r.value->empty());
  }
}

TEST_CASE("users file: every bad line is reported by number, none is quoted", "[config][users_file]") {
  const std::string text = line("alice", pencil, "app") +                          // 1
                           "bob " + std::string(pencil) + "\n" +                   // 2: two fields
                           line("carol", "hunter2", "app") +                       // 3: a password, not a verifier
                           line("dave", pencil, "db/creds") +                      // 4: '/' in the role
                           line("alice", pencil, "other") +                        // 5: again
                           "erin " + std::string(pencil) + " app extra\n" +        // 6: four fields
                           line("fr\x01nk", pencil, "app") +                       // 7: control character
                           line("gina", std::string(pencil) + "x", "app") +        // 8: damaged verifier
                           "lonely\n";                                              // 9: one field
  const auto r = parse_users_file(text, "/etc/vaultwire/users");
  CHECK_FALSE(r.ok());
  CHECK(r.errors ==
        strings{
            "/etc/vaultwire/users:2: expected <user> <SCRAM verifier> <vault role>, found 2 fields",
            "/etc/vaultwire/users:3: user \"carol\": the verifier is not "
            "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> (make the line with "
            "`vaultwire passwd carol --role app`)",
            "/etc/vaultwire/users:4: user \"dave\": role \"db/creds\": a Vault role name cannot have '/', "
            "spaces, control characters or a leading '#'",
            "/etc/vaultwire/users:5: user \"alice\" is already defined on line 1",
            "/etc/vaultwire/users:6: expected <user> <SCRAM verifier> <vault role>, found 4 fields",
            "/etc/vaultwire/users:7: user \"fr?nk\": a user name cannot have spaces, control characters or "
            "a leading '#'",
            "/etc/vaultwire/users:8: user \"gina\": the verifier is not "
            "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> (make the line with "
            "`vaultwire passwd gina --role app`)",
            "/etc/vaultwire/users:9: expected <user> <SCRAM verifier> <vault role>, found 1 field",
        });
  for (const auto& e : r.errors) {
    CHECK(e.find("hunter2") == std::string::npos);
    CHECK(e.find("WG5d8oPm") == std::string::npos);  // no part of a verifier
  }
}

TEST_CASE("users file: names", "[config][users_file]") {
  using vaultwire::valid_users_file_name;
  for (const std::string_view ok : {"alice", "app-reader_1", "a.b@c", "r\xc3\xa9mi", "a#b"}) {
    INFO(ok);
    CHECK(valid_users_file_name(ok, false));
    CHECK(valid_users_file_name(ok, true));
  }
  const std::string_view bads[] = {"", "#alice", "a b", "a\tb", "a\x7f", std::string_view("a\0b", 3)};
  for (const std::string_view bad : bads) {
    INFO(bad);
    CHECK_FALSE(valid_users_file_name(bad, false));
    CHECK_FALSE(valid_users_file_name(bad, true));
  }
  CHECK(valid_users_file_name("a/b", false));
  CHECK_FALSE(valid_users_file_name("a/b", true));
}

TEST_CASE("users file: the line vaultwire passwd prints parses back", "[config][users_file]") {
  auto v = pgwire::make_scram_verifier("s3cret pass", 4096);
  REQUIRE(v.has_value());
  const auto text = vaultwire::format_users_file_line("alice", v.value(), "app");
  CHECK(text.view().ends_with(" app\n"));
  CHECK(text.view().find("s3cret") == std::string_view::npos);
  const auto r = parse_users_file(text.view(), "users");
  REQUIRE(r.ok());
  REQUIRE(r.value->contains("alice"));
  CHECK(r.value->at("alice").verifier.format().view() == v.value().format().view());
}

TEST_CASE("users file: loading checks the mode and the kind of file", "[config][users_file]") {
  temp_dir d;
  const std::string text = line("alice", pencil, "app");

  SECTION("0600 and 0400 load") {
    for (const ::mode_t mode : {0600u, 0400u}) {
      const auto p = d.file("users", text, mode);
      const auto r = vaultwire::load_users_file(p);
      REQUIRE(r.errors == strings{});
      CHECK(r.value->size() == 1);
    }
  }
  SECTION("any bit for group or others is refused, naming the file and the mode") {
    for (const ::mode_t mode : {0640u, 0604u, 0620u, 0602u, 0610u, 0601u, 0644u, 0666u}) {
      const auto p = d.file("users", text, mode);
      const auto r = vaultwire::load_users_file(p);
      CHECK_FALSE(r.ok());
      char octal[8];
      std::snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(mode));
      CHECK(r.errors == strings{p.string() + ": mode " + octal +
                                " gives group or others access; it holds password verifiers: chmod 600 " +
                                p.string()});
    }
  }
  SECTION("a symbolic link to a private file loads; the target's mode counts") {
    const auto target = d.file("real", text, 0600);
    fs::create_symlink(target, d.path / "link");
    CHECK(vaultwire::load_users_file(d.path / "link").ok());
    REQUIRE(::chmod(target.c_str(), 0644) == 0);
    CHECK_FALSE(vaultwire::load_users_file(d.path / "link").ok());
  }
  SECTION("a missing file, a directory") {
    const auto missing = d.path / "nope";
    CHECK(vaultwire::load_users_file(missing).errors ==
          strings{missing.string() + ": cannot open: No such file or directory"});
    fs::create_directory(d.path / "dir");
    REQUIRE(::chmod((d.path / "dir").c_str(), 0700) == 0);
    CHECK(vaultwire::load_users_file(d.path / "dir").errors == strings{(d.path / "dir").string() + ": not a regular file"});
  }
  SECTION("errors inside the file carry its name") {
    const auto p = d.file("users", "alice\n", 0600);
    CHECK(vaultwire::load_users_file(p).errors ==
          strings{p.string() + ":1: expected <user> <SCRAM verifier> <vault role>, found 1 field"});
  }
}
