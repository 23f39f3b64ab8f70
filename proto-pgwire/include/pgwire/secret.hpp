// secret_string: a byte string that holds a password, token, SCRAM proof or key.
//
// Contract:
// - Move-only. A copy must be asked for with clone(), so every place that
//   duplicates a secret is visible in review.
// - The destructor, clear() and move assignment wipe every byte the string owned
//   (up to its capacity) with OPENSSL_cleanse. A moved-from secret_string is empty
//   and its old buffer has been wiped.
// - append() never leaves a copy behind: when the buffer has to grow, the old
//   buffer is wiped before it is freed.
// - There is deliberately no operator<<, no fmt formatter and no conversion to
//   std::string or std::string_view: a secret cannot be logged by accident. Reach
//   the bytes explicitly with view(); the view is valid until the next non-const
//   call or the destruction of this object.
// - Bytes are arbitrary (keys are binary); nothing assumes a terminating NUL.
#pragma once

#include <cstddef>
#include <iosfwd>
#include <string>
#include <string_view>

namespace pgwire {

class secret_string {
 public:
  secret_string() noexcept = default;
  explicit secret_string(std::string_view bytes);
  explicit secret_string(const char* bytes) : secret_string(std::string_view(bytes)) {}
  // Takes over the buffer of `bytes` and wipes whatever the moved-from string
  // still holds (its small-string buffer).
  explicit secret_string(std::string&& bytes) noexcept;

  secret_string(secret_string&& other) noexcept;
  secret_string& operator=(secret_string&& other) noexcept;
  secret_string(const secret_string&) = delete;
  secret_string& operator=(const secret_string&) = delete;
  ~secret_string();

  // An explicit copy.
  [[nodiscard]] secret_string clone() const;

  [[nodiscard]] std::string_view view() const noexcept { return value_; }
  [[nodiscard]] std::size_t size() const noexcept { return value_.size(); }
  [[nodiscard]] bool empty() const noexcept { return value_.empty(); }

  // Mutable access to the bytes [data(), data() + size()), e.g. for a digest to
  // write into a secret_string(n, '\0').
  [[nodiscard]] char* data() noexcept { return value_.data(); }

  // A string of n copies of c (used to preallocate a buffer to fill through data()).
  secret_string(std::size_t n, char c);

  void reserve(std::size_t capacity);
  void append(std::string_view bytes);
  void append(char c);

  // Wipes and empties the string; the capacity is kept (and wiped).
  void clear() noexcept;

  // Logging a secret is a compile error, with a clear message.
  friend std::ostream& operator<<(std::ostream&, const secret_string&) = delete;

 private:
  void grow_to(std::size_t capacity);

  std::string value_;
};

// Wipes every byte a std::string owns (size and spare capacity) and empties it.
// For intermediate buffers that held secrets.
void cleanse_string(std::string& s) noexcept;

}  // namespace pgwire
