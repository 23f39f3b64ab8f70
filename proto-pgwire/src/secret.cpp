#include "pgwire/secret.hpp"

#include <algorithm>
#include <utility>

#include <openssl/crypto.h>

namespace pgwire {

void cleanse_string(std::string& s) noexcept {
  // resize() to the capacity never reallocates, and makes every owned byte part
  // of [data(), data() + size()) so that wiping it is well defined.
  s.resize(s.capacity());
  OPENSSL_cleanse(s.data(), s.size());
  s.clear();
}

secret_string::secret_string(std::string_view bytes) {
  value_.reserve(bytes.size());
  value_.assign(bytes.data(), bytes.size());
}

secret_string::secret_string(std::string&& bytes) noexcept : value_(std::move(bytes)) {
  cleanse_string(bytes);
}

secret_string::secret_string(std::size_t n, char c) : value_(n, c) {}

secret_string::secret_string(secret_string&& other) noexcept : value_(std::move(other.value_)) {
  cleanse_string(other.value_);
}

secret_string& secret_string::operator=(secret_string&& other) noexcept {
  if (this != &other) {
    cleanse_string(value_);
    value_ = std::move(other.value_);
    cleanse_string(other.value_);
  }
  return *this;
}

secret_string::~secret_string() { cleanse_string(value_); }

secret_string secret_string::clone() const { return secret_string(view()); }

void secret_string::clear() noexcept { cleanse_string(value_); }

void secret_string::grow_to(std::size_t capacity) {
  std::string bigger;
  bigger.reserve(capacity);
  bigger.assign(value_);
  cleanse_string(value_);
  value_.swap(bigger);
  // `bigger` now owns the old (already wiped) buffer, or is a small string whose
  // bytes were the wiped ones; wipe it again to be independent of swap details.
  cleanse_string(bigger);
}

void secret_string::reserve(std::size_t capacity) {
  if (capacity > value_.capacity()) grow_to(capacity);
}

void secret_string::append(std::string_view bytes) {
  const std::size_t needed = value_.size() + bytes.size();
  if (needed > value_.capacity()) grow_to(std::max(needed, value_.capacity() * 2));
  value_.append(bytes.data(), bytes.size());
}

void secret_string::append(char c) { append(std::string_view(&c, 1)); }

}  // namespace pgwire
