#!/usr/bin/env python3
"""What is left of the logging rate once everything of Modelyard's but the durable write goes?

    . .venv/bin/activate
    python bench/write_floor.py --backend postgresql --repeats 5 --calls 1500 \
        --output bench/results/write_floor_postgresql.json
    python bench/write_floor.py --backend postgresql --threads 1 --repeats 5 --calls 3000 \
        --output bench/results/write_floor_postgresql_single.json

compare_tracking.py's targets are 20x MLflow's one-worker server from 8 threads and 15x for
sequential calls (`--threads 1`), with a sequential call's p50 within 3x of the bare gRPC round
trip's. This asks whether Modelyard's own layers or the durable write through Python gRPC on
this machine are what bind the rate. It measures, on one fresh store of the chosen backend,
servers pinned to CPU 0 (as compare_tracking pins Modelyard's), interleaved:

  modelyard   `modelyard serve tracking`, called through `modelyard.Client.log_metric`: the
              product, interceptors, service layers and SDK included
  write_only  a bare `grpc.server` with the product's RPC pool (4 core threads) whose one method
              hands the parsed LogMetricRequest straight to the tracking store's hot path
              (`SqlTrackingStore.log_metric_rows`: its group commit and write statements),
              called through a bare stub with no metadata and no deadline: the same durable
              write with nothing else of Modelyard's around it
  grpc_only   the same bare server and stub, the method answering without writing: the gRPC
              round trip alone
  mlflow      `mlflow server --workers 1` pinned with taskset on a fresh store of its own,
              measured by bench/tracking.py from the mlflow venv (its 8-thread phase, or its
              sequential one for --threads 1; the other phases cut short): what the target is
              set against, in the same run

Each phase: `--threads` threads (8), each logging into a run of its own, started together behind
a barrier. Every value is read back from the store afterwards. One JSON object on stdout: every
phase (calls/s; per-call latency; cores busy and CPU µs per call of the machine, the client and
the server, from /proc), the medians per configuration, and `bound`: against the target's rate
(20x MLflow's median from 8 threads, 15x sequentially), what each path made, the most calls/s
the write_only path could make with every core fully busy at its measured CPU per call, and each
path's p50 over grpc_only's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchkit import CpuMeter, emit, free_port, log, machine, percentile
from compare_tracking import (
    PG_DEFAULT,
    PROJECT_VENV,
    TARGETS,
    Postgres,
    Server,
    ensure_mlflow,
    measure_mlflow,
    modelyard_probe,
    quiet_env,
    source_state,
    store,
    venv_bin,
)

CONFIGS = ("modelyard", "write_only", "grpc_only", "mlflow")
WARMUP = 50  # calls per thread before the barrier, under another key
# bench/tracking.py for MLflow: its other phases as short as they go (200 runs to search).
MLFLOW_ARGS = [*("--runs", "200", "--batches", "1", "--search-iterations", "1")]
# The target for each kind of phase, as compare_tracking.py judges it: times MLflow's rate.
TARGET_X = {
    "sequential": TARGETS["single_call_rate_x"][1],
    "concurrent": TARGETS["concurrent_8_threads_calls_per_s_x"][1],
}


def serve_write_only(port: int, store_uri: str, artifacts: str, core_threads: int) -> None:
    """The write_only / grpc_only server (run in a child process)."""
    os.sched_setaffinity(0, {0})  # before grpc starts a thread: they all inherit it
    import grpc

    from modelyard._gen.tracking.v1 import tracking_pb2 as pb
    from modelyard.services.common.db import Database
    from modelyard.services.common.thread_pool import ElasticThreadPool
    from modelyard.services.tracking.store.sql import SqlTrackingStore

    store = SqlTrackingStore(Database(store_uri), artifacts)
    response = pb.LogMetricResponse()

    def write(request: Any, context: Any) -> Any:
        row = (request.key, request.value, request.timestamp.ToMilliseconds(), request.step)
        store.log_metric_rows(request.run_id, [row])
        return response

    def answer(request: Any, context: Any) -> Any:
        return response

    def method(behavior: Callable[[Any, Any], Any]) -> Any:
        return grpc.unary_unary_rpc_method_handler(
            behavior, pb.LogMetricRequest.FromString, pb.LogMetricResponse.SerializeToString
        )

    server = grpc.server(ElasticThreadPool(core_threads, 32, name="floor-rpc"))
    handlers = {"Write": method(write), "Answer": method(answer)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("floor", handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


Call = Callable[[str, str, int], None]  # (run id, metric key, step): log one value


def phase(call: Call, runs: list[str], calls: int, pgid: int) -> dict[str, Any]:
    """A thread per run, `calls` calls each; calls/s, latency and CPU over the timed part."""
    barrier = threading.Barrier(len(runs) + 1)
    latencies: list[float] = []  # list.extend holds the GIL: no lock needed

    def worker(run_id: str) -> None:
        for i in range(WARMUP):
            call(run_id, "warm-up", i)
        own = []
        barrier.wait()
        for i in range(calls):
            t0 = time.perf_counter()
            call(run_id, "m", i)
            own.append(time.perf_counter() - t0)
        latencies.extend(own)

    pool = [threading.Thread(target=worker, args=(run_id,)) for run_id in runs]
    for t in pool:
        t.start()
    barrier.wait()
    meter, t0 = CpuMeter(pgid), time.perf_counter()
    for t in pool:
        t.join()
    wall = time.perf_counter() - t0
    total = len(runs) * calls
    ms = sorted(s * 1000 for s in latencies)
    return {
        "calls": total,
        "calls_per_s": round(total / wall),
        "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "cpu": meter.result(total),
    }


def verify(store_uri: str, runs: list[str], calls: int) -> bool:
    """Every timed value is in the history (value == step) and each run's latest is the last."""
    from sqlalchemy import text

    from modelyard.services.common.db import Database

    db = Database(store_uri)
    try:
        with db.engine.connect() as conn:
            found = [
                conn.execute(
                    text(
                        "SELECT count(*), sum(CASE WHEN value <> step THEN 1 ELSE 0 END), "
                        "(SELECT value FROM latest_metrics WHERE run_uuid = :run AND key = 'm') "
                        "FROM metrics WHERE run_uuid = :run AND key = 'm'"
                    ),
                    {"run": run_id},
                ).one()
                for run_id in runs
            ]
    finally:
        db.dispose()
    return all(n == calls and bad == 0 and latest == calls - 1 for n, bad, latest in found)


def mlflow(
    backend: str, pg: Postgres | None, work: Path, tag: str, calls: int, threads: int
) -> dict[str, Any]:
    """MLflow's one-worker server, pinned, on a fresh store: its phase of `threads` threads (its
    sequential phase for one)."""
    if threads == 1:
        bench_args = [*MLFLOW_ARGS, "--single-calls", str(calls), "--per-thread", "10"]
    else:
        bench_args = [*MLFLOW_ARGS, "--single-calls", "100", "--per-thread", str(calls)]
        bench_args += ["--threads", str(threads)]
    home = work / f"mlflow-{tag}"
    home.mkdir()
    with store(backend, "writefloor_mlflow", home, pg, tag) as url:
        result = measure_mlflow(backend, url, home, 1, bench_args, 3600, cpus="0")
    measured = result["single_log_metric" if threads == 1 else "concurrent"]
    log(f"mlflow: {measured['calls_per_s']} calls/s")
    keys = ("calls", "calls_per_s", "p50_ms", "p95_ms", "cpu", "verified")
    return {key: measured[key] for key in keys if key in measured}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--backend", choices=("postgresql", "sqlite"), default="postgresql")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=8, help="1: the sequential call's floor")
    p.add_argument("--calls", type=int, default=1000, help="timed calls per thread")
    p.add_argument("--mlflow-calls", type=int, default=500, help="MLflow's calls per thread")
    p.add_argument("--mlflow-spec", default="mlflow", help="pip requirement for the mlflow venv")
    p.add_argument("--core-threads", type=int, default=4, help="RPC pool of the bare server")
    p.add_argument("--pg", default=PG_DEFAULT, help="PostgreSQL base URL (database test exists)")
    p.add_argument("--output", type=Path)
    p.add_argument("--serve-write-only", type=int, metavar="PORT", help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--artifacts", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_write_only:
        serve_write_only(args.serve_write_only, args.store, args.artifacts, args.core_threads)
        return

    import grpc

    import modelyard  # the client as Modelyard's: on the polling engine
    from modelyard._gen.tracking.v1 import tracking_pb2 as pb

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    mlflow_version = ensure_mlflow(args.mlflow_spec)
    pg = Postgres(args.pg) if args.backend == "postgresql" else None
    stamp = int(time.time())
    phases: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIGS}
    with (
        tempfile.TemporaryDirectory(prefix="write-floor-") as tmp,
        store(args.backend, "writefloor", Path(tmp), pg, str(stamp)) as url,
    ):
        work = Path(tmp)
        port, floor_port = free_port(), free_port()
        product = Server(
            "modelyard",
            [
                *(str(venv_bin(PROJECT_VENV, "modelyard")), "serve", "tracking"),
                *("--host", "127.0.0.1", "--port", str(port), "--home", str(work)),
                *("--backend-store-uri", url, "--cpu-affinity", "0"),
            ],
            work,
            quiet_env(),
            work / "modelyard.log",
        )
        bare = Server(
            "write_only",
            [
                *(sys.executable, __file__, "--serve-write-only", str(floor_port)),
                *("--store", url, "--artifacts", (work / "artifacts").as_uri()),
                *("--core-threads", str(args.core_threads)),
            ],
            work,
            quiet_env(),
            work / "write_only.log",
        )
        client = modelyard.Client(f"127.0.0.1:{port}", timeout=60)
        channel = grpc.insecure_channel(f"127.0.0.1:{floor_port}")
        try:
            product.wait_ready(modelyard_probe(f"127.0.0.1:{port}"))  # it migrates the store
            experiment = client.create_experiment("write-floor")
            (write, answer) = (
                channel.unary_unary(
                    f"/floor/{name}",
                    request_serializer=pb.LogMetricRequest.SerializeToString,
                    response_deserializer=pb.LogMetricResponse.FromString,
                )
                for name in ("Write", "Answer")
            )

            def stub(method: Any) -> Call:
                def call(run_id: str, key: str, i: int) -> None:
                    request = pb.LogMetricRequest(run_id=run_id, key=key, value=i, step=i)
                    request.timestamp.FromMilliseconds(1_700_000_000_000 + i)
                    method(request)

                return call

            def sdk(run_id: str, key: str, i: int) -> None:
                client.log_metric(run_id, key, i, timestamp=1_700_000_000_000 + i, step=i)

            calls = {"modelyard": sdk, "write_only": stub(write), "grpc_only": stub(answer)}
            bare.wait_ready(lambda: answer(pb.LogMetricRequest(), timeout=2))
            for server in (product, bare):
                server.settle()
            for repeat in range(args.repeats):
                for name in CONFIGS:
                    if name == "mlflow":
                        tag = f"{stamp}_{repeat}"
                        phases[name].append(
                            mlflow(args.backend, pg, work, tag, args.mlflow_calls, args.threads)
                        )
                        continue
                    runs = [client.create_run(experiment).info.run_id for _ in range(args.threads)]
                    pgid = (product if name == "modelyard" else bare).proc.pid
                    result = phase(calls[name], runs, args.calls, pgid)
                    if name != "grpc_only":
                        result["verified"] = verify(url, runs, args.calls)
                    log(f"round {repeat + 1} {name}: {result}")
                    phases[name].append(result)
        finally:
            client.close()
            channel.close()
            product.stop()
            bare.stop()

    def median(name: str, get: Callable[[dict[str, Any]], float]) -> float:
        return statistics.median(get(r) for r in phases[name])

    one = args.threads == 1
    cpu_keys = ("cores_busy", "machine_us_per_call", "client_us_per_call", "server_us_per_call")
    medians = {
        name: {
            "calls_per_s": median(name, lambda r: r["calls_per_s"]),
            # MLflow's 8-thread phase (bench/tracking.py) reports no latency.
            "p50_ms": median(name, lambda r: r["p50_ms"]) if name != "mlflow" or one else None,
            **{key: statistics.median(r["cpu"][key] for r in phases[name]) for key in cpu_keys},
        }
        for name in CONFIGS
    }
    cores = os.cpu_count() or 1
    factor = TARGET_X["sequential" if args.threads == 1 else "concurrent"]
    target = factor * medians["mlflow"]["calls_per_s"]
    floor_p50 = medians["grpc_only"]["p50_ms"]
    bound = {
        "cores": cores,
        "target_x_mlflow": factor,
        "write_only_most_calls_per_s": round(
            cores * 1e6 / medians["write_only"]["machine_us_per_call"]
        ),
        "target_calls_per_s": round(target),
        "target_allows_machine_us_per_call": round(cores * 1e6 / target, 1),
        **{
            f"{name}_x_mlflow": round(medians[name]["calls_per_s"] / target * factor, 2)
            for name in ("write_only", "modelyard")
        },
        **{
            f"{name}_p50_over_grpc_only": round(medians[name]["p50_ms"] / floor_p50, 2)
            for name in ("write_only", "modelyard")
        },
    }
    result = {
        "benchmark": "write_floor",
        "backend": args.backend,
        "started": started,
        "machine": machine(),
        "postgres": pg.version() if pg else None,
        "mlflow": mlflow_version,
        "source": source_state(),
        "threads": args.threads,
        "calls_per_thread": args.calls,
        "repeats": args.repeats,
        "all_verified": all(r.get("verified", True) for rs in phases.values() for r in rs),
        "phases": phases,
        "medians": medians,
        "bound": bound,
    }
    emit(result, args.output)


if __name__ == "__main__":
    main()
