#include <catch2/catch.hpp>

#include <string>
#include <string_view>

#include "pgwire/saslprep.hpp"

using pgwire::saslprep_status;

namespace {

void check(std::string_view in, std::string_view expected, saslprep_status status) {
  const pgwire::saslprep_result r = pgwire::saslprep(in);
  CHECK(r.password.view() == expected);
  CHECK(r.status == status);
}

}  // namespace

TEST_CASE("saslprep leaves ASCII passwords unchanged, controls included", "[pgwire][saslprep]") {
  check("pencil", "pencil", saslprep_status::ascii);
  check("", "", saslprep_status::ascii);
  check("a b\tc", "a b\tc", saslprep_status::ascii);
  // PostgreSQL does not prepare an ASCII password at all, so a control character
  // that SASLprep would prohibit passes through.
  check("a\x07" "b", "a\x07" "b", saslprep_status::ascii);
}

TEST_CASE("saslprep maps, removes and normalizes (RFC 4013 section 3)", "[pgwire][saslprep]") {
  check("a\xc2\xa0" "b", "a b", saslprep_status::prepared);        // U+00A0 -> space
  check("I\xc2\xad" "X", "IX", saslprep_status::prepared);         // U+00AD removed
  check("\xc2\xaa", "a", saslprep_status::prepared);               // U+00AA -> a (NFKC)
  check("\xe2\x85\xa8", "IX", saslprep_status::prepared);          // U+2168 -> IX (NFKC)
  check("e\xcc\x81", "\xc3\xa9", saslprep_status::prepared);       // e + U+0301 -> U+00E9
  check("p\xc3\xa4ss", "p\xc3\xa4ss", saslprep_status::prepared);  // already prepared
}

TEST_CASE("saslprep falls back to the raw bytes for invalid UTF-8", "[pgwire][saslprep]") {
  for (const std::string_view bad : {std::string_view("\xff\xfe"), std::string_view("ab\xc3"),
                                     std::string_view("\xed\xa0\x80"),  // a surrogate
                                     std::string_view("\xc0\xaf"),      // overlong '/'
                                     std::string_view("\xf4\x90\x80\x80")}) {  // > U+10FFFF
    INFO("input size " << bad.size());
    check(bad, bad, saslprep_status::invalid_utf8);
  }
}

TEST_CASE("saslprep falls back to the raw bytes for prohibited output", "[pgwire][saslprep]") {
  check("\xee\x80\x80", "\xee\x80\x80", saslprep_status::prohibited);            // U+E000 private use
  check("\xc3\xa9\x07", "\xc3\xa9\x07", saslprep_status::prohibited);            // BEL in a non-ASCII string
  check("\xd8\xa7" "1", "\xd8\xa7" "1", saslprep_status::prohibited);            // bidi: RandALCat then digit
  check("\xc8\xa1", "\xc8\xa1", saslprep_status::prohibited);                    // U+0221 unassigned in 3.2
  check("\xc2\xad", "\xc2\xad", saslprep_status::prohibited);                    // maps to empty
  check(std::string_view("\xc3\xa9\0", 3), std::string_view("\xc3\xa9\0", 3),  // NUL
        saslprep_status::prohibited);
}
