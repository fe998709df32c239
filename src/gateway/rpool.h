/* rpool.h -- a small bounded pool of synchronous Redis connections.
 *
 * REST handlers and SSE replay pages borrow a connection, run a few
 * commands and give it back. Checkout blocks up to a timeout when every
 * connection is lent out. Connections are made lazily; a broken one is
 * dropped when it comes back and replaced by the next checkout. A connection
 * that sat idle for a while is checked with PING before it is lent again, so
 * that a Redis restart costs no failed request.
 *
 *   redisContext *c = gw_rpool_get(pool, 2000, err, sizeof(err));
 *   if (!c) ...                      // Redis unreachable or pool exhausted: err says why
 *   r = redisCommand(c, "PING");
 *   gw_rpool_put(pool, c, r == NULL); // broken when the command failed
 */
#ifndef PC_GW_RPOOL_H
#define PC_GW_RPOOL_H

#include <stddef.h>

#include <hiredis/hiredis.h>

#include "pipecast/url.h"

#include "metrics.h"

struct gw_rpool;

/** @return a pool of at most @p size connections to @p u (nothing is connected yet), or NULL. */
struct gw_rpool *gw_rpool_new(const struct pc_redis_url *u, int size, struct gw_metrics *m);

/** Close every idle connection and free the pool. All connections must have been returned. */
void gw_rpool_free(struct gw_rpool *p);

/**
 * Borrow a connection, waiting up to @p wait_ms for one to be free.
 * @return the connection (give it back with gw_rpool_put), or NULL with the
 * reason in @p err.
 */
redisContext *gw_rpool_get(struct gw_rpool *p, int wait_ms, char *err, size_t errlen);

/** Give @p c back; when @p broken (or c->err is set) it is closed instead of kept. */
void gw_rpool_put(struct gw_rpool *p, redisContext *c, int broken);

/**
 * Run one command on a borrowed connection; on a connection failure, once more
 * on a fresh one (so use it for idempotent commands only).
 * @return the reply (caller frees with freeReplyObject; it may be an error
 * reply), or NULL with the reason in @p err.
 */
redisReply *gw_rpool_command(struct gw_rpool *p, int wait_ms, char *err, size_t errlen, int argc,
                             const char **argv, const size_t *argvlen);

#endif
