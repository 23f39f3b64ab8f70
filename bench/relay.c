/* A byte relay: the floor of what any TCP proxy costs on this machine.
 *
 *   relay LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT
 *
 * bench.py runs it as the "relay" reference path of S1 and S6: pgbench talks TLS to
 * PostgreSQL end to end through it, and the relay only moves bytes. Per round trip it
 * makes the fewest system calls a proxy can: one epoll_wait, one read and one write
 * each way, on a level-triggered epoll set that never needs epoll_ctl after setup. No
 * TLS, no protocol parsing, no allocation on the data path. Whatever CPU it spends per
 * transaction is kernel work (loopback TCP, wake-ups) that vaultwire, PgBouncer or
 * any other proxy pays as well.
 *
 * A benchmark tool, not part of vaultwire: one thread, a blocking connect to the
 * upstream per accepted client, a fixed 64 KiB buffer per direction.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
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
  for (int i = 0; i < 2; ++i) close(p->side[i].fd); /* close removes it from the epoll set */
  p->closed = 1;
  p->next_closed = closed_pairs;
  closed_pairs = p;
}

/* Writes what buf[i] holds to side[1 - i]. Returns -1 when the pair is closed. */
static int drain(struct pair *p, int i) {
  struct side *out = &p->side[1 - i];
  while (p->len[i] > 0) {
    ssize_t n = write(out->fd, p->buf[i] + p->off[i], p->len[i]);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
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

static void on_readable(struct side *s) {
  struct pair *p = s->pair;
  int i = s->index;
  ssize_t n = read(s->fd, p->buf[i], BUF);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    close_pair(p);
    return;
  }
  p->len[i] = (size_t)n;
  drain(p, i);
}

static void on_writable(struct side *out) {
  struct pair *p = out->pair;
  int i = 1 - out->index; /* the direction that was blocked on this socket */
  if (drain(p, i) == 0 && p->len[i] == 0) update_events(p);
}

static int connect_upstream(const struct addrinfo *ai) {
  int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0) return -1;
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
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
  if (argc != 4) {
    fprintf(stderr, "usage: relay LISTEN_PORT UPSTREAM_HOST UPSTREAM_PORT\n");
    return 2;
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
        int ufd = connect_upstream(up);
        if (ufd < 0) {
          close(cfd);
          continue;
        }
        struct pair *p = calloc(1, sizeof *p);
        if (p == NULL) die("calloc");
        p->side[0] = (struct side){p, 0, cfd, 0};
        p->side[1] = (struct side){p, 1, ufd, 0};
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
