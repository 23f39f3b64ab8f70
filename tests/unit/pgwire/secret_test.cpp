#include <catch2/catch.hpp>

#include <ostream>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "pgwire/secret.hpp"

namespace {

template <class T>
concept streamable = requires(std::ostream& os, const T& v) { os << v; };

}  // namespace

TEST_CASE("secret_string cannot be logged, converted or copied implicitly", "[pgwire][secret]") {
  STATIC_REQUIRE_FALSE(streamable<pgwire::secret_string>);
  STATIC_REQUIRE(streamable<std::string>);  // positive control for the concept
  STATIC_REQUIRE_FALSE(std::is_convertible_v<pgwire::secret_string, std::string>);
  STATIC_REQUIRE_FALSE(std::is_convertible_v<pgwire::secret_string, std::string_view>);
  STATIC_REQUIRE_FALSE(std::is_convertible_v<std::string_view, pgwire::secret_string>);
  STATIC_REQUIRE_FALSE(std::is_copy_constructible_v<pgwire::secret_string>);
  STATIC_REQUIRE(std::is_nothrow_move_constructible_v<pgwire::secret_string>);
}

TEST_CASE("secret_string holds bytes, moves, clones and clears", "[pgwire][secret]") {
  pgwire::secret_string a(std::string_view("hunter2\0x", 9));
  REQUIRE(a.size() == 9);
  CHECK(a.view() == std::string_view("hunter2\0x", 9));

  pgwire::secret_string b = a.clone();
  CHECK(b.view() == a.view());

  pgwire::secret_string c(std::move(a));
  CHECK(c.view() == b.view());
  CHECK(a.empty());  // NOLINT(bugprone-use-after-move): moved-from is specified empty

  pgwire::secret_string d;
  d = std::move(c);
  CHECK(d.view() == b.view());
  CHECK(c.empty());  // NOLINT(bugprone-use-after-move)

  d.clear();
  CHECK(d.empty());
  CHECK(d.view().empty());
}

TEST_CASE("secret_string append keeps the content across growth", "[pgwire][secret]") {
  pgwire::secret_string s;
  std::string expected;
  for (int i = 0; i < 200; ++i) {
    const char c = static_cast<char>('a' + i % 26);
    s.append(c);
    expected += c;
    if (i % 7 == 0) {
      s.append("xyz");
      expected += "xyz";
    }
  }
  CHECK(s.view() == expected);

  std::string source = "a long enough string to live on the heap, not in SSO";
  pgwire::secret_string taken(std::move(source));
  CHECK(taken.view() == "a long enough string to live on the heap, not in SSO");
  CHECK(source.empty());  // NOLINT(bugprone-use-after-move)
}

TEST_CASE("cleanse_string wipes and empties", "[pgwire][secret]") {
  std::string s = "short";
  pgwire::cleanse_string(s);
  CHECK(s.empty());
  // The bytes the string still owns are zero now.
  s.resize(s.capacity());
  for (const char c : s) REQUIRE(c == '\0');
}
