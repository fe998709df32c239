/* redis.h -- synchronous Redis connections (hiredis) with timeouts, AUTH,
 * SELECT, and a reconnect backoff.
 */
#ifndef PC_REDIS_H
#define PC_REDIS_H

#include <hiredis/hiredis.h>

#include "url.h"

/**
 * Connect to @p u within @p connect_timeout_ms, send AUTH (when the URL has a
 * password) and SELECT (when db != 0), and set a command timeout of
 * @p cmd_timeout_ms (0: none, for connections that BLOCK).
 * @return a connected context owned by the caller (redisFree), or NULL with
 * a message in @p err (`redis 127.0.0.1:6379/0: Connection refused`).
 */
redisContext *pc_redis_connect(const struct pc_redis_url *u, int connect_timeout_ms,
                               int cmd_timeout_ms, char *err, size_t errlen);

/**
 * Like pc_redis_connect, and also say why it failed in @p code (may be NULL):
 * 0, PC_EREDIS (unreachable, connection lost), PC_ETIMEOUT, PC_ENOMEM, or
 * PC_EAUTH when Redis refused AUTH or SELECT (retrying will not help).
 */
redisContext *pc_redis_connect_ex(const struct pc_redis_url *u, int connect_timeout_ms,
                                  int cmd_timeout_ms, int *code, char *err, size_t errlen);

/** Exponential backoff with jitter between min_ms and max_ms. */
struct pc_backoff {
    int min_ms;
    int max_ms;
    int cur_ms; /* 0 before the first failure */
    unsigned seed;
};

/** min_ms is raised to 1 and max_ms to min_ms when smaller. */
void pc_backoff_init(struct pc_backoff *b, int min_ms, int max_ms);

/**
 * @return how long to wait before the next attempt, and grow the delay.
 * The delay doubles from min_ms up to max_ms; the value returned is drawn
 * from [max(min_ms, delay / 2), delay].
 */
int pc_backoff_next(struct pc_backoff *b);

/** Back to the minimum after a success. */
void pc_backoff_reset(struct pc_backoff *b);

/** Monotonic clock in milliseconds / microseconds. */
long long pc_now_ms(void);
long long pc_now_us(void);

/** Wall clock in milliseconds since the epoch. */
long long pc_wall_ms(void);

#endif
