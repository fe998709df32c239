/* url.h -- Redis locations: redis://[user:pass@]host[:port][/db] or unix:///path[?db=N].
 *
 * Percent-escapes (%XX) are decoded in user and password. IPv6 hosts go in
 * brackets: redis://[::1]:6379. Default port 6379, default db 0.
 *
 * Details: the user info ends at the last '@', so a password may contain '@',
 * ':' and '/' unescaped. As with redis-cli, user info without ':' is a
 * password ("redis://secret@host"). unix:// URLs may carry user info too
 * ("unix://:secret@/run/redis.sock?db=2"). The scheme is case-insensitive.
 */
#ifndef PC_URL_H
#define PC_URL_H

#include <stddef.h>

#define PC_URL_ENV "PIPECAST_REDIS_URL"
#define PC_URL_DEFAULT "redis://127.0.0.1:6379/0"

struct pc_redis_url {
    int is_unix; /* 1: path is used, host/port are not */
    char host[256];
    int port;
    char path[108]; /* sun_path size */
    char user[128]; /* empty when absent */
    char pass[256]; /* empty when absent */
    int has_pass;   /* 1 when the URL carried a password (may be empty) */
    int db;         /* 0..(2^31-1) */
};

/**
 * Parse @p s into @p out. On failure @return PC_EURL and write why into
 * @p err (e.g. `redis URL "redis://h:99999": port out of range (1-65535)`).
 * The password is never written into @p err.
 */
int pc_redis_url_parse(const char *s, struct pc_redis_url *out, char *err, size_t errlen);

/**
 * The URL to use: @p explicit_url if not NULL, else $PIPECAST_REDIS_URL if set
 * and non-empty, else PC_URL_DEFAULT.
 */
const char *pc_redis_url_choose(const char *explicit_url);

/** Write "host:port/db" or "unix:/path" (never the password) into @p buf. */
void pc_redis_url_describe(const struct pc_redis_url *u, char *buf, size_t buflen);

#endif
