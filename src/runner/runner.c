/* runner.c -- the runner context: event loop, signals, heartbeat, queue intake,
 * watchdogs and the graceful shutdown.
 *
 * Shutdown (SIGTERM / SIGINT):
 *   1. stop taking jobs (a queue read already in flight still answers; what it
 *      brings is handed back to the queue, never left pending on a runner
 *      that is leaving),
 *   2. let running jobs finish for --shutdown-grace seconds, then kill them
 *      (SIGTERM, SIGKILL after --kill-grace; reason `killed`),
 *   3. when every job has published its exit and been acknowledged: delete
 *      the heartbeat and the control stream, exit 0.
 * A second signal skips the grace period. If Redis stays away so long that
 * the jobs cannot be reported, the runner gives up loudly and exits 1.
 */
#include "runner.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pipecast/error.h"
#include "pipecast/log.h"

#define HB_EVERY_MS 3000
#define HB_TTL_S "15"
#define HB_REPLY_LIMIT_MS 15000
#define BLOCK_MS "2000"
#define BLOCK_LIMIT_MS 12000 /* a BLOCK 2000 read unanswered this long: dead connection */
#define CLAIM_EVERY_MS 5000
#define GIVE_UP_EXTRA_S 20 /* after grace + kill grace: stop waiting for Redis */
#define IDLE_STOP_WAIT_S 3 /* no job held: how long the heartbeat DEL may wait for Redis */

/* ------------------------------------------------------------ reply helpers */

int rn_reply_str(const redisReply *r, const char **s, size_t *len)
{
    if (r == NULL || (r->type != REDIS_REPLY_STRING && r->type != REDIS_REPLY_STATUS))
        return -1;
    *s = r->str;
    *len = r->len;
    return 0;
}

const redisReply *rn_field(const redisReply *pairs, const char *name)
{
    size_t nl = strlen(name);
    if (pairs == NULL || pairs->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < pairs->elements; i += 2) {
        const redisReply *k = pairs->element[i];
        if (k->type == REDIS_REPLY_STRING && k->len == nl && memcmp(k->str, name, nl) == 0)
            return pairs->element[i + 1];
    }
    return NULL;
}

struct job *rn_find_job(struct runner *rn, const char *id)
{
    for (struct job *j = rn->jobs_head; j != NULL; j = j->next)
        if (j->kind == JK_RUN && strcmp(j->id, id) == 0)
            return j;
    return NULL;
}

void rn_resume_all(struct runner *rn)
{
    rn->total_paused = 0;
    for (struct job *j = rn->jobs_head; j != NULL; j = j->next)
        job_maybe_resume(j);
}

/* ------------------------------------------------------------ heartbeat */

static void hb_cb(redisAsyncContext *ac, void *r, void *priv)
{
    struct runner *rn = priv;
    redisReply *reply = r;
    (void)ac;
    rn->hb_sent_ms = 0;
    rn->cmd.wait_ms = 0;
    if (rconn_reply_ok(&rn->cmd, reply) && reply->type == REDIS_REPLY_ERROR)
        pc_warn("runner", "heartbeat: %s", reply->str);
}

static void hb_send(struct runner *rn)
{
    if (!rconn_ready(&rn->cmd) || rn->final_sent || rn->hb_sent_ms != 0)
        return;
    cJSON *o = cJSON_CreateObject();
    if (o == NULL)
        return;
    cJSON_AddStringToObject(o, "id", rn->o.id);
    cJSON_AddStringToObject(o, "host", rn->o.host);
    cJSON_AddNumberToObject(o, "pid", (double)getpid());
    cJSON_AddNumberToObject(o, "slots", rn->o.slots);
    cJSON_AddNumberToObject(o, "running", rn->held);
    cJSON_AddStringToObject(o, "version", PC_VERSION);
    cJSON_AddNumberToObject(o, "started_ms", (double)rn->started_ms);
    cJSON_AddBoolToObject(o, "allow_any_command", rn->o.allow_any);
    cJSON_AddBoolToObject(o, "stopping", rn->stopping);
    if (rn->tmpl_desc != NULL)
        cJSON_AddItemReferenceToObject(o, "templates", rn->tmpl_desc);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (s == NULL)
        return;
    const char *a[] = {"SET", rn->key_hb, s, "EX", HB_TTL_S};
    if (rconn_cmd(&rn->cmd, hb_cb, rn, 5, a, NULL) == 0) {
        rn->hb_sent_ms = pc_now_ms();
        rn->cmd.wait_ms = rn->hb_sent_ms;
    }
    free(s);
}

static void hb_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    hb_send(arg);
}

/* ------------------------------------------------------------ queue intake */

static void intake_cb(redisAsyncContext *ac, void *r, void *priv);

static void group_cb(redisAsyncContext *ac, void *r, void *priv)
{
    struct runner *rn = priv;
    redisReply *reply = r;
    (void)ac;
    if (!rconn_reply_ok(&rn->jobs, reply))
        return;
    if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) != 0)
        pc_warn("runner", "XGROUP CREATE %s %s: %s", rn->key_jobs, RN_GROUP, reply->str);
    else
        rn->group_ok = 1;
}

/*
 * From 0, not $: when the queue exists without the group (deleted, or Redis
 * restarted from an old snapshot), the jobs already in it are served, not
 * skipped. Entries of jobs that ended or expired are just acknowledged.
 */
static void group_create(struct runner *rn)
{
    const char *a[] = {"XGROUP", "CREATE", rn->key_jobs, RN_GROUP, "0", "MKSTREAM"};
    rconn_cmd(&rn->jobs, group_cb, rn, 6, a, NULL);
}

void rn_intake(struct runner *rn)
{
    char count[16];
    int free_slots = rn->o.slots - rn->held;
    if (rn->stopping || rn->intake_inflight || free_slots <= 0 || !rconn_ready(&rn->jobs) ||
        evtimer_pending(rn->intake_retry, NULL))
        return;
    snprintf(count, sizeof(count), "%d", free_slots);
    const char *a[] = {"XREADGROUP", "GROUP",  RN_GROUP,  rn->o.id,     "COUNT", count,
                       "BLOCK",      BLOCK_MS, "STREAMS", rn->key_jobs, ">"};
    if (rconn_cmd(&rn->jobs, intake_cb, rn, 11, a, NULL) == 0) {
        rn->intake_inflight = 1;
        rn->intake_sent_ms = pc_now_ms();
        rn->jobs.wait_ms = rn->intake_sent_ms;
    }
}

static void intake_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    rn_intake(arg);
}

/* A queue entry taken while stopping: hand it straight back. */
static void intake_entry(struct runner *rn, const redisReply *e)
{
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
        e->element[0]->type != REDIS_REPLY_STRING)
        return;
    char eid[PC_ID_STRLEN], jid[RN_JOB_ID_MAX + 2];
    snprintf(eid, sizeof(eid), "%.*s", (int)e->element[0]->len, e->element[0]->str);
    const redisReply *f = rn_field(e->element[1], "job");
    const char *s = "";
    size_t n = 0;
    if (f != NULL && rn_reply_str(f, &s, &n) == 0 && n <= RN_JOB_ID_MAX)
        snprintf(jid, sizeof(jid), "%.*s", (int)n, s);
    else
        jid[0] = '\0';
    job_new_queued(rn, eid, jid); /* while stopping, the job hands itself back */
}

static void intake_cb(redisAsyncContext *ac, void *r, void *priv)
{
    struct runner *rn = priv;
    redisReply *reply = r;
    (void)ac;
    rn->intake_inflight = 0;
    rn->jobs.wait_ms = 0;
    if (!rconn_reply_ok(&rn->jobs, reply)) {
        rn_check_done(rn);
        return; /* reissued when the connection is back */
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        pc_warn("runner", "XREADGROUP %s: %s", rn->key_jobs, reply->str);
        if (strncmp(reply->str, "NOGROUP", 7) == 0)
            group_create(rn);
        struct timeval tv = {1, 0};
        evtimer_add(rn->intake_retry, &tv);
        rn_check_done(rn);
        return;
    }
    if (reply->type == REDIS_REPLY_ARRAY) {
        for (size_t i = 0; i < reply->elements; i++) {
            const redisReply *st = reply->element[i];
            if (st->type != REDIS_REPLY_ARRAY || st->elements < 2 ||
                st->element[1]->type != REDIS_REPLY_ARRAY)
                continue;
            const redisReply *entries = st->element[1];
            for (size_t k = 0; k < entries->elements; k++)
                intake_entry(rn, entries->element[k]);
        }
    }
    rn_intake(rn);
    rn_check_done(rn);
}

static void client_id_cb(redisAsyncContext *ac, void *r, void *priv)
{
    struct runner *rn = priv;
    redisReply *reply = r;
    (void)ac;
    if (rconn_reply_ok(&rn->jobs, reply) && reply->type == REDIS_REPLY_INTEGER)
        rn->jobs_client_id = reply->integer;
}

/* Stopping: end a queue read that is blocked in Redis now rather than after BLOCK ms. */
static void intake_unblock(struct runner *rn)
{
    char id[24];
    if (!rn->intake_inflight || rn->jobs_client_id <= 0)
        return;
    snprintf(id, sizeof(id), "%lld", rn->jobs_client_id);
    const char *a[] = {"CLIENT", "UNBLOCK", id};
    rconn_cmd(&rn->cmd, NULL, NULL, 3, a, NULL);
}

static void jobs_on_up(struct rconn *rc)
{
    struct runner *rn = rc->rn;
    const char *a[] = {"CLIENT", "ID"};
    rn->intake_inflight = 0;
    rn->jobs_client_id = 0;
    rconn_cmd(rc, client_id_cb, rn, 2, a, NULL);
    group_create(rn);
    rn_intake(rn);
}

static void jobs_on_down(struct rconn *rc)
{
    rc->rn->intake_inflight = 0;
}

static void cmd_on_up(struct rconn *rc)
{
    struct runner *rn = rc->rn;
    rn->hb_sent_ms = 0;
    hb_send(rn);
    for (struct job *j = rn->jobs_head, *next; j != NULL; j = next) {
        next = j->next;
        job_on_cmd_up(j);
    }
    rn_check_done(rn);
}

static void cmd_on_down(struct rconn *rc)
{
    struct runner *rn = rc->rn;
    rn->hb_sent_ms = 0;
    rn->claim_busy = 0;
}

/* ------------------------------------------------------------ children
 *
 * Every child of the runner is the leader of a job's process group, or the
 * guard. A leader that exits is not reaped here: job.c reaps it at the end of
 * its attempt, after killing what is left of its group, so that its zombie
 * keeps the group's id from being reused until then (job_end_group). So
 * waitid(WNOWAIT) only looks: the first exited child it names is a leader
 * just exited (told to its job, which may end and reap it at once), or one
 * whose job still waits for its output -- then each running leader is asked
 * in turn.
 */

static void guard_check(struct runner *rn);

static struct job *leader_of(struct runner *rn, pid_t pid)
{
    for (struct job *j = rn->jobs_head; j != NULL; j = j->next)
        if (j->phase == JP_RUN && j->proc.pid == pid)
            return j;
    return NULL;
}

/* A leader that exited but is not reaped hides the children behind it from waitid(P_ALL). */
static void chld_scan(struct runner *rn)
{
    for (struct job *j = rn->jobs_head, *next; j != NULL; j = next) {
        next = j->next;
        if (j->phase == JP_RUN && j->proc.pid > 0 && !j->exited && pc_proc_exited(&j->proc) == 1)
            job_exited(j);
    }
}

static void chld_cb(evutil_socket_t fd, short what, void *arg)
{
    struct runner *rn = arg;
    (void)fd;
    (void)what;
    guard_check(rn);
    for (;;) {
        siginfo_t si;
        int st;
        memset(&si, 0, sizeof(si));
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid <= 0)
            break;
        if (si.si_pid == rn->guard.pid) {
            guard_check(rn);
            if (rn->guard.pid == si.si_pid)
                break; /* cannot be: it was just reaped */
            continue;
        }
        struct job *j = leader_of(rn, si.si_pid);
        if (j == NULL) {
            /* no job's leader: its zombie pins nothing of ours */
            if (waitpid(si.si_pid, &st, WNOHANG) != si.si_pid)
                break;
            pc_debug("runner", "reaped child %ld", (long)si.si_pid);
            continue;
        }
        if (j->exited) {
            chld_scan(rn);
            break;
        }
        job_exited(j);
    }
}

/* ------------------------------------------------------------ the guard */

/*
 * Sends to the guard never block (guard.h): one that finds its socket full waits for room at
 * most @p wait_ms (a healthy guard empties it in microseconds), then takes the guard as stuck
 * (SIGSTOPped, traced, blocked on its log): a record it cannot take is lost -- an unregistered
 * group left in its table could later be an unrelated one -- so it is SIGKILLed, and guard_check
 * (SIGCHLD, or the next tick) starts a new one and registers the running jobs' groups with it.
 */
int rn_guard_send(struct runner *rn, int add, pid_t pgid, int wait_ms)
{
    long long until = pc_now_ms() + wait_ms;
    pid_t gpid = rn->guard.pid;
    int rc;

    for (;;) {
        rc = add ? pc_guard_add(&rn->guard, pgid) : pc_guard_del(&rn->guard, pgid);
        if (rc != PC_ETIMEOUT)
            return rc;
        long long left = until - pc_now_ms();
        struct pollfd pf = {rn->guard.fd, POLLOUT, 0};
        if (left <= 0 || (poll(&pf, 1, (int)left) < 0 && errno != EINTR))
            break;
    }
    pc_error("runner",
             "guard pid %ld reads no more records (stopped or stuck?): could not %s process "
             "group %ld; killing it, a new guard will take the running jobs' groups",
             (long)gpid, add ? "register" : "unregister", (long)pgid);
    pc_guard_kill(&rn->guard);
    rn->guard_full_ticks = 0;
    errno = EAGAIN;
    return rc;
}

/* Start a guard and register the groups of the running jobs with it. @return 0 or -1. */
static int guard_start(struct runner *rn)
{
    char err[300];
    int n = 0;
    rn->guard_full_ticks = 0;
    if (pc_guard_start(&rn->guard, (size_t)rn->o.slots, err, sizeof(err)) != 0) {
        pc_error("runner", "%s: the process groups of jobs would outlive a crash of this runner",
                 err);
        return -1;
    }
    /* up to --slots records at once: the new guard gets a second to take each batch */
    for (struct job *j = rn->jobs_head; j != NULL && rn->guard.fd >= 0; j = j->next)
        if (j->phase == JP_RUN && j->proc.pid > 0 && rn_guard_send(rn, 1, j->proc.pid, 1000) == 0)
            n++;
    pc_info("runner",
            "guard pid %ld: SIGKILLs the process groups of running jobs if this runner dies "
            "(up to %d groups; %d registered)",
            (long)rn->guard.pid, rn->o.slots, n);
    return 0;
}

/*
 * Every second: a guard whose socket stays full for two ticks in a row reads nothing (it is
 * stopped or stuck). A job's child that registers its group then fails without waiting (and
 * cannot tell anyone), so the runner would not notice before a job ends: kill it now.
 */
static void guard_stuck_check(struct runner *rn)
{
    struct pollfd pf = {rn->guard.fd, POLLOUT, 0};
    if (rn->guard.fd < 0 || rn->guard.pid <= 0)
        return;
    if (poll(&pf, 1, 0) != 0) { /* room (or an error/hangup: for guard_check) */
        rn->guard_full_ticks = 0;
        return;
    }
    if (++rn->guard_full_ticks < 2)
        return;
    pc_error("runner",
             "guard pid %ld has read no record for a second and more (stopped or stuck?); "
             "killing it, a new guard will take the running jobs' groups",
             (long)rn->guard.pid);
    pc_guard_kill(&rn->guard);
    rn->guard_full_ticks = 0;
}

/* Has the guard died (SIGCHLD, and every second)? Say so loudly and start a new one. */
static void guard_check(struct runner *rn)
{
    char how[64];
    pid_t was = rn->guard.pid;
    int st = 0;
    if (was <= 0) {
        guard_start(rn); /* the last attempt failed: again */
        return;
    }
    if (pc_guard_check(&rn->guard, &st) != 1)
        return;
    if (WIFSIGNALED(st))
        snprintf(how, sizeof(how), "was killed by signal %d", WTERMSIG(st));
    else
        snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(st));
    pc_error("runner",
             "guard pid %ld %s; starting a new one (until then the process groups of running "
             "jobs would outlive a crash of this runner)",
             (long)was, how);
    guard_start(rn);
}

/* ------------------------------------------------------------ shutdown */

static void kill_all(struct runner *rn)
{
    rn->kill_all_sent = 1;
    for (struct job *j = rn->jobs_head, *next; j != NULL; j = next) {
        next = j->next;
        if (j->kind == JK_RUN)
            job_kill(j, SIGTERM, JR_KILLED);
    }
}

static void grace_cb(evutil_socket_t fd, short what, void *arg)
{
    struct runner *rn = arg;
    (void)fd;
    (void)what;
    long long waited = (pc_now_ms() - rn->stop_ms) / 1000;
    if (!rn->kill_all_sent) {
        if (rn->held > 0)
            pc_info("runner", "shutdown grace over: killing %d jobs", rn->held);
        kill_all(rn);
        struct timeval tv = {rn->o.kill_grace_s + GIVE_UP_EXTRA_S, 0};
        evtimer_add(rn->grace_ev, &tv);
        return;
    }
    if (rn->jobs_head == NULL) {
        /* nothing to report, only the heartbeat to delete: its TTL does that too */
        pc_warn("runner",
                "redis %s unreachable after %lld s: exiting without deleting the heartbeat "
                "(it expires by its TTL)",
                rn->o.where, waited);
        event_base_loopexit(rn->base, NULL);
        return;
    }
    /* still here: Redis is not taking what the jobs have to report */
    size_t pending = 0;
    for (struct job *j = rn->jobs_head; j != NULL; j = j->next)
        pending += j->q_n;
    pc_error("runner",
             "giving up after %lld s: redis %s: %d jobs could not report their end "
             "(%zu commands not acknowledged)",
             waited, rn->o.where, rn->held, pending);
    rn->exit_code = 1;
    event_base_loopexit(rn->base, NULL);
}

static void final_cb(redisAsyncContext *ac, void *r, void *priv)
{
    struct runner *rn = priv;
    (void)ac;
    if (!rconn_reply_ok(&rn->cmd, r)) {
        rn->final_sent = 0; /* again once connected */
        return;
    }
    event_base_loopexit(rn->base, NULL);
}

void rn_job_gone(struct runner *rn, struct job *j)
{
    (void)j;
    if (rn->stopping)
        rn_check_done(rn);
    else
        rn_intake(rn);
}

void rn_check_done(struct runner *rn)
{
    if (!rn->stopping || rn->final_sent || rn->jobs_head != NULL || rn->intake_inflight)
        return;
    if (!rconn_ready(&rn->cmd))
        return; /* when it is back (or the give-up timer) */
    const char *a[] = {"DEL", rn->key_hb, rn->key_ctl};
    if (rconn_cmd(&rn->cmd, final_cb, rn, 3, a, NULL) == 0)
        rn->final_sent = 1;
}

static void stop_cb(evutil_socket_t sig, short what, void *arg)
{
    struct runner *rn = arg;
    (void)what;
    if (rn->stopping) {
        if (!rn->kill_all_sent) {
            pc_info("runner", "%s again: killing %d jobs now", strsignal((int)sig), rn->held);
            kill_all(rn);
        }
        return;
    }
    rn->stopping = 1;
    rn->stop_ms = pc_now_ms();
    pc_info("runner", "%s: stopping (no new jobs; %d running, grace %d s)", strsignal((int)sig),
            rn->held, rn->o.shutdown_grace_s);
    rn->hb_sent_ms = 0;
    hb_send(rn);
    intake_unblock(rn);
    struct timeval tv = {rn->o.shutdown_grace_s, 0};
    evtimer_add(rn->grace_ev, &tv);
    if (rn->held == 0) {
        rn->kill_all_sent = 1; /* nothing to wait for */
        tv.tv_sec = rn->jobs_head == NULL ? IDLE_STOP_WAIT_S : rn->o.kill_grace_s + GIVE_UP_EXTRA_S;
        evtimer_add(rn->grace_ev, &tv);
    }
    rn_check_done(rn);
}

/* ------------------------------------------------------------ periodic */

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    struct runner *rn = arg;
    (void)fd;
    (void)what;
    long long now = pc_now_ms();
    rconn_watchdog(&rn->cmd, now);
    rconn_watchdog(&rn->jobs, now);
    rconn_watchdog(&rn->ctl, now);
    guard_stuck_check(rn);
    guard_check(rn);
    for (struct job *j = rn->jobs_head; j != NULL; j = j->next)
        job_tick(j);
    rn_intake(rn);
    ctl_next(rn);
    rn_check_done(rn);
}

static void claim_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct runner *rn = arg;
    (void)fd;
    (void)what;
    if (!rn->stopping)
        claim_scan(rn);
}

/* ------------------------------------------------------------ setup */

static struct event *add_timer(struct runner *rn, event_callback_fn cb, int every_ms)
{
    struct event *ev = event_new(rn->base, -1, EV_PERSIST, cb, rn);
    if (ev != NULL) {
        struct timeval tv = {every_ms / 1000, (every_ms % 1000) * 1000};
        event_add(ev, &tv);
    }
    return ev;
}

static void runner_free(struct runner *rn)
{
    /* connections first: their pending callbacks still see the jobs */
    rconn_free(&rn->cmd);
    rconn_free(&rn->jobs);
    rconn_free(&rn->ctl);
    while (rn->jobs_head != NULL) {
        rn->stopping = 1;
        rn->final_sent = 1;
        job_free(rn->jobs_head);
    }
    /* EOF for the guard: it kills whatever group is still registered (none after a clean stop) */
    if (pc_guard_stop(&rn->guard, 2000) != 0)
        pc_warn("runner", "guard pid %ld did not exit", (long)rn->guard.pid);
    struct event *evs[] = {rn->sig_term, rn->sig_int,  rn->sig_chld, rn->tick_ev,
                           rn->hb_ev,    rn->claim_ev, rn->grace_ev, rn->intake_retry};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++)
        if (evs[i] != NULL)
            event_free(evs[i]);
    cJSON_Delete(rn->tmpl_desc);
    pc_tmpl_set_free(rn->tmpl);
    free(rn->rbuf);
    if (rn->base != NULL)
        event_base_free(rn->base);
    free(rn);
}

int rn_run(struct rn_opts *o)
{
    char err[600];
    struct runner *rn = calloc(1, sizeof(*rn));
    if (rn == NULL) {
        fprintf(stderr, "pipecast-runner: out of memory\n");
        return 1;
    }
    rn->o = *o;
    rn->started_ms = pc_wall_ms();
    pc_guard_init(&rn->guard);
    if (o->config != NULL) {
        rn->tmpl = pc_tmpl_set_load(o->config, err, sizeof(err));
        if (rn->tmpl == NULL) {
            fprintf(stderr, "pipecast-runner: %s\n", err);
            runner_free(rn);
            return 2;
        }
    }
    rn->tmpl_desc = pc_tmpl_set_describe(rn->tmpl);
    snprintf(rn->key_jobs, sizeof(rn->key_jobs), "%s:jobs", o->prefix);
    snprintf(rn->key_ctl, sizeof(rn->key_ctl), "%s:ctl:%s", o->prefix, o->id);
    snprintf(rn->key_hb, sizeof(rn->key_hb), "%s:runner:%s", o->prefix, o->id);

    /* Forked before the event loop and the connections exist: the guard inherits nothing of
     * them (it closes every fd but its socket and stderr anyway). */
    if (guard_start(rn) != 0) {
        fprintf(stderr, "pipecast-runner: cannot start the guard process\n");
        runner_free(rn);
        return 1;
    }
    rn->rbuf = malloc(RN_READ_CHUNK);
    rn->base = event_base_new();
    if (rn->rbuf == NULL || rn->base == NULL || rn->tmpl_desc == NULL) {
        fprintf(stderr, "pipecast-runner: out of memory\n");
        runner_free(rn);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    rn->sig_term = evsignal_new(rn->base, SIGTERM, stop_cb, rn);
    rn->sig_int = evsignal_new(rn->base, SIGINT, stop_cb, rn);
    rn->sig_chld = evsignal_new(rn->base, SIGCHLD, chld_cb, rn);
    rn->grace_ev = evtimer_new(rn->base, grace_cb, rn);
    rn->intake_retry = evtimer_new(rn->base, intake_retry_cb, rn);
    if (rn->sig_term == NULL || rn->sig_int == NULL || rn->sig_chld == NULL ||
        rn->grace_ev == NULL || rn->intake_retry == NULL ||
        rconn_init(&rn->cmd, rn, "command", HB_REPLY_LIMIT_MS, cmd_on_up, cmd_on_down) != 0 ||
        rconn_init(&rn->jobs, rn, "queue", BLOCK_LIMIT_MS, jobs_on_up, jobs_on_down) != 0 ||
        rconn_init(&rn->ctl, rn, "control", BLOCK_LIMIT_MS, ctl_on_up, ctl_on_down) != 0) {
        fprintf(stderr, "pipecast-runner: out of memory\n");
        runner_free(rn);
        return 1;
    }
    event_add(rn->sig_term, NULL);
    event_add(rn->sig_int, NULL);
    event_add(rn->sig_chld, NULL);
    rn->tick_ev = add_timer(rn, tick_cb, 1000);
    rn->hb_ev = add_timer(rn, hb_timer_cb, HB_EVERY_MS);
    rn->claim_ev = add_timer(rn, claim_timer_cb, CLAIM_EVERY_MS);

    pc_info("runner", "runner %s: redis %s, prefix %s, %d slots, %d templates%s", o->id, o->where,
            o->prefix, o->slots, pc_tmpl_set_count(rn->tmpl),
            o->allow_any ? ", any command allowed" : "");
    rconn_start(&rn->cmd);
    rconn_start(&rn->jobs);
    rconn_start(&rn->ctl);

    event_base_dispatch(rn->base);

    int code = rn->exit_code;
    if (code == 0)
        pc_info("runner", "stopped");
    runner_free(rn);
    return code;
}
