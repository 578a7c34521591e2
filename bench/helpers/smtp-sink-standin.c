// A stand-in for Postfix's smtp-sink where Postfix is not installed (the benchmarks' fast SMTP
// peer): the same arguments (`[-u user] [-c] host:port backlog`; -u and -c are accepted and
// ignored), accepts every command and message and discards it, and prints smtp-sink -c's
// `mesg=N` after each message, which bench/helpers/postfix-sink.ts reads. One thread, epoll,
// PIPELINING advertised; no TLS, no AUTH. Not a mail server: a counter that answers SMTP.
//   cc -O2 -o /tmp/smtp-sink-standin bench/helpers/smtp-sink-standin.c
//   BENCH_SMTP_SINK=/tmp/smtp-sink-standin node bench/drain.ts
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <errno.h>
#include <arpa/inet.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#define MAXC 4096
typedef struct { int data; char line[1024]; int ll; unsigned tail; } conn_t;
static conn_t *cs[MAXC];
static long mesg = 0;
static void say(int fd, const char *s) { ssize_t r = write(fd, s, strlen(s)); (void)r; }
int main(int argc, char **argv) {
  // args like smtp-sink: [-u user] [-c] host:port backlog
  const char *hp = NULL;
  for (int i = 1; i < argc; i++) { if (!strcmp(argv[i], "-u")) { i++; continue; } if (argv[i][0] == '-') continue; if (!hp) hp = argv[i]; }
  char host[64]; int port; const char *colon = strrchr(hp, ':'); snprintf(host, sizeof host, "%.*s", (int)(colon - hp), hp); port = atoi(colon + 1);
  int ls = socket(AF_INET, SOCK_STREAM, 0); int one = 1; setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) }; inet_pton(AF_INET, host, &a.sin_addr);
  if (bind(ls, (void *)&a, sizeof a) || listen(ls, 1000)) { perror("bind/listen"); return 1; }
  int ep = epoll_create1(0); struct epoll_event ev = { .events = EPOLLIN, .data.fd = ls }; epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  struct epoll_event evs[64]; static char buf[65536];
  for (;;) {
    int n = epoll_wait(ep, evs, 64, -1);
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == ls) {
        int c = accept(ls, NULL, NULL); if (c < 0 || c >= MAXC) { if (c >= 0) close(c); continue; }
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        cs[c] = calloc(1, sizeof(conn_t)); struct epoll_event e = { .events = EPOLLIN, .data.fd = c }; epoll_ctl(ep, EPOLL_CTL_ADD, c, &e);
        say(c, "220 minisink ESMTP\r\n"); continue;
      }
      conn_t *k = cs[fd]; ssize_t r = read(fd, buf, sizeof buf);
      if (r <= 0) { epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL); close(fd); free(k); cs[fd] = NULL; continue; }
      char out[8192]; int ol = 0; int closeit = 0;
      for (ssize_t j = 0; j < r; j++) {
        char ch = buf[j];
        if (k->data) {
          k->tail = (k->tail << 8) | (unsigned char)ch;
          // the end of the data: "\n.\r\n" (tail is seeded with CRLF, for a "." right after DATA)
          if (ch == '\n' && ((k->tail >> 8) & 0xFFFFFFu) == 0x0A2E0Du) { k->data = 0; mesg++; printf("mesg=%ld\n", mesg); fflush(stdout); ol += snprintf(out + ol, sizeof out - ol, "250 2.0.0 Ok: queued\r\n"); }
          continue;
        }
        if (ch == '\n') {
          k->line[k->ll] = 0; k->ll = 0; char *l = k->line;
          if (!strncasecmp(l, "EHLO", 4)) ol += snprintf(out + ol, sizeof out - ol, "250-minisink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n");
          else if (!strncasecmp(l, "DATA", 4)) { k->data = 1; k->tail = 0x0D0A; ol += snprintf(out + ol, sizeof out - ol, "354 End data with <CR><LF>.<CR><LF>\r\n"); }
          else if (!strncasecmp(l, "QUIT", 4)) { ol += snprintf(out + ol, sizeof out - ol, "221 Bye\r\n"); closeit = 1; }
          else ol += snprintf(out + ol, sizeof out - ol, "250 2.0.0 Ok\r\n");
          if (ol > (int)sizeof out - 200) { ssize_t w = write(fd, out, ol); (void)w; ol = 0; }
        } else if (k->ll < (int)sizeof k->line - 1) k->line[k->ll++] = ch;
      }
      if (ol) { ssize_t w = write(fd, out, ol); (void)w; }
      if (closeit) { epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL); close(fd); free(k); cs[fd] = NULL; }
    }
  }
}
