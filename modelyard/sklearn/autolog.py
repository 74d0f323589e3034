"""scikit-learn autologging: params, training metrics, the training dataset and the fitted
model of every `fit`, the way MLflow's sklearn autolog records them (and, through
post_training.py, the metrics computed on the fitted model's predictions afterwards).

    modelyard.sklearn.autolog()
    LogisticRegression().fit(X, y)   # logged to the active run, or to a run of its own
"""

from __future__ import annotations

import copy
import functools
import inspect
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from modelyard import data, fluent
from modelyard.entities import (
    Dataset,
    DatasetInput,
    InputTag,
    Param,
    RunStatus,
    RunTag,
    SystemTag,
)
from modelyard.errors import DeadlineExceeded, InvalidArgument, ModelyardError, Unavailable
from modelyard.models.signature import Signature, infer_signature
from modelyard.services.common import validation
from modelyard.services.tracking.limits import MAX_KEY_LENGTH, MAX_PARAM_VALUE_LENGTH
from modelyard.sklearn.flavor import (
    FLAVOR,
    SERIALIZATION_FORMAT_CLOUDPICKLE,
    SERIALIZATION_FORMAT_PICKLE,
    _check_format,
    _dense,
    _is_sparse,
    log_model,
)

# Top-level fits in progress: on this thread (.fitting), and in the process. A fit inside one on
# the same thread (a pipeline's step) belongs to it; so does one on a joblib worker thread (a
# search's candidates with n_jobs and the threading backend), which no context variable
# reaches. A fit on any other thread is its own (see autolog's docstring).
_local = threading.local()
_fits_in_progress = 0
_fits_lock = threading.Lock()
# (class, method) -> the method autolog replaced
_patched: dict[tuple[type, str], Any] = {}
# The training entry points, as MLflow patches them: fit_transform and fit_predict often train
# without calling fit (PCA, KMeans.fit_predict through its own code paths).
_TRAINING_METHODS = ("fit", "fit_transform", "fit_predict")

_EXAMPLE_ROWS = 5
# The scikit-learn releases autolog is tested with (major, minor), for
# disable_for_unsupported_versions; the floor is the one pyproject.toml requires.
_TESTED_SKLEARN = ((1, 4), (1, 9))
_AUTOLOG_TAG = "modelyard.autologging"


class AutologWarning(UserWarning):
    """Autolog could not log something; the user's fit was not affected."""


@dataclass(frozen=True)
class _Settings:
    log_input_examples: bool = False
    log_model_signatures: bool = True
    log_models: bool = True
    log_datasets: bool = True
    disable: bool = False
    exclusive: bool = False
    silent: bool = False
    max_tuning_runs: int | None = 5
    serialization_format: str = SERIALIZATION_FORMAT_PICKLE
    registered_model_name: str | None = None
    pos_label: Any = None
    extra_tags: dict[str, str] = field(default_factory=dict)
    log_post_training_metrics: bool = True


# Replaced as a whole by autolog(), so a fit in progress reads one consistent set.
_settings = _Settings()


def _param_text(value: Any) -> str:
    text = value.__class__.__name__ if hasattr(value, "get_params") else str(value)
    return text[:MAX_PARAM_VALUE_LENGTH]


def _loggable_key(key: str) -> bool:
    """Whether the tracking server takes `key` (its own check, not a copy of it)."""
    try:
        validation.key("params.key", key, MAX_KEY_LENGTH)
    except InvalidArgument:
        return False
    return True


def _safe_params(params: dict[str, Any], skipped: list[str] | None = None) -> dict[str, str]:
    """Params as text. A key the server would refuse (a Pipeline step named 'scale(std)' makes
    'scale(std)__with_mean') is left out, and added to `skipped`: sent, it refused the whole
    batch, and with it the fit's metrics and model."""
    kept: dict[str, str] = {}
    for key, value in params.items():
        if _loggable_key(key):
            kept[key] = _param_text(value)
        elif skipped is not None:
            skipped.append(key)
    return kept


def _is_search(estimator: Any) -> bool:
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV

    return isinstance(estimator, GridSearchCV | RandomizedSearchCV)


def _estimator_params(estimator: Any, skipped: list[str] | None = None) -> dict[str, str]:
    # A search's inner estimator is only the seed of the search: its untuned params would mislead.
    return _safe_params(estimator.get_params(deep=not _is_search(estimator)), skipped)


def _estimator_tags(estimator: Any) -> dict[str, str]:
    cls = type(estimator)
    return {"estimator_name": cls.__name__, "estimator_class": f"{cls.__module__}.{cls.__name__}"}


def _fit_inputs(original: Callable[..., Any], estimator: Any, args: Any, kwargs: Any) -> Any:
    """(X, y, sample_weight) as this fit names them (CountVectorizer's X is raw_documents)."""
    signature = inspect.signature(original)
    try:
        bound = signature.bind(estimator, *args, **kwargs).arguments
    except TypeError:  # the call itself is wrong: the original fit will say how
        return None, None, None
    named: list[str] = []
    extra: dict[str, Any] = {}
    for name, param in list(signature.parameters.items())[1:]:
        if param.kind == param.VAR_KEYWORD:
            extra = bound.get(name) or {}
        elif param.kind != param.VAR_POSITIONAL:
            named.append(name)
    X = bound.get(named[0]) if named else None
    y = bound.get(named[1]) if len(named) > 1 and named[1] != "sample_weight" else None
    return X, y, bound.get("sample_weight", extra.get("sample_weight"))


def _head(X: Any) -> Any:
    """A few training rows, taken before fit can change X, dense for JSON and signatures."""
    if X is None:
        return None
    if isinstance(X, pd.DataFrame | pd.Series):
        return X.iloc[:_EXAMPLE_ROWS].copy()
    if _is_sparse(X):
        return X.tocsr()[:_EXAMPLE_ROWS].toarray()
    if isinstance(X, np.ndarray):
        return X[:_EXAMPLE_ROWS].copy()
    if isinstance(X, list | tuple):
        return np.asarray(X[:_EXAMPLE_ROWS])
    return None


def _infer_model_signature(estimator: Any, example: Any) -> Signature:
    if hasattr(estimator, "predict"):
        output = estimator.predict(copy.deepcopy(example))
    elif hasattr(estimator, "transform"):
        output = estimator.transform(copy.deepcopy(example))
    else:
        output = None
    return infer_signature(example, _dense(output))


def _training_dataset(X: Any, y: Any) -> Dataset:
    targets = None if y is None else np.asarray(_dense(y))
    if isinstance(X, pd.DataFrame):
        return data.from_pandas(X)
    if _is_sparse(X):
        return data.from_scipy(X, targets=targets)
    return data.from_numpy(np.asarray(X), targets=targets)


def _training_metrics(
    estimator: Any, X: Any, y: Any, sample_weight: Any, pos_label: Any
) -> tuple[dict[str, float], list[tuple[str, Exception]]]:
    """MLflow's training_* metrics, and the ones that could not be computed (with why)."""
    from sklearn import metrics as skm
    from sklearn.base import is_classifier, is_regressor

    if y is None or not hasattr(estimator, "predict"):
        return {}, []
    found: dict[str, float] = {}
    failed: list[tuple[str, Exception]] = []

    def add(name: str, compute: Callable[[], Any]) -> None:
        try:
            found[f"training_{name}"] = float(compute())
        except Exception as exc:
            failed.append((f"compute training_{name}", exc))

    try:
        predicted = estimator.predict(X)
    except Exception as exc:
        return {}, [("predict the training data for training metrics", exc)]
    weight = {"sample_weight": sample_weight}
    if is_classifier(estimator):
        average = {"average": "weighted"} if pos_label is None else {"pos_label": pos_label}
        for name, fn in (
            ("precision_score", skm.precision_score),
            ("recall_score", skm.recall_score),
            ("f1_score", skm.f1_score),
        ):
            add(name, functools.partial(fn, y, predicted, zero_division=0, **average, **weight))
        add("accuracy_score", lambda: skm.accuracy_score(y, predicted, **weight))
        if hasattr(estimator, "predict_proba"):
            try:
                proba = estimator.predict_proba(X)
            except Exception as exc:
                failed.append(("predict_proba the training data", exc))
            else:
                labels = getattr(estimator, "classes_", None)
                add("log_loss", lambda: skm.log_loss(y, proba, labels=labels, **weight))
                score = proba[:, 1] if proba.shape[1] == 2 else proba
                # One-vs-one (MLflow's choice, less sensitive to imbalance) cannot weight
                # samples; one-vs-rest can.
                pairing = "ovo" if sample_weight is None else "ovr"
                add(
                    "roc_auc",
                    lambda: skm.roc_auc_score(
                        y, score, average="weighted", multi_class=pairing, labels=labels, **weight
                    ),
                )
    elif is_regressor(estimator):
        add("mean_squared_error", lambda: skm.mean_squared_error(y, predicted, **weight))
        if "training_mean_squared_error" in found:
            found["training_root_mean_squared_error"] = float(
                np.sqrt(found["training_mean_squared_error"])
            )
        add("mean_absolute_error", lambda: skm.mean_absolute_error(y, predicted, **weight))
        add("r2_score", lambda: skm.r2_score(y, predicted, **weight))
    if hasattr(estimator, "score"):
        accepts_weight = "sample_weight" in inspect.signature(estimator.score).parameters
        extra = weight if accepts_weight and sample_weight is not None else {}
        add("score", lambda: estimator.score(X, y, **extra))
    return found, failed


def _log_params(run_id: str, params: dict[str, str], tags: dict[str, str] | None = None) -> None:
    """Tags go in the first request with the first params (Client.log_batch's split), so a
    rejected first request (a param an earlier fit set differently) leaves the tags alone."""
    fluent.client().log_batch(
        run_id,
        params=[Param(k, v) for k, v in params.items()],
        tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
    )


def _log_metrics(run_id: str, metrics: dict[str, float]) -> None:
    if metrics:
        fluent.log_metrics(metrics, synchronous=True, run_id=run_id)


def _sklearn_version_tested() -> bool:
    import sklearn

    found = re.match(r"(\d+)\.(\d+)", sklearn.__version__)
    if not found:
        return False
    major_minor = (int(found.group(1)), int(found.group(2)))
    return _TESTED_SKLEARN[0] <= major_minor <= _TESTED_SKLEARN[1]


class _GuardedLog:
    """Logging that must never break the user's call: every step is guarded, a failure is
    remembered for one AutologWarning at the end, and a failed server call skips the steps after
    it (they would fail the same way, and each retry would delay the user's program)."""

    def __init__(self, settings: _Settings) -> None:
        self.settings = settings
        self.failures: list[tuple[str, Exception]] = []
        self.broken = False

    @contextmanager
    def _quiet(self) -> Iterator[None]:
        if not self.settings.silent:
            yield
            return
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield

    def step(self, what: str, fn: Callable[..., Any], *args: Any, isolated: bool = False) -> Any:
        """`isolated`: an InvalidArgument from this step concerns its own data alone (a dtype
        no signature describes, a dataset wider than the server takes), so the steps after it
        still run; any other server error still skips them."""
        if self.broken:
            return None
        try:
            with self._quiet():
                return fn(*args)
        except Exception as exc:
            self.failures.append((what, exc))
            own = isolated and isinstance(exc, InvalidArgument)
            self.broken = self.broken or (isinstance(exc, ModelyardError) and not own)
            return None

    def server_hint(self) -> str | None:
        """What to check when the failures say the server could not be reached."""
        if any(isinstance(e, Unavailable | DeadlineExceeded) for _, e in self.failures):
            return (
                f"Check that the tracking server at {fluent.get_tracking_uri()} is running and "
                "reachable;"
            )
        return None

    def warn(self, subject: str, hint: Callable[[], str], unaffected: str, stacklevel: int) -> None:
        """The one AutologWarning for everything that failed (none if nothing did, or silent);
        stacklevel counts from the caller of warn."""
        if not self.failures or self.settings.silent:
            return
        try:
            what = "; ".join(f"could not {w}: {type(e).__name__}: {e}" for w, e in self.failures)
            parts = (
                f"modelyard.sklearn.autolog: logging {subject} was incomplete ({what}).",
                hint(),
                f"{unaffected}; autolog(silent=True) hides these warnings.",
            )
            message = " ".join(p for p in parts if p)
        except Exception as exc:  # a failure that cannot even be described
            message = f"modelyard.sklearn.autolog: logging was incomplete ({exc!r})"
        warnings.warn(message, AutologWarning, stacklevel=stacklevel + 1)


class _FitLog(_GuardedLog):
    """The logging of one top-level fit."""

    def __init__(self, settings: _Settings, estimator: Any) -> None:
        super().__init__(settings)
        self.estimator = estimator
        self.run_id: str | None = None
        self.own_run = False

    # -- before the original fit ------------------------------------------------------------

    def start(self) -> None:
        active = fluent.active_run()
        if active is not None:
            self.run_id = active.info.run_id
            return
        tags = {**self.settings.extra_tags, _AUTOLOG_TAG: FLAVOR}
        try:
            self.run_id = fluent.start_run(tags=tags).info.run_id
        except Exception:
            self.broken = True  # nothing to log into
            raise
        self.own_run = True

    def before(self, X: Any, y: Any) -> None:
        self.step("start a run", self.start)
        rid = self.run_id
        if rid is None:
            self.broken = True
            return
        self.step("log params and tags", self._log_estimator, rid)
        if self.settings.log_datasets and X is not None:
            # One over the server's limits (25,000 columns outgrow its schema) costs only itself.
            self.step("log the training dataset", self._log_dataset, rid, X, y, isolated=True)

    def _log_estimator(self, rid: str) -> None:
        estimator = self.estimator
        skipped: list[str] = []
        _log_params(rid, _estimator_params(estimator, skipped), _estimator_tags(estimator))
        if skipped:
            shown = ", ".join(repr(k) for k in skipped[:5])
            more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
            refused = InvalidArgument(
                f"the tracking server takes param keys of at most {MAX_KEY_LENGTH} letters, "
                "digits, underscores, dashes, periods, spaces, colons and slashes; rename the "
                "pipeline steps or estimators that make these keys",
                field="params.key",
            )
            self.failures.append((f"log params {shown}{more}", refused))

    def _log_dataset(self, rid: str, X: Any, y: Any) -> None:
        context = InputTag(SystemTag.DATASET_CONTEXT, "train")  # MLflow autolog's context
        fluent.client().log_inputs(rid, [DatasetInput(_training_dataset(X, y), (context,))])

    # -- after it ---------------------------------------------------------------------------

    def after(self, X: Any, y: Any, sample_weight: Any, example: Any) -> None:
        if self.broken or self.run_id is None:
            return
        rid, estimator, settings = self.run_id, self.estimator, self.settings
        computed = self.step(
            "compute training metrics",
            _training_metrics,
            estimator,
            X,
            y,
            sample_weight,
            settings.pos_label,
        )
        if computed is not None:
            metrics, failed = computed
            self.failures.extend(failed)
            self.step("log training metrics", _log_metrics, rid, metrics)
        signature = None
        if settings.log_models and settings.log_model_signatures and example is not None:
            signature = self.step(
                "infer the model signature",
                _infer_model_signature,
                estimator,
                example,
                isolated=True,  # a dtype no signature describes: the model goes without one
            )
        if settings.log_models:
            self.step("log the model", self._log_model, estimator, "model", signature, example)
            if settings.registered_model_name and not self.broken:
                self.step(
                    f"register the model as {settings.registered_model_name!r}",
                    fluent.register_model,
                    f"runs:/{rid}/model",
                    settings.registered_model_name,
                )
        if _is_search(estimator):
            self._after_search(rid, estimator, signature, example)

    def _log_model(self, model: Any, name: str, signature: Signature | None, example: Any) -> None:
        log_model(
            model,
            name,
            input_example=example if self.settings.log_input_examples else None,
            signature=signature if signature is not None else False,  # inferred here, or none
            run_id=self.run_id,
            serialization_format=self.settings.serialization_format,
        )

    def _after_search(
        self, rid: str, search: Any, signature: Signature | None, example: Any
    ) -> None:
        if hasattr(search, "best_params_"):
            self.step("log the best params", self._log_best_params, rid, search.best_params_)
        if hasattr(search, "best_score_"):
            self.step("log best_cv_score", self._log_best_score, rid, search.best_score_)
        if hasattr(search, "cv_results_"):
            self.step("log the tuning child runs", self._child_runs, rid, search)
            self.step("log cv_results.csv", self._log_cv_results, rid, search)
        if self.settings.log_models and hasattr(search, "best_estimator_"):
            self.step(
                "log the best estimator",
                self._log_model,
                search.best_estimator_,
                "best_estimator",
                signature,
                example,
            )

    @staticmethod
    def _log_best_params(rid: str, best_params: dict[str, Any]) -> None:
        _log_params(rid, _safe_params({f"best_{k}": v for k, v in best_params.items()}))

    @staticmethod
    def _log_best_score(rid: str, best_score: Any) -> None:
        _log_metrics(rid, {"best_cv_score": float(best_score)})

    @staticmethod
    def _log_cv_results(rid: str, search: Any) -> None:
        text = pd.DataFrame(search.cv_results_).to_csv(index=False)
        fluent.client().log_text(rid, text, "cv_results.csv")

    def _child_runs(self, rid: str, search: Any) -> None:
        """One child run per candidate, best ranked first, up to max_tuning_runs: the params it
        tried and its aggregate cross-validation scores (per-split columns are left out)."""
        results = pd.DataFrame(search.cv_results_)
        limit = self.settings.max_tuning_runs
        rank = "rank_test_score"
        if rank not in results:
            rank = next((c for c in results.columns if c.startswith("rank_test_")), "")
        if rank:  # multi-metric scoring ranks by its first scorer
            results = results.sort_values(rank, kind="stable")
        if limit is not None:
            results = results.head(limit)
        client = fluent.client()
        seed = search.estimator
        base = _estimator_params(seed)
        tags = {**_estimator_tags(seed), _AUTOLOG_TAG: FLAVOR}
        active = fluent.active_run()
        run = active if active is not None and active.info.run_id == rid else client.get_run(rid)
        experiment_id = run.info.experiment_id
        for _, row in results.iterrows():
            child = client.create_run(experiment_id, tags=tags, parent_run_id=rid)
            child_id = child.info.run_id
            status = RunStatus.FAILED
            try:
                _log_params(child_id, {**base, **_safe_params(row["params"])})
                scores = {
                    str(k): float(v)
                    for k, v in row.items()
                    if not str(k).startswith(("param", "split"))
                    and isinstance(v, int | float | np.number)
                    and not isinstance(v, bool)
                }
                _log_metrics(child_id, scores)
                status = RunStatus.FINISHED
            finally:
                client.set_terminated(child_id, status)

    # -- the end ----------------------------------------------------------------------------

    def finish(self, fit_failed: bool) -> None:
        """End the run autolog started (FAILED if the fit failed or its logging broke off, as
        MLflow does) and warn once about whatever could not be logged."""
        if self.own_run and self.run_id is not None:
            failed = fit_failed or self.broken
            self._end_run(self.run_id, RunStatus.FAILED if failed else RunStatus.FINISHED)
        where = f" to run {self.run_id}" if self.run_id else ""
        subject = f"{type(self.estimator).__name__}.fit{where}"
        self.warn(subject, self._hint, "The fit itself was not affected", stacklevel=4)

    def _end_run(self, rid: str, status: RunStatus) -> None:
        try:
            top = fluent.active_run()
            if top is not None and top.info.run_id == rid:
                fluent.end_run(status)
            else:  # the fit left another run on top of ours: end ours, leave that one
                fluent._end_run_below(rid, status)
        except Exception as exc:  # either has taken the run off the stack even so
            self.failures.append((f"end run {rid}", exc))

    def _hint(self) -> str:
        server = self.server_hint()
        if server is not None:
            return f"{server} later fits are logged again once it answers."
        if not self.own_run and any(
            w == "log params and tags" and isinstance(e, InvalidArgument) for w, e in self.failures
        ):
            return (
                "An earlier fit in this run already set these params and params cannot change, "
                "so this fit was not logged. To log each fit, give it its own run: "
                "`with modelyard.start_run(nested=True): model.fit(...)`."
            )
        if self.broken:
            return "The rest of this fit's logging was skipped."
        return "Everything else was logged."


def _logged_fit(
    settings: _Settings, original: Callable[..., Any], estimator: Any, args: Any, kwargs: Any
) -> Any:
    from modelyard.sklearn import post_training  # it builds on this module

    log = _FitLog(settings, estimator)
    inputs = log.step(
        "read fit's arguments", _fit_inputs, original, estimator, args, kwargs, isolated=True
    )
    X, y, sample_weight = inputs or (None, None, None)
    example = (
        log.step("take an input example", _head, X, isolated=True) if settings.log_models else None
    )
    # Steps inside before/after guard themselves; the outer step catches a bug between them.
    log.step("prepare logging", log.before, X, y)
    try:
        result = original(estimator, *args, **kwargs)
    except BaseException:
        log.finish(fit_failed=True)
        raise
    if settings.log_post_training_metrics and log.run_id is not None:
        log.step("follow the model's predictions", post_training.track, estimator, log.run_id)
    log.step("log the trained model", log.after, X, y, sample_weight, example)
    log.finish(fit_failed=False)
    return result


def _owner(cls: type, method: str) -> type | None:
    """The class that defines what cls.<method> is (GridSearchCV's fit is BaseSearchCV's)."""
    return next((k for k in cls.__mro__ if method in k.__dict__), None)


def _wrap_method(
    cls: type,
    method: str,
    wrap: Callable[[Callable[..., Any]], Callable[..., Any]],
    originals: dict[Any, Any],
) -> None:
    """Replace the method cls defines with wrap(its function), remembering what was there in
    originals[(cls, method)]."""
    found = cls.__dict__[method]
    # scikit-learn hides methods a configuration cannot offer behind an available_if
    # descriptor (Pipeline.fit_transform exists only when its last step has one): wrap the
    # function inside and keep the descriptor's check. Anything else that is no plain function
    # is left alone.
    conditional = all(hasattr(found, a) for a in ("fn", "check", "attribute_name"))
    original = found.fn if conditional else found
    if not inspect.isfunction(original):
        return
    wrapped = wrap(original)
    originals[(cls, method)] = found
    setattr(
        cls,
        method,
        type(found)(wrapped, found.check, found.attribute_name) if conditional else wrapped,
    )


def _inside_a_fit() -> bool:
    """Whether a fit starting on this thread is part of a top-level fit in progress: one on
    this thread, or, on a joblib worker thread without an active run of its own, one on any
    thread (joblib's workers run the tasks of the fit that dispatched them)."""
    if getattr(_local, "fitting", False):
        return True
    if not _fits_in_progress or fluent.active_run() is not None:
        return False
    from joblib.parallel import get_active_backend

    backend, _ = get_active_backend()
    return getattr(backend, "nesting_level", 0) > 0  # joblib's workers run one level down


def _training_method(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        global _fits_in_progress
        from modelyard.sklearn import post_training  # it builds on this module

        settings = _settings
        # A fit inside a metric or prediction autolog follows is the library's (log_loss fits
        # a LabelBinarizer), not the user's training.
        if settings.disable or post_training.is_suspended() or _inside_a_fit():
            return original(self, *args, **kwargs)
        with _fits_lock:
            _fits_in_progress += 1
        _local.fitting = True
        try:
            # The training metrics below call predict and sklearn.metrics: not post-training.
            with post_training.suspended():
                if settings.exclusive and fluent.active_run() is not None:
                    return original(self, *args, **kwargs)
                return _logged_fit(settings, original, self, args, kwargs)
        finally:
            _local.fitting = False
            with _fits_lock:
                _fits_in_progress -= 1

    return fit


def autolog(
    log_input_examples: bool = False,
    log_model_signatures: bool = True,
    log_models: bool = True,
    log_datasets: bool = True,
    disable: bool = False,
    exclusive: bool = False,
    disable_for_unsupported_versions: bool = False,
    silent: bool = False,
    max_tuning_runs: int | None = 5,
    log_post_training_metrics: bool = True,
    serialization_format: str = SERIALIZATION_FORMAT_CLOUDPICKLE,
    registered_model_name: str | None = None,
    pos_label: Any = None,
    extra_tags: dict[str, Any] | None = None,
) -> None:
    """Log params, training metrics, the training dataset and the fitted model of every
    scikit-learn `fit` call; MLflow's arguments, with MLflow's defaults and meanings.

    A fit outside an active run gets a run of its own (tagged with extra_tags); inside one, it
    logs to it (unless exclusive=True). Params are immutable, so a second fit with other params
    in the same run is not logged; give each fit a nested run instead. Estimators fitted while
    another autologged fit is in progress (pipeline steps, search candidates, even on joblib's
    threads) belong to it and are not logged separately.

    Threads: active runs are per thread, as in MLflow, so a fit on a thread of your own (a
    ThreadPoolExecutor, Optuna's n_jobs) logs to that thread's active run, else to a new run of
    its own, never to another thread's run; fits on several threads at once are each logged.
    To put a thread's fit under your run, start a run in that thread:
    `with modelyard.start_run(parent_run_id=run_id): model.fit(...)`. A joblib worker thread
    (n_jobs with the threading backend) with no active run of its own is taken as working for
    the fit in progress, so fits you dispatch through joblib's threads yourself, while another
    fit is in progress, are logged only inside a run started in the task.

    GridSearchCV and RandomizedSearchCV also log best_<param> params, best_cv_score,
    cv_results.csv, the best estimator, and a child run for each of the max_tuning_runs best
    candidates (None: all of them).

    log_post_training_metrics=True also logs, to the fit's run (even once it has ended), what
    `model.score(X_test, y)` and sklearn.metrics functions (looked up on sklearn.metrics after
    autolog() was called) return for the fitted model's predict, predict_proba,
    predict_log_proba and transform outputs: as MLflow names them, `accuracy_score_X_test`,
    `accuracy_score-2_X_test` for the run's second accuracy_score, `X_test-2` for another
    dataset held by a variable of the same name, `unknown_dataset` for one without a name, and
    `LogisticRegression_score_X_test`; each call's arguments go to the run's metric_info.json.
    Only the very objects the prediction methods returned count, not copies or slices.

    Autologging never changes what fit, the prediction methods or the metric functions return
    or raise: anything it cannot log becomes one AutologWarning per call (silent=True hides
    them). serialization_format "skops" is not supported.
    """
    global _settings
    if max_tuning_runs is not None and max_tuning_runs < 0:
        raise ValueError(f"max_tuning_runs must be None or >= 0, not {max_tuning_runs}")
    _check_format(serialization_format)
    notes: list[str] = []
    if not disable and not _sklearn_version_tested():
        import sklearn

        tested = "-".join(".".join(map(str, v)) for v in _TESTED_SKLEARN)
        notes.append(f"scikit-learn {sklearn.__version__} is outside the tested {tested}")
        if disable_for_unsupported_versions:
            disable = True
            notes.append("autologging is disabled (disable_for_unsupported_versions=True)")
    _settings = _Settings(
        log_input_examples=log_input_examples,
        log_model_signatures=log_model_signatures,
        log_models=log_models,
        log_datasets=log_datasets,
        disable=disable,
        exclusive=exclusive,
        silent=silent,
        max_tuning_runs=max_tuning_runs,
        serialization_format=serialization_format,
        registered_model_name=registered_model_name,
        pos_label=pos_label,
        extra_tags={str(k): str(v) for k, v in (extra_tags or {}).items()},
        log_post_training_metrics=log_post_training_metrics,
    )
    if notes and not silent:
        warnings.warn(f"modelyard.sklearn.autolog: {'; '.join(notes)}", AutologWarning, 2)
    from modelyard.sklearn import post_training  # it builds on this module

    if disable or not log_post_training_metrics:
        post_training.disable()
    else:
        post_training.enable(_settings)
    if disable:
        return
    from sklearn.utils import all_estimators

    for _name, cls in all_estimators():
        # Patch the class that defines each (GridSearchCV inherits fit from BaseSearchCV).
        for method in _TRAINING_METHODS:
            owner = _owner(cls, method)
            if owner is not None and (owner, method) not in _patched:
                _wrap_method(owner, method, _training_method, _patched)
