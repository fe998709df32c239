/* claim.c -- jobs of runners that died.
 *
 * Every 5 s: XPENDING <prefix>:jobs runners IDLE 10000 <from> + 100, paging on
 * (from = "(" + the last id seen) up to CLAIM_PAGES pages per period; the next
 * period resumes where this one stopped, and starts at "-" again once the end
 * was reached, so every pending entry is looked at eventually. Entries of a
 * consumer whose heartbeat key is gone are XCLAIMed (min-idle 10000, so two
 * runners scanning at once never both get one) and reported: a job that was
 * queued or running on the dead runner becomes `lost` with an `exit` event
 * (job.c, JK_LOST), anything else is just acknowledged. Entries pending on
 * this runner's own id that it does not know (a previous life with the same
 * --id) are treated the same way. Every 30 s, consumers with nothing pending
 * and no heartbeat are removed from the group.
 *
 * Bound: heartbeat TTL 15 s + idle 10 s + scan period 5 s = ~30 s.
 */
#include "runner.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pipecast/log.h"

#define CLAIM_IDLE_MS "10000"
#define CLAIM_COUNT 100
#define CLAIM_PAGES 10 /* XPENDING pages per scan period */
#define CLEANUP_EVERY_MS 30000
#define CONSUMER_IDLE_MS 60000

/*
 * XTRIM MINID m, m = the smallest of every group's last-delivered id and its
 * oldest pending entry: what no consumer still needs. Atomic, so an entry
 * delivered or claimed meanwhile is never cut. Returns the number trimmed.
 */
static const char SCRIPT_TRIM[] =
    "local function lt(a, b) "
    "local am, as = string.match(a, '^(%d+)-(%d+)$') "
    "local bm, bs = string.match(b, '^(%d+)-(%d+)$') "
    "am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs) "
    "return am < bm or (am == bm and as < bs) end "
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
    "local min = nil "
    "for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do "
    "local name, last = nil, nil "
    "for i = 1, #g, 2 do "
    "if g[i] == 'name' then name = g[i + 1] elseif g[i] == 'last-delivered-id' then last = g[i + "
    "1] end "
    "end "
    "if last and (min == nil or lt(last, min)) then min = last end "
    "local p = redis.call('XPENDING', KEYS[1], name) "
    "if p[1] > 0 and (min == nil or lt(p[2], min)) then min = p[2] end "
    "end "
    "if min == nil or min == '0-0' then return 0 end "
    "return redis.call('XTRIM', KEYS[1], 'MINID', min)";

struct batch {
    struct runner *rn;
    int del; /* 1: a consumer to delete, 0: entries to claim */
    char consumer[RN_ID_MAX + 1];
    int n;
    char ids[CLAIM_COUNT][PC_ID_STRLEN];
};

static void claim_cb(redisAsyncContext *ac, void *r, void *priv);
static void pending_cb(redisAsyncContext *ac, void *r, void *priv);
static void exists_cb(redisAsyncContext *ac, void *r, void *priv);

static int claim_send(struct runner *rn, redisCallbackFn *cb, void *priv, int argc,
                      const char **argv)
{
    if (rconn_cmd(&rn->cmd, cb, priv, argc, argv, NULL) != 0)
        return -1;
    rn->claim_busy++;
    return 0;
}

static void done(struct runner *rn)
{
    if (rn->claim_busy > 0)
        rn->claim_busy--;
}

static void batch_claim(struct batch *b)
{
    struct runner *rn = b->rn;
    const char *a[5 + CLAIM_COUNT];
    int n = 0;
    a[n++] = "XCLAIM";
    a[n++] = rn->key_jobs;
    a[n++] = RN_GROUP;
    a[n++] = rn->o.id;
    a[n++] = CLAIM_IDLE_MS;
    for (int i = 0; i < b->n; i++)
        a[n++] = b->ids[i];
    if (claim_send(rn, claim_cb, b, n, a) != 0)
        free(b);
}

static void batch_check(struct batch *b)
{
    struct runner *rn = b->rn;
    char key[PC_KEY_MAX + RN_ID_MAX];
    snprintf(key, sizeof(key), "%s:runner:%s", rn->o.prefix, b->consumer);
    const char *a[] = {"EXISTS", key};
    if (claim_send(rn, exists_cb, b, 2, a) != 0)
        free(b);
}

static void claim_cb(redisAsyncContext *ac, void *r, void *priv)
{
    struct batch *b = priv;
    struct runner *rn = b->rn;
    redisReply *reply = r;
    (void)ac;
    done(rn);
    if (rconn_reply_ok(&rn->cmd, reply) && reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < reply->elements; i++) {
            const redisReply *e = reply->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
                e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= PC_ID_STRLEN)
                continue; /* deleted from the stream meanwhile */
            const redisReply *f = rn_field(e->element[1], "job");
            char jid[RN_JOB_ID_MAX + 2] = "";
            if (f != NULL && f->type == REDIS_REPLY_STRING && f->len <= RN_JOB_ID_MAX)
                snprintf(jid, sizeof(jid), "%.*s", (int)f->len, f->str);
            pc_info("claim", "claimed queue entry %s (job %s) of runner %s", e->element[0]->str,
                    jid[0] != '\0' ? jid : "?", b->consumer);
            job_new_lost(rn, e->element[0]->str, jid, b->consumer);
        }
    } else if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        pc_warn("claim", "XCLAIM: %s", reply->str);
    }
    free(b);
}

static void delconsumer_cb(redisAsyncContext *ac, void *r, void *priv)
{
    struct batch *b = priv;
    redisReply *reply = r;
    (void)ac;
    done(b->rn);
    if (rconn_reply_ok(&b->rn->cmd, reply) && reply->type == REDIS_REPLY_INTEGER)
        pc_info("claim", "removed dead consumer %s from group %s", b->consumer, RN_GROUP);
    free(b);
}

static void exists_cb(redisAsyncContext *ac, void *r, void *priv)
{
    struct batch *b = priv;
    struct runner *rn = b->rn;
    redisReply *reply = r;
    (void)ac;
    done(rn);
    if (!rconn_reply_ok(&rn->cmd, reply) || reply->type != REDIS_REPLY_INTEGER ||
        reply->integer != 0) {
        free(b); /* alive, or unknown: nothing to do */
        return;
    }
    if (b->del) {
        const char *a[] = {"XGROUP", "DELCONSUMER", rn->key_jobs, RN_GROUP, b->consumer};
        if (claim_send(rn, delconsumer_cb, b, 5, a) != 0)
            free(b);
        return;
    }
    pc_warn("claim", "runner %s has no heartbeat; claiming its %d pending jobs", b->consumer, b->n);
    batch_claim(b);
}

static int entry_known(struct runner *rn, const char *id)
{
    for (struct job *j = rn->jobs_head; j != NULL; j = j->next)
        if (strcmp(j->entry_id, id) == 0)
            return 1;
    return 0;
}

static void pending_send(struct runner *rn)
{
    char count[16];
    snprintf(count, sizeof(count), "%d", CLAIM_COUNT);
    const char *from = rn->claim_from[0] != '\0' ? rn->claim_from : "-";
    const char *a[] = {"XPENDING", rn->key_jobs, RN_GROUP, "IDLE", CLAIM_IDLE_MS, from, "+", count};
    claim_send(rn, pending_cb, rn, 8, a);
}

static void pending_cb(redisAsyncContext *ac, void *r, void *priv)
{
    struct runner *rn = priv;
    redisReply *reply = r;
    struct batch *batches[CLAIM_COUNT];
    int nb = 0;
    (void)ac;
    done(rn);
    rn->claim_pages++;
    if (!rconn_reply_ok(&rn->cmd, reply)) {
        rn->claim_from[0] = '\0';
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        if (strncmp(reply->str, "NOGROUP", 7) != 0)
            pc_warn("claim", "XPENDING: %s", reply->str);
        rn->claim_from[0] = '\0';
        return;
    }
    if (reply->type != REDIS_REPLY_ARRAY || rn->stopping)
        return;
    /* where the next page starts: after the last entry of a full page, else from the start */
    rn->claim_from[0] = '\0';
    if (reply->elements >= CLAIM_COUNT) {
        const redisReply *last = reply->element[reply->elements - 1];
        if (last->type == REDIS_REPLY_ARRAY && last->elements >= 1 &&
            last->element[0]->type == REDIS_REPLY_STRING && last->element[0]->len < PC_ID_STRLEN)
            snprintf(rn->claim_from, sizeof(rn->claim_from), "(%s", last->element[0]->str);
    }
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
            e->element[0]->type != REDIS_REPLY_STRING ||
            e->element[1]->type != REDIS_REPLY_STRING || e->element[0]->len >= PC_ID_STRLEN ||
            e->element[1]->len > RN_ID_MAX)
            continue;
        const char *id = e->element[0]->str, *consumer = e->element[1]->str;
        int mine = strcmp(consumer, rn->o.id) == 0;
        if (mine && entry_known(rn, id))
            continue;
        struct batch *b = NULL;
        for (int k = 0; k < nb; k++)
            if (strcmp(batches[k]->consumer, consumer) == 0)
                b = batches[k];
        if (b == NULL) {
            if (nb == CLAIM_COUNT || (b = calloc(1, sizeof(*b))) == NULL)
                continue;
            b->rn = rn;
            snprintf(b->consumer, sizeof(b->consumer), "%s", consumer);
            batches[nb++] = b;
        }
        if (b->n < CLAIM_COUNT)
            snprintf(b->ids[b->n++], PC_ID_STRLEN, "%s", id);
    }
    for (int k = 0; k < nb; k++) {
        if (strcmp(batches[k]->consumer, rn->o.id) == 0) {
            pc_warn("claim", "%d queue entries pending on this runner's id from an earlier run",
                    batches[k]->n);
            batch_claim(batches[k]);
        } else {
            batch_check(batches[k]);
        }
    }
    if (rn->claim_from[0] != '\0' && rn->claim_pages < CLAIM_PAGES)
        pending_send(rn);
}

static void consumers_cb(redisAsyncContext *ac, void *r, void *priv)
{
    struct runner *rn = priv;
    redisReply *reply = r;
    (void)ac;
    done(rn);
    if (!rconn_reply_ok(&rn->cmd, reply) || reply->type != REDIS_REPLY_ARRAY || rn->stopping)
        return;
    for (size_t i = 0; i < reply->elements; i++) {
        const redisReply *c = reply->element[i];
        const redisReply *name = rn_field(c, "name"), *pend = rn_field(c, "pending"),
                         *idle = rn_field(c, "idle");
        if (name == NULL || name->type != REDIS_REPLY_STRING || name->len > RN_ID_MAX ||
            pend == NULL || pend->type != REDIS_REPLY_INTEGER || pend->integer != 0 ||
            idle == NULL || idle->type != REDIS_REPLY_INTEGER || idle->integer < CONSUMER_IDLE_MS ||
            strcmp(name->str, rn->o.id) == 0)
            continue;
        struct batch *b = calloc(1, sizeof(*b));
        if (b == NULL)
            return;
        b->rn = rn;
        b->del = 1;
        snprintf(b->consumer, sizeof(b->consumer), "%s", name->str);
        batch_check(b);
    }
}

static void trim_cb(redisAsyncContext *ac, void *r, void *priv)
{
    struct runner *rn = priv;
    redisReply *reply = r;
    (void)ac;
    done(rn);
    if (!rconn_reply_ok(&rn->cmd, reply))
        return;
    if (reply->type == REDIS_REPLY_ERROR)
        pc_warn("claim", "trimming %s: %s", rn->key_jobs, reply->str);
    else if (reply->type == REDIS_REPLY_INTEGER && reply->integer > 0)
        pc_debug("claim", "trimmed %lld acknowledged entries from %s", reply->integer,
                 rn->key_jobs);
}

void claim_scan(struct runner *rn)
{
    if (rn->claim_busy > 0 || !rconn_ready(&rn->cmd))
        return;
    rn->claim_pages = 0;
    pending_send(rn);
    long long now = pc_now_ms();
    if (now - rn->claim_last >= CLEANUP_EVERY_MS) {
        rn->claim_last = now;
        const char *c[] = {"XINFO", "CONSUMERS", rn->key_jobs, RN_GROUP};
        claim_send(rn, consumers_cb, rn, 4, c);
        const char *t[] = {"EVAL", SCRIPT_TRIM, "1", rn->key_jobs};
        claim_send(rn, trim_cb, rn, 4, t);
    }
}
