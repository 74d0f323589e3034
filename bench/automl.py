#!/usr/bin/env python3
"""AutoML quality: Modelyard AutoML next to FLAML, same data, split, budget, machine and run.

    . .venv/bin/activate
    python bench/automl.py                                  # 2 minutes per dataset and system
    python bench/automl.py --minutes 0.5 --datasets wine    # a quicker look

For each data set that ships with scikit-learn (breast_cancer, wine, digits, diabetes) it draws
one fixed split (80 % to fit on, 20 % test; stratified for classification; seed 0), writes both
parts to bench/.work/automl-<time>/<dataset>/, then, one after the other:

  1. Modelyard AutoML in this venv, against an in-process Modelyard server (SQLite and files in
     the work directory), optimizing the data set's metric within the budget; the test rows are
     passed as the `test` split, so AutoML never fits or selects on them;
  2. FLAML in its own venv (bench/.venvs/flaml, created and `pip install flaml[automl]`-ed on
     first use, never in the project venv) with its defaults, the same metric and budget,
     through bench/automl_flaml.py, which writes its test predictions to a file.

Both systems' test predictions are then scored by the same code here. Metrics: breast_cancer
ROC AUC, wine and digits log loss, diabetes RMSE (plus accuracy or R2 alongside). The table goes
to stdout and JSON to bench/results/automl.json; progress goes to stderr.
"""

# X and y are named as scikit-learn names them.
# ruff: noqa: N806

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from benchkit import log

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
FLAML_VENV = BENCH / ".venvs" / "flaml"
TARGET = "target"

# dataset -> (problem, metric both systems optimize and are compared on, larger is better)
DATASETS: dict[str, tuple[str, str, bool]] = {
    "breast_cancer": ("classification", "roc_auc", True),
    "wine": ("classification", "log_loss", False),
    "digits": ("classification", "log_loss", False),
    "diabetes": ("regression", "rmse", False),
}


def flaml_python() -> Path:
    python = FLAML_VENV / "bin" / "python"
    if not python.exists():
        log(f"creating {FLAML_VENV} and installing flaml[automl] there")
        subprocess.run([sys.executable, "-m", "venv", str(FLAML_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "flaml[automl]", "pandas"], check=True
        )
    return python


def load(name: str) -> pd.DataFrame:
    from sklearn import datasets

    frame = getattr(datasets, f"load_{name}")(as_frame=True).frame
    return frame.rename(columns={"target": TARGET})


def split(frame: pd.DataFrame, problem: str, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    stratify = frame[TARGET] if problem == "classification" else None
    train, test = train_test_split(frame, test_size=0.2, random_state=seed, stratify=stratify)
    return train.reset_index(drop=True), test.reset_index(drop=True)


def score(problem: str, y: pd.Series, predicted: Any, proba: pd.DataFrame | None) -> dict:
    from sklearn import metrics as m

    if problem == "regression":
        return {
            "rmse": float(np.sqrt(m.mean_squared_error(y, predicted))),
            "r2": float(m.r2_score(y, predicted)),
        }
    assert proba is not None
    labels = sorted(y.unique())
    matrix = proba.reindex(columns=labels, fill_value=0.0).to_numpy()
    out = {
        "accuracy": float(m.accuracy_score(y, predicted)),
        "log_loss": float(m.log_loss(y, matrix, labels=labels)),
    }
    if len(labels) == 2:
        out["roc_auc"] = float(m.roc_auc_score(y, matrix[:, 1]))
    return out


def run_modelyard(
    name: str,
    problem: str,
    metric: str,
    train: pd.DataFrame,
    test: pd.DataFrame,
    minutes: float,
    seed: int,
    work: Path,
) -> dict[str, Any]:
    import modelyard.automl
    import modelyard.sklearn

    data = pd.concat([train.assign(split="train"), test.assign(split="test")], ignore_index=True)
    started = time.monotonic()
    run = modelyard.automl.classify if problem == "classification" else modelyard.automl.regress
    result = run(
        data,
        TARGET,
        primary_metric=metric,
        timeout_minutes=minutes,
        split_col="split",
        experiment_name=f"bench-{name}",
        seed=seed,
        output_dir=work / "modelyard-code",
    )
    elapsed = time.monotonic() - started
    model = modelyard.sklearn.load_model(result.best_trial.model_uri)
    X = test.drop(columns=[TARGET])
    proba = None
    if problem == "classification":
        proba = pd.DataFrame(model.predict_proba(X), columns=list(model.classes_))
    return {
        "seconds": elapsed,
        "trials": len(result.trials),
        "best": result.best_trial.model_family,
        "test": score(problem, test[TARGET], model.predict(X), proba),
    }


def run_flaml(
    problem: str, metric: str, work: Path, minutes: float, seed: int, test: pd.DataFrame
) -> dict[str, Any]:
    out = work / "flaml-predictions.csv"
    command = [
        str(flaml_python()),
        str(BENCH / "automl_flaml.py"),
        "--train",
        str(work / "train.csv"),
        "--test",
        str(work / "test.csv"),
        "--target",
        TARGET,
        "--task",
        problem,
        "--metric",
        metric,
        "--seconds",
        str(minutes * 60),
        "--seed",
        str(seed),
        "--out",
        str(out),
    ]
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"FLAML failed:\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    predictions = pd.read_csv(out)
    proba = None
    if problem == "classification":
        columns = [c for c in predictions.columns if c.startswith("proba_")]
        proba = predictions[columns].rename(columns=lambda c: type(test[TARGET].iloc[0])(c[6:]))
    return {
        "seconds": time.monotonic() - started,
        "trials": summary["trials"],
        "best": summary["best_estimator"],
        "test": score(problem, test[TARGET], predictions["predicted"], proba),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="budget per dataset and system")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-flaml", action="store_true")
    args = parser.parse_args()

    import modelyard
    from modelyard.services.apps import build_server
    from modelyard.services.common.settings import Settings

    root = BENCH / ".work" / f"automl-{time.strftime('%Y%m%d-%H%M%S')}"
    root.mkdir(parents=True)
    server = build_server(Settings(home=root / "home", host="127.0.0.1", port=0, grace_period=0))
    server.start()
    modelyard.set_tracking_uri(server.address)
    results = []
    try:
        for name in args.datasets.split(","):
            problem, metric, larger_is_better = DATASETS[name]
            train, test = split(load(name), problem, args.seed)
            work = root / name
            work.mkdir()
            train.to_csv(work / "train.csv", index=False)
            test.to_csv(work / "test.csv", index=False)
            log(f"{name}: {len(train)} rows to fit on, {len(test)} test rows; {metric}")
            log(f"  modelyard automl, {args.minutes} min ...")
            ours = run_modelyard(name, problem, metric, train, test, args.minutes, args.seed, work)
            log(
                f"  -> test {metric} {ours['test'][metric]:.4f} "
                f"({ours['best']}, {ours['trials']} trials)"
            )
            theirs = None
            if not args.skip_flaml:
                log(f"  flaml, {args.minutes} min ...")
                theirs = run_flaml(problem, metric, work, args.minutes, args.seed, test)
                log(f"  -> test {metric} {theirs['test'][metric]:.4f} ({theirs['best']})")
            results.append(
                {
                    "dataset": name,
                    "metric": metric,
                    "larger_is_better": larger_is_better,
                    "modelyard": ours,
                    "flaml": theirs,
                }
            )
    finally:
        server.stop(grace=0)

    print(
        f"\nAutoML, {args.minutes} min per data set and system, test split 20 %, seed {args.seed}"
    )
    print(f"{platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}\n")
    print(
        "| dataset | metric | Modelyard | FLAML | Modelyard best (trials) | FLAML best | verdict |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        ours, theirs, metric = r["modelyard"], r["flaml"], r["metric"]
        mine = ours["test"][metric]
        other = theirs["test"][metric] if theirs else float("nan")
        if theirs is None:
            verdict = ""
        elif np.isclose(mine, other, rtol=1e-3, atol=1e-4):
            verdict = "match"
        else:
            verdict = "better" if (mine > other) == r["larger_is_better"] else "worse"
        print(
            f"| {r['dataset']} | {metric} | {mine:.4f} | {other:.4f} | "
            f"{ours['best']} ({ours['trials']}) | {theirs['best'] if theirs else ''} | {verdict} |"
        )
    out = BENCH / "results" / "automl.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps({"minutes": args.minutes, "seed": args.seed, "results": results}, indent=2)
    )
    log(f"\nwrote {out}")


if __name__ == "__main__":
    main()
