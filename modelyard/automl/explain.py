"""Explain the best model: permutation importance of each raw input column.

Each column is shuffled in turn on held-out rows and the drop in the primary metric is measured
(5 repeats), so the importances speak about the columns you have, before any preprocessing, and
work for every model family. The result goes to the best trial's run as
`explanations/permutation_importance.json` and a small HTML bar chart beside it.
"""

# X and y are named as scikit-learn names them.
# ruff: noqa: N803, N806

from __future__ import annotations

import time
from collections.abc import Callable
from html import escape
from typing import Any

import pandas as pd

MAX_ROWS = 2000


def permutation_importance(
    model: Any,
    X: pd.DataFrame,
    y: pd.Series,
    score: Callable[[Any, pd.DataFrame, pd.Series], float],
    seed: int = 0,
    n_repeats: int = 5,
    seconds: float | None = None,
) -> dict[str, dict[str, float]]:
    """{column: {"mean": drop in score, "std": ...}}, largest first; `score` is higher-is-better.

    With `seconds`, fewer repeats (at least one) are made when five would not fit in that time.
    """
    from sklearn.inspection import permutation_importance as sk_permutation_importance

    if len(X) > MAX_ROWS:
        X = X.sample(MAX_ROWS, random_state=seed)
        y = y.loc[X.index]
    if seconds is not None:
        started = time.monotonic()
        score(model, X, y)
        one = max(time.monotonic() - started, 1e-6)
        n_repeats = max(1, min(n_repeats, int(seconds / (one * max(1, X.shape[1])))))
    result = sk_permutation_importance(
        model, X, y, scoring=score, n_repeats=n_repeats, random_state=seed
    )
    found = {
        str(c): {"mean": float(m), "std": float(s)}
        for c, m, s in zip(X.columns, result.importances_mean, result.importances_std, strict=True)
    }
    return dict(sorted(found.items(), key=lambda kv: -kv[1]["mean"]))


def render(importances: dict[str, dict[str, float]], metric: str) -> str:
    peak = max((abs(v["mean"]) for v in importances.values()), default=0.0) or 1.0
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{v['mean']:+.4g} ± {v['std']:.2g}</td>"
        f'<td><span style="display:inline-block;height:0.8rem;'
        f"width:{200 * abs(v['mean']) / peak:.0f}px;"
        f'background:{"#6b8fd6" if v["mean"] >= 0 else "#d67b6b"}"></span></td></tr>'
        for name, v in importances.items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Permutation importance</title>"
        "</head><body style='font-family:system-ui,sans-serif'>"
        f"<h1>Permutation importance</h1><p>Drop in {escape(metric)} when a column is shuffled "
        "(mean ± std over the repeats, held-out rows).</p>"
        f"<table>{rows}</table></body></html>"
    )


def scorer(metric_fn: Callable[[Any, pd.DataFrame, pd.Series], float], maximize: bool) -> Callable:
    """A higher-is-better scorer from a metric function of (model, X, y)."""

    def score(model: Any, X: pd.DataFrame, y: pd.Series) -> float:
        value = metric_fn(model, X, y)
        return value if maximize else -value

    return score
