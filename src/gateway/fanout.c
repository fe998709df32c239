/* fanout.c -- writer threads for live SSE streams (see fanout.h).
 *
 * One writer loop, one round at a time:
 *
 *   epoll_wait (sockets: EPOLLIN|EPOLLRDHUP, EPOLLOUT while bytes wait; eventfd)
 *     ├─ socket events: closed → leave; writable → send what waits, then take more
 *     ├─ inbox: adopt new streams (listen on their channel, send what they missed)
 *     ├─ queued channels, one at a time: take the new entries from the ring once
 *     │    (shared batch), send them to each of this writer's streams there that
 *     │    is not waiting for its socket
 *     ├─ every SWEEP_MS: ping idle streams, drop streams stalled past the timeout
 *     └─ streams that left this round: out of epoll, unlisten, done callback
 *
 * A stream only leaves at the end of a round, so that no event or list walk
 * of the same round sees it freed.
 */
#include "fanout.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "pipecast/log.h"
#include "pipecast/redis.h"
#include "pipecast/sse.h"

#define FO_EVENTS 256
#define FO_SWEEP_MS 250
#define FO_OUT_KEEP (16u << 10) /* an idle stream keeps at most this much buffer */

enum { LV_LIVE = 1, LV_LEAVING = 2 };

struct writer {
    struct gw_fanout *fo;
    unsigned idx;
    pthread_t th;
    int started;
    int ep;  /* epoll set */
    int efd; /* eventfd: inbox or queue not empty, or stop */

    pthread_mutex_t mu; /* below: inbox and queue */
    struct gw_live *inbox;
    struct gw_channel **queue; /* channels with news for this writer, each at most once */
    size_t nqueue, capqueue;
    int woken;  /* efd was written since the writer last drained it */
    int closed; /* stopped: adopts nothing more */

    /* writer thread only */
    struct pc_buf shared; /* the ring bytes of one news round, sent to every plain stream */
    struct gw_live *streams;
    size_t nchannels; /* channels with at least one listener of this writer */
    struct gw_live *leaving;
    long long next_sweep;
};

struct gw_fanout {
    struct gw_hub *hub;
    struct gw_metrics *metrics;
    long long ping_ms, timeout_ms;
    size_t soft_max, stack_size;
    atomic_int stopping;
    atomic_uint next;
    unsigned nw;
    struct writer *w;

    pthread_mutex_t tmu; /* stream threads */
    pthread_cond_t tcond;
    int nthreads;
};

static struct gw_live *of_listener(struct gw_listener *l)
{
    return (struct gw_live *)(void *)((char *)l - offsetof(struct gw_live, lis));
}

static void writer_wake_locked(struct writer *w)
{
    uint64_t one = 1;

    if (!w->woken) {
        w->woken = 1;
        if (write(w->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            pc_warn("fanout", "eventfd: %s", strerror(errno));
    }
}

/* The hub's listen callback, under the channel lock: queue the channel, wake the writer. */
static void on_news(void *arg, unsigned group, struct gw_channel *ch)
{
    struct gw_fanout *fo = arg;
    struct writer *w;

    if (group >= fo->nw)
        return;
    w = &fo->w[group];
    pthread_mutex_lock(&w->mu);
    /* capqueue >= the writer's channels >= queued channels: no allocation here */
    if (w->nqueue < w->capqueue)
        w->queue[w->nqueue++] = ch;
    writer_wake_locked(w);
    pthread_mutex_unlock(&w->mu);
}

/* ------------------------------------------------------------------------ */
/* One stream                                                                */
/* ------------------------------------------------------------------------ */

static void lv_leave(struct writer *w, struct gw_live *lv, enum gw_live_end why)
{
    if (lv->state != LV_LIVE)
        return;
    lv->state = LV_LEAVING;
    lv->why = why;
    lv->link = w->leaving;
    w->leaving = lv;
}

static void lv_want_out(struct writer *w, struct gw_live *lv, int on)
{
    struct epoll_event ev;

    if (lv->want_out == on)
        return;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0);
    ev.data.ptr = lv;
    if (epoll_ctl(w->ep, EPOLL_CTL_MOD, lv->fd, &ev) != 0) {
        lv_leave(w, lv, GW_LIVE_CLOSED);
        return;
    }
    lv->want_out = on;
}

/*
 * Write as much of @p p as the socket takes now, without blocking. @return the
 * bytes written (progress resets the stall clock), or -1: the client is gone
 * (the stream leaves).
 */
static ssize_t lv_write(struct writer *w, struct gw_live *lv, const char *p, size_t len,
                        long long now)
{
    size_t off = 0;

    while (off < len) {
        ssize_t k = send(lv->fd, p + off, len - off, MSG_NOSIGNAL | MSG_DONTWAIT);

        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            lv_leave(w, lv, GW_LIVE_CLOSED);
            return -1;
        }
        if (k <= 0)
            break; /* the socket is full */
        off += (size_t)k;
        lv->last_write_ms = now;
        lv->stalled_ms = 0;
    }
    return (ssize_t)off;
}

/* The socket is full and bytes wait in the stream's buffer: wait for EPOLLOUT. */
static void lv_wait_out(struct writer *w, struct gw_live *lv, long long now)
{
    if (!lv->stalled_ms)
        lv->stalled_ms = now;
    lv_want_out(w, lv, 1);
}

/*
 * Send what waits in the stream's buffer. @return 1 when all of it went out,
 * 0 when the rest waits for the socket (EPOLLOUT) or the stream left.
 */
static int lv_send(struct writer *w, struct gw_live *lv, long long now)
{
    ssize_t k = lv_write(w, lv, lv->out->data + lv->off, lv->out->len - lv->off, now);

    if (k < 0)
        return 0;
    lv->off += (size_t)k;
    if (lv->off < lv->out->len) {
        lv_wait_out(w, lv, now); /* keep what is left */
        return 0;
    }
    lv->off = 0;
    pc_buf_reset(lv->out); /* a busy stream keeps its buffer; the sweep trims idle ones */
    lv_want_out(w, lv, 0);
    return lv->state == LV_LIVE;
}

/* What a look into the ring means for the stream. @return 1 when it has bytes to send. */
static int lv_took(struct writer *w, struct gw_live *lv, enum gw_poll rc)
{
    switch (rc) {
    case GW_POLL_DATA:
        return 1;
    case GW_POLL_TIMEOUT: /* nothing new */
        return 0;
    case GW_POLL_STOP:
        lv_leave(w, lv, GW_LIVE_CLOSED);
        return 0;
    default: /* behind the ring, not set up, bad key, no memory: the thread copes */
        lv_leave(w, lv, GW_LIVE_BEHIND);
        return 0;
    }
}

/*
 * Send what waits, then take more from the ring and send it, until the ring
 * has nothing new or the socket is full.
 */
static void lv_pump(struct writer *w, struct gw_live *lv, long long now)
{
    struct gw_fanout *fo = w->fo;

    while (lv->state == LV_LIVE && lv_send(w, lv, now)) {
        struct gw_ring_pos pos;
        size_t n = 0;
        enum gw_poll rc = gw_channel_poll(lv->ch, lv->cursor, lv->filter, lv->fmt, NULL, lv->out,
                                          fo->soft_max, 0, &n, &pos);

        gw_metrics_add(&fo->metrics->sse_events_sent, n);
        if (!lv_took(w, lv, rc))
            return;
    }
}

/*
 * Send @p len bytes of the writer's shared batch (not the stream's own
 * buffer, which is empty). What the socket does not take is copied into the
 * stream's buffer and waits for EPOLLOUT, like any unsent bytes. @return 1
 * when all of it went out, 0 when the rest waits or the stream left.
 */
static int lv_send_shared(struct writer *w, struct gw_live *lv, const char *p, size_t len,
                          long long now)
{
    ssize_t k = lv_write(w, lv, p, len, now);

    if (k < 0)
        return 0;
    if ((size_t)k == len)
        return lv->state == LV_LIVE;
    /* the cursor is past these bytes already: keep them, or end the stream (it resumes) */
    lv->off = 0;
    if (pc_buf_append(lv->out, p + k, len - (size_t)k) != 0) {
        lv_leave(w, lv, GW_LIVE_CLOSED);
        return 0;
    }
    lv_wait_out(w, lv, now);
    return 0;
}

/* The stream gets the ring's bytes unchanged: no event filter, no id or event line rewritten. */
static int lv_plain(const struct gw_live *lv)
{
    const struct gw_idfmt *f = lv->fmt;

    return (!lv->filter || lv->filter->n == 0) &&
           (!f || (!f->mark_partial && f->prelen == 0 && f->postlen == 0));
}

/*
 * News on @p ch for this writer's streams there that are not waiting for
 * their socket. What a plain stream takes from the ring depends only on its
 * cursor, and live streams of a channel share one cursor (the reader's
 * position): so the writer takes the new entries once, into its shared
 * batch, under one short hold of the channel lock (the reader waits for
 * it), and sends those bytes to every such stream without copying them. A
 * stream at another cursor or with a filter or an id format takes its own
 * entries into its own buffer, in the same hold of the lock.
 */
static void writer_channel(struct writer *w, struct gw_channel *ch, long long now)
{
    struct gw_fanout *fo = w->fo;
    struct pc_buf *sh = &w->shared;
    struct pc_id from = {0, 0}, to = {0, 0};
    struct gw_ring_pos pos;
    enum gw_poll shrc = GW_POLL_TIMEOUT;
    unsigned long long sent = 0;
    size_t nsh = 0, nown = 0, n = 0;
    int have = 0, drained = 0;

    /* cursors and buffers are the writer's: sorted out without the lock */
    for (struct gw_listener *l = gw_channel_listeners(ch, w->idx); l; l = l->next) {
        struct gw_live *lv = of_listener(l);

        lv->took = -1;
        lv->shared = 0;
        if (lv->state != LV_LIVE || lv->out->len > 0)
            continue; /* waiting for its socket: it takes more when that drains */
        if (lv_plain(lv)) {
            if (!have) {
                have = 1;
                from = *lv->cursor;
                sh->max = lv->out->max; /* what one stream could take */
            }
            if (pc_id_cmp(lv->cursor, &from) == 0) {
                lv->shared = 1;
                nsh++;
                continue;
            }
        }
        lv->took = 0; /* takes its own */
        nown++;
    }
    if (nsh == 0 && nown == 0)
        return;
    pc_buf_reset(sh);
    gw_channel_lock(ch);
    if (nsh > 0) {
        to = from;
        shrc = gw_channel_take_locked(ch, &to, NULL, NULL, sh, fo->soft_max, &n, &drained, &pos);
        sent += (unsigned long long)n * nsh;
    }
    for (struct gw_listener *l = gw_channel_listeners(ch, w->idx); nown > 0 && l; l = l->next) {
        struct gw_live *lv = of_listener(l);

        if (lv->took < 0 || lv->shared)
            continue;
        n = 0;
        lv->took = (int)gw_channel_take_locked(ch, lv->cursor, lv->filter, lv->fmt, lv->out,
                                               fo->soft_max, &n, &lv->drained, &pos);
        sent += n;
    }
    gw_channel_unlock(ch);
    gw_metrics_add(&fo->metrics->sse_events_sent, sent);
    for (struct gw_listener *l = gw_channel_listeners(ch, w->idx); l; l = l->next) {
        struct gw_live *lv = of_listener(l);
        int all;

        if (lv->shared) {
            *lv->cursor = to;
            lv->took = (int)shrc;
            lv->drained = drained;
        }
        if (lv->took < 0 || lv->state != LV_LIVE || !lv_took(w, lv, (enum gw_poll)lv->took))
            continue;
        all = lv->shared ? lv_send_shared(w, lv, sh->data, sh->len, now) : lv_send(w, lv, now);
        /* drained: it has all there was; later entries call again */
        if (all && !lv->drained)
            lv_pump(w, lv, now);
    }
    /* a burst is over: give a large batch buffer back */
    if (sh->cap > FO_OUT_KEEP)
        pc_buf_free(sh);
    else
        pc_buf_reset(sh);
}

static void lv_ping(struct writer *w, struct gw_live *lv, long long now)
{
    if (lv->out->len > 0) /* bytes are waiting: no ping needed */
        return;
    if (pc_sse_comment(lv->out, "ping") != 0) {
        lv_leave(w, lv, GW_LIVE_CLOSED);
        return;
    }
    lv_pump(w, lv, now);
}

/* The client sent something or closed: EOF or an error ends the stream, data is ignored. */
static void lv_readable(struct writer *w, struct gw_live *lv)
{
    char buf[512];
    ssize_t k = recv(lv->fd, buf, sizeof(buf), MSG_DONTWAIT);

    if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        lv_leave(w, lv, GW_LIVE_CLOSED);
}

/* ------------------------------------------------------------------------ */
/* The writer loop                                                           */
/* ------------------------------------------------------------------------ */

static void writer_dequeue(struct writer *w, struct gw_channel *ch)
{
    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->nqueue; i++) {
        if (w->queue[i] == ch) {
            memmove(&w->queue[i], &w->queue[i + 1], (w->nqueue - i - 1) * sizeof(*w->queue));
            w->nqueue--;
            break;
        }
    }
    pthread_mutex_unlock(&w->mu);
}

/* Take the streams handed to @p w so far; with @p close, it adopts none after this. */
static struct gw_live *inbox_take(struct writer *w, int close)
{
    struct gw_live *in;

    pthread_mutex_lock(&w->mu);
    if (close)
        w->closed = 1;
    in = w->inbox;
    w->inbox = NULL;
    pthread_mutex_unlock(&w->mu);
    return in;
}

/* Take a stream in: epoll, listen on its channel, send what it missed. */
static void writer_adopt(struct writer *w, struct gw_live *lv, long long now)
{
    struct epoll_event ev;

    lv->state = LV_LIVE;
    lv->off = 0;
    lv->stalled_ms = 0;
    lv->want_out = 0;
    lv->in_ep = 0;
    lv->listening = 0;
    lv->last_write_ms = now;
    lv->prev = NULL;
    lv->next = w->streams;
    if (w->streams)
        w->streams->prev = lv;
    w->streams = lv;
    lv->lis.prev = lv->lis.next = NULL;
    memset(&ev, 0, sizeof(ev));
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = lv;
    if (epoll_ctl(w->ep, EPOLL_CTL_ADD, lv->fd, &ev) != 0) {
        lv_leave(w, lv, GW_LIVE_CLOSED);
        return;
    }
    lv->in_ep = 1;
    /* room to queue every channel this writer listens on, before it can be queued */
    if (w->nchannels + 1 > w->capqueue) {
        size_t ncap = w->capqueue ? w->capqueue * 2 : 64;
        struct gw_channel **q;

        pthread_mutex_lock(&w->mu);
        q = realloc(w->queue, ncap * sizeof(*q));
        if (q) {
            w->queue = q;
            w->capqueue = ncap;
        }
        pthread_mutex_unlock(&w->mu);
        if (!q) {
            lv_leave(w, lv, GW_LIVE_CLOSED);
            return;
        }
    }
    if (gw_channel_listen(lv->ch, &lv->lis, w->idx))
        w->nchannels++;
    lv->listening = 1;
    lv_pump(w, lv, now);
}

/* End of a round: the streams that left go out of every structure, then to their owner. */
static void writer_reap(struct writer *w)
{
    while (w->leaving) {
        struct gw_live *lv = w->leaving;
        int rc;

        w->leaving = lv->link;
        if (lv->in_ep)
            epoll_ctl(w->ep, EPOLL_CTL_DEL, lv->fd, NULL);
        lv->in_ep = 0;
        if (lv->listening) {
            lv->listening = 0;
            rc = gw_channel_unlisten(lv->ch, &lv->lis);
            if (rc & GW_UNLISTEN_LAST)
                w->nchannels--;
            if (rc & GW_UNLISTEN_QUEUED) /* the channel may go away with this stream */
                writer_dequeue(w, lv->ch);
        }
        if (lv->prev)
            lv->prev->next = lv->next;
        else
            w->streams = lv->next;
        if (lv->next)
            lv->next->prev = lv->prev;
        lv->state = 0;
        lv->off = 0;
        lv->done(lv, lv->why);
    }
}

static void writer_sweep(struct writer *w, long long now)
{
    struct gw_fanout *fo = w->fo;

    for (struct gw_live *lv = w->streams; lv; lv = lv->next) {
        if (lv->state != LV_LIVE)
            continue;
        if (lv->stalled_ms && now - lv->stalled_ms >= fo->timeout_ms) {
            pc_debug("fanout", "%s: client takes nothing for %lld ms, dropped",
                     gw_channel_key(lv->ch), now - lv->stalled_ms);
            lv_leave(w, lv, GW_LIVE_CLOSED);
        } else if (now - lv->last_write_ms >= fo->ping_ms) {
            lv_ping(w, lv, now);
        } else if (lv->out->len == 0 && lv->out->cap > FO_OUT_KEEP &&
                   now - lv->last_write_ms >= FO_SWEEP_MS) {
            pc_buf_free(lv->out); /* a burst is over: give its buffer back */
        }
    }
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct gw_fanout *fo = w->fo;
    struct epoll_event evs[FO_EVENTS];

    w->next_sweep = pc_now_ms() + FO_SWEEP_MS;
    while (!atomic_load(&fo->stopping)) {
        long long now = pc_now_ms();
        int left = (int)(w->next_sweep > now ? w->next_sweep - now : 0);
        int n = epoll_wait(w->ep, evs, FO_EVENTS, left);
        struct gw_live *in;

        now = pc_now_ms();
        for (int i = 0; i < n; i++) {
            struct gw_live *lv = evs[i].data.ptr;

            if (!lv) { /* the eventfd */
                uint64_t v;

                if (read(w->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
                    pc_warn("fanout", "eventfd: %s", strerror(errno));
                pthread_mutex_lock(&w->mu);
                w->woken = 0;
                pthread_mutex_unlock(&w->mu);
                continue;
            }
            if (lv->state != LV_LIVE)
                continue;
            if (evs[i].events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
                lv_leave(w, lv, GW_LIVE_CLOSED);
                continue;
            }
            if (evs[i].events & EPOLLIN)
                lv_readable(w, lv);
            if ((evs[i].events & EPOLLOUT) && lv->state == LV_LIVE)
                lv_pump(w, lv, now);
        }

        in = inbox_take(w, 0);
        while (in) {
            struct gw_live *lv = in;

            in = lv->link;
            writer_adopt(w, lv, now);
        }

        for (;;) {
            struct gw_channel *ch = NULL;

            pthread_mutex_lock(&w->mu);
            if (w->nqueue > 0)
                ch = w->queue[--w->nqueue];
            pthread_mutex_unlock(&w->mu);
            if (!ch)
                break;
            /* news after this point call again; the streams there keep ch alive */
            gw_channel_notified(ch, w->idx);
            writer_channel(w, ch, now);
        }

        if (now >= w->next_sweep) {
            writer_sweep(w, now);
            w->next_sweep = now + FO_SWEEP_MS;
        }
        writer_reap(w);
    }
    /* stopping: every stream leaves */
    for (struct gw_live *lv = w->streams; lv; lv = lv->next)
        lv_leave(w, lv, GW_LIVE_CLOSED);
    writer_reap(w);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Life cycle                                                                */
/* ------------------------------------------------------------------------ */

struct gw_fanout *gw_fanout_new(struct gw_hub *h, struct gw_metrics *m, unsigned writers,
                                long long ping_ms, long long write_timeout_ms, size_t soft_max,
                                size_t stack_size)
{
    struct gw_fanout *fo;

    if (writers == 0 || writers > GW_LISTEN_GROUPS_MAX)
        return NULL;
    fo = calloc(1, sizeof(*fo));
    if (!fo)
        return NULL;
    fo->w = calloc(writers, sizeof(*fo->w));
    if (!fo->w) {
        free(fo);
        return NULL;
    }
    fo->hub = h;
    fo->metrics = m;
    fo->ping_ms = ping_ms;
    fo->timeout_ms = write_timeout_ms;
    fo->soft_max = soft_max;
    fo->stack_size = stack_size;
    fo->nw = writers;
    atomic_init(&fo->stopping, 0);
    atomic_init(&fo->next, 0);
    pthread_mutex_init(&fo->tmu, NULL);
    pthread_cond_init(&fo->tcond, NULL);
    for (unsigned i = 0; i < writers; i++) {
        fo->w[i].fo = fo;
        fo->w[i].idx = i;
        fo->w[i].ep = -1;
        fo->w[i].efd = -1;
        pc_buf_init(&fo->w[i].shared, 0);
        pthread_mutex_init(&fo->w[i].mu, NULL);
    }
    for (unsigned i = 0; i < writers; i++) {
        struct writer *w = &fo->w[i];
        struct epoll_event ev;

        w->ep = epoll_create1(EPOLL_CLOEXEC);
        w->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        memset(&ev, 0, sizeof(ev));
        ev.events = EPOLLIN;
        ev.data.ptr = NULL;
        if (w->ep < 0 || w->efd < 0 || epoll_ctl(w->ep, EPOLL_CTL_ADD, w->efd, &ev) != 0) {
            gw_fanout_free(fo);
            return NULL;
        }
    }
    /* the callback is set before any writer runs: listeners only come from writers */
    gw_hub_set_listen_cb(h, on_news, fo);
    for (unsigned i = 0; i < writers; i++) {
        if (pthread_create(&fo->w[i].th, NULL, writer_main, &fo->w[i]) != 0) {
            gw_fanout_free(fo);
            return NULL;
        }
        fo->w[i].started = 1;
    }
    return fo;
}

int gw_fanout_adopt(struct gw_fanout *fo, struct gw_live *lv)
{
    struct writer *w;

    if (atomic_load(&fo->stopping))
        return -1;
    w = &fo->w[atomic_fetch_add(&fo->next, 1) % fo->nw];
    pthread_mutex_lock(&w->mu);
    if (w->closed) {
        pthread_mutex_unlock(&w->mu);
        return -1;
    }
    lv->link = w->inbox;
    w->inbox = lv;
    writer_wake_locked(w);
    pthread_mutex_unlock(&w->mu);
    return 0;
}

struct spawn {
    struct gw_fanout *fo;
    void (*fn)(void *);
    void *arg;
};

static void *spawn_main(void *arg)
{
    struct spawn sp = *(struct spawn *)arg;

    free(arg);
    sp.fn(sp.arg);
    pthread_mutex_lock(&sp.fo->tmu);
    if (--sp.fo->nthreads == 0)
        pthread_cond_broadcast(&sp.fo->tcond);
    pthread_mutex_unlock(&sp.fo->tmu);
    return NULL;
}

int gw_fanout_spawn(struct gw_fanout *fo, void (*fn)(void *), void *arg)
{
    struct spawn *sp = malloc(sizeof(*sp));
    pthread_attr_t attr;
    pthread_t th;
    int rc;

    if (!sp)
        return -1;
    sp->fo = fo;
    sp->fn = fn;
    sp->arg = arg;
    pthread_mutex_lock(&fo->tmu);
    fo->nthreads++;
    pthread_mutex_unlock(&fo->tmu);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (fo->stack_size)
        pthread_attr_setstacksize(&attr, fo->stack_size);
    rc = pthread_create(&th, &attr, spawn_main, sp);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        free(sp);
        pthread_mutex_lock(&fo->tmu);
        if (--fo->nthreads == 0)
            pthread_cond_broadcast(&fo->tcond);
        pthread_mutex_unlock(&fo->tmu);
        return -1;
    }
    return 0;
}

void gw_fanout_stop(struct gw_fanout *fo)
{
    if (!fo || atomic_exchange(&fo->stopping, 1))
        return;
    for (unsigned i = 0; i < fo->nw; i++) {
        struct writer *w = &fo->w[i];

        struct gw_live *in;

        if (w->started) {
            pthread_mutex_lock(&w->mu);
            w->woken = 0;
            writer_wake_locked(w);
            pthread_mutex_unlock(&w->mu);
            pthread_join(w->th, NULL);
            w->started = 0;
        }
        /* streams handed over after the writer looked at its inbox for the last time */
        in = inbox_take(w, 1);
        while (in) {
            struct gw_live *lv = in;

            in = lv->link;
            lv->state = 0;
            lv->done(lv, GW_LIVE_CLOSED);
        }
    }
}

void gw_fanout_free(struct gw_fanout *fo)
{
    if (!fo)
        return;
    gw_fanout_stop(fo);
    pthread_mutex_lock(&fo->tmu);
    while (fo->nthreads > 0)
        pthread_cond_wait(&fo->tcond, &fo->tmu);
    pthread_mutex_unlock(&fo->tmu);
    for (unsigned i = 0; i < fo->nw; i++) {
        struct writer *w = &fo->w[i];

        if (w->ep >= 0)
            close(w->ep);
        if (w->efd >= 0)
            close(w->efd);
        pthread_mutex_destroy(&w->mu);
        free(w->queue);
        pc_buf_free(&w->shared);
    }
    pthread_mutex_destroy(&fo->tmu);
    pthread_cond_destroy(&fo->tcond);
    free(fo->w);
    free(fo);
}
