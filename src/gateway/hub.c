/* hub.c -- channel table, per-channel rings and the reader thread.
 *
 * The channels are split between --hub-readers reader threads (shards), each
 * with its own Redis connection: a new channel joins the shard with the
 * fewest. An XREAD costs Redis (and us) work for every key it names, each
 * time it blocks and each time it wakes; with a thousand busy channels on one
 * connection every event paid for a thousand keys. Each shard runs this loop,
 * one round at a time:
 *
 *   snapshot the shard's channel set (hub lock, clears the shard's dirty)
 *     ├─ channels not set up yet: XREVRANGE key + - COUNT 1 → base_id = last_id
 *     └─ the others: XREAD BLOCK 2000 COUNT 512 STREAMS k1 .. kn last1 .. lastn
 *          ├─ entries: encode once (partial ones: note where the data starts),
 *          │           append to the ring, broadcast
 *          ├─ nil: CLIENT UNBLOCK from gw_hub_subscribe/unsubscribe → next round
 *          └─ I/O error: reconnect with backoff, resume from every last_id
 */
#include "hub.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>

#include "pipecast/channel.h"
#include "pipecast/error.h"
#include "pipecast/log.h"
#include "pipecast/redis.h"
#include "pipecast/sse.h"

#define HUB_BUCKETS 1024
#define HUB_XREAD_COUNT "512"
#define HUB_ENTRY_MAX (64u << 20) /* largest encoded entry; bigger ones are skipped */
#define HUB_UNBLOCK_TRIES 4000    /* x 0.5 ms */
/* XREAD's BLOCK: a backstop only. A change of the channel set wakes the reader
 * at once with CLIENT UNBLOCK; should that wake fail (control connection lost,
 * a very loaded box), the new set is still followed within this time. */
#define HUB_XREAD_BLOCK_MS "2000"
#define HUB_CONNECT_TIMEOUT_MS 2000
#define HUB_CTL_CONNECT_TIMEOUT_MS 500
#define HUB_CTL_CMD_TIMEOUT_MS 1000
#define HUB_ENTRY_OVERHEAD 64 /* bookkeeping bytes charged per ring entry */
#define HUB_READER_STACK (256u << 10)

struct ring_entry {
    struct pc_id id;
    const char *event; /* NULL: no event name; points into the sse allocation */
    char *sse;         /* the encoded event: id, event, data lines, blank line */
    size_t sse_len;
    size_t body_off; /* where the line after "id: <id>\n" starts */
    size_t data_off; /* a `partial` entry: where its data: lines start (after any event: line);
                        0 for the others */
    size_t cost;     /* bytes charged against the ring's byte cap */
};

/* One slot of a gw_waiter, linked into its channel's list while attached. */
struct watch {
    struct watch *prev, *next; /* channel lock */
    struct gw_channel *ch;     /* NULL: not attached */
    struct gw_waiter *w;
    uint64_t bit;
};

struct gw_waiter {
    const struct gw_hub *hub;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    uint64_t fired; /* under mu */
    unsigned n;
    struct watch slots[GW_WAITER_MAX];
};

struct gw_channel {
    struct gw_channel *next; /* hash chain (hub lock) */
    int refs;                /* subscribers + the reader while it appends (hub lock) */
    const struct gw_hub *hub;
    char name[PC_CHANNEL_MAX + 1];
    char key[PC_KEY_MAX];

    pthread_mutex_t mu;
    pthread_cond_t cond; /* broadcast on append, ready, bad, stop */
    /* below: under mu */
    int ready;               /* base_id / last_id are set and the reader follows the stream */
    int bad;                 /* the key holds something that is not a stream */
    struct pc_id base_id;    /* the ring holds every data entry in (base_id, last_id] */
    struct pc_id last_id;    /* the reader's position (skipped entries included) */
    struct ring_entry *ring; /* circular: entry i (0 = oldest) is ring[(head + i) % cap] */
    size_t cap, head, count, bytes;
    struct watch *watchers; /* waiters of multi-channel subscribers */
    long reader_slot;       /* its index in its shard's XREAD snapshot, -1: none */
    unsigned shard;         /* its reader (hub lock: moves off a reader that cannot connect) */
    struct gw_channel *snext, *sprev; /* the shard's channel list (hub lock) */
    struct {
        struct gw_listener *head; /* live subscribers of one group (fanout writer) */
        int queued;               /* the group was told and has not looked yet */
    } live[GW_LISTEN_GROUPS_MAX];
};

/* One reader thread and its Redis connection, following a share of the channels. */
struct shard {
    struct gw_hub *h;
    unsigned idx;
    pthread_cond_t cond; /* hub lock: the reader sleeps here (nothing to read, or backoff) */
    /* below: hub lock */
    struct gw_channel *chans; /* its channels */
    size_t nchannels;
    int dirty;           /* its set changed since its reader's last snapshot */
    int failing;         /* its last connection attempt failed: new channels go elsewhere */
    long long reader_id; /* CLIENT ID of its connection, 0 when none */
    int reader_fd;       /* its socket, -1 when none: shut down to interrupt on stop */
    pthread_t thread;    /* running when idx < the hub's nstarted */
};

struct gw_hub {
    struct pc_redis_url url;
    char prefix[PC_PREFIX_MAX + 1];
    size_t ring_max;
    size_t ring_bytes_max;
    struct gw_metrics *metrics;
    atomic_int stopping;

    pthread_mutex_t mu;
    struct gw_channel *buckets[HUB_BUCKETS];
    size_t nchannels;

    struct shard *shards;
    unsigned nshards;
    unsigned nstarted; /* shards[0 .. nstarted) have their reader thread (hub lock) */

    pthread_mutex_t ctl_mu; /* the control connection, for CLIENT UNBLOCK */
    redisContext *ctl;

    gw_listen_cb listen_cb; /* set before any listener exists, then read-only */
    void *listen_arg;
};

/* One channel in the reader's snapshot. */
struct slot {
    char key[PC_KEY_MAX];
    char id[PC_ID_STRLEN]; /* last_id when the snapshot was taken */
};

/* A reader thread's private state. */
struct reader {
    struct shard *s;
    redisContext *c;
    struct pc_backoff bo;
    struct pc_buf scratch; /* one encoded entry */
    struct slot *keys;     /* snapshot: channels to XREAD */
    int valid;             /* keys/init still mirror the channel set (the ids are kept current) */
    size_t nkeys, capkeys;
    struct slot *init; /* snapshot: channels that need their base_id */
    size_t ninit, capinit;
    const char **argv; /* the XREAD command */
    size_t *argvlen;
    size_t capargv;
};

enum round { ROUND_OK, ROUND_ERROR, ROUND_LOST, ROUND_STOP };

/* ------------------------------------------------------------------------ */
/* Small helpers                                                             */
/* ------------------------------------------------------------------------ */

static void cond_init_monotonic(pthread_cond_t *c)
{
    pthread_condattr_t ca;

    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(c, &ca);
    pthread_condattr_destroy(&ca);
}

/* Wait on @p c until @p deadline_ms of the pc_now_ms() clock (whatever clock that is). */
static void cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, long long deadline_ms)
{
    long long left = deadline_ms - pc_now_ms();
    struct timespec ts;

    if (left <= 0)
        return;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(left / 1000);
    ts.tv_nsec += (long)(left % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(c, m, &ts);
}

static unsigned hash_name(const char *s)
{
    unsigned h = 2166136261u;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h % HUB_BUCKETS;
}

static int is_stopping(const struct gw_hub *h)
{
    return atomic_load(&h->stopping);
}

/* Wake whoever waits for @p ch: its subscribers and the attached waiters. Channel lock held. */
static void channel_notify(struct gw_channel *ch)
{
    const struct gw_hub *h = ch->hub;

    pthread_cond_broadcast(&ch->cond);
    for (struct watch *wt = ch->watchers; wt; wt = wt->next) {
        pthread_mutex_lock(&wt->w->mu);
        wt->w->fired |= wt->bit;
        pthread_cond_signal(&wt->w->cond);
        pthread_mutex_unlock(&wt->w->mu);
    }
    /* live subscribers: one call per group, however many entries arrive before it looks */
    for (unsigned g = 0; h->listen_cb && g < GW_LISTEN_GROUPS_MAX; g++) {
        if (ch->live[g].head && !ch->live[g].queued) {
            ch->live[g].queued = 1;
            h->listen_cb(h->listen_arg, g, ch);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Rings (channel lock held)                                                 */
/* ------------------------------------------------------------------------ */

static struct ring_entry *ring_at(struct gw_channel *ch, size_t i)
{
    return &ch->ring[(ch->head + i) % ch->cap];
}

/* Evict the oldest entry: base_id moves to it, so the ring stays "everything after base_id". */
static void ring_drop_oldest(struct gw_channel *ch)
{
    struct ring_entry *e = ring_at(ch, 0);

    ch->base_id = e->id;
    ch->bytes -= e->cost;
    free(e->sse);
    e->sse = NULL;
    ch->head = (ch->head + 1) % ch->cap;
    ch->count--;
}

static void ring_clear(struct gw_channel *ch)
{
    while (ch->count > 0)
        ring_drop_oldest(ch);
}

static int ring_grow(struct gw_channel *ch, size_t max)
{
    size_t ncap = ch->cap ? ch->cap * 2 : 16;
    struct ring_entry *n;

    if (ncap > max)
        ncap = max;
    n = malloc(ncap * sizeof(*n));
    if (!n)
        return PC_ENOMEM;
    for (size_t i = 0; i < ch->count; i++)
        n[i] = *ring_at(ch, i);
    free(ch->ring);
    ch->ring = n;
    ch->cap = ncap;
    ch->head = 0;
    return 0;
}

/*
 * Append @p e (the ring takes its sse buffer). An entry that cannot be kept
 * (larger than the byte cap, or no memory) empties the ring and becomes its
 * base: subscribers then read it from Redis, nothing is skipped.
 */
static void ring_push(const struct gw_hub *h, struct gw_channel *ch, struct ring_entry *e)
{
    if (e->cost > h->ring_bytes_max) {
        ring_clear(ch);
        ch->base_id = e->id;
        free(e->sse);
        return;
    }
    while (ch->count > 0 && (ch->count >= h->ring_max || ch->bytes + e->cost > h->ring_bytes_max))
        ring_drop_oldest(ch);
    if (ch->count == ch->cap && ring_grow(ch, h->ring_max) != 0) {
        ring_clear(ch);
        ch->base_id = e->id;
        free(e->sse);
        return;
    }
    *ring_at(ch, ch->count) = *e;
    ch->count++;
    ch->bytes += e->cost;
}

/* Index of the first ring entry with an id after @p cursor (count when none). */
static size_t ring_find_after(struct gw_channel *ch, const struct pc_id *cursor)
{
    size_t lo = 0, hi = ch->count;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;

        if (pc_id_cmp(&ring_at(ch, mid)->id, cursor) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

int gw_filter_match(const struct gw_filter *f, const char *event)
{
    const char *ev = event ? event : "message";

    if (!f || f->n == 0)
        return 1;
    for (int i = 0; i < f->n; i++)
        if (strcmp(f->names[i], ev) == 0)
            return 1;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Channels                                                                  */
/* ------------------------------------------------------------------------ */

static struct gw_channel *channel_new(const struct gw_hub *h, const char *name)
{
    struct gw_channel *ch = calloc(1, sizeof(*ch));
    size_t nl = strlen(name);

    if (!ch)
        return NULL;
    if (nl > PC_CHANNEL_MAX || pc_key_channel(ch->key, sizeof(ch->key), h->prefix, name) < 0) {
        free(ch);
        return NULL;
    }
    memcpy(ch->name, name, nl + 1);
    ch->hub = h;
    ch->reader_slot = -1;
    pthread_mutex_init(&ch->mu, NULL);
    cond_init_monotonic(&ch->cond);
    return ch;
}

static void channel_free(struct gw_channel *ch)
{
    ring_clear(ch);
    free(ch->ring);
    pthread_mutex_destroy(&ch->mu);
    pthread_cond_destroy(&ch->cond);
    free(ch);
}

/* Hub lock held. */
static struct gw_channel *table_find(struct gw_hub *h, const char *name)
{
    for (struct gw_channel *ch = h->buckets[hash_name(name)]; ch; ch = ch->next)
        if (strcmp(ch->name, name) == 0)
            return ch;
    return NULL;
}

/* The shard's set changed: its reader takes a new snapshot. Hub lock held. @return its bit. */
static uint64_t shard_dirty(struct shard *s)
{
    s->dirty = 1;
    pthread_cond_signal(&s->cond);
    return (uint64_t)1 << s->idx;
}

static int shard_start(struct gw_hub *h, struct shard *s);

/*
 * The reader for a new channel: the one with the fewest channels, so that
 * every XREAD names as few keys as it can. Readers start in order, when the
 * running ones all have a channel (an idle gateway has one reader thread).
 * Hub lock held.
 */
static struct shard *pick_shard(struct gw_hub *h)
{
    struct shard *s = &h->shards[0];

    /* a reader that could not connect takes new channels only when they all cannot */
    for (unsigned i = 1; i < h->nstarted; i++) {
        struct shard *t = &h->shards[i];

        if (t->failing < s->failing || (t->failing == s->failing && t->nchannels < s->nchannels))
            s = t;
    }
    if (s->nchannels > 0 && h->nstarted > 0 && h->nstarted < h->nshards &&
        shard_start(h, &h->shards[h->nstarted]) == 0)
        s = &h->shards[h->nstarted - 1];
    return s;
}

/* Give @p ch to the reader of @p s (not in any shard's list yet). Hub lock held. */
static void shard_link(struct shard *s, struct gw_channel *ch)
{
    ch->shard = s->idx;
    ch->sprev = NULL;
    ch->snext = s->chans;
    if (s->chans)
        s->chans->sprev = ch;
    s->chans = ch;
    s->nchannels++;
}

/* Take @p ch from its reader's list. Hub lock held. */
static void shard_unlink(struct shard *s, struct gw_channel *ch)
{
    if (ch->sprev)
        ch->sprev->snext = ch->snext;
    else
        s->chans = ch->snext;
    if (ch->snext)
        ch->snext->sprev = ch->sprev;
    ch->sprev = ch->snext = NULL;
    s->nchannels--;
}

/* Hub lock held. */
static void table_insert(struct gw_hub *h, struct gw_channel *ch)
{
    unsigned b = hash_name(ch->name);

    ch->next = h->buckets[b];
    h->buckets[b] = ch;
    shard_link(pick_shard(h), ch);
    h->nchannels++;
    atomic_store_explicit(&h->metrics->hub_channels, (long)h->nchannels, memory_order_relaxed);
}

/* Hub lock held. */
static void table_remove(struct gw_hub *h, struct gw_channel *ch)
{
    struct gw_channel **pp = &h->buckets[hash_name(ch->name)];

    while (*pp && *pp != ch)
        pp = &(*pp)->next;
    if (*pp)
        *pp = ch->next;
    shard_unlink(&h->shards[ch->shard], ch);
    h->nchannels--;
    atomic_store_explicit(&h->metrics->hub_channels, (long)h->nchannels, memory_order_relaxed);
}

/*
 * A reference to the subscribed channel @p name, or NULL when nobody follows
 * it -- or, with @p only, when it is not (or no longer) that reader's.
 */
static struct gw_channel *hub_ref(struct gw_hub *h, const char *name, const struct shard *only)
{
    struct gw_channel *ch;

    pthread_mutex_lock(&h->mu);
    ch = table_find(h, name);
    if (ch && only && ch->shard != only->idx)
        ch = NULL;
    if (ch)
        ch->refs++;
    pthread_mutex_unlock(&h->mu);
    return ch;
}

static void hub_wake_readers(struct gw_hub *h, uint64_t shards);

/*
 * Drop a reference. @return 0, or when it was the last (the channel is gone)
 * the bit of its shard, to pass to hub_wake_readers().
 */
static uint64_t hub_unref(struct gw_hub *h, struct gw_channel *ch)
{
    uint64_t bit;

    pthread_mutex_lock(&h->mu);
    if (--ch->refs > 0) {
        pthread_mutex_unlock(&h->mu);
        return 0;
    }
    table_remove(h, ch);
    bit = shard_dirty(&h->shards[ch->shard]);
    pthread_mutex_unlock(&h->mu);
    channel_free(ch);
    return bit;
}

void gw_hub_reset_channel(struct gw_hub *h, const char *name)
{
    struct gw_channel *ch = hub_ref(h, name, NULL);
    const struct pc_id zero = {0, 0};
    uint64_t bit;

    if (!ch)
        return;
    pthread_mutex_lock(&ch->mu);
    ring_clear(ch);
    ch->ready = 0;
    ch->bad = 0;
    ch->base_id = zero;
    ch->last_id = zero;
    pthread_mutex_unlock(&ch->mu);
    pthread_mutex_lock(&h->mu);
    bit = shard_dirty(&h->shards[ch->shard]);
    pthread_mutex_unlock(&h->mu);
    bit |= hub_unref(h, ch);
    hub_wake_readers(h, bit);
}

size_t gw_hub_channel_names(struct gw_hub *h, struct gw_hub_walk *w,
                            char (*out)[PC_CHANNEL_MAX + 1], size_t max)
{
    size_t n = 0;

    w->wrapped = 0;
    pthread_mutex_lock(&h->mu);
    while (n < max) {
        struct gw_channel *ch = w->bucket < HUB_BUCKETS ? h->buckets[w->bucket] : NULL;

        for (size_t i = 0; ch && i < w->skip; i++)
            ch = ch->next;
        for (; ch && n < max; ch = ch->next, w->skip++)
            memcpy(out[n++], ch->name, strlen(ch->name) + 1);
        if (ch)
            break; /* out is full in the middle of this chain */
        w->skip = 0;
        if (++w->bucket >= HUB_BUCKETS) {
            w->bucket = 0;
            w->wrapped = 1;
            break;
        }
    }
    pthread_mutex_unlock(&h->mu);
    return n;
}

const char *gw_channel_key(const struct gw_channel *ch)
{
    return ch->key;
}

/* ------------------------------------------------------------------------ */
/* Waking the reader: CLIENT UNBLOCK from the control connection             */
/* ------------------------------------------------------------------------ */

/*
 * A reader clears its shard's dirty when it takes its snapshot. While dirty is
 * still set and UNBLOCK answers 0, the reader is between its snapshot and
 * XREAD (or busy elsewhere): try again shortly, a bounded number of times. A
 * reader without a connection (reader_id 0) takes a fresh snapshot after
 * reconnecting anyway.
 */
static void hub_wake_shard(struct gw_hub *h, struct shard *s)
{
    const struct timespec half_ms = {0, 500000};
    char err[256];

    for (int tries = 0; tries < HUB_UNBLOCK_TRIES; tries++) {
        char idbuf[32];
        const char *argv[3] = {"CLIENT", "UNBLOCK", idbuf};
        size_t argvlen[3];
        long long id;
        int dirty, unblocked;
        redisReply *r;

        pthread_mutex_lock(&h->mu);
        dirty = s->dirty;
        id = s->reader_id;
        pthread_mutex_unlock(&h->mu);
        if (!dirty || id == 0 || is_stopping(h))
            break;
        if (!h->ctl) {
            h->ctl = pc_redis_connect(&h->url, HUB_CTL_CONNECT_TIMEOUT_MS, HUB_CTL_CMD_TIMEOUT_MS,
                                      err, sizeof(err));
            if (!h->ctl) {
                pc_debug("hub", "control connection: %s", err);
                break;
            }
        }
        snprintf(idbuf, sizeof(idbuf), "%lld", id);
        argvlen[0] = 6;
        argvlen[1] = 7;
        argvlen[2] = strlen(idbuf);
        r = redisCommandArgv(h->ctl, 3, argv, argvlen);
        if (!r) {
            pc_debug("hub", "control connection lost: %s", h->ctl->errstr);
            redisFree(h->ctl);
            h->ctl = NULL;
            break;
        }
        unblocked = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
        freeReplyObject(r);
        if (unblocked)
            break;
        nanosleep(&half_ms, NULL);
    }
}

/* Wake the readers of the shards in the bit set @p shards. */
static void hub_wake_readers(struct gw_hub *h, uint64_t shards)
{
    if (!shards)
        return;
    pthread_mutex_lock(&h->ctl_mu);
    for (unsigned i = 0; i < h->nshards; i++)
        if (shards & ((uint64_t)1 << i))
            hub_wake_shard(h, &h->shards[i]);
    pthread_mutex_unlock(&h->ctl_mu);
}

/* ------------------------------------------------------------------------ */
/* Subscribers                                                               */
/* ------------------------------------------------------------------------ */

/*
 * Take a reference to channel @p name; a new one is created, added to a
 * shard's set and its bit set in @p created. Hub lock held.
 */
static struct gw_channel *hub_add_locked(struct gw_hub *h, const char *name, uint64_t *created)
{
    struct gw_channel *ch = table_find(h, name);

    if (ch) {
        ch->refs++;
        return ch;
    }
    ch = channel_new(h, name);
    if (!ch)
        return NULL;
    ch->refs = 1;
    table_insert(h, ch);
    *created |= shard_dirty(&h->shards[ch->shard]);
    return ch;
}

struct gw_channel *gw_hub_subscribe(struct gw_hub *h, const char *name)
{
    struct gw_channel *ch;

    if (gw_hub_subscribe_many(h, &name, 1, &ch) != 0)
        return NULL;
    return ch;
}

int gw_hub_subscribe_many(struct gw_hub *h, const char *const *names, size_t n,
                          struct gw_channel **out)
{
    size_t i = 0;
    uint64_t created = 0;

    pthread_mutex_lock(&h->mu);
    if (!is_stopping(h))
        for (; i < n && (out[i] = hub_add_locked(h, names[i], &created)) != NULL; i++)
            ;
    pthread_mutex_unlock(&h->mu);
    if (i < n) {
        gw_hub_unsubscribe_many(h, out, i);
        return -1;
    }
    hub_wake_readers(h, created);
    return 0;
}

void gw_hub_unsubscribe(struct gw_hub *h, struct gw_channel *ch)
{
    if (ch)
        hub_wake_readers(h, hub_unref(h, ch));
}

void gw_hub_unsubscribe_nowake(struct gw_hub *h, struct gw_channel *ch)
{
    /* the reader may XREAD the key once more; it finds no channel for what it reads */
    if (ch)
        (void)hub_unref(h, ch);
}

void gw_hub_unsubscribe_many(struct gw_hub *h, struct gw_channel **chs, size_t n)
{
    uint64_t removed = 0;

    for (size_t i = 0; i < n; i++)
        if (chs[i])
            removed |= hub_unref(h, chs[i]);
    hub_wake_readers(h, removed);
}

/* ------------------------------------------------------------------------ */
/* Live listeners                                                            */
/* ------------------------------------------------------------------------ */

void gw_hub_set_listen_cb(struct gw_hub *h, gw_listen_cb cb, void *arg)
{
    /* before gw_hub_start(): the reader thread is created after, and reads it unlocked */
    h->listen_cb = cb;
    h->listen_arg = arg;
}

int gw_channel_listen(struct gw_channel *ch, struct gw_listener *l, unsigned group)
{
    int first;

    pthread_mutex_lock(&ch->mu);
    first = ch->live[group].head == NULL;
    l->group = group;
    l->prev = NULL;
    l->next = ch->live[group].head;
    if (l->next)
        l->next->prev = l;
    ch->live[group].head = l;
    pthread_mutex_unlock(&ch->mu);
    return first;
}

int gw_channel_unlisten(struct gw_channel *ch, struct gw_listener *l)
{
    unsigned g = l->group;
    int rc = 0;

    pthread_mutex_lock(&ch->mu);
    if (l->prev)
        l->prev->next = l->next;
    else
        ch->live[g].head = l->next;
    if (l->next)
        l->next->prev = l->prev;
    l->prev = l->next = NULL;
    if (!ch->live[g].head) {
        rc |= GW_UNLISTEN_LAST;
        if (ch->live[g].queued)
            rc |= GW_UNLISTEN_QUEUED;
        ch->live[g].queued = 0;
    }
    pthread_mutex_unlock(&ch->mu);
    return rc;
}

void gw_channel_notified(struct gw_channel *ch, unsigned group)
{
    pthread_mutex_lock(&ch->mu);
    ch->live[group].queued = 0;
    pthread_mutex_unlock(&ch->mu);
}

struct gw_listener *gw_channel_listeners(struct gw_channel *ch, unsigned group)
{
    /* only the group's owner changes the list (under the lock) and walks it: no lock needed */
    return ch->live[group].head;
}

int gw_idfmt_line(struct pc_buf *out, const struct gw_idfmt *f, const char *id, size_t idlen)
{
    size_t old = out->len;
    int rc;

    if ((rc = pc_buf_append(out, "id: ", 4)) == 0 &&
        (!f || f->prelen == 0 || (rc = pc_buf_append(out, f->pre, f->prelen)) == 0) &&
        (rc = pc_buf_append(out, id, idlen)) == 0 &&
        (!f || f->postlen == 0 || (rc = pc_buf_append(out, f->post, f->postlen)) == 0))
        rc = pc_buf_append(out, "\n", 1);
    if (rc != 0) {
        out->len = old;
        if (out->data)
            out->data[old] = '\0';
    }
    return rc;
}

const char *gw_partial_name(const char *event, char buf[GW_PARTIAL_NAME_SIZE])
{
    const char *base = event ? event : "message";
    size_t n = strnlen(base, PC_EVENT_MAX);

    memcpy(buf, base, n);
    memcpy(buf + n, GW_PARTIAL_SUFFIX, sizeof(GW_PARTIAL_SUFFIX));
    return buf;
}

/*
 * Append ring entry @p e as @p fmt says. The shared bytes go out unchanged
 * unless the id: line is rewritten or the entry is a marked partial one;
 * then only those lines are written anew. @return 0 or a PC_E* code.
 */
static int ring_entry_append(struct pc_buf *out, const struct ring_entry *e,
                             const struct gw_idfmt *fmt)
{
    int mark = fmt && fmt->mark_partial && e->data_off > 0;
    char name[GW_PARTIAL_NAME_SIZE];
    size_t old = out->len;
    int rc;

    if (!fmt || (!mark && fmt->prelen == 0 && fmt->postlen == 0))
        return pc_buf_append(out, e->sse, e->sse_len);
    /* the stream id is between "id: " and the line's end */
    rc = gw_idfmt_line(out, fmt, e->sse + 4, e->body_off - 5);
    if (rc == 0 && !mark)
        rc = pc_buf_append(out, e->sse + e->body_off, e->sse_len - e->body_off);
    else if (rc == 0 && (rc = pc_buf_append(out, "event: ", 7)) == 0 &&
             (rc = pc_buf_append_str(out, gw_partial_name(e->event, name))) == 0 &&
             (rc = pc_buf_append(out, "\n", 1)) == 0)
        rc = pc_buf_append(out, e->sse + e->data_off, e->sse_len - e->data_off);
    if (rc != 0) {
        out->len = old;
        if (out->data)
            out->data[old] = '\0';
    }
    return rc;
}

int gw_limit_beyond(const struct gw_limit *limit, const struct pc_id *id)
{
    int c;

    if (!limit)
        return 0;
    c = pc_id_cmp(id, &limit->id);
    return c > 0 || (c == 0 && !limit->inclusive);
}

/*
 * What a subscriber at @p cursor must do before reading the ring: -1 when it
 * can read it, else the gw_poll result (pos filled for GW_POLL_BEHIND).
 * Channel lock held.
 */
static int channel_state(struct gw_channel *ch, const struct pc_id *cursor, struct gw_ring_pos *pos)
{
    /* Checked under the channel lock: gw_hub_stop broadcasts under it too. */
    if (is_stopping(ch->hub))
        return GW_POLL_STOP;
    if (ch->bad)
        return GW_POLL_BAD;
    if (!ch->ready || pc_id_cmp(cursor, &ch->base_id) < 0) {
        pos->ready = ch->ready;
        pos->base_id = ch->base_id;
        return GW_POLL_BEHIND;
    }
    return -1;
}

/*
 * One look into the ring for a subscriber (channel lock held): append what
 * passes the filter after @p cursor, up to @p soft_max. @return -1 when there
 * was nothing to send and the caller may wait, else the result; *n entries
 * were appended, *drained tells that everything up to last_id was examined.
 */
static int channel_take(struct gw_channel *ch, struct pc_id *cursor, const struct gw_filter *filter,
                        const struct gw_idfmt *fmt, const struct gw_limit *limit,
                        struct pc_buf *out, size_t soft_max, size_t *n, int *drained,
                        struct gw_ring_pos *pos)
{
    int st = channel_state(ch, cursor, pos), full = 0, failed = 0, limited = 0;
    size_t i;

    *drained = 0;
    if (st >= 0)
        return st;
    for (i = ring_find_after(ch, cursor); i < ch->count; i++) {
        struct ring_entry *e = ring_at(ch, i);

        if (gw_limit_beyond(limit, &e->id)) {
            limited = 1;
            break;
        }
        if (gw_filter_match(filter, e->event)) {
            if (out->len > 0 && out->len + e->sse_len > soft_max) {
                full = 1;
                break;
            }
            if (ring_entry_append(out, e, fmt) != 0) {
                /* retry with an empty buffer, unless it already was */
                full = out->len > 0;
                failed = !full;
                break;
            }
            (*n)++;
        }
        *cursor = e->id;
    }
    /* Everything up to last_id was examined: skipped entries are passed too. */
    if (i == ch->count) {
        *drained = 1;
        if (pc_id_cmp(cursor, &ch->last_id) < 0)
            *cursor = ch->last_id;
    }
    if (*n > 0 || full)
        return GW_POLL_DATA;
    if (failed) /* the next entry did not fit into an empty buffer */
        return GW_POLL_ERROR;
    if (limited)
        return GW_POLL_TIMEOUT;
    return -1;
}

enum gw_poll gw_channel_poll(struct gw_channel *ch, struct pc_id *cursor,
                             const struct gw_filter *filter, const struct gw_idfmt *fmt,
                             const struct gw_limit *limit, struct pc_buf *out, size_t soft_max,
                             long long deadline_ms, size_t *nsent, struct gw_ring_pos *pos)
{
    int rc, drained;
    size_t n = 0;

    pthread_mutex_lock(&ch->mu);
    for (;;) {
        rc = channel_take(ch, cursor, filter, fmt, limit, out, soft_max, &n, &drained, pos);
        if (rc >= 0)
            break;
        if (pc_now_ms() >= deadline_ms) {
            rc = GW_POLL_TIMEOUT;
            break;
        }
        cond_wait_until(&ch->cond, &ch->mu, deadline_ms);
    }
    pthread_mutex_unlock(&ch->mu);
    *nsent = n;
    return (enum gw_poll)rc;
}

void gw_channel_lock(struct gw_channel *ch)
{
    pthread_mutex_lock(&ch->mu);
}

void gw_channel_unlock(struct gw_channel *ch)
{
    pthread_mutex_unlock(&ch->mu);
}

enum gw_poll gw_channel_take_locked(struct gw_channel *ch, struct pc_id *cursor,
                                    const struct gw_filter *filter, const struct gw_idfmt *fmt,
                                    struct pc_buf *out, size_t soft_max, size_t *nsent,
                                    int *drained, struct gw_ring_pos *pos)
{
    size_t n = 0;
    int rc = channel_take(ch, cursor, filter, fmt, NULL, out, soft_max, &n, drained, pos);

    *nsent = n;
    return rc < 0 ? GW_POLL_TIMEOUT : (enum gw_poll)rc;
}

enum gw_poll gw_channel_peek(struct gw_channel *ch, struct pc_id *cursor,
                             const struct gw_filter *filter, struct pc_id *next,
                             struct gw_ring_pos *pos)
{
    int rc;

    pthread_mutex_lock(&ch->mu);
    rc = channel_state(ch, cursor, pos);
    if (rc < 0) {
        rc = GW_POLL_TIMEOUT;
        for (size_t i = ring_find_after(ch, cursor); i < ch->count; i++) {
            struct ring_entry *e = ring_at(ch, i);

            if (gw_filter_match(filter, e->event)) {
                *next = e->id;
                rc = GW_POLL_DATA;
                break;
            }
            *cursor = e->id;
        }
        if (rc == GW_POLL_TIMEOUT && pc_id_cmp(cursor, &ch->last_id) < 0)
            *cursor = ch->last_id;
    }
    pthread_mutex_unlock(&ch->mu);
    return (enum gw_poll)rc;
}

enum gw_poll gw_channel_wait(struct gw_channel *ch, long long deadline_ms, int until_ready)
{
    enum gw_poll rc = GW_POLL_TIMEOUT;

    pthread_mutex_lock(&ch->mu);
    if (!is_stopping(ch->hub) && !ch->bad && !(until_ready && ch->ready))
        cond_wait_until(&ch->cond, &ch->mu, deadline_ms);
    if (is_stopping(ch->hub))
        rc = GW_POLL_STOP;
    else if (ch->bad)
        rc = GW_POLL_BAD;
    pthread_mutex_unlock(&ch->mu);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Waiters of multi-channel subscribers                                      */
/* ------------------------------------------------------------------------ */

struct gw_waiter *gw_waiter_new(struct gw_hub *h, unsigned n)
{
    struct gw_waiter *w;

    if (n == 0 || n > GW_WAITER_MAX || !(w = calloc(1, sizeof(*w))))
        return NULL;
    w->hub = h;
    w->n = n;
    pthread_mutex_init(&w->mu, NULL);
    cond_init_monotonic(&w->cond);
    for (unsigned i = 0; i < n; i++) {
        w->slots[i].w = w;
        w->slots[i].bit = (uint64_t)1 << i;
    }
    return w;
}

void gw_waiter_attach(struct gw_waiter *w, unsigned i, struct gw_channel *ch)
{
    struct watch *wt = &w->slots[i];

    pthread_mutex_lock(&ch->mu);
    wt->ch = ch;
    wt->prev = NULL;
    wt->next = ch->watchers;
    if (ch->watchers)
        ch->watchers->prev = wt;
    ch->watchers = wt;
    pthread_mutex_unlock(&ch->mu);
}

void gw_waiter_free(struct gw_waiter *w)
{
    if (!w)
        return;
    for (unsigned i = 0; i < w->n; i++) {
        struct watch *wt = &w->slots[i];
        struct gw_channel *ch = wt->ch;

        if (!ch)
            continue;
        /* the reader only touches the waiter under this lock: after it, never again */
        pthread_mutex_lock(&ch->mu);
        if (wt->prev)
            wt->prev->next = wt->next;
        else
            ch->watchers = wt->next;
        if (wt->next)
            wt->next->prev = wt->prev;
        pthread_mutex_unlock(&ch->mu);
        wt->ch = NULL;
    }
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cond);
    free(w);
}

uint64_t gw_waiter_wait(struct gw_waiter *w, long long deadline_ms)
{
    uint64_t fired;

    pthread_mutex_lock(&w->mu);
    /* gw_hub_stop sets stopping before it signals, under this lock */
    while (!w->fired && !is_stopping(w->hub) && pc_now_ms() < deadline_ms)
        cond_wait_until(&w->cond, &w->mu, deadline_ms);
    fired = w->fired;
    w->fired = 0;
    pthread_mutex_unlock(&w->mu);
    return fired;
}

/* ------------------------------------------------------------------------ */
/* The reader thread                                                         */
/* ------------------------------------------------------------------------ */

static void reader_sleep(struct gw_hub *h, struct reader *r, int ms)
{
    pthread_mutex_lock(&h->mu);
    if (!is_stopping(h))
        cond_wait_until(&r->s->cond, &h->mu, pc_now_ms() + ms);
    pthread_mutex_unlock(&h->mu);
}

/* Wait until the reader's shard has a channel: an idle shard holds no connection. */
static void reader_wait_work(struct gw_hub *h, struct reader *r)
{
    pthread_mutex_lock(&h->mu);
    while (r->s->nchannels == 0 && !is_stopping(h))
        pthread_cond_wait(&r->s->cond, &h->mu);
    pthread_mutex_unlock(&h->mu);
}

/*
 * The reader of @p s could not connect: give its channels to connected
 * readers (the fewest channels first), so that a Redis refusing more clients
 * (maxclients) stalls none of them. With no reader connected (Redis down) it
 * keeps them. Wakes the readers that took some.
 */
static void reader_hand_off(struct gw_hub *h, struct shard *s)
{
    uint64_t woke = 0;

    pthread_mutex_lock(&h->mu);
    s->failing = 1;
    while (s->chans) {
        struct gw_channel *ch = s->chans;
        struct shard *t = NULL;

        for (unsigned i = 0; i < h->nstarted; i++) {
            struct shard *c = &h->shards[i];

            if (c != s && c->reader_id != 0 && (!t || c->nchannels < t->nchannels))
                t = c;
        }
        if (!t)
            break;
        shard_unlink(s, ch);
        shard_link(t, ch);
        woke |= shard_dirty(t);
    }
    if (woke)
        pc_warn("hub", "reader %u cannot connect: its channels go to the connected readers",
                s->idx);
    pthread_mutex_unlock(&h->mu);
    hub_wake_readers(h, woke);
}

static int reader_connect(struct gw_hub *h, struct reader *r, int quiet)
{
    char err[256];
    redisReply *rep;
    long long id;

    r->c = pc_redis_connect(&h->url, HUB_CONNECT_TIMEOUT_MS, 0, err, sizeof(err));
    if (!r->c) {
        if (quiet)
            pc_debug("hub", "%s", err);
        else
            pc_warn("hub", "%s; retrying", err);
        return -1;
    }
    /* BLOCK 0 has no timeout: keepalive notices a peer that vanished silently. TCP only:
     * on a unix socket it fails and leaves the context in an error state for good. */
    if (!h->url.is_unix && redisEnableKeepAlive(r->c) != REDIS_OK) {
        pc_debug("hub", "redis: keepalive: %s", r->c->errstr);
        r->c->err = 0;
        r->c->errstr[0] = '\0';
    }
    rep = redisCommand(r->c, "CLIENT ID");
    if (!rep || rep->type != REDIS_REPLY_INTEGER) {
        pc_warn("hub", "redis: CLIENT ID failed: %s",
                rep ? (rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply")
                    : r->c->errstr);
        if (rep)
            freeReplyObject(rep);
        redisFree(r->c);
        r->c = NULL;
        return -1;
    }
    id = rep->integer;
    freeReplyObject(rep);
    /* named for CLIENT LIST: which connections are the gateway's readers */
    rep = redisCommand(r->c, "CLIENT SETNAME pipecast-hub-%u", r->s->idx);
    if (!rep) {
        pc_warn("hub", "redis: CLIENT SETNAME failed: %s", r->c->errstr);
        redisFree(r->c);
        r->c = NULL;
        return -1;
    }
    freeReplyObject(rep); /* an error reply (a proxy without CLIENT SETNAME) does not matter */
    pthread_mutex_lock(&h->mu);
    r->s->reader_id = id;
    r->s->reader_fd = r->c->fd;
    r->s->dirty = 1;
    r->s->failing = 0;
    if (is_stopping(h)) /* gw_hub_stop ran before the fd was known: do its shutdown */
        shutdown(r->c->fd, SHUT_RDWR);
    pthread_mutex_unlock(&h->mu);
    return 0;
}

static void reader_disconnect(struct gw_hub *h, struct reader *r)
{
    if (!r->c)
        return;
    pthread_mutex_lock(&h->mu);
    r->s->reader_id = 0;
    r->s->reader_fd = -1;
    pthread_mutex_unlock(&h->mu);
    redisFree(r->c);
    r->c = NULL;
}

static int reserve_slots(struct slot **arr, size_t *cap, size_t need)
{
    size_t ncap = *cap ? *cap : 16;
    struct slot *n;

    if (need <= *cap)
        return 0;
    while (ncap < need)
        ncap *= 2;
    n = realloc(*arr, ncap * sizeof(*n));
    if (!n)
        return PC_ENOMEM;
    *arr = n;
    *cap = ncap;
    return 0;
}

/* Copy the shard's channel set: keys to XREAD (with their last ids) and keys to set up. */
static int reader_snapshot(struct gw_hub *h, struct reader *r)
{
    struct shard *s = r->s;
    int rc = 0;

    pthread_mutex_lock(&h->mu);
    if (!s->dirty && r->valid) {
        /* the set did not change: reader_process kept the ids current (with a thousand
         * channels, rebuilding this every round was most of the reader's time) */
        pthread_mutex_unlock(&h->mu);
        return 0;
    }
    r->nkeys = 0;
    r->ninit = 0;
    s->dirty = 0;
    for (struct gw_channel *ch = s->chans; ch && rc == 0; ch = ch->snext) {
        pthread_mutex_lock(&ch->mu);
        if (ch->bad) {
            /* not followed */
        } else if (!ch->ready) {
            rc = reserve_slots(&r->init, &r->capinit, r->ninit + 1);
            if (rc == 0)
                memcpy(r->init[r->ninit++].key, ch->key, sizeof(ch->key));
        } else {
            rc = reserve_slots(&r->keys, &r->capkeys, r->nkeys + 1);
            if (rc == 0) {
                memcpy(r->keys[r->nkeys].key, ch->key, sizeof(ch->key));
                pc_id_format(&ch->last_id, r->keys[r->nkeys].id);
                ch->reader_slot = (long)r->nkeys;
                r->nkeys++;
            }
        }
        pthread_mutex_unlock(&ch->mu);
    }
    if (rc != 0)
        s->dirty = 1;
    /* channels set up now (reader_init) join at the next snapshot */
    r->valid = rc == 0 && r->ninit == 0;
    pthread_mutex_unlock(&h->mu);
    return rc;
}

static redisReply *reader_get_reply(struct reader *r)
{
    void *v = NULL;

    if (redisGetReply(r->c, &v) != REDIS_OK)
        return NULL;
    return v;
}

static int is_wrongtype(const redisReply *rep)
{
    return rep->type == REDIS_REPLY_ERROR && strncmp(rep->str, "WRONGTYPE", 9) == 0;
}

/* Set up new channels: base_id = last_id = the stream's current last id (0-0 when none). */
static enum round reader_init(struct gw_hub *h, struct reader *r)
{
    enum round res = ROUND_OK;

    for (size_t i = 0; i < r->ninit; i++) {
        const char *argv[6] = {"XREVRANGE", r->init[i].key, "+", "-", "COUNT", "1"};
        size_t argvlen[6] = {9, strlen(r->init[i].key), 1, 1, 5, 1};

        redisAppendCommandArgv(r->c, 6, argv, argvlen);
    }
    for (size_t i = 0; i < r->ninit; i++) {
        redisReply *rep = reader_get_reply(r);
        const char *name = pc_key_channel_name(r->init[i].key, h->prefix);
        struct gw_channel *ch;

        if (!rep) {
            if (!is_stopping(h))
                pc_warn("hub", "redis: connection lost: %s", r->c->errstr);
            return ROUND_LOST;
        }
        ch = name ? hub_ref(h, name, NULL) : NULL;
        if (ch) {
            pthread_mutex_lock(&ch->mu);
            if (!ch->ready && !ch->bad) {
                struct pc_id id = {0, 0};
                int ok = rep->type == REDIS_REPLY_ARRAY;

                if (ok && rep->elements > 0) {
                    const redisReply *e = rep->element[0];

                    ok = e->type == REDIS_REPLY_ARRAY && e->elements >= 1 &&
                         e->element[0]->type == REDIS_REPLY_STRING &&
                         pc_id_parse(e->element[0]->str, e->element[0]->len, 0, &id) == 0;
                }
                if (ok) {
                    ch->base_id = id;
                    ch->last_id = id;
                    ch->ready = 1;
                    channel_notify(ch);
                } else if (is_wrongtype(rep)) {
                    pc_warn("hub", "channel \"%s\": key %s is not a stream", ch->name, ch->key);
                    ch->bad = 1;
                    channel_notify(ch);
                } else {
                    pc_warn("hub", "redis: XREVRANGE %s: %s", ch->key,
                            rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
                    res = ROUND_ERROR;
                }
            }
            pthread_mutex_unlock(&ch->mu);
            (void)hub_unref(h, ch); /* its own shard: no wake needed */
        }
        freeReplyObject(rep);
    }
    return res;
}

/* XREAD failed with WRONGTYPE: find the keys that are not streams and stop following them. */
static enum round reader_check_types(struct gw_hub *h, struct reader *r)
{
    for (size_t i = 0; i < r->nkeys; i++) {
        const char *argv[2] = {"TYPE", r->keys[i].key};
        size_t argvlen[2] = {4, strlen(r->keys[i].key)};

        redisAppendCommandArgv(r->c, 2, argv, argvlen);
    }
    for (size_t i = 0; i < r->nkeys; i++) {
        redisReply *rep = reader_get_reply(r);
        const char *name = pc_key_channel_name(r->keys[i].key, h->prefix);
        struct gw_channel *ch;

        if (!rep)
            return ROUND_LOST;
        if (rep->type == REDIS_REPLY_STATUS && strcmp(rep->str, "stream") != 0 &&
            strcmp(rep->str, "none") != 0 && name && (ch = hub_ref(h, name, NULL)) != NULL) {
            pthread_mutex_lock(&ch->mu);
            pc_warn("hub", "channel \"%s\": key %s is a %s, not a stream", ch->name, ch->key,
                    rep->str);
            ch->bad = 1;
            channel_notify(ch);
            pthread_mutex_unlock(&ch->mu);
            (void)hub_unref(h, ch); /* its own shard: no wake needed */
        }
        freeReplyObject(rep);
    }
    return ROUND_ERROR;
}

/* Find a field of an entry's field/value array; NULL when absent. */
static const redisReply *entry_field(const redisReply *fields, const char *name, size_t nl)
{
    if (!fields || fields->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *f = fields->element[i];

        if (f->type == REDIS_REPLY_STRING && f->len == nl && memcmp(f->str, name, nl) == 0)
            return fields->element[i + 1]->type == REDIS_REPLY_STRING ? fields->element[i + 1]
                                                                      : NULL;
    }
    return NULL;
}

/* Encode one stream's new entries outside any lock, then append them to its ring. */
static void reader_process(struct gw_hub *h, struct reader *r, const redisReply *stream)
{
    const redisReply *key, *entries;
    struct ring_entry *tmp;
    struct gw_channel *ch;
    struct pc_id last = {0, 0};
    const char *name;
    size_t k = 0;
    int have_last = 0;

    if (stream->type != REDIS_REPLY_ARRAY || stream->elements != 2)
        return;
    key = stream->element[0];
    entries = stream->element[1];
    if (key->type != REDIS_REPLY_STRING || entries->type != REDIS_REPLY_ARRAY ||
        entries->elements == 0)
        return;
    name = pc_key_channel_name(key->str, h->prefix);
    if (!name)
        return;
    if (!(ch = hub_ref(h, name, r->s))) {
        /* gone, or another reader's since the snapshot (subscribed again, or moved) */
        r->valid = 0;
        return;
    }
    tmp = calloc(entries->elements, sizeof(*tmp));
    if (!tmp) {
        /* last_id does not move: the next XREAD asks for these entries again */
        (void)hub_unref(h, ch); /* its own shard: no wake needed */
        return;
    }
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        const redisReply *data, *ev, *partial;
        struct pc_id id;
        size_t evlen = 0;
        char *mem;

        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
            e->element[0]->type != REDIS_REPLY_STRING ||
            pc_id_parse(e->element[0]->str, e->element[0]->len, 0, &id) != 0)
            continue;
        last = id;
        have_last = 1;
        data = entry_field(e->element[1], "data", 4);
        ev = entry_field(e->element[1], "event", 5);
        partial = entry_field(e->element[1], "partial", 7);
        if (!data) {
            gw_metrics_add(&h->metrics->sse_events_dropped, 1);
            continue;
        }
        if (ev) {
            if (!pc_event_valid(ev->str, ev->len)) {
                pc_debug("hub", "%s %s: invalid event name, entry skipped", key->str,
                         e->element[0]->str);
                gw_metrics_add(&h->metrics->sse_events_dropped, 1);
                continue;
            }
            evlen = ev->len;
        }
        pc_buf_reset(&r->scratch);
        if (pc_sse_event(&r->scratch, e->element[0]->str, ev ? ev->str : NULL, data->str,
                         data->len) != 0 ||
            !(mem = malloc(r->scratch.len + evlen + 1))) {
            pc_warn("hub", "%s %s: entry of %zu bytes cannot be encoded, skipped", key->str,
                    e->element[0]->str, data->len);
            gw_metrics_add(&h->metrics->sse_events_dropped, 1);
            continue;
        }
        memcpy(mem, r->scratch.data, r->scratch.len);
        tmp[k].id = id;
        tmp[k].sse = mem;
        tmp[k].sse_len = r->scratch.len;
        /* pc_sse_event wrote "id: <id>\n" first; a multi-channel stream rewrites that line */
        tmp[k].body_off = (size_t)((char *)memchr(mem, '\n', r->scratch.len) - mem) + 1;
        /* then "event: <ev>\n" (a valid name is ASCII: its length is unchanged), then data */
        tmp[k].data_off = 0;
        if (partial && partial->len == 1 && partial->str[0] == '1')
            tmp[k].data_off = tmp[k].body_off + (ev ? 7 + evlen + 1 : 0);
        tmp[k].event = NULL;
        if (ev) {
            memcpy(mem + r->scratch.len, ev->str, evlen);
            mem[r->scratch.len + evlen] = '\0';
            tmp[k].event = mem + r->scratch.len;
        }
        tmp[k].cost = r->scratch.len + evlen + HUB_ENTRY_OVERHEAD;
        k++;
    }
    if (r->scratch.cap > (1u << 20))
        pc_buf_free(&r->scratch); /* do not keep a huge scratch buffer around */

    pthread_mutex_lock(&ch->mu);
    /* A channel that was re-created since the snapshot is set up again first. */
    if (ch->ready && !ch->bad) {
        for (size_t i = 0; i < k; i++) {
            if (pc_id_cmp(&tmp[i].id, &ch->last_id) > 0) {
                ring_push(h, ch, &tmp[i]);
                tmp[i].sse = NULL;
            }
        }
        if (have_last && pc_id_cmp(&last, &ch->last_id) > 0)
            ch->last_id = last;
        if (ch->reader_slot >= 0 && (size_t)ch->reader_slot < r->nkeys &&
            strcmp(r->keys[ch->reader_slot].key, ch->key) == 0)
            pc_id_format(&ch->last_id, r->keys[ch->reader_slot].id);
        else
            r->valid = 0; /* not in the snapshot: take a new one */
        channel_notify(ch);
    } else {
        r->valid = 0; /* re-created since the snapshot */
    }
    pthread_mutex_unlock(&ch->mu);
    (void)hub_unref(h, ch); /* its own shard: no wake needed */
    for (size_t i = 0; i < k; i++)
        free(tmp[i].sse);
    free(tmp);
}

static enum round reader_round(struct gw_hub *h, struct reader *r)
{
    size_t argc;
    redisReply *rep;
    enum round res = ROUND_OK;

    if (reader_snapshot(h, r) != 0)
        return ROUND_ERROR;
    if (is_stopping(h))
        return ROUND_STOP;
    if (r->ninit > 0)
        return reader_init(h, r);
    if (r->nkeys == 0) {
        pthread_mutex_lock(&h->mu);
        while (!r->s->dirty && !is_stopping(h))
            pthread_cond_wait(&r->s->cond, &h->mu);
        pthread_mutex_unlock(&h->mu);
        return ROUND_OK;
    }

    argc = 6 + 2 * r->nkeys;
    if (argc > r->capargv) {
        const char **a = realloc(r->argv, argc * sizeof(*a));
        size_t *l;

        if (!a)
            return ROUND_ERROR;
        r->argv = a;
        l = realloc(r->argvlen, argc * sizeof(*l));
        if (!l)
            return ROUND_ERROR;
        r->argvlen = l;
        r->capargv = argc;
    }
    r->argv[0] = "XREAD";
    r->argv[1] = "BLOCK";
    r->argv[2] = HUB_XREAD_BLOCK_MS;
    r->argv[3] = "COUNT";
    r->argv[4] = HUB_XREAD_COUNT;
    r->argv[5] = "STREAMS";
    for (size_t i = 0; i < 6; i++)
        r->argvlen[i] = strlen(r->argv[i]);
    for (size_t i = 0; i < r->nkeys; i++) {
        r->argv[6 + i] = r->keys[i].key;
        r->argvlen[6 + i] = strlen(r->keys[i].key);
        r->argv[6 + r->nkeys + i] = r->keys[i].id;
        r->argvlen[6 + r->nkeys + i] = strlen(r->keys[i].id);
    }
    rep = redisCommandArgv(r->c, (int)argc, r->argv, r->argvlen);
    if (!rep) {
        if (is_stopping(h))
            return ROUND_STOP;
        pc_warn("hub", "redis: connection lost: %s; reconnecting", r->c->errstr);
        return ROUND_LOST;
    }
    switch (rep->type) {
    case REDIS_REPLY_NIL: /* CLIENT UNBLOCK (the set changed) or the backstop timeout */
        break;
    case REDIS_REPLY_ARRAY:
        for (size_t i = 0; i < rep->elements; i++)
            reader_process(h, r, rep->element[i]);
        break;
    case REDIS_REPLY_ERROR:
        pc_warn("hub", "redis: XREAD: %s", rep->str);
        res = is_wrongtype(rep) ? reader_check_types(h, r) : ROUND_ERROR;
        break;
    default:
        pc_warn("hub", "redis: XREAD: unexpected reply type %d", rep->type);
        res = ROUND_ERROR;
        break;
    }
    freeReplyObject(rep);
    return res;
}

static void *reader_main(void *arg)
{
    struct shard *s = arg;
    struct gw_hub *h = s->h;
    struct reader r;
    char name[16];
    int failing = 0; /* consecutive connection failures; the next success is a reconnect */

    memset(&r, 0, sizeof(r));
    r.s = s;
    snprintf(name, sizeof(name), "pc-hub-%u", s->idx); /* for top -H, /proc/<pid>/task */
    (void)prctl(PR_SET_NAME, name, 0, 0, 0);
    pc_backoff_init(&r.bo, 100, 2000);
    pc_buf_init(&r.scratch, HUB_ENTRY_MAX);
    while (!is_stopping(h)) {
        enum round res;

        if (!r.c) {
            reader_wait_work(h, &r);
            if (is_stopping(h))
                break;
            if (reader_connect(h, &r, failing > 0) != 0) {
                gw_metrics_add(&h->metrics->redis_errors, 1);
                failing++;
                reader_hand_off(h, s);
                reader_sleep(h, &r, pc_backoff_next(&r.bo));
                continue;
            }
            if (failing) {
                gw_metrics_add(&h->metrics->redis_reconnects, 1);
                pc_info("hub", "redis: reader %u connected again, resuming its %zu channel(s)",
                        s->idx, s->nchannels);
            }
            failing = 0;
        }
        res = reader_round(h, &r);
        if (res != ROUND_OK)
            r.valid = 0; /* a channel may have turned bad, or the connection is new */
        if (res == ROUND_OK) {
            pc_backoff_reset(&r.bo);
            continue;
        }
        if (res == ROUND_STOP || is_stopping(h))
            break;
        gw_metrics_add(&h->metrics->redis_errors, 1);
        if (res == ROUND_LOST) {
            reader_disconnect(h, &r);
            failing = 1;
        }
        reader_sleep(h, &r, pc_backoff_next(&r.bo));
    }
    reader_disconnect(h, &r);
    free(r.keys);
    free(r.init);
    free(r.argv);
    free(r.argvlen);
    pc_buf_free(&r.scratch);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Life cycle                                                                */
/* ------------------------------------------------------------------------ */

struct gw_hub *gw_hub_new(const struct pc_redis_url *u, const char *prefix, size_t ring_entries,
                          size_t ring_bytes, unsigned readers, struct gw_metrics *m, char *err,
                          size_t errlen)
{
    struct gw_hub *h;

    if (!pc_prefix_valid(prefix) || ring_entries == 0 || ring_bytes == 0 || readers == 0 ||
        readers > GW_HUB_READERS_MAX) {
        snprintf(err, errlen, "hub: invalid settings");
        return NULL;
    }
    h = calloc(1, sizeof(*h));
    if (!h || !(h->shards = calloc(readers, sizeof(*h->shards)))) {
        free(h);
        snprintf(err, errlen, "hub: %s", pc_strerror(PC_ENOMEM));
        return NULL;
    }
    h->nshards = readers;
    for (unsigned i = 0; i < readers; i++) {
        h->shards[i].h = h;
        h->shards[i].idx = i;
        h->shards[i].reader_fd = -1;
        cond_init_monotonic(&h->shards[i].cond);
    }
    h->url = *u;
    snprintf(h->prefix, sizeof(h->prefix), "%s", prefix);
    h->ring_max = ring_entries;
    h->ring_bytes_max = ring_bytes;
    h->metrics = m;
    atomic_init(&h->stopping, 0);
    pthread_mutex_init(&h->mu, NULL);
    pthread_mutex_init(&h->ctl_mu, NULL);
    return h;
}

/* Start @p s's reader thread (the next one: shards start in order). @return 0 or PC_ENOMEM. */
static int shard_start(struct gw_hub *h, struct shard *s)
{
    pthread_attr_t attr;
    int rc;

    /* a reader's data is on the heap (replies, scratch, snapshot): a small stack will do */
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, HUB_READER_STACK);
    rc = pthread_create(&s->thread, &attr, reader_main, s);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        pc_warn("hub", "reader thread %u: %s (its channels go to the running readers)", s->idx,
                strerror(rc));
        return PC_ENOMEM;
    }
    h->nstarted++;
    return 0;
}

int gw_hub_start(struct gw_hub *h)
{
    int rc;

    pthread_mutex_lock(&h->mu);
    rc = h->nstarted ? 0 : shard_start(h, &h->shards[0]); /* the others start as channels come */
    pthread_mutex_unlock(&h->mu);
    return rc;
}

int gw_hub_stopping(const struct gw_hub *h)
{
    return is_stopping(h);
}

void gw_hub_stop(struct gw_hub *h)
{
    atomic_store(&h->stopping, 1);
    pthread_mutex_lock(&h->mu);
    /* A reader may sit in XREAD BLOCK: make its read return at once. */
    for (unsigned i = 0; i < h->nshards; i++) {
        if (h->shards[i].reader_fd >= 0)
            shutdown(h->shards[i].reader_fd, SHUT_RDWR);
        pthread_cond_broadcast(&h->shards[i].cond);
    }
    for (size_t b = 0; b < HUB_BUCKETS; b++) {
        for (struct gw_channel *ch = h->buckets[b]; ch; ch = ch->next) {
            pthread_mutex_lock(&ch->mu);
            channel_notify(ch);
            pthread_mutex_unlock(&ch->mu);
        }
    }
    pthread_mutex_unlock(&h->mu);
}

void gw_hub_free(struct gw_hub *h)
{
    if (!h)
        return;
    gw_hub_stop(h);
    /* no reader starts once stopping (subscriptions are refused) */
    for (unsigned i = 0; i < h->nstarted; i++)
        pthread_join(h->shards[i].thread, NULL);
    for (size_t b = 0; b < HUB_BUCKETS; b++) {
        while (h->buckets[b]) {
            struct gw_channel *ch = h->buckets[b];

            pc_warn("hub", "channel \"%s\" still has %d subscriber(s) at exit", ch->name, ch->refs);
            h->buckets[b] = ch->next;
            channel_free(ch);
        }
    }
    if (h->ctl)
        redisFree(h->ctl);
    for (unsigned i = 0; i < h->nshards; i++)
        pthread_cond_destroy(&h->shards[i].cond);
    free(h->shards);
    pthread_mutex_destroy(&h->mu);
    pthread_mutex_destroy(&h->ctl_mu);
    free(h);
}
