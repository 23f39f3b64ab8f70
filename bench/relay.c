/* A byte relay: the floor of what any TCP proxy costs on this machine.
 *
 *   relay LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT
 *   relay LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT --tls-upstream CA_FILE SERVER_NAME
 *
 * bench.py runs it as the "relay" reference path of S1 and S6: pgbench talks TLS to
 * PostgreSQL end to end through it, and the relay only moves bytes. Per round trip it
 * makes the fewest system calls a proxy can: one epoll_wait, one read and one write
 * each way, on a level-triggered epoll set that never needs epoll_ctl after setup. No
 * TLS, no protocol parsing, no allocation on the data path. Whatever CPU it spends per
 * transaction is kernel work (loopback TCP, wake-ups) that vaultwire, PgBouncer or
 * any other proxy pays as well.
 *
 * With --tls-upstream it is the "tls-relay" path: the floor of a proxy that, like
 * vaultwire, holds the upstream TLS session itself (it must, to log in with a
 * credential the client never sees). The client speaks plaintext (sslmode=disable);
 * for each client the relay sends PostgreSQL an SSLRequest, completes a TLS handshake
 * verified against CA_FILE and SERVER_NAME, and from then on moves bytes: what the
 * client sends goes out through SSL_write, what SSL_read returns goes to the client.
 * It still parses nothing, so the client logs in itself, inside the relay's TLS.
 *
 * A benchmark tool, not part of vaultwire: one thread, a blocking connect (and
 * handshake) to the upstream per accepted client, a fixed 64 KiB buffer per direction.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { BUF = 64 * 1024, MAX_EVENTS = 64 };

struct pair;

/* One socket of a pair; side[i] reads into buf[i] and buf[i] drains to side[1 - i]. */
struct side {
  struct pair *pair;
  int index;
  int fd;
  SSL *ssl; /* the upstream side in --tls-upstream mode, else NULL */
  unsigned events; /* what the epoll set has for fd */
};

struct pair {
  struct side side[2];
  char buf[2][BUF];
  size_t off[2], len[2]; /* bytes of buf[i] not yet written to the other side */
  int closed;
  struct pair *next_closed;
};

static int epfd;
static SSL_CTX *tls_ctx; /* --tls-upstream */
static const char *tls_server_name;
/* Pairs closed during one batch of events, freed after it: the other socket of a
 * closed pair may still have an event in the same batch. */
static struct pair *closed_pairs;

static void die(const char *what) {
  perror(what);
  exit(1);
}

/* Side j reads while buf[j] is empty and waits to write while buf[1 - j] is not.
 * Only a full socket buffer changes either, so the data path makes no epoll_ctl. */
static void update_events(struct pair *p) {
  for (int j = 0; j < 2; ++j) {
    struct side *s = &p->side[j];
    unsigned want = (p->len[j] == 0 ? EPOLLIN : 0) | (p->len[1 - j] > 0 ? EPOLLOUT : 0);
    if (want == s->events) continue;
    struct epoll_event ev = {.events = want, .data.ptr = s};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &ev) != 0) die("epoll_ctl");
    s->events = want;
  }
}

static void close_pair(struct pair *p) {
  for (int i = 0; i < 2; ++i) {
    if (p->side[i].ssl != NULL) SSL_free(p->side[i].ssl);
    close(p->side[i].fd); /* close removes it from the epoll set */
  }
  p->closed = 1;
  p->next_closed = closed_pairs;
  closed_pairs = p;
}

/* One read or write on a side, through its TLS session if it has one. Returns the
 * bytes moved, -1 when it would block (or was interrupted), 0 at the end or on error. */
static ssize_t side_read(struct side *s, char *buf, size_t n) {
  if (s->ssl == NULL) {
    ssize_t r = read(s->fd, buf, n);
    return r < 0 && (errno == EAGAIN || errno == EINTR) ? -1 : (r < 0 ? 0 : r);
  }
  int r = SSL_read(s->ssl, buf, (int)n);
  if (r > 0) return r;
  int e = SSL_get_error(s->ssl, r);
  ERR_clear_error();
  return e == SSL_ERROR_WANT_READ ? -1 : 0;
}

static ssize_t side_write(struct side *s, const char *buf, size_t n) {
  if (s->ssl == NULL) {
    ssize_t r = write(s->fd, buf, n);
    return r < 0 && (errno == EAGAIN || errno == EINTR) ? -1 : (r < 0 ? 0 : r);
  }
  int r = SSL_write(s->ssl, buf, (int)n);
  if (r > 0) return r;
  int e = SSL_get_error(s->ssl, r);
  ERR_clear_error();
  return e == SSL_ERROR_WANT_WRITE ? -1 : 0;
}

/* Writes what buf[i] holds to side[1 - i]. Returns -1 when the pair is closed. */
static int drain(struct pair *p, int i) {
  struct side *out = &p->side[1 - i];
  while (p->len[i] > 0) {
    ssize_t n = side_write(out, p->buf[i] + p->off[i], p->len[i]);
    if (n < 0) {
      update_events(p); /* the other side is full: stop reading side i until it drains */
      return 0;
    }
    if (n <= 0) {
      close_pair(p);
      return -1;
    }
    p->off[i] += (size_t)n;
    p->len[i] -= (size_t)n;
  }
  p->off[i] = 0;
  return 0;
}

/* Reads side s into its buffer and drains it to the other side. A TLS side may hold
 * decrypted bytes or whole records that the socket no longer signals, so it reads
 * on until OpenSSL would block. */
static void on_readable(struct side *s) {
  struct pair *p = s->pair;
  int i = s->index;
  do {
    ssize_t n = side_read(s, p->buf[i], BUF);
    if (n < 0) return;
    if (n == 0) {
      close_pair(p);
      return;
    }
    p->len[i] = (size_t)n;
    if (drain(p, i) != 0) return;
  } while (s->ssl != NULL && p->len[i] == 0 && SSL_has_pending(s->ssl));
}

static void on_writable(struct side *out) {
  struct pair *p = out->pair;
  int i = 1 - out->index; /* the direction that was blocked on this socket */
  if (drain(p, i) == 0 && p->len[i] == 0) {
    update_events(p);
    if (p->side[i].ssl != NULL && SSL_has_pending(p->side[i].ssl)) on_readable(&p->side[i]);
  }
}

/* SSLRequest and a verified handshake on a blocking socket. Returns NULL on failure. */
static SSL *tls_upstream(int fd) {
  static const unsigned char request[8] = {0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}; /* 80877103 */
  char answer;
  if (write(fd, request, sizeof request) != (ssize_t)sizeof request || read(fd, &answer, 1) != 1 ||
      answer != 'S') {
    fprintf(stderr, "relay: the upstream refused TLS\n");
    return NULL;
  }
  SSL *ssl = SSL_new(tls_ctx);
  if (ssl == NULL) return NULL;
  SSL_set_tlsext_host_name(ssl, tls_server_name);
  if (SSL_set1_host(ssl, tls_server_name) != 1 || SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1) {
    char msg[256];
    ERR_error_string_n(ERR_get_error(), msg, sizeof msg);
    fprintf(stderr, "relay: upstream TLS handshake failed: %s\n", msg);
    SSL_free(ssl);
    return NULL;
  }
  return ssl;
}

static int connect_upstream(const struct addrinfo *ai, SSL **ssl) {
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0) return -1;
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
      (tls_ctx != NULL && (*ssl = tls_upstream(fd)) == NULL) ||
      fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void add(struct side *s) {
  int one = 1;
  setsockopt(s->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  s->events = EPOLLIN;
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &ev) != 0) die("epoll_ctl add");
}

int main(int argc, char **argv) {
  if (argc != 4 && !(argc == 7 && strcmp(argv[4], "--tls-upstream") == 0)) {
    fprintf(stderr, "usage: relay LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT [--tls-upstream CA_FILE SERVER_NAME]\n");
    return 2;
  }
  if (argc == 7) {
    /* What a proxy needs to verify the server, and the fastest data path: read-ahead,
     * buffers kept. */
    tls_ctx = SSL_CTX_new(TLS_client_method());
    if (tls_ctx == NULL) die("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(tls_ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(tls_ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(tls_ctx, 1);
    SSL_CTX_set_verify(tls_ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(tls_ctx, argv[5], NULL) != 1) {
      fprintf(stderr, "relay: cannot load CA file %s\n", argv[5]);
      return 1;
    }
    tls_server_name = argv[6];
  }
  signal(SIGPIPE, SIG_IGN);
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *up;
  int rc = getaddrinfo(argv[2], argv[3], &hints, &up);
  if (rc != 0) {
    fprintf(stderr, "relay: %s: %s\n", argv[2], gai_strerror(rc));
    return 1;
  }

  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (lfd < 0) die("socket");
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1])),
                           .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0) die("bind");
  if (listen(lfd, 1024) != 0) die("listen");

  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) die("epoll_create1");
  struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev) != 0) die("epoll_ctl listen");
  fprintf(stderr, "relay: listening on 127.0.0.1:%s\n", argv[1]);

  struct epoll_event events[MAX_EVENTS];
  for (;;) {
    int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int k = 0; k < n; ++k) {
      struct side *s = events[k].data.ptr;
      if (s == NULL) {
        int cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) continue;
        SSL *ssl = NULL;
        int ufd = connect_upstream(up, &ssl);
        if (ufd < 0) {
          close(cfd);
          continue;
        }
        struct pair *p = calloc(1, sizeof *p);
        if (p == NULL) die("calloc");
        p->side[0] = (struct side){p, 0, cfd, NULL, 0};
        p->side[1] = (struct side){p, 1, ufd, ssl, 0};
        add(&p->side[0]);
        add(&p->side[1]);
        continue;
      }
      if (s->pair->closed) continue;
      if (events[k].events & EPOLLOUT) on_writable(s);
      if (!s->pair->closed && (events[k].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) &&
          s->pair->len[s->index] == 0)
        on_readable(s);
    }
    while (closed_pairs != NULL) {
      struct pair *p = closed_pairs;
      closed_pairs = p->next_closed;
      free(p);
    }
  }
}
