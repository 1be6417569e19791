/* testhttp.h — a minimal HTTP/1.1 client for the tests that talk to a real
 * `augur serve` (or the in-process server) on a loopback port: one request
 * per connection, the whole answer read until the server closes. */
#ifndef AUGUR_TESTHTTP_H
#define AUGUR_TESTHTTP_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "tsdb/tsdb_util.h"

typedef struct {
    int status;  /* HTTP status, -1 if the request failed */
    char *body;  /* NUL-terminated, malloc'd ("" when none); free() it */
} th_reply_t;

/* Send `method path` with extra header lines `hdrs` (each ending in \r\n,
 * may be NULL; a Content-Type: text/plain is added when hdrs has none) and
 * `body` (may be NULL). Waits up to timeout_s for the answer. Returns the
 * status, or -1 (then r->body is "" too). */
static inline int th_request(unsigned port, const char *method, const char *path,
                             const char *hdrs, const char *body, int timeout_s, th_reply_t *r)
{
    r->status = -1;
    r->body = NULL;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {timeout_s, 0};
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) {
        if (fd >= 0) close(fd);
        r->body = strdup("");
        return -1;
    }
    size_t bl = body ? strlen(body) : 0;
    int has_ct = hdrs && strstr(hdrs, "Content-Type:");
    char head[4096];
    int n = snprintf(head, sizeof head,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s"
                     "Content-Length: %zu\r\n%s\r\n",
                     method, path, has_ct ? "" : "Content-Type: text/plain\r\n", bl,
                     hdrs ? hdrs : "");
    if (n < 0 || (size_t)n >= sizeof head || send(fd, head, (size_t)n, MSG_NOSIGNAL) != n ||
        (bl && send(fd, body, bl, MSG_NOSIGNAL) != (ssize_t)bl)) {
        close(fd);
        r->body = strdup("");
        return -1;
    }
    tbuf_t b = {0};
    char buf[65536];
    ssize_t k;
    while ((k = recv(fd, buf, sizeof buf, 0)) > 0) tbuf_put(&b, buf, (size_t)k);
    close(fd);
    tbuf_put(&b, "", 1);
    if (sscanf((char *)b.p, "HTTP/1.%*d %d", &r->status) != 1) r->status = -1;
    char *e = strstr((char *)b.p, "\r\n\r\n");
    r->body = strdup(e ? e + 4 : "");
    tbuf_free(&b);
    return r->status;
}

/* The same, with the body copied into buf[0..cap) (truncated, NUL-terminated). */
static inline int th_request_buf(unsigned port, const char *method, const char *path,
                                 const char *body, int timeout_s, char *buf, size_t cap)
{
    th_reply_t r;
    int st = th_request(port, method, path, NULL, body, timeout_s, &r);
    snprintf(buf, cap, "%s", r.body ? r.body : "");
    free(r.body);
    return st;
}

#endif
