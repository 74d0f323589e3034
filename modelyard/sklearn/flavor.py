"""The scikit-learn flavor: save, log and load estimators as model packages.

Packages name `modelyard.sklearn` as their loader module, so `_load_pyfunc` stays importable
from there (see __init__.py).
"""

from __future__ import annotations

import copy
import json
import pickle
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

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
from modelyard.models.signature import Signature, infer_signature, records_as_table
from modelyard.models.uri import resolve_model_uri

FLAVOR = "sklearn"
MODEL_FILE = "model.pkl"
EXAMPLE_FILE = "input_example.json"
REQUIREMENTS_FILE = "requirements.txt"

# MLflow's names for the ways an estimator can be written; both pickle formats load with
# pickle.load (cloudpickle's output needs cloudpickle importable), skops is not supported.
SERIALIZATION_FORMAT_PICKLE = "pickle"
SERIALIZATION_FORMAT_CLOUDPICKLE = "cloudpickle"
SERIALIZATION_FORMAT_SKOPS = "skops"
SUPPORTED_SERIALIZATION_FORMATS = (SERIALIZATION_FORMAT_PICKLE, SERIALIZATION_FORMAT_CLOUDPICKLE)


@dataclass(frozen=True)
class ModelInfo:
    run_id: str
    artifact_path: str
    model_uri: str
    model_uuid: str
    signature: Signature | None
    flavors: dict[str, dict[str, Any]]
    registered_model_version: int | None = None


def _check_format(serialization_format: str) -> None:
    if serialization_format not in SUPPORTED_SERIALIZATION_FORMATS:
        raise ValueError(
            f"serialization_format {serialization_format!r} is not supported; use one of "
            f"{list(SUPPORTED_SERIALIZATION_FORMATS)}"
        )


def _requirements(serialization_format: str = SERIALIZATION_FORMAT_PICKLE) -> list[str]:
    from importlib.metadata import version

    import sklearn

    found = [
        f"scikit-learn=={sklearn.__version__}",
        f"numpy=={np.__version__}",
        f"pandas=={pd.__version__}",
        f"modelyard=={version('modelyard')}",
    ]
    if serialization_format == SERIALIZATION_FORMAT_CLOUDPICKLE:
        found.append(f"cloudpickle=={version('cloudpickle')}")
    return found


def _is_sparse(value: Any) -> bool:
    from scipy.sparse import issparse

    return bool(issparse(value))


def _dense(value: Any) -> Any:
    """JSON and signatures describe dense tables, so a sparse matrix is shown as its rows."""
    return value.toarray() if _is_sparse(value) else value


def _example_json(example: Any) -> str:
    if isinstance(example, pd.DataFrame):
        return example.to_json(orient="split", index=False, date_format="iso")
    return json.dumps({"inputs": np.asarray(example).tolist()})


def save_model(
    sk_model: Any,
    path: str | Path,
    signature: Signature | Literal[False] | None = None,
    input_example: Any = None,
    pip_requirements: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
    feature_service: Any = None,
    serialization_format: str = SERIALIZATION_FORMAT_PICKLE,
) -> ModelManifest:
    """Write the package to a new directory `path`.

    Without a signature, one is inferred from input_example; signature=False (MLflow's way)
    keeps the example and infers none. feature_service (a FeatureService or its name) records
    which features the model was trained on; serving then looks them up by entity key, so
    callers send only the keys. A sparse input_example is stored densified: JSON has no sparse
    form."""
    import sklearn

    _check_format(serialization_format)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=False)
    with open(path / MODEL_FILE, "wb") as f:
        if serialization_format == SERIALIZATION_FORMAT_CLOUDPICKLE:
            import cloudpickle

            cloudpickle.dump(sk_model, f, protocol=pickle.HIGHEST_PROTOCOL)
        else:
            pickle.dump(sk_model, f, protocol=pickle.HIGHEST_PROTOCOL)
    input_example = records_as_table(_dense(input_example))
    if signature is None and input_example is not None:
        output = sk_model.predict(input_example) if hasattr(sk_model, "predict") else None
        signature = infer_signature(input_example, output)
    if input_example is not None:
        (path / EXAMPLE_FILE).write_text(_example_json(input_example))
    requirements = pip_requirements or _requirements(serialization_format)
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
                "serialization_format": serialization_format,
            },
        },
        signature=signature or None,
        input_example=EXAMPLE_FILE if input_example is not None else None,
        requirements=requirements,
        run_id=run_id,
        artifact_path=artifact_path,
        metadata=with_feature_service(metadata, feature_service),
    )
    return write_package(path, manifest)


def log_model(
    sk_model: Any,
    name: str | None = None,
    *,
    input_example: Any = None,
    signature: Signature | Literal[False] | None = None,
    pip_requirements: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    run_id: str | None = None,
    registered_model_name: str | None = None,
    await_registration_for: float = 300,
    feature_service: Any = None,
    serialization_format: str = SERIALIZATION_FORMAT_PICKLE,
    artifact_path: str | None = None,
) -> ModelInfo:
    """Save the model into the active run's artifacts under `name` (and register it, if asked).

    `name` defaults to "model". `artifact_path` is its deprecated MLflow spelling, accepted so
    MLflow code ports unchanged."""
    if artifact_path is not None:
        if name is not None:
            raise TypeError("log_model() got both name and artifact_path; pass only name")
        warnings.warn(
            "log_model(artifact_path=...) is deprecated; pass name=... instead",
            FutureWarning,
            stacklevel=2,
        )
        name = artifact_path
    name = name or "model"
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
            serialization_format=serialization_format,
        )
        uploaded = fluent.client().log_artifacts(rid, tmp / "pkg", name)
        _remove_stale_files(rid, name, {f.path for f in uploaded})
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


def _remove_stale_files(run_id: str, name: str, package: set[str]) -> None:
    """Delete the files under `name` that the package just uploaded does not hold. A model
    logged again under the same name (a notebook cell run twice) replaces the earlier one, as
    in MLflow; a file of the earlier one left beside it (its input_example.json) made the new
    package fail verification, so neither model could be loaded."""
    client = fluent.client()
    for found in client.iter_artifacts(run_id, name, recursive=True):
        if not found.is_dir and found.path not in package:
            client.delete_artifact(run_id, found.path)


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
