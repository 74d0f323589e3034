#!/usr/bin/env python3
"""Feature store benchmark: Modelyard vs Feast, same machine, same data, same run.

    . .venv/bin/activate
    python bench/features.py            # full: 10M feature rows, 1M entity rows (~15 min)
    python bench/features.py --quick    # 100k feature rows, 10k entity rows (~2-3 min)

Measures, for both systems:

  online    lookups of 1 entity x 10 features and 100 entities x 10 features, on the SQLite and
            the Redis online store (127.0.0.1:6379, a unique key prefix / Feast project, cleaned
            up afterwards). Modelyard: `modelyard serve features` over gRPC, timed through
            FeatureStoreClient.get_online_features(...).to_dict() ("client"), plus the raw stub
            call with a prebuilt request ("stub") and a grpc.health.v1 Check on the same channel
            ("grpc_floor"). Feast: `feast serve` (its Python HTTP feature server, one gunicorn
            worker, worker recycling off) timed as json.dumps + POST /get-online-features on a
            keep-alive connection + json.loads ("http"), and with a prebuilt body and no
            decoding ("http_raw"). Both servers are up together and the variants run in
            interleaved rounds, so load from other jobs hits them alike. Warm-up calls are
            discarded. Every call asks for other, random drivers (the same sequence for both).
  offline   point-in-time retrieval: get_historical_features(entity rows, 10 features).to_df()
            over the same Parquet file (Modelyard: DuckDB in the server, Arrow over gRPC; Feast:
            its file/dask offline store, in bench/features_feast.py under the Feast venv). Feast
            is tried at the full size under a memory cap and a time limit; if it cannot finish,
            both systems run at the largest reduced size Feast manages (--feast-sizes) for the
            side-by-side ratio, and Modelyard alone at the full size. The JSON says which.
  checks    online: the values both return for 100 x 100-entity lookups, and the latest row per
            driver computed from the Parquet file; offline: every result row, joined on row_id,
            and for mismatching rows the point-in-time answer computed by brute force.

Data (generated once, seeded, cached under bench/.data/): a driver_stats table of
`--feature-rows` rows (driver_id int64, event_timestamp, created, 10 features: 6 float64 with
0.5% nulls in one, 2 float32, 2 int64) over 30 days ending at today's 00:00 UTC, with
`feature-rows / --rows-per-driver` drivers, 0.1% of rows re-stating an earlier (driver,
event_timestamp) with a later `created`; and `--entity-rows` entity rows (driver_id,
event_timestamp, row_id) over the same days plus one before, 1% of them exactly at a feature
row's time and 0.5% exactly one TTL (1 day) after one.

The Feast venv is bench/.venvs/feast (python3.11 -m venv; pip install "feast[redis]==0.67.0"),
created on first use, never a dependency of the project. One JSON document goes to stdout (and
to bench/.work/features-<time>/result.json); progress goes to stderr.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import math
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from benchkit import ServerProcess, ensure_venv, free_port, load_average, percentile

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DATA = BENCH / ".data"
WORK = BENCH / ".work"
FEAST_VENV = BENCH / ".venvs" / "feast"
FEAST_SPEC = "feast[redis]==0.67.0"
FEAST_SCRIPT = BENCH / "features_feast.py"
MODELYARD_BIN = Path(sys.executable).parent / "modelyard"

ENTITY = "driver"
JOIN_KEY = "driver_id"
ID_BASE = 1001
TTL = timedelta(days=1)
DAYS = 30
SEED = 20240611
# (name, dtype) of the 10 features.
FEATURES: list[tuple[str, str]] = [
    ("conv_rate", "FLOAT64"),
    ("acc_rate", "FLOAT64"),
    ("rating", "FLOAT64"),
    ("earnings", "FLOAT64"),
    ("avg_trip_km", "FLOAT64"),
    ("cancel_rate", "FLOAT64"),
    ("surge", "FLOAT32"),
    ("eta_error_s", "FLOAT32"),
    ("trips_today", "INT64"),
    ("online_minutes", "INT64"),
]
FEATURE_NAMES = [n for n, _ in FEATURES]
TARGET_P99_MS = 2.0
TARGET_X = 5.0
JSON_HEADERS = {"Content-Type": "application/json"}


def log(msg: str) -> None:
    print(f"[features {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def source_state() -> dict[str, Any]:
    """The commit, and uncommitted changes to the code this benchmark exercises (the server runs
    from the editable install, i.e. the work tree as it is when it starts)."""
    paths = ["modelyard", "services"]
    git = ["git", "-C", str(ROOT)]
    commit = subprocess.run([*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", *paths], capture_output=True, text=True
    )
    return {
        "commit": commit.stdout.strip(),
        "uncommitted": [line[3:] for line in dirty.stdout.splitlines() if line.strip()],
    }


def mem_available_gb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return round(int(line.split()[1]) / 1024**2, 1)
    return float("nan")


# -- data ---------------------------------------------------------------------------------------


class Dataset:
    """One generated pair of Parquet files, cached by size, seed and anchor day."""

    def __init__(self, feature_rows: int, entity_rows: int, drivers: int, anchor: datetime):
        self.feature_rows, self.entity_rows, self.drivers = feature_rows, entity_rows, drivers
        self.anchor = anchor
        self.start = anchor - timedelta(days=DAYS)
        tag = f"{anchor:%Y%m%d}-f{feature_rows}-e{entity_rows}-d{drivers}-s{SEED}"
        self.dir = DATA / f"features-{tag}"
        self.features = self.dir / "driver_stats.parquet"
        self.entities = self.dir / "entities.parquet"

    @property
    def size(self) -> str:
        return f"{_short(self.entity_rows)} x {_short(self.feature_rows)}"

    def describe(self) -> dict[str, Any]:
        return {
            "feature_rows": self.feature_rows,
            "entity_rows": self.entity_rows,
            "drivers": self.drivers,
            "days": DAYS,
            "anchor": self.anchor.isoformat(),
            "features_parquet_mb": round(self.features.stat().st_size / 1e6, 1),
            "path": str(self.dir.relative_to(ROOT)),
        }

    def ensure(self) -> Dataset:
        if self.features.exists() and self.entities.exists():
            log(f"data {self.size}: cached in {self.dir.relative_to(ROOT)}")
            return self
        self.dir.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        rng = np.random.default_rng([SEED, self.feature_rows, self.entity_rows, self.drivers])
        n, m = self.feature_rows, self.entity_rows
        span = DAYS * 86400
        start_s = int(self.start.timestamp())
        ids = rng.integers(0, self.drivers, n, dtype=np.int64) + ID_BASE
        ts = start_s + rng.integers(0, span, n, dtype=np.int64)
        created = ts + rng.integers(0, 3600, n, dtype=np.int64)
        # 0.1% of rows re-state another row's (driver, event time), created later.
        k = max(1, n // 1000)
        pick = rng.permutation(n)[: 2 * k]
        src, dst = pick[:k], pick[k:]
        ids[dst], ts[dst] = ids[src], ts[src]
        created[dst] = created[src] + rng.integers(1, 600, k, dtype=np.int64)
        cancel = rng.random(n) * 0.2
        columns = {
            JOIN_KEY: pa.array(ids),
            "event_timestamp": _timestamps(ts),
            "created": _timestamps(created),
            "conv_rate": pa.array(rng.random(n)),
            "acc_rate": pa.array(rng.random(n)),
            "rating": pa.array(np.round(rng.uniform(3.0, 5.0, n), 2)),
            "earnings": pa.array(np.round(rng.gamma(2.0, 50.0, n), 2)),
            "avg_trip_km": pa.array(rng.lognormal(1.5, 0.5, n)),
            "cancel_rate": pa.array(cancel, mask=rng.random(n) < 0.005),
            "surge": pa.array(rng.uniform(1.0, 3.0, n).astype(np.float32)),
            "eta_error_s": pa.array(rng.normal(0.0, 60.0, n).astype(np.float32)),
            "trips_today": pa.array(rng.integers(0, 40, n, dtype=np.int64)),
            "online_minutes": pa.array(rng.integers(0, 720, n, dtype=np.int64)),
        }
        table = pa.table(columns)
        table = table.take(pc.sort_indices(table, [("event_timestamp", "ascending")]))
        pq.write_table(table, self.features, row_group_size=1 << 20)
        # Entity rows: over the data's days and the day before (no features yet), 1% exactly at
        # a feature row's event time, 0.5% exactly one TTL after one (both bounds inclusive).
        eids = rng.integers(0, self.drivers, m, dtype=np.int64) + ID_BASE
        ets = start_s - 86400 + rng.integers(0, span + 86400, m, dtype=np.int64)
        exact, boundary = max(1, m // 100), max(1, m // 200)
        rows = rng.permutation(m)[: exact + boundary]
        at = rng.integers(0, n, exact + boundary)
        eids[rows] = ids[at]
        ets[rows] = ts[at] + np.where(np.arange(exact + boundary) < exact, 0, 86400)
        entities = pa.table(
            {
                JOIN_KEY: pa.array(eids),
                "event_timestamp": _timestamps(ets),
                "row_id": pa.array(np.arange(m, dtype=np.int64)),
            }
        )
        pq.write_table(entities, self.entities)
        log(f"data {self.size}: generated in {time.perf_counter() - t0:.1f}s")
        return self


def _timestamps(seconds: np.ndarray) -> pa.Array:
    return pa.array(seconds * 1_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _short(n: int) -> str:
    for unit, div in (("M", 1_000_000), ("k", 1_000)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


def view_name(data: Dataset, full: Dataset) -> str:
    if data is full:
        return "driver_stats"
    return f"driver_stats_{data.feature_rows}"


# -- processes --------------------------------------------------------------------------------


def group_rss_bytes(pgid: int) -> int:
    """Resident memory of every process in a process group."""
    total = 0
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) == pgid:  # field 5, pgrp
                total += int((entry / "statm").read_text().split()[1]) * page
        except (OSError, ValueError, IndexError):
            continue
    return total


class PeakRss:
    """Polls a process group's resident memory in the background; `.peak` in bytes."""

    def __init__(self, pgid: int, interval: float = 0.25) -> None:
        self.pgid, self.interval, self.peak = pgid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, group_rss_bytes(self.pgid))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def feast_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("VIRTUAL_ENV", None)
    env.update(FEAST_USAGE="False", PYTHONUNBUFFERED="1", DO_NOT_TRACK="true")
    return env


def ensure_feast() -> str:
    return ensure_venv(FEAST_VENV, "feast, redis", [FEAST_SPEC], feast_env())


def run_feast(
    args: list[str], logfile: Path, timeout: float, rss_limit: int | None = None
) -> tuple[dict[str, Any] | None, str, int]:
    """bench/features_feast.py under the Feast venv: (its JSON or None, why it failed, peak RSS).
    Killed (whole process group) past `timeout` seconds or `rss_limit` bytes of memory."""
    argv = [str(FEAST_VENV / "bin" / "python"), str(FEAST_SCRIPT), *args]
    with open(logfile, "ab") as err:
        err.write(f"$ {' '.join(argv)}\n".encode())
        err.flush()
        proc = subprocess.Popen(
            argv, env=feast_env(), stdout=subprocess.PIPE, stderr=err, start_new_session=True
        )
        reason = ""
        with PeakRss(proc.pid) as rss:
            t0 = time.monotonic()
            while proc.poll() is None:
                if time.monotonic() - t0 > timeout:
                    reason = f"did not finish within {timeout:.0f}s"
                elif rss_limit and rss.peak > rss_limit:
                    reason = f"memory passed the {rss_limit / 1024**3:.0f} GiB cap"
                if reason:
                    log(f"feast {args[0]}: {reason}; stopping it")
                    with suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    break
                time.sleep(0.25)
            out = proc.communicate()[0].decode()
    if reason:
        return None, f"{reason} (after {time.monotonic() - t0:.0f}s)", rss.peak
    if proc.returncode != 0:
        tail = "\n".join(logfile.read_text(errors="replace").splitlines()[-15:])
        return None, f"exit {proc.returncode}: {tail}", rss.peak
    return json.loads(out.strip().splitlines()[-1]), "", rss.peak


# -- statistics -------------------------------------------------------------------------------


def latency_stats(ns: Sequence[int]) -> dict[str, float]:
    ms = sorted(v / 1e6 for v in ns)
    mean = statistics.fmean(ms)
    return {
        "calls": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(mean, 3),
        "max_ms": round(ms[-1], 3),
        "calls_per_s": round(1000 / mean, 1),
    }


def ratio(slow: float, fast: float) -> float:
    return round(slow / fast, 2) if fast else float("nan")


# -- Modelyard --------------------------------------------------------------------------------


def modelyard_server(store_uri: str, work: Path, label: str) -> tuple[ServerProcess, str]:
    from modelyard.features import FeatureStoreClient  # noqa: F401  (fail early if missing)

    port = free_port()
    home = work / f"modelyard-home-{label}"
    env = dict(os.environ, MODELYARD_FEATURES__ONLINE_STORE_URI=store_uri, PYTHONUNBUFFERED="1")
    argv = [str(MODELYARD_BIN), "serve", "features", "--no-auth"]
    argv += ["--home", str(home), "--port", str(port), "--host", "127.0.0.1"]
    server = ServerProcess(
        f"modelyard features ({label})", argv, env, work / f"modelyard-{label}.log", say=log
    )
    address = f"127.0.0.1:{port}"

    def probe() -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with grpc.insecure_channel(address) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=1
            )
            if reply.status != health_pb2.HealthCheckResponse.SERVING:
                raise RuntimeError(f"health {reply.status}")

    server.wait_ready(probe)
    return server, address


def modelyard_definitions(datasets: Sequence[Dataset], full: Dataset) -> list[Any]:
    from modelyard.features import Entity, FeatureView, Field, FileSource, ValueType

    driver = Entity(name=ENTITY, join_keys=[JOIN_KEY], value_type=ValueType.INT64)
    views = [
        FeatureView(
            name=view_name(data, full),
            entities=[driver],
            ttl=TTL,
            schema=[Field(n, ValueType(t)) for n, t in FEATURES],
            source=FileSource(
                path=str(data.features),
                timestamp_field="event_timestamp",
                created_timestamp_column="created",
            ),
        )
        for data in datasets
    ]
    return [driver, *views]


# -- Feast ------------------------------------------------------------------------------------


def feast_repo(
    work: Path, label: str, project: str, online: dict[str, str], spec: dict[str, Any]
) -> Path:
    repo = work / f"feast-{label}"
    (repo / "data").mkdir(parents=True, exist_ok=True)
    lines = [
        f"project: {project}",
        f"registry: {repo / 'data' / 'registry.db'}",
        "provider: local",
        "online_store:",
        *(f"    {k}: {json.dumps(v)}" for k, v in online.items()),
        "offline_store:",
        "    type: file",
        "entity_key_serialization_version: 3",
    ]
    (repo / "feature_store.yaml").write_text("\n".join(lines) + "\n")
    (repo / "spec.json").write_text(json.dumps(spec))
    return repo


def feast_server(repo: Path, work: Path, label: str) -> tuple[ServerProcess, int]:
    port = free_port()
    argv = [str(FEAST_VENV / "bin" / "feast"), "-c", str(repo), "serve"]
    # One worker like Modelyard's one process; gunicorn's worker recycling (every ~1000
    # requests by default) off, so a restart never lands inside the timed calls.
    argv += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--workers", "1"]
    argv += ["--max-requests", "0", "--max-requests-jitter", "0"]
    server = ServerProcess(
        f"feast serve ({label})", argv, feast_env(), work / f"feast-serve-{label}.log", say=log
    )

    def probe() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/health")
            if conn.getresponse().status != 200:
                raise RuntimeError("not healthy")
        finally:
            conn.close()

    server.wait_ready(probe)
    return server, port


# -- online lookups ---------------------------------------------------------------------------


class OnlineCase:
    """The calls of one shape (entities per call) against both systems, prebuilt where the
    variant says so, timed in interleaved rounds."""

    def __init__(self, entities: int, requests: list[list[int]], warmup: list[list[int]]):
        self.entities = entities
        self.requests = requests
        self.warmup = warmup


def online_variants(
    address: str, port: int, view: str, case: OnlineCase
) -> tuple[dict[str, tuple[Callable[[int], Any], Callable[[int], Any]]], Callable[[], None]]:
    """name -> (timed call of request i, warm-up call i); and a closer."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from modelyard._gen.features.v1 import features_pb2 as pb
    from modelyard.convert.features import append_python_values
    from modelyard.features import FeatureStoreClient

    refs = [f"{view}:{f}" for f in FEATURE_NAMES]
    client = FeatureStoreClient(address)
    stub = client._stub
    channel = client._t.channel
    health = health_pb2_grpc.HealthStub(channel)
    check = health_pb2.HealthCheckRequest(service="")

    def prebuilt(ids: list[int]) -> Any:
        # The request the SDK sends (typed arrays back), built before the clock starts.
        request = pb.GetOnlineFeaturesRequest(features=refs, typed_arrays=True)
        append_python_values(request.entities.add(name=JOIN_KEY).values, ids)
        return request

    rows = [[{JOIN_KEY: i} for i in ids] for ids in case.requests]
    warm_rows = [[{JOIN_KEY: i} for i in ids] for ids in case.warmup]
    stub_requests = [prebuilt(ids) for ids in case.requests]
    warm_requests = [prebuilt(ids) for ids in case.warmup]

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def body(ids: list[int]) -> bytes:
        return json.dumps({"features": refs, "entities": {JOIN_KEY: ids}}).encode()

    bodies = [body(ids) for ids in case.requests]
    warm_bodies = [body(ids) for ids in case.warmup]

    def post(data: bytes) -> bytes:
        conn.request("POST", "/get-online-features", body=data, headers=JSON_HEADERS)
        reply = conn.getresponse()
        payload = reply.read()
        if reply.status != 200:
            raise RuntimeError(f"feast {reply.status}: {payload[:300]!r}")
        return payload

    def feast_http(ids: list[int]) -> Any:
        return json.loads(post(body(ids)))

    def my_client(r: list[dict[str, int]]) -> Any:
        return client.get_online_features(refs, r).to_dict()

    def my_stub(request: Any) -> Any:
        return stub.GetOnlineFeatures(request, timeout=30)

    variants = {
        "modelyard_client": (
            lambda i: my_client(rows[i]),
            lambda i: my_client(warm_rows[i]),
        ),
        "modelyard_stub": (
            lambda i: my_stub(stub_requests[i]),
            lambda i: my_stub(warm_requests[i]),
        ),
        "grpc_floor": (
            lambda i: health.Check(check, timeout=30),
            lambda i: health.Check(check, timeout=30),
        ),
        "feast_http": (
            lambda i: feast_http(case.requests[i]),
            lambda i: feast_http(case.warmup[i]),
        ),
        "feast_http_raw": (
            lambda i: post(bodies[i]),
            lambda i: post(warm_bodies[i]),
        ),
    }

    def close() -> None:
        conn.close()
        client.close()

    return variants, close


def time_online(
    variants: dict[str, tuple[Callable[[int], Any], Callable[[int], Any]]],
    case: OnlineCase,
    rounds: int,
) -> dict[str, list[int]]:
    for name, (_, warm) in variants.items():
        for i in range(len(case.warmup)):
            warm(i)
        log(f"    warmed {name} ({len(case.warmup)} calls)")
    latencies: dict[str, list[int]] = {name: [] for name in variants}
    n = len(case.requests)
    bounds = [n * r // rounds for r in range(rounds + 1)]
    clock = time.perf_counter_ns
    for r in range(rounds):
        # Alternate the order, so neither system always runs right after the other.
        order = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in order:
            call = variants[name][0]
            out = latencies[name]
            # The prebuilt requests and data stay out of collections during the timed calls
            # (they are walked otherwise, a pause that lands on whichever system is measured).
            gc.collect()
            gc.freeze()
            for i in range(bounds[r], bounds[r + 1]):
                t0 = clock()
                call(i)
                out.append(clock() - t0)
            gc.unfreeze()
        log(f"    round {r + 1}/{rounds} done")
    return latencies


def expected_latest(data: Dataset, ids: set[int]) -> dict[int, dict[str, Any]]:
    """The latest row per driver (event time, then created), from the Parquet file."""
    table = pq.read_table(
        data.features,
        filters=[(JOIN_KEY, "in", sorted(ids))],
        columns=[JOIN_KEY, "event_timestamp", "created", *FEATURE_NAMES],
    )
    df = table.to_pandas().sort_values([JOIN_KEY, "event_timestamp", "created"])
    latest = df.groupby(JOIN_KEY, sort=False).tail(1)
    return {int(r[JOIN_KEY]): r for r in latest.to_dict("records")}


def same(a: Any, b: Any, dtype: str) -> bool:
    missing_a = a is None or (isinstance(a, float) and math.isnan(a))
    missing_b = b is None or (isinstance(b, float) and math.isnan(b))
    if missing_a or missing_b:
        return missing_a and missing_b
    if dtype == "FLOAT32":
        return np.float32(a) == np.float32(b)
    return float(a) == float(b)


def check_online(
    address: str, port: int, view: str, data: Dataset, batches: list[list[int]]
) -> dict[str, Any]:
    """Both systems' values for the same lookups, and the latest row from the Parquet file."""
    from modelyard.features import FeatureStoreClient

    refs = [f"{view}:{f}" for f in FEATURE_NAMES]
    dtypes = dict(FEATURES)
    expected = expected_latest(data, {i for b in batches for i in b})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    counts = {"values": 0, "modelyard_vs_feast": 0, "modelyard_vs_parquet": 0}
    counts |= {"feast_vs_parquet": 0, "modelyard_outside_max_age": 0, "feast_not_present": 0}
    examples: list[dict[str, Any]] = []
    with FeatureStoreClient(address) as client:
        for ids in batches:
            response = client.get_online_features(refs, [{JOIN_KEY: i} for i in ids])
            mine, statuses = response.to_dict(), response.statuses()
            body = json.dumps({"features": refs, "entities": {JOIN_KEY: ids}})
            conn.request("POST", "/get-online-features", body=body, headers=JSON_HEADERS)
            raw = conn.getresponse()
            payload = raw.read()
            if raw.status != 200:
                raise RuntimeError(f"feast {raw.status}: {payload[:300]!r}")
            reply = json.loads(payload)
            names = reply["metadata"]["feature_names"]
            theirs = {n: r["values"] for n, r in zip(names, reply["results"], strict=True)}
            feast_status = {n: r["statuses"] for n, r in zip(names, reply["results"], strict=True)}
            for f in FEATURE_NAMES:
                for j, driver in enumerate(ids):
                    counts["values"] += 1
                    a, b = mine[f][j], theirs[f][j]
                    truth = expected.get(driver, {}).get(f)
                    counts["modelyard_outside_max_age"] += statuses[f][j] == "OUTSIDE_MAX_AGE"
                    counts["feast_not_present"] += feast_status[f][j] != "PRESENT"
                    bad = {
                        "modelyard_vs_feast": not same(a, b, dtypes[f]),
                        "modelyard_vs_parquet": not same(a, truth, dtypes[f]),
                        "feast_vs_parquet": not same(b, truth, dtypes[f]),
                    }
                    for key, wrong in bad.items():
                        counts[key] += wrong
                    if any(bad.values()) and len(examples) < 5:
                        examples.append(
                            {"driver_id": driver, "feature": f, "modelyard": a, "feast": b}
                            | {"parquet": None if truth is None else float(truth)}
                        )
    conn.close()
    return counts | {
        "lookups": len(batches),
        "entities_per_lookup": len(batches[0]),
        "examples": examples,
        "note": "values compared; Feast's online read ignores the view TTL (always PRESENT), "
        "Modelyard returns the value and marks it OUTSIDE_MAX_AGE",
    }


def online_phase(
    store: str,
    args: argparse.Namespace,
    work: Path,
    full: Dataset,
    feast_version: str | None,
) -> dict[str, Any]:
    view = view_name(full, full)
    token = secrets.token_hex(4)
    if store == "sqlite":
        my_uri = f"sqlite:///{work / 'modelyard-online.db'}"
        feast_online = {"type": "sqlite", "path": str(work / "feast-online.db")}
    else:
        my_uri = f"{args.redis_url}?prefix=mybench-{token}"
        host_port = args.redis_url.split("://", 1)[1].split("/", 1)[0]
        db = args.redis_url.rsplit("/", 1)[1] if args.redis_url.count("/") >= 3 else "0"
        feast_online = {"type": "redis", "connection_string": f"{host_port},db={db or 0}"}
    result: dict[str, Any] = {"modelyard_online_store": my_uri}
    start = full.start - timedelta(days=1)
    end = full.anchor + timedelta(hours=1)
    server, address = modelyard_server(my_uri, work, store)
    feast_srv = None
    project = f"mybench_{store}_{token}"
    repo = None
    try:
        from modelyard.features import FeatureStoreClient

        with FeatureStoreClient(address) as client:
            client.apply(modelyard_definitions([full], full))
            t0 = time.perf_counter()
            (done,) = client.materialize(start, end, [view])
            result["modelyard_materialize_s"] = round(time.perf_counter() - t0, 2)
            result["materialized_rows"] = done.rows
            log(
                f"  modelyard materialized {done.rows} rows in {result['modelyard_materialize_s']}s"
            )
        if feast_version:
            spec = feast_spec([full], full, [view], start, end)
            repo = feast_repo(work, store, project, feast_online, spec)
            result["feast_online_store"] = feast_online
            out, why, _ = run_feast(
                ["setup", "--repo", str(repo), "--spec", str(repo / "spec.json")],
                work / f"feast-{store}.log",
                timeout=3600,
            )
            if out is None:
                raise RuntimeError(f"feast setup failed: {why}")
            result["feast_materialize_s"] = out["materialize_s"][view]
            log(f"  feast materialized in {result['feast_materialize_s']}s")
            feast_srv, feast_port = feast_server(repo, work, store)
        rng = np.random.default_rng([SEED, 7])
        for entities in (1, 100):
            n = args.iterations
            ids = (rng.integers(0, full.drivers, (n + args.warmup, entities)) + ID_BASE).tolist()
            case = OnlineCase(entities, ids[:n], ids[n:])
            label = f"{entities}x{len(FEATURES)}"
            log(f"  online {store} {label}: {n} timed calls per variant, {args.rounds} rounds")
            variants, close = online_variants(address, feast_port if feast_srv else 0, view, case)
            if not feast_srv:
                variants = {k: v for k, v in variants.items() if not k.startswith("feast")}
            try:
                latencies = time_online(variants, case, args.rounds)
            finally:
                close()
            stats = {name: latency_stats(ns) for name, ns in latencies.items()}
            if feast_srv:
                my, fe = stats["modelyard_client"], stats["feast_http"]
                stats["x_feast"] = {
                    "p50": ratio(fe["p50_ms"], my["p50_ms"]),
                    "p99": ratio(fe["p99_ms"], my["p99_ms"]),
                    "calls_per_s": ratio(my["calls_per_s"], fe["calls_per_s"]),
                    "stub_vs_http_raw_p50": ratio(
                        stats["feast_http_raw"]["p50_ms"], stats["modelyard_stub"]["p50_ms"]
                    ),
                }
            result[label] = stats
            log(
                f"  {label}: "
                + ", ".join(
                    f"{k} p50 {v['p50_ms']} p99 {v['p99_ms']}"
                    for k, v in stats.items()
                    if "p50_ms" in v
                )
            )
        if feast_srv:
            batches = (rng.integers(0, full.drivers, (args.check_lookups, 100)) + ID_BASE).tolist()
            result["check"] = check_online(address, feast_port, view, full, batches)
            summary = {k: v for k, v in result["check"].items() if isinstance(v, int)}
            log(f"  online check: {json.dumps(summary)}")
    finally:
        if feast_srv:
            feast_srv.stop()
        server.stop()
        if store == "redis":
            result["redis_cleanup"] = redis_cleanup(
                args.redis_url, f"mybench-{token}", project, repo, work
            )
    return result


def redis_cleanup(url: str, prefix: str, project: str, repo: Path | None, work: Path) -> dict:
    import redis

    r = redis.Redis.from_url(url)
    removed = 0
    for key in r.scan_iter(match=f"{prefix}:*", count=1000):
        removed += r.delete(key)
    out: dict[str, Any] = {"modelyard_keys_removed": removed}
    if repo is not None:
        done, why, _ = run_feast(["teardown", "--repo", str(repo)], work / "feast-redis.log", 600)
        out["feast_teardown"] = done is not None or why
        # Feast's keys end with the project name; remove anything teardown left.
        left = 0
        for key in r.scan_iter(match=f"*{project}", count=1000):
            left += r.delete(key)
        out["feast_keys_left_after_teardown"] = left
    r.close()
    return out


def feast_spec(
    datasets: Sequence[Dataset], full: Dataset, views: list[str], start: datetime, end: datetime
) -> dict[str, Any]:
    return {
        "entity": ENTITY,
        "join_key": JOIN_KEY,
        "ttl_seconds": int(TTL.total_seconds()),
        "features": FEATURES,
        "views": [{"name": view_name(d, full), "path": str(d.features)} for d in datasets],
        "materialize_views": views,
        "materialize_start": start.isoformat(),
        "materialize_end": end.isoformat(),
    }


# -- offline retrieval ------------------------------------------------------------------------


def modelyard_historical(
    address: str, data: Dataset, view: str, repeats: int, server_pgid: int
) -> tuple[dict[str, Any], pd.DataFrame]:
    from modelyard.features import FeatureStoreClient

    entities = pq.read_table(data.entities)
    refs = [f"{view}:{f}" for f in FEATURE_NAMES]
    times = []
    df = pd.DataFrame()
    with FeatureStoreClient(address) as client, PeakRss(server_pgid) as rss:
        for i in range(repeats):
            del df
            gc.collect()
            t0 = time.perf_counter()
            df = client.get_historical_features(entities, features=refs).to_df()
            times.append(time.perf_counter() - t0)
            log(f"  modelyard {data.size}: {times[-1]:.2f}s ({i + 1}/{repeats})")
    seconds = statistics.median(times)
    return {
        "seconds": round(seconds, 3),
        "runs_s": [round(t, 3) for t in times],
        "entity_rows": data.entity_rows,
        "result_rows": len(df),
        "rows_per_s": round(data.entity_rows / seconds, 1),
        "server_peak_rss_gb": round(rss.peak / 1024**3, 2),
    }, df


def feast_historical(
    repo: Path, data: Dataset, view: str, work: Path, args: argparse.Namespace
) -> tuple[dict[str, Any], Path | None]:
    output = work / f"feast-historical-{data.feature_rows}.parquet"
    out, why, peak = run_feast(
        [
            "historical",
            "--repo",
            str(repo),
            "--entities",
            str(data.entities),
            "--view",
            view,
            "--features",
            ",".join(FEATURE_NAMES),
            "--output",
            str(output),
        ],
        work / "feast-historical.log",
        timeout=args.feast_timeout,
        rss_limit=int(args.feast_rss_gb * 1024**3),
    )
    if out is None:
        log(f"  feast {data.size}: failed ({why.splitlines()[0]})")
        return {"failed": why, "peak_rss_gb": round(peak / 1024**3, 2)}, None
    out["peak_rss_gb"] = round(peak / 1024**3, 2)
    log(f"  feast {data.size}: {out['seconds']}s")
    return out, output


def brute_force(data: Dataset, rows: pd.DataFrame) -> pd.DataFrame:
    """The point-in-time answer for a few entity rows, by scanning their drivers' rows."""
    table = pq.read_table(
        data.features, filters=[(JOIN_KEY, "in", sorted(set(rows[JOIN_KEY].tolist())))]
    )
    features = table.to_pandas().sort_values(["event_timestamp", "created"])
    by_driver = dict(list(features.groupby(JOIN_KEY)))
    out = []
    for row in rows.itertuples():
        candidates = by_driver.get(getattr(row, JOIN_KEY))
        answer = {f: None for f in FEATURE_NAMES}
        if candidates is not None:
            ts = row.event_timestamp
            hit = candidates[(candidates.event_timestamp <= ts)]
            if len(hit) and hit.event_timestamp.iloc[-1] >= ts - TTL:
                answer = {f: hit[f].iloc[-1] for f in FEATURE_NAMES}
        out.append({"row_id": row.row_id, **answer})
    return pd.DataFrame(out)


def check_offline(data: Dataset, mine: pd.DataFrame, feast_path: Path) -> dict[str, Any]:
    theirs = pd.read_parquet(feast_path)
    dtypes = dict(FEATURES)
    result: dict[str, Any] = {
        "entity_rows": data.entity_rows,
        "modelyard_rows": len(mine),
        "feast_rows": len(theirs),
        "feast_duplicate_row_ids": int(theirs["row_id"].duplicated().sum()),
    }
    theirs = theirs.drop_duplicates("row_id")
    merged = mine.merge(
        theirs, on="row_id", how="outer", suffixes=("", "__feast"), indicator="side"
    )
    only_mine = merged[merged["side"] == "left_only"]
    result["rows_missing_in_feast"] = len(only_mine)
    result["rows_missing_in_modelyard"] = int((merged["side"] == "right_only").sum())
    both = merged[merged["side"] == "both"]
    bad = np.zeros(len(both), dtype=bool)
    per_feature = {}
    for f in FEATURE_NAMES:
        a = both[f].astype("float64").to_numpy()
        b = both[f"{f}__feast"].astype("float64").to_numpy()
        if dtypes[f] == "FLOAT32":
            a, b = a.astype(np.float32), b.astype(np.float32)
        differ = ~((a == b) | (np.isnan(a) & np.isnan(b)))
        per_feature[f] = int(differ.sum())
        bad |= differ
    result["rows_compared"] = len(both)
    result["rows_with_value_mismatch"] = int(bad.sum())
    result["mismatches_per_feature"] = per_feature
    # Who is right: brute force for a sample of the rows that differ or are missing.
    suspects = pd.concat([both[bad].head(300), only_mine.head(300)])
    if len(suspects):
        truth = brute_force(data, suspects[[JOIN_KEY, "event_timestamp", "row_id"]])
        truth = truth.set_index("row_id")
        verdict = {"modelyard_right": 0, "feast_right": 0, "neither": 0}
        missing_verdict = {"truth_all_null": 0, "truth_has_values": 0}
        examples: list[dict[str, Any]] = []
        for row in suspects.itertuples(index=False):
            rid = row.row_id
            expected = truth.loc[rid]
            my_ok = all(same(getattr(row, f), expected[f], dtypes[f]) for f in FEATURE_NAMES)
            if row.side == "left_only":
                key = (
                    "truth_all_null"
                    if all(same(expected[f], None, dtypes[f]) for f in FEATURE_NAMES)
                    else "truth_has_values"
                )
                missing_verdict[key] += 1
            else:
                fe_ok = all(
                    same(getattr(row, f"{f}__feast"), expected[f], dtypes[f]) for f in FEATURE_NAMES
                )
                verdict[
                    "modelyard_right"
                    if my_ok and not fe_ok
                    else "feast_right"
                    if fe_ok and not my_ok
                    else "neither"
                ] += 1
            if len(examples) < 3:
                examples.append(
                    {
                        "row_id": int(rid),
                        "driver_id": int(getattr(row, JOIN_KEY)),
                        "event_timestamp": str(row.event_timestamp),
                        "in_feast": row.side == "both",
                        "modelyard_conv_rate": _num(row.conv_rate),
                        "feast_conv_rate": _num(getattr(row, "conv_rate__feast", None)),
                        "expected_conv_rate": _num(expected["conv_rate"]),
                    }
                )
        result["brute_force_sample"] = {
            "mismatching_rows_checked": int(min(bad.sum(), 300)),
            "mismatch_verdict": verdict,
            "missing_in_feast_checked": int(min(len(only_mine), 300)),
            "missing_in_feast_verdict": missing_verdict,
            "modelyard_wrong_on_missing": sum(
                not all(
                    same(getattr(r, f), truth.loc[r.row_id][f], dtypes[f]) for f in FEATURE_NAMES
                )
                for r in only_mine.head(300).itertuples(index=False)
            ),
            "examples": examples,
        }
    return result


def _num(value: Any) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return float(value)


def offline_phase(
    args: argparse.Namespace, work: Path, full: Dataset, feast_version: str | None
) -> dict[str, Any]:
    def reduced(d: int) -> Dataset:
        rows = full.feature_rows // d
        drivers = max(1, rows // args.rows_per_driver)
        return Dataset(rows, full.entity_rows // d, drivers, full.anchor)

    # Feast is tried at these sizes in order; the first it finishes is the side-by-side size.
    tries = [full if d == 1 else reduced(d) for d in args.feast_sizes] if feast_version else []
    datasets = [full, *[d for d in tries if d is not full]]
    for data in datasets:
        data.ensure()
    result: dict[str, Any] = {"sizes": {}}
    server, address = modelyard_server(f"sqlite:///{work / 'offline-online.db'}", work, "offline")
    try:
        from modelyard.features import FeatureStoreClient

        with FeatureStoreClient(address) as client:
            client.apply(modelyard_definitions(datasets, full))
        repo = None
        if feast_version:
            repo = feast_repo(
                work,
                "offline",
                f"mybench_offline_{secrets.token_hex(4)}",
                {"type": "sqlite", "path": str(work / "feast-offline-online.db")},
                feast_spec(datasets, full, [], full.start, full.anchor),
            )
            done, why, _ = run_feast(
                ["setup", "--repo", str(repo), "--spec", str(repo / "spec.json")],
                work / "feast-offline.log",
                600,
            )
            if done is None:
                raise RuntimeError(f"feast apply failed: {why}")
        side_by_side = None
        for data in tries:
            assert repo is not None
            view = view_name(data, full)
            entry = result["sizes"].setdefault(data.size, {"data": data.describe()})
            log(
                f"offline {data.size}: feast (cap {args.feast_rss_gb:g} GiB, "
                f"{args.feast_timeout:.0f}s)"
            )
            fe, path = feast_historical(repo, data, view, work, args)
            entry["feast"] = fe
            if path is None:
                continue
            log(f"offline {data.size}: modelyard")
            my, df = modelyard_historical(
                address, data, view, args.offline_repeats, server.proc.pid
            )
            entry["modelyard"] = my
            entry["x_feast_rows_per_s"] = ratio(my["rows_per_s"], fe["rows_per_s"])
            entry["check"] = check_offline(data, df, path)
            summary = {k: v for k, v in entry["check"].items() if isinstance(v, int)}
            log(f"  check: {json.dumps(summary)}")
            path.unlink()
            side_by_side = data.size
            break
        entry = result["sizes"].setdefault(full.size, {"data": full.describe()})
        if "modelyard" not in entry:
            log(f"offline {full.size}: modelyard")
            entry["modelyard"] = modelyard_historical(
                address, full, view_name(full, full), args.offline_repeats, server.proc.pid
            )[0]
        result["side_by_side_size"] = side_by_side
        result["full_size"] = full.size
        if side_by_side and side_by_side != full.size:
            result["note"] = (
                f"Feast's file offline store did not manage {full.size} (see "
                f"sizes[{full.size!r}].feast.failed); the ratio is measured at {side_by_side} "
                f"with both systems, and Modelyard alone ran at {full.size}."
            )
    finally:
        server.stop()
    return result


# -- targets ----------------------------------------------------------------------------------


def targets(online: dict[str, Any], offline: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    redis = online.get("redis", {}).get("1x10")
    if redis:
        p99 = redis["modelyard_client"]["p99_ms"]
        out["online_p99_under_2ms_1x10_redis"] = {
            "p99_ms": p99,
            "stub_p99_ms": redis["modelyard_stub"]["p99_ms"],
            "holds": p99 < TARGET_P99_MS,
        }
    five: dict[str, Any] = {}
    for store, cases in online.items():
        for label in ("1x10", "100x10"):
            x = cases.get(label, {}).get("x_feast")
            if x:
                five[f"online_{store}_{label}"] = {
                    "x_p50": x["p50"],
                    "x_p99": x["p99"],
                    "holds": min(x["p50"], x["p99"]) >= TARGET_X,
                }
    size = offline.get("side_by_side_size")
    if size:
        x = offline["sizes"][size]["x_feast_rows_per_s"]
        five[f"offline_{size.replace(' ', '')}"] = {"x_rows_per_s": x, "holds": x >= TARGET_X}
    out["at_least_5x_feast"] = five
    out["all_hold"] = all(
        v["holds"] for v in [*out.values(), *five.values()] if isinstance(v, dict) and "holds" in v
    )
    return out


# -- main -------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Modelyard vs Feast feature store benchmark")
    p.add_argument(
        "--quick",
        action="store_true",
        help="100k feature rows, 10k entity rows, 500 calls per variant",
    )
    p.add_argument("--feature-rows", type=int, default=10_000_000)
    p.add_argument("--entity-rows", type=int, default=1_000_000)
    p.add_argument(
        "--rows-per-driver",
        type=int,
        default=100,
        help="drivers = feature rows / this (100k drivers at full size)",
    )
    p.add_argument("--iterations", type=int, default=3000, help="timed calls per variant/case")
    p.add_argument("--warmup", type=int, default=200, help="discarded calls per variant/case")
    p.add_argument("--rounds", type=int, default=6, help="interleaved rounds per case")
    p.add_argument(
        "--check-lookups",
        type=int,
        default=100,
        help="100-entity lookups compared between the systems, per store",
    )
    p.add_argument("--stores", default="sqlite,redis")
    p.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    p.add_argument(
        "--offline-repeats",
        type=int,
        default=2,
        help="Modelyard retrievals per size (median reported)",
    )
    p.add_argument(
        "--feast-sizes",
        default="1,3,10",
        help="divisors of the full size to try Feast's retrieval at, in order; the "
        "first that finishes is the side-by-side size",
    )
    p.add_argument(
        "--feast-timeout",
        type=float,
        default=900.0,
        help="seconds before a Feast retrieval is given up",
    )
    p.add_argument(
        "--feast-rss-gb",
        type=float,
        default=12.0,
        help="memory cap (GiB) for a Feast retrieval process",
    )
    p.add_argument("--no-feast", action="store_true", help="Modelyard only")
    p.add_argument("--skip-online", action="store_true")
    p.add_argument("--skip-offline", action="store_true")
    p.add_argument("--output", type=Path, help="also write the JSON here")
    args = p.parse_args()
    if args.quick:  # smaller defaults; flags given explicitly still win
        quick = {"feature_rows": 100_000, "entity_rows": 10_000, "iterations": 500}
        quick |= {"warmup": 100, "rounds": 2, "check_lookups": 20}
        p.set_defaults(**quick)
        args = p.parse_args()
    args.feast_sizes = [int(d) for d in args.feast_sizes.split(",")]
    args.stores = [s for s in args.stores.split(",") if s]
    return args


def main() -> None:
    args = parse_args()
    start_load = load_average()
    log(f"load at start: {start_load['uptime']}")
    import duckdb
    import grpc

    import modelyard

    anchor = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    work = WORK / f"features-{time.strftime('%Y%m%d-%H%M%S')}"
    work.mkdir(parents=True, exist_ok=True)
    full = Dataset(
        args.feature_rows,
        args.entity_rows,
        max(1, args.feature_rows // args.rows_per_driver),
        anchor,
    ).ensure()
    feast_version = None if args.no_feast else ensure_feast()
    redis_version = None
    with suppress(Exception):
        import redis

        redis_version = redis.Redis.from_url(args.redis_url).info("server")["redis_version"]
    report: dict[str, Any] = {
        "benchmark": "features",
        "command": " ".join(["python", "bench/features.py", *sys.argv[1:]]),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "mem_available_gb_at_start": mem_available_gb(),
            "load_start": start_load,
        },
        "versions": {
            "modelyard": modelyard.__version__,
            "feast": feast_version,
            "feast_spec": FEAST_SPEC,
            "redis_server": redis_version,
            "duckdb": duckdb.__version__,
            "grpcio": grpc.__version__,
        },
        "modelyard_source_at_start": source_state(),
        "data": full.describe(),
        "setup": {
            "modelyard": "`modelyard serve features --no-auth` (one process, gRPC, loopback); "
            "client: FeatureStoreClient in this process",
            "feast": "`feast serve --workers 1 --max-requests 0 --no-access-log` (gunicorn + "
            "uvicorn worker, HTTP/JSON, loopback); client: http.client keep-alive in this "
            "process. Feast 0.67 also has `feast listen` (a gRPC server meant for ingestion, "
            "with a GetOnlineFeatures method); `feast serve -t grpc` is refused by the Python "
            "server. Not measured: the issue names `feast serve`.",
            "online": f"{args.iterations} timed calls per variant and case after "
            f"{args.warmup} warm-up calls, {args.rounds} interleaved rounds",
            "ttl": str(TTL),
        },
    }
    online: dict[str, Any] = {}
    offline: dict[str, Any] = {}
    try:
        if not args.skip_online:
            for store in args.stores:
                log(f"online phase: {store}")
                before = os.getloadavg()
                for attempt in (1, 2):
                    try:
                        online[store] = online_phase(store, args, work, full, feast_version)
                        break
                    except (OSError, http.client.HTTPException) as exc:
                        # A server that goes away mid-phase (on a shared machine, something
                        # else may stop it) costs one repeat of the phase, recorded.
                        if attempt == 2:
                            raise
                        log(f"online {store}: {exc!r}; a server went away, repeating the phase")
                        report.setdefault("interruptions", []).append(
                            f"online {store} attempt 1: {exc!r}"
                        )
                online[store]["load_1m_start_end"] = [before[0], os.getloadavg()[0]]
        if not args.skip_offline:
            log("offline phase")
            before = os.getloadavg()
            offline = offline_phase(args, work, full, feast_version)
            offline["load_1m_start_end"] = [before[0], os.getloadavg()[0]]
    finally:
        report["online"] = online
        report["offline"] = offline
        report["targets"] = targets(online, offline)
        report["machine"]["load_end"] = load_average()
        log(f"load at end: {report['machine']['load_end']['uptime']}")
        text = json.dumps(report, indent=2, default=str)
        (work / "result.json").write_text(text + "\n")
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(text + "\n")
        for leftover in work.glob("*.db"):
            leftover.unlink()
        print(text, flush=True)


if __name__ == "__main__":
    main()
