#!/usr/bin/env python3
"""Tracking benchmark: one tracking server, measured through one client library.

    python bench/tracking.py --uri 127.0.0.1:50051 --client modelyard
    bench/.venvs/mlflow/bin/python bench/tracking.py --uri 127.0.0.1:5000 --client mlflow

Measures, in this order, against a server holding nothing else:

  single      sequential log_metric calls (after a warm-up): calls/s, p50/p95/p99 ms
  floor       (modelyard only) grpc.health.v1 Check on the client's own channel: the bare gRPC
              unary round trip of this server, and single p50 / floor p50; also the same Check
              from 8 threads at once (the parallel ceiling for the concurrent figure)
  log_batch   LogBatch of 1000 metrics per call into one run: metrics/s, p50/p95 ms per batch
  concurrent  8 threads, each logging N log_metric calls into its own run through one shared
              client; afterwards every value is read back with get_metric_history and compared
  search      `--runs` runs in one experiment (3 params, 3 metrics, 2 tags each, written with
              create_run + log_batch, possibly from several threads), then search_runs with a
              filter and order_by, max_results=100 and max_results=1000: p50/p95 ms, and the
              returned runs are checked against the expected ones
  get_run     sequential get_run calls on the search's runs, each a point read of one run with
              its params, metrics and tags: calls/s, p50/p95 ms, every returned m2 and p3 checked

The single, floor and concurrent figures carry `cpu`: cores kept busy over the phase and CPU
microseconds per call, machine-wide (/proc/stat: client, server, database) and this client's.

Only the chosen client library is imported, so the script runs under either venv. Progress goes
to stderr; stdout gets exactly one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from benchkit import CpuMeter, percentile

FILTER = "metrics.m1 > 0.5 and params.p1 = 'a'"
ORDER_BY = ["metrics.m2 DESC"]


# -- helpers ----------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class Progress:
    """A running count on stderr: redrawn in place on a terminal, a line per ~10% otherwise."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done = label, total, 0
        self.tty = sys.stderr.isatty()
        self.step = max(1, total // 10)
        self.lock = threading.Lock()
        self.start = time.perf_counter()

    def add(self, n: int = 1) -> None:
        with self.lock:
            before, self.done = self.done, self.done + n
            if self.tty:
                if self.done // max(1, self.total // 200) != before // max(1, self.total // 200):
                    sys.stderr.write(f"\r  {self.label}: {self.done}/{self.total}")
                    sys.stderr.flush()
            elif self.done // self.step != before // self.step or self.done == self.total:
                log(f"  {self.label}: {self.done}/{self.total}")

    def close(self) -> None:
        elapsed = time.perf_counter() - self.start
        if self.tty:
            sys.stderr.write(f"\r  {self.label}: {self.done}/{self.total} in {elapsed:.1f}s\n")
            sys.stderr.flush()
        else:
            log(f"  {self.label}: done in {elapsed:.1f}s")


def latency_stats(seconds: Sequence[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "p50_ms": round(percentile(ms, 50), 3),
        "p95_ms": round(percentile(ms, 95), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
        "max_ms": round(ms[-1], 3),
    }


# Every timed phase lasts at least this long: a fast server's 20 batches take 0.2 s, and one
# stall of the machine in so short a window would decide the figure.
MIN_SECONDS = 3.0


def timed_loop(
    fn: Callable[[Any], Any],
    n: int,
    label: str,
    min_seconds: float = MIN_SECONDS,
    prepare: Callable[[int], Any] | None = None,
) -> tuple[list[float], float]:
    """Call fn in sequence, at least n times and until min_seconds have been spent in it, with
    the call's index or, given `prepare`, with prepare(index) built outside the timing. Returns
    the per-call latencies and their sum (s)."""
    lat: list[float] = []
    progress = Progress(label, n)
    spent = 0.0
    while len(lat) < n or spent < min_seconds:
        arg = prepare(len(lat)) if prepare else len(lat)
        s = time.perf_counter()
        fn(arg)
        lat.append(time.perf_counter() - s)
        spent += lat[-1]
        progress.add()
    progress.close()
    return lat, spent


def run_threads(
    threads: int, per_thread: int, call: Callable[[int, int], Any], progress: Progress | None
) -> tuple[list[int], float]:
    """`threads` threads, released together, each calling call(thread, i) for i = 0, 1, ...
    at least per_thread times and for at least MIN_SECONDS. Returns the calls each thread
    made and the wall time until the last one finished."""
    barrier = threading.Barrier(threads + 1)
    counts = [0] * threads

    def worker(t: int) -> None:
        barrier.wait()
        started = time.perf_counter()
        i = 0
        while i < per_thread or time.perf_counter() - started < MIN_SECONDS:
            call(t, i)
            i += 1
            if progress is not None and i % 50 == 0:
                progress.add(50)
        counts[t] = i

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in pool:
        th.join()
    return counts, time.perf_counter() - t0


# -- the two client libraries, behind one adapter ----------------------------------------------


class Adapter:
    """Both libraries expose MLflow's client API (`MlflowClient` and modelyard's `Client`), so one
    set of calls drives either: the benchmark compares the same call sequence, and a subclass
    only says which client and entity classes to use."""

    name: str
    version: str

    def __init__(self, client: Any, metric: type, param: type, tag: type) -> None:
        self.c = client
        self.Metric, self.Param, self.RunTag = metric, param, tag

    def create_experiment(self, name: str) -> str:
        return self.c.create_experiment(name)

    def create_run(self, experiment_id: str) -> str:
        return self.c.create_run(experiment_id).info.run_id

    def log_metric(self, run_id: str, key: str, value: float, ts: int, step: int) -> None:
        self.c.log_metric(run_id, key, value, timestamp=ts, step=step)

    def log_batch(self, run_id, metrics=(), params=(), tags=()) -> None:  # tuples
        self.c.log_batch(
            run_id,
            metrics=[self.Metric(k, v, ts, s) for k, v, ts, s in metrics],
            params=[self.Param(k, v) for k, v in params],
            tags=[self.RunTag(k, v) for k, v in tags],
        )

    def search(self, experiment_id: str, max_results: int) -> list[tuple[str, float]]:
        runs = self.c.search_runs(
            [experiment_id], filter_string=FILTER, max_results=max_results, order_by=ORDER_BY
        )
        return [(r.info.run_id, r.data.metrics["m2"]) for r in runs]

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return [(m.step, m.value) for m in self.c.get_metric_history(run_id, key)]

    def get_run(self, run_id: str) -> tuple[float, str]:
        data = self.c.get_run(run_id).data
        return data.metrics["m2"], data.params["p3"]

    def floor_call(self) -> Callable[[], Any] | None:
        return None


class ModelyardAdapter(Adapter):
    name = "modelyard"

    def __init__(self, uri: str) -> None:
        import modelyard
        from modelyard import Client
        from modelyard.entities import Metric, Param, RunTag

        self.version = modelyard.__version__
        super().__init__(Client(uri), Metric, Param, RunTag)

    def floor_call(self):
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        stub = health_pb2_grpc.HealthStub(self.c._transport.channel)
        request = health_pb2.HealthCheckRequest()
        return lambda: stub.Check(request, timeout=60)


class MlflowAdapter(Adapter):
    name = "mlflow"

    def __init__(self, uri: str) -> None:
        # Never let the benchmark phone home (this machine only talks to 127.0.0.1).
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        os.environ.setdefault("DO_NOT_TRACK", "true")
        import mlflow
        from mlflow.entities import Metric, Param, RunTag

        self.version = mlflow.__version__
        target = uri if "://" in uri else f"http://{uri}"
        super().__init__(mlflow.MlflowClient(tracking_uri=target), Metric, Param, RunTag)


# -- the measurements --------------------------------------------------------------------------


def now_ms() -> int:
    return int(time.time() * 1000)


def bench_single(
    a: Adapter, exp: str, calls: int, warmup: int, server: int | None
) -> dict[str, Any]:
    run = a.create_run(exp)
    ts = now_ms()
    for i in range(warmup):
        a.log_metric(run, "warmup", float(i), ts, i)
    meter = CpuMeter(server)
    lat, total = timed_loop(
        lambda i: a.log_metric(run, "single", i * 0.5, ts + i, i), calls, "single log_metric"
    )
    calls = len(lat)
    stored = a.history(run, "single")
    ok = len(stored) == calls and sorted(stored) == [(i, i * 0.5) for i in range(calls)]
    return {
        "calls": calls,
        "calls_per_s": round(calls / total, 1),
        **latency_stats(lat),
        "cpu": meter.result(calls),
        "verified": ok,
    }


def bench_floor(a: Adapter, calls: int, warmup: int, server: int | None) -> dict[str, Any] | None:
    call = a.floor_call()
    if call is None:
        return None
    for _ in range(warmup):
        call()
    meter = CpuMeter(server)
    lat, total = timed_loop(lambda i: call(), calls, "health Check (gRPC floor)")
    calls = len(lat)
    return {
        "calls": calls,
        "calls_per_s": round(calls / total, 1),
        **latency_stats(lat),
        "cpu": meter.result(calls),
    }


def bench_floor_concurrent(
    a: Adapter, threads: int, per_thread: int, server: int | None
) -> dict[str, Any] | None:
    """The same health Check from `threads` threads at once: the most calls/s this server and
    client can exchange in parallel on this machine, whatever the RPC does."""
    call = a.floor_call()
    if call is None:
        return None
    call()  # the channel is up before the timing starts
    meter = CpuMeter(server)
    counts, total = run_threads(threads, per_thread, lambda t, i: call(), None)
    calls = sum(counts)
    log(f"  {threads} threads x {per_thread}+ health Check: {calls} in {total:.1f}s")
    return {
        "threads": threads,
        "calls": calls,
        "calls_per_s": round(calls / total, 1),
        "cpu": meter.result(calls),
    }


def bench_log_batch(a: Adapter, exp: str, batches: int, size: int) -> dict[str, Any]:
    run = a.create_run(exp)
    keys = 100  # 100 keys x (size/100) steps per batch
    per_key = size // keys
    ts = now_ms()

    def batch(b: int) -> list[tuple[str, float, int, int]]:
        return [
            (f"b{j % keys}", b * 1.0 + j / 10000, ts + b, b * per_key + j // keys)
            for j in range(size)
        ]

    warmup = [(f"warmup{key}", value, t, step) for key, value, t, step in batch(0)]
    a.log_batch(run, metrics=warmup)  # the same shape under other keys
    lat, total = timed_loop(
        lambda metrics: a.log_batch(run, metrics=metrics),
        batches,
        f"log_batch x{size}",
        prepare=batch,
    )
    stored = a.history(run, "b0")
    return {
        "batches": len(lat),
        "batch_size": size,
        "metrics_per_s": round(len(lat) * size / total, 1),
        **{f"batch_{k}": v for k, v in latency_stats(lat).items() if k in ("p50_ms", "p95_ms")},
        "verified": len(stored) == len(lat) * per_key,
    }


def bench_concurrent(
    a: Adapter, exp: str, threads: int, per_thread: int, server: int | None
) -> dict[str, Any]:
    runs = [a.create_run(exp) for _ in range(threads)]
    ts = now_ms()
    for r in runs:  # warm each run (and each thread's first request) outside the timing
        a.log_metric(r, "warmup", 0.0, ts, 0)
    progress = Progress(f"{threads} threads x {per_thread}+ log_metric", threads * per_thread)
    errors: list[str] = []

    def call(t: int, i: int) -> None:
        try:
            a.log_metric(runs[t], "c", t * 1_000_000 + i, ts + i, i)
        except Exception as exc:  # recorded; the verification below catches the gap
            errors.append(f"thread {t} call {i}: {exc!r}"[:300])

    meter = CpuMeter(server)
    counts, total = run_threads(threads, per_thread, call, progress)
    expected_total = sum(counts)
    cpu = meter.result(expected_total)
    progress.close()

    found = matching = 0
    for t, r in enumerate(runs):
        stored = a.history(r, "c")
        found += len(stored)
        want = {(i, float(t * 1_000_000 + i)) for i in range(counts[t])}
        got = {(s, float(v)) for s, v in stored}
        matching += len(want & got)
    return {
        "threads": threads,
        "calls_per_thread": counts,
        "calls": expected_total,
        "calls_per_s": round(expected_total / total, 1),
        "cpu": cpu,
        "errors": len(errors),
        "first_errors": errors[:3],
        "values_expected": expected_total,
        "values_found": found,
        "values_matching": matching,
        "verified": not errors and found == expected_total and matching == expected_total,
    }


def populate(
    a: Adapter, exp: str, n: int, threads: int, seed: int
) -> tuple[dict[str, tuple[float, str]], set[str]]:
    """n runs, each: create_run + one log_batch (3 params, 3 metrics, 2 tags). Returns (m2, p3)
    of every run by run id, and the ids of the runs that match FILTER."""
    rng = random.Random(seed)
    specs = [
        (rng.random(), rng.random(), rng.random(), "a" if i % 2 == 0 else "b") for i in range(n)
    ]
    written: dict[str, tuple[float, str]] = {}
    matching: set[str] = set()
    lock = threading.Lock()
    progress = Progress(f"populate {n} runs ({threads} threads)", n)
    ts = now_ms()

    def one(i: int) -> None:
        m1, m2, m3, p1 = specs[i]
        run = a.create_run(exp)
        a.log_batch(
            run,
            metrics=[("m1", m1, ts, 0), ("m2", m2, ts, 0), ("m3", m3, ts, 0)],
            params=[("p1", p1), ("p2", str(i % 7)), ("p3", f"value-{i}")],
            tags=[("t1", "bench"), ("t2", f"group-{i % 10}")],
        )
        with lock:
            written[run] = (m2, f"value-{i}")
            if m1 > 0.5 and p1 == "a":
                matching.add(run)
        progress.add()

    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(one, i) for i in range(n)]:
            f.result()
    progress.close()
    return written, matching


def bench_search(
    a: Adapter, exp: str, expected: dict[str, float], max_results: int, iterations: int, warmup: int
) -> dict[str, Any]:
    for _ in range(warmup):
        a.search(exp, max_results)
    results: list[list[tuple[str, float]]] = []
    lat, _ = timed_loop(
        lambda i: results.append(a.search(exp, max_results)),
        iterations,
        f"search_runs max_results={max_results}",
        min_seconds=0.0,
    )
    want = sorted(expected.values(), reverse=True)[:max_results]
    got = results[-1]
    ok = (
        len(got) == len(want)
        and [v for _, v in got] == want
        and all(rid in expected for rid, _ in got)
    )
    return {
        "max_results": max_results,
        "iterations": iterations,
        "returned": len(got),
        **latency_stats(lat),
        "verified": ok,
    }


def bench_get_run(
    a: Adapter, written: dict[str, tuple[float, str]], calls: int, warmup: int
) -> dict[str, Any]:
    ids = list(written)
    for i in range(warmup):
        a.get_run(ids[i % len(ids)])
    wrong: list[str] = []

    def read(i: int) -> None:
        run_id = ids[i % len(ids)]
        if a.get_run(run_id) != written[run_id]:
            wrong.append(run_id)

    lat, total = timed_loop(read, calls, "get_run")
    return {
        "calls": len(lat),
        "calls_per_s": round(len(lat) / total, 1),
        **latency_stats(lat),
        "verified": not wrong,
    }


# -- main --------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--uri", required=True, help="HOST:PORT of the tracking server")
    p.add_argument("--client", choices=("modelyard", "mlflow"), default="modelyard")
    p.add_argument(
        "--runs",
        type=int,
        default=None,
        help="runs in the search experiment (default 10000; 1000 with --quick)",
    )
    p.add_argument("--quick", action="store_true", help="a fast smoke run: fewer of everything")
    p.add_argument("--single-calls", type=int, default=None, help="default 3000 (300 quick)")
    p.add_argument("--batches", type=int, default=None, help="default 20 (5 quick)")
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--per-thread", type=int, default=None, help="default 500 (50 quick)")
    p.add_argument("--search-iterations", type=int, default=None, help="default 50 (10 quick)")
    p.add_argument(
        "--populate-threads",
        type=int,
        default=8,
        help="threads that write the search runs (populating is not timed)",
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--server-pid",
        type=int,
        help="process group of the server, on this machine: adds its CPU per call to `cpu`",
    )
    args = p.parse_args()
    q = args.quick
    runs = args.runs if args.runs is not None else (1000 if q else 10000)
    if runs < 1:
        p.error("--runs must be at least 1: search and get_run read those runs")
    single = args.single_calls or (300 if q else 3000)
    batches = args.batches or (5 if q else 20)
    per_thread = args.per_thread or (50 if q else 500)
    search_iters = args.search_iterations or (10 if q else 50)
    warmup = 20 if q else 200

    adapter: Adapter = (
        ModelyardAdapter(args.uri) if args.client == "modelyard" else MlflowAdapter(args.uri)
    )
    log(f"[{adapter.name} {adapter.version}] {args.uri}")
    tag = uuid.uuid4().hex[:8]
    started = time.perf_counter()

    out: dict[str, Any] = {
        "client": adapter.name,
        "client_version": adapter.version,
        "uri": args.uri,
        "quick": q,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    exp = adapter.create_experiment(f"bench-calls-{tag}")
    out["single_log_metric"] = bench_single(adapter, exp, single, warmup, args.server_pid)
    floor = bench_floor(adapter, single, warmup, args.server_pid)
    if floor is not None:
        out["grpc_floor"] = floor
        out["single_p50_over_floor_p50"] = round(
            out["single_log_metric"]["p50_ms"] / floor["p50_ms"], 2
        )
    out["log_batch"] = bench_log_batch(adapter, exp, batches, args.batch_size)
    out["concurrent"] = bench_concurrent(adapter, exp, args.threads, per_thread, args.server_pid)
    floor_concurrent = bench_floor_concurrent(adapter, args.threads, per_thread, args.server_pid)
    if floor_concurrent is not None:
        out["grpc_floor_concurrent"] = floor_concurrent
        out["concurrent_over_floor_concurrent"] = round(
            out["concurrent"]["calls_per_s"] / floor_concurrent["calls_per_s"], 2
        )

    search_exp = adapter.create_experiment(f"bench-search-{tag}")
    t0 = time.perf_counter()
    written, matching = populate(adapter, search_exp, runs, args.populate_threads, args.seed)
    expected = {run_id: written[run_id][0] for run_id in matching}
    out["search"] = {
        "runs": runs,
        "matching_runs": len(expected),
        "filter": FILTER,
        "order_by": ORDER_BY,
        "populate_s": round(time.perf_counter() - t0, 1),
        "populate_threads": args.populate_threads,
        "max_results_100": bench_search(
            adapter, search_exp, expected, 100, search_iters, max(2, search_iters // 10)
        ),
        "max_results_1000": bench_search(
            adapter, search_exp, expected, 1000, max(5, search_iters // 2), 2
        ),
    }
    out["get_run"] = bench_get_run(adapter, written, single, warmup)
    out["elapsed_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
