"""A real server: redis-server with no preload, libkeepalive0 and keepalive-preload.

The targets are instruction counts (callgrind on the server for a fixed redis-benchmark run):
what the preload itself executes — the instructions inside the preloaded object and inside
whatever it calls, except the real function each hook forwards to, which the program would
have called anyway. That count does not depend on how busy the machine is; the server's whole
total does (the event loop batches ready clients differently from run to run: ±0.5 % between
identical runs), so it is only the denominator. Requests per second are information, with their
spread.
"""

import concurrent.futures
import os
import re
import statistics
import subprocess
import time

from .core import Row, cpu_nanos, interleaved, judge, log, paired, spread, stop

TABLE = "redis"
COLUMNS = ["none", "libkeepalive", "ours"]
HOOKS = ("socket", "connect", "listen", "accept", "accept4", "setsockopt")


def server_command(port, directory):
    return [
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no",
        "--dir", directory, "--logfile", os.path.join(directory, "log"),
    ]


def wait_for(ctx, port, server, seconds, directory=None):
    deadline = time.monotonic() + seconds
    while True:
        ping = subprocess.run(
            ["redis-cli", "-p", str(port), "ping"],
            env=ctx.settings("none"), capture_output=True, text=True, timeout=10,
        )
        if ping.stdout.strip() == "PONG":
            return
        if server.poll() is not None or time.monotonic() > deadline:
            why = ""
            for path in (os.path.join(directory, "log"), os.path.join(directory, "valgrind.log")):
                if directory and os.path.exists(path):
                    with open(path, errors="replace") as file:
                        why += " | " + " / ".join(file.read().strip().splitlines()[-3:])
            raise RuntimeError(f"redis-server on port {port} did not answer (exit {server.poll()}){why}")
        time.sleep(0.1)


def benchmark(ctx, port, requests, k0):
    """redis-benchmark (never preloaded), 50 clients, SET and GET: requests/s of each."""
    command = [
        "redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-c", "50", "-n", str(requests),
        "-t", "set,get", "--csv",
    ]
    if k0:
        command += ["-k", "0"]
    output = subprocess.run(
        command, env=ctx.settings("none"), capture_output=True, text=True, timeout=600, check=True
    ).stdout
    results = {}
    for line in output.splitlines():
        fields = [field.strip('"') for field in line.split(",")]
        if len(fields) >= 2 and fields[0] in ("SET", "GET"):
            results[fields[0]] = float(fields[1])
    if len(results) != 2:
        raise RuntimeError(f"redis-benchmark printed {output!r}")
    return results


# ---- callgrind ----------------------------------------------------------------------------


def callgrind_server(ctx, column, requests, k0):
    """Runs one redis-server under callgrind for one fixed redis-benchmark run (requests=0:
    start, one PING, stop) and returns the callgrind output file. Our port range lies inside
    the kernel's ephemeral range, so another run's client may hold the chosen port by the time
    the server binds it: then it starts again on another port."""
    for attempt in range(3):
        try:
            return callgrind_server_once(ctx, column, requests, k0)
        except RuntimeError as error:
            if "did not answer" not in str(error) or attempt == 2:
                raise
            log(f"redis-server ({column}) did not start, again on another port: {error}")
    raise RuntimeError("unreachable")


def callgrind_server_once(ctx, column, requests, k0):
    port = ctx.port()
    directory = os.path.join(ctx.tmp, f"redis-callgrind-{port}")
    os.makedirs(directory, exist_ok=True)
    out = os.path.join(directory, "callgrind.out")
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
         f"--log-file={os.path.join(directory, 'valgrind.log')}", *server_command(port, directory)],
        env=ctx.env(column), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    ctx.children.append(server)
    try:
        wait_for(ctx, port, server, 120, directory)
        if requests:
            benchmark(ctx, port, requests, k0)
        subprocess.run(["redis-cli", "-p", str(port), "shutdown", "nosave"], env=ctx.settings("none"),
                       capture_output=True, timeout=60)
        server.wait(timeout=120)
    finally:
        stop(server)
        ctx.children.remove(server)
    if not os.path.exists(out):
        raise RuntimeError(f"callgrind wrote no {out}")
    return out


def attribute(path, library):
    """(total Ir, Ir the preload added) from a callgrind output file: the preloaded object's
    own instructions, plus the inclusive cost of each call it makes into another object,
    except a hook's call to the real function of its own name."""
    library = os.path.realpath(library)
    names = {}

    def name(kind, text):
        text = text.strip()
        match = re.match(r"^\((\d+)\)(?:\s+(.*))?$", text)
        if not match:
            return text
        key = (kind, match.group(1))
        if match.group(2) is not None:
            names[key] = match.group(2)
        return names.get(key, "?")

    total = added = 0
    ob = fn = None
    cob = cfn = None
    in_call = False
    with open(path) as file:
        for line in file:
            if not line or line[0] == "\n":
                continue
            if line.startswith("ob="):
                ob = name("ob", line[3:])
            elif line.startswith("fn="):
                fn = name("fn", line[3:])
            elif line.startswith("cob="):
                cob = name("ob", line[4:])
            elif line.startswith("cfn="):
                cfn = name("fn", line[4:])
            elif line.startswith(("cfi=", "cfl=")):
                name("fl", line[4:])
            elif line.startswith(("fl=", "fi=", "fe=")):
                name("fl", line[3:])
            elif line.startswith("calls="):
                in_call = True
            elif line[0] in "0123456789+-*":
                fields = line.split()
                cost = int(fields[1]) if len(fields) > 1 else 0
                ours = ob is not None and os.path.realpath(ob) == library
                if in_call:
                    callee_ob = cob if cob is not None else ob
                    callee_ours = callee_ob is not None and os.path.realpath(callee_ob) == library
                    forwarded = fn in HOOKS and re.fullmatch(rf"_*(libc_)?{fn}", cfn or "")
                    if ours and not callee_ours and not forwarded:
                        added += cost
                    in_call = False
                    cob = None
                else:
                    total += cost
                    if ours:
                        added += cost
            elif line.startswith(("summary:", "totals:")):
                total = int(line.split()[1])
    return total, added


def instructions(ctx):
    requests, requests_k0 = ctx.sizes["redis_requests"], ctx.sizes["redis_requests_k0"]
    log(f"redis: callgrind on redis-server, {requests} requests persistent, {requests_k0} with -k 0, "
        "the three columns at once")
    jobs = [("none", 0, False)]
    jobs += [(column, requests, False) for column in COLUMNS]
    jobs += [(column, requests_k0, True) for column in COLUMNS]
    results = {}
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
            futures = {pool.submit(callgrind_server, ctx, column, count, k0): (column, count, k0)
                       for column, count, k0 in jobs}
            for future, key in futures.items():
                path = future.result()
                column = key[0]
                library = ctx.preload(column)
                results[key] = attribute(path, library) if library else (attribute(path, "/")[0], 0)
    except (subprocess.SubprocessError, RuntimeError, OSError) as error:
        log(f"redis callgrind failed: {error}")
        results = {}
    startup = results.get(("none", 0, False), (None, None))[0]
    for number, count, k0, limit in (("R1", requests, False, 0.1), ("R2", requests_k0, True, 1.0)):
        mode = "a new connection per request (`-k 0`)" if k0 else "persistent connections"
        name = (f"redis-server, {mode}: user-space instructions per request added by the library "
                f"(callgrind on the server, `redis-benchmark -c 50 -n {count:,} -t set,get`"
                f"{' -k 0' if k0 else ''}); % of the server's own")
        served = 2 * count
        if not results:
            ctx.add(Row(TABLE, number, name, {c: None for c in COLUMNS}, f"≤ {limit} %", "FAIL"))
            continue
        base = (results[("none", count, k0)][0] - startup) / served
        cells = {"none": f"({base:,.0f} per request)"}
        verdict = None
        for column in COLUMNS[1:]:
            per = results[(column, count, k0)][1] / served
            percent = 100 * per / base
            cells[column] = f"+{per:,.1f} ({percent:.3f} %)"
            if column == "ours":
                verdict = judge(percent, limit)
        ctx.add(Row(TABLE, number, name, cells, f"≤ {limit} %", verdict))


# ---- requests per second (information) ----------------------------------------------------


def requests(ctx):
    rounds = ctx.sizes["redis_rounds"]
    count, count_k0 = ctx.sizes["redis_rps_requests"], ctx.sizes["redis_rps_requests_k0"]
    log(f"redis: requests/s, {rounds} interleaved rounds, {count} requests persistent, {count_k0} -k 0")
    servers = {}
    keys = [("SET", False), ("GET", False), ("SET", True), ("GET", True)]
    try:
        for column in COLUMNS:
            port = ctx.port()
            directory = os.path.join(ctx.tmp, f"redis-{port}")
            os.makedirs(directory, exist_ok=True)
            server = subprocess.Popen(server_command(port, directory), env=ctx.env(column),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True)
            ctx.children.append(server)
            servers[column] = (server, port)
            wait_for(ctx, port, server, 15, directory)

        def measure(column, _):
            server, port = servers[column]
            values = {}
            for k0, n in ((False, count), (True, count_k0)):
                before = cpu_nanos(server.pid)
                for test, value in benchmark(ctx, port, n, k0).items():
                    values[(test, k0)] = value
                values[("cpu", k0)] = (cpu_nanos(server.pid) - before) / (2 * n)
            return values

        results = interleaved(COLUMNS, rounds, measure)
    except (subprocess.SubprocessError, RuntimeError, OSError) as error:
        log(f"redis requests/s failed: {error}")
        results = None
    finally:
        for server, _ in servers.values():
            stop(server)
            ctx.children.remove(server)
    for number, (test, k0) in zip(("R3", "R4", "R5", "R6"), keys):
        mode = "`-k 0`" if k0 else "persistent"
        name = f"redis-benchmark {test}, 50 clients, {mode}: requests/s ratio to no preload, median (min–max) of {rounds} rounds"
        if not results:
            ctx.add(Row(TABLE, number, name, {c: None for c in COLUMNS}))
            continue
        series = {c: [r[(test, k0)] for r in results[c]] for c in COLUMNS}
        cells = {"none": f"({statistics.median(series['none']):,.0f} req/s)"}
        for column in COLUMNS[1:]:
            cells[column] = spread(paired(series, column, "none"))
        ctx.add(Row(TABLE, number, name, cells, "information"))
    for number, k0 in (("R7", False), ("R8", True)):
        mode = "`-k 0`" if k0 else "persistent"
        name = f"redis-server CPU time per request ({mode}, SET+GET): ratio to no preload, median (min–max)"
        if not results:
            ctx.add(Row(TABLE, number, name, {c: None for c in COLUMNS}))
            continue
        series = {c: [r[("cpu", k0)] for r in results[c]] for c in COLUMNS}
        cells = {"none": f"({statistics.median(series['none']) / 1000:,.1f} µs)"}
        for column in COLUMNS[1:]:
            cells[column] = spread(paired(series, column, "none"))
        ctx.add(Row(TABLE, number, name, cells, "information"))
