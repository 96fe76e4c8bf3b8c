"""The library's own costs, side by side with no preload and libkeepalive0: start-up, memory,
size, instructions per socket (callgrind) and syscalls per socket kind (strace)."""

import collections
import os
import re
import statistics
import subprocess
import time

from .core import (
    COLUMNS, OPTIONS_SET, Row, interleaved, judge, log, paired, per_iteration, spread,
)

TABLE = "library"


# ---- start-up -----------------------------------------------------------------------------


def startup(ctx):
    """Start-up CPU time. The columns alternate spawn by spawn inside one kp-bench process
    (`spawn-mix`: A B C D, D C B A, …), and each child's own CPU time counts (wait4), so
    that a round's ratio compares runs a millisecond apart; the median of the rounds judges."""
    rounds, runs = ctx.sizes["rounds"], ctx.sizes["spawn_iterations"]
    log(f"start-up: /bin/true, {rounds} rounds of {runs} spawns per column, alternating spawn by spawn")
    setups = []
    for column in COLUMNS:
        library = ctx.preload(column) or "-"
        extra = " KEEPALIVE_USER_TIMEOUT=30000" if column == "ours_ut" else ""
        setups.append(library + extra)
    env = dict(ctx.settings("none"), KP_BENCH_MIX="|".join(setups))
    name = (f"start-up of `/bin/true`: CPU time of the child per run; ratio to libkeepalive0, median "
            f"(min–max) of {rounds} rounds of {runs} spawns per column, alternating spawn by spawn")
    times = {column: [] for column in COLUMNS}
    try:
        for _ in range(rounds):
            output = subprocess.run(
                [ctx.workload, "spawn-mix", str(runs), "/bin/true"], env=env, capture_output=True,
                text=True, timeout=300, check=True,
            ).stdout
            found = dict(re.findall(r"setup=(\d+) runs=\d+ cpu_ns_per_run=([0-9.]+)", output))
            for index, column in enumerate(COLUMNS):
                times[column].append(float(found[str(index)]))
    except (subprocess.SubprocessError, RuntimeError, KeyError) as error:
        log(f"start-up failed: {error}")
        return ctx.add(Row(TABLE, "L1", name, {c: None for c in COLUMNS}, "≤ 0.95", "FAIL"))
    micros = {c: statistics.median(times[c]) / 1000 for c in COLUMNS}
    cells = {
        "none": f"{micros['none']:,.0f} µs",
        "libkeepalive": f"1 ({micros['libkeepalive']:,.0f} µs)",
    }
    for column in ("ours", "ours_ut"):
        cells[column] = f"{spread(paired(times, column, 'libkeepalive'))} ({micros[column]:,.0f} µs)"
    ratio = statistics.median(paired(times, "ours", "libkeepalive"))
    ctx.add(Row(TABLE, "L1", name, cells, "≤ 0.95", judge(ratio, 0.95)))


# ---- memory -------------------------------------------------------------------------------


def memory(ctx):
    """Resident memory a preload adds to a sleeping program: the pages of its own file that
    are resident in the process (deterministic: fault-around maps them whole) plus the
    anonymous memory added (RssAnon: link maps, relocated data, TLS; paired samples, median).
    The whole VmRSS difference is shown beside it but not judged: libc's own resident pages
    vary by ±36 KiB between identical runs of a plain `sleep` (page-cache folio sizes), so
    they would let noise decide."""
    samples = ctx.sizes["rss_samples"]
    log(f"memory: /bin/sleep, {samples} interleaved samples per column")
    name = ("resident memory added to a sleeping `/bin/sleep`: pages of the preload's own file + "
            "RssAnon added (median of paired samples); whole VmRSS difference, median (min–max), beside")
    try:
        rss = interleaved(COLUMNS, samples, lambda column, _: resident(ctx, column))
    except (OSError, RuntimeError, AttributeError) as error:
        log(f"memory failed: {error}")
        return ctx.add(Row(TABLE, "L2", name, {c: None for c in COLUMNS}, "≤ 48 KiB", "FAIL"))
    base = rss["none"]
    cells = {"none": f"({statistics.median(r[0] for r in base):,.0f} KiB VmRSS, "
                     f"{statistics.median(r[1] for r in base):,.0f} anon)"}
    verdict = None
    for column in COLUMNS[1:]:
        pairs = list(zip(rss[column], base))
        anon = statistics.median(mine[1] - other[1] for mine, other in pairs)
        own = statistics.median(mine[2] for mine, _ in pairs)
        whole = [mine[0] - other[0] for mine, other in pairs]
        added = own + anon
        cells[column] = (f"+{added:,.0f} KiB ({own:,.0f} file + {anon:,.0f} anon); "
                         f"VmRSS {spread(whole, 0, '')}")
        if column == "ours":
            verdict = judge(added, 48)
    ctx.add(Row(TABLE, "L2", name, cells, "≤ 48 KiB", verdict))


def resident(ctx, column):
    """VmRSS and RssAnon (KiB) of /bin/sleep once it sleeps, and the KiB resident from the
    preloaded file itself."""
    child = subprocess.Popen(["/bin/sleep", "30"], env=ctx.env(column), start_new_session=True)
    library = ctx.preload(column)
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
                own = mapped_file(child.pid, os.path.realpath(library)) if library else 0
                return rss, anon, own
            time.sleep(0.01)
        raise RuntimeError("sleep never went to sleep")
    finally:
        child.kill()
        child.wait()


def mapped_file(pid, path):
    """Resident KiB of one mapped file's own pages, from /proc/PID/smaps: `Rss` minus
    `Anonymous` of its mappings. A page the loader wrote (relocated data, the GOT) is a private
    anonymous copy: it is counted once, in RssAnon, not a second time as the file's."""
    total, inside = 0, False
    with open(f"/proc/{pid}/smaps") as file:
        for line in file:
            fields = line.split()
            if re.match(r"^[0-9a-f]+-[0-9a-f]+$", fields[0]):
                inside = len(fields) > 5 and os.path.realpath(fields[5]) == path
            elif fields[0] == "Rss:" and inside:
                total += int(fields[1])
            elif fields[0] == "Anonymous:" and inside:
                total -= int(fields[1])
    return total


# ---- size ---------------------------------------------------------------------------------


def size(ctx):
    log("size: the shared objects, stripped")
    name = "shared object size, stripped (`strip -o`; file size as built in parentheses)"
    cells = {"none": ""}
    sizes = {}
    try:
        for column, path in (("libkeepalive", ctx.libkeepalive), ("ours", ctx.library)):
            stripped = os.path.join(ctx.tmp, f"stripped.{column}.so")
            subprocess.run(["strip", "-o", stripped, os.path.realpath(path)], check=True)
            sizes[column] = os.path.getsize(stripped)
            cells[column] = f"{sizes[column]:,} bytes ({os.path.getsize(os.path.realpath(path)):,})"
    except (OSError, subprocess.SubprocessError) as error:
        log(f"size failed: {error}")
        return ctx.add(Row(TABLE, "L3", name, {c: None for c in COLUMNS}, "≤ 2 × libkeepalive0", "FAIL"))
    cells["ours_ut"] = "(the same file)"
    limit = 2 * sizes["libkeepalive"]
    ctx.add(Row(TABLE, "L3", name, cells, f"≤ 2 × libkeepalive0 = {limit:,} bytes",
                judge(sizes["ours"], limit)))


# ---- instructions -------------------------------------------------------------------------


def instructions(ctx):
    cases = [
        ("L4", "user-space instructions added per TCP socket (`socket()`+`close()`; callgrind, "
               "difference of two loop sizes)", "tcp-socket", (), {}, ctx.sizes["callgrind_socket"], True),
        ("I1", "user-space instructions added per UDP socket (`socket()`+`close()`)", "udp-socket", (), {},
         ctx.sizes["callgrind_socket"], False),
        ("I2", "user-space instructions added per loopback connection (client `socket()`+`connect()` "
               "and the accepted socket)", "tcp-connect", (ctx.port(),), {}, ctx.sizes["callgrind_connect"], False),
        ("I3", "user-space instructions added per `setsockopt(TCP_KEEPIDLE, 30)` of the program, "
               "KEEPALIVE_OVERRIDE=no (default)", "tcp-setsockopt", (30,), {}, ctx.sizes["callgrind_socket"], False),
        ("I4", "user-space instructions added per `setsockopt(TCP_KEEPIDLE, 30)` of the program, "
               "KEEPALIVE_OVERRIDE=yes", "tcp-setsockopt", (30,), {"KEEPALIVE_OVERRIDE": "yes"},
         ctx.sizes["callgrind_socket"], False),
    ]
    for number, name, workload, rest, extra, (small, large), targeted in cases:
        log(f"instructions: callgrind {workload} at {small} and {large} iterations")
        per = {}
        try:
            for column in COLUMNS:
                command = [ctx.workload, workload]
                rest_ = [str(value) for value in rest]
                low = ctx.callgrind_total(ctx.env(column, extra), command + [str(small)] + rest_)
                high = ctx.callgrind_total(ctx.env(column, extra), command + [str(large)] + rest_)
                per[column] = per_iteration(low, high, small, large)
        except (subprocess.SubprocessError, RuntimeError, OSError) as error:
            log(f"{number} failed: {error}")
            per = {}
        cells = {}
        for column in COLUMNS:
            if column not in per:
                cells[column] = None
            elif column == "none":
                cells[column] = f"({per['none']:,.0f} per iteration)"
            else:
                cells[column] = f"{round(per[column] - per['none']) + 0:,}"
        if not targeted:
            ctx.add(Row("info", number, name, cells))
            continue
        target = "≤ 94, and ≤ libkeepalive0 / 10"
        verdict = "FAIL"
        if per:
            ours = per["ours"] - per["none"]
            classic = per["libkeepalive"] - per["none"]
            verdict = "PASS" if ours <= 94 and ours <= classic / 10 else "FAIL"
        ctx.add(Row(TABLE, number, name, cells, target, verdict))


# ---- syscalls -----------------------------------------------------------------------------

LIBRARY_CALLS = ("setsockopt", "getsockopt", "getsockname", "getpeername")


def phases(calls):
    """Counts the calls of LIBRARY_CALLS by (phase, name): the phase of a descriptor is the
    last call of the program's that made or moved it — socket:tcp/udp/unix, connect,
    accept, listen. A descriptor number is forgotten at close()."""
    phase, counts = {}, collections.Counter()
    for name, fd, result, line in calls:
        if name == "socket" and result >= 0:
            if "AF_UNIX" in line:
                kind = "unix"
            elif "SOCK_DGRAM" in line:
                kind = "udp"
            elif "SOCK_STREAM" in line:
                kind = "tcp"
            else:
                kind = "other"
            phase[result] = f"socket:{kind}"
        elif name in ("accept", "accept4") and result >= 0:
            phase[result] = "accept"
        elif name in ("connect", "listen"):
            phase[fd] = name
        elif name == "close":
            phase.pop(fd, None)
        elif name in LIBRARY_CALLS:
            counts[(phase.get(fd, "?"), name)] += 1
    return counts


# (number, what, workload, rest, extra variables, phase, expected for (ours, ours_ut), target)
def syscall_cases(port, other):
    ours, ut = OPTIONS_SET["ours"], OPTIONS_SET["ours_ut"]
    listed = {"KEEPALIVE_PORTS": str(port)}
    excluded = {"KEEPALIVE_PORTS": str(other)}
    return [
        ("S1", "TCP `socket()`, no filter", "tcp-socket", (), {}, "socket:tcp", (ours, ut),
         "exactly 1 + options: 4, and 5 with USER_TIMEOUT"),
        ("S2", "TCP `connect()` of that socket, no filter", "tcp-connect", (port,), {}, "connect",
         (0, 0), "0"),
        ("S3", "accepted TCP socket, its listener configured, no filter", "tcp-connect", (port,), {},
         "accept", (1, 1), "exactly 1 (one getsockopt)"),
        ("S4", "UDP `socket()`", "udp-socket", (), {}, "socket:udp", (0, 0), "0"),
        ("S5", "UNIX `socket()`", "unix-socket", (), {}, "socket:unix", (0, 0), "0"),
        ("S6", "TCP `socket()` under KEEPALIVE_PORTS", "tcp-connect", (port,), listed, "socket:tcp",
         (0, 0), "0 per socket (+ 3 getsockopt once per process)"),
        ("S7", "TCP `connect()` to a port in KEEPALIVE_PORTS", "tcp-connect", (port,), listed, "connect",
         (3 + 2 * ours, 3 + 2 * ut),
         "exactly SO_PROTOCOL, SO_PEERNAME, SO_COOKIE (its role, kept for KEEPALIVE_PORTS) + a read "
         "and a write per option: 11, and 13"),
        ("S8", "accepted TCP socket, its listener on a port in KEEPALIVE_PORTS", "tcp-connect", (port,),
         listed, "accept", (2, 2), "exactly 2 (the witness option; SO_COOKIE: its role)"),
        ("S9", "TCP `connect()` to a port KEEPALIVE_PORTS excludes", "tcp-connect", (port,), excluded,
         "connect", (3, 3), "exactly 3 (SO_PROTOCOL, SO_PEERNAME, SO_COOKIE)"),
        ("S10", "accepted TCP socket, its listener on a port KEEPALIVE_PORTS excludes", "tcp-connect",
         (port,), excluded, "accept", (5, 5),
         "exactly 5 (the witness option, SO_PROTOCOL, SO_COOKIE, getsockname, getpeername; the "
         "listener's SO_COOKIE counts on the listener)"),
        ("S11", "the program's own `setsockopt(TCP_KEEPIDLE, 30)`, KEEPALIVE_OVERRIDE=yes",
         "tcp-setsockopt", (30,), {"KEEPALIVE_OVERRIDE": "yes"}, "socket:tcp", (3, 3),
         "exactly 3 (the value read back from the kernel, SO_PROTOCOL (MPTCP takes TCP options "
         "too), then ours)"),
        ("S12", "the program's own `setsockopt(TCP_KEEPIDLE, 60)` (the configured value), "
                "KEEPALIVE_OVERRIDE=yes", "tcp-setsockopt", (60,), {"KEEPALIVE_OVERRIDE": "yes"},
         "socket:tcp", (1, 1), "exactly 1 (the value read back)"),
        ("S13", "the program's own `setsockopt(TCP_KEEPIDLE, 30)`, KEEPALIVE_OVERRIDE=no (default)",
         "tcp-setsockopt", (30,), {}, "socket:tcp", (0, 0), "0"),
    ]


def describe(counter):
    """`10 (6 getsockopt, 4 setsockopt)`."""
    total = sum(counter.values())
    if total == 0:
        return "0"
    parts = ", ".join(f"{value:g} {name}" for name, value in sorted(counter.items()) if value)
    return f"{total:g} ({parts})"


def syscalls(ctx):
    small, large = ctx.sizes["strace"]
    port, other = ctx.port(), ctx.port()
    runs = {}  # (workload, rest, extra items, column, iterations) -> counts

    def counts(workload, rest, extra, column, iterations):
        key = (workload, rest, tuple(sorted(extra.items())), column, iterations)
        if key not in runs:
            command = [ctx.workload, workload, str(iterations), *map(str, rest)]
            runs[key] = phases(ctx.strace(column, command, extra))
        return runs[key]

    log(f"syscalls: strace, loops of {small} and {large} iterations")
    for number, what, workload, rest, extra, phase, expected, target in syscall_cases(port, other):
        name = f"syscalls added per {what} (strace)"
        try:
            per, once = {}, {}
            for column in COLUMNS:
                low = counts(workload, rest, extra, column, small)
                high = counts(workload, rest, extra, column, large)
                per[column] = collections.Counter({
                    call: per_iteration(low[(phase, call)], high[(phase, call)], small, large)
                    for call in LIBRARY_CALLS
                })
                once[column] = collections.Counter({
                    call: low[(phase, call)] - per[column][call] * (small + min(small // 10, 1000))
                    for call in LIBRARY_CALLS
                })
        except (subprocess.SubprocessError, RuntimeError, OSError) as error:
            log(f"{number} failed: {error}")
            ctx.add(Row(TABLE, number, name, {c: None for c in COLUMNS}, target, "FAIL", exact=True))
            continue
        cells, verdict = {}, "PASS"
        own = per["none"]
        cells["none"] = f"(program: {describe(own)})" if sum(own.values()) else "0"
        for column in COLUMNS[1:]:
            added = collections.Counter({call: per[column][call] - own[call] for call in LIBRARY_CALLS})
            extra_once = collections.Counter({
                call: once[column][call] - once["none"][call] for call in LIBRARY_CALLS
            })
            text = describe(added)
            if number == "S6" and column in ("ours", "ours_ut") and sum(extra_once.values()):
                text += f" (+ {describe(extra_once)} once)"
            cells[column] = text
            if column in ("ours", "ours_ut"):
                want = expected[0] if column == "ours" else expected[1]
                if abs(sum(added.values()) - want) > 1e-9 or any(value < 0 for value in added.values()):
                    verdict = "FAIL"
                    log(f"{number} {column}: {sum(added.values()):g} syscalls, want {want}")
        ctx.add(Row(TABLE, number, name, cells, target, verdict, exact=True))
