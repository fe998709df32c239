#!/usr/bin/env python3
"""The demo templates that scripts/run.sh gives its runner (scripts/demo-runner.json) load and work,
and docs/runner.example.json loads: a runner started with each config writes a heartbeat offering
every template of the file."""
import json
import os

import pctest
from pctest import check, check_eq

SRC = os.environ.get("PC_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))


def test():
    demo = json.load(open(os.path.join(SRC, "scripts", "demo-runner.json")))
    s = pctest.JobSetup(demo["templates"])
    offered = set((s.runner.heartbeat() or {}).get("templates", {}))
    check_eq(offered, set(demo["templates"]), "templates offered by the demo runner")

    job, es = s.run({"template": "count", "args": {"n": "3", "delay": "0.01"}})
    check_eq((job["status"], job["code"]), ("exited", 0), "count job")
    check_eq([e.data for e in es if e.event == "stdout"], [b"line 1", b"line 2", b"line 3"],
             "count output")
    job, es = s.run({"template": "colors"})
    out = [e.data for e in es if e.event == "stdout"]
    check(len(out) == 1 and b"\x1b[31mred" in out[0], "colors: ANSI red on stdout: %r" % out)
    check_eq([e.data for e in es if e.event == "stderr"], [b"a warning"], "colors stderr")
    r = pctest.job_post(s.gw, {"template": "count", "args": {"n": "1", "delay": "1; rm -rf /"}})
    check_eq(r.status, 400, "count with a delay that is not a number")

    example = json.load(open(os.path.join(SRC, "docs", "runner.example.json")))
    ex = pctest.Runner(s.redis.port, config=example)
    check_eq(set((ex.heartbeat() or {}).get("templates", {})), set(example["templates"]),
             "templates offered with docs/runner.example.json")
    ex.stop()


pctest.main(test)
