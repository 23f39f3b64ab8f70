// secure_memory: a malloc family whose free wipes the whole block before handing it
// back, for C libraries that keep secrets in heap buffers vaultwire cannot reach:
// libcurl (curl_global_init_mem: the request it builds carries X-Vault-Token, its
// download buffer the credential's password) and OpenSSL (CRYPTO_set_mem_functions:
// record buffers hold decrypted tokens and passwords).
//
// The wipe covers malloc_usable_size(p) bytes, i.e. every byte the block owned, so no
// size header is needed and the blocks stay ordinary malloc blocks: a block from
// these functions may be released with ::free (not wiped) and ::malloc'd blocks may
// be passed to secure_memory::free (wiped). realloc never lets the allocator move a
// block behind our back: a block that must grow is copied, and the old one wiped.
#pragma once

#include <cstddef>

namespace vaultwire::secure_memory {

void* malloc(std::size_t n) noexcept;
void* calloc(std::size_t count, std::size_t size) noexcept;
void* realloc(void* p, std::size_t n) noexcept;
char* strdup(const char* s) noexcept;
void free(void* p) noexcept;

// Routes OpenSSL's own allocations through the functions above. OpenSSL accepts this
// only before its first allocation, so call it first thing in main(); false when too
// late (OpenSSL then keeps its plain allocator; SSL_OP_CLEANSE_PLAINTEXT still wipes
// record buffers).
[[nodiscard]] bool install_for_openssl() noexcept;
// True once install_for_openssl succeeded: every block OpenSSL frees is wiped.
[[nodiscard]] bool installed_for_openssl() noexcept;

}  // namespace vaultwire::secure_memory
