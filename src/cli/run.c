/* run.c -- `pipecast run`: run a command, publish its output and its exit status,
 * and exit with its exit code.
 *
 * One ppoll() loop over the command's stdout and stderr (or its pty), our
 * stdin (passed through to the command), and the Redis socket of the
 * publishing engine (publish.c). The entries of the channel are
 *
 *   start (JSON) | stdout / stderr lines, in the order they were read | exit (JSON)
 *
 * `exit` is queued only when both pipes have reached EOF and the command has
 * been reaped, so that every line it printed is in Redis before it; then we
 * wait for every entry to be acknowledged. While the engine's queue is full
 * the pipes are not read: the command blocks on its writes. If Redis stays
 * away longer than --retry-timeout, the command is killed and we exit 1 with
 * the number of entries not published.
 *
 * The command's process group is registered with a guard process (guard.h)
 * while the command runs: if we are killed with SIGKILL, the guard kills the
 * whole group. Once the command has exited, the group is unregistered (before
 * the reap: its zombie keeps the id from being reused): what it left running in
 * the background stays, as it would after a shell.
 *
 * Signals: SIGINT, SIGTERM, SIGHUP and SIGQUIT are forwarded to the command's
 * process group (it has its own, so a Ctrl-C reaches it only through us);
 * with --pty, SIGWINCH copies our terminal's size to the pty. They are
 * blocked outside ppoll(), like SIGCHLD, so no wake-up is missed.
 */
#define _GNU_SOURCE /* ppoll */

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pipecast/buf.h"
#include "pipecast/channel.h"
#include "pipecast/error.h"
#include "pipecast/guard.h"
#include "pipecast/log.h"
#include "pipecast/redis.h"
#include "pipecast/spawn.h"
#include "pipecast/splitter.h"
#include "pipecast/utf8.h"

#include "cli.h"
#include "publish.h"

#define RUN_STDIN_BUF (64 * 1024)
#define RUN_STDIN_RETRY_MS 500 /* a background job's terminal read fails: try again later */
#define RUN_KILL_GRACE_MS 1000 /* SIGTERM, then SIGKILL, when we give up */
#define RUN_JSON_MAX ((size_t)16 << 20)
#define RUN_EXIT_FAILED_START 127

struct run_opts {
    const char *channel;
    int pty;
    int quiet;
    struct pc_cli_pubopts pub;
};

struct run_ctx {
    struct pc_cli_common *com;
    struct run_opts o;
    char **cmd; /* NULL-terminated argv of the command */
    char host[256];
    char defch[PC_CHANNEL_MAX + 1]; /* the default channel name */
    const char *channel;            /* --channel, or defch */

    struct pc_pub *pub;
    int ev_start, ev_out, ev_err, ev_exit;
    struct pc_pub_src *src_out; /* stdout, or the pty (stdout + stderr) */
    struct pc_pub_src *src_err; /* NULL with a pty */

    struct pc_proc proc;
    int started; /* pc_spawn succeeded */
    int reaped;  /* waited for (or never started) */
    int status;  /* waitpid status */
    char spawn_err[512];
    long long t0_ms; /* just before the spawn */
    long long t1_ms; /* reaped */
    int exit_queued;

    /* our stdin -> the command's stdin */
    char *ib;
    size_t ib_off;
    size_t ib_len;
    int stdin_done;
    long long stdin_retry_ms; /* 0, or when to poll a terminal again after EIO */

    int pass_out; /* still copying the command's output to our stdout / stderr */
    int pass_err;

    /* kills the command's process group if we die while it runs */
    struct pc_guard guard;
};

/* Signals seen by the handler; the loop acts on them (see run_signals). */
#define RUN_NFWD 4
static const int run_fwd_sigs[RUN_NFWD] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
static volatile sig_atomic_t run_sig_count[RUN_NFWD];
static volatile sig_atomic_t run_sigchld;
static volatile sig_atomic_t run_sigwinch;

static void run_on_signal(int sig)
{
    int i;

    if (sig == SIGCHLD) {
        run_sigchld = 1;
        return;
    }
    if (sig == SIGWINCH) {
        run_sigwinch = 1;
        return;
    }
    for (i = 0; i < RUN_NFWD; i++)
        if (run_fwd_sigs[i] == sig && run_sig_count[i] < 1000)
            run_sig_count[i]++;
}

/* ------------------------------------------------------------------------ */
/* JSON of the start and exit events                                        */
/* ------------------------------------------------------------------------ */

/* A JSON string of arbitrary bytes: invalid UTF-8 becomes U+FFFD, never dropped. */
static int run_json_str(struct pc_buf *b, const char *s)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t len = s ? strlen(s) : 0, i = 0;
    int rc = 0;

    if (!s)
        return pc_buf_append_str(b, "null");
    rc |= pc_buf_append(b, "\"", 1);
    while (i < len && rc == 0) {
        unsigned char c = u[i];
        size_t n;

        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            rc |= pc_buf_append(b, esc, 2);
            i++;
        } else if (c < 0x20) {
            switch (c) {
            case '\n':
                rc |= pc_buf_append_str(b, "\\n");
                break;
            case '\r':
                rc |= pc_buf_append_str(b, "\\r");
                break;
            case '\t':
                rc |= pc_buf_append_str(b, "\\t");
                break;
            default:
                rc |= pc_buf_printf(b, "\\u%04x", c);
            }
            i++;
        } else if (c < 0x80) {
            rc |= pc_buf_append(b, &u[i], 1);
            i++;
        } else if ((n = pc_utf8_seq_len(&u[i], len - i)) > 0) {
            rc |= pc_buf_append(b, &u[i], n);
            i += n;
        } else {
            rc |= pc_buf_append_str(b, "\\ufffd");
            i++;
        }
    }
    rc |= pc_buf_append(b, "\"", 1);
    return rc ? PC_ENOMEM : 0;
}

static int run_start_json(const struct run_ctx *r, struct pc_buf *b)
{
    int rc = 0;
    size_t i;

    rc |= pc_buf_printf(b, "{\"job\":null,\"pid\":%ld,\"argv\":[", (long)r->proc.pid);
    for (i = 0; r->cmd[i] && rc == 0; i++) {
        if (i)
            rc |= pc_buf_append(b, ",", 1);
        rc |= run_json_str(b, r->cmd[i]);
    }
    rc |= pc_buf_append_str(b, "],\"runner\":null,\"host\":");
    rc |= run_json_str(b, r->host);
    rc |= pc_buf_append_str(b, ",\"attempt\":1}");
    return rc ? PC_ENOMEM : 0;
}

static int run_exit_json(const struct run_ctx *r, struct pc_buf *b)
{
    long long dur = r->t1_ms - r->t0_ms;
    int rc = 0;

    if (dur < 0)
        dur = 0;
    rc |= pc_buf_append_str(b, "{\"job\":null,");
    if (!r->started)
        rc |= pc_buf_append_str(b, "\"code\":null,\"signal\":null,\"reason\":\"failed to start\"");
    else if (WIFSIGNALED(r->status))
        rc |= pc_buf_printf(b, "\"code\":null,\"signal\":%d,\"reason\":\"killed\"",
                            WTERMSIG(r->status));
    else
        rc |= pc_buf_printf(b, "\"code\":%d,\"signal\":null,\"reason\":\"exited\"",
                            WEXITSTATUS(r->status));
    rc |= pc_buf_printf(b, ",\"duration_ms\":%lld,\"attempt\":1", dur);
    if (!r->started) {
        rc |= pc_buf_append_str(b, ",\"error\":");
        rc |= run_json_str(b, r->spawn_err);
    }
    rc |= pc_buf_append_str(b, "}");
    return rc ? PC_ENOMEM : 0;
}

/* Queue a JSON event; @return 0 or PC_ENOMEM (pc_pub_step then reports it). */
static int run_queue_json(struct run_ctx *r, int ev,
                          int (*build)(const struct run_ctx *, struct pc_buf *))
{
    struct pc_buf b;
    int rc;

    pc_buf_init(&b, RUN_JSON_MAX);
    rc = build(r, &b);
    if (rc == 0)
        rc = pc_pub_add(r->pub, ev, b.data, b.len, 0);
    else
        pc_cli_err("event JSON: %s", pc_strerror(rc));
    pc_buf_free(&b);
    return rc;
}

/* The command's exit code as ours: 128+N for signal N, 127 when it could not start. */
static int run_exit_code(const struct run_ctx *r)
{
    if (!r->started)
        return RUN_EXIT_FAILED_START;
    if (WIFSIGNALED(r->status))
        return 128 + WTERMSIG(r->status);
    return WEXITSTATUS(r->status);
}

/* ------------------------------------------------------------------------ */
/* The command                                                              */
/* ------------------------------------------------------------------------ */

static void run_reap(struct run_ctx *r)
{
    int st;
    pid_t w;

    if (r->reaped)
        return;
    if (pc_proc_exited(&r->proc) == 0)
        return; /* still running */
    pc_guard_del(&r->guard, r->proc.pid);
    w = waitpid(r->proc.pid, &st, WNOHANG);
    if (w == 0 || (w < 0 && errno == EINTR))
        return;
    r->reaped = 1;
    r->t1_ms = pc_now_ms();
    if (w < 0) {
        pc_warn("run", "waitpid %ld: %s", (long)r->proc.pid, strerror(errno));
        st = 0;
    }
    r->status = st;
    pc_debug("run", "pid %ld ended: status 0x%x", (long)r->proc.pid, (unsigned)st);
}

/* Giving up: SIGTERM to the group, SIGKILL after a grace period, and reap. */
static void run_kill(struct run_ctx *r)
{
    long long until = pc_now_ms() + RUN_KILL_GRACE_MS;

    if (!r->started || r->reaped)
        return;
    pc_proc_kill(&r->proc, SIGTERM);
    pc_proc_kill(&r->proc, SIGCONT);
    /* Our ends of its pipes are closed so that a child blocked on a write sees EPIPE. */
    pc_proc_close(&r->proc);
    while (!r->reaped && pc_now_ms() < until) {
        struct timespec ts = {0, 10 * 1000000L};
        run_reap(r);
        if (!r->reaped)
            nanosleep(&ts, NULL);
    }
    if (!r->reaped) {
        int st;
        pc_proc_kill(&r->proc, SIGKILL);
        pc_guard_del(&r->guard, r->proc.pid);
        while (waitpid(r->proc.pid, &st, 0) < 0 && errno == EINTR)
            ;
        r->reaped = 1;
    }
}

/* With --pty: give the pty our terminal's size (the kernel then sends the command SIGWINCH). */
static void run_winsize(const struct run_ctx *r)
{
    struct winsize ws;

    if (!r->o.pty || r->proc.out_fd < 0)
        return;
    if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) != 0 && ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) != 0 &&
        ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) != 0)
        return; /* not on a terminal: the pty keeps its default size */
    if (ws.ws_row > 0 && ws.ws_col > 0)
        (void)ioctl(r->proc.out_fd, TIOCSWINSZ, &ws);
}

/* Copy output to our stdout/stderr; stop copying (and keep publishing) when it is gone. */
static void run_pass(int fd, int *on, const char *b, size_t n)
{
    while (n > 0 && *on) {
        ssize_t w = write(fd, b, n);
        if (w > 0) {
            b += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* someone made our output non-blocking: wait for it */
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            (void)poll(&pf, 1, 1000);
            continue;
        }
        pc_debug("run", "%s: %s; no longer passing output through",
                 fd == STDOUT_FILENO ? "stdout" : "stderr", w < 0 ? strerror(errno) : "closed");
        *on = 0;
    }
}

static void run_stdin_close(struct run_ctx *r)
{
    r->stdin_done = 1;
    r->ib_off = r->ib_len = 0;
    if (r->proc.in_fd >= 0) {
        close(r->proc.in_fd);
        r->proc.in_fd = -1;
    }
}

/* Write buffered stdin bytes to the command (non-blocking). */
static void run_stdin_write(struct run_ctx *r)
{
    while (r->ib_off < r->ib_len && r->proc.in_fd >= 0) {
        ssize_t w = write(r->proc.in_fd, r->ib + r->ib_off, r->ib_len - r->ib_off);
        if (w > 0) {
            r->ib_off += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        /* EPIPE: the command closed its stdin; it wants no more */
        pc_debug("run", "stdin of the command: %s", w < 0 ? strerror(errno) : "closed");
        run_stdin_close(r);
        return;
    }
    if (r->ib_off == r->ib_len) {
        r->ib_off = r->ib_len = 0;
        if (r->stdin_done)
            run_stdin_close(r);
    }
}

static void run_stdin_read(struct run_ctx *r, long long now)
{
    ssize_t n = read(STDIN_FILENO, r->ib, RUN_STDIN_BUF);

    if (n < 0) {
        if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        if (errno == EIO && isatty(STDIN_FILENO)) {
            /* a background job reading its terminal (SIGTTIN is ignored): not now */
            r->stdin_retry_ms = now + RUN_STDIN_RETRY_MS;
            return;
        }
        pc_warn("stdin", "read: %s; closing the command's stdin", strerror(errno));
        run_stdin_close(r);
        return;
    }
    if (n == 0) {
        run_stdin_close(r);
        return;
    }
    r->ib_off = 0;
    r->ib_len = (size_t)n;
    run_stdin_write(r);
}

/* ------------------------------------------------------------------------ */
/* The loop                                                                 */
/* ------------------------------------------------------------------------ */

static int run_sources_done(const struct run_ctx *r)
{
    return pc_pub_src_done(r->src_out) && (!r->src_err || pc_pub_src_done(r->src_err));
}

static int run_fail_publish(struct run_ctx *r, const char *what)
{
    run_kill(r);
    pc_cli_err("%s: %lld entries not published to %s", what, pc_pub_unpublished(r->pub),
               r->channel);
    return PC_EXIT_FAIL;
}

/*
 * Act on forwarded signals. While the command runs: pass them on. After it has
 * ended but something (a grandchild) still holds its output open: pass them on
 * and stop waiting for that output. While only waiting for Redis: give up.
 * @return 1 when interrupted.
 */
static int run_signals(struct run_ctx *r, int *seen)
{
    int i, got = 0;

    for (i = 0; i < RUN_NFWD; i++) {
        int c = run_sig_count[i];
        if (c == seen[i])
            continue;
        seen[i] = c;
        got = 1;
        if (!r->started)
            continue;
        if (!r->reaped || !run_sources_done(r)) {
            pc_debug("run", "forwarding signal %d to process group %ld", run_fwd_sigs[i],
                     (long)r->proc.pid);
            pc_proc_kill(&r->proc, run_fwd_sigs[i]);
        }
    }
    if (!got || !r->reaped)
        return 0;
    if (!run_sources_done(r)) {
        pc_pub_src_eof(r->src_out);
        if (r->src_err)
            pc_pub_src_eof(r->src_err);
        return 0;
    }
    return !pc_pub_idle(r->pub);
}

static void run_close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

static int run_loop(struct run_ctx *r, const sigset_t *waitmask)
{
    int seen[RUN_NFWD] = {0};

    for (;;) {
        long long now = pc_now_ms(), deadline;
        struct pollfd fds[5];
        int nfds = 0, out_idx = -1, err_idx = -1, in_idx = -1, cin_idx = -1, rc_idx = -1, n, fd;
        short ev;

        if (run_signals(r, seen))
            return run_fail_publish(r, "interrupted");
        if (run_sigchld) {
            run_sigchld = 0;
            run_reap(r);
        }
        if (run_sigwinch) {
            run_sigwinch = 0;
            run_winsize(r);
        }
        /* EOF on a pipe: close our end now (with a pty, only once the master is done) */
        if (pc_pub_src_eof_seen(r->src_out))
            run_close_fd(&r->proc.out_fd);
        if (r->src_err && pc_pub_src_eof_seen(r->src_err))
            run_close_fd(&r->proc.err_fd);
        if (r->reaped && !r->stdin_done)
            run_stdin_close(r);

        n = pc_pub_step(r->pub, now);
        if (n < 0)
            return run_fail_publish(r, pc_pub_errstr(r->pub));
        if (!r->exit_queued && r->reaped && run_sources_done(r)) {
            r->exit_queued = 1;
            run_queue_json(r, r->ev_exit, run_exit_json);
            continue; /* let the step write it */
        }
        if (r->exit_queued && pc_pub_idle(r->pub)) {
            if (pc_pub_failed(r->pub) > 0) {
                pc_cli_err("redis %s: %lld entries not published to %s (%s)", r->com->where,
                           pc_pub_failed(r->pub), r->channel, pc_pub_first_error(r->pub));
                return PC_EXIT_FAIL;
            }
            return run_exit_code(r);
        }

        if (r->proc.out_fd >= 0 && pc_pub_src_readable(r->src_out)) {
            fds[nfds].fd = r->proc.out_fd;
            fds[nfds].events = POLLIN;
            out_idx = nfds++;
        }
        if (r->src_err && r->proc.err_fd >= 0 && pc_pub_src_readable(r->src_err)) {
            fds[nfds].fd = r->proc.err_fd;
            fds[nfds].events = POLLIN;
            err_idx = nfds++;
        }
        if (!r->stdin_done && r->ib_off == r->ib_len && now >= r->stdin_retry_ms) {
            fds[nfds].fd = STDIN_FILENO;
            fds[nfds].events = POLLIN;
            in_idx = nfds++;
        }
        if (r->ib_off < r->ib_len && r->proc.in_fd >= 0) {
            fds[nfds].fd = r->proc.in_fd;
            fds[nfds].events = POLLOUT;
            cin_idx = nfds++;
        }
        fd = pc_pub_pollfd(r->pub, &ev);
        if (fd >= 0) {
            fds[nfds].fd = fd;
            fds[nfds].events = ev;
            rc_idx = nfds++;
        }

        deadline = pc_pub_deadline(r->pub);
        if (!r->stdin_done && r->stdin_retry_ms > now && r->stdin_retry_ms < deadline)
            deadline = r->stdin_retry_ms;
        {
            struct timespec ts, *tsp = NULL;
            if (deadline != LLONG_MAX) {
                long long wait = deadline - now;
                if (wait < 0)
                    wait = 0;
                ts.tv_sec = (time_t)(wait / 1000);
                ts.tv_nsec = (long)(wait % 1000) * 1000000L;
                tsp = &ts;
            }
            n = ppoll(fds, (nfds_t)nfds, tsp, waitmask);
        }
        if (n < 0) {
            char why[128];
            if (errno == EINTR)
                continue;
            snprintf(why, sizeof(why), "poll: %s", strerror(errno));
            return run_fail_publish(r, why);
        }
        now = pc_now_ms();
        if (out_idx >= 0 && fds[out_idx].revents) {
            const char *data;
            ssize_t got = pc_pub_src_read(r->src_out, r->proc.out_fd, now, &data);
            if (got > 0 && !r->o.quiet)
                run_pass(STDOUT_FILENO, &r->pass_out, data, (size_t)got);
        }
        if (err_idx >= 0 && fds[err_idx].revents) {
            const char *data;
            ssize_t got = pc_pub_src_read(r->src_err, r->proc.err_fd, now, &data);
            if (got > 0 && !r->o.quiet)
                run_pass(STDERR_FILENO, &r->pass_err, data, (size_t)got);
        }
        if (in_idx >= 0 && fds[in_idx].revents) {
            if (fds[in_idx].revents & POLLNVAL)
                run_stdin_close(r);
            else
                run_stdin_read(r, now);
        }
        if (cin_idx >= 0 && fds[cin_idx].revents)
            run_stdin_write(r);
        pc_pub_io(r->pub, rc_idx >= 0 ? fds[rc_idx].revents : 0, now);
    }
}

/* ------------------------------------------------------------------------ */
/* Options and setup                                                        */
/* ------------------------------------------------------------------------ */

enum {
    OPT_CHANNEL = PC_OPT_LOCAL,
    OPT_PTY,
};

static void run_usage(FILE *f)
{
    fputs("usage: pipecast run [options] [--] COMMAND [ARGS...]\n"
          "\n"
          "Runs COMMAND (no shell), publishes its output and its lifecycle to a channel, and\n"
          "exits with its exit code (128+N when killed by signal N, 127 when it cannot be\n"
          "started, 1 when its output could not be published). Entries: `start` (JSON),\n"
          "`stdout` / `stderr` (one per line), `exit` (JSON: code, signal, reason,\n"
          "duration_ms) after all of the output. The channel name is printed on stderr.\n"
          "Ctrl-C (SIGINT), SIGTERM, SIGHUP and SIGQUIT are passed to the command.\n"
          "\n"
          "options:\n"
          "  --channel C          the channel (default run:<host>:<pid>)\n"
          "  --pty                run COMMAND on a pseudo-terminal (raw mode; stdout and\n"
          "                       stderr merged into `stdout`), so that it line-buffers\n"
          "  -q, --quiet          do not copy the command's output to our stdout/stderr\n"
          "  --maxlen N           approximate trimming, MAXLEN ~ N (default 100000; 0: none)\n"
          "  --ttl SECONDS        EXPIRE the stream key after writes\n"
          "  --max-line BYTES     longer lines are split into partial entries (default 65536,\n"
          "                       16-16777216)\n"
          "  --flush-ms MS        publish output without newline as partial after this idle\n"
          "                       time (default 50)\n"
          "  --buffer-lines N     at most N lines held unconfirmed; then the command's output\n"
          "                       is not read until Redis catches up (default 100000)\n"
          "  --retry-timeout S    keep retrying a lost Redis this long, then kill the command\n"
          "                       and exit 1 (default 30)\n" PC_CLI_COMMON_HELP,
          f);
}

static int run_parse(struct pc_cli_common *com, struct run_opts *o, int argc, char **argv,
                     int *first)
{
    static const struct option longopts[] = {
        PC_CLI_COMMON_LONGOPTS,
        {"channel", required_argument, NULL, OPT_CHANNEL},
        {"pty", no_argument, NULL, OPT_PTY},
        PC_CLI_PUB_LONGOPTS,
        {"quiet", no_argument, NULL, 'q'},
        {NULL, 0, NULL, 0},
    };
    int opt, rc;

    pc_cli_pubopts_init(&o->pub);
    opterr = 0;
    optind = 1;
    /* "+": the first non-option starts the command, whose own options are not ours */
    while ((opt = getopt_long(argc, argv, "+:q", longopts, NULL)) != -1) {
        rc = pc_cli_common_option(com, opt, optarg);
        if (rc == 0)
            rc = pc_cli_pubopts_option(&o->pub, opt, optarg);
        if (rc == 1)
            continue;
        if (rc != 0)
            return rc;
        switch (opt) {
        case OPT_CHANNEL:
            o->channel = optarg;
            break;
        case OPT_PTY:
            o->pty = 1;
            break;
        case 'q':
            o->quiet = 1;
            break;
        default:
            return pc_cli_getopt_error(com, opt, argc, argv);
        }
        if (rc != 0)
            return rc;
    }
    if (com->help) {
        run_usage(stdout);
        return -1;
    }
    if (com->version) {
        pc_cli_print_version();
        return -1;
    }
    if (optind >= argc)
        return pc_cli_usage_error(com, "run: missing command");
    *first = optind;
    return 0;
}

/* The default channel: run:<host>:<pid>, the host name cut to the channel alphabet. */
static void run_default_channel(struct run_ctx *r)
{
    char h[PC_CHANNEL_MAX - 24]; /* room for "run:" ":" <pid> */
    size_t i;

    snprintf(h, sizeof(h), "%.*s", (int)sizeof(h) - 1, r->host[0] ? r->host : "localhost");
    for (i = 0; h[i]; i++)
        if (!pc_channel_valid(&h[i], 1))
            h[i] = '-';
    snprintf(r->defch, sizeof(r->defch), "run:%s:%ld", h, (long)getpid());
}

static int run_setup_pub(struct run_ctx *r)
{
    struct pc_pub_opts po = {
        .url = &r->com->url,
        .where = r->com->where,
        .key = r->com->key,
        .maxlen = r->o.pub.maxlen,
        .ttl = r->o.pub.ttl,
        .buffer_lines = r->o.pub.buffer_lines,
        .flush_ms = r->o.pub.flush_ms,
        .retry_timeout = r->o.pub.retry_timeout,
    };

    r->pub = pc_pub_new(&po);
    if (!r->pub)
        return PC_ENOMEM;
    r->ev_start = pc_pub_event(r->pub, "start");
    r->ev_out = pc_pub_event(r->pub, "stdout");
    r->ev_err = pc_pub_event(r->pub, "stderr");
    r->ev_exit = pc_pub_event(r->pub, "exit");
    if (r->ev_start < 0 || r->ev_out < 0 || r->ev_err < 0 || r->ev_exit < 0)
        return PC_ENOMEM;
    r->src_out = pc_pub_src_new(r->pub, r->ev_out, (size_t)r->o.pub.max_line, "stdout");
    if (!r->src_out)
        return PC_ENOMEM;
    if (!r->o.pty) {
        r->src_err = pc_pub_src_new(r->pub, r->ev_err, (size_t)r->o.pub.max_line, "stderr");
        if (!r->src_err)
            return PC_ENOMEM;
    }
    r->ib = malloc(RUN_STDIN_BUF);
    return r->ib ? 0 : PC_ENOMEM;
}

static void run_spawn(struct run_ctx *r)
{
    struct pc_spawn_opts so;

    memset(&so, 0, sizeof(so));
    so.argv = r->cmd;
    so.use_pty = r->o.pty;
    so.want_stdin = 1;
    if (pc_guard_start(&r->guard, 1, r->spawn_err, sizeof(r->spawn_err)) != 0)
        pc_warn("run", "%s: the command's processes would outlive a SIGKILL of pipecast",
                r->spawn_err);
    r->spawn_err[0] = '\0';
    so.guard = r->guard.fd >= 0 ? &r->guard : NULL;
    so.die_with_parent = 1; /* the leader at once, even without a guard */
    r->t0_ms = pc_now_ms();
    if (pc_spawn(&so, &r->proc, r->spawn_err, sizeof(r->spawn_err)) == 0) {
        r->started = 1;
        pc_debug("run", "started pid %ld", (long)r->proc.pid);
        run_winsize(r);
        run_queue_json(r, r->ev_start, run_start_json);
        return;
    }
    /* Nothing runs: publish an `exit` that says why, and exit 127. */
    if (!r->spawn_err[0])
        snprintf(r->spawn_err, sizeof(r->spawn_err), "cannot start \"%s\"", r->cmd[0]);
    pc_cli_err("%s", r->spawn_err);
    r->reaped = 1;
    r->t1_ms = pc_now_ms();
    pc_pub_src_eof(r->src_out);
    if (r->src_err)
        pc_pub_src_eof(r->src_err);
    run_stdin_close(r);
}

int pc_cli_run(int argc, char **argv)
{
    static const int blocked[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD, SIGWINCH};
    const size_t nblocked = sizeof(blocked) / sizeof(blocked[0]);
    struct pc_cli_common com;
    struct run_ctx *r;
    struct sigaction sa, old[sizeof(blocked) / sizeof(blocked[0])], old_ttin;
    sigset_t block, oldmask, waitmask;
    char *fake[2];
    int rc, first = 0;
    size_t i;

    rc = pc_cli_common_init(&com, "run");
    if (rc != 0)
        return rc;
    r = calloc(1, sizeof(*r));
    if (!r) {
        pc_cli_err("out of memory");
        return PC_EXIT_FAIL;
    }
    r->com = &com;
    r->proc.pid = -1;
    r->proc.in_fd = r->proc.out_fd = r->proc.err_fd = -1;
    pc_guard_init(&r->guard);
    r->pass_out = r->pass_err = 1;
    rc = run_parse(&com, &r->o, argc, argv, &first);
    if (rc != 0) {
        free(r);
        return rc < 0 ? PC_EXIT_OK : rc;
    }
    r->cmd = argv + first;
    if (gethostname(r->host, sizeof(r->host) - 1) != 0)
        r->host[0] = '\0';
    run_default_channel(r);
    r->channel = r->o.channel ? r->o.channel : r->defch;
    /* Validates the channel (exit 2), the prefix and the URL, and builds the key. */
    fake[0] = "run";
    fake[1] = (char *)r->channel;
    rc = pc_cli_common_finish(&com, 2, fake, 1);
    if (rc != 0) {
        free(r);
        return rc;
    }
    if (run_setup_pub(r) != 0) {
        pc_cli_err("out of memory");
        rc = PC_EXIT_FAIL;
        goto out;
    }
    /* A run whose output cannot be published is a failure: find out before it starts. */
    if (pc_pub_connect(r->pub) != 0) {
        pc_cli_err("%s; not running \"%s\"", pc_pub_errstr(r->pub), r->cmd[0]);
        rc = PC_EXIT_FAIL;
        goto out;
    }
    pc_cli_err("channel %s", r->channel);

    /* The signals we act on are delivered only inside ppoll(), so no wake-up is missed. */
    run_sigchld = run_sigwinch = 0;
    for (i = 0; i < RUN_NFWD; i++)
        run_sig_count[i] = 0;
    sigemptyset(&block);
    for (i = 0; i < nblocked; i++)
        sigaddset(&block, blocked[i]);
    sigprocmask(SIG_BLOCK, &block, &oldmask);
    waitmask = oldmask;
    for (i = 0; i < nblocked; i++)
        sigdelset(&waitmask, blocked[i]);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = run_on_signal;
    sigemptyset(&sa.sa_mask);
    for (i = 0; i < nblocked; i++) {
        sigaction(blocked[i], NULL, &old[i]);
        /* an ignored SIGINT (a background job of a non-interactive shell) stays ignored */
        if (old[i].sa_handler != SIG_IGN || blocked[i] == SIGCHLD || blocked[i] == SIGWINCH)
            sigaction(blocked[i], &sa, NULL);
    }
    /* Reading a terminal from the background then fails with EIO instead of stopping us. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTTIN, &sa, &old_ttin);

    run_spawn(r);
    rc = run_loop(r, &waitmask);

    sigaction(SIGTTIN, &old_ttin, NULL);
    for (i = 0; i < nblocked; i++)
        sigaction(blocked[i], &old[i], NULL);
    sigprocmask(SIG_SETMASK, &oldmask, NULL);
out:
    pc_proc_close(&r->proc);
    pc_guard_stop(&r->guard, 1000);
    pc_pub_free(r->pub);
    free(r->ib);
    free(r);
    return rc;
}
