/* auth.c -- bearer tokens with scopes, and the cross-site checks of the API (see auth.h). */
#include "auth.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <civetweb.h>

#include "pipecast/log.h"

#include "gateway.h"
#include "http_util.h"

#define AUTH_LINE_MAX 4096
#define AUTH_TOKENS_MAX 10000

struct gw_token {
    unsigned char tok[GW_TOKEN_MAX]; /* zero-padded, so every comparison reads the same bytes */
    size_t len;
    unsigned scopes;
};

struct gw_auth {
    struct gw_token *t;
    size_t n;
};

static const struct {
    const char *name;
    unsigned bit;
} scope_names[] = {
    {"subscribe", GW_SCOPE_SUBSCRIBE},
    {"publish", GW_SCOPE_PUBLISH},
    {"run", GW_SCOPE_RUN},
    {"admin", GW_SCOPE_ADMIN | GW_SCOPE_SUBSCRIBE | GW_SCOPE_PUBLISH | GW_SCOPE_RUN},
};

static const char *scope_name(unsigned bit)
{
    for (size_t i = 0; i < sizeof(scope_names) / sizeof(scope_names[0]); i++)
        if (scope_names[i].bit == bit)
            return scope_names[i].name;
    return "admin";
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int is_token_char(char c)
{
    return (unsigned char)c >= 0x21 && (unsigned char)c <= 0x7e;
}

/* Constant time in the contents: always GW_TOKEN_MAX bytes, no early exit. */
static int token_eq(const unsigned char *a, size_t alen, const unsigned char *b, size_t blen)
{
    unsigned diff = (unsigned)(alen ^ blen);

    for (size_t i = 0; i < GW_TOKEN_MAX; i++)
        diff |= (unsigned)(a[i] ^ b[i]);
    return diff == 0;
}

void gw_auth_free(struct gw_auth *a)
{
    if (!a)
        return;
    if (a->t) {
        volatile unsigned char *p = (volatile unsigned char *)a->t;

        for (size_t i = 0; i < a->n * sizeof(*a->t); i++)
            p[i] = 0;
    }
    free(a->t);
    free(a);
}

size_t gw_auth_count(const struct gw_auth *a)
{
    return a ? a->n : 0;
}

/* Parse one line into @p out. @return 1 a token, 0 nothing (blank, comment), -1 error. */
static int parse_line(char *s, struct gw_token *out, char *why, size_t whylen)
{
    char *tok, *scopes, *p;
    size_t tl;

    while (is_space(*s))
        s++;
    if (*s == '\0' || *s == '#')
        return 0;
    tok = s;
    while (*s && !is_space(*s)) {
        if (!is_token_char(*s)) {
            snprintf(why, whylen, "the token has a non-printable byte");
            return -1;
        }
        s++;
    }
    tl = (size_t)(s - tok);
    if (tl < GW_TOKEN_MIN || tl > GW_TOKEN_MAX) {
        snprintf(why, whylen, "a token must be %d-%d characters (this one has %zu)", GW_TOKEN_MIN,
                 GW_TOKEN_MAX, tl);
        return -1;
    }
    memset(out, 0, sizeof(*out));
    memcpy(out->tok, tok, tl);
    out->len = tl;
    while (is_space(*s))
        s++;
    if (*s == '\0' || *s == '#') {
        snprintf(why, whylen, "no scope after the token (subscribe, publish, run, admin)");
        return -1;
    }
    scopes = s;
    while (*s && !is_space(*s))
        s++;
    if (*s) {
        *s++ = '\0';
        while (is_space(*s))
            s++;
        if (*s && *s != '#') {
            snprintf(why, whylen, "unexpected text after the scopes");
            return -1;
        }
    }
    for (p = strtok(scopes, ","); p; p = strtok(NULL, ",")) {
        size_t k, ns = sizeof(scope_names) / sizeof(scope_names[0]);

        for (k = 0; k < ns; k++)
            if (strcmp(p, scope_names[k].name) == 0)
                break;
        if (k == ns) {
            snprintf(why, whylen,
                     "unknown scope \"%.40s\" (expected subscribe, publish, run or admin)", p);
            return -1;
        }
        out->scopes |= scope_names[k].bit;
    }
    if (!out->scopes) {
        snprintf(why, whylen, "no scope after the token (subscribe, publish, run, admin)");
        return -1;
    }
    return 1;
}

struct gw_auth *gw_auth_load(const char *path, char *err, size_t errlen)
{
    struct gw_auth *a = calloc(1, sizeof(*a));
    char line[AUTH_LINE_MAX + 2], why[160];
    size_t cap = 0;
    unsigned lineno = 0;
    struct stat st;
    FILE *f;

    if (!a) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "tokens file \"%.200s\": %s", path, strerror(errno));
        free(a);
        return NULL;
    }
    if (fstat(fileno(f), &st) == 0 && (st.st_mode & 077))
        pc_warn("auth", "tokens file \"%.200s\" is readable by other users (chmod 600 it)", path);
    while (fgets(line, sizeof(line), f)) {
        struct gw_token t;
        int rc;

        lineno++;
        if (strlen(line) > AUTH_LINE_MAX) {
            snprintf(err, errlen, "tokens file \"%.200s\" line %u: too long", path, lineno);
            goto fail;
        }
        rc = parse_line(line, &t, why, sizeof(why));
        if (rc < 0) {
            snprintf(err, errlen, "tokens file \"%.200s\" line %u: %s", path, lineno, why);
            goto fail;
        }
        if (rc == 0)
            continue;
        for (size_t i = 0; i < a->n; i++) {
            if (token_eq(a->t[i].tok, a->t[i].len, t.tok, t.len)) {
                snprintf(err, errlen, "tokens file \"%.200s\" line %u: duplicate token", path,
                         lineno);
                goto fail;
            }
        }
        if (a->n == cap) {
            struct gw_token *nt;

            if (cap >= AUTH_TOKENS_MAX) {
                snprintf(err, errlen, "tokens file \"%.200s\": more than %d tokens", path,
                         AUTH_TOKENS_MAX);
                goto fail;
            }
            cap = cap ? cap * 2 : 8;
            nt = calloc(cap, sizeof(*nt));
            if (!nt) {
                snprintf(err, errlen, "out of memory");
                goto fail;
            }
            if (a->n)
                memcpy(nt, a->t, a->n * sizeof(*nt));
            free(a->t);
            a->t = nt;
        }
        a->t[a->n++] = t;
    }
    if (ferror(f)) {
        snprintf(err, errlen, "tokens file \"%.200s\": %s", path, strerror(errno));
        goto fail;
    }
    if (a->n == 0) {
        snprintf(err, errlen, "tokens file \"%.200s\": no tokens (lines \"<token> <scope>,...\")",
                 path);
        goto fail;
    }
    fclose(f);
    return a;
fail:
    fclose(f);
    gw_auth_free(a);
    return NULL;
}

/* 1 when @p host (no port, no brackets) is loopback: localhost, 127.0.0.0/8, ::1. */
static int host_is_loopback(const char *host)
{
    struct in_addr a4;
    struct in6_addr a6;

    if (strcasecmp(host, "localhost") == 0)
        return 1;
    if (inet_pton(AF_INET, host, &a4) == 1)
        return (ntohl(a4.s_addr) >> 24) == 127;
    if (inet_pton(AF_INET6, host, &a6) == 1)
        return memcmp(&a6, &in6addr_loopback, sizeof(a6)) == 0;
    return 0;
}

int gw_auth_listen_is_loopback(const char *listen)
{
    char host[128];
    const char *colon = strrchr(listen, ':');
    size_t n = colon ? (size_t)(colon - listen) : strlen(listen);

    if (n >= sizeof(host))
        return 0;
    memcpy(host, listen, n);
    host[n] = '\0';
    return host_is_loopback(host);
}

/* The host part of a Host header value ("name", "name:port", "[v6]:port"). */
static int host_of(const char *v, char *dst, size_t dstlen)
{
    const char *end;
    size_t n;

    if (v[0] == '[') {
        end = strchr(v, ']');
        if (!end)
            return -1;
        v++;
    } else {
        end = strchr(v, ':');
        if (!end)
            end = v + strlen(v);
    }
    n = (size_t)(end - v);
    if (n == 0 || n >= dstlen)
        return -1;
    memcpy(dst, v, n);
    dst[n] = '\0';
    return 0;
}

static int under(const char *uri, const char *base)
{
    size_t n = strlen(base);

    return strncmp(uri, base, n) == 0 && (uri[n] == '\0' || uri[n] == '/');
}

static int method_is(const struct mg_request_info *ri, const char *m)
{
    return ri->request_method && strcmp(ri->request_method, m) == 0;
}

static int reject(struct mg_connection *conn, const struct gw_ctx *gw, int status,
                  const char *extra, const char *msg)
{
    char hdr[300];

    snprintf(hdr, sizeof(hdr), "%sConnection: close\r\n", extra ? extra : "");
    mg_disable_connection_keep_alive(conn);
    return gw_http_error(conn, gw, status, hdr, "%s", msg);
}

/* The token of the request: Authorization: Bearer, else ?access_token=. -1 none, -2 too long. */
static int request_token(const struct mg_connection *conn, unsigned char *dst)
{
    const char *h = mg_get_header(conn, "Authorization");
    char q[GW_TOKEN_MAX + 2];
    int n;

    memset(dst, 0, GW_TOKEN_MAX);
    if (h && strncasecmp(h, "Bearer ", 7) == 0) {
        size_t len;

        h += 7;
        while (*h == ' ')
            h++;
        len = strlen(h);
        while (len > 0 && is_space(h[len - 1]))
            len--;
        if (len == 0)
            return -1;
        if (len > GW_TOKEN_MAX)
            return -2;
        memcpy(dst, h, len);
        return (int)len;
    }
    n = gw_http_query(conn, "access_token", 0, q, sizeof(q));
    if (n == -2 || n > GW_TOKEN_MAX)
        return -2;
    if (n <= 0)
        return -1;
    memcpy(dst, q, (size_t)n);
    return n;
}

/* The scope a request needs, 0 when it is open. */
static unsigned required_scope(const struct mg_request_info *ri, const char *uri)
{
    if (under(uri, "/metrics"))
        return GW_SCOPE_ADMIN;
    if (!under(uri, "/api"))
        return 0;
    if (method_is(ri, "OPTIONS"))
        return 0;
    if (method_is(ri, "GET") || method_is(ri, "HEAD"))
        return GW_SCOPE_SUBSCRIBE;
    if (under(uri, "/api/channels"))
        return GW_SCOPE_PUBLISH;
    return GW_SCOPE_RUN;
}

static int check_token(struct mg_connection *conn, struct gw_ctx *gw, unsigned need)
{
    unsigned char tok[GW_TOKEN_MAX];
    unsigned scopes = 0;
    int found = 0, n = request_token(conn, tok);
    char hdr[200], msg[160];

    if (n == -1)
        return reject(conn, gw, 401, "WWW-Authenticate: Bearer realm=\"pipecast\"\r\n",
                      "authentication required: send Authorization: Bearer <token> (or "
                      "?access_token=<token>)");
    if (n > 0) {
        for (size_t i = 0; i < gw->auth->n; i++) {
            int eq = token_eq(gw->auth->t[i].tok, gw->auth->t[i].len, tok, (size_t)n);

            found |= eq;
            scopes |= gw->auth->t[i].scopes & (0u - (unsigned)eq);
        }
    }
    memset(tok, 0, sizeof(tok));
    if (!found)
        return reject(conn, gw, 401,
                      "WWW-Authenticate: Bearer realm=\"pipecast\", error=\"invalid_token\"\r\n",
                      "invalid token");
    if (!(scopes & need)) {
        snprintf(hdr, sizeof(hdr),
                 "WWW-Authenticate: Bearer realm=\"pipecast\", error=\"insufficient_scope\", "
                 "scope=\"%s\"\r\n",
                 scope_name(need));
        snprintf(msg, sizeof(msg), "this token lacks the \"%s\" scope", scope_name(need));
        return reject(conn, gw, 403, hdr, msg);
    }
    return 0;
}

/* A non-GET write with an Origin: it must be our own origin or --cors-origin. */
static int origin_ok(const struct mg_connection *conn, const struct gw_ctx *gw)
{
    const char *origin = mg_get_header(conn, "Origin");
    const char *host = mg_get_header(conn, "Host");
    const char *cors = gw->cfg->cors_origin;

    if (!origin)
        return 1;
    if (cors[0] && (strcmp(cors, "*") == 0 || strcasecmp(cors, origin) == 0))
        return 1;
    return host && strncasecmp(origin, "http://", 7) == 0 && strcasecmp(origin + 7, host) == 0;
}

static int json_content_type(const char *ct)
{
    const char *want = "application/json";
    size_t n = strlen(want);

    if (!ct)
        return 0;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, want, n) != 0)
        return 0;
    ct += n;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

int gw_auth_check(struct mg_connection *conn, struct gw_ctx *gw)
{
    const struct mg_request_info *ri = mg_get_request_info(conn);
    const char *uri = ri && ri->local_uri ? ri->local_uri : "";
    int api = under(uri, "/api");
    unsigned need;

    if (!api && !under(uri, "/metrics"))
        return 0; /* /healthz, static files */

    /* DNS rebinding: a name that resolves to 127.0.0.1 must not reach an open API */
    if (!gw->auth && gw_auth_listen_is_loopback(gw->cfg->listen)) {
        const char *h = mg_get_header(conn, "Host");
        char host[256];

        if (h && (host_of(h, host, sizeof(host)) != 0 || !host_is_loopback(host)))
            return reject(conn, gw, 403, NULL,
                          "Host is not a loopback name (localhost, 127.0.0.1): give --tokens "
                          "FILE to serve other names");
    }

    need = required_scope(ri, uri);
    if (gw->auth && need) {
        int rc = check_token(conn, gw, need);

        if (rc)
            return rc;
    }
    if (!api || method_is(ri, "GET") || method_is(ri, "HEAD") || method_is(ri, "OPTIONS"))
        return 0;
    if (!origin_ok(conn, gw))
        return reject(conn, gw, 403, NULL,
                      "cross-site request refused: Origin is neither this gateway nor "
                      "--cors-origin");
    if (method_is(ri, "POST") &&
        (strcmp(uri, "/api/jobs") == 0 || strcmp(uri, "/api/jobs/") == 0) &&
        !json_content_type(mg_get_header(conn, "Content-Type")))
        return reject(conn, gw, 415, NULL, "POST /api/jobs needs Content-Type: application/json");
    return 0;
}
