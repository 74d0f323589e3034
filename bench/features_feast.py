#!/usr/bin/env python3
"""Feast's side of bench/features.py; runs only under the Feast venv (bench/.venvs/feast).

    bench/.venvs/feast/bin/python bench/features_feast.py setup --repo DIR --spec spec.json
    bench/.venvs/feast/bin/python bench/features_feast.py historical --repo DIR \
        --entities entities.parquet --view driver_stats_full --output result.parquet
    bench/.venvs/feast/bin/python bench/features_feast.py teardown --repo DIR

`setup` defines the entity and feature views of spec.json (written by bench/features.py next to
feature_store.yaml), applies them and materializes the online store with
FeatureStore.materialize (what `feast materialize` runs). `historical` times
FeatureStore.get_historical_features(entity_df, features).to_df() over the file (dask) offline
store, with the entity rows read from Parquet before the clock starts, and writes the result to
Parquet for the correctness check. `teardown` removes the project's online rows (Redis keys).
Each command prints one JSON object on stdout; Feast's own chatter goes to stderr.

Written against feast 0.67.0 (feast[redis]); nothing here is imported by the project.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

os.environ.setdefault("FEAST_USAGE", "False")


def _types():
    from feast.types import Float32, Float64, Int64

    return {"FLOAT64": Float64, "FLOAT32": Float32, "INT64": Int64}


def _objects(spec: dict):
    from feast import Entity, FeatureView, Field, FileSource, ValueType

    types = _types()
    driver = Entity(name=spec["entity"], join_keys=[spec["join_key"]], value_type=ValueType.INT64)
    views = []
    for view in spec["views"]:
        source = FileSource(
            name=f"{view['name']}_source",
            path=view["path"],
            timestamp_field="event_timestamp",
            created_timestamp_column="created",
        )
        views.append(
            FeatureView(
                name=view["name"],
                entities=[driver],
                ttl=timedelta(seconds=spec["ttl_seconds"]),
                schema=[Field(name=n, dtype=types[t]) for n, t in spec["features"]],
                source=source,
                online=True,
            )
        )
    return driver, views


def setup(repo: Path, spec_path: Path) -> dict:
    from feast import FeatureStore

    spec = json.loads(spec_path.read_text())
    store = FeatureStore(repo_path=str(repo))
    driver, views = _objects(spec)
    t0 = time.perf_counter()
    store.apply([driver, *views])
    applied = time.perf_counter() - t0
    materialized = {}
    for name in spec["materialize_views"]:
        t0 = time.perf_counter()
        store.materialize(
            start_date=datetime.fromisoformat(spec["materialize_start"]),
            end_date=datetime.fromisoformat(spec["materialize_end"]),
            feature_views=[name],
        )
        materialized[name] = round(time.perf_counter() - t0, 3)
    return {"apply_s": round(applied, 3), "materialize_s": materialized}


def historical(repo: Path, entities: Path, view: str, features: list[str], output: Path) -> dict:
    import pandas as pd
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    entity_df = pd.read_parquet(entities)
    refs = [f"{view}:{f}" for f in features]
    t0 = time.perf_counter()
    df = store.get_historical_features(entity_df=entity_df, features=refs).to_df()
    seconds = time.perf_counter() - t0
    df.to_parquet(output, index=False)
    return {
        "seconds": round(seconds, 3),
        "entity_rows": len(entity_df),
        "result_rows": len(df),
        "rows_per_s": round(len(entity_df) / seconds, 1),
        "columns": list(df.columns),
    }


def teardown(repo: Path) -> dict:
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    store.teardown()
    return {"teardown": True}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("setup")
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--spec", type=Path, required=True)
    p = sub.add_parser("historical")
    p.add_argument("--repo", type=Path, required=True)
    p.add_argument("--entities", type=Path, required=True)
    p.add_argument("--view", required=True)
    p.add_argument("--features", required=True, help="comma-separated feature names")
    p.add_argument("--output", type=Path, required=True)
    p = sub.add_parser("teardown")
    p.add_argument("--repo", type=Path, required=True)
    sub.add_parser("version")
    args = parser.parse_args()

    # Feast logs and progress bars go to stderr; stdout is kept for the one JSON object.
    with contextlib.redirect_stdout(sys.stderr):
        import feast

        out: dict = {"feast_version": feast.__version__}
        if args.command == "setup":
            out |= setup(args.repo, args.spec)
        elif args.command == "historical":
            out |= historical(
                args.repo, args.entities, args.view, args.features.split(","), args.output
            )
        elif args.command == "teardown":
            out |= teardown(args.repo)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
