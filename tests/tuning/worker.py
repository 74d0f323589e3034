"""One tuning worker process: joins a study on shared RDB storage and runs some of its trials.

python tests/tuning/worker.py TRACKING_URI STORAGE_URL STUDY_NAME N_TRIALS
"""

from __future__ import annotations

import sys

import optuna

import modelyard
from modelyard import tuning


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -2.0, 2.0)
    for step in range(3):
        trial.report((x - 0.5) ** 2 + 1.0 / (step + 1), step)
    return (x - 0.5) ** 2


def main() -> None:
    uri, storage, study_name, n_trials = sys.argv[1:5]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    modelyard.set_tracking_uri(uri)
    study = optuna.load_study(study_name=study_name, storage=storage)
    tuning.optimize(study, objective, n_trials=int(n_trials))


if __name__ == "__main__":
    main()
