/* ctl.c -- the control stream <prefix>:ctl:<runner id>.
 *
 * Entries: `type kill job <id> [signal TERM|KILL|INT|HUP]`,
 * `type stdin job <id> data <bytes> [credit <n>] [attempt <a>] [seq <s>]`,
 * `type eof job <id> [attempt <a>] [seq <s>]`. Messages for jobs this runner
 * does not run are ignored. `credit`: that many bytes of data were reserved
 * in the job hash by a gateway (job.c "stdin"); `attempt`: the attempt they
 * were accepted for (a later attempt ignores them: they were counted when the
 * earlier one's stdin ended); `seq`: the number of the data message within
 * the attempt (an eof: of the last one before it), so that entries missing
 * from the stream end the job's stdin as `lost` instead of leaving a hole.
 *
 * Reading starts after the newest entry present at start (what `$` means,
 * without the gap `$` leaves between two XREAD calls): XREVRANGE gives that
 * id once, then XREAD BLOCK continues from the last id seen, also across
 * reconnects. Entries read are trimmed (XTRIM MINID the last one read), so
 * stdin data does not stay in Redis. Writers do not trim the stream (no
 * MAXLEN: it would cut entries not read yet); they refresh its expiry.
 */
#include "runner.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "pipecast/log.h"

#define CTL_BLOCK_MS "2000"
#define CTL_COUNT "100"
#define CTL_SEQ_MAX 1000000000000000LL

static void read_cb(redisAsyncContext *ac, void *r, void *priv);

static int field_is(const redisReply *f, const char *s)
{
    size_t n = strlen(s);
    return f != NULL && f->type == REDIS_REPLY_STRING && f->len == n && memcmp(f->str, s, n) == 0;
}

static int parse_signal(const redisReply *f)
{
    if (f == NULL || field_is(f, "TERM") || field_is(f, "SIGTERM"))
        return SIGTERM;
    if (field_is(f, "KILL") || field_is(f, "SIGKILL"))
        return SIGKILL;
    if (field_is(f, "INT") || field_is(f, "SIGINT"))
        return SIGINT;
    if (field_is(f, "HUP") || field_is(f, "SIGHUP"))
        return SIGHUP;
    return 0;
}

/* A decimal field: @return its value, 0 when absent, -1 when not a number in 0..max. */
static long long field_num(const redisReply *f, long long max)
{
    long long v = 0;
    if (f == NULL || (f->type == REDIS_REPLY_STRING && f->len == 0))
        return 0;
    if (f->type != REDIS_REPLY_STRING || f->len > 18)
        return -1;
    for (size_t i = 0; i < f->len; i++) {
        if (f->str[i] < '0' || f->str[i] > '9')
            return -1;
        v = v * 10 + (f->str[i] - '0');
    }
    return v <= max ? v : -1;
}

static void ctl_message(struct runner *rn, const redisReply *id, const redisReply *fields)
{
    const redisReply *type = rn_field(fields, "type");
    const redisReply *jf = rn_field(fields, "job");
    char jid[RN_JOB_ID_MAX + 1];
    if (jf == NULL || jf->type != REDIS_REPLY_STRING || jf->len == 0 || jf->len > RN_JOB_ID_MAX) {
        pc_warn("ctl", "control message %s: no valid job id; ignored", id->str);
        return;
    }
    memcpy(jid, jf->str, jf->len);
    jid[jf->len] = '\0';
    struct job *j = rn_find_job(rn, jid);
    if (j == NULL) {
        pc_debug("ctl", "control message %s for job %s: not running here; ignored", id->str, jid);
        return;
    }
    if (field_is(type, "kill")) {
        int sig = parse_signal(rn_field(fields, "signal"));
        if (sig == 0) {
            pc_warn("ctl", "control message %s: unknown signal; using TERM", id->str);
            sig = SIGTERM;
        }
        pc_info("ctl", "job %s: kill (signal %d)", jid, sig);
        job_kill(j, sig, JR_KILLED);
    } else if (field_is(type, "stdin")) {
        const redisReply *d = rn_field(fields, "data");
        if (d == NULL || d->type != REDIS_REPLY_STRING) {
            pc_warn("ctl", "control message %s: stdin without data; ignored", id->str);
            return;
        }
        long long credit = field_num(rn_field(fields, "credit"), (long long)d->len);
        long long attempt = field_num(rn_field(fields, "attempt"), 1000000000);
        long long seq = field_num(rn_field(fields, "seq"), CTL_SEQ_MAX);
        if (credit < 0 || attempt < 0 || seq < 0) {
            pc_warn("ctl", "control message %s: invalid credit, attempt or seq; taken as untagged",
                    id->str);
            credit = credit < 0 ? 0 : credit;
            attempt = attempt < 0 ? 0 : attempt;
            seq = seq < 0 ? 0 : seq;
        }
        job_stdin(j, d->str, d->len, 0, (size_t)credit, (int)attempt, seq);
    } else if (field_is(type, "eof")) {
        long long attempt = field_num(rn_field(fields, "attempt"), 1000000000);
        long long seq = field_num(rn_field(fields, "seq"), CTL_SEQ_MAX);
        job_stdin(j, NULL, 0, 1, 0, attempt < 0 ? 0 : (int)attempt, seq < 0 ? 0 : seq);
    } else {
        pc_warn("ctl", "control message %s: unknown type; ignored", id->str);
    }
}

void ctl_next(struct runner *rn)
{
    if (rn->ctl_inflight || !rconn_ready(&rn->ctl))
        return;
    if (rn->ctl_last[0] == '\0') {
        const char *a[] = {"XREVRANGE", rn->key_ctl, "+", "-", "COUNT", "1"};
        if (rconn_cmd(&rn->ctl, read_cb, rn, 6, a, NULL) == 0)
            rn->ctl_inflight = 1;
        return;
    }
    const char *a[] = {"XREAD",      "COUNT",   CTL_COUNT,   "BLOCK",
                       CTL_BLOCK_MS, "STREAMS", rn->key_ctl, rn->ctl_last};
    if (rconn_cmd(&rn->ctl, read_cb, rn, 8, a, NULL) == 0) {
        rn->ctl_inflight = 1;
        rn->ctl_sent_ms = pc_now_ms();
        rn->ctl.wait_ms = rn->ctl_sent_ms;
    }
}

static void read_cb(redisAsyncContext *ac, void *r, void *priv)
{
    struct runner *rn = priv;
    redisReply *reply = r;
    (void)ac;
    rn->ctl_inflight = 0;
    rn->ctl.wait_ms = 0;
    if (!rconn_reply_ok(&rn->ctl, reply))
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        pc_warn("ctl", "%s: %s", rn->key_ctl, reply->str);
        rconn_reset(&rn->ctl, NULL);
        return;
    }
    if (rn->ctl_last[0] == '\0') {
        /* XREVRANGE: the newest entry, or none */
        snprintf(rn->ctl_last, sizeof(rn->ctl_last), "0-0");
        if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0 &&
            reply->element[0]->type == REDIS_REPLY_ARRAY && reply->element[0]->elements > 0 &&
            reply->element[0]->element[0]->type == REDIS_REPLY_STRING)
            snprintf(rn->ctl_last, sizeof(rn->ctl_last), "%s", reply->element[0]->element[0]->str);
        ctl_next(rn);
        return;
    }
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements > 0) {
        for (size_t i = 0; i < reply->elements; i++) {
            const redisReply *st = reply->element[i];
            if (st->type != REDIS_REPLY_ARRAY || st->elements < 2 ||
                st->element[1]->type != REDIS_REPLY_ARRAY)
                continue;
            const redisReply *entries = st->element[1];
            for (size_t k = 0; k < entries->elements; k++) {
                const redisReply *e = entries->element[k];
                if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
                    e->element[0]->type != REDIS_REPLY_STRING || e->element[0]->len >= PC_ID_STRLEN)
                    continue;
                snprintf(rn->ctl_last, sizeof(rn->ctl_last), "%s", e->element[0]->str);
                ctl_message(rn, e->element[0], e->element[1]);
            }
        }
        /* only this runner reads its stream: what it read (stdin data) need not stay in Redis */
        const char *t[] = {"XTRIM", rn->key_ctl, "MINID", rn->ctl_last};
        rconn_cmd(&rn->ctl, NULL, NULL, 4, t, NULL);
    }
    ctl_next(rn);
}

void ctl_on_up(struct rconn *rc)
{
    rc->rn->ctl_inflight = 0;
    ctl_next(rc->rn);
}

void ctl_on_down(struct rconn *rc)
{
    rc->rn->ctl_inflight = 0;
}
