/* rconn.c -- one async Redis connection with reconnect, as a small state machine:
 *
 *   DOWN --connect--> CONNECTING --connected--> HANDSHAKE (AUTH, SELECT) --> UP
 *     ^                    |                        |                       |
 *     +---- retry timer <--+------ failure ---------+-- error/lost/reset ---+
 *
 * hiredis 0.14 has no timeouts for async contexts: the watchdog (once a
 * second) drops a connection that stays CONNECTING/HANDSHAKE too long, or
 * whose watched command (a heartbeat, a BLOCK read) gets no answer in time.
 * A reset is deferred to an event of its own: hiredis objects are never freed
 * inside their own callbacks. While a reset is pending, replies are not
 * trusted (rconn_reply_ok) so that commands are resent in order.
 */
#include "runner.h"

#include <string.h>

#include <hiredis/adapters/libevent.h>

#include "pipecast/log.h"

#define RC_CONNECT_LIMIT_MS 5000
#define RC_BACKOFF_MIN_MS 100
#define RC_BACKOFF_MAX_MS 2000
#define RC_STABLE_MS 5000 /* up this long: the backoff starts from its minimum again */

static void rconn_connect(struct rconn *rc);

static void set_state(struct rconn *rc, enum rconn_state s)
{
    rc->state = s;
    rc->state_ms = pc_now_ms();
}

/* The connection is gone (its context freed or about to be): tell the owner, retry. */
static void lost(struct rconn *rc)
{
    int was_up = rc->state == RC_UP;
    set_state(rc, RC_DOWN);
    rc->ac = NULL;
    rc->resetting = 0;
    rc->wait_ms = 0;
    if (was_up && rc->on_down != NULL)
        rc->on_down(rc);
    if (rc->closing)
        return;
    int ms = pc_backoff_next(&rc->bo);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(rc->retry_ev, &tv);
}

static void went_up(struct rconn *rc)
{
    set_state(rc, RC_UP);
    rc->ups++;
    if (rc->down_logged) {
        pc_info("redis", "redis %s: %s connection back", rc->rn->o.where, rc->name);
        rc->down_logged = 0;
    } else {
        pc_debug("redis", "redis %s: %s connection up", rc->rn->o.where, rc->name);
    }
    if (rc->on_up != NULL)
        rc->on_up(rc);
}

static void log_down(struct rconn *rc, const char *why)
{
    if (!rc->down_logged && !rc->closing) {
        pc_warn("redis", "redis %s: %s connection: %s; reconnecting", rc->rn->o.where, rc->name,
                why);
        rc->down_logged = 1;
    } else {
        pc_debug("redis", "redis %s: %s connection: %s", rc->rn->o.where, rc->name, why);
    }
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct rconn *rc = ac->data;
    (void)status;
    if (rc == NULL || rc->ac != ac)
        return;
    log_down(rc, ac->err != 0 ? ac->errstr : "connection closed");
    lost(rc);
}

static void handshake_cb(redisAsyncContext *ac, void *r, void *priv)
{
    struct rconn *rc = priv;
    redisReply *reply = r;
    (void)ac;
    if (reply == NULL || rc->state != RC_HANDSHAKE)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        /* AUTH / SELECT refused: retrying later is all we can do; say it loudly */
        pc_error("redis", "redis %s: %s refused: %s", rc->rn->o.where,
                 rc->handshake_left > 1 || rc->rn->o.url.db == 0 ? "AUTH" : "SELECT", reply->str);
        rc->down_logged = 1;
        rconn_reset(rc, NULL);
        return;
    }
    if (--rc->handshake_left == 0)
        went_up(rc);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct rconn *rc = ac->data;
    if (rc == NULL || rc->ac != ac)
        return;
    if (status != REDIS_OK) {
        /* hiredis frees the context after this callback */
        log_down(rc, ac->errstr[0] != '\0' ? ac->errstr : "connect failed");
        lost(rc);
        return;
    }
    const struct pc_redis_url *u = &rc->rn->o.url;
    rc->handshake_left = 0;
    set_state(rc, RC_HANDSHAKE);
    redisAsyncContext *c = (redisAsyncContext *)ac;
    if (u->has_pass) {
        if (u->user[0] != '\0')
            redisAsyncCommand(c, handshake_cb, rc, "AUTH %s %s", u->user, u->pass);
        else
            redisAsyncCommand(c, handshake_cb, rc, "AUTH %s", u->pass);
        rc->handshake_left++;
    }
    if (u->db != 0) {
        redisAsyncCommand(c, handshake_cb, rc, "SELECT %d", u->db);
        rc->handshake_left++;
    }
    if (rc->handshake_left == 0)
        went_up(rc);
}

static void rconn_connect(struct rconn *rc)
{
    const struct pc_redis_url *u = &rc->rn->o.url;
    if (rc->closing || rc->ac != NULL)
        return;
    redisAsyncContext *ac =
        u->is_unix ? redisAsyncConnectUnix(u->path) : redisAsyncConnect(u->host, u->port);
    if (ac == NULL) {
        log_down(rc, "out of memory");
        lost(rc);
        return;
    }
    if (ac->err != 0) {
        log_down(rc, ac->errstr);
        redisAsyncFree(ac);
        lost(rc);
        return;
    }
    ac->data = rc;
    rc->ac = ac;
    set_state(rc, RC_CONNECTING);
    if (redisLibeventAttach(ac, rc->rn->base) != REDIS_OK) {
        rc->ac = NULL;
        redisAsyncFree(ac);
        lost(rc);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rconn_connect(arg);
}

/* Free the context now; its pending callbacks run with NULL replies. */
static void drop_now(struct rconn *rc)
{
    redisAsyncContext *ac = rc->ac;
    if (ac == NULL)
        return;
    rc->resetting = 1; /* nothing new is queued while the callbacks run */
    redisAsyncFree(ac);
    /* the disconnect callback runs only for connected contexts */
    if (rc->ac == ac)
        lost(rc);
}

static void drop_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    drop_now(arg);
}

int rconn_init(struct rconn *rc, struct runner *rn, const char *name, int wait_limit_ms,
               void (*on_up)(struct rconn *), void (*on_down)(struct rconn *))
{
    memset(rc, 0, sizeof(*rc));
    rc->rn = rn;
    rc->name = name;
    rc->wait_limit_ms = wait_limit_ms;
    rc->on_up = on_up;
    rc->on_down = on_down;
    pc_backoff_init(&rc->bo, RC_BACKOFF_MIN_MS, RC_BACKOFF_MAX_MS);
    rc->retry_ev = evtimer_new(rn->base, retry_cb, rc);
    rc->drop_ev = event_new(rn->base, -1, 0, drop_cb, rc);
    return rc->retry_ev != NULL && rc->drop_ev != NULL ? 0 : -1;
}

void rconn_start(struct rconn *rc)
{
    rconn_connect(rc);
}

int rconn_ready(const struct rconn *rc)
{
    return rc->ac != NULL && rc->state == RC_UP && !rc->resetting && !rc->closing;
}

int rconn_reply_ok(const struct rconn *rc, const void *reply)
{
    return reply != NULL && rc->ac != NULL && rc->state == RC_UP && !rc->resetting;
}

int rconn_cmd(struct rconn *rc, redisCallbackFn *cb, void *priv, int argc, const char **argv,
              const size_t *lens)
{
    if (!rconn_ready(rc))
        return -1;
    return redisAsyncCommandArgv(rc->ac, cb, priv, argc, argv, lens) == REDIS_OK ? 0 : -1;
}

int rconn_raw(struct rconn *rc, redisCallbackFn *cb, void *priv, const char *cmd, size_t len)
{
    if (!rconn_ready(rc))
        return -1;
    return redisAsyncFormattedCommand(rc->ac, cb, priv, cmd, len) == REDIS_OK ? 0 : -1;
}

void rconn_reset(struct rconn *rc, const char *why)
{
    if (rc->ac == NULL || rc->resetting)
        return;
    if (why != NULL)
        log_down(rc, why);
    rc->resetting = 1;
    event_active(rc->drop_ev, 0, 0);
}

void rconn_close(struct rconn *rc)
{
    rc->closing = 1;
    if (rc->retry_ev != NULL)
        evtimer_del(rc->retry_ev);
    drop_now(rc);
}

void rconn_free(struct rconn *rc)
{
    rconn_close(rc);
    if (rc->retry_ev != NULL)
        event_free(rc->retry_ev);
    if (rc->drop_ev != NULL)
        event_free(rc->drop_ev);
    rc->retry_ev = rc->drop_ev = NULL;
}

void rconn_watchdog(struct rconn *rc, long long now)
{
    if (rc->ac == NULL || rc->resetting)
        return;
    if ((rc->state == RC_CONNECTING || rc->state == RC_HANDSHAKE) &&
        now - rc->state_ms > RC_CONNECT_LIMIT_MS) {
        rconn_reset(rc, "connect timed out");
        return;
    }
    if (rc->state == RC_UP && rc->wait_ms != 0 && now - rc->wait_ms > rc->wait_limit_ms) {
        rconn_reset(rc, "no reply (timed out)");
        return;
    }
    if (rc->state == RC_UP && now - rc->state_ms > RC_STABLE_MS)
        pc_backoff_reset(&rc->bo);
}
