#!/usr/bin/env python3
"""The runner behind scripts/bench: measures the library (start-up, memory, size,
instructions, syscalls), a real redis-server, the eBPF policy and `apply`, and the time to
notice a dead peer, side by side with libkeepalive0 and no preload, and writes a Markdown table
with PASS/FAIL per target (issue 15).

The rows live in scripts/benchlib/: core.py (columns, environments, the one interleaved-rounds
helper, callgrind and strace), library.py, redis.py, enforce.py (eBPF, apply), deadpeer.py and
report.py.

Exit status: 1 when a row produced no number or a syscall count is not exact; with --check,
also when any target FAILs; 0 otherwise. Rows whose feature is not built yet (`keepalive-preload
bpf`, `keepalive-preload apply`) say so and count as neither.
"""

import argparse
import datetime
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import deadpeer, enforce, library, redis, report  # noqa: E402
from benchlib.core import Context, loadavg, log  # noqa: E402

FULL = {
    "rounds": 21,
    "spawn_iterations": 40,
    "rss_samples": 9,
    "callgrind_socket": (2000, 12000),
    "callgrind_connect": (200, 1200),
    "strace": (50, 250),
    "redis_requests": 10000,
    "redis_requests_k0": 2000,
    "redis_rounds": 7,
    "redis_rps_requests": 10000,
    "redis_rps_requests_k0": 2000,
    "bpf_runs": 4,
    "bpf_blocks": 50,
    "bpf_connect_block": 100,
    "bpf_setsockopt_block": 5000,
    "apply_sockets": 10000,
    "apply_runs": 5,
    "dead_runs": 5,
    "dead_cap": 8.0,
}
# Tiny counts: every row must still produce a number; syscall counts stay exact at any size.
SMOKE = dict(
    FULL,
    rounds=2,
    spawn_iterations=5,
    rss_samples=1,
    callgrind_socket=(100, 600),
    callgrind_connect=(50, 250),
    redis_requests=1000,
    redis_requests_k0=200,
    redis_rounds=1,
    redis_rps_requests=1000,
    redis_rps_requests_k0=200,
    bpf_runs=1,
    bpf_blocks=4,
    bpf_connect_block=50,
    bpf_setsockopt_block=1000,
    apply_sockets=1000,
    apply_runs=1,
    dead_runs=1,
    dead_cap=6.0,
)

STEPS = [
    ("startup", library.startup),
    ("memory", library.memory),
    ("size", library.size),
    ("instructions", library.instructions),
    ("syscalls", library.syscalls),
    ("redis", redis.instructions),
    ("redis-rps", redis.requests),
    ("bpf", enforce.bpf),
    ("apply", enforce.apply),
    ("deadpeer", deadpeer.dead_peer),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny counts; checks numbers and exact syscalls")
    parser.add_argument("--check", action="store_true", help="exit non-zero when any target FAILs")
    parser.add_argument("--library", required=True, help="libkeepalive_preload.so")
    parser.add_argument("--workload", required=True, help="the kp-bench executable")
    parser.add_argument("--cli", help="the keepalive-preload command (bpf, apply)")
    parser.add_argument("--command", default="scripts/bench", help="the command line shown in the table")
    parser.add_argument("--output", help="Markdown file (default BENCHMARKS.md; smoke: standard output only)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds of the timing rows")
    parser.add_argument("--only", help="comma-separated steps: " + ",".join(name for name, _ in STEPS))
    args = parser.parse_args()
    sizes = dict(SMOKE if args.smoke else FULL)
    if args.rounds:
        sizes.update(rounds=args.rounds, redis_rounds=args.rounds)
    only = set(args.only.split(",")) if args.only else None
    if only and only - {name for name, _ in STEPS}:
        parser.error(f"unknown steps {', '.join(sorted(only - {name for name, _ in STEPS}))}")

    ctx = Context(args, sizes)
    started = datetime.datetime.now(datetime.timezone.utc)
    clock = time.monotonic()
    load_before = loadavg()
    try:
        for name, step in STEPS:
            if only is None or name in only:
                step(ctx)
    finally:
        ctx.close()
    elapsed = time.monotonic() - clock
    text = report.markdown(ctx, started, elapsed, load_before, loadavg())
    print(text)
    output = args.output or (None if args.smoke or only else "BENCHMARKS.md")
    if output:
        with open(output, "w") as file:
            file.write(text)
        log(f"table written to {output}")

    problems = 0
    for row in ctx.rows:
        reasons = []
        if not row.produced():
            reasons.append("no number")
        if row.exact and row.verdict == "FAIL":
            reasons.append("syscall count not exact")
        if args.check and row.verdict == "FAIL":
            reasons.append("target missed (--check)")
        if reasons:
            problems += 1
            log(f"FAIL row {row.number} {row.name}: {', '.join(reasons)}")
    print(report.summary(ctx.rows))
    label = "bench smoke" if args.smoke else "bench"
    print(f"{label}: {len(ctx.rows) - problems} rows fine, {problems} not ({elapsed:.0f} s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
