#!/usr/bin/env python3
"""Static checks of docker/ (no Docker engine in CI): the Dockerfile builds on Debian 12 with
the same scripts/install-deps.sh as CI, builds the release preset and runs the gateway on
port 8080; compose wires redis + that image, publishing 8080 on loopback only."""

import os
import re

import pctest
from pctest import check


def logical_lines(text):
    """Dockerfile lines with continuations joined and comments dropped."""
    out, cur = [], ""
    for line in text.splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        out.append(cur + s)
        cur = ""
    if cur:
        out.append(cur)
    return out


def main():
    src = os.environ.get("PC_SRC") or os.path.join(os.path.dirname(__file__), "..", "..")
    df_path = os.path.join(src, "docker", "Dockerfile")
    cf_path = os.path.join(src, "docker", "compose.yaml")
    check(os.path.isfile(df_path), "docker/Dockerfile missing")
    check(os.path.isfile(cf_path), "docker/compose.yaml missing")
    df = logical_lines(open(df_path).read())
    instr = [(l.split(None, 1)[0].upper(), l.split(None, 1)[1] if " " in l else "") for l in df]

    froms = [a for i, a in instr if i == "FROM"]
    check(froms, "Dockerfile has no FROM")
    for f in froms:
        check(re.match(r"debian:(12|bookworm)(-slim)?\b", f), "FROM %r is not Debian 12" % f)
    runs = [a for i, a in instr if i == "RUN"]
    dep_runs = [a for a in runs if "scripts/install-deps.sh" in a]
    check(dep_runs, "no RUN step calls scripts/install-deps.sh")
    copies = [a for i, a in instr if i in ("COPY", "ADD")]
    first_dep = next(k for k, (i, a) in enumerate(instr) if i == "RUN" and a in dep_runs)
    check(any("install-deps.sh" in a or a.split()[0] == "."
              for i, a in instr[:first_dep] if i in ("COPY", "ADD")),
          "install-deps.sh is not copied into the image before it is run")
    check(any(re.search(r"cmake\s+--preset\s+release", a) for a in runs),
          "no RUN step configures the release preset")
    check(any(re.search(r"cmake\s+--build\s+--preset\s+release", a) for a in runs),
          "no RUN step builds the release preset")
    check(any(i == "EXPOSE" and "8080" in a.split() for i, a in instr), "EXPOSE 8080 missing")
    cmd = [a for i, a in instr if i in ("CMD", "ENTRYPOINT")]
    check(cmd and "pipecast-gateway" in cmd[-1], "the image does not run pipecast-gateway: %r"
          % cmd)
    env = " ".join(a for i, a in instr if i == "ENV") + " " + " ".join(cmd)
    check("0.0.0.0:8080" in env, "the gateway must listen on 0.0.0.0:8080 inside the container")
    check(copies, "no COPY of the sources")

    cf = open(cf_path).read()
    check(re.search(r"^services:\s*$", cf, re.M), "compose: no services:")
    services = re.findall(r"^  ([A-Za-z0-9_-]+):\s*$", cf, re.M)
    check("redis" in services and "gateway" in services, "compose services %r" % services)
    gw_block = re.search(r"^  gateway:\s*$(.*?)(?=^  \S|^\S|\Z)", cf, re.M | re.S).group(1)
    rd_block = re.search(r"^  redis:\s*$(.*?)(?=^  \S|^\S|\Z)", cf, re.M | re.S).group(1)
    check(re.search(r"image:\s*pipecast(:latest)?\s*$", gw_block, re.M),
          "compose gateway image should be pipecast:latest")
    check(re.search(r"dockerfile:\s*docker/Dockerfile", gw_block), "compose gateway build")
    check(re.search(r"context:\s*\.\.\s*$", gw_block, re.M), "compose build context ..")
    check(re.search(r"image:\s*redis:7", rd_block), "compose redis image should be redis:7.x")
    ports = re.findall(r"-\s*\"?([0-9.:]+)\"?", gw_block)
    check(any(p.endswith(":8080:8080") or p == "8080:8080" for p in ports),
          "compose gateway does not publish 8080: %r" % ports)
    check(all(p.startswith("127.0.0.1:") for p in ports if p.count(":") >= 1),
          "compose publishes the gateway beyond loopback: %r" % ports)
    check(re.search(r"PIPECAST_REDIS_URL:?\s*\"?=?redis://redis:6379", gw_block),
          "compose gateway does not point PIPECAST_REDIS_URL at the redis service")
    check("depends_on" in gw_block and "redis" in gw_block.split("depends_on", 1)[1],
          "compose gateway should depend on redis")
    check("\t" not in cf, "compose.yaml contains tabs")

    ign = os.path.join(src, "docker", "Dockerfile.dockerignore")
    check(os.path.isfile(ign), "docker/Dockerfile.dockerignore missing (build/ and .git would be "
          "sent as build context)")
    pats = [l.strip() for l in open(ign) if l.strip() and not l.startswith("#")]
    for need in ("build", ".git"):
        check(need in pats, "Dockerfile.dockerignore does not exclude %s" % need)


pctest.main(main)
