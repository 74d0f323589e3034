"""Group commit of metric writes: concurrent writers share one transaction and one commit, and
each gets its own outcome.

Groups are formed deterministically: the first writer's commit is held inside the store until the
others are queued behind it (GroupCommit's on_queue hook reports the queue), never by sleeping.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import pytest

from modelyard.entities import Metric, Param
from modelyard.errors import FailedPrecondition, NotFound
from modelyard.services.common.db import Database
from modelyard.services.tracking.app import migrate
from modelyard.services.tracking.store.hot import GroupCommit, Job
from modelyard.services.tracking.store.sql import SqlTrackingStore

ROW = ("loss", 1.0, 1000, 0)
WAIT = 60  # seconds: a safety net against a hang, never the thing being measured


class Gate:
    """Hold the first group's commit until `expected` writers are queued behind it."""

    def __init__(self, group: GroupCommit, expected: int) -> None:
        self.expected = expected
        self.inside = threading.Event()
        self.queued = threading.Event()
        self.groups: list[list[str]] = []
        self._commit = group._commit_group
        group._commit_group = self._hold
        group.on_queue = self._on_queue

    def _on_queue(self, n: int) -> None:
        if n >= self.expected:
            self.queued.set()

    def _hold(self, jobs: list[Job]) -> None:
        self.groups.append([j.run_id for j in jobs])
        if len(self.groups) == 1:
            self.inside.set()
            assert self.queued.wait(WAIT), "the other writers never queued up"
        self._commit(jobs)


class Writer(threading.Thread):
    """Runs one call in a thread and keeps its outcome."""

    def __init__(self, call: Callable[[], Any]) -> None:
        super().__init__()
        self.call = call
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.call()
        except BaseException as exc:  # the outcome under test
            self.error = exc


def run_group(gate: Gate, leader: Writer, followers: list[Writer]) -> None:
    leader.start()
    assert gate.inside.wait(WAIT)
    for w in followers:
        w.start()
    for w in [leader, *followers]:
        w.join(WAIT)
        assert not w.is_alive()


# -- GroupCommit on its own --------------------------------------------------------------------


def test_writers_queued_behind_a_leader_share_one_commit() -> None:
    commits: list[list[str]] = []
    group = GroupCommit(lambda jobs: commits.append([j.run_id for j in jobs]))
    gate = Gate(group, expected=5)
    leader = Writer(lambda: group.submit("lead", [ROW]))
    followers = [Writer(partial(group.submit, f"w{i}", [ROW, ROW])) for i in range(5)]
    run_group(gate, leader, followers)
    assert [w.error for w in [leader, *followers]] == [None] * 6
    assert commits[0] == ["lead"]
    assert sorted(commits[1]) == [f"w{i}" for i in range(5)]  # one group: one commit
    assert len(commits) == 2


def test_each_writer_gets_its_own_outcome() -> None:
    def commit(jobs: list[Job]) -> None:
        for job in jobs:
            if job.run_id == "bad":
                job.error = ValueError("bad row")

    group = GroupCommit(commit)
    gate = Gate(group, expected=4)
    leader = Writer(lambda: group.submit("lead", [ROW]))
    bad = Writer(lambda: group.submit("bad", [ROW]))
    good = [Writer(partial(group.submit, f"w{i}", [ROW])) for i in range(3)]
    run_group(gate, leader, [bad, *good])
    assert isinstance(bad.error, ValueError)
    assert [w.error for w in [leader, *good]] == [None] * 4


def test_a_failing_group_fails_its_writers_and_the_next_group_runs() -> None:
    calls: list[list[str]] = []

    def commit(jobs: list[Job]) -> None:
        calls.append([j.run_id for j in jobs])
        if len(calls) == 2:
            raise RuntimeError("database went away")

    group = GroupCommit(commit)
    gate = Gate(group, expected=3)
    leader = Writer(lambda: group.submit("lead", [ROW]))
    followers = [Writer(partial(group.submit, f"w{i}", [ROW])) for i in range(3)]
    run_group(gate, leader, followers)
    assert leader.error is None
    assert all(isinstance(w.error, RuntimeError) for w in followers)
    group.submit("later", [ROW])  # leadership was handed back
    assert calls[-1] == ["later"]


def test_group_size_is_bounded() -> None:
    commits: list[int] = []
    group = GroupCommit(lambda jobs: commits.append(len(jobs)), max_jobs=2)
    gate = Gate(group, expected=5)
    leader = Writer(lambda: group.submit("lead", [ROW]))
    followers = [Writer(partial(group.submit, f"w{i}", [ROW])) for i in range(5)]
    run_group(gate, leader, followers)
    assert commits == [1, 2, 2, 1]
    assert all(w.error is None for w in followers)


# -- the store's group commit, on every backend ------------------------------------------------


# The database_url backends that are servers (PostgreSQL here, and in a container where Docker is).
ON_A_DATABASE_SERVER = pytest.mark.parametrize(
    "database_url",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("postgres-container", marks=pytest.mark.docker),
    ],
    indirect=True,
)


@pytest.fixture
def store(database_url: str) -> Iterator[SqlTrackingStore]:
    db = Database(database_url)
    migrate(db)
    s = SqlTrackingStore(db, "file:///artifacts")
    s.ensure_experiment(0, "Default")
    yield s
    s.close()


def new_run(store: SqlTrackingStore) -> str:
    return store.create_run("0", "u", 1000, {}, "r", None).info.run_id


def history(store: SqlTrackingStore, run_id: str, key: str = "loss") -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in store.get_metric_history(run_id, key, 1000, "")]


def test_concurrent_writers_all_get_their_rows(store: SqlTrackingStore) -> None:
    runs = [new_run(store) for _ in range(4)]
    shared = new_run(store)

    def write(n: int) -> None:
        for step in range(30):
            if step % 3:
                store.log_metric(runs[n % 4], Metric(f"k{n}", float(step), step, step))
            else:
                mine = (f"k{n}", float(step), step, step)
                store.log_metric_rows(shared, [mine, ("loss", float(n), step, n * 100 + step)])

    writers = [Writer(partial(write, n)) for n in range(8)]
    for w in writers:
        w.start()
    for w in writers:
        w.join(WAIT)
    assert [w.error for w in writers] == [None] * 8
    for n in range(8):
        alone = history(store, runs[n % 4], f"k{n}")
        together = history(store, shared, f"k{n}")
        assert sorted(alone + together) == [(s, float(s)) for s in range(30)]
    assert len(history(store, shared)) == 8 * 10
    assert store.get_run(shared).data.metrics["loss"] == 7.0  # highest step: n=7, step 27


def test_one_writers_bad_call_fails_only_that_writer(store: SqlTrackingStore) -> None:
    leader_run = new_run(store)
    good = [new_run(store) for _ in range(3)]
    deleted = new_run(store)
    store.delete_run(deleted)
    unstorable = new_run(store)
    gate = Gate(store._group, expected=6)

    def log(run_id: str, step: int = 0) -> Callable[[], None]:
        return lambda: store.log_metric_rows(run_id, [("loss", 1.0, 10, step), ("acc", 0.5, 10, 0)])

    leader = Writer(log(leader_run))
    writers = [Writer(log(r)) for r in good]
    on_deleted = Writer(log(deleted))
    on_missing = Writer(log("f" * 32))
    too_big = Writer(log(unstorable, step=2**70))  # no database stores this step
    run_group(gate, leader, [*writers, on_deleted, on_missing, too_big])

    assert len(gate.groups) == 2 and len(gate.groups[1]) == 6  # the six shared a group
    assert [w.error for w in [leader, *writers]] == [None] * 4
    assert isinstance(on_deleted.error, FailedPrecondition)
    assert isinstance(on_missing.error, NotFound)
    assert too_big.error is not None
    for run_id in [leader_run, *good]:  # written exactly once, although the group was retried
        assert history(store, run_id) == [(0, 1.0)]
        assert store.get_run(run_id).data.metrics == {"loss": 1.0, "acc": 0.5}
    assert history(store, deleted) == [] and history(store, unstorable) == []


def test_metrics_logged_with_params_share_the_hot_writer(store: SqlTrackingStore) -> None:
    run_id = new_run(store)
    metrics = [Metric(f"m{i % 10}", float(i), i, i) for i in range(200)]
    store.log_batch(run_id, metrics, [Param("p", "1")], [])
    assert len(history(store, run_id, "m3")) == 20
    assert store.get_run(run_id).data.metrics["m3"] == 193.0


@ON_A_DATABASE_SERVER  # SQLite runs in-process: a failed write is known not to have happened
def test_a_write_whose_outcome_is_unknown_is_never_retried(
    store: SqlTrackingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    runs = [new_run(store) for _ in range(3)]
    statements: list[str] = []

    class DiesMidStatement:
        """A connection that breaks while a write is in flight: committed or not, who knows."""

        closed = broken = False

        def cursor(self) -> DiesMidStatement:
            return self

        def __enter__(self) -> DiesMidStatement:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def execute(self, sql: str, params: object = None) -> None:
            statements.append(sql)
            self.broken = True
            raise psycopg.OperationalError("server closed the connection unexpectedly")

        def close(self) -> None:
            return None

    monkeypatch.setattr(store, "_hot_connection", DiesMidStatement)
    gate = Gate(store._group, expected=2)
    leader = Writer(lambda: store.log_metric_rows(runs[0], [ROW]))
    followers = [Writer(partial(store.log_metric_rows, r, [ROW])) for r in runs[1:]]
    run_group(gate, leader, followers)
    monkeypatch.undo()
    # Each writer is told, and nothing was sent twice: a retry could write a value twice.
    assert all(isinstance(w.error, psycopg.OperationalError) for w in [leader, *followers])
    assert sorted(gate.groups[1]) == sorted(runs[1:])  # the followers shared one write
    assert len(statements) == 2
    store.log_metric_rows(runs[0], [ROW])  # the hot path goes on with a new connection
    assert history(store, runs[0]) == [(0, 1.0)]


@ON_A_DATABASE_SERVER  # SQLite has no server connection to lose
def test_the_hot_path_reconnects_after_losing_its_connection(
    store: SqlTrackingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.services.tracking.store import sql

    run_id = new_run(store)
    store.log_metric_rows(run_id, [ROW])  # opens the hot path's connection
    with store.db.engine.connect() as conn:  # as a database restart would
        conn.exec_driver_sql(f"SELECT pg_terminate_backend({store._hot.info.backend_pid}, 30000)")
    monkeypatch.setattr(sql, "IDLE_PING_SECONDS", 0.0)  # "idle long enough": checked before use
    store.log_metric_rows(run_id, [("loss", 2.0, 1000, 1)])
    assert history(store, run_id) == [(0, 1.0), (1, 2.0)]
