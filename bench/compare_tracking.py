#!/usr/bin/env python3
"""Modelyard vs MLflow tracking, side by side in one run, on SQLite and PostgreSQL.

    . .venv/bin/activate
    python bench/compare_tracking.py            # full: 10k runs, 3000 single calls, ...
    python bench/compare_tracking.py --quick    # smoke run, a minute or two

For each backend store it starts, one after another and each on a fresh store:
  1. Modelyard's tracking server (`modelyard serve tracking --cpu-affinity 0`, this venv) ->
     bench/tracking.py --client modelyard, run with this venv's python;
  2. the same server unpinned;
  3. `mlflow server --workers 1` (bench/.venvs/mlflow) -> bench/tracking.py --client mlflow,
     run with the mlflow venv's python;
  4. the same pinned to the same CPU (`taskset`), since pinning speeds MLflow up too;
  5. `mlflow server` with its default worker count, the same way as 3;
  6. no server: Modelyard's store writing one metric value at a time in this process (the
     durable write alone), for the bounds below.
Clients are never pinned (they stand for training code). `--server-cpus ''` skips 2 and 4.
Targets take each product's faster configuration, figure by figure: 1 or 2 against 3 or 4.
Per backend, `bounds` holds the targets against what this machine allows: the gRPC floor plus
the durable write bound a single call; the CPU a bare health Check costs from 8 threads bounds
the concurrent rate.
Each server is polled with a real request until it answers, and stopped (SIGTERM to its process
group) afterwards. Everything listens on 127.0.0.1 only. The combined JSON (per backend: the five
result sets, ratios, targets and bounds) goes to stdout and to --output; progress and server
logs' paths go to stderr. Server logs and stores live in bench/.work/compare-<time>/.

The mlflow venv is created on first use and mlflow is pip-installed there, never into the
project venv. MLflow telemetry is disabled for every mlflow process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from benchkit import (
    MLFLOW_VENV,
    ServerProcess,
    ensure_mlflow,
    free_port,
    group_cpu_seconds,
    machine,
    paused_latencies_ms,
    percentile,
    quiet_env,
    venv_bin,
)

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
TRACKING = BENCH / "tracking.py"
PROJECT_VENV = ROOT / ".venv"
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432"

# Targets are stated against MLflow with one worker (its fastest per-call configuration).
TARGETS = {
    "single_call_rate_x": (">=", 15.0),
    "log_batch_metrics_per_s_x": (">=", 10.0),
    "concurrent_8_threads_calls_per_s_x": (">=", 20.0),
    "search_p95_ms_10k_runs": ("<", 20.0),
    "single_p50_over_grpc_floor_p50": ("<=", 3.0),
}


def log(msg: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- PostgreSQL databases ----------------------------------------------------------------------


class Postgres:
    def __init__(self, base: str) -> None:
        import psycopg  # the project venv's driver

        self.base = base.rstrip("/")
        self.admin = psycopg.connect(f"{self.base}/test", autocommit=True)

    def version(self) -> str:
        row = self.admin.execute("SHOW server_version").fetchone()
        assert row is not None  # SHOW answers one row
        return row[0]

    @contextmanager
    def database(self, name: str) -> Iterator[str]:
        self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.admin.execute(f'CREATE DATABASE "{name}"')
        # Every configuration starts right after a checkpoint, so none pays for the WAL that an
        # earlier one left behind (ad hoc, the first of two LogBatch rounds ran ~20% slower,
        # pinned or not).
        self.admin.execute("CHECKPOINT")
        try:
            yield f"{self.base}/{name}"
        finally:
            self.admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- servers -----------------------------------------------------------------------------------


class Server(ServerProcess):
    """A tracking server under test; MLflow's also needs time to go idle after it answers."""

    def __init__(
        self, label: str, argv: list[str], cwd: Path, env: dict[str, str], logfile: Path
    ) -> None:
        super().__init__(label, argv, env, logfile, cwd=cwd, say=log)

    def settle(self, window: float = 1.0, idle: float = 0.05, timeout: float = 90.0) -> float:
        """Wait until the server's whole process group is idle (< `idle` of a core over
        `window` seconds): mlflow server keeps importing its job-runner consumers for a while
        after it first answers, which would otherwise eat into the first measurement."""
        t0 = time.monotonic()
        before = group_cpu_seconds(self.proc.pid)
        while time.monotonic() - t0 < timeout:
            time.sleep(window)
            now = group_cpu_seconds(self.proc.pid)
            if now - before < idle * window:
                break
            before = now
        took = time.monotonic() - t0
        log(f"{self.label} idle after {took:.1f}s more")
        return took


def modelyard_probe(addr: str):
    from modelyard import Client

    def probe() -> None:
        with Client(addr, timeout=2.0) as c:  # a fresh channel each time: no reconnect backoff
            c.search_experiments(max_results=1)

    return probe


def mlflow_probe(addr: str):
    url = f"http://{addr}/api/2.0/mlflow/experiments/search?max_results=1"

    def probe() -> None:
        with urllib.request.urlopen(url, timeout=2.0) as r:
            if r.status != 200:
                raise RuntimeError(f"HTTP {r.status}")

    return probe


def run_bench(
    python: Path, client: str, addr: str, bench_args: list[str], env: dict[str, str], timeout: float
) -> dict[str, Any]:
    argv = [str(python), str(TRACKING), "--uri", addr, "--client", client, *bench_args]
    log(f"bench: {' '.join(argv[1:])}")
    done = subprocess.run(
        argv, stdout=subprocess.PIPE, stderr=None, env=env, timeout=timeout, text=True, cwd=ROOT
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed with {done.returncode}")
    return json.loads(done.stdout)


def keep(result: dict[str, Any], path: Path) -> dict[str, Any]:
    """Write one configuration's result as soon as it exists (a later failure keeps it)."""
    path.write_text(json.dumps(result, indent=2) + "\n")
    return result


# -- one configuration -------------------------------------------------------------------------


def measure_modelyard(
    backend: str,
    store_uri: str,
    work: Path,
    bench_args: list[str],
    timeout: float,
    sqlite_synchronous: str,
    cpus: str | None,
    server_env: dict[str, str] | None = None,
    client_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Modelyard's tracking server measured through bench/tracking.py. The environments of
    server and client default to `quiet_env()` (tracking_placement.py sets grpc's engine there)."""
    label = f"modelyard-{'pinned' if cpus else 'unpinned'}-{backend}"
    home = work / label
    home.mkdir(parents=True)
    port = free_port()
    addr = f"127.0.0.1:{port}"
    argv = [
        str(venv_bin(PROJECT_VENV, "modelyard")),
        "serve",
        "tracking",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--home",
        str(home),
        "--backend-store-uri",
        store_uri,
        *(["--cpu-affinity", cpus] if cpus else []),
    ]
    source = source_state()
    env = {**(server_env or quiet_env()), "MODELYARD_SQLITE_SYNCHRONOUS": sqlite_synchronous}
    server = Server(label, argv, home, env, work / f"{label}.log")
    try:
        ready = server.wait_ready(modelyard_probe(addr))
        settle = server.settle()
        python = venv_bin(PROJECT_VENV, "python")
        client = client_env or quiet_env()
        argv_bench = [*bench_args, "--server-pid", str(server.proc.pid)]
        result = run_bench(python, "modelyard", addr, argv_bench, client, timeout)
    finally:
        server.stop()
    result["server"] = {
        "argv": argv[1:],
        "ready_s": round(ready, 1),
        "settle_s": round(settle, 1),
        "source": source,
        "sqlite_synchronous": sqlite_synchronous if backend == "sqlite" else None,
        "cpu_affinity": cpus,
    }
    return keep(result, work / f"{label}.json")


def measure_store_write(
    backend: str,
    store_uri: str,
    work: Path,
    sqlite_synchronous: str,
    pause_ms: float | None,
    calls: int = 2000,
) -> dict[str, Any]:
    """The durable write behind one log_metric, alone: Modelyard's store hot path called in this
    process, no gRPC, on a fresh store of the same backend; back to back, and each after a
    spinning pause of `pause_ms` (the bare gRPC round trip), as a server's sequential calls meet
    it: a disk that idles between flushes makes PostgreSQL's commit several times slower then
    (bench/commit_latency.py). Added to the gRPC floor, the paused write is about the fastest a
    single call can be on this machine."""
    from modelyard.services.common.db import Database
    from modelyard.services.tracking.app import migrate
    from modelyard.services.tracking.store.sql import SqlTrackingStore

    db = Database(store_uri, sqlite_synchronous=sqlite_synchronous)
    try:
        migrate(db)
        store = SqlTrackingStore(db, (work / "store-write-artifacts").as_uri())
        store.ensure_experiment(0, "Default")
        ts = int(time.time() * 1000)
        run_id = store.create_run("0", "bench", ts, {}, "store-write", None).info.run_id

        def p50(pause_s: float, key: str) -> float:
            def write(i: int) -> None:
                store.log_metric_rows(run_id, [(key, i * 0.5, ts + i, i)])

            lat = paused_latencies_ms(write, calls, pause_s, warmup=200)
            return round(percentile(lat, 50), 3)

        result: dict[str, Any] = {"calls": calls, "p50_ms": p50(0.0, "store")}
        if pause_ms is not None:
            result["pause_ms"] = pause_ms
            result["p50_after_pause_ms"] = p50(pause_ms / 1000, "paused")
        store.close()
    finally:
        db.dispose()
    log(f"store write alone ({backend}): {result}")
    return result


def measure_mlflow(
    backend: str,
    store_uri: str,
    work: Path,
    workers: int | None,
    bench_args: list[str],
    timeout: float,
    cpus: str | None = None,
) -> dict[str, Any]:
    label = f"mlflow-{workers or 'default'}w-{'pinned' if cpus else 'unpinned'}-{backend}"
    home = work / label
    home.mkdir(parents=True)
    port = free_port()
    addr = f"127.0.0.1:{port}"
    argv = [
        # MLflow has no such setting: taskset pins the server and everything it starts.
        *(["taskset", "--cpu-list", cpus] if cpus else []),
        str(venv_bin(MLFLOW_VENV, "mlflow")),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        store_uri,
        "--artifacts-destination",
        str(home / "mlartifacts"),
    ]
    if workers is not None:
        argv += ["--workers", str(workers)]
    server = Server(label, argv, home, quiet_env(), work / f"{label}.log")
    try:
        ready = server.wait_ready(mlflow_probe(addr))
        settle = server.settle()
        argv_bench = [*bench_args, "--server-pid", str(server.proc.pid)]
        python = venv_bin(MLFLOW_VENV, "python")
        result = run_bench(python, "mlflow", addr, argv_bench, quiet_env(), timeout)
    finally:
        server.stop()
    result["server"] = {
        "argv": argv,
        "workers": workers or "default (4)",
        "cpu_affinity": cpus,
        "ready_s": round(ready, 1),
        "settle_s": round(settle, 1),
    }
    return keep(result, work / f"{label}.json")


@contextmanager
def store(backend: str, kind: str, work: Path, pg: Postgres | None, tag: str) -> Iterator[str]:
    """A fresh, empty backend store for one server."""
    if backend == "sqlite":
        yield f"sqlite:///{work / f'{kind}-{backend}.db'}"
    else:
        assert pg is not None
        with pg.database(f"bench_{kind}_{tag}") as url:
            yield url


def ratios(my: dict[str, Any], ml: dict[str, Any]) -> dict[str, float]:
    def div(a: float, b: float) -> float:
        return round(a / b, 2) if b else float("inf")

    return {
        "single_call_rate_x": div(
            my["single_log_metric"]["calls_per_s"], ml["single_log_metric"]["calls_per_s"]
        ),
        "single_call_p50_x": div(
            ml["single_log_metric"]["p50_ms"], my["single_log_metric"]["p50_ms"]
        ),
        "log_batch_metrics_per_s_x": div(
            my["log_batch"]["metrics_per_s"], ml["log_batch"]["metrics_per_s"]
        ),
        "concurrent_8_threads_calls_per_s_x": div(
            my["concurrent"]["calls_per_s"], ml["concurrent"]["calls_per_s"]
        ),
        "search_100_p95_x": div(
            ml["search"]["max_results_100"]["p95_ms"], my["search"]["max_results_100"]["p95_ms"]
        ),
        "search_1000_p95_x": div(
            ml["search"]["max_results_1000"]["p95_ms"], my["search"]["max_results_1000"]["p95_ms"]
        ),
        "get_run_p50_x": div(ml["get_run"]["p50_ms"], my["get_run"]["p50_ms"]),
    }


def fastest_ratios(mine: list[dict[str, Any]], theirs: list[dict[str, Any]]) -> dict[str, float]:
    """`ratios` of each product's faster configuration, figure by figure (every ratio reads
    higher as better for Modelyard): Modelyard's best run against MLflow's best run."""
    each = [[ratios(m, t) for t in theirs] for m in mine]
    against_best = [{k: min(r[k] for r in rs) for k in rs[0]} for rs in each]
    return {k: max(r[k] for r in against_best) for k in against_best[0]}


def targets(mine: list[dict[str, Any]], vs_one_worker: dict[str, float]) -> dict[str, Any]:
    """The issue's targets, from Modelyard's faster configuration per figure (`mine`: pinned
    and unpinned) against MLflow's faster one-worker configuration (`vs_one_worker`)."""
    values = {
        "single_call_rate_x": vs_one_worker["single_call_rate_x"],
        "log_batch_metrics_per_s_x": vs_one_worker["log_batch_metrics_per_s_x"],
        "concurrent_8_threads_calls_per_s_x": vs_one_worker["concurrent_8_threads_calls_per_s_x"],
        "search_p95_ms_10k_runs": min(m["search"]["max_results_100"]["p95_ms"] for m in mine),
        "single_p50_over_grpc_floor_p50": min(m["single_p50_over_floor_p50"] for m in mine),
    }
    out = {}
    for name, (op, goal) in TARGETS.items():
        value = values[name]
        met = {">=": value >= goal, "<": value < goal, "<=": value <= goal}[op]
        out[name] = {"value": value, "target": f"{op} {goal:g}", "met": met}
    out["search_p95_ms_10k_runs"]["note"] = f"max_results=100 over {mine[0]['search']['runs']} runs"
    return out


def bounds(
    my: dict[str, Any], store_write: dict[str, Any] | None, mlflow: list[dict[str, Any]]
) -> dict[str, Any]:
    """How far this machine lets the two per-call targets go, from figures of the same run.

    single: sequential calls cannot beat the gRPC floor plus the durable write after a pause of
    that floor, so 1000 / (floor p50 + write p50) calls/s is about the best rate (p50, not mean:
    approximate).
    concurrent: 8 callers can use no more than every core, and the server's Python about one;
    the CPU per call the target rate leaves (machine-wide and in the server), set beside what a
    bare health Check costs from 8 threads, says whether gRPC calls from Python can reach it here
    at all.
    """
    single_goal = TARGETS["single_call_rate_x"][1]
    concurrent_goal = TARGETS["concurrent_8_threads_calls_per_s_x"][1]
    out: dict[str, Any] = {}
    mlflow_single = max(r["single_log_metric"]["calls_per_s"] for r in mlflow)
    if store_write and "grpc_floor" in my:
        write_p50 = store_write.get("p50_after_pause_ms", store_write["p50_ms"])
        best_p50 = my["grpc_floor"]["p50_ms"] + write_p50
        best_rate = 1000 / best_p50
        out["single"] = {
            "grpc_floor_p50_ms": my["grpc_floor"]["p50_ms"],
            "store_write_p50_ms": write_p50,
            "store_write_back_to_back_p50_ms": store_write["p50_ms"],
            "best_p50_ms": round(best_p50, 3),
            "best_calls_per_s": round(best_rate, 1),
            "best_rate_x": round(best_rate / mlflow_single, 2),
            "target_reachable_here": best_rate / mlflow_single >= single_goal,
        }
    cpu = my["concurrent"].get("cpu")
    floor_cpu = (my.get("grpc_floor_concurrent") or {}).get("cpu")
    if cpu and floor_cpu and "server_us_per_call" in cpu:
        goal = concurrent_goal * max(r["concurrent"]["calls_per_s"] for r in mlflow)
        cores = os.cpu_count() or 1
        # The server's Python runs its handlers under one lock: about one core at most.
        allows_machine, allows_server = cores * 1e6 / goal, 1e6 / goal
        out["concurrent"] = {
            "target_calls_per_s": round(goal, 1),
            "cores": cores,
            "cores_busy": cpu["cores_busy"],
            "server_cores_busy": cpu["server_cores_busy"],
            "machine_us_per_call": cpu["machine_us_per_call"],
            "client_us_per_call": cpu["client_us_per_call"],
            "server_us_per_call": cpu["server_us_per_call"],
            "target_allows_machine_us_per_call": round(allows_machine, 1),
            "target_allows_server_us_per_call": round(allows_server, 1),
            "health_check_machine_us_per_call": floor_cpu["machine_us_per_call"],
            "health_check_server_us_per_call": floor_cpu["server_us_per_call"],
            "target_reachable_here": floor_cpu["machine_us_per_call"] < allows_machine
            and floor_cpu["server_us_per_call"] < allows_server,
        }
    return out


def versions(pg: Postgres | None, mlflow_version: str) -> dict[str, Any]:
    from importlib.metadata import version

    out = {
        "modelyard": version("modelyard"),
        "mlflow": mlflow_version,
        "python": platform.python_version(),
    }
    for dist in ("grpcio", "protobuf", "SQLAlchemy", "psycopg"):
        out[dist] = version(dist)
    mlflow_py = venv_bin(MLFLOW_VENV, "python")
    code = (
        "import importlib.metadata as m, json; print(json.dumps({d: m.version(d) for d in "
        "('SQLAlchemy', 'uvicorn', 'fastapi', 'flask', 'requests', 'psycopg')}))"
    )
    with suppress(subprocess.CalledProcessError, json.JSONDecodeError):
        out["mlflow_venv"] = json.loads(
            subprocess.run(
                [str(mlflow_py), "-c", code], capture_output=True, text=True, check=True
            ).stdout
        )
    out["sqlite"] = __import__("sqlite3").sqlite_version
    if pg is not None:
        out["postgresql"] = pg.version()
    return out


def source_state() -> dict[str, Any]:
    """Which Modelyard code a server runs: the editable install serves the work tree as it is
    when the server starts, so record HEAD and the files changed outside bench/."""

    def git(*argv: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True, text=True)
        return done.stdout.rstrip() if done.returncode == 0 else ""

    dirty = [
        line[3:]
        for line in git("status", "--porcelain", "--untracked-files=no").splitlines()
        if not line[3:].startswith("bench/")
    ]
    return {"commit": git("rev-parse", "--short=12", "HEAD"), "uncommitted_files": dirty}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: fewer runs and calls")
    p.add_argument(
        "--backends",
        default="sqlite,postgresql",
        help="comma-separated subset of sqlite,postgresql",
    )
    p.add_argument(
        "--pg",
        default=PG_DEFAULT,
        help="PostgreSQL server (database `test` must "
        "exist; fresh databases are created and dropped next to it)",
    )
    p.add_argument("--mlflow-spec", default="mlflow", help="pip requirement for the mlflow venv")
    p.add_argument(
        "--no-default-workers",
        action="store_true",
        help="skip MLflow with its default worker count",
    )
    p.add_argument(
        "--sqlite-synchronous",
        choices=("normal", "full"),
        default="normal",
        help="Modelyard's SQLite commit mode (full: an fsync per commit, like MLflow's SQLite)",
    )
    p.add_argument(
        "--server-cpus",
        default="0",
        help="pin Modelyard's server (its --cpu-affinity) and a second run of MLflow's one-worker "
        "server (taskset) to these CPUs; Modelyard also runs unpinned, and targets take each "
        "product's faster run per figure. Empty: no pinning",
    )
    p.add_argument("--runs", type=int, help="override tracking.py --runs")
    p.add_argument("--output", type=Path, help="also write the combined JSON here")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per tracking.py run")
    args = p.parse_args()

    try:
        import modelyard  # noqa: F401  (the readiness probe uses the SDK)
    except ImportError:
        sys.exit("run this with the project venv: . .venv/bin/activate")

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    for b in backends:
        if b not in ("sqlite", "postgresql"):
            sys.exit(f"unknown backend {b!r}")
    bench_args = ["--quick"] if args.quick else []
    if args.runs is not None:
        bench_args += ["--runs", str(args.runs)]

    stamp = time.strftime("%Y%m%d-%H%M%S")
    work = BENCH / ".work" / f"compare-{stamp}"
    work.mkdir(parents=True)
    mlflow_version = ensure_mlflow(args.mlflow_spec)
    log(
        f"mlflow {mlflow_version} in {MLFLOW_VENV.relative_to(ROOT)}; work dir "
        f"{work.relative_to(ROOT)}"
    )
    pg = Postgres(args.pg) if "postgresql" in backends else None

    started = time.time()
    combined: dict[str, Any] = {
        "benchmark": "modelyard vs mlflow tracking",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": args.quick,
        "command": " ".join(["python", "bench/compare_tracking.py", *sys.argv[1:]]),
        "machine": machine(),
        "versions": versions(pg, mlflow_version),
        "modelyard_source_at_start": source_state(),
        "targets_against": "Modelyard's faster of pinned to --server-cpus and unpinned against "
        "mlflow server --workers 1, the faster of unpinned and pinned, per figure",
        "backends": {},
    }
    tag = f"{stamp.replace('-', '_')}_{os.getpid()}"
    errors: dict[str, str] = {}
    for backend in backends:
        log(f"=== backend {backend} ===")

        def attempt(kind: str, fn, *fn_args, backend: str = backend) -> dict[str, Any] | None:
            try:
                with store(backend, kind, work, pg, tag) as uri:
                    return fn(backend, uri, work, *fn_args)
            except Exception as exc:  # keep going: one failed configuration is a result too
                log(f"{kind}/{backend} FAILED: {exc}")
                errors[f"{kind}/{backend}"] = str(exc)[-2000:]
                return None

        cpus = args.server_cpus or None
        sync = args.sqlite_synchronous
        my = attempt("modelyard", measure_modelyard, bench_args, args.timeout, sync, cpus)
        my_free = None
        if cpus:
            my_free = attempt("myfree", measure_modelyard, bench_args, args.timeout, sync, None)
        ml1 = attempt("mlflow1", measure_mlflow, 1, bench_args, args.timeout)
        ml1_pinned = None
        if cpus:
            ml1_pinned = attempt("mlflow1p", measure_mlflow, 1, bench_args, args.timeout, cpus)
        mld = None
        if not args.no_default_workers:
            mld = attempt("mlflowd", measure_mlflow, None, bench_args, args.timeout)
        floor = my["grpc_floor"]["p50_ms"] if my and "grpc_floor" in my else None
        write = attempt("storewrite", measure_store_write, sync, floor)

        vs1 = ratios(my, ml1) if my and ml1 else None
        vs1_pinned = ratios(my, ml1_pinned) if my and ml1_pinned else None
        # Targets: each product's faster configuration, figure by figure (pinned or not); the
        # old rule, kept for comparison, took Modelyard's pinned server alone.
        mine = [r for r in (my, my_free) if r]
        theirs = [r for r in (ml1, ml1_pinned) if r]
        best = fastest_ratios(mine, theirs) if mine and theirs else None
        vs_fastest = fastest_ratios([my], theirs) if my and theirs else None
        entry: dict[str, Any] = {
            "modelyard": my,
            "modelyard_unpinned": my_free,
            "mlflow_1_worker": ml1,
            "mlflow_1_worker_pinned": ml1_pinned,
            "mlflow_default_workers": mld,
            "ratios_vs_mlflow_1_worker": vs1,
            "ratios_vs_mlflow_1_worker_pinned": vs1_pinned,
            "ratios_vs_mlflow_default_workers": ratios(my, mld) if my and mld else None,
            "ratios_vs_fastest_mlflow_1_worker": vs_fastest,
            "ratios_unpinned_vs_mlflow_1_worker": ratios(my_free, ml1) if my_free and ml1 else None,
            "ratios_fastest_vs_fastest_mlflow_1_worker": best,
            "targets": targets(mine, best) if best else None,
            "store_write_alone": write,
            "bounds": bounds(my, write, theirs) if my and theirs else None,
        }
        entry["all_verified"] = all(
            r[k]["verified"]
            if k != "search"
            else r[k]["max_results_100"]["verified"] and r[k]["max_results_1000"]["verified"]
            for r in (my, my_free, ml1, ml1_pinned, mld)
            if r
            for k in ("single_log_metric", "log_batch", "concurrent", "search", "get_run")
        )
        combined["backends"][backend] = entry
        if entry["targets"]:
            log(
                f"{backend}: targets "
                + ", ".join(
                    f"{k}={v['value']} ({'met' if v['met'] else 'MISSED'})"
                    for k, v in entry["targets"].items()
                )
            )

    combined["errors"] = errors
    combined["elapsed_s"] = round(time.time() - started, 1)
    text = json.dumps(combined, indent=2)
    (work / "results.json").write_text(text + "\n")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
