#!/usr/bin/env python3
"""Allocation-failure sweep over the in-process suites (make faults).

For every ctest entry labelled `inproc` (a CUnit case that never starts
`rewind`), run the case once with RW_FAILALLOC=0 to count the allocations its
body makes, then again with allocation 1, 2, ... N failing (tests/failalloc.h):
all of them when there are at most --points, else the first half of --points and
the rest spread evenly up to the last. A run passes when it ends by itself with
0 (the failure was absorbed) or 1 (a CUnit assertion saw the error), within the
time limit, and with no ASan/UBSan/LSan report. Anything else -- a signal, a
sanitizer report, a leak on an error path, a hang -- is a finding, grouped by
the first stack frame outside the injector, and makes the exit status 1.

A leak is a finding when the case passed; when it failed a FATAL assertion the
leak may be the test's own objects (left behind by the longjmp), so those runs are
only counted unless --strict.

usage: tests/faults.py [-b BUILD] [-p POINTS] [-j JOBS] [-R REGEX] [--persist]
                       [--strict] [--keep DIR]
"""
import argparse
import concurrent.futures as cf
import json
import os
import re
import subprocess
import sys
import time

REPORT = re.compile(r"(AddressSanitizer|LeakSanitizer|runtime error:|ThreadSanitizer)")
FRAME = re.compile(r"^\s*#\d+ 0x[0-9a-f]+ in (\S+) (\S+)")
CUNIT_PASSED = re.compile(r"^\s*tests\s+\d+\s+\d+\s+\d+\s+0\s", re.M)
COUNT = re.compile(r"failalloc: N=-?\d+ calls=(\d+)")


def cases(build, regex, ctest):
    out = subprocess.run([ctest, "--show-only=json-v1", "-L", "inproc"], cwd=build,
                         check=True, capture_output=True, text=True).stdout
    for t in json.loads(out)["tests"]:
        if "--case" not in t["command"] or (regex and not re.search(regex, t["name"])):
            continue
        props = {p["name"]: p["value"] for p in t["properties"]}
        env = dict(os.environ)
        env.update(v.split("=", 1) for v in props.get("ENVIRONMENT", []))
        yield t["name"], t["command"], env, props.get("WORKING_DIRECTORY", build)


def run(cmd, env, cwd, n, persist, limit):
    env = dict(env, RW_FAILALLOC=str(n), RW_FAILALLOC_PERSIST="1" if persist else "0")
    try:
        p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True,
                           errors="replace", timeout=limit)
        return p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace")
        return "timeout", out


def points(calls, k):
    if calls <= k:
        return list(range(1, calls + 1))
    head = list(range(1, k // 2 + 1))
    rest = k - len(head)
    step = (calls - head[-1]) / rest
    return head + sorted({head[-1] + max(1, round(step * (i + 1))) for i in range(rest)})


def where(out):
    """The first frame of the first report that is not the injector's or libc's."""
    for line in out.splitlines():
        m = FRAME.match(line)
        if m and "failalloc.c" not in m.group(2) and "libc" not in m.group(2) \
                and "sanitizer" not in m.group(2):
            return "%s %s" % (m.group(1), os.path.basename(m.group(2)))
    m = REPORT.search(out)
    return m.group(0) if m else "no stack"


def sweep(name, cmd, env, cwd, args):
    rc, out = run(cmd, env, cwd, 0, False, args.timeout)
    counts = [int(c) for c in COUNT.findall(out)]
    if rc != 0 or REPORT.search(out) or not counts:
        return name, 0, [(name, 0, "the case fails without any injected failure", out)], []
    findings, runs, review = [], 0, []
    for n in points(counts[0], args.points):
        for persist in ([False, True] if args.persist else [False]):
            runs += 1
            rc, out = run(cmd, env, cwd, n, persist, args.timeout)
            if rc in (0, 1) and not REPORT.search(out):
                continue
            what = "hang" if rc == "timeout" else \
                ("exit %s" % rc if rc >= 0 else "signal %d" % -rc)
            if LEAK_ONLY(out):
                # A test that stops at a failed CU_ASSERT_*_FATAL leaks what it
                # held itself: only a leak from a test that passed is rewind's.
                what = "leak" if CUNIT_PASSED.search(out) else "leak after a failed assertion"
                if what != "leak" and not args.strict:
                    review.append((name, n, what))
                    continue
            findings.append((name, n, "%s%s at %s" % (what, " (persist)" if persist else "",
                                                      where(out)), out))
    return name, runs, findings, review


def LEAK_ONLY(out):
    return "LeakSanitizer" in out and "ERROR: AddressSanitizer" not in out \
        and "runtime error:" not in out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-b", "--build", default="build")
    ap.add_argument("-p", "--points", type=int, default=40)
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("-R", "--regex", default="")
    ap.add_argument("-t", "--timeout", type=int, default=60)
    ap.add_argument("--persist", action="store_true",
                    help="also fail every allocation from N on")
    ap.add_argument("--ctest", default="ctest")
    ap.add_argument("--strict", action="store_true",
                    help="a leak after a failed assertion is a finding too")
    ap.add_argument("--keep", default="", help="write each finding's output here")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    todo = list(cases(build, args.regex, args.ctest))
    t0, total, found, review = time.time(), 0, [], []
    with cf.ThreadPoolExecutor(args.jobs) as ex:
        for name, runs, fs, rv in ex.map(lambda c: sweep(*c, args), todo):
            total += runs
            found += fs
            review += rv
            print("%-4s %5d runs  %s" % ("FAIL" if fs else "ok", runs, name), flush=True)
    groups = {}
    for name, n, what, out in found:
        groups.setdefault(what, []).append((name, n, out))
    for i, (what, hits) in enumerate(sorted(groups.items())):
        name, n, out = hits[0]
        print("\nfinding %d: %s\n  %d runs, first: %s with allocation %d failing"
              % (i + 1, what, len(hits), name, n))
        if args.keep:
            os.makedirs(args.keep, exist_ok=True)
            path = os.path.join(args.keep, "finding-%d.txt" % (i + 1))
            with open(path, "w") as f:
                f.write("%s\nallocation %d\n\n%s" % (name, n, out))
            print("  output: %s" % path)
    if review:
        print("\n%d runs leaked after a failed CU_ASSERT_*_FATAL (the test's own objects, or"
              " rewind's: --strict to see them)" % len(review))
    print("\nfaults: %d cases, %d runs, %d failing runs in %d places, %.0f s"
          % (len(todo), total, len(found), len(groups), time.time() - t0))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
