// `vaultwire passwd` in-process: the password read from a pipe (the terminal path,
// with echo off, is tested against the binary on a pseudo-terminal in
// tests/integration/cli/passwd_test.cpp), the line printed, the refusals.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cstdio>
#include <string>
#include <string_view>
#include <thread>

#include "cli/passwd.hpp"
#include "config/users_file.hpp"
#include "pgwire/scram.hpp"
#include "pgwire/scram_server.hpp"

namespace {

struct run_result {
  int status = -1;
  std::string out;
  std::string err;
};

std::string slurp(std::FILE* f) {
  std::rewind(f);
  std::string s;
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
  std::fclose(f);
  return s;
}

// Runs the subcommand with `input` on a pipe as stdin.
run_result run(const vaultwire::passwd_options& o, std::string_view input) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  // A writer thread: the input may be larger than the pipe's buffer.
  std::thread writer([w = fds[1], input] {
    std::size_t done = 0;
    while (done < input.size()) {
      const ssize_t n = ::write(w, input.data() + done, input.size() - done);
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    ::close(w);
  });
  std::FILE* out = std::tmpfile();
  std::FILE* err = std::tmpfile();
  REQUIRE(out != nullptr);
  REQUIRE(err != nullptr);
  run_result r;
  r.status = vaultwire::run_passwd(o, fds[0], out, err);
  ::close(fds[0]);  // a writer still blocked gets EPIPE and ends
  writer.join();
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

vaultwire::passwd_options alice() {
  vaultwire::passwd_options o;
  o.user = "alice";
  o.role = "app";
  return o;
}

// Whether a client that knows `password` logs in against `verifier`.
bool logs_in(const pgwire::scram_verifier& verifier, std::string_view password) {
  pgwire::scram_server s(verifier.clone());
  pgwire::scram_client c(password);
  if (!s.select_mechanism(c.mechanism())) return false;
  auto first = c.client_first();
  if (!first) return false;
  auto server_first = s.on_client_first(first.value());
  if (!server_first) return false;
  auto final = c.on_server_first(server_first.value());
  if (!final) return false;
  auto server_final = s.on_client_final(final.value().view());
  return server_final && c.on_server_final(server_final.value()) && s.authenticated();
}

// The one user of a printed line.
const vaultwire::local_user& user_of(const vaultwire::users_file_result& r, const std::string& name) {
  REQUIRE(r.errors == std::vector<std::string>{});
  REQUIRE(r.value->size() == 1);
  return r.value->at(name);
}

}  // namespace

TEST_CASE("passwd: one line on stdin becomes a users file line", "[passwd]") {
  const std::string password = "correct horse battery staple";
  for (const std::string& input : {password + "\n", password}) {
    INFO("with a newline: " << (input.size() != password.size()));
    const auto r = run(alice(), input);
    CHECK(r.status == 0);
    CHECK(r.err.empty());
    REQUIRE(r.out.starts_with("alice SCRAM-SHA-256$4096:"));
    REQUIRE(r.out.ends_with(" app\n"));
    CHECK(r.out.find("horse") == std::string::npos);
    const auto parsed = vaultwire::parse_users_file(r.out, "stdout");
    const auto& u = user_of(parsed, "alice");
    CHECK(u.role == "app");
    CHECK(u.verifier.salt.size() == 16);
    CHECK(logs_in(u.verifier, password));
    CHECK_FALSE(logs_in(u.verifier, password + "\n"));
    CHECK_FALSE(logs_in(u.verifier, "correct horse battery stapl"));
  }
}

TEST_CASE("passwd: only the newline is stripped, spaces are part of the password", "[passwd]") {
  const auto r = run(alice(), " pw \r\n");
  REQUIRE(r.status == 0);
  const auto parsed = vaultwire::parse_users_file(r.out, "stdout");
  const auto& u = user_of(parsed, "alice");
  CHECK(logs_in(u.verifier, " pw \r"));
  CHECK_FALSE(logs_in(u.verifier, " pw "));
  CHECK_FALSE(logs_in(u.verifier, "pw"));
}

TEST_CASE("passwd: two runs give two salts", "[passwd]") {
  const auto a = run(alice(), "same\n");
  const auto b = run(alice(), "same\n");
  REQUIRE(a.status == 0);
  REQUIRE(b.status == 0);
  CHECK(a.out != b.out);
}

TEST_CASE("passwd: --iterations", "[passwd]") {
  auto o = alice();
  o.iterations = 10000;
  const auto r = run(o, "pw\n");
  REQUIRE(r.status == 0);
  CHECK(r.out.starts_with("alice SCRAM-SHA-256$10000:"));
  const auto parsed = vaultwire::parse_users_file(r.out, "stdout");
  CHECK(logs_in(user_of(parsed, "alice").verifier, "pw"));
}

TEST_CASE("passwd: refusals say why and never echo the input", "[passwd]") {
  struct refused {
    std::string input;
    std::string error;
  };
  const refused cases[] = {
      {"", "error: the password is empty\n"},
      {"\n", "error: the password is empty\n"},
      {"secret1\nsecret2\n", "error: stdin has more than one line: give the password alone on one line\n"},
      {"secret1\n\n", "error: stdin has more than one line: give the password alone on one line\n"},
      {std::string("sec\0ret1\n", 9), "error: the password contains a NUL byte, which PostgreSQL clients cannot send\n"},
      {std::string(4097, 's') + "\n", "error: the password is longer than 4096 bytes\n"},
  };
  for (const auto& c : cases) {
    INFO("input of " << c.input.size() << " bytes");
    const auto r = run(alice(), c.input);
    CHECK(r.status == 1);
    CHECK(r.out.empty());
    CHECK(r.err == c.error);
    CHECK(r.err.find("secret") == std::string::npos);
  }
  // The longest accepted.
  CHECK(run(alice(), std::string(4096, 's') + "\n").status == 0);
}

TEST_CASE("passwd: names the users file cannot hold are refused before reading", "[passwd]") {
  auto bad_user = alice();
  bad_user.user = "al ice";
  auto r = run(bad_user, "pw\n");
  CHECK(r.status == 2);
  CHECK(r.out.empty());
  CHECK(r.err == "error: USER cannot be empty or have spaces, control characters or a leading '#'\n");

  auto bad_role = alice();
  bad_role.role = "database/creds/app";
  r = run(bad_role, "pw\n");
  CHECK(r.status == 2);
  CHECK(r.err == "error: --role cannot be empty or have '/', spaces, control characters or a leading '#'\n");

  auto hash_user = alice();
  hash_user.user = "#alice";
  CHECK(run(hash_user, "pw\n").status == 2);
}
