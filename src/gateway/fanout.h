/* fanout.h -- live SSE streams without a thread each: a few writer threads.
 *
 *   hub reader ── append to ring ── listen callback ──> writer w's queue ── eventfd
 *                                                           │
 *   writer w (epoll): for each queued channel:
 *       copy the new ring bytes once, into the writer's shared batch (one short
 *       hold of the channel lock), then for each of its streams there: send()
 *       the batch without blocking; only what a socket does not take is copied
 *       into that stream's buffer and waits for EPOLLOUT. A stream with a filter,
 *       an id format or another cursor takes its own bytes into its buffer.
 *
 * A stream is live when its cursor is in its channel's ring and everything
 * before it was written: the stream's own thread (sse_handler.c) hands it
 * over with gw_fanout_adopt() and ends. From then on a writer owns it: it
 * sends new entries, pings an idle stream, and notices a client that closed
 * (EPOLLRDHUP) or that takes nothing for the write timeout (then dropped, it
 * resumes with its Last-Event-ID). A stream whose cursor falls behind the ring
 * (a slow client), or whose channel was reset or holds a bad key, goes back
 * to a thread: the writer calls its done callback with GW_LIVE_BEHIND. The
 * memory a slow stream holds is its unsent bytes, at most one soft_max batch
 * plus one entry.
 *
 * Stream threads: gw_fanout_spawn() runs a function on a detached thread with
 * a small stack and counts it, so that gw_fanout_free() can wait for all.
 *
 * Ownership: an adopted gw_live belongs to its writer until the done callback,
 * which is called exactly once, on the writer thread, after the stream has
 * left every writer structure (the callback may free it).
 */
#ifndef PC_GW_FANOUT_H
#define PC_GW_FANOUT_H

#include <stddef.h>

#include "pipecast/buf.h"
#include "pipecast/id.h"

#include "hub.h"
#include "metrics.h"

struct gw_fanout;
struct gw_live;

/* Why a stream leaves the fanout. */
enum gw_live_end {
    GW_LIVE_CLOSED = 0, /* client gone, write timeout, or stopping: finish the stream */
    GW_LIVE_BEHIND = 1, /* needs Redis (behind the ring, channel reset, bad key): a thread */
};

typedef void (*gw_live_cb)(struct gw_live *lv, enum gw_live_end why);

/* A live stream. The owner fills the first block before gw_fanout_adopt(). */
struct gw_live {
    int fd; /* the client socket, non-blocking */
    struct gw_channel *ch;
    struct pc_id *cursor; /* moved as entries are taken from the ring */
    const struct gw_filter *filter;
    const struct gw_idfmt *fmt; /* may be NULL */
    struct pc_buf *out;         /* empty, or bytes still to send first */
    gw_live_cb done;

    /* the fanout's */
    struct gw_listener lis;
    struct gw_live *prev, *next; /* the writer's streams */
    struct gw_live *link;        /* inbox or leaving list */
    size_t off;                  /* bytes of out already sent */
    long long last_write_ms;
    long long stalled_ms; /* when the socket stopped taking bytes (0: it takes them) */
    int state;
    enum gw_live_end why;
    int want_out;  /* EPOLLOUT is armed */
    int in_ep;     /* in the writer's epoll set */
    int listening; /* lis is linked into the channel */
    int took;      /* writer_channel: the last look into the ring (-1: none) */
    int shared;    /* ... was the writer's shared batch (the bytes are not in out) */
    int drained;   /* ... and it saw everything up to the reader's position */
};

/**
 * @return a fanout of @p writers threads (1..GW_LISTEN_GROUPS_MAX) serving
 * the streams of hub @p h, pinging idle streams every @p ping_ms, dropping a
 * stream whose socket takes nothing for @p write_timeout_ms, batching at most
 * about @p soft_max bytes per send; stream threads get @p stack_size bytes of
 * stack. NULL when out of memory (or no thread could start). Call before
 * gw_hub_start(): it installs the hub's listen callback.
 */
struct gw_fanout *gw_fanout_new(struct gw_hub *h, struct gw_metrics *m, unsigned writers,
                                long long ping_ms, long long write_timeout_ms, size_t soft_max,
                                size_t stack_size);

/**
 * Hand @p lv to a writer. @return 0, or -1 when stopping (the caller keeps
 * the stream and finishes it).
 */
int gw_fanout_adopt(struct gw_fanout *fo, struct gw_live *lv);

/** Run @p fn(@p arg) on a new detached stream thread. @return 0 or -1 (no thread). */
int gw_fanout_spawn(struct gw_fanout *fo, void (*fn)(void *), void *arg);

/**
 * Stop the writers: every live stream gets its done callback (GW_LIVE_CLOSED)
 * and no stream is adopted any more. Call after gw_hub_stop().
 */
void gw_fanout_stop(struct gw_fanout *fo);

/** Stop (if not yet), wait for every stream thread to end, free (NULL: no-op). */
void gw_fanout_free(struct gw_fanout *fo);

#endif
