"""The metric-logging hot path: plain SQL on the raw DBAPI cursor, and group commit.

log_metric is the call training loops make thousands of times, and LogBatch carries up to
thousands of metrics a call; going through SQLAlchemy's execution machinery (or building entity
objects) costs more than the statements themselves. Metrics arrive here as plain tuples
`(key, value, timestamp_ms, step)`, grouped by run: `(run_id, rows)`.

A write checks its runs once and writes only the rows of runs that exist and are active; the
runs it skipped are reported back, so that their writers get the precise error and everyone
else's rows stand. On SQLite that is a SELECT and plain inserts inside the (serialized) write
transaction; a write of one value checks its run inside its two statements instead. On
PostgreSQL, where every round trip counts, a write of a few rows is a single statement run in
autocommit mode, so it is its own transaction, committed (synchronously) before its result comes
back: one round trip per write. Large writes use COPY in a transaction.

Group commit (`GroupCommit`): every call is its own synchronous commit, so concurrent writers
mostly wait for each other's commits. Instead the first writer becomes the leader, takes every
write queued meanwhile, writes them all in one transaction, commits once, and then wakes each
follower with its own outcome; the next queued writer then leads. A write is acknowledged only
after the commit that holds it. If the shared transaction fails before its commit, the leader
writes each queued call in a transaction of its own, so one writer's bad call fails that writer
alone.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

# (key, value, timestamp in ms, step): one logged metric value.
MetricRow = tuple[str, float, int, int]
# (run_id, metric rows): one writer's call.
RunRows = tuple[str, Sequence[MetricRow]]

COPY_MIN = 64  # from this many rows, PostgreSQL gets them through COPY in a transaction

_COLUMNS = "run_uuid, key, value, is_nan, timestamp, step"
_INSERT = f"INSERT INTO metrics ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
# Binary COPY: the server reads numbers without parsing their text (measured 0.1-0.5 ms less
# per 1000 rows).
_COPY = f"COPY metrics ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = ("varchar", "varchar", "float8", "bool", "int8", "int8")
# The latest value of a key is MLflow's: the highest (step, timestamp, value), NaN counting as its
# stored 0; a value equal on all three leaves the one already there.
_ON_CONFLICT = (
    " ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value, "
    "is_nan = excluded.is_nan, timestamp = excluded.timestamp, step = excluded.step "
    "WHERE (excluded.step, excluded.timestamp, excluded.value) "
    "> (latest_metrics.step, latest_metrics.timestamp, latest_metrics.value)"
)
# latest_metrics also holds each run's experiment and start time, which search orders by.
_LATEST_COLUMNS = f"{_COLUMNS}, experiment_id, start_time"
_UPSERT_LATEST = (
    f"INSERT INTO latest_metrics ({_LATEST_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)" + _ON_CONFLICT
)
_ACTIVE_SQLITE = (
    "SELECT run_uuid, experiment_id, start_time FROM runs WHERE run_uuid IN ({}) "
    "AND lifecycle_stage = 'active'"
)
# SQLite, one value of one run (log_metric): the run's check rides in the insert (no row if the
# run is missing or deleted), and the upsert takes the experiment from it, so the write needs no
# SELECT of its own: in-process 22 -> 17.5 µs of CPU per write; through gRPC, interleaved, 2,071
# -> 2,214 single calls/s. The upsert's WHERE also keeps SQLite from reading ON CONFLICT as a
# join's ON.
_INSERT_ONE_SQLITE = (
    f"INSERT INTO metrics ({_COLUMNS}) SELECT run_uuid, ?, ?, ?, ?, ? FROM runs "
    "WHERE run_uuid = ? AND lifecycle_stage = 'active'"
)
_UPSERT_ONE_SQLITE = (
    f"INSERT INTO latest_metrics ({_LATEST_COLUMNS}) "
    "SELECT run_uuid, ?, ?, ?, ?, ?, experiment_id, start_time FROM runs WHERE run_uuid = ?"
    + _ON_CONFLICT
)
# PostgreSQL: one primary-key lookup per run, fenced (OFFSET 0) so that no plan, with or without
# statistics, scans the runs table instead. FOR KEY SHARE holds each run until the write commits
# (the metrics history has no foreign key to do it row by row).
_ACTIVE_PG = (
    "SELECT r.run_uuid, r.experiment_id, r.start_time FROM unnest(%b::varchar[]) AS ids(id) "
    "CROSS JOIN LATERAL (SELECT run_uuid, experiment_id, start_time FROM runs "
    "WHERE run_uuid = ids.id AND lifecycle_stage = 'active' OFFSET 0 FOR KEY SHARE) AS r"
)
# Table rows sent as one array per column (PostgreSQL), in binary (%b): psycopg writes a list as
# a text array literal for %s, at 3x the CPU (the store's LogBatch of 1000 rows: 8.8 -> 8.1 ms).
_ARRAYS_PG = "%b::varchar[], %b::varchar[], %b::float8[], %b::bool[], %b::bigint[], %b::bigint[]"
# The latest values of a large write, as one statement (fewer round trips than one per key).
_UPSERT_LATEST_ROWS_PG = (
    f"INSERT INTO latest_metrics ({_LATEST_COLUMNS}) "
    f"SELECT * FROM unnest({_ARRAYS_PG}, %b::bigint[], %b::bigint[])" + _ON_CONFLICT
)
# The whole write in one statement: the active runs, their rows (in the order given: ids, and
# so history ties, follow it), their latest values; returns the runs written to. The rows come
# as one JSON array of [run_uuid, key, value, is_nan, timestamp, step]: psycopg's Python code
# dumps one string in a third of the time it takes for a set of binary arrays (a group of 3
# writes: 0.06 against 0.15 ms of the leader's CPU, 0.34 against 0.43 ms for the whole write).
_JSON_ROWS_PG = (
    "SELECT e->>0 AS run_uuid, e->>1 AS key, (e->>2)::float8 AS value, (e->>3)::bool AS is_nan, "
    "(e->>4)::bigint AS timestamp, (e->>5)::bigint AS step, n "
    "FROM json_array_elements(%s::json) WITH ORDINALITY AS r(e, n)"
)
_WRITE_PG = (
    f"WITH rows AS ({_JSON_ROWS_PG}), "
    "active AS (SELECT r.run_uuid, r.experiment_id, r.start_time "
    "FROM (SELECT DISTINCT run_uuid FROM rows) AS ids CROSS JOIN LATERAL "
    "(SELECT run_uuid, experiment_id, start_time FROM runs WHERE run_uuid = ids.run_uuid "
    "AND lifecycle_stage = 'active' OFFSET 0 FOR KEY SHARE) AS r), "
    f"ins AS (INSERT INTO metrics ({_COLUMNS}) SELECT {_COLUMNS} FROM rows "
    "WHERE run_uuid IN (SELECT run_uuid FROM active) ORDER BY n), "
    # The newest row per (run, key), as _newest picks it, in (run, key) order.
    f"up AS (INSERT INTO latest_metrics ({_LATEST_COLUMNS}) "
    "SELECT DISTINCT ON (l.run_uuid, l.key) l.run_uuid, l.key, l.value, l.is_nan, l.timestamp, "
    "l.step, a.experiment_id, a.start_time FROM rows AS l JOIN active AS a "
    "ON a.run_uuid = l.run_uuid "
    "ORDER BY l.run_uuid, l.key, l.step DESC, l.timestamp DESC, l.value DESC, l.n"
    + _ON_CONFLICT
    + ") "
    "SELECT run_uuid FROM active"
)


# The same for the commonest write, one value of one run (log_metric), with plain parameters:
# PostgreSQL reads and plans them faster than the JSON (0.24 against 0.29 ms for the write).
_WRITE_ONE_PG = (
    "WITH active AS (SELECT run_uuid, experiment_id, start_time FROM runs "
    "WHERE run_uuid = %(run)s AND lifecycle_stage = 'active' FOR KEY SHARE), "
    f"ins AS (INSERT INTO metrics ({_COLUMNS}) "
    "SELECT run_uuid, %(key)s, %(value)s, %(is_nan)s, %(timestamp)s, %(step)s FROM active), "
    f"up AS (INSERT INTO latest_metrics ({_LATEST_COLUMNS}) "
    "SELECT run_uuid, %(key)s, %(value)s, %(is_nan)s, %(timestamp)s, %(step)s, experiment_id, "
    "start_time FROM active" + _ON_CONFLICT + ") "
    "SELECT run_uuid FROM active"
)


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    return [[row[i] for row in rows] for i in range(width)]


class MetricWriter:
    """The statements of the hot path for one dialect; stateless, safe to share."""

    def __init__(self, dialect: str) -> None:
        self.postgres = dialect == "postgresql"

        def native(sql: str) -> str:
            return sql.replace("?", "%s") if self.postgres else sql

        self._insert = native(_INSERT)
        self._upsert = native(_UPSERT_LATEST)

    @staticmethod
    def rows(batch: Sequence[RunRows]) -> list[tuple[Any, ...]]:
        """Table rows (run_uuid, key, value, is_nan, timestamp, step) of a batch."""
        return [
            # NaN cannot be stored portably: value 0 plus is_nan marks it (NaN != NaN).
            (run_id, key, 0.0 if value != value else float(value), value != value, timestamp, step)
            for run_id, items in batch
            for key, value, timestamp, step in items
        ]

    def active_runs(self, cursor: Any, run_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """run id -> (experiment id, start time) of those of `run_ids` that exist and are
        active."""
        if self.postgres:
            cursor.execute(_ACTIVE_PG, (list(run_ids),))
        else:
            cursor.execute(_ACTIVE_SQLITE.format(", ".join("?" * len(run_ids))), list(run_ids))
        return {run_id: (experiment, start) for run_id, experiment, start in cursor.fetchall()}

    def write(
        self,
        cursor: Any,
        batch: Sequence[RunRows],
        active: dict[str, tuple[int, int]] | None = None,
    ) -> set[str]:
        """Insert the metrics of the batch's active runs and move their latest values, inside
        the caller's transaction; return the ids of the runs skipped (missing or not active).
        `active` (as active_runs gives it) means the caller has checked the runs."""
        wanted = list(dict.fromkeys(run_id for run_id, _ in batch))
        if active is None:
            active = self.active_runs(cursor, wanted)
        skipped = {run_id for run_id in wanted if run_id not in active}
        rows = self.rows([item for item in batch if item[0] not in skipped])
        if not rows:
            return skipped
        if self.postgres and len(rows) >= COPY_MIN:
            with cursor.copy(_COPY) as copy:
                copy.set_types(_COPY_TYPES)
                for row in rows:
                    copy.write_row(row)
        elif len(rows) == 1:
            cursor.execute(self._insert, rows[0])
        else:
            cursor.executemany(self._insert, rows)
        latest = [(*row, *active[row[0]]) for row in _newest(rows)]
        if len(latest) == 1:
            cursor.execute(self._upsert, latest[0])
        elif self.postgres:
            cursor.execute(_UPSERT_LATEST_ROWS_PG, _columns(latest, 8))
        else:
            cursor.executemany(self._upsert, latest)
        return skipped

    def write_one_sqlite(self, cursor: Any, item: RunRows) -> set[str]:
        """SQLite: `write` for one value of one run, its run checked inside its statements."""
        run_id = item[0]
        values = (*self.rows([item])[0][1:], run_id)  # key, value, is_nan, timestamp, step; run
        cursor.execute(_INSERT_ONE_SQLITE, values)
        if cursor.rowcount == 0:
            return {run_id}
        cursor.execute(_UPSERT_ONE_SQLITE, values)
        return set()

    def write_statement(self, cursor: Any, batch: Sequence[RunRows]) -> set[str]:
        """PostgreSQL: the whole write as one statement; on a connection in autocommit mode it
        is committed when this returns. Returns the ids of the runs skipped."""
        wanted = list(dict.fromkeys(run_id for run_id, _ in batch))
        rows = self.rows(batch)
        if len(rows) == 1:
            names = ("run", "key", "value", "is_nan", "timestamp", "step")
            cursor.execute(_WRITE_ONE_PG, dict(zip(names, rows[0], strict=True)))
        else:
            cursor.execute(_WRITE_PG, (_json_rows(rows),))
        written = {run_id for (run_id,) in cursor.fetchall()}
        return {run_id for run_id in wanted if run_id not in written}


def _json_rows(rows: Sequence[tuple[Any, ...]]) -> str:
    """Table rows as a JSON array for _WRITE_PG. JSON has no infinities: those go as the
    strings PostgreSQL's float8 reads (NaN is already 0 plus is_nan, see rows())."""
    return json.dumps([_json_row(row) for row in rows])


def _json_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    value = row[2]
    if not math.isinf(value):
        return row
    return (*row[:2], "Infinity" if value > 0 else "-Infinity", *row[3:])


def _newest(rows: Iterable[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The row to keep in latest_metrics per (run, key), as _ON_CONFLICT picks it: highest
    (step, timestamp, stored value), the first of equals. Sorted by (run, key), so concurrent
    writers lock rows in the same order."""
    newest: dict[tuple[str, str], tuple[Any, ...]] = {}
    for row in rows:
        current = newest.get((row[0], row[1]))
        if current is None or (row[5], row[4], row[2]) > (current[5], current[4], current[2]):
            newest[(row[0], row[1])] = row
    return [newest[k] for k in sorted(newest)]


# -- group commit ------------------------------------------------------------------------------


class Job:
    """One writer's call, waiting in the group-commit queue."""

    __slots__ = ("_wake", "error", "lead", "rows", "run_id")

    def __init__(self, run_id: str, rows: Sequence[MetricRow]) -> None:
        self.run_id = run_id
        self.rows = rows
        self.error: BaseException | None = None
        self.lead = False
        # Held until the job is committed or made the leader: a bare lock is the cheapest
        # wake-up there is (an Event runs a Condition's Python code), see thread_pool._Idle.
        self._wake = threading.Lock()
        self._wake.acquire()


class GroupCommit:
    """Leader/follower group commit of metric writes (see the module docstring).

    `commit_group(jobs)` writes and commits the jobs and records every job's outcome in its
    `error` (None: committed). It runs in the leader's thread, one call at a time. A group holds
    at most `max_jobs` calls and, unless a single call is larger, `max_rows` rows.
    `on_queue(n)`, if given, is called after a writer queues up behind a leader, with the number
    now queued (tests use it to know when a group has formed).
    """

    def __init__(
        self,
        commit_group: Callable[[list[Job]], None],
        *,
        max_jobs: int = 256,
        max_rows: int = 20_000,
        on_queue: Callable[[int], None] | None = None,
    ) -> None:
        self._commit_group = commit_group
        self._max_jobs = max_jobs
        self._max_rows = max_rows
        self.on_queue = on_queue
        self._mutex = threading.Lock()
        self._queue: list[Job] = []
        self._leading = False  # a leader is writing; new jobs queue up for the next group

    def submit(self, run_id: str, rows: Sequence[MetricRow]) -> None:
        """Return once this write is committed; raise its own error if it failed."""
        job = Job(run_id, rows)
        with self._mutex:
            self._queue.append(job)
            if not self._leading:
                self._leading = job.lead = True
            queued = len(self._queue)
        if not job.lead:
            if self.on_queue is not None:
                self.on_queue(queued)
            job._wake.acquire()  # until a leader has committed it, or made this job the leader
        if job.lead:
            self._lead()
        if job.error is not None:
            raise job.error

    def _lead(self) -> None:
        with self._mutex:
            group = self._take()
        try:
            self._commit_group(group)
        except BaseException as exc:  # commit_group records outcomes; this is a last resort
            for job in group:
                if job.error is None:
                    job.error = exc
        finally:
            with self._mutex:
                if self._queue:  # hand over: the oldest waiting writer leads the next group
                    successor = self._queue[0]
                    successor.lead = True
                    successor._wake.release()
                else:
                    self._leading = False
            for job in group:
                job.lead = False
                job._wake.release()  # held: by its waiting writer, or since the job was made

    def _take(self) -> list[Job]:
        """Pop the next group off the queue, oldest first, within the size limits."""
        rows = 0
        count = 0
        for job in self._queue:
            if count and (count >= self._max_jobs or rows + len(job.rows) > self._max_rows):
                break
            count += 1
            rows += len(job.rows)
        group, self._queue = self._queue[:count], self._queue[count:]
        return group
