"""Turn a run's results into ``results.json`` and ``results.md``: every target, pass or miss."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Ratio targets (requests per second over the bare handler's), per store and scenario.
RATIO_TARGETS = {
    ("MemoryStore", "read"): 0.90, ("MemoryStore", "changed"): 0.85,
    ("signed cookie", "read"): 0.85, ("signed cookie", "changed"): 0.85,
}
#: Added-microseconds targets: RedisStore over a real redis-server (design.md), and
#: MemoryStore changed (issue 13).
ADDED_TARGETS = {("RedisStore", "read"): 60.0, ("RedisStore", "changed"): 120.0,
                 ("MemoryStore", "changed"): 70.0}
#: In-process targets: µs the session layer adds (benchmarks/inprocess.py; issue 13).
INPROCESS_TARGETS = {("MemoryStore", "read"): 15.0, ("signed cookie", "read"): 15.0,
                     ("MemoryStore", "changed"): 50.0, ("signed cookie", "changed"): 40.0}
#: Stores whose unused row must stay within the A/A spread of the bare handler.
UNUSED_WITHIN_AA = ("signed cookie", "encrypted cookie (AES-GCM)", "MemoryStore", "RedisStore",
                    "MongoStore")
#: Which of our stores a peer's row is compared with (Fernet's with our encrypted cookie:
#: design.md's target).
OUR_STORE_FOR = {"memory": "MemoryStore", "Redis": "RedisStore", "RedisStorage": "RedisStore",
                 "SimpleCookieStorage (unsigned)": "signed cookie",
                 "EncryptedCookieStorage (Fernet)": "encrypted cookie (AES-GCM)"}
OURS = "tornado-session"


def aa_differences(us_runs: list[float]) -> list[float]:
    """The A/A test: each bare run against the mean of the bare runs just before and after it.

    A scenario is compared with its neighbouring bare runs in just that way, so these
    differences are what comparing the bare handler with itself gives: the noise floor.
    """
    return [round(run - (before + after) / 2, 1)
            for before, run, after in zip(us_runs, us_runs[1:], us_runs[2:], strict=False)]


def targets(results: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every target with what was measured and ``pass`` / ``miss`` / ``not measured``."""
    rows = {(r["store"], r["scenario"]): r for r in results.get("rows", [])
            if r["library"] == OURS}
    spread = aa_differences(results.get("bare", {}).get("tornado", {}).get("us_runs", []))
    for store in UNUSED_WITHIN_AA:
        got = rows.get((store, "unused"))
        if not spread:
            yield _target(f"{store} unused: within the A/A spread", None, "no A/A runs")
            continue
        low, high = min(spread), max(spread)
        name = f"{store} unused: within the A/A spread ({low:+.1f} to {high:+.1f} us)"
        if got is None or not got["measured"]:
            yield _target(name, None, (got or {}).get("why", "not run"))
        else:
            yield _target(name, low <= got["added_us"] <= high, f"{got['added_us']:+.1f} us")
    for (store, scenario), want in RATIO_TARGETS.items():
        got = rows.get((store, scenario))
        name = f"{store} {scenario}: ratio >= {want:.2f}"
        if got is None or not got["measured"]:
            yield _target(name, None, (got or {}).get("why", "not run"))
        else:
            yield _target(name, got["ratio"] >= want, f"{got['ratio']:.3f}")
    for (store, scenario), limit in ADDED_TARGETS.items():
        got = rows.get((store, scenario))
        name = f"{store} {scenario}: <= {limit:.0f} us over bare"
        if got is None or not got["measured"]:
            yield _target(name, None, (got or {}).get("why", "not run"))
        else:
            yield _target(name, got["added_us"] <= limit, f"{got['added_us']:.1f} us")
    yield from _inprocess_targets(results.get("inprocess"))
    yield from _call_targets(results.get("store_calls", {}))
    for peer in results.get("rows", []):
        if peer["library"].startswith(OURS):  # ours, or ours at another commit (--baseline)
            continue
        ours = rows.get((OUR_STORE_FOR.get(peer["store"], ""), peer["scenario"]))
        name = (f"{peer['scenario']}: tornado-session {OUR_STORE_FOR.get(peer['store'])} adds "
                f"less than {peer['library']} {peer['store']} ({peer['framework']})")
        if not peer["measured"] or ours is None or not ours["measured"]:
            why = peer.get("why") if not peer["measured"] else (ours or {}).get("why")
            yield _target(name, None, why or "not run")
        else:
            yield _target(name, ours["added_us"] < peer["added_us"],
                          f"{ours['added_us']:.1f} us vs {peer['added_us']:.1f} us")


def _inprocess_targets(found: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    for (store, scenario), limit in INPROCESS_TARGETS.items():
        name = f"in-process {store} {scenario}: adds <= {limit:.0f} us"
        if not found or scenario not in found.get(store, {}):
            yield _target(name, None, "not run")
            continue
        added = found[store][scenario] - found["bare"]
        yield _target(name, added <= limit, f"{added:.1f} us")


def _call_targets(calls: dict[str, Any]) -> Iterator[dict[str, Any]]:
    want = {"unused (no cookie)": (0, 0), "unused (cookie sent, lazy=True)": (0, 0),
            "read": (1, 0), "changed": (1, 1)}
    for store, found in calls.items():
        if not found.get("measured"):
            yield _target(f"{store} store calls", None, found.get("why", "not run"))
            continue
        for scenario, (reads, writes) in want.items():
            counts = found["per_request"][scenario]
            got = (counts["get"], counts["set"] + counts["touch"])
            yield _target(f"{store} {scenario}: {reads} read, {writes} write",
                          got == (reads, writes), f"{got[0]} read, {got[1]} write")
        touched = found["rolling_100_writes"]["touch_after=60"]
        yield _target(f"{store} touch_after=60: 100 unchanged rolling requests, 1 write",
                      touched == 1, f"{touched} write(s)")


def median_of(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _target(name: str, passed: bool | None, measured: str) -> dict[str, Any]:
    status = "not measured" if passed is None else ("pass" if passed else "miss")
    return {"target": name, "measured": measured, "status": status}


def write(results: dict[str, Any], out: Path) -> None:
    results["targets"] = list(targets(results))
    (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (out / "results.md").write_text(markdown(results))


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [
        "# Benchmark results",
        "",
        "Written by `scripts/bench.sh` (`python -m benchmarks.run`); method and history in "
        "`benchmarks/README.md`.",
        "",
        f"- Date: {results['date']}; command: `{results['command'].strip()}`; "
        f"took {results.get('elapsed_s', '?')} s",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, Python {machine['python']}, "
        f"{machine['wrk']}",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in machine['versions'].items())}",
        f"- Method: {results['method']}; {results['repeats']} repeats of "
        f"{results['seconds_per_run']} s; medians",
        f"- Load average (1, 5, 15 min) before: {results['load_before']}, after timing: "
        f"{results.get('load_after_timing')}, at the end: {results.get('load_after')}",
        "- Peers: torndsession and pycket (Tornado), aiohttp-session (aiohttp), each against "
        "its own framework's bare handler; all three run on this Python (and import on 3.13, "
        "where torndsession's `datetime.utcnow()` warns on every request). pycket has no "
        "memory store; torndsession and pycket build a new Redis client per request.",
        "",
        "## Per request, against the framework's bare handler",
        "",
        "*µs*: CPU time of the server process (and of its Redis or MongoDB server) per "
        "request, from the kernel's per-thread accounting: it does not grow when other work "
        "takes the core away, as req/s does. *added*: µs minus the bare handler's (the mean of "
        "the bare runs just before and just after, in each repeat). *ratio*: bare µs / µs, "
        "the share of the bare handler's throughput the scenario keeps on one core (the "
        "targets use it); *req/s ratio*: the same from wall-clock req/s, noisier on a shared "
        "machine. *wait*: µs per request the server was ready to run but another process had "
        "the core.",
        "",
        "| library | framework | store | scenario | req/s | µs | added µs | ratio | "
        "req/s ratio | wait | µs of each repeat |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for framework, bare in results.get("bare", {}).items():
        runs = (f"{len(bare['us_runs'])} runs, {min(bare['us_runs']):.1f} to "
                f"{max(bare['us_runs']):.1f}")
        lines.append(f"| (bare handler) | {framework} | - | bare | {bare['rps']:,.0f} | "
                     f"{bare['us']:.1f} | 0 | 1 | 1 | {bare['wait_us']:.1f} | {runs} |")
        spread = aa_differences(bare["us_runs"])
        if spread:
            middle = median_of(spread)
            lines.append(f"| (A/A: bare vs its neighbours) | {framework} | - | bare | | | "
                         f"{middle:+.1f} | | | | {len(spread)} runs, {min(spread):+.1f} to "
                         f"{max(spread):+.1f} |")
    for row in results.get("rows", []):
        head = f"| {row['library']} | {row['framework']} | {row['store']} | {row['scenario']} |"
        if not row["measured"]:
            lines.append(f"{head} {row['why']} | | | | | | |")
            continue
        runs = ", ".join(f"{value:.1f}" for value in row["us_runs"])
        errors = f" ({row['errors']} errors)" if row["errors"] else ""
        lines.append(f"{head} {row['rps']:,.0f} | {row['us']:.1f} | {row['added_us']:.1f} | "
                     f"{row['ratio']:.3f} | {row['rps_ratio']:.3f} | {row['wait_us']:.1f} | "
                     f"{runs}{errors} |")
    lines += ["", "## Targets", "", "| target | measured | |", "| --- | --- | --- |"]
    lines += [f"| {t['target']} | {t['measured']} | **{t['status']}** |"
              for t in results.get("targets", [])]
    lines += _inprocess_markdown(results.get("inprocess"))
    lines += _calls_markdown(results.get("store_calls", {}))
    lines += _memory_markdown(results.get("memory"))
    return "\n".join(lines) + "\n"


def _calls_markdown(calls: dict[str, Any]) -> list[str]:
    if not calls:
        return []
    lines = ["", "## Store calls per request (counted, not timed)", "",
             "The signed-cookie store makes no store calls.", "",
             "| store | request | get | set | destroy | touch |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for store, found in calls.items():
        if not found.get("measured"):
            lines.append(f"| {store} | {found.get('why')} | | | | |")
            continue
        for scenario, counts in found["per_request"].items():
            lines.append(f"| {store} | {scenario} | {counts['get']} | {counts['set']} | "
                         f"{counts['destroy']} | {counts['touch']} |")
    lines += ["", "Store writes for 100 unchanged requests of a rolling session, one second "
              "apart:", "", "| store | touch_after=None | touch_after=60 |",
              "| --- | ---: | ---: |"]
    for store, found in calls.items():
        if found.get("measured"):
            writes = found["rolling_100_writes"]
            lines.append(f"| {store} | {writes['touch_after=None']} | {writes['touch_after=60']} |")
    return lines


def _memory_markdown(memory: dict[str, Any] | None) -> list[str]:
    if not memory:
        return []
    return [
        "", "## MemoryStore memory", "",
        f"- Bytes held per session of {memory['session_json_bytes']} bytes of JSON: "
        f"**{memory['bytes_per_session']}** (tracemalloc over {memory['sessions']:,} sessions: "
        "key, expiry, data and the dict's entry)",
        f"- Peak RSS writing {memory['sessions_written']:,} sessions into "
        f"`MemoryStore(max_entries={memory['max_entries']:,})`: **{memory['peak_rss_mib']} MiB** "
        f"({memory['peak_over_start_mib']} MiB over the {memory['rss_before_mib']} MiB at start; "
        f"{memory['sessions_held']:,} sessions held at the end)",
    ]


def _inprocess_markdown(found: dict[str, Any] | None) -> list[str]:
    if not found:
        return []
    bare = found["bare"]
    lines = ["", "## The session layer alone (in-process, no sockets)", "",
             "`benchmarks/inprocess.py`: Tornado's routing and handler path with an in-memory "
             "connection, best of 9 rounds of 1,000 requests (thread CPU time), so other work "
             f"on the machine hardly shows. Bare handler: {bare:.1f} µs.", "",
             "| store | scenario | µs | added µs |", "| --- | --- | ---: | ---: |"]
    for store, row in found.items():
        if store == "bare":
            continue
        for scenario, us in row.items():
            lines.append(f"| {store} | {scenario} | {us:.1f} | {us - bare:.1f} |")
    return lines
