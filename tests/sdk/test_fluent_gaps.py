"""Fluent API behaviours MLflow users rely on that an audit found missing, against a real server."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelyard.client import Client
from modelyard.entities import RunStatus
from modelyard.errors import InvalidArgument
from modelyard.features import FeatureStoreClient


def test_clients_default_to_the_set_tracking_uri(fluent, server, monkeypatch) -> None:
    """As MlflowClient() uses mlflow.set_tracking_uri's URI, over MLFLOW_TRACKING_URI."""
    monkeypatch.setenv("MODELYARD_URI", "127.0.0.1:1")
    fluent.set_tracking_uri(server.address)
    assert fluent.get_tracking_uri() == server.address
    with Client(timeout=3) as c:
        assert c.uri == server.address
        assert [e.name for e in c.search_experiments()] == ["Default"]
    with FeatureStoreClient() as store:
        assert store._t.uri == server.address


def test_clients_fall_back_to_the_environment_then_the_default(fluent, monkeypatch) -> None:
    from modelyard.client import config

    monkeypatch.setattr(config, "_set_uri", None)
    monkeypatch.setenv("MODELYARD_URI", "127.0.0.1:2")
    assert Client().uri == fluent.get_tracking_uri() == "127.0.0.1:2"
    monkeypatch.delenv("MODELYARD_URI")
    assert Client().uri == fluent.get_tracking_uri() == config.DEFAULT_URI


def test_a_refused_background_value_loses_none_of_the_others(fluent) -> None:
    """One bad key among queued values: the good ones land, the error names the bad key and
    the run still ends (it never stays RUNNING)."""
    with pytest.raises(InvalidArgument, match="bad key!") as raised, fluent.start_run() as run:
        for step in range(10):
            fluent.log_metric("good", float(step), step=step, synchronous=False)
        fluent.log_metric("bad key!", 1.0, synchronous=False)
        for step in range(10, 20):
            fluent.log_metric("good", float(step), step=step, synchronous=False)
    assert raised.value.field == "metrics.key"
    history = fluent.client().get_metric_history(run.info.run_id, "good")
    assert sorted(m.step for m in history) == list(range(20))
    got = fluent.get_run(run.info.run_id)
    assert got.info.status == RunStatus.FINISHED and got.info.end_time
    assert "bad key!" not in got.data.metrics
    fluent.flush_async_logging()  # the error was reported once, not again


def test_refusals_across_many_batches_are_all_named(fluent) -> None:
    """Two bad keys among 2,500 queued values (three LogBatch calls' worth)."""
    fluent.enable_async_logging(True)
    run = fluent.start_run()
    for step in range(2500):
        fluent.log_metric("loss", float(step), step=step)
        if step in (7, 1800):
            fluent.log_metric(f"bad/../{step}", 0.0)
    with pytest.raises(InvalidArgument, match=r"bad/\.\./7.*bad/\.\./1800"):
        fluent.flush_async_logging()
    fluent.end_run()
    history = fluent.client().get_metric_history(run.info.run_id, "loss")
    assert sorted(m.step for m in history) == list(range(2500))
    assert fluent.get_run(run.info.run_id).info.status == RunStatus.FINISHED


def test_end_run_terminates_the_run_when_the_flush_fails(fluent) -> None:
    run = fluent.start_run()
    fluent.log_metric("bad key!", 1.0, synchronous=False)
    with pytest.raises(InvalidArgument, match="bad key!"):
        fluent.end_run(RunStatus.KILLED)
    assert fluent.active_run() is None
    assert fluent.get_run(run.info.run_id).info.status == RunStatus.KILLED


def test_exit_ends_the_run_when_a_queued_value_is_refused(fluent, tmp_path: Path) -> None:
    """A script that leaves its run open: at exit the good value lands, the refusal is said,
    and the run ends FINISHED (before, the failed flush skipped ending it)."""
    script = (
        "import sys, modelyard\n"
        "modelyard.set_tracking_uri(sys.argv[1])\n"
        "print(modelyard.start_run().info.run_id)\n"
        "modelyard.log_metric('good', 1.0, synchronous=False)\n"
        "modelyard.log_metric('bad key!', 1.0, synchronous=False)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, fluent.get_tracking_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,  # the installed modelyard, not whatever the working directory holds
    )
    assert done.returncode == 0, done.stderr
    run_id, said = done.stdout.split("\n", 1)
    assert "'bad key!'" in said
    got = fluent.get_run(run_id)
    assert got.info.status == RunStatus.FINISHED
    assert got.data.metrics == {"good": 1.0}


def test_last_active_run_is_the_active_one_else_the_last_ended(fluent) -> None:
    with fluent.start_run() as parent:
        with fluent.start_run(nested=True) as child:
            assert fluent.last_active_run().info.run_id == child.info.run_id
        assert fluent.last_active_run().info.run_id == parent.info.run_id
    assert fluent.last_active_run().info.run_id == parent.info.run_id


def test_resuming_a_run_with_a_name_renames_it(fluent) -> None:
    with fluent.start_run(run_name="first") as run:
        pass
    with fluent.start_run(run_id=run.info.run_id, run_name="renamed") as resumed:
        assert resumed.info.run_name == "renamed"
    got = fluent.get_run(run.info.run_id)
    assert got.info.run_name == "renamed"
    assert got.data.tags["mlflow.runName"] == "renamed"


def test_resuming_a_run_with_a_description_sets_its_note(fluent) -> None:
    with fluent.start_run() as run:
        pass
    with fluent.start_run(run_id=run.info.run_id, description="second try"):
        pass
    assert fluent.get_run(run.info.run_id).data.tags["mlflow.note.content"] == "second try"


def test_restore_run_and_is_tracking_uri_set(fluent, monkeypatch) -> None:
    from modelyard.client import config

    with fluent.start_run() as run:
        pass
    fluent.delete_run(run.info.run_id)
    fluent.restore_run(run.info.run_id)
    assert fluent.get_run(run.info.run_id).info.lifecycle_stage == "active"
    assert fluent.is_tracking_uri_set()
    monkeypatch.setattr(config, "_set_uri", None)
    monkeypatch.delenv("MODELYARD_URI", raising=False)
    assert not fluent.is_tracking_uri_set()
    monkeypatch.setenv("MODELYARD_URI", "127.0.0.1:2")
    assert fluent.is_tracking_uri_set()


def test_search_runs_frame_is_laid_out_as_mlflows(fluent) -> None:
    """Run columns, then metrics.*, params.*, tags.*; a run without a key holds NaN for a
    metric, None for a param or tag (MLflow's search_runs): the old frame had run_name among
    the run columns and its metrics, params and tags mixed in the order first met."""
    fluent.set_experiment("frame")
    with fluent.start_run(run_name="a"):
        fluent.log_metric("m", 1.0)
        fluent.log_param("p", "x")
    with fluent.start_run(run_name="b"):
        fluent.log_metric("n", 2.0)
        fluent.set_tag("t", "y")
    frame = fluent.search_runs(order_by=["attributes.run_name ASC"])
    info = ["run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time"]
    assert list(frame.columns[:6]) == info
    groups = [c.split(".", 1)[0] for c in frame.columns[6:]]
    assert groups == sorted(groups, key=["metrics", "params", "tags"].index)
    assert {"metrics.m", "metrics.n", "params.p", "tags.t", "tags.mlflow.runName"} <= set(
        frame.columns
    )
    a, b = frame.iloc[0], frame.iloc[1]
    assert (a["tags.mlflow.runName"], b["tags.mlflow.runName"]) == ("a", "b")
    assert (a["metrics.m"], b["metrics.n"], a["params.p"], b["tags.t"]) == (1.0, 2.0, "x", "y")
    assert math.isnan(a["metrics.n"]) and math.isnan(b["metrics.m"])
    # None, which pandas 3 stores in its string columns as their NA (MLflow's frame alike)
    assert pd.isna(b["params.p"]) and pd.isna(a["tags.t"])
    assert frame["end_time"].notna().all()
    assert fluent.search_runs(filter_string="params.p = 'none'").columns.tolist() == info


def test_artifacts_module_reads_runs_files_as_mlflows(fluent, tmp_path: Path) -> None:
    from modelyard import artifacts

    with fluent.start_run() as run:
        fluent.log_text("hello", "notes/a.txt")
        fluent.log_dict({"k": [1, 2]}, "conf/c.json")
        fluent.log_dict({"k": "v"}, "conf/c.yaml")
    rid = run.info.run_id
    assert artifacts.load_text(f"runs:/{rid}/notes/a.txt") == "hello"
    assert artifacts.load_dict(f"runs:/{rid}/conf/c.json") == {"k": [1, 2]}
    assert artifacts.load_dict(f"runs:/{rid}/conf/c.yaml") == {"k": "v"}
    with pytest.raises(InvalidArgument, match="load_text") as err:
        artifacts.load_dict(f"runs:/{rid}/notes/a.txt")
    assert err.value.field == "artifact_uri"
    assert [f.path for f in artifacts.list_artifacts(run_id=rid)] == ["conf", "notes"]
    assert [f.path for f in artifacts.list_artifacts(f"runs:/{rid}/conf")] == [
        "conf/c.json",
        "conf/c.yaml",
    ]
    local = artifacts.download_artifacts(f"runs:/{rid}/notes", dst_path=str(tmp_path))
    assert (Path(local) / "a.txt").read_text() == "hello"
    one = artifacts.download_artifacts(
        run_id=rid, artifact_path="conf/c.json", dst_path=str(tmp_path)
    )
    assert Path(one).read_text().startswith("{")
    for bad in ({"artifact_uri": "s3://bucket/x"}, {"artifact_uri": "runs:/x/y", "run_id": "x"}):
        with pytest.raises(InvalidArgument):
            artifacts.download_artifacts(**bad)


def test_ending_a_nested_run_by_hand_leaves_its_parent_active(fluent) -> None:
    """As in MLflow: the child's block finds its run ended and leaves the parent alone, so
    what is logged next goes to the parent."""
    with fluent.start_run() as parent:
        with fluent.start_run(nested=True) as child:
            fluent.end_run()
        assert fluent.active_run().info.run_id == parent.info.run_id
        fluent.log_metric("after_child", 1.0)
    assert fluent.active_run() is None
    got = fluent.get_run(parent.info.run_id)
    assert got.data.metrics == {"after_child": 1.0}
    assert got.info.status == RunStatus.FINISHED
    assert fluent.get_run(child.info.run_id).info.status == RunStatus.FINISHED


def test_a_block_ends_the_runs_left_open_inside_it(fluent) -> None:
    with pytest.raises(RuntimeError), fluent.start_run() as parent:
        child = fluent.start_run(nested=True)
        raise RuntimeError("training failed")
    assert fluent.active_run() is None
    for run in (parent, child):
        assert fluent.get_run(run.info.run_id).info.status == RunStatus.FAILED


def test_asynchronous_calls_return_run_operations(fluent) -> None:
    """MLflow's synchronous=False returns RunOperations: wait() returns once the values are
    stored (queued metrics are sent by then) and raises a refusal."""
    with fluent.start_run() as run:
        operations = [
            fluent.log_metric("m", 1.0, synchronous=False),
            fluent.log_metrics({"a": 2.0, "b": 3.0}, synchronous=False),
            fluent.log_param("p", 1, synchronous=False),
            fluent.log_params({"q": "x"}, synchronous=False),
            fluent.set_tag("t", "y", synchronous=False),
            fluent.set_tags({"u": "z"}, synchronous=False),
        ]
        for operation in operations:
            operation.wait()
        got = fluent.get_run(run.info.run_id).data  # before end_run flushes anything
        assert got.metrics == {"m": 1.0, "a": 2.0, "b": 3.0}
        assert got.params == {"p": "1", "q": "x"}
        assert {"t": "y", "u": "z"}.items() <= got.tags.items()
        refused = fluent.log_metric("bad key!", 1.0, synchronous=False)
        with pytest.raises(InvalidArgument, match="bad key!"):
            refused.wait()
        assert fluent.log_param("r", 2) == 2 and fluent.log_metric("m", 2.0) is None


@pytest.mark.parametrize("synchronous", [True, False])
def test_a_metric_value_that_is_not_a_number_raises_in_the_caller(fluent, synchronous) -> None:
    with fluent.start_run() as run:
        for value in (None, "1.5", True, np.array([1.0, 2.0]), np.array(["a"])):
            with pytest.raises(InvalidArgument, match="must be a number"):
                fluent.log_metric("m", value, synchronous=synchronous)
        # numpy's scalars, and one-element arrays as a framework's loss tensor: .item()
        for step, number in enumerate((np.float32(0.5), np.array(1.5), np.array([[2.5]]))):
            fluent.log_metric("m", number, step=step, synchronous=synchronous)
    history = fluent.client().get_metric_history(run.info.run_id, "m")
    assert [m.value for m in history] == [0.5, 1.5, 2.5]


def test_end_run_refuses_an_unknown_status_and_keeps_the_run(fluent) -> None:
    with fluent.start_run() as run:
        with pytest.raises(ValueError, match="FINISHED"):
            fluent.end_run("DONE")
        assert fluent.active_run().info.run_id == run.info.run_id
        fluent.end_run("KILLED")
    assert fluent.get_run(run.info.run_id).info.status == RunStatus.KILLED


SYSTEM_METRICS = {
    "system/cpu_utilization_percentage",
    "system/system_memory_usage_megabytes",
    "system/system_memory_usage_percentage",
    "system/disk_usage_percentage",
    "system/disk_usage_megabytes",
    "system/disk_available_megabytes",
    "system/network_receive_megabytes",
    "system/network_transmit_megabytes",
}


def test_system_metrics_are_logged_for_the_runs_that_ask(fluent, monkeypatch) -> None:
    """start_run(log_system_metrics=True) as MLflow's: system/* metrics under its names, at
    least the sample the end of the run takes; other runs get none."""
    monkeypatch.delenv("MODELYARD_ENABLE_SYSTEM_METRICS_LOGGING", raising=False)
    with fluent.start_run(log_system_metrics=True) as run:
        fluent.log_metric("loss", 0.5)
    with fluent.start_run() as plain:
        fluent.log_metric("loss", 0.5)
    metrics = fluent.get_run(run.info.run_id).data.metrics
    assert SYSTEM_METRICS | {"loss"} == metrics.keys()
    assert 0 < metrics["system/system_memory_usage_percentage"] < 100
    assert metrics["system/disk_available_megabytes"] > 0
    assert fluent.get_run(plain.info.run_id).data.metrics.keys() == {"loss"}
    monkeypatch.setenv("MODELYARD_ENABLE_SYSTEM_METRICS_LOGGING", "true")
    with fluent.start_run() as by_environment:
        pass
    assert fluent.get_run(by_environment.info.run_id).data.metrics.keys() == SYSTEM_METRICS


def test_the_system_metrics_monitor_logs_a_step_per_sample() -> None:
    from modelyard.system_metrics import SystemMetricsMonitor

    batches: list[list] = []
    three = threading.Event()

    def send(metrics) -> None:
        batches.append(list(metrics))
        if len(batches) == 3:
            three.set()
        if len(batches) == 2:
            raise ConnectionError("server away")  # logged; sampling goes on

    monitor = SystemMetricsMonitor(send, interval=0.001).start()
    assert three.wait(30), "the monitor logged fewer than 3 samples in 30 s"
    monitor.finish()
    assert [{m.step for m in batch} for batch in batches] == [{i} for i in range(len(batches))]
    assert all({m.key for m in batch} == SYSTEM_METRICS for batch in batches)
    count = len(batches)
    monitor.finish()
    assert len(batches) == count


def test_datasets_take_mlflows_arguments(fluent) -> None:
    """from_pandas' digest= and predictions=, from_numpy's named arrays, as in mlflow.data."""
    df = pd.DataFrame({"x": [1.0, 2.0], "y": [0, 1], "p": [0, 0]})
    scored = fluent.data.from_pandas(df, targets="y", predictions="p", digest="v1")
    assert scored.digest == "v1"
    assert {"targets": "y", "predictions": "p"}.items() <= json.loads(scored.profile).items()
    named = {"x": np.zeros((3, 2)), "z": np.arange(3.0)}
    arrays = fluent.data.from_numpy(named, targets={"y": np.arange(3)})
    assert json.loads(arrays.schema) == {
        "features.x": {"dtype": "float64", "shape": [3, 2]},
        "features.z": {"dtype": "float64", "shape": [3]},
        "targets.y": {"dtype": "int64", "shape": [3]},
    }
    assert json.loads(arrays.profile) == {"num_rows": 3}
    same = fluent.data.from_numpy(dict(reversed(named.items())), targets={"y": np.arange(3)})
    assert same.digest == arrays.digest  # by name, whatever the dict's order
    assert fluent.data.from_numpy({**named, "z": named["z"] + 1}).digest != arrays.digest
    with fluent.start_run() as run:
        fluent.log_input(arrays, context="training")
    logged = fluent.get_run(run.info.run_id).inputs.dataset_inputs
    assert [d.dataset.digest for d in logged] == [arrays.digest]


def test_a_resumed_run_goes_on_from_its_last_system_metrics_step(fluent) -> None:
    with fluent.start_run(log_system_metrics=True) as run:
        pass
    with fluent.start_run(run_id=run.info.run_id, log_system_metrics=True):
        pass
    history = fluent.client().get_metric_history(
        run.info.run_id, "system/cpu_utilization_percentage"
    )
    assert [m.step for m in history] == [0, 1]


def test_system_metrics_that_cannot_be_read_never_fail_the_run(fluent, monkeypatch) -> None:
    import psutil

    def denied(*_: object) -> None:
        raise PermissionError("no access to the machine's figures")

    monkeypatch.setattr(psutil, "disk_usage", denied)  # each sample fails
    with fluent.start_run(log_system_metrics=True) as run:
        fluent.log_metric("loss", 0.5, synchronous=False)
    monkeypatch.setattr(psutil, "net_io_counters", denied)  # the monitor cannot start
    with fluent.start_run(log_system_metrics=True) as other:
        fluent.log_metric("loss", 0.25)
    for ended, loss in ((run, 0.5), (other, 0.25)):
        got = fluent.get_run(ended.info.run_id)
        assert got.data.metrics == {"loss": loss}
        assert got.info.status == RunStatus.FINISHED


def test_a_block_ends_its_run_when_ending_one_inside_it_fails(fluent) -> None:
    with pytest.raises(InvalidArgument, match="bad key!"), fluent.start_run() as parent:
        child = fluent.start_run(nested=True)
        fluent.log_metric("bad key!", 1.0, synchronous=False)  # refused when the child ends
    assert fluent.active_run() is None
    for run in (parent, child):
        assert fluent.get_run(run.info.run_id).info.status == RunStatus.FINISHED


def test_waiting_on_a_queued_value_reports_only_what_went_wrong_with_it(fluent) -> None:
    """MLflow's RunOperations.wait: another value's refusal is not this one's; a refusal
    reported by wait() is not reported again when the run ends."""
    with fluent.start_run() as run:
        bad = fluent.log_metric("bad key!", 1.0, synchronous=False)
        good = fluent.log_metric("good", 2.0, synchronous=False)
        good.wait()
        assert fluent.get_run(run.info.run_id).data.metrics == {"good": 2.0}
        with pytest.raises(InvalidArgument, match="bad key!"):
            bad.wait()
        with pytest.raises(InvalidArgument, match="bad key!"):
            bad.wait()  # asked again, the same answer
    assert fluent.get_run(run.info.run_id).info.status == RunStatus.FINISHED


def test_an_orchestrators_run_id_in_the_environment_is_resumed_once(fluent, monkeypatch) -> None:
    """As MLFLOW_RUN_ID: the first start_run without run_id resumes it, and takes it out of the
    environment, so the next run is a new one."""
    with fluent.start_run() as started:
        pass
    monkeypatch.setenv("MODELYARD_RUN_ID", started.info.run_id)
    with fluent.start_run() as resumed:
        assert resumed.info.run_id == started.info.run_id
        assert fluent.get_run(started.info.run_id).info.status == RunStatus.RUNNING
        fluent.log_metric("after", 1.0)
    assert "MODELYARD_RUN_ID" not in os.environ
    with fluent.start_run() as fresh:
        pass
    assert fresh.info.run_id != started.info.run_id
    assert fluent.get_run(started.info.run_id).data.metrics == {"after": 1.0}
