/* malloc_count: counts a process's heap allocations, for the per-connection
 * allocation figures in ANALYSIS.md (vaultwire against PgBouncer in S2).
 *
 *   cc -O2 -shared -fPIC -o malloc_count.so bench/malloc_count.c -ldl
 *   MALLOC_COUNT_OUT=/tmp/counts LD_PRELOAD=$PWD/malloc_count.so vaultwire run ...
 *
 * Counts calls to malloc, calloc, realloc (a new block only: ptr NULL or moved is
 * not told apart, every realloc counts), posix_memalign, aligned_alloc, memalign
 * and free. At exit (a clean exit runs destructors; PgBouncer's SIGTERM exit does
 * too) one line "pid allocs frees reallocs" is appended to MALLOC_COUNT_OUT.
 *
 * glibc's operator new calls malloc, so C++ allocations are counted as well. The
 * shim forwards to glibc's own entry points (__libc_*), so no dlsym bootstrap
 * problem arises from dlsym itself allocating.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static atomic_ulong allocs, frees, reallocs;

void *malloc(size_t n) {
  atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
  return __libc_malloc(n);
}

void *calloc(size_t a, size_t b) {
  atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
  return __libc_calloc(a, b);
}

void *realloc(void *p, size_t n) {
  atomic_fetch_add_explicit(&reallocs, 1, memory_order_relaxed);
  return __libc_realloc(p, n);
}

void *memalign(size_t align, size_t n) {
  atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
  return __libc_memalign(align, n);
}

void *aligned_alloc(size_t align, size_t n) { return memalign(align, n); }

int posix_memalign(void **out, size_t align, size_t n) {
  void *p = memalign(align, n);
  if (p == NULL) return 12; /* ENOMEM */
  *out = p;
  return 0;
}

void free(void *p) {
  if (p != NULL) atomic_fetch_add_explicit(&frees, 1, memory_order_relaxed);
  __libc_free(p);
}

__attribute__((destructor)) static void report(void) {
  const char *path = getenv("MALLOC_COUNT_OUT");
  if (path == NULL) return;
  char line[128];
  int len = snprintf(line, sizeof line, "%ld %lu %lu %lu\n", (long)getpid(), atomic_load(&allocs),
                     atomic_load(&frees), atomic_load(&reallocs));
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644);
  if (fd < 0) return;
  if (len > 0) (void)!write(fd, line, (size_t)len);
  close(fd);
}
