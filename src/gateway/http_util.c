/* http_util.c -- complete responses, JSON errors and query parameters. */
#include "http_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <civetweb.h>

const char *gw_http_status_text(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
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
    case 411:
        return "Length Required";
    case 413:
        return "Payload Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
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
    char cors[1200];

    gw_http_cors_headers(gw, cors, sizeof(cors));
    mg_printf(conn,
              "HTTP/1.1 %d %s\r\n"
              "Content-Type: %s\r\n"
              "Content-Length: %zu\r\n"
              "Cache-Control: no-store\r\n"
              "X-Content-Type-Options: nosniff\r\n"
              "%s%s\r\n",
              status, gw_http_status_text(status), content_type, len, cors,
              extra_headers ? extra_headers : "");
    if (len > 0)
        mg_write(conn, body, len);
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
