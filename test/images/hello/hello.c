/*
 * hello: Skiff's test app, in the spirit of Knative's helloworld-go and
 * autoscale-go, as one static C binary so that the image is FROM scratch and a
 * cold start measures Docker, not a language runtime.
 *
 * Environment
 *   PORT (8080)  HOST (0.0.0.0)  TARGET (World)  K_REVISION K_SERVICE K_CONFIGURATION
 *   STARTUP_DELAY_MS   sleep before listening (slow starters)
 *   HEALTHZ_DELAY_MS   /healthz answers 503 until this long after start
 *   EXIT_ON_START      exit with this code at once (crash loops)
 *
 * Routes
 *   /            "Hello {TARGET}!" + header K-Revision; ?sleep=ms ?prime=N ?bloat=MB
 *   /healthz     200 ok (or 503 while HEALTHZ_DELAY_MS runs, or after /healthz/fail)
 *   /healthz/fail, /healthz/ok   make /healthz answer 503 / 200 from now on
 *   /info        JSON: env of the runtime contract, uid, argv, /tmp writability
 *   /stats       JSON: requests in flight and served
 *   /crash?code=N  exit(N) at once
 *   /status      text: this process's /proc/self/status (uid, capabilities, NoNewPrivs)
 *   /connect?port=N  text: "connected" or "failed: <errno text>" for a TCP connect
 *                from inside the container to its own 127.0.0.1:N (isolation tests)
 *
 * `hello check PATH` (an exec probe): GET 127.0.0.1:$PORT PATH, exit 0 on 200, else 1.
 *
 * SIGTERM: stop accepting, let in-flight requests finish, exit 0.
 * HTTP/1.1 with keep-alive, one thread per connection.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE 16384

static atomic_int inflight = 0;
static atomic_long served = 0;
static volatile sig_atomic_t terminating = 0;
static atomic_int unhealthy = 0;
static struct timespec started;
static int g_argc;
static char **g_argv;

static const char *env_or(const char *name, const char *fallback) {
  const char *v = getenv(name);
  return v && *v ? v : fallback;
}

static long env_long(const char *name, long fallback) {
  const char *v = getenv(name);
  return v && *v ? strtol(v, NULL, 10) : fallback;
}

static long elapsed_ms(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - started.tv_sec) * 1000 + (now.tv_nsec - started.tv_nsec) / 1000000;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}

static void logf_(FILE *f, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vfprintf(f, fmt, ap);
  va_end(ap);
  fputc('\n', f);
  fflush(f);
}

/* Growable output buffer for response bodies. */
typedef struct {
  char *data;
  size_t len, cap;
} sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) {
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = b->cap - b->len;
    int n = vsnprintf(b->data ? b->data + b->len : NULL, room, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < room) {
      b->len += (size_t)n;
      return;
    }
    size_t cap = b->cap ? b->cap * 2 : 512;
    while (cap - b->len <= (size_t)n) cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) return;
    b->data = d;
    b->cap = cap;
  }
}

static void sb_json_str(sbuf *b, const char *s) {
  if (!s) {
    sb_add(b, "null");
    return;
  }
  sb_add(b, "\"");
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') sb_add(b, "\\%c", c);
    else if (c < 0x20) sb_add(b, "\\u%04x", c);
    else sb_add(b, "%c", c);
  }
  sb_add(b, "\"");
}

/* Value of `key` in a query string "a=1&b=2", or -1 when absent. */
static long query_long(const char *query, const char *key) {
  if (!query) return -1;
  size_t klen = strlen(key);
  const char *p = query;
  while (p && *p) {
    if (strncmp(p, key, klen) == 0 && p[klen] == '=') return strtol(p + klen + 1, NULL, 10);
    p = strchr(p, '&');
    if (p) p++;
  }
  return -1;
}

static long largest_prime_upto(long n) {
  for (long c = n; c >= 2; c--) {
    int prime = 1;
    for (long d = 2; d * d <= c; d++) {
      if (c % d == 0) {
        prime = 0;
        break;
      }
    }
    if (prime) return c;
  }
  return 0;
}

static int tmp_writable(void) {
  char path[64];
  snprintf(path, sizeof path, "/tmp/.hello-%d-%ld", getpid(), (long)pthread_self() & 0xffff);
  int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0600);
  if (fd < 0) return 0;
  int ok = write(fd, "ok", 2) == 2;
  close(fd);
  unlink(path);
  return ok;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static int respond(int fd, int status, const char *ctype, const sbuf *body, int keep_alive) {
  const char *text = status == 200 ? "OK" : status == 404 ? "Not Found" : status == 503 ? "Service Unavailable" : "Error";
  char head[512];
  int n = snprintf(head, sizeof head,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nK-Revision: %s\r\n"
                   "Connection: %s\r\n\r\n",
                   status, text, ctype, body->len, env_or("K_REVISION", ""),
                   keep_alive ? "keep-alive" : "close");
  if (write_all(fd, head, (size_t)n) < 0) return -1;
  return body->len ? write_all(fd, body->data, body->len) : 0;
}

/* Handle one parsed request; returns <0 when the connection must close. */
static int handle(int fd, char *target, int keep_alive) {
  char *query = strchr(target, '?');
  if (query) *query++ = '\0';
  sbuf body = {0};
  int status = 200;
  const char *ctype = "text/plain; charset=utf-8";

  if (strcmp(target, "/healthz/fail") == 0 || strcmp(target, "/healthz/ok") == 0) {
    atomic_store(&unhealthy, target[9] == 'f');
    sb_add(&body, "healthz will answer %d\n", target[9] == 'f' ? 503 : 200);
  } else if (strcmp(target, "/healthz") == 0) {
    if (atomic_load(&unhealthy) || elapsed_ms() < env_long("HEALTHZ_DELAY_MS", 0)) {
      status = 503;
      sb_add(&body, "starting\n");
    } else {
      sb_add(&body, "ok\n");
    }
  } else if (strcmp(target, "/crash") == 0) {
    long code = query_long(query, "code");
    if (code < 0) code = 1;
    logf_(stderr, "crash requested: exiting with code %ld", code);
    _exit((int)code);
  } else if (strcmp(target, "/status") == 0) {
    int sfd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (sfd < 0) {
      status = 500;
      sb_add(&body, "cannot open /proc/self/status: %s\n", strerror(errno));
    } else {
      char chunk[4096];
      ssize_t r;
      while ((r = read(sfd, chunk, sizeof chunk)) > 0) sb_add(&body, "%.*s", (int)r, chunk);
      close(sfd);
    }
  } else if (strcmp(target, "/connect") == 0) {
    long port = query_long(query, "port");
    if (port <= 0 || port > 65535) {
      status = 400;
      sb_add(&body, "give ?port=N (1-65535)\n");
    } else {
      struct sockaddr_in to = {0};
      to.sin_family = AF_INET;
      to.sin_port = htons((uint16_t)port);
      to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      int cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      struct timeval tv = {2, 0};
      setsockopt(cfd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      if (connect(cfd, (struct sockaddr *)&to, sizeof to) == 0) sb_add(&body, "connected\n");
      else sb_add(&body, "failed: %s\n", strerror(errno));
      close(cfd);
    }
  } else if (strcmp(target, "/stats") == 0) {
    ctype = "application/json";
    sb_add(&body, "{\"inflight\":%d,\"served\":%ld}\n", atomic_load(&inflight) - 1, atomic_load(&served));
  } else if (strcmp(target, "/info") == 0) {
    ctype = "application/json";
    sb_add(&body, "{\"target\":");
    sb_json_str(&body, env_or("TARGET", "World"));
    const char *names[] = {"K_REVISION", "K_SERVICE", "K_CONFIGURATION", "PORT", "HOST"};
    const char *keys[] = {"revision", "service", "configuration", "port", "host"};
    for (int i = 0; i < 5; i++) {
      sb_add(&body, ",\"%s\":", keys[i]);
      sb_json_str(&body, getenv(names[i]));
    }
    sb_add(&body, ",\"uid\":%d,\"tmpWritable\":%s,\"argv\":[", (int)getuid(), tmp_writable() ? "true" : "false");
    for (int i = 0; i < g_argc; i++) {
      if (i) sb_add(&body, ",");
      sb_json_str(&body, g_argv[i]);
    }
    sb_add(&body, "]}\n");
  } else {
    long bloat = query_long(query, "bloat");
    long prime = query_long(query, "prime");
    long sleep = query_long(query, "sleep");
    char *mem = NULL;
    sb_add(&body, "Hello %s!\n", env_or("TARGET", "World"));
    if (bloat > 0) {
      size_t bytes = (size_t)bloat * 1024 * 1024;
      mem = malloc(bytes);
      if (mem) {
        for (size_t i = 0; i < bytes; i += 4096) mem[i] = 1; /* touch every page */
        sb_add(&body, "Allocated %ld Mb of memory.\n", bloat);
      } else {
        sb_add(&body, "Could not allocate %ld Mb of memory.\n", bloat);
      }
    }
    if (prime > 0) sb_add(&body, "The largest prime less than %ld is %ld.\n", prime, largest_prime_upto(prime));
    if (sleep > 0) {
      sleep_ms(sleep);
      sb_add(&body, "Slept for %ld milliseconds.\n", sleep);
    }
    free(mem);
  }
  int rc = respond(fd, status, ctype, &body, keep_alive);
  free(body.data);
  return rc;
}

static void *connection(void *arg) {
  int fd = (int)(long)arg;
  char *buf = malloc(BUF_SIZE);
  size_t have = 0;
  int open_ = buf != NULL;
  while (open_) {
    char *end = have ? memmem(buf, have, "\r\n\r\n", 4) : NULL;
    if (!end) {
      if (have == BUF_SIZE) break; /* header too large */
      ssize_t r = recv(fd, buf + have, BUF_SIZE - have, 0);
      if (r <= 0) break;
      have += (size_t)r;
      continue;
    }
    atomic_fetch_add(&inflight, 1);
    size_t head_len = (size_t)(end - buf) + 4;
    *end = '\0';
    /* Request line: METHOD SP target SP version */
    char *line_end = strstr(buf, "\r\n");
    if (line_end) *line_end = '\0';
    char *sp1 = strchr(buf, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    int keep_alive = sp2 && strncmp(sp2 + 1, "HTTP/1.1", 8) == 0;
    long content_length = 0;
    for (char *h = line_end ? line_end + 2 : NULL; h && *h;) {
      char *next = strstr(h, "\r\n");
      if (next) *next = '\0';
      if (strncasecmp(h, "Content-Length:", 15) == 0) content_length = strtol(h + 15, NULL, 10);
      if (strncasecmp(h, "Connection:", 11) == 0) {
        if (strcasestr(h + 11, "close")) keep_alive = 0;
        if (strcasestr(h + 11, "keep-alive")) keep_alive = 1;
      }
      h = next ? next + 2 : NULL;
    }
    if (terminating) keep_alive = 0;
    /* Drop the body (we never need it), keeping any pipelined bytes after it. */
    size_t consumed = head_len;
    while (content_length > 0) {
      size_t avail = have - consumed;
      if (avail > 0) {
        size_t take = avail < (size_t)content_length ? avail : (size_t)content_length;
        consumed += take;
        content_length -= (long)take;
        continue;
      }
      ssize_t r = recv(fd, buf, BUF_SIZE, 0);
      if (r <= 0) {
        open_ = 0;
        break;
      }
      have = (size_t)r;
      consumed = 0;
    }
    int rc = -1;
    if (open_ && sp1 && sp2) {
      *sp2 = '\0';
      rc = handle(fd, sp1 + 1, keep_alive);
      atomic_fetch_add(&served, 1);
    }
    atomic_fetch_sub(&inflight, 1);
    if (rc < 0 || !keep_alive) break;
    memmove(buf, buf + consumed, have - consumed);
    have -= consumed;
  }
  free(buf);
  close(fd);
  return NULL;
}

static void on_term(int sig) {
  (void)sig;
  terminating = 1;
}

/* `hello check PATH`: exit 0 when GET PATH on this container's own port answers 200. */
static int check_path(const char *path) {
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)env_long("PORT", 8080));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) return 1;
  char req[512];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
  if (write(fd, req, (size_t)n) != n) return 1;
  char buf[64] = {0};
  ssize_t got = read(fd, buf, sizeof buf - 1);
  close(fd);
  return got > 12 && strncmp(buf + 8, " 200", 4) == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc >= 3 && strcmp(argv[1], "check") == 0) return check_path(argv[2]);
  g_argc = argc;
  g_argv = argv;
  clock_gettime(CLOCK_MONOTONIC, &started);
  signal(SIGPIPE, SIG_IGN);
  struct sigaction sa = {0};
  sa.sa_handler = on_term;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);

  long exit_code = env_long("EXIT_ON_START", -1);
  if (exit_code >= 0) {
    logf_(stderr, "fatal: EXIT_ON_START=%ld, exiting", exit_code);
    return (int)exit_code;
  }
  long delay = env_long("STARTUP_DELAY_MS", 0);
  if (delay > 0) sleep_ms(delay);

  const char *host = env_or("HOST", "0.0.0.0");
  long port = env_long("PORT", 8080);
  struct sockaddr_in addr = {0};
  addr.sin_family = AF_INET;
  addr.sin_port = htons((uint16_t)port);
  if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
    logf_(stderr, "fatal: HOST=%s is not an IPv4 address", host);
    return 2;
  }
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 1024) < 0) {
    logf_(stderr, "fatal: cannot listen on %s:%ld: %s", host, port, strerror(errno));
    return 1;
  }
  logf_(stdout, "hello: listening on %s:%ld (revision %s)", host, port, env_or("K_REVISION", "-"));

  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  while (!terminating) {
    struct pollfd p = {lfd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) continue;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {120, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    pthread_t t;
    if (pthread_create(&t, &attr, connection, (void *)(long)fd) != 0) close(fd);
  }
  close(lfd);
  logf_(stdout, "hello: SIGTERM, draining %d in-flight request(s)", atomic_load(&inflight));
  while (atomic_load(&inflight) > 0) sleep_ms(5);
  logf_(stdout, "hello: drained, exiting");
  return 0;
}
