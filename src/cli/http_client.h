/* http_client.h -- a small, bounded HTTP/1.1 client for `pipecast jobs` (plain http:// only).
 *
 * One request per connection (Connection: close). Every wait has a deadline
 * and every buffer a cap: headers 64 KiB, bodies CLI_HTTP_BODY_MAX, stream
 * lines CLI_HTTP_LINE_MAX. Bodies may come with a Content-Length, chunked, or
 * delimited by the close of the connection.
 *
 *   struct cli_http_url u;
 *   struct cli_http_resp r;
 *   if (cli_http_url_parse("http://127.0.0.1:8080", &u, err, sizeof(err)) != 0) ...
 *   if (cli_http_request(&u, "GET", "/api/jobs", NULL, NULL, 0, 30000, &r, err, sizeof(err)) != 0)
 *       ...                           // no answer: err says why
 *   ... r.status, r.body.data ...
 *   cli_http_resp_free(&r);
 */
#ifndef PC_CLI_HTTP_CLIENT_H
#define PC_CLI_HTTP_CLIENT_H

#include <stddef.h>

#include "pipecast/buf.h"

#define CLI_HTTP_BODY_MAX (16u * 1024 * 1024)
#define CLI_HTTP_LINE_MAX (16u * 1024 * 1024)

/* A parsed base URL: http://host[:port][/base-path]. */
struct cli_http_url {
    char host[256]; /* without brackets for IPv6 */
    char port[8];
    char base[512];  /* "" or "/path" without a trailing slash */
    char text[1024]; /* as given, for messages */
    char token[257]; /* "" or the gateway token sent as "Authorization: Bearer" (max 256) */
};

struct cli_http_resp {
    int status;
    char content_type[128];
    char retry_after[32];
    struct pc_buf body; /* capped at CLI_HTTP_BODY_MAX; owned, free with cli_http_resp_free */
};

/* @return 0, or -1 with a message like `gateway URL "x": expected http://host[:port]`. */
int cli_http_url_parse(const char *s, struct cli_http_url *u, char *err, size_t errlen);

/**
 * Send one request to @p u (path appended to the base path) and read the
 * whole answer into @p r within @p timeout_ms. @p content_type may be NULL
 * (no body header when @p body is NULL too).
 * @return 0 (any HTTP status; @p r filled, free it), or a negative PC_E* code
 * with the reason in @p err (@p r is then empty).
 */
int cli_http_request(const struct cli_http_url *u, const char *method, const char *path,
                     const char *content_type, const void *body, size_t len, int timeout_ms,
                     struct cli_http_resp *r, char *err, size_t errlen);

void cli_http_resp_free(struct cli_http_resp *r);

/* Called once per line of a streamed body (without its CR/LF). Return 0 to go on, 1 to stop. */
typedef int (*cli_http_line_cb)(void *privdata, const char *line, size_t len);

/**
 * GET @p path and, when the answer is 200, hand its body to @p cb line by line
 * (CR, LF and CRLF all end a line) until @p cb returns 1, the server closes,
 * or nothing arrives for @p idle_ms. @p extra_headers is NULL or header lines
 * each ending in "\r\n".
 * @return 0 when @p cb stopped, PC_ECLOSED when the body ended, another
 * negative code on errors (reason in @p err). For a status other than 200 the
 * body is read into @p r and 0 is returned with r->status set: check it.
 */
int cli_http_stream(const struct cli_http_url *u, const char *path, const char *extra_headers,
                    int connect_timeout_ms, int idle_ms, cli_http_line_cb cb, void *privdata,
                    struct cli_http_resp *r, char *err, size_t errlen);

#endif
