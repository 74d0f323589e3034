"""Optuna studies tracked through a real server: a parent run per study, a nested run per trial."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest

from modelyard import tuning
from modelyard.entities import RunStatus
from modelyard.errors import InvalidArgument

optuna.logging.set_verbosity(optuna.logging.WARNING)
ROOT = Path(__file__).resolve().parents[2]


def _children(client, parent_run_id: str, experiment_id: str):
    return list(
        client.search_runs([experiment_id], f"attributes.parent_run_id = '{parent_run_id}'")
    )


@pytest.mark.filterwarnings("ignore:The reported value is ignored")
def test_trials_are_nested_runs_with_every_intermediate_value(fluent) -> None:
    c = fluent.client()
    seen_while_running: list[list[int]] = []

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -4.0, 4.0)
        kind = trial.suggest_categorical("kind", ["a", "b"])
        if kind == "b" and x > 3.5:
            raise ValueError("unlucky")
        loss = 0.0
        for step in range(4):
            loss = (x - 1.0) ** 2 + 1.0 / (step + 1)
            trial.report(loss, step)
            trial.report(loss + 100, step)  # a second report at a step is ignored, as in Optuna
            run_id = fluent.active_run().info.run_id
            history = c.get_metric_history(run_id, "intermediate_value")
            seen_while_running.append([m.step for m in history])
            if trial.should_prune():
                raise optuna.TrialPruned()
        fluent.log_metric("user_metric", 7.0)  # the trial's run is the active run
        return loss

    study = tuning.create_study(
        direction="minimize",
        sampler=optuna.samplers.RandomSampler(seed=3),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
        experiment_name="tuning-nested",
        run_name="quadratic",
    )
    study.enqueue_trial({"x": 3.9, "kind": "b"})  # fails
    result = tuning.optimize(study, objective, n_trials=12, catch=(ValueError,))

    # Intermediate values were on the server while the trial was still running.
    assert [0] in seen_while_running and [0, 1] in seen_while_running
    parent = c.get_run(result.parent_run_id)
    assert parent.info.run_name == "quadratic" and parent.info.status == RunStatus.FINISHED
    runs = {
        int(r.data.tags["optuna.trial_number"]): r
        for r in _children(c, result.parent_run_id, result.experiment_id)
    }
    trials = study.get_trials()
    assert sorted(runs) == [t.number for t in trials]
    states = {t.state for t in trials}
    assert optuna.trial.TrialState.PRUNED in states and optuna.trial.TrialState.FAIL in states
    expected_status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}
    for t in trials:
        run = runs[t.number]
        assert run.info.run_name == f"trial-{t.number}"
        assert run.data.tags["optuna.trial_state"] == t.state.name
        assert run.info.status == expected_status[t.state.name]
        assert run.data.params == {k: str(v) for k, v in t.params.items()}
        assert run.data.metrics["duration_seconds"] >= 0
        history = c.get_metric_history(run.info.run_id, "intermediate_value")
        assert {m.step: m.value for m in history} == t.intermediate_values
        assert t.user_attrs[tuning.TRIAL_RUN_ATTR] == run.info.run_id
        if t.state.name == "COMPLETE":
            assert run.data.metrics["value"] == pytest.approx(t.value)
            assert run.data.metrics["user_metric"] == 7.0
        if t.state.name == "FAIL":
            assert run.data.tags["optuna.fail_reason"] == "ValueError: unlucky"
            assert "value" not in run.data.metrics

    # The parent holds the summary, the best trial and the parameter importance.
    best = study.best_trial
    assert result.best_run_id == runs[best.number].info.run_id
    assert parent.data.tags["best_trial.run_id"] == result.best_run_id
    assert json.loads(parent.data.tags["best_trial.params"]) == best.params
    assert parent.data.params["optuna.sampler"] == "RandomSampler"
    assert parent.data.params["optuna.pruner"] == "MedianPruner"
    assert parent.data.metrics["best_value"] == pytest.approx(best.value)
    assert parent.data.metrics["n_trials"] == 12
    assert parent.data.metrics["n_pruned"] + parent.data.metrics["n_failed"] >= 2
    assert "param_importance.x" in parent.data.metrics
    summary = json.loads(
        Path(c.download_artifacts(result.parent_run_id, "study/summary.json")).read_text()
    )
    assert summary["best_trial"]["number"] == best.number
    # best_value is stepped by the number of complete trials as the study runs: it never gets
    # worse.
    steps = c.get_metric_history(result.parent_run_id, "best_value")
    values = [m.value for m in sorted(steps, key=lambda m: (m.step, m.timestamp))]
    assert values == sorted(values, reverse=True)


def test_an_uncaught_failure_fails_the_trial_and_the_parent(fluent) -> None:
    c = fluent.client()

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_int("n", 1, 3)
        raise RuntimeError("broken objective")

    study = tuning.create_study(direction="maximize")
    with pytest.raises(RuntimeError, match="broken objective"):
        tuning.optimize(study, objective, n_trials=3)
    parent_id = study.user_attrs[tuning.PARENT_RUN_ATTR]
    assert c.get_run(parent_id).info.status == RunStatus.FAILED
    (run,) = _children(c, parent_id, c.get_run(parent_id).info.experiment_id)
    assert run.info.status == RunStatus.FAILED
    assert run.data.tags["optuna.fail_reason"] == "RuntimeError: broken objective"
    assert fluent.active_run() is None


def test_an_active_run_is_the_parent_and_threads_track_their_own_trials(fluent) -> None:
    c = fluent.client()

    def objective(trial: optuna.Trial) -> float:
        fluent.log_metric("from_objective", trial.number)
        return trial.suggest_float("x", 0, 1)

    with fluent.start_run(run_name="my-parent") as parent:
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
        result = tuning.optimize(study, objective, n_trials=6, n_jobs=2, metric_name="loss")
        assert fluent.active_run().info.run_id == parent.info.run_id
        assert c.get_run(parent.info.run_id).info.status == RunStatus.RUNNING
    assert result.parent_run_id == parent.info.run_id
    runs = _children(c, parent.info.run_id, parent.info.experiment_id)
    assert len(runs) == 6
    for run in runs:
        assert run.data.metrics["from_objective"] == int(run.data.tags["optuna.trial_number"])
        assert "loss" in run.data.metrics and run.info.status == RunStatus.FINISHED


def test_a_job_runners_run_is_the_parent_and_never_a_trial(
    fluent, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MODELYARD_RUN_ID (MLflow's MLFLOW_RUN_ID) names the job's run: the study's parent, left as
    its owner has it; each trial is a new run under it."""
    c = fluent.client()
    job = c.create_run(c.create_experiment("job-runner"), run_name="orchestrator-job")
    job_id = job.info.run_id
    monkeypatch.setenv("MODELYARD_RUN_ID", job_id)

    study = tuning.create_study(direction="minimize")
    result = tuning.optimize(study, lambda t: t.suggest_float("x", 0, 1), n_trials=3)

    assert result.parent_run_id == job_id
    run = c.get_run(job_id)
    assert run.info.run_name == "orchestrator-job" and run.info.status == RunStatus.RUNNING
    assert "optuna.trial_number" not in run.data.tags
    trials = _children(c, job_id, job.info.experiment_id)
    assert sorted(int(r.data.tags["optuna.trial_number"]) for r in trials) == [0, 1, 2]
    assert job_id not in {r.info.run_id for r in trials}
    assert os.environ["MODELYARD_RUN_ID"] == job_id  # still there for the job's own start_run
    assert fluent.active_run() is None


def test_the_parents_latest_best_value_is_the_best_when_trials_end_out_of_order(fluent) -> None:
    """Trial 0, the best, ends last: two threads, and it waits until trials 1-3 are recorded."""
    c = fluent.client()
    others_recorded = threading.Event()
    study = tuning.create_study(direction="minimize")
    for x in (0.0, 5.0, 6.0, 7.0):
        study.enqueue_trial({"x": x})

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", -10, 10)
        if trial.number == 0:
            assert others_recorded.wait(timeout=60)
        return x * x

    def after(s: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
        if len(s.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 3:
            others_recorded.set()  # after optimize's own callback has logged trial t's best

    result = tuning.optimize(study, objective, n_trials=4, n_jobs=2, callbacks=[after])

    assert [t.number for t in study.get_trials()] == [0, 1, 2, 3] and study.best_value == 0.0
    assert c.get_run(result.parent_run_id).data.metrics["best_value"] == 0.0
    history = c.get_metric_history(result.parent_run_id, "best_value")
    values = [m.value for m in sorted(history, key=lambda m: (m.step, m.timestamp))]
    assert values == sorted(values, reverse=True) and values[-1] == 0.0


def test_param_names_optuna_allows_are_logged_under_keys_the_server_takes(fluent) -> None:
    c = fluent.client()
    names = ["layer[0].lr", "a,b", "a_b", "x=1", "a/../b", "/abs", "x" * 300, "über"]
    study = tuning.create_study(sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial: optuna.Trial) -> float:
        return sum(trial.suggest_float(name, 0, 1) for name in names)

    result = tuning.optimize(study, objective, n_trials=3, catch=(Exception,))

    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] * 3
    for t in study.get_trials():
        run = c.get_run(result.trial_run_ids[t.number])
        assert run.info.status == RunStatus.FINISHED and "value" in run.data.metrics
        assert run.data.tags["optuna.trial_state"] == "COMPLETE"
        renamed = json.loads(run.data.tags[tuning.PARAM_NAMES_TAG])
        assert {"a_b", "über"} <= set(run.data.params) and not {"a_b", "über"} & set(renamed)
        logged = {renamed.get(k, k): v for k, v in run.data.params.items()}
        assert logged == {name: str(v) for name, v in t.params.items()}  # each name, one key
    summary = json.loads(
        Path(c.download_artifacts(result.parent_run_id, "study/summary.json")).read_text()
    )
    assert set(summary["best_trial"]["params"]) == set(names)


def test_a_tracking_error_at_a_trials_end_leaves_its_optuna_state(
    fluent, caplog: pytest.LogCaptureFixture
) -> None:
    """The objective completes; a metric it queued is refused when the trial's run ends."""
    c = fluent.client()

    def objective(trial: optuna.Trial) -> float:
        fluent.log_metric("refused,key", 1.0, synchronous=False)
        return trial.suggest_float("x", 0, 1)

    study = tuning.create_study()
    result = tuning.optimize(study, objective, n_trials=2)

    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"] * 2
    for t in study.get_trials():
        run = c.get_run(result.trial_run_ids[t.number])
        assert run.info.status == RunStatus.FINISHED
        assert run.data.tags["optuna.trial_state"] == "COMPLETE"
        assert run.data.metrics["value"] == pytest.approx(t.value)
    assert "queued metrics not recorded" in caplog.text and "refused,key" in caplog.text
    assert fluent.active_run() is None


def test_grid_sampler_covers_the_grid_once(fluent) -> None:
    c = fluent.client()
    grid: dict[str, list[float]] = {"depth": [2, 4, 8], "lr": [0.1, 0.01]}
    study = tuning.create_study(sampler=optuna.samplers.GridSampler(grid, seed=0))
    result = tuning.optimize(
        study, lambda t: t.suggest_int("depth", 2, 8) * t.suggest_float("lr", 0.01, 0.1)
    )
    runs = _children(c, result.parent_run_id, result.experiment_id)
    combos = {(r.data.params["depth"], r.data.params["lr"]) for r in runs}
    assert len(runs) == 6 and len(combos) == 6
    assert c.get_run(result.parent_run_id).data.params["optuna.sampler"] == "GridSampler"


def test_multi_objective_values_get_one_metric_each(fluent) -> None:
    c = fluent.client()
    study = tuning.create_study(directions=["minimize", "maximize"])
    result = tuning.optimize(
        study,
        lambda t: (t.suggest_float("a", 0, 1), t.suggest_float("b", 0, 1)),
        n_trials=3,
        metric_name=["cost", "gain"],
    )
    assert result.best_run_id is None
    runs = _children(c, result.parent_run_id, result.experiment_id)
    assert all({"cost", "gain"} <= set(r.data.metrics) for r in runs)


@pytest.mark.postgres
def test_two_worker_processes_share_one_study_on_postgres(fluent, server, postgres_url) -> None:
    """Optuna's RDB storage on PostgreSQL; every trial is tracked exactly once, by its worker."""
    storage = postgres_url.replace("postgresql://", "postgresql+psycopg://", 1)
    # One storage object, its engine disposed at the end: an engine Optuna made from the URL
    # kept its connections open until garbage collection, whose ResourceWarning then failed
    # whichever test was running.
    rdb = optuna.storages.RDBStorage(storage)
    try:
        study = tuning.create_study(
            study_name="shared", storage=rdb, direction="minimize", experiment_name="distributed"
        )
        parent_id = study.user_attrs[tuning.PARENT_RUN_ATTR]
        worker = Path(__file__).with_name("worker.py")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        procs = [
            subprocess.Popen(
                [sys.executable, str(worker), server.address, storage, "shared", "5"],
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        for p in procs:
            _, err = p.communicate(timeout=120)
            assert p.returncode == 0, err

        c = fluent.client()
        trials = optuna.load_study(study_name="shared", storage=rdb).get_trials()
        assert len(trials) == 10 and all(t.state.name == "COMPLETE" for t in trials)
        runs = _children(c, parent_id, c.get_run(parent_id).info.experiment_id)
        numbers = sorted(int(r.data.tags["optuna.trial_number"]) for r in runs)
        assert numbers == list(range(10))  # all trials, each exactly once
        tracked = {t.user_attrs[tuning.TRIAL_RUN_ATTR] for t in trials}
        assert tracked == {r.info.run_id for r in runs}
    finally:
        rdb.engine.dispose()
    assert len({r.data.tags["optuna.worker"] for r in runs}) == 2  # both workers ran trials
    for r in runs:
        assert [m.step for m in c.get_metric_history(r.info.run_id, "intermediate_value")] == [
            0,
            1,
            2,
        ]
    parent = c.get_run(parent_id)
    assert parent.info.status == RunStatus.FINISHED  # the last worker out finished it
    assert parent.data.metrics["n_complete"] == 10
    assert parent.data.tags["best_trial.run_id"] in {r.info.run_id for r in runs}


def _heartbeats(db: Path) -> int:
    with contextlib.closing(sqlite3.connect(db)) as con:
        return int(con.execute("SELECT count(*) FROM trial_heartbeats").fetchone()[0])


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_killed_workers_trial_run_and_the_parent_end_with_a_heartbeat(
    fluent, server, tmp_path: Path
) -> None:
    """kill -9 mid-trial on SQLite RDB storage with a heartbeat: Optuna fails the trial once it
    is stale, and the next worker ends its run FAILED and finishes the parent."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=1)
    study = tuning.create_study(study_name="crash", storage=storage, direction="minimize")
    parent_id = study.user_attrs[tuning.PARENT_RUN_ATTR]
    worker = [sys.executable, str(Path(__file__).with_name("worker.py")), server.address, url]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    doomed = subprocess.Popen(
        [*worker, "crash", "1", "--heartbeat", "1", "--hang"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert doomed.stdout is not None and doomed.stdout.readline() == "running 0\n"
        # Optuna's heartbeat thread records the trial's first beat on its own: killed before
        # that, the trial has no heartbeat and never goes stale.
        deadline = time.monotonic() + 60
        while not _heartbeats(tmp_path / "optuna.db"):
            assert time.monotonic() < deadline, "trial 0 never recorded a heartbeat"
            time.sleep(0.05)  # polling Optuna's own table
    finally:
        doomed.kill()
        doomed.wait()
    c = fluent.client()
    (crashed,) = study.get_trials()
    run_id = crashed.user_attrs[tuning.TRIAL_RUN_ATTR]
    assert c.get_run(run_id).info.status == c.get_run(parent_id).info.status == RunStatus.RUNNING

    deadline = time.monotonic() + 60  # the dead worker's heartbeat goes stale
    while crashed._trial_id not in storage._get_stale_trial_ids(study._study_id):
        assert time.monotonic() < deadline, "trial 0 never went stale"
        time.sleep(0.2)  # polling Optuna's own stale-trial query
    done = subprocess.run(
        [*worker, "crash", "2", "--heartbeat", "1"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr

    assert [t.state.name for t in study.get_trials()] == ["FAIL", "COMPLETE", "COMPLETE"]
    run = c.get_run(run_id)
    assert run.info.status == RunStatus.FAILED and run.data.tags["optuna.trial_state"] == "FAIL"
    assert "heartbeat" in run.data.tags["optuna.fail_reason"]
    parent = c.get_run(parent_id)
    assert parent.info.status == RunStatus.FINISHED and parent.data.metrics["n_failed"] == 1


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_killed_workers_trial_is_failed_and_retried_by_the_next_worker(
    fluent, server, tmp_path: Path
) -> None:
    """kill -9 mid-trial, with the storage's RetryHeartbeatStaleTrialCallback: the next worker fails
    the stale trial and runs a copy of it. Its run says which trial it retries, and the dead
    trial's run is FAILED as the retry starts; before, it stayed RUNNING until that worker's
    optimize ended (for a long study, hours)."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
    storage = optuna.storages.RDBStorage(
        url, heartbeat_interval=1, grace_period=1, heartbeat_stale_trial_callback=retry
    )
    study = tuning.create_study(study_name="retry", storage=storage, direction="minimize")
    worker = [sys.executable, str(Path(__file__).with_name("worker.py")), server.address, url]
    hang = [*worker, "retry", "1", "--heartbeat", "1", "--retry", "--hang"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    doomed = subprocess.Popen(hang, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert doomed.stdout is not None and doomed.stdout.readline() == "running 0\n"
        deadline = time.monotonic() + 60
        while not _heartbeats(tmp_path / "optuna.db"):  # never stale without a first beat
            assert time.monotonic() < deadline, "trial 0 never recorded a heartbeat"
            time.sleep(0.05)  # polling Optuna's own table
    finally:
        doomed.kill()
        doomed.wait()
    (crashed,) = study.get_trials()
    deadline = time.monotonic() + 60
    while crashed._trial_id not in storage._get_stale_trial_ids(study._study_id):
        assert time.monotonic() < deadline, "trial 0 never went stale"
        time.sleep(0.2)

    next_worker = subprocess.Popen(hang, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert next_worker.stdout is not None and next_worker.stdout.readline() == "running 1\n"
        failed, retried = study.get_trials()
        c = fluent.client()
        dead_run = c.get_run(failed.user_attrs[tuning.TRIAL_RUN_ATTR])
        assert failed.state.name == "FAIL" and dead_run.info.status == RunStatus.FAILED
        assert "heartbeat" in dead_run.data.tags["optuna.fail_reason"]
        assert retried.params == failed.params and retried.state.name == "RUNNING"
        retry_run = c.get_run(retried.user_attrs[tuning.TRIAL_RUN_ATTR])
        assert retry_run.info.run_id != dead_run.info.run_id
        assert retry_run.info.status == RunStatus.RUNNING
        assert retry_run.data.tags["optuna.retried_trial"] == "0"
    finally:
        next_worker.kill()
        next_worker.wait()
        storage.engine.dispose()


def test_reloading_a_stored_study_with_other_directions_is_refused(fluent, tmp_path: Path) -> None:
    """create_study loads an existing study by default: a direction other than the stored one
    would silently optimize the wrong way, so it is refused, naming the stored direction."""
    c = fluent.client()
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = tuning.create_study(study_name="s", storage=url, direction="minimize")
    parent_id = study.user_attrs[tuning.PARENT_RUN_ATTR]

    with pytest.raises(InvalidArgument, match=r"direction: study 's' .* \['minimize'\]") as err:
        tuning.create_study(study_name="s", storage=url, direction="maximize")
    assert err.value.field == "direction"
    with pytest.raises(InvalidArgument, match="directions"):
        tuning.create_study(study_name="s", storage=url, directions=["minimize", "maximize"])

    again = tuning.create_study(study_name="s", storage=url, direction="minimize")
    assert again.user_attrs[tuning.PARENT_RUN_ATTR] == parent_id
    assert tuning.create_study(study_name="s", storage=url).direction.name == "MINIMIZE"
    runs = fluent.search_runs(search_all_experiments=True, output_format="list")
    assert [r.info.run_id for r in runs] == [parent_id] and c.get_run(parent_id)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"metric_name": "val loss,x"}, "metric_name"),
        ({"metric_name": ["cost", "cost"]}, "metric_name"),
        ({"metric_name": ["only-one"]}, "metric_name"),
        ({"intermediate_metric": "a,b"}, "intermediate_metric"),
    ],
)
def test_metric_names_the_server_refuses_are_refused_before_any_trial(
    fluent, kwargs: dict[str, object], field: str
) -> None:
    """A refused metric_name lost every trial's value and state on its run (one batch), a
    refused intermediate_metric failed every trial at its first report: both now stop optimize
    before it runs a trial or makes a run."""
    study = optuna.create_study(directions=["minimize", "maximize"])
    if "metric_name" in kwargs and isinstance(kwargs["metric_name"], str):
        study = optuna.create_study()
    calls: list[int] = []

    def objective(trial: optuna.Trial) -> float | tuple[float, float]:
        calls.append(trial.number)
        trial.report(1.0, 0)
        return 1.0 if len(study.directions) == 1 else (1.0, 2.0)

    with pytest.raises(InvalidArgument) as err:
        tuning.optimize(study, objective, n_trials=2, **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field
    assert calls == [] and study.get_trials() == []
    assert fluent.search_runs(search_all_experiments=True).empty


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"n_trials": -1}, "n_trials"),
        ({"n_trials": 0}, "n_trials"),
        ({"n_trials": 2.5}, "n_trials"),
        ({"n_trials": True}, "n_trials"),
        ({"timeout": -5}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"timeout": "60"}, "timeout"),
    ],
)
def test_a_budget_that_runs_nothing_is_refused_before_any_run(
    fluent, kwargs: dict[str, object], field: str
) -> None:
    """n_trials=-1 ran no trial and left an empty parent run, with no word why; a negative
    timeout did the same, a string one failed inside Optuna naming nothing."""
    study = optuna.create_study()
    with pytest.raises(InvalidArgument) as err:
        tuning.optimize(study, lambda trial: 1.0, **kwargs)  # type: ignore[arg-type]
    assert err.value.field == field
    assert field in err.value.message
    assert study.get_trials() == []
    assert fluent.search_runs(search_all_experiments=True).empty


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"direction": "up"}, "direction", "direction: 'up' is not a direction; use 'minimize'"),
        ({"directions": ["minimize", "Max"]}, "directions", "directions: 'Max' is not a"),
        ({"direction": "minimize", "directions": ["minimize"]}, "direction", "not both"),
    ],
)
def test_a_bad_direction_is_refused_naming_the_argument(
    fluent, kwargs: dict[str, object], field: str, message: str
) -> None:
    """direction="up" came back as Optuna's bare ValueError, naming `directions`."""
    with pytest.raises(InvalidArgument) as err:
        tuning.create_study(**kwargs)  # type: ignore[arg-type]
    assert err.value.field == field and message in err.value.message
    assert fluent.search_runs(search_all_experiments=True).empty


def test_the_parent_names_the_best_trial_while_the_study_runs(fluent) -> None:
    """The best trial's tags were set only by the summary at the end: while trials ran (or in
    a study stopped before its end, or resumed) the parent's best_value named no trial, or an
    earlier session's."""
    c = fluent.client()
    seen: list[tuple[str | None, str | None]] = []
    study = tuning.create_study(direction="minimize", experiment_name="tuning-best-tags")
    parent_id = study.user_attrs[tuning.PARENT_RUN_ATTR]

    def objective(trial: optuna.Trial) -> float:
        tags = c.get_run(parent_id).data.tags
        seen.append((tags.get("best_trial.number"), tags.get("best_trial.run_id")))
        return trial.suggest_float("x", 0.0, 10.0)

    for x in (5.0, 3.0, 4.0, 1.0):
        study.enqueue_trial({"x": x})
    result = tuning.optimize(study, objective, n_trials=4)
    runs = result.trial_run_ids
    assert seen == [(None, None), ("0", runs[0]), ("1", runs[1]), ("1", runs[1])]
    assert c.get_run(parent_id).data.tags["best_trial.run_id"] == runs[3]


def test_resuming_a_study_by_name_in_another_experiment_is_refused(fluent, tmp_path: Path) -> None:
    """Resumed by name, a study goes on under its recorded parent run: an experiment_name or
    experiment_id naming another experiment was ignored, and the trials landed elsewhere."""
    c = fluent.client()
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = tuning.create_study(study_name="s", storage=url, experiment_name="first")
    parent_id = study.user_attrs[tuning.PARENT_RUN_ATTR]
    first = c.get_experiment_by_name("first").experiment_id
    other = c.create_experiment("other")

    again = tuning.create_study(study_name="s", storage=url, experiment_name="first")
    assert again.user_attrs[tuning.PARENT_RUN_ATTR] == parent_id
    assert tuning.create_study(study_name="s", storage=url, experiment_id=first)
    for kwargs, field in (
        ({"experiment_name": "second"}, "experiment_name"),
        ({"experiment_name": "other"}, "experiment_name"),
        ({"experiment_id": other}, "experiment_id"),
    ):
        with pytest.raises(InvalidArgument, match=rf"{field}: study 's' already exists") as err:
            tuning.create_study(study_name="s", storage=url, **kwargs)
        assert err.value.field == field and parent_id in str(err.value)
    assert c.get_experiment_by_name("second") is None
    runs = fluent.search_runs(search_all_experiments=True, output_format="list")
    assert [r.info.run_id for r in runs] == [parent_id]


class _StaleBestStorage(optuna.storages.InMemoryStorage):
    """Optuna's in-memory storage whose first best-trial read in the thread of `slow` (a
    trial's x) answers as of the call, then is delayed until `release` is set: a thread
    preempted between reading the best trial and writing the parent's tags."""

    def __init__(self, slow: float) -> None:
        super().__init__()
        self.slow = slow
        self.slow_thread: int | None = None
        self.read = threading.Event()
        self.release = threading.Event()

    def get_best_trial(self, study_id: int) -> optuna.trial.FrozenTrial:
        best = super().get_best_trial(study_id)
        if threading.get_ident() == self.slow_thread and not self.read.is_set():
            self.read.set()
            assert self.release.wait(timeout=60), "the better trial never finished"
        return best


def test_the_best_trial_tags_never_go_back_to_a_worse_trial_with_threads(fluent) -> None:
    """n_jobs=2: trial x=5 ends first and reads itself as the best, then stalls; trial x=1
    ends, better, and tags itself. The stalled thread then wrote x=5's tags over x=1's, and the
    parent named a worse trial until the summary."""
    c = fluent.client()
    storage = _StaleBestStorage(slow=5.0)
    study = tuning.create_study(direction="minimize", storage=storage)
    parent_id = study.user_attrs[tuning.PARENT_RUN_ATTR]
    for x in (5.0, 1.0):
        study.enqueue_trial({"x": x})
    seen: dict[float, str] = {}

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 10.0)
        if x == storage.slow:
            storage.slow_thread = threading.get_ident()
        else:
            assert storage.read.wait(timeout=60), "the worse trial never read the best"
        return x

    def after(s: optuna.Study, t: optuna.trial.FrozenTrial) -> None:
        # Runs after optimize's own callback has written trial t's best-trial tags.
        seen[t.params["x"]] = c.get_run(parent_id).data.tags["best_trial.number"]
        if t.params["x"] != storage.slow:
            storage.release.set()

    tuning.optimize(study, objective, n_trials=2, n_jobs=2, callbacks=[after])
    better = next(t.number for t in study.get_trials() if t.params["x"] == 1.0)
    assert seen == {1.0: str(better), 5.0: str(better)}


def test_a_killed_workers_trial_is_failed_when_the_study_is_resumed_without_a_heartbeat(
    fluent, server, tmp_path: Path
) -> None:
    """kill -9 mid-trial on storage without a heartbeat: the trial, its run and the parent
    stayed RUNNING for good. Resuming the study on the same host sees the worker is gone,
    fails the trial and ends its run FAILED; the next optimize finishes the parent."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = tuning.create_study(study_name="orphan", storage=url, direction="minimize")
    parent_id = study.user_attrs[tuning.PARENT_RUN_ATTR]
    worker = [sys.executable, str(Path(__file__).with_name("worker.py")), server.address, url]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    doomed = subprocess.Popen([*worker, "orphan", "1", "--hang"], env=env, stdout=subprocess.PIPE)
    try:
        assert doomed.stdout is not None and doomed.stdout.readline() == b"running 0\n"
    finally:
        doomed.kill()  # SIGKILL: no handler, no finally, runs in the worker
        doomed.wait()
    (crashed,) = study.get_trials()
    assert crashed.state.name == "RUNNING"
    c = fluent.client()
    run_id = crashed.user_attrs[tuning.TRIAL_RUN_ATTR]

    resumed = tuning.create_study(study_name="orphan", storage=url, direction="minimize")
    (failed,) = resumed.get_trials()
    assert failed.state.name == "FAIL"
    run = c.get_run(run_id)
    assert run.info.status == RunStatus.FAILED and run.data.tags["optuna.trial_state"] == "FAIL"
    assert f"pid {doomed.pid}) stopped" in run.data.tags["optuna.fail_reason"]
    assert c.get_run(parent_id).info.status == RunStatus.RUNNING  # the dead worker's optimize

    tuning.optimize(resumed, lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    parent = c.get_run(parent_id)
    assert parent.info.status == RunStatus.FINISHED and parent.data.metrics["n_failed"] == 1


def test_a_live_workers_running_trial_is_left_running(fluent, tmp_path: Path) -> None:
    """Only a worker that is gone has its trial failed: a study loaded while another thread's
    trial runs leaves that trial RUNNING."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = tuning.create_study(study_name="alive", storage=url, direction="minimize")
    started, finish = threading.Event(), threading.Event()

    def objective(trial: optuna.Trial) -> float:
        started.set()
        assert finish.wait(timeout=60)
        return trial.suggest_float("x", 0, 1)

    thread = threading.Thread(target=tuning.optimize, args=(study, objective, 1))
    thread.start()
    try:
        assert started.wait(timeout=60)
        loaded = tuning.create_study(study_name="alive", storage=url, direction="minimize")
        assert [t.state.name for t in loaded.get_trials()] == ["RUNNING"]
    finally:
        finish.set()
        thread.join()
    assert [t.state.name for t in study.get_trials()] == ["COMPLETE"]
