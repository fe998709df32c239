#!/usr/bin/env python3
"""The replay/live seam under load: a publisher XADDs numbered payloads continuously while
24 clients connect at random moments with Last-Event-ID set to a random earlier id (plus two
from=start). Each client must receive every id after its start exactly once, in order, with
no gap: compared with XRANGE at the end. The gateway runs with a small ring (--ring 64) so that
clients cross from Redis pages to the ring (and back) while entries keep coming."""

import random
import threading
import time

import pctest
from pctest import check

N_CLIENTS = 24
PUBLISH_SECONDS = 3.0


def main():
    port = pctest.fixture_redis()
    r = pctest.Redis(port)
    gw = pctest.Gateway(port, ["--ring", "64", "--max-clients", "100"])
    ch = pctest.uniq("seam")
    key = "pc:ch:" + ch
    pctest.on_exit(lambda: r.delete(key))
    rnd = random.Random()
    seed = rnd.randrange(1 << 30)
    rnd.seed(seed)
    pctest.log("seed %d" % seed)

    published = []
    lock = threading.Lock()
    stop = threading.Event()
    errors = []

    # some history before anyone connects
    pub = pctest.Redis(port)
    for i in range(200):
        published.append(pub.xadd(key, {"data": "n=%d" % len(published)}))

    def publisher():
        try:
            n = len(published)
            while not stop.is_set():
                burst = rnd.randint(1, 20)
                cmds = [["XADD", key, "*", "data", "n=%d" % (n + k)] for k in range(burst)]
                reps = pub.pipeline(cmds)
                with lock:
                    published.extend(x.decode() for x in reps)
                n += burst
                time.sleep(rnd.uniform(0, 0.004))
        except Exception as e:  # reported below
            errors.append("publisher: %r" % e)

    results = [None] * N_CLIENTS

    def client(k, delay, mode):
        try:
            time.sleep(delay)
            with lock:
                snapshot = list(published)
            if mode == "start":
                start, hdr = None, None
            elif rnd.random() < 0.6:
                start = snapshot[-rnd.randint(1, min(150, len(snapshot)))]  # near the tip
                hdr = {"Last-Event-ID": start}
            else:
                start = rnd.choice(snapshot)
                hdr = {"Last-Event-ID": start}
            c = pctest.sse_open(gw, ch, "", hdr, timeout=30)
            evs = c.read_until(lambda e: e.data == "END", timeout=40)
            c.close()
            results[k] = (start, evs)
        except Exception as e:
            errors.append("client %d: %s" % (k, e))

    t_pub = threading.Thread(target=publisher)
    t_pub.start()
    threads = []
    for k in range(N_CLIENTS):
        mode = "start" if k < 2 else "id"
        delay = rnd.uniform(0.1, PUBLISH_SECONDS - 0.3)
        t = threading.Thread(target=client, args=(k, delay, mode), daemon=True)
        t.start()
        threads.append(t)
    time.sleep(PUBLISH_SECONDS)
    stop.set()
    t_pub.join()
    end_id = pub.xadd(key, {"data": "END"})
    for t in threads:
        t.join(60 * pctest.SLOW)
    check(not errors, "errors: %s" % "; ".join(errors[:5]))
    check(all(t is not None for t in results), "some clients did not finish")

    entries = r.xrange_all(key)
    all_ids = [i for i, _ in entries]
    data_of = {i: f[b"data"].decode() for i, f in entries}
    check(all_ids[-1] == end_id, "END is not the last entry")
    pctest.log("%d entries published, %d clients" % (len(all_ids), N_CLIENTS))
    for k, (start, evs) in enumerate(results):
        got = [e.id for e in evs]
        if start is None:
            want = all_ids
        else:
            sk = pctest.id_key(start)
            want = [i for i in all_ids if pctest.id_key(i) > sk]
        if got != want:
            seen, dups = set(), []
            for g in got:
                if g in seen:
                    dups.append(g)
                seen.add(g)
            missing = [w for w in want if w not in seen]
            first = next((j for j, (a, b) in enumerate(zip(got, want)) if a != b),
                         min(len(got), len(want)))
            pctest.fail("client %d (start %s): got %d events, want %d; first difference at #%d "
                        "(got %s, want %s); %d missing (e.g. %s), %d duplicates (e.g. %s)"
                        % (k, start, len(got), len(want), first, got[first:first + 3],
                           want[first:first + 3], len(missing), missing[:3], len(dups), dups[:3]))
        bad = [e for e in evs if e.data != data_of[e.id]]
        check(not bad, "client %d: data differs from the stream for %r" % (k, bad[:2]))
    gw.check_alive()
    gw.stop()


pctest.main(main)
