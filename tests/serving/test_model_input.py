"""How a request's tensors become model input: the one-array fast path is taken only where it
gives the model's own answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

import modelyard.sklearn
from modelyard.errors import InvalidArgument
from modelyard.pyfunc import load_local
from modelyard.services.serving.model import LoadedModel


def _loaded(model, X: pd.DataFrame, tmp_path: Path) -> LoadedModel:
    modelyard.sklearn.save_model(model, tmp_path / "pkg", input_example=X.head(3))
    return LoadedModel("m", 1, load_local(tmp_path / "pkg"))


def _frame(rows: int = 60) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows)})
    return X, (X["a"] + X["b"] > 0).astype(int).to_numpy()


def test_a_plain_estimator_fitted_on_a_frame_takes_arrays(tmp_path: Path) -> None:
    X, y = _frame()
    model = LogisticRegression().fit(X, y)
    loaded = _loaded(model, X, tmp_path)
    assert loaded._array_ok
    array = X.to_numpy()
    for tensors in ({"input": array}, {"a": array[:, 0], "b": array[:, 1]}):
        model_input = loaded.to_input(tensors)
        assert isinstance(model_input, np.ndarray)  # no DataFrame built per request
        assert list(loaded.predict(model_input)["predictions"]) == list(model.predict(X))
    assert hasattr(model, "feature_names_in_")  # the user's estimator itself is untouched


def test_a_pipeline_that_selects_columns_by_name_keeps_frames(tmp_path: Path) -> None:
    X, y = _frame()
    reordered = ColumnTransformer([("scale", StandardScaler(), ["b", "a"])])
    model = Pipeline([("columns", reordered), ("clf", LogisticRegression())]).fit(X, y)
    loaded = _loaded(model, X, tmp_path)
    assert not loaded._array_ok
    model_input = loaded.to_input({"a": X["a"].to_numpy(), "b": X["b"].to_numpy()})
    assert isinstance(model_input, pd.DataFrame)
    assert list(loaded.predict(model_input)["predictions"]) == list(model.predict(X))


def test_wrong_types_still_fail_with_the_column_named(tmp_path: Path) -> None:
    X, y = _frame()
    loaded = _loaded(LogisticRegression().fit(X, y), X, tmp_path)
    with pytest.raises(InvalidArgument) as err:
        loaded.to_input({"a": np.array(["x", "y"]), "b": np.array([1.0, 2.0])})
    assert err.value.field == "a"
    with pytest.raises(InvalidArgument) as err:
        loaded.to_input({"input": np.ones((2, 3))})
    assert err.value.field == "input"
