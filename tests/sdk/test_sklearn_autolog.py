"""scikit-learn autologging as MLflow users expect it: never in the way of `fit`, MLflow's
arguments, sparse inputs, parameter searches; and log_model's MLflow spellings."""

from __future__ import annotations

import gc
import inspect
import json
import threading
import warnings
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sklearn
import sklearn.metrics
from scipy.sparse import csr_matrix
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import precision_score
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

import modelyard.pyfunc
import modelyard.sklearn
from modelyard.entities import Run, RunStatus
from modelyard.models import TensorSpec
from modelyard.models.package import read_manifest
from modelyard.sklearn import AutologWarning

DEAD_SERVER = "127.0.0.1:1"  # nothing listens on port 1: every call fails as UNAVAILABLE


@pytest.fixture
def iris() -> tuple[pd.DataFrame, np.ndarray]:
    data = load_iris(as_frame=True)
    X = data.data.rename(columns=lambda c: c.replace(" (cm)", "").replace(" ", "_"))
    return X, data.target.to_numpy()


@pytest.fixture
def autolog(fluent) -> Iterator[Callable[..., None]]:
    """modelyard.sklearn.autolog, switched off again after the test."""
    try:
        yield modelyard.sklearn.autolog
    finally:
        modelyard.sklearn.autolog(disable=True)


def autolog_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, AutologWarning)]


def runs(fluent) -> list[Run]:
    return fluent.search_runs(output_format="list")


def model_dir(fluent, run_id: str, tmp_path: Path, name: str = "model") -> Path:
    return Path(fluent.client().download_artifacts(run_id, name, tmp_path / run_id))


# -- the user's fit always behaves as without autolog ------------------------------------------


def test_second_fit_in_one_run_warns_and_trains_normally(fluent, autolog, iris) -> None:
    X, y = iris
    reference = Ridge(alpha=2.0).fit(X, y)
    autolog()
    with fluent.start_run() as run:
        first = Ridge(alpha=1.0).fit(X, y)
        second = Ridge(alpha=2.0)
        with pytest.warns(AutologWarning, match=r"start_run\(nested=True\)") as caught:
            returned = second.fit(X, y)
        assert returned is second
        assert np.array_equal(second.coef_, reference.coef_)
        assert fluent.active_run().info.run_id == run.info.run_id  # the user's run is still on
    assert "params cannot change" in autolog_warnings(caught.list)[0]
    logged = fluent.get_run(run.info.run_id)
    assert logged.info.status == "FINISHED"
    assert logged.data.params["alpha"] == "1.0"
    # The run's model is the fit its params describe, not the second one.
    model = modelyard.sklearn.load_model(f"runs:/{run.info.run_id}/model")
    assert np.array_equal(model.coef_, first.coef_)

    # The remedy the warning gives: one nested run per fit logs both.
    with fluent.start_run(), warnings.catch_warnings(record=True) as recorded:
        warnings.simplefilter("always")
        with fluent.start_run(nested=True) as one:
            Ridge(alpha=1.0).fit(X, y)
        with fluent.start_run(nested=True) as two:
            Ridge(alpha=2.0).fit(X, y)
    assert autolog_warnings(recorded) == []
    assert fluent.get_run(one.info.run_id).data.params["alpha"] == "1.0"
    assert fluent.get_run(two.info.run_id).data.params["alpha"] == "2.0"


def test_unreachable_server_warns_once_and_never_stops_training(
    fluent, autolog, server, iris
) -> None:
    X, y = iris
    reference = LogisticRegression(max_iter=300).fit(X, y)
    autolog()
    fluent.set_tracking_uri(DEAD_SERVER)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            model = LogisticRegression(max_iter=300).fit(X, y)
    finally:
        fluent.set_tracking_uri(server.address)
    [message] = autolog_warnings(caught)
    assert "could not start a run" in message
    assert f"tracking server at {DEAD_SERVER}" in message
    assert np.array_equal(model.coef_, reference.coef_)
    assert fluent.active_run() is None
    assert runs(fluent) == []


def test_server_lost_inside_a_users_run(fluent, autolog, server, iris) -> None:
    X, y = iris
    reference = Ridge().fit(X, y)
    autolog()
    with fluent.start_run() as run:
        fluent.set_tracking_uri(DEAD_SERVER)
        try:
            with pytest.warns(AutologWarning, match="could not log params and tags"):
                model = Ridge().fit(X, y)
            assert fluent.active_run().info.run_id == run.info.run_id
        finally:
            fluent.set_tracking_uri(server.address)
    assert np.array_equal(model.coef_, reference.coef_)
    assert fluent.get_run(run.info.run_id).data.params == {}


def test_server_lost_during_training_leaves_no_run_active(fluent, autolog, server, iris) -> None:
    X, y = iris
    reference = Ridge().fit(X, y)

    def lose_the_server(rows: pd.DataFrame) -> pd.DataFrame:
        fluent.set_tracking_uri(DEAD_SERVER)
        return rows

    autolog()
    pipeline = make_pipeline(FunctionTransformer(lose_the_server), Ridge())
    try:
        with pytest.warns(AutologWarning, match="could not log training metrics") as caught:
            pipeline.fit(X, y)
    finally:
        fluent.set_tracking_uri(server.address)
    message = autolog_warnings(caught.list)[0]
    assert "could not end run" in message
    assert f"tracking server at {DEAD_SERVER}" in message
    # Ending the run failed too, yet it no longer counts as active: later calls cannot land in it.
    assert fluent.active_run() is None
    [run] = runs(fluent)
    assert run.data.params["ridge__alpha"] == "1.0"  # logged before the server went away
    assert np.array_equal(pipeline[-1].coef_, reference.coef_)


def test_silent_hides_autologs_warnings(fluent, autolog, iris) -> None:
    X, y = iris
    autolog(silent=True)
    with fluent.start_run() as run, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Ridge(alpha=1.0).fit(X, y)
        Ridge(alpha=2.0).fit(X, y)  # not logged: the run already has alpha=1.0
    assert autolog_warnings(caught) == []
    assert fluent.get_run(run.info.run_id).data.params["alpha"] == "1.0"


def test_a_failing_fit_raises_its_own_error_and_fails_the_run(fluent, autolog, iris) -> None:
    X, _ = iris
    one_class = np.zeros(len(X), dtype=int)
    with pytest.raises(ValueError, match="class") as plain:
        LogisticRegression().fit(X, one_class)
    autolog()
    with pytest.raises(ValueError, match="class") as logged:
        LogisticRegression().fit(X, one_class)
    assert str(logged.value) == str(plain.value)
    assert fluent.active_run() is None
    [run] = runs(fluent)
    assert run.info.status == "FAILED"
    assert run.data.params["C"] == "1.0"  # logged before training, as MLflow does


def test_a_step_name_the_server_refuses_costs_only_its_params(fluent, autolog, iris) -> None:
    """A Pipeline step named 'scale(std)' makes param keys the server refuses; sending them used
    to refuse the whole batch, so the fit logged no param, metric or model and its run was
    marked FAILED. Only those params are left out now, and the warning names them."""
    X, y = iris
    autolog()
    pipeline = Pipeline([("scale(std)", StandardScaler()), ("ridge", Ridge(alpha=2.0))])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipeline.fit(X, y)
    [message] = autolog_warnings(caught)
    assert "'scale(std)'" in message and "'scale(std)__with_mean'" in message
    assert "rename the pipeline steps" in message and "Everything else was logged" in message
    run = fluent.last_active_run()
    assert run.info.status == "FINISHED"
    assert run.data.params["ridge__alpha"] == "2.0"
    assert not any(key.startswith("scale(std)") for key in run.data.params)
    assert "training_score" in run.data.metrics
    assert modelyard.pyfunc.load_model(f"runs:/{run.info.run_id}/model").predict(X).shape == y.shape


def test_a_dataset_over_the_servers_limits_costs_only_itself(fluent, autolog) -> None:
    """A wide table's dataset schema outgrows what the server stores (1 MiB); its refusal used
    to skip the fit's metrics and model and mark the run FAILED, though the fit succeeded."""
    names = [f"{'token_count_' * 8}{i:05d}" for i in range(9000)]  # a 1.2 MB schema
    X = pd.DataFrame(np.random.default_rng(0).random((8, len(names))), columns=names)
    autolog()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Ridge().fit(X, X.iloc[:, 0])
    [message] = autolog_warnings(caught)
    assert "could not log the training dataset" in message and "schema" in message
    assert "Everything else was logged" in message
    run = fluent.last_active_run()
    assert run.info.status == "FINISHED"
    assert run.inputs.dataset_inputs == ()
    assert "training_score" in run.data.metrics
    assert [f.path for f in fluent.client().list_artifacts(run.info.run_id)] == ["model"]


# -- inputs ------------------------------------------------------------------------------------


def test_a_column_no_signature_describes_still_logs_the_model(fluent, autolog, tmp_path) -> None:
    """A pandas category column has no signature type: the model is logged without one and the
    run finishes, as in MLflow. The local InvalidArgument used to count as a failed server call,
    so the model was skipped and the run marked FAILED though the fit succeeded."""
    frame = pd.DataFrame(
        {"city": pd.Categorical(["oslo", "rome", "oslo", "lima"] * 5), "size": np.arange(20.0)}
    )
    target = np.arange(20.0)
    encode = ColumnTransformer([("city", OneHotEncoder(), ["city"])], remainder="passthrough")
    autolog()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_pipeline(encode, Ridge()).fit(frame, target)
    [message] = autolog_warnings(caught)
    assert "infer the model signature" in message and "Everything else was logged" in message
    run = fluent.last_active_run()
    assert run.info.status == "FINISHED"
    assert "training_score" in run.data.metrics
    manifest = read_manifest(model_dir(fluent, run.info.run_id, tmp_path))
    assert manifest.signature is None
    model = modelyard.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert model.predict(frame.head(2)).shape == (2,)


def test_sparse_training_data(fluent, autolog, iris, tmp_path: Path) -> None:
    X, y = iris
    sparse = csr_matrix(X.to_numpy())
    autolog(log_input_examples=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = LogisticRegression(max_iter=300).fit(sparse, y)
    assert autolog_warnings(caught) == []
    run = fluent.last_active_run()
    example = json.loads(
        (model_dir(fluent, run.info.run_id, tmp_path) / "input_example.json").read_text()
    )
    assert np.array_equal(example["inputs"], X.to_numpy()[:5])
    loaded = modelyard.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    assert np.array_equal(loaded.predict(X.to_numpy()), model.predict(sparse))
    [dataset_input] = run.inputs.dataset_inputs
    schema = json.loads(dataset_input.dataset.schema)
    assert schema["features"] == {"dtype": "float64", "shape": [150, 4], "format": "csr"}


def test_log_model_with_a_sparse_input_example(fluent, iris, tmp_path: Path) -> None:
    X, y = iris
    sparse = csr_matrix(X.to_numpy())
    model = LogisticRegression(max_iter=300).fit(sparse, y)
    with fluent.start_run():
        info = modelyard.sklearn.log_model(model, "model", input_example=sparse[:3])
    assert info.signature is not None
    spec = info.signature.inputs[0]
    assert isinstance(spec, TensorSpec) and spec.shape == (-1, 4)
    loaded = modelyard.pyfunc.load_model(info.model_uri)
    assert np.array_equal(loaded.predict(X.to_numpy()), model.predict(sparse))


# -- autolog's arguments -----------------------------------------------------------------------


# mlflow.sklearn.autolog's parameters and defaults (MLflow 3.x), in its order.
MLFLOW_AUTOLOG_DEFAULTS = {
    "log_input_examples": False,
    "log_model_signatures": True,
    "log_models": True,
    "log_datasets": True,
    "disable": False,
    "exclusive": False,
    "disable_for_unsupported_versions": False,
    "silent": False,
    "max_tuning_runs": 5,
    "log_post_training_metrics": True,
    "serialization_format": "cloudpickle",
    "registered_model_name": None,
    "pos_label": None,
    "extra_tags": None,
}


def test_arguments_are_mlflows(autolog) -> None:
    parameters = inspect.signature(modelyard.sklearn.autolog).parameters
    assert {k: p.default for k, p in parameters.items()} == MLFLOW_AUTOLOG_DEFAULTS
    assert list(parameters) == list(MLFLOW_AUTOLOG_DEFAULTS)  # positional calls port too
    with pytest.raises(TypeError, match="log_every_n_iter"):
        autolog(log_every_n_iter=2)  # another flavor's argument: not ours
    with pytest.raises(ValueError, match="max_tuning_runs"):
        autolog(max_tuning_runs=-1)
    with pytest.raises(ValueError, match="skops"):
        autolog(serialization_format="skops")


def test_defaults(fluent, autolog, iris, tmp_path: Path) -> None:
    X, y = iris
    autolog()
    LogisticRegression(max_iter=300).fit(X, y)
    run = fluent.last_active_run()
    assert run.data.tags["modelyard.autologging"] == "sklearn"
    manifest = read_manifest(model_dir(fluent, run.info.run_id, tmp_path))
    assert manifest.input_example is None  # log_input_examples=False
    assert manifest.signature is not None
    assert manifest.signature.input_names == list(X.columns)
    assert manifest.flavors["sklearn"]["serialization_format"] == "cloudpickle"
    assert any(r.startswith("cloudpickle==") for r in manifest.requirements)
    [dataset_input] = run.inputs.dataset_inputs
    assert dataset_input.context == "train"
    assert json.loads(dataset_input.dataset.profile)["num_rows"] == len(X)


def test_switches_and_extra_tags(fluent, autolog, iris, tmp_path: Path) -> None:
    X, y = iris
    autolog(
        log_input_examples=True,
        log_model_signatures=False,
        log_datasets=False,
        serialization_format="pickle",
        extra_tags={"team": "fraud"},
    )
    LogisticRegression(max_iter=300).fit(X, y)
    run = fluent.last_active_run()
    assert run.data.tags["team"] == "fraud"
    assert run.inputs.dataset_inputs == ()
    manifest = read_manifest(model_dir(fluent, run.info.run_id, tmp_path))
    assert manifest.input_example == "input_example.json"
    assert manifest.signature is None
    assert manifest.flavors["sklearn"]["serialization_format"] == "pickle"

    with fluent.start_run() as mine:  # extra_tags are for the runs autolog creates
        LogisticRegression(max_iter=300).fit(X, y)
    assert "team" not in fluent.get_run(mine.info.run_id).data.tags

    autolog(log_models=False)
    LogisticRegression(max_iter=300).fit(X, y)
    run = fluent.last_active_run()
    assert run.data.metrics["training_accuracy_score"] > 0.9
    assert fluent.client().list_artifacts(run.info.run_id) == []


def test_exclusive_leaves_the_users_runs_alone(fluent, autolog, iris) -> None:
    X, y = iris
    autolog(exclusive=True)
    with fluent.start_run() as mine:
        LogisticRegression(max_iter=300).fit(X, y)
    assert fluent.get_run(mine.info.run_id).data.params == {}
    assert len(runs(fluent)) == 1
    LogisticRegression(C=0.5, max_iter=300).fit(X, y)
    assert fluent.last_active_run().data.params["C"] == "0.5"
    assert len(runs(fluent)) == 2


def test_registered_model_name(fluent, autolog, iris) -> None:
    X, y = iris
    autolog(registered_model_name="iris-autolog")
    LogisticRegression(max_iter=300).fit(X, y)
    first = fluent.last_active_run().info.run_id
    LogisticRegression(C=0.5, max_iter=300).fit(X, y)
    client = fluent.client()
    assert client.get_model_version("iris-autolog", 1).run_id == first
    version = client.get_model_version("iris-autolog", 2)
    assert version.source == f"runs:/{fluent.last_active_run().info.run_id}/model"


def test_pos_label_scores_the_positive_class(fluent, autolog, iris) -> None:
    X, y = iris
    binary = np.where(y == 2, "virginica", "other")
    autolog(pos_label="virginica")
    model = LogisticRegression(max_iter=300).fit(X, binary)
    metrics = fluent.last_active_run().data.metrics
    predicted = model.predict(X)
    positive = precision_score(binary, predicted, pos_label="virginica")
    weighted = precision_score(binary, predicted, average="weighted")
    assert positive != pytest.approx(weighted)  # the two averages tell the settings apart
    assert metrics["training_precision_score"] == pytest.approx(positive)
    autolog()
    LogisticRegression(max_iter=300).fit(X, binary)
    metrics = fluent.last_active_run().data.metrics
    assert metrics["training_precision_score"] == pytest.approx(weighted)


def test_disable_for_unsupported_versions(fluent, autolog, iris, monkeypatch) -> None:
    X, y = iris
    monkeypatch.setattr(sklearn, "__version__", "0.20.3")
    with pytest.warns(AutologWarning, match=r"0\.20\.3 is outside the tested"):
        autolog()
    LogisticRegression(max_iter=300).fit(X, y)
    assert len(runs(fluent)) == 1  # untested, but not disabled
    with pytest.warns(AutologWarning, match="autologging is disabled"):
        autolog(disable_for_unsupported_versions=True)
    LogisticRegression(max_iter=300).fit(X, y)
    assert len(runs(fluent)) == 1


# -- parameter searches ------------------------------------------------------------------------


def test_grid_search_logs_best_params_score_and_best_candidates(
    fluent, autolog, iris, tmp_path: Path
) -> None:
    X, y = iris
    autolog(max_tuning_runs=2)
    search = GridSearchCV(
        LogisticRegression(max_iter=300), {"C": [0.001, 0.01, 1.0, 10.0]}, cv=2
    ).fit(X, y)
    parent = fluent.last_active_run()
    assert parent.data.params["best_C"] == str(search.best_params_["C"])
    assert parent.data.params["estimator"] == "LogisticRegression"
    assert "estimator__C" not in parent.data.params  # the seed's untuned params are not logged
    assert parent.data.metrics["best_cv_score"] == pytest.approx(search.best_score_)

    children = [r for r in runs(fluent) if r.info.parent_run_id == parent.info.run_id]
    results = pd.DataFrame(search.cv_results_).sort_values("rank_test_score")
    best_two = results.head(2)
    assert sorted(r.data.params["C"] for r in children) == sorted(
        str(p["C"]) for p in best_two["params"]
    )
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.params["max_iter"] == "300"
        row = results[results["param_C"].astype(str) == child.data.params["C"]].iloc[0]
        assert child.data.metrics["mean_test_score"] == pytest.approx(row["mean_test_score"])
        assert not any(k.startswith("split") for k in child.data.metrics)

    names = {f.path for f in fluent.client().list_artifacts(parent.info.run_id)}
    assert {"model", "best_estimator", "cv_results.csv"} <= names
    best = modelyard.sklearn.load_model(f"runs:/{parent.info.run_id}/best_estimator")
    assert np.array_equal(best.predict(X), search.best_estimator_.predict(X))


def test_randomized_search_without_a_limit_logs_every_candidate(fluent, autolog, iris) -> None:
    X, y = iris
    autolog(max_tuning_runs=None, log_models=False)
    RandomizedSearchCV(Ridge(), {"alpha": [0.1, 1.0, 10.0]}, n_iter=3, cv=2, random_state=0).fit(
        X, y
    )
    parent = fluent.last_active_run()
    children = [r for r in runs(fluent) if r.info.parent_run_id == parent.info.run_id]
    assert sorted(r.data.params["alpha"] for r in children) == ["0.1", "1.0", "10.0"]
    assert "best_alpha" in parent.data.params


# -- log_model ----------------------------------------------------------------------------------


def test_log_model_accepts_mlflows_artifact_path(fluent, iris) -> None:
    X, y = iris
    model = LogisticRegression(max_iter=300).fit(X, y)
    with fluent.start_run():
        with pytest.warns(FutureWarning, match="name="):
            info = modelyard.sklearn.log_model(model, artifact_path="classifier")
        with pytest.raises(TypeError, match="both"):
            modelyard.sklearn.log_model(model, "a", artifact_path="b")
    assert info.model_uri == f"runs:/{info.run_id}/classifier"
    loaded = modelyard.sklearn.load_model(info.model_uri)
    assert np.array_equal(loaded.predict(X), model.predict(X))


def test_fit_transform_and_fit_predict_are_training_too(fluent, autolog, iris) -> None:
    """PCA trains in fit_transform without calling fit; each call is one run, as in MLflow."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, _ = iris
    autolog(log_models=False)
    reduced = PCA(n_components=2).fit_transform(X)
    assert reduced.shape == (150, 2)  # fit_transform still returns what it returns
    run = fluent.last_active_run()
    assert run.data.params["n_components"] == "2"
    assert run.data.tags["estimator_name"] == "PCA"
    labels = KMeans(n_clusters=3, n_init=2, random_state=0).fit_predict(X)
    assert len(set(labels)) == 3
    assert fluent.last_active_run().data.tags["estimator_name"] == "KMeans"
    before = len(fluent.search_runs(output_format="list"))
    make_pipeline(StandardScaler(), PCA(n_components=2)).fit_transform(X)
    runs = fluent.search_runs(output_format="list")
    assert len(runs) == before + 1  # the steps belong to the pipeline's run
    assert fluent.last_active_run().data.tags["estimator_name"] == "Pipeline"


# -- post-training metrics ---------------------------------------------------------------------


@pytest.fixture
def split(iris) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    X, y = iris
    return X.iloc[::2], X.iloc[1::2], y[::2], y[1::2]


def post_training(fluent, run_id: str) -> dict[str, float]:
    metrics = fluent.get_run(run_id).data.metrics
    return {k: v for k, v in metrics.items() if not k.startswith(("training_", "best_cv"))}


def metric_info(fluent, run_id: str, tmp_path: Path) -> dict[str, str]:
    path = fluent.client().download_artifacts(run_id, "metric_info.json", tmp_path / run_id)
    return json.loads(Path(path).read_text())


def test_metric_on_a_prediction_goes_to_the_fits_ended_run(fluent, autolog, split, tmp_path):
    X_train, X_test, y_train, y_test = split
    plain_accuracy = sklearn.metrics.accuracy_score
    autolog()
    from sklearn.metrics import accuracy_score  # imported after autolog(), as MLflow asks

    model = LogisticRegression(max_iter=300).fit(X_train, y_train)
    run_id = fluent.last_active_run().info.run_id
    assert fluent.active_run() is None  # autolog's own run has ended
    y_pred = model.predict(X_test)
    accuracy = accuracy_score(y_test, y_pred)
    assert accuracy == plain_accuracy(y_test, y_pred)
    assert post_training(fluent, run_id) == {"accuracy_score_X_test": pytest.approx(accuracy)}
    assert metric_info(fluent, run_id, tmp_path) == {
        "accuracy_score_X_test": "accuracy_score(y_true=y_test, y_pred=y_pred)"
    }


def test_regression_metrics_and_score_go_to_the_users_run(fluent, autolog, split) -> None:
    X_train, X_test, y_train, y_test = split
    autolog()
    with fluent.start_run() as run:
        model = Ridge().fit(X_train, y_train)
    predicted = model.predict(X_test)
    mse = sklearn.metrics.mean_squared_error(y_test, predicted)
    r2 = sklearn.metrics.r2_score(y_pred=predicted, y_true=y_test)  # found among keywords too
    score = model.score(X_test, y_test)
    assert score == pytest.approx(r2)
    assert post_training(fluent, run.info.run_id) == {
        "mean_squared_error_X_test": pytest.approx(mse),
        "r2_score_X_test": pytest.approx(r2),
        "Ridge_score_X_test": pytest.approx(score),  # not also an r2_score from inside score
    }


def test_metric_names_follow_mlflow(fluent, autolog, split, tmp_path: Path) -> None:
    X_train, X_test, y_train, y_test = split
    autolog()
    model = LogisticRegression(max_iter=300).fit(X_train, y_train)
    run_id = fluent.last_active_run().info.run_id
    y_pred = model.predict(X_test)
    metrics = sklearn.metrics
    metrics.accuracy_score(y_test, y_pred)
    metrics.accuracy_score(y_test, y_pred, normalize=False)  # the run's second accuracy_score
    macro = metrics.f1_score(y_test, y_pred, average="macro")  # keywords are not in the key
    proba = model.predict_proba(X_test)
    auc = metrics.roc_auc_score(y_test, proba, multi_class="ovr")
    model.score(X_test, y_test)
    X_test = X_test.copy()  # another dataset under the same name
    metrics.accuracy_score(y_test, model.predict(X_test))
    metrics.accuracy_score(y_train[:20], model.predict(X_train.iloc[:20]))  # held by no variable
    logged = post_training(fluent, run_id)
    assert set(logged) == {
        "accuracy_score_X_test",
        "accuracy_score-2_X_test",
        "f1_score_X_test",
        "roc_auc_score_X_test",
        "LogisticRegression_score_X_test",
        "accuracy_score-3_X_test-2",
        "accuracy_score-4_unknown_dataset",
    }
    assert logged["accuracy_score-2_X_test"] == (y_test == y_pred).sum()
    assert logged["f1_score_X_test"] == pytest.approx(macro)
    assert logged["roc_auc_score_X_test"] == pytest.approx(auc)
    info = metric_info(fluent, run_id, tmp_path)
    assert info["f1_score_X_test"] == "f1_score(y_true=y_test, y_pred=y_pred, average='macro')"
    assert info["accuracy_score-2_X_test"].endswith("normalize=False)")
    assert info["LogisticRegression_score_X_test"] == "LogisticRegression.score(X=X_test, y=y_test)"
    assert list(info) == sorted(logged)


def test_only_outputs_of_autologged_models_are_logged(fluent, autolog, split) -> None:
    X_train, X_test, y_train, y_test = split
    before = LogisticRegression(max_iter=300).fit(X_train, y_train)  # before autolog()
    autolog()
    model = LogisticRegression(max_iter=300).fit(X_train, y_train)
    run_id = fluent.last_active_run().info.run_id
    metrics = sklearn.metrics
    metrics.accuracy_score(y_test, before.predict(X_test))
    metrics.accuracy_score(y_test, model.predict(X_test).copy())  # a copy is not the output
    metrics.accuracy_score(y_test, y_test)
    metrics.log_loss(y_test, before.predict_proba(X_test))  # fits a LabelBinarizer inside
    before.score(X_test, y_test)
    assert post_training(fluent, run_id) == {}
    assert len(runs(fluent)) == 1  # the metrics' own fits are not the user's training

    # Refitting a followed model computes training metrics with its predictions: they are
    # logged as training_* to the new run, never as post-training metrics to the old one.
    model.fit(X_test, y_test)
    assert post_training(fluent, run_id) == {}
    assert post_training(fluent, fluent.last_active_run().info.run_id) == {}


def test_metric_functions_return_and_raise_what_they_would(fluent, autolog, split) -> None:
    X_train, X_test, y_train, y_test = split
    plain = {n: getattr(sklearn.metrics, n) for n in ("accuracy_score", "confusion_matrix")}
    autolog()
    model = LogisticRegression(max_iter=300).fit(X_train, y_train)
    y_pred = model.predict(X_test)
    for name, original in plain.items():
        patched = getattr(sklearn.metrics, name)
        assert patched is not original
        expected, got = original(y_test, y_pred), patched(y_test, y_pred)
        assert type(got) is type(expected)
        assert np.array_equal(got, expected)
        with pytest.raises(ValueError, match="inconsistent numbers") as plain_error:
            original(y_test, y_pred[:3])
        with pytest.raises(ValueError, match="inconsistent numbers") as patched_error:
            patched(y_test, y_pred[:3])
        assert str(patched_error.value) == str(plain_error.value)
    assert inspect.signature(sklearn.metrics.f1_score).parameters["average"].default == "binary"
    run_id = fluent.last_active_run().info.run_id
    assert set(post_training(fluent, run_id)) == {"accuracy_score_X_test"}  # a matrix is no metric


def test_lost_server_warns_and_returns_the_metric(fluent, autolog, server, split) -> None:
    X_train, X_test, y_train, y_test = split
    autolog()
    model = LogisticRegression(max_iter=300).fit(X_train, y_train)
    run_id = fluent.last_active_run().info.run_id
    y_pred = model.predict(X_test)
    fluent.set_tracking_uri(DEAD_SERVER)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            accuracy = sklearn.metrics.accuracy_score(y_test, y_pred)
            score = model.score(X_test, y_test)
    finally:
        fluent.set_tracking_uri(server.address)
    assert accuracy == score == (y_test == y_pred).mean()
    first, second = autolog_warnings(caught)
    assert "could not log metric accuracy_score_X_test" in first
    assert f"tracking server at {DEAD_SERVER}" in first
    assert "What accuracy_score returned was not affected" in first
    assert "could not log metric LogisticRegression_score_X_test" in second
    assert [w.filename for w in caught if issubclass(w.category, AutologWarning)] == [__file__] * 2
    sklearn.metrics.accuracy_score(y_test, y_pred)  # the server is back
    assert set(post_training(fluent, run_id)) == {"accuracy_score-2_X_test"}


def test_disabled_post_training_metrics_patch_nothing(fluent, autolog, split) -> None:
    X_train, X_test, y_train, y_test = split
    plain = (sklearn.metrics.accuracy_score, LogisticRegression.predict, LogisticRegression.score)
    autolog()
    patched_accuracy = sklearn.metrics.accuracy_score
    model = LogisticRegression(max_iter=300).fit(X_train, y_train)
    run_id = fluent.last_active_run().info.run_id
    y_pred = model.predict(X_test)
    autolog(disable=True)
    now = (sklearn.metrics.accuracy_score, LogisticRegression.predict, LogisticRegression.score)
    assert all(a is b for a, b in zip(now, plain, strict=True))
    patched_accuracy(y_test, y_pred)  # a function imported while autolog was on
    sklearn.metrics.accuracy_score(y_test, model.predict(X_test))
    model.score(X_test, y_test)
    assert post_training(fluent, run_id) == {}

    autolog(log_post_training_metrics=False)
    now = (sklearn.metrics.accuracy_score, LogisticRegression.predict, LogisticRegression.score)
    assert all(a is b for a, b in zip(now, plain, strict=True))
    model = LogisticRegression(max_iter=300).fit(X_train, y_train)
    run_id = fluent.last_active_run().info.run_id
    sklearn.metrics.accuracy_score(y_test, model.predict(X_test))
    assert post_training(fluent, run_id) == {}
    assert "training_accuracy_score" in fluent.get_run(run_id).data.metrics  # fits still log


def test_followed_models_and_outputs_are_not_kept_alive(fluent, autolog, split) -> None:
    X_train, X_test, y_train, y_test = split
    autolog(log_models=False)

    def evaluate() -> list[weakref.ref]:
        # In a function of its own: before Python 3.13 the variables autolog looked up by name
        # stay referenced from its frame until it returns (see post_training._bindings).
        model = LogisticRegression(max_iter=300).fit(X_train, y_train)
        X_eval = X_test.copy()
        proba = model.predict_proba(X_eval)
        sklearn.metrics.log_loss(y_test, proba)
        return [weakref.ref(model), weakref.ref(X_eval), weakref.ref(proba)]

    dead = evaluate()
    assert set(post_training(fluent, fluent.last_active_run().info.run_id)) == {"log_loss_X_eval"}
    gc.collect()
    assert [ref() for ref in dead] == [None, None, None]


def _open_a_run(X: Any) -> Any:
    """A step of the fit that starts a nested run and leaves it active (user code, say)."""
    active = modelyard.active_run()
    if active is not None and active.info.parent_run_id is None:
        modelyard.start_run(nested=True, log_system_metrics=False)
    return X


def test_autologs_own_run_ended_under_another_stops_sampling(
    fluent, autolog, iris, monkeypatch
) -> None:
    """Autolog ends its run although the fit left another on top: that run's system-metrics
    thread stops with it and it leaves the active-run stack; the run on top stays active."""
    monkeypatch.setenv("MODELYARD_ENABLE_SYSTEM_METRICS_LOGGING", "true")
    autolog(log_models=False)
    before = {t for t in threading.enumerate() if t.name == "modelyard-system-metrics"}
    make_pipeline(FunctionTransformer(_open_a_run), LogisticRegression(max_iter=200)).fit(*iris)
    sampling = {t for t in threading.enumerate() if t.name == "modelyard-system-metrics"}
    top = fluent.active_run()
    assert top is not None and top.info.parent_run_id is not None
    assert sampling == before  # the ended run samples no more
    own = fluent.get_run(top.info.parent_run_id)
    assert own.info.status == RunStatus.FINISHED
    fluent.end_run()
    assert fluent.active_run() is None  # the ended run was not left on the stack under it


# -- threads -------------------------------------------------------------------------------------


class _Rendezvous:
    """A pipeline step that holds each of `parties` threads until all of them are inside their
    fit, so the fits overlap for sure; later calls (predict) pass at once."""

    def __init__(self, parties: int) -> None:
        self.parties, self.arrived, self.lock = parties, 0, threading.Lock()
        self.all_in = threading.Event()

    def __call__(self, X: Any) -> Any:
        with self.lock:
            self.arrived += 1
            if self.arrived == self.parties:
                self.all_in.set()
        assert self.all_in.wait(60), "the other fit never started"
        return X


def test_fits_on_several_threads_at_once_are_each_logged(fluent, autolog, iris) -> None:
    """Active runs are per thread: each thread's fit logs to its own run, however the fits
    overlap (a fit in progress on one thread used to swallow the others' whole: Optuna's
    n_jobs lost the autologging of half its trials)."""
    X, y = iris
    autolog(log_models=False)
    meet = _Rendezvous(3)
    run_ids: dict[float, str] = {}
    failures: list[BaseException] = []

    def train(C: float, own_run: bool) -> None:
        try:
            pipeline = make_pipeline(FunctionTransformer(meet), LogisticRegression(C=C))
            if own_run:
                with fluent.start_run() as run:
                    run_ids[C] = run.info.run_id
                    pipeline.fit(X, y)
            else:  # no active run on this thread: the fit gets a run of its own
                pipeline.fit(X, y)
                run_ids[C] = fluent.last_active_run().info.run_id
        except BaseException as exc:
            failures.append(exc)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads = [
            threading.Thread(target=train, args=args)
            for args in ((0.5, True), (2.0, True), (8.0, False))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert failures == [] and autolog_warnings(caught) == []
    assert len(set(run_ids.values())) == 3
    for C, run_id in run_ids.items():
        logged = fluent.get_run(run_id)
        assert logged.data.params["logisticregression__C"] == str(C)
        assert "training_accuracy_score" in logged.data.metrics
        assert logged.info.status == RunStatus.FINISHED


def test_a_threads_fit_logs_under_the_run_it_is_given(fluent, autolog, iris) -> None:
    """A new thread has no active run (the caller's stays the caller's); the docstring's
    recipe puts its fit in a child of the caller's run. A search's candidates on joblib's
    threads still belong to the search."""
    from joblib import parallel_backend

    X, y = iris
    autolog(log_models=False)
    with fluent.start_run() as parent:

        def train() -> None:
            run = fluent.start_run(parent_run_id=parent.info.run_id)
            with run, parallel_backend("threading", n_jobs=2):
                GridSearchCV(LogisticRegression(max_iter=300), {"C": [0.1, 1.0]}, cv=2).fit(X, y)

        worker = threading.Thread(target=train)
        worker.start()
        worker.join()
        assert fluent.active_run().info.run_id == parent.info.run_id
    everything = runs(fluent)
    (child,) = [r for r in everything if r.info.parent_run_id == parent.info.run_id]
    assert child.data.params["best_C"] in ("0.1", "1.0")
    candidates = [r for r in everything if r.info.parent_run_id == child.info.run_id]
    assert sorted(r.data.params["C"] for r in candidates) == ["0.1", "1.0"]
    assert len(everything) == 4  # the parent, the search and its two candidates: no stray runs
    assert fluent.get_run(parent.info.run_id).data.params == {}
