"""scikit-learn flavor: save, log and load estimators, and autolog their training.

modelyard.sklearn.autolog()
LogisticRegression().fit(X, y)       # params, training metrics and the model are logged

info = modelyard.sklearn.log_model(model, "model", input_example=X[:5])
modelyard.pyfunc.load_model(info.model_uri).predict(X)
"""

from __future__ import annotations

import copy
import functools
import json
import pickle
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelyard import fluent
from modelyard.models.package import (
    ModelManifest,
    read_manifest,
    verify,
    with_feature_service,
    write_package,
)
from modelyard.models.signature import Signature, infer_signature
from modelyard.models.uri import resolve_model_uri

FLAVOR = "sklearn"
MODEL_FILE = "model.pkl"
EXAMPLE_FILE = "input_example.json"
REQUIREMENTS_FILE = "requirements.txt"


@dataclass(frozen=True)
class ModelInfo:
    run_id: str
    artifact_path: str
    model_uri: str
    model_uuid: str
    signature: Signature | None
    flavors: dict[str, dict[str, Any]]
    registered_model_version: int | None = None


def _requirements() -> list[str]:
    from importlib.metadata import version

    import sklearn

    return [
        f"scikit-learn=={sklearn.__version__}",
        f"numpy=={np.__version__}",
        f"pandas=={pd.__version__}",
        f"modelyard=={version('modelyard')}",
    ]


def _example_json(example: Any) -> str:
    if isinstance(example, pd.DataFrame):
        return example.to_json(orient="split", index=False, date_format="iso")
    return json.dumps({"inputs": np.asarray(example).tolist()})


def save_model(
    sk_model: Any,
    path: str | Path,
    signature: Signature | None = None,
    input_example: Any = None,
    pip_requirements: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
    feature_service: Any = None,
) -> ModelManifest:
    """Write the package to a new directory `path`.

    feature_service (a FeatureService or its name) records which features the model was trained
    on; serving then looks them up by entity key, so callers send only the keys."""
    import sklearn

    path = Path(path)
    path.mkdir(parents=True, exist_ok=False)
    with open(path / MODEL_FILE, "wb") as f:
        pickle.dump(sk_model, f, protocol=pickle.HIGHEST_PROTOCOL)
    if signature is None and input_example is not None:
        example = input_example
        output = sk_model.predict(example) if hasattr(sk_model, "predict") else None
        signature = infer_signature(example, output)
    if input_example is not None:
        (path / EXAMPLE_FILE).write_text(_example_json(input_example))
    requirements = pip_requirements or _requirements()
    (path / REQUIREMENTS_FILE).write_text("\n".join(requirements) + "\n")
    manifest = ModelManifest(
        flavors={
            "python_function": {
                "loader_module": "modelyard.sklearn",
                "model_file": MODEL_FILE,
                "requirements": REQUIREMENTS_FILE,
            },
            FLAVOR: {
                "pickled_model": MODEL_FILE,
                "sklearn_version": sklearn.__version__,
                "serialization_format": "pickle",
            },
        },
        signature=signature,
        input_example=EXAMPLE_FILE if input_example is not None else None,
        requirements=requirements,
        run_id=run_id,
        artifact_path=artifact_path,
        metadata=with_feature_service(metadata, feature_service),
    )
    return write_package(path, manifest)


def log_model(
    sk_model: Any,
    name: str = "model",
    *,
    input_example: Any = None,
    signature: Signature | None = None,
    pip_requirements: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    run_id: str | None = None,
    registered_model_name: str | None = None,
    await_registration_for: float = 300,
    feature_service: Any = None,
) -> ModelInfo:
    """Save the model into the active run's artifacts under `name` (and register it, if asked)."""
    rid = fluent._run_id(run_id)
    tmp = Path(tempfile.mkdtemp(prefix="modelyard-log-model-"))
    try:
        manifest = save_model(
            sk_model,
            tmp / "pkg",
            signature=signature,
            input_example=input_example,
            pip_requirements=pip_requirements,
            metadata=metadata,
            run_id=rid,
            artifact_path=name,
            feature_service=feature_service,
        )
        fluent.client().log_artifacts(rid, tmp / "pkg", name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    registered = None
    if registered_model_name:
        registered = fluent.register_model(
            f"runs:/{rid}/{name}", registered_model_name, await_registration_for
        )
    return ModelInfo(
        run_id=rid,
        artifact_path=name,
        model_uri=f"runs:/{rid}/{name}",
        model_uuid=manifest.model_uuid,
        signature=manifest.signature,
        flavors=manifest.flavors,
        registered_model_version=registered.version if registered else None,
    )


class _SklearnPredictor:
    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, data: Any) -> Any:
        if isinstance(data, pd.DataFrame) and not hasattr(self.model, "feature_names_in_"):
            data = data.to_numpy()  # fitted on an array: column names would only warn
        return self.model.predict(data)

    def for_arrays(
        self, columns: list[str], example: pd.DataFrame | None
    ) -> Callable[[np.ndarray], Any] | None:
        """A predict taking a plain [rows, columns] array, or None. An estimator fitted on a
        DataFrame then skips building one per call (and scikit-learn's checks of it), the
        largest cost of a one-row prediction. Offered only when a copy without the fitted
        column names gives exactly the same answers on the input example; a pipeline that picks
        columns by name never qualifies."""
        names = getattr(self.model, "feature_names_in_", None)
        if names is None:
            return self.model.predict
        if example is None or list(names) != list(columns):
            return None
        twin = copy.copy(self.model)
        try:
            del twin.feature_names_in_
        except AttributeError:  # derived from inner steps (a Pipeline): names matter there
            return None
        frame = example[list(columns)]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                by_name = np.asarray(self.model.predict(frame))
                by_position = np.asarray(twin.predict(frame.to_numpy()))
        except Exception:
            return None
        same = by_name.shape == by_position.shape and np.array_equal(by_name, by_position)
        return twin.predict if same else None


def _load_pickle(path: Path, manifest: ModelManifest) -> Any:
    conf = manifest.flavors.get(FLAVOR) or {}
    with open(path / conf.get("pickled_model", MODEL_FILE), "rb") as f:
        return pickle.load(f)  # digest verified by the caller before this point


def _load_pyfunc(path: Path, manifest: ModelManifest) -> _SklearnPredictor:
    return _SklearnPredictor(_load_pickle(path, manifest))


def load_model(model_uri: str, dst_path: str | Path | None = None) -> Any:
    """The native scikit-learn estimator, after verifying the package's digests."""
    local = resolve_model_uri(model_uri, Path(dst_path) if dst_path else None)
    manifest = verify(local, read_manifest(local))
    return _load_pickle(local, manifest)


# -- autolog -------------------------------------------------------------------------------------

# Fits in progress, process-wide: a search or pipeline may fit its inner estimators on joblib's
# threads, where a context variable would not reach, and those fits belong to the outer run.
_fits_in_progress = 0
_fits_lock = threading.Lock()
_patched: dict[type, Any] = {}
_config: dict[str, Any] = {"log_models": True, "disable": False}


def _safe_params(estimator: Any) -> dict[str, str]:
    params = {}
    for key, value in estimator.get_params(deep=True).items():
        text = value.__class__.__name__ if hasattr(value, "get_params") else str(value)
        params[key] = text[:6000]
    return params


def _training_metrics(estimator: Any, X: Any, y: Any) -> dict[str, float]:
    from sklearn import metrics as skm
    from sklearn.base import is_classifier, is_regressor

    if y is None or not hasattr(estimator, "predict"):
        return {}
    predicted = estimator.predict(X)
    out: dict[str, float] = {}
    if is_classifier(estimator):
        out["training_accuracy_score"] = skm.accuracy_score(y, predicted)
        out["training_precision_score"] = skm.precision_score(
            y, predicted, average="weighted", zero_division=0
        )
        out["training_recall_score"] = skm.recall_score(
            y, predicted, average="weighted", zero_division=0
        )
        out["training_f1_score"] = skm.f1_score(y, predicted, average="weighted", zero_division=0)
        if hasattr(estimator, "predict_proba"):
            proba = estimator.predict_proba(X)
            out["training_log_loss"] = skm.log_loss(y, proba, labels=estimator.classes_)
            if proba.shape[1] == 2:
                out["training_roc_auc"] = skm.roc_auc_score(y, proba[:, 1])
            else:
                out["training_roc_auc"] = skm.roc_auc_score(
                    y, proba, multi_class="ovr", labels=estimator.classes_
                )
    elif is_regressor(estimator):
        mse = skm.mean_squared_error(y, predicted)
        out["training_mean_squared_error"] = mse
        out["training_root_mean_squared_error"] = float(np.sqrt(mse))
        out["training_mean_absolute_error"] = skm.mean_absolute_error(y, predicted)
        out["training_r2_score"] = skm.r2_score(y, predicted)
    if hasattr(estimator, "score"):
        out["training_score"] = float(estimator.score(X, y))
    return {k: float(v) for k, v in out.items()}


def _patch(cls: type) -> None:
    original = cls.__dict__["fit"]

    @functools.wraps(original)
    def fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        global _fits_in_progress
        with _fits_lock:
            nested = _fits_in_progress > 0
            if not nested and not _config["disable"]:
                _fits_in_progress += 1
        if nested or _config["disable"]:
            return original(self, *args, **kwargs)
        started = fluent.active_run() is None
        try:
            run = fluent.start_run() if started else fluent.active_run()
            assert run is not None
            rid = run.info.run_id
            fluent.log_params(_safe_params(self), run_id=rid)
            fluent.set_tags(
                {
                    "estimator_name": type(self).__name__,
                    "estimator_class": f"{type(self).__module__}.{type(self).__name__}",
                },
                run_id=rid,
            )
            result = original(self, *args, **kwargs)
            X = args[0] if args else kwargs.get("X")
            y = args[1] if len(args) > 1 else kwargs.get("y")
            metrics = _training_metrics(self, X, y)
            if metrics:
                fluent.log_metrics(metrics, run_id=rid)
            if _config["log_models"]:
                example = X[:5] if X is not None and hasattr(X, "__getitem__") else None
                log_model(self, "model", input_example=example, run_id=rid)
            if started:
                fluent.end_run()
            return result
        except BaseException:
            if started and fluent.active_run() is not None:
                fluent.end_run("FAILED")
            raise
        finally:
            with _fits_lock:
                _fits_in_progress -= 1

    _patched[cls] = original
    cls.fit = fit


def autolog(log_models: bool = True, disable: bool = False) -> None:
    """Log params, training metrics and the fitted model of every scikit-learn `fit` call.

    A fit outside an active run gets a run of its own; inside one, it logs to it. Estimators
    fitted while another autologged fit is in progress (pipeline steps, search candidates, even
    on joblib's threads) belong to it and are not logged separately.
    """
    from sklearn.utils import all_estimators

    _config.update(log_models=log_models, disable=disable)
    if disable:
        return
    for _name, cls in all_estimators():
        # Patch the class that defines fit (GridSearchCV inherits it from BaseSearchCV).
        owner = next((k for k in cls.__mro__ if "fit" in k.__dict__), None)
        if owner is not None and owner not in _patched:
            _patch(owner)
