"""Feature values on the wire: what a client sends as entity keys and what it gets back as
Python values, for every kind the Value message carries."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import numpy as np

import modelyard.features  # noqa: F401 - first: it and modelyard.convert.features import each other
from modelyard._gen.features.v1 import features_pb2 as pb
from modelyard.convert.features import (
    append_python_values,
    append_values,
    array_to_python,
    fill_array,
    values_to_python,
)
from modelyard.features.definitions import ValueType

MOMENT = datetime(2026, 11, 23, 12, 30, 15, 250000, tzinfo=UTC)


def _round_trip(items: list) -> list:
    column = pb.FeatureColumn()
    append_python_values(column.values, items)
    return values_to_python(pb.FeatureColumn.FromString(column.SerializeToString()).values)


def test_request_values_keep_their_python_types() -> None:
    items = [7, True, 2.5, "driver-7", b"\x00\x01", MOMENT, np.int64(9), np.float32(0.5)]
    back = _round_trip(items)
    assert back == [7, True, 2.5, "driver-7", b"\x00\x01", MOMENT, 9, 0.5]
    assert [type(v) for v in back] == [int, bool, float, str, bytes, datetime, int, float]


def test_a_bool_is_not_sent_as_an_int() -> None:
    column = pb.FeatureColumn()
    append_python_values(column.values, [True, 1])
    assert [v.WhichOneof("val") for v in column.values] == ["bool_val", "int64_val"]


def test_typed_values_with_missing_ones_come_back_as_none() -> None:
    column = pb.FeatureColumn()
    append_values(column.values, [1.5, None, float("nan"), 3.0], ValueType.FLOAT64)
    assert values_to_python(column.values) == [1.5, None, None, 3.0]
    times = pb.FeatureColumn()
    append_values(times.values, [MOMENT, None], ValueType.UNIX_TIMESTAMP)
    assert values_to_python(times.values) == [MOMENT, None]


def test_typed_arrays_carry_what_a_value_per_row_carries() -> None:
    before_1970 = datetime(1969, 7, 20, 20, 17, 40, 123456, tzinfo=UTC)
    columns: dict[ValueType, list[Any]] = {
        ValueType.INT32: [1, None, -5],
        ValueType.INT64: [2**40, None, 0],
        ValueType.FLOAT32: [0.1, float("nan"), 2.5],
        ValueType.FLOAT64: [0.1, None, 1],
        ValueType.BOOL: [True, None, False],
        ValueType.BYTES: [b"\x01", None, "AP8="],  # online rows keep bytes as base64 text
        ValueType.STRING: ["a", None, ""],
        ValueType.UNIX_TIMESTAMP: [MOMENT, None, before_1970.isoformat()],
    }
    for dtype, items in columns.items():
        array = pb.ValueArray()
        fill_array(array, items, dtype)
        rows = pb.FeatureColumn()
        append_values(rows.values, items, dtype)
        sent = pb.ValueArray.FromString(array.SerializeToString())
        assert array_to_python(sent) == values_to_python(rows.values), dtype
        assert list(sent.missing) == [1], dtype
    assert array_to_python(_filled([MOMENT, before_1970], ValueType.UNIX_TIMESTAMP)) == [
        MOMENT,
        before_1970,
    ]
    assert array_to_python(_filled(["AP8="], ValueType.BYTES)) == [b"\x00\xff"]


def test_typed_arrays_find_gaps_among_any_numbers() -> None:
    """The quick look for gaps in a numeric column still finds them past infinities and values
    that are no numbers yet (text a source held)."""
    assert list(_filled([1.0, math.inf, -math.inf], ValueType.FLOAT64).missing) == []
    assert list(_filled([math.inf, 2.0, math.nan], ValueType.FLOAT64).missing) == [2]
    text = _filled(["5", 7], ValueType.INT64)
    assert (list(text.int64_values), list(text.missing)) == ([5, 7], [])
    assert list(_filled([True, None], ValueType.INT64).missing) == [1]


def _filled(items: list, dtype: ValueType) -> pb.ValueArray:
    array = pb.ValueArray()
    fill_array(array, items, dtype)
    return array


def test_an_entity_column_reads_as_a_feature_column() -> None:
    """The online lookup echoes the join keys by copying each EntityColumn's bytes into a
    FeatureColumn: that needs the same numbers and types for the fields an EntityColumn has."""
    entity = pb.EntityColumn.DESCRIPTOR.fields_by_name
    feature = pb.FeatureColumn.DESCRIPTOR.fields_by_name
    for name, field in entity.items():
        assert feature[name].number == field.number, name
        assert feature[name].type == field.type, name
        assert feature[name].message_type == field.message_type, name
        assert feature[name].is_repeated == field.is_repeated, name
