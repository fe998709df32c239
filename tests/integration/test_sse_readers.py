#!/usr/bin/env python3
"""The gateway's channels are shared among --hub-readers reader connections (issue 5).

With --hub-readers 3:
  - readers start (thread pc-hub-<n>) and connect only as channels come: an idle gateway has one
    reader thread, one stream one connected reader;
  - 13 channels: three readers, named pipecast-hub-<n> in CLIENT LIST; MONITOR shows that each
    XREAD names only its reader's keys (at most ceil(13/3) = 5, each key read by exactly one
    connection) and every stream gets its entries, in order;
  - Redis killed and restarted (appendfsync always): every reader reconnects and every stream
    keeps getting entries, none lost or repeated;
  - churn: 6 channels closed and 6 new ones opened: the new ones go to the emptiest readers
    (still at most 5 keys per XREAD) and are delivered;
  - --hub-readers outside 1-64 is refused (exit 2, with the range);
  - Redis refusing more clients (maxclients): readers that cannot connect give their channels to
    the connected ones, and every stream gets its entries (they stalled before).
On a gateway with one reader every XREAD named all 13 keys."""

import os
import signal
import socket
import subprocess
import threading
import time

import pctest
from pctest import check, check_eq

READERS = 3
NCH = 13


def reader_threads(gw):
    """Threads of the gateway named pc-hub-* (its reader threads)."""
    out = []
    for t in os.listdir("/proc/%d/task" % gw.proc.pid):
        try:
            with open("/proc/%d/task/%s/comm" % (gw.proc.pid, t)) as f:
                name = f.read().strip()
        except OSError:
            continue
        if name.startswith("pc-hub-"):
            out.append(name)
    return sorted(out)


def reader_conns(r):
    """CLIENT LIST entries named pipecast-hub-*: {name: addr}."""
    out = {}
    for line in r.execute("CLIENT", "LIST").decode().splitlines():
        f = dict(kv.split("=", 1) for kv in line.split() if "=" in kv)
        if f.get("name", "").startswith("pipecast-hub-"):
            out[f["name"]] = f["addr"]
    return out


class Monitor:
    """MONITOR on its own connection, read by a thread: the XREAD commands seen."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"MONITOR\r\n")
        self.lines = []
        self.stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        buf = b""
        self.sock.settimeout(0.2)
        while not self.stop:
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                break
            if not d:
                break
            buf += d
            *done, buf = buf.split(b"\r\n")
            self.lines.extend(x.decode("utf-8", "replace") for x in done)

    def close(self):
        self.stop = True
        self.t.join(5)
        self.sock.close()

    def xreads(self):
        """[(client addr, [keys])] of every XREAD seen."""
        out = []
        for ln in self.lines:
            if '"XREAD"' not in ln and '"xread"' not in ln:
                continue
            addr = ln.split("[", 1)[1].split("]", 1)[0].split()[1]
            args = [a for a in ln.split('"')[1::2]]
            up = [a.upper() for a in args]
            if "STREAMS" not in up:
                continue
            rest = args[up.index("STREAMS") + 1:]
            out.append((addr, rest[:len(rest) // 2]))
        return out


def check_sharding(mon, keys, what):
    xr = [(a, ks) for a, ks in mon.xreads() if set(ks) & set(keys)]
    check(xr, "%s: MONITOR saw no XREAD of our keys" % what)
    most = max(len(ks) for _, ks in xr)
    limit = -(-len(keys) // READERS)
    check(most <= limit, "%s: an XREAD named %d keys (want at most %d of %d channels with %d "
          "readers): %r" % (what, most, limit, len(keys), READERS, xr[-1]))
    owner = {}
    for a, ks in xr:
        for k in ks:
            if k in keys:
                check(owner.setdefault(k, a) == a,
                      "%s: key %s read by two connections (%s, %s)" % (what, k, owner[k], a))
    conns = set(owner.values())
    check_eq(len(conns), READERS, what + ": connections reading our keys")
    pctest.log("%s: %d XREADs, at most %d keys each, %d connections" %
               (what, len(xr), most, len(conns)))


def open_streams(gw, chans, last=None):
    out = {}
    for ch in chans:
        hdr = {"Last-Event-ID": last[ch]} if last and last.get(ch) else None
        out[ch] = pctest.sse_open(gw, ch, headers=hdr, timeout=20)
    return out


def publish_and_check(r, clients, tag, n, seen):
    """XADD n entries to each channel; every client must get exactly them, in order."""
    want = {}
    for ch in clients:
        want[ch] = ["%s-%s-%d" % (tag, ch, i) for i in range(n)]
        r.pipeline([["XADD", "pc:ch:" + ch, "*", "data", d] for d in want[ch]])
    got = {ch: [] for ch in clients}

    def have_all():
        for ch, c in clients.items():
            while c.events:
                e = c.events.pop(0)
                got[ch].append(e.data)
                seen[ch] = e.id
        return all(len(got[ch]) >= n for ch in clients)

    pump = pctest.SSEPump(list(clients.values()))
    ok = pump(have_all, 20)
    pump.close()
    for ch in clients:
        check_eq(got[ch], want[ch], "%s: entries of round %s" % (ch, tag))
    check(ok, "round %s: not all delivered" % tag)


def bad_values():
    gw = pctest.binary("pipecast-gateway")
    for v in ("0", "65", "4x", ""):
        p = subprocess.run([gw, "--hub-readers", v], capture_output=True, timeout=10)
        check_eq(p.returncode, 2, "--hub-readers %r: exit status" % v)
        check(b"--hub-readers" in p.stderr and b"1-64" in p.stderr,
              "--hub-readers %r: message %r" % (v, p.stderr))


def maxclients():
    red = pctest.PrivateRedis()
    gw = pctest.Gateway(red.port, ["--hub-readers", "4", "--ping-interval", "1"])
    r = red.client()
    base = pctest.uniq("mc")
    chans = ["%s-%d" % (base, i) for i in range(6)]
    clients = open_streams(gw, chans[:2])
    pctest.wait_for(lambda: len(reader_conns(r)) == 2, 10, "two reader connections")
    check_eq(gw.get("/api/channels").status, 200, "GET /api/channels (a pool connection)")
    n = len(r.execute("CLIENT", "LIST").decode().splitlines())
    r.execute("CONFIG", "SET", "maxclients", str(n))  # nobody else gets in
    clients.update(open_streams(gw, chans[2:]))  # readers 2 and 3 start, and cannot connect
    pctest.wait_for(lambda: "cannot connect: its channels go to" in gw.log_tail(200), 15,
                    "the hand-off of a reader that cannot connect")
    check_eq(len(reader_conns(r)), 2, "reader connections under maxclients")
    # every round is delivered; once the readers that took the channels have set them up (their
    # wake-up needs a connection too: at worst XREAD's 2 s backstop) a round comes from the hub's
    # rings, not from each stream polling Redis pages for a channel that no reader follows
    deadline, rnd, paged = time.monotonic() + 15 * pctest.SLOW, 0, None
    while paged != 0.0:
        check(time.monotonic() < deadline, "under maxclients, rounds still read from Redis pages "
              "(%r entries in the last): the stalled readers' channels were not handed over"
              % paged)
        replayed = gw.metrics().get("pipecast_sse_events_replayed_total")
        publish_and_check(r, clients, "m%d" % rnd, 2, {})
        paged = gw.metrics().get("pipecast_sse_events_replayed_total") - replayed
        rnd += 1
        time.sleep(0.2)
    pctest.log("maxclients: served by the connected readers from round %d" % rnd)
    r.execute("CONFIG", "SET", "maxclients", "10000")
    for c in clients.values():
        c.close()
    gw.stop()


def main():
    bad_values()
    maxclients()
    red = pctest.PrivateRedis(["--appendonly", "yes", "--appendfsync", "always"])
    gw = pctest.Gateway(red.port, ["--hub-readers", str(READERS), "--ping-interval", "1"])
    r = red.client()
    base = pctest.uniq("rd")
    chans = ["%s-%02d" % (base, i) for i in range(NCH)]
    seen = {}

    # idle: one reader thread; one channel: it connects, no other reader starts
    check_eq(reader_threads(gw), ["pc-hub-0"], "reader threads of an idle gateway")
    first = open_streams(gw, chans[:1])
    pctest.wait_for(lambda: len(reader_conns(r)) == 1, 10, "one reader connection")
    time.sleep(0.3)
    check_eq(len(reader_conns(r)), 1, "reader connections with one channel")
    check_eq(reader_threads(gw), ["pc-hub-0"], "reader threads with one channel")

    # all channels: every reader connects, each XREAD names only its share
    clients = dict(first)
    clients.update(open_streams(gw, chans[1:]))
    pctest.wait_for(lambda: len(reader_conns(r)) == READERS, 10, "%d reader connections" % READERS)
    check_eq(sorted(reader_conns(r)), ["pipecast-hub-%d" % i for i in range(READERS)],
             "reader connection names")
    check_eq(reader_threads(gw), ["pc-hub-%d" % i for i in range(READERS)],
             "reader threads with %d channels" % NCH)
    mon = Monitor(red.port)
    time.sleep(0.2)
    publish_and_check(r, clients, "a", 5, seen)
    keys = ["pc:ch:" + ch for ch in chans]
    check_sharding(mon, keys, "13 channels")
    mon.close()

    # Redis killed and back: every reader resumes its channels
    old = reader_conns(r)
    r.close()
    red.stop(signal.SIGKILL)
    red.start()
    r = red.client()
    pctest.wait_for(lambda: len(reader_conns(r)) == READERS, 20, "readers reconnected")
    check(set(reader_conns(r).values()).isdisjoint(old.values()), "reader connections are new")
    for ch, c in clients.items():
        check(not c.closed, "%s: stream closed by the Redis restart" % ch)
    publish_and_check(r, clients, "b", 3, seen)
    check_eq(gw.metrics().get("pipecast_hub_channels"), float(NCH), "pipecast_hub_channels")

    # churn: close 6, open 6 new channels; they fill the readers that lost channels
    for ch in chans[:6]:
        clients.pop(ch).close()
    pctest.wait_for(lambda: gw.metrics().get("pipecast_hub_channels") == NCH - 6, 10,
                    "closed channels leave the hub")
    new = ["%s-n%02d" % (base, i) for i in range(6)]
    clients.update(open_streams(gw, new))
    mon = Monitor(red.port)
    time.sleep(0.2)
    publish_and_check(r, clients, "c", 4, seen)
    check_sharding(mon, ["pc:ch:" + ch for ch in clients], "after churn")
    mon.close()
    for c in clients.values():
        c.close()
    gw.stop()


if __name__ == "__main__":
    pctest.main(main)
