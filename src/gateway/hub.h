/* hub.h -- the channel hub: one reader thread for all channels, one ring per channel.
 *
 *   subscribers (civetweb workers)           hub                       Redis
 *   ─────────────────────────────            ───                       ─────
 *   gw_hub_subscribe("build") ───ref──> channel "build" ─┐
 *   gw_channel_poll(cursor)   <─ring──  channel "deploy" ├── reader ── XREAD BLOCK 0 STREAMS ...
 *                                                        │   thread     (one connection)
 *   (set changed) ── CLIENT UNBLOCK <reader id> ─────────┘  <── control connection
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
 * Locks: hub mutex (channel table, dirty flag) before channel mutex (ring).
 * Channels are refcounted by their subscribers and freed at zero.
 */
#ifndef PC_GW_HUB_H
#define PC_GW_HUB_H

#include <stddef.h>

#include "pipecast/buf.h"
#include "pipecast/id.h"
#include "pipecast/url.h"

#include "metrics.h"

#define GW_RING_BYTES_MAX (4u << 20)

struct gw_hub;
struct gw_channel;

/**
 * @return a hub for keys "<prefix>:ch:<channel>" with rings of at most
 * @p ring_entries entries / @p ring_bytes bytes, or NULL with a reason in @p err.
 * No thread runs before gw_hub_start().
 */
struct gw_hub *gw_hub_new(const struct pc_redis_url *u, const char *prefix, size_t ring_entries,
                          size_t ring_bytes, struct gw_metrics *m, char *err, size_t errlen);

/** Start the reader thread. @return 0 or PC_ENOMEM. */
int gw_hub_start(struct gw_hub *h);

/**
 * Mark the hub stopping: every waiting subscriber returns GW_POLL_STOP, new
 * subscriptions are refused, the reader is interrupted. Does not wait.
 */
void gw_hub_stop(struct gw_hub *h);

/** @return nonzero once gw_hub_stop() was called. */
int gw_hub_stopping(const struct gw_hub *h);

/** Join the reader thread and free everything. Every subscriber must have left. */
void gw_hub_free(struct gw_hub *h);

/**
 * Subscribe to channel @p name (a valid channel name). The reader starts
 * following it at once. @return the channel (keep it until gw_hub_unsubscribe),
 * or NULL when stopping or out of memory.
 */
struct gw_channel *gw_hub_subscribe(struct gw_hub *h, const char *name);

/** Drop a subscription; the last one removes the channel from the reader's set. */
void gw_hub_unsubscribe(struct gw_hub *h, struct gw_channel *ch);

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

/**
 * Serve a subscriber from the ring: append the SSE bytes of the entries after
 * @p cursor that pass @p filter to @p out (stopping before @p soft_max bytes,
 * but always at least one entry) and move @p cursor past everything examined.
 * When there is nothing to send, wait until @p deadline_ms (pc_now_ms clock).
 * @p nsent receives the number of entries appended.
 */
enum gw_poll gw_channel_poll(struct gw_channel *ch, struct pc_id *cursor,
                             const struct gw_filter *filter, struct pc_buf *out, size_t soft_max,
                             long long deadline_ms, size_t *nsent, struct gw_ring_pos *pos);

/**
 * Wait until something happens on @p ch (new entries, ring ready, stop) or
 * until @p deadline_ms. @return GW_POLL_STOP when stopping, GW_POLL_BAD when
 * the key is not a stream, else GW_POLL_TIMEOUT.
 */
enum gw_poll gw_channel_wait(struct gw_channel *ch, long long deadline_ms);

#endif
