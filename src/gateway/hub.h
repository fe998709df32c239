/* hub.h -- the channel hub: a few reader threads share the channels, one ring per channel.
 *
 *   subscribers                     hub                          Redis
 *   ───────────                     ───                          ─────
 *   gw_hub_subscribe("build") ─ref─> channel "build"  ─┐ reader 0 ── XREAD BLOCK STREAMS <its keys>
 *   gw_channel_poll(cursor) <─ring── channel "deploy" ─┘ reader 1 ── XREAD BLOCK STREAMS <its keys>
 *                                    ...                 ...         (a connection each)
 *   (a reader's set changed) ── CLIENT UNBLOCK <its id> ── control connection
 *
 * Each channel belongs to one reader (the one with the fewest channels when
 * it was first subscribed), so an XREAD names only its reader's keys: Redis
 * does work for every key an XREAD names each time it blocks and wakes.
 *
 * A channel's ring holds, contiguously, every entry after base_id that has a
 * data field, each already encoded as SSE bytes (encoded once, copied to
 * every subscriber). The ring is bounded by --ring entries and 4 MiB; evicting
 * the oldest entry moves base_id to it. When a channel is first subscribed the
 * reader sets base_id to the stream's last id and reads on from there, so the
 * ring never has holes. A subscriber is only a cursor: while the cursor is at
 * or after base_id it is served from the ring (gw_channel_poll), otherwise it
 * reads pages from Redis itself (GW_POLL_BEHIND).
 *
 * A `partial` entry also keeps where its data lines start: a subscriber with
 * ?partial=mark gets it as "<event>.partial" from the same bytes, only its
 * event: line written anew (no second encoding, nothing for other entries).
 *
 * Waking: a single-channel subscriber waits on its channel's condition
 * variable (gw_channel_poll, gw_channel_wait). A subscriber of several
 * channels has one gw_waiter and attaches it to each of them: the reader then
 * sets that channel's bit in the waiter and signals it, so the subscriber
 * wakes for any of its channels and nobody else is woken for it.
 *
 * Locks: hub mutex (channel table, dirty flag) before channel mutex (ring)
 * before waiter mutex. Channels are refcounted by their subscribers and freed
 * at zero.
 */
#ifndef PC_GW_HUB_H
#define PC_GW_HUB_H

#include <stddef.h>
#include <stdint.h>

#include "pipecast/buf.h"
#include "pipecast/channel.h"
#include "pipecast/id.h"
#include "pipecast/url.h"

#include "metrics.h"

#define GW_RING_BYTES_MAX (4u << 20)
#define GW_HUB_READERS_MAX 64 /* reader threads (each with its Redis connection) */

struct gw_hub;
struct gw_channel;

/**
 * @return a hub for keys "<prefix>:ch:<channel>" with rings of at most
 * @p ring_entries entries / @p ring_bytes bytes, its channels shared among
 * @p readers reader threads (1..GW_HUB_READERS_MAX), or NULL with a reason in
 * @p err. No thread runs before gw_hub_start().
 */
struct gw_hub *gw_hub_new(const struct pc_redis_url *u, const char *prefix, size_t ring_entries,
                          size_t ring_bytes, unsigned readers, struct gw_metrics *m, char *err,
                          size_t errlen);

/**
 * Start the first reader thread; the others start one by one when every
 * running reader has a channel, and a reader connects to Redis once it has
 * one. @return 0 or PC_ENOMEM.
 */
int gw_hub_start(struct gw_hub *h);

/**
 * Mark the hub stopping: every waiting subscriber returns GW_POLL_STOP, new
 * subscriptions are refused, the reader is interrupted. Does not wait.
 */
void gw_hub_stop(struct gw_hub *h);

/** @return nonzero once gw_hub_stop() was called. */
int gw_hub_stopping(const struct gw_hub *h);

/** Join the reader threads and free everything. Every subscriber must have left. */
void gw_hub_free(struct gw_hub *h);

/**
 * Subscribe to channel @p name (a valid channel name). The reader starts
 * following it at once. @return the channel (keep it until gw_hub_unsubscribe),
 * or NULL when stopping or out of memory.
 */
struct gw_channel *gw_hub_subscribe(struct gw_hub *h, const char *name);

/** Drop a subscription; the last one removes the channel from the reader's set. */
void gw_hub_unsubscribe(struct gw_hub *h, struct gw_channel *ch);

/**
 * Subscribe to @p n channels at once (the reader is woken once, not n times).
 * @return 0 with every channel in @p out, or -1 (stopping, out of memory) with
 * nothing subscribed.
 */
int gw_hub_subscribe_many(struct gw_hub *h, const char *const *names, size_t n,
                          struct gw_channel **out);

/**
 * Drop a subscription without waking the reader (it re-reads its channel set
 * at its next round): for threads that must not wait for Redis.
 */
void gw_hub_unsubscribe_nowake(struct gw_hub *h, struct gw_channel *ch);

/** Drop @p n subscriptions (NULL entries are skipped), waking the reader at most once. */
void gw_hub_unsubscribe_many(struct gw_hub *h, struct gw_channel **chs, size_t n);

/**
 * The stream of channel @p name was deleted: if it is followed, drop its ring
 * and let the reader set it up again from the stream's current state
 * (subscribers read what they miss from Redis pages, like any cursor before
 * base_id). No-op when nobody follows the channel.
 */
void gw_hub_reset_channel(struct gw_hub *h, const char *name);

/* Where gw_hub_channel_names() goes on; zero it to start from the beginning. */
struct gw_hub_walk {
    size_t bucket, skip;
    int wrapped; /* set when a call reached the end of the table (and went back to the start) */
};

/**
 * Copy the names of up to @p max subscribed channels to @p out, going on from
 * @p w, and stop early at the end of the table (w->wrapped set, w back at the
 * start). Channels subscribed or dropped between calls may be missed or seen
 * twice. @return how many names were copied.
 */
size_t gw_hub_channel_names(struct gw_hub *h, struct gw_hub_walk *w,
                            char (*out)[PC_CHANNEL_MAX + 1], size_t max);

/** The stream key of @p ch ("<prefix>:ch:<name>"). */
const char *gw_channel_key(const struct gw_channel *ch);

/* Results of gw_channel_poll(). */
enum gw_poll {
    GW_POLL_DATA = 0,    /* out has entries; cursor moved */
    GW_POLL_TIMEOUT = 1, /* nothing new before the deadline */
    GW_POLL_BEHIND = 2,  /* cursor is before the ring (or the ring is not set up yet) */
    GW_POLL_STOP = 3,    /* the hub is stopping */
    GW_POLL_BAD = 4,     /* the key exists but is not a stream */
    GW_POLL_ERROR = 5,   /* out of memory */
};

/* Where the ring stands, reported with GW_POLL_BEHIND. */
struct gw_ring_pos {
    int ready; /* base_id is known */
    struct pc_id base_id;
};

/* An event-name filter: entries without an event name count as "message". */
struct gw_filter {
    int n; /* 0 = everything */
    const char *const *names;
};

/* Where gw_channel_poll stops: at the first entry after id (or at id, unless inclusive). */
struct gw_limit {
    struct pc_id id;
    int inclusive;
};

/*
 * How a subscriber's events are written: the id: line, "id: <pre><stream
 * id><post>" (pre and post may be empty), and with mark_partial the event
 * name of a `partial` entry, "<event>.partial" ("message.partial" without
 * one). Without one (NULL) the id is the stream id alone, partial entries are
 * not marked, and the ring's bytes are copied unchanged (as they are for
 * every entry whose id and event lines need no rewriting).
 */
struct gw_idfmt {
    const char *pre;
    size_t prelen;
    const char *post;
    size_t postlen;
    int mark_partial;
};

/* The suffix of a marked partial entry's event name ("." is not in the event-name alphabet). */
#define GW_PARTIAL_SUFFIX ".partial"
/* Room for a marked name and its NUL. */
#define GW_PARTIAL_NAME_SIZE (PC_EVENT_MAX + sizeof(GW_PARTIAL_SUFFIX))

/**
 * The event name that a subscriber with ?partial=mark sees for a `partial`
 * entry named @p event (NULL: none): "<event>.partial" or "message.partial",
 * written to @p buf (GW_PARTIAL_NAME_SIZE bytes; @p event is a valid name).
 * @return buf.
 */
const char *gw_partial_name(const char *event, char buf[GW_PARTIAL_NAME_SIZE]);

/** @return nonzero when @p id is beyond @p limit (NULL: no limit). */
int gw_limit_beyond(const struct gw_limit *limit, const struct pc_id *id);

/** @return nonzero when an entry with event name @p event (NULL: none) passes @p f. */
int gw_filter_match(const struct gw_filter *f, const char *event);

/**
 * Append "id: <pre><id><post>\n" to @p out (@p f may be NULL).
 * @return 0 or a PC_E* code (out unchanged).
 */
int gw_idfmt_line(struct pc_buf *out, const struct gw_idfmt *f, const char *id, size_t idlen);

/**
 * Serve a subscriber from the ring: append the SSE bytes of the entries after
 * @p cursor that pass @p filter to @p out (stopping before @p soft_max bytes,
 * but always at least one entry when out is empty) and move @p cursor past
 * everything examined. @p fmt (may be NULL) writes the id: lines; @p limit
 * (may be NULL) stops before the first entry beyond it. When there is nothing
 * to send (and no limit was reached), wait until @p deadline_ms (pc_now_ms
 * clock). @p nsent receives the number of entries appended; GW_POLL_DATA with
 * nsent 0 means @p out (not empty on entry) is full: flush it and poll again.
 */
enum gw_poll gw_channel_poll(struct gw_channel *ch, struct pc_id *cursor,
                             const struct gw_filter *filter, const struct gw_idfmt *fmt,
                             const struct gw_limit *limit, struct pc_buf *out, size_t soft_max,
                             long long deadline_ms, size_t *nsent, struct gw_ring_pos *pos);

/*
 * For a thread that serves many subscribers of one channel (fanout.c): take
 * the channel lock once, then gw_channel_take_locked() for each of them
 * (gw_channel_poll without waiting; *drained is set when the subscriber has
 * seen everything up to the reader's position, so that only new entries can
 * give it more), then unlock. Keep the lock short: the reader waits for it.
 */
void gw_channel_lock(struct gw_channel *ch);
void gw_channel_unlock(struct gw_channel *ch);
enum gw_poll gw_channel_take_locked(struct gw_channel *ch, struct pc_id *cursor,
                                    const struct gw_filter *filter, const struct gw_idfmt *fmt,
                                    struct pc_buf *out, size_t soft_max, size_t *nsent,
                                    int *drained, struct gw_ring_pos *pos);

/**
 * Look into the ring without sending or waiting: move @p cursor past the
 * entries that @p filter rejects and report the id of the next one that
 * passes in @p next. @return GW_POLL_DATA (next set), GW_POLL_TIMEOUT (nothing
 * after the cursor yet), GW_POLL_BEHIND (pos set), GW_POLL_STOP or GW_POLL_BAD.
 */
enum gw_poll gw_channel_peek(struct gw_channel *ch, struct pc_id *cursor,
                             const struct gw_filter *filter, struct pc_id *next,
                             struct gw_ring_pos *pos);

/**
 * Wait until something happens on @p ch (new entries, ring ready, stop) or
 * until @p deadline_ms. With @p until_ready, return at once when the ring is
 * already set up: the caller saw it not ready before it unlocked, and the
 * reader may have set it up (and broadcast) since -- checking again under the
 * lock is what keeps that wakeup from being lost. @return GW_POLL_STOP when
 * stopping, GW_POLL_BAD when the key is not a stream, else GW_POLL_TIMEOUT.
 */
enum gw_poll gw_channel_wait(struct gw_channel *ch, long long deadline_ms, int until_ready);

/*
 * Live listeners: a subscriber served by a fanout writer thread (fanout.h)
 * instead of a thread of its own. Each writer is a group; a listener is linked
 * into its channel's list for its group. When the channel has news (entries,
 * ring ready or reset, bad key, stop) and the group is not already told, the
 * hub marks the group queued and calls the listen callback (under the channel
 * lock: it must only queue and wake). The writer then calls
 * gw_channel_notified() before it looks, so that later news calls again.
 * Only the group's owner thread adds, removes and walks its listeners.
 */
#define GW_LISTEN_GROUPS_MAX 16

struct gw_listener {
    struct gw_listener *prev, *next;
    unsigned group;
};

typedef void (*gw_listen_cb)(void *arg, unsigned group, struct gw_channel *ch);

/** Set the listen callback (once, before gw_hub_start()). */
void gw_hub_set_listen_cb(struct gw_hub *h, gw_listen_cb cb, void *arg);

/** Link @p l into @p ch for @p group. @return 1 when it is the group's first listener there. */
int gw_channel_listen(struct gw_channel *ch, struct gw_listener *l, unsigned group);

/* Bits returned by gw_channel_unlisten(). */
#define GW_UNLISTEN_LAST 1   /* the group has no listener left on the channel */
#define GW_UNLISTEN_QUEUED 2 /* ... and a callback was made that the group has not taken yet */

/** Unlink @p l. @return GW_UNLISTEN_* bits (the queued mark is cleared). */
int gw_channel_unlisten(struct gw_channel *ch, struct gw_listener *l);

/** The group took the callback for @p ch: further news calls it again. */
void gw_channel_notified(struct gw_channel *ch, unsigned group);

/** The first listener of @p group on @p ch (group owner only; follow ->next). */
struct gw_listener *gw_channel_listeners(struct gw_channel *ch, unsigned group);

/* The waiter of a subscriber of several channels (at most GW_WAITER_MAX). */
#define GW_WAITER_MAX 64
struct gw_waiter;

/** @return a waiter with @p n slots (1..GW_WAITER_MAX) for hub @p h, or NULL. */
struct gw_waiter *gw_waiter_new(struct gw_hub *h, unsigned n);

/**
 * Attach slot @p i of @p w to @p ch: from now on whatever wakes the channel's
 * subscribers (entries, ring ready, bad key, stop) sets bit i of @p w.
 */
void gw_waiter_attach(struct gw_waiter *w, unsigned i, struct gw_channel *ch);

/** Detach every slot and free @p w (NULL: no-op). Call before unsubscribing its channels. */
void gw_waiter_free(struct gw_waiter *w);

/**
 * Wait until a bit is set, the hub stops, or @p deadline_ms; a deadline in
 * the past does not wait. @return the bits set since the last call (and
 * clears them): bit i is slot i.
 */
uint64_t gw_waiter_wait(struct gw_waiter *w, long long deadline_ms);

#endif
