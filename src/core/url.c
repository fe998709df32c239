/* url.c -- Redis locations.
 *
 *   redis://[[user]:pass@]host[:port][/db]      host: name, IPv4, or [IPv6]
 *   unix://[[user]:pass@]/path/to/redis.sock[?db=N]
 *
 * The user info ends at the LAST '@', so a password may hold '@', ':' and
 * '/' unescaped; %XX escapes are decoded in user and password. Like
 * redis-cli, "redis://secret@host" (no ':') is a password without a user.
 *
 * Error messages quote the URL with the user info replaced by "***" and
 * query values other than db hidden, so the password never reaches a log.
 */
#include "pipecast/url.h"

#include <arpa/inet.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pipecast/error.h"

#define URL_SHOW_MAX 160

/* ---------------------------------------------------------------- errors */

/* Append @p n bytes to a bounded string, always NUL-terminated; non-printable
 * bytes as \xHH and '"' as \" so that the quoted URL stays one readable line. */
static void put(char *buf, size_t buflen, size_t *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[4];
        size_t k = 0;
        if (c == '"' || c == '\\') {
            esc[k++] = '\\';
            esc[k++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            esc[k++] = '\\';
            esc[k++] = 'x';
            esc[k++] = hex[c >> 4];
            esc[k++] = hex[c & 15];
        } else {
            esc[k++] = (char)c;
        }
        if (*o + k >= buflen)
            break;
        memcpy(buf + *o, esc, k);
        *o += k;
    }
    buf[*o] = '\0';
}

/* Only letters, digits, '+', '-' and '.' (RFC 3986): never ':' or '@'. */
static int is_scheme(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

/*
 * Write a quotable rendering of @p s that cannot contain the password:
 * everything before the last '@' becomes "***" (except a leading
 * "scheme://"), and every query value except db's becomes "***".
 */
static void url_redact(const char *s, char *buf, size_t buflen)
{
    size_t o = 0;
    const char *p = s;
    const char *sep = strstr(s, "://");
    const char *at = strrchr(s, '@');

    buf[0] = '\0';
    if (sep != NULL && (at == NULL || sep < at) && is_scheme(s, (size_t)(sep - s))) {
        put(buf, buflen, &o, s, (size_t)(sep + 3 - s));
        p = sep + 3;
    }
    if (at != NULL) {
        put(buf, buflen, &o, "***@", 4);
        p = at + 1;
    }
    const char *q = strchr(p, '?');
    put(buf, buflen, &o, p, q != NULL ? (size_t)(q - p) : strlen(p));
    while (q != NULL) {
        put(buf, buflen, &o, q, 1); /* '?' or '&' */
        const char *param = q + 1;
        q = strchr(param, '&');
        size_t plen = q != NULL ? (size_t)(q - param) : strlen(param);
        const char *eq = memchr(param, '=', plen);
        if (eq == NULL || (eq - param == 2 && strncmp(param, "db", 2) == 0)) {
            put(buf, buflen, &o, param, plen);
        } else {
            put(buf, buflen, &o, param, (size_t)(eq + 1 - param));
            put(buf, buflen, &o, "***", 3);
        }
    }
    if (o > URL_SHOW_MAX) {
        o = URL_SHOW_MAX;
        buf[o] = '\0';
        put(buf, buflen, &o, "...", 3);
    }
}

__attribute__((format(printf, 4, 5))) static int url_fail(const char *s, char *err, size_t errlen,
                                                          const char *fmt, ...)
{
    char shown[URL_SHOW_MAX + 8];
    va_list ap;

    if (err == NULL || errlen == 0)
        return PC_EURL;
    url_redact(s, shown, sizeof(shown));
    int n = snprintf(err, errlen, "redis URL \"%s\": ", shown);
    if (n >= 0 && (size_t)n < errlen) {
        va_start(ap, fmt);
        vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return PC_EURL;
}

/* --------------------------------------------------------------- pieces */

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Decode @p n bytes with %XX escapes into @p out (@p outlen bytes with NUL).
 * @return 0, or a static reason; the reason never quotes the input.
 */
static const char *percent_decode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t o = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '%') {
            int hi = i + 2 < n ? hexval((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < n ? hexval((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0)
                return "bad percent-escape (expected %XX with two hex digits)";
            c = (unsigned char)(hi * 16 + lo);
            if (c == 0)
                return "%00 is not allowed";
            i += 2;
        }
        if (o + 1 >= outlen)
            return "too long";
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return NULL;
}

#define NUM_NOT_A_NUMBER (-2)
#define NUM_OUT_OF_RANGE (-1)

/* Parse decimal digits as a number in [lo, hi] (lo >= 0); or one of the codes above. */
static long parse_num(const char *s, size_t n, long lo, long hi)
{
    long v = 0;

    if (n == 0)
        return NUM_NOT_A_NUMBER;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return NUM_NOT_A_NUMBER;
    }
    for (size_t i = 0; i < n; i++) {
        long d = s[i] - '0';
        if (v > (hi - d) / 10)
            return NUM_OUT_OF_RANGE; /* checked before it could overflow */
        v = v * 10 + d;
    }
    return v >= lo ? v : NUM_OUT_OF_RANGE;
}

static int is_host_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '-' || c == '_';
}

/* User info (between "://" and the last '@'): "[user]:pass" or "pass". */
static int parse_userinfo(const char *s, const char *ui, size_t n, struct pc_redis_url *out,
                          char *err, size_t errlen)
{
    const char *why;

    if (n == 0)
        return 0;
    const char *colon = memchr(ui, ':', n);
    const char *pass = ui;
    size_t passlen = n;
    if (colon != NULL) {
        size_t ulen = (size_t)(colon - ui);
        why = percent_decode(ui, ulen, out->user, sizeof(out->user));
        if (why != NULL)
            return url_fail(s, err, errlen, "user: %s", why);
        pass = colon + 1;
        passlen = n - ulen - 1;
    }
    why = percent_decode(pass, passlen, out->pass, sizeof(out->pass));
    if (why != NULL)
        return url_fail(s, err, errlen, "password: %s", why);
    out->has_pass = 1;
    return 0;
}

/* host[:port] or [v6][:port], @p n bytes at @p h. */
static int parse_hostport(const char *s, const char *h, size_t n, struct pc_redis_url *out,
                          char *err, size_t errlen)
{
    const char *host = h, *rest;
    size_t hostlen;

    if (n > 0 && h[0] == '[') {
        const char *close = memchr(h, ']', n);
        if (close == NULL)
            return url_fail(s, err, errlen, "unterminated '[' in host");
        host = h + 1;
        hostlen = (size_t)(close - host);
        rest = close + 1;
        if (hostlen == 0)
            return url_fail(s, err, errlen, "empty host");
        unsigned char addr[16];
        char tmp[64];
        if (hostlen >= sizeof(tmp))
            return url_fail(s, err, errlen, "invalid IPv6 address in brackets");
        memcpy(tmp, host, hostlen);
        tmp[hostlen] = '\0';
        if (inet_pton(AF_INET6, tmp, addr) != 1)
            return url_fail(s, err, errlen, "invalid IPv6 address in brackets");
    } else {
        const char *colon = memchr(h, ':', n);
        hostlen = colon != NULL ? (size_t)(colon - h) : n;
        rest = h + hostlen;
        if (hostlen == 0)
            return url_fail(s, err, errlen, "empty host");
        for (size_t i = 0; i < hostlen; i++) {
            if (!is_host_char((unsigned char)host[i]))
                return url_fail(s, err, errlen,
                                "invalid character in host (IPv6 addresses go in brackets: "
                                "redis://[::1]:6379)");
        }
    }
    if (hostlen >= sizeof(out->host))
        return url_fail(s, err, errlen, "host too long");
    memcpy(out->host, host, hostlen);
    out->host[hostlen] = '\0';

    size_t restlen = n - (size_t)(rest - h);
    if (restlen == 0)
        return 0;
    if (rest[0] != ':')
        return url_fail(s, err, errlen, "unexpected text after host (expected :port)");
    long port = parse_num(rest + 1, restlen - 1, 1, 65535);
    if (port == NUM_NOT_A_NUMBER)
        return url_fail(s, err, errlen, "port must be a number (1-65535)");
    if (port < 0)
        return url_fail(s, err, errlen, "port out of range (1-65535)");
    out->port = (int)port;
    return 0;
}

static int parse_db(const char *s, const char *d, size_t n, struct pc_redis_url *out, char *err,
                    size_t errlen)
{
    long db = parse_num(d, n, 0, INT_MAX);
    if (db == NUM_NOT_A_NUMBER)
        return url_fail(s, err, errlen, "db must be a number (0-%d)", INT_MAX);
    if (db < 0)
        return url_fail(s, err, errlen, "db out of range (0-%d)", INT_MAX);
    out->db = (int)db;
    return 0;
}

/* unix query: "db=N" parameters joined by '&'. */
static int parse_query(const char *s, const char *q, struct pc_redis_url *out, char *err,
                       size_t errlen)
{
    while (*q != '\0') {
        size_t plen = strcspn(q, "&");
        if (plen > 3 && strncmp(q, "db=", 3) == 0) {
            int rc = parse_db(s, q + 3, plen - 3, out, err, errlen);
            if (rc != 0)
                return rc;
        } else if ((plen == 2 && strncmp(q, "db", 2) == 0) ||
                   (plen == 3 && strncmp(q, "db=", 3) == 0)) {
            return url_fail(s, err, errlen, "db must be a number (0-%d)", INT_MAX);
        } else if (plen > 0) {
            size_t klen = strcspn(q, "=&");
            return url_fail(s, err, errlen, "unknown parameter \"%.*s\" (only db=N)",
                            klen > 32 ? 32 : (int)klen, q);
        }
        q += plen;
        if (*q == '&')
            q++;
    }
    return 0;
}

/* ------------------------------------------------------------------ API */

int pc_redis_url_parse(const char *s, struct pc_redis_url *out, char *err, size_t errlen)
{
    struct pc_redis_url u;
    const char *p;
    int rc;

    if (err != NULL && errlen > 0)
        err[0] = '\0';
    if (s == NULL || out == NULL) {
        if (err != NULL && errlen > 0)
            snprintf(err, errlen, "redis URL: missing");
        return PC_EURL;
    }
    memset(&u, 0, sizeof(u));
    u.port = 6379;

    if (strncasecmp(s, "redis://", 8) == 0) {
        p = s + 8;
    } else if (strncasecmp(s, "unix://", 7) == 0) {
        p = s + 7;
        u.is_unix = 1;
    } else if (strncasecmp(s, "rediss://", 9) == 0) {
        return url_fail(s, err, errlen, "TLS (rediss://) is not supported");
    } else if (strstr(s, "://") != NULL) {
        return url_fail(s, err, errlen,
                        "unknown scheme (expected redis://host:port/db or unix:///path)");
    } else {
        return url_fail(s, err, errlen,
                        "missing scheme (expected redis://host:port/db or unix:///path)");
    }

    const char *at = strrchr(p, '@');
    if (at != NULL) {
        rc = parse_userinfo(s, p, (size_t)(at - p), &u, err, errlen);
        if (rc != 0)
            return rc;
        p = at + 1;
    }

    if (u.is_unix) {
        size_t plen = strcspn(p, "?");
        if (plen == 0)
            return url_fail(s, err, errlen, "empty socket path (expected unix:///path)");
        if (p[0] != '/')
            return url_fail(s, err, errlen, "socket path must be absolute (unix:///path)");
        if (plen >= sizeof(u.path))
            return url_fail(s, err, errlen, "socket path too long (max %zu bytes)",
                            sizeof(u.path) - 1);
        if (memchr(p, '#', plen) != NULL)
            return url_fail(s, err, errlen, "unexpected '#' in socket path");
        memcpy(u.path, p, plen);
        u.path[plen] = '\0';
        if (p[plen] == '?' && (rc = parse_query(s, p + plen + 1, &u, err, errlen)) != 0)
            return rc;
    } else {
        size_t alen = strcspn(p, "/?#");
        rc = parse_hostport(s, p, alen, &u, err, errlen);
        if (rc != 0)
            return rc;
        p += alen;
        if (*p == '?' || *p == '#')
            return url_fail(s, err, errlen, "unexpected '%c' (the db goes in the path: /N)", *p);
        if (*p == '/' && p[1] != '\0' && (rc = parse_db(s, p + 1, strlen(p + 1), &u, err, errlen)))
            return rc;
    }
    *out = u;
    return 0;
}

const char *pc_redis_url_choose(const char *explicit_url)
{
    if (explicit_url != NULL)
        return explicit_url;
    const char *env = getenv(PC_URL_ENV);
    if (env != NULL && *env != '\0')
        return env;
    return PC_URL_DEFAULT;
}

void pc_redis_url_describe(const struct pc_redis_url *u, char *buf, size_t buflen)
{
    if (buf == NULL || buflen == 0)
        return;
    if (u->is_unix) {
        if (u->db != 0)
            snprintf(buf, buflen, "unix:%s?db=%d", u->path, u->db);
        else
            snprintf(buf, buflen, "unix:%s", u->path);
    } else if (strchr(u->host, ':') != NULL) {
        snprintf(buf, buflen, "[%s]:%d/%d", u->host, u->port, u->db);
    } else {
        snprintf(buf, buflen, "%s:%d/%d", u->host, u->port, u->db);
    }
}
