"""Run every benchmark and write ``benchmarks/results.md`` and ``benchmarks/results.json``.

``scripts/bench.sh`` sets up the machine and calls ``python -m benchmarks.run``.

How a number is made: each library runs in its own server process pinned to
core 0 (with its Redis or MongoDB server), ``wrk -t1 -c8`` runs pinned to core
1 over loopback with keep-alive, one second a run.  With the server's core
saturated, microseconds per request is ``1e6 / (requests per second)``.  A
repeat measures, for every group (a library with one store), the framework's
bare handler, then the group's scenarios (in a rotated order), and the next
group starts with the bare handler again: each scenario is compared with the
mean of the bare runs just before and just after it, so drift of the machine
cancels.  Every figure is the median over the repeats.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import http.client
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import READ_ANSWER

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LUA = HERE / "wrk" / "bench.lua"

#: What a row is when its store has not landed in the package yet.
NOT_LANDED = "not yet measured: store not landed"


@dataclass(frozen=True)
class Group:
    """A library with one store: one server process and the scenarios run on it."""

    kind: str  # benchmarks.servers kind
    library: str
    framework: str
    store: str
    scenarios: tuple[str, ...]
    needs: str | None = None  # "redis" or "mongo"
    module: str | None = None  # a tornado_session module that must exist
    source: str | None = None  # another checkout of tornado_session to run (--baseline)


OURS = ("unused", "read", "changed", "regenerate")
PEER = ("read", "changed")

GROUPS = (
    Group("ts-cookie", "tornado-session", "tornado", "signed cookie", OURS),
    Group("ts-memory", "tornado-session", "tornado", "MemoryStore", OURS),
    Group("ts-redis", "tornado-session", "tornado", "RedisStore", OURS, "redis",
          "tornado_session.stores.redis"),
    Group("ts-mongo", "tornado-session", "tornado", "MongoStore", OURS, "mongo",
          "tornado_session.stores.mongo"),
    Group("ts-encrypted", "tornado-session", "tornado", "encrypted cookie (AES-GCM)", OURS,
          module="tornado_session.crypto"),
    Group("ts-memory-enc", "tornado-session", "tornado", "MemoryStore, encrypted at rest", PEER,
          module="tornado_session.stores.encrypted"),
    Group("ts-redis-enc", "tornado-session", "tornado", "RedisStore, encrypted at rest", PEER,
          "redis", "tornado_session.stores.encrypted"),
    Group("ts-mongo-enc", "tornado-session", "tornado", "MongoStore, encrypted at rest", PEER,
          "mongo", "tornado_session.stores.encrypted"),
    Group("torndsession-memory", "torndsession", "tornado", "memory", PEER),
    Group("torndsession-redis", "torndsession", "tornado", "Redis", PEER, "redis"),
    Group("pycket-redis", "pycket", "tornado", "Redis", PEER, "redis"),
    Group("aiohttp-simple", "aiohttp-session", "aiohttp", "SimpleCookieStorage (unsigned)", PEER),
    Group("aiohttp-fernet", "aiohttp-session", "aiohttp", "EncryptedCookieStorage (Fernet)",
          PEER),
    Group("aiohttp-redis", "aiohttp-session", "aiohttp", "RedisStorage", PEER, "redis"),
)

BARE = {"tornado": "tornado-bare", "aiohttp": "aiohttp-bare"}

#: How many seeded sessions the regenerate chain cycles through (more than connections).
CHAIN = 16


# -- processes --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def pinned(core: int, command: Sequence[str]) -> list[str]:
    """``command`` pinned to one core with taskset (when there are two cores to share)."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(core), *command]
    return list(command)


class Processes:
    """The processes this run started; all stopped (by pid) when the run ends."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, command: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(list(command), **kwargs)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        time.sleep(0.05)
    return False


def start_redis(procs: Processes) -> tuple[str, int] | None:
    """A redis-server of our own (no persistence) on a free port: its URL and pid."""
    server = shutil.which("redis-server")
    if server is None:
        return None
    port = free_port()
    proc = procs.start(
        pinned(0, [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--loglevel", "warning"]),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return (f"redis://127.0.0.1:{port}/0", proc.pid) if wait_port(port, 10) else None


def start_mongo(procs: Processes) -> tuple[str, int] | None:
    """The MongoStore tests' wire server (mongoeco, in memory) on a free port: URI and pid.

    ``.venv-mongo`` and ``tests/mongo_server.py`` come from the MongoStore work
    (``scripts/setup.sh``'s ``setup_mongo_wire_server``).
    """
    python = ROOT / ".venv-mongo" / "bin" / "python"
    script = ROOT / "tests" / "mongo_server.py"
    if not python.exists() or not script.exists():
        return None
    port = free_port()
    proc = procs.start(pinned(0, [str(python), str(script), "--port", str(port)]),
                       cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (f"mongodb://127.0.0.1:{port}/bench", proc.pid) if wait_port(port, 30) else None


@dataclass
class Server:
    kind: str
    port: int
    proc: subprocess.Popen[bytes] | None
    error: str | None = None


def start_server(procs: Processes, kind: str, urls: dict[str, str],
                 source: str | None = None) -> Server:
    port = free_port()
    env = dict(os.environ)
    cwd = ROOT
    if source is not None:
        # That checkout's tornado_session first: `-m` puts the working directory
        # first on sys.path, so run from there; benchmarks/ comes from ROOT.
        env["PYTHONPATH"] = os.pathsep.join([source, str(ROOT)])
        cwd = Path(source)
    command = [sys.executable, "-m", "benchmarks.servers", kind, "--port", str(port)]
    if "redis" in urls:
        command += ["--redis-url", urls["redis"]]
    if "mongo" in urls:
        command += ["--mongo-uri", urls["mongo"]]
    with tempfile.TemporaryFile() as log:
        proc = procs.start(pinned(0, command), cwd=cwd, stdout=subprocess.DEVNULL, stderr=log,
                           env=env)
        if wait_port(port, 20) and proc.poll() is None:
            return Server(kind, port, proc)
        proc.wait(5)
        log.seek(0)
        lines = log.read().decode(errors="replace").strip().splitlines()
    return Server(kind, port, None, error=(lines[-1] if lines else "did not start"))


# -- HTTP for seeding and checks --------------------------------------------------------


@dataclass
class Answer:
    status: int
    body: str
    cookie: str | None  # "name=value" of the first Set-Cookie


def get(port: int, path: str, cookie: str | None = None) -> Answer:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
        set_cookie = response.getheader("Set-Cookie")
        pair = set_cookie.split(";", 1)[0].strip() if set_cookie else None
        return Answer(response.status, body, pair)
    finally:
        conn.close()


def seed(port: int) -> str:
    """A cookie of a session holding `SEED`, checked by reading it back."""
    answer = get(port, "/seed")
    if answer.cookie is None:
        raise RuntimeError(f"/seed set no cookie (status {answer.status})")
    cookie = answer.cookie
    if get(port, "/read", cookie).body != READ_ANSWER:
        # pycket makes a new id for every key a new visitor sets: seed again, with the cookie.
        again = get(port, "/seed", cookie)
        cookie = again.cookie or cookie
        if get(port, "/read", cookie).body != READ_ANSWER:
            raise RuntimeError("a seeded session does not read back")
    return cookie


def check(port: int, scenario: str, cookie: str) -> None:
    """The scenario does what its name says (before it is timed)."""
    if scenario == "unused":
        answer = get(port, "/unused")
        if answer.status != 200 or (answer.cookie is not None and "tornado.sess" in answer.cookie):
            raise RuntimeError(f"/unused answered {answer.status} {answer.cookie}")
    elif scenario == "read":
        answer = get(port, "/read", cookie)
        if answer.status != 200 or answer.body != READ_ANSWER:
            raise RuntimeError(f"/read answered {answer.status} {answer.body[:80]!r}")
    elif scenario == "changed":
        answer = get(port, "/changed", cookie)
        if answer.status != 200:
            raise RuntimeError(f"/changed answered {answer.status}")
    elif scenario == "regenerate":
        answer = get(port, "/regenerate", cookie)
        if answer.status != 200 or answer.cookie is None or answer.cookie == cookie:
            raise RuntimeError(f"/regenerate answered {answer.status} without a new cookie")
        if get(port, "/read", answer.cookie).body != READ_ANSWER:
            raise RuntimeError("a regenerated session lost its data")


def warm_up(port: int, path: str, cookie: str | None, count: int = 50) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(count):
            conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
            conn.getresponse().read()
    finally:
        conn.close()


# -- wrk ------------------------------------------------------------------------------


@dataclass
class Run:
    rps: float
    cpu_us: float  # CPU time of the server (and its database) per request
    wait_us: float  # time the server was runnable but not running, per request
    errors: int


def cpu_ns(pids: Sequence[int]) -> tuple[int, int]:
    """Time on CPU and time waiting for a CPU (ns) of every thread of these processes.

    From ``/proc/PID/task/TID/schedstat``: unlike requests per second, CPU time
    per request does not change when other work on the machine takes the core
    away for a while; the waiting time says how much that happened.
    """
    running = waiting = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                fields = (task / "schedstat").read_text().split()
                running += int(fields[0])
                waiting += int(fields[1])
    return running, waiting


def wrk(port: int, path: str, *, seconds: int, cookie: str | None = None,
        chain: Path | None = None, cookie_name: str | None = None,
        pids: Sequence[int] = ()) -> Run:
    command = ["wrk", "-t1", "-c8", f"-d{seconds}s", "--timeout", "5s", "-s", str(LUA)]
    if cookie:
        command += ["-H", f"Cookie: {cookie}"]
    command.append(f"http://127.0.0.1:{port}{path}")
    if chain is not None and cookie_name:
        command += ["--", str(chain), cookie_name]
    before = cpu_ns(pids)
    out = subprocess.run(pinned(1, command), capture_output=True, text=True, check=True).stdout
    after = cpu_ns(pids)
    summary = json.loads(out.strip().splitlines()[-1])
    errors = sum(summary[k] for k in ("connect", "read", "write", "status", "timeout"))
    requests = max(1, summary["requests"])
    return Run(requests * 1e6 / summary["duration_us"], (after[0] - before[0]) / 1e3 / requests,
               (after[1] - before[1]) / 1e3 / requests, errors)


# -- the measurement -------------------------------------------------------------------


@dataclass
class Target:
    """One thing wrk measures: a scenario of a group, or a bare handler."""

    group: Group | None
    scenario: str
    port: int
    pids: tuple[int, ...]  # the server's, and its database server's
    cookie: str | None = None
    chain: Path | None = None
    runs: list[Run] = field(default_factory=list)
    #: Per repeat: the mean of the bare runs just before and just after (CPU µs, req/s).
    bare: list[tuple[float, float]] = field(default_factory=list)

    def measure(self, seconds: int) -> Run:
        path = "/bare" if self.group is None else f"/{self.scenario}"
        name = self.cookie.split("=", 1)[0] if self.cookie else None
        if self.chain is not None:
            run = wrk(self.port, path, seconds=seconds, chain=self.chain, cookie_name=name,
                      pids=self.pids)
        else:
            cookie = self.cookie if self.scenario in ("read", "changed") else None
            run = wrk(self.port, path, seconds=seconds, cookie=cookie, pids=self.pids)
        self.runs.append(run)
        return run


def rotate(items: Sequence[Target], by: int) -> list[Target]:
    by %= max(1, len(items))
    return list(items[by:]) + list(items[:by])


def measure_all(plan: list[tuple[str, list[Target]]], bares: dict[str, Target], repeats: int,
                seconds: int, log: Any) -> None:
    """Bare, group, bare, group, ... per framework, ``repeats`` times."""
    for repeat in range(repeats):
        last: dict[str, Run] = {}
        pending: dict[str, list[Target]] = {}
        for index, (framework, targets) in enumerate(plan):
            bare = bares[framework].measure(seconds)
            for target in pending.pop(framework, []):
                target.bare.append(_mean(last[framework], bare))
            last[framework] = bare
            for target in rotate(targets, repeat + index):
                run = target.measure(seconds)
                print(f"  repeat {repeat + 1}: {target.group.library if target.group else ''} "
                      f"{target.group.store if target.group else ''} "
                      f"{target.scenario}: {run.rps:,.0f} req/s, {run.cpu_us:.1f} µs CPU "
                      f"(bare {bare.cpu_us:.1f})", file=log, flush=True)
            pending[framework] = list(targets)
        for framework, targets in pending.items():
            bare = bares[framework].measure(seconds)
            for target in targets:
                target.bare.append(_mean(last[framework], bare))


def _mean(before: Run, after: Run) -> tuple[float, float]:
    return (before.cpu_us + after.cpu_us) / 2, (before.rps + after.rps) / 2


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def row(target: Target) -> dict[str, Any]:
    """A measured row: medians over the repeats, each repeat against its own bare runs."""
    assert target.group is not None
    pairs = list(zip(target.runs, target.bare, strict=True))
    return {
        **_group_fields(target.group), "scenario": target.scenario, "measured": True,
        "rps": round(median([run.rps for run in target.runs]), 1),
        "us": round(median([run.cpu_us for run in target.runs]), 1),
        "bare_us": round(median([bare_us for bare_us, _ in target.bare]), 1),
        "added_us": round(median([run.cpu_us - bare_us for run, (bare_us, _) in pairs]), 1),
        "ratio": round(median([bare_us / run.cpu_us for run, (bare_us, _) in pairs]), 4),
        "rps_ratio": round(median([run.rps / bare_rps for run, (_, bare_rps) in pairs]), 4),
        "wait_us": round(median([run.wait_us for run in target.runs]), 1),
        "errors": sum(run.errors for run in target.runs),
        "rps_runs": [round(run.rps, 1) for run in target.runs],
        "us_runs": [round(run.cpu_us, 1) for run in target.runs],
    }


def _group_fields(group: Group) -> dict[str, Any]:
    return {"kind": group.kind, "library": group.library, "framework": group.framework,
            "store": group.store}


def not_measured(group: Group, scenario: str, why: str) -> dict[str, Any]:
    return {**_group_fields(group), "scenario": scenario, "measured": False, "why": why}


# -- main -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    return {
        "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
        "platform": platform.platform(), "wrk": wrk_version.split("[")[0].strip(),
        "versions": _versions(),
    }


def _versions() -> dict[str, str]:
    from importlib import metadata

    found = {}
    for name in ("tornado", "tornado-async-session", "orjson", "redis", "hiredis", "pymongo",
                 "aiohttp", "aiohttp-session", "torndsession", "pycket", "cryptography"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    return found


def load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the benchmarks, write results.md/.json.")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=1, help="duration of one wrk run")
    parser.add_argument("--only", nargs="*", help="group kinds to run (default: all)")
    parser.add_argument("--out", type=Path, default=HERE, help="where results.* go")
    parser.add_argument("--skip-extras", action="store_true",
                        help="no store-call counts or memory figures (quick runs)")
    parser.add_argument("--baseline", type=Path,
                        help="a directory holding another tornado_session/ (e.g. from "
                             "`git archive COMMIT tornado_session | tar -x -C DIR`) to measure "
                             "beside this one")
    parser.add_argument("--baseline-label", default="(baseline)")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (scripts/bench.sh installs it)", file=sys.stderr)
        return 1
    started = time.monotonic()
    log = sys.stderr
    groups = [g for g in GROUPS if not args.only or g.kind in args.only]
    if args.baseline:
        # Each of our groups twice, interleaved: the tree as it is, and a checkout
        # of another commit (how benchmarks/README.md's before/after was measured).
        groups = [twin for g in groups for twin in (
            (g, dataclasses.replace(g, library=f"tornado-session {args.baseline_label}",
                                    source=str(args.baseline)))
            if g.library == "tornado-session" else (g,))]
    results: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "scripts/bench.sh " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(), "load_before": load(), "repeats": args.repeats,
        "seconds_per_run": args.seconds,
        "method": "wrk -t1 -c8 over loopback, keep-alive; server (and its Redis/MongoDB) pinned "
                  "to core 0, wrk to core 1; bare and scenarios interleaved",
    }
    procs = Processes()
    chain_dir = Path(tempfile.mkdtemp(prefix="bench-chain-"))
    try:
        urls: dict[str, str] = {}
        db_pids: dict[str, int] = {}
        for name, start in (("redis", start_redis), ("mongo", start_mongo)):
            if any(g.needs == name for g in groups) and (found := start(procs)):
                urls[name], db_pids[name] = found
        rows, plan, bares = prepare(groups, urls, db_pids, procs, chain_dir, log)
        print(f"measuring: {args.repeats} repeats of {sum(len(t) for _, t in plan)} scenarios",
              file=log, flush=True)
        measure_all(plan, bares, args.repeats, args.seconds, log)
        for _, targets in plan:
            for target in targets:
                rows[(target.group, target.scenario)] = row(target)  # type: ignore[index]
        results["bare"] = {
            framework: {"rps": round(median([r.rps for r in bare.runs]), 1),
                        "us": round(median([r.cpu_us for r in bare.runs]), 1),
                        "wait_us": round(median([r.wait_us for r in bare.runs]), 1),
                        "us_runs": [round(r.cpu_us, 1) for r in bare.runs]}
            for framework, bare in bares.items()
        }
        results["rows"] = [rows[(g, s)] for g in groups for s in g.scenarios]
        results["load_after_timing"] = load()
        if not args.skip_extras:
            from . import counting, inprocess, memory

            missing = {g.store: unavailable(g, urls) for g in GROUPS
                       if g.kind in ("ts-redis", "ts-mongo")}
            results["store_calls"] = counting.run(urls, missing, log)
            results["memory"] = memory.run(log)
            print("in-process handler path", file=log, flush=True)
            results["inprocess"] = inprocess.run()
    finally:
        procs.stop_all()
        shutil.rmtree(chain_dir, ignore_errors=True)
    results["load_after"] = load()
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    from . import report

    report.write(results, args.out)
    print(f"wrote {args.out / 'results.md'} and results.json in {results['elapsed_s']} s",
          file=log)
    return 0


def prepare(
    groups: list[Group], urls: dict[str, str], db_pids: dict[str, int], procs: Processes,
    chain_dir: Path, log: Any,
) -> tuple[dict[tuple[Group, str], dict[str, Any]], list[tuple[str, list[Target]]],
           dict[str, Target]]:
    """Start the servers, seed sessions and check each scenario; what is to be measured."""
    rows: dict[tuple[Group, str], dict[str, Any]] = {}
    plan: list[tuple[str, list[Target]]] = []
    bares: dict[str, Target] = {}
    for group in groups:
        why = unavailable(group, urls)
        if why is None:
            server = start_server(procs, group.kind, urls, group.source)
            why = None if server.error is None else f"server did not start: {server.error}"
        if why is not None:
            print(f"{group.kind}: {why}", file=log, flush=True)
            for scenario in group.scenarios:
                rows[(group, scenario)] = not_measured(group, scenario, why)
            continue
        try:
            assert server.proc is not None
            pids = (server.proc.pid, *([db_pids[group.needs]] if group.needs else []))
            targets = list(targets_of(group, server.port, pids, chain_dir))
        except Exception as exc:  # a peer that does not work says why in the results
            why = f"failed its functional check: {type(exc).__name__}: {exc}"
            print(f"{group.kind}: {why}", file=log, flush=True)
            for scenario in group.scenarios:
                rows[(group, scenario)] = not_measured(group, scenario, why)
            continue
        if group.framework not in bares:
            bare = start_server(procs, BARE[group.framework], {})
            if bare.error is not None:
                raise RuntimeError(f"{BARE[group.framework]} did not start: {bare.error}")
            warm_up(bare.port, "/bare", None)
            assert bare.proc is not None
            bares[group.framework] = Target(None, "bare", bare.port, (bare.proc.pid,))
        plan.append((group.framework, targets))
    return rows, plan, bares


def unavailable(group: Group, urls: dict[str, str]) -> str | None:
    if group.module is not None and importlib.util.find_spec(group.module) is None:
        return NOT_LANDED
    if group.needs == "redis" and "redis" not in urls:
        return "no redis-server (scripts/bench.sh installs Debian's)"
    if group.needs == "mongo" and "mongo" not in urls:
        return "no MongoDB wire server (.venv-mongo, set up by scripts/setup.sh)"
    return None


def targets_of(
    group: Group, port: int, pids: tuple[int, ...], chain_dir: Path
) -> Iterator[Target]:
    cookie = seed(port)
    for scenario in group.scenarios:
        check(port, scenario, seed(port) if scenario == "regenerate" else cookie)
        chain = None
        if scenario == "regenerate":
            cookies = [seed(port) for _ in range(CHAIN)]
            chain = chain_dir / f"{group.kind}-{len(list(chain_dir.iterdir()))}.txt"
            chain.write_text("".join(c.split("=", 1)[1] + "\n" for c in cookies))
            warm = seed(port)
            for _ in range(50):
                warm = get(port, "/regenerate", warm).cookie or warm
        else:
            warm_up(port, f"/{scenario}", cookie if scenario != "unused" else None)
        yield Target(group, scenario, port, pids, cookie=cookie, chain=chain)


if __name__ == "__main__":
    sys.exit(main())
