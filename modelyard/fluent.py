"""The fluent API, in MLflow's style: an active run per context, module-level logging calls.

    import modelyard
    modelyard.set_experiment("fraud")
    with modelyard.start_run():
        modelyard.log_param("alpha", 0.5)
        modelyard.log_metric("rmse", 0.71, step=3)

The active-run stack is per thread, as MLflow's: a new thread starts with no active run, and a
notebook's cells, which the kernel runs in its main thread, share one (a ContextVar would not:
kernels run cells as asyncio tasks, and some versions give each its own context). One Client is
cached per process and rebuilt by `set_tracking_uri`, whose URI lives in client/config.py so that
`Client()` follows it too. Everything here goes through `Client`, never through stubs.
"""

from __future__ import annotations

import atexit
import inspect
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from modelyard import system_metrics
from modelyard._batching import MetricBatcher
from modelyard.client import Client, config
from modelyard.client.tracking import RunOperations, runs_to_frame
from modelyard.convert.tracking import metric_args
from modelyard.entities import (
    Dataset,
    DatasetInput,
    Experiment,
    FileInfo,
    InputTag,
    Metric,
    ModelVersion,
    Param,
    Run,
    RunStatus,
    RunTag,
    SystemTag,
    ViewType,
)
from modelyard.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound

_lock = threading.RLock()
_client: Client | None = None
_experiment_id: str | None = None
_batcher: MetricBatcher | None = None
_async_logging = os.environ.get("MODELYARD_ASYNC_LOGGING", "").lower() in ("1", "true", "yes")
# .runs: this thread's active-run stack, innermost last; .last_run_id: the run this thread
# started or ended last, for last_active_run() (per thread, as MLflow keeps it: a fit on
# another thread must not answer this one's).
_thread = threading.local()
_monitors: dict[str, system_metrics.SystemMetricsMonitor] = {}  # by run id, until it ends
RUN_ID_ENV = "MODELYARD_RUN_ID"
EXPERIMENT_ID_ENV = "MODELYARD_EXPERIMENT_ID"


def _active_runs() -> tuple[ActiveRun, ...]:
    return getattr(_thread, "runs", ())


def _set_active_runs(runs: tuple[ActiveRun, ...]) -> None:
    _thread.runs = runs


def _forget_run(run_id: str) -> None:
    """Take a run off this thread's stack wherever it is (a tuning trial that ended early)."""
    _set_active_runs(tuple(r for r in _active_runs() if r.info.run_id != run_id))
    _stop_system_metrics(run_id)


def _stop_system_metrics(run_id: str) -> None:
    with _lock:
        monitor = _monitors.pop(run_id, None)
    if monitor is not None:
        monitor.finish()


class ActiveRun(Run):
    """A Run that ends itself when used as a context manager (FAILED if the block raised)."""

    def __init__(self, run: Run) -> None:
        super().__init__(run.info, run.data, run.inputs)

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        """End this run if it is still active (a nested run ended by hand inside the block
        leaves its parent running, as in MLflow), with any runs still open inside it."""
        stack = _active_runs()
        if any(r.info.run_id == self.info.run_id for r in stack):
            status = RunStatus.FAILED if exc_type else RunStatus.FINISHED
            try:
                while _active_runs()[-1].info.run_id != self.info.run_id:
                    end_run(status)
            finally:  # this run ends even if ending one inside it failed
                end_run(status)


# -- client and configuration ------------------------------------------------------------------


def set_tracking_uri(uri: str) -> None:
    """Point the fluent API, and every Client or FeatureStoreClient made without a URI, at
    `uri` (it wins over MODELYARD_URI, as mlflow.set_tracking_uri over MLFLOW_TRACKING_URI)."""
    global _client
    with _lock:
        if _client is not None:
            _flush_metrics()
            _client.close()
        _client = None
        config.set_uri(uri)


def get_tracking_uri() -> str:
    return config.default_uri()


def is_tracking_uri_set() -> bool:
    """Whether set_tracking_uri or MODELYARD_URI chose the server (else the local default)."""
    return config.uri_is_set()


def client() -> Client:
    """The process-wide Client the fluent functions use."""
    global _client
    with _lock:
        if _client is None:
            _client = Client(get_tracking_uri())
        return _client


def enable_async_logging(enable: bool = True) -> None:
    """Send log_metric calls in background batches; end_run() and exit flush them."""
    global _async_logging
    _async_logging = enable
    if not enable:
        _flush_metrics()


def _metrics_batcher() -> MetricBatcher:
    global _batcher
    with _lock:
        if _batcher is None:
            _batcher = MetricBatcher(lambda rid, items: client().log_batch(rid, metrics=items))
        return _batcher


def _flush_metrics(run_id: str | None = None) -> None:
    """Send every queued value; raise what failed for `run_id` (None: for any run)."""
    if _batcher is not None:
        _batcher.flush(run_id)


# -- experiments -------------------------------------------------------------------------------


def set_experiment(
    experiment_name: str | None = None, experiment_id: str | None = None
) -> Experiment:
    """Make an experiment active for later runs, creating it by name if it does not exist."""
    global _experiment_id
    if (experiment_name is None) == (experiment_id is None):
        raise InvalidArgument("pass exactly one of experiment_name or experiment_id")
    c = client()
    if experiment_id is not None:
        experiment = c.get_experiment(experiment_id)
    else:
        assert experiment_name is not None
        experiment = _experiment_named(c, experiment_name)
    if experiment.lifecycle_stage != "active":
        raise FailedPrecondition(
            f"experiment {experiment.name!r} is deleted; restore it with "
            "`modelyard experiments restore` or choose another name"
        )
    _experiment_id = experiment.experiment_id
    return experiment


def _experiment_named(c: Client, name: str) -> Experiment:
    """The experiment called `name`, created if missing. Parallel workers of one sweep all
    set the same new experiment at start: one of them creates it between another's lookup and
    create, and that other takes the one just made instead of failing with AlreadyExists."""
    found = c.get_experiment_by_name(name)
    if found is not None:
        return found
    try:
        return c.get_experiment(c.create_experiment(name))
    except AlreadyExists:
        found = c.get_experiment_by_name(name)
        if found is None:  # created and then removed for good meanwhile: say what we saw
            raise
        return found


def _current_experiment_id() -> str:
    if _experiment_id is not None:
        return _experiment_id
    if env_id := os.environ.get(EXPERIMENT_ID_ENV):
        return _env_experiment(env_id)
    if env_name := os.environ.get("MODELYARD_EXPERIMENT_NAME"):
        return set_experiment(env_name).experiment_id
    return "0"


def _env_experiment(env_id: str) -> str:
    """`env_id` once checked: unchecked, a stale MODELYARD_EXPERIMENT_ID fails later with an
    error about an experiment id the user never typed in this program."""
    fix = f"unset {EXPERIMENT_ID_ENV} or set it to the id of an existing, active experiment"
    try:
        experiment = client().get_experiment(env_id)
    except (NotFound, InvalidArgument) as exc:
        raise type(exc)(
            f"{EXPERIMENT_ID_ENV}={env_id!r} in the environment: {exc.message}; {fix}",
            field=EXPERIMENT_ID_ENV,
        ) from None
    if experiment.lifecycle_stage != "active":
        raise FailedPrecondition(
            f"{EXPERIMENT_ID_ENV}={env_id!r} in the environment names experiment "
            f"{experiment.name!r}, which is deleted; restore it, or {fix}",
            field=EXPERIMENT_ID_ENV,
        )
    return env_id


def create_experiment(
    name: str, artifact_location: str | None = None, tags: dict[str, Any] | None = None
) -> str:
    return client().create_experiment(name, artifact_location, tags)


def get_experiment(experiment_id: str) -> Experiment:
    return client().get_experiment(experiment_id)


def get_experiment_by_name(name: str) -> Experiment | None:
    return client().get_experiment_by_name(name)


def delete_experiment(experiment_id: str) -> None:
    client().delete_experiment(experiment_id)


def restore_experiment(experiment_id: str) -> None:
    client().restore_experiment(experiment_id)


def search_experiments(
    view_type: ViewType = ViewType.ACTIVE_ONLY,
    max_results: int | None = None,
    filter_string: str | None = None,
    order_by: str | Sequence[str] | None = None,
) -> list[Experiment]:
    """Every matching experiment, across all pages (up to `max_results`)."""
    c = client()
    found: list[Experiment] = []
    token = None
    while max_results is None or len(found) < max_results:
        want = None if max_results is None else max_results - len(found)
        page = c.search_experiments(view_type, want, filter_string, order_by, token)
        found.extend(page)
        token = page.token
        if not token:
            break
    return found


def set_experiment_tag(key: str, value: Any) -> None:
    """Tag the active experiment (set_experiment's, or the default one)."""
    client().set_experiment_tag(_current_experiment_id(), key, value)


def set_experiment_tags(tags: dict[str, Any]) -> None:
    for key, value in tags.items():
        set_experiment_tag(key, value)


def delete_experiment_tag(key: str) -> None:
    client().delete_experiment_tag(_current_experiment_id(), key)


# -- runs ----------------------------------------------------------------------------------------


def start_run(
    run_id: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    tags: dict[str, Any] | None = None,
    description: str | None = None,
    log_system_metrics: bool | None = None,
) -> ActiveRun:
    """Start a run (or resume `run_id`, else MODELYARD_RUN_ID's) and make it active; use as a
    context manager.
    `log_system_metrics`: sample the machine's CPU, memory, disk and network into `system/*`
    metrics until the run ends (None: as enable_system_metrics_logging or the environment
    says; see modelyard.system_metrics)."""
    return _start_run(
        run_id,
        experiment_id=experiment_id,
        run_name=run_name,
        nested=nested,
        parent_run_id=parent_run_id,
        tags=tags,
        description=description,
        log_system_metrics=log_system_metrics,
        resume_env_run=True,
    )


def _env_run_id() -> str | None:
    """The run a job runner started for this process (MLflow's MLFLOW_RUN_ID), which the first
    start_run without a run_id resumes, and which then leaves the environment."""
    return os.environ.get(RUN_ID_ENV) or None


def _start_run(
    run_id: str | None,
    *,
    experiment_id: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    tags: dict[str, Any] | None = None,
    description: str | None = None,
    log_system_metrics: bool | None = None,
    resume_env_run: bool,
) -> ActiveRun:
    """start_run; `resume_env_run=False` always makes a new run when `run_id` is None (a tuning
    trial, which must not take over the job runner's run)."""
    stack = _active_runs()
    if stack and not nested and not parent_run_id:
        raise FailedPrecondition(
            f"run {stack[-1].info.run_id} is already active; end it with end_run(), or pass "
            "nested=True to start a run inside it"
        )
    if stack and nested and parent_run_id and parent_run_id != stack[-1].info.run_id:
        raise InvalidArgument(
            f"parent_run_id {parent_run_id} is not the active run {stack[-1].info.run_id}, "
            "under which nested=True starts the run; end the active run with end_run() first, "
            "or pass its id (or no parent_run_id)",
            field="parent_run_id",
        )
    if not run_id and resume_env_run and _env_run_id():  # resumed once
        run_id = os.environ.pop(RUN_ID_ENV)
    c = client()
    if run_id:
        run = c.get_run(run_id)  # a deleted one is refused by update_run below, with the way back
        if parent_run_id and parent_run_id != run.info.parent_run_id:
            # A resumed run keeps its parent: silently ignoring the one asked for misleads.
            has = f"parent run {run.info.parent_run_id}" if run.info.parent_run_id else "no parent"
            raise InvalidArgument(
                f"run {run_id} has {has}, not parent_run_id {parent_run_id}; resume it "
                "without parent_run_id (or with its own parent), or start a new run under "
                f"{parent_run_id}",
                field="parent_run_id",
            )
        c.update_run(run_id, status=RunStatus.RUNNING, name=run_name)  # renames, as MLflow
        resumed_tags = dict(tags or {})
        if description:
            resumed_tags[SystemTag.NOTE] = description
        if resumed_tags:
            set_tags(resumed_tags, run_id=run_id)
        run = c.get_run(run_id)
    else:
        parent = parent_run_id or (stack[-1].info.run_id if stack and nested else None)
        all_tags = dict(tags or {})
        if description:
            all_tags[SystemTag.NOTE] = description
        for key, value in _source_tags().items():
            all_tags.setdefault(key, value)
        exp_id = experiment_id or (
            c.get_run(parent).info.experiment_id if parent else _current_experiment_id()
        )
        run = c.create_run(exp_id, tags=all_tags, run_name=run_name, parent_run_id=parent)
    active = ActiveRun(run)
    _set_active_runs((*stack, active))
    _thread.last_run_id = active.info.run_id
    if system_metrics.wanted(log_system_metrics):
        _start_system_metrics(c, run)
    return active


def _start_system_metrics(c: Client, run: Run) -> None:
    """Never fails the run: without the machine's figures (no permission to read them, say),
    it is logged and the run goes on, as in MLflow."""
    rid = run.info.run_id
    _stop_system_metrics(rid)  # the same run resumed again: one monitor at a time
    try:
        monitor = system_metrics.SystemMetricsMonitor(
            lambda ms: c.log_batch(rid, metrics=ms),
            first_step=system_metrics.next_step(run.data.latest_metrics),
        ).start()
    except Exception as exc:
        system_metrics.log.warning("system metrics of run %s not logged: %s", rid, exc)
        return
    with _lock:
        _monitors[rid] = monitor


def _source_tags() -> dict[str, str]:
    """Where the run was started from, under MLflow's tags (its UI and searches read them)."""
    main = sys.argv[0] if sys.argv and sys.argv[0] else ""
    return {
        SystemTag.SOURCE_NAME: os.path.abspath(main) if main and main != "-c" else "<console>",
        SystemTag.SOURCE_TYPE: "LOCAL",
    }


def active_run() -> ActiveRun | None:
    stack = _active_runs()
    return stack[-1] if stack else None


def last_active_run() -> Run | None:
    """The active run, else the run this thread ended last (after a nested run ends with its
    parent, the parent), as MLflow's; fetched afresh, so it holds what was logged since."""
    active = active_run()
    run_id = active.info.run_id if active else getattr(_thread, "last_run_id", None)
    return client().get_run(run_id) if run_id else None


def end_run(status: RunStatus | str = RunStatus.FINISHED) -> None:
    """End the active run with `status`. Queued metrics are flushed first; if that fails (a
    refused key) the run is still ended, then the error is raised: never left RUNNING."""
    stack = _active_runs()
    if not stack:
        return
    run_id = stack[-1].info.run_id
    status = RunStatus.from_string(status)  # before the run leaves the stack: a typo keeps it
    _set_active_runs(stack[:-1])  # first, as MLflow does: a failed call below ends it locally
    _thread.last_run_id = run_id
    try:
        _stop_system_metrics(run_id)
        _flush_metrics(run_id)
    finally:
        client().set_terminated(run_id, status)


def _end_run_below(run_id: str, status: RunStatus) -> None:
    """End `run_id` although other runs sit on top of it on this thread's stack (they stay
    active): off the stack, its system-metrics thread stopped and its queued metrics sent, as
    end_run does for the top one, then ended even if those failed."""
    try:
        _forget_run(run_id)
        _flush_metrics(run_id)
    finally:
        client().set_terminated(run_id, status)


def _run_id(run_id: str | None = None) -> str:
    if run_id:
        return run_id
    stack = _active_runs()
    if stack:
        return stack[-1].info.run_id
    return start_run().info.run_id  # MLflow starts a run implicitly on the first log call


def get_run(run_id: str) -> Run:
    return client().get_run(run_id)


def delete_run(run_id: str) -> None:
    client().delete_run(run_id)


def restore_run(run_id: str) -> None:
    client().restore_run(run_id)


def get_parent_run(run_id: str) -> Run | None:
    return client().get_parent_run(run_id)


def get_artifact_uri(artifact_path: str | None = None) -> str:
    uri = client().get_run(_run_id()).info.artifact_uri
    return f"{uri}/{artifact_path.strip('/')}" if artifact_path else uri


# -- logging -------------------------------------------------------------------------------------


# Params and tags are written at once whatever `synchronous` says: a refused param (params are
# immutable) must reach the caller. With synchronous=False they return, as in MLflow, a
# RunOperations, already done; metrics queue for a background batch and theirs waits for it.
_DONE = RunOperations(lambda: None)


def _written(synchronous: bool | None, result: Any = None) -> Any:
    return _DONE if _queued(synchronous) else result


def log_param(
    key: str, value: Any, synchronous: bool | None = None, run_id: str | None = None
) -> Any:
    """`value` once written (RunOperations with synchronous=False)."""
    return _written(synchronous, client().log_param(_run_id(run_id), key, value))


def log_params(
    params: dict[str, Any], synchronous: bool | None = None, run_id: str | None = None
) -> RunOperations | None:
    client().log_batch(_run_id(run_id), params=[Param(k, str(v)) for k, v in params.items()])
    return _written(synchronous)


def _metric(key: str, value: float, step: int | None, timestamp: int | None) -> Metric:
    """Checked here, so a value that is not a number raises InvalidArgument in the caller even
    when it is queued for a background batch. Only None means now: 0 is a time (the epoch, or
    a step-like clock), stored as given, as Client.log_metric stores it."""
    ts = int(time.time() * 1000) if timestamp is None else timestamp
    checked = metric_args(key, value, ts, step or 0)
    return Metric(key, checked["value"], ts, checked["step"])


def _queued(synchronous: bool | None) -> bool:
    return synchronous is False or (synchronous is None and _async_logging)


def log_metric(
    key: str,
    value: float,
    step: int | None = None,
    synchronous: bool | None = None,
    timestamp: int | None = None,
    run_id: str | None = None,
) -> RunOperations | None:
    """`synchronous=False` (or enable_async_logging) queues the value for a background batch;
    the RunOperations returned then waits until it is sent."""
    return log_metrics({key: value}, step, synchronous, run_id, timestamp)


def log_metrics(
    metrics: dict[str, float],
    step: int | None = None,
    synchronous: bool | None = None,
    run_id: str | None = None,
    timestamp: int | None = None,
) -> RunOperations | None:
    rid = _run_id(run_id)
    items = [_metric(k, v, step, timestamp) for k, v in metrics.items()]
    if not _queued(synchronous):
        client().log_batch(rid, metrics=items)
        return None
    batcher = _metrics_batcher()
    tickets = [batcher.add(rid, m) for m in items]

    def wait_for_all() -> None:
        for ticket in tickets:
            batcher.wait(ticket)

    return RunOperations(wait_for_all)


def flush_async_logging() -> None:
    """Send every queued metric value now."""
    _flush_metrics()


def set_tag(
    key: str, value: Any, synchronous: bool | None = None, run_id: str | None = None
) -> RunOperations | None:
    client().set_tag(_run_id(run_id), key, value)
    return _written(synchronous)


def set_tags(
    tags: dict[str, Any], synchronous: bool | None = None, run_id: str | None = None
) -> RunOperations | None:
    client().log_batch(_run_id(run_id), tags=[RunTag(k, str(v)) for k, v in tags.items()])
    return _written(synchronous)


def delete_tag(key: str, run_id: str | None = None) -> None:
    client().delete_tag(_run_id(run_id), key)


def log_artifact(
    local_path: str | Path, artifact_path: str | None = None, run_id: str | None = None
) -> FileInfo:
    return client().log_artifact(_run_id(run_id), local_path, artifact_path)


def log_artifacts(
    local_dir: str | Path, artifact_path: str | None = None, run_id: str | None = None
) -> list[FileInfo]:
    return client().log_artifacts(_run_id(run_id), local_dir, artifact_path)


def log_text(text: str, artifact_file: str, run_id: str | None = None) -> FileInfo:
    return client().log_text(_run_id(run_id), text, artifact_file)


def log_dict(dictionary: dict[str, Any], artifact_file: str, run_id: str | None = None) -> FileInfo:
    return client().log_dict(_run_id(run_id), dictionary, artifact_file)


def log_figure(
    figure: Any, artifact_file: str, *, save_kwargs: dict[str, Any] | None = None
) -> FileInfo:
    """A matplotlib or plotly figure, in the format `artifact_file`'s extension names."""
    return client().log_figure(_run_id(), figure, artifact_file, save_kwargs=save_kwargs)


def log_image(
    image: Any,
    artifact_file: str | None = None,
    key: str | None = None,
    step: int | None = None,
    timestamp: int | None = None,
    synchronous: bool | None = None,
) -> FileInfo:
    """A numpy array or PIL image as the file `artifact_file`, or as the image `key` at `step`
    (see Client.log_image); stored when this returns, whatever `synchronous` says."""
    return client().log_image(_run_id(), image, artifact_file, key, step, timestamp, synchronous)


def log_table(data: Any, artifact_file: str, run_id: str | None = None) -> FileInfo:
    """A DataFrame or dict of columns as a .json table; appends to one logged there before."""
    return client().log_table(_run_id(run_id), data, artifact_file)


def load_table(
    artifact_file: str,
    run_ids: Sequence[str] | None = None,
    extra_columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """The tables the active experiment's runs (or `run_ids`) logged at `artifact_file`, as one
    DataFrame; `extra_columns=["run_id"]` says which run each row came from."""
    return client().load_table(_current_experiment_id(), artifact_file, run_ids, extra_columns)


def _dataset_input(
    dataset: Dataset, context: str | None, tags: dict[str, str] | None
) -> DatasetInput:
    all_tags = dict(tags or {})
    if context:
        all_tags[SystemTag.DATASET_CONTEXT] = context
    return DatasetInput(dataset, tuple(InputTag(k, v) for k, v in all_tags.items()))


def log_input(
    dataset: Dataset, context: str | None = None, tags: dict[str, str] | None = None
) -> None:
    client().log_inputs(_run_id(), [_dataset_input(dataset, context, tags)])


def log_inputs(
    datasets: Sequence[Dataset],
    contexts: Sequence[str | None] | None = None,
    tags_list: Sequence[dict[str, str] | None] | None = None,
) -> None:
    """Several dataset inputs in one call; `contexts` and `tags_list` align with `datasets`."""
    contexts = list(contexts) if contexts is not None else [None] * len(datasets)
    tags_list = list(tags_list) if tags_list is not None else [None] * len(datasets)
    if not len(datasets) == len(contexts) == len(tags_list):
        raise InvalidArgument(
            f"datasets ({len(datasets)}), contexts ({len(contexts)}) and tags_list "
            f"({len(tags_list)}) must be the same length; pass one entry per dataset",
            field="contexts",
        )
    inputs = [_dataset_input(*entry) for entry in zip(datasets, contexts, tags_list, strict=True)]
    client().log_inputs(_run_id(), inputs)


# -- registry -----------------------------------------------------------------------------------


def register_model(
    model_uri: str,
    name: str,
    await_registration_for: float = 300,
    tags: dict[str, Any] | None = None,
) -> ModelVersion:
    """Register a logged model (runs:/<run_id>/<path>) as the next version of `name`."""
    return client().create_model_version(
        name, model_uri, tags=tags, await_creation_for=await_registration_for
    )


# -- search --------------------------------------------------------------------------------------


def search_runs(
    experiment_ids: str | Sequence[str] | None = None,
    filter_string: str = "",
    run_view_type: ViewType = ViewType.ACTIVE_ONLY,
    max_results: int = 100_000,
    order_by: str | Sequence[str] | None = None,
    output_format: Literal["pandas", "list"] = "pandas",
    search_all_experiments: bool = False,
    experiment_names: Sequence[str] | None = None,
) -> pd.DataFrame | list[Run]:
    """Runs matching the filter across all pages, as a DataFrame (MLflow's columns) or a list."""
    c = client()
    ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids or [])
    for name in experiment_names or []:
        found = c.get_experiment_by_name(name)
        if found is not None:
            ids.append(found.experiment_id)
    if search_all_experiments:
        ids = [e.experiment_id for e in search_experiments(run_view_type)]
    elif not ids and not experiment_names:
        ids = [_current_experiment_id()]
    runs: list[Run] = []
    token = None
    while ids and len(runs) < max_results:
        page = c.search_runs(
            ids, filter_string, run_view_type, min(1000, max_results - len(runs)), order_by, token
        )
        runs.extend(page)
        token = page.token
        if not token:
            break
    if output_format == "list":
        return runs
    if output_format != "pandas":
        raise InvalidArgument("output_format must be 'pandas' or 'list'", field="output_format")
    return runs_to_frame(runs)


# -- autologging ---------------------------------------------------------------------------------


def autolog(
    log_input_examples: bool = False,
    log_model_signatures: bool = True,
    log_models: bool = True,
    log_datasets: bool = True,
    log_traces: bool = True,
    disable: bool = False,
    exclusive: bool = False,
    disable_for_unsupported_versions: bool = False,
    silent: bool = False,
    extra_tags: dict[str, str] | None = None,
    exclude_flavors: Sequence[str] | None = None,
) -> None:
    """Configure autologging for every flavor Modelyard has (scikit-learn), as mlflow.autolog
    does: each flavor gets those of these arguments its own autolog takes (none takes
    log_traces yet); `exclude_flavors=["sklearn"]` leaves that flavor's configuration alone."""
    import modelyard.sklearn  # here: it imports this module, and scikit-learn

    given: dict[str, Any] = {
        "log_input_examples": log_input_examples,
        "log_model_signatures": log_model_signatures,
        "log_models": log_models,
        "log_datasets": log_datasets,
        "log_traces": log_traces,
        "disable": disable,
        "exclusive": exclusive,
        "disable_for_unsupported_versions": disable_for_unsupported_versions,
        "silent": silent,
        "extra_tags": extra_tags,
    }
    # Names of flavors Modelyard lacks ("tensorflow") are ignored, as MLflow ignores names
    # that match none of its flavors: code written for MLflow runs unchanged.
    flavors = {"sklearn": modelyard.sklearn.autolog}
    for name, flavor_autolog in flavors.items():
        if name in (exclude_flavors or ()):
            continue
        takes = inspect.signature(flavor_autolog).parameters
        flavor_autolog(**{k: v for k, v in given.items() if k in takes})


@atexit.register
def _end_runs_at_exit() -> None:
    """Flush queued metrics and finish runs left open, so an exiting script loses nothing; one
    failure (a refused key, a server gone) neither hides the others nor leaves a run open."""
    try:
        _flush_metrics()
    except Exception as exc:  # said instead of a traceback, and the runs still end below
        print(f"modelyard: could not log every queued metric at exit: {exc}")
    while _active_runs():  # end_run takes the run off the stack even when it raises
        try:
            end_run(RunStatus.FINISHED)
        except Exception as exc:
            print(f"modelyard: could not finish the active run at exit: {exc}")
