"""What every row of scripts/bench shares: the columns and their environments, the one
interleaved-rounds helper, the measuring tools (kp-bench, callgrind, strace), and the row model.

Columns of the library table: no preload, libkeepalive0, keepalive-preload, and
keepalive-preload with KEEPALIVE_USER_TIMEOUT as well. `LD_PRELOAD` (and that one variable) is
the only difference between them.
"""

import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

IDLE, INTERVAL, COUNT, USER_TIMEOUT = "60", "10", "5", "30000"
OPTIONS = {"KEEPIDLE": IDLE, "KEEPINTVL": INTERVAL, "KEEPCNT": COUNT}
COLUMNS = ["none", "libkeepalive", "ours", "ours_ut"]
HEADINGS = {
    "none": "no preload",
    "libkeepalive": "libkeepalive0",
    "ours": "keepalive-preload",
    "ours_ut": "keepalive-preload + USER_TIMEOUT",
}
# Options each column configures: SO_KEEPALIVE counts as one, then one per timing set.
OPTIONS_SET = {"libkeepalive": 1 + 3, "ours": 1 + 3, "ours_ut": 1 + 4}

# Ports and names this benchmark may use (shared machine: other engineers use others).
PORTS = range(44000, 45000)
PREFIX = "kpbn-"


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


# ---- statistics ---------------------------------------------------------------------------


def interleaved(columns, rounds, measure):
    """THE interleaved-rounds helper: `rounds` rounds, each measuring every column once, in
    the order A B C D, then D C B A, and so on (no column always first, so a linear drift of
    the machine and any first-in-round effect fall equally on all). Returns
    {column: [one value per round]}, so that values of the same round can be paired."""
    values = {column: [] for column in columns}
    for number in range(rounds):
        for column in columns if number % 2 == 0 else columns[::-1]:
            values[column].append(measure(column, number))
    return values


def paired(values, numerator, denominator):
    """Per-round ratios numerator/denominator (the rounds ran side by side)."""
    return [a / b for a, b in zip(values[numerator], values[denominator])]


def spread(values, digits=3, unit=""):
    """`median (min–max)`."""
    if not values:
        return None
    median = statistics.median(values)
    return f"{median:,.{digits}f}{unit} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def effective(iterations):
    """kp-bench runs min(N/10, 1000) warm-up iterations before the N timed ones."""
    return iterations + min(iterations // 10, 1000)


def per_iteration(low, high, small, large):
    """The difference between two loop sizes per iteration: start-up and once-per-process
    work cancel."""
    return (high - low) / (effective(large) - effective(small))


# ---- rows ---------------------------------------------------------------------------------

NOT_BUILT = "not built yet"


class Row:
    """One line of a table. `cells` maps the table's columns to text (None: no number).
    `verdict` is PASS, FAIL, NOT_BUILT or None (information). `exact` rows (syscall counts)
    fail even the smoke run when they are not exact."""

    def __init__(self, table, number, name, cells, target="", verdict=None, exact=False, note=""):
        self.table = table
        self.number = number
        self.name = name
        self.cells = cells
        self.target = target
        self.verdict = verdict
        self.exact = exact
        self.note = note

    def produced(self):
        if self.verdict == NOT_BUILT:
            return True
        return all(value is not None for value in self.cells.values())


def judge(value, limit, smaller=True):
    if value is None:
        return "FAIL"
    return "PASS" if (value <= limit if smaller else value >= limit) else "FAIL"


# ---- the run ------------------------------------------------------------------------------


class Context:
    """Paths, sizes and helpers every row module uses; also owns the children and scratch
    directory of the run."""

    def __init__(self, args, sizes):
        self.args = args
        self.sizes = sizes
        self.library = os.path.abspath(args.library)
        self.workload = os.path.abspath(args.workload)
        self.command = os.path.abspath(args.cli) if args.cli else None
        self.libkeepalive = find_libkeepalive()
        self.tmp = tempfile.mkdtemp(prefix=PREFIX)
        self.children = []
        self.rows = []
        self.used_ports = set()
        self.port_lock = threading.Lock()

    def close(self):
        for child in list(self.children):
            stop(child)
        self.children.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def add(self, row):
        self.rows.append(row)
        return row

    # ---- environments --------------------------------------------------------------------

    def preload(self, column):
        return {
            "none": None,
            "libkeepalive": self.libkeepalive,
            "ours": self.library,
            "ours_ut": self.library,
        }[column]

    def settings(self, column="none", extra=None):
        """The minimal environment every measured process gets (no LD_PRELOAD): the same three
        options for everyone, so libkeepalive's getenv scans a short environment."""
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
        env.update(OPTIONS)
        if column == "ours_ut":
            env["KEEPALIVE_USER_TIMEOUT"] = USER_TIMEOUT
        env.update(extra or {})
        return env

    def env(self, column, extra=None):
        env = self.settings(column, extra)
        library = self.preload(column)
        if library:
            env["LD_PRELOAD"] = library
        return env

    def port(self):
        """A free loopback port of this benchmark's range, not handed out before in this run."""
        with self.port_lock:
            candidates = [port for port in PORTS if port not in self.used_ports]
            random.shuffle(candidates)
            for port in candidates:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                    try:
                        probe.bind(("127.0.0.1", port))
                    except OSError:
                        continue
                self.used_ports.add(port)
                return port
        raise RuntimeError("no free port in 44000-44999")

    # ---- tools ---------------------------------------------------------------------------

    def kp_bench(self, workload, iterations, *rest, env, cgroup=None):
        """(wall, CPU) nanoseconds per iteration of a kp-bench workload; in `cgroup` (a cgroup2
        directory) when given: the child joins it before it execs."""
        output = subprocess.run(
            [self.workload, workload, str(iterations), *map(str, rest)],
            env=env, capture_output=True, text=True, timeout=300, check=True,
            preexec_fn=join_cgroup(cgroup) if cgroup else None,
        ).stdout
        return parse_times(output)

    def callgrind_total(self, env, command):
        """Total user-space instructions (Ir) of `command` under callgrind."""
        out = os.path.join(self.tmp, f"callgrind.{time.monotonic_ns()}")
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *command],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300, check=True,
        )
        with open(out) as file:
            text = file.read()
        os.unlink(out)
        match = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
        if not match:
            raise RuntimeError("callgrind wrote no total")
        return int(match.group(1))

    def strace(self, column, command, extra=None):
        """The traced program's calls, one (name, fd argument, result, line) per call, with
        LD_PRELOAD handed to the traced program only (strace -E)."""
        out = os.path.join(self.tmp, f"strace.{time.monotonic_ns()}")
        traced = "socket,connect,accept,accept4,listen,close,setsockopt,getsockopt,getsockname,getpeername"
        invocation = ["strace", "-o", out, "-e", f"trace={traced}"]
        library = self.preload(column)
        if library:
            invocation += ["-E", f"LD_PRELOAD={library}"]
        subprocess.run(
            invocation + command, env=self.settings(column, extra),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300, check=True,
        )
        calls = []
        with open(out) as file:
            for line in file:
                match = re.match(r"^(\w+)\((\d+)?.*\)\s+=\s+(-?\d+)", line)
                if match:
                    fd = int(match.group(2)) if match.group(2) is not None else None
                    calls.append((match.group(1), fd, int(match.group(3)), line.rstrip()))
        os.unlink(out)
        return calls


def parse_times(output):
    wall = re.search(r"\bns_per_iteration=([0-9.]+)", output)
    cpu = re.search(r"\bcpu_ns_per_iteration=([0-9.]+)", output)
    if not wall or not cpu:
        raise RuntimeError(f"no times in kp-bench output {output!r}")
    return float(wall.group(1)), float(cpu.group(1))


def join_cgroup(directory):
    """A preexec_fn that moves the child into a cgroup2 directory before it execs."""

    def join():
        with open(os.path.join(directory, "cgroup.procs"), "w") as file:
            file.write(str(os.getpid()))

    return join


def stop(child, timeout=10):
    """Stops a child this run started, by its PID."""
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def find_libkeepalive():
    listing = subprocess.run(["dpkg", "-L", "libkeepalive0"], capture_output=True, text=True).stdout
    for line in listing.splitlines():
        if re.search(r"/libkeepalive\.so(\.\d+)*$", line) and os.path.exists(line):
            return line
    raise SystemExit("bench: libkeepalive0 is not installed (dpkg -L libkeepalive0 lists no libkeepalive.so)")


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


def loadavg():
    with open("/proc/loadavg") as file:
        return " ".join(file.read().split()[:3])
