/* http_util.c -- complete responses, JSON errors and query parameters. */
#include "http_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <civetweb.h>

#define GW_HTTP_ONE_WRITE_MAX (256u << 10) /* larger responses go out in two writes */

const char *gw_http_status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 503:
        return "Service Unavailable";
    default:
        return status < 400 ? "OK" : status < 500 ? "Bad Request" : "Internal Server Error";
    }
}

void gw_http_cors_headers(const struct gw_ctx *gw, char *dst, size_t dstlen)
{
    if (gw && gw->cfg->cors_origin[0])
        snprintf(dst, dstlen, "Access-Control-Allow-Origin: %s\r\nVary: Origin\r\n",
                 gw->cfg->cors_origin);
    else if (dstlen)
        dst[0] = '\0';
}

int gw_http_send(struct mg_connection *conn, const struct gw_ctx *gw, int status,
                 const char *content_type, const char *extra_headers, const void *body, size_t len)
{
    char cors[1200], stackbuf[8192], *buf = stackbuf;
    int hl;

    gw_http_cors_headers(gw, cors, sizeof(cors));
    hl = snprintf(stackbuf, sizeof(stackbuf),
                  "HTTP/1.1 %d %s\r\n"
                  "Content-Type: %s\r\n"
                  "Content-Length: %zu\r\n"
                  "Cache-Control: no-store\r\n"
                  "X-Content-Type-Options: nosniff\r\n"
                  "%s%s\r\n",
                  status, gw_http_status_text(status), content_type, len, cors,
                  extra_headers ? extra_headers : "");
    if (hl < 0 || (size_t)hl >= sizeof(stackbuf))
        return status; /* headers of our own making: cannot happen */
    /* one write for headers and body: two small writes meet Nagle and the client's delayed
     * ACK on a keep-alive connection (40 ms per response) */
    if ((size_t)hl + len > sizeof(stackbuf) && (size_t)hl + len <= GW_HTTP_ONE_WRITE_MAX) {
        buf = malloc((size_t)hl + len);
        if (buf)
            memcpy(buf, stackbuf, (size_t)hl);
    }
    if (buf && (size_t)hl + len <= (buf == stackbuf ? sizeof(stackbuf) : GW_HTTP_ONE_WRITE_MAX)) {
        if (len > 0)
            memcpy(buf + hl, body, len);
        mg_write(conn, buf, (size_t)hl + len);
    } else {
        mg_write(conn, stackbuf, (size_t)hl);
        if (len > 0)
            mg_write(conn, body, len);
    }
    if (buf && buf != stackbuf)
        free(buf);
    return status;
}

int gw_http_json_take(struct mg_connection *conn, const struct gw_ctx *gw, int status,
                      const char *extra_headers, cJSON *json)
{
    char *text = json ? cJSON_PrintUnformatted(json) : NULL;

    cJSON_Delete(json);
    if (!text) {
        static const char oom[] = "{\"error\":\"out of memory\"}";

        return gw_http_send(conn, gw, 500, "application/json", extra_headers, oom, sizeof(oom) - 1);
    }
    gw_http_send(conn, gw, status, "application/json", extra_headers, text, strlen(text));
    cJSON_free(text);
    return status;
}

int gw_http_error(struct mg_connection *conn, const struct gw_ctx *gw, int status,
                  const char *extra_headers, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    cJSON *o = cJSON_CreateObject();

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (o && !cJSON_AddStringToObject(o, "error", msg)) {
        cJSON_Delete(o);
        o = NULL;
    }
    return gw_http_json_take(conn, gw, status, extra_headers, o);
}

int gw_http_query(const struct mg_connection *conn, const char *name, size_t occ, char *dst,
                  size_t dstlen)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *qs = ri ? ri->query_string : NULL;
    int n;

    if (dstlen)
        dst[0] = '\0';
    if (!qs)
        return -1;
    n = mg_get_var2(qs, strlen(qs), name, dst, dstlen, occ);
    return n < -1 ? -2 : n;
}

int gw_http_parse_uint(const char *s, unsigned long long max, unsigned long long *out)
{
    unsigned long long v = 0;

    if (!s || !*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        if (v > (max - (unsigned long long)(*s - '0')) / 10)
            return -1;
        v = v * 10 + (unsigned long long)(*s - '0');
    }
    *out = v;
    return 0;
}

void gw_http_quote(const char *s, size_t len, char *dst, size_t dstlen)
{
    size_t o = 0;

    if (dstlen == 0)
        return;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t need = (c >= 0x20 && c < 0x7f && c != '\\') ? 1 : 4;

        if (o + need + 4 > dstlen) { /* room for "..." and the NUL */
            if (o + 4 <= dstlen) {
                memcpy(dst + o, "...", 3);
                o += 3;
            }
            break;
        }
        if (need == 1)
            dst[o++] = (char)c;
        else
            o += (size_t)snprintf(dst + o, dstlen - o, "\\x%02X", c);
    }
    dst[o] = '\0';
}

/*
 * civetweb 1.15's struct mg_connection from request_info to client.sock (its
 * struct socket starts with the descriptor). With USE_SERVER_STATS an int
 * (conn_state) comes before ssl: both layouts are tried.
 */
struct civet_conn_head {
    struct mg_request_info request_info;
    struct mg_response_info response_info;
    void *phys_ctx;
    void *dom_ctx;
    void *ssl;
    int sock;
};

struct civet_conn_head_stats {
    struct mg_request_info request_info;
    struct mg_response_info response_info;
    void *phys_ctx;
    void *dom_ctx;
    int conn_state;
    void *ssl;
    int sock;
};

/* @p fd is the TCP connection of request @p ri: its peer and local address match. */
static int socket_is_request(int fd, const struct mg_request_info *ri)
{
    struct sockaddr_in peer, local;
    socklen_t pl = sizeof(peer), ll = sizeof(local);
    char addr[INET_ADDRSTRLEN];

    if (fd < 0 || getpeername(fd, (struct sockaddr *)&peer, &pl) != 0 ||
        getsockname(fd, (struct sockaddr *)&local, &ll) != 0)
        return 0;
    if (pl != sizeof(peer) || ll != sizeof(local) || peer.sin_family != AF_INET ||
        local.sin_family != AF_INET)
        return 0;
    if (ntohs(peer.sin_port) != ri->remote_port || ntohs(local.sin_port) != ri->server_port)
        return 0;
    return inet_ntop(AF_INET, &peer.sin_addr, addr, sizeof(addr)) &&
           strcmp(addr, ri->remote_addr) == 0;
}

int gw_http_take_socket(struct mg_connection *conn)
{
    static const size_t offs[2] = {
        offsetof(struct civet_conn_head, sock) - offsetof(struct civet_conn_head, request_info),
        offsetof(struct civet_conn_head_stats, sock) -
            offsetof(struct civet_conn_head_stats, request_info),
    };
    const struct mg_request_info *ri = mg_get_request_info(conn);
    int fd = -1, keep, ph;

    if (!ri || ri->is_ssl)
        return -1;
    for (size_t i = 0; i < 2 && fd < 0; i++) {
        int cand;

        memcpy(&cand, (const char *)ri + offs[i], sizeof(cand));
        if (socket_is_request(cand, ri))
            fd = cand;
    }
    if (fd < 0)
        return -1;
    keep = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (keep < 0)
        return -1;
    ph = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (ph < 0 || dup2(ph, fd) < 0) {
        if (ph >= 0)
            close(ph);
        close(keep);
        return -1;
    }
    close(ph);
    fcntl(fd, F_SETFD, FD_CLOEXEC); /* as civetweb had it */
    mg_disable_connection_keep_alive(conn);
    /* civetweb made it non-blocking at accept; the flag belongs to the socket, not the number */
    fcntl(keep, F_SETFL, fcntl(keep, F_GETFL) | O_NONBLOCK);
    return keep;
}
