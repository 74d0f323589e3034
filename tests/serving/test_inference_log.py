"""The inference log stays cheap to write and readable: records are capped and strict JSON."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from modelyard.services.serving.inference_log import MAX_LOGGED_BYTES, to_json


def _strict(text: str) -> Any:
    """JSON as jq or JavaScript read it: no NaN or Infinity constants."""

    def refuse(constant: str) -> None:
        raise ValueError(f"non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=refuse)


def test_a_huge_empty_tensor_is_logged_by_its_shape_at_no_cost() -> None:
    """[3000, 3000, 0] holds nothing; as lists it was 9 million of them (seconds, 36 MB)."""
    logged = to_json({"x": np.empty((3000, 3000, 0))})
    assert _strict(logged) == {
        "x": {"shape": [3000, 3000, 0], "dtype": "float64", "truncated": True}
    }
    assert _strict(to_json({"y": np.empty(0)})) == {"y": []}


def test_values_json_lacks_are_kept_as_strict_json() -> None:
    floats = np.array([[np.nan, 1.5, np.inf, -np.inf]])
    texts = np.array([b"\xff\xfe", b"caf\xc3\xa9", "plain"], dtype=object)
    assert _strict(to_json({"f": floats, "t": texts})) == {
        "f": [["NaN", 1.5, "Infinity", "-Infinity"]],
        "t": [{"base64": "//4="}, "café", "plain"],  # the bytes that are not UTF-8, losslessly
    }


def test_a_record_stays_under_the_cap_and_keeps_what_fits() -> None:
    big, small = np.random.default_rng(0).random((20_000, 4)), np.arange(3)
    logged = to_json({"big": big, "small": small})
    assert len(logged) <= MAX_LOGGED_BYTES
    assert _strict(logged) == {
        "big": {"shape": [20_000, 4], "dtype": "float64", "truncated": True},
        "small": [0, 1, 2],
    }
    many = {f"t{i}": np.arange(1) for i in range(30_000)}  # even their shapes do not fit
    assert _strict(to_json(many)) == {"tensors": 30_000, "truncated": True}
