/* auth.h -- bearer tokens with scopes, and the cross-site checks of the API.
 *
 * Every request passes gw_auth_check() first (main.c, begin_request). It
 * answers by itself when the request may not go on:
 *  - DNS rebinding: with no tokens and a loopback listen address, /api and
 *    /metrics only answer a loopback Host (localhost, 127.x, [::1]): 403;
 *  - tokens (--tokens FILE): /api/ and /metrics need "Authorization: Bearer
 *    <token>" or ?access_token=<token> with the right scope: 401 / 403;
 *  - cross-site writes: a non-GET/HEAD/OPTIONS /api/ request with an Origin
 *    header must come from the gateway's own origin or --cors-origin: 403;
 *  - POST /api/jobs needs Content-Type: application/json: 415.
 * /healthz and the static files stay open. OPTIONS (CORS preflight) is never
 * asked for a token: browsers do not send one with a preflight.
 */
#ifndef PC_GW_AUTH_H
#define PC_GW_AUTH_H

#include <stddef.h>

struct mg_connection;
struct gw_ctx;
struct gw_auth;

enum {
    GW_SCOPE_SUBSCRIBE = 1,
    GW_SCOPE_PUBLISH = 2,
    GW_SCOPE_RUN = 4,
    GW_SCOPE_ADMIN = 8, /* implies all others */
};

#define GW_TOKEN_MIN 16
#define GW_TOKEN_MAX 256

/*
 * Read a token file: lines "<token> <scope>[,<scope>...]", '#' comments,
 * blank lines. @return the token table, or NULL with a one-line reason in
 * @p err (the tokens themselves are never repeated in messages).
 */
struct gw_auth *gw_auth_load(const char *path, char *err, size_t errlen);

void gw_auth_free(struct gw_auth *a);

/* Number of tokens loaded. */
size_t gw_auth_count(const struct gw_auth *a);

/* 1 when the "ADDR:PORT" listen address is loopback (127.0.0.0/8). */
int gw_auth_listen_is_loopback(const char *listen);

/*
 * The checks above for one request (gw->auth may be NULL: no tokens).
 * @return 0 to go on, else the status of the error answer already sent.
 */
int gw_auth_check(struct mg_connection *conn, struct gw_ctx *gw);

#endif
