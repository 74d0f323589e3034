"""Train a scikit-learn model on a dataset that ships with scikit-learn, and track it.

modelyard up &                      # in another terminal: the platform on 127.0.0.1:50051
python examples/train_sklearn.py    # MODELYARD_URI picks another server
"""

from __future__ import annotations

from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestRegressor
from sklearn.metrics import mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

import modelyard
import modelyard.sklearn


def main() -> str:
    data = load_diabetes(as_frame=True)
    X_train, X_test, y_train, y_test = train_test_split(
        data.data, data.target, test_size=0.25, random_state=0
    )
    modelyard.set_experiment("diabetes")
    params = {"n_estimators": 200, "max_depth": 6, "random_state": 0}
    with modelyard.start_run(run_name="random-forest") as run:
        modelyard.log_params(params)
        modelyard.log_input(
            modelyard.data.from_pandas(data.frame, source="sklearn:load_diabetes", name="diabetes"),
            context="training",
        )
        model = RandomForestRegressor(**params).fit(X_train, y_train)
        predicted = model.predict(X_test)
        modelyard.log_metrics(
            {
                "test_rmse": mean_squared_error(y_test, predicted) ** 0.5,
                "test_r2": r2_score(y_test, predicted),
            }
        )
        info = modelyard.sklearn.log_model(model, "model", input_example=X_test.head(5))
    print(f"run {run.info.run_id}: model at {info.model_uri}")
    return info.model_uri


if __name__ == "__main__":
    main()
