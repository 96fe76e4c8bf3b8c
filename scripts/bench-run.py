#!/usr/bin/env python3
"""The runner behind scripts/bench: measures the kp-bench workloads, /bin/true and a real
redis-server four ways (no preload, libkeepalive0, ours, ours with KEEPALIVE_USER_TIMEOUT) and
writes a Markdown table with PASS/FAIL against the targets of issue 6.

Timing rows are interleaved rounds (A B C D A B C D ...) reported as the median of per-round
ratios with min and max, so machine drift cancels. Instruction and syscall rows are differences
between two loop sizes divided by the difference in iterations, so start-up cancels.

Exit status: 0 when every row produced a number and every syscall count is exact; 1 otherwise.
Timing targets print PASS/FAIL but never change the exit status.
"""

import argparse
import datetime
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

IDLE, INTERVAL, COUNT, USER_TIMEOUT = "60", "10", "5", "30000"
OPTIONS = {"KEEPIDLE": IDLE, "KEEPINTVL": INTERVAL, "KEEPCNT": COUNT}
VARIANTS = ["none", "libkeepalive", "ours", "ours_ut"]
HEADINGS = {
    "none": "no preload",
    "libkeepalive": "libkeepalive0",
    "ours": "ours",
    "ours_ut": "ours + USER_TIMEOUT",
}
# setsockopt calls per configured socket: SO_KEEPALIVE plus one per option set.
OPTIONS_SET = {"libkeepalive": 1 + 3, "ours": 1 + 3, "ours_ut": 1 + 4}

FULL = {
    "rounds": 15,
    "socket_iterations": 15000,
    "connect_iterations": 3000,
    "callgrind_socket": (2000, 12000),
    "callgrind_connect": (300, 1800),
    "strace": (100, 600),
    "spawn_iterations": 100,
    "rss_samples": 15,
    "redis_rounds": 15,
    "redis_requests": 15000,
    "redis_requests_k0": 3000,
    "apply_connections": 5000,
    "apply_rounds": 7,
}
# Tiny counts: every row must still produce a number; syscall counts stay exact at any size.
SMOKE = dict(
    FULL,
    rounds=2,
    socket_iterations=2000,
    connect_iterations=300,
    callgrind_socket=(100, 600),
    callgrind_connect=(50, 250),
    spawn_iterations=20,
    rss_samples=1,
    redis_rounds=1,
    redis_requests=2000,
    redis_requests_k0=500,
    apply_connections=500,
    apply_rounds=2,
)


def order(round_number):
    """A B C D, then D C B A, and so on: interleaved, and no column always runs first (a linear
    drift and any first-in-round effect cancel in the per-round ratios)."""
    return VARIANTS if round_number % 2 == 0 else VARIANTS[::-1]


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


def effective(iterations):
    """kp-bench runs min(N/10, 1000) warm-up iterations before the N timed ones."""
    return iterations + min(iterations // 10, 1000)


def fmt_ratio(values):
    if not values:
        return None
    return f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f})"


class Row:
    def __init__(self, number, name, cells, target="", verdict=None, exact=False):
        self.number = number
        self.name = name
        self.cells = cells  # variant -> text or None (None: measurement failed)
        self.target = target
        self.verdict = verdict  # "PASS", "FAIL" or None (informational)
        self.exact = exact  # a FAIL here fails the run

    def produced(self):
        return all(value is not None for value in self.cells.values())


class Bench:
    def __init__(self, args):
        self.args = args
        self.sizes = SMOKE if args.smoke else FULL
        if args.rounds:
            self.sizes = dict(self.sizes, rounds=args.rounds, redis_rounds=args.rounds)
        self.library = os.path.abspath(args.library)
        self.workload = os.path.abspath(args.workload)
        self.libkeepalive = find_libkeepalive()
        self.rows = []
        self.tmp = tempfile.mkdtemp(prefix="kp-bench.")
        self.children = []

    # ---- environments -------------------------------------------------------------------

    def preload(self, variant):
        return {
            "none": None,
            "libkeepalive": self.libkeepalive,
            "ours": self.library,
            "ours_ut": self.library,
        }[variant]

    def settings(self, variant, extra=None):
        """The minimal environment every measured process gets (no LD_PRELOAD): the same
        three options for everyone, so libkeepalive's getenv scans a short environment."""
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
        env.update(OPTIONS)
        if variant == "ours_ut":
            env["KEEPALIVE_USER_TIMEOUT"] = USER_TIMEOUT
        env.update(extra or {})
        return env

    def env(self, variant, extra=None):
        env = self.settings(variant, extra)
        library = self.preload(variant)
        if library:
            env["LD_PRELOAD"] = library
        return env

    # ---- running --------------------------------------------------------------------------

    def kp_bench(self, variant, workload, iterations, *rest, extra=None, env=None):
        """(wall, CPU) nanoseconds per iteration of a kp-bench workload."""
        output = subprocess.run(
            [self.workload, workload, str(iterations), *map(str, rest)],
            env=env or self.env(variant, extra),
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        ).stdout
        return parse_times(output)

    def callgrind(self, variant, workload, iterations):
        out = os.path.join(self.tmp, f"callgrind.{variant}.{workload}.{iterations}")
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                self.workload,
                workload,
                str(iterations),
            ],
            env=self.env(variant),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=300,
            check=True,
        )
        with open(out) as file:
            text = file.read()
        os.unlink(out)
        match = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
        if not match:
            raise RuntimeError(f"no summary in {out}")
        return int(match.group(1))

    def strace(self, variant, workload, iterations, *rest, extra=None):
        """Total syscalls the workload process makes (strace -c), LD_PRELOAD given to the
        traced program only."""
        out = os.path.join(self.tmp, f"strace.{variant}.{workload}.{iterations}")
        env = self.settings(variant, extra)
        command = ["strace", "-c", "-o", out]
        library = self.preload(variant)
        if library:
            command += ["-E", f"LD_PRELOAD={library}"]
        command += [self.workload, workload, str(iterations), *map(str, rest)]
        subprocess.run(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300, check=True
        )
        with open(out) as file:
            text = file.read()
        os.unlink(out)
        # "% time  seconds  usecs/call  calls  [errors]  total"
        for line in text.splitlines():
            fields = line.split()
            if fields and fields[-1] == "total" and len(fields) >= 5:
                return int(fields[3])
        raise RuntimeError(f"no total in strace output:\n{text}")

    # ---- row 1: socket loops ----------------------------------------------------------------

    def row_loops(self):
        rounds = self.sizes["rounds"]
        loops = [
            ("1a 1b 1c", "socket()+close() loop", "tcp-socket", self.sizes["socket_iterations"]),
            (
                "1d 1e 1f",
                "socket()+connect()+accept()+close() loop, loopback",
                "tcp-connect",
                self.sizes["connect_iterations"],
            ),
        ]
        for numbers, name, workload, iterations in loops:
            first, second, third = numbers.split()
            log(f"row {first}: {name}, {rounds} rounds of {iterations} iterations")
            times = {variant: [] for variant in VARIANTS}
            walls = {variant: [] for variant in VARIANTS}
            try:
                for number in range(rounds):
                    for variant in order(number):
                        wall, cpu = self.kp_bench(variant, workload, iterations)
                        times[variant].append(cpu)
                        walls[variant].append(wall)
            except (subprocess.SubprocessError, RuntimeError) as error:
                log(f"row {first} failed: {error}")
                times = {variant: [] for variant in VARIANTS}
            ratios = {
                variant: [a / b for a, b in zip(times[variant], times["none"])]
                for variant in VARIANTS
            }
            versus = {
                variant: [a / b for a, b in zip(times[variant], times["libkeepalive"])]
                for variant in ("ours", "ours_ut")
            }
            median = {
                variant: (
                    f"{statistics.median(times[variant]):,.0f} ({statistics.median(walls[variant]):,.0f})"
                    if times[variant]
                    else None
                )
                for variant in VARIANTS
            }
            self.rows.append(Row(first, f"{name}: CPU ns (wall ns) per iteration, median of rounds", median))
            cells = {variant: fmt_ratio(ratios[variant]) for variant in VARIANTS[1:]}
            cells["none"] = "1" if times["none"] else None
            self.rows.append(
                Row(second, f"{name}: CPU time ratio to no preload, median (min–max) of {rounds} rounds", cells)
            )
            cells = {"none": "", "libkeepalive": "1" if times["libkeepalive"] else None}
            cells.update({variant: fmt_ratio(versus[variant]) for variant in versus})
            verdict = None
            if versus["ours"]:
                verdict = "PASS" if statistics.median(versus["ours"]) <= 1.00 else "FAIL"
            self.rows.append(
                Row(
                    third,
                    f"{name}: CPU time ratio to libkeepalive0, median (min–max)",
                    cells,
                    "ours ≤ 1.00",
                    verdict,
                )
            )

    # ---- row 2: instructions ----------------------------------------------------------------

    def row_instructions(self):
        cases = [
            ("2a", "user-space instructions added per TCP socket (socket()+close())", "tcp-socket",
             self.sizes["callgrind_socket"], True),
            ("2b", "user-space instructions added per UDP socket (socket()+close())", "udp-socket",
             self.sizes["callgrind_socket"], False),
            ("2c", "user-space instructions added per loopback connection (connect+accept)", "tcp-connect",
             self.sizes["callgrind_connect"], False),
        ]
        for number, name, workload, (small, large), targeted in cases:
            log(f"row {number}: callgrind {workload} at {small} and {large} iterations")
            per = {}
            try:
                for variant in VARIANTS:
                    low = self.callgrind(variant, workload, small)
                    high = self.callgrind(variant, workload, large)
                    per[variant] = (high - low) / (effective(large) - effective(small))
            except (subprocess.SubprocessError, RuntimeError, OSError) as error:
                log(f"row {number} failed: {error}")
            cells = {}
            for variant in VARIANTS:
                if variant not in per or "none" not in per:
                    cells[variant] = None
                elif variant == "none":
                    cells[variant] = f"({per['none']:,.0f} per iteration)"
                else:
                    cells[variant] = f"{per[variant] - per['none']:,.0f}"
            target, verdict = "", None
            if targeted:
                target = "ours ≤ libkeepalive0 / 10"
                if "ours" in per and "libkeepalive" in per:
                    added_ours = per["ours"] - per["none"]
                    added_lk = per["libkeepalive"] - per["none"]
                    verdict = "PASS" if added_ours <= added_lk / 10 else "FAIL"
            self.rows.append(Row(number, name, cells, target, verdict))

    # ---- row 3: syscalls --------------------------------------------------------------------

    def row_syscalls(self):
        small, large = self.sizes["strace"]
        port = free_port()
        other = port - 1
        cases = [
            ("3a", "TCP socket()+close()", "tcp-socket", (), {}, True),
            ("3b", "UDP socket()+close()", "udp-socket", (), {}, False),
            ("3c", "UNIX socket()+close()", "unix-socket", (), {}, False),
            ("3d", "loopback connection (client socket + accepted socket)", "tcp-connect", (port,), {}, True),
            ("3e", "loopback connection, port in KEEPALIVE_PORTS", "tcp-connect", (port,),
             {"KEEPALIVE_PORTS": str(port)}, True),
            ("3f", "loopback connection, port excluded by KEEPALIVE_PORTS", "tcp-connect", (port,),
             {"KEEPALIVE_PORTS": str(other)}, False),
        ]
        for number, name, workload, rest, extra, configured in cases:
            log(f"row {number}: strace {workload} {' '.join(f'{k}={v}' for k, v in extra.items())}")
            per = {}
            try:
                for variant in VARIANTS:
                    low = self.strace(variant, workload, small, *rest, extra=extra)
                    high = self.strace(variant, workload, large, *rest, extra=extra)
                    per[variant] = (high - low) / (effective(large) - effective(small))
            except (subprocess.SubprocessError, RuntimeError, OSError) as error:
                log(f"row {number} failed: {error}")
            cells, verdict, expected = {}, "PASS", {}
            for variant in VARIANTS:
                if variant not in per or "none" not in per:
                    cells[variant] = None
                    verdict = "FAIL"
                    continue
                if variant == "none":
                    cells[variant] = f"({per['none']:g} per iteration)"
                    continue
                added = per[variant] - per["none"]
                cells[variant] = f"{added:g}"
                if variant in ("ours", "ours_ut"):
                    expected[variant] = OPTIONS_SET[variant] if configured else 0
                    if added != expected[variant]:
                        verdict = "FAIL"
            target = "ours = 1 + 3 options, + USER_TIMEOUT = 1 + 4" if configured else "0 for both of ours"
            self.rows.append(Row(number, f"syscalls added per {name}", cells, target, verdict, exact=True))

    # ---- row 4: start-up --------------------------------------------------------------------

    def row_startup(self):
        rounds, iterations = self.sizes["rounds"], self.sizes["spawn_iterations"]
        log(f"row 4: /bin/true, {rounds} rounds of {iterations} runs")
        times = {variant: [] for variant in VARIANTS}
        walls = {variant: [] for variant in VARIANTS}
        try:
            for number in range(rounds):
                for variant in order(number):
                    extra = {"KP_BENCH_CHILD_PRELOAD": self.preload(variant) or ""}
                    wall, cpu = self.kp_bench(
                        variant, "spawn", iterations, "/bin/true", env=self.settings(variant, extra)
                    )
                    times[variant].append(cpu)
                    walls[variant].append(wall)
        except (subprocess.SubprocessError, RuntimeError) as error:
            log(f"row 4 failed: {error}")
            times = {variant: [] for variant in VARIANTS}
        cells = {
            variant: (
                f"{statistics.median(times[variant]) / 1000:,.0f} µs ({statistics.median(walls[variant]) / 1000:,.0f} µs)"
                if times[variant]
                else None
            )
            for variant in VARIANTS
        }
        self.rows.append(
            Row("4a", "process start-up, /bin/true: CPU (wall) time per run, median of rounds", cells)
        )
        cells = {
            variant: fmt_ratio([a / b for a, b in zip(times[variant], times["none"])])
            for variant in VARIANTS[1:]
        }
        cells["none"] = "1" if times["none"] else None
        self.rows.append(Row("4b", "process start-up: CPU time ratio to no preload, median (min–max)", cells))
        versus = {
            variant: [a / b for a, b in zip(times[variant], times["libkeepalive"])]
            for variant in ("ours", "ours_ut")
        }
        cells = {"none": "", "libkeepalive": "1" if times["libkeepalive"] else None}
        cells.update({variant: fmt_ratio(versus[variant]) for variant in versus})
        verdict = None
        if versus["ours"]:
            verdict = "PASS" if statistics.median(versus["ours"]) <= 1.10 else "FAIL"
        self.rows.append(
            Row("4c", "process start-up: CPU time ratio to libkeepalive0, median (min–max)", cells, "ours ≤ 1.10", verdict)
        )

        log("row 4d: resident memory of a sleeping /bin/sleep")
        rss = {variant: [] for variant in VARIANTS}
        try:
            for number in range(self.sizes["rss_samples"]):
                for variant in order(number):
                    rss[variant].append(self.resident(variant))
        except (OSError, RuntimeError) as error:
            log(f"row 4d failed: {error}")
            rss = {variant: [] for variant in VARIANTS}
        cells, verdict = {}, None
        baseline_files = {path for sample in rss["none"] for path in sample[2]}
        for variant in VARIANTS:
            if not rss[variant] or not rss["none"]:
                cells[variant] = None
                continue
            if variant == "none":
                cells[variant] = f"({statistics.median(r[0] for r in rss['none']):,.0f} KiB VmRSS)"
                continue
            # Samples are interleaved: the median of per-sample differences cancels drift.
            pairs = list(zip(rss[variant], rss["none"]))
            added = statistics.median(mine[0] - base[0] for mine, base in pairs)
            anon = statistics.median(mine[1] - base[1] for mine, base in pairs)
            files = statistics.median(
                sum(kib for path, kib in mine[2].items() if path not in baseline_files) for mine, _ in pairs
            )
            cells[variant] = f"{added:+,.0f} KiB ({files:,.0f} in its files, {anon:+,.0f} anon)"
            if variant == "ours":
                verdict = "PASS" if added <= 256 else "FAIL"
        self.rows.append(
            Row(
                "4d",
                "resident memory added (VmRSS of a sleeping /bin/sleep; median of per-sample differences)",
                cells,
                "ours ≤ 256 KiB",
                verdict,
            )
        )

    def resident(self, variant):
        """VmRSS, RssAnon (KiB) and resident KiB per mapped file of /bin/sleep once it sleeps."""
        child = subprocess.Popen(["/bin/sleep", "30"], env=self.env(variant), start_new_session=True)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                with open(f"/proc/{child.pid}/status") as file:
                    status = file.read()
                state = re.search(r"^State:\s+(\S)", status, re.M).group(1)
                try:
                    exe = os.readlink(f"/proc/{child.pid}/exe")
                except OSError:
                    exe = ""
                if state == "S" and exe.endswith("sleep") and "VmRSS" in status:
                    time.sleep(0.05)
                    with open(f"/proc/{child.pid}/status") as file:
                        status = file.read()
                    rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1))
                    anon = int(re.search(r"^RssAnon:\s+(\d+)", status, re.M).group(1))
                    return rss, anon, mapped_files(child.pid)
                time.sleep(0.01)
            raise RuntimeError("sleep never went to sleep")
        finally:
            child.kill()
            child.wait()

    # ---- row 5: redis -----------------------------------------------------------------------

    def row_redis(self):
        rounds = self.sizes["redis_rounds"]
        requests, requests_k0 = self.sizes["redis_requests"], self.sizes["redis_requests_k0"]
        log(f"row 5: redis-benchmark, {rounds} rounds, {requests} requests persistent, {requests_k0} with -k 0")
        keys = [("SET", False), ("GET", False), ("SET", True), ("GET", True)]
        rps = {variant: {key: [] for key in keys} for variant in VARIANTS}
        cpu = {variant: {False: [], True: []} for variant in VARIANTS}
        failed = False
        servers = {}
        try:
            # One server per variant, all up at once: rounds alternate between them quickly.
            for variant in VARIANTS:
                servers[variant] = self.start_redis(variant)
            for number in range(rounds):
                for variant in order(number):
                    server, port = servers[variant]
                    for k0, count in ((False, requests), (True, requests_k0)):
                        before = cpu_nanos(server.pid)
                        for test, value in self.redis_benchmark(port, count, k0).items():
                            rps[variant][(test, k0)].append(value)
                        cpu[variant][k0].append((cpu_nanos(server.pid) - before) / (2 * count))
        except (subprocess.SubprocessError, RuntimeError, OSError) as error:
            log(f"row 5 failed: {error}")
            failed = True
        finally:
            for server, _ in servers.values():
                self.stop(server)
        for number, (test, k0) in zip(("5a", "5b", "5c", "5d"), keys):
            mode = "new connection per request (-k 0)" if k0 else "persistent connections"
            target_value = 0.97 if k0 else 0.99
            base = rps["none"][(test, k0)]
            complete = not failed and base and all(rps[v][(test, k0)] for v in VARIANTS)
            cells = {}
            verdict = None
            for variant in VARIANTS:
                if not complete:
                    cells[variant] = None
                    continue
                values = rps[variant][(test, k0)]
                if variant == "none":
                    cells[variant] = f"({statistics.median(values):,.0f} req/s)"
                    continue
                ratios = [a / b for a, b in zip(values, base)]
                cells[variant] = fmt_ratio(ratios)
                if variant == "ours":
                    verdict = "PASS" if statistics.median(ratios) >= target_value else "FAIL"
            self.rows.append(
                Row(
                    number,
                    f"redis-benchmark {test}, 50 clients, {mode}: requests/s ratio to no preload",
                    cells,
                    f"ours ≥ {target_value:.2f}",
                    verdict,
                )
            )
        for number, k0 in (("5e", False), ("5f", True)):
            mode = "-k 0" if k0 else "persistent"
            base = cpu["none"][k0]
            complete = not failed and base and all(cpu[v][k0] for v in VARIANTS)
            cells = {}
            for variant in VARIANTS:
                if not complete:
                    cells[variant] = None
                elif variant == "none":
                    cells[variant] = f"({statistics.median(base) / 1000:,.1f} µs)"
                else:
                    cells[variant] = fmt_ratio([a / b for a, b in zip(cpu[variant][k0], base)])
            self.rows.append(
                Row(number, f"redis-server CPU time per request ({mode}, SET+GET): ratio to no preload", cells)
            )

    def start_redis(self, variant):
        """redis-server under `variant` on a free port; returns (process, port) once it answers."""
        port = free_port()
        directory = os.path.join(self.tmp, f"redis-{port}")
        os.makedirs(directory, exist_ok=True)
        server = subprocess.Popen(
            [
                "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no",
                "--dir", directory, "--logfile", os.path.join(directory, "log"),
            ],
            env=self.env(variant),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.children.append(server)
        deadline = time.monotonic() + 15
        while True:
            ping = subprocess.run(
                ["redis-cli", "-p", str(port), "ping"],
                env=self.settings("none"), capture_output=True, text=True, timeout=10,
            )
            if ping.stdout.strip() == "PONG":
                return server, port
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server ({variant}) on port {port} did not start")
            time.sleep(0.05)

    def stop(self, server):
        """Stops a server we started, by its PID."""
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        self.children.remove(server)

    def redis_benchmark(self, port, count, k0):
        """redis-benchmark (never preloaded): requests per second of SET and GET."""
        command = [
            "redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", "50", "-n", str(count),
            "-t", "set,get", "--csv",
        ]
        if k0:
            command += ["-k", "0"]
        output = subprocess.run(
            command, env=self.settings("none"), capture_output=True, text=True, timeout=300, check=True
        ).stdout
        results = {}
        for line in output.splitlines():
            fields = [field.strip('"') for field in line.split(",")]
            if len(fields) >= 2 and fields[0] in ("SET", "GET"):
                results[fields[0]] = float(fields[1])
        if len(results) != 2:
            raise RuntimeError(f"redis-benchmark printed {output!r}")
        return results

    # ---- row 6: apply on a process with many sockets ------------------------------------------

    APPLY_HOLDER = r"""
import os, resource, socket as S, struct, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if hard < 2 * n + 100:
    sys.exit(f"RLIMIT_NOFILE hard limit {hard} < {2 * n + 100}")
resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2 * n + 100), hard))
l = S.socket(); l.setsockopt(S.SOL_SOCKET, S.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", port)); l.listen(4096)
pairs = []
for _ in range(n):
    c = S.create_connection(("127.0.0.1", port)); a, _ = l.accept(); pairs.append((c, a))
print("ready", flush=True)
sys.stdin.readline()
reset = struct.pack("ii", 1, 0)  # no TIME_WAIT left behind
for pair in pairs:
    for s in pair:
        s.setsockopt(S.SOL_SOCKET, S.SO_LINGER, reset); s.close()
"""

    def row_apply(self):
        """`keepalive-preload apply` on one process without the library holding 2N+1 sockets:
        wall time per run (each round sets a different idle, so every socket is changed)."""
        connections, rounds = self.sizes["apply_connections"], self.sizes["apply_rounds"]
        sockets = 2 * connections + 1
        log(f"row 6: apply on {sockets} sockets, {rounds} rounds")
        times, cpu, changed = [], [], True
        holder = None
        try:
            if not self.args.apply:
                raise RuntimeError("no --apply command given")
            holder = subprocess.Popen(
                ["/usr/bin/python3", "-c", self.APPLY_HOLDER, str(free_port()), str(connections)],
                env=self.settings("none"), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )
            self.children.append(holder)
            if holder.stdout.readline().strip() != "ready":
                raise RuntimeError("the socket holder did not start")
            for number in range(rounds):
                command = [
                    self.args.apply, "apply", str(holder.pid), "--idle", str(61 + number % 2),
                    "--interval", INTERVAL, "--count", COUNT, "--override", "yes",
                ]
                start, used = time.monotonic(), children_cpu()
                output = subprocess.run(
                    command, env=self.settings("none"), capture_output=True, text=True, timeout=300,
                    check=True,
                ).stdout
                times.append(time.monotonic() - start)
                cpu.append(children_cpu() - used)
                changed = changed and f"{sockets} TCP sockets in 1 process: {sockets} changed" in output
        except (subprocess.SubprocessError, RuntimeError, OSError) as error:
            log(f"row 6 failed: {error}")
            times = []
        finally:
            if holder is not None:
                holder.stdin.write("close\n")
                holder.stdin.close()
                holder.wait(timeout=60)
                self.children.remove(holder)
        blank = {variant: "" for variant in VARIANTS}
        if not changed:
            log("row 6: not every socket was changed")
        ok = bool(times) and changed
        whole = per = None
        if ok:
            whole = (f"{statistics.median(cpu):.3f} s ({statistics.median(times):.3f} s), "
                     f"wall {min(times):.3f}–{max(times):.3f}")
            per = f"{statistics.median(cpu) * 1e6 / sockets:.1f} µs ({statistics.median(times) * 1e6 / sockets:.1f} µs)"
        self.rows.append(
            Row(
                "6a",
                f"`keepalive-preload apply` on a running process with {sockets:,} TCP sockets: "
                f"CPU (wall) time per run, median of {rounds}",
                dict(blank, ours=whole),
            )
        )
        self.rows.append(
            Row("6b", "`keepalive-preload apply`: CPU (wall) time per socket, median", dict(blank, ours=per))
        )

    # ---- report -----------------------------------------------------------------------------

    def machine(self):
        def first(path, pattern):
            try:
                with open(path) as file:
                    match = re.search(pattern, file.read(), re.M)
                return match.group(1).strip() if match else "?"
            except OSError:
                return "?"

        def version(package):
            result = subprocess.run(
                ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True
            )
            return result.stdout.strip() or "?"

        def output(command):
            try:
                return subprocess.run(command, capture_output=True, text=True).stdout.strip() or "?"
            except OSError:
                return "?"

        commit = output(["git", "rev-parse", "--short", "HEAD"])
        changed = output(["git", "diff", "--name-only", "HEAD", "--", "src", "config", "Cargo.toml"])
        dirty = f" (+ uncommitted changes to {', '.join(changed.split())})" if changed != "?" else ""
        cpu = first("/proc/cpuinfo", r"^model name\s*:\s*(.*)$")
        return [
            ("CPU", f"{cpu}, {os.cpu_count()} CPUs"),
            ("memory", first("/proc/meminfo", r"^MemTotal:\s*(.*)$")),
            ("OS", first("/etc/os-release", r'^PRETTY_NAME="?([^"\n]*)')),
            ("kernel", platform.release()),
            ("rustc", output(["rustc", "--version"])),
            ("keepalive-preload", f"{commit}{dirty}, "
                                  f"{os.path.getsize(self.library):,} bytes"),
            ("libkeepalive0", f"{version('libkeepalive0')}, {self.libkeepalive}, "
                              f"{os.path.getsize(os.path.realpath(self.libkeepalive)):,} bytes"),
            ("redis", version("redis-server")),
            ("valgrind", version("valgrind")),
            ("strace", version("strace")),
        ]

    def markdown(self, started, elapsed, load_before, load_after):
        lines = [
            "# Benchmarks",
            "",
            f"Written by `{self.args.command}` on {started:%Y-%m-%d %H:%M} UTC in {elapsed:.0f} s; "
            "regenerate with that command rather than editing this file.",
            "",
            "| machine | |",
            "|---|---|",
        ]
        lines += [f"| {key} | {value} |" for key, value in self.machine()]
        lines += [
            f"| load average | {load_before} at start, {load_after} at end |",
            "",
            f"Every measured process gets the same minimal environment: `PATH`, `LC_ALL=C`, "
            f"`KEEPIDLE={IDLE} KEEPINTVL={INTERVAL} KEEPCNT={COUNT}`; the fourth column adds "
            f"`KEEPALIVE_USER_TIMEOUT={USER_TIMEOUT}`. `LD_PRELOAD` is the only difference between columns.",
            "Targets are judged on the *ours* column; syscall counts on both of ours.",
            "",
            "| row | measurement | " + " | ".join(HEADINGS[v] for v in VARIANTS) + " | target | result |",
            "|---|---|" + "---:|" * len(VARIANTS) + "---|---|",
        ]
        for row in self.rows:
            cells = " | ".join("no number" if row.cells[v] is None else row.cells[v] for v in VARIANTS)
            lines.append(f"| {row.number} | {row.name} | {cells} | {row.target} | {row.verdict or ''} |")
        passed = sum(row.verdict == "PASS" for row in self.rows)
        failed = sum(row.verdict == "FAIL" for row in self.rows)
        lines += [
            "",
            f"Targets: {passed} PASS, {failed} FAIL.",
            "",
            "## How each row is measured",
            "",
            "- **1** `kp-bench tcp-socket N` / `tcp-connect N` (bench/): plain libc loops after a warm-up of "
            "min(N/10, 1000) iterations, timed in CPU time of the process (`CLOCK_PROCESS_CPUTIME_ID`: time other "
            "processes take on a busy machine does not count; wall time in parentheses). Rounds run "
            "A B C D, D C B A, A B C D … (interleaved, and no column always first); each round gives a ratio to no preload (and to libkeepalive0), the table shows the "
            "median and the range. The connect loop resets each connection (the listener lingers with timeout 0), "
            "so no TIME_WAIT piles up.",
            "- **2** `valgrind --tool=callgrind` total instructions at two loop sizes; the difference divided "
            "by the difference in iterations cancels start-up. Deterministic.",
            "- **3** `strace -c` total syscalls at two loop sizes, same difference; `LD_PRELOAD` is handed to "
            "the traced program only (`strace -E`). A configured socket costs one setsockopt for SO_KEEPALIVE "
            "plus one per option set; accepted sockets inherit the listener's options in the kernel (0). "
            "With `KEEPALIVE_PORTS` the decision is taken at connect(), so a socket connecting to an excluded "
            "port costs nothing. libkeepalive0 has no port filter and acts on every `AF_INET`+`SOCK_STREAM` socket.",
            "- **4** `kp-bench spawn N /bin/true`: posix_spawn + waitpid, `LD_PRELOAD` given to the child only; "
            "CPU time of the children (`RUSAGE_CHILDREN`) plus the parent's, per run, rounds interleaved as in 1. "
            "Memory: `VmRSS` (and `RssAnon`) from /proc/PID/status of a `/bin/sleep 30` once it sleeps, median "
            "of several samples per column. Nearly all of a preload's VmRSS is its file-backed pages: the kernel "
            "maps a whole neighbourhood of the file at each page fault, so VmRSS added follows the size of the "
            "shared object (and of libgcc_s.so.1 that a Rust std cdylib needs).",
            "- **5** four `redis-server`s on 127.0.0.1, on free ports above the ephemeral range, one per column (the preload is in the "
            "server only; `redis-benchmark` is never preloaded), all running at once; each round runs "
            "`redis-benchmark -c 50 -t set,get --csv` with a fixed request count against each in turn, "
            "persistent and with `-k 0`. Requests/s ratios are per round; 5e–5f add the server's CPU time per "
            "request (all threads, /proc/PID/task/*/schedstat), which a busy machine disturbs far less.",
            "- **6** a Python process without any preload makes N loopback connections to itself (both ends "
            "and the listener: 2N+1 TCP sockets, all at the kernel's values); each round runs "
            "`keepalive-preload apply PID --idle 61|62 --interval 10 --count 5 --override yes` (the idle "
            "alternates, so every round changes every socket) and times the whole command, CPU time (user + system, `RUSAGE_CHILDREN`) and wall time; it must report every "
            "socket changed. One column: `apply` does not depend on a preload.",
            "",
        ]
        return "\n".join(lines)

    def run(self):
        started = datetime.datetime.now(datetime.timezone.utc)
        clock = time.monotonic()
        load_before = loadavg()
        only = set(self.args.only.split(",")) if self.args.only else None
        steps = [
            ("1", self.row_loops),
            ("2", self.row_instructions),
            ("3", self.row_syscalls),
            ("4", self.row_startup),
            ("5", self.row_redis),
            ("6", self.row_apply),
        ]
        for key, step in steps:
            if only is None or key in only:
                step()
        elapsed = time.monotonic() - clock
        text = self.markdown(started, elapsed, load_before, loadavg())
        print(text)
        output = self.args.output or (None if self.args.smoke else "BENCHMARKS.md")
        if output:
            with open(output, "w") as file:
                file.write(text)
            log(f"table written to {output}")

        passed = failed = 0
        for row in self.rows:
            problems = []
            if not row.produced():
                problems.append("no number")
            if row.exact and row.verdict == "FAIL":
                problems.append("syscall count not exact")
            if problems:
                failed += 1
                log(f"FAIL row {row.number} {row.name}: {', '.join(problems)}")
            else:
                passed += 1
        label = "bench smoke" if self.args.smoke else "bench"
        print(f"{label}: {passed} passed, {failed} failed ({elapsed:.0f} s)")
        return 1 if failed else 0


def parse_times(output):
    wall = re.search(r"\bns_per_iteration=([0-9.]+)", output)
    cpu = re.search(r"\bcpu_ns_per_iteration=([0-9.]+)", output)
    if not wall or not cpu:
        raise RuntimeError(f"no times in kp-bench output {output!r}")
    return float(wall.group(1)), float(cpu.group(1))


def children_cpu():
    """User + system seconds of the waited-for children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_nanos(pid):
    """CPU time a process has run so far, all threads, from the scheduler's precise counters."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as file:
                total += int(file.read().split()[0])
        except FileNotFoundError:
            pass  # a thread that has just exited
    return total


def mapped_files(pid):
    """Resident KiB per file mapped into a process, from /proc/PID/smaps."""
    files, path = {}, None
    with open(f"/proc/{pid}/smaps") as file:
        for line in file:
            fields = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+$", fields[0]):
                path = fields[5] if len(fields) > 5 and fields[5].startswith("/") else None
            elif fields[0] == "Rss:" and path:
                files[path] = files.get(path, 0) + int(fields[1])
    return files


def loadavg():
    with open("/proc/loadavg") as file:
        return " ".join(file.read().split()[:3])


def free_port():
    """A free loopback port above the ephemeral range (so no connect() is handed it) and away
    from the 10001-29999 the Redis cluster harness uses; below the range if there is no room."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as file:
            first, last = map(int, file.read().split())
    except (OSError, ValueError):
        first, last = 32768, 60999
    low, high = (last + 1, 65536) if last < 64535 else (30000, max(first, 30001))
    for _ in range(100):
        port = random.randrange(low, high)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def find_libkeepalive():
    listing = subprocess.run(["dpkg", "-L", "libkeepalive0"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        if re.search(r"/libkeepalive\.so(\.\d+)*$", line) and os.path.exists(line):
            return line
    raise SystemExit("bench: libkeepalive0 is not installed (dpkg -L libkeepalive0 lists no libkeepalive.so)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny counts; checks numbers and exact syscalls")
    parser.add_argument("--library", required=True, help="libkeepalive_preload.so")
    parser.add_argument("--workload", required=True, help="the kp-bench executable")
    parser.add_argument("--apply", help="the keepalive-preload command, for row 6 (apply)")
    parser.add_argument("--command", default="scripts/bench", help="the command line shown in the table")
    parser.add_argument("--output", help="Markdown file (default BENCHMARKS.md; smoke: standard output only)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 7, smoke 2)")
    parser.add_argument("--only", help="comma-separated row numbers to run, like 1,3")
    args = parser.parse_args()
    bench = Bench(args)
    try:
        return bench.run()
    finally:
        for child in list(bench.children):
            child.kill()
            child.wait()
        shutil.rmtree(bench.tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
