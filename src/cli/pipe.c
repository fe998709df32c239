/* pipe.c -- `pipecast pipe`: stdin lines -> XADD, pipelined, and nothing lost silently.
 *
 * One ppoll() loop over stdin and the Redis socket; the publishing engine
 * (publish.c) does the work: one source (stdin) split into entries of one
 * event, encoded once into the queue of unacknowledged XADDs, resent after a
 * reconnect, bounded. While the queue is full stdin is not read, which is the
 * backpressure on the producer.
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
#include <time.h>
#include <unistd.h>

#include "pipecast/channel.h"
#include "pipecast/error.h"
#include "pipecast/log.h"
#include "pipecast/redis.h"
#include "pipecast/splitter.h"

#include "cli.h"
#include "publish.h"

struct pipe_opts {
    const char *event;
    struct pc_cli_pubopts pub;
    int tee;
    int quiet;
};

struct pipe_ctx {
    struct pc_cli_common *com;
    struct pipe_opts o;
    struct pc_pub *pub;
    struct pc_pub_src *in;
    int tee;
};

static volatile sig_atomic_t pipe_signals;

static void pipe_on_signal(int sig)
{
    (void)sig;
    if (pipe_signals < 100)
        pipe_signals++;
}

static void pipe_tee_write(struct pipe_ctx *p, const char *b, size_t n)
{
    while (n > 0) {
        ssize_t w = write(STDOUT_FILENO, b, n);
        if (w > 0) {
            b += w;
            n -= (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* someone made our stdout non-blocking: wait for it */
            struct pollfd pf = {.fd = STDOUT_FILENO, .events = POLLOUT};
            (void)poll(&pf, 1, 1000);
            continue;
        }
        pc_debug("tee", "stdout: %s; no longer copying stdin", w < 0 ? strerror(errno) : "closed");
        p->tee = 0;
        return;
    }
}

/* ------------------------------------------------------------------------ */
/* The loop                                                                 */
/* ------------------------------------------------------------------------ */

static int pipe_run(struct pipe_ctx *p, const sigset_t *waitmask)
{
    for (;;) {
        long long now = pc_now_ms(), deadline;
        struct pollfd fds[2];
        int nfds = 0, in_idx = -1, rc_idx = -1, r, fd;
        short ev;

        if (pipe_signals >= 2 && !pc_pub_idle(p->pub)) {
            pc_cli_err("interrupted: %lld lines not published", pc_pub_unpublished(p->pub));
            return PC_EXIT_FAIL;
        }
        if (pipe_signals >= 1 && !pc_pub_src_eof_seen(p->in)) {
            pc_debug("pipe", "signal: finishing");
            pc_pub_src_eof(p->in);
        }

        r = pc_pub_step(p->pub, now);
        if (r < 0) {
            long long n = pc_pub_unpublished(p->pub);
            if (r == PC_EAUTH && n == 0)
                pc_cli_err("%s", pc_pub_errstr(p->pub));
            else
                pc_cli_err("%s%s %lld lines not published", pc_pub_errstr(p->pub),
                           r == PC_EAUTH ? ";" : ":", n);
            return PC_EXIT_FAIL;
        }
        if (pc_pub_src_done(p->in) && pc_pub_idle(p->pub)) {
            if (pc_pub_failed(p->pub) > 0) {
                pc_cli_err("redis %s: %lld lines not published (%s)", p->com->where,
                           pc_pub_failed(p->pub), pc_pub_first_error(p->pub));
                return PC_EXIT_FAIL;
            }
            return PC_EXIT_OK;
        }

        /* stdin: only when the last read has been fed completely */
        if (pc_pub_src_readable(p->in)) {
            fds[nfds].fd = STDIN_FILENO;
            fds[nfds].events = POLLIN;
            in_idx = nfds++;
        }
        fd = pc_pub_pollfd(p->pub, &ev);
        if (fd >= 0) {
            fds[nfds].fd = fd;
            fds[nfds].events = ev;
            rc_idx = nfds++;
        }

        deadline = pc_pub_deadline(p->pub);
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
            r = ppoll(fds, (nfds_t)nfds, tsp, waitmask);
        }
        if (r < 0) {
            if (errno == EINTR)
                continue;
            pc_cli_err("poll: %s: %lld lines not published", strerror(errno),
                       pc_pub_unpublished(p->pub));
            return PC_EXIT_FAIL;
        }
        now = pc_now_ms();
        if (in_idx >= 0 && fds[in_idx].revents) {
            const char *data;
            ssize_t n;

            if (fds[in_idx].revents & POLLNVAL)
                pc_pub_src_eof(p->in);
            else if ((n = pc_pub_src_read(p->in, STDIN_FILENO, now, &data)) > 0 && p->tee)
                pipe_tee_write(p, data, (size_t)n);
        }
        pc_pub_io(p->pub, rc_idx >= 0 ? fds[rc_idx].revents : 0, now);
    }
}

/* ------------------------------------------------------------------------ */
/* Options and setup                                                        */
/* ------------------------------------------------------------------------ */

enum {
    OPT_EVENT = PC_OPT_LOCAL,
    OPT_TEE,
};

static void pipe_usage(FILE *f)
{
    fputs("usage: pipecast pipe [options] <channel>\n"
          "\n"
          "Publishes stdin to a channel: each line becomes one entry of the Redis stream\n"
          "<prefix>:ch:<channel>. Exits 0 only when Redis has acknowledged every line.\n"
          "\n"
          "options:\n"
          "  --event NAME         event name for every entry ([A-Za-z0-9_-]{1,64})\n"
          "  --maxlen N           approximate trimming, MAXLEN ~ N (default 100000; 0: none)\n"
          "  --ttl SECONDS        EXPIRE the stream key after writes\n"
          "  --tee                also copy stdin to stdout unchanged\n"
          "  --max-line BYTES     longer lines are split into partial entries (default 65536,\n"
          "                       16-16777216)\n"
          "  --flush-ms MS        publish a line without newline as partial after this idle\n"
          "                       time (default 50)\n"
          "  --buffer-lines N     at most N lines held unconfirmed (default 100000)\n"
          "  --retry-timeout S    keep retrying an unreachable Redis this long (default 30)\n"
          "  -q, --quiet          print nothing but errors\n" PC_CLI_COMMON_HELP,
          f);
}

static int pipe_parse(struct pc_cli_common *com, struct pipe_opts *o, int argc, char **argv)
{
    static const struct option longopts[] = {
        PC_CLI_COMMON_LONGOPTS,
        {"event", required_argument, NULL, OPT_EVENT},
        PC_CLI_PUB_LONGOPTS,
        {"tee", no_argument, NULL, OPT_TEE},
        {"quiet", no_argument, NULL, 'q'},
        {NULL, 0, NULL, 0},
    };
    int opt, rc;

    pc_cli_pubopts_init(&o->pub);
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":q", longopts, NULL)) != -1) {
        rc = pc_cli_common_option(com, opt, optarg);
        if (rc == 0)
            rc = pc_cli_pubopts_option(&o->pub, opt, optarg);
        if (rc == 1)
            continue;
        if (rc != 0)
            return rc;
        switch (opt) {
        case OPT_EVENT:
            if (!pc_event_valid(optarg, strlen(optarg))) {
                pc_cli_err("event \"%.80s\": invalid name (allowed: 1-%d bytes of A-Z a-z 0-9 _ -)",
                           optarg, PC_EVENT_MAX);
                return PC_EXIT_USAGE;
            }
            o->event = optarg;
            break;
        case OPT_TEE:
            o->tee = 1;
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
        pipe_usage(stdout);
        return -1;
    }
    if (com->version) {
        pc_cli_print_version();
        return -1;
    }
    if (o->quiet && com->log_level < PC_LOG_ERROR)
        com->log_level = PC_LOG_ERROR;
    return pc_cli_common_finish(com, argc, argv, optind);
}

int pc_cli_pipe(int argc, char **argv)
{
    struct pc_cli_common com;
    struct pipe_ctx *p;
    struct sigaction sa, old_int, old_term;
    sigset_t block, oldmask, waitmask;
    int rc;

    rc = pc_cli_common_init(&com, "pipe");
    if (rc != 0)
        return rc;
    p = calloc(1, sizeof(*p));
    if (!p) {
        pc_cli_err("out of memory");
        return PC_EXIT_FAIL;
    }
    p->com = &com;
    rc = pipe_parse(&com, &p->o, argc, argv);
    if (rc != 0) {
        free(p);
        return rc < 0 ? PC_EXIT_OK : rc;
    }
    p->tee = p->o.tee;
    {
        struct pc_pub_opts po = {
            .url = &com.url,
            .where = com.where,
            .key = com.key,
            .maxlen = p->o.pub.maxlen,
            .ttl = p->o.pub.ttl,
            .buffer_lines = p->o.pub.buffer_lines,
            .flush_ms = p->o.pub.flush_ms,
            .retry_timeout = p->o.pub.retry_timeout,
        };
        int ev;

        p->pub = pc_pub_new(&po);
        ev = p->pub ? pc_pub_event(p->pub, p->o.event) : PC_ENOMEM;
        p->in = ev >= 0 ? pc_pub_src_new(p->pub, ev, (size_t)p->o.pub.max_line, "stdin") : NULL;
    }
    if (!p->in) {
        pc_cli_err("out of memory");
        pc_pub_free(p->pub);
        free(p);
        return PC_EXIT_FAIL;
    }

    /* SIGINT/SIGTERM are delivered only inside ppoll(), so no wake-up is missed. */
    pipe_signals = 0;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &oldmask);
    waitmask = oldmask;
    sigdelset(&waitmask, SIGINT);
    sigdelset(&waitmask, SIGTERM);
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = pipe_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, NULL, &old_int);
    sigaction(SIGTERM, NULL, &old_term);
    if (old_int.sa_handler != SIG_IGN)
        sigaction(SIGINT, &sa, NULL);
    if (old_term.sa_handler != SIG_IGN)
        sigaction(SIGTERM, &sa, NULL);

    rc = pipe_run(p, &waitmask);

    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigprocmask(SIG_SETMASK, &oldmask, NULL);
    pc_pub_free(p->pub);
    free(p);
    return rc;
}
