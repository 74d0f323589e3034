"""The fluent API in MLflow's style, against a real server."""

from __future__ import annotations

import getpass
import math
import os
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelyard.client import Client
from modelyard.entities import Experiment, RunStatus
from modelyard.errors import FailedPrecondition


def test_start_run_logs_and_finishes(fluent, monkeypatch: pytest.MonkeyPatch) -> None:
    my = fluent
    monkeypatch.setattr(sys, "argv", ["train.py"])  # the script the run is started from
    exp = my.set_experiment("fluent-exp")
    with my.start_run(run_name="first", tags={"t": 1}) as run:
        my.log_param("alpha", 0.5)
        my.log_params({"beta": 2, "gamma": "x"})
        my.log_metric("loss", 1.0, step=1)
        my.log_metrics({"loss": 0.5, "acc": 0.9}, step=2)
        my.set_tag("stage", "dev")
        my.set_tags({"owner": "me"})
        assert my.active_run().info.run_id == run.info.run_id
    assert my.active_run() is None
    got = my.get_run(run.info.run_id)
    assert got.info.experiment_id == exp.experiment_id
    assert got.info.status == RunStatus.FINISHED and got.info.end_time
    assert got.data.params == {"alpha": "0.5", "beta": "2", "gamma": "x"}
    assert got.data.metrics == {"loss": 0.5, "acc": 0.9}
    assert got.data.tags == {
        "t": "1",
        "stage": "dev",
        "owner": "me",
        # MLflow's system tags: name and user kept by the server, the source set by the SDK
        "mlflow.runName": "first",
        "mlflow.user": getpass.getuser(),
        "mlflow.source.name": os.path.abspath("train.py"),
        "mlflow.source.type": "LOCAL",
    }
    assert my.last_active_run().info.run_id == run.info.run_id


def test_failed_block_marks_run_failed(fluent) -> None:
    with pytest.raises(ValueError, match="boom"), fluent.start_run() as run:
        raise ValueError("boom")
    assert fluent.get_run(run.info.run_id).info.status == RunStatus.FAILED


def test_nested_runs_and_resume(fluent) -> None:
    with fluent.start_run() as parent:
        with pytest.raises(FailedPrecondition, match="nested=True"):
            fluent.start_run()
        with fluent.start_run(nested=True) as child:
            fluent.log_metric("inner", 1)
        assert fluent.active_run().info.run_id == parent.info.run_id
    assert fluent.get_run(child.info.run_id).info.parent_run_id == parent.info.run_id
    with fluent.start_run(run_id=parent.info.run_id) as resumed:
        fluent.log_metric("later", 2)
    assert resumed.info.run_id == parent.info.run_id
    assert fluent.get_run(parent.info.run_id).data.metrics == {"later": 2.0}


def test_log_without_a_run_starts_one(fluent) -> None:
    fluent.log_metric("m", 1)
    run = fluent.active_run()
    assert run is not None
    fluent.end_run()
    assert fluent.get_run(run.info.run_id).data.metrics == {"m": 1.0}


def test_threads_have_their_own_active_run(fluent) -> None:
    seen = {}
    with fluent.start_run() as main:

        def other() -> None:
            seen["other"] = fluent.active_run()

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert seen["other"] is None
        assert fluent.active_run().info.run_id == main.info.run_id


def test_cells_run_as_tasks_share_the_active_run(fluent) -> None:
    """A notebook kernel runs each cell as an asyncio task in one thread; a run started in one
    cell is still active in the next (each task gets its own copy of a ContextVar context)."""
    import asyncio

    async def cell_starting_a_run() -> str:
        return fluent.start_run().info.run_id

    async def cell_logging() -> str:
        fluent.log_metric("m", 1.0)
        return fluent.active_run().info.run_id

    loop = asyncio.new_event_loop()
    try:
        started = loop.run_until_complete(cell_starting_a_run())
        assert loop.run_until_complete(cell_logging()) == started
    finally:
        loop.close()
    fluent.end_run()
    assert fluent.get_run(started).data.metrics == {"m": 1.0}


def test_async_logging_loses_nothing(fluent) -> None:
    fluent.enable_async_logging(True)
    with fluent.start_run() as run:
        for step in range(2500):
            fluent.log_metric("loss", float(step), step=step)
    history = fluent.client().get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in history] == list(range(2500))


def test_async_logging_surfaces_errors(fluent) -> None:
    fluent.enable_async_logging(True)
    with fluent.start_run() as run:
        fluent.log_metric("ok", 1.0)
    fluent.client().delete_run(run.info.run_id)
    fluent.log_metric("late", 1.0, run_id=run.info.run_id, synchronous=False)
    from modelyard import fluent as fl

    with pytest.raises(FailedPrecondition, match="deleted"):
        fl._flush_metrics()


def test_nan_and_inf_round_trip(fluent) -> None:
    with fluent.start_run() as run:
        fluent.log_metrics({"nan": math.nan, "inf": math.inf, "ninf": -math.inf})
    metrics = fluent.get_run(run.info.run_id).data.metrics
    assert (
        math.isnan(metrics["nan"]) and metrics["inf"] == math.inf and metrics["ninf"] == -math.inf
    )


def test_search_runs_dataframe_and_list(fluent) -> None:
    fluent.set_experiment("search-me")
    for i in range(5):
        with fluent.start_run(run_name=f"r{i}"):
            fluent.log_param("i", i)
            fluent.log_metric("score", i * 1.5)
    df = fluent.search_runs(filter_string="metrics.score > 2", order_by=["metrics.score DESC"])
    assert isinstance(df, pd.DataFrame)
    assert list(df["metrics.score"]) == [6.0, 4.5, 3.0]
    assert list(df["params.i"]) == ["4", "3", "2"]
    assert {"run_id", "experiment_id", "status", "start_time", "end_time"} <= set(df.columns)
    runs = fluent.search_runs(output_format="list", experiment_names=["search-me"])
    assert len(runs) == 5
    assert len(fluent.search_runs(search_all_experiments=True, output_format="list")) == 5
    empty = fluent.search_runs(filter_string="metrics.score > 100")
    assert empty.empty and "run_id" in empty.columns


def test_artifacts_and_inputs(fluent, tmp_path: Path) -> None:
    f = tmp_path / "report.txt"
    f.write_text("report")
    df = pd.DataFrame({"x": np.arange(10), "y": np.arange(10) * 2.0})
    dataset = fluent.data.from_pandas(df, source="file:///data/train.csv", name="train")
    with fluent.start_run() as run:
        fluent.log_artifact(f, "reports")
        fluent.log_text("hello", "notes.txt")
        fluent.log_dict({"a": [1, 2]}, "params.yaml")
        fluent.log_input(dataset, context="training")
        uri = fluent.get_artifact_uri("reports")
    assert uri.endswith(f"{run.info.run_id}/artifacts/reports")
    client = fluent.client()
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == [
        "notes.txt",
        "params.yaml",
        "reports",
    ]
    got = fluent.get_run(run.info.run_id)
    (item,) = got.inputs.dataset_inputs
    assert item.dataset.name == "train" and item.dataset.digest == dataset.digest
    assert {t.key: t.value for t in item.tags} == {"mlflow.data.context": "training"}
    # The same content gives the same digest; different content, a different one.
    assert fluent.data.from_pandas(df.copy()).digest == dataset.digest
    assert fluent.data.from_pandas(df.assign(y=0.0)).digest != dataset.digest


def test_dataset_profiles_carry_column_distributions() -> None:
    import json

    import numpy as np
    import pandas as pd

    from modelyard.data import from_pandas

    rng = np.random.default_rng(1)
    df = pd.DataFrame(
        {"x": rng.normal(size=2000), "city": rng.choice(["oslo", "lima"], 2000, p=[0.75, 0.25])}
    )
    profile = json.loads(from_pandas(df).profile)
    x, city = profile["columns"]["x"], profile["columns"]["city"]
    assert x["kind"] == "numeric" and len(x["edges"]) == 11
    assert abs(sum(x["fractions"]) - 1) < 1e-6 and max(x["fractions"]) < 0.11
    assert city["kind"] == "categorical" and abs(city["values"]["oslo"] - 0.75) < 0.03
    wide = from_pandas(pd.DataFrame(rng.normal(size=(50, 300))))
    assert len(wide.profile) <= 16384  # the tracking service's limit
    assert json.loads(wide.profile)["columns_truncated"] is True


def test_mlflow_signatures_port_unchanged(fluent, tmp_path: Path) -> None:
    """Positional calls written for MLflow mean the same here (synchronous comes before
    run_id), and the functions MLflow code reaches for exist."""
    my = fluent
    exp = my.set_experiment("ported")
    with my.start_run(description="why this run") as run:
        rid = run.info.run_id
        my.log_param("a", 1, True)
        my.log_params({"b": 2}, True)
        my.log_metric("m", 1.0, 3, True, 1234)  # key, value, step, synchronous, timestamp
        my.log_metrics({"n": 2.0}, 4, False)
        my.flush_async_logging()
        my.set_tag("t", "x", True)
        my.set_tags({"u": "y"}, True)
        (tmp_path / "d" / "sub").mkdir(parents=True)
        (tmp_path / "d" / "sub" / "f.txt").write_text("hi")
        my.log_artifact(tmp_path / "d", "out")  # a directory, as <artifact_path>/<name>
        my.log_inputs([my.data.from_numpy(np.zeros((2, 2)), name="z")], ["eval"])
        my.set_experiment_tag("team", "risk")
    got = my.get_run(rid)
    assert got.data.params == {"a": "1", "b": "2"}
    assert got.data.metrics == {"m": 1.0, "n": 2.0}
    assert my.client().get_metric_history(rid, "m")[0].step == 3
    assert my.client().get_metric_history(rid, "m")[0].timestamp == 1234
    assert {got.data.tags["t"], got.data.tags["u"]} == {"x", "y"}
    assert got.data.tags["mlflow.note.content"] == "why this run"
    assert [f.path for f in my.client().list_artifacts(rid, "out/d/sub")] == ["out/d/sub/f.txt"]
    assert got.inputs.dataset_inputs[0].context == "eval"
    assert my.get_experiment(exp.experiment_id).tags == {"team": "risk"}
    assert [e.name for e in my.search_experiments(filter_string="name = 'ported'")] == ["ported"]


def test_search_runs_takes_one_experiment_id_as_a_string(fluent) -> None:
    """'12' is one experiment, not experiments 1 and 2."""
    my = fluent
    ids = [my.create_experiment(f"e{i}") for i in range(12)]
    wanted = next(i for i in ids if len(i) > 1)
    rid = my.client().create_run(wanted).info.run_id
    for i in ids:
        if i != wanted:
            my.client().create_run(i)
    assert list(my.search_runs(experiment_ids=wanted)["run_id"]) == [rid]


def test_dataset_digests_hold_across_processes() -> None:
    """An object array's bytes are pointers; its digest must come from its values."""
    import subprocess

    from modelyard import data

    code = (
        "import numpy as np; from modelyard import data; "
        "print(data.from_numpy(np.array([['a', 1], ['b', 2]], dtype=object)).digest)"
    )
    here = data.from_numpy(np.array([["a", 1], ["b", 2]], dtype=object)).digest
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert there.stdout.strip() == here
    assert data.from_numpy(np.array([["a", 1], ["c", 2]], dtype=object)).digest != here


def test_set_experiment_takes_the_one_another_worker_just_created(
    fluent, server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers of a sweep all set one new experiment at start: another worker creating it
    between this one's lookup and its create used to fail this one with AlreadyExists."""
    shared = fluent.client()
    lookup = shared.get_experiment_by_name
    other_worker = Client(server.address)
    created: list[str] = []

    def looked_up_just_before_the_other_worker_created_it(name: str) -> Experiment | None:
        if not created:  # the other worker wins the race right after this lookup
            found = lookup(name)
            created.append(other_worker.create_experiment(name))
            return found
        return lookup(name)

    monkeypatch.setattr(
        shared, "get_experiment_by_name", looked_up_just_before_the_other_worker_created_it
    )
    try:
        experiment = fluent.set_experiment("sweep")
    finally:
        other_worker.close()
    assert experiment.experiment_id == created[0]
    with fluent.start_run() as run:
        pass
    assert fluent.get_run(run.info.run_id).info.experiment_id == created[0]


def test_a_metric_logged_at_timestamp_zero_keeps_it(fluent) -> None:
    """0 is a time like any other (the epoch; a step-like clock): only None means now, in the
    fluent calls as in Client.log_metric, queued or not."""
    with fluent.start_run() as run:
        fluent.log_metric("sync", 1.0, timestamp=0)
        fluent.log_metrics({"many": 2.0}, timestamp=0)
        fluent.log_metric("queued", 3.0, timestamp=0, synchronous=False).wait()
        fluent.log_metric("now", 4.0)
    c = fluent.client()
    rid = run.info.run_id
    for key in ("sync", "many", "queued"):
        assert [m.timestamp for m in c.get_metric_history(rid, key)] == [0]
    assert c.get_metric_history(rid, "now")[0].timestamp >= run.info.start_time
