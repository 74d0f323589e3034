#!/usr/bin/env python3
"""FLAML's side of bench/automl.py; runs in bench/.venvs/flaml, never in the project venv.

    bench/.venvs/flaml/bin/python bench/automl_flaml.py --train train.csv --test test.csv \
        --target target --task classification --metric roc_auc --seconds 120 --out preds.csv

Fits FLAML's AutoML with its defaults and the given budget on the training file, predicts the
test file and writes the predictions (and class probabilities, one column per class) to --out,
so the caller scores both systems with the same code. A JSON summary goes to stdout.
"""

# X and y are named as scikit-learn names them.
# ruff: noqa: N806

from __future__ import annotations

import argparse
import json
import time

import pandas as pd
from flaml import AutoML


def main() -> None:
    parser = argparse.ArgumentParser()
    for name in ("--train", "--test", "--target", "--task", "--metric", "--out"):
        parser.add_argument(name, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train, test = pd.read_csv(args.train), pd.read_csv(args.test)
    X, y = train.drop(columns=[args.target]), train[args.target]
    automl = AutoML()
    started = time.monotonic()
    automl.fit(
        X,
        y,
        task=args.task,
        metric=args.metric,
        time_budget=args.seconds,
        seed=args.seed,
        verbose=0,
    )
    elapsed = time.monotonic() - started
    X_test = test.drop(columns=[args.target])
    out = pd.DataFrame({"predicted": automl.predict(X_test)})
    if args.task == "classification":
        proba = automl.predict_proba(X_test)
        for i, label in enumerate(automl.classes_):
            out[f"proba_{label}"] = proba[:, i]
    out.to_csv(args.out, index=False)
    print(
        json.dumps(
            {
                "best_estimator": automl.best_estimator,
                "seconds": elapsed,
                "trials": len(automl.config_history) if automl.config_history else None,
            }
        )
    )


if __name__ == "__main__":
    main()
