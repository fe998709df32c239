/* publish.h -- the CLI's publishing engine: entries -> pipelined XADDs into one stream,
 * acknowledged, resent after a reconnect, bounded, and nothing lost silently.
 *
 * Used by `pipecast pipe` (stdin -> one event) and `pipecast run` (a command's
 * stdout and stderr, plus its start and exit events). The engine never
 * blocks except for a (re)connect, which is bounded by a connect timeout; the
 * caller owns the poll() loop and puts its own fds next to the Redis socket:
 *
 *   pub = pc_pub_new(&opts);
 *   ev  = pc_pub_event(pub, "stdout");               // or NULL: no event field
 *   src = pc_pub_src_new(pub, ev, max_line, "stdout");
 *   for (;;) {
 *       if (pc_pub_step(pub, now) < 0)               // feed, flush, connect, write
 *           -> failed for good: pc_pub_errstr(), pc_pub_unpublished()
 *       if (pc_pub_src_done(src) && pc_pub_idle(pub))
 *           -> every entry acknowledged (check pc_pub_failed())
 *       poll: your fd when pc_pub_src_readable(src), pc_pub_pollfd(pub, &events),
 *             timeout pc_pub_deadline(pub)
 *       if your fd is readable: pc_pub_src_read(src, fd, now, &data)
 *       pc_pub_io(pub, revents_of_the_redis_fd_or_0, now)
 *   }
 *
 * Backpressure: a source takes new input (pc_pub_src_readable) only when its
 * previous read has been fed to its splitter completely, and bytes are fed
 * only while the queue has room for every entry they can produce. A full
 * queue therefore stops reading, and the producer blocks on its write.
 *
 * Delivery is at-least-once: after a reconnect every unacknowledged command
 * is sent again, so a line whose reply was lost may appear twice.
 */
#ifndef PC_PUBLISH_H
#define PC_PUBLISH_H

#include <stddef.h>
#include <sys/types.h>

#include "pipecast/url.h"

#define PC_PUB_EVENTS_MAX 8                /* event names per publisher (NULL counts as one) */
#define PC_PUB_SOURCES_MAX 4               /* sources per publisher */
#define PC_PUB_SOFT_CAP ((size_t)64 << 20) /* bytes of unacknowledged commands */

struct pc_pub_opts {
    const struct pc_redis_url *url; /* where to publish; must outlive the publisher */
    const char *where;              /* the URL described for messages ("127.0.0.1:6379/0") */
    const char *key;                /* the stream key; must outlive the publisher */
    long long maxlen;               /* XADD MAXLEN ~ N; 0: no trimming */
    long long ttl;           /* EXPIRE key ttl after writes (at most once a second); 0: none */
    long long buffer_lines;  /* entries held unacknowledged, at least 1 */
    long long flush_ms;      /* idle time after which a source's fragment is published */
    long long retry_timeout; /* seconds to keep retrying while something waits */
};

struct pc_pub;     /* opaque */
struct pc_pub_src; /* one input byte stream, split into entries of one event; owned by its pc_pub */

/** @return a new publisher (not connected yet), or NULL when out of memory. */
struct pc_pub *pc_pub_new(const struct pc_pub_opts *o);

/** Close the connection and free the publisher and its sources. NULL is a no-op. */
void pc_pub_free(struct pc_pub *p);

/**
 * Register an event name (NULL: entries without an `event` field) before any
 * entry is queued. @return its handle (>= 0), or PC_ENAME / PC_ETOOBIG / PC_ENOMEM.
 */
int pc_pub_event(struct pc_pub *p, const char *event);

/**
 * Connect now, once (for callers that must fail fast). @return 0, or
 * PC_EAUTH / PC_EREDIS / PC_ETIMEOUT / PC_ENOMEM with the reason in pc_pub_errstr().
 * Without it, pc_pub_step() connects when there is something to send.
 */
int pc_pub_connect(struct pc_pub *p);

/**
 * Queue one entry of event @p ev now, whatever the queue holds (for a few
 * lifecycle events: the bound is exceeded by at most these). @return 0 or
 * PC_ENOMEM (which also makes the next pc_pub_step() fail).
 */
int pc_pub_add(struct pc_pub *p, int ev, const char *data, size_t len, int partial);

/**
 * Do everything that needs no waiting: feed the sources as far as the queue
 * allows, idle flushes, EXPIRE, reconnect when due, write to Redis.
 * @return 0, or a negative code once publishing has failed for good
 * (PC_ETIMEOUT: gave up after retry_timeout; PC_EAUTH: AUTH/SELECT refused;
 * PC_ENOMEM; PC_EIO); pc_pub_errstr() then says why, without the count.
 */
int pc_pub_step(struct pc_pub *p, long long now);

/** The Redis socket to poll (or -1 while disconnected) and the events wanted on it. */
int pc_pub_pollfd(const struct pc_pub *p, short *events);

/** The next time (pc_now_ms() clock) pc_pub_step() has something to do; LLONG_MAX: none. */
long long pc_pub_deadline(const struct pc_pub *p);

/**
 * After every poll(): handle @p revents of the Redis socket (0 when it was not
 * polled or nothing happened) and check the reply timeout.
 */
void pc_pub_io(struct pc_pub *p, short revents, long long now);

/** 1 when every queued entry has been answered (and no source holds unfed input). */
int pc_pub_idle(const struct pc_pub *p);

/** Entries not (yet) in Redis: queued, held in sources, or refused with an error reply. */
long long pc_pub_unpublished(const struct pc_pub *p);

/** Entries Redis answered with an error, and the first such error. */
long long pc_pub_failed(const struct pc_pub *p);
const char *pc_pub_first_error(const struct pc_pub *p);

/** Why the publisher failed (or the last connection failure): "redis <where>: <why>". */
const char *pc_pub_errstr(const struct pc_pub *p);

/**
 * A new source feeding entries of event @p ev (a pc_pub_event handle), lines
 * at most @p max_line bytes (longer ones become partial chunks); @p name is
 * used in messages ("stdin"). @return NULL when out of memory or invalid.
 */
struct pc_pub_src *pc_pub_src_new(struct pc_pub *p, int ev, size_t max_line, const char *name);

/** 1 when the source wants more input: not at EOF and its last read fully fed. */
int pc_pub_src_readable(const struct pc_pub_src *s);

/**
 * Read once from @p fd (polled readable) into the source. @return the number
 * of bytes read (> 0; @p data then points at them until the next read: copy
 * them elsewhere, e.g. to a terminal, before calling pc_pub_step), 0 at the end
 * of input (EOF, EIO of a pty whose other side closed, or a read error, which
 * is logged), or -1 when there was nothing to read (EAGAIN, EINTR).
 */
ssize_t pc_pub_src_read(struct pc_pub_src *s, int fd, long long now, const char **data);

/** End the input without reading further (what was read is still published). */
void pc_pub_src_eof(struct pc_pub_src *s);

/** 1 once the end of input has been seen, whether or not everything is fed yet. */
int pc_pub_src_eof_seen(const struct pc_pub_src *s);

/** 1 when all of the source's input has become entries (EOF seen and everything fed). */
int pc_pub_src_done(const struct pc_pub_src *s);

#endif
