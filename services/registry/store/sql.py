"""SqlRegistryStore: the registry store on SQLAlchemy Core, for SQLite and PostgreSQL.

Lock order: every write that changes a model or its versions, tags or aliases first locks the
model's row (SELECT ... FOR UPDATE, `_model(lock=True)`), and only then touches other rows. On
PostgreSQL, writes that locked their own version row first and the model row (or other versions)
after deadlocked each other: 32 concurrent archiving transitions, 19-23 failed. Writes to one
model now take turns, as they always did on SQLite, whose writers are serialized anyway.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Row, and_, delete, func, insert, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from modelyard.entities import FileInfo, PagedList
from modelyard.entities.registry import (
    ModelEvent,
    ModelVersion,
    ModelVersionStatus,
    RegisteredModel,
    Stage,
)
from modelyard.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from modelyard.services.common.auth.grants import Visibility
from modelyard.services.common.db import Database
from modelyard.services.common.filters import Comparison, OrderKey
from modelyard.services.common.filters.sql import compare, key_value_lookup
from modelyard.services.common.keyset import (
    Term,
    after_binds,
    after_clause,
    keyed,
    next_token,
    read_position,
    resume,
)
from modelyard.services.common.pagination import fingerprint
from modelyard.services.registry.store.base import PendingVersion, RegistryStore, StoredFile
from modelyard.services.registry.store.schema import (
    model_aliases,
    model_events,
    model_version_files,
    model_version_tags,
    model_versions,
    registered_model_permissions,
    registered_model_tags,
    registered_models,
)

# conn.info key of the events a `_write()` inserts when it ends.
_PENDING_EVENTS = "modelyard.registry.pending_events"


def _now() -> int:
    return int(time.time() * 1000)


def _model_not_found(name: str) -> NotFound:
    return NotFound(
        f"registered model {name!r} does not exist; list models with SearchRegisteredModels",
        resource_type="registered_model",
        resource_name=name,
    )


def _version_not_found(name: str, version: int) -> NotFound:
    return NotFound(
        f"model {name!r} has no version {version}; list them with SearchModelVersions",
        resource_type="model_version",
        resource_name=f"{name}/{version}",
    )


def _not_failed(row: Row, name: str, action: str) -> None:
    """Refuse to name a version whose registration failed where models are loaded from (an
    alias, a stage): it has no files. A PENDING one may be named, as it becomes READY."""
    if row.status == ModelVersionStatus.FAILED_REGISTRATION.value:
        raise FailedPrecondition(
            f"version {row.version} of model {name!r} is FAILED_REGISTRATION"
            + (f" ({row.status_message})" if row.status_message else "")
            + ", so it has no files to load; register it again (CreateModelVersion) and "
            f"{action} once that version is READY",
            resource_type="model_version",
            resource_name=f"{name}/{row.version}",
        )


class SqlRegistryStore(RegistryStore):
    def __init__(self, db: Database, storage_root: str) -> None:
        self.db = db
        self.storage_root = storage_root.rstrip("/")
        self._insert = sqlite.insert if db.is_sqlite else postgresql.insert

    def close(self) -> None:
        self.db.dispose()

    # -- helpers -------------------------------------------------------------------------------

    def _find_model(self, conn: Connection, name: str, *, lock: bool = False) -> Row | None:
        """The model called `name`, or None; `lock`: hold its row until the write ends (the lock
        order above; a no-op on SQLite)."""
        stmt = select(registered_models).where(registered_models.c.name == name)
        return conn.execute(stmt.with_for_update() if lock else stmt).first()

    def _model(
        self, conn: Connection, name: str, *, lock: bool = False, model_id: str | None = None
    ) -> Row:
        """`model_id`: the model the call was authorized on, which `name` must still name.
        `lock` is taken by writes only, so it also says which the refusal is of."""
        row = self._find_model(conn, name, lock=lock)
        if row is None:
            raise _model_not_found(name)
        if model_id is not None and row.model_id != model_id:
            raise self._renamed_meanwhile(conn, name, model_id, write=lock)
        return row

    def _renamed_meanwhile(
        self, conn: Connection, name: str, model_id: str, write: bool
    ) -> Aborted:
        """The refusal of a call authorized on model `model_id` by the name `name`, which now
        names another model. It says where the caller's model went (the caller may see it: the
        call was authorized on it), and claims no write for a read."""
        now = conn.execute(
            select(registered_models.c.name).where(registered_models.c.model_id == model_id)
        ).scalar()
        where = f"is now called {now!r}" if now else "was deleted"
        then = (
            ("nothing was changed; " if write else "")
            + (f"retry with the name {now!r}" if now else "look the model up again")
            + ("" if write else " to read it")
        )
        return Aborted(
            f"registered model {name!r} is another model than when this call was authorized: "
            f"the one it was authorized on {where}, and the name was given to another; {then}",
            resource_type="registered_model",
            resource_name=name,
        )

    def _find_alias(self, conn: Connection, model: Row, alias: str) -> int | None:
        """The version `alias` points to, or None when the model has no such alias."""
        return conn.execute(
            select(model_aliases.c.version).where(
                model_aliases.c.model_id == model.model_id, model_aliases.c.alias == alias
            )
        ).scalar()

    def _alias_in_other_case(self, conn: Connection, model: Row, alias: str) -> str | None:
        """The alias the model holds that is `alias` in another case, if any. Aliases are
        case-sensitive (as MLflow's SQL store on SQLite and PostgreSQL), but the reserved and
        protected names are so in any case; two aliases differing only in case would be
        look-alikes, one protected and one not. Alias names are ASCII, which SQL's lower() folds
        on both backends. Read only on the rare paths: an alias not found, or a new one."""
        a = model_aliases.c
        return conn.execute(
            select(a.alias).where(
                a.model_id == model.model_id,
                func.lower(a.alias) == alias.lower(),
                a.alias != alias,
            )
        ).scalar()

    def _alias_version(self, conn: Connection, model: Row, alias: str) -> int:
        version = self._find_alias(conn, model, alias)
        if version is None:
            other = self._alias_in_other_case(conn, model, alias)
            hint = (
                f"it holds {other!r} (alias names are case-sensitive)"
                if other
                else "set it with SetRegisteredModelAlias"
            )
            raise NotFound(
                f"model {model.name!r} has no alias {alias!r}; {hint}",
                resource_type="model_alias",
                resource_name=f"{model.name}@{alias}",
            )
        return version

    def _version(
        self,
        conn: Connection,
        name: str,
        version: int,
        *,
        lock: bool = False,
        model_id: str | None = None,
    ) -> tuple[Row, Row]:
        """The model and its version row; `lock` and `model_id` as in `_model`."""
        model = self._model(conn, name, lock=lock, model_id=model_id)
        row = conn.execute(
            select(model_versions).where(
                model_versions.c.model_id == model.model_id, model_versions.c.version == version
            )
        ).first()
        if row is None:
            raise _version_not_found(name, version)
        return model, row

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A write transaction whose model events (`_event`) are inserted at its end, after
        every row lock it takes, in commit order: watchers follow events by id."""
        with self.db.write() as conn:
            pending: list[dict[str, Any]] = []
            conn.info[_PENDING_EVENTS] = pending
            try:
                yield conn
                if pending:
                    self.db.ids_in_commit_order(conn, model_events.name)
                    conn.execute(insert(model_events), pending)
            finally:
                del conn.info[_PENDING_EVENTS]

    def _event(
        self,
        conn: Connection,
        model: Row,
        event_type: str,
        user: str,
        version: int | None = None,
        name: str | None = None,
        **details: Any,
    ) -> None:
        """Record an event of the write `conn` belongs to (a `_write()`)."""
        conn.info[_PENDING_EVENTS].append(
            {
                "model_id": model.model_id,
                "model_name": name or model.name,
                "version": version,
                "event_type": event_type,
                "details": json.dumps({k: str(v) for k, v in details.items()}),
                "user_id": user,
                "event_time": _now(),
            }
        )

    def _touch(self, conn: Connection, model_id: str, version: int | None = None) -> None:
        now = _now()
        conn.execute(
            update(registered_models)
            .where(registered_models.c.model_id == model_id)
            .values(last_update_time=now)
        )
        if version is not None:
            conn.execute(
                update(model_versions)
                .where(model_versions.c.model_id == model_id, model_versions.c.version == version)
                .values(last_update_time=now)
            )

    def _drop_aliases(
        self, conn: Connection, model: Row, version: int, user: str, **details: Any
    ) -> bool:
        """Remove the aliases naming `version` (it is going, or has no files), each with an
        ALIAS_DELETED event carrying `details`; `model`: a row with model_id and name. True if
        there were any."""
        a = model_aliases.c
        of_version = and_(a.model_id == model.model_id, a.version == version)
        removed = conn.execute(select(a.alias).where(of_version).order_by(a.alias)).scalars().all()
        if removed:
            conn.execute(delete(model_aliases).where(of_version))
        for alias in removed:
            self._event(conn, model, "ALIAS_DELETED", user, version=version, alias=alias, **details)
        return bool(removed)

    def _upsert_tag(self, conn: Connection, table: Any, keys: dict[str, Any], value: str) -> None:
        stmt = self._insert(table).values(**keys, value=value)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=list(keys), set_={"value": stmt.excluded.value}
            )
        )

    def _versions(self, conn: Connection, rows: Sequence[Row]) -> list[ModelVersion]:
        """Assemble versions (with tags and aliases) in bulk; rows carry model_id and name. Only
        the wanted versions' tags and aliases are read: reading one version of a model used to
        read every tag of all its versions, inside the writes that return a version too."""
        keys = [(r.model_id, r.version) for r in rows]
        tags: dict[tuple[str, int], dict[str, str]] = {k: {} for k in keys}
        aliases: dict[tuple[str, int], list[str]] = {k: [] for k in keys}
        if keys:
            t, a = model_version_tags.c, model_aliases.c
            for tag in conn.execute(select(model_version_tags).where(_of_versions(t, keys))):
                tags[(tag.model_id, tag.version)][tag.key] = tag.value
            for alias in conn.execute(
                select(model_aliases).where(_of_versions(a, keys)).order_by(a.alias)
            ):
                aliases[(alias.model_id, alias.version)].append(alias.alias)
        return [
            ModelVersion(
                name=r.name,
                version=r.version,
                source=r.source,
                run_id=r.run_id,
                status=ModelVersionStatus(r.status),
                current_stage=Stage(r.current_stage),
                description=r.description,
                status_message=r.status_message,
                tags=tags[(r.model_id, r.version)],
                aliases=aliases[(r.model_id, r.version)],
                storage_location=r.storage_location,
                creation_timestamp=r.creation_time,
                last_updated_timestamp=r.last_update_time,
                user_id=r.user_id,
                run_link=r.run_link,
            )
            for r in rows
        ]

    def _version_select(self) -> Any:
        return select(model_versions, registered_models.c.name).join(
            registered_models, registered_models.c.model_id == model_versions.c.model_id
        )

    def _registered_models(self, conn: Connection, rows: Sequence[Row]) -> list[RegisteredModel]:
        ids = [r.model_id for r in rows]
        tags: dict[str, dict[str, str]] = {i: {} for i in ids}
        aliases: dict[str, dict[str, int]] = {i: {} for i in ids}
        latest: dict[str, list[ModelVersion]] = {i: [] for i in ids}
        if ids:
            for t in conn.execute(
                select(registered_model_tags).where(registered_model_tags.c.model_id.in_(ids))
            ):
                tags[t.model_id][t.key] = t.value
            for a in conn.execute(select(model_aliases).where(model_aliases.c.model_id.in_(ids))):
                aliases[a.model_id][a.alias] = a.version
            mv = model_versions.c
            newest = (
                select(mv.model_id, func.max(mv.version).label("version"))
                .where(mv.model_id.in_(ids), mv.status == ModelVersionStatus.READY.value)
                .group_by(mv.model_id, mv.current_stage)
                .subquery()
            )
            newest_rows = conn.execute(
                self._version_select().join(
                    newest, and_(newest.c.model_id == mv.model_id, newest.c.version == mv.version)
                )
            ).all()
            for row, version in zip(newest_rows, self._versions(conn, newest_rows), strict=True):
                latest[row.model_id].append(version)
        return [
            RegisteredModel(
                name=r.name,
                description=r.description,
                tags=tags[r.model_id],
                aliases=dict(sorted(aliases[r.model_id].items())),
                latest_versions=sorted(latest[r.model_id], key=lambda v: v.version),
                creation_timestamp=r.creation_time,
                last_updated_timestamp=r.last_update_time,
                user_id=r.user_id,
            )
            for r in rows
        ]

    def _written_model(self, conn: Connection, model_id: str) -> RegisteredModel:
        """The model as the write `conn` leaves it. Read after the commit, by name, a rename or
        delete committed in between made a write that took effect answer NOT_FOUND."""
        row = conn.execute(
            select(registered_models).where(registered_models.c.model_id == model_id)
        ).one()
        return self._registered_models(conn, [row])[0]

    # -- registered models ---------------------------------------------------------------------

    def _create_model_row(
        self,
        conn: Connection,
        name: str,
        description: str,
        tags: dict[str, str],
        user: str,
        now: int | None = None,
    ) -> Row:
        now = _now() if now is None else now
        model_id = uuid.uuid4().hex
        conn.execute(
            insert(registered_models).values(
                model_id=model_id,
                name=name,
                description=description,
                user_id=user,
                next_version=1,
                creation_time=now,
                last_update_time=now,
            )
        )
        if tags:
            conn.execute(
                insert(registered_model_tags),
                [{"model_id": model_id, "key": k, "value": v} for k, v in tags.items()],
            )
        row = self._model(conn, name)
        self._event(conn, row, "MODEL_CREATED", user)
        return row

    def create_registered_model(
        self, name: str, description: str, tags: dict[str, str], user: str
    ) -> tuple[RegisteredModel, str]:
        try:
            with self._write() as conn:
                row = self._create_model_row(conn, name, description, tags, user)
                return self._registered_models(conn, [row])[0], row.model_id
        except IntegrityError:
            raise AlreadyExists(
                f"registered model {name!r} already exists; choose another name",
                resource_type="registered_model",
                resource_name=name,
            ) from None

    def get_registered_model(self, name: str, model_id: str | None = None) -> RegisteredModel:
        with self.db.read() as conn:
            model = self._model(conn, name, model_id=model_id)
            return self._registered_models(conn, [model])[0]

    def rename_registered_model(
        self, name: str, new_name: str, user: str, model_id: str | None = None
    ) -> RegisteredModel:
        try:
            with self._write() as conn:
                model = self._model(conn, name, lock=True, model_id=model_id)
                conn.execute(
                    update(registered_models)
                    .where(registered_models.c.model_id == model.model_id)
                    .values(name=new_name, last_update_time=_now())
                )
                self._event(conn, model, "MODEL_RENAMED", user, name=new_name, old_name=name)
                return self._written_model(conn, model.model_id)
        except IntegrityError:
            raise AlreadyExists(
                f"registered model {new_name!r} already exists; choose another name",
                resource_type="registered_model",
                resource_name=new_name,
            ) from None

    def update_registered_model(
        self, name: str, description: str, user: str, model_id: str | None = None
    ) -> RegisteredModel:
        with self._write() as conn:
            model = self._model(conn, name, lock=True, model_id=model_id)
            conn.execute(
                update(registered_models)
                .where(registered_models.c.model_id == model.model_id)
                .values(description=description, last_update_time=_now())
            )
            self._event(conn, model, "MODEL_UPDATED", user, description=description)
            return self._written_model(conn, model.model_id)

    def delete_registered_model(
        self, name: str, user: str, model_id: str | None = None
    ) -> tuple[str, list[str]]:
        with self._write() as conn:
            model = self._model(conn, name, lock=True, model_id=model_id)
            locations = list(
                conn.execute(
                    select(model_versions.c.storage_location).where(
                        model_versions.c.model_id == model.model_id
                    )
                ).scalars()
            )
            for table in (
                model_version_files,
                model_version_tags,
                model_aliases,
                model_versions,
                registered_model_tags,
            ):
                conn.execute(delete(table).where(table.c.model_id == model.model_id))
            conn.execute(
                delete(registered_models).where(registered_models.c.model_id == model.model_id)
            )
            self._event(conn, model, "MODEL_DELETED", user)
        return model.model_id, locations

    def model_id_of(self, name: str) -> str | None:
        with self.db.read() as conn:
            return conn.execute(
                select(registered_models.c.model_id).where(registered_models.c.name == name)
            ).scalar()

    def search_registered_models(
        self,
        filters: Sequence[Comparison],
        order_by: Sequence[OrderKey],
        max_results: int,
        page_token: str,
        readable: Visibility | None = None,
    ) -> PagedList[RegisteredModel]:
        # Not who reads: what a caller may read changes as it creates models or gains grants.
        query = fingerprint("registered_models", filters, order_by)
        rm = registered_models.c
        scope = select(registered_models)
        if readable is not None:
            scope = scope.where(rm.model_id.in_(readable.granted(registered_model_permissions)))
        stmt = scope
        for nth, c in enumerate(filters):
            if c.entity == "tag":
                tags = registered_model_tags.c
                match = select(1).where(tags.model_id == rm.model_id, tags.key == c.key)
                stmt = stmt.where(key_value_lookup(match, tags.value, c, nth))
            elif c.entity == "attribute" and c.key == "name":
                stmt = stmt.where(compare(rm.name, c, "string"))
            else:
                raise InvalidArgument(
                    "filter: registered models can be filtered by name and tags.<key>",
                    field="filter",
                )
        columns = {
            "name": rm.name,
            "creation_time": rm.creation_time,
            "creation_timestamp": rm.creation_time,
            "last_update_time": rm.last_update_time,
            "last_updated_timestamp": rm.last_update_time,
            "timestamp": rm.last_update_time,  # MLflow's name for it here
        }
        terms = _order(order_by, columns, [Term(rm.name)])
        with self.db.read() as conn:
            rows, token = _page(
                conn, stmt, terms, query, page_token, max_results, scope=scope, key=_MODEL_KEY
            )
            return PagedList(self._registered_models(conn, rows), token)

    def set_registered_model_tag(
        self, name: str, key: str, value: str, user: str, model_id: str | None = None
    ) -> None:
        with self._write() as conn:
            model = self._model(conn, name, lock=True, model_id=model_id)
            self._upsert_tag(
                conn, registered_model_tags, {"model_id": model.model_id, "key": key}, value
            )
            self._touch(conn, model.model_id)
            self._event(conn, model, "MODEL_TAG_SET", user, key=key, value=value)

    def delete_registered_model_tag(
        self, name: str, key: str, user: str, model_id: str | None = None
    ) -> None:
        with self._write() as conn:
            model = self._model(conn, name, lock=True, model_id=model_id)
            deleted = conn.execute(
                delete(registered_model_tags).where(
                    registered_model_tags.c.model_id == model.model_id,
                    registered_model_tags.c.key == key,
                )
            ).rowcount
            if not deleted:
                return  # idempotent, as MLflow's registry: nothing to delete
            self._touch(conn, model.model_id)
            self._event(conn, model, "MODEL_TAG_DELETED", user, key=key)

    # -- versions ------------------------------------------------------------------------------

    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str,
        description: str,
        tags: dict[str, str],
        user: str,
        adding: Callable[[], None] = lambda: None,
        model_id: str | None = None,
        run_link: str = "",
    ) -> tuple[ModelVersion, PendingVersion]:
        for attempt in range(3):
            try:
                return self._create_model_version(
                    name, source, run_id, description, tags, user, adding, model_id, run_link
                )
            except IntegrityError:
                # Two callers created the same new model at once; the loser retries and finds it.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _create_model_version(
        self,
        name: str,
        source: str,
        run_id: str,
        description: str,
        tags: dict[str, str],
        user: str,
        adding: Callable[[], None],
        model_id: str | None,
        run_link: str,
    ) -> tuple[ModelVersion, PendingVersion]:
        with self._write() as conn:
            # Concurrent registrations queue at the model's row lock. A delete or rename of the
            # model holding it leaves no model of that name once it commits: the version then
            # starts a new one, as it would have after them (the model was looked up by name, and
            # its counter bumped by name, so that case used to fail with NoResultFound).
            found = (
                self._model(conn, name, lock=True, model_id=model_id)
                if model_id is not None
                else self._find_model(conn, name, lock=True)
            )
            # One time for every row written, read once the lock is held: a model created by
            # this version was stamped later than its own last update, and versions that waited
            # at the lock were stamped before the version ahead of them.
            now = _now()
            model_created = found is None
            if found is None:
                found = self._create_model_row(conn, name, "", {}, user, now)
            else:
                adding()
            model = conn.execute(
                update(registered_models)
                .where(registered_models.c.model_id == found.model_id)
                .values(next_version=registered_models.c.next_version + 1, last_update_time=now)
                .returning(registered_models)
            ).one()
            version = model.next_version - 1
            location = f"{self.storage_root}/{model.model_id}/{version}"
            conn.execute(
                insert(model_versions).values(
                    model_id=model.model_id,
                    version=version,
                    description=description,
                    source=source,
                    run_id=run_id,
                    status=ModelVersionStatus.PENDING_REGISTRATION.value,
                    status_message="",
                    current_stage=Stage.NONE.value,
                    storage_location=location,
                    user_id=user,
                    creation_time=now,
                    last_update_time=now,
                    run_link=run_link,
                )
            )
            if tags:
                conn.execute(
                    insert(model_version_tags),
                    [
                        {"model_id": model.model_id, "version": version, "key": k, "value": v}
                        for k, v in tags.items()
                    ],
                )
            self._event(conn, model, "VERSION_CREATED", user, version=version, source=source)
            created = self._versions(
                conn,
                conn.execute(
                    self._version_select().where(
                        model_versions.c.model_id == model.model_id,
                        model_versions.c.version == version,
                    )
                ).all(),
            )[0]
        pending = PendingVersion(
            model.model_id, name, version, source, run_id, location, model_created
        )
        return created, pending

    def _load_version(self, conn: Connection, model_id: str, version: int) -> ModelVersion:
        rows = conn.execute(
            self._version_select().where(
                model_versions.c.model_id == model_id, model_versions.c.version == version
            )
        ).all()
        return self._versions(conn, rows)[0]

    def get_model_version(
        self, name: str, version: int, model_id: str | None = None
    ) -> ModelVersion:
        with self.db.read() as conn:
            model, _ = self._version(conn, name, version, model_id=model_id)
            return self._load_version(conn, model.model_id, version)

    def update_model_version(
        self,
        name: str,
        version: int,
        description: str,
        user: str,
        model_id: str | None = None,
    ) -> ModelVersion:
        with self._write() as conn:
            model, _ = self._version(conn, name, version, lock=True, model_id=model_id)
            conn.execute(
                update(model_versions)
                .where(
                    model_versions.c.model_id == model.model_id, model_versions.c.version == version
                )
                .values(description=description)
            )
            self._touch(conn, model.model_id, version)
            self._event(
                conn, model, "VERSION_UPDATED", user, version=version, description=description
            )
            return self._load_version(conn, model.model_id, version)

    def delete_model_version(
        self, name: str, version: int, user: str, model_id: str | None = None
    ) -> str:
        with self._write() as conn:
            model, row = self._version(conn, name, version, lock=True, model_id=model_id)
            self._drop_aliases(conn, model, version, user)
            key = and_(
                model_version_files.c.model_id == model.model_id,
                model_version_files.c.version == version,
            )
            conn.execute(delete(model_version_files).where(key))
            conn.execute(
                delete(model_version_tags).where(
                    model_version_tags.c.model_id == model.model_id,
                    model_version_tags.c.version == version,
                )
            )
            conn.execute(
                delete(model_versions).where(
                    model_versions.c.model_id == model.model_id, model_versions.c.version == version
                )
            )
            self._touch(conn, model.model_id)
            self._event(conn, model, "VERSION_DELETED", user, version=version)
        return row.storage_location

    def search_model_versions(
        self,
        filters: Sequence[Comparison],
        order_by: Sequence[OrderKey],
        max_results: int,
        page_token: str,
        readable: Visibility | None = None,
    ) -> PagedList[ModelVersion]:
        query = fingerprint("model_versions", filters, order_by)
        mv = model_versions.c
        scope = self._version_select()
        if readable is not None:
            scope = scope.where(mv.model_id.in_(readable.granted(registered_model_permissions)))
        stmt = scope
        string_columns = {
            "name": registered_models.c.name,
            "run_id": mv.run_id,
            "source": mv.source,
            "source_path": mv.source,
            "current_stage": mv.current_stage,
            "status": mv.status,
        }
        for nth, c in enumerate(filters):
            if c.entity == "tag":
                tags = model_version_tags.c
                match = select(1).where(
                    tags.model_id == mv.model_id, tags.version == mv.version, tags.key == c.key
                )
                stmt = stmt.where(key_value_lookup(match, tags.value, c, nth))
            elif c.entity == "attribute" and c.key in string_columns:
                stmt = stmt.where(compare(string_columns[c.key], c, "string"))
            elif c.entity == "attribute" and c.key in ("version", "version_number"):
                stmt = stmt.where(compare(mv.version, c, "number"))
            else:
                raise InvalidArgument(
                    "filter: model versions can be filtered by name, run_id, source, version, "
                    "current_stage, status and tags.<key>",
                    field="filter",
                )
        columns = {
            "name": registered_models.c.name,
            "version": mv.version,
            "version_number": mv.version,
            "creation_time": mv.creation_time,
            "creation_timestamp": mv.creation_time,
            "last_update_time": mv.last_update_time,
            "last_updated_timestamp": mv.last_update_time,
        }
        tiebreaks = [Term(registered_models.c.name), Term(mv.version, ascending=False)]
        terms = _order(order_by, columns, tiebreaks)
        with self.db.read() as conn:
            rows, token = _page(
                conn, stmt, terms, query, page_token, max_results, scope=scope, key=_VERSION_KEY
            )
            return PagedList(self._versions(conn, rows), token)

    def version_stage(self, name: str, version: int) -> Stage | None:
        mv = model_versions.c
        with self.db.read() as conn:
            stage = conn.execute(
                select(mv.current_stage)
                .join(registered_models, registered_models.c.model_id == mv.model_id)
                .where(registered_models.c.name == name, mv.version == version)
            ).scalar()
        return None if stage is None else Stage(stage)

    def get_latest_versions(
        self, name: str, stages: Sequence[Stage], model_id: str | None = None
    ) -> list[ModelVersion]:
        model = self.get_registered_model(name, model_id)
        wanted = set(stages)
        return [v for v in model.latest_versions if not wanted or v.current_stage in wanted]

    def set_model_version_tag(
        self,
        name: str,
        version: int,
        key: str,
        value: str,
        user: str,
        model_id: str | None = None,
    ) -> None:
        with self._write() as conn:
            model, _ = self._version(conn, name, version, lock=True, model_id=model_id)
            self._upsert_tag(
                conn,
                model_version_tags,
                {"model_id": model.model_id, "version": version, "key": key},
                value,
            )
            self._touch(conn, model.model_id, version)
            self._event(conn, model, "VERSION_TAG_SET", user, version=version, key=key, value=value)

    def delete_model_version_tag(
        self, name: str, version: int, key: str, user: str, model_id: str | None = None
    ) -> None:
        with self._write() as conn:
            model, _ = self._version(conn, name, version, lock=True, model_id=model_id)
            deleted = conn.execute(
                delete(model_version_tags).where(
                    model_version_tags.c.model_id == model.model_id,
                    model_version_tags.c.version == version,
                    model_version_tags.c.key == key,
                )
            ).rowcount
            if not deleted:
                return  # idempotent, as MLflow's registry: nothing to delete
            self._touch(conn, model.model_id, version)
            self._event(conn, model, "VERSION_TAG_DELETED", user, version=version, key=key)

    def transition_stage(
        self,
        name: str,
        version: int,
        stage: Stage,
        archive_existing: bool,
        user: str,
        leaving_production: Callable[[], None] = lambda: None,
        model_id: str | None = None,
    ) -> ModelVersion:
        with self._write() as conn:
            model, row = self._version(conn, name, version, lock=True, model_id=model_id)
            _not_failed(row, name, f"move it to {stage.value}")
            if (
                archive_existing
                and stage in (Stage.STAGING, Stage.PRODUCTION)
                and row.status == ModelVersionStatus.PENDING_REGISTRATION.value
            ):
                # Archiving now would leave the stage with no version to load until this one
                # is READY, and with none at all if its registration fails.
                raise FailedPrecondition(
                    f"version {version} of model {name!r} is still PENDING_REGISTRATION; "
                    f"archiving the versions in {stage.value} now would leave none to load: "
                    "move it with archive_existing_versions once it is READY, or without it now",
                    resource_type="model_version",
                    resource_name=f"{name}/{version}",
                )
            if row.current_stage == Stage.PRODUCTION.value and stage != Stage.PRODUCTION:
                leaving_production()
            mv = model_versions.c
            conn.execute(
                update(model_versions)
                .where(mv.model_id == model.model_id, mv.version == version)
                .values(current_stage=stage.value)
            )
            self._touch(conn, model.model_id, version)
            self._event(
                conn,
                model,
                "STAGE_TRANSITIONED",
                user,
                version=version,
                stage=stage.value,
                previous_stage=row.current_stage,
            )
            if archive_existing and stage in (Stage.STAGING, Stage.PRODUCTION):
                others = (
                    conn.execute(
                        select(mv.version).where(
                            mv.model_id == model.model_id,
                            mv.current_stage == stage.value,
                            mv.version != version,
                        )
                    )
                    .scalars()
                    .all()
                )
                for other in others:
                    conn.execute(
                        update(model_versions)
                        .where(mv.model_id == model.model_id, mv.version == other)
                        .values(current_stage=Stage.ARCHIVED.value, last_update_time=_now())
                    )
                    self._event(
                        conn,
                        model,
                        "STAGE_TRANSITIONED",
                        user,
                        version=other,
                        stage=Stage.ARCHIVED.value,
                        previous_stage=stage.value,
                    )
            return self._load_version(conn, model.model_id, version)

    # -- aliases -------------------------------------------------------------------------------

    def set_alias(
        self, name: str, alias: str, version: int, user: str, model_id: str | None = None
    ) -> None:
        with self._write() as conn:
            model, row = self._version(conn, name, version, lock=True, model_id=model_id)
            _not_failed(row, name, f"point alias {alias!r} at it")
            previous = self._find_alias(conn, model, alias)
            if previous is None and (other := self._alias_in_other_case(conn, model, alias)):
                raise FailedPrecondition(
                    f"model {name!r} holds alias {other!r}, which {alias!r} differs from only in "
                    f"case; move {other!r} itself, or delete it first, or choose a name that "
                    "differs in more than case",
                    resource_type="model_alias",
                    resource_name=f"{name}@{other}",
                )
            stmt = self._insert(model_aliases).values(
                model_id=model.model_id, alias=alias, version=version
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["model_id", "alias"], set_={"version": stmt.excluded.version}
                )
            )
            self._touch(conn, model.model_id)
            details: dict[str, Any] = {"alias": alias}
            if previous is not None:
                details["previous_version"] = previous
            self._event(conn, model, "ALIAS_SET", user, version=version, **details)

    def delete_alias(self, name: str, alias: str, user: str, model_id: str | None = None) -> None:
        with self._write() as conn:
            model = self._model(conn, name, lock=True, model_id=model_id)
            version = self._find_alias(conn, model, alias)
            if version is None:
                return  # idempotent, as MLflow: a retried or racing delete has nothing to do
            conn.execute(
                delete(model_aliases).where(
                    model_aliases.c.model_id == model.model_id, model_aliases.c.alias == alias
                )
            )
            self._touch(conn, model.model_id)
            self._event(conn, model, "ALIAS_DELETED", user, version=version, alias=alias)

    def get_version_by_alias(
        self, name: str, alias: str, model_id: str | None = None
    ) -> ModelVersion:
        with self.db.read() as conn:
            model = self._model(conn, name, model_id=model_id)
            return self._load_version(conn, model.model_id, self._alias_version(conn, model, alias))

    # -- registration and files ----------------------------------------------------------------

    def pending_versions(self) -> list[PendingVersion]:
        with self.db.read() as conn:
            rows = conn.execute(
                self._version_select().where(
                    model_versions.c.status == ModelVersionStatus.PENDING_REGISTRATION.value
                )
            ).all()
        return [
            PendingVersion(r.model_id, r.name, r.version, r.source, r.run_id, r.storage_location)
            for r in rows
        ]

    def _pending_row(self, conn: Connection, pending: PendingVersion) -> Row | None:
        """The pending version's row, its model's row locked first (the lock order above)."""
        conn.execute(
            select(registered_models.c.model_id)
            .where(registered_models.c.model_id == pending.model_id)
            .with_for_update()
        )
        return conn.execute(
            self._version_select().where(
                model_versions.c.model_id == pending.model_id,
                model_versions.c.version == pending.version,
            )
        ).first()

    def finish_registration(self, pending: PendingVersion, files: Sequence[StoredFile]) -> bool:
        with self._write() as conn:
            row = self._pending_row(conn, pending)
            if row is None or row.status != ModelVersionStatus.PENDING_REGISTRATION.value:
                return row is not None
            conn.execute(
                delete(model_version_files).where(
                    model_version_files.c.model_id == pending.model_id,
                    model_version_files.c.version == pending.version,
                )
            )
            if files:
                conn.execute(
                    insert(model_version_files),
                    [
                        {
                            "model_id": pending.model_id,
                            "version": pending.version,
                            "path": f.path,
                            "file_size": f.file_size,
                            "sha256": f.sha256,
                        }
                        for f in files
                    ],
                )
            self._set_status(conn, pending, ModelVersionStatus.READY, "")
            self._event(conn, row, "VERSION_READY", "modelyard", version=pending.version)
        return True

    def fail_registration(self, pending: PendingVersion, message: str) -> bool:
        with self._write() as conn:
            row = self._pending_row(conn, pending)
            if row is None or row.status != ModelVersionStatus.PENDING_REGISTRATION.value:
                return row is not None
            self._set_status(conn, pending, ModelVersionStatus.FAILED_REGISTRATION, message)
            # It will never have files: an alias naming it would fail every load through it.
            reason = f"version {pending.version} failed registration: {message}"
            if self._drop_aliases(conn, row, pending.version, "modelyard", reason=reason):
                self._touch(conn, pending.model_id)
            self._event(
                conn, row, "VERSION_FAILED", "modelyard", version=pending.version, reason=message
            )
        return True

    def _set_status(
        self, conn: Connection, pending: PendingVersion, status: ModelVersionStatus, message: str
    ) -> None:
        conn.execute(
            update(model_versions)
            .where(
                model_versions.c.model_id == pending.model_id,
                model_versions.c.version == pending.version,
            )
            .values(status=status.value, status_message=message, last_update_time=_now())
        )

    def _ready_version(
        self, conn: Connection, name: str, version: int, model_id: str | None
    ) -> tuple[Row, Row]:
        """The model and its version, which must be READY to have files."""
        model, row = self._version(conn, name, version, model_id=model_id)
        if row.status != ModelVersionStatus.READY.value:
            raise FailedPrecondition(
                f"version {version} of model {name!r} is {row.status}"
                + (f" ({row.status_message})" if row.status_message else "")
                + "; its files are available once it is READY",
                resource_type="model_version",
                resource_name=f"{name}/{version}",
            )
        return model, row

    def find_version_file(
        self, name: str, version: int, path: str, model_id: str | None = None
    ) -> tuple[str, FileInfo | None]:
        f = model_version_files.c
        with self.db.read() as conn:
            model, row = self._ready_version(conn, name, version, model_id)
            # By the model's id, not its name: the file is the version's whatever `name` names now.
            found = conn.execute(
                select(model_version_files).where(
                    f.model_id == model.model_id, f.version == version, f.path == path
                )
            ).first()
        if found is None:
            return row.storage_location, None
        info = FileInfo(
            path=found.path, is_dir=False, file_size=found.file_size, sha256=found.sha256
        )
        return row.storage_location, info

    def list_version_files(
        self,
        name: str,
        version: int,
        prefix: str,
        after: str = "",
        limit: int | None = None,
        model_id: str | None = None,
    ) -> list[FileInfo]:
        f = model_version_files.c
        with self.db.read() as conn:
            model, _ = self._ready_version(conn, name, version, model_id)
            stmt = select(model_version_files).where(
                f.model_id == model.model_id, f.version == version
            )
            if prefix:
                stmt = stmt.where(
                    (f.path == prefix) | ((f.path > prefix + "/") & (f.path < prefix + "0"))
                )
            if after:
                stmt = stmt.where(f.path > after)
            rows = conn.execute(stmt.order_by(f.path).limit(limit)).all()
        return [
            FileInfo(path=r.path, is_dir=False, file_size=r.file_size, sha256=r.sha256)
            for r in rows
        ]

    # -- events --------------------------------------------------------------------------------

    def list_events(
        self,
        name: str,
        since_event_id: int,
        max_results: int,
        newest_first: bool = False,
        readable: Visibility | None = None,
        before_event_id: int = 0,
    ) -> list[ModelEvent]:
        e = model_events.c
        stmt = select(model_events).where(e.event_id > since_event_id)
        if before_event_id:
            stmt = stmt.where(e.event_id < before_event_id)
        if readable is not None:
            stmt = stmt.where(e.model_id.in_(readable.granted(registered_model_permissions)))
        with self.db.read() as conn:
            if name:
                stmt = stmt.where(e.model_id == self._history_model_id(conn, name))
            order = e.event_id.desc() if newest_first else e.event_id.asc()
            rows = conn.execute(stmt.order_by(order).limit(max_results)).all()
        return [
            ModelEvent(
                event_id=r.event_id,
                event_type=r.event_type,
                model_name=r.model_name,
                version=r.version,
                details=json.loads(r.details),
                user_id=r.user_id,
                timestamp=r.event_time,
            )
            for r in rows
        ]

    def _history_model_id(self, conn: Connection, name: str) -> str | None:
        """Whose history `name` means: the model called that now, else the last model that was
        (renamed or deleted). Events carry the name at their time; a model's history is all
        of its events, before and after renames, and none of another model's of that name."""
        model = self._find_model(conn, name)
        if model is not None:
            return str(model.model_id)
        e = model_events.c
        last = select(e.model_id).where(e.model_name == name).order_by(e.event_id.desc())
        return conn.execute(last.limit(1)).scalar()

    def last_event_id(self) -> int:
        with self.db.read() as conn:
            return (
                conn.execute(
                    select(model_events.c.event_id)
                    .order_by(model_events.c.event_id.desc())
                    .limit(1)
                ).scalar()
                or 0
            )


def _of_versions(columns: Any, keys: Sequence[tuple[str, int]]) -> Any:
    """Rows of the versions `keys` ((model_id, version) pairs) in a table keyed by both. One
    model's are matched as model_id = ? AND version IN (...): SQLite searches its index on both
    columns for that, but on model_id alone for a pair IN (every row of the model)."""
    model_ids = {m for m, _ in keys}
    if len(model_ids) == 1:
        return and_(columns.model_id == keys[0][0], columns.version.in_([v for _, v in keys]))
    return tuple_(columns.model_id, columns.version).in_(keys)


def _order(
    order_by: Sequence[OrderKey], columns: dict[str, Any], tiebreaks: Sequence[Term]
) -> list[Term]:
    """The terms of `order_by`, then each of `tiebreaks` on a column it does not name: every row
    has a place of its own (MLflow's order of ties: name ASC, then version DESC for versions),
    which keyset page tokens need. A column named twice (under any of its names) is refused, as
    MLflow does."""
    terms = []
    named: dict[str, str] = {}  # column -> the order_by key that named it
    for key in order_by:
        column = columns.get(key.key) if key.entity == "attribute" else None
        if column is None:
            # As the caller wrote it: 'tags.team' was named as 'team', an attribute that reads
            # as if it were missing from the list of those that exist.
            written = key.key if key.entity == "attribute" else f"{key.entity}s.{key.key}"
            raise InvalidArgument(
                f"order_by: cannot order by {written!r}; use one of {', '.join(sorted(columns))}",
                field="order_by",
            )
        if column.key in named:
            raise InvalidArgument(
                f"order_by: {key.key!r} orders by a field given twice (first as "
                f"{named[column.key]!r}); name each field once",
                field="order_by",
            )
        named[column.key] = key.key
        terms.append(Term(column, key.ascending))
    return terms + [t for t in tiebreaks if t.expr.key not in named]


# The primary keys a token names a row by when its position is too long to carry (keyset): a
# model's name, its tie-break, may be 256 characters.
_MODEL_KEY = (Term(registered_models.c.model_id),)
_VERSION_KEY = (Term(model_versions.c.model_id), Term(model_versions.c.version))


def _page(
    conn: Connection,
    stmt: Any,
    terms: Sequence[Term],
    query: str,
    page_token: str,
    max_results: int,
    *,
    scope: Any,
    key: Sequence[Term],
) -> tuple[Sequence[Row], str | None]:
    """One page of `stmt` in the order of `terms`, from the position `page_token` holds, and
    the token of the next page (None after the last). Keyset, as tracking's searches: an offset
    skipped a row when one before the page was deleted, and repeated one when a model or
    version was created before it. A long position's token names its row by `key`, read back
    from `scope` (stmt before its filters: the rows the caller may read)."""
    at = read_position(terms, page_token, query, key=key)
    after = resume(conn, scope, terms, key, at)
    binds: dict[str, object] = {}
    if after is not None:
        stmt = stmt.where(after_clause(terms, after))
        binds = after_binds(terms, after)
    rows = conn.execute(keyed(stmt, terms).limit(max_results + 1), binds).all()
    if len(rows) <= max_results:
        return rows, None
    return rows[:max_results], next_token(query, terms, rows[max_results - 1]._mapping, key)
