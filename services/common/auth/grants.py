"""Per-resource grants, stored by the service that owns the resource.

Each service adds a `<resource>_permissions` table to its own schema (`permissions_table`) and
answers access questions through a GrantStore. Levels are cached briefly per resource; a change
made in this process clears the cache at once, other replicas see it within `ttl_seconds`.
A search limited to what its caller may read takes a Visibility, which the service's store turns
into a subquery of that table: never a list of ids, bound one parameter each.
"""

from __future__ import annotations

import builtins
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Column, Integer, MetaData, Select, String, Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from modelyard.entities.common import Grant, PermissionLevel
from modelyard.services.common.db import Database

EVERYONE = "*"


def permissions_table(metadata: MetaData, name: str) -> Table:
    return Table(
        name,
        metadata,
        Column("resource_id", String(64), primary_key=True),
        Column("principal", String(256), primary_key=True),
        Column("level", Integer, nullable=False),
    )


@dataclass(frozen=True, slots=True)
class Visibility:
    """The resources `principal` (or everyone) holds at least `minimum` on. Stores apply it as
    `id IN (granted(table))`: the ids used to be read first and bound one parameter each, which
    PostgreSQL (65,535) and SQLite (32,766) refuse past their limits, and cost a read and a
    copy of every grant per search."""

    principal: str
    minimum: PermissionLevel

    def granted(self, table: Table) -> Select:
        t = table.c
        return select(t.resource_id).where(
            t.principal.in_([self.principal, EVERYONE]), t.level >= int(self.minimum)
        )


class GrantStore:
    def __init__(self, db: Database, table: Table, ttl_seconds: float = 2.0) -> None:
        self.db = db
        self.table = table
        self._insert = sqlite.insert if db.is_sqlite else postgresql.insert
        self._ttl = ttl_seconds
        self._cache: dict[str, tuple[float, dict[str, PermissionLevel]]] = {}
        # Counts the changes forgotten: a read that began before one must not be kept, or the
        # grants it read before the change (a revoked one, say) would be served for the TTL.
        self._changes = 0
        self._lock = threading.Lock()

    def set(self, resource_id: str, principal: str, level: PermissionLevel) -> None:
        stmt = self._insert(self.table).values(
            resource_id=resource_id, principal=principal, level=int(level)
        )
        with self.db.write() as conn:
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["resource_id", "principal"], set_={"level": stmt.excluded.level}
                )
            )
        self._forget(resource_id)

    def delete(self, resource_id: str, principal: str) -> bool:
        t = self.table.c
        with self.db.write() as conn:
            deleted = conn.execute(
                delete(self.table).where(t.resource_id == resource_id, t.principal == principal)
            ).rowcount
        self._forget(resource_id)
        return bool(deleted)

    def delete_all(self, resource_id: str) -> None:
        with self.db.write() as conn:
            conn.execute(delete(self.table).where(self.table.c.resource_id == resource_id))
        self._forget(resource_id)

    def list(self, resource_id: str) -> list[Grant]:
        return [Grant(p, lvl) for p, lvl in sorted(self._grants(resource_id).items())]

    def level(self, resource_id: str, principal: str) -> PermissionLevel | None:
        grants = self._grants(resource_id)
        levels = [grants[p] for p in (principal, EVERYONE) if p in grants]
        return max(levels) if levels else None

    def visible(self, principal: str, minimum: PermissionLevel) -> builtins.set[str]:
        """Ids of resources on which `principal` (or everyone) holds at least `minimum`."""
        with self.db.read() as conn:
            return set(conn.execute(Visibility(principal, minimum).granted(self.table)).scalars())

    def _grants(self, resource_id: str) -> dict[str, PermissionLevel]:
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(resource_id)
            changes = self._changes
        if cached is not None and cached[0] > now:
            return cached[1]
        t = self.table.c
        with self.db.read() as conn:
            rows = conn.execute(
                select(t.principal, t.level).where(t.resource_id == resource_id)
            ).all()
        grants = {p: PermissionLevel(lvl) for p, lvl in rows}
        with self._lock:
            if changes == self._changes:
                self._cache[resource_id] = (now + self._ttl, grants)
        return grants

    def _forget(self, resource_id: str) -> None:
        with self._lock:
            self._changes += 1
            self._cache.pop(resource_id, None)

    def forget_all(self, resource_ids: Iterable[str]) -> None:
        with self._lock:
            self._changes += 1
            for rid in resource_ids:
                self._cache.pop(rid, None)
