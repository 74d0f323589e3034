"""What reading a version or a model costs, counted in rows the database returns, on SQLite and
PostgreSQL: reading one version used to read every tag and alias of every version of its model,
and reading a model every version row of it (about 100 ms per call at 600 versions of 40 tags),
in the writes that return a version too, under the model's row lock."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from modelyard.services.common.db import Database
from modelyard.services.registry import app as registry_app
from modelyard.services.registry.store.sql import SqlRegistryStore


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[SqlRegistryStore]:
    db = Database(database_url)
    registry_app.migrate(db)
    store = SqlRegistryStore(db, (tmp_path / "registry").as_uri())
    yield store
    store.close()


@contextlib.contextmanager
def rows_read(db: Database) -> Iterator[list[int]]:
    """Yields a list that holds, once the block ends, how many rows its SELECTs returned
    (each counted again afterwards, on another connection)."""
    selects: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            selects.append((statement, parameters))

    counted: list[int] = []
    event.listen(db.engine, "after_cursor_execute", record)
    try:
        yield counted
    finally:
        event.remove(db.engine, "after_cursor_execute", record)
    with db.engine.connect() as conn:
        counted.append(
            sum(
                conn.exec_driver_sql(f"SELECT count(*) FROM ({s}) AS q", p).scalar() or 0
                for s, p in selects
            )
        )


def add_versions(store: SqlRegistryStore, name: str, count: int, tags: int = 5) -> None:
    """`count` READY versions of `name`, each with `tags` tags."""
    for _ in range(count):
        tagged = {f"t{i}": "x" * 50 for i in range(tags)}
        _, pending = store.create_model_version(name, "runs:/r/model", "r", "", tagged, "u")
        store.finish_registration(pending, [])


def test_reading_a_version_or_model_reads_as_many_rows_however_big_the_model(
    store: SqlRegistryStore,
) -> None:
    add_versions(store, "big", 2)
    store.set_alias("big", "champion", 1, "u")
    with rows_read(store.db) as small_version:
        version = store.get_model_version("big", 1)
    with rows_read(store.db) as small_model:
        store.get_registered_model("big")
    add_versions(store, "big", 20)
    with rows_read(store.db) as large_version:
        assert store.get_model_version("big", 1) == version
    with rows_read(store.db) as large_model:
        model = store.get_registered_model("big")
    assert large_version == small_version
    assert large_model == small_model
    assert version.tags == {f"t{i}": "x" * 50 for i in range(5)}
    assert version.aliases == ["champion"]
    assert [(v.version, v.aliases) for v in model.latest_versions] == [(22, [])]


def test_versions_of_several_models_get_their_own_tags_and_aliases(
    store: SqlRegistryStore,
) -> None:
    add_versions(store, "a", 2, tags=1)
    add_versions(store, "b", 1, tags=2)
    store.set_alias("a", "champion", 2, "u")
    store.set_alias("b", "champion", 1, "u")
    found = store.search_model_versions([], [], 10, "")
    assert [(v.name, v.version, sorted(v.tags), v.aliases) for v in found] == [
        ("a", 2, ["t0"], ["champion"]),
        ("a", 1, ["t0"], []),
        ("b", 1, ["t0", "t1"], ["champion"]),
    ]
