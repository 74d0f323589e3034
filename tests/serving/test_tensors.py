"""The raw tensor form both ends of the Open Inference Protocol share (convert.tensors)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from modelyard.convert.tensors import BY_DTYPE, datatype_of, from_raw, to_raw
from modelyard.errors import InvalidArgument


@pytest.mark.parametrize("dtype", sorted(BY_DTYPE))
def test_every_numeric_dtype_round_trips_little_endian(dtype: str) -> None:
    array = (np.arange(6) % 2).astype(dtype).reshape(2, 3)
    datatype = datatype_of(array)
    assert datatype == BY_DTYPE[dtype]
    raw = to_raw(array, datatype)
    assert raw == array.astype(np.dtype(dtype).newbyteorder("<")).tobytes()
    back = from_raw("x", datatype, [2, 3], raw)
    assert back.dtype.name == dtype and np.array_equal(back, array)


def test_big_endian_input_travels_as_little_endian() -> None:
    array = np.array([1, 256], dtype=">i4")
    raw = to_raw(array, datatype_of(array))
    assert raw == b"\x01\x00\x00\x00\x00\x01\x00\x00"


def test_strings_and_bytes_travel_length_prefixed() -> None:
    array = np.array(["ab", b"\x00\xff", ""], dtype=object)
    raw = to_raw(array, datatype_of(array))
    assert raw == b"\x02\x00\x00\x00ab\x02\x00\x00\x00\x00\xff\x00\x00\x00\x00"
    assert from_raw("x", "BYTES", [3], raw).tolist() == [b"ab", b"\x00\xff", b""]


def test_bf16_is_widened_to_float32() -> None:
    values = np.array([1.5, -2.0], dtype=np.float32)
    upper_halves = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    assert from_raw("x", "BF16", [2], upper_halves).tolist() == [1.5, -2.0]


@pytest.mark.parametrize(
    ("datatype", "shape", "raw", "message"),
    [
        ("FP32", [2], b"\x00" * 7, "has 7 raw bytes; FP32 with shape [2] needs 8"),
        ("BF16", [3], b"\x00" * 4, "BF16 x 3 needs 6"),
        ("BYTES", [2], b"\x01\x00\x00\x00a", "ends before all elements were read"),
        ("BYTES", [1], b"\x01\x00\x00\x00ab", "longer than the shape says"),
        ("BYTES", [1], b"\x05\x00\x00\x00ab", "element 0 is cut short: it declares 5 bytes but"),
        ("BYTES", [2], b"\x00\x00\x00\x00\x03\x00\x00\x00a", "only 1 remain"),
        ("INT8", [-1], b"", "negative dimension"),
    ],
)
def test_malformed_raw_tensors_name_the_tensor(
    datatype: str, shape: list[int], raw: bytes, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)) as caught:
        from_raw("features", datatype, shape, raw)
    assert "'features'" in str(caught.value)


def test_an_unsupported_dtype_says_what_to_convert_to() -> None:
    with pytest.raises(InvalidArgument, match=r"complex128 cannot travel.*numbers, booleans"):
        datatype_of(np.array([1j]))
