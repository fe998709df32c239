/* http_util.h -- small HTTP helpers: complete responses, JSON errors, query parameters. */
#ifndef PC_GW_HTTP_UTIL_H
#define PC_GW_HTTP_UTIL_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "gateway.h"

struct mg_connection;

/* The reason phrase of @p status ("Not Found"). */
const char *gw_http_status_text(int status);

/*
 * Send a complete response with a Content-Length. @p extra_headers is "" or
 * lines each ending in "\r\n". The CORS header is added when configured.
 * @return @p status (handlers return it to civetweb).
 */
int gw_http_send(struct mg_connection *conn, const struct gw_ctx *gw, int status,
                 const char *content_type, const char *extra_headers, const void *body, size_t len);

/* Send @p json (taken: freed here) as application/json. @return @p status. */
int gw_http_json_take(struct mg_connection *conn, const struct gw_ctx *gw, int status,
                      const char *extra_headers, cJSON *json);

/* Send {"error": "<message>"} with @p status. @return @p status. */
int gw_http_error(struct mg_connection *conn, const struct gw_ctx *gw, int status,
                  const char *extra_headers, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/*
 * Query parameter @p name (occurrence @p occ, 0 = first), URL-decoded into
 * @p dst. @return its length, -1 when absent, -2 when longer than dstlen-1.
 */
int gw_http_query(const struct mg_connection *conn, const char *name, size_t occ, char *dst,
                  size_t dstlen);

/* Strict unsigned decimal (digits only) no greater than @p max. @return 0 or -1. */
int gw_http_parse_uint(const char *s, unsigned long long max, unsigned long long *out);

/*
 * Copy @p len bytes of untrusted text for a message: printable ASCII is kept,
 * everything else becomes \xHH; the result is cut (with "...") to fit @p dstlen.
 */
void gw_http_quote(const char *s, size_t len, char *dst, size_t dstlen);

/*
 * Take the client socket of @p conn from civetweb, for a response that
 * outlives the request (SSE). civetweb 1.15 has no call that gives the socket
 * away: its descriptor is read from the connection (the layout of civetweb
 * 1.15's struct mg_connection, public fields first) and accepted only when
 * getpeername()/getsockname() match the request's remote and server
 * address. A new descriptor keeps the socket; a fresh unconnected socket
 * takes the old descriptor's number (dup2), so what civetweb does when the
 * handler returns (shutdown, close) hits that placeholder, not the client.
 * Keep-alive is disabled. @return the descriptor (non-blocking, close-on-exec;
 * the caller closes it), or -1: civetweb keeps the connection (unexpected
 * layout, TLS, no descriptors left).
 */
int gw_http_take_socket(struct mg_connection *conn);

/* The CORS header lines for responses ("" when --cors-origin is not set). */
void gw_http_cors_headers(const struct gw_ctx *gw, char *dst, size_t dstlen);

#endif
