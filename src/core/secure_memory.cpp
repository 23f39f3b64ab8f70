#include "core/secure_memory.hpp"

#include <malloc.h>
#include <openssl/crypto.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace vaultwire::secure_memory {

void* malloc(std::size_t n) noexcept { return std::malloc(n); }

void* calloc(std::size_t count, std::size_t size) noexcept { return std::calloc(count, size); }

void free(void* p) noexcept {
  if (p == nullptr) return;
  // explicit_bzero: a store the compiler may not drop because the block dies next.
  explicit_bzero(p, malloc_usable_size(p));
  std::free(p);
}

void* realloc(void* p, std::size_t n) noexcept {
  if (p == nullptr) return malloc(n);
  if (n == 0) {
    free(p);
    return nullptr;
  }
  const std::size_t have = malloc_usable_size(p);
  if (n <= have) return p;  // fits: keep the block (a shrink gives nothing back)
  void* q = std::malloc(n);
  if (q == nullptr) return nullptr;  // p untouched, as realloc promises
  std::memcpy(q, p, have);
  free(p);
  return q;
}

char* strdup(const char* s) noexcept {
  const std::size_t n = std::strlen(s) + 1;
  auto* out = static_cast<char*>(std::malloc(n));
  if (out != nullptr) std::memcpy(out, s, n);
  return out;
}

namespace {

void* openssl_malloc(std::size_t n, const char*, int) { return n == 0 ? nullptr : malloc(n); }
void* openssl_realloc(void* p, std::size_t n, const char*, int) { return realloc(p, n); }
void openssl_free(void* p, const char*, int) { free(p); }

std::atomic<bool> openssl_installed{false};

}  // namespace

bool install_for_openssl() noexcept {
  const bool ok = CRYPTO_set_mem_functions(&openssl_malloc, &openssl_realloc, &openssl_free) == 1;
  if (ok) openssl_installed.store(true);
  return ok;
}

bool installed_for_openssl() noexcept { return openssl_installed.load(); }

}  // namespace vaultwire::secure_memory
