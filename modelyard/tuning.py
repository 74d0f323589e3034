"""Hyperparameter tuning with Optuna, tracked: one parent run per study, one nested run per trial.

    import optuna
    import modelyard, modelyard.tuning

    def objective(trial):
        alpha = trial.suggest_float("alpha", 1e-4, 1.0, log=True)
        for epoch in range(20):
            score = train_one_epoch(alpha)
            trial.report(score, epoch)           # a metric step on the trial's run, right away
            if trial.should_prune():
                raise optuna.TrialPruned()
        return score

    study = modelyard.tuning.create_study(direction="maximize",
                                          pruner=optuna.pruners.MedianPruner())
    result = modelyard.tuning.optimize(study, objective, n_trials=50)
    result.best_run_id, result.best_params

What lands where:

- trial run (`trial-<number>`, nested under the parent): the trial's params (a name the
  server refuses as a key, such as `layer[0].lr`, under a key made of it, with the tag
  `optuna.param_names` mapping such keys to their names); every value passed to
  `trial.report` as the metric `intermediate_value` at that step, logged when it is reported (a
  callback only sees them after the trial has ended); the objective's return value as `value`
  (`metric_name=` renames it); `duration_seconds`; tags `optuna.trial_number`,
  `optuna.trial_state` and, for a failure, `optuna.fail_reason`. Status FINISHED for a complete
  trial, FAILED for a failed one and KILLED for a pruned one (with `optuna.trial_state=PRUNED`,
  which is the tag to filter on), as Optuna records the trial: a tracking error at the trial's
  end (a refused key) is logged as a warning and never changes that. Inside the objective the
  trial's run is the active run, so `modelyard.log_metric(...)` and
  `modelyard.sklearn.log_model(...)` go to it.
- parent run: the active run, else the run a job runner named in `MODELYARD_RUN_ID` (as
  MLflow's `MLFLOW_RUN_ID`; the variable stays set, for the job's own `start_run`), else a new
  run. The first two keep their owner's status. The trial runs are always new runs, never the
  environment's. On the parent: the sampler, pruner and direction as params; `best_value` as
  a metric while the study runs, stepped by the number of complete trials (the latest is the
  study's best, whatever order trials end in), and the tags `best_trial.number`,
  `best_trial.run_id`, `best_trial.params` as each new best completes; at the end the study summary
  (`n_trials`, `n_complete`, `n_pruned`, `n_failed`, `best_value`, `param_importance.<name>`),
  tags `best_trial.number`, `best_trial.run_id`, `best_trial.params`, and artifacts
  `study/summary.json`, `study/trials.csv`, `study/param_importances.json`.

Distributed trials: create the study once on shared storage (Optuna's RDB storage on the
platform's PostgreSQL) with `create_study`, which records the parent run in the study; then any
number of worker processes or Kubernetes Jobs run
`modelyard.tuning.optimize(optuna.load_study(study_name=..., storage=url), objective, n_trials=k)`.
Each trial is run, and so tracked, by exactly one worker; each worker refreshes the parent's
summary when it finishes, and the parent is marked FINISHED once no trial of the study is running.

A worker that dies mid-trial (killed, out of memory, a preempted pod) leaves its trial RUNNING in
Optuna. Each trial records its worker process (host, PID namespace, pid, start time): a worker
of the same host that is gone is seen as a study is loaded (`create_study`), before each
trial starts and as `optimize` ends; its trial is failed and its run ended FAILED, with the
reason in `optuna.fail_reason`. A worker on another host (a pod, another machine) cannot be
seen from here, so its trial stays RUNNING, and so its run and the parent, unless the storage
has a heartbeat: give every worker
`optuna.storages.RDBStorage(url, heartbeat_interval=60)` (a stale trial is one not heard from
for `grace_period`, by default two intervals). Optuna then fails the dead worker's trial, as any
worker starts a trial or finishes, and that worker ends the trial's run FAILED (and, with no
trial running as it finishes, the parent). To run such a trial again, give the storage
`heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)`:
the next worker runs a copy of it, its run tagged `optuna.retried_trial` with the number of the
trial it retries.

Any sampler or pruner works (`create_study` defaults to TPE). Grid and random search need nothing
of their own: pass `optuna.samplers.GridSampler(search_space)` or `RandomSampler(seed=...)`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import optuna
import psutil
from optuna.storages._heartbeat import is_heartbeat_enabled  # what Optuna's optimize checks
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, Trial, TrialState

from modelyard import fluent
from modelyard.entities import Metric, Param, Run, RunStatus, RunTag
from modelyard.errors import InvalidArgument
from modelyard.services.common import validation
from modelyard.services.tracking.limits import (
    MAX_KEY_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
)

PARENT_RUN_ATTR = "modelyard.parent_run_id"
EXPERIMENT_ATTR = "modelyard.experiment_id"
TRIAL_RUN_ATTR = "modelyard.run_id"
OWNER_ATTR = "modelyard.worker"  # the process running the trial (see `_owner`)
FAIL_REASON_ATTR = "modelyard.fail_reason"  # why we failed a trial its worker left RUNNING
MANAGED_TAG = "modelyard.tuning.managed"
ROLE_TAG = "modelyard.tuning.role"
INTERMEDIATE_METRIC = "intermediate_value"
PARAM_NAMES_TAG = "optuna.param_names"
RETRIED_ATTR = "failed_trial"  # the trial a RetryHeartbeatStaleTrialCallback copy retries

Direction = Literal["minimize", "maximize"] | StudyDirection  # as optuna.create_study takes it
DIRECTIONS = ("minimize", "maximize")

FINISHED_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
_STATUS = {
    TrialState.COMPLETE: RunStatus.FINISHED,
    TrialState.PRUNED: RunStatus.KILLED,
    TrialState.FAIL: RunStatus.FAILED,
}

_log = logging.getLogger(__name__)

__all__ = ["TuningResult", "create_study", "optimize", "summarize", "track"]


@dataclass(frozen=True)
class TuningResult:
    study: optuna.Study
    parent_run_id: str
    experiment_id: str
    best_trial_number: int | None
    best_run_id: str | None
    best_value: float | None
    best_params: dict[str, Any]
    trial_run_ids: dict[int, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Target:
    """Where a study's trials are recorded."""

    parent_run_id: str
    experiment_id: str
    metric_names: tuple[str, ...]
    intermediate_metric: str


# -- the parent run ------------------------------------------------------------------------------


def _now_ms() -> int:
    return int(time.time() * 1000)


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_namespace() -> str:
    """This process's PID namespace ("" where there is no /proc): pids of two containers on
    one host (or sharing its hostname) are only comparable within one namespace."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _owner() -> dict[str, Any]:
    """Who runs a trial: host, PID namespace, pid and the process's start time (a pid reused
    by a later process has another)."""
    return {
        "host": socket.gethostname(),
        "pid_namespace": _pid_namespace(),
        "pid": os.getpid(),
        "started": psutil.Process().create_time(),
    }


def _owner_is_gone(owner: dict[str, Any]) -> bool:
    """True only when `owner` (see `_owner`) is a process of this host and namespace that no
    longer runs: exited, killed (a zombie too), or its pid since taken by another process.
    A process elsewhere cannot be seen from here, so it is never judged gone."""
    if owner.get("host") != socket.gethostname() or owner.get("pid_namespace") != (
        _pid_namespace()
    ):
        return False
    try:
        process = psutil.Process(int(owner["pid"]))
        if process.status() == psutil.STATUS_ZOMBIE:
            return True
        return abs(process.create_time() - float(owner["started"])) > 0.01
    except psutil.NoSuchProcess:
        return True
    except (psutil.Error, KeyError, TypeError, ValueError):
        return False  # not ours to see (AccessDenied) or not recorded as we write it


def _experiment_id(experiment_name: str | None, experiment_id: str | None) -> str:
    if experiment_id:
        return str(experiment_id)
    if experiment_name:
        c = fluent.client()
        found = c.get_experiment_by_name(experiment_name)
        return found.experiment_id if found else c.create_experiment(experiment_name)
    return fluent._current_experiment_id()


def _start_parent(
    study: optuna.Study, experiment_id: str, run_name: str | None, tags: dict[str, Any] | None
) -> str:
    """Create a managed parent run for the study and record it in the study's user attributes."""
    c = fluent.client()
    all_tags = {
        ROLE_TAG: "study",
        MANAGED_TAG: "true",
        "optuna.study_name": study.study_name,
        **(tags or {}),
    }
    run = c.create_run(experiment_id, tags=all_tags, run_name=run_name or study.study_name)
    rid = run.info.run_id
    pruner = getattr(study, "pruner", None)
    params = {
        "optuna.sampler": type(study.sampler).__name__,
        "optuna.pruner": type(pruner).__name__ if pruner is not None else "None",
        "optuna.directions": ",".join(d.name.lower() for d in study.directions),
        "optuna.study_name": study.study_name,
    }
    c.log_batch(rid, params=[Param(k, v) for k, v in params.items()])
    _record_parent(study, rid, run.info.experiment_id)
    return rid


def _record_parent(study: optuna.Study, run_id: str, experiment_id: str) -> None:
    """Where every worker of the study finds its parent run."""
    study.set_user_attr(PARENT_RUN_ATTR, run_id)
    study.set_user_attr(EXPERIMENT_ATTR, experiment_id)


def _ambient_run() -> tuple[str, str] | None:
    """(run id, experiment id) of the run the fluent API logs to: the active run, else the job
    runner's (MODELYARD_RUN_ID), which stays in the environment and keeps its owner's status."""
    active = fluent.active_run()
    if active is not None:
        return active.info.run_id, active.info.experiment_id
    env_run_id = fluent._env_run_id()
    if env_run_id:
        return env_run_id, fluent.client().get_run(env_run_id).info.experiment_id
    return None


def create_study(
    *,
    study_name: str | None = None,
    storage: str | optuna.storages.BaseStorage | None = None,
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
    direction: Direction | None = None,
    directions: Sequence[Direction] | None = None,
    load_if_exists: bool = True,
    experiment_name: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    tags: dict[str, Any] | None = None,
    seed: int | None = None,
) -> optuna.Study:
    """`optuna.create_study` (TPE by default) plus the study's parent run, recorded in the study.

    With an active run (else a job runner's MODELYARD_RUN_ID run), that run becomes the
    study's parent; otherwise a parent run is created
    (in `experiment_name`, or the active experiment) and `optimize` manages its status. Call this
    once per study, before starting workers: the workers find the parent through the study.
    A study of that name already in `storage` is loaded (`load_if_exists`) and goes on under
    its recorded parent run; one stored with other directions than `direction` / `directions`,
    or whose parent is in another experiment than `experiment_name` / `experiment_id`, is
    refused (InvalidArgument).
    """
    _check_direction_names(direction, directions)
    study = optuna.create_study(
        storage=storage,
        sampler=sampler or optuna.samplers.TPESampler(seed=seed),
        pruner=pruner,
        study_name=study_name,
        direction=direction,
        directions=directions,
        load_if_exists=load_if_exists,
    )
    _check_directions(study, direction, directions)
    _check_experiment(study, experiment_name, experiment_id)
    if PARENT_RUN_ATTR not in study.user_attrs:
        ambient = None if experiment_name or experiment_id else _ambient_run()
        if ambient is not None:
            _record_parent(study, *ambient)
        else:
            _start_parent(study, _experiment_id(experiment_name, experiment_id), run_name, tags)
    else:  # resumed: trials a dead worker left RUNNING are failed, and their runs ended
        parent, experiment = _resolve_parent(study, None, None, None)
        _end_stale_trial_runs(study, parent, experiment)
    return study


def _check_direction_names(
    direction: Direction | None, directions: Sequence[Direction] | None
) -> None:
    """Optuna's own ValueError for direction="up" named `directions`, whichever was given, and
    reached the caller as a bare ValueError."""
    if direction is not None and directions is not None:
        raise InvalidArgument(
            "pass direction (one objective) or directions (several), not both", field="direction"
        )
    field_name = "direction" if directions is None else "directions"
    for d in [direction] if directions is None else list(directions):
        if d is not None and not isinstance(d, StudyDirection) and d not in DIRECTIONS:
            raise InvalidArgument(
                f"{field_name}: {d!r} is not a direction; use 'minimize' or 'maximize'",
                field=field_name,
            )


def _check_directions(
    study: optuna.Study, direction: Direction | None, directions: Sequence[Direction] | None
) -> None:
    """Refuse a loaded study whose stored directions differ from the ones asked for: Optuna loads
    an existing study as it was stored, so with load_if_exists (our default) a "maximize" asked
    of a stored "minimize" study would minimize what the caller means to maximize."""
    asked = [direction] if direction is not None else list(directions or ())
    if not asked:
        return
    wanted = [d if isinstance(d, StudyDirection) else StudyDirection[d.upper()] for d in asked]
    if wanted != study.directions:
        field_name = "direction" if direction is not None else "directions"
        stored = [d.name.lower() for d in study.directions]
        raise InvalidArgument(
            f"{field_name}: study {study.study_name!r} already exists in the storage with "
            f"directions {stored}, not {[d.name.lower() for d in wanted]}; pass its directions, "
            "or another study_name for a new study",
            field=field_name,
        )


def _check_experiment(
    study: optuna.Study, experiment_name: str | None, experiment_id: str | None
) -> None:
    """Refuse a loaded study whose parent run is in another experiment than the one asked
    for: resumed, its trials go on under that parent, so they would land, without a word,
    in an experiment the caller did not name."""
    recorded = study.user_attrs.get(EXPERIMENT_ATTR)
    if recorded is None or not (experiment_name or experiment_id):
        return
    if experiment_id:
        field_name, asked = "experiment_id", str(experiment_id)
        matches = asked == recorded
    else:
        field_name, asked = "experiment_name", str(experiment_name)
        found = fluent.client().get_experiment_by_name(asked)
        matches = found is not None and found.experiment_id == recorded
    if not matches:
        raise InvalidArgument(
            f"{field_name}: study {study.study_name!r} already exists in the storage, its "
            f"trials logged under run {study.user_attrs.get(PARENT_RUN_ATTR)} in experiment "
            f"{recorded}, not {asked!r}; resume it without {field_name} (or with that "
            "experiment), or pass another study_name for a new study",
            field=field_name,
        )


def _resolve_parent(
    study: optuna.Study,
    parent_run_id: str | None,
    run_name: str | None,
    experiment_name: str | None,
) -> tuple[str, str]:
    """(parent run id, experiment id): explicit, recorded in the study, ambient, or new."""
    c = fluent.client()
    if parent_run_id:
        return parent_run_id, c.get_run(parent_run_id).info.experiment_id
    attrs = study.user_attrs
    if PARENT_RUN_ATTR in attrs:
        rid = str(attrs[PARENT_RUN_ATTR])
        exp = attrs.get(EXPERIMENT_ATTR) or c.get_run(rid).info.experiment_id
        return rid, str(exp)
    ambient = None if experiment_name else _ambient_run()
    if ambient is not None:
        _record_parent(study, *ambient)
        return ambient
    exp_id = _experiment_id(experiment_name, None)
    return _start_parent(study, exp_id, run_name, None), exp_id


# -- trials --------------------------------------------------------------------------------------


def _metric_names(study: optuna.Study, metric_name: str | Sequence[str]) -> tuple[str, ...]:
    n = len(study.directions)
    if isinstance(metric_name, str):
        return (metric_name,) if n == 1 else tuple(f"{metric_name}_{i}" for i in range(n))
    names = tuple(metric_name)
    if len(names) != n:
        raise InvalidArgument(
            f"metric_name has {len(names)} names for a study with {n} objectives",
            field="metric_name",
        )
    return names


def _check_metric_keys(metric_names: Sequence[str], intermediate_metric: str) -> None:
    """Refuse, before any trial runs, metric names the server would refuse: a refused
    `metric_name` loses every trial's outcome (values, state tag, duration: one batch), and a
    refused `intermediate_metric` fails every trial at its first `trial.report`."""
    for name in metric_names:
        validation.key("metric_name", name)
    if validation.named_twice(metric_names) is not None:
        raise InvalidArgument(
            f"metric_name names {list(metric_names)} repeat a name: each objective needs its own",
            field="metric_name",
        )
    validation.key("intermediate_metric", intermediate_metric)


def _objective_values(value: Any, n: int) -> list[float] | None:
    """The objective's values as Optuna will accept them, or None where it will fail the trial."""
    try:
        values = [float(v) for v in value] if isinstance(value, Sequence) else [float(value)]
    except (TypeError, ValueError):
        return None
    if len(values) != n or any(math.isnan(v) for v in values):
        return None
    return values


def _key(name: str) -> str:
    """`name` (a param's, or a metric's made of one) as a key the server takes for params and
    metrics alike: unchanged if it is one; else its other characters (and '/', so no path
    escapes) replaced by '_', cut to fit, and a hash of the whole name appended, so two names
    never share a key. Optuna allows any string, the server MLflow's rule."""
    try:
        return validation.key("key", name)
    except InvalidArgument:
        pass
    kept = "".join(ch if ch.isalnum() or ch in "_-. :" else "_" for ch in name)
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{kept[: MAX_KEY_LENGTH - len(digest) - 1]}-{digest}"


def _param_value(value: Any) -> str:
    return str(value)[:MAX_PARAM_VALUE_LENGTH]


def _trial_params(trial: Trial) -> tuple[list[Param], list[RunTag]]:
    """The trial's params under their keys, and, if a name is not its key, the tag
    `optuna.param_names` mapping each such key to its name."""
    keys = {name: _key(name) for name in trial.params}
    params = [Param(keys[name], _param_value(v)) for name, v in trial.params.items()]
    renamed = {k: name for name, k in keys.items() if k != name}
    if not renamed:
        return params, []
    return params, [RunTag(PARAM_NAMES_TAG, json.dumps(renamed)[:MAX_TAG_VALUE_LENGTH])]


def _end_trial_run(
    rid: str,
    number: int,
    status: RunStatus,
    params: list[Param],
    metrics: list[Metric],
    tags: list[RunTag],
) -> None:
    """Record the trial's outcome on its run, end the run with `status`, and take it off this
    thread's active-run stack. A tracking error is logged, not raised: raised, it would replace
    the objective's outcome, and Optuna would fail a trial whose run says otherwise."""
    c = fluent.client()
    steps: list[tuple[str, Callable[[], object]]] = [
        ("params", lambda: c.log_batch(rid, params=params)),
        ("outcome", lambda: c.log_batch(rid, metrics=metrics, tags=tags)),
        ("queued metrics", lambda: fluent._flush_metrics(rid)),
        (f"status {status.name}", lambda: c.set_terminated(rid, status)),
    ]
    for what, step in steps:
        try:
            step()
        except Exception:
            _log.warning("trial %d: %s not recorded on run %s", number, what, rid, exc_info=True)
    fluent._forget_run(rid)


def track(
    objective: Callable[[Trial], Any],
    parent_run_id: str,
    experiment_id: str,
    metric_names: Sequence[str] = ("value",),
    intermediate_metric: str = INTERMEDIATE_METRIC,
) -> Callable[[Trial], Any]:
    """Wrap an objective so every call is a nested run under `parent_run_id`.

    `optimize` does this for you; use it directly with `study.optimize` or the ask/tell interface
    (`track(...)(study.ask())` runs and records one trial).
    """
    _check_metric_keys(metric_names, intermediate_metric)
    target = _Target(parent_run_id, experiment_id, tuple(metric_names), intermediate_metric)

    def tracked(trial: Trial) -> Any:
        trial.set_user_attr(OWNER_ATTR, _owner())  # so a trial left by a dead process is seen
        # A dead worker's trial, failed as this one started, ends its run now rather than when
        # this worker's optimize ends, which may be hours away.
        _end_stale_trial_runs(trial.study, parent_run_id, experiment_id)
        return _run_trial(objective, trial, target)

    tracked.__name__ = getattr(objective, "__name__", "objective")
    tracked.__doc__ = objective.__doc__
    return tracked


def _retry_tags(trial: Trial) -> dict[str, str]:
    """`optuna.retried_trial`: the failed trial this one retries (a storage's
    RetryHeartbeatStaleTrialCallback enqueues such a copy of a dead worker's trial), whose run it
    replaces."""
    failed = trial.storage.get_trial_system_attrs(trial._trial_id).get(RETRIED_ATTR)
    return {} if failed is None else {"optuna.retried_trial": str(failed)}


def _run_trial(objective: Callable[[Trial], Any], trial: Trial, target: _Target) -> Any:
    run = fluent._start_run(  # always a new run: never MODELYARD_RUN_ID's, the job's own
        None,
        run_name=f"trial-{trial.number}",
        parent_run_id=target.parent_run_id,
        experiment_id=target.experiment_id,
        tags={
            ROLE_TAG: "trial",
            "optuna.study_name": trial.study.study_name,
            "optuna.trial_number": trial.number,
            "optuna.worker": _worker(),
            **_retry_tags(trial),
        },
        resume_env_run=False,
    )
    rid = run.info.run_id
    trial.set_user_attr(TRIAL_RUN_ATTR, rid)
    c = fluent.client()
    reported: set[int] = set()
    report = trial.report

    def report_and_log(value: float, step: int) -> None:
        report(value, step)  # Optuna validates first; it keeps only the first value per step
        if step not in reported:
            reported.add(step)
            c.log_batch(
                rid, metrics=[Metric(target.intermediate_metric, float(value), _now_ms(), step)]
            )

    trial.report = report_and_log  # type: ignore[method-assign]
    started = time.monotonic()
    state, reason, values = TrialState.FAIL, "", None
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        state = TrialState.PRUNED
        raise
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}"
        raise
    else:
        values = _objective_values(value, len(target.metric_names))
        if values is None:
            reason = f"the objective returned {value!r}, not {len(target.metric_names)} number(s)"
        else:
            state = TrialState.COMPLETE
        return value
    finally:
        duration = time.monotonic() - started
        now = _now_ms()
        metrics = [Metric("duration_seconds", duration, now, 0)]
        if values is not None:
            metrics += [
                Metric(k, v, now, 0) for k, v in zip(target.metric_names, values, strict=True)
            ]
        tags = [RunTag("optuna.trial_state", state.name)]
        if reason:
            tags.append(RunTag("optuna.fail_reason", reason[:8000]))
        params, name_tags = _trial_params(trial)
        _end_trial_run(rid, trial.number, _STATUS[state], params, metrics, tags + name_tags)


# -- the summary ---------------------------------------------------------------------------------


def _importances(study: optuna.Study, complete: list[FrozenTrial]) -> dict[str, float]:
    if len(study.directions) != 1 or len(complete) < 2:
        return {}
    if not any(t.params for t in complete):
        return {}
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        found = optuna.importance.get_param_importances(study, evaluator=evaluator)
    except Exception:  # too few distinct values, a dynamic search space with no common params
        return {}
    return {k: float(v) for k, v in found.items()}


def _best_value(study: optuna.Study, complete: list[FrozenTrial], now: int) -> Metric:
    """The parent's best_value, stepped by how many trials are complete (read before the best):
    a later step is the best of as many trials or more, so the latest value is the study's best
    whatever order trials end in across threads and workers (by trial number, a slow trial's
    better value sank below a faster, later-numbered one's)."""
    return Metric("best_value", float(study.best_value), now, len(complete))


def _best_trial_tags(best: FrozenTrial) -> list[RunTag]:
    """The parent's tags naming the study's best trial: set as each new best completes (in the
    batch that logs best_value), so they agree with it while the study runs, after a resumed
    study's new best, and in a study stopped before its summary; the summary sets them last."""
    return [
        RunTag("best_trial.number", str(best.number)),
        RunTag("best_trial.run_id", str(best.user_attrs.get(TRIAL_RUN_ATTR, ""))),
        RunTag("best_trial.params", json.dumps(best.params, default=str)[:8000]),
    ]


def _trial_row(t: FrozenTrial) -> dict[str, Any]:
    return {
        "number": t.number,
        "state": t.state.name,
        "values": t.values,
        "params": t.params,
        "run_id": t.user_attrs.get(TRIAL_RUN_ATTR),
        "duration_seconds": t.duration.total_seconds() if t.duration else None,
    }


def summarize(
    study: optuna.Study, parent_run_id: str | None = None, log_importance: bool = True
) -> dict[str, Any]:
    """Write the study summary, best trial and parameter importance to the parent run."""
    rid = parent_run_id or str(study.user_attrs[PARENT_RUN_ATTR])
    c = fluent.client()
    trials = study.get_trials(deepcopy=False, states=FINISHED_STATES)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    counts = {
        "n_trials": len(trials),
        "n_complete": len(complete),
        "n_pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "n_failed": sum(t.state == TrialState.FAIL for t in trials),
    }
    summary: dict[str, Any] = {"study_name": study.study_name, **counts}
    now = _now_ms()
    metrics = [Metric(k, float(v), now, 0) for k, v in counts.items()]
    tags: list[RunTag] = []
    if complete and len(study.directions) == 1:
        best = study.best_trial
        summary["best_trial"] = _trial_row(best)
        metrics.append(_best_value(study, complete, now))
        tags += _best_trial_tags(best)
    elif complete:
        summary["best_trials"] = [_trial_row(t) for t in study.best_trials]
    importances = _importances(study, complete) if log_importance else {}
    summary["param_importances"] = importances
    metrics += [Metric(_key(f"param_importance.{k}"), v, now, 0) for k, v in importances.items()]
    c.log_batch(rid, metrics=metrics, tags=tags)
    c.log_dict(rid, summary, "study/summary.json")
    c.log_text(rid, _trials_csv(study), "study/trials.csv")
    if importances:
        c.log_dict(rid, importances, "study/param_importances.json")
    return summary


def _trials_csv(study: optuna.Study) -> str:
    frame = study.trials_dataframe(attrs=("number", "value", "state", "duration", "params"))
    if frame.empty:
        return "number,state\n"
    frame = frame[frame["state"] != TrialState.WAITING.name].copy()
    runs = {
        t.number: t.user_attrs.get(TRIAL_RUN_ATTR, "") for t in study.get_trials(deepcopy=False)
    }
    frame["run_id"] = frame["number"].map(runs)
    return frame.to_csv(index=False)


# -- optimize ------------------------------------------------------------------------------------


def optimize(
    study: optuna.Study,
    objective: Callable[[Trial], Any],
    n_trials: int | None = None,
    timeout: float | None = None,
    *,
    n_jobs: int = 1,
    catch: Iterable[type[Exception]] | type[Exception] = (),
    callbacks: Iterable[Callable[[optuna.Study, FrozenTrial], None]] | None = None,
    gc_after_trial: bool = False,
    show_progress_bar: bool = False,
    metric_name: str | Sequence[str] = "value",
    intermediate_metric: str = INTERMEDIATE_METRIC,
    parent_run_id: str | None = None,
    run_name: str | None = None,
    experiment_name: str | None = None,
    log_importance: bool = True,
) -> TuningResult:
    """`study.optimize(...)` with every trial a nested run and the summary on the parent run.

    The parent is `parent_run_id`, else the one recorded in the study (by `create_study` or an
    earlier call), else the active run or MODELYARD_RUN_ID's, else a new run (`run_name`, in
    `experiment_name` or the active experiment). A parent this module created is set RUNNING
    while trials run and FINISHED (FAILED if the objective raised out of optimize) once no
    trial of the study is running; a parent you own keeps the status you give it.
    """
    _check_budget(n_trials, timeout)
    names = _metric_names(study, metric_name)
    _check_metric_keys(names, intermediate_metric)
    rid, exp_id = _resolve_parent(study, parent_run_id, run_name, experiment_name)
    c = fluent.client()
    managed = c.get_run(rid).data.tags.get(MANAGED_TAG) == "true"
    if managed:
        c.update_run(rid, status=RunStatus.RUNNING)
    single = len(study.directions) == 1
    best_lock = threading.Lock()

    def progress(s: optuna.Study, t: FrozenTrial) -> None:
        if single and t.state == TrialState.COMPLETE:
            complete = s.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            metric = _best_value(s, complete, _now_ms())
            # The best is read and its tags written under one lock: read outside it, a worse
            # trial's thread could write its tags after a better trial's (n_jobs > 1), and
            # the parent named a trial that is not the best until the summary.
            with best_lock:
                tags = _best_trial_tags(t) if s.best_trial.number == t.number else []
                c.log_batch(rid, metrics=[metric], tags=tags)

    failed = True
    try:
        study.optimize(
            track(objective, rid, exp_id, names, intermediate_metric),
            n_trials=n_trials,
            timeout=timeout,
            n_jobs=n_jobs,
            catch=catch,
            callbacks=[progress, *(callbacks or [])],
            gc_after_trial=gc_after_trial,
            show_progress_bar=show_progress_bar,
        )
        failed = False
    finally:
        _end_stale_trial_runs(study, rid, exp_id)
        summarize(study, rid, log_importance)
        if managed:
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if failed:
                c.set_terminated(rid, RunStatus.FAILED)
            elif not running:
                c.set_terminated(rid, RunStatus.FINISHED)
    return _result(study, rid, exp_id)


def _check_budget(n_trials: Any, timeout: Any) -> None:
    """Refused before any run is made: Optuna runs no trial for n_trials=-1 (or 0) and stops
    at once for a negative timeout, leaving an empty parent run and no word why."""
    if n_trials is not None and (
        isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1
    ):
        raise InvalidArgument(
            f"n_trials must be a whole number, at least 1, not {n_trials!r}; pass None to run "
            "trials until the timeout",
            field="n_trials",
        )
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not math.isfinite(timeout)
        or timeout <= 0
    ):
        raise InvalidArgument(
            f"timeout must be a positive number of seconds, not {timeout!r}; pass None for no "
            "time limit",
            field="timeout",
        )


def _fail_trials_of_gone_workers(study: optuna.Study) -> None:
    """Fail the RUNNING trials whose worker process, on this host, is gone (killed, out of
    memory): without a heartbeat Optuna never learns of it, and they stayed RUNNING for good,
    their runs and the parent's status with them. A worker on another host cannot be checked
    from here: for those the storage's heartbeat (see the module docstring) is the way."""
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = t.user_attrs.get(OWNER_ATTR)
        if not isinstance(owner, dict) or not _owner_is_gone(owner):
            continue
        reason = (
            f"its worker process ({owner['host']}, pid {owner['pid']}) stopped while the trial ran"
        )
        try:
            storage.set_trial_user_attr(t._trial_id, FAIL_REASON_ATTR, reason)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except RuntimeError:  # UpdateFinishedTrialError: another process failed it first
            continue
        _log.warning("trial %d failed: %s", t.number, reason)


def _end_stale_trial_runs(study: optuna.Study, parent_run_id: str, experiment_id: str) -> None:
    """Fail the trials whose worker died, and end FAILED their runs, so that neither they nor
    the parent stay RUNNING: a worker process of this host that is gone is seen here; any
    other through the storage's heartbeat, Optuna failing its trial for a stale heartbeat.
    Runs here, before each trial any worker starts, and when a study is loaded or ends."""
    _fail_trials_of_gone_workers(study)
    heartbeat = is_heartbeat_enabled(study._storage)
    if heartbeat:
        with warnings.catch_warnings():  # as Optuna calls it: experimental since 2.9, still is
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    # Failed trials first, their runs' status after: a live worker ends a trial's run before
    # Optuna records the trial FAIL, so a run still RUNNING then has no worker left to end it.
    # Without a heartbeat only trials failed here can have such a run: no search for others.
    failed = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if heartbeat or FAIL_REASON_ATTR in t.user_attrs
    ]
    if not failed:
        return
    running = fluent.search_runs(
        [experiment_id],
        f"attributes.parent_run_id = '{parent_run_id}' and attributes.status = 'RUNNING'",
        output_format="list",
    )
    running_ids = {r.info.run_id for r in cast(list[Run], running)}
    c = fluent.client()
    for t in failed:
        run_id = t.user_attrs.get(TRIAL_RUN_ATTR)
        if run_id in running_ids:
            reason = t.user_attrs.get(FAIL_REASON_ATTR) or (
                "its worker stopped: no heartbeat within the storage's grace period"
            )
            c.log_batch(
                run_id,
                tags=[RunTag("optuna.trial_state", "FAIL"), RunTag("optuna.fail_reason", reason)],
            )
            c.set_terminated(run_id, RunStatus.FAILED)


def _result(study: optuna.Study, rid: str, exp_id: str) -> TuningResult:
    trials = study.get_trials(deepcopy=False)
    runs = {  # a WAITING retry carries its failed trial's user attrs, so that trial's run
        t.number: str(t.user_attrs[TRIAL_RUN_ATTR])
        for t in trials
        if TRIAL_RUN_ATTR in t.user_attrs and t.state != TrialState.WAITING
    }
    best: FrozenTrial | None = None
    if len(study.directions) == 1 and any(t.state == TrialState.COMPLETE for t in trials):
        best = study.best_trial
    return TuningResult(
        study=study,
        parent_run_id=rid,
        experiment_id=exp_id,
        best_trial_number=best.number if best else None,
        best_run_id=runs.get(best.number) if best else None,
        best_value=float(best.value) if best and best.value is not None else None,
        best_params=dict(best.params) if best else {},
        trial_run_ids=runs,
    )
