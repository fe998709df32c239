/* redis.c -- synchronous connections (hiredis 0.14), backoff, clocks.
 *
 * hiredis 0.14 has no redisConnectWithOptions: the connect timeout goes to
 * redisConnect[Unix]WithTimeout and the command timeout is set afterwards
 * with redisSetTimeout. The AUTH/SELECT handshake runs under the connect
 * timeout even when the caller wants none for commands (a BLOCKing reader):
 * a server that accepts but never answers must not hang the handshake.
 */
#include "pipecast/redis.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "pipecast/error.h"

static struct timeval ms_to_tv(int ms)
{
    struct timeval tv;
    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

/* hiredis reports a socket timeout as EAGAIN's text; say what happened. */
static const char *redis_why(const redisContext *c)
{
    if (c->err == REDIS_ERR_IO && strstr(c->errstr, "temporarily unavailable") != NULL)
        return "timed out";
    if (c->err == REDIS_ERR_EOF)
        return "connection closed by server";
    return c->errstr[0] != '\0' ? c->errstr : "unknown error";
}

static int redis_code(const redisContext *c)
{
    if (c->err == REDIS_ERR_IO && strstr(c->errstr, "temporarily unavailable") != NULL)
        return PC_ETIMEOUT;
    if (c->err == REDIS_ERR_IO && strstr(c->errstr, "timed out") != NULL)
        return PC_ETIMEOUT;
    if (c->err == REDIS_ERR_OOM)
        return PC_ENOMEM;
    return PC_EREDIS;
}

/*
 * Run one handshake command. @p what names it in messages ("AUTH",
 * "SELECT 3"); the arguments (the password) never appear in them.
 * @return 0, PC_EAUTH when Redis refused it, or a connection error code.
 */
static int handshake(redisContext *c, const char *where, const char *what, int argc,
                     const char **argv, char *err, size_t errlen)
{
    redisReply *r = redisCommandArgv(c, argc, argv, NULL);
    if (r == NULL) {
        snprintf(err, errlen, "redis %s: %s: %s", where, what, redis_why(c));
        return redis_code(c);
    }
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "redis %s: %s refused: %s", where, what, r->str);
        rc = PC_EAUTH;
    }
    freeReplyObject(r);
    return rc;
}

redisContext *pc_redis_connect_ex(const struct pc_redis_url *u, int connect_timeout_ms,
                                  int cmd_timeout_ms, int *code, char *err, size_t errlen)
{
    char where[400];
    char errbuf[1];
    redisContext *c;
    int rc;

    if (err == NULL || errlen == 0) {
        err = errbuf;
        errlen = sizeof(errbuf);
    }
    err[0] = '\0';
    pc_redis_url_describe(u, where, sizeof(where));

    if (connect_timeout_ms > 0) {
        struct timeval tv = ms_to_tv(connect_timeout_ms);
        c = u->is_unix ? redisConnectUnixWithTimeout(u->path, tv)
                       : redisConnectWithTimeout(u->host, u->port, tv);
    } else {
        c = u->is_unix ? redisConnectUnix(u->path) : redisConnect(u->host, u->port);
    }
    if (c == NULL) {
        snprintf(err, errlen, "redis %s: out of memory", where);
        rc = PC_ENOMEM;
        goto fail;
    }
    if (c->err != 0) {
        snprintf(err, errlen, "redis %s: %s", where, redis_why(c));
        rc = redis_code(c);
        goto fail;
    }

    if (connect_timeout_ms > 0 && redisSetTimeout(c, ms_to_tv(connect_timeout_ms)) != REDIS_OK) {
        snprintf(err, errlen, "redis %s: cannot set timeout", where);
        rc = PC_EREDIS;
        goto fail;
    }
    if (u->has_pass) {
        /* "AUTH user pass" needs Redis 6 (ACL); "AUTH pass" works everywhere */
        const char *argv[3] = {"AUTH", u->user, u->pass};
        int argc = 3;
        if (u->user[0] == '\0') {
            argv[1] = u->pass;
            argc = 2;
        }
        rc = handshake(c, where, "AUTH", argc, argv, err, errlen);
        if (rc != 0)
            goto fail;
    }
    if (u->db != 0) {
        char db[16], what[32];
        snprintf(db, sizeof(db), "%d", u->db);
        snprintf(what, sizeof(what), "SELECT %d", u->db);
        const char *argv[2] = {"SELECT", db};
        rc = handshake(c, where, what, 2, argv, err, errlen);
        if (rc != 0)
            goto fail;
    }
    /* {0, 0} clears SO_RCVTIMEO/SO_SNDTIMEO: no timeout for BLOCKing readers. */
    if (redisSetTimeout(c, ms_to_tv(cmd_timeout_ms > 0 ? cmd_timeout_ms : 0)) != REDIS_OK) {
        snprintf(err, errlen, "redis %s: cannot set timeout", where);
        rc = PC_EREDIS;
        goto fail;
    }
    if (code != NULL)
        *code = 0;
    return c;

fail:
    if (c != NULL)
        redisFree(c);
    if (code != NULL)
        *code = rc;
    return NULL;
}

redisContext *pc_redis_connect(const struct pc_redis_url *u, int connect_timeout_ms,
                               int cmd_timeout_ms, char *err, size_t errlen)
{
    return pc_redis_connect_ex(u, connect_timeout_ms, cmd_timeout_ms, NULL, err, errlen);
}

/* -------------------------------------------------------------- backoff */

/* xorshift32: enough to spread reconnects; rand() would be shared state. */
static unsigned backoff_rand(struct pc_backoff *b)
{
    unsigned x = b->seed != 0 ? b->seed : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b->seed = x;
    return x;
}

void pc_backoff_init(struct pc_backoff *b, int min_ms, int max_ms)
{
    if (min_ms < 1)
        min_ms = 1;
    if (max_ms < min_ms)
        max_ms = min_ms;
    b->min_ms = min_ms;
    b->max_ms = max_ms;
    b->cur_ms = 0;
    /* different processes (and backoffs) should not retry in lockstep */
    b->seed = (unsigned)pc_now_us() ^ ((unsigned)getpid() << 16) ^ (unsigned)(uintptr_t)b;
    if (b->seed == 0)
        b->seed = 1;
}

/*
 * The delay doubles from min to max; the value returned is drawn from
 * [cur/2, cur] (but never below min) so that clients disconnected together
 * spread out instead of reconnecting in waves.
 */
int pc_backoff_next(struct pc_backoff *b)
{
    if (b->cur_ms <= 0)
        b->cur_ms = b->min_ms;
    else if (b->cur_ms > b->max_ms / 2)
        b->cur_ms = b->max_ms;
    else
        b->cur_ms *= 2;

    int lo = b->cur_ms / 2;
    if (lo < b->min_ms)
        lo = b->min_ms;
    int span = b->cur_ms - lo;
    if (span <= 0)
        return b->cur_ms;
    return lo + (int)(backoff_rand(b) % ((unsigned)span + 1));
}

void pc_backoff_reset(struct pc_backoff *b)
{
    b->cur_ms = 0;
}

/* --------------------------------------------------------------- clocks */

long long pc_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

long long pc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long pc_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
