/* job.c -- one job: from its queue entry to its XACK.
 *
 *   FETCH ----> RUN ---------> ENDING ------> EXITING ----> FINAL ----> freed
 *   HGETALL     process,       process        `exit`        HSET end,   (XACK
 *   validate    pipes read     exited, pipes  queued        EXPIRE,      acknowledged)
 *   spawn       to EOF         at EOF; group                XACK
 *                              killed, leader     |
 *                              reaped; wait       +--> BACKOFF --> RUN (on-failure restart)
 *                              for the queue
 *                              to drain
 *
 * Process groups: each attempt runs in a process group of its own, which its
 * child registers with the runner's guard before exec (guard.h). The attempt
 * ends when the leader has exited and the output is at EOF; then whatever is
 * left of the group is SIGKILLed, the group is unregistered, and only then is
 * the leader reaped (job_end_group).
 *
 * Everything a job writes to Redis goes through its queue: RESP-encoded
 * commands, sent in order on the `cmd` connection and kept until Redis
 * acknowledged them. After a lost connection (or an error reply) the
 * unacknowledged ones are sent again, in order: at-least-once, so a line
 * whose reply was lost may appear twice, but none is lost and none is
 * reordered.
 *
 * Backpressure: while the queue is above RN_JOB_Q_MAX commands or
 * RN_JOB_Q_BYTES bytes (or all jobs together above RN_TOTAL_Q_BYTES), the
 * job's pipes are not read, so the job blocks in write(); reading resumes
 * below half of those marks. Redis being away is the same case: nothing is
 * acknowledged, the queue fills, reading stops.
 */
#include "runner.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pipecast/error.h"
#include "pipecast/log.h"

static void job_fetch(struct job *j);
static void job_check_end(struct job *j);
static void job_try_exit(struct job *j);
static void job_start_attempt(struct job *j);
static void job_fail(struct job *j, const char *msg);

#define RN_STR_(x) #x
#define RN_STR(x) RN_STR_(x)

/* The running transition refuses a job cancelled while it was being started; it opens the
 * attempt's stdin to gateways (see "stdin"). */
static const char SCRIPT_RUNNING[] =
    "if redis.call('HGET', KEYS[1], 'cancel') == '1' then return 0 end "
    "redis.call('HDEL', KEYS[1], 'stdin_closed', 'stdin_seq', 'stdin_seq_read') "
    "redis.call('HSET', KEYS[1], 'stdin_max', '" RN_STR(RN_STDIN_MAX) "', unpack(ARGV)) return 1";

/* Give a job that was never started back to the queue (the runner is stopping). */
static const char SCRIPT_REQUEUE[] =
    "local id = redis.call('XADD', KEYS[1], '*', 'job', ARGV[1]) "
    "if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HSET', KEYS[2], 'entry', id) end "
    "redis.call('XACK', KEYS[1], ARGV[2], ARGV[3]) return id";

/* ------------------------------------------------------------ RESP encoding */

static size_t ndigits(size_t n)
{
    size_t d = 1;
    while (n >= 10) {
        n /= 10;
        d++;
    }
    return d;
}

static size_t bulk_size(size_t n)
{
    return 1 + ndigits(n) + 2 + n + 2;
}

/* Write @p n in decimal at @p p; @return the end (sprintf is the hot spot otherwise). */
static char *put_uint(char *p, size_t n)
{
    char tmp[24];
    int k = 0;
    do {
        tmp[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n > 0);
    while (k > 0)
        *p++ = tmp[--k];
    return p;
}

static char *put_bulk(char *p, const char *s, size_t n)
{
    *p++ = '$';
    p = put_uint(p, n);
    *p++ = '\r';
    *p++ = '\n';
    memcpy(p, s, n);
    p += n;
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

static char *put_count(char *p, int argc)
{
    *p++ = '*';
    p = put_uint(p, (size_t)argc);
    *p++ = '\r';
    *p++ = '\n';
    return p;
}

static struct ent *ent_alloc(int kind, size_t len)
{
    struct ent *e = malloc(sizeof(*e) + len + 1);
    if (e == NULL)
        return NULL;
    e->next = NULL;
    e->job = NULL;
    e->kind = kind;
    e->attempts = 0;
    e->v1 = e->v2 = 0;
    e->len = len;
    return e;
}

static struct ent *ent_argv(int kind, int argc, const char *const *argv, const size_t *lens)
{
    size_t len = 1 + ndigits((size_t)argc) + 2;
    for (int i = 0; i < argc; i++)
        len += bulk_size(lens != NULL ? lens[i] : strlen(argv[i]));
    struct ent *e = ent_alloc(kind, len);
    if (e == NULL)
        return NULL;
    char *p = put_count(e->cmd, argc);
    for (int i = 0; i < argc; i++)
        p = put_bulk(p, argv[i], lens != NULL ? lens[i] : strlen(argv[i]));
    return e;
}

/* XADD <key> [MAXLEN ~ n] * event <event> data <data> [partial 1] */
static struct ent *ent_xadd(struct job *j, int kind, const char *event, const char *data,
                            size_t len, int partial)
{
    int argc = 2 + (j->rn->o.maxlen > 0 ? 3 : 0) + 1 + 4 + (partial ? 2 : 0);
    size_t evlen = strlen(event);
    size_t total = 1 + ndigits((size_t)argc) + 2 + bulk_size(4) + j->mid_len + bulk_size(1) +
                   bulk_size(5) + bulk_size(evlen) + bulk_size(4) + bulk_size(len) +
                   (partial ? bulk_size(7) + bulk_size(1) : 0);
    struct ent *e = ent_alloc(kind, total);
    if (e == NULL)
        return NULL;
    char *p = put_count(e->cmd, argc);
    p = put_bulk(p, "XADD", 4);
    memcpy(p, j->mid, j->mid_len);
    p += j->mid_len;
    p = put_bulk(p, "*", 1);
    p = put_bulk(p, "event", 5);
    p = put_bulk(p, event, evlen);
    p = put_bulk(p, "data", 4);
    p = put_bulk(p, data, len);
    if (partial) {
        p = put_bulk(p, "partial", 7);
        p = put_bulk(p, "1", 1);
    }
    return e;
}

/* ------------------------------------------------------------ the queue */

static void ent_reply(redisAsyncContext *ac, void *r, void *priv);

static void q_pump(struct job *j)
{
    struct rconn *rc = &j->rn->cmd;
    while (j->q_unsent != NULL && rconn_ready(rc)) {
        struct ent *e = j->q_unsent;
        if (rconn_raw(rc, ent_reply, e, e->cmd, e->len) != 0)
            break;
        j->q_unsent = e->next;
    }
}

static int job_over(const struct job *j)
{
    return j->q_n >= RN_JOB_Q_MAX || j->q_bytes >= RN_JOB_Q_BYTES ||
           j->rn->q_bytes >= RN_TOTAL_Q_BYTES;
}

static int job_under(const struct job *j)
{
    return j->q_n <= RN_JOB_Q_MAX / 2 && j->q_bytes <= RN_JOB_Q_BYTES / 2 &&
           j->rn->q_bytes <= RN_TOTAL_Q_BYTES / 2;
}

/* Queue @p e (NULL: out of memory, reported). @return 0 or PC_ENOMEM. */
static int q_push(struct job *j, struct ent *e)
{
    if (e == NULL) {
        pc_error("job", "job %s: out of memory: an entry for channel %s is lost", j->id,
                 j->channel);
        j->dropped++;
        return PC_ENOMEM;
    }
    e->job = j;
    if (j->q_tail != NULL)
        j->q_tail->next = e;
    else
        j->q_head = e;
    j->q_tail = e;
    if (j->q_unsent == NULL)
        j->q_unsent = e;
    j->q_n++;
    j->q_bytes += e->len;
    j->rn->q_bytes += e->len;
    q_pump(j);
    return 0;
}

static void q_pop(struct job *j)
{
    struct ent *e = j->q_head;
    j->q_head = e->next;
    if (j->q_head == NULL)
        j->q_tail = NULL;
    if (j->q_unsent == e)
        j->q_unsent = e->next;
    j->q_n--;
    j->q_bytes -= e->len;
    j->rn->q_bytes -= e->len;
    free(e);
}

static void q_clear(struct job *j)
{
    while (j->q_head != NULL)
        q_pop(j);
}

static int q_cmd(struct job *j, int kind, int argc, const char *const *argv, const size_t *lens)
{
    return q_push(j, ent_argv(kind, argc, argv, lens));
}

static int q_event(struct job *j, int kind, const char *event, const char *data, size_t len,
                   int partial)
{
    if (!j->have_channel)
        return 0;
    return q_push(j, ent_xadd(j, kind, event, data, len, partial));
}

static int q_event_json(struct job *j, int kind, const char *event, cJSON *obj)
{
    char *s = obj != NULL ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    if (s == NULL) {
        pc_error("job", "job %s: out of memory: `%s` event lost", j->id, event);
        /* the job still has to end: pretend it was acknowledged */
        return q_push(j, ent_argv(kind, 1, (const char *[]){"PING"}, NULL));
    }
    int rc = q_event(j, kind, event, s, strlen(s), 0);
    free(s);
    return rc;
}

static void job_after_exit(struct job *j);

/* Tell the channel about output lines Redis refused (once it accepts commands again). */
static void job_note_dropped(struct job *j, int kind)
{
    if (!j->have_channel || j->dropped <= j->dropped_noted)
        return;
    char msg[160];
    snprintf(msg, sizeof(msg),
             "pipecast: %ld output line(s) of this job were dropped: redis refused them",
             j->dropped);
    j->dropped_noted = j->dropped;
    q_event(j, kind, "stderr", msg, strlen(msg), 0);
}

static void ent_reply(redisAsyncContext *ac, void *r, void *priv)
{
    struct ent *e = priv;
    struct job *j = e->job;
    struct runner *rn = j->rn;
    redisReply *reply = r;
    (void)ac;

    if (!rconn_reply_ok(&rn->cmd, reply)) {
        j->q_unsent = j->q_head; /* everything unacknowledged goes again, in order */
        return;
    }
    if (e != j->q_head) {
        pc_error("job", "job %s: reply out of order; resending", j->id);
        j->q_unsent = j->q_head;
        rconn_reset(&rn->cmd, NULL);
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        ++e->attempts;
        if (e->kind == ENT_EXIT || e->kind == ENT_FINAL || e->kind == ENT_KEEP) {
            /* never dropped: the job's end must reach Redis before its XACK. Resending goes
             * through a reconnect, whose backoff (up to 2 s) paces the retries. */
            if (e->attempts == RN_ENTRY_ATTEMPTS || e->attempts % 30 == 0)
                pc_error("job",
                         "job %s: redis refused the job's end %d times (%s); retrying until it "
                         "accepts it",
                         j->id, e->attempts, reply->str);
            else
                pc_warn("job", "job %s: redis refused a command (%s); resending", j->id,
                        reply->str);
            j->q_unsent = j->q_head;
            rconn_reset(&rn->cmd, NULL);
            return;
        }
        if (e->attempts < RN_ENTRY_ATTEMPTS) {
            pc_warn("job", "job %s: redis refused a command (%s); resending", j->id, reply->str);
            j->q_unsent = j->q_head;
            rconn_reset(&rn->cmd, NULL);
            return;
        }
        pc_error("job", "job %s: redis refused a command %d times (%s); dropped it", j->id,
                 e->attempts, reply->str);
        if (e->kind != ENT_INSYNC)
            j->dropped++; /* not an output line: the tick sends stdin_written again */
    }
    int kind = e->kind;
    long long iv = reply->type == REDIS_REPLY_INTEGER ? reply->integer : -1;
    long long v1 = e->v1, v2 = e->v2;
    q_pop(j);

    switch (kind) {
    case ENT_INSYNC:
        j->in_sync_inflight--;
        if (reply->type != REDIS_REPLY_ERROR) {
            j->in_written_ack = v1;
            j->in_seq_ack = v2;
        }
        break;
    case ENT_RUNNING:
        if (iv == 0 && j->phase == JP_RUN) {
            pc_info("job", "job %s: cancelled while it was starting; killing it", j->id);
            job_kill(j, SIGTERM, JR_KILLED);
        }
        break;
    case ENT_EXIT:
        job_after_exit(j);
        return;
    case ENT_FINAL:
        job_free(j);
        return;
    default:
        break;
    }
    if (reply->type != REDIS_REPLY_ERROR && (j->phase == JP_RUN || j->phase == JP_BACKOFF))
        job_note_dropped(j, ENT_PLAIN);
    if (j->paused)
        job_maybe_resume(j);
    if (rn->total_paused && rn->q_bytes <= RN_TOTAL_Q_BYTES / 2)
        rn_resume_all(rn);
    if (j->phase == JP_ENDING)
        job_try_exit(j);
}

/* ------------------------------------------------------------ small helpers */

static const char *reason_str(enum job_reason r)
{
    switch (r) {
    case JR_KILLED:
        return "killed";
    case JR_TIMEOUT:
        return "timeout";
    case JR_LOST:
        return "lost";
    case JR_FAILED:
        return "failed to start";
    default:
        return "exited";
    }
}

static const char *status_str(enum job_reason r)
{
    return r == JR_FAILED ? "failed" : reason_str(r);
}

static int set_channel(struct job *j, const char *ch, size_t len)
{
    struct runner *rn = j->rn;
    char mx[32];
    if (!pc_channel_valid(ch, len))
        return -1;
    memcpy(j->channel, ch, len);
    j->channel[len] = '\0';
    if (pc_key_channel(j->key, sizeof(j->key), rn->o.prefix, j->channel) < 0)
        return -1;
    size_t klen = strlen(j->key), n = bulk_size(klen);
    int ml = snprintf(mx, sizeof(mx), "%lld", rn->o.maxlen);
    if (rn->o.maxlen > 0)
        n += bulk_size(6) + bulk_size(1) + bulk_size((size_t)ml);
    free(j->mid);
    j->mid = malloc(n + 1);
    if (j->mid == NULL)
        return -1;
    char *p = put_bulk(j->mid, j->key, klen);
    if (rn->o.maxlen > 0) {
        p = put_bulk(p, "MAXLEN", 6);
        p = put_bulk(p, "~", 1);
        p = put_bulk(p, mx, (size_t)ml);
    }
    j->mid_len = (size_t)(p - j->mid);
    j->have_channel = 1;
    return 0;
}

static struct timeval ms_tv(long long ms)
{
    struct timeval tv;
    tv.tv_sec = (time_t)(ms / 1000);
    tv.tv_usec = (suseconds_t)((ms % 1000) * 1000);
    return tv;
}

/* ------------------------------------------------------------ output */

static void stream_pause(struct job_stream *s)
{
    if (s->ev != NULL)
        event_del(s->ev);
}

static void job_pause(struct job *j)
{
    if (j->paused)
        return;
    j->paused = 1;
    if (j->rn->q_bytes >= RN_TOTAL_Q_BYTES)
        j->rn->total_paused = 1;
    stream_pause(&j->out);
    stream_pause(&j->err);
    pc_debug("job", "job %s: paused (%zu commands, %zu bytes queued)", j->id, j->q_n, j->q_bytes);
}

static void stream_resume(struct job_stream *s, int flush_ms)
{
    if (s->ev == NULL || s->eof)
        return;
    event_add(s->ev, NULL);
    if (s->sp != NULL && pc_splitter_pending(s->sp) > 0) {
        struct timeval tv = ms_tv(flush_ms);
        evtimer_add(s->flush_ev, &tv);
    }
}

void job_maybe_resume(struct job *j)
{
    if (!j->paused || !job_under(j))
        return;
    j->paused = 0;
    stream_resume(&j->out, j->rn->o.flush_ms);
    stream_resume(&j->err, j->rn->o.flush_ms);
    pc_debug("job", "job %s: resumed", j->id);
}

static int stream_entry(void *priv, const char *data, size_t len, int partial)
{
    struct job_stream *s = priv;
    return q_event(s->job, ENT_PLAIN, s->event, data, len, partial);
}

static void stream_close(struct job_stream *s)
{
    if (s->ev != NULL) {
        event_free(s->ev);
        s->ev = NULL;
    }
    if (s->flush_ev != NULL) {
        event_free(s->flush_ev);
        s->flush_ev = NULL;
    }
    if (s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
    pc_splitter_free(s->sp);
    s->sp = NULL;
}

static void stream_eof(struct job_stream *s)
{
    if (s->eof)
        return;
    s->eof = 1;
    if (s->sp != NULL && pc_splitter_finish(s->sp) != 0)
        pc_error("job", "job %s: %s: the last line could not be queued", s->job->id, s->event);
    stream_close(s);
    job_check_end(s->job);
}

static void stream_read_cb(evutil_socket_t fd, short what, void *arg)
{
    struct job_stream *s = arg;
    struct job *j = s->job;
    (void)what;
    ssize_t n = read(fd, j->rn->rbuf, RN_READ_CHUNK);
    if (n > 0) {
        if (pc_splitter_feed(s->sp, j->rn->rbuf, (size_t)n) != 0)
            pc_error("job", "job %s: %s: output could not be queued", j->id, s->event);
        if (pc_splitter_pending(s->sp) > 0) {
            struct timeval tv = ms_tv(j->rn->o.flush_ms);
            evtimer_add(s->flush_ev, &tv);
        } else {
            evtimer_del(s->flush_ev);
        }
        if (job_over(j))
            job_pause(j);
        return;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    /* 0: EOF; EIO: a pty whose slave side is closed everywhere */
    if (n < 0 && errno != EIO)
        pc_warn("job", "job %s: read %s: %s", j->id, s->event, strerror(errno));
    stream_eof(s);
}

static void stream_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct job_stream *s = arg;
    (void)fd;
    (void)what;
    /* paused: the job is not idle, we are; flushed after the resume instead */
    if (s->job->paused || s->sp == NULL)
        return;
    if (pc_splitter_flush(s->sp) != 0)
        pc_error("job", "job %s: %s: output could not be queued", s->job->id, s->event);
    if (job_over(s->job))
        job_pause(s->job);
}

static int stream_open(struct job_stream *s, struct job *j, const char *event, int fd)
{
    s->job = j;
    s->event = event;
    s->fd = fd;
    s->eof = fd < 0;
    if (fd < 0)
        return 0;
    s->sp = pc_splitter_new(j->rn->o.max_line, stream_entry, s);
    s->ev = event_new(j->rn->base, fd, EV_READ | EV_PERSIST, stream_read_cb, s);
    s->flush_ev = evtimer_new(j->rn->base, stream_flush_cb, s);
    if (s->sp == NULL || s->ev == NULL || s->flush_ev == NULL)
        return -1;
    if (!j->paused)
        event_add(s->ev, NULL);
    return 0;
}

/* ------------------------------------------------------------ stdin
 *
 * Flow control with the gateways (docs/jobs.md "Stdin"): a gateway reserves
 * room before it queues a `stdin` control message. In one script it adds the
 * body's length to the hash's stdin_accepted, only while stdin_accepted -
 * stdin_written - stdin_dropped stays within stdin_max (RN_STDIN_MAX, set by
 * the running transition), and tags the message `credit <n> attempt <a>`. So
 * a credited byte always has room here: credited bytes are never refused.
 *
 * As credited bytes reach the pipe, stdin_written is set, once per write
 * burst, to the job's running total (an absolute value: sent again after a
 * reconnect it does no harm), with stdin_seq_read, the `seq` of the last data
 * message read (gateways charge the messages not read yet). What Redis did
 * not take (an HSET dropped after repeated refusals) is sent again from the
 * once-a-second tick. A `seq` that skips one means entries were cut from the
 * control stream before they were read: the attempt's stdin ends as `lost`
 * (nothing after the hole is written). When the attempt's stdin ends here (eof
 * written, the job closed its stdin, the attempt ended), SCRIPT_STDIN_END
 * sets stdin_closed (gateways take no more bytes), counts what was accepted
 * but not written (buffered here, or still in the control stream) as
 * stdin_dropped and says so in a `stderr` entry of the channel. Credited
 * messages of that attempt that arrive later were counted there: ignored.
 *
 * Bytes without credit (the request's `stdin` text, control messages of other
 * producers) are kept apart, up to RN_STDIN_MAX; when they do not fit or
 * cannot be written the channel is told too: their total, at most once a
 * second (and before `exit`), not one entry per message. In the buffer they count as the
 * first bytes, so written credit is never given back before its bytes left.
 */

/* KEYS: job hash, channel stream. ARGV: written total ("" = the hash's: a lost job),
 * uncredited bytes lost, stdin_closed value, text after "pipecast: <n>", MAXLEN ("0": none).
 * @return the bytes told lost. */
static const char SCRIPT_STDIN_END[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
    "local h = redis.call('HMGET', KEYS[1], 'stdin_accepted', 'stdin_written', 'stdin_dropped', "
    "'stdin_closed') "
    "local acc = tonumber(h[1]) or 0 "
    "local w = tonumber(ARGV[1]) or tonumber(h[2]) or 0 "
    "local old = tonumber(h[3]) or 0 "
    "local drop = acc - w "
    "if drop < old then drop = old end "
    "if h[1] then redis.call('HSET', KEYS[1], 'stdin_written', tostring(w), 'stdin_dropped', "
    "tostring(drop)) end "
    "if not h[4] then redis.call('HSET', KEYS[1], 'stdin_closed', ARGV[3]) end "
    "local lost = drop - old + tonumber(ARGV[2]) "
    "if lost > 0 then "
    "  local a = {'XADD', KEYS[2]} "
    "  if ARGV[5] ~= '0' then a[3] = 'MAXLEN' a[4] = '~' a[5] = ARGV[5] end "
    "  a[#a + 1] = '*' a[#a + 1] = 'event' a[#a + 1] = 'stderr' a[#a + 1] = 'data' "
    "  a[#a + 1] = 'pipecast: ' .. tostring(lost) .. ARGV[4] "
    "  redis.call(unpack(a)) "
    "end "
    "return lost";

/* Tell the channel (and the log) the uncredited bytes not written since the last time.
 * @return 1 when an entry was queued. */
static int in_tell_flush(struct job *j)
{
    char msg[200];
    long long n = j->in_tell_n;
    if (n == 0)
        return 0;
    j->in_tell_n = 0;
    pc_warn("job", "job %s: %lld bytes of stdin not written: %s", j->id, n, j->in_tell_why);
    if (!j->have_channel || (j->phase != JP_RUN && j->phase != JP_ENDING && j->phase != JP_BACKOFF))
        return 0; /* after `exit`: the log only */
    snprintf(msg, sizeof(msg), "pipecast: %lld bytes of stdin were not written: %s", n,
             j->in_tell_why);
    return q_event(j, ENT_KEEP, "stderr", msg, strlen(msg), 0) == 0;
}

/* @p n uncredited bytes were not written (@p why: a literal): told with the next flush. */
static void in_tell_lost(struct job *j, size_t n, const char *why)
{
    if (j->in_tell_n > 0 && strcmp(j->in_tell_why, why) != 0)
        in_tell_flush(j);
    j->in_tell_n += (long long)n;
    j->in_tell_why = why;
}

static void in_close(struct job *j)
{
    if (j->in_ev != NULL) {
        event_free(j->in_ev);
        j->in_ev = NULL;
    }
    if (j->in_fd >= 0) {
        close(j->in_fd);
        j->in_fd = -1;
    }
    if (j->in_open)
        j->in_plain_lost += (long long)(j->in.len - j->in_credit);
    pc_buf_reset(&j->in);
    j->in_credit = 0;
}

/* Queue SCRIPT_STDIN_END (see above); @p written NULL: take the hash's (a lost job). */
static void in_send_end(struct job *j, const char *written, const char *closed, const char *text)
{
    char lost[24], mx[24];
    snprintf(lost, sizeof(lost), "%lld", j->in_plain_lost);
    snprintf(mx, sizeof(mx), "%lld", j->rn->o.maxlen > 0 ? j->rn->o.maxlen : 0);
    j->in_plain_lost = 0;
    j->in_written_tx = j->in_written;
    const char *a[] = {
        "EVAL", SCRIPT_STDIN_END, "2",  j->hkey, j->key, written != NULL ? written : "",
        lost,   closed,           text, mx};
    q_cmd(j, ENT_KEEP, (int)(sizeof(a) / sizeof(a[0])), a, NULL);
}

/*
 * The attempt's stdin ends here for good (@p closed: the stdin_closed value,
 * @p text: why, for the channel): drop what is buffered and account for it in
 * Redis. @return 1 when something was queued.
 */
static int in_end(struct job *j, const char *closed, const char *text)
{
    char written[24];
    if (j->in.len > 0)
        pc_info("job", "job %s: stdin ends (%s); %zu bytes not written", j->id, closed, j->in.len);
    in_close(j);
    if (!j->in_open || !j->have_channel)
        return 0;
    j->in_open = 0;
    snprintf(written, sizeof(written), "%lld", j->in_written);
    in_send_end(j, written, closed, text);
    return 1;
}

/* Before `exit`: the stdin of the attempt (or of a lost job) is accounted. @return 1: queued. */
static int in_attempt_end(struct job *j)
{
    if (j->kind == JK_LOST) {
        if (j->in_lost_told || !j->have_channel)
            return 0;
        j->in_lost_told = 1;
        in_send_end(j, NULL, "lost",
                    " bytes of stdin were not confirmed written: the job's runner was lost");
        return 1;
    }
    return in_end(j, "ended", " bytes of stdin were not written: the job ended first");
}

/*
 * Give written credit back (once per write burst): the absolute total, so resending is safe,
 * with the seq of the last message read. @p again (the tick): send what Redis has not taken,
 * when nothing is on its way.
 */
static void in_sync(struct job *j, int again)
{
    char v[24], s[24];
    if (!j->in_open)
        return;
    if (again ? j->in_sync_inflight > 0 ||
                    (j->in_written == j->in_written_ack && j->in_seq == j->in_seq_ack)
              : j->in_written == j->in_written_tx && j->in_seq == j->in_seq_tx)
        return;
    snprintf(v, sizeof(v), "%lld", j->in_written);
    snprintf(s, sizeof(s), "%lld", j->in_seq);
    const char *a[] = {"HSET", j->hkey, "stdin_written", v, "stdin_seq_read", s};
    struct ent *e = ent_argv(ENT_INSYNC, 6, a, NULL);
    if (e != NULL) {
        e->v1 = j->in_written;
        e->v2 = j->in_seq;
    }
    if (q_push(j, e) != 0)
        return;
    j->in_written_tx = j->in_written;
    j->in_seq_tx = j->in_seq;
    j->in_sync_inflight++;
}

void job_tick(struct job *j)
{
    in_sync(j, 1);
    in_tell_flush(j);
}

static void in_kick(struct job *j)
{
    if (j->in_fd < 0)
        return;
    if (j->in.len > 0) {
        event_add(j->in_ev, NULL);
        return;
    }
    event_del(j->in_ev);
    if (j->in_eof) {
        if (j->plan.pty)
            pc_debug("job", "job %s: eof on a pty: closing our side of stdin only", j->id);
        in_end(j, "eof", " bytes of stdin were not written: they never reached the runner");
    }
}

/* The pipe broke because the job is ending (killed, or its process exited), not because it
 * closed its stdin while it goes on: the words for the channel. */
static int in_proc_ending(struct job *j)
{
    if (j->exited || j->kill_reason != JR_NONE)
        return 1;
    return j->proc.pid > 0 && pc_proc_exited(&j->proc) == 1;
}

static void in_write_cb(evutil_socket_t fd, short what, void *arg)
{
    struct job *j = arg;
    (void)what;
    while (j->in.len > 0) {
        ssize_t w = write(fd, j->in.data, j->in.len);
        if (w > 0) {
            /* uncredited bytes count as the first ones: credit is never given back early */
            size_t plain = j->in.len - j->in_credit;
            size_t c = (size_t)w > plain ? (size_t)w - plain : 0;
            j->in_credit -= c;
            j->in_written += (long long)c;
            pc_buf_consume(&j->in, (size_t)w);
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (w < 0 && errno == EINTR)
            continue;
        pc_info("job", "job %s: stdin closed by the job (%s)", j->id,
                w < 0 ? strerror(errno) : "short write");
        if (in_proc_ending(j))
            in_end(j, "ended", " bytes of stdin were not written: the job ended first");
        else
            in_end(j, "closed", " bytes of stdin were not written: the job closed its stdin");
        return;
    }
    in_sync(j, 0);
    if (j->in.len == 0)
        in_kick(j);
}

/* Set up the stdin of a new attempt (its pipe in j->in_fd). @return 0 or -1 (out of memory). */
static int in_start(struct job *j)
{
    j->in_eof = 0;
    j->in_credit = 0;
    j->in_plain_lost = 0;
    j->in_seq = j->in_seq_tx = j->in_seq_ack = 0; /* the running transition resets them */
    j->in_open = 1;
    pc_buf_reset(&j->in);
    if (j->in_fd < 0)
        return 0;
    /* credited bytes up to RN_STDIN_MAX, uncredited ones (the request's text first) apart */
    j->in.max = 2 * (size_t)RN_STDIN_MAX + j->plan.stdin_len;
    j->in_ev = event_new(j->rn->base, j->in_fd, EV_WRITE | EV_PERSIST, in_write_cb, j);
    if (j->in_ev == NULL)
        return -1;
    if (j->plan.stdin_len > 0 && pc_buf_append(&j->in, j->plan.stdin_data, j->plan.stdin_len) != 0)
        return -1;
    in_kick(j);
    return 0;
}

void job_stdin(struct job *j, const char *data, size_t len, int eof, size_t credit, int attempt,
               long long seq)
{
    const char *what = eof ? (len > 0 ? "data and eof" : "eof") : "data";
    if (credit > len)
        credit = len;
    if (attempt > 0 && attempt != j->attempt) {
        /* accepted for an earlier attempt: counted when that attempt's stdin ended */
        pc_debug("job", "job %s: stdin %s of attempt %d ignored (attempt %d runs)", j->id, what,
                 attempt, j->attempt);
        return;
    }
    if (j->phase != JP_RUN || j->in_fd < 0) {
        /* credited bytes are counted by the end of this attempt's stdin; tell the others */
        if (len > credit)
            in_tell_lost(j, len - credit,
                         j->phase != JP_RUN ? "the job is not running" : "its stdin is closed");
        else
            pc_debug("job", "job %s: stdin %s ignored: %s", j->id, what,
                     j->phase != JP_RUN ? "the job is not running" : "stdin is closed");
        return;
    }
    if (seq > 0 && attempt > 0) {
        /* numbered by the gateways: a message missing before this one was cut from the
         * control stream unread; what follows it must not reach the job */
        if (!eof && seq <= j->in_seq) {
            pc_warn("job", "job %s: stdin message %lld again (after %lld); ignored", j->id, seq,
                    j->in_seq);
            return;
        }
        if (seq > j->in_seq + (eof ? 0 : 1)) {
            pc_warn("job",
                    "job %s: stdin messages %lld..%lld were lost before they were read; "
                    "ending its stdin",
                    j->id, j->in_seq + 1, eof ? seq : seq - 1);
            if (!eof)
                j->in_seq = seq;
            in_end(j, "lost",
                   " bytes of stdin were not written: control messages for the job were lost "
                   "before the runner read them");
            return;
        }
        if (!eof)
            j->in_seq = seq;
    }
    size_t plain = j->in.len - j->in_credit;
    if (credit == 0 && plain + len > RN_STDIN_MAX) {
        in_tell_lost(j, len, "the runner's buffer for stdin without credit is full");
        return;
    }
    int rc = len > 0 ? pc_buf_append(&j->in, data, len) : 0;
    if (rc != 0) {
        /* full: only when a producer claims credit no gateway reserved, so tell it all; out of
         * memory: the credited part is counted when this attempt's stdin ends */
        pc_error("job", "job %s: stdin: %zu bytes refused (%s; %zu waiting, %zu with credit)",
                 j->id, len, pc_strerror(rc), j->in.len, j->in_credit);
        if (len > credit)
            in_tell_lost(j, len - credit,
                         rc == PC_ETOOBIG ? "the runner's stdin buffer is full" : "out of memory");
        return;
    }
    j->in_credit += credit;
    if (eof)
        j->in_eof = 1;
    in_kick(j);
}

/* ------------------------------------------------------------ kill and timers */

static void grace_cb(evutil_socket_t fd, short what, void *arg)
{
    struct job *j = arg;
    (void)fd;
    (void)what;
    if (j->phase == JP_RUN && j->proc.pid > 0) {
        pc_info("job", "job %s: still running after the grace period: SIGKILL", j->id);
        pc_proc_kill(&j->proc, SIGKILL);
    }
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    struct job *j = arg;
    (void)fd;
    (void)what;
    pc_info("job", "job %s: timeout after %ld s", j->id, j->plan.timeout_s);
    job_kill(j, SIGTERM, JR_TIMEOUT);
}

/* The process ended but something in its group still holds the pipes. */
static void linger_cb(evutil_socket_t fd, short what, void *arg)
{
    struct job *j = arg;
    (void)fd;
    (void)what;
    if (j->phase == JP_RUN && (!j->out.eof || !j->err.eof)) {
        pc_info("job", "job %s: exited, but its process group still holds its output: SIGKILL",
                j->id);
        pc_proc_kill(&j->proc, SIGKILL);
    }
}

static void restart_cb(evutil_socket_t fd, short what, void *arg)
{
    struct job *j = arg;
    (void)fd;
    (void)what;
    if (j->phase == JP_BACKOFF)
        job_start_attempt(j);
}

void job_kill(struct job *j, int sig, enum job_reason why)
{
    switch (j->phase) {
    case JP_FETCH:
        j->cancel_pending = 1;
        return;
    case JP_BACKOFF:
        /* between attempts: this attempt ends before it started */
        evtimer_del(j->restart_ev);
        j->attempt++;
        j->reason = why;
        j->code = -1;
        j->signal = 0;
        j->t_start = j->t_end = pc_now_ms();
        j->phase = JP_ENDING;
        job_try_exit(j);
        return;
    case JP_RUN:
        break;
    default:
        return; /* already ending */
    }
    if (j->proc.pid <= 0) {
        j->cancel_pending = 1;
        return;
    }
    if (j->kill_reason == JR_NONE)
        j->kill_reason = why;
    pc_debug("job", "job %s: signal %d to process group %ld", j->id, sig, (long)j->proc.pid);
    if (pc_proc_kill(&j->proc, sig) != 0)
        pc_warn("job", "job %s: kill %d: %s", j->id, sig, strerror(errno));
    if (sig != SIGKILL && !evtimer_pending(j->grace_ev, NULL)) {
        struct timeval tv = {j->rn->o.kill_grace_s, 0};
        evtimer_add(j->grace_ev, &tv);
    }
}

/* ------------------------------------------------------------ lifecycle */

static struct job *job_alloc(struct runner *rn, enum job_kind kind, const char *entry_id,
                             const char *job_id)
{
    struct job *j = calloc(1, sizeof(*j));
    if (j == NULL)
        return NULL;
    j->rn = rn;
    j->kind = kind;
    j->phase = JP_FETCH;
    j->code = -1;
    j->in_fd = -1;
    j->out.fd = j->err.fd = -1;
    j->out.eof = j->err.eof = 1;
    j->proc.pid = -1;
    j->proc.in_fd = j->proc.out_fd = j->proc.err_fd = -1;
    snprintf(j->entry_id, sizeof(j->entry_id), "%s", entry_id);
    snprintf(j->id, sizeof(j->id), "%s", job_id);
    snprintf(j->hkey, sizeof(j->hkey), "%s:job:%s", rn->o.prefix, job_id);
    pc_buf_init(&j->in, RN_STDIN_MAX);
    j->timeout_ev = evtimer_new(rn->base, timeout_cb, j);
    j->grace_ev = evtimer_new(rn->base, grace_cb, j);
    j->linger_ev = evtimer_new(rn->base, linger_cb, j);
    j->restart_ev = evtimer_new(rn->base, restart_cb, j);
    if (j->timeout_ev == NULL || j->grace_ev == NULL || j->linger_ev == NULL ||
        j->restart_ev == NULL) {
        job_free(j);
        return NULL;
    }
    /* link */
    j->next = rn->jobs_head;
    if (rn->jobs_head != NULL)
        rn->jobs_head->prev = j;
    rn->jobs_head = j;
    if (kind == JK_RUN)
        rn->held++;
    return j;
}

/* Job ids come from the queue: never trust them to be sane. */
static int job_id_valid(const char *id)
{
    size_t n = strlen(id);
    return n >= 1 && n <= RN_JOB_ID_MAX && pc_channel_valid(id, n);
}

struct job *job_new_queued(struct runner *rn, const char *entry_id, const char *job_id)
{
    struct job *j = job_alloc(rn, JK_RUN, entry_id, job_id_valid(job_id) ? job_id : "-");
    if (j == NULL) {
        pc_error("job", "out of memory taking queue entry %s", entry_id);
        return NULL;
    }
    if (!job_id_valid(job_id)) {
        pc_warn("job", "queue entry %s: invalid job id; acknowledged and ignored", entry_id);
        j->phase = JP_FINAL;
        const char *a[] = {"XACK", rn->key_jobs, RN_GROUP, j->entry_id};
        q_cmd(j, ENT_FINAL, 4, a, NULL);
        return j;
    }
    pc_debug("job", "job %s: taken (entry %s)", j->id, entry_id);
    job_fetch(j);
    return j;
}

struct job *job_new_lost(struct runner *rn, const char *entry_id, const char *job_id,
                         const char *dead_runner)
{
    struct job *j = job_alloc(rn, JK_LOST, entry_id, job_id_valid(job_id) ? job_id : "-");
    if (j == NULL)
        return NULL;
    snprintf(j->dead_runner, sizeof(j->dead_runner), "%s", dead_runner);
    if (!job_id_valid(job_id)) {
        j->phase = JP_FINAL;
        const char *a[] = {"XACK", rn->key_jobs, RN_GROUP, j->entry_id};
        q_cmd(j, ENT_FINAL, 4, a, NULL);
        return j;
    }
    job_fetch(j);
    return j;
}

static void job_attempt_cleanup(struct job *j)
{
    stream_close(&j->out);
    stream_close(&j->err);
    j->out.eof = j->err.eof = 1;
    in_close(j);
    pc_proc_close(&j->proc);
    evtimer_del(j->timeout_ev);
    evtimer_del(j->grace_ev);
    evtimer_del(j->linger_ev);
}

void job_free(struct job *j)
{
    if (j == NULL)
        return;
    struct runner *rn = j->rn;
    if (j->phase == JP_RUN && j->proc.pid > 0) {
        /* only when the runner gives up: nothing may outlive it unreported (the guard, still
         * holding the group, kills it again when the runner closes it) */
        pc_proc_kill(&j->proc, SIGKILL);
    }
    job_attempt_cleanup(j);
    if (j->q_n > 0 || j->dropped > 0)
        pc_error("job", "job %s: %zu commands for Redis not acknowledged, %ld dropped", j->id,
                 j->q_n, j->dropped);
    q_clear(j);
    if (j->timeout_ev != NULL)
        event_free(j->timeout_ev);
    if (j->grace_ev != NULL)
        event_free(j->grace_ev);
    if (j->linger_ev != NULL)
        event_free(j->linger_ev);
    if (j->restart_ev != NULL)
        event_free(j->restart_ev);
    pc_buf_free(&j->in);
    pc_job_plan_free(&j->plan);
    free(j->argv_json);
    free(j->error);
    free(j->mid);
    /* unlink */
    if (j->prev != NULL)
        j->prev->next = j->next;
    else if (rn->jobs_head == j)
        rn->jobs_head = j->next;
    if (j->next != NULL)
        j->next->prev = j->prev;
    if (j->kind == JK_RUN)
        rn->held--;
    free(j);
    rn_job_gone(rn, NULL);
}

/* ------------------------------------------------------------ fetch */

static void fetch_cb(redisAsyncContext *ac, void *r, void *priv);

static void job_fetch(struct job *j)
{
    const char *a[] = {"HGETALL", j->hkey};
    if (j->fetch_inflight)
        return;
    if (rconn_cmd(&j->rn->cmd, fetch_cb, j, 2, a, NULL) == 0)
        j->fetch_inflight = 1;
}

static void job_requeue(struct job *j)
{
    struct runner *rn = j->rn;
    pc_info("job", "job %s: stopping; handing it back to the queue", j->id);
    j->phase = JP_FINAL;
    const char *a[] = {"EVAL",  SCRIPT_REQUEUE, "2",      rn->key_jobs,
                       j->hkey, j->id,          RN_GROUP, j->entry_id};
    q_cmd(j, ENT_FINAL, 8, a, NULL);
}

static void job_ack_only(struct job *j)
{
    const char *a[] = {"XACK", j->rn->key_jobs, RN_GROUP, j->entry_id};
    j->phase = JP_FINAL;
    q_cmd(j, ENT_FINAL, 4, a, NULL);
}

static int is_ended(const char *st)
{
    return st != NULL &&
           (strcmp(st, "exited") == 0 || strcmp(st, "killed") == 0 || strcmp(st, "timeout") == 0 ||
            strcmp(st, "failed") == 0 || strcmp(st, "lost") == 0);
}

/* A NUL-terminated copy of a hash field (NULL when absent); owned by the caller. */
static char *field_dup(const redisReply *h, const char *name)
{
    const redisReply *f = rn_field(h, name);
    const char *s;
    size_t n;
    if (f == NULL || rn_reply_str(f, &s, &n) != 0)
        return NULL;
    char *d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static void job_on_hash_lost(struct job *j, const redisReply *h)
{
    char *st = field_dup(h, "status"), *runner = field_dup(h, "runner");
    char *att = field_dup(h, "attempt"), *started = field_dup(h, "started_ms");
    int mine = st != NULL && (strcmp(st, "running") == 0 || strcmp(st, "queued") == 0) &&
               (runner == NULL || runner[0] == '\0' || strcmp(runner, j->dead_runner) == 0);
    if (!mine) {
        pc_info("claim", "job %s of dead runner %s: status %s; acknowledging its entry", j->id,
                j->dead_runner, st != NULL ? st : "(no hash)");
        job_ack_only(j);
    } else {
        pc_warn("claim", "job %s: its runner %s is gone; marking it lost", j->id, j->dead_runner);
        j->attempt = att != NULL ? atoi(att) : 1;
        if (j->attempt < 1)
            j->attempt = 1;
        j->started_wall_ms = started != NULL ? atoll(started) : 0;
        j->reason = JR_LOST;
        j->code = -1;
        j->signal = 0;
        j->phase = JP_ENDING;
        job_try_exit(j);
    }
    free(st);
    free(runner);
    free(att);
    free(started);
}

static void job_on_hash(struct job *j, const redisReply *h)
{
    struct runner *rn = j->rn;
    char err[512];
    const redisReply *f;
    const char *s;
    size_t n;

    if (h->elements == 0) {
        pc_warn("job", "job %s: no hash %s; acknowledging its queue entry", j->id, j->hkey);
        job_ack_only(j);
        return;
    }
    f = rn_field(h, "channel");
    if (f == NULL || rn_reply_str(f, &s, &n) != 0 || set_channel(j, s, n) != 0) {
        pc_warn("job", "job %s: missing or invalid channel; cannot publish", j->id);
        j->have_channel = 0;
    }
    if (j->kind == JK_LOST) {
        job_on_hash_lost(j, h);
        return;
    }
    char *st = field_dup(h, "status");
    char *cancel = field_dup(h, "cancel");
    int ended = is_ended(st);
    int cancelled = (cancel != NULL && strcmp(cancel, "1") == 0) ||
                    (st != NULL && strcmp(st, "queued") != 0) || j->cancel_pending;
    free(cancel);
    if (ended) {
        pc_info("job", "job %s: already %s; acknowledging its queue entry", j->id, st);
        free(st);
        job_ack_only(j);
        return;
    }
    free(st);
    if (cancelled) {
        pc_info("job", "job %s: cancelled before it started", j->id);
        j->reason = JR_KILLED;
        j->attempt = 1;
        j->phase = JP_ENDING;
        job_try_exit(j);
        return;
    }
    if (rn->stopping) {
        job_requeue(j);
        return;
    }
    if (!j->have_channel) {
        job_fail(j, "the job hash has no valid channel");
        return;
    }
    char *spec = field_dup(h, "spec");
    if (spec == NULL) {
        job_fail(j, "the job hash has no spec");
        return;
    }
    cJSON *req = pc_job_request_parse(spec, strlen(spec), err, sizeof(err));
    free(spec);
    if (req == NULL) {
        job_fail(j, err);
        return;
    }
    struct pc_job_ctx ctx = {j->id, j->channel, rn->o.home};
    int rc = pc_job_plan_build(rn->tmpl, rn->o.allow_any, req, &ctx, &j->plan, err, sizeof(err));
    cJSON_Delete(req);
    if (rc != 0) {
        job_fail(j, err);
        return;
    }
    cJSON *arr = cJSON_CreateArray();
    for (char **a = j->plan.argv; arr != NULL && *a != NULL; a++)
        cJSON_AddItemToArray(arr, cJSON_CreateString(*a));
    j->argv_json = arr != NULL ? cJSON_PrintUnformatted(arr) : NULL;
    cJSON_Delete(arr);
    if (j->argv_json == NULL) {
        job_fail(j, "out of memory");
        return;
    }
    job_start_attempt(j);
}

static void fetch_cb(redisAsyncContext *ac, void *r, void *priv)
{
    struct job *j = priv;
    redisReply *reply = r;
    (void)ac;
    j->fetch_inflight = 0;
    if (!rconn_reply_ok(&j->rn->cmd, reply))
        return; /* fetched again when the connection is back */
    if (reply->type != REDIS_REPLY_ARRAY) {
        pc_warn("job", "job %s: HGETALL %s: %s", j->id, j->hkey,
                reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        if (reply->type == REDIS_REPLY_ERROR) {
            rconn_reset(&j->rn->cmd, NULL);
            return;
        }
        job_ack_only(j);
        return;
    }
    job_on_hash(j, reply);
}

void job_on_cmd_up(struct job *j)
{
    if (j->phase == JP_FETCH)
        job_fetch(j);
    q_pump(j);
}

/* ------------------------------------------------------------ attempts */

static void job_fail(struct job *j, const char *msg)
{
    pc_warn("job", "job %s: %s", j->id, msg);
    free(j->error);
    j->error = strdup(msg);
    q_event(j, ENT_PLAIN, "stderr", msg, strlen(msg), 0);
    if (j->attempt == 0)
        j->attempt = 1;
    j->reason = JR_FAILED;
    j->code = -1;
    j->signal = 0;
    j->phase = JP_ENDING;
    job_try_exit(j);
}

static void job_start_attempt(struct job *j)
{
    struct runner *rn = j->rn;
    char err[512], pid[24], started[24], attempt[16];
    struct pc_spawn_opts o;

    j->attempt++;
    j->exited = 0;
    j->wstatus = 0;
    j->kill_reason = JR_NONE;
    j->reason = JR_NONE;
    j->code = -1;
    j->signal = 0;
    memset(&o, 0, sizeof(o));
    o.argv = j->plan.argv;
    o.envp = j->plan.envp;
    o.cwd = j->plan.cwd;
    o.use_pty = j->plan.pty;
    o.want_stdin = 1;
    o.limits = j->plan.limits;
    o.drop_user = rn->o.drop_user;
    o.uid = rn->o.uid;
    o.gid = rn->o.gid;
    /* a runner killed with -9: its jobs are reported lost, not left running. The leader dies
     * at once; the guard kills the rest of the group */
    o.die_with_parent = 1;
    o.guard = rn->guard.fd >= 0 ? &rn->guard : NULL;
    j->t_start = pc_now_ms();
    if (pc_spawn(&o, &j->proc, err, sizeof(err)) != 0) {
        j->t_end = j->t_start;
        job_fail(j, err);
        return;
    }
    j->started_wall_ms = pc_wall_ms();
    j->phase = JP_RUN;
    pc_info("job", "job %s: started pid %ld (attempt %d): %s", j->id, (long)j->proc.pid, j->attempt,
            j->argv_json);

    /* the process is running: from here on it must end through job_check_end */
    int bad = stream_open(&j->out, j, "stdout", j->proc.out_fd) != 0;
    j->proc.out_fd = -1;
    bad |= stream_open(&j->err, j, "stderr", j->proc.err_fd) != 0;
    j->proc.err_fd = -1;
    j->in_fd = j->proc.in_fd;
    j->proc.in_fd = -1;
    bad |= in_start(j) != 0;
    if (bad) {
        pc_error("job", "job %s: out of memory setting up its pipes; killing it", j->id);
        job_kill(j, SIGKILL, JR_KILLED);
    }
    if (j->plan.timeout_s > 0) {
        struct timeval tv = {(time_t)j->plan.timeout_s, 0};
        evtimer_add(j->timeout_ev, &tv);
    }

    /* running transition, then `start` */
    snprintf(pid, sizeof(pid), "%ld", (long)j->proc.pid);
    snprintf(started, sizeof(started), "%lld", j->started_wall_ms);
    snprintf(attempt, sizeof(attempt), "%d", j->attempt);
    const char *a[] = {"EVAL",   SCRIPT_RUNNING, "1",       j->hkey, "status",     "running",
                       "runner", rn->o.id,       "pid",     pid,     "started_ms", started,
                       "argv",   j->argv_json,   "attempt", attempt, "host",       rn->o.host};
    q_cmd(j, ENT_RUNNING, (int)(sizeof(a) / sizeof(a[0])), a, NULL);

    cJSON *st = cJSON_CreateObject();
    cJSON_AddStringToObject(st, "job", j->id);
    cJSON_AddNumberToObject(st, "pid", (double)j->proc.pid);
    cJSON_AddItemToObject(st, "argv", cJSON_Parse(j->argv_json));
    cJSON_AddStringToObject(st, "runner", rn->o.id);
    cJSON_AddStringToObject(st, "host", rn->o.host);
    cJSON_AddNumberToObject(st, "attempt", j->attempt);
    q_event_json(j, ENT_PLAIN, "start", st);

    if (j->cancel_pending)
        job_kill(j, SIGTERM, JR_KILLED);
    else if (rn->stopping && rn->kill_all_sent)
        job_kill(j, SIGTERM, JR_KILLED);
}

void job_exited(struct job *j)
{
    j->exited = 1;
    j->t_end = pc_now_ms();
    evtimer_del(j->timeout_ev);
    if (!j->out.eof || !j->err.eof) {
        struct timeval tv = {j->rn->o.kill_grace_s, 0};
        evtimer_add(j->linger_ev, &tv);
    }
    job_check_end(j);
}

/*
 * The attempt is over: SIGKILL what is left of its process group, unregister
 * the group from the guard, then reap the leader. Until that reap the
 * leader's zombie keeps its pid -- the group's id -- from being reused, so
 * neither this kill nor the guard can reach an unrelated group that got the
 * same id. Leftovers are killed like systemd's KillMode=control-group does
 * when a service's main process exits: background processes that outlive the
 * job are reported nowhere, and would outlive the runner too. (Those that
 * still hold the job's output got --kill-grace seconds to finish it, see
 * linger_cb.)
 */
static void job_end_group(struct job *j)
{
    struct runner *rn = j->rn;
    pid_t pid = j->proc.pid, w;
    int st = 0;

    pc_debug("job", "job %s: SIGKILL to what is left of process group %ld", j->id, (long)pid);
    if (kill(-pid, SIGKILL) != 0 && errno != ESRCH)
        pc_warn("job", "job %s: kill process group %ld: %s", j->id, (long)pid, strerror(errno));
    /* never blocks for long: a stuck guard is killed and replaced (rn_guard_send) */
    if (rn->guard.fd >= 0 && rn_guard_send(rn, 0, pid, 100) != 0)
        pc_warn("job", "job %s: guard: unregistering process group %ld: %s", j->id, (long)pid,
                strerror(errno));
    while ((w = waitpid(pid, &st, 0)) < 0 && errno == EINTR)
        ;
    if (w != pid) {
        pc_error("job", "job %s: waitpid %ld: %s", j->id, (long)pid, strerror(errno));
        st = 0;
    }
    j->wstatus = st;
}

static void job_check_end(struct job *j)
{
    if (j->phase != JP_RUN || !j->exited || !j->out.eof || !j->err.eof)
        return;
    job_end_group(j);
    int st = j->wstatus;
    j->code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    j->signal = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    j->reason = j->kill_reason != JR_NONE ? j->kill_reason : JR_EXITED;
    pc_info("job", "job %s: %s (code %d, signal %d) after %lld ms", j->id, reason_str(j->reason),
            j->code, j->signal, j->t_end - j->t_start);
    job_attempt_cleanup(j);
    j->proc.pid = -1;
    j->phase = JP_ENDING;
    job_try_exit(j);
}

/* Publish `exit` once everything before it is acknowledged. */
static void job_try_exit(struct job *j)
{
    if (j->phase != JP_ENDING || j->q_n > 0)
        return;
    if (in_tell_flush(j))
        return; /* refused stdin bytes are told first */
    if (in_attempt_end(j))
        return; /* the end of its stdin goes first: tried again once Redis took it */
    j->phase = JP_EXITING;
    long long dur = j->t_end - j->t_start;
    if (j->reason == JR_LOST)
        dur = j->started_wall_ms > 0 ? pc_wall_ms() - j->started_wall_ms : 0;
    cJSON *ex = cJSON_CreateObject();
    cJSON_AddStringToObject(ex, "job", j->id);
    if (j->code >= 0)
        cJSON_AddNumberToObject(ex, "code", j->code);
    else
        cJSON_AddNullToObject(ex, "code");
    if (j->signal > 0)
        cJSON_AddNumberToObject(ex, "signal", j->signal);
    else
        cJSON_AddNullToObject(ex, "signal");
    cJSON_AddStringToObject(ex, "reason", reason_str(j->reason));
    cJSON_AddNumberToObject(ex, "duration_ms", (double)(dur > 0 ? dur : 0));
    cJSON_AddNumberToObject(ex, "attempt", j->attempt > 0 ? j->attempt : 1);
    if (j->reason == JR_FAILED && j->error != NULL)
        cJSON_AddStringToObject(ex, "error", j->error);
    if (j->dropped > 0)
        cJSON_AddNumberToObject(ex, "lines_dropped", (double)j->dropped);
    if (j->have_channel) {
        job_note_dropped(j, ENT_KEEP);
        q_event_json(j, ENT_EXIT, "exit", ex);
    } else {
        cJSON_Delete(ex);
        job_after_exit(j);
    }
}

static int wants_restart(const struct job *j)
{
    return j->kind == JK_RUN && j->plan.restart == PC_RESTART_ON_FAILURE &&
           j->attempt < j->plan.max_attempts && j->reason == JR_EXITED &&
           (j->code != 0 || j->signal != 0) && !j->rn->stopping && !j->cancel_pending;
}

static void job_after_exit(struct job *j)
{
    struct runner *rn = j->rn;
    char code[16] = "", sig[16] = "", ended[24], ttl[24];

    if (wants_restart(j)) {
        j->phase = JP_BACKOFF;
        pc_info("job", "job %s: restarting in %d ms (attempt %d of %d)", j->id, j->plan.backoff_ms,
                j->attempt + 1, j->plan.max_attempts);
        cJSON *rs = cJSON_CreateObject();
        cJSON_AddStringToObject(rs, "job", j->id);
        cJSON_AddNumberToObject(rs, "attempt", j->attempt + 1);
        cJSON_AddNumberToObject(rs, "backoff_ms", j->plan.backoff_ms);
        q_event_json(j, ENT_PLAIN, "restart", rs);
        struct timeval tv = ms_tv(j->plan.backoff_ms);
        evtimer_add(j->restart_ev, &tv);
        return;
    }
    j->phase = JP_FINAL;
    if (j->code >= 0)
        snprintf(code, sizeof(code), "%d", j->code);
    if (j->signal > 0)
        snprintf(sig, sizeof(sig), "%d", j->signal);
    snprintf(ended, sizeof(ended), "%lld", pc_wall_ms());
    snprintf(ttl, sizeof(ttl), "%ld", rn->o.job_ttl_s);
    const char *h[14] = {"HSET",     j->hkey, "status", status_str(j->reason),
                         "ended_ms", ended,   "code",   code,
                         "signal",   sig,     "reason", reason_str(j->reason)};
    int hn = 12;
    if (j->reason == JR_FAILED && j->error != NULL) {
        h[hn++] = "error";
        h[hn++] = j->error;
    }
    q_cmd(j, ENT_KEEP, hn, h, NULL);
    const char *e[] = {"EXPIRE", j->hkey, ttl};
    q_cmd(j, ENT_KEEP, 3, e, NULL);
    const char *a[] = {"XACK", rn->key_jobs, RN_GROUP, j->entry_id};
    q_cmd(j, ENT_FINAL, 4, a, NULL);
}

int job_is_running(const struct job *j)
{
    return j->phase == JP_RUN;
}
