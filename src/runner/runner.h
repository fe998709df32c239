/* runner.h -- pipecast-runner internals shared by its modules.
 *
 *   main.c    options -> struct rn_opts, then rn_run()
 *   runner.c  the context: event loop, signals, heartbeat, queue intake, shutdown
 *   rconn.c   one async Redis connection (hiredis + libevent) with reconnect
 *   job.c     a job: fetch, spawn, output -> ordered queue of commands, kill, stdin, end
 *   ctl.c     the control stream pc:ctl:<id> (kill, stdin, eof)
 *   claim.c   lost jobs of dead runners (XPENDING / XCLAIM), dead consumers
 *
 * Three connections: `jobs` blocks in XREADGROUP on the queue, `ctl` blocks in
 * XREAD on the control stream, `cmd` carries everything else (pipelined).
 * Everything runs on one libevent loop; no threads.
 */
#ifndef PC_RUNNER_H
#define PC_RUNNER_H

#include <stddef.h>
#include <sys/types.h>

#include <cjson/cJSON.h>
#include <event2/event.h>
#include <hiredis/async.h>

#include "pipecast/buf.h"
#include "pipecast/channel.h"
#include "pipecast/guard.h"
#include "pipecast/id.h"
#include "pipecast/redis.h"
#include "pipecast/spawn.h"
#include "pipecast/splitter.h"
#include "pipecast/template.h"
#include "pipecast/url.h"

#define RN_ID_MAX 128      /* runner id (consumer name) bytes */
#define RN_JOB_ID_MAX 64   /* job id bytes (ids are 16 hex chars; accept any channel-alphabet id) */
#define RN_GROUP "runners" /* consumer group on <prefix>:jobs */

/* Backpressure: a job's pipes are not read while its queue is above these. */
#define RN_JOB_Q_MAX 1024            /* commands queued (sent or not) per job */
#define RN_JOB_Q_BYTES (4u << 20)    /* bytes queued per job */
#define RN_TOTAL_Q_BYTES (48u << 20) /* bytes queued over all jobs */
#define RN_STDIN_MAX 1048576         /* stdin accepted, not yet written (job.c "stdin") */
#define RN_READ_CHUNK (64 * 1024)    /* one read() of a job's pipe */
#define RN_ENTRY_ATTEMPTS 5 /* an output entry Redis refuses this often is dropped (counted) */

struct runner;
struct job;

/* ------------------------------------------------------------ options */

struct rn_opts {
    const char *redis_url;
    struct pc_redis_url url;
    char where[300]; /* the Redis location for messages, no password */
    char prefix[PC_PREFIX_MAX + 1];
    char id[RN_ID_MAX + 1];
    char host[256];
    int slots;
    const char *config;
    int allow_any;
    int kill_grace_s;
    int shutdown_grace_s;
    long job_ttl_s;
    size_t max_line;
    int flush_ms;
    long long maxlen; /* MAXLEN ~ of job channels, 0 = no trimming */
    int drop_user;    /* --user */
    uid_t uid;
    gid_t gid;
    char home[512]; /* HOME of jobs */
};

/* ------------------------------------------------------------ rconn.c */

enum rconn_state { RC_DOWN, RC_CONNECTING, RC_HANDSHAKE, RC_UP };

struct rconn {
    struct runner *rn;
    const char *name;
    redisAsyncContext *ac;
    enum rconn_state state;
    int resetting;      /* an error asked for a fresh connection: replies are not trusted */
    int closing;        /* shutting down: no reconnect */
    int handshake_left; /* AUTH / SELECT replies still expected */
    struct pc_backoff bo;
    struct event *retry_ev;
    struct event *drop_ev;
    long long state_ms; /* when the state last changed (monotonic) */
    long long wait_ms;  /* a watched command is waiting for its reply since (0: none) */
    int wait_limit_ms;  /* ... and may wait this long before the connection is dropped */
    int down_logged;
    unsigned ups; /* connections made so far */
    void (*on_up)(struct rconn *rc);
    void (*on_down)(struct rconn *rc);
};

int rconn_init(struct rconn *rc, struct runner *rn, const char *name, int wait_limit_ms,
               void (*on_up)(struct rconn *), void (*on_down)(struct rconn *));
void rconn_start(struct rconn *rc);
/* Ready for commands: connected, handshake done, not being reset. */
int rconn_ready(const struct rconn *rc);
/* 1 when @p reply is a real answer on a healthy connection (not NULL, not after an error). */
int rconn_reply_ok(const struct rconn *rc, const void *reply);
/* @return 0, or -1 when the command could not be queued (not ready). */
int rconn_cmd(struct rconn *rc, redisCallbackFn *cb, void *priv, int argc, const char **argv,
              const size_t *lens);
int rconn_raw(struct rconn *rc, redisCallbackFn *cb, void *priv, const char *cmd, size_t len);
/* Drop the connection soon (outside any hiredis callback) and reconnect. */
void rconn_reset(struct rconn *rc, const char *why);
/* Free the connection now, no reconnect. Not from inside one of its callbacks. */
void rconn_close(struct rconn *rc);
void rconn_free(struct rconn *rc);
/* Once a second: connect timeouts, unanswered watched commands, backoff reset. */
void rconn_watchdog(struct rconn *rc, long long now);

/* ------------------------------------------------------------ job.c */

enum job_kind {
    JK_RUN,  /* taken from the queue: runs (holds a slot) */
    JK_LOST, /* claimed from a dead runner: only reported */
};

enum ent_kind {
    ENT_PLAIN,   /* output, start, restart: just needs to be acknowledged */
    ENT_RUNNING, /* the "running" transition (a script: 0 = the job was cancelled meanwhile) */
    ENT_EXIT,    /* the exit event */
    ENT_FINAL,   /* the last command of a job (XACK) */
    ENT_KEEP,    /* like ENT_PLAIN, but never dropped (the final HSET, EXPIRE, notices) */
    ENT_INSYNC,  /* like ENT_PLAIN; stdin_written v1, stdin_seq_read v2: acknowledged when taken */
};

/* One command for Redis, RESP-encoded, kept until Redis acknowledged it. */
struct ent {
    struct ent *next;
    struct job *job;
    int kind;
    int attempts;
    long long v1, v2; /* ENT_INSYNC: the values it sets */
    size_t len;
    char cmd[];
};

struct job_stream {
    struct job *job;
    const char *event; /* "stdout" / "stderr" */
    int fd;
    int eof;
    struct event *ev;
    struct event *flush_ev;
    struct pc_splitter *sp;
};

enum job_phase {
    JP_FETCH,   /* HGETALL of the job hash */
    JP_RUN,     /* process running and/or pipes open */
    JP_ENDING,  /* attempt over: waiting for the queue to drain before `exit` */
    JP_EXITING, /* `exit` queued */
    JP_BACKOFF, /* between attempts */
    JP_FINAL,   /* final HSET + XACK queued */
};

enum job_reason { JR_NONE, JR_EXITED, JR_KILLED, JR_TIMEOUT, JR_LOST, JR_FAILED };

struct job {
    struct job *prev, *next;
    struct runner *rn;
    enum job_kind kind;
    enum job_phase phase;
    char id[RN_JOB_ID_MAX + 1];
    char entry_id[PC_ID_STRLEN];
    char dead_runner[RN_ID_MAX + 1]; /* JK_LOST: the consumer that died */
    char channel[PC_CHANNEL_MAX + 1];
    char key[PC_KEY_MAX];  /* the channel's stream */
    char hkey[PC_KEY_MAX]; /* <prefix>:job:<id> */
    int have_channel;
    char *mid; /* RESP of the key and MAXLEN part of every XADD */
    size_t mid_len;
    int fetch_inflight;

    /* what to run */
    struct pc_job_plan plan;
    char *argv_json;
    int attempt;
    long long started_wall_ms; /* of the hash (JK_LOST: from the hash) */

    /* the current attempt */
    struct pc_proc proc;
    int exited;  /* the leader has exited; its zombie is reaped only at the attempt's end (it
                    keeps the process-group id from being reused until then, see job_end_group) */
    int wstatus; /* of the leader, once reaped */
    long long t_start, t_end; /* monotonic ms */
    struct job_stream out, err;
    struct event *timeout_ev, *grace_ev, *linger_ev, *restart_ev;
    enum job_reason kill_reason;
    int paused;

    /* stdin (job.c "stdin": flow control with the gateways) */
    struct pc_buf in; /* waiting for the pipe; the uncredited bytes count as the first ones */
    int in_fd;
    int in_eof;
    struct event *in_ev;
    int in_open;              /* this attempt's stdin end is not yet sent to Redis */
    int in_lost_told;         /* JK_LOST: the stdin end was sent */
    size_t in_credit;         /* credited bytes in `in` */
    long long in_written;     /* credited bytes written to the job, all attempts (stdin_written) */
    long long in_written_tx;  /* ... the last total queued for Redis */
    long long in_written_ack; /* ... the last total Redis took */
    long long in_seq;         /* the last `seq` of this attempt's data read from the stream */
    long long in_seq_tx;      /* ... the last one queued for Redis (stdin_seq_read) */
    long long in_seq_ack;     /* ... the last one Redis took */
    int in_sync_inflight;     /* ENT_INSYNC entries queued, not answered */
    long long in_plain_lost;  /* uncredited bytes not written, not told yet (at stdin's end) */
    long long in_tell_n;      /* uncredited bytes refused, not told yet (once a second) */
    const char *in_tell_why;  /* ... why (a literal) */

    /* outcome */
    enum job_reason reason;
    int code;   /* -1: none */
    int signal; /* 0: none */
    char *error;
    int cancel_pending; /* a kill arrived before the process existed */

    /* commands for Redis, in order: acknowledged ones leave from the head */
    struct ent *q_head, *q_tail, *q_unsent;
    size_t q_n, q_bytes;
    long dropped;       /* entries Redis kept refusing (output lines: never `exit` or final HSET) */
    long dropped_noted; /* ... of which a `stderr` notice already told */
};

struct job *job_new_queued(struct runner *rn, const char *entry_id, const char *job_id);
struct job *job_new_lost(struct runner *rn, const char *entry_id, const char *job_id,
                         const char *dead_runner);
void job_free(struct job *j);
/* The cmd connection is (again) up: resend what is unacknowledged, redo fetches. */
void job_on_cmd_up(struct job *j);
/* The leader of the job's process group has exited (it is a zombie, not reaped yet). */
void job_exited(struct job *j);
void job_kill(struct job *j, int sig, enum job_reason why);
/* A control message: @p data to the job's stdin (@p credit of its bytes reserved by a gateway),
 * then eof if @p eof; @p attempt 0 for an untagged message; @p seq: the message's number among
 * the attempt's data messages (an eof: of the last one before it), 0 when untagged. */
void job_stdin(struct job *j, const char *data, size_t len, int eof, size_t credit, int attempt,
               long long seq);
/* Once a second: give written stdin credit back again if it was not taken, tell refused bytes. */
void job_tick(struct job *j);
/* Resume reading if the queue went below the marks. */
void job_maybe_resume(struct job *j);
/* The runner is stopping and this job was not started yet: give it back to the queue. */
int job_is_running(const struct job *j);

/* ------------------------------------------------------------ ctl.c */

void ctl_on_up(struct rconn *rc);
void ctl_on_down(struct rconn *rc);
void ctl_next(struct runner *rn);

/* ------------------------------------------------------------ claim.c */

void claim_scan(struct runner *rn);

/* ------------------------------------------------------------ runner.c */

struct runner {
    struct rn_opts o;
    struct event_base *base;
    struct pc_tmpl_set *tmpl;
    cJSON *tmpl_desc;

    struct rconn cmd, jobs, ctl;
    char key_jobs[PC_KEY_MAX];
    char key_ctl[PC_KEY_MAX + RN_ID_MAX];
    char key_hb[PC_KEY_MAX + RN_ID_MAX];

    struct job *jobs_head; /* every job, JK_RUN and JK_LOST */
    int held;              /* JK_RUN jobs (slots in use) */
    int intake_inflight;
    long long intake_sent_ms;
    long long jobs_client_id; /* CLIENT ID of the queue connection, 0: unknown */
    int group_ok;

    char ctl_last[PC_ID_STRLEN]; /* "" until known */
    int ctl_inflight;
    long long ctl_sent_ms;

    int claim_busy;                    /* claim commands waiting for replies */
    long long claim_last;              /* last consumer cleanup (monotonic ms) */
    char claim_from[PC_ID_STRLEN + 1]; /* XPENDING start of the next page ("" = "-") */
    int claim_pages;                   /* pages read in this scan period */

    size_t q_bytes; /* queued over all jobs */
    int total_paused;

    long long started_ms; /* wall */
    long long hb_sent_ms; /* 0: no heartbeat waiting for its reply */

    int stopping;
    int kill_all_sent;
    int final_sent;
    int exit_code;
    long long stop_ms;

    char *rbuf; /* RN_READ_CHUNK bytes for pipe reads */

    /* kills the process groups of running jobs if the runner dies (guard.h); at most `slots`
     * groups at once: a job holds a slot and has one group at a time, unregistered at the end
     * of each attempt */
    struct pc_guard guard;
    int guard_full_ticks; /* consecutive 1 s ticks that found the guard's socket full */

    struct event *sig_term, *sig_int, *sig_chld;
    struct event *tick_ev;      /* 1 s: watchdogs */
    struct event *hb_ev;        /* heartbeat */
    struct event *claim_ev;     /* lost-job scan */
    struct event *grace_ev;     /* shutdown grace */
    struct event *intake_retry; /* after a queue error */
};

int rn_run(struct rn_opts *o);
/* Take jobs if there are free slots and nothing is waiting on the queue. */
void rn_intake(struct runner *rn);
/* A job object ended (called by job_free). */
void rn_job_gone(struct runner *rn, struct job *j);
/* Shutdown: stop when nothing is left. */
void rn_check_done(struct runner *rn);

/* Register (@p add) or unregister process group @p pgid with the guard, never blocking longer
 * than @p wait_ms: a guard that reads no more records is SIGKILLed (logged), and a new one then
 * takes the running jobs' groups (runner.c). @return 0 or a PC_E* code. */
int rn_guard_send(struct runner *rn, int add, pid_t pgid, int wait_ms);
/* Look a job up by id (NULL when this runner does not run it). */
struct job *rn_find_job(struct runner *rn, const char *id);
/* The queue total crossed its low mark: resume paused jobs. */
void rn_resume_all(struct runner *rn);

/* Small reply helpers (runner.c). */
const redisReply *rn_field(const redisReply *pairs, const char *name);
int rn_reply_str(const redisReply *r, const char **s, size_t *len);

#endif
