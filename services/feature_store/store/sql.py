"""SqlFeatureStore: definitions (current and history) and materialization records."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from google.protobuf import json_format
from sqlalchemy import Connection, delete, exists, func, insert, literal, select, update

from modelyard._gen.features.v1 import features_pb2 as pb
from modelyard.convert.features import definition_to_entity, definition_to_proto
from modelyard.errors import FailedPrecondition, NotFound
from modelyard.features.definitions import Definition, Entity, FeatureView, Field, kind_of
from modelyard.services.common.db import Database
from modelyard.services.feature_store.store.schema import (
    definition_history,
    definitions,
    materializations,
    pending_cleanups,
)


def _now() -> int:
    return int(time.time() * 1000)


def _spec(definition: Definition) -> str:
    return json_format.MessageToJson(definition_to_proto(definition), sort_keys=True, indent=None)


def _load(spec: str) -> Definition:
    return definition_to_entity(json_format.Parse(spec, pb.Definition()))


@dataclass(frozen=True)
class Stored:
    """`generation`: what a feature view's online rows are keyed by (see schema.definitions);
    0 for a version out of the history, which does not keep it."""

    definition: Definition
    version: int
    update_time: int
    generation: int = 0


@dataclass(frozen=True)
class MaterializationRecord:
    feature_view: str
    start_time: int
    end_time: int
    rows: int
    run_time: int


class SqlFeatureStore:
    """Definitions are read on every lookup and change rarely: `find` answers from memory for
    `cache_seconds` (how long another replica's apply may take to show here); an apply through
    this store is seen at once."""

    def __init__(self, db: Database, cache_seconds: float = 5.0) -> None:
        self.db = db
        self._cache_seconds = cache_seconds
        self._cache: dict[tuple[str, str], tuple[float, Stored | None]] = {}

    def close(self) -> None:
        self.db.dispose()

    def list_definitions(self, kind: str = "") -> list[Stored]:
        stmt = select(definitions).order_by(definitions.c.kind, definitions.c.name)
        if kind:
            stmt = stmt.where(definitions.c.kind == kind)
        with self.db.read() as conn:
            rows = conn.execute(stmt).all()
        return [Stored(_load(r.spec), r.version, r.update_time, r.generation) for r in rows]

    def find(self, kind: str, name: str, fresh: bool = False) -> Stored | None:
        """`fresh`: read the table rather than the cache (and cache what it holds), for writes
        that must not go to a definition another replica deleted meanwhile."""
        if "\x00" in name:  # no name holds one (apply checks them); PostgreSQL fails the query
            return None
        now = time.monotonic()
        cached = self._cache.get((kind, name))
        if not fresh and cached is not None and now - cached[0] < self._cache_seconds:
            return cached[1]
        found = self._find(kind, name)
        self._cache[(kind, name)] = (now, found)
        return found

    def _find(self, kind: str, name: str) -> Stored | None:
        with self.db.read() as conn:
            row = conn.execute(
                select(definitions).where(definitions.c.kind == kind, definitions.c.name == name)
            ).first()
        if row is None:
            return None
        return Stored(_load(row.spec), row.version, row.update_time, row.generation)

    def get(self, kind: str, name: str, version: int = 0) -> Stored:
        if version and "\x00" not in name:
            h = definition_history.c
            with self.db.read() as conn:
                row = conn.execute(
                    select(definition_history).where(
                        h.kind == kind, h.name == name, h.version == version
                    )
                ).first()
            if row is None:
                raise NotFound(
                    f"{kind} {name!r} has no version {version}",
                    resource_type=kind,
                    resource_name=f"{name}@{version}",
                )
            return Stored(_load(row.spec), row.version, row.update_time)
        found = self.find(kind, name)
        if found is None:
            raise NotFound(
                f"{kind} {name!r} is not defined; apply it first (modelyard features apply)",
                resource_type=kind,
                resource_name=name,
            )
        return found

    def apply(
        self, upserts: Sequence[Definition], deletes: Sequence[tuple[str, str]], user: str
    ) -> dict[tuple[str, str], int]:
        """Write the changes in one transaction, each with a new version in the history;
        returns the generation of each definition deleted."""
        with self.applying() as tx:
            return tx.write(upserts, deletes, user)

    @contextmanager
    def applying(self) -> Iterator[Applying]:
        """One apply's transaction: it reads the definitions, checks and plans against them, and
        writes, with no other apply in between. An apply checks definitions against each other
        (a service's features, a view's entities), so locking only the rows it writes would let
        two applies each check against what the other changes: applies are rare, and one at a
        time costs nothing (a concurrent apply waits rather than compute the same next version
        and fail on the primary key)."""
        self._cache.clear()
        try:
            with self.db.write_serialized("feature_definitions") as conn:
                yield Applying(conn)
        finally:
            self._cache.clear()  # whatever happened, read the table again

    def join_key_fields(self, view: FeatureView) -> list[Field]:
        """The join keys of the view's entities, in order."""
        fields: list[Field] = []
        for name in view.entities:
            found = self.find("entity", name)
            if found is None or not isinstance(found.definition, Entity):
                raise FailedPrecondition(
                    f"feature view {view.name!r} uses entity {name!r}, which is not defined",
                    resource_type="entity",
                    resource_name=name,
                )
            fields.extend(found.definition.join_keys)
        return fields

    def record_materialization(self, record: MaterializationRecord, generation: int) -> bool:
        """Records the run if its view is still the `generation` it loaded (in the insert
        itself, so no delete comes between); False if it was deleted or created again
        meanwhile: a record of the old one would set where the new one's incremental runs
        start."""
        d = definitions.c
        current = select(
            literal(record.feature_view),
            literal(record.start_time),
            literal(record.end_time),
            literal(record.rows),
            literal(record.run_time),
        ).where(
            exists().where(
                d.kind == "feature_view",
                d.name == record.feature_view,
                d.generation == generation,
            )
        )
        m = materializations.c
        columns = [m.feature_view, m.start_time, m.end_time, m.rows, m.run_time]
        with self.db.write() as conn:
            # RETURNING rather than rowcount, which PostgreSQL's driver leaves at -1 here.
            added = conn.execute(
                insert(materializations).from_select(columns, current).returning(m.id)
            )
            return added.first() is not None

    def materializations(
        self, feature_view: str = "", latest_only: bool = False
    ) -> list[MaterializationRecord]:
        """In the order they ran; with `latest_only`, each view's run whose window ends last
        (the last to run of those), so a freshness overview reads one row per view."""
        m = materializations.c
        stmt = select(materializations).order_by(m.id)
        if feature_view:
            stmt = stmt.where(m.feature_view == feature_view)
        if latest_only:
            rank = func.row_number().over(
                partition_by=m.feature_view, order_by=(m.end_time.desc(), m.id.desc())
            )
            ranked = stmt.add_columns(rank.label("rank")).subquery()
            stmt = select(ranked).where(ranked.c.rank == 1).order_by(ranked.c.id)
        with self.db.read() as conn:
            rows = conn.execute(stmt).all()
        return [
            MaterializationRecord(r.feature_view, r.start_time, r.end_time, r.rows, r.run_time)
            for r in rows
        ]

    def last_materialized(self, feature_view: str) -> int | None:
        m = materializations.c
        with self.db.read() as conn:
            return conn.execute(
                select(m.end_time)
                .where(m.feature_view == feature_view)
                .order_by(m.end_time.desc())
                .limit(1)
            ).scalar()

    def add_cleanup(self, online_name: str, store: str) -> None:
        """Keeps a cleanup to retry (see schema.pending_cleanups); one kept already stays."""
        c = pending_cleanups.c
        new = select(literal(online_name), literal(store), literal(_now())).where(
            ~exists().where(c.online_name == online_name, c.store == store)
        )
        with self.db.write() as conn:
            conn.execute(
                insert(pending_cleanups).from_select([c.online_name, c.store, c.since], new)
            )

    def pending_cleanups(self) -> list[tuple[str, str]]:
        """(online name, store) of each cleanup to retry, oldest first."""
        c = pending_cleanups.c
        with self.db.read() as conn:
            rows = conn.execute(select(c.online_name, c.store).order_by(c.since)).all()
        return [(r.online_name, r.store) for r in rows]

    def remove_cleanup(self, online_name: str, store: str) -> None:
        c = pending_cleanups.c
        with self.db.write() as conn:
            conn.execute(
                delete(pending_cleanups).where(c.online_name == online_name, c.store == store)
            )


class Applying:
    """The definitions within an apply's transaction (SqlFeatureStore.applying)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def existing(self) -> dict[tuple[str, str], Definition]:
        rows = self._conn.execute(select(definitions.c.spec)).scalars().all()
        return {(kind_of(d), d.name): d for d in map(_load, rows)}

    def history(self, kind: str, name: str) -> list[tuple[int, Definition]]:
        """(version, definition) of each version since the definition was last created, oldest
        first: what a deleted one had is gone with it."""
        h = definition_history.c
        rows = self._conn.execute(
            select(h.version, h.spec, h.action)
            .where(h.kind == kind, h.name == name)
            .order_by(h.version)
        ).all()
        created = max((i for i, r in enumerate(rows) if r.action == "create"), default=0)
        return [(r.version, _load(r.spec)) for r in rows[created:] if r.action != "delete"]

    def write(
        self, upserts: Sequence[Definition], deletes: Sequence[tuple[str, str]], user: str
    ) -> dict[tuple[str, str], int]:
        """Each change with a new version in the history; a deleted view's materialization
        records go with it (a view created again under its name starts afresh). A definition
        created gets its version as its generation: versions of a name only grow, deletes
        included, so a generation is never used twice. Returns the generation of each
        definition deleted."""
        conn, now = self._conn, _now()
        deleted: dict[tuple[str, str], int] = {}
        d, h = definitions.c, definition_history.c
        for definition in upserts:
            kind, name, spec = kind_of(definition), definition.name, _spec(definition)
            last = (
                conn.execute(
                    select(h.version)
                    .where(h.kind == kind, h.name == name)
                    .order_by(h.version.desc())
                    .limit(1)
                ).scalar()
                or 0
            )
            version = last + 1
            values = {"version": version, "spec": spec, "user_id": user, "update_time": now}
            changed = conn.execute(
                update(definitions).where(d.kind == kind, d.name == name).values(**values)
            ).rowcount
            if not changed:
                conn.execute(
                    insert(definitions).values(kind=kind, name=name, generation=version, **values)
                )
            conn.execute(
                insert(definition_history).values(
                    kind=kind, name=name, action="update" if changed else "create", **values
                )
            )
        for kind, name in deletes:
            row = conn.execute(select(definitions).where(d.kind == kind, d.name == name)).first()
            if row is None:
                continue
            conn.execute(delete(definitions).where(d.kind == kind, d.name == name))
            deleted[(kind, name)] = row.generation
            conn.execute(
                insert(definition_history).values(
                    kind=kind,
                    name=name,
                    version=row.version + 1,
                    spec=row.spec,
                    action="delete",
                    user_id=user,
                    update_time=now,
                )
            )
            if kind == "feature_view":
                conn.execute(
                    delete(materializations).where(materializations.c.feature_view == name)
                )
        return deleted
