"""One tuning worker process: joins a study on shared RDB storage and runs some of its trials.

python tests/tuning/worker.py TRACKING_URI STORAGE_URL STUDY_NAME N_TRIALS [--heartbeat S] [--retry]
    [--hang]

--heartbeat: Optuna's RDBStorage heartbeat every S seconds (a trial is stale after S more).
--retry: with --heartbeat, the storage retries a stale trial once
(RetryHeartbeatStaleTrialCallback).
--hang: each trial prints "running <number>" once its run has started, then never returns (a
worker for the test to kill).
"""

from __future__ import annotations

import argparse
import threading

import optuna

import modelyard
from modelyard import tuning


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -2.0, 2.0)
    for step in range(3):
        trial.report((x - 0.5) ** 2 + 1.0 / (step + 1), step)
    return (x - 0.5) ** 2


def hang(trial: optuna.Trial) -> float:
    trial.suggest_float("x", -2.0, 2.0)
    print(f"running {trial.number}", flush=True)
    threading.Event().wait()
    raise AssertionError("unreachable")


def main() -> None:
    args = argparse.ArgumentParser()
    for name in ("uri", "storage", "study_name"):
        args.add_argument(name)
    args.add_argument("n_trials", type=int)
    args.add_argument("--heartbeat", type=int)
    args.add_argument("--retry", action="store_true")
    args.add_argument("--hang", action="store_true")
    a = args.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    modelyard.set_tracking_uri(a.uri)
    storage: str | optuna.storages.RDBStorage = a.storage
    if a.heartbeat:
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1) if a.retry else None
        storage = optuna.storages.RDBStorage(
            a.storage,
            heartbeat_interval=a.heartbeat,
            grace_period=a.heartbeat,
            heartbeat_stale_trial_callback=retry,
        )
    study = optuna.load_study(study_name=a.study_name, storage=storage)
    tuning.optimize(study, hang if a.hang else objective, n_trials=a.n_trials)


if __name__ == "__main__":
    main()
