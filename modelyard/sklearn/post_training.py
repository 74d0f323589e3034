"""Post-training metrics for sklearn autolog, logged the way MLflow logs them.

After an autologged fit, the outputs of the model's prediction methods remember the fit's run
and the name of the dataset they were computed on. A sklearn.metrics function (or model.score)
called with such an output logs its value to that run, even after the run has ended:

    model.fit(X_train, y_train)                          # run r
    accuracy_score(y_test, model.predict(X_test))        # r: accuracy_score_X_test
    accuracy_score(y_test, model.predict(X_test))        # r: accuracy_score-2_X_test
    model.score(X_test, y_test)                          # r: LogisticRegression_score_X_test

Each call is also described in the run's metric_info.json (arguments such as average= are not
part of the key, as in MLflow). Only object identities and names are remembered: predictions and
models are referenced weakly, so nothing here keeps user data alive.
"""

from __future__ import annotations

import functools
import inspect
import sys
import threading
import weakref
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType, ModuleType
from typing import Any

import numpy as np

from modelyard import fluent
from modelyard.sklearn.autolog import (
    _GuardedLog,
    _log_metrics,
    _owner,
    _Settings,
    _wrap_method,
)

# The methods whose outputs MLflow follows; fit_predict and fit_transform outputs are training.
_PREDICTION_METHODS = ("predict", "predict_proba", "predict_log_proba", "transform")
# sklearn.metrics callables that build or look up scorers instead of scoring.
_NOT_METRICS = frozenset({"check_scoring", "get_scorer", "get_scorer_names", "make_scorer"})
_UNNAMED_DATASET = "unknown_dataset"  # MLflow's name for a dataset no variable holds
_METRIC_INFO = "metric_info.json"
_LONGEST_TEXT_ARGUMENT = 32

# None while post-training metrics are off; else the settings of the autolog() that enabled them.
_settings: _Settings | None = None
# (class or the sklearn.metrics module, name) -> what autolog replaced there
_originals: dict[tuple[type | ModuleType, str], Any] = {}
# Calls in progress on this thread that must not log: a top-level fit (its training metrics),
# and the metric or prediction call that is logging (sklearn's own nested calls).
_local = threading.local()


@contextmanager
def suspended() -> Iterator[None]:
    """No post-training metric is logged on this thread inside."""
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1


def is_suspended() -> bool:
    return getattr(_local, "depth", 0) > 0


def _active() -> _Settings | None:
    return None if is_suspended() else _settings


_Identity = weakref.ref | int  # an object's weak reference, or its id if it cannot have one


def _identity(obj: Any) -> _Identity:
    try:
        return weakref.ref(obj)
    except TypeError:
        return id(obj)


def _is(identity: _Identity, obj: Any) -> bool:
    return identity == id(obj) if isinstance(identity, int) else identity() is obj


class _Tracker:
    """Which run each fitted model belongs to, which model output came from which run and
    dataset, and the names already given in each run. Models and outputs are keyed by id and
    checked through a weak reference (numpy arrays do not take attributes, and an id is reused
    once its object is gone); their entries leave with them."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._models: dict[int, tuple[weakref.ref[Any], str]] = {}
        self._outputs: dict[int, tuple[weakref.ref[Any], str, str]] = {}
        # run -> dataset variable name -> id -> (the dataset, its index under that name): a
        # dict, not a list, so a loop over many datasets costs a lookup each, not a scan
        self._datasets: defaultdict[str, defaultdict[str, dict[int, tuple[_Identity, int]]]] = (
            defaultdict(lambda: defaultdict(dict))
        )
        self._dataset_counts: defaultdict[str, defaultdict[str, int]] = defaultdict(
            lambda: defaultdict(int)
        )
        # run -> metric name -> calls so far; run -> metric key -> the call that logged it
        self._calls: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._commands: defaultdict[str, dict[str, str]] = defaultdict(dict)

    def _forget(self, table: dict[int, Any], key: int, ref: weakref.ref[Any]) -> None:
        with self._lock:
            if key in table and table[key][0] is ref:
                del table[key]

    def track_model(self, model: Any, run_id: str) -> None:
        key = id(model)
        ref = weakref.ref(model, lambda r: self._forget(self._models, key, r))
        with self._lock:
            self._models[key] = (ref, run_id)

    def run_of(self, model: Any) -> str | None:
        entry = self._models.get(id(model))
        return entry[1] if entry is not None and entry[0]() is model else None

    def dataset_name(self, run_id: str, dataset: Any, frame: FrameType | None) -> str:
        """The dataset's variable name; a later dataset under a name already used in the run
        gets -2, -3, ... (MLflow's "-": no Python name has one)."""
        name = _variable_name(dataset, frame) or _UNNAMED_DATASET
        with self._lock:
            seen = self._datasets[run_id][name]
            known = seen.get(id(dataset))
            if known is not None and _is(known[0], dataset):
                index = known[1]
            else:  # new, or a dead dataset's id reused
                index = self._dataset_counts[run_id][name]
                self._dataset_counts[run_id][name] = index + 1
                seen[id(dataset)] = (_identity(dataset), index)
        return name if index == 0 else f"{name}-{index + 1}"

    def remember_output(self, output: Any, run_id: str, dataset_name: str) -> None:
        key = id(output)
        try:
            ref = weakref.ref(output, lambda r: self._forget(self._outputs, key, r))
        except TypeError:  # a tuple or list: its id alone could be reused, so it is not followed
            return
        with self._lock:
            self._outputs[key] = (ref, run_id, dataset_name)

    def source_of(self, values: list[Any]) -> tuple[str, str] | None:
        """(run, dataset name) of the first value that is a remembered model output."""
        for value in values:
            entry = self._outputs.get(id(value))
            if entry is not None and entry[0]() is value:
                return entry[1], entry[2]
        return None

    def metric_key(
        self, run_id: str, metric: str, dataset_name: str, command: str
    ) -> tuple[str, dict[str, str]]:
        """MLflow's key, `<metric>[-<call index>]_<dataset>`, and the run's metric_info."""
        with self._lock:
            index = self._calls[run_id][metric]
            self._calls[run_id][metric] = index + 1
            name = metric if index == 0 else f"{metric}-{index + 1}"
            key = f"{name}_{dataset_name}"
            self._commands[run_id][key] = command
            return key, dict(sorted(self._commands[run_id].items()))

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
            self._outputs.clear()
            self._datasets.clear()
            self._dataset_counts.clear()
            self._calls.clear()
            self._commands.clear()


_tracker = _Tracker()


def track(model: Any, run_id: str) -> None:
    """Log the metrics of model's later outputs to run_id (called after an autologged fit)."""
    _tracker.track_model(model, run_id)


def _bindings(frame: FrameType) -> tuple[list[Any], dict[str, Any]]:
    """The values a frame received as arguments, and its variables.

    Before Python 3.13, reading a function frame's f_locals leaves a snapshot of its variables on
    the frame, which holds what the function deletes afterwards until it returns (as a debugger's
    look does, and MLflow's). It is left alone: it is the very dict a `locals()` call in that
    function returned, and emptying it would change the user's program."""
    arguments = inspect.getargvalues(frame)
    variables = dict(arguments.locals)
    received = [variables.get(a) for a in arguments.args]
    if arguments.varargs:
        received.extend(variables.get(arguments.varargs) or ())
    if arguments.keywords:
        received.extend((variables.get(arguments.keywords) or {}).values())
    return received, variables


def _variable_name(value: Any, frame: FrameType | None) -> str | None:
    """The name value has in the nearest frame (from frame outwards) that did not receive it as
    an argument: the user's name for it rather than a library's parameter name."""
    if value is None:
        return None
    while frame is not None:
        received, variables = _bindings(frame)
        if not any(value is r for r in received):
            return next((n for n, v in variables.items() if v is value), None)
        frame = frame.f_back
    return None


def _loggable(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _first_argument(original: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """The X of a method call (the parameter after self), however it was passed."""
    if args:
        return args[0]
    names = list(inspect.signature(original).parameters)[1:2]
    return kwargs.get(names[0]) if names else None


def _command(
    name: str, parameters: list[str], args: Any, kwargs: Any, frame: FrameType | None
) -> str:
    """The call as metric_info.json shows it: `f1_score(y_true=y_test, ..., average='macro')`."""

    def text(value: Any) -> str:
        if value is None or np.isscalar(value):
            if isinstance(value, str) and len(value) > _LONGEST_TEXT_ARGUMENT:
                return repr(value[:_LONGEST_TEXT_ARGUMENT] + "...")
            return repr(value)
        return _variable_name(value, frame) or f"<{type(value).__name__}>"

    passed = [*zip(parameters, args, strict=False), *kwargs.items()]
    return f"{name}({', '.join(f'{k}={text(v)}' for k, v in passed)})"


class _MetricLog(_GuardedLog):
    """The logging of one metric call (or one prediction's bookkeeping)."""

    def __init__(self, settings: _Settings, subject: str, run_id: str) -> None:
        super().__init__(settings)
        self.subject = subject
        self.run_id = run_id

    def log(self, metric: str, dataset_name: str, command: str, value: Any) -> None:
        key, info = _tracker.metric_key(self.run_id, metric, dataset_name, command)
        self.step(f"log metric {key}", _log_metrics, self.run_id, {key: float(value)})
        self.step(f"log {_METRIC_INFO}", self._log_info, info)

    def _log_info(self, info: dict[str, str]) -> None:
        fluent.client().log_dict(self.run_id, info, _METRIC_INFO)

    def finish(self, stacklevel: int) -> None:
        def hint() -> str:
            server = self.server_hint()
            return f"{server} later metrics are logged again once it answers." if server else ""

        self.warn(
            f"{self.subject} to run {self.run_id}",
            hint,
            f"What {self.subject} returned was not affected",
            stacklevel + 1,
        )


def _following_outputs(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def predict(self: Any, *args: Any, **kwargs: Any) -> Any:
        settings = _active()
        run_id = _tracker.run_of(self) if settings is not None else None
        if settings is None or run_id is None:
            return original(self, *args, **kwargs)
        with suspended():  # a pipeline's steps predict and transform too
            output = original(self, *args, **kwargs)
        log = _MetricLog(settings, f"{type(self).__name__}.{original.__name__}", run_id)
        frame = sys._getframe(1)
        try:
            log.step("follow the output", _follow, run_id, original, args, kwargs, output, frame)
        finally:
            del frame
        log.finish(stacklevel=2)
        return output

    return predict


def _follow(
    run_id: str,
    original: Callable[..., Any],
    args: Any,
    kwargs: Any,
    output: Any,
    frame: FrameType,
) -> None:
    dataset = _first_argument(original, args, kwargs)
    _tracker.remember_output(output, run_id, _tracker.dataset_name(run_id, dataset, frame))


def _logging_score(original: Callable[..., Any]) -> Callable[..., Any]:
    """model.score logs `<Class>_score_<X>`: some scores call no sklearn.metrics function."""

    @functools.wraps(original)
    def score(self: Any, *args: Any, **kwargs: Any) -> Any:
        settings = _active()
        run_id = _tracker.run_of(self) if settings is not None else None
        if settings is None or run_id is None:
            return original(self, *args, **kwargs)
        with suspended():  # ClassifierMixin.score calls accuracy_score
            value = original(self, *args, **kwargs)
        if not _loggable(value):
            return value
        log = _MetricLog(settings, f"{type(self).__name__}.score", run_id)
        frame = sys._getframe(1)
        try:
            log.step("log the score", _log_score, log, self, original, args, kwargs, value, frame)
        finally:
            del frame
        log.finish(stacklevel=2)
        return value

    return score


def _log_score(
    log: _MetricLog,
    model: Any,
    original: Callable[..., Any],
    args: Any,
    kwargs: Any,
    value: Any,
    frame: FrameType,
) -> None:
    name = type(model).__name__
    parameters = list(inspect.signature(original).parameters)[1:]
    command = _command(f"{name}.score", parameters, args, kwargs, frame)
    dataset = _tracker.dataset_name(log.run_id, _first_argument(original, args, kwargs), frame)
    log.log(f"{name}_score", dataset, command, value)


def _logging_metric(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def metric(*args: Any, **kwargs: Any) -> Any:
        settings = _active()
        if settings is None:
            return original(*args, **kwargs)
        with suspended():  # f1_score calls other metrics, log_loss fits a LabelBinarizer
            value = original(*args, **kwargs)
        if not _loggable(value):
            return value
        source = _tracker.source_of([*args, *kwargs.values()])
        if source is None:
            return value
        run_id, dataset = source
        log = _MetricLog(settings, original.__name__, run_id)
        frame = sys._getframe(1)
        try:
            log.step(
                "log the metric", _log_metric, log, original, args, kwargs, value, dataset, frame
            )
        finally:
            del frame
        log.finish(stacklevel=2)
        return value

    return metric


def _log_metric(
    log: _MetricLog,
    original: Callable[..., Any],
    args: Any,
    kwargs: Any,
    value: Any,
    dataset: str,
    frame: FrameType,
) -> None:
    parameters = list(inspect.signature(original).parameters)
    command = _command(original.__name__, parameters, args, kwargs, frame)
    log.log(original.__name__, dataset, command, value)


def _metric_names() -> list[str]:
    """The scoring functions of sklearn.metrics (MLflow's list: no classes, plots, scorers)."""
    from sklearn import metrics

    names = []
    for name in metrics.__all__:
        found = getattr(metrics, name, None)
        if (
            name not in _NOT_METRICS
            and not name.startswith("plot_")
            and callable(found)
            and not inspect.isclass(found)
        ):
            names.append(name)
    return names


def enable(settings: _Settings) -> None:
    """Patch the prediction methods, score and sklearn.metrics (once) and use settings."""
    global _settings
    from sklearn import metrics
    from sklearn.utils import all_estimators

    _settings = settings
    for _name, cls in all_estimators():
        for method in (*_PREDICTION_METHODS, "score"):
            owner = _owner(cls, method)
            if owner is not None and (owner, method) not in _originals:
                wrap = _logging_score if method == "score" else _following_outputs
                _wrap_method(owner, method, wrap, _originals)
    for name in _metric_names():
        if (metrics, name) not in _originals:
            original = getattr(metrics, name)
            _originals[(metrics, name)] = original
            setattr(metrics, name, _logging_metric(original))


def disable() -> None:
    """Put back everything enable() replaced and forget every model and output."""
    global _settings
    _settings = None
    for (owner, name), original in _originals.items():
        setattr(owner, name, original)
    _originals.clear()
    _tracker.clear()
