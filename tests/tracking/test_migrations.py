"""Tracking migrations applied to a store that already holds data."""

from __future__ import annotations

import math

import pytest
from sqlalchemy import inspect

from modelyard.entities import Dataset, DatasetInput, InputTag, Metric, ViewType
from modelyard.errors import NotFound
from modelyard.services.common.db import Database
from modelyard.services.common.db.migrations import upgrade
from modelyard.services.common.filters import parse_filter, parse_order_by
from modelyard.services.tracking.app import MIGRATIONS, SERVICE, migrate
from modelyard.services.tracking.store.sql import SqlTrackingStore


def test_latest_metrics_learn_their_experiment(database_url: str) -> None:
    """0003 copies each run's experiment into latest_metrics, which search walks by."""
    db = Database(database_url)
    try:
        upgrade(db, SERVICE, MIGRATIONS, revision="0002")
        with db.engine.begin() as conn:
            for exp in (1, 2):
                conn.exec_driver_sql(
                    "INSERT INTO experiments (experiment_id, name, artifact_location, "
                    "lifecycle_stage, creation_time, last_update_time) "
                    f"VALUES ({exp}, 'e{exp}', 'file:///a/{exp}', 'active', 0, 0)"
                )
            for i in range(6):
                conn.exec_driver_sql(
                    "INSERT INTO runs (run_uuid, name, experiment_id, user_id, status, "
                    "start_time, lifecycle_stage, artifact_uri, deleted_with_experiment) "
                    f"VALUES ('{i:032x}', 'r{i}', {1 + i % 2}, 'u', 'RUNNING', {i}, 'active', "
                    "'file:///a', false)"
                )
                conn.exec_driver_sql(
                    "INSERT INTO latest_metrics (run_uuid, key, value, is_nan, timestamp, step) "
                    f"VALUES ('{i:032x}', 'm', {i}.0, false, 0, 0)"
                )
        migrate(db)
        with db.engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT run_uuid, experiment_id FROM latest_metrics ORDER BY run_uuid"
            ).all()
        assert rows == [(f"{i:032x}", 1 + i % 2) for i in range(6)]

        store = SqlTrackingStore(db, "file:///a")
        store.log_metric(f"{0:032x}", Metric("m", 9.0, 1, 1))
        page = store.search_runs(
            ["1"], [], ViewType.ACTIVE_ONLY, 10, parse_order_by(["metrics.m DESC"]), ""
        )
        assert [r.data.metrics["m"] for r in page] == [9.0, 4.0, 2.0]
        store.close()
    finally:
        db.dispose()


def test_metric_history_survives_dropping_its_run_foreign_key(database_url: str) -> None:
    """0004 drops the history's foreign key (SQLite rebuilds the table): the rows stay, and a
    write to a run that does not exist is still refused, now by the hot path's own check."""
    db = Database(database_url)
    try:
        store, run = _run_at(db, "0003")
        store.close()
        _log_before_0008(db, run, [Metric("m", float(s), s, s) for s in range(5)])
        migrate(db)

        store = SqlTrackingStore(db, "file:///a")
        store.log_metric(run, Metric("m", 5.0, 5, 5))
        assert [m.value for m in store.get_metric_history(run, "m", 100, "")] == [0, 1, 2, 3, 4, 5]
        with pytest.raises(NotFound):
            store.log_batch("f" * 32, [Metric("m", 1.0, 1, 1)] * 100, [], [])
        store.close()
    finally:
        db.dispose()


def test_existing_runs_get_mlflow_system_tags(database_url: str) -> None:
    """0005 tags the runs that exist already from their own fields, and moves the description
    and dataset-context tags to MLflow's names, so MLflow-style searches find old runs too."""
    db = Database(database_url)
    try:
        upgrade(db, SERVICE, MIGRATIONS, revision="0004")
        store = SqlTrackingStore(db, "file:///a")
        exp = store.create_experiment("e", None, {})
        parent = store.create_run(exp, "alice", 0, {}, "parent", None).info.run_id
        child = store.create_run(
            exp, "unknown", 0, {"modelyard.note.content": "why"}, "kid", parent
        )
        child_id = child.info.run_id
        store.log_inputs(
            child_id, [DatasetInput(Dataset("d", "x"), (InputTag("context", "eval"),))]
        )
        store.close()
        migrate(db)

        store = SqlTrackingStore(db, "file:///a")
        assert store.get_run(parent).data.tags == {
            "mlflow.runName": "parent",
            "mlflow.user": "alice",
        }
        got = store.get_run(child_id)
        assert got.data.tags == {
            "mlflow.runName": "kid",
            "mlflow.parentRunId": parent,
            "mlflow.note.content": "why",
        }
        assert got.inputs.dataset_inputs[0].context == "eval"
        found = store.search_runs(
            [exp], parse_filter(f"tags.mlflow.parentRunId = '{parent}'"), ViewType.ALL, 10, [], ""
        )
        assert [r.info.run_id for r in found] == [child_id]
        store.close()
    finally:
        db.dispose()


def test_metric_history_keyed_by_its_order(database_url: str) -> None:
    """0007 makes PostgreSQL's history primary key its read order, in place of a second index,
    and its run ids and keys bytewise: the rows, their order (ties by id, as written) and pages
    across the migration stay, and new rows keep taking ids after the old ones."""
    db = Database(database_url)
    try:
        store, run = _run_at(db, "0006")
        store.close()
        # Three values at one (step, timestamp): only the id orders them.
        _log_before_0008(db, run, [Metric("m", v, 7, 1) for v in (3.0, 1.0, 2.0)])
        _log_before_0008(db, run, [Metric("m", 0.5, 5, 0)])
        migrate(db)

        with db.engine.connect() as conn:
            inspector = inspect(conn)
            primary_key = inspector.get_pk_constraint("metrics")["constrained_columns"]
            indexes = {i["name"] for i in inspector.get_indexes("metrics")}
            collations = {
                c["name"]: getattr(c["type"], "collation", None)
                for c in inspector.get_columns("metrics")
                if c["name"] in ("run_uuid", "key")
            }
        if db.is_sqlite:
            assert (primary_key, indexes) == (["id"], {"ix_metrics_run_key_step"})
        else:
            assert (primary_key, indexes) == (["run_uuid", "key", "step", "timestamp", "id"], set())
            assert collations == {"run_uuid": "C", "key": "C"}

        store = SqlTrackingStore(db, "file:///a")
        store.log_batch(run, [Metric("m", v, 7, 1) for v in (4.0, 0.0)], [], [])
        first = store.get_metric_history(run, "m", 2, "")
        rest = store.get_metric_history(run, "m", 10, first.token)
        assert [m.value for m in [*first, *rest]] == [0.5, 3.0, 1.0, 2.0, 4.0, 0.0]
        assert store.get_run(run).data.metrics == {"m": 4.0}  # the highest at (7, 1), as MLflow
        store.close()
    finally:
        db.dispose()


@pytest.mark.postgres
def test_artifact_paths_compare_bytewise_after_0009(icu_postgres_url: str) -> None:
    """0009 collates artifact paths "C": on a database collated by ICU's en-US, directory 'a'
    held 'A/keep.txt' before it, and holds only its own files after."""
    db = Database(icu_postgres_url)
    try:
        store, run = _run_at(db, "0008")
        with db.engine.begin() as conn:
            for path in ("A/keep.txt", "a/tmp.txt"):
                conn.exec_driver_sql(
                    "INSERT INTO artifacts (run_uuid, path, file_size, sha256, created_time) "
                    f"VALUES ('{run}', '{path}', 1, '{'0' * 64}', 0)"
                )
        assert [f.path for f in store.list_artifacts(run, "a")] == ["A/keep.txt", "a/tmp.txt"]
        store.close()
        migrate(db)
        store = SqlTrackingStore(db, "file:///a")
        assert [f.path for f in store.list_artifacts(run, "a")] == ["a/tmp.txt"]
        assert [f.path for f in store.list_artifacts(run, "")] == ["A/keep.txt", "a/tmp.txt"]
        store.close()
    finally:
        db.dispose()


def _run_at(db: Database, revision: str) -> tuple[SqlTrackingStore, str]:
    """A store migrated up to `revision` and the id of a new run in it."""
    upgrade(db, SERVICE, MIGRATIONS, revision=revision)
    store = SqlTrackingStore(db, "file:///a")
    exp = store.create_experiment("e", None, {})
    return store, store.create_run(exp, "u", 0, {}, "r", None).info.run_id


def _log_before_0008(db: Database, run: str, metrics: list[Metric]) -> None:
    """Metric values written as stores did before 0008 (today's store also writes the run's
    start time into latest_metrics): the history rows, in order, and each key's latest value,
    the last written of those at the highest (step, timestamp)."""
    with db.engine.begin() as conn:
        (experiment,) = conn.exec_driver_sql(
            f"SELECT experiment_id FROM runs WHERE run_uuid = '{run}'"
        ).one()
        for m in metrics:
            values = f"'{run}', '{m.key}', {m.value}, false, {m.timestamp}, {m.step}"
            conn.exec_driver_sql(
                f"INSERT INTO metrics (run_uuid, key, value, is_nan, timestamp, step) "
                f"VALUES ({values})"
            )
            conn.exec_driver_sql(
                "INSERT INTO latest_metrics (run_uuid, key, value, is_nan, timestamp, step, "
                f"experiment_id) VALUES ({values}, {experiment}) ON CONFLICT (run_uuid, key) "
                "DO UPDATE SET value = excluded.value, timestamp = excluded.timestamp, "
                "step = excluded.step WHERE (excluded.step, excluded.timestamp) "
                ">= (latest_metrics.step, latest_metrics.timestamp)"
            )


def test_latest_metrics_learn_their_runs_start_time(database_url: str) -> None:
    """0008 copies each run's start time into latest_metrics and rebuilds the order indexes in
    MLflow's order; searches by a metric then walk them: NaN after the numbers either way, ties
    newest first."""
    db = Database(database_url)
    try:
        upgrade(db, SERVICE, MIGRATIONS, revision="0007")
        store = SqlTrackingStore(db, "file:///a")
        exp = store.create_experiment("e", None, {})
        values = {"old": 1.0, "new": 1.0, "nan": math.nan, "top": 2.0}
        ids = {
            name: store.create_run(exp, "u", start, {}, name, None).info.run_id
            for start, name in enumerate(values)
        }
        store.close()
        for name, value in values.items():
            if math.isnan(value):
                with db.engine.begin() as conn:  # as stores wrote NaN: 0 and is_nan
                    conn.exec_driver_sql(
                        "INSERT INTO latest_metrics (run_uuid, key, value, is_nan, timestamp, "
                        f"step, experiment_id) VALUES ('{ids[name]}', 'm', 0, true, 0, 0, {exp})"
                    )
            else:
                _log_before_0008(db, ids[name], [Metric("m", value, 0, 0)])
        # Three values at one (step, timestamp): stores kept the last (2.0), MLflow the highest.
        _log_before_0008(db, ids["old"], [Metric("t", v, 7, 1) for v in (3.0, 1.0, 2.0)])
        _log_before_0008(db, ids["old"], [Metric("u", v, 7, 1) for v in (3.0, 1.0, 5.0)])
        assert _latest(db, ids["old"]) == {"m": 1.0, "t": 2.0, "u": 5.0}
        migrate(db)
        assert _latest(db, ids["old"]) == {"m": 1.0, "t": 3.0, "u": 5.0}
        with db.engine.connect() as conn:
            starts = dict(
                conn.exec_driver_sql(
                    "SELECT DISTINCT run_uuid, start_time FROM latest_metrics"
                ).all()
            )
            if db.is_sqlite:
                found = conn.exec_driver_sql(
                    "SELECT name, sql FROM sqlite_master WHERE tbl_name = 'latest_metrics' "
                    "AND name LIKE 'ix_%'"
                )
            else:
                found = conn.exec_driver_sql(
                    "SELECT indexname, indexdef FROM pg_indexes "
                    "WHERE tablename = 'latest_metrics' AND indexname LIKE 'ix_%%'"
                )
            indexes = {
                name: " ".join(sql.split("(", 1)[1].replace('"', "").split()) for name, sql in found
            }
        assert starts == {ids[name]: start for start, name in enumerate(values)}
        assert indexes == {
            "ix_latest_metrics_order_asc": (
                "experiment_id, key, is_nan, value, start_time DESC, run_uuid)"
            ),
            "ix_latest_metrics_order_desc": (
                "experiment_id, key, is_nan, value DESC, start_time DESC, run_uuid)"
            ),
        }

        store = SqlTrackingStore(db, "file:///a")
        for direction, want in (
            ("DESC", ["top", "new", "old", "nan"]),
            ("ASC", ["new", "old", "top", "nan"]),
        ):
            page = store.search_runs(
                [exp], [], ViewType.ACTIVE_ONLY, 10, parse_order_by([f"metrics.m {direction}"]), ""
            )
            assert [r.info.run_name for r in page] == want
        store.close()
    finally:
        db.dispose()


def _latest(db: Database, run: str) -> dict[str, float]:
    with db.engine.connect() as conn:
        rows = conn.exec_driver_sql(
            f"SELECT key, value FROM latest_metrics WHERE run_uuid = '{run}'"
        ).all()
    return dict(rows)
