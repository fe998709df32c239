/* fuzz_url.c -- Redis URL parsing.
 *
 * The input (up to its first NUL) is parsed as is, and again behind a
 * password: "<scheme>u:<SECRET>@<input>" with the scheme picked by byte 0.
 * Invariants:
 *   - success: port 1-65535, db >= 0, a non-empty host (tcp) or an absolute
 *     path (unix), NUL-terminated fields, err empty; describe() is exactly
 *     host:port/db or unix:path[?db=N] (so never the password);
 *   - failure: PC_EURL with a message starting "redis URL \"";
 *   - the SECRET never appears in err (unless the input itself contains it).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipecast/error.h"
#include "pipecast/url.h"

#include "fuzz_check.h"

static void check_parse(const char *s, const char *secret)
{
    struct pc_redis_url u;
    char err[512];
    memset(err, 'X', sizeof(err));
    int rc = pc_redis_url_parse(s, &u, err, sizeof(err));
    CHECK(memchr(err, '\0', sizeof(err)) != NULL);
    if (rc == 0) {
        CHECK(err[0] == '\0');
        CHECK(u.db >= 0);
        CHECK(memchr(u.user, '\0', sizeof(u.user)) != NULL);
        CHECK(memchr(u.pass, '\0', sizeof(u.pass)) != NULL);
        if (u.is_unix) {
            CHECK(u.path[0] == '/');
            CHECK(memchr(u.path, '\0', sizeof(u.path)) != NULL);
        } else {
            CHECK(u.port >= 1 && u.port <= 65535);
            CHECK(u.host[0] != '\0');
            CHECK(memchr(u.host, '\0', sizeof(u.host)) != NULL);
        }
        if (!u.has_pass)
            CHECK(u.pass[0] == '\0' && u.user[0] == '\0');
        /* describe() is exactly host/port/db or path/db: no room for a password */
        char d[512], want[512];
        pc_redis_url_describe(&u, d, sizeof(d));
        if (u.is_unix && u.db != 0)
            snprintf(want, sizeof(want), "unix:%s?db=%d", u.path, u.db);
        else if (u.is_unix)
            snprintf(want, sizeof(want), "unix:%s", u.path);
        else if (strchr(u.host, ':') != NULL)
            snprintf(want, sizeof(want), "[%s]:%d/%d", u.host, u.port, u.db);
        else
            snprintf(want, sizeof(want), "%s:%d/%d", u.host, u.port, u.db);
        CHECK(strcmp(d, want) == 0);
    } else {
        CHECK(rc == PC_EURL);
        CHECK(strncmp(err, "redis URL \"", 11) == 0);
    }
    if (secret != NULL)
        CHECK(strstr(err, secret) == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *buf, size_t size)
{
    static const char *const schemes[] = {"redis://", "unix://", "REDIS://",       "rediss://",
                                          "http://",  "",        "unix:///x?db=1&"};
    if (size < 1 || size > 4096)
        return 0;
    char *s = malloc(size + 1);
    CHECK(s != NULL);
    memcpy(s, buf + 1, size - 1);
    s[size - 1] = '\0';
    check_parse(s, NULL);

    /* a secret the input cannot easily produce by itself */
    const char *secret = "Qz7SECRETkV9";
    if (strstr(s, secret) == NULL && strstr(s, "Qz7") == NULL) {
        const char *scheme = schemes[buf[0] % 7];
        size_t len = strlen(scheme) + strlen(s) + 64;
        char *u = malloc(len);
        CHECK(u != NULL);
        /* also with the secret percent-encoded in part, and as the user */
        if (buf[0] & 8)
            snprintf(u, len, "%su:%s%%41@%s", scheme, secret, s);
        else if (buf[0] & 16)
            snprintf(u, len, "%s%s:pw@%s", scheme, secret, s);
        else
            snprintf(u, len, "%s:%s@%s", scheme, secret, s);
        check_parse(u, secret);
        free(u);
    }
    free(s);
    return 0;
}
