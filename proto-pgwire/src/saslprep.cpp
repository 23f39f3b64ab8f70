#include "pgwire/saslprep.hpp"

#include <climits>
#include <utility>
#include <cstdint>
#include <vector>

#include <openssl/crypto.h>
#include <unicode/ustring.h>
#include <unicode/usprep.h>
#include <unicode/utypes.h>

namespace pgwire {
namespace {

// A UTF-16 buffer that is wiped when it goes out of scope.
class wiped_u16 {
 public:
  explicit wiped_u16(std::size_t n) : units_(n) {}
  wiped_u16(const wiped_u16&) = delete;
  wiped_u16& operator=(const wiped_u16&) = delete;
  ~wiped_u16() { OPENSSL_cleanse(units_.data(), units_.size() * sizeof(UChar)); }
  UChar* data() noexcept { return units_.data(); }
  int32_t capacity() const noexcept { return static_cast<int32_t>(units_.size()); }

 private:
  std::vector<UChar> units_;
};

// Closes an ICU stringprep profile.
struct profile_closer {
  UStringPrepProfile* profile;
  ~profile_closer() {
    if (profile != nullptr) usprep_close(profile);
  }
};

bool is_ascii(std::string_view s) noexcept {
  for (const char c : s) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

saslprep_result raw(std::string_view password, saslprep_status status) {
  return {secret_string(password), status};
}

}  // namespace

saslprep_result saslprep(std::string_view password) {
  if (is_ascii(password)) return raw(password, saslprep_status::ascii);
  if (password.size() > static_cast<std::size_t>(INT32_MAX / 2)) {
    return raw(password, saslprep_status::failed);
  }
  const auto in_len = static_cast<int32_t>(password.size());

  // UTF-8 -> UTF-16. A UTF-8 string never needs more UTF-16 units than bytes.
  wiped_u16 input(password.size());
  int32_t input_units = 0;
  UErrorCode status = U_ZERO_ERROR;
  u_strFromUTF8(input.data(), input.capacity(), &input_units, password.data(), in_len, &status);
  if (status == U_INVALID_CHAR_FOUND || status == U_ILLEGAL_CHAR_FOUND) {
    return raw(password, saslprep_status::invalid_utf8);
  }
  if (U_FAILURE(status)) return raw(password, saslprep_status::failed);

  status = U_ZERO_ERROR;
  profile_closer profile{usprep_openByType(USPREP_RFC4013_SASLPREP, &status)};
  if (U_FAILURE(status) || profile.profile == nullptr) {
    return raw(password, saslprep_status::failed);
  }

  // Preflight for the output length: NFKC may expand the string.
  UParseError parse_error{};
  status = U_ZERO_ERROR;
  const int32_t needed = usprep_prepare(profile.profile, input.data(), input_units, nullptr, 0,
                                        USPREP_DEFAULT, &parse_error, &status);
  if (status == U_STRINGPREP_PROHIBITED_ERROR || status == U_STRINGPREP_UNASSIGNED_ERROR ||
      status == U_STRINGPREP_CHECK_BIDI_ERROR) {
    return raw(password, saslprep_status::prohibited);
  }
  if (status != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(status)) {
    return raw(password, saslprep_status::failed);
  }
  // PostgreSQL refuses a password that maps to nothing and uses the raw bytes.
  if (needed <= 0) return raw(password, saslprep_status::prohibited);

  wiped_u16 prepared(static_cast<std::size_t>(needed));
  status = U_ZERO_ERROR;
  const int32_t prepared_units =
      usprep_prepare(profile.profile, input.data(), input_units, prepared.data(),
                     prepared.capacity(), USPREP_DEFAULT, &parse_error, &status);
  if (U_FAILURE(status) || prepared_units != needed) {
    return raw(password, saslprep_status::failed);
  }

  // UTF-16 -> UTF-8: preflight, then convert into the secret directly.
  int32_t out_len = 0;
  status = U_ZERO_ERROR;
  u_strToUTF8(nullptr, 0, &out_len, prepared.data(), prepared_units, &status);
  if (status != U_BUFFER_OVERFLOW_ERROR || out_len <= 0) {
    return raw(password, saslprep_status::failed);
  }
  secret_string out(static_cast<std::size_t>(out_len), '\0');
  int32_t written = 0;
  status = U_ZERO_ERROR;
  u_strToUTF8(out.data(), out_len, &written, prepared.data(), prepared_units, &status);
  // Filling the buffer exactly reports U_STRING_NOT_TERMINATED_WARNING: success.
  if (U_FAILURE(status) || written != out_len) return raw(password, saslprep_status::failed);
  return {std::move(out), saslprep_status::prepared};
}

}  // namespace pgwire
