"""Load any Modelyard model as a generic Python function with a signature-checked `predict`.

    model = modelyard.pyfunc.load_model("runs:/<run_id>/model")
    model.predict(df)

URIs: a local directory, `file://`, or `runs:/<run_id>/<artifact path>`. The package's digests are
verified before any of its code or pickles are touched.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from modelyard.errors import InvalidArgument
from modelyard.models.package import ModelManifest, verify
from modelyard.models.signature import Signature, enforce, with_types
from modelyard.models.uri import resolve_model_uri

PYFUNC = "python_function"
# Only our own flavor modules may be named as loaders: a manifest cannot make us import anything.
_LOADER_PREFIX = "modelyard."


class Predictor(Protocol):
    def predict(self, data: Any) -> Any: ...


class PyFuncModel:
    def __init__(self, manifest: ModelManifest, impl: Predictor, path: Path) -> None:
        self.metadata = manifest
        self.path = path
        self._impl = impl

    @property
    def signature(self) -> Signature | None:
        return self.metadata.signature

    def predict(self, data: Any) -> Any:
        if self.signature is not None:
            data = enforce(self.signature, data)
        return self._impl.predict(data)

    def unwrap_python_model(self) -> Any:
        """The flavor's native object (e.g. the scikit-learn estimator)."""
        return getattr(self._impl, "model", self._impl)

    def input_example(self) -> Any:
        return load_input_example(self.path, self.metadata)

    def __repr__(self) -> str:
        flavors = ", ".join(self.metadata.flavors)
        return f"PyFuncModel(flavors=[{flavors}], run_id={self.metadata.run_id!r})"


def load_input_example(path: Path, manifest: ModelManifest) -> Any:
    if not manifest.input_example:
        return None
    data = json.loads((path / manifest.input_example).read_text())
    if "columns" in data:
        example: Any = pd.DataFrame(data["data"], columns=data["columns"])
    else:
        example = np.asarray(data["inputs"])
    return example if manifest.signature is None else with_types(manifest.signature, example)


def load_local(path: str | Path, ignore: tuple[str, ...] = ()) -> PyFuncModel:
    """Load a package directory; `ignore` names bookkeeping files a cache keeps beside it."""
    path = Path(path)
    manifest = verify(path, ignore=ignore)
    conf = manifest.flavors.get(PYFUNC)
    if not conf:
        raise InvalidArgument(
            f"model at {path} has no {PYFUNC} flavor (flavors: {list(manifest.flavors)}); "
            "load it with its own flavor module"
        )
    loader = str(conf.get("loader_module", ""))
    if not loader.startswith(_LOADER_PREFIX):
        raise InvalidArgument(
            f"model at {path} names loader {loader!r}; only modelyard flavor modules may load "
            "models"
        )
    impl = importlib.import_module(loader)._load_pyfunc(path, manifest)
    return PyFuncModel(manifest, impl, path)


def load_model(model_uri: str, dst_path: str | Path | None = None) -> PyFuncModel:
    local = resolve_model_uri(model_uri, Path(dst_path) if dst_path else None)
    return load_local(local)
