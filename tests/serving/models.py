"""Models that misbehave the ways user code does, for the serving tests (importable, so the
in-process server unpickles them by reference)."""

from __future__ import annotations

import sys
import threading

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

# Held shut by a test: the Gated model's predict waits on it.
GATE = threading.Event()
ENTERED = threading.Event()
SEEN: list[list[float]] = []  # column 0 of every row the Gated model was given


class Gated(RegressorMixin, BaseEstimator):
    """Answers column 0; given a negative value there, only once GATE opens: a model as slow as
    a test wants (loading, which predicts on the input example, passes straight through)."""

    def fit(self, X, y=None) -> Gated:
        return self

    def predict(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        SEEN.append(X[:, 0].tolist())
        if (X[:, 0] < 0).any():
            ENTERED.set()
            GATE.wait(120)
        return X[:, 0]


class Exits(RegressorMixin, BaseEstimator):
    """Given a negative value in column 0, calls sys.exit, as argparse or click code inside a
    preprocessing step does; answers column 0 otherwise."""

    def fit(self, X, y=None) -> Exits:
        return self

    def predict(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if (X[:, 0] < 0).any():
            sys.exit(3)
        return X[:, 0]
