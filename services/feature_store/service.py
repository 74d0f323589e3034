"""FeaturesService: definitions, training sets, materialization, online lookups and pushes."""

from __future__ import annotations

import functools
import io
import logging
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from modelyard.convert.common import MIN_SECONDS
from modelyard.entities.common import Grant, PermissionLevel
from modelyard.errors import (
    FailedPrecondition,
    InvalidArgument,
    ModelyardError,
    NotFound,
    PermissionDenied,
)
from modelyard.features.definitions import (
    Definition,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    ValueType,
    kind_of,
)
from modelyard.services.common import identity
from modelyard.services.common import validation as v
from modelyard.services.common.artifacts import ArtifactStore
from modelyard.services.common.auth.grants import GrantStore
from modelyard.services.common.auth.interceptor import Access
from modelyard.services.common.auth.policy import role_level
from modelyard.services.common.identity import Identity
from modelyard.services.feature_store import definitions as defs
from modelyard.services.feature_store.offline import push_log
from modelyard.services.feature_store.offline.base import (
    RESERVED_PREFIX,
    OfflineEngine,
    ViewRequest,
)
from modelyard.services.feature_store.online.base import (
    OnlineRow,
    OnlineStore,
    entity_keys,
    online_name,
    row_orders,
)
from modelyard.services.feature_store.source_locations import SourceLocations
from modelyard.services.feature_store.store.sql import (
    MaterializationRecord,
    SqlFeatureStore,
    Stored,
)

log = logging.getLogger(__name__)

MAX_ONLINE_ROWS = 10_000
GRANTED_KINDS = ("feature_view", "feature_service")
MIN_MS = MIN_SECONDS * 1000  # 0001-01-01, the first instant a Timestamp holds


# How far ahead of the server's clock a materialization window may end: room for clients'
# clocks and time zone slips, not for a far-off date (a window's end is where incremental runs
# continue from).
MAX_END_AHEAD_MS = 24 * 3600 * 1000


def _now_ms() -> int:
    return int(time.time() * 1000)


def _shown_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


@dataclass(frozen=True)
class OnlineColumn:
    """One feature's values for the entity rows. A view's features share one `statuses` and one
    `event_times` list (the same objects), since they were stored and read together."""

    name: str
    dtype: ValueType
    values: Sequence[Any]
    statuses: list[str]  # PRESENT, NOT_FOUND, OUTSIDE_MAX_AGE
    event_times: list[int | None]  # ms


def _by_feature(
    records: Sequence[dict[str, Any] | None], features: Sequence[str]
) -> list[Sequence[Any]] | None:
    """Each feature's values across the rows (None for a row not found), picked and transposed
    in C-speed passes rather than a dict lookup per value; None if a row lacks one of the
    features (stored before it was added), which the caller answers a feature at a time."""
    pick = itemgetter(*features)
    single = len(features) == 1  # then itemgetter gives the value, not a tuple
    gap = None if single else (None,) * len(features)
    try:
        rows = [gap if r is None else pick(r) for r in records]
    except KeyError:
        return None
    return [rows] if single else list(zip(*rows, strict=True))


# The artifact store's folder for training sets written with output_uri.
TRAINING_SETS = "training-sets"


class TrainingSetOutput:
    """Batches spooled to a local Parquet file as they stream out, then stored in one upload,
    so a training set larger than memory can still be written."""

    def __init__(self, artifacts: ArtifactStore, key: str) -> None:
        self._artifacts = artifacts
        self._key = key
        self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by finish() or abort()
        self._writer: pq.ParquetWriter | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._file, batch.schema)
        self._writer.write_batch(batch)

    def finish(self, schema: pa.Schema) -> str:
        """Upload; returns the file's sha256."""
        try:
            if self._writer is None:
                self._writer = pq.ParquetWriter(self._file, schema)
            self._writer.close()
            self._file.seek(0)
            chunks = iter(lambda: self._file.read(1024 * 1024), b"")
            return self._artifacts.write(self._key, chunks).sha256
        finally:
            self._file.close()

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._file.close()


def _check_entity_columns(columns: Sequence[str], requests: Sequence[ViewRequest]) -> None:
    """A training set's columns are the entity rows' and then the features': a name in both
    would leave two columns of that name, and the engine's own working columns are reserved."""
    twice = v.named_twice(columns)
    if twice is not None:
        raise InvalidArgument(
            f"the entity rows have two columns named {twice!r}; keep one", field="entities"
        )
    for column in columns:
        if not column:  # the engine would give it a name of its own ('v2')
            raise InvalidArgument(
                "the entity rows have a column with no name; name it or drop it",
                field="entities",
            )
        if column.startswith(RESERVED_PREFIX):
            raise InvalidArgument(
                f"the entity rows have a column {column!r}; names starting with "
                f"{RESERVED_PREFIX!r} are the feature store's own: rename it",
                field="entities",
            )
    taken = set(columns)
    for request in requests:
        for name in request.output_names:
            if name in taken:
                raise InvalidArgument(
                    f"the entity rows already have a column {name!r}, which feature view "
                    f"{request.view.name!r} would add; drop or rename it, or ask for full "
                    "feature names (view__feature)",
                    field="entities",
                )


class FeatureAuthorizer:
    """Grants on feature views and services, keyed "<kind>:<name>"."""

    def __init__(self, grants: GrantStore, store: SqlFeatureStore) -> None:
        self.grants = grants
        self.store = store

    def level(self, who: Identity, kind: str, name: str) -> PermissionLevel | None:
        levels = [
            lvl
            for lvl in (role_level(who.roles, kind), self.grants.level(f"{kind}:{name}", who.name))
            if lvl is not None
        ]
        return max(levels) if levels else None

    def readable(self) -> Callable[[str, str], bool]:
        """Whether the current caller may READ a (kind, name): for filtering lists, where one
        definition may come up many times (each asked once). Entities are shared vocabulary."""
        who = identity.current()
        if who.unrestricted:
            return lambda kind, name: True

        @functools.cache
        def may_read(kind: str, name: str) -> bool:
            if kind not in GRANTED_KINDS:
                return True
            return (self.level(who, kind, name) or 0) >= PermissionLevel.READ

        return may_read

    def require(self, kind: str, name: str, needed: PermissionLevel, to: str = "") -> None:
        """`to` says what the level is needed for, when the call does more than one thing."""
        who = identity.current()
        if who.unrestricted or kind not in GRANTED_KINDS:
            return
        have = self.level(who, kind, name)
        if have is None or have < needed:
            raise PermissionDenied(
                f"{who.name} needs {needed.name} on {kind} {name!r}{f' to {to}' if to else ''} "
                f"(has {have.name if have else 'no access'}); ask someone with MANAGE on it",
                resource_type=kind,
                resource_name=name,
            )

    def access(self, who: Identity, resource_type: str, key: str) -> Access:
        kind, _, name = (
            key.partition(":") if resource_type == "definition" else (resource_type, "", key)
        )
        resource = f"{kind}/{name}"
        if kind not in GRANTED_KINDS:
            return Access(resource, True, PermissionLevel.READ)
        if self.store.find(kind, name) is None:
            return Access(resource, exists=False)
        return Access(resource, True, self.level(who, kind, name))


# Where a deleted view's rows are dropped from: its online rows, its pushed offline rows.
CLEANUP_STORES = ("online", "offline")


class FeaturesService:
    def __init__(
        self,
        store: SqlFeatureStore,
        engine: OfflineEngine,
        online: OnlineStore,
        authorizer: FeatureAuthorizer,
        artifacts: ArtifactStore,
        source_locations: SourceLocations,
    ) -> None:
        self.store = store
        self.engine = engine
        self.online = online
        self.authorizer = authorizer
        self.artifacts = artifacts
        self.source_locations = source_locations
        self.push_log_root = push_log.log_root(artifacts.root_uri)

    # -- definitions ---------------------------------------------------------------------------

    def _normalize(
        self, desired: Sequence[Definition], existing: dict[tuple[str, str], Definition]
    ) -> list[Definition]:
        entities = {n: e for (_, n), e in existing.items() if isinstance(e, Entity)}
        entities |= {d.name: d for d in desired if isinstance(d, Entity)}
        out: list[Definition] = []
        for i, d in enumerate(desired):
            if isinstance(d, FeatureView):
                keys = [k.name for e in d.entities if e in entities for k in entities[e].join_keys]
                d = defs.without_join_keys(d, keys)
                before = existing.get(("feature_view", d.name))
                d = defs.with_stored_password(d, before, f"definitions[{i}].feature_view")
            out.append(d)
        return out

    def _check_sources(
        self, desired: Sequence[Definition], existing: dict[tuple[str, str], Definition]
    ) -> None:
        """A new or moved source must lie in a location sources may use; a view whose source
        stays (an admin's, say) may be edited by whoever holds EDIT on it."""
        for i, d in enumerate(desired):
            if isinstance(d, FeatureView):
                before = existing.get(("feature_view", d.name))
                if not (isinstance(before, FeatureView) and before.source == d.source):
                    self.source_locations.check(f"definitions[{i}].feature_view", d)

    def _check_steps(self, steps: Sequence[defs.Step], desired: Sequence[Definition]) -> None:
        """Changing needs EDIT; deleting needs MANAGE, since it drops every grant and whoever
        creates the name again owns it. A feature service serves its views' values to anyone
        with USE on it, so defining one needs USE on each view it projects (views created by
        this apply are the caller's)."""
        services = {d.name: d for d in desired if isinstance(d, FeatureService)}
        created = {s.name for s in steps if s.action == "create" and s.kind == "feature_view"}
        for step in steps:
            if step.kind not in GRANTED_KINDS:
                continue
            if step.action == "update":
                self.authorizer.require(step.kind, step.name, PermissionLevel.EDIT)
            elif step.action == "delete":
                self.authorizer.require(step.kind, step.name, PermissionLevel.MANAGE, "delete it")
            if step.kind == "feature_service" and step.action in ("create", "update"):
                for view in sorted(
                    {p.feature_view for p in services[step.name].projections} - created
                ):
                    self.authorizer.require(
                        "feature_view",
                        view,
                        PermissionLevel.USE,
                        f"serve it through feature service {step.name!r}",
                    )

    def apply(self, desired: Sequence[Definition], dry_run: bool, partial: bool) -> list[defs.Step]:
        """Plans (checking everything) and, unless `dry_run`, applies. A view created under the
        name of a deleted one starts with none of its rows: it has a generation of its own,
        which its online rows and pushed offline rows are kept under, so it never reads its
        namesake's (nor those of a push that read the namesake and wrote after the delete),
        and needs neither store to be created."""
        me = identity.current()
        with self.store.applying() as tx:
            existing = tx.existing()
            desired = self._normalize(desired, existing)
            defs.validate(desired, existing, partial)
            steps = defs.plan(desired, existing, partial, tx.history)
            self._check_steps(steps, desired)
            if not me.unrestricted:
                self._check_sources(desired, existing)
            if dry_run:
                return steps
            wanted = {(kind_of(d), d.name): d for d in desired}
            upserts = [wanted[(s.kind, s.name)] for s in steps if s.action in ("create", "update")]
            deletes = [(s.kind, s.name) for s in steps if s.action == "delete"]
            deleted = tx.write(upserts, deletes, me.name)
        self.retry_cleanups()  # those earlier deletes left; this one's are tried below
        for step in steps:
            if step.action == "create" and step.kind in GRANTED_KINDS and me.enforced:
                self.authorizer.grants.set(
                    f"{step.kind}:{step.name}", me.name, PermissionLevel.MANAGE
                )
            if step.action == "delete":
                if step.kind == "feature_view":
                    self._drop_deleted_view(step.name, deleted[(step.kind, step.name)])
                if step.kind in GRANTED_KINDS:
                    self.authorizer.grants.delete_all(f"{step.kind}:{step.name}")
        return steps

    def _drop_deleted_view(self, view_name: str, generation: int) -> None:
        """Frees a deleted view's rows (online, and pushed offline), as a cleanup only: no view
        reads them any more (a view created again under the name has a generation of its own),
        so a store that cannot be reached does not fail the delete, which is committed. A
        cleanup that fails is kept (schema.pending_cleanups) and retried at startup and after
        later applies (retry_cleanups), and logged with how to do it by hand."""
        name = online_name(view_name, generation)
        for store in CLEANUP_STORES:
            try:
                self._clean_up(name, store)
            except Exception as exc:  # any failure leaves only rows no view reads
                self._keep_cleanup(view_name, name, store, exc)

    def _clean_up(self, name: str, store: str) -> None:
        if store == "online":
            self.online.delete_view(name)
        else:
            self._delete_push_log(name)

    def _keep_cleanup(self, view_name: str, name: str, store: str, exc: Exception) -> None:
        try:
            self.store.add_cleanup(name, store)
            kept = "it is retried at startup and after later applies"
        except Exception as kept_exc:  # the database too: the log is all that is left
            kept = f"it could not be kept to retry ({kept_exc})"
        how = (
            f"Redis: UNLINK the keys matching '<prefix>:{name}:*'; SQLite: DELETE FROM "
            f"online_features WHERE view = '{name}'"
            if store == "online"
            else f"delete {self.push_log_root}/{name}/"
        )
        log.warning(
            "feature view %r was deleted, but its %s rows (stored as %r) could not be dropped: "
            "%s; no view reads them, so they only take space: %s, or drop them by hand (%s)",
            view_name,
            store,
            name,
            exc,
            kept,
            how,
        )

    def retry_cleanups(self) -> None:
        """Drops the rows of deleted views that could not be dropped before (see
        _drop_deleted_view), as a cleanup: never fails. A store that fails one is not tried
        again in this pass, so a store still down costs one attempt, not one per view."""
        try:
            pending = self.store.pending_cleanups()
        except Exception as exc:
            log.info("pending cleanups of deleted feature views were not read: %s", exc)
            return
        down: set[str] = set()
        for name, store in pending:
            if store in down:
                continue
            try:
                self._clean_up(name, store)
                self.store.remove_cleanup(name, store)
            except Exception as exc:  # kept for the next pass
                down.add(store)
                log.info("the %s rows of deleted %r are still not dropped: %s", store, name, exc)

    def _push_log_key(self, log_name: str) -> str:
        """The folder of a view's pushed rows; `log_name`: its online name (online_name), so
        each generation has its own and generation 0's is the one named before generations."""
        key = self.artifacts.key_for(f"{self.push_log_root}/{log_name}")
        assert key is not None
        return key

    def _delete_push_log(self, log_name: str) -> None:
        self.artifacts.delete_prefix(self._push_log_key(log_name))

    def list_definitions(self, kind: str) -> list[Stored]:
        if kind:
            _check_kind(kind)
        stored = self.store.list_definitions(kind)
        readable = self.authorizer.readable()
        return [
            replace(s, definition=defs.as_shown(s.definition))
            for s in stored
            if readable(kind_of(s.definition), s.definition.name)
        ]

    def get_definition(self, kind: str, name: str, version: int) -> Stored:
        _check_kind(kind)
        if not name:
            raise InvalidArgument("name is required", field="name")
        if version < 0:
            raise InvalidArgument("version must not be negative", field="version")
        stored = self.store.get(kind, name, version)
        return replace(stored, definition=defs.as_shown(stored.definition))

    def _view(self, name: str) -> FeatureView:
        return self._stored_view(name)[0]

    def _stored_view(self, name: str, fresh: bool = False) -> tuple[FeatureView, int]:
        """The view and its generation; `fresh`: read from the table, not the cache (see
        SqlFeatureStore.find)."""
        found = self.store.find("feature_view", name, fresh)
        if found is None:
            raise NotFound(
                f"feature view {name!r} is not defined; list views with `modelyard features list`",
                resource_type="feature_view",
                resource_name=name,
            )
        assert isinstance(found.definition, FeatureView)
        return found.definition, found.generation

    def join_key_fields(self, view: FeatureView) -> list[Field]:
        return self.store.join_key_fields(view)

    def join_keys(self, view: FeatureView) -> list[str]:
        return [f.name for f in self.store.join_key_fields(view)]

    # -- resolving feature references ----------------------------------------------------------

    def resolve(
        self, refs: Sequence[str], feature_service: str, full_names: bool
    ) -> list[ViewRequest]:
        """Views and features named by "view:feature" refs or a feature service (needs USE)."""
        if feature_service:
            if refs:
                raise InvalidArgument(
                    "give features or feature_service, not both", field="features"
                )
            found = self.store.find("feature_service", feature_service)
            if found is None:
                raise NotFound(
                    f"feature service {feature_service!r} is not defined",
                    resource_type="feature_service",
                    resource_name=feature_service,
                )
            self.authorizer.require("feature_service", feature_service, PermissionLevel.USE)
            service = found.definition
            assert isinstance(service, FeatureService)
            wanted = [(p.feature_view, list(p.features)) for p in service.projections]
            check_views = False
        else:
            if not refs:
                raise InvalidArgument(
                    "name the features (view:feature) or a feature_service", field="features"
                )
            grouped: dict[str, list[str]] = {}
            for ref in refs:
                view_name, sep, feature = ref.partition(":")
                if not sep or not view_name or not feature:
                    raise InvalidArgument(
                        f"feature reference {ref!r} is not view:feature", field="features"
                    )
                if feature in grouped.get(view_name, ()):
                    raise InvalidArgument(
                        f"feature {ref!r} is asked for twice; name it once", field="features"
                    )
                grouped.setdefault(view_name, []).append(feature)
            wanted = list(grouped.items())
            check_views = True
        requests = []
        taken: set[tuple[str, str]] = set()
        for view_name, features in wanted:
            view, generation = self._stored_view(view_name)
            if check_views:
                self.authorizer.require("feature_view", view_name, PermissionLevel.USE)
            names = features or view.feature_names
            unknown = [f for f in names if f not in view.feature_names]
            if unknown:
                raise InvalidArgument(
                    f"feature view {view_name!r} has no feature {unknown[0]!r}; it has "
                    f"{view.feature_names}",
                    field="features",
                )
            # A service applied before apply refused a feature projected twice gives it once.
            names = [f for f in names if (view_name, f) not in taken]
            taken.update((view_name, f) for f in names)
            if names:
                outputs = tuple(f"{view_name}__{f}" if full_names else f for f in names)
                requests.append(
                    ViewRequest(view, tuple(names), outputs, online_name(view_name, generation))
                )
        twice = v.named_twice([o for r in requests for o in r.output_names])
        if twice is not None:
            raise InvalidArgument(
                f"two views give a feature named {twice!r}; set full_feature_names",
                field="features",
            )
        return requests

    # -- offline -------------------------------------------------------------------------------

    def historical(
        self,
        refs: Sequence[str],
        feature_service: str,
        entities: pa.Table,
        event_timestamp_column: str,
        full_names: bool,
    ) -> pa.RecordBatchReader:
        if entities.num_rows == 0:
            raise InvalidArgument(
                "the entity rows are empty; send at least one row", field="entities"
            )
        requests = self.resolve(refs, feature_service, full_names)
        _check_entity_columns(entities.column_names, requests)
        return self.engine.historical(
            entities, requests, event_timestamp_column or "event_timestamp"
        )

    def open_output(self, uri: str) -> TrainingSetOutput:
        """Somewhere to write a training set as Parquet, checked before any work is done. The
        server writes it with its own credentials, so only into the training sets' area of the
        artifact store (with auth on, the caller's own folder of it): the rest holds runs'
        artifacts, registered models and pushed rows, which an output must not overwrite."""
        me = identity.current()
        area = TRAINING_SETS if me.unrestricted else f"{TRAINING_SETS}/{me.name}"
        try:
            key = self.artifacts.key_for(uri)
        except InvalidArgument:  # '..' and the like
            key = None
        if key is None or not key.startswith(area + "/"):
            raise InvalidArgument(
                f"output_uri {v.shown(uri)} must lie in {self.artifacts.uri(area)}/, where "
                f"training sets are written; use e.g. {self.artifacts.uri(area)}/train.parquet",
                field="output_uri",
            )
        return TrainingSetOutput(self.artifacts, key)

    # -- materialization -----------------------------------------------------------------------

    def materialize(
        self, views: Sequence[str], start_ms: int | None, end_ms: int
    ) -> list[MaterializationRecord]:
        """Rows with an event time in [start, end], both included to the ms, as in Feast's
        materialize(start_date, end_date). An incremental run (no start) takes (the view's last
        end, end]: a row at a window's end is in that window only, neither missed nor read
        twice."""
        if start_ms is not None and start_ms > end_ms:
            raise InvalidArgument(
                f"start_time {_shown_ms(start_ms)} is after end_time {_shown_ms(end_ms)}; both "
                "are included, so give a start_time up to end_time",
                field="start_time",
            )
        if end_ms > _now_ms() + MAX_END_AHEAD_MS:
            raise InvalidArgument(
                f"end_time {_shown_ms(end_ms)} is more than a day from now: incremental runs "
                "continue from the latest window's end, so they would stop until then; "
                "give a time up to now",
                field="end_time",
            )
        # Each view once, however often it is named: a view materialized twice in a request
        # is the same work twice (100,000 times, a request that never ends).
        names = list(dict.fromkeys(views)) or [
            s.definition.name
            for s in self.store.list_definitions("feature_view")
            if isinstance(s.definition, FeatureView) and s.definition.online
        ]
        # Every view checked before any is loaded: a refusal of the last one named left the
        # others loaded and recorded, with no answer saying so.
        # Read from the table, not the cache: the rows go under the view's generation, and a
        # view another replica deleted is not materialized.
        windows = []
        for view, generation in (self._stored_view(n, fresh=True) for n in names):
            self.authorizer.require("feature_view", view.name, PermissionLevel.EDIT)
            _require_online(view, "materialize it")
            windows.append((view, generation, *self._window(view, start_ms, end_ms)))
        records: list[MaterializationRecord] = []
        for view, generation, start, first_us in windows:
            name = view.name
            written = 0
            stored_as = online_name(name, generation)
            for batch in self.engine.latest(view, stored_as, first_us, end_ms * 1000 + 999):
                try:
                    rows = self._online_rows(
                        view,
                        batch,
                        batch.column("__event_time_us"),
                        batch.column("__created_time_us"),
                    )
                except InvalidArgument as exc:  # the source's keys: for the view's owner to fix
                    raise FailedPrecondition(
                        f"feature view {name!r}: its source's {exc.message}; fix the source's keys",
                        resource_type="feature_view",
                        resource_name=name,
                    ) from None
                written += self.online.write(stored_as, rows)
            record = MaterializationRecord(name, start, end_ms, written, _now_ms())
            if not self.store.record_materialization(record, generation):
                done = ", ".join(repr(r.feature_view) for r in records) or "none"
                raise NotFound(
                    f"feature view {name!r} was deleted (or created again) while it was "
                    "materialized: its rows went to the deleted view, which no view reads, and "
                    f"the run is not recorded (views of this request recorded before it: {done})"
                    "; materialize it again if it is defined",
                    resource_type="feature_view",
                    resource_name=name,
                )
            records.append(record)
        return records

    def _window(self, view: FeatureView, start_ms: int | None, end_ms: int) -> tuple[int, int]:
        """The start a materialization of `view` records (ms), and the first event time it
        reads (µs): `start_ms`; or, incremental, the view's last end, read from the ms after it
        (that window took its end's ms whole), or without one a TTL back from `end_ms`."""
        if start_ms is not None:
            return start_ms, start_ms * 1000
        last = self.store.last_materialized(view.name)
        if last is None:
            start = 0
            if view.ttl:  # not before the first day a Timestamp holds, however long
                start = max(end_ms - int(view.ttl.total_seconds() * 1000), MIN_MS)
            return start, start * 1000
        if last > end_ms:
            # Not an empty window recorded (from the future back to now) with every run: say
            # why nothing can be done. An end equal to the last one (a daily job run twice a
            # day) is an empty window, as in Feast.
            raise FailedPrecondition(
                f"feature view {view.name!r} is materialized up to {_shown_ms(last)}, after "
                f"end_time {_shown_ms(end_ms)}: incremental runs continue from there; "
                "give a later end_time, or a start_time for this window",
                resource_type="feature_view",
                resource_name=view.name,
            )
        return last, (last + 1) * 1000

    def _online_rows(
        self,
        view: FeatureView,
        data: pa.RecordBatch | pa.Table,
        event_us: pa.Array | pa.ChunkedArray,
        created_us: pa.Array | pa.ChunkedArray | None,
    ) -> list[OnlineRow]:
        """One row per entity: its latest by (event time, created time), the order training sets
        take rows in; of rows equal in both, the last. Times (µs since 1970) are ordered in
        Arrow's passes and values taken a column at a time: materialize's rows are one per
        entity already, and this ran once per entity of a view."""
        fields = self.join_key_fields(view)
        keys = entity_keys(fields, [data.column(k.name).to_pylist() for k in fields])
        times, tiebreaks = row_orders(_combined(event_us), _combined(created_us))
        features = [f for f in view.feature_names if f in data.column_names]
        columns = [data.column(f).to_pylist() for f in features]
        values = [dict(zip(features, row, strict=True)) for row in zip(*columns, strict=True)]
        rows = list(map(OnlineRow, keys, values or [{} for _ in keys], times, tiebreaks))
        if len(set(keys)) == len(rows):
            return rows
        # Keys the source holds apart but the online store does not (two FLOAT32 keys that
        # narrow alike, a pushed key twice).
        latest: dict[str, OnlineRow] = {}
        for row in rows:
            key = row.entity_key
            if key not in latest or row.order >= latest[key].order:
                latest[key] = row
        return list(latest.values())

    def materializations(self, view: str, latest_only: bool = False) -> list[MaterializationRecord]:
        """One view's runs (its READ is checked by the access rule), or without a view every
        run of the views the caller may read: the rule has no view to check then. With
        `latest_only`, only each view's latest run."""
        if view:
            self._view(view)
            return self.store.materializations(view, latest_only)
        readable = self.authorizer.readable()
        return [
            r
            for r in self.store.materializations(latest_only=latest_only)
            if readable("feature_view", r.feature_view)
        ]

    # -- online --------------------------------------------------------------------------------

    def online_features(
        self,
        refs: Sequence[str],
        feature_service: str,
        entities: dict[str, list[Any]],
        full_names: bool,
    ) -> list[OnlineColumn]:
        requests = self.resolve(refs, feature_service, full_names)
        for request in requests:
            _require_online(request.view, "look its features up online")
        if not entities:
            raise InvalidArgument(
                "entities is empty; send at least one entity column", field="entities"
            )
        lengths = {len(values) for values in entities.values()}
        if len(lengths) != 1:
            raise InvalidArgument(
                f"entities: the columns differ in length ({sorted(lengths)}); send one value per "
                "row in each",
                field="entities",
            )
        (rows,) = lengths
        if rows == 0:
            raise InvalidArgument(
                "entities hold no rows; send at least one value in each column", field="entities"
            )
        if rows > MAX_ONLINE_ROWS:
            raise InvalidArgument(
                f"entities hold {rows} rows in one request; the limit is {MAX_ONLINE_ROWS}: "
                "split it",
                field="entities",
            )
        now = _now_ms()
        columns: list[OnlineColumn] = []
        for request in requests:
            view = request.view
            key_fields = self.join_key_fields(view)
            for key in key_fields:
                if key.name not in entities:
                    raise InvalidArgument(
                        f"entity rows lack join key {key.name!r} of feature view {view.name!r}",
                        field=key.name,
                    )
            stored = self._read_online(request.online_name, key_fields, entities, rows)
            ttl_ms = int(view.ttl.total_seconds() * 1000) if view.ttl else None
            types = {f.name: f.dtype for f in view.schema}
            statuses = [
                "NOT_FOUND"
                if found is None
                else "OUTSIDE_MAX_AGE"
                if ttl_ms is not None and now - found[1] > ttl_ms
                else "PRESENT"
                for found in stored
            ]
            times = [None if found is None else found[1] for found in stored]
            records = [None if found is None else found[0] for found in stored]
            by_feature = _by_feature(records, request.features)
            if by_feature is not None:
                for feature, out, values in zip(
                    request.features, request.output_names, by_feature, strict=True
                ):
                    columns.append(OnlineColumn(out, types[feature], values, statuses, times))
                continue
            for feature, out in zip(request.features, request.output_names, strict=True):
                values = [None if r is None else r.get(feature) for r in records]
                # Rows stored before the feature was added hold no value of it: NOT_FOUND, as
                # Feast answers, not PRESENT with a null.
                absent = [r is not None and feature not in r for r in records]
                columns.append(
                    OnlineColumn(
                        out,
                        types[feature],
                        values,
                        ["NOT_FOUND" if a else st for a, st in zip(absent, statuses, strict=True)],
                        [None if a else t for a, t in zip(absent, times, strict=True)],
                    )
                )
        return columns

    def _read_online(
        self, view: str, key_fields: Sequence[Field], entities: dict[str, list[Any]], rows: int
    ) -> list[tuple[dict[str, Any], int] | None]:
        """The stored row of each entity row; a row with a null join key is no entity's (as in a
        training set's join): None, not looked up."""
        columns = [entities[k.name] for k in key_fields]
        keyed = [i for i in range(rows) if all(c[i] is not None for c in columns)]
        if len(keyed) == rows:
            return self.online.read(view, entity_keys(key_fields, columns))
        keys = entity_keys(key_fields, [[c[i] for i in keyed] for c in columns])
        stored: list[tuple[dict[str, Any], int] | None] = [None] * rows
        for i, found in zip(keyed, self.online.read(view, keys), strict=True):
            stored[i] = found
        return stored

    def push(self, view_name: str, table: pa.Table, to_online: bool, to_offline: bool) -> int:
        """The view is read from the table, not the cache (one read by primary key a push):
        a push to a view another replica deleted is refused NOT_FOUND rather than answered OK
        with its rows gone where no view reads them. A delete committed between that read and
        the write leaves the rows under the deleted view's generation, which no view reads."""
        view, generation = self._stored_view(view_name, fresh=True)
        if not to_online and not to_offline:
            raise InvalidArgument("push to_online, to_offline or both", field="to_online")
        twice = v.named_twice(table.column_names)
        if twice is not None:
            raise InvalidArgument(
                f"pushed rows have more than one column named {twice!r}; send each column once",
                field=twice,
            )
        keys = self.join_keys(view)
        needed = [*keys, view.source.timestamp_field]
        missing = [c for c in needed if c not in table.column_names]
        if missing:
            raise InvalidArgument(f"pushed rows lack column {missing[0]!r}", field=missing[0])
        unknown = [
            c
            for c in table.column_names
            if c not in needed
            and c not in view.feature_names
            and c != view.source.created_timestamp_column
        ]
        if unknown:
            raise InvalidArgument(
                f"feature view {view_name!r} has no feature {unknown[0]!r}", field=unknown[0]
            )
        unsent = [f for f in view.feature_names if f not in table.column_names]
        if unsent and len(unsent) == len(view.feature_names):
            # Online it would move the entities' event time on, their old values served as new.
            raise InvalidArgument(
                f"pushed rows hold no feature of feature view {view_name!r}; send at least one "
                f"of {', '.join(map(repr, unsent))}",
                field=unsent[0],
            )
        if to_offline and unsent:
            # Feast refuses these too: a training set takes a view's row whole, so an unsent
            # feature would read as null from this row on, while online keeps its value.
            raise InvalidArgument(
                f"pushed rows lack {', '.join(map(repr, unsent))} of feature view "
                f"{view_name!r}; a push to the offline store sends every feature, as a training "
                "set takes a row whole: send them, or push to online only",
                field=unsent[0],
            )
        if to_online:
            _require_online(view, "push to the online store")
        if table.num_rows == 0:
            return 0
        # Online, a push updates the features it sends; the others keep their values.
        sent = [f for f in view.feature_names if f not in unsent]
        table = push_log.normalize(view, self.join_key_fields(view), table)
        for column in needed:
            if table[column].null_count:
                raise InvalidArgument(f"pushed column {column!r} holds nulls", field=column)
        if to_online:
            created = view.source.created_timestamp_column
            event_us = _micros(table[view.source.timestamp_field])
            created_us = _micros(table[created]) if created else None
            rows = self._online_rows(view, table.select([*keys, *sent]), event_us, created_us)
            self.online.write(online_name(view_name, generation), rows, partial=bool(unsent))
        if to_offline:
            try:
                self._log_push(online_name(view_name, generation), table)
            except ModelyardError as exc:
                if not to_online:
                    raise
                raise _pushed_online_only(exc, view_name, table.num_rows) from exc
        return table.num_rows

    def _log_push(self, log_name: str, table: pa.Table) -> None:
        """The rows into the offline store's push log (of the generation the push read, see
        _push_log_key), one new file a push."""
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        key = f"{self._push_log_key(log_name)}/{uuid.uuid4().hex}.parquet"
        self.artifacts.write(key, iter([buffer.getvalue()]))

    # -- permissions ---------------------------------------------------------------------------

    def _granted(self, kind: str, name: str) -> str:
        if kind not in GRANTED_KINDS:
            raise InvalidArgument("kind must be feature_view or feature_service", field="kind")
        if self.store.find(kind, name) is None:
            raise NotFound(
                f"{kind} {name!r} is not defined", resource_type=kind, resource_name=name
            )
        return f"{kind}:{name}"

    def set_permission(
        self, kind: str, name: str, principal: str, level: PermissionLevel | None
    ) -> None:
        resource = self._granted(kind, name)
        v.require("grant.principal", principal)
        v.max_length("grant.principal", principal, 256)
        if level is None:
            raise InvalidArgument(
                "grant.level must be READ, USE, EDIT or MANAGE", field="grant.level"
            )
        self.authorizer.grants.set(resource, principal, level)

    def delete_permission(self, kind: str, name: str, principal: str) -> None:
        if not self.authorizer.grants.delete(self._granted(kind, name), principal):
            raise NotFound(
                f"{principal!r} holds no grant on {kind} {name!r}",
                resource_type="grant",
                resource_name=principal,
            )

    def list_permissions(self, kind: str, name: str) -> list[Grant]:
        return self.authorizer.grants.list(self._granted(kind, name))


def _pushed_online_only(exc: ModelyardError, view_name: str, rows: int) -> ModelyardError:
    """A push to both stores whose offline write failed after its online one, which is not
    undone: the error, with its status, saying where the rows are and how to finish. Online
    goes first since writing it again is idempotent (a stored row is replaced only by one not
    older), where each offline push is a file of its own."""
    status = next(c for c in type(exc).__mro__ if c.__module__ == ModelyardError.__module__)
    return status(  # type: ignore[no-any-return]
        f"the {rows} pushed rows of feature view {view_name!r} were written to the online store "
        f"(served from now on) but not to the offline store: {exc.message}. Once that is fixed, "
        "push the same rows again to the offline store only (to_offline, not to_online); "
        "pushing them to both again is safe too, as the online store keeps them once",
        field=exc.field,
        resource_type="feature_view",
        resource_name=view_name,
        busy_for=exc.busy_for,
    )


def _require_online(view: FeatureView, to: str) -> None:
    """A view with online=False has no online rows: writing or reading them is refused, not
    answered as if they were missing."""
    if not view.online:
        raise FailedPrecondition(
            f"feature view {view.name!r} is not online; set online=True to {to}",
            resource_type="feature_view",
            resource_name=view.name,
        )


def _micros(times: pa.ChunkedArray) -> pa.ChunkedArray:
    """A pushed (normalized) timestamp column as µs since 1970, null where null."""
    return times.cast(pa.int64())


def _combined(column: pa.Array | pa.ChunkedArray | None) -> pa.Array | None:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks()
    return column


def _check_kind(kind: str) -> None:
    if kind not in ("entity", "feature_view", "feature_service"):
        raise InvalidArgument(
            f"kind {kind!r} is not one of entity, feature_view, feature_service", field="kind"
        )
