#!/usr/bin/env python3
"""Static checks of the scripts, CI entry and README: the README's first commands are
scripts/run.sh and scripts/test.sh, .ci/run runs exactly scripts/test.sh, scripts parse,
install-deps.sh lists every package the build needs."""

import os
import re
import subprocess

import pctest
from pctest import check, check_eq


def main():
    src = os.environ.get("PC_SRC") or os.path.join(os.path.dirname(__file__), "..", "..")
    p = lambda *a: os.path.join(src, *a)  # noqa: E731

    for s in ["scripts/install-deps.sh", "scripts/run.sh", "scripts/test.sh",
              "scripts/redis-test-server.sh", ".ci/run"]:
        check(os.access(p(s), os.X_OK), "%s is not executable" % s)
        r = subprocess.run(["bash", "-n", p(s)], stderr=subprocess.PIPE)
        check_eq(r.returncode, 0, "bash -n %s: %s" % (s, r.stderr.decode()))

    ci = [l for l in open(p(".ci/run")).read().splitlines() if l.strip()]
    check_eq(ci[0], "#!/usr/bin/env bash", ".ci/run shebang")
    check("set -euo pipefail" in ci, ".ci/run lacks set -euo pipefail")
    check_eq(ci[-1], "exec scripts/test.sh", ".ci/run last line")

    deps = open(p("scripts/install-deps.sh")).read()
    for pkg in ["build-essential", "cmake", "ninja-build", "pkg-config", "clang", "clang-format",
                "libhiredis-dev", "libevent-dev", "libcivetweb-dev", "libcjson-dev",
                "libcmocka-dev", "libssl-dev", "redis-server", "redis-tools", "python3", "curl"]:
        check(re.search(r"(^|\s)%s(\s|$)" % re.escape(pkg), deps, re.M),
              "install-deps.sh does not install %s" % pkg)

    readme = open(p("README.md")).read()
    cmds = re.findall(r"^\s*(scripts/\S+)", readme, re.M)
    check(cmds[:2] == ["scripts/run.sh", "scripts/test.sh"],
          "README's first commands should be scripts/run.sh then scripts/test.sh, got %r"
          % cmds[:2])
    first_code = readme.index("```")
    check(readme.index("scripts/run.sh") < readme.index("```", first_code + 3),
          "scripts/run.sh is not in the README's first code block")
    for needle in ["seq 1 5 | pipecast pipe demo", "curl -N", "Last-Event-ID",
                   "redis-cli XADD pc:ch:build-42 MAXLEN '~' 100000 '*' data 'compiling foo.c'",
                   "docs/interfaces.md", "ctest"]:
        check(needle in readme, "README lacks %r" % needle)
    # every script the README names exists
    for s in set(re.findall(r"\b((?:scripts|tests/\w+)/[\w.-]+\.(?:sh|py))\b", readme)):
        check(os.path.exists(p(s)) or s == "tests/fuzz/run-all.sh",
              "README names %s, which does not exist" % s)


pctest.main(main)
