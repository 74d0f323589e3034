"""Model packages, signatures, and scikit-learn logging and autologging."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.base import BaseEstimator
from sklearn.datasets import load_iris
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import modelyard.pyfunc
import modelyard.sklearn
from modelyard.errors import DataLoss, InvalidArgument
from modelyard.models import ColumnSpec, Signature, TensorSpec, infer_signature
from modelyard.models.signature import enforce


@pytest.fixture
def iris() -> tuple[pd.DataFrame, np.ndarray]:
    data = load_iris(as_frame=True)
    X = data.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    return X, data.target.to_numpy()


def test_log_and_load_through_runs_uri(fluent, iris, tmp_path: Path) -> None:
    X, y = iris
    model = LogisticRegression(max_iter=500).fit(X, y)
    with fluent.start_run():
        info = modelyard.sklearn.log_model(model, "model", input_example=X.head(3))
    assert info.model_uri == f"runs:/{info.run_id}/model"
    loaded = modelyard.pyfunc.load_model(info.model_uri, dst_path=tmp_path / "dl")
    assert np.array_equal(loaded.predict(X), model.predict(X))
    sig = loaded.signature
    assert sig is not None
    assert [s.name for s in sig.inputs] == list(X.columns)
    assert all(isinstance(s, ColumnSpec) and s.type == "double" for s in sig.inputs)
    manifest = yaml.safe_load((tmp_path / "dl" / "model" / "MLmodel").read_text())
    assert manifest["run_id"] == info.run_id
    assert set(manifest["files"]) == {"model.pkl", "requirements.txt", "input_example.json"}
    assert any(r.startswith("scikit-learn==") for r in manifest["requirements"])
    assert loaded.input_example().shape == (3, 4)
    native = modelyard.sklearn.load_model(info.model_uri)
    assert isinstance(native, LogisticRegression)


def test_a_model_logged_again_under_its_name_replaces_the_earlier_one(fluent, iris) -> None:
    """Logged twice under one name (a notebook cell run again), the earlier package's
    input_example.json stayed beside the new one, which then failed verification ('was
    added'): neither model could be loaded. The later model replaces the earlier, as in MLflow."""
    X, y = iris
    with fluent.start_run():
        modelyard.sklearn.log_model(
            LogisticRegression(max_iter=500).fit(X, y), "model", input_example=X.head(2)
        )
        info = modelyard.sklearn.log_model(LinearRegression().fit(X, y), "model")
    files = fluent.client().iter_artifacts(info.run_id, "model", recursive=True)
    assert sorted(f.path for f in files) == [
        "model/MLmodel",
        "model/model.pkl",
        "model/requirements.txt",
    ]
    loaded = modelyard.pyfunc.load_model(info.model_uri)
    assert isinstance(loaded.unwrap_python_model(), LinearRegression)
    assert loaded.input_example() is None


@pytest.mark.parametrize(
    "example",
    [
        {"a": [1.0, 2.0], "b": [3.0, 4.0]},
        {"a": 1.0, "b": 3.0},
        [{"a": 1.0, "b": 3.0}, {"a": 2.0, "b": 4.0}],
    ],
    ids=["columns", "record", "records"],
)
def test_an_input_example_given_as_records_is_a_table(example: Any, tmp_path: Path) -> None:
    """MLflow's log_model takes a dict of columns, one record or a list of records as the
    input example; the estimator used to be handed the dict itself (and refused it), so
    save_model and log_model failed."""
    X = pd.DataFrame({"a": [0.0, 1.0, 2.0, 0.0], "b": [0.0, 0.0, 1.0, 3.0]})
    sums = LinearRegression().fit(X, X.a + X.b)
    modelyard.sklearn.save_model(sums, tmp_path / "m", input_example=example)
    model = modelyard.pyfunc.load_model(str(tmp_path / "m"))
    assert model.signature is not None and model.signature.input_names == ["a", "b"]
    rows = model.input_example()
    assert list(rows.columns) == ["a", "b"]
    assert np.allclose(model.predict(rows), rows["a"] + rows["b"])


def test_tampered_package_is_refused(fluent, iris, tmp_path: Path) -> None:
    X, y = iris
    model = LogisticRegression(max_iter=500).fit(X, y)
    path = tmp_path / "pkg"
    modelyard.sklearn.save_model(model, path, input_example=X.head(2))
    modelyard.pyfunc.load_model(str(path))  # intact: loads
    with open(path / "model.pkl", "ab") as f:
        f.write(b"\x00")
    with pytest.raises(DataLoss, match=r"model\.pkl was modified"):
        modelyard.pyfunc.load_model(str(path))
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    (copy / "model.pkl").unlink()
    (copy / "extra.py").write_text("import os")
    with pytest.raises(DataLoss, match=r"missing.*extra\.py was added"):
        modelyard.pyfunc.load_model(str(copy))


def test_loader_module_must_be_ours(iris, tmp_path: Path) -> None:
    X, y = iris
    path = tmp_path / "pkg"
    modelyard.sklearn.save_model(LinearRegression().fit(X, y), path)
    manifest = yaml.safe_load((path / "MLmodel").read_text())
    manifest["flavors"]["python_function"]["loader_module"] = "os"
    (path / "MLmodel").write_text(yaml.safe_dump(manifest))
    with pytest.raises(InvalidArgument, match="only modelyard flavor modules"):
        modelyard.pyfunc.load_model(str(path))


def test_signature_enforcement() -> None:
    sig = Signature((ColumnSpec("a", "double"), ColumnSpec("b", "long"), ColumnSpec("c", "string")))
    good = pd.DataFrame(
        {
            "a": np.array([1, 2], dtype="int32"),
            "b": np.array([1, 2], dtype="int32"),
            "c": ["x", "y"],
            "extra": [0, 0],
        }
    )
    out = enforce(sig, good)
    assert list(out.columns) == ["a", "b", "c"]  # extra dropped
    assert out["a"].dtype == np.float64 and out["b"].dtype == np.int64  # safe widening
    with pytest.raises(InvalidArgument, match="missing column 'b'") as err:
        enforce(sig, good.drop(columns=["b"]))
    assert err.value.field == "b"
    with pytest.raises(InvalidArgument, match="column 'a' has type string") as err:
        enforce(sig, good.assign(a=["p", "q"]))
    assert err.value.field == "a"
    with pytest.raises(InvalidArgument, match="column 'b' has type double"):
        enforce(sig, good.assign(b=[1.5, 2.0]))
    # Integers with a gap (read_csv makes them float): "convert it" could not be done.
    with pytest.raises(InvalidArgument) as err:
        enforce(sig, good.assign(b=[1.0, np.nan]))
    assert "column 'b' has a missing value (NaN at position 1)" in err.value.message
    # Unsigned integers (OIP's UINT64) went to the model unsigned, past what a long holds.
    with pytest.raises(InvalidArgument, match="holds 9223372036854775813, beyond") as err:
        enforce(sig, good.assign(b=np.array([1, 2**63 + 5], dtype=np.uint64)))
    assert err.value.field == "b"
    fits = enforce(sig, good.assign(b=np.array([1, 2], dtype=np.uint64)))["b"]
    assert fits.dtype == np.int64 and fits.tolist() == [1, 2]
    numeric_text = enforce(sig, good.assign(a=["1.5", "2"]))
    assert list(numeric_text["a"]) == [1.5, 2.0]
    as_array = enforce(
        Signature((ColumnSpec("a", "double"), ColumnSpec("b", "double"))), np.ones((3, 2))
    )
    assert list(as_array.columns) == ["a", "b"]


def test_predict_takes_one_record_or_a_list_of_records() -> None:
    """One record as a dict used to raise pandas' 'If using all scalar values, you must pass an
    index', and a list of records was refused as a 1-D array; MLflow's predict takes both."""
    sig = Signature((ColumnSpec("a", "double"), ColumnSpec("b", "string")))
    one = enforce(sig, {"a": 1.5, "b": "x"})
    assert one.to_dict("list") == {"a": [1.5], "b": ["x"]}
    many = enforce(sig, [{"a": 1.0, "b": "x"}, {"b": "y", "a": 2.0}])
    assert many.to_dict("list") == {"a": [1.0, 2.0], "b": ["x", "y"]}
    with pytest.raises(InvalidArgument, match="missing column 'b'"):
        enforce(sig, {"a": 1.0})


def test_pandas_nullable_columns_have_signature_types(tmp_path: Path) -> None:
    """Int64, Int32 and Float64 (pandas' nullable types) used to raise a bare TypeError ('Cannot
    interpret Int64Dtype()') from infer_signature, so log_model with such an example failed, and
    from predict, so a model refused an Int64 column where it takes long."""
    frame = pd.DataFrame(
        {
            "count": pd.array([1, 2, None], dtype="Int64"),
            "small": pd.array([1, 2, 3], dtype="Int32"),
            "ratio": pd.array([0.5, None, 1.5], dtype="Float64"),
        }
    )
    signature = infer_signature(frame)
    assert [(s.name, s.type) for s in signature.inputs if isinstance(s, ColumnSpec)] == [
        ("count", "long"),
        ("small", "integer"),
        ("ratio", "double"),
    ]
    X = pd.DataFrame({"a": np.arange(10), "b": np.arange(10.0)})
    modelyard.sklearn.save_model(LinearRegression().fit(X, X.b), tmp_path / "m", input_example=X)
    model = modelyard.pyfunc.load_model(str(tmp_path / "m"))
    nullable = X.astype({"a": "Int64"})
    assert np.allclose(model.predict(nullable), model.predict(X))


def test_dates_sent_as_iso_text_convert_to_a_datetime_column() -> None:
    """Dates read from a CSV or JSON file arrive as text; the model's datetime column used to
    refuse them ('has type string, but the model expects datetime'), where MLflow converts."""
    signature = infer_signature(pd.DataFrame({"day": pd.date_range("2024-01-01", periods=2)}))
    got = enforce(signature, pd.DataFrame({"day": ["2024-01-05", "2024-02-01T06:30:00"]}))
    assert list(got["day"]) == [pd.Timestamp("2024-01-05"), pd.Timestamp("2024-02-01 06:30")]
    with pytest.raises(InvalidArgument, match="'day' has type string") as refused:
        enforce(signature, pd.DataFrame({"day": ["yesterday"]}))
    assert refused.value.field == "day"


def test_text_that_is_no_date_is_named_for_a_datetime_column() -> None:
    """It was only "has type string, but the model expects datetime": which of a batch's
    values was at fault went unsaid (an AutoML forecast's times arrive so from a CSV)."""
    signature = infer_signature(pd.DataFrame({"day": pd.date_range("2024-01-01", periods=2)}))
    batch = ["2024-01-05", "2024-02-30", None, "31/01/2024", "2024-02-30", "tomorrow"]
    with pytest.raises(
        InvalidArgument,
        match=r"column 'day' has type string, and 4 value\(s\) are no ISO 8601 date or time, "
        r"e.g. '2024-02-30', '31/01/2024', 'tomorrow'; the model expects datetime",
    ):
        enforce(signature, pd.DataFrame({"day": batch}))


def test_tensor_signature() -> None:
    sig = infer_signature(np.zeros((4, 3), dtype="float32"))
    spec = sig.inputs[0]
    assert isinstance(spec, TensorSpec) and spec.shape == (-1, 3)
    assert enforce(sig, np.ones((7, 3), dtype="float16")).dtype == np.float32
    with pytest.raises(InvalidArgument, match="shape"):
        enforce(sig, np.ones((2, 4), dtype="float32"))
    with pytest.raises(InvalidArgument, match="dtype"):
        enforce(sig, np.ones((2, 3), dtype="float64"))


def test_text_tensor_signature_takes_texts_of_any_length() -> None:
    """The example's numpy dtype (<U5) would refuse longer texts: the signature says 'str'."""
    sig = infer_signature(np.array(["short", "tiny"]))
    spec = sig.inputs[0]
    assert isinstance(spec, TensorSpec) and spec.dtype == "str"
    longer = ["a review much longer than any text in the example"]
    assert list(enforce(sig, np.array(longer))) == longer
    assert list(enforce(sig, np.array(longer, dtype=object))) == longer  # as OIP BYTES decode
    with pytest.raises(InvalidArgument, match="texts"):
        enforce(sig, np.ones(2))
    legacy = Signature.from_dict({"inputs": [{"type": "tensor", "dtype": "<U5", "shape": [-1]}]})
    assert list(enforce(legacy, np.array(longer))) == longer


def test_a_one_column_frame_is_the_array_of_a_model_logged_from_one() -> None:
    """A model logged from a 1-D array refused a one-column DataFrame ("the tensor has shape
    [2, 1]; the model expects [-1]"); MLflow's pyfunc takes the column as the array."""
    texts = infer_signature(np.array(["good film", "bad plot"]))
    reviews = pd.DataFrame({"review": ["great acting", "awful"]})
    assert enforce(texts, reviews).tolist() == ["great acting", "awful"]
    column = infer_signature(np.zeros((4, 1)))
    assert enforce(column, pd.DataFrame({"x": [1.0, 2.0]})).shape == (2, 1)
    with pytest.raises(InvalidArgument, match="shape"):
        enforce(texts, reviews.assign(other=["a", "b"]))


def test_autolog_logs_params_metrics_and_model(fluent, iris) -> None:
    X, y = iris
    modelyard.sklearn.autolog()
    try:
        model = LogisticRegression(C=0.5, max_iter=300).fit(X, y)
        run = fluent.last_active_run()
        assert run.info.status == "FINISHED"
        assert run.data.params["C"] == "0.5" and run.data.params["max_iter"] == "300"
        assert run.data.tags["estimator_name"] == "LogisticRegression"
        metrics = run.data.metrics
        assert metrics["training_accuracy_score"] == pytest.approx(model.score(X, y))
        assert {"training_f1_score", "training_log_loss", "training_roc_auc"} <= set(metrics)
        loaded = modelyard.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
        assert np.array_equal(loaded.predict(X), model.predict(X))

        with fluent.start_run() as outer:
            LinearRegression().fit(X, y)
        assert "training_r2_score" in fluent.get_run(outer.info.run_id).data.metrics

        def top_level_runs() -> list:
            runs = fluent.search_runs(output_format="list")
            return [r for r in runs if r.info.parent_run_id is None]

        before = len(top_level_runs())
        make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(X, y)
        GridSearchCV(LogisticRegression(max_iter=300), {"C": [0.1, 1.0]}, cv=2).fit(X, y)
        runs = top_level_runs()
        assert len(runs) == before + 2  # inner fits are not separate runs (search children are)
        assert {r.data.tags["estimator_name"] for r in runs[:2]} == {"Pipeline", "GridSearchCV"}
    finally:
        modelyard.sklearn.autolog(disable=True)
    LogisticRegression(max_iter=300).fit(X, y)
    assert len(top_level_runs()) == before + 2


class _Rows(BaseEstimator):
    """Predicts the row count: takes any table, so only the signature decides what it accepts."""

    def fit(self, X: Any, y: Any = None) -> _Rows:
        return self

    def predict(self, X: Any) -> np.ndarray:
        return np.zeros(len(X))


def test_a_model_takes_its_own_input_example(tmp_path: Path) -> None:
    """The example is read back from JSON in the types its signature recorded: int32, float32
    and datetime columns (and a float32 array) used to come back as int64, float64 and text,
    which the model's own signature refused."""
    frame = pd.DataFrame(
        {
            "small": np.arange(3, dtype="int32"),
            "single": np.array([0.5, 1.5, 2.5], dtype="float32"),
            "flag": [True, False, True],
            "day": pd.date_range("2024-01-01", periods=3),
            "name": ["a", "b", "c"],
            "big": np.arange(3, dtype="int64"),
        }
    )
    modelyard.sklearn.save_model(_Rows().fit(frame), tmp_path / "table", input_example=frame)
    table = modelyard.pyfunc.load_model(str(tmp_path / "table"))
    example = table.input_example()
    assert example.dtypes.drop("name").to_dict() == frame.dtypes.drop("name").to_dict()
    assert table.predict(example).shape == (3,)

    array = np.arange(6, dtype="float32").reshape(2, 3)
    modelyard.sklearn.save_model(_Rows().fit(array), tmp_path / "array", input_example=array)
    tensor = modelyard.pyfunc.load_model(str(tmp_path / "array"))
    assert tensor.input_example().dtype == np.float32
    assert tensor.predict(tensor.input_example()).shape == (2,)
