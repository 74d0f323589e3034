#!/usr/bin/env python3
"""What thread hand-offs cost a small tracking call: grpc's I/O engine and pinning the server.

    . .venv/bin/activate
    python bench/tracking_placement.py --repeats 3 --output bench/results/tracking_placement.json

Every configuration starts `modelyard serve tracking` on a fresh SQLite store and runs
bench/tracking.py against it (2000 single `log_metric` calls, 8 threads x 500 calls, the bare
gRPC floor both ways; the batch and search phases cut to a token size, since neither depends on
what changes here). Configurations run interleaved, `--repeats` times:

  eventengine          grpc's default engine (EventEngine) in client and server, nothing pinned
  polling_client_only  Modelyard's default (the polling engine) in the client only
  polling              the polling engine in both: Modelyard's default
  eventengine_pinned   EventEngine in both, the server pinned to --server-cpus
  polling_pinned       the polling engine in both, the server pinned: what compare_tracking runs

"EventEngine" is `GRPC_EXPERIMENTS=` (empty: grpc's defaults), which Modelyard leaves alone
(modelyard/_grpc_engine.py). The client is never pinned: it stands for training code. One JSON
object on stdout (every run, and each configuration's medians); progress on stderr.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchkit import emit, log, machine
from compare_tracking import measure_modelyard, quiet_env, source_state

# name -> (server on EventEngine, client on EventEngine, server pinned)
CONFIGS = {
    "eventengine": (True, True, False),
    "polling_client_only": (True, False, False),
    "polling": (False, False, False),
    "eventengine_pinned": (True, True, True),
    "polling_pinned": (False, False, True),
}
BENCH_ARGS = [
    *("--single-calls", "2000", "--runs", "20"),
    *("--batches", "2", "--search-iterations", "2"),
]


def engine_env(eventengine: bool) -> dict[str, str]:
    env = quiet_env()
    env.pop("GRPC_EXPERIMENTS", None)
    if eventengine:
        env["GRPC_EXPERIMENTS"] = ""
    return env


def measure(name: str, cpus: str, work: Path) -> dict[str, Any]:
    server_ee, client_ee, pinned = CONFIGS[name]
    run_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=work))
    result = measure_modelyard(
        "sqlite",
        f"sqlite:///{run_dir / 'modelyard.db'}",
        run_dir,
        BENCH_ARGS,
        600,
        "normal",
        cpus if pinned else None,
        server_env=engine_env(server_ee),
        client_env=engine_env(client_ee),
    )
    return {
        "config": name,
        "single_calls_per_s": result["single_log_metric"]["calls_per_s"],
        "single_p50_ms": result["single_log_metric"]["p50_ms"],
        "concurrent_calls_per_s": result["concurrent"]["calls_per_s"],
        "floor_p50_ms": result["grpc_floor"]["p50_ms"],
        "floor_concurrent_calls_per_s": result["grpc_floor_concurrent"]["calls_per_s"],
        "verified": result["single_log_metric"]["verified"] and result["concurrent"]["verified"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--server-cpus", default="0", help="CPUs of the pinned configurations")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset")
    p.add_argument("--output", type=Path, help="also write the JSON here")
    args = p.parse_args()
    names = [n for n in args.configs.split(",") if n]
    unknown = set(names) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"unknown configurations {sorted(unknown)}; choose from {list(CONFIGS)}")

    work = Path(tempfile.mkdtemp(prefix="placement-"))
    runs = []
    for repeat in range(1, args.repeats + 1):
        for name in names:
            log(f"[placement] {name}, repeat {repeat}/{args.repeats}")
            runs.append({**measure(name, args.server_cpus, work), "repeat": repeat})
    figures = [k for k in runs[0] if k not in ("config", "repeat", "verified")]
    medians = {
        name: {
            k: round(statistics.median(r[k] for r in runs if r["config"] == name), 3)
            for k in figures
        }
        for name in names
    }
    out = {
        "benchmark": "tracking: grpc I/O engine and server CPU pinning",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "modelyard_source": source_state(),
        "server_cpus": args.server_cpus,
        "all_verified": all(r["verified"] for r in runs),
        "medians": medians,
        "runs": runs,
    }
    emit(out, args.output)


if __name__ == "__main__":
    main()
