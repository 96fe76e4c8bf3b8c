"""BENCHMARKS.md: the machine, the tables, the verdicts."""

import os
import platform
import re
import subprocess

from .core import COUNT, HEADINGS, IDLE, INTERVAL, NOT_BUILT, USER_TIMEOUT

TABLES = [
    (
        "library",
        "The library, side by side",
        ["none", "libkeepalive", "ours", "ours_ut"],
        [HEADINGS[c] for c in ("none", "libkeepalive", "ours", "ours_ut")],
    ),
    (
        "redis",
        "A real server: redis-server",
        ["none", "libkeepalive", "ours"],
        [HEADINGS[c] for c in ("none", "libkeepalive", "ours")],
    ),
    (
        "enforce",
        "The policy without the library: eBPF on a cgroup, `apply` on a running process",
        ["without", "with"],
        ["without the policy", "with the policy"],
    ),
    (
        "deadpeer",
        "Dead peer: how long until a blackholed peer's connection is dropped",
        ["none", "libkeepalive", "with"],
        ["no preload", "libkeepalive0", "with it"],
    ),
    (
        "info",
        "Information, not targets",
        ["none", "libkeepalive", "ours", "ours_ut"],
        [HEADINGS[c] for c in ("none", "libkeepalive", "ours", "ours_ut")],
    ),
]


def counts(rows):
    passed = sum(row.verdict == "PASS" for row in rows)
    failed = sum(row.verdict == "FAIL" for row in rows)
    waiting = sum(row.verdict == NOT_BUILT for row in rows)
    return passed, failed, waiting


def summary(rows):
    passed, failed, waiting = counts(rows)
    text = f"Targets: {passed} PASS, {failed} FAIL"
    if waiting:
        text += f" ({waiting} not built yet)"
    return text + "."


def machine(ctx):
    def first(path, pattern):
        try:
            with open(path) as file:
                match = re.search(pattern, file.read(), re.M)
            return match.group(1).strip() if match else "?"
        except OSError:
            return "?"

    def version(package):
        result = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True)
        return result.stdout.strip() or "?"

    def output(command):
        try:
            return subprocess.run(command, capture_output=True, text=True).stdout.strip() or "?"
        except OSError:
            return "?"

    commit = output(["git", "rev-parse", "--short", "HEAD"])
    changed = output(["git", "diff", "--name-only", "HEAD", "--", "src", "config", "cli", "bench", "Cargo.toml"])
    dirty = f" (+ uncommitted changes to {', '.join(changed.split())})" if changed != "?" else ""
    cpu = first("/proc/cpuinfo", r"^model name\s*:\s*(.*)$")
    return [
        ("CPU", f"{cpu}, {os.cpu_count()} CPUs"),
        ("memory", first("/proc/meminfo", r"^MemTotal:\s*(.*)$")),
        ("OS", first("/etc/os-release", r'^PRETTY_NAME="?([^"\n]*)')),
        ("kernel", platform.release()),
        ("rustc", output(["rustc", "--version"])),
        ("keepalive-preload", f"{commit}{dirty}, {os.path.getsize(ctx.library):,} bytes as built"),
        ("libkeepalive0", f"{version('libkeepalive0')}, {ctx.libkeepalive}, "
                          f"{os.path.getsize(os.path.realpath(ctx.libkeepalive)):,} bytes"),
        ("redis", version("redis-server")),
        ("valgrind", version("valgrind")),
        ("strace", version("strace")),
    ]


def markdown(ctx, started, elapsed, load_before, load_after):
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{ctx.args.command}` on {started:%Y-%m-%d %H:%M} UTC in {elapsed:.0f} s; "
        "regenerate with that command rather than editing this file. "
        "[docs/bench.md](docs/bench.md) says how to check each row by hand.",
        "",
        "| machine | |",
        "|---|---|",
    ]
    lines += [f"| {key} | {value} |" for key, value in machine(ctx)]
    lines += [
        f"| load average | {load_before} at start, {load_after} at end |",
        "",
        "Every measured process gets the same minimal environment: `PATH`, `LC_ALL=C`, "
        f"`KEEPIDLE={IDLE} KEEPINTVL={INTERVAL} KEEPCNT={COUNT}`; the *+ USER_TIMEOUT* column adds "
        f"`KEEPALIVE_USER_TIMEOUT={USER_TIMEOUT}`. `LD_PRELOAD` is the only difference between columns. "
        "Targets are judged on the *keepalive-preload* column (syscall counts on both of ours). "
        "Timings are interleaved rounds (A B C D, D C B A, …) judged by the median of per-round "
        "ratios; instruction and syscall counts are differences between two loop sizes, which "
        "cancel start-up; neither depends on how busy the machine is.",
        "",
        f"**{summary(ctx.rows)}**",
        "",
    ]
    for key, title, columns, headings in TABLES:
        rows = [row for row in ctx.rows if row.table == key]
        if not rows:
            continue
        lines += [
            f"## {title}",
            "",
            "| row | measurement | " + " | ".join(headings) + " | target | result |",
            "|---|---|" + "---:|" * len(columns) + "---|---|",
        ]
        for row in rows:
            cells = " | ".join(
                "no number" if row.cells.get(c, "") is None else row.cells.get(c, "") for c in columns
            )
            lines.append(f"| {row.number} | {row.name} | {cells} | {row.target} | {row.verdict or ''} |")
        notes = [f"- **{row.number}** {row.note}" for row in rows if row.note]
        lines += [""] + notes + ([""] if notes else [])
    return "\n".join(lines)
