"""Small, made-up data sets that exercise every column type AutoML handles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

WORDS_GOOD = ["great", "fast", "friendly", "helpful", "smooth"]
WORDS_BAD = ["slow", "broken", "rude", "late", "confusing"]


def churn_frame(n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Churn depends on usage, plan, and the words in a support note; plus columns to drop."""
    rng = np.random.default_rng(seed)
    usage = rng.normal(10, 3, n)
    plan = rng.choice(["basic", "plus", "pro"], n)
    tenure = rng.integers(1, 60, n).astype(float)
    tenure[rng.random(n) < 0.15] = np.nan
    unhappy = rng.random(n) < 0.4
    notes = [
        " ".join(rng.choice(WORDS_BAD if u else WORDS_GOOD, 3)) + " service this month"
        for u in unhappy
    ]
    score = -0.4 * (usage - 10) + 1.5 * unhappy + np.where(plan == "basic", 0.8, -0.3)
    churned = np.where(score + rng.normal(0, 0.5, n) > 0.6, "yes", "no")
    return pd.DataFrame(
        {
            "customer_id": np.arange(n),
            "usage": usage,
            "plan": plan,
            "tenure": tenure,
            "city": [f"city-{i}" for i in rng.integers(0, 120, n)],
            "signup": pd.date_range("2022-01-01", periods=n, freq="37h").astype(str),
            "note": notes,
            "country": "NL",
            "churned": churned,
        }
    )


def price_frame(n: int = 200, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    size = rng.uniform(30, 200, n)
    rooms = rng.integers(1, 6, n)
    area = rng.choice(["north", "south", "centre"], n)
    price = 2.0 * size + 15 * rooms + np.where(area == "centre", 80, 0) + rng.normal(0, 10, n)
    return pd.DataFrame({"size": size, "rooms": rooms, "area": area, "price": price})


def sales_frame(days: int = 120, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.arange(days)
    weekly = np.array([0, 2, 4, 5, 8, 14, 10])[t % 7]
    sales = 50 + 0.2 * t + weekly + rng.normal(0, 1.0, days)
    return pd.DataFrame(
        {"day": pd.date_range("2024-01-01", periods=days, freq="D"), "sales": sales}
    )


@pytest.fixture
def churn() -> pd.DataFrame:
    return churn_frame()


@pytest.fixture
def prices() -> pd.DataFrame:
    return price_frame()


@pytest.fixture
def sales() -> pd.DataFrame:
    return sales_frame()
