#include <catch2/catch.hpp>

#include <string>

#include "pgwire/md5.hpp"

// Expected values computed independently with Python's hashlib:
//   "md5" + md5(md5(password + user).hexdigest() + salt).hexdigest()

TEST_CASE("md5_password_response matches independently computed vectors", "[pgwire][md5]") {
  struct vector {
    const char* user;
    const char* password;
    std::array<std::uint8_t, 4> salt;
    const char* expected;
  };
  const vector vectors[] = {
      {"postgres", "secret", {1, 2, 3, 4}, "md5bb41a296aab6baccb36ff243a562abff"},
      {"alice", "p\xc3\xa4ss w0rd", {0xde, 0xad, 0xbe, 0xef}, "md54df3606717d8aa4ee98608168c3cf06a"},
      {"", "", {0, 0, 0, 0}, "md591b86670dcd47857d222fa05653500aa"},
  };
  for (const auto& v : vectors) {
    INFO("user " << v.user);
    auto r = pgwire::md5_password_response(v.user, v.password, v.salt);
    REQUIRE(r.has_value());
    CHECK(r.value().view() == v.expected);
    CHECK(r.value().size() == 35);
  }
}

TEST_CASE("md5_password_response depends on user, password and salt", "[pgwire][md5]") {
  auto base = pgwire::md5_password_response("postgres", "secret", {1, 2, 3, 4});
  auto other_salt = pgwire::md5_password_response("postgres", "secret", {1, 2, 3, 5});
  auto other_user = pgwire::md5_password_response("postgre", "secret", {1, 2, 3, 4});
  auto other_password = pgwire::md5_password_response("postgres", "secreT", {1, 2, 3, 4});
  REQUIRE(base.has_value());
  REQUIRE(other_salt.has_value());
  REQUIRE(other_user.has_value());
  REQUIRE(other_password.has_value());
  CHECK(base.value().view() != other_salt.value().view());
  CHECK(base.value().view() != other_user.value().view());
  CHECK(base.value().view() != other_password.value().view());
}
