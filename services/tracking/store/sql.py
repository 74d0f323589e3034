"""SqlTrackingStore: the tracking store on SQLAlchemy Core, for SQLite and PostgreSQL."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Integer,
    Row,
    String,
    and_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping
from sqlalchemy.exc import IntegrityError

from modelyard.entities import (
    DatasetInput,
    Experiment,
    FileInfo,
    Metric,
    PagedList,
    Param,
    Run,
    RunInfo,
    RunStatus,
    RunTag,
    ViewType,
)
from modelyard.entities.common import LifecycleStage
from modelyard.entities.tracking import NO_INPUTS, Dataset, InputTag, RunData, RunInputs, SystemTag
from modelyard.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from modelyard.services.common.auth.grants import Visibility
from modelyard.services.common.db import Database
from modelyard.services.common.db.engine import IDLE_PING_SECONDS
from modelyard.services.common.db.prepared import Prepared
from modelyard.services.common.filters import Comparison, OrderKey
from modelyard.services.common.keyset import RowRef
from modelyard.services.common.pagination import decode_token, encode_token, fingerprint
from modelyard.services.tracking import limits
from modelyard.services.tracking.store import schema, search
from modelyard.services.tracking.store.base import (
    ArtifactPlacement,
    TrackingStore,
    run_is_deleted,
)
from modelyard.services.tracking.store.hot import (
    COPY_MIN,
    GroupCommit,
    Job,
    MetricRow,
    MetricWriter,
    RunRows,
)
from modelyard.services.tracking.store.schema import (
    artifact_placements,
    artifacts,
    datasets,
    experiment_permissions,
    experiment_tags,
    experiments,
    input_tags,
    inputs,
    latest_metrics,
    metrics,
    params,
    runs,
    tags,
)

_IN_CHUNK = 500  # ids per IN (...) when loading run data in bulk

# Everything of a set of runs but their dataset inputs, in one round trip: kind (0 param, 1 tag,
# 2 latest metric, 3 has inputs), run id, key, text value, metric value, is_nan, timestamp, step.
# Metrics come in key order, as each run lists them. Each part is a lookup by primary key per run:
# SQLite does that for IN (...); on PostgreSQL a LATERAL subquery fenced with OFFSET 0 makes it
# so whatever the planner's statistics say (without any, it scans whole tables for = ANY).
_RUN_DATA_PARTS = (
    "SELECT 0 AS kind, run_uuid, key, value AS text, CAST(NULL AS DOUBLE PRECISION) AS value, "
    "CAST(NULL AS BOOLEAN) AS is_nan, CAST(NULL AS BIGINT) AS timestamp, "
    "CAST(NULL AS BIGINT) AS step FROM params WHERE run_uuid {ids} "
    "UNION ALL SELECT 1, run_uuid, key, value, NULL, NULL, NULL, NULL FROM tags "
    "WHERE run_uuid {ids} "
    "UNION ALL SELECT 2, run_uuid, key, NULL, value, is_nan, timestamp, step FROM latest_metrics "
    "WHERE run_uuid {ids} "
    "UNION ALL SELECT 3, run_uuid, NULL, NULL, NULL, NULL, NULL, NULL FROM inputs "
    "WHERE run_uuid {ids}"
)
_RUN_DATA_PG = (
    "SELECT d.* FROM unnest(%b::varchar[]) AS ids(id) CROSS JOIN LATERAL ("
    + _RUN_DATA_PARTS.format(ids="= ids.id")
    + " OFFSET 0) AS d ORDER BY 1, 3"
)
# Search statements kept by shape (SqlTrackingStore._statement); past this many, they start over.
_STATEMENTS_KEPT = 512
_Built = TypeVar("_Built")


def _now() -> int:
    return int(time.time() * 1000)


def _experiment_not_found(experiment_id: str) -> NotFound:
    return NotFound(
        f"experiment {experiment_id!r} does not exist; list experiments with SearchExperiments",
        resource_type="experiment",
        resource_name=experiment_id,
    )


def _run_not_found(run_id: str) -> NotFound:
    return NotFound(
        f"run {run_id!r} does not exist; check the id, or search runs with SearchRuns",
        resource_type="run",
        resource_name=run_id,
    )


def _experiment_key(experiment_id: str) -> int:
    try:
        return int(experiment_id)
    except ValueError:
        raise _experiment_not_found(experiment_id) from None


class SqlTrackingStore(TrackingStore):
    def __init__(self, db: Database, artifact_root: str) -> None:
        self.db = db
        self.artifact_root = artifact_root.rstrip("/")
        self._insert = sqlite.insert if db.is_sqlite else postgresql.insert
        # Point reads, compiled once and run on the DB-API cursor (see Prepared).
        dialect = db.engine.dialect
        self._select_run = Prepared(dialect, select(runs).where(runs.c.run_uuid == bindparam("id")))
        self._select_experiment = Prepared(
            dialect, select(experiments).where(experiments.c.experiment_id == bindparam("id"))
        )
        self._select_experiment_by_name = Prepared(
            dialect, select(experiments).where(experiments.c.name == bindparam("name"))
        )
        self._select_experiment_tags = Prepared(
            dialect,
            select(experiment_tags.c.key, experiment_tags.c.value).where(
                experiment_tags.c.experiment_id == bindparam("id")
            ),
        )
        self._select_experiment_of_run = Prepared(
            dialect, select(runs.c.experiment_id).where(runs.c.run_uuid == bindparam("id"))
        )
        m = metrics.c
        history = (
            select(metrics)
            .where(m.run_uuid == bindparam("run_id"), m.key == bindparam("key"))
            .order_by(m.step, m.timestamp, m.id)
            .limit(bindparam("limit", type_=Integer))
        )
        after = tuple_(bindparam("step"), bindparam("timestamp"), bindparam("id"))
        self._select_history = Prepared(dialect, history)
        self._select_history_after = Prepared(
            dialect, history.where(tuple_(m.step, m.timestamp, m.id) > after)
        )
        a = artifacts.c
        files = select(artifacts).where(a.run_uuid == bindparam("run_id"))
        self._select_artifact = Prepared(dialect, files.where(a.path == bindparam("path")))
        self._select_artifacts = Prepared(dialect, files.order_by(a.path))
        # Under a prefix: a range on the primary key, every path that starts with "<prefix>/"
        # ('0' follows '/').
        self._select_artifacts_under = Prepared(
            dialect,
            files.where(a.path > bindparam("low"), a.path < bindparam("high")).order_by(a.path),
        )
        # A page of them: from `low` on (inclusive), below `high` where one is given.
        page = files.where(a.path >= bindparam("low")).order_by(a.path)
        limit = bindparam("limit", type_=Integer)
        self._select_artifacts_from = Prepared(dialect, page.limit(limit))
        self._select_artifacts_between = Prepared(
            dialect, page.where(a.path < bindparam("high")).limit(limit)
        )
        self._metrics = MetricWriter(db.dialect)
        self._group = GroupCommit(self._commit_group)
        # Searches ordered by one metric walk its values in order; on PostgreSQL at most
        # max(least, factor * page) of them, from the token's position, before falling back to
        # the plain query, which its planner may run faster when few runs match (SQLite: no
        # cap, the plain query walks the same rows). (least, factor), or None for no cap.
        self.metric_walk: tuple[int, int] | None = None if db.is_sqlite else (1000, 8)
        self._statements: dict[tuple, Any] = {}
        # The connection of the metric hot path, used only by the group-commit leader (one at
        # a time), so a write pays no pool checkout, no liveness ping, no SQLAlchemy layer.
        self._hot: Any = None
        self._hot_used = 0.0
        # Params' statements, built once: a statement built per call also pays for its cache key
        # each time (SQLAlchemy memoizes it on the statement). store.log_param 283 -> 158 µs.
        self._insert_params_stmt = self._insert(params).on_conflict_do_nothing()
        self._stored_params = select(params.c.key, params.c.value).where(
            params.c.run_uuid == bindparam("run_id"),
            params.c.key.in_(bindparam("keys", expanding=True)),
        )
        tag_upsert = self._insert(schema.tags)
        self._upsert_tag = tag_upsert.on_conflict_do_update(
            index_elements=["run_uuid", "key"], set_={"value": tag_upsert.excluded.value}
        )

    def close(self) -> None:
        self._drop_hot()
        self.db.dispose()

    # -- experiments ---------------------------------------------------------------------------

    def create_experiment(
        self, name: str, artifact_location: str | None, tags: dict[str, str]
    ) -> str:
        now = _now()
        try:
            with self.db.write() as conn:
                experiment_id = conn.execute(
                    insert(experiments).values(
                        name=name,
                        artifact_location=artifact_location or "",
                        lifecycle_stage=LifecycleStage.ACTIVE.value,
                        creation_time=now,
                        last_update_time=now,
                    )
                ).inserted_primary_key[0]
                if not artifact_location:
                    conn.execute(
                        update(experiments)
                        .where(experiments.c.experiment_id == experiment_id)
                        .values(artifact_location=f"{self.artifact_root}/{experiment_id}")
                    )
                if tags:
                    conn.execute(
                        insert(experiment_tags),
                        [
                            {"experiment_id": experiment_id, "key": k, "value": v}
                            for k, v in tags.items()
                        ],
                    )
        except IntegrityError:
            raise AlreadyExists(
                f"an experiment named {name!r} already exists (possibly deleted); pick another "
                "name, or restore the deleted one",
                resource_type="experiment",
                resource_name=name,
            ) from None
        return str(experiment_id)

    def ensure_experiment(self, experiment_id: int, name: str) -> None:
        """Create an experiment with a fixed id unless it exists (the Default experiment, id 0)."""
        with self.db.write() as conn:
            found = conn.execute(
                select(experiments.c.experiment_id).where(
                    experiments.c.experiment_id == experiment_id
                )
            ).first()
            if found is None:
                now = _now()
                conn.execute(
                    self._insert(experiments)
                    .values(
                        experiment_id=experiment_id,
                        name=name,
                        artifact_location=f"{self.artifact_root}/{experiment_id}",
                        lifecycle_stage=LifecycleStage.ACTIVE.value,
                        creation_time=now,
                        last_update_time=now,
                    )
                    .on_conflict_do_nothing()
                )

    def _experiments(self, conn: Connection, rows: Sequence[Row]) -> list[Experiment]:
        ids = [r.experiment_id for r in rows]
        tag_map: dict[int, dict[str, str]] = {i: {} for i in ids}
        for chunk in _chunks(ids):
            for t in conn.execute(
                select(experiment_tags).where(experiment_tags.c.experiment_id.in_(chunk))
            ):
                tag_map[t.experiment_id][t.key] = t.value
        return [_experiment(r._mapping, tag_map[r.experiment_id]) for r in rows]

    def _experiment_row(self, conn: Connection, experiment_id: str) -> dict[str, Any]:
        key = _experiment_key(experiment_id)
        with self.db.cursor(conn) as cursor:
            row = self._select_experiment.first(cursor, id=key)
        if row is None:
            raise _experiment_not_found(experiment_id)
        return row

    def _with_tags(self, conn: Connection, row: dict[str, Any]) -> Experiment:
        with self.db.cursor(conn) as cursor:
            tags = self._select_experiment_tags.rows(cursor, id=row["experiment_id"])
        return _experiment(row, {t["key"]: t["value"] for t in tags})

    def get_experiment(self, experiment_id: str) -> Experiment:
        with self.db.read() as conn:
            return self._with_tags(conn, self._experiment_row(conn, experiment_id))

    def find_experiment_by_name(self, name: str) -> Experiment | None:
        with self.db.read() as conn:
            with self.db.cursor(conn) as cursor:
                row = self._select_experiment_by_name.first(cursor, name=name)
            return self._with_tags(conn, row) if row else None

    def experiment_exists(self, experiment_id: str) -> bool:
        # Not an id: int() fails on "\u00b2" (a digit to isdigit()), and 19 digits overflow
        # the column; both were INTERNAL errors.
        if not limits.EXPERIMENT_ID.match(experiment_id):
            return False
        with self.db.read() as conn, self.db.cursor(conn) as cursor:
            return self._select_experiment.first(cursor, id=int(experiment_id)) is not None

    def experiment_id_by_name(self, name: str) -> str | None:
        with self.db.read() as conn, self.db.cursor(conn) as cursor:
            row = self._select_experiment_by_name.first(cursor, name=name)
        return str(row["experiment_id"]) if row else None

    def experiment_of_run(self, run_id: str) -> str | None:
        with self.db.read() as conn, self.db.cursor(conn) as cursor:
            row = self._select_experiment_of_run.first(cursor, id=run_id)
        return str(row["experiment_id"]) if row else None

    def search_experiments(
        self,
        view_type: ViewType,
        filters: Sequence[Comparison],
        order_by: Sequence[OrderKey],
        max_results: int,
        page_token: str,
        readable: Visibility | None = None,
    ) -> PagedList[Experiment]:
        # Not the readable ids: they change as the caller creates experiments or gains grants,
        # and a position (a key, not a count) stays good across that.
        query = fingerprint("experiments", view_type, filters, order_by)
        terms = search.experiment_order(order_by)
        at = search.read_position(terms, page_token, query, key=search.EXPERIMENT_KEY)
        scope = select(experiments)
        if readable is not None:
            # Grants name experiments by their id as text: the id is cast to it (casting the
            # grants' ids to numbers would fail on PostgreSQL for one that is none).
            granted = readable.granted(experiment_permissions)
            scope = scope.where(cast(experiments.c.experiment_id, String).in_(granted))
        stmt = scope
        stage = search.stage_filter(experiments.c.lifecycle_stage, view_type)
        if stage is not None:
            stmt = stmt.where(stage)
        stmt = stmt.where(*search.experiment_filter_clauses(filters))
        with self.db.read() as conn:
            after = search.resume(conn, scope, terms, search.EXPERIMENT_KEY, at)
            binds: dict[str, object] = {}
            if after is not None:
                stmt = stmt.where(search.after_clause(terms, after))
                binds = search.after_binds(terms, after)
            rows = conn.execute(search.keyed(stmt, terms).limit(max_results + 1), binds).all()
            found = self._experiments(conn, rows[:max_results])
        token = None
        if len(rows) > max_results:
            last = rows[max_results - 1]._mapping
            token = search.next_token(query, terms, last, search.EXPERIMENT_KEY)
        return PagedList(found, token)

    def _touch_experiment(self, conn: Connection, experiment_id: str, **values: Any) -> Row:
        key = _experiment_key(experiment_id)
        row = conn.execute(
            update(experiments)
            .where(experiments.c.experiment_id == key)
            .values(last_update_time=_now(), **values)
            .returning(experiments)
        ).first()
        if row is None:
            raise _experiment_not_found(experiment_id)
        return row

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        try:
            with self.db.write() as conn:
                row = self._experiment_row(conn, experiment_id)
                if row["lifecycle_stage"] != LifecycleStage.ACTIVE.value:
                    raise FailedPrecondition(
                        f"experiment {experiment_id!r} is deleted; restore it before renaming",
                        resource_type="experiment",
                        resource_name=experiment_id,
                    )
                self._touch_experiment(conn, experiment_id, name=new_name)
        except IntegrityError:
            raise AlreadyExists(
                f"an experiment named {new_name!r} already exists; pick another name",
                resource_type="experiment",
                resource_name=new_name,
            ) from None

    def delete_experiment(self, experiment_id: str) -> None:
        now = _now()
        with self.db.write() as conn:
            row = self._experiment_row(conn, experiment_id)
            if row["lifecycle_stage"] == LifecycleStage.DELETED.value:
                return
            self._touch_experiment(
                conn, experiment_id, lifecycle_stage=LifecycleStage.DELETED.value, deleted_time=now
            )
            conn.execute(
                update(runs)
                .where(
                    runs.c.experiment_id == row["experiment_id"],
                    runs.c.lifecycle_stage == LifecycleStage.ACTIVE.value,
                )
                .values(
                    lifecycle_stage=LifecycleStage.DELETED.value,
                    deleted_time=now,
                    deleted_with_experiment=True,
                )
            )

    def restore_experiment(self, experiment_id: str) -> None:
        with self.db.write() as conn:
            row = self._experiment_row(conn, experiment_id)
            if row["lifecycle_stage"] == LifecycleStage.ACTIVE.value:
                return
            self._touch_experiment(
                conn, experiment_id, lifecycle_stage=LifecycleStage.ACTIVE.value, deleted_time=None
            )
            conn.execute(
                update(runs)
                .where(
                    runs.c.experiment_id == row["experiment_id"],
                    runs.c.deleted_with_experiment.is_(True),
                )
                .values(
                    lifecycle_stage=LifecycleStage.ACTIVE.value,
                    deleted_time=None,
                    deleted_with_experiment=False,
                )
            )

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        with self.db.write() as conn:
            stage = self._experiment_row(conn, experiment_id)["lifecycle_stage"]
            if stage != LifecycleStage.ACTIVE.value:
                raise FailedPrecondition(
                    f"experiment {experiment_id!r} is deleted; restore it before tagging it",
                    resource_type="experiment",
                    resource_name=experiment_id,
                )
            row = self._touch_experiment(conn, experiment_id)
            stmt = self._insert(experiment_tags).values(
                experiment_id=row.experiment_id, key=key, value=value
            )
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["experiment_id", "key"], set_={"value": stmt.excluded.value}
                )
            )

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        with self.db.write() as conn:
            row = self._touch_experiment(conn, experiment_id)
            deleted = conn.execute(
                delete(experiment_tags).where(
                    experiment_tags.c.experiment_id == row.experiment_id,
                    experiment_tags.c.key == key,
                )
            ).rowcount
            if not deleted:
                raise NotFound(
                    f"experiment {experiment_id!r} has no tag {key!r}",
                    resource_type="experiment_tag",
                    resource_name=key,
                )

    # -- runs ----------------------------------------------------------------------------------

    def create_run(
        self,
        experiment_id: str,
        user_id: str,
        start_time: int,
        tags: dict[str, str],
        run_name: str,
        parent_run_id: str | None,
    ) -> Run:
        run_id = uuid.uuid4().hex
        with self.db.write() as conn:
            exp = self._experiment_row(conn, experiment_id)
            if exp["lifecycle_stage"] != LifecycleStage.ACTIVE.value:
                raise FailedPrecondition(
                    f"experiment {experiment_id!r} is deleted; restore it or use another one",
                    resource_type="experiment",
                    resource_name=experiment_id,
                )
            if parent_run_id:
                parent = self._run_row(conn, parent_run_id)
                if parent["experiment_id"] != exp["experiment_id"]:
                    raise InvalidArgument(
                        f"parent run {parent_run_id!r} belongs to experiment "
                        f"{parent['experiment_id']}, not {experiment_id}; nested runs share their "
                        "parent's experiment",
                        field="parent_run_id",
                    )
                if parent["lifecycle_stage"] != LifecycleStage.ACTIVE.value:
                    # A child of a deleted run would be an orphan no tree shows: adding one
                    # changes the parent, which a deleted run refuses.
                    raise FailedPrecondition(
                        f"parent run {parent_run_id!r} is deleted; restore it with RestoreRun, "
                        "or start the run without a parent",
                        resource_type="run",
                        resource_name=parent_run_id,
                    )
            values = {
                "run_uuid": run_id,
                "name": run_name,
                "experiment_id": exp["experiment_id"],
                "user_id": user_id,
                "status": RunStatus.RUNNING.value,
                "start_time": start_time,
                "end_time": None,
                "lifecycle_stage": LifecycleStage.ACTIVE.value,
                "artifact_uri": f"{exp['artifact_location']}/{run_id}/artifacts",
                "parent_run_id": parent_run_id or None,
                "deleted_with_experiment": False,
            }
            conn.execute(insert(runs).values(**values))
            if tags:
                conn.execute(
                    insert(schema.tags),
                    [{"run_uuid": run_id, "key": k, "value": v} for k, v in tags.items()],
                )
        info = _run_info(values)
        return Run(info=info, data=RunData(tags=dict(tags)))

    def _run_row(self, conn: Connection, run_id: str) -> dict[str, Any]:
        with self.db.cursor(conn) as cursor:
            row = self._select_run.first(cursor, id=run_id)
        if row is None:
            raise _run_not_found(run_id)
        return row

    def get_run_info(self, run_id: str) -> RunInfo:
        with self.db.read() as conn:
            return _run_info(self._run_row(conn, run_id))

    def get_run(self, run_id: str) -> Run:
        with self.db.read() as conn:
            return self._runs(conn, [self._run_row(conn, run_id)])[0]

    def _runs(self, conn: Connection, rows: Sequence[Mapping[Any, Any]]) -> list[Run]:
        """Assemble full runs from their runs rows: params, tags, latest metrics and whether
        they have inputs in one query (on the raw cursor: per-row overhead is most of what a
        page of runs costs), then the dataset inputs of the runs that have any."""
        ids = [r["run_uuid"] for r in rows]
        run_params: dict[str, dict[str, str]] = {i: {} for i in ids}
        run_tags: dict[str, dict[str, str]] = {i: {} for i in ids}
        run_metrics: dict[str, list[Metric]] = {i: [] for i in ids}
        run_inputs: dict[str, list[DatasetInput]] = {i: [] for i in ids}
        with_inputs: set[str] = set()
        with self.db.cursor(conn) as cursor:
            for chunk in _chunks(ids):
                if self.db.is_sqlite:
                    where = f"IN ({', '.join('?' * len(chunk))})"
                    sql = _RUN_DATA_PARTS.format(ids=where) + " ORDER BY 1, 3"
                    cursor.execute(sql, [*chunk] * 4)
                else:
                    cursor.execute(_RUN_DATA_PG, (list(chunk),), binary=True)
                # fetchall loads the rows in one call: iterating psycopg's cursor costs ~0.6 µs
                # more per row (0.5 ms of a page of 100 runs).
                for kind, run_id, key, text, value, is_nan, timestamp, step in cursor.fetchall():
                    if kind == 0:
                        run_params[run_id][key] = text
                    elif kind == 1:
                        run_tags[run_id][key] = text
                    elif kind == 2:
                        value = math.nan if is_nan else value
                        run_metrics[run_id].append(Metric(key, value, timestamp, step))
                    else:
                        with_inputs.add(run_id)
        if with_inputs:
            for chunk in _chunks([i for i in ids if i in with_inputs]):
                for run_id, dataset_input in self._dataset_inputs(conn, chunk):
                    run_inputs[run_id].append(dataset_input)
        # Positional arguments, and one shared empty RunInputs: a page builds hundreds of these.
        return [
            Run(
                _run_info(r),
                RunData(tuple(run_metrics[i]), run_params[i], run_tags[i]),
                RunInputs(tuple(run_inputs[i])) if i in with_inputs else NO_INPUTS,
            )
            for r, i in zip(rows, ids, strict=True)
        ]

    def _dataset_inputs(
        self, conn: Connection, run_ids: Sequence[str]
    ) -> Iterable[tuple[str, DatasetInput]]:
        rows = conn.execute(
            select(inputs.c.input_uuid, inputs.c.run_uuid, datasets)
            .join(datasets, inputs.c.dataset_uuid == datasets.c.dataset_uuid)
            .where(inputs.c.run_uuid.in_(run_ids))
            .order_by(datasets.c.name, datasets.c.digest)
        ).all()
        if not rows:
            return []
        tag_map: dict[str, list[InputTag]] = {r.input_uuid: [] for r in rows}
        for t in conn.execute(
            select(input_tags)
            .where(input_tags.c.input_uuid.in_(list(tag_map)))
            .order_by(input_tags.c.key)
        ):
            tag_map[t.input_uuid].append(InputTag(t.key, t.value))
        return [
            (
                r.run_uuid,
                DatasetInput(
                    dataset=Dataset(
                        name=r.name,
                        digest=r.digest,
                        source_type=r.source_type,
                        source=r.source,
                        schema=r.schema,
                        profile=r.profile,
                    ),
                    tags=tuple(tag_map[r.input_uuid]),
                ),
            )
            for r in rows
        ]

    def update_run(
        self, run_id: str, status: RunStatus | None, end_time: int | None, run_name: str | None
    ) -> RunInfo:
        values: dict[str, Any] = {}
        if status is not None:
            values["status"] = status.value
        if end_time is not None:
            values["end_time"] = end_time
        elif status is not None and not status.is_terminated:
            values["end_time"] = None  # running again (a resumed run): it has not ended
        if run_name:
            values["name"] = run_name
        with self.db.write() as conn:
            row = self._active_run(conn, run_id)
            if values:
                row = dict(
                    conn.execute(
                        update(runs)
                        .where(runs.c.run_uuid == run_id)
                        .values(**values)
                        .returning(runs)
                    )
                    .one()
                    ._mapping
                )
            if run_name:
                conn.execute(
                    self._upsert_tag,
                    {"run_uuid": run_id, "key": SystemTag.RUN_NAME.value, "value": run_name},
                )
            return _run_info(row)

    def _set_run_stage(self, run_id: str, stage: LifecycleStage) -> None:
        with self.db.write() as conn:
            row = self._run_row(conn, run_id)
            if stage == LifecycleStage.ACTIVE:
                exp = self._experiment_row(conn, str(row["experiment_id"]))
                if exp["lifecycle_stage"] != LifecycleStage.ACTIVE.value:
                    raise FailedPrecondition(
                        f"run {run_id!r} belongs to deleted experiment {row['experiment_id']}; "
                        "restore the experiment first",
                        resource_type="run",
                        resource_name=run_id,
                    )
            conn.execute(
                update(runs)
                .where(runs.c.run_uuid == run_id)
                .values(
                    lifecycle_stage=stage.value,
                    deleted_time=_now() if stage == LifecycleStage.DELETED else None,
                    deleted_with_experiment=False,
                )
            )

    def delete_run(self, run_id: str) -> None:
        self._set_run_stage(run_id, LifecycleStage.DELETED)

    def restore_run(self, run_id: str) -> None:
        self._set_run_stage(run_id, LifecycleStage.ACTIVE)

    def search_runs(
        self,
        experiment_ids: Sequence[str],
        filters: Sequence[Comparison],
        view_type: ViewType,
        max_results: int,
        order_by: Sequence[OrderKey],
        page_token: str,
    ) -> PagedList[Run]:
        query = fingerprint("runs", sorted(experiment_ids), view_type, filters, order_by)
        order = tuple(order_by)
        # The order's terms, to check the token's position against before any SQL is built.
        terms = self._statement(("order", order), lambda: search.order_runs(select(runs), order)[1])
        at = search.read_position(terms, page_token, query, key=search.RUN_KEY)
        keys = [_experiment_key(e) for e in experiment_ids]
        filter_shape, filter_values = search.filter_binds(filters)
        shape = (filter_shape, view_type)
        limit = max_results + 1
        with self.db.read() as conn:
            position = self._resume_runs(conn, keys, order, at)
            after = search.pattern(terms, position)
            rows = None
            if len(set(keys)) == 1 and len(order_by) == 1 and order_by[0].entity == "metric":
                rows = self._search_by_metric(
                    conn,
                    shape,
                    order_by[0],
                    filters,
                    view_type,
                    keys[0],
                    filter_values,
                    limit,
                    position,
                )
            if rows is None:

                def build() -> Any:
                    matching = select(runs).where(
                        runs.c.experiment_id.in_(bindparam("experiments", expanding=True)),
                        *self._conditions(shape, filters, view_type),
                    )
                    stmt, plain_terms = search.order_runs(matching, order)
                    if position is not None:
                        stmt = stmt.where(search.after_clause(plain_terms, position))
                    return search.keyed(stmt, plain_terms).limit(bindparam("limit"))

                stmt = self._statement(("plain", shape, order, after), build)
                values = {**filter_values, "experiments": keys, "limit": limit}
                if position is not None:
                    values |= search.after_binds(terms, position)
                rows = [r._mapping for r in conn.execute(stmt, values)]
            found = self._runs(conn, rows[:max_results])
        token = None
        if len(rows) > max_results:
            token = search.next_token(query, terms, rows[max_results - 1], search.RUN_KEY)
        return PagedList(found, token)

    @staticmethod
    def _resume_runs(
        conn: Connection,
        experiment_keys: Sequence[int],
        order: tuple[OrderKey, ...],
        at: list[object] | RowRef | None,
    ) -> list[object] | None:
        """The position of a runs search's token (search.resume), a run of its experiments."""
        if not isinstance(at, RowRef):
            return at
        of_experiments = select(runs).where(runs.c.experiment_id.in_(experiment_keys))
        stmt, terms = search.order_runs(of_experiments, order)
        return search.resume(conn, stmt, terms, search.RUN_KEY, at)

    def _statement(self, key: tuple, build: Callable[[], _Built]) -> _Built:
        """A search's statement (or its clauses) by shape, built once: building the walk of a
        filtered search costs ~0.8 ms, about as much as SQLite takes to run it for a page of
        100. Values are bind parameters (see search.run_conditions)."""
        found = self._statements.get(key)
        if found is None:
            if len(self._statements) >= _STATEMENTS_KEPT:
                self._statements.clear()
            found = self._statements[key] = build()
        return found

    def _conditions(
        self, shape: tuple, filters: Sequence[Comparison], view_type: ViewType
    ) -> list[Any]:
        """The filters' and view type's clauses on `runs` (search.run_conditions), by shape."""
        return self._statement(
            ("conditions", shape), lambda: search.run_conditions(filters, view_type)
        )

    def _search_by_metric(
        self,
        conn: Connection,
        shape: tuple,
        key: OrderKey,
        filters: Sequence[Comparison],
        view_type: ViewType,
        experiment: int,
        filter_values: dict[str, Any],
        limit: int,
        position: Sequence[object] | None,
    ) -> list[RowMapping] | None:
        """The runs rows of the page (at most `limit`, after `position`, a position of
        order_runs' terms) of the search ordered by one metric, read in metric order (see
        search.runs_in_metric_order); None if the plain query suits it better."""
        rows: list[RowMapping] = []
        common = {**filter_values, "experiment_id": experiment}
        rest_after: Sequence[object] | None = None
        if position is not None and position[0]:  # past the runs with the metric
            rest_after = position[search.REST_FROM :]
        else:
            after = None if position is None else position[search.WALK_FROM :]
            walk_terms = search.metric_walk_terms(latest_metrics.c, key.ascending)
            values = {**common, "limit": limit}
            if after is not None:
                values |= search.after_binds(walk_terms, after)
            bounds = self.metric_walk
            capped = bounds is not None
            if bounds is not None:
                least, factor = bounds
                values["cap"] = max(least, factor * limit)
            lateral = not self.db.is_sqlite
            walk = self._statement(
                ("walk", shape, key, capped, search.pattern(walk_terms, after)),
                lambda: search.runs_in_metric_order(
                    key, filters, view_type, capped, lateral, after
                ),
            )
            rows = [r._mapping for r in conn.execute(walk, values)]
            if len(rows) == limit:
                return rows
            if capped:
                within = self._statement(
                    ("within", key, search.pattern(walk_terms, after)),
                    lambda: search.metric_values_within(key, after),
                )
                if conn.execute(within, values).scalar_one() >= values["cap"]:
                    # Few of many values match: walking on could take longer than the plain query.
                    return None
        # The runs without the metric follow, newest first.
        rest = self._statement(
            ("missing", shape, key, rest_after is not None),
            lambda: search.runs_missing_metric(
                key, self._conditions(shape, filters, view_type), rest_after
            ),
        )
        values = {**common, "limit": limit - len(rows)}
        if rest_after is not None:
            values |= search.after_binds(search.missing_metric_terms(), rest_after)
        return rows + [r._mapping for r in conn.execute(rest, values)]

    # -- run data ------------------------------------------------------------------------------

    def _active_run(self, conn: Connection, run_id: str) -> dict[str, Any]:
        row = self._run_row(conn, run_id)
        if row["lifecycle_stage"] != LifecycleStage.ACTIVE.value:
            raise run_is_deleted(
                run_id, str(row["experiment_id"]), row["deleted_with_experiment"], "changing it"
            )
        return row

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric],
        params: Sequence[Param],
        tags: Sequence[RunTag],
    ) -> None:
        rows = [(m.key, m.value, m.timestamp, m.step) for m in metrics]
        if rows and not params and not tags:
            self.log_metric_rows(run_id, rows)
            return
        with self.db.write() as conn:
            run = self._active_run(conn, run_id)
            if params:
                self._insert_params(conn, run_id, params)
            if tags:
                latest = _last_per_key(tags)
                self._follow_system_tags(conn, run, {t.key: t.value for t in latest})
                conn.execute(
                    self._upsert_tag,
                    [{"run_uuid": run_id, "key": t.key, "value": t.value} for t in latest],
                )
            if rows:
                with self.db.cursor(conn) as cursor:
                    active = {run_id: (run["experiment_id"], run["start_time"])}
                    self._metrics.write(cursor, [(run_id, rows)], active)

    def _follow_system_tags(
        self, conn: Connection, run: Mapping[str, Any], tags: dict[str, str]
    ) -> None:
        """Tags that stand for a run field (see SystemTag) change that field with them."""
        values: dict[str, Any] = {}
        if SystemTag.RUN_NAME in tags:
            values["name"] = tags[SystemTag.RUN_NAME]
        parent = tags.get(SystemTag.PARENT_RUN_ID)
        if parent is not None and parent != run["parent_run_id"]:
            self._check_new_parent(conn, run, parent)
            values["parent_run_id"] = parent
        if values:
            conn.execute(update(runs).where(runs.c.run_uuid == run["run_uuid"]).values(**values))

    def _check_new_parent(self, conn: Connection, run: Mapping[str, Any], parent_id: str) -> None:
        """A run may move under a run of its own experiment that does not descend from it."""
        field = f"tags[{SystemTag.PARENT_RUN_ID.value}].value"
        ancestor: str | None = parent_id
        seen: set[str] = set()
        while ancestor and ancestor not in seen:
            if ancestor == run["run_uuid"]:
                raise InvalidArgument(
                    f"run {parent_id!r} is {run['run_uuid']!r} itself or nested inside it, so it "
                    "cannot be its parent; pick a run outside this run's nesting",
                    field=field,
                )
            seen.add(ancestor)
            row = self._run_row(conn, ancestor)
            if ancestor == parent_id and row["experiment_id"] != run["experiment_id"]:
                raise InvalidArgument(
                    f"parent run {parent_id!r} belongs to experiment {row['experiment_id']}, not "
                    f"{run['experiment_id']}; nested runs share their parent's experiment",
                    field=field,
                )
            ancestor = row["parent_run_id"]

    def log_metric_rows(self, run_id: str, rows: Sequence[MetricRow]) -> None:
        """The hot path: group-committed with concurrent writers, acknowledged once committed."""
        if not rows:
            with self.db.read() as conn:
                self._active_run(conn, run_id)
            return
        self._group.submit(run_id, rows)

    def _commit_group(self, jobs: list[Job]) -> None:
        """Write the queued calls together; if that fails, each on its own."""
        if len(jobs) > 1:
            try:
                skipped = self._write_metrics([(job.run_id, job.rows) for job in jobs])
            except _CommitFailed as failed:  # the outcome is unknown: never write twice
                for job in jobs:
                    job.error = failed.error
                return
            except Exception:  # nothing was written: each call gets its own outcome below
                pass
            else:
                for job in jobs:
                    if job.run_id in skipped:
                        job.error = self._not_written(job.run_id)
                return
        for job in jobs:
            try:
                if self._write_metrics([(job.run_id, job.rows)]):
                    job.error = self._not_written(job.run_id)
            except _CommitFailed as failed:
                job.error = failed.error
            except Exception as exc:
                job.error = exc

    def _not_written(self, run_id: str) -> Exception:
        """Why the metrics of a run the hot path skipped were not written."""
        try:
            with self.db.read() as conn:
                self._active_run(conn, run_id)
        except (NotFound, FailedPrecondition) as exc:
            return exc
        return Aborted(f"run {run_id!r} changed state while logging; retry the call")

    def _write_metrics(self, batch: Sequence[RunRows]) -> set[str]:
        """Write and commit the metrics of the batch's active runs; return the ids of the runs
        skipped (missing or not active: nothing of theirs was written). _CommitFailed means the
        outcome is unknown (the connection broke); any other error means nothing was written."""
        conn = self._hot_connection()
        if self.db.is_sqlite:
            with self.db.write_detached(conn) as cursor:
                if len(batch) == 1 and len(batch[0][1]) == 1:  # log_metric's write
                    return self._metrics.write_one_sqlite(cursor, batch[0])
                return self._metrics.write(cursor, batch)
        try:
            with conn.cursor() as cursor:
                if sum(len(rows) for _, rows in batch) < COPY_MIN:
                    return self._metrics.write_statement(cursor, batch)  # autocommit
                with conn.transaction():
                    return self._metrics.write(cursor, batch)
        except Exception as exc:
            if conn.closed or conn.broken:
                self._drop_hot()
                raise _CommitFailed(exc) from exc
            raise

    def _hot_connection(self) -> Any:
        """The hot path's own DB-API connection, used by one group-commit leader at a time.
        On PostgreSQL it is in autocommit mode and checked with a ping when it has been idle a
        while, so a database restart costs no write; on SQLite transactions are opened on it
        explicitly (its driver is told not to, see db.engine)."""
        now = time.monotonic()
        idle = now - self._hot_used > IDLE_PING_SECONDS
        if self._hot is not None and idle and not self.db.is_sqlite:
            try:
                self._hot.execute("SELECT 1")
            except Exception:  # gone: replaced below
                self._drop_hot()
        self._hot_used = now
        if self._hot is None:
            conn = self.db.detached_connection()
            if not self.db.is_sqlite:
                conn.autocommit = True
                # The group write's array statement is planned afresh on every execution under
                # the default plan cache mode (its custom plans look cheaper than the generic
                # one), which doubled PostgreSQL's CPU per group of 3 writes (0.35 -> 0.18 ms).
                # Its plans do not depend on the values: primary-key lookups and inserts.
                if conn.info.server_version >= 120000:  # the setting came with PostgreSQL 12
                    conn.execute("SET plan_cache_mode = force_generic_plan")
            self._hot = conn
        return self._hot

    def _drop_hot(self) -> None:
        conn, self._hot = self._hot, None
        if conn is not None:
            with suppress(Exception):  # already unusable: nothing more to release
                conn.close()

    def _insert_params(self, conn: Connection, run_id: str, batch: Sequence[Param]) -> None:
        wanted: dict[str, str] = {}
        for p in batch:
            if wanted.setdefault(p.key, p.value) != p.value:
                raise InvalidArgument(
                    f"param {p.key!r} appears twice in the batch with different values; "
                    "log each param once",
                    field="params",
                )
        conn.execute(
            self._insert_params_stmt,
            [{"run_uuid": run_id, "key": k, "value": v} for k, v in wanted.items()],
        )
        stored = conn.execute(self._stored_params, {"run_id": run_id, "keys": list(wanted)}).all()
        for key, value in stored:
            if value != wanted[key]:
                raise InvalidArgument(
                    f"param {key!r} of run {run_id!r} is already {value!r}; params are immutable, "
                    f"so it cannot become {wanted[key]!r}. Log it under another key, or in a "
                    "new run",
                    field="params",
                )

    def delete_tag(self, run_id: str, key: str) -> None:
        if key == SystemTag.RUN_NAME:
            raise InvalidArgument(
                f"tag {key} is the run's name, and every run has one; rename the run with "
                "UpdateRun or set the tag to a new name instead",
                field="key",
            )
        with self.db.write() as conn:
            self._active_run(conn, run_id)
            if key == SystemTag.PARENT_RUN_ID:  # the run is no longer nested
                conn.execute(
                    update(runs).where(runs.c.run_uuid == run_id).values(parent_run_id=None)
                )
            deleted = conn.execute(
                delete(tags).where(tags.c.run_uuid == run_id, tags.c.key == key)
            ).rowcount
            if not deleted:
                raise NotFound(
                    f"run {run_id!r} has no tag {key!r}",
                    resource_type="run_tag",
                    resource_name=key,
                )

    def log_inputs(self, run_id: str, dataset_inputs: Sequence[DatasetInput]) -> None:
        with self.db.write() as conn:
            run = self._active_run(conn, run_id)
            for item in dataset_inputs:
                d = item.dataset
                conn.execute(
                    self._insert(datasets)
                    .values(
                        dataset_uuid=uuid.uuid4().hex,
                        experiment_id=run["experiment_id"],
                        name=d.name,
                        digest=d.digest,
                        source_type=d.source_type,
                        source=d.source,
                        schema=d.schema,
                        profile=d.profile,
                    )
                    .on_conflict_do_nothing()
                )
                dataset_uuid = conn.execute(
                    select(datasets.c.dataset_uuid).where(
                        datasets.c.experiment_id == run["experiment_id"],
                        datasets.c.name == d.name,
                        datasets.c.digest == d.digest,
                    )
                ).scalar_one()
                conn.execute(
                    self._insert(inputs)
                    .values(input_uuid=uuid.uuid4().hex, run_uuid=run_id, dataset_uuid=dataset_uuid)
                    .on_conflict_do_nothing()
                )
                input_uuid = conn.execute(
                    select(inputs.c.input_uuid).where(
                        inputs.c.run_uuid == run_id, inputs.c.dataset_uuid == dataset_uuid
                    )
                ).scalar_one()
                if item.tags:
                    stmt = self._insert(input_tags)
                    conn.execute(
                        stmt.on_conflict_do_update(
                            index_elements=["input_uuid", "key"],
                            set_={"value": stmt.excluded.value},
                        ),
                        [
                            {"input_uuid": input_uuid, "key": t.key, "value": t.value}
                            for t in item.tags
                        ],
                    )

    def get_metric_history(
        self, run_id: str, key: str, max_results: int, page_token: str
    ) -> PagedList[Metric]:
        query = fingerprint("metric_history", run_id, key)
        after = decode_token(page_token, query)
        with self.db.read() as conn:
            self._run_row(conn, run_id)
            with self.db.cursor(conn) as cursor:
                if after is None:
                    rows = self._select_history.rows(
                        cursor, run_id=run_id, key=key, limit=max_results + 1
                    )
                else:
                    step, timestamp, row_id = after
                    rows = self._select_history_after.rows(
                        cursor,
                        run_id=run_id,
                        key=key,
                        limit=max_results + 1,
                        step=step,
                        timestamp=timestamp,
                        id=row_id,
                    )
        page = rows[:max_results]
        token = None
        if len(rows) > max_results:
            last = page[-1]
            token = encode_token(query, [last["step"], last["timestamp"], last["id"]])
        return PagedList([_metric(r) for r in page], token)

    def sample_metric_history(self, run_id: str, key: str, points: int) -> list[Metric]:
        m = metrics.c
        of_key = (m.run_uuid == run_id, m.key == key)
        with self.db.read() as conn:
            self._run_row(conn, run_id)
            n = conn.execute(select(func.count()).select_from(metrics).where(*of_key)).scalar_one()
            if n <= points:
                whole = select(metrics).where(*of_key).order_by(m.step, m.timestamp, m.id)
                return [_metric(r) for r in conn.execute(whole).mappings()]
            # The rows between the first and the last fall in buckets of equal count, and each
            # bucket keeps its lowest and its highest value (NaN only in a bucket of NaN): a
            # spike stays on the chart wherever it falls, where one row per bucket (or MLflow's
            # evenly spaced steps, get_metric_history_bulk_interval) drops it unless it lands
            # on a kept row.
            buckets = (points - 2) // 2
            order = func.row_number().over(order_by=(m.step, m.timestamp, m.id)) - 1
            numbered = select(metrics, order.label("i")).where(*of_key).subquery()
            c = numbered.c
            bucket = (c.i - 1) * buckets // (n - 2)
            ends = or_(c.i == 0, c.i == n - 1)

            def rank(*by: Any) -> Any:
                return func.row_number().over(partition_by=(ends, bucket), order_by=by)

            ranked = select(
                numbered,
                ends.label("is_end"),
                rank(c.is_nan, c.value, c.i).label("low"),
                rank(c.is_nan, c.value.desc(), c.i).label("high"),
            ).subquery()
            r = ranked.c
            kept = r.is_end if buckets == 0 else or_(r.is_end, r.low == 1, r.high == 1)
            sample = select(ranked).where(kept).order_by(r.i)
            return [_metric(row) for row in conn.execute(sample).mappings()]

    # -- artifact index ------------------------------------------------------------------------

    def record_artifact(self, run_id: str, path: str, file_size: int, sha256: str) -> FileInfo:
        with self.db.write() as conn:
            self._active_run(conn, run_id)
            return self._record(conn, run_id, path, file_size, sha256)

    def _record(
        self, conn: Connection, run_id: str, path: str, file_size: int, sha256: str
    ) -> FileInfo:
        now = _now()
        stmt = self._insert(artifacts).values(
            run_uuid=run_id, path=path, file_size=file_size, sha256=sha256, created_time=now
        )
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["run_uuid", "path"],
                set_={
                    "file_size": stmt.excluded.file_size,
                    "sha256": stmt.excluded.sha256,
                    "created_time": stmt.excluded.created_time,
                },
            )
        )
        return FileInfo(
            path=path, is_dir=False, file_size=file_size, sha256=sha256, created_time=now
        )

    def find_artifact(self, run_id: str, path: str) -> FileInfo | None:
        with self.db.read() as conn, self.db.cursor(conn) as cursor:
            row = self._select_artifact.first(cursor, run_id=run_id, path=path)
        return _file_info(row) if row else None

    def list_artifacts(
        self, run_id: str, prefix: str, start: str = "", limit: int | None = None
    ) -> list[FileInfo]:
        with self.db.read() as conn:
            self._run_row(conn, run_id)
            with self.db.cursor(conn) as cursor:
                if limit is not None:
                    low = max(start, prefix + "/" if prefix else "")
                    if prefix:
                        rows = self._select_artifacts_between.rows(
                            cursor, run_id=run_id, low=low, high=prefix + "0", limit=limit
                        )
                    else:
                        rows = self._select_artifacts_from.rows(
                            cursor, run_id=run_id, low=low, limit=limit
                        )
                elif prefix:
                    rows = self._select_artifacts_under.rows(
                        cursor, run_id=run_id, low=prefix + "/", high=prefix + "0"
                    )
                else:
                    rows = self._select_artifacts.rows(cursor, run_id=run_id)
        return [_file_info(r) for r in rows]

    def forget_artifacts(self, run_id: str, paths: Sequence[str]) -> None:
        with self.db.write() as conn:
            self._forget(conn, run_id, paths)

    @staticmethod
    def _forget(conn: Connection, run_id: str, paths: Sequence[str]) -> None:
        for chunk in _chunks(list(paths)):
            conn.execute(
                delete(artifacts).where(artifacts.c.run_uuid == run_id, artifacts.c.path.in_(chunk))
            )

    # -- artifact placements -------------------------------------------------------------------

    def take_placement(self, lease: ArtifactPlacement) -> ArtifactPlacement | None:
        with self.db.write() as conn:
            self._active_run(conn, lease.run_id)
            return self._take_leases(conn, lease.run_id, [lease])

    def take_deletion(self, leases: Sequence[ArtifactPlacement]) -> ArtifactPlacement | None:
        if not leases:
            return None
        run_id = leases[0].run_id
        try:
            with self.db.write() as conn:
                self._active_run(conn, run_id)
                holder = self._take_leases(conn, run_id, leases)
                if holder is not None:
                    raise _Held(holder)  # rolls back the leases taken
                self._forget(conn, run_id, [lease.path for lease in leases])
        except _Held as held:
            return held.lease
        return None

    def _take_leases(
        self, conn: Connection, run_id: str, leases: Sequence[ArtifactPlacement]
    ) -> ArtifactPlacement | None:
        """Insert `leases` (of `run_id`), a few statements per 500; None if all went in, else the
        lease holding one of their paths, or one of `leases` itself if those paths kept changing
        hands. The caller rolls back what went in if it needs all or nothing."""
        p = artifact_placements.c
        pending = {lease.path: lease for lease in leases}
        for _ in range(3):
            for chunk in _chunks(list(pending.values())):
                insert_leases = (
                    self._insert(artifact_placements)
                    .values(
                        [
                            {
                                "run_uuid": lease.run_id,
                                "path": lease.path,
                                "staged_key": lease.staged_key,
                                "sha256": lease.sha256,
                                "file_size": lease.file_size,
                                "expires_at": lease.expires_at,
                            }
                            for lease in chunk
                        ]
                    )
                    .on_conflict_do_nothing(index_elements=["run_uuid", "path"])
                    .returning(p.path)  # an INSERT reports rowcount -1 on PostgreSQL (psycopg)
                )
                for (path,) in conn.execute(insert_leases):
                    del pending[path]
            if not pending:
                return None
            # On PostgreSQL a concurrent insert makes ours wait for its commit, then do nothing;
            # its lease may be finished by the time we look, so try again (each statement of a
            # READ COMMITTED transaction sees what committed before it).
            for chunk in _chunks(list(pending)):
                row = conn.execute(
                    select(artifact_placements)
                    .where(p.run_uuid == run_id, p.path.in_(chunk))
                    .limit(1)
                ).first()
                if row is not None:
                    return _placement(row)
        return next(iter(pending.values()))

    def claim_placement(self, lease: ArtifactPlacement, expires_at: int) -> bool:
        with self.db.write() as conn:
            moved = conn.execute(
                update(artifact_placements)
                .where(*_same_lease(lease), artifact_placements.c.expires_at == lease.expires_at)
                .values(expires_at=expires_at)
            )
        return moved.rowcount == 1

    def finish_placement(self, lease: ArtifactPlacement) -> FileInfo:
        with self.db.write() as conn:
            if conn.execute(delete(artifact_placements).where(*_same_lease(lease))).rowcount != 1:
                raise Aborted(
                    f"the upload to artifact {lease.path!r} of run {lease.run_id!r} was taken "
                    "over after its lease expired; retry the upload",
                    resource_type="artifact",
                    resource_name=lease.path,
                )
            return self._record(conn, lease.run_id, lease.path, lease.file_size, lease.sha256)

    def drop_placement(self, lease: ArtifactPlacement) -> None:
        with self.db.write() as conn:
            conn.execute(delete(artifact_placements).where(*_same_lease(lease)))

    def drop_deletion(self, leases: Sequence[ArtifactPlacement]) -> None:
        self._deletion_leases(leases, lambda where: delete(artifact_placements).where(*where))

    def release_deletion(self, leases: Sequence[ArtifactPlacement]) -> None:
        self._deletion_leases(
            leases, lambda where: update(artifact_placements).where(*where).values(expires_at=0)
        )

    def _deletion_leases(
        self, leases: Sequence[ArtifactPlacement], statement: Callable[[list[Any]], Any]
    ) -> None:
        """Run `statement` on the leases one take_deletion stored, those still as it stored
        them, 500 paths at a time."""
        if not leases:
            return
        first, p = leases[0], artifact_placements.c
        with self.db.write() as conn:
            for chunk in _chunks([lease.path for lease in leases]):
                where = [
                    p.run_uuid == first.run_id,
                    p.path.in_(chunk),
                    p.staged_key == first.staged_key,
                    p.expires_at == first.expires_at,  # not a successor's, once it expired
                ]
                conn.execute(statement(where))

    def find_placements(self, run_id: str | None = None, path: str = "") -> list[ArtifactPlacement]:
        p = artifact_placements.c
        stmt = select(artifact_placements)
        if run_id is not None:
            stmt = stmt.where(p.run_uuid == run_id)
        if path:
            # The path itself, and the range of "<path>/..." ('0' follows '/').
            stmt = stmt.where(or_(p.path == path, and_(p.path > path + "/", p.path < path + "0")))
        with self.db.read() as conn:
            return [_placement(r) for r in conn.execute(stmt.order_by(p.run_uuid, p.path))]

    def artifact_state(
        self, run_id: str, path: str
    ) -> tuple[FileInfo | None, ArtifactPlacement | None]:
        p = artifact_placements.c
        with self.db.read() as conn:
            with self.db.cursor(conn) as cursor:
                row = self._select_artifact.first(cursor, run_id=run_id, path=path)
            lease = conn.execute(
                select(artifact_placements).where(p.run_uuid == run_id, p.path == path)
            ).first()
        return (_file_info(row) if row else None), (_placement(lease) if lease else None)


def _same_lease(lease: ArtifactPlacement) -> tuple[Any, ...]:
    p = artifact_placements.c
    return (p.run_uuid == lease.run_id, p.path == lease.path, p.staged_key == lease.staged_key)


class _Held(Exception):
    """Rolls back a deletion whose paths another lease holds."""

    def __init__(self, lease: ArtifactPlacement) -> None:
        super().__init__(lease.path)
        self.lease = lease


def _placement(row: Row) -> ArtifactPlacement:
    return ArtifactPlacement(
        run_id=row.run_uuid,
        path=row.path,
        staged_key=row.staged_key,
        sha256=row.sha256,
        file_size=row.file_size,
        expires_at=row.expires_at,
    )


class _CommitFailed(Exception):
    """The commit of a hot-path transaction failed: whether it took effect is unknown."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _chunks(items: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), _IN_CHUNK):
        yield items[start : start + _IN_CHUNK]


def _last_per_key(items: Sequence[RunTag]) -> list[RunTag]:
    return list({t.key: t for t in items}.values())


def _metric(row: Mapping[str, Any]) -> Metric:
    return Metric(
        key=row["key"],
        value=math.nan if row["is_nan"] else row["value"],
        timestamp=row["timestamp"],
        step=row["step"],
    )


# Stored value -> enum member, without Enum.__call__ per row (a page of runs is hundreds).
_STATUSES = {s.value: s for s in RunStatus}
_STAGES = {s.value: s for s in LifecycleStage}


def _run_info(row: Any) -> RunInfo:
    status = row["status"]
    stage = row.get("lifecycle_stage", LifecycleStage.ACTIVE.value)
    return RunInfo(
        row["run_uuid"],
        str(row["experiment_id"]),
        row["name"],
        row["user_id"],
        _STATUSES.get(status) or RunStatus(status),
        row["start_time"],
        row["end_time"],
        row["artifact_uri"],
        _STAGES.get(stage) or LifecycleStage(stage),
        row["parent_run_id"],
    )


def _file_info(row: Mapping[str, Any]) -> FileInfo:
    return FileInfo(
        path=row["path"],
        is_dir=False,
        file_size=row["file_size"],
        sha256=row["sha256"],
        created_time=row["created_time"],
    )


def _experiment(row: Mapping[Any, Any], tags: dict[str, str]) -> Experiment:
    return Experiment(
        experiment_id=str(row["experiment_id"]),
        name=row["name"],
        artifact_location=row["artifact_location"],
        lifecycle_stage=LifecycleStage(row["lifecycle_stage"]),
        tags=tags,
        creation_time=row["creation_time"],
        last_update_time=row["last_update_time"],
    )
