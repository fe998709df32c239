/* sessions.c -- idle expiry of job sessions: activity touches, and the housekeeping thread that
 * publishes which channels have open SSE streams and expires idle sessions (see sessions.h).
 *
 * A session's life, as its entry in pc:sessions:expiry and its meta hash say:
 *
 *   live ──(deadline passes, nobody watching)──> claimed ──mark──> expired ──finish──> ...
 *    ^  score = last_active + idle_s              score = lease end   expired_ms set,
 *    │                                                                job ids snapshot
 *    │     ... finished ──(+grace)──> swept
 *    │         score = finished + grace, finished_ms set, keys get their TTL
 *    └── activity (touch; a submit or PUT also revives an expired session)
 *
 * Each step is one Lua script, so that a touch racing the housekeeping never
 * loses: the claim only takes a session whose deadline is really due, the mark
 * only succeeds when last_active_ms is still what the claim saw (a touch in
 * between moves it, and with it the deadline), and the finish only applies to
 * a session still marked expired (a submit or PUT in between revived it).
 *
 * "Expired" = its queued/running jobs are killed (gw_jobs_session_walk: the
 * code of DELETE /api/sessions/<s>), the channel streams of its jobs get
 * EXPIRE grace NX (watchers still see the exit events), the set and meta get
 * a TTL. The sweep, one grace later, does the same again for what appeared
 * since: a job that was still queued publishes its exit (and so creates its
 * channel stream) only when a runner takes it.
 *
 * "Its jobs" = the snapshot the mark took of the session's set in the same
 * script (<prefix>:sessions:snap:<s>, flag expired_snap in the meta): a
 * submit whose MULTI/EXEC lands right after the mark revives the session, and
 * its job, not in the snapshot, is not killed by that expiry. The finish
 * sets finished_ms: a claim that finds expired_ms without it (the gateway
 * died, or its walk failed, between mark and finish) does the first pass
 * again -- kill, first TTLs, the sweep scheduled, the log line and the count.
 */
#include "sessions.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pipecast/log.h"
#include "pipecast/redis.h"

#include "gateway.h"
#include "http_util.h"

#define SESS_PASS_MS 1000      /* one housekeeping pass per second */
#define SESS_DUE_LIMIT 100     /* due sessions taken per pass */
#define SESS_LEASE_MS 15000    /* a claim's hold: a gateway dying mid-work is retried after it */
#define SESS_POOL_WAIT_MS 1000 /* a pass waits this long for a pooled connection, then skips */
#define SESS_PRUNE_EVERY_MS 60000
/* watched scores are kept longer than the longest idle_s, so an old stream still counts */
#define SESS_WATCH_KEEP_MS ((long long)GW_SESSION_IDLE_MAX * 1000 + 86400000LL)
#define WATCH_BATCH 512      /* channels per ZADD */
#define WATCH_PASS_MAX 16384 /* channels written per pass (more: the rest on the next passes) */

/* ------------------------------------------------------------------------ */
/* Keys and the activity script                                              */
/* ------------------------------------------------------------------------ */

void gw_session_meta_key(char *dst, size_t len, const char *prefix, const char *session)
{
    snprintf(dst, len, "%s:sessions:meta:%s", prefix, session);
}

void gw_session_set_key(char *dst, size_t len, const char *prefix, const char *session)
{
    snprintf(dst, len, "%s:session:%s", prefix, session);
}

void gw_session_expiry_key(char *dst, size_t len, const char *prefix)
{
    snprintf(dst, len, "%s:sessions:expiry", prefix);
}

void gw_session_watched_key(char *dst, size_t len, const char *prefix)
{
    snprintf(dst, len, "%s:sessions:watched", prefix);
}

long long gw_session_active_ms(long long last_active_ms, long long watched_ms, long long now_ms)
{
    if (watched_ms > 0 && watched_ms >= now_ms - GW_SESSION_WATCH_FRESH_MS)
        watched_ms = now_ms;
    return watched_ms > last_active_ms ? watched_ms : last_active_ms;
}

/*
 * KEYS: meta, expiry, set. ARGV: session, now ms, idle_s (0: keep), revive (1/0).
 * last_active_ms never goes back (gateways' clocks may differ a little).
 */
static const char TOUCH_LUA[] =
    "local idle = tonumber(ARGV[3])\n"
    "if idle > 0 then\n"
    "  redis.call('HSET', KEYS[1], 'idle_s', ARGV[3])\n"
    "else\n"
    "  idle = tonumber(redis.call('HGET', KEYS[1], 'idle_s'))\n"
    "  if not idle then return 0 end\n"
    "end\n"
    "if redis.call('HEXISTS', KEYS[1], 'expired_ms') == 1 then\n"
    "  if ARGV[4] ~= '1' then return -1 end\n"
    "  redis.call('HDEL', KEYS[1], 'expired_ms', 'finished_ms', 'expired_snap')\n"
    "  redis.call('PERSIST', KEYS[3])\n"
    "end\n"
    "redis.call('PERSIST', KEYS[1])\n"
    "local now = tonumber(ARGV[2])\n"
    "local la = tonumber(redis.call('HGET', KEYS[1], 'last_active_ms'))\n"
    "if not la or la < now then la = now end\n"
    "redis.call('HSET', KEYS[1], 'last_active_ms', string.format('%.0f', la))\n"
    "redis.call('ZADD', KEYS[2], string.format('%.0f', la + idle * 1000), ARGV[1])\n"
    "return 1\n";

static void touch_arg(struct gw_session_touch *t, const char *s)
{
    t->argv[t->argc] = s;
    t->len[t->argc] = strlen(s);
    t->argc++;
}

void gw_session_touch_prepare(struct gw_session_touch *t, const char *prefix, const char *session,
                              long long idle_s, int revive, long long now_ms)
{
    memset(t, 0, sizeof(*t));
    gw_session_meta_key(t->meta, sizeof(t->meta), prefix, session);
    gw_session_expiry_key(t->expiry, sizeof(t->expiry), prefix);
    gw_session_set_key(t->set, sizeof(t->set), prefix, session);
    snprintf(t->session, sizeof(t->session), "%s", session);
    snprintf(t->now, sizeof(t->now), "%lld", now_ms);
    snprintf(t->idle, sizeof(t->idle), "%lld", idle_s > 0 ? idle_s : 0);
    touch_arg(t, "EVAL");
    touch_arg(t, TOUCH_LUA);
    touch_arg(t, "3");
    touch_arg(t, t->meta);
    touch_arg(t, t->expiry);
    touch_arg(t, t->set);
    touch_arg(t, t->session);
    touch_arg(t, t->now);
    touch_arg(t, t->idle);
    touch_arg(t, revive ? "1" : "0");
}

/* ------------------------------------------------------------------------ */
/* The housekeeping scripts (KEYS: expiry, meta, set, snapshot; ARGV[1] =    */
/* session)                                                                  */
/* ------------------------------------------------------------------------ */

/* ARGV: session, now, lease end. → {0} not ours, or {1, idle_s, last_active_ms, expired_ms|"",
 * finished_ms|"", expired_snap|""}. */
static const char CLAIM_LUA[] =
    "local sc = redis.call('ZSCORE', KEYS[1], ARGV[1])\n"
    "if not sc or tonumber(sc) > tonumber(ARGV[2]) then return {0} end\n"
    "local m = redis.call('HMGET', KEYS[2], 'idle_s', 'last_active_ms', 'expired_ms', "
    "'finished_ms', 'expired_snap')\n"
    "local idle = tonumber(m[1])\n"
    "if not idle then redis.call('ZREM', KEYS[1], ARGV[1]) return {0} end\n"
    "local la = tonumber(m[2]) or 0\n"
    "if not m[3] and la + idle * 1000 > tonumber(ARGV[2]) then\n"
    "  redis.call('ZADD', KEYS[1], string.format('%.0f', la + idle * 1000), ARGV[1])\n"
    "  return {0}\n"
    "end\n"
    "redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])\n"
    "return {1, idle, la, m[3] or '', m[3] and m[4] or '', m[3] and m[5] or ''}\n";

/* ARGV: session, active ms (an open stream was seen): last_active_ms = max, new deadline. */
static const char REARM_LUA[] =
    "local m = redis.call('HMGET', KEYS[2], 'idle_s', 'last_active_ms', 'expired_ms')\n"
    "local idle = tonumber(m[1])\n"
    "if not idle then redis.call('ZREM', KEYS[1], ARGV[1]) return 0 end\n"
    "if m[3] then return 0 end\n"
    "local la = tonumber(m[2]) or 0\n"
    "if tonumber(ARGV[2]) > la then\n"
    "  la = tonumber(ARGV[2])\n"
    "  redis.call('HSET', KEYS[2], 'last_active_ms', ARGV[2])\n"
    "end\n"
    "redis.call('ZADD', KEYS[1], string.format('%.0f', la + idle * 1000), ARGV[1])\n"
    "return 1\n";

/*
 * ARGV: session, now, last_active_ms the claim saw, snapshot TTL s. → 1 marked expired, 0
 * touched since. Marked: the session's job ids copied to the snapshot, in the same step (a
 * job submitted after this is not killed by this expiry).
 */
static const char MARK_LUA[] =
    "local m = redis.call('HMGET', KEYS[2], 'idle_s', 'last_active_ms', 'expired_ms')\n"
    "local idle = tonumber(m[1])\n"
    "if not idle then redis.call('ZREM', KEYS[1], ARGV[1]) return 0 end\n"
    "if m[3] then return 0 end\n"
    "local la = tonumber(m[2]) or 0\n"
    "if la ~= tonumber(ARGV[3]) then\n"
    "  redis.call('ZADD', KEYS[1], string.format('%.0f', la + idle * 1000), ARGV[1])\n"
    "  return 0\n"
    "end\n"
    "redis.call('HSET', KEYS[2], 'expired_ms', ARGV[2], 'expired_snap', '1')\n"
    "redis.call('HDEL', KEYS[2], 'finished_ms')\n"
    "redis.call('SUNIONSTORE', KEYS[4], KEYS[3])\n"
    "redis.call('EXPIRE', KEYS[4], ARGV[4])\n"
    "return 1\n";

/*
 * ARGV: session, first (1/0), sweep at ms, keys TTL s, now. → 1, or 0: revived meanwhile.
 * First: finished_ms, TTL on set, meta and snapshot, the sweep scheduled. Sweep: TTL where
 * none yet, the snapshot dropped, done.
 */
static const char FINISH_LUA[] =
    "if not redis.call('HGET', KEYS[2], 'expired_ms') then return 0 end\n"
    "if ARGV[2] == '1' then\n"
    "  redis.call('HSET', KEYS[2], 'finished_ms', ARGV[5])\n"
    "  redis.call('EXPIRE', KEYS[2], ARGV[4])\n"
    "  redis.call('EXPIRE', KEYS[3], ARGV[4])\n"
    "  redis.call('EXPIRE', KEYS[4], ARGV[4])\n"
    "  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])\n"
    "else\n"
    "  redis.call('EXPIRE', KEYS[2], ARGV[4], 'NX')\n"
    "  redis.call('EXPIRE', KEYS[3], ARGV[4], 'NX')\n"
    "  redis.call('DEL', KEYS[4])\n"
    "  redis.call('ZREM', KEYS[1], ARGV[1])\n"
    "end\n"
    "return 1\n";

/* ------------------------------------------------------------------------ */
/* State                                                                     */
/* ------------------------------------------------------------------------ */

struct gw_sessions {
    struct gw_ctx *gw;
    pthread_mutex_t mu; /* stop */
    pthread_cond_t cv;  /* stop */
    int stop;
    int started;
    pthread_t thread;
    /* the thread's own */
    struct gw_hub_walk walk; /* where the next pass goes on writing watched channels */
    long long next_prune_ms;
    long long resume_ms;               /* no expiry before this (after an outage) */
    int down;                          /* the last pass failed (logged once) */
    char (*names)[PC_CHANNEL_MAX + 1]; /* WATCH_BATCH names */
    const char **argv;                 /* 3 + 2 * WATCH_BATCH */
    size_t *argl;
};

/* ------------------------------------------------------------------------ */
/* One housekeeping pass                                                     */
/* ------------------------------------------------------------------------ */

/* A pass's connection and why it failed. */
struct pass {
    struct gw_sessions *s;
    redisContext *c;
    int broken;
    char err[512];
    long long now;
    char expiry[GW_SESSION_KEY_MAX];
};

static int pass_fail(struct pass *p, const char *what, const redisReply *r)
{
    if (!r) {
        p->broken = 1;
        snprintf(p->err, sizeof(p->err), "%s: %s", what,
                 p->c->errstr[0] ? p->c->errstr : "connection lost");
    } else {
        gw_metrics_add(&p->s->gw->metrics->redis_errors, 1);
        snprintf(p->err, sizeof(p->err), "%s: %s", what,
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    }
    return -1;
}

static redisReply *pass_cmd(struct pass *p, int argc, const char **argv, const size_t *argl)
{
    size_t len[16];

    if (!argl) {
        for (int i = 0; i < argc && i < 16; i++)
            len[i] = strlen(argv[i]);
        argl = len;
    }
    return redisCommandArgv(p->c, argc, argv, argl);
}

/* An integer reply (freed). @return it (>= 0 for every command used here), or -1 with the
 * failure noted. */
static long long reply_int(struct pass *p, const char *what, redisReply *r)
{
    long long v;

    if (!r || r->type != REDIS_REPLY_INTEGER) {
        pass_fail(p, what, r);
        if (r)
            freeReplyObject(r);
        return -1;
    }
    v = r->integer;
    freeReplyObject(r);
    return v;
}

/*
 * Write the channels this gateway has open SSE streams on -- the hub's
 * subscribed channels (at most WATCH_PASS_MAX per pass, the rest on the next
 * passes) -- and prune old scores.
 */
static int publish_watched(struct pass *p)
{
    struct gw_sessions *s = p->s;
    char key[GW_SESSION_KEY_MAX], now[24];
    size_t total = 0;
    int wrapped = 0;

    gw_session_watched_key(key, sizeof(key), s->gw->cfg->prefix);
    snprintf(now, sizeof(now), "%lld", p->now);
    while (!wrapped && total < WATCH_PASS_MAX) {
        size_t nb = gw_hub_channel_names(s->gw->hub, &s->walk, s->names, WATCH_BATCH);
        redisReply *r;

        wrapped = s->walk.wrapped;
        if (nb == 0)
            continue;
        s->argv[0] = "ZADD";
        s->argv[1] = key;
        s->argl[0] = 4;
        s->argl[1] = strlen(key);
        for (size_t i = 0; i < nb; i++) {
            s->argv[2 + 2 * i] = now;
            s->argl[2 + 2 * i] = strlen(now);
            s->argv[3 + 2 * i] = s->names[i];
            s->argl[3 + 2 * i] = strlen(s->names[i]);
        }
        r = redisCommandArgv(p->c, (int)(2 + 2 * nb), s->argv, s->argl);
        if (reply_int(p, "ZADD watched", r) < 0)
            return -1;
        total += nb;
    }
    if (p->now >= s->next_prune_ms) {
        char max[32];
        const char *argv[4] = {"ZREMRANGEBYSCORE", key, "-inf", max};

        snprintf(max, sizeof(max), "(%lld", p->now - SESS_WATCH_KEEP_MS);
        if (reply_int(p, "ZREMRANGEBYSCORE watched", pass_cmd(p, 4, argv, NULL)) < 0)
            return -1;
        s->next_prune_ms = p->now + SESS_PRUNE_EVERY_MS;
    }
    return 0;
}

/* The snapshot of a session's job ids that its expiry kills (MARK_LUA). */
static void snap_key(char *dst, size_t len, const char *prefix, const char *session)
{
    snprintf(dst, len, "%s:sessions:snap:%s", prefix, session);
}

/* EVAL @p script with KEYS expiry, meta, set, snapshot and ARGV session + @p args. */
static redisReply *session_eval(struct pass *p, const char *script, const char *session,
                                const char *const *args, int nargs)
{
    char meta[GW_SESSION_KEY_MAX], set[GW_SESSION_KEY_MAX], snap[GW_SESSION_KEY_MAX];
    const char *argv[14];
    int argc = 0;

    gw_session_meta_key(meta, sizeof(meta), p->s->gw->cfg->prefix, session);
    gw_session_set_key(set, sizeof(set), p->s->gw->cfg->prefix, session);
    snap_key(snap, sizeof(snap), p->s->gw->cfg->prefix, session);
    argv[argc++] = "EVAL";
    argv[argc++] = script;
    argv[argc++] = "4";
    argv[argc++] = p->expiry;
    argv[argc++] = meta;
    argv[argc++] = set;
    argv[argc++] = snap;
    argv[argc++] = session;
    for (int i = 0; i < nargs && argc < 14; i++)
        argv[argc++] = args[i];
    return pass_cmd(p, argc, argv, NULL);
}

/* The TTL of a first pass's keys: they outlive the sweep. */
static long long keys_ttl_s(const struct gw_ctx *gw)
{
    return 2 * (long long)gw->cfg->session_channel_grace_s + 60;
}

/*
 * Kill the jobs, expire their channels and finish: the first pass (@p first) or the sweep.
 * @p snap: the mark took a snapshot of the job ids (else -- marked by an older gateway -- the
 * jobs of the set created by @p expired_ms). @return 0 or -1.
 */
static int session_expire(struct pass *p, const char *session, long long expired_ms, int first,
                          int snap, long long idle_s, long long idle_for_ms)
{
    struct gw_ctx *gw = p->s->gw;
    long long grace = gw->cfg->session_channel_grace_s;
    struct gw_session_walk w;
    char sweep_at[24], ttl[24], now[24], snapk[GW_SESSION_KEY_MAX];
    const char *args[4] = {first ? "1" : "0", sweep_at, ttl, now};
    char err[400];
    long long rc;

    memset(&w, 0, sizeof(w));
    w.kill = 1;
    if (snap) {
        snap_key(snapk, sizeof(snapk), gw->cfg->prefix, session);
        w.members_key = snapk;
    } else {
        w.created_max_ms = expired_ms;
    }
    w.channel_ttl_s = (int)grace;
    if (gw_jobs_session_walk(gw, p->c, session, &w, &p->broken, err, sizeof(err)) != 0) {
        snprintf(p->err, sizeof(p->err), "session \"%s\": %s", session, err);
        return -1;
    }
    /* one grace after this first pass (which may come late: a retry after a failed one) */
    snprintf(sweep_at, sizeof(sweep_at), "%lld", p->now + grace * 1000);
    /* first: the keys outlive the sweep; the sweep: a TTL only where the first left none */
    snprintf(ttl, sizeof(ttl), "%lld", first ? keys_ttl_s(gw) : grace + 60);
    snprintf(now, sizeof(now), "%lld", p->now);
    rc = reply_int(p, "session finish", session_eval(p, FINISH_LUA, session, args, 4));
    if (rc < 0)
        return -1;
    if (rc == 0) {
        /* a submit or PUT revived it meanwhile: not expired (its new jobs were not touched) */
        pc_info("sessions",
                "session \"%s\" was revived while it expired: kept; kill asked for %zu of its "
                "%zu jobs from before, %zu channel streams expire in %llds",
                session, w.killed, w.jobs, w.channels_ttl, grace);
    } else if (first) {
        gw_metrics_add(&gw->metrics->sessions_expired, 1);
        pc_info("sessions",
                "session \"%s\": idle for %.1fs (idle_s %lld): expired; kill asked for %zu of "
                "%zu jobs, %zu channel streams expire in %llds",
                session, (double)idle_for_ms / 1000, idle_s, w.killed, w.jobs, w.channels_ttl,
                grace);
    } else if (w.killed || w.channels_ttl) {
        pc_info("sessions",
                "session \"%s\" (expired): kill asked for %zu more jobs, %zu more channel "
                "streams expire in %llds",
                session, w.killed, w.channels_ttl, grace);
    }
    return 0;
}

/* Claim one due session and decide: refresh it (a stream is open), expire it, or sweep it. */
static int session_due(struct pass *p, const char *session)
{
    char now[24], lease[24], seen[24], snap_ttl[24];
    const char *cargs[2] = {now, lease};
    long long idle_s, last_active, expired_ms = 0, active;
    int finished, snap;
    struct gw_session_walk w;
    redisReply *r;
    char err[400];
    long long rc;

    snprintf(now, sizeof(now), "%lld", p->now);
    snprintf(lease, sizeof(lease), "%lld", p->now + SESS_LEASE_MS);
    r = session_eval(p, CLAIM_LUA, session, cargs, 2);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_INTEGER ||
        (r->element[0]->integer == 1 &&
         (r->elements != 6 || r->element[1]->type != REDIS_REPLY_INTEGER ||
          r->element[2]->type != REDIS_REPLY_INTEGER || r->element[3]->type != REDIS_REPLY_STRING ||
          r->element[4]->type != REDIS_REPLY_STRING ||
          r->element[5]->type != REDIS_REPLY_STRING))) {
        pass_fail(p, "session claim", r);
        if (r)
            freeReplyObject(r);
        return -1;
    }
    if (r->element[0]->integer != 1) {
        freeReplyObject(r);
        return 0; /* not due after all, or another gateway has it */
    }
    idle_s = r->element[1]->integer;
    last_active = r->element[2]->integer;
    if (r->element[3]->len > 0)
        expired_ms = strtoll(r->element[3]->str, NULL, 10);
    finished = r->element[4]->len > 0;
    snap = r->element[5]->len > 0;
    freeReplyObject(r);
    /* the sweep; or the first pass again: its gateway died (or failed) after the mark */
    if (expired_ms > 0)
        return session_expire(p, session, expired_ms, !finished, snap, idle_s,
                              p->now - last_active);

    memset(&w, 0, sizeof(w));
    w.watched = 1;
    if (gw_jobs_session_walk(p->s->gw, p->c, session, &w, &p->broken, err, sizeof(err)) != 0) {
        snprintf(p->err, sizeof(p->err), "session \"%.64s\": %.400s", session, err);
        return -1;
    }
    active = gw_session_active_ms(last_active, w.watched_ms, p->now);
    if (active + idle_s * 1000 > p->now) {
        const char *args[1] = {seen};

        snprintf(seen, sizeof(seen), "%lld", active);
        pc_debug("sessions", "session \"%s\": a stream on one of its channels is open, kept",
                 session);
        return reply_int(p, "session rearm", session_eval(p, REARM_LUA, session, args, 1)) < 0 ? -1
                                                                                               : 0;
    }
    {
        const char *args[3] = {now, seen, snap_ttl};

        snprintf(seen, sizeof(seen), "%lld", last_active);
        snprintf(snap_ttl, sizeof(snap_ttl), "%lld", keys_ttl_s(p->s->gw));
        rc = reply_int(p, "session mark", session_eval(p, MARK_LUA, session, args, 3));
    }
    if (rc < 0)
        return -1;
    if (rc == 0)
        return 0; /* touched meanwhile */
    return session_expire(p, session, p->now, 1, 1, idle_s, p->now - active);
}

static int stopping(struct gw_sessions *s)
{
    int stop;

    pthread_mutex_lock(&s->mu);
    stop = s->stop;
    pthread_mutex_unlock(&s->mu);
    return stop;
}

/* The due sessions, earliest first, at most SESS_DUE_LIMIT. */
static int expire_due(struct pass *p)
{
    char max[24], sessions[SESS_DUE_LIMIT][GW_SESSION_MAX + 1];
    const char *argv[7] = {"ZRANGEBYSCORE", p->expiry, "-inf", max, "LIMIT", "0", "100"};
    size_t n = 0;
    redisReply *r;

    snprintf(max, sizeof(max), "%lld", p->now);
    r = pass_cmd(p, 7, argv, NULL);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        pass_fail(p, "ZRANGEBYSCORE expiry", r);
        if (r)
            freeReplyObject(r);
        return -1;
    }
    for (size_t i = 0; i < r->elements && n < SESS_DUE_LIMIT; i++) {
        const redisReply *e = r->element[i];

        if (e->type != REDIS_REPLY_STRING)
            continue;
        if (e->len < 1 || e->len > GW_SESSION_MAX || !pc_channel_valid(e->str, e->len)) {
            /* not a session name: never due again */
            const char *zrem[3] = {"ZREM", p->expiry, e->str};
            size_t zl[3] = {4, strlen(p->expiry), e->len};
            redisReply *z = redisCommandArgv(p->c, 3, zrem, zl);

            pc_warn("sessions", "%s: dropped an invalid member", p->expiry);
            if (z)
                freeReplyObject(z);
            continue;
        }
        memcpy(sessions[n++], e->str, e->len + 1);
    }
    freeReplyObject(r);
    for (size_t i = 0; i < n && !stopping(p->s); i++) {
        p->now = pc_wall_ms();
        if (session_due(p, sessions[i]) != 0)
            return -1;
    }
    return 0;
}

static void pass_run(struct gw_sessions *s)
{
    struct pass p;
    int rc;

    memset(&p, 0, sizeof(p));
    p.s = s;
    p.now = pc_wall_ms();
    gw_session_expiry_key(p.expiry, sizeof(p.expiry), s->gw->cfg->prefix);
    p.c = gw_rpool_get(s->gw->pool, SESS_POOL_WAIT_MS, p.err, sizeof(p.err));
    rc = p.c ? publish_watched(&p) : -1;
    if (rc == 0 && s->down) {
        /* Redis may have lost the watched scores, and the other gateways may not have written
         * theirs yet: give them a window before anything is judged idle */
        pc_info("sessions", "housekeeping resumed (expiring again in %d ms)",
                GW_SESSION_WATCH_FRESH_MS);
        s->down = 0;
        s->resume_ms = p.now + GW_SESSION_WATCH_FRESH_MS;
    }
    if (rc == 0 && p.now >= s->resume_ms)
        rc = expire_due(&p);
    if (p.c)
        gw_rpool_put(s->gw->pool, p.c, p.broken);
    if (rc != 0 && !s->down) {
        pc_warn("sessions", "housekeeping paused: %s (trying again every second)", p.err);
        s->down = 1;
    }
}

static void *sessions_main(void *arg)
{
    struct gw_sessions *s = arg;

    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        struct timespec ts;
        long long until;

        pthread_mutex_unlock(&s->mu);
        pass_run(s);
        until = pc_wall_ms() + SESS_PASS_MS;
        ts.tv_sec = (time_t)(until / 1000);
        ts.tv_nsec = (long)(until % 1000) * 1000000L;
        pthread_mutex_lock(&s->mu);
        while (!s->stop && pthread_cond_timedwait(&s->cv, &s->mu, &ts) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Life cycle                                                                */
/* ------------------------------------------------------------------------ */

struct gw_sessions *gw_sessions_new(struct gw_ctx *gw)
{
    struct gw_sessions *s = calloc(1, sizeof(*s));

    if (!s)
        return NULL;
    s->gw = gw;
    s->names = malloc(WATCH_BATCH * sizeof(*s->names));
    s->argv = malloc((2 + 2 * WATCH_BATCH) * sizeof(*s->argv));
    s->argl = malloc((2 + 2 * WATCH_BATCH) * sizeof(*s->argl));
    if (!s->names || !s->argv || !s->argl) {
        free(s->names);
        free(s->argv);
        free(s->argl);
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL); /* waits use the realtime clock: pc_wall_ms() */
    return s;
}

int gw_sessions_start(struct gw_sessions *s)
{
    if (pthread_create(&s->thread, NULL, sessions_main, s) != 0)
        return -1;
    s->started = 1;
    return 0;
}

void gw_sessions_free(struct gw_sessions *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    if (s->started)
        pthread_join(s->thread, NULL);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->names);
    free(s->argv);
    free(s->argl);
    free(s);
}
