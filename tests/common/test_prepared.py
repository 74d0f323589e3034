"""Statements compiled once and run on the DB-API cursor (`Prepared`): parameters by name,
literal values kept, SQLAlchemy's type conversions applied, and inside the caller's
transaction, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    select,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator

from modelyard.services.common.db import Database
from modelyard.services.common.db.prepared import Prepared


class Shouted(TypeDecorator[str]):
    """Stored upper-case, read back lower-case: a conversion each way that the raw driver
    would not make."""

    impl = String(20)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        return value.upper() if value is not None else None

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        return value.lower() if value is not None else None


metadata = MetaData()
items = Table(
    "prepared_items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("name", String(50), nullable=False),
    Column("done", Boolean, nullable=False),
    Column("label", Shouted, nullable=False),
    # SQLite stores it as text: converted by the SQLite dialect's own DateTime, not the generic.
    Column("created", DateTime, nullable=False),
)
CREATED = datetime(2026, 12, 6, 4, 20, 0)


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    db = Database(database_url)  # a fresh file or schema
    metadata.create_all(db.engine)
    with db.write() as conn:
        conn.execute(
            items.insert(),
            [
                {
                    "id": 1,
                    "kind": "a",
                    "name": "one",
                    "done": True,
                    "label": "x",
                    "created": CREATED,
                },
                {
                    "id": 2,
                    "kind": "b",
                    "name": "two",
                    "done": False,
                    "label": "y",
                    "created": CREATED,
                },
                {
                    "id": 3,
                    "kind": "a",
                    "name": "three",
                    "done": False,
                    "label": "x",
                    "created": CREATED,
                },
            ],
        )
    yield db
    metadata.drop_all(db.engine)
    db.dispose()


def test_parameters_go_by_name_beside_the_statements_own_values(db: Database) -> None:
    stmt = (
        select(items.c.name, items.c.id)
        .where(items.c.kind == "a", items.c.id >= bindparam("low"), items.c.id <= bindparam("high"))
        .order_by(items.c.id)
    )
    prepared = Prepared(db.engine.dialect, stmt)
    with db.read() as conn, db.cursor(conn) as cursor:
        # The keywords' order differs from the statement's, and the literal "a" stays bound.
        found = prepared.rows(cursor, high=3, low=1)
        assert found == [{"name": "one", "id": 1}, {"name": "three", "id": 3}]
        assert prepared.first(cursor, low=2, high=2) is None


def test_values_come_back_as_sqlalchemy_would_give_them(db: Database) -> None:
    """SQLite stores a Boolean as 0/1 and a DateTime as text: the column types' result
    conversions (the dialect's own, for DateTime) still apply."""
    stmt = select(items).where(items.c.id == bindparam("id"))
    prepared = Prepared(db.engine.dialect, stmt)
    with db.read() as conn:
        with db.cursor(conn) as cursor:
            row = prepared.first(cursor, id=1)
        expected = conn.execute(stmt, {"id": 1}).one()._mapping
    assert row == dict(expected)
    assert row is not None and row["done"] is True
    assert row["label"] == "x"  # stored as "X"
    assert row["created"] == CREATED
    assert prepared.columns == ("id", "kind", "name", "done", "label", "created")


def test_parameters_are_converted_as_sqlalchemy_would_bind_them(db: Database) -> None:
    """The column type's bind conversion applies to a parameter: "x" finds the rows stored
    as "X", and a datetime matches the text SQLite's DateTime stored."""
    dialect = db.engine.dialect
    by_label = Prepared(
        dialect, select(items.c.id).where(items.c.label == bindparam("label")).order_by(items.c.id)
    )
    by_time = Prepared(dialect, select(items.c.id).where(items.c.created == bindparam("t")))
    with db.read() as conn:
        with db.cursor(conn) as cursor:
            assert by_label.rows(cursor, label="x") == [{"id": 1}, {"id": 3}]
            assert len(by_time.rows(cursor, t=CREATED)) == 3
        raw = conn.exec_driver_sql("SELECT label FROM prepared_items WHERE id = 2").scalar()
    assert raw == "Y"


def test_statements_sqlalchemy_renders_per_execution_are_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="run it through SQLAlchemy"):
        Prepared(db.engine.dialect, select(items.c.id).where(items.c.id.in_([1, 2])))


def test_a_sqlite_read_is_one_snapshot_when_only_prepared_statements_run(tmp_path: Path) -> None:
    """The read's transaction begins with the block, not with SQLAlchemy's first statement: a
    read made only of `Prepared` statements still sees one snapshot (its cursor would
    otherwise run each statement in a transaction of its own)."""
    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        metadata.create_all(db.engine)
        prepared = Prepared(db.engine.dialect, select(items.c.id))
        with db.read() as conn, db.cursor(conn) as cursor:
            assert prepared.rows(cursor) == []
            with db.write() as writer:
                writer.execute(
                    items.insert().values(
                        id=9, kind="a", name="x", done=False, label="z", created=CREATED
                    )
                )
            assert prepared.rows(cursor) == []
        with db.read() as conn, db.cursor(conn) as cursor:
            assert prepared.rows(cursor) == [{"id": 9}]
    finally:
        db.dispose()
