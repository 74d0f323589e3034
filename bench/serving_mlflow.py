#!/usr/bin/env python3
"""The MLflow side of bench/serving.py; run it with the MLflow venv's python.

    bench/.venvs/mlflow/bin/python bench/serving_mlflow.py save \
        --model model.pkl --example example.json --out DIR [--calls 3000] [--row 70] \
        [--skops-trusted sklearn.tree._tree.Tree]

Loads the fitted estimator bench/serving.py pickled (same scikit-learn version in both venvs, so
both servers serve the very same object), saves it with `mlflow.sklearn.save_model` (input example
-> signature, as a user would; MLflow 3's default skops format, trusting the types named by
--skops-trusted), then times MLflow's own in-process `pyfunc.predict` on one row
(--row of the example; the floor MLflow's scoring server builds on). Prints one JSON object to
stdout.
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
import time
import warnings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    save = sub.add_parser("save", help="save the pickled estimator as an MLflow model")
    save.add_argument("--model", required=True, help="pickle of the fitted estimator")
    save.add_argument("--example", required=True, help="JSON {columns, data} input example")
    save.add_argument("--out", required=True, help="directory to save the MLflow model into")
    save.add_argument("--calls", type=int, default=3000, help="in-process pyfunc predict calls")
    save.add_argument("--row", type=int, default=0, help="the example row timed")
    save.add_argument(
        "--skops-trusted",
        action="append",
        default=[],
        help="a type MLflow's default skops format may load (the RF needs sklearn's Tree)",
    )
    args = parser.parse_args()

    import mlflow
    import mlflow.pyfunc
    import mlflow.sklearn
    import pandas as pd

    with open(args.model, "rb") as f:
        model = pickle.load(f)  # written by bench/serving.py in this same run
    with open(args.example) as f:
        example = json.load(f)
    frame = pd.DataFrame(example["data"], columns=example["columns"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.sklearn.save_model(
            model,
            args.out,
            input_example=frame.iloc[:3],
            skops_trusted_types=args.skops_trusted or None,
        )
        pyfunc = mlflow.pyfunc.load_model(args.out)
        row = frame.iloc[args.row : args.row + 1]
        for _ in range(200):
            pyfunc.predict(row)
        times = []
        for _ in range(args.calls):
            start = time.perf_counter_ns()
            pyfunc.predict(row)
            times.append(time.perf_counter_ns() - start)
    times.sort()
    json.dump(
        {
            "mlflow_version": mlflow.__version__,
            "path": args.out,
            "signature": str(pyfunc.metadata.signature).replace("\n", " "),
            "pyfunc_predict_1row_p50_ms": round(times[len(times) // 2] / 1e6, 4),
            "pyfunc_predict_1row_mean_ms": round(sum(times) / len(times) / 1e6, 4),
            "predictions": [int(v) for v in pyfunc.predict(frame)],
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
