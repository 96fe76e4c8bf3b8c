"""The policy without the library: `keepalive-preload bpf attach` (eBPF on a cgroup) and
`keepalive-preload apply` (a running process). Each row detects its feature at run time
(`keepalive-preload bpf --help` / `apply --help` succeed) and says "not built yet" otherwise."""

import os
import re
import resource
import statistics
import subprocess
import time

from .core import (
    COUNT, IDLE, INTERVAL, NOT_BUILT, PREFIX, Row, judge, log, paired, spread, stop,
)

TABLE = "enforce"
# The dead-peer settings, 2/1/3 and 3 s, as options of `run`.
DEAD_PEER_OPTIONS = ["--idle", "2", "--interval", "1", "--count", "3", "--user-timeout", "3s"]


def children_cpu():
    """User + system seconds of this runner's waited-for children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def plain_env():
    """The command's own environment: no KEEP* variable, so only its options count."""
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


def built(ctx, feature):
    """Whether `keepalive-preload FEATURE --help` succeeds with this build."""
    if not ctx.command or not os.path.exists(ctx.command):
        return False
    try:
        return subprocess.run([ctx.command, feature, "--help"], env=plain_env(), capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def cgroup2_root():
    with open("/proc/mounts") as file:
        for line in file:
            fields = line.split()
            if len(fields) > 2 and fields[2] == "cgroup2":
                return fields[1]
    raise RuntimeError("no cgroup2 hierarchy is mounted")


class Cgroup:
    """A cgroup2 directory of this benchmark (kpbn-…) with, optionally, the policy attached;
    detached and removed on exit."""

    def __init__(self, ctx, name, options):
        self.ctx = ctx
        self.path = os.path.join(cgroup2_root(), f"{PREFIX}{name}-{os.getpid()}")
        self.options = options
        self.attached = False

    def __enter__(self):
        os.makedirs(self.path, exist_ok=True)
        if self.options is not None:
            attach = subprocess.run(
                [self.ctx.command, "bpf", "attach", "--cgroup", self.path, *self.options],
                env=plain_env(), capture_output=True, text=True, timeout=60,
            )
            if attach.returncode != 0:
                raise RuntimeError(f"bpf attach failed: {attach.stderr.strip() or attach.stdout.strip()}")
            self.attached = True
        return self

    def __exit__(self, *_):
        if self.attached:
            subprocess.run([self.ctx.command, "bpf", "detach", "--cgroup", self.path], env=plain_env(),
                           capture_output=True, timeout=60)
        # Every process of ours in it has exited by now; the directory goes with them.
        for _ in range(50):
            try:
                os.rmdir(self.path)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)


def not_built(ctx, number, name, target, feature):
    ctx.add(Row(TABLE, number, name, {"without": NOT_BUILT, "with": NOT_BUILT}, target, NOT_BUILT,
                note=f"`keepalive-preload {feature} --help` fails with this build: filled in once it lands."))


def bpf(ctx):
    """CPU with and without the policy. One kp-bench process builds the workload in each of two
    cgroups (the policy attached to one) and alternates blocks of a few milliseconds between
    them, A B, B A, … (`kp-bench alternate`): each pair of blocks gives a ratio, the median of
    all pairs judges, so the load of a shared machine falls on both sides alike."""
    runs, blocks = ctx.sizes["bpf_runs"], ctx.sizes["bpf_blocks"]
    pairs = runs * blocks
    cases = [
        ("E1", "eBPF policy: CPU per connection (`kp-bench tcp-connect`: socket, connect, accept, close "
               "on loopback, both ends in the cgroup); ratio with/without the policy, median (min–max) of "
               f"{pairs} pairs of alternating blocks", "tcp-connect", ctx.sizes["bpf_connect_block"], 1.05),
        ("E2", "eBPF policy: CPU per `setsockopt(TCP_KEEPIDLE, 30)` call of a program in the cgroup "
               "(`kp-bench tcp-setsockopt`, policy with KEEPALIVE_OVERRIDE=yes); ratio with/without, "
               f"median (min–max) of {pairs} pairs of alternating blocks", "tcp-setsockopt",
         ctx.sizes["bpf_setsockopt_block"], 1.10),
    ]
    if not built(ctx, "bpf"):
        log("eBPF rows: `keepalive-preload bpf` is not built yet")
        for number, name, _, _, limit in cases:
            not_built(ctx, number, name, f"≤ {limit:.2f}", "bpf")
        return
    options = ["--idle", IDLE, "--interval", INTERVAL, "--count", COUNT, "--override", "yes"]
    try:
        with Cgroup(ctx, "bpf-with", options) as with_policy, Cgroup(ctx, "bpf-without", None) as without:
            for number, name, workload, iterations, limit in cases:
                rest = (ctx.port(), ctx.port()) if workload == "tcp-connect" else (30, 30)
                log(f"{number}: {workload}, {runs} runs of {blocks} pairs of {iterations}-iteration blocks")
                times = {"with": [], "without": []}
                for _ in range(runs):
                    output = subprocess.run(
                        [ctx.workload, "alternate", workload, str(iterations), str(blocks), with_policy.path,
                         without.path, *map(str, rest)],
                        env=plain_env(), capture_output=True, text=True, timeout=300, check=True,
                    ).stdout
                    for a, b in re.findall(r"a_ns=([0-9.]+) b_ns=([0-9.]+)", output):
                        times["with"].append(float(a))
                        times["without"].append(float(b))
                if len(times["with"]) != pairs:
                    raise RuntimeError(f"kp-bench alternate printed {len(times['with'])} pairs, not {pairs}")
                ratios = paired(times, "with", "without")
                cells = {
                    "without": f"{statistics.median(times['without']):,.0f} ns",
                    "with": f"{spread(ratios)} ({statistics.median(times['with']):,.0f} ns)",
                }
                ctx.add(Row(TABLE, number, name, cells, f"≤ {limit:.2f}", judge(statistics.median(ratios), limit)))
    except (subprocess.SubprocessError, RuntimeError, OSError) as error:
        log(f"eBPF rows failed: {error}")
        done = {row.number for row in ctx.rows}
        for number, name, _, _, limit in cases:
            if number not in done:
                ctx.add(Row(TABLE, number, name, {"without": None, "with": None}, f"≤ {limit:.2f}", "FAIL"))


def apply(ctx):
    sockets, runs = ctx.sizes["apply_sockets"], ctx.sizes["apply_runs"]
    number = "E3"
    name = (f"`keepalive-preload apply PID {' '.join(DEAD_PEER_OPTIONS)} --override yes` on a process "
            f"holding {sockets:,} TCP sockets (`kp-bench hold`): wall time, median (min–max) of {runs} runs, "
            "each changing every socket (--idle alternates 2 and 3; apply's CPU time beside)")
    if not built(ctx, "apply"):
        log("apply row: `keepalive-preload apply` is not built yet")
        return not_built(ctx, number, name, "≤ 1 s", "apply")
    log(f"{number}: apply on {sockets} sockets, {runs} runs")
    holder = subprocess.Popen([ctx.workload, "hold", str(sockets)], env=plain_env(), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    ctx.children.append(holder)
    try:
        ready = holder.stdout.readline().split()
        if not ready or ready[0] != "ready":
            raise RuntimeError(f"kp-bench hold said {' '.join(ready)!r}")
        pid = ready[1].split("=")[1]
        held = ready[2].split("=")[1]
        times, cpu, last = [], [], ""
        for run in range(runs):
            # --override yes: under the default `no`, values set by an earlier run count as the
            # program's own and are kept, so a later run would change nothing.
            options = list(DEAD_PEER_OPTIONS) + ["--override", "yes"]
            options[1] = "2" if run % 2 == 0 else "3"
            start, used = time.monotonic(), children_cpu()
            result = subprocess.run([ctx.command, "apply", pid, *options], env=plain_env(),
                                    capture_output=True, text=True, timeout=120)
            times.append(time.monotonic() - start)
            cpu.append(children_cpu() - used)
            if result.returncode != 0:
                raise RuntimeError(f"apply exited with {result.returncode}: {result.stderr.strip()[-300:]}")
            # apply's summary, e.g. "10001 TCP sockets in 1 process: 10001 changed": every socket.
            summary = re.search(r"(\d+) TCP sockets? in 1 process: (\d+) changed", result.stdout + result.stderr)
            if not summary or summary.group(1) != held or summary.group(2) != held:
                raise RuntimeError(f"apply did not change all {held} sockets: "
                                   f"{summary.group(0) if summary else (result.stdout + result.stderr)[-300:]!r}")
            last = summary.group(0)
        cells = {"without": f"({held} sockets)",
                 "with": f"{spread(times, 3, ' s')}; CPU {statistics.median(cpu):.3f} s"}
        ctx.add(Row(TABLE, number, name, cells, "≤ 1 s", judge(statistics.median(times), 1.0),
                    note=f"apply's own summary of each run: \"{last}\"."))
    except (subprocess.SubprocessError, RuntimeError, OSError, IndexError) as error:
        log(f"{number} failed: {error}")
        ctx.add(Row(TABLE, number, name, {"without": None, "with": None}, "≤ 1 s", "FAIL"))
    finally:
        try:
            holder.stdin.close()
        except OSError:
            pass
        stop(holder)
        ctx.children.remove(holder)
