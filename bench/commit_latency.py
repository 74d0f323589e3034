#!/usr/bin/env python3
"""What does a durable PostgreSQL commit cost a server whose calls come one at a time?

    . .venv/bin/activate
    python bench/commit_latency.py --output bench/results/commit_latency.json

A sequential `log_metric` is one synchronously committed write. In-process, called back to
back, that write is fast; inside a server a pause always comes between two of them, while the
answer travels and the next call comes in (a bare gRPC round trip, 0.2-0.6 ms here). This
measures the write's latency after such a pause, in one process on one connection, so that no
gRPC, no Modelyard server and no other process is involved:

  select_1      `SELECT 1`: the round trip to the PostgreSQL backend alone
  insert_async  a one-row INSERT in autocommit, `synchronous_commit = off`: no WAL flush waited on
  insert        the same INSERT with `synchronous_commit = on` (PostgreSQL's default, and what
                both Modelyard and MLflow run): the commit waits for its WAL flush
  store_write   the tracking store's own hot path (`SqlTrackingStore.log_metric_rows`, one value
                of one run), on a freshly migrated database

each after a pause of 0 (back to back), 0.2, 0.5 and 2 ms. The pause spins (the measuring CPU
never idles), so any latency it adds is the backend's or the disk's. Kinds and pauses are
interleaved round by round. One JSON object on stdout: p50 and p95 per kind and pause, with the
rounds' medians.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchkit import emit, log, machine, paused_latencies_ms, percentile
from compare_tracking import PG_DEFAULT, Postgres, source_state

PAUSES_MS = (0.0, 0.2, 0.5, 2.0)
KINDS = ("select_1", "insert_async", "insert", "store_write")


def timed(call: Callable[[int], object], calls: int, pause_s: float) -> dict[str, float]:
    """p50/p95 ms of `calls` calls, each after spinning `pause_s`."""
    ms = paused_latencies_ms(call, calls, pause_s)
    return {"p50_ms": round(percentile(ms, 50), 3), "p95_ms": round(percentile(ms, 95), 3)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--pg", default=PG_DEFAULT, help="PostgreSQL base URL (database test exists)")
    p.add_argument("--calls", type=int, default=2000, help="timed calls per kind, pause and round")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--output", type=Path)
    args = p.parse_args()

    import psycopg

    from modelyard.services.common.db import Database
    from modelyard.services.tracking.app import migrate
    from modelyard.services.tracking.store.sql import SqlTrackingStore

    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    pg = Postgres(args.pg)
    rounds: list[dict[str, dict[str, dict[str, float]]]] = []
    with (
        pg.database(f"bench_commit_latency_{int(time.time())}") as url,
        tempfile.TemporaryDirectory(prefix="commit-latency-") as tmp,
    ):
        db = Database(url)
        migrate(db)
        store = SqlTrackingStore(db, Path(tmp).as_uri())
        experiment = store.create_experiment("commit-latency", None, {})
        run = store.create_run(experiment, "bench", int(time.time() * 1000), {}, "r", None)
        run_id = run.info.run_id
        probe = psycopg.connect(url, autocommit=True)
        probe.execute("CREATE TABLE commit_probe (i int, v float8)")
        unflushed = psycopg.connect(url, autocommit=True)
        unflushed.execute("SET synchronous_commit = off")
        insert = "INSERT INTO commit_probe VALUES (%s, %s)"
        calls: dict[str, Callable[[int], object]] = {  # what a call returns is dropped
            "select_1": lambda i: probe.execute("SELECT 1").fetchone(),
            "insert_async": lambda i: unflushed.execute(insert, (i, i * 0.5)),
            "insert": lambda i: probe.execute(insert, (i, i * 0.5)),
            "store_write": lambda i: store.log_metric_rows(
                run_id, [("m", float(i), 1_700_000_000_000 + i, i)]
            ),
        }
        try:
            for repeat in range(args.repeats):
                found: dict[str, dict[str, dict[str, float]]] = {k: {} for k in KINDS}
                for pause in PAUSES_MS:
                    for kind in KINDS:
                        result = timed(calls[kind], args.calls, pause / 1000)
                        found[kind][str(pause)] = result
                        log(f"round {repeat + 1} pause {pause} ms {kind}: {result}")
                rounds.append(found)
        finally:
            probe.close()
            unflushed.close()
            db.dispose()

    medians = {
        kind: {
            str(pause): {
                stat: statistics.median(r[kind][str(pause)][stat] for r in rounds)
                for stat in ("p50_ms", "p95_ms")
            }
            for pause in PAUSES_MS
        }
        for kind in KINDS
    }
    emit(
        {
            "benchmark": "commit_latency",
            "started": started,
            "machine": machine(),
            "postgres": pg.version(),
            "source": source_state(),
            "calls": args.calls,
            "repeats": args.repeats,
            "pauses_ms": list(PAUSES_MS),
            "rounds": rounds,
            "medians": medians,
        },
        args.output,
    )


if __name__ == "__main__":
    main()
