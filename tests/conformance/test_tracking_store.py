"""The tracking store contract, run on every backend (SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import json
import math
import random
import threading
from collections.abc import Iterator

import psycopg
import pytest

from modelyard.entities import DatasetInput, Metric, Param, RunStatus, RunTag, ViewType
from modelyard.entities.common import PermissionLevel
from modelyard.entities.tracking import Dataset, InputTag
from modelyard.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from modelyard.services.common.auth.grants import GrantStore, Visibility
from modelyard.services.common.db import Database
from modelyard.services.common.filters import parse_filter, parse_order_by
from modelyard.services.tracking.app import migrate
from modelyard.services.tracking.store import search
from modelyard.services.tracking.store.hot import COPY_MIN
from modelyard.services.tracking.store.schema import experiment_permissions
from modelyard.services.tracking.store.sql import SqlTrackingStore

ROOT = "file:///artifacts"


@pytest.fixture
def store(database_url: str) -> Iterator[SqlTrackingStore]:
    db = Database(database_url)
    migrate(db)
    s = SqlTrackingStore(db, ROOT)
    s.ensure_experiment(0, "Default")
    yield s
    s.close()


def new_run(store: SqlTrackingStore, experiment_id: str = "0", **kw):
    defaults = dict(user_id="u", start_time=1000, tags={}, run_name="r", parent_run_id=None)
    defaults.update(kw)
    return store.create_run(experiment_id, **defaults)


def search_runs(store, exp_ids, flt="", order=(), view=ViewType.ACTIVE_ONLY, n=1000, token=""):
    return store.search_runs(
        exp_ids, parse_filter(flt), view, n, parse_order_by(list(order)), token
    )


def test_default_experiment_exists_once(store: SqlTrackingStore) -> None:
    store.ensure_experiment(0, "Default")
    exp = store.get_experiment("0")
    assert exp.name == "Default"
    assert exp.artifact_location == f"{ROOT}/0"


def test_experiment_lifecycle(store: SqlTrackingStore) -> None:
    eid = store.create_experiment("exp-a", None, {"team": "risk"})
    exp = store.get_experiment(eid)
    assert exp.name == "exp-a" and exp.tags == {"team": "risk"}
    assert exp.artifact_location == f"{ROOT}/{eid}"
    with pytest.raises(AlreadyExists):
        store.create_experiment("exp-a", None, {})
    store.rename_experiment(eid, "exp-b")
    assert store.find_experiment_by_name("exp-b").experiment_id == eid
    assert store.find_experiment_by_name("exp-a") is None
    store.set_experiment_tag(eid, "team", "fraud")
    assert store.get_experiment(eid).tags == {"team": "fraud"}
    store.delete_experiment_tag(eid, "team")
    assert store.get_experiment(eid).tags == {}
    with pytest.raises(NotFound):
        store.delete_experiment_tag(eid, "team")
    with pytest.raises(NotFound):
        store.get_experiment("999999")


def test_delete_experiment_deletes_and_restores_its_runs(store: SqlTrackingStore) -> None:
    eid = store.create_experiment("e", None, {})
    kept_deleted = new_run(store, eid).info.run_id
    store.delete_run(kept_deleted)
    active = new_run(store, eid).info.run_id
    store.delete_experiment(eid)
    assert store.get_experiment(eid).lifecycle_stage == "deleted"
    assert store.get_run(active).info.lifecycle_stage == "deleted"
    with pytest.raises(FailedPrecondition):
        new_run(store, eid)
    store.restore_experiment(eid)
    assert store.get_run(active).info.lifecycle_stage == "active"
    # A run deleted on its own before the experiment stays deleted.
    assert store.get_run(kept_deleted).info.lifecycle_stage == "deleted"


def test_search_experiments_filter_order_pages(store: SqlTrackingStore) -> None:
    for i in range(7):
        eid = store.create_experiment(f"fraud-{i}", None, {"i": str(i)})
    store.create_experiment("other", None, {})
    store.delete_experiment(eid)
    filters = parse_filter("name LIKE 'fraud-%'")
    order = parse_order_by(["name DESC"])
    first = store.search_experiments(ViewType.ACTIVE_ONLY, filters, order, 4, "")
    assert [e.name for e in first] == ["fraud-5", "fraud-4", "fraud-3", "fraud-2"]
    second = store.search_experiments(ViewType.ACTIVE_ONLY, filters, order, 4, first.token)
    assert [e.name for e in second] == ["fraud-1", "fraud-0"] and second.token is None
    deleted = store.search_experiments(ViewType.DELETED_ONLY, (), (), 10, "")
    assert [e.name for e in deleted] == ["fraud-6"]
    tagged = store.search_experiments(ViewType.ALL, parse_filter("tags.i = '3'"), (), 10, "")
    assert [e.name for e in tagged] == ["fraud-3"]
    with pytest.raises(InvalidArgument, match="different query"):
        store.search_experiments(ViewType.ALL, (), order, 4, first.token)
    # The refusal of a run's field lists every field experiments have (experiment_id was
    # left out, though it filters).
    with pytest.raises(InvalidArgument) as err:
        store.search_experiments(ViewType.ALL, parse_filter("metrics.m > 1"), (), 4, "")
    for attribute in ("creation_time", "experiment_id", "last_update_time", "name", "tags."):
        assert attribute in str(err.value)
    assert err.value.field == "filter"


def test_search_experiments_ilike_folds_case_beyond_ascii(store: SqlTrackingStore) -> None:
    """One ILIKE for every service and backend (the registry's searches share it): SQLite's
    own lower() left 'ÉTÉ' as it was, so the search found nothing there."""
    store.create_experiment("ÉTÉ-Σ", None, {})
    store.create_experiment("other", None, {})
    flt = parse_filter("name ILIKE 'été-\u03c3'")  # a lower-case sigma
    found = store.search_experiments(ViewType.ALL, flt, (), 10, "")
    assert [e.name for e in found] == ["ÉTÉ-Σ"]


def test_run_create_get_update(store: SqlTrackingStore) -> None:
    run = new_run(store, tags={"a": "b"}, run_name="first")
    info = run.info
    assert info.status == RunStatus.RUNNING and info.run_name == "first"
    assert info.artifact_uri == f"{ROOT}/0/{info.run_id}/artifacts"
    got = store.get_run(info.run_id)
    assert got.data.tags == {"a": "b"}
    updated = store.update_run(info.run_id, RunStatus.FINISHED, 5000, "renamed")
    assert (updated.status, updated.end_time, updated.run_name) == (
        RunStatus.FINISHED,
        5000,
        "renamed",
    )
    child = new_run(store, parent_run_id=info.run_id)
    assert store.get_run(child.info.run_id).info.parent_run_id == info.run_id
    with pytest.raises(NotFound):
        store.get_run("0" * 32)


def test_nested_run_must_share_experiment(store: SqlTrackingStore) -> None:
    parent = new_run(store).info.run_id
    other = store.create_experiment("other", None, {})
    with pytest.raises(InvalidArgument, match="parent"):
        new_run(store, other, parent_run_id=parent)


def test_params_are_immutable(store: SqlTrackingStore) -> None:
    rid = new_run(store).info.run_id
    store.log_param(rid, Param("lr", "0.1"))
    store.log_param(rid, Param("lr", "0.1"))  # same value again is fine
    with pytest.raises(InvalidArgument, match="immutable"):
        store.log_param(rid, Param("lr", "0.2"))
    with pytest.raises(InvalidArgument, match="twice"):
        store.log_batch(rid, [], [Param("x", "1"), Param("x", "2")], [])
    assert store.get_run(rid).data.params == {"lr": "0.1"}


# Each write path of the hot store sends values its own way (plain parameters, JSON, COPY).
# Not -0.0: SQLite keeps an integral REAL as an integer, and so reads it back as 0.0.
@pytest.mark.parametrize("size", [1, 7, 2 * COPY_MIN], ids=["one", "small-batch", "bulk-batch"])
def test_metric_values_round_trip_exactly(store: SqlTrackingStore, size: int) -> None:
    special = [0.1 + 0.2, 5e-324, -1.7976931348623157e308, 1 / 3, 2.0**53 + 2, -math.inf]
    values = [special[i % len(special)] * (1 + i // len(special)) for i in range(size)]
    rid = new_run(store).info.run_id
    store.log_batch(rid, [Metric("v", x, 10**12 + i, -i) for i, x in enumerate(values)], [], [])
    history = store.get_metric_history(rid, "v", 1000, "")
    got = sorted((m.step, m.timestamp, m.value) for m in history)
    want = sorted((-i, 10**12 + i, x) for i, x in enumerate(values))
    assert [repr(v) for v in got] == [repr(v) for v in want]
    assert store.get_run(rid).data.metrics["v"] == values[0]  # step 0 is the highest


@pytest.mark.parametrize("size", [2, 2 * COPY_MIN], ids=["small-batch", "bulk-batch"])
def test_a_batch_with_an_unstorable_value_writes_nothing(
    store: SqlTrackingStore, size: int
) -> None:
    rid = new_run(store).info.run_id
    batch = [Metric("m", float(i), 1, i) for i in range(size - 1)]
    with pytest.raises((OverflowError, psycopg.DataError)):  # the driver's or the server's
        store.log_batch(rid, [*batch, Metric("m", 1.0, 1, 2**70)], [], [])
    assert store.get_metric_history(rid, "m", 1000, "") == []
    assert store.get_run(rid).data.metrics == {}


def test_failed_batch_writes_nothing(store: SqlTrackingStore) -> None:
    rid = new_run(store).info.run_id
    store.log_param(rid, Param("p", "1"))
    with pytest.raises(InvalidArgument):
        store.log_batch(rid, [Metric("m", 1.0, 1, 0)], [Param("p", "2")], [RunTag("t", "v")])
    run = store.get_run(rid)
    assert run.data.metrics == {} and "t" not in run.data.tags


# Padded, the batch is large enough for the bulk path (COPY on PostgreSQL).
@pytest.mark.parametrize("padding", [0, 2 * COPY_MIN], ids=["small-batch", "bulk-batch"])
def test_metrics_history_latest_and_special_values(store: SqlTrackingStore, padding: int) -> None:
    rid = new_run(store).info.run_id
    store.log_batch(
        rid,
        [
            *(Metric("pad", float(i), 1, i) for i in range(padding)),
            Metric("loss", 3.0, 100, 0),
            Metric("loss", 2.0, 200, 1),
            Metric("loss", 9.0, 50, 0),  # an older step logged late: not the latest
            Metric("nan", math.nan, 1, 0),
            Metric("inf", math.inf, 1, 0),
            Metric("ninf", -math.inf, 1, 0),
        ],
        [],
        [],
    )
    store.log_metric(rid, Metric("loss", 1.5, 300, 2))
    store.log_metric(rid, Metric("loss", 7.0, 10, 1))  # step 1 < latest step 2
    metrics = store.get_run(rid).data.metrics
    assert metrics["loss"] == 1.5
    assert (
        math.isnan(metrics["nan"]) and metrics["inf"] == math.inf and metrics["ninf"] == -math.inf
    )
    history = store.get_metric_history(rid, "loss", 100, "")
    assert [(m.step, m.value) for m in history] == [
        (0, 9.0),
        (0, 3.0),
        (1, 7.0),
        (1, 2.0),
        (2, 1.5),
    ]
    # Values at the same step and time: the highest is the latest, as in MLflow, whatever the
    # order they came in, one call each or in one batch (NaN counts as 0 there).
    pad = [Metric("pad", float(i), 1, i) for i in range(padding)]
    for values, latest in (([5.0, 3.0], 5.0), ([3.0, 5.0], 5.0), ([1.0, math.nan], 1.0)):
        for one_by_one in (True, False):
            tied = new_run(store).info.run_id
            if one_by_one:
                for value in values:
                    store.log_metric(tied, Metric("tied", value, 7, 4))
            else:
                store.log_batch(tied, [*pad, *(Metric("tied", v, 7, 4) for v in values)], [], [])
            assert store.get_run(tied).data.metrics["tied"] == latest, (values, one_by_one)
    for values in ([math.nan, -1.0], [-1.0, math.nan]):  # -1 < the NaN's 0
        tied = new_run(store).info.run_id
        store.log_batch(tied, [*pad, *(Metric("tied", v, 7, 4) for v in values)], [], [])
        assert math.isnan(store.get_run(tied).data.metrics["tied"])
    # keyset pages cover the same sequence
    seen: list[tuple[int, float]] = []
    token = ""
    while True:
        page = store.get_metric_history(rid, "loss", 2, token)
        seen.extend((m.step, m.value) for m in page)
        token = page.token
        if not token:
            break
    assert seen == [(m.step, m.value) for m in history]


def test_tags_upsert_and_delete(store: SqlTrackingStore) -> None:
    rid = new_run(store).info.run_id
    store.set_tag(rid, RunTag("k", "1"))
    store.set_tag(rid, RunTag("k", "2"))
    assert store.get_run(rid).data.tags == {"k": "2"}
    store.delete_tag(rid, "k")
    assert store.get_run(rid).data.tags == {}
    with pytest.raises(NotFound):
        store.delete_tag(rid, "k")


def test_deleted_run_refuses_writes_until_restored(store: SqlTrackingStore) -> None:
    rid = new_run(store).info.run_id
    store.delete_run(rid)
    with pytest.raises(FailedPrecondition, match="deleted"):
        store.log_metric(rid, Metric("m", 1.0, 1, 0))
    store.restore_run(rid)
    store.log_metric(rid, Metric("m", 1.0, 1, 0))
    assert store.get_run(rid).data.metrics == {"m": 1.0}


def test_dataset_inputs_deduplicate(store: SqlTrackingStore) -> None:
    rid = new_run(store).info.run_id
    ds = Dataset(name="train", digest="abc", source_type="local", source="{}", schema="{}")
    item = DatasetInput(ds, (InputTag("mlflow.data.context", "training"),))
    store.log_inputs(rid, [item])
    store.log_inputs(rid, [item])
    other = new_run(store).info.run_id
    store.log_inputs(other, [DatasetInput(ds, (InputTag("mlflow.data.context", "eval"),))])
    inputs = store.get_run(rid).inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.name == "train"
    assert inputs[0].tags == (InputTag("mlflow.data.context", "training"),)
    found = search_runs(store, ["0"], "datasets.context = 'eval'")
    assert [r.info.run_id for r in found] == [other]


def test_search_runs_grammar(store: SqlTrackingStore) -> None:
    ids = []
    for i in range(6):
        rid = new_run(store, start_time=1000 + i, run_name=f"run-{i}").info.run_id
        ids.append(rid)
        store.log_batch(
            rid,
            [Metric("rmse", 1.0 / (i + 1), 0, 0), Metric("acc", i / 10, 0, 0)],
            [Param("model", "tree" if i % 2 else "linear"), Param("depth", str(i))],
            [RunTag("team", "a" if i < 3 else "b")],
        )
    store.update_run(ids[5], RunStatus.FAILED, 9999, None)

    def names(flt="", order=(), **kw):
        return [r.info.run_name for r in search_runs(store, ["0"], flt, order, **kw)]

    assert names("metrics.rmse < 0.22") == ["run-5", "run-4"]
    assert names("params.model = 'tree' and tags.team = 'b'") == ["run-5", "run-3"]
    assert names("params.depth IN ('1', '2')", ["params.depth DESC"]) == ["run-2", "run-1"]
    assert names("params.model LIKE 'TR%'") == []  # LIKE is case-sensitive
    assert names("params.model ILIKE 'TR%'", ["attributes.start_time"]) == [
        "run-1",
        "run-3",
        "run-5",
    ]
    assert names("attributes.status = 'FAILED'") == ["run-5"]
    assert names("attributes.run_name != 'run-0' and metrics.acc >= 0.4") == ["run-5", "run-4"]
    assert names("", ["metrics.rmse ASC"])[:2] == ["run-5", "run-4"]
    assert names(f"tags.missing IS NULL and attributes.run_id = '{ids[0]}'") == ["run-0"]
    assert names("attributes.end_time > 0") == ["run-5"]
    # MLflow's spellings: its attribute aliases, quoted attributes and a back-quoted prefix,
    # LIKE on run ids.
    for spelled in ("`run name`", '"Run Name"', "attributes.`Run name`", "run.`Run Name`"):
        assert names(f"{spelled} = 'run-2'") == ["run-2"], spelled
    for spelled in ("created", "Created", "attr.created"):
        assert names(f"{spelled} >= 1004") == ["run-5", "run-4"], spelled
    assert names("`metrics`.acc > 0.35 and `tags`.`team` = 'b'") == ["run-5", "run-4"]
    assert names(f"attributes.run_id LIKE '{ids[3][:8]}%'") == ["run-3"]
    assert names(f"attributes.run_id ILIKE '{ids[3][:8].upper()}%'") == ["run-3"]
    with pytest.raises(InvalidArgument, match="numeric"):
        search_runs(store, ["0"], "metrics.rmse = 'x'")
    with pytest.raises(InvalidArgument, match="quote"):
        search_runs(store, ["0"], "params.depth = 3")
    with pytest.raises(InvalidArgument, match="unknown attribute"):
        search_runs(store, ["0"], "attributes.color = 'red'")


def test_search_runs_order_missing_and_nan_values(store: SqlTrackingStore) -> None:
    a = new_run(store, run_name="a").info.run_id
    b = new_run(store, run_name="b").info.run_id
    c = new_run(store, run_name="c").info.run_id
    new_run(store, run_name="none")
    store.log_metric(a, Metric("m", 2.0, 0, 0))
    store.log_metric(b, Metric("m", math.nan, 0, 0))
    store.log_metric(c, Metric("m", -1.0, 0, 0))
    asc = [r.info.run_name for r in search_runs(store, ["0"], order=["metrics.m ASC"])]
    desc = [r.info.run_name for r in search_runs(store, ["0"], order=["metrics.m DESC"])]
    # As MLflow's: numbers, then NaN, then runs without the metric, in either direction.
    assert asc == ["c", "a", "b", "none"]
    assert desc == ["a", "c", "b", "none"]
    # NaN satisfies no comparison but !=, as in MLflow
    assert {r.info.run_name for r in search_runs(store, ["0"], "metrics.m > -100")} == {"a", "c"}
    assert {r.info.run_name for r in search_runs(store, ["0"], "metrics.m = 0")} == set()
    assert {r.info.run_name for r in search_runs(store, ["0"], "metrics.m != 2")} == {"b", "c"}


def test_search_runs_ties_break_newest_first_as_mlflow(store: SqlTrackingStore) -> None:
    """After the order keys, MLflow breaks ties by start time, newest first, then by run id;
    runs without the key come last in that order too. Through the walk and the plain query."""
    eid = store.create_experiment("ties", None, {})
    other = store.create_experiment("other", None, {})
    names = {}
    for start, (name, value) in enumerate(
        [("a", 1.0), ("b", 1.0), ("c", None), ("d", 1.0), ("e", None), ("f", 0.5)]
    ):
        rid = new_run(store, eid, run_name=name, start_time=start).info.run_id
        names[rid] = name
        if value is not None:
            store.log_batch(rid, [Metric("m", value, 0, 0)], [Param("p", "x")], [])
        else:
            store.log_batch(rid, [], [Param("p", "x")], [])
    for order, want in (
        ("metrics.m DESC", ["d", "b", "a", "f", "e", "c"]),
        ("metrics.m ASC", ["f", "d", "b", "a", "e", "c"]),
        ("params.p ASC", ["f", "e", "d", "c", "b", "a"]),
    ):
        for exp_ids in ([eid], [eid, other]):  # one experiment: the walk; two: the plain query
            for n in (2, 100):
                seen: list[str] = []
                token = ""
                while True:
                    page = search_runs(store, exp_ids, "", [order], n=n, token=token)
                    seen.extend(names[r.info.run_id] for r in page)
                    token = page.token
                    if not token:
                        break
                assert seen == want, (order, exp_ids, n)


def test_search_runs_pages_and_views(store: SqlTrackingStore) -> None:
    ids = [new_run(store, start_time=i).info.run_id for i in range(25)]
    store.delete_run(ids[0])
    pages, token = [], ""
    while True:
        page = search_runs(store, ["0"], n=10, token=token)
        pages.append(len(page))
        token = page.token
        if not token:
            break
    assert pages == [10, 10, 4]
    assert len(search_runs(store, ["0"], view=ViewType.DELETED_ONLY)) == 1
    assert len(search_runs(store, ["0"], view=ViewType.ALL)) == 25
    with pytest.raises(InvalidArgument):
        search_runs(store, ["0"], token="not-a-token")


def test_artifact_index(store: SqlTrackingStore) -> None:
    rid = new_run(store).info.run_id
    for path in ("a.txt", "dir/b.txt", "dir/sub/c.txt", "dir2/d.txt", "dir-x/e.txt"):
        store.record_artifact(rid, path, 3, "0" * 64)
    assert [f.path for f in store.list_artifacts(rid, "dir")] == ["dir/b.txt", "dir/sub/c.txt"]
    assert len(store.list_artifacts(rid, "")) == 5
    store.record_artifact(rid, "a.txt", 5, "1" * 64)
    assert store.find_artifact(rid, "a.txt").file_size == 5
    store.forget_artifacts(rid, ["a.txt"])
    assert store.find_artifact(rid, "a.txt") is None


def test_artifacts_are_read_a_page_at_a_time(store: SqlTrackingStore) -> None:
    """A page is read in the index, from a path on and at most `limit` rows, rather than every
    record of the run and then filtered: the cost of a page follows its size, not the run's."""
    rid = new_run(store).info.run_id
    paths = ["a.txt", "dir/b.txt", "dir/sub/c.txt", "dir-x/e.txt", "dir.txt", "dir2/d.txt"]
    for path in paths:
        store.record_artifact(rid, path, 3, "0" * 64)
    every = sorted(p.encode() for p in paths)
    assert [f.path.encode() for f in store.list_artifacts(rid, "")] == every
    assert [f.path for f in store.list_artifacts(rid, "", "dir.", limit=2)] == [
        "dir.txt",
        "dir/b.txt",
    ]
    assert [f.path for f in store.list_artifacts(rid, "", "dir0", limit=10)] == ["dir2/d.txt"]
    under = store.list_artifacts(rid, "dir", "dir/b.txt\x01", limit=10)
    assert [f.path for f in under] == ["dir/sub/c.txt"]
    assert [f.path for f in store.list_artifacts(rid, "dir", "", limit=1)] == ["dir/b.txt"]


def test_concurrent_logging_keeps_every_value(store: SqlTrackingStore) -> None:
    rid = new_run(store).info.run_id
    errors = []

    def worker(n: int) -> None:
        try:
            for step in range(25):
                store.log_metric(rid, Metric(f"w{n}", float(step), step, step))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for n in range(8):
        history = store.get_metric_history(rid, f"w{n}", 1000, "")
        assert [m.value for m in history] == [float(s) for s in range(25)]
    assert store.get_run(rid).data.metrics == {f"w{n}": 24.0 for n in range(8)}


@pytest.mark.parametrize(
    "walk", [None, (0, 1), (1000, 8)], ids=["uncapped", "tiny-cap", "default-cap"]
)
def test_search_by_one_metric_matches_the_plain_query(
    store: SqlTrackingStore, walk: tuple[int, int] | None
) -> None:
    """A search of one experiment ordered by one metric reads that metric's values in order
    (capped or not, falling back to the plain query); it must return exactly what the plain
    query does, page by page: NaN, infinities, ties, missing values, deleted runs, filters."""
    store.metric_walk = walk
    eid = store.create_experiment("walk", None, {})
    empty = store.create_experiment("empty", None, {})  # two experiments: the plain query
    other = store.create_experiment("other", None, {})
    rng = random.Random(3)
    values = [0.5, 0.5, 0.5, -1.0, 2.0, math.nan, math.nan, math.inf, -math.inf, 0.0, 7.25]
    for i in range(40):
        rid = new_run(store, eid, start_time=rng.randint(0, 5)).info.run_id
        logged = [Metric("f", float(i % 4), 0, 0)]
        if i % 7:
            logged.append(Metric("m", rng.choice(values), 0, 0))
        store.log_batch(rid, logged, [Param("p", "ab"[i % 2])], [RunTag("t", str(i % 3))])
        if i % 5 == 0:
            data = Dataset(name=f"d{i % 2}", digest="x", source_type="local")
            store.log_inputs(rid, [DatasetInput(data)])
        if i % 9 == 0:
            store.delete_run(rid)
    for _ in range(5):  # the same metric in another experiment stays out of the walk
        store.log_metric(new_run(store, other).info.run_id, Metric("m", 1.0, 0, 0))

    def all_pages(exp_ids, flt, order, view, n):
        seen: list[str] = []
        token = ""
        while True:
            page = search_runs(store, exp_ids, flt, [order], view, n, token)
            seen.extend(r.info.run_id for r in page)
            token = page.token
            if not token:
                return seen

    filters = [
        "params.p = 'a'",
        "metrics.f >= 2",
        "tags.t != '1' and attributes.start_time > 1",
        "datasets.name = 'd0'",
        "metrics.m != 0.5 and tags.missing IS NULL",
        "metrics.f != 1 and params.p != 'a' and attributes.status = 'RUNNING'",
    ]
    for flt in ["", *filters]:
        for order in ("metrics.m ASC", "metrics.m DESC"):
            for view in (ViewType.ACTIVE_ONLY, ViewType.ALL, ViewType.DELETED_ONLY):
                for n in (3, 100):
                    fast = all_pages([eid], flt, order, view, n)
                    plain = all_pages([eid, empty], flt, order, view, n)
                    assert fast == plain, (flt, order, view, n)
    flt, order = "params.p = 'b'", "metrics.m DESC"
    one_by_one = all_pages([eid], flt, order, ViewType.ALL, 1)
    assert one_by_one == all_pages([eid, empty], flt, order, ViewType.ALL, 1)


def test_a_search_statement_serves_every_search_of_its_shape(
    store: SqlTrackingStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Search statements are kept by the filter's shape, with the values bound per search:
    each search of a kept shape returns its own values' runs, and a filter whose value has
    another type is still checked, never answered by a kept statement."""
    first = store.create_experiment("first", None, {})
    second = store.create_experiment("second", None, {})
    runs: dict[str, list[str]] = {first: [], second: []}
    for eid in (first, second):
        for i in range(8):
            rid = new_run(store, eid, run_name=f"{eid}-{i}").info.run_id
            store.log_batch(
                rid, [Metric("m", float(i), 0, 0)], [Param("p", f"v{i}")], [RunTag("t", "x")]
            )
            runs[eid].append(rid)
            if i in (2, 5):
                ds = Dataset(name=f"data-{i}", digest="d", source_type="local")
                store.log_inputs(rid, [DatasetInput(ds)])

    built = 0
    build = search.run_conditions
    walks: list[bool] = []
    walk = search.runs_in_metric_order

    def counted(*args, **kwargs):
        nonlocal built
        built += 1
        return build(*args, **kwargs)

    def counted_walk(key, filters, view_type, capped, lateral, after):
        walks.append(capped)
        return walk(key, filters, view_type, capped, lateral, after)

    monkeypatch.setattr(search, "run_conditions", counted)
    monkeypatch.setattr(search, "runs_in_metric_order", counted_walk)

    def names(exp_ids, flt, order=()):
        return [r.info.run_name for r in search_runs(store, exp_ids, flt, order)]

    for eid in (first, second):  # one metric of one experiment: the walk
        for low in (5.0, 2.0, 6.5):
            got = names([eid], f"metrics.m >= {low} and params.p != 'v7'", ["metrics.m DESC"])
            assert got == [f"{eid}-{i}" for i in range(7, -1, -1) if i >= low and i != 7]
    # Every experiment, every value: one walk, and one statement for the runs without the metric.
    assert built == 2 and len(walks) == 1
    for values in (("v1",), ("v1", "v3", "v4"), ("v6", "v0")):  # IN lists of any length
        listed = ", ".join(f"'{v}'" for v in values)
        got = names([first, second], f"params.p IN ({listed})", ["attributes.run_name"])
        want = sorted(f"{e}-{v[1:]}" for e in (first, second) for v in values)
        assert got == want
    for pattern, count in (("v%", 16), ("%3", 2), ("x%", 0)):
        assert len(names([first, second], f"params.p LIKE '{pattern}'")) == count
    for name in ("data-2", "data-5"):
        got = names([first], f"datasets.name = '{name}'")
        assert got == [f"{first}-{name[-1]}"]
    for eid in (first, second):
        assert len(names([first, second], f"attributes.experiment_id = {eid}")) == 8
        assert len(names([first, second], f"attributes.experiment_id = '{eid}'")) == 8
    # One per shape, whatever the values (an experiment id is compared as text either way).
    assert built == 6
    # Runs without the order's metric follow the walk, by run id: kept by shape too.
    missing = {
        eid: sorted(new_run(store, eid, run_name=f"{eid}-x{j}").info.run_id for j in range(2))
        for eid in (first, second)
    }
    rests: list[object] = []
    rest = search.runs_missing_metric

    def counted_rest(*args):
        rests.append(args)
        return rest(*args)

    monkeypatch.setattr(search, "runs_missing_metric", counted_rest)
    for eid in (first, second):
        for skipped in (3, 6):
            found = search_runs(
                store, [eid], f"attributes.run_name != '{eid}-{skipped}'", ["metrics.m DESC"]
            )
            with_metric = [f"{eid}-{i}" for i in range(7, -1, -1) if i != skipped]
            assert [r.info.run_name for r in found][:7] == with_metric
            assert [r.info.run_id for r in found][7:] == missing[eid]
    assert len(rests) == 1
    # A fraction or a number past the 64-bit integers compares with an integer column as such.
    starts = {new_run(store, second, start_time=t).info.run_id: t for t in (5, 6, 7)}
    for bound, after in ((5.5, [6, 7]), (6.5, [7]), (1e19, [])):
        got = search_runs(store, [second], f"attributes.start_time > {bound}")
        assert sorted(starts[r.info.run_id] for r in got if r.info.run_id in starts) == after
    assert list(search_runs(store, [second], "attributes.start_time = 5.5")) == []
    # The same filter with a value of another type is checked again and refused.
    assert names([first], "params.p = 'v3'") == [f"{first}-3"]
    with pytest.raises(InvalidArgument, match="quote"):
        names([first], "params.p = 3")
    assert len(names([first], "metrics.m >= 1", ["metrics.m DESC"])) == 7
    with pytest.raises(InvalidArgument, match="numeric"):
        names([first], "metrics.m >= 'high'", ["metrics.m DESC"])


def _forged(token: str, position: object) -> str:
    """`token` with its position replaced: what a client that edits tokens sends."""
    raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw["p"] = position
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "order",
    [
        (),
        ("metrics.m DESC",),
        ("metrics.m ASC",),
        ("params.p ASC",),
        ("attributes.end_time DESC",),
        ("tags.t DESC", "metrics.m ASC"),
    ],
)
def test_search_runs_pages_see_each_run_once_while_runs_come_and_go(
    store: SqlTrackingStore, order: tuple[str, ...]
) -> None:
    """A reader paging through a search while other clients create and delete runs sees every
    run that existed throughout exactly once: with offset tokens, a run deleted from a page
    already read shifted the rest back (one skipped) and a run created ahead of the reader
    shifted them on (one repeated). Orders by metrics (one experiment: the walk; two: the plain
    query), params, tags and a nullable attribute, with ties, NaN and missing values."""
    eid = store.create_experiment("churn", None, {})
    other = store.create_experiment("other", None, {})
    values = [1.0, 0.5, math.nan, 1.0, -2.0]
    made = 0

    def make(start: int, value: float | None, param: str) -> str:
        nonlocal made
        made += 1
        rid = new_run(store, eid, start_time=start, run_name=f"r{made}").info.run_id
        store.log_batch(
            rid,
            [] if value is None else [Metric("m", value, 0, 0)],
            [Param("p", param)],
            [RunTag("t", str(made % 3))] if made % 4 else [],
        )
        if made % 3 == 0:
            store.update_run(rid, RunStatus.FINISHED, 5000 + made % 2, None)
        return rid

    for exp_ids in ([eid], [eid, other]):
        existing = [
            make(100 + i % 7, None if i % 6 == 5 else values[i % 5], str(i % 4)) for i in range(23)
        ]
        seen: list[str] = []
        token = ""
        while True:
            page = search_runs(store, exp_ids, "", order, n=3, token=token)
            seen.extend(r.info.run_id for r in page)
            token = page.token
            if not token:
                break
            # Between the reader's pages: a run read already goes, runs that sort first come.
            store.delete_run(page[0].info.run_id)
            make(10_000 + made, 99.0, "!")
            make(10_000 + made, -99.0, "~")
            make(10_000 + made, None, "!")
        assert len(seen) == len(set(seen)), (order, exp_ids)
        assert set(existing) <= set(seen), (order, exp_ids)
        for rid in existing + seen:
            store.delete_run(rid)


def test_search_experiments_pages_see_each_experiment_once_while_others_come_and_go(
    store: SqlTrackingStore,
) -> None:
    """As for runs: experiments deleted behind the reader or created ahead of it neither skip
    nor repeat one that existed throughout."""
    existing = [store.create_experiment(f"e-{i:02}", None, {}) for i in range(11)]
    made = 0
    for order in ((), ("name DESC",), ("name ASC",)):
        seen: list[str] = []
        token = ""
        while True:
            page = store.search_experiments(
                ViewType.ACTIVE_ONLY,
                parse_filter("name LIKE 'e-%'"),
                parse_order_by(order),
                2,
                token,
            )
            seen.extend(e.experiment_id for e in page)
            token = page.token or ""
            if not token:
                break
            store.delete_experiment(page[0].experiment_id)
            for name in ("e-!", "e-~"):
                made += 1
                store.create_experiment(f"{name}{made}", None, {})
        assert len(seen) == len(set(seen)), order
        assert set(existing) <= set(seen), order
        for e in seen:
            store.restore_experiment(e) if e in existing else store.delete_experiment(e)


@pytest.mark.parametrize("order", [(), ("metrics.m DESC",), ("params.p ASC",)])
def test_search_runs_refuses_a_forged_page_token(
    store: SqlTrackingStore, order: tuple[str, ...]
) -> None:
    """A token whose position was edited (wrong length, a text where a number goes, a number
    past 64 bits) is refused as INVALID_ARGUMENT naming page_token, never sent to the SQL."""
    for i in range(4):
        rid = new_run(store, start_time=i).info.run_id
        store.log_batch(rid, [Metric("m", float(i), 0, 0)], [Param("p", str(i))], [])
    token = search_runs(store, ["0"], "", order, n=1).token
    assert token
    real = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["p"]
    assert isinstance(real, list)
    forged: list[object] = [5, "x", None, [], real[:-1], [*real, 1], [{"a": 1}] * len(real)]
    forged += [[*real[:-2], 2**70, real[-1]], [*real[:-2], "late", real[-1]]]
    forged += [[*real[:-1], 7], [*real[:-2], True, real[-1]]]
    for position in forged:
        with pytest.raises(InvalidArgument, match="page_token") as err:
            search_runs(store, ["0"], "", order, n=1, token=_forged(token, position))
        assert err.value.field == "page_token", position
    store.create_experiment("another", None, {})
    token = store.search_experiments(ViewType.ALL, (), (), 1, "").token or ""
    assert token
    for position in (5, ["x", 1], [1, "1"], [2**70, 0], [1]):
        with pytest.raises(InvalidArgument, match="page_token") as err:
            store.search_experiments(ViewType.ALL, (), (), 1, _forged(token, position))
        assert err.value.field == "page_token", position


def test_search_experiments_pages_survive_a_new_grant(store: SqlTrackingStore) -> None:
    """A caller who may read only some experiments pages through them while gaining another
    (it creates one, or is granted one): its token was tied to the readable set, so the next
    page was refused as 'a different query'. It now goes on, and every experiment it could
    read throughout is seen once."""
    grants = GrantStore(store.db, experiment_permissions)
    for i in range(5):
        grants.set(store.create_experiment(f"mine-{i}", None, {}), "ann", PermissionLevel.READ)
    store.create_experiment("not mine", None, {})
    seen: list[str] = []
    token = ""
    readable = Visibility("ann", PermissionLevel.READ)
    while True:
        page = store.search_experiments(ViewType.ALL, (), (), 2, token, readable=readable)
        seen.extend(e.experiment_id for e in page)
        token = page.token or ""
        if not token:
            break
        grants.set(
            store.create_experiment(f"new-{len(seen)}", None, {}), "ann", PermissionLevel.READ
        )
    assert len(seen) == len(set(seen)) and {f"mine-{i}" for i in range(5)} <= {
        store.get_experiment(e).name for e in seen
    }
