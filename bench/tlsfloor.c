/* The memory floor of an upstream TLS session: what OpenSSL alone holds per idle
 * verified client session to PostgreSQL, with vaultwire's TLS settings.
 *
 *   tlsfloor HOST PORT CA_FILE SERVER_NAME USER DATABASE N
 *
 * bench.py runs it in S4 beside the 1,000 idle connections through vaultwire and
 * PgBouncer. It opens one session as a warm-up (OpenSSL's one-time state: the loaded
 * CA, fetched algorithms, error strings), then N more. Each is what vaultwire's
 * upstream holds when idle: SSLRequest, a TLS handshake verified against CA_FILE and
 * SERVER_NAME (verify-full), a StartupMessage, and the server's first reply read,
 * so everything the server sends after the handshake (TLS 1.3 session tickets) has
 * been processed. The SSL_CTX has vaultwire's modes: TLS 1.2 at least, no session
 * tickets, buffers released when empty, read-ahead. No socket layer, no event loop, no protocol state:
 * only the SSL objects and what they point to.
 *
 * It prints the process's VmRSS before and after the N sessions, the difference per
 * session, and the heap in use per session (glibc's mallinfo2: bytes allocated and
 * not freed, without the allocator's free holes), in KiB, as one line:
 *   tlsfloor sessions=N before_kib=B after_kib=A kib_per_session=K heap_kib_per_session=H
 * With --sites after N (bench/ANALYSIS.md, S4) it routes OpenSSL's allocations through
 * counting hooks (CRYPTO_set_mem_functions, which pass OpenSSL's source file and line)
 * and then prints, per session, the bytes OpenSSL asked for and still holds, and the
 * number of blocks, by allocating source line. The hooks add a 16-byte header to each
 * block, so the line's RSS and heap figures are not the floor in that mode.
 * A benchmark tool, not part of vaultwire: blocking sockets with a 30 s timeout, exit
 * status 1 with a message on any failure.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <malloc.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* --sites: OpenSSL's live allocations by source line (file pointer and line). */
struct site {
  const char *file;
  int line;
  long bytes, blocks;      /* live now */
  long bytes0, blocks0;    /* live when the counted sessions began */
};
enum { max_sites = 4096 };
static struct site sites[max_sites];
struct block_header {
  size_t size;
  size_t site;
};

static size_t site_index(const char *file, int line) {
  size_t h = ((size_t)(uintptr_t)file ^ (size_t)line * 2654435761u) % max_sites;
  for (size_t i = 0; i < max_sites; ++i) {
    struct site *s = &sites[(h + i) % max_sites];
    if (s->file == NULL) {
      s->file = file != NULL ? file : "?";
      s->line = line;
    }
    if (s->file == (file != NULL ? file : "?") && s->line == line) return (h + i) % max_sites;
  }
  abort();
}

static void *count_malloc(size_t n, const char *file, int line) {
  struct block_header *h = malloc(sizeof *h + n);
  if (h == NULL) return NULL;
  h->size = n;
  h->site = site_index(file, line);
  sites[h->site].bytes += (long)n;
  sites[h->site].blocks++;
  return h + 1;
}

static void count_free(void *p, const char *file, int line) {
  (void)file;
  (void)line;
  if (p == NULL) return;
  struct block_header *h = (struct block_header *)p - 1;
  sites[h->site].bytes -= (long)h->size;
  sites[h->site].blocks--;
  free(h);
}

static void *count_realloc(void *p, size_t n, const char *file, int line) {
  if (p == NULL) return count_malloc(n, file, line);
  if (n == 0) {
    count_free(p, file, line);
    return NULL;
  }
  struct block_header *h = (struct block_header *)p - 1;
  const size_t old = h->size;
  struct block_header *moved = realloc(h, sizeof *moved + n);
  if (moved == NULL) return NULL;
  sites[moved->site].bytes += (long)n - (long)old;
  moved->size = n;
  return moved + 1;
}

static void print_sites(long n) {
  long total = 0, blocks = 0;
  for (size_t i = 0; i < max_sites; ++i) {
    total += sites[i].bytes - sites[i].bytes0;
    blocks += sites[i].blocks - sites[i].blocks0;
  }
  printf("openssl per session: %.1f bytes in %.1f blocks\n", (double)total / (double)n, (double)blocks / (double)n);
  for (;;) { /* largest first; each site printed once */
    struct site *best = NULL;
    for (size_t i = 0; i < max_sites; ++i) {
      struct site *s = &sites[i];
      if (s->file == NULL || s->line < 0 || (s->bytes == s->bytes0 && s->blocks == s->blocks0)) continue;
      if (best == NULL || s->bytes - s->bytes0 > best->bytes - best->bytes0) best = s;
    }
    if (best == NULL) break;
    printf("%9.1f B %7.2f blocks  %s:%d\n", (double)(best->bytes - best->bytes0) / (double)n,
           (double)(best->blocks - best->blocks0) / (double)n, best->file, best->line);
    best->line = -1 - best->line; /* printed */
  }
}

struct target {
  struct sockaddr_storage addr;
  socklen_t addr_len;
  const char *server_name;
  const char *user;
  const char *database;
};

static void fail(const char *what, SSL *ssl, int rc) {
  fprintf(stderr, "tlsfloor: %s failed", what);
  if (ssl != NULL) fprintf(stderr, " (SSL_get_error %d)", SSL_get_error(ssl, rc));
  unsigned long e = ERR_get_error();
  if (e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    fprintf(stderr, ": %s", buf);
  }
  fputc('\n', stderr);
  exit(1);
}

static long vmrss_kib(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) fail("open /proc/self/status", NULL, 0);
  char line[256];
  long kib = -1;
  while (fgets(line, sizeof line, f) != NULL)
    if (strncmp(line, "VmRSS:", 6) == 0) kib = strtol(line + 6, NULL, 10);
  fclose(f);
  if (kib < 0) fail("read VmRSS", NULL, 0);
  return kib;
}

static void put32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

static void read_full_ssl(SSL *ssl, unsigned char *buf, size_t n) {
  size_t got = 0;
  while (got < n) {
    int rc = SSL_read(ssl, buf + got, (int)(n - got));
    if (rc <= 0) fail("SSL_read", ssl, rc);
    got += (size_t)rc;
  }
}

/* One idle session: returns the SSL object, its socket kept open under it. */
static SSL *open_session(SSL_CTX *ctx, const struct target *t) {
  int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail("socket", NULL, 0);
  struct timeval tv = {30, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (connect(fd, (const struct sockaddr *)&t->addr, t->addr_len) != 0) fail("connect", NULL, 0);

  unsigned char req[8];
  put32(req, 8);
  put32(req + 4, 80877103); /* SSLRequest */
  if (write(fd, req, sizeof req) != (ssize_t)sizeof req) fail("write SSLRequest", NULL, 0);
  char answer;
  if (read(fd, &answer, 1) != 1) fail("read SSLRequest answer", NULL, 0);
  if (answer != 'S') {
    fprintf(stderr, "tlsfloor: the server refused TLS (answered '%c')\n", answer);
    exit(1);
  }

  SSL *ssl = SSL_new(ctx);
  if (ssl == NULL || SSL_set_fd(ssl, fd) != 1) fail("SSL_new", NULL, 0);
  SSL_set_tlsext_host_name(ssl, t->server_name);
  if (SSL_set1_host(ssl, t->server_name) != 1) fail("SSL_set1_host", NULL, 0);
  int rc = SSL_connect(ssl);
  if (rc != 1) fail("TLS handshake (verify-full)", ssl, rc);

  unsigned char msg[512];
  size_t n = 8;
  const char *kv[] = {"user", t->user, "database", t->database};
  for (size_t i = 0; i < 4; ++i) {
    size_t len = strlen(kv[i]) + 1;
    if (n + len + 1 > sizeof msg) fail("StartupMessage too long", NULL, 0);
    memcpy(msg + n, kv[i], len);
    n += len;
  }
  msg[n++] = 0;
  put32(msg, (uint32_t)n);
  put32(msg + 4, 196608); /* protocol 3.0 */
  rc = SSL_write(ssl, msg, (int)n);
  if (rc != (int)n) fail("SSL_write StartupMessage", ssl, rc);

  /* The server's first reply: a whole message (an authentication request). */
  unsigned char head[5];
  read_full_ssl(ssl, head, sizeof head);
  uint32_t len = ((uint32_t)head[1] << 24) | ((uint32_t)head[2] << 16) | ((uint32_t)head[3] << 8) | head[4];
  if (head[0] != 'R' || len < 4 || len - 4 > sizeof msg) {
    fprintf(stderr, "tlsfloor: unexpected first reply (type '%c', length %u)\n", head[0], len);
    exit(1);
  }
  read_full_ssl(ssl, msg, len - 4);
  return ssl;
}

int main(int argc, char **argv) {
  const int by_site = argc == 9 && strcmp(argv[8], "--sites") == 0;
  if (argc != 8 && !by_site) {
    fprintf(stderr, "usage: tlsfloor HOST PORT CA_FILE SERVER_NAME USER DATABASE N [--sites]\n");
    return 2;
  }
  if (by_site && CRYPTO_set_mem_functions(count_malloc, count_realloc, count_free) != 1) {
    fprintf(stderr, "tlsfloor: OpenSSL allocated before the counting hooks\n");
    return 1;
  }
  struct target t;
  memset(&t, 0, sizeof t);
  struct addrinfo hints, *ai;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  int gai = getaddrinfo(argv[1], argv[2], &hints, &ai);
  if (gai != 0) {
    fprintf(stderr, "tlsfloor: %s:%s: %s\n", argv[1], argv[2], gai_strerror(gai));
    return 1;
  }
  memcpy(&t.addr, ai->ai_addr, ai->ai_addrlen);
  t.addr_len = ai->ai_addrlen;
  freeaddrinfo(ai);
  t.server_name = argv[4];
  t.user = argv[5];
  t.database = argv[6];
  long n = strtol(argv[7], NULL, 10);
  if (n <= 0) {
    fprintf(stderr, "tlsfloor: N must be a positive number\n");
    return 2;
  }

  /* vaultwire's upstream context (src/net/stream.cpp, make_client_tls_context). */
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL) fail("SSL_CTX_new", NULL, 0);
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_CLEANSE_PLAINTEXT | SSL_OP_NO_TICKET);
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  if (SSL_CTX_load_verify_locations(ctx, argv[3], NULL) != 1) fail("loading the CA file", NULL, 0);

  SSL **sessions = calloc((size_t)n + 1, sizeof *sessions);
  if (sessions == NULL) fail("calloc", NULL, 0);
  sessions[0] = open_session(ctx, &t); /* warm-up, not counted */
  for (size_t i = 0; i < max_sites; ++i) {
    sites[i].bytes0 = sites[i].bytes;
    sites[i].blocks0 = sites[i].blocks;
  }
  long before = vmrss_kib();
  size_t heap_before = mallinfo2().uordblks;
  for (long i = 1; i <= n; ++i) sessions[i] = open_session(ctx, &t);
  size_t heap_after = mallinfo2().uordblks;
  long after = vmrss_kib();
  printf("tlsfloor sessions=%ld before_kib=%ld after_kib=%ld kib_per_session=%.1f heap_kib_per_session=%.1f\n", n,
         before, after, (double)(after - before) / (double)n,
         ((double)heap_after - (double)heap_before) / 1024.0 / (double)n);
  if (by_site) print_sites(n);
  fflush(stdout);

  for (long i = 0; i <= n; ++i) {
    int fd = SSL_get_fd(sessions[i]);
    SSL_free(sessions[i]);
    close(fd);
  }
  free(sessions);
  SSL_CTX_free(ctx);
  return 0;
}
