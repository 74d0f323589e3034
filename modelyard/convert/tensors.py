"""Open Inference Protocol tensors <-> numpy arrays: the datatypes and the raw byte form, shared
by the serving client and the serving service so both ends encode alike.

Raw tensors are little-endian and row-major; BYTES elements are each prefixed with their length
as a 4-byte little-endian integer; BF16 has no numpy dtype and travels as the upper half of a
float32 (widened on arrival).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from math import prod

import numpy as np

from modelyard.errors import InvalidArgument

# MLServer's request parameter for what the inputs are, and its value for a DataFrame's columns
# (its PandasCodec sends it; so does the SDK for a DataFrame or records).
CONTENT_TYPE = "content_type"
TABLE = "pd"

# OIP datatype -> (numpy dtype, InferTensorContents field; None: raw only).
DATATYPES: dict[str, tuple[str, str | None]] = {
    "BOOL": ("bool", "bool_contents"),
    "UINT8": ("uint8", "uint_contents"),
    "UINT16": ("uint16", "uint_contents"),
    "UINT32": ("uint32", "uint_contents"),
    "UINT64": ("uint64", "uint64_contents"),
    "INT8": ("int8", "int_contents"),
    "INT16": ("int16", "int_contents"),
    "INT32": ("int32", "int_contents"),
    "INT64": ("int64", "int64_contents"),
    "FP16": ("float16", None),
    "FP32": ("float32", "fp32_contents"),
    "FP64": ("float64", "fp64_contents"),
    "BF16": ("float32", None),
    "BYTES": ("object", "bytes_contents"),
}
# numpy dtype name -> OIP datatype, for the numeric and boolean dtypes (strings travel as BYTES).
BY_DTYPE: dict[str, str] = {
    dtype: datatype
    for datatype, (dtype, _field) in DATATYPES.items()
    if datatype not in ("BF16", "BYTES")
}


def datatype_of(array: np.ndarray) -> str:
    if array.dtype.kind in "OUS":
        return "BYTES"
    try:
        return BY_DTYPE[array.dtype.name]
    except KeyError:
        raise InvalidArgument(
            f"arrays of dtype {array.dtype} cannot travel in the Open Inference Protocol; "
            "convert them to numbers, booleans or strings"
        ) from None


def to_raw(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for item in array.reshape(-1):
            data = item if isinstance(item, bytes) else str(item).encode()
            parts.append(struct.pack("<I", len(data)))
            parts.append(data)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=np.dtype(array.dtype).newbyteorder("<")).tobytes()


def bad_tensor(name: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"tensor {name!r}: {message}", field=name)


# No tensor a message can carry comes near it; past it numpy cannot shape even an empty array.
MAX_DIM = 2**31 - 1


def checked_shape(name: str, shape: Sequence[int]) -> tuple[int, ...]:
    dims = tuple(int(d) for d in shape)
    if any(d < 0 for d in dims):
        raise bad_tensor(name, f"shape {list(dims)} has a negative dimension")
    if any(d > MAX_DIM for d in dims):
        raise bad_tensor(name, f"shape {list(dims)} has a dimension over {MAX_DIM:,}")
    return dims


def from_raw(name: str, datatype: str, shape: Sequence[int], raw: bytes) -> np.ndarray:
    """The array a raw tensor holds; its size must match its datatype and shape exactly."""
    dims = checked_shape(name, shape)
    count = prod(dims)
    if datatype == "BYTES":
        return _bytes_elements(name, raw, count).reshape(dims)
    if datatype == "BF16":
        if len(raw) != 2 * count:
            raise bad_tensor(name, f"has {len(raw)} raw bytes; BF16 x {count} needs {2 * count}")
        halves = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return halves.view(np.float32).reshape(dims)
    dtype = np.dtype(DATATYPES[datatype][0]).newbyteorder("<")
    if len(raw) != dtype.itemsize * count:
        raise bad_tensor(
            name,
            f"has {len(raw)} raw bytes; {datatype} with shape {list(dims)} needs "
            f"{dtype.itemsize * count}",
        )
    return np.frombuffer(raw, dtype=dtype).reshape(dims)


def _bytes_elements(name: str, raw: bytes, count: int) -> np.ndarray:
    items = []
    offset = 0
    for i in range(count):
        if offset + 4 > len(raw):
            raise bad_tensor(name, "raw BYTES data ends before all elements were read")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise bad_tensor(
                name,
                f"raw BYTES element {i} is cut short: it declares {length} bytes but only "
                f"{len(raw) - offset} remain; send each element as its length (4 bytes, little "
                "endian) followed by that many bytes",
            )
        items.append(raw[offset : offset + length])
        offset += length
    if offset != len(raw):
        raise bad_tensor(name, "raw BYTES data is longer than the shape says")
    return np.array(items, dtype=object)
