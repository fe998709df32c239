/* http_client.c -- a small, bounded HTTP/1.1 client (see http_client.h). */
#include "http_client.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "pipecast/error.h"
#include "pipecast/redis.h"

#define HC_BUF 16384
#define HC_HEAD_MAX (64 * 1024)
#define HC_LINE_SHORT 8192 /* status, header and chunk-size lines */

enum hc_body {
    HC_BODY_NONE,
    HC_BODY_LENGTH,
    HC_BODY_CHUNKED,
    HC_BODY_CLOSE,
};

enum hc_chunk {
    HC_CHUNK_SIZE,  /* expecting a chunk-size line */
    HC_CHUNK_DATA,  /* inside a chunk's data */
    HC_CHUNK_CRLF,  /* the CRLF after a chunk's data */
    HC_CHUNK_TRAIL, /* trailer lines up to the blank one */
    HC_CHUNK_DONE,
};

struct hconn {
    int fd;
    char buf[HC_BUF];
    size_t pos, len;
    long long deadline; /* pc_now_ms() limit for the whole exchange, or 0 */
    int idle_ms;        /* limit for each wait when deadline is 0 */
    char *err;
    size_t errlen;
    int body;                /* enum hc_body */
    unsigned long long left; /* LENGTH: body bytes left; CHUNKED: bytes left in the chunk */
    int chunk;               /* enum hc_chunk */
    int body_done;
};

/* ------------------------------------------------------------------------ */
/* URL                                                                       */
/* ------------------------------------------------------------------------ */

int cli_http_url_parse(const char *s, struct cli_http_url *u, char *err, size_t errlen)
{
    const char *p, *hs, *he, *slash;
    size_t n;

    memset(u, 0, sizeof(*u));
    snprintf(u->text, sizeof(u->text), "%s", s);
    if (strncasecmp(s, "http://", 7) != 0) {
        snprintf(err, errlen, "gateway URL \"%.200s\": expected http://host[:port][/path]%s", s,
                 strncasecmp(s, "https://", 8) == 0 ? " (https is not supported: use a local "
                                                      "proxy)"
                                                    : "");
        return -1;
    }
    p = s + 7;
    slash = strchr(p, '/');
    if (strpbrk(p, "@?#") || strlen(s) >= sizeof(u->text))
        goto bad;
    if (*p == '[') {
        hs = p + 1;
        he = strchr(hs, ']');
        if (!he || (slash && he > slash))
            goto bad;
        p = he + 1;
    } else {
        hs = p;
        he = p;
        while (*he && *he != ':' && *he != '/')
            he++;
        p = he;
    }
    n = (size_t)(he - hs);
    if (n == 0 || n >= sizeof(u->host))
        goto bad;
    memcpy(u->host, hs, n);
    u->host[n] = '\0';
    if (*p == ':') {
        long port = 0;

        p++;
        if (*p < '0' || *p > '9')
            goto bad;
        while (*p >= '0' && *p <= '9' && port <= 65535)
            port = port * 10 + (*p++ - '0');
        if (port < 1 || port > 65535)
            goto bad;
        snprintf(u->port, sizeof(u->port), "%ld", port);
    } else {
        snprintf(u->port, sizeof(u->port), "80");
    }
    if (*p && *p != '/')
        goto bad;
    n = strlen(p);
    while (n > 0 && p[n - 1] == '/')
        n--;
    if (n >= sizeof(u->base))
        goto bad;
    memcpy(u->base, p, n);
    u->base[n] = '\0';
    while (u->text[0] && u->text[strlen(u->text) - 1] == '/')
        u->text[strlen(u->text) - 1] = '\0';
    return 0;
bad:
    snprintf(err, errlen, "gateway URL \"%.200s\": expected http://host[:port][/path]", s);
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Connection                                                                */
/* ------------------------------------------------------------------------ */

/* How long the next wait may take, in ms (-1: the deadline passed). */
static int hc_wait_ms(const struct hconn *h)
{
    long long left;

    if (!h->deadline)
        return h->idle_ms;
    left = h->deadline - pc_now_ms();
    return left <= 0 ? -1 : (int)left;
}

static int hc_poll(struct hconn *h, short events)
{
    struct pollfd pfd;
    int ms, rc;

    for (;;) {
        ms = hc_wait_ms(h);
        if (ms < 0)
            break;
        pfd.fd = h->fd;
        pfd.events = events;
        pfd.revents = 0;
        rc = poll(&pfd, 1, ms);
        if (rc > 0)
            return 0;
        if (rc == 0)
            break;
        if (errno != EINTR) {
            snprintf(h->err, h->errlen, "poll: %s", strerror(errno));
            return PC_EIO;
        }
    }
    if (h->deadline)
        snprintf(h->err, h->errlen, "no answer in time");
    else
        snprintf(h->err, h->errlen, "nothing received for %d s", h->idle_ms / 1000);
    return PC_ETIMEOUT;
}

static int hc_connect(struct hconn *h, const struct cli_http_url *u, int timeout_ms)
{
    struct addrinfo hints, *res = NULL, *ai;
    long long until = pc_now_ms() + timeout_ms;
    int rc, last = 0;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    rc = getaddrinfo(u->host, u->port, &hints, &res);
    if (rc != 0) {
        snprintf(h->err, h->errlen, "cannot resolve %s: %s", u->host, gai_strerror(rc));
        return PC_EIO;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        int fd =
            socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        struct pollfd pfd;
        long long left;

        if (fd < 0) {
            last = errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            h->fd = fd;
            freeaddrinfo(res);
            return 0;
        }
        if (errno != EINPROGRESS) {
            last = errno;
            close(fd);
            continue;
        }
        pfd.fd = fd;
        pfd.events = POLLOUT;
        do {
            left = until - pc_now_ms();
            rc = left > 0 ? poll(&pfd, 1, (int)left) : 0;
        } while (rc < 0 && errno == EINTR);
        if (rc <= 0) {
            last = rc == 0 ? ETIMEDOUT : errno;
            close(fd);
            continue;
        }
        if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
            last = soerr ? soerr : errno;
            close(fd);
            continue;
        }
        h->fd = fd;
        freeaddrinfo(res);
        return 0;
    }
    freeaddrinfo(res);
    snprintf(h->err, h->errlen, "cannot connect: %s",
             last == ETIMEDOUT ? "timed out" : strerror(last ? last : ECONNREFUSED));
    return last == ETIMEDOUT ? PC_ETIMEOUT : PC_EIO;
}

static int hc_send(struct hconn *h, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(h->fd, p, n, MSG_NOSIGNAL);
        int rc;

        if (w > 0) {
            p += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if ((rc = hc_poll(h, POLLOUT)) != 0)
                return rc;
            continue;
        }
        snprintf(h->err, h->errlen, "send: %s", strerror(errno));
        return PC_EIO;
    }
    return 0;
}

/* Read more bytes into the buffer. @return >0, 0 at EOF, or a negative code. */
static int hc_fill(struct hconn *h)
{
    if (h->pos > 0) {
        memmove(h->buf, h->buf + h->pos, h->len - h->pos);
        h->len -= h->pos;
        h->pos = 0;
    }
    if (h->len == sizeof(h->buf))
        return PC_ETOOBIG;
    for (;;) {
        ssize_t n = recv(h->fd, h->buf + h->len, sizeof(h->buf) - h->len, 0);
        int rc;

        if (n > 0) {
            h->len += (size_t)n;
            return (int)n;
        }
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            if ((rc = hc_poll(h, POLLIN)) != 0)
                return rc;
            continue;
        }
        snprintf(h->err, h->errlen, "recv: %s", strerror(errno));
        return PC_EIO;
    }
}

/*
 * A short line (status, header, chunk size) into @p dst without its CRLF.
 * @return its length, or a negative code (PC_ECLOSED at EOF).
 */
static int hc_line(struct hconn *h, char *dst, size_t cap)
{
    for (;;) {
        char *nl = memchr(h->buf + h->pos, '\n', h->len - h->pos);
        int rc;

        if (nl) {
            size_t n = (size_t)(nl - (h->buf + h->pos));

            if (n > 0 && h->buf[h->pos + n - 1] == '\r')
                n--;
            if (n >= cap) {
                snprintf(h->err, h->errlen, "protocol: header line too long");
                return PC_EPROTO;
            }
            memcpy(dst, h->buf + h->pos, n);
            dst[n] = '\0';
            h->pos = (size_t)(nl - h->buf) + 1;
            return (int)n;
        }
        if (h->len - h->pos >= cap) {
            snprintf(h->err, h->errlen, "protocol: header line too long");
            return PC_EPROTO;
        }
        rc = hc_fill(h);
        if (rc == 0) {
            snprintf(h->err, h->errlen, "connection closed by the server");
            return PC_ECLOSED;
        }
        if (rc < 0)
            return rc;
    }
}

/* Status line and headers. @return 0 or a negative code. */
static int hc_read_head(struct hconn *h, const char *method, struct cli_http_resp *r)
{
    char line[HC_LINE_SHORT];
    size_t total = 0;
    int n, chunked, have_len;

    for (;;) {
        unsigned long long clen = 0;

        n = hc_line(h, line, sizeof(line));
        if (n < 0)
            return n;
        if (n < 12 || strncmp(line, "HTTP/1.", 7) != 0 || line[8] != ' ' || line[9] < '1' ||
            line[9] > '5' || line[10] < '0' || line[10] > '9' || line[11] < '0' || line[11] > '9' ||
            (line[12] != ' ' && line[12] != '\0')) {
            snprintf(h->err, h->errlen, "protocol: not an HTTP/1.x answer");
            return PC_EPROTO;
        }
        r->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
        chunked = have_len = 0;
        for (;;) {
            char *colon, *v;

            n = hc_line(h, line, sizeof(line));
            if (n < 0)
                return n;
            total += (size_t)n + 2;
            if (total > HC_HEAD_MAX) {
                snprintf(h->err, h->errlen, "protocol: headers larger than %d bytes", HC_HEAD_MAX);
                return PC_EPROTO;
            }
            if (n == 0)
                break;
            colon = strchr(line, ':');
            if (!colon)
                continue;
            *colon = '\0';
            v = colon + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            if (strcasecmp(line, "content-length") == 0) {
                char *end;

                errno = 0;
                clen = strtoull(v, &end, 10);
                if (end == v || *end || errno) {
                    snprintf(h->err, h->errlen, "protocol: bad Content-Length");
                    return PC_EPROTO;
                }
                have_len = 1;
            } else if (strcasecmp(line, "transfer-encoding") == 0) {
                chunked = strstr(v, "chunked") != NULL;
            } else if (strcasecmp(line, "content-type") == 0) {
                snprintf(r->content_type, sizeof(r->content_type), "%s", v);
            } else if (strcasecmp(line, "retry-after") == 0) {
                snprintf(r->retry_after, sizeof(r->retry_after), "%s", v);
            }
        }
        if (r->status >= 100 && r->status < 200)
            continue; /* 100 Continue and friends: the real answer follows */
        if (strcmp(method, "HEAD") == 0 || r->status == 204 || r->status == 304) {
            h->body = HC_BODY_NONE;
            h->body_done = 1;
        } else if (chunked) {
            h->body = HC_BODY_CHUNKED;
            h->chunk = HC_CHUNK_SIZE;
        } else if (have_len) {
            h->body = HC_BODY_LENGTH;
            h->left = clen;
            h->body_done = clen == 0;
        } else {
            h->body = HC_BODY_CLOSE;
        }
        return 0;
    }
}

/* Take up to @p cap buffered bytes. */
static size_t hc_take(struct hconn *h, char *dst, size_t cap)
{
    size_t n = h->len - h->pos;

    if (n > cap)
        n = cap;
    memcpy(dst, h->buf + h->pos, n);
    h->pos += n;
    return n;
}

/* Next body bytes. @return >0, 0 at the end of the body, or a negative code. */
static int hc_body_read(struct hconn *h, char *dst, size_t cap)
{
    char line[HC_LINE_SHORT];
    int rc;

    while (!h->body_done) {
        if (h->body == HC_BODY_CHUNKED && h->chunk != HC_CHUNK_DATA) {
            if ((rc = hc_line(h, line, sizeof(line))) < 0)
                return rc;
            if (h->chunk == HC_CHUNK_CRLF) {
                if (rc != 0) {
                    snprintf(h->err, h->errlen, "protocol: bad chunk end");
                    return PC_EPROTO;
                }
                h->chunk = HC_CHUNK_SIZE;
            } else if (h->chunk == HC_CHUNK_TRAIL) {
                if (rc == 0) {
                    h->chunk = HC_CHUNK_DONE;
                    h->body_done = 1;
                }
            } else {
                char *end;

                errno = 0;
                h->left = strtoull(line, &end, 16);
                if (end == line || errno || (*end && *end != ';' && *end != ' ')) {
                    snprintf(h->err, h->errlen, "protocol: bad chunk size");
                    return PC_EPROTO;
                }
                h->chunk = h->left == 0 ? HC_CHUNK_TRAIL : HC_CHUNK_DATA;
            }
            continue;
        }
        if (h->pos == h->len) {
            rc = hc_fill(h);
            if (rc < 0)
                return rc;
            if (rc == 0) {
                if (h->body == HC_BODY_CLOSE) {
                    h->body_done = 1;
                    return 0;
                }
                snprintf(h->err, h->errlen, "connection closed in the middle of the body");
                return PC_ECLOSED;
            }
        }
        if (h->body == HC_BODY_CLOSE)
            return (int)hc_take(h, dst, cap);
        {
            size_t want = h->left < cap ? (size_t)h->left : cap;
            size_t n = hc_take(h, dst, want);

            h->left -= n;
            if (h->left == 0) {
                if (h->body == HC_BODY_LENGTH)
                    h->body_done = 1;
                else
                    h->chunk = HC_CHUNK_CRLF;
            }
            return (int)n;
        }
    }
    return 0;
}

static void hc_init(struct hconn *h, char *err, size_t errlen)
{
    memset(h, 0, sizeof(*h));
    h->fd = -1;
    h->err = err;
    h->errlen = errlen;
}

static void hc_close(struct hconn *h)
{
    if (h->fd >= 0)
        close(h->fd);
    h->fd = -1;
}

/* Read the whole body into r->body. @return 0 or a negative code. */
static int hc_read_body(struct hconn *h, struct cli_http_resp *r)
{
    char chunk[HC_BUF];

    for (;;) {
        int n = hc_body_read(h, chunk, sizeof(chunk));

        if (n == 0)
            return 0;
        if (n < 0)
            return n;
        if (pc_buf_append(&r->body, chunk, (size_t)n) != 0) {
            snprintf(h->err, h->errlen, "answer larger than %u bytes", CLI_HTTP_BODY_MAX);
            return PC_ETOOBIG;
        }
    }
}

static int hc_send_request(struct hconn *h, const struct cli_http_url *u, const char *method,
                           const char *path, const char *headers, const char *content_type,
                           const void *body, size_t len)
{
    struct pc_buf req;
    int ipv6 = strchr(u->host, ':') != NULL, rc;

    pc_buf_init(&req, HC_HEAD_MAX);
    rc = pc_buf_printf(&req,
                       "%s %s%s HTTP/1.1\r\n"
                       "Host: %s%s%s:%s\r\n"
                       "User-Agent: pipecast/%s\r\n"
                       "Connection: close\r\n"
                       "%s",
                       method, u->base, path, ipv6 ? "[" : "", u->host, ipv6 ? "]" : "", u->port,
                       PC_VERSION, headers ? headers : "");
    if (rc == 0 && u->token[0])
        rc = pc_buf_printf(&req, "Authorization: Bearer %s\r\n", u->token);
    if (rc == 0 && content_type)
        rc = pc_buf_printf(&req, "Content-Type: %s\r\n", content_type);
    if (rc == 0 &&
        (body || content_type || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0))
        rc = pc_buf_printf(&req, "Content-Length: %zu\r\n", len);
    if (rc == 0)
        rc = pc_buf_append_str(&req, "\r\n");
    if (rc != 0) {
        pc_buf_free(&req);
        snprintf(h->err, h->errlen, "request too large");
        return PC_ETOOBIG;
    }
    rc = hc_send(h, req.data, req.len);
    pc_buf_free(&req);
    if (rc == 0 && len > 0)
        rc = hc_send(h, body, len);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Public                                                                    */
/* ------------------------------------------------------------------------ */

void cli_http_resp_free(struct cli_http_resp *r)
{
    pc_buf_free(&r->body);
    r->status = 0;
}

static void resp_init(struct cli_http_resp *r)
{
    memset(r, 0, sizeof(*r));
    pc_buf_init(&r->body, CLI_HTTP_BODY_MAX);
}

int cli_http_request(const struct cli_http_url *u, const char *method, const char *path,
                     const char *content_type, const void *body, size_t len, int timeout_ms,
                     struct cli_http_resp *r, char *err, size_t errlen)
{
    struct hconn *h = malloc(sizeof(*h));
    int rc;

    resp_init(r);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return PC_ENOMEM;
    }
    hc_init(h, err, errlen);
    h->deadline = pc_now_ms() + timeout_ms;
    rc = hc_connect(h, u, timeout_ms);
    if (rc == 0)
        rc = hc_send_request(h, u, method, path, "Accept: application/json\r\n", content_type, body,
                             len);
    if (rc == 0)
        rc = hc_read_head(h, method, r);
    if (rc == 0)
        rc = hc_read_body(h, r);
    hc_close(h);
    free(h);
    if (rc != 0)
        cli_http_resp_free(r);
    return rc;
}

/* Split @p n bytes into lines for @p cb. @return 0 go on, 1 stopped, or a negative code. */
static int stream_lines(struct pc_buf *line, int *last_cr, const char *p, size_t n,
                        cli_http_line_cb cb, void *privdata, char *err, size_t errlen)
{
    while (n > 0) {
        size_t i = 0;

        if (*last_cr && p[0] == '\n') { /* the LF of a CRLF: that line has ended already */
            *last_cr = 0;
            p++;
            n--;
            continue;
        }
        *last_cr = 0;
        while (i < n && p[i] != '\n' && p[i] != '\r')
            i++;
        if (pc_buf_append(line, p, i) != 0) {
            snprintf(err, errlen, "stream line longer than %u bytes", CLI_HTTP_LINE_MAX);
            return PC_ETOOBIG;
        }
        if (i == n)
            return 0;
        *last_cr = p[i] == '\r';
        if (cb(privdata, line->data ? line->data : "", line->len))
            return 1;
        pc_buf_reset(line);
        p += i + 1;
        n -= i + 1;
    }
    return 0;
}

int cli_http_stream(const struct cli_http_url *u, const char *path, const char *extra_headers,
                    int connect_timeout_ms, int idle_ms, cli_http_line_cb cb, void *privdata,
                    struct cli_http_resp *r, char *err, size_t errlen)
{
    struct hconn *h = malloc(sizeof(*h));
    char headers[2048];
    struct pc_buf line;
    int rc, last_cr = 0;

    resp_init(r);
    if (!h) {
        snprintf(err, errlen, "out of memory");
        return PC_ENOMEM;
    }
    hc_init(h, err, errlen);
    snprintf(headers, sizeof(headers), "Accept: text/event-stream\r\nCache-Control: no-cache\r\n%s",
             extra_headers ? extra_headers : "");
    h->deadline = pc_now_ms() + connect_timeout_ms;
    rc = hc_connect(h, u, connect_timeout_ms);
    if (rc == 0)
        rc = hc_send_request(h, u, "GET", path, headers, NULL, NULL, 0);
    if (rc == 0)
        rc = hc_read_head(h, "GET", r);
    if (rc == 0 && r->status != 200) {
        rc = hc_read_body(h, r);
        hc_close(h);
        free(h);
        return rc;
    }
    h->deadline = 0;
    h->idle_ms = idle_ms;
    pc_buf_init(&line, CLI_HTTP_LINE_MAX);
    while (rc == 0) {
        char chunk[HC_BUF];
        int n = hc_body_read(h, chunk, sizeof(chunk));

        if (n == 0) {
            snprintf(err, errlen, "the server ended the stream");
            rc = PC_ECLOSED;
            break;
        }
        if (n < 0) {
            rc = n;
            break;
        }
        rc = stream_lines(&line, &last_cr, chunk, (size_t)n, cb, privdata, err, errlen);
        if (rc == 1) {
            rc = 0;
            break;
        }
    }
    pc_buf_free(&line);
    hc_close(h);
    free(h);
    return rc;
}
