"""The examples in examples/ run against a real server and produce what they promise."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
from sklearn.datasets import load_diabetes

import modelyard.pyfunc

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_train_sklearn(fluent) -> None:
    namespace = runpy.run_path(str(EXAMPLES / "train_sklearn.py"))
    model_uri = namespace["main"]()
    run = fluent.last_active_run()
    assert run.data.metrics["test_r2"] > 0.2
    assert run.data.params["n_estimators"] == "200"
    assert run.inputs.dataset_inputs[0].dataset.name == "diabetes"
    model = modelyard.pyfunc.load_model(model_uri)
    X = load_diabetes(as_frame=True).data.head(10)
    assert np.asarray(model.predict(X)).shape == (10,)
