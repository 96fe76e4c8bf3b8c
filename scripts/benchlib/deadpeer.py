"""Dead peer: how long a connection to a peer that vanished (no FIN, no RST) stays open.

Two network namespaces joined by a veth pair: an echo server (`kp-bench echo-server`) in
kpbn-PID-b, clients (`kp-bench dead-peer`) in kpbn-PID-a, each one exchange old. Then the peer's namespace drops
everything in and out (iptables DROP: a blackhole) and each client blocks in recv until its
kernel gives up on the connection: an idle link (only keepalive can notice), and a link with
data in flight (the client sends one byte after the blackhole: only TCP_USER_TIMEOUT bounds
it). Settings 2/1/3 and a 3 s user timeout everywhere, given the way each mechanism takes
them: the preload from KEEP* variables (libkeepalive0 the same variables; it has no user
timeout), the eBPF policy attached to a cgroup the client runs in, `apply` run on the client
once it is connected. All clients of a run share one blackhole; the median of the runs counts.
"""

import os
import statistics
import subprocess
import time

from .core import NOT_BUILT, Row, join_cgroup, log, stop
from .enforce import DEAD_PEER_OPTIONS, Cgroup, built, plain_env

TABLE = "deadpeer"
# Names of this run only (two runs at once, say CI and a developer, must not meet).
RUN = os.getpid() % 100000
NS_A, NS_B = f"kpbn-{RUN}-a", f"kpbn-{RUN}-b"
VETH_A, VETH_B = f"kpbn{RUN}a", f"kpbn{RUN}b"
ADDRESS_A, ADDRESS_B = "10.254.44.1", "10.254.44.2"
SETTINGS = {"KEEPIDLE": "2", "KEEPINTVL": "1", "KEEPCNT": "3", "KEEPALIVE_USER_TIMEOUT": "3s"}
MODES = ("idle", "data")


def sh(*command, check=True):
    return subprocess.run(list(command), capture_output=True, text=True, timeout=30, check=check)


class Namespaces:
    def __enter__(self):
        self.__exit__()
        sh("ip", "netns", "add", NS_A)
        sh("ip", "netns", "add", NS_B)
        sh("ip", "link", "add", VETH_A, "type", "veth", "peer", "name", VETH_B)
        sh("ip", "link", "set", VETH_A, "netns", NS_A)
        sh("ip", "link", "set", VETH_B, "netns", NS_B)
        for namespace, device, address in ((NS_A, VETH_A, ADDRESS_A), (NS_B, VETH_B, ADDRESS_B)):
            sh("ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", device)
            sh("ip", "-n", namespace, "link", "set", device, "up")
            sh("ip", "-n", namespace, "link", "set", "lo", "up")
        return self

    def __exit__(self, *_):
        for namespace in (NS_A, NS_B):
            sh("ip", "netns", "del", namespace, check=False)


def blackhole(on):
    if on:
        sh("ip", "netns", "exec", NS_B, "iptables", "-I", "INPUT", "-j", "DROP")
        sh("ip", "netns", "exec", NS_B, "iptables", "-I", "OUTPUT", "-j", "DROP")
    else:
        sh("ip", "netns", "exec", NS_B, "iptables", "-F", check=False)


def one_run(ctx, port, mechanisms, cgroup, cap):
    """{(mechanism, mode): seconds, or None when still open at `cap`}."""
    clients = {}
    try:
        for mode in MODES:
            for mechanism in mechanisms:
                env = dict(plain_env(), **SETTINGS)
                if mechanism in ("libkeepalive", "ours"):
                    env["LD_PRELOAD"] = ctx.preload(mechanism)
                clients[(mechanism, mode)] = subprocess.Popen(
                    ["ip", "netns", "exec", NS_A, ctx.workload, "dead-peer", ADDRESS_B, str(port), mode],
                    env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                    preexec_fn=join_cgroup(cgroup) if mechanism == "bpf" else None, start_new_session=True,
                )
                ctx.children.append(clients[(mechanism, mode)])
        for (mechanism, mode), client in clients.items():
            line = client.stdout.readline().split()
            if not line or line[0] != "connected":
                raise RuntimeError(f"dead-peer client ({mechanism}, {mode}) said {' '.join(line)!r}")
            if mechanism == "apply":
                pid = line[1].split("=")[1]
                result = subprocess.run([ctx.command, "apply", pid, *DEAD_PEER_OPTIONS], env=plain_env(),
                                        capture_output=True, text=True, timeout=60)
                if result.returncode != 0:
                    raise RuntimeError(f"apply failed: {result.stderr.strip()[-300:]}")
        blackhole(True)
        start = time.monotonic()
        for client in clients.values():
            client.stdin.write("go\n")
            client.stdin.flush()
        times = {}
        for key, client in clients.items():
            try:
                output, _ = client.communicate(timeout=max(0.05, cap - (time.monotonic() - start)))
            except subprocess.TimeoutExpired:
                times[key] = None
                continue
            fields = dict(field.split("=", 1) for field in output.split() if "=" in field)
            if "after" not in fields:
                raise RuntimeError(f"dead-peer client {key} printed {output!r}")
            times[key] = float(fields["after"])
        return times
    finally:
        blackhole(False)
        for client in clients.values():
            stop(client, timeout=2)
            ctx.children.remove(client)


def median_or_none(values):
    """The median, None when the median connection outlived the cap (still open)."""
    if not values:
        return None
    median = statistics.median(float("inf") if value is None else value for value in values)
    return None if median == float("inf") else median


def show(values, cap):
    """`2.96 s (2.90–3.05)`, or `> 8 s (5 of 5 still open)`."""
    if not values:
        return None
    still_open = sum(value is None for value in values)
    median = median_or_none(values)
    if median is None:
        return f"> {cap:g} s ({still_open} of {len(values)} still open)"
    done = [value for value in values if value is not None]
    text = f"{median:.2f} s ({min(done):.2f}–{max(done):.2f}"
    return text + (f", {still_open} still open at {cap:g} s)" if still_open else ")")


def dead_peer(ctx):
    runs, cap = ctx.sizes["dead_runs"], ctx.sizes["dead_cap"]
    features = {"bpf": built(ctx, "bpf"), "apply": built(ctx, "apply")}
    mechanisms = ["none", "libkeepalive", "ours"] + [name for name, ready in features.items() if ready]
    log(f"dead peer: {runs} runs, watched up to {cap:g} s; {', '.join(mechanisms)}")
    results = {(mechanism, mode): [] for mechanism in mechanisms for mode in MODES}
    failed = False
    server = None
    port = ctx.port()
    try:
        with Namespaces():
            server = subprocess.Popen(
                ["ip", "netns", "exec", NS_B, ctx.workload, "echo-server", ADDRESS_B, str(port)],
                env=plain_env(), stdout=subprocess.PIPE, text=True, start_new_session=True,
            )
            ctx.children.append(server)
            if not server.stdout.readline().startswith("listening"):
                raise RuntimeError("echo server did not start")
            cgroup = Cgroup(ctx, "deadpeer", DEAD_PEER_OPTIONS if features["bpf"] else None)
            with cgroup:
                for number in range(runs):
                    times = one_run(ctx, port, mechanisms, cgroup.path, cap)
                    for key, value in times.items():
                        results[key].append(value)
                    log(f"dead peer run {number + 1}: " + ", ".join(
                        f"{m}/{d} {'open' if v is None else f'{v:.2f}'}" for (m, d), v in times.items()))
            stop(server)
    except (subprocess.SubprocessError, RuntimeError, OSError) as error:
        log(f"dead peer failed: {error}")
        failed = True
    finally:
        if server is not None:
            stop(server)
            ctx.children.remove(server)
    names = {"ours": "preload", "bpf": "eBPF policy", "apply": "`apply`"}
    links = {"idle": "idle link", "data": "link with data in flight"}
    number = 0
    for mode in MODES:
        for mechanism in ("ours", "bpf", "apply"):
            number += 1
            name = (f"dead peer, {links[mode]}: keepalive-preload's settings by {names[mechanism]}; "
                    f"time from the blackhole until the connection is dropped, median (min–max) of {runs}")
            cells = {
                "none": show(results[("none", mode)], cap) if not failed else None,
                "libkeepalive": show(results[("libkeepalive", mode)], cap) if not failed else None,
            }
            if mechanism != "ours" and not features[mechanism]:
                cells["with"] = NOT_BUILT
                ctx.add(Row(TABLE, f"D{number}", name, cells, "≤ 4.0 s", NOT_BUILT))
                continue
            values = results[(mechanism, mode)] if not failed else []
            cells["with"] = show(values, cap)
            median = median_or_none(values)
            verdict = "PASS" if median is not None and median <= 4.0 else "FAIL"
            ctx.add(Row(TABLE, f"D{number}", name, cells, "≤ 4.0 s", verdict))
