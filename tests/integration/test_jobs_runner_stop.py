#!/usr/bin/env python3
"""A runner with no job stops promptly on SIGTERM even when Redis is gone (docs/jobs.md "Runner
lifecycle"): with nothing to report it waits at most ~3 s for Redis to delete its heartbeat, then
exits 0 (the heartbeat expires by its TTL); with Redis there, it deletes the heartbeat and exits
at once. Before, it waited kill-grace + 20 s and exited 1."""

import signal
import time

import pctest
from pctest import check, check_eq


def main():
    red = pctest.PrivateRedis()
    r = red.client()
    # Redis up: the heartbeat is deleted and the runner exits at once
    rn = pctest.Runner(red.port, {})
    t0 = time.monotonic()
    check_eq(rn.stop(), 0, "runner exit status on SIGTERM with Redis up")
    took = time.monotonic() - t0
    check(took < 2 * pctest.SLOW, "runner took %.1f s to stop with Redis up" % took)
    check_eq(r.execute("EXISTS", rn.heartbeat_key()), 0, "heartbeat key after a clean stop")

    # Redis gone: nothing to report, so it does not wait for Redis long
    rn2 = pctest.Runner(red.port, {})
    red.stop(signal.SIGKILL)
    time.sleep(0.5)
    t0 = time.monotonic()
    rn2.proc.send_signal(signal.SIGTERM)
    try:
        code = rn2.proc.wait(10 * pctest.SLOW)
    except Exception:
        code = None
    took = time.monotonic() - t0
    check(code is not None, "runner did not exit within %.0f s of SIGTERM with Redis gone:\n%s"
          % (10 * pctest.SLOW, rn2.log_tail()))
    check_eq(code, 0, "runner exit status on SIGTERM with Redis gone and no job")
    check(took < 6 * pctest.SLOW, "runner took %.1f s to stop with Redis gone (want ~3 s)" % took)
    check("expires by its TTL" in rn2.log_tail(), "the runner says why it left its heartbeat:\n%s"
          % rn2.log_tail())


if __name__ == "__main__":
    pctest.main(main)
