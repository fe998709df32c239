/* rpool.c -- bounded pool of synchronous Redis connections. */
#include "rpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipecast/log.h"
#include "pipecast/redis.h"

#define RPOOL_CONNECT_TIMEOUT_MS 1000
#define RPOOL_CMD_TIMEOUT_MS 5000
#define RPOOL_IDLE_CHECK_MS 1000 /* PING a connection idle longer than this */

struct gw_rpool {
    struct pc_redis_url url;
    struct gw_metrics *metrics;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    int size;
    int navail; /* slots not lent out (idle connections + empty slots) */
    int nidle;  /* idle[0..nidle) are connected and free */
    redisContext **idle;
    long long *idle_since; /* pc_now_ms() when each idle connection came back */
    int nbroken;           /* dropped connections not yet replaced (for the reconnect count) */
};

struct gw_rpool *gw_rpool_new(const struct pc_redis_url *u, int size, struct gw_metrics *m)
{
    struct gw_rpool *p = calloc(1, sizeof(*p));
    pthread_condattr_t ca;

    if (!p)
        return NULL;
    p->url = *u;
    p->metrics = m;
    p->size = size;
    p->navail = size;
    p->idle = calloc((size_t)size, sizeof(*p->idle));
    p->idle_since = calloc((size_t)size, sizeof(*p->idle_since));
    if (!p->idle || !p->idle_since) {
        free(p->idle);
        free(p->idle_since);
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&p->cond, &ca);
    pthread_condattr_destroy(&ca);
    return p;
}

void gw_rpool_free(struct gw_rpool *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->nidle; i++)
        redisFree(p->idle[i]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cond);
    free(p->idle);
    free(p->idle_since);
    free(p);
}

static void deadline_ts(long long deadline_ms, struct timespec *ts)
{
    ts->tv_sec = (time_t)(deadline_ms / 1000);
    ts->tv_nsec = (long)(deadline_ms % 1000) * 1000000L;
}

/* An idle connection may have been closed by Redis (restart, timeout): check it. */
static int still_alive(redisContext *c)
{
    redisReply *r = redisCommand(c, "PING");
    int ok = r && r->type == REDIS_REPLY_STATUS;

    if (r)
        freeReplyObject(r);
    return ok;
}

redisContext *gw_rpool_get(struct gw_rpool *p, int wait_ms, char *err, size_t errlen)
{
    long long deadline = pc_now_ms() + wait_ms;
    redisContext *c = NULL;
    long long since = 0;
    struct timespec ts;
    int replaced = 0;

    deadline_ts(deadline, &ts);
    pthread_mutex_lock(&p->mu);
    while (p->navail == 0) {
        if (pthread_cond_timedwait(&p->cond, &p->mu, &ts) == ETIMEDOUT && p->navail == 0) {
            pthread_mutex_unlock(&p->mu);
            snprintf(err, errlen, "redis: no free connection (all %d busy)", p->size);
            return NULL;
        }
    }
    p->navail--;
    if (p->nidle > 0) {
        p->nidle--;
        c = p->idle[p->nidle];
        since = p->idle_since[p->nidle];
    }
    pthread_mutex_unlock(&p->mu);

    if (c && pc_now_ms() - since > RPOOL_IDLE_CHECK_MS && !still_alive(c)) {
        pc_debug("rpool", "idle connection lost (%s), reconnecting", c->errstr);
        redisFree(c);
        c = NULL;
        replaced = 1;
    }
    if (!c) {
        c = pc_redis_connect(&p->url, RPOOL_CONNECT_TIMEOUT_MS, RPOOL_CMD_TIMEOUT_MS, err, errlen);
        pthread_mutex_lock(&p->mu);
        if (!c) {
            p->navail++;
            pthread_cond_signal(&p->cond);
        } else if (p->nbroken > 0) {
            p->nbroken--;
            replaced = 1;
        }
        pthread_mutex_unlock(&p->mu);
        if (!c) {
            gw_metrics_add(&p->metrics->redis_errors, 1);
            return NULL;
        }
        if (replaced)
            gw_metrics_add(&p->metrics->redis_reconnects, 1);
    }
    return c;
}

void gw_rpool_put(struct gw_rpool *p, redisContext *c, int broken)
{
    if (c && (broken || c->err)) {
        redisFree(c);
        c = NULL;
        gw_metrics_add(&p->metrics->redis_errors, 1);
        pthread_mutex_lock(&p->mu);
        if (p->nbroken < p->size)
            p->nbroken++;
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_lock(&p->mu);
    if (c) {
        p->idle[p->nidle] = c;
        p->idle_since[p->nidle] = pc_now_ms();
        p->nidle++;
    }
    p->navail++;
    pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

redisReply *gw_rpool_command(struct gw_rpool *p, int wait_ms, char *err, size_t errlen, int argc,
                             const char **argv, const size_t *argvlen)
{
    for (int attempt = 0; attempt < 2; attempt++) {
        redisContext *c = gw_rpool_get(p, wait_ms, err, errlen);
        redisReply *r;

        if (!c)
            return NULL;
        r = redisCommandArgv(c, argc, argv, argvlen);
        if (r) {
            gw_rpool_put(p, c, 0);
            return r;
        }
        snprintf(err, errlen, "redis: %s", c->errstr[0] ? c->errstr : "connection lost");
        gw_rpool_put(p, c, 1);
    }
    return NULL;
}
