"""Open Inference Protocol tensors <-> numpy arrays.

Inputs arrive as typed `contents` or as `raw_input_contents` (little-endian, row-major; BYTES
elements length-prefixed with a 4-byte little-endian integer; FP16 and BF16 only raw). Outputs go
back in the form the request used, so a raw-speaking client (tritonclient's default) gets raw.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from math import prod
from typing import Any

import numpy as np

from modelyard._gen.inference import grpc_predict_v2_pb2 as oip
from modelyard.errors import InvalidArgument

# OIP datatype -> (numpy dtype, InferTensorContents field). BF16 has no numpy dtype: it travels
# as the upper half of a float32 and is widened on arrival.
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
_BY_DTYPE = {
    "bool": "BOOL",
    "uint8": "UINT8",
    "uint16": "UINT16",
    "uint32": "UINT32",
    "uint64": "UINT64",
    "int8": "INT8",
    "int16": "INT16",
    "int32": "INT32",
    "int64": "INT64",
    "float16": "FP16",
    "float32": "FP32",
    "float64": "FP64",
}


def datatype_of(array: np.ndarray) -> str:
    if array.dtype.kind in "OUS":
        return "BYTES"
    try:
        return _BY_DTYPE[array.dtype.name]
    except KeyError:
        raise InvalidArgument(
            f"outputs of dtype {array.dtype} cannot travel in the protocol"
        ) from None


def _bad(name: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"input {name!r}: {message}", field=name)


def _shape(tensor: Any) -> tuple[int, ...]:
    shape = tuple(int(d) for d in tensor.shape)
    if any(d < 0 for d in shape):
        raise _bad(tensor.name, f"shape {list(shape)} has a negative dimension")
    return shape


def _decode_bytes(name: str, raw: bytes, count: int) -> np.ndarray:
    items = []
    offset = 0
    for _ in range(count):
        if offset + 4 > len(raw):
            raise _bad(name, "raw BYTES data ends before all elements were read")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        items.append(raw[offset : offset + length])
        offset += length
    if offset != len(raw):
        raise _bad(name, "raw BYTES data is longer than the shape says")
    return np.array(items, dtype=object)


def _from_raw(tensor: Any, raw: bytes) -> np.ndarray:
    shape = _shape(tensor)
    count = prod(shape)
    datatype = tensor.datatype
    if datatype == "BYTES":
        return _decode_bytes(tensor.name, raw, count).reshape(shape)
    if datatype == "BF16":
        if len(raw) != 2 * count:
            raise _bad(tensor.name, f"has {len(raw)} raw bytes; BF16 x {count} needs {2 * count}")
        halves = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        return halves.view(np.float32).reshape(shape)
    dtype = np.dtype(DATATYPES[datatype][0]).newbyteorder("<")
    if len(raw) != dtype.itemsize * count:
        raise _bad(
            tensor.name,
            f"has {len(raw)} raw bytes; {datatype} with shape {list(shape)} needs "
            f"{dtype.itemsize * count}",
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def _from_contents(tensor: Any) -> np.ndarray:
    shape = _shape(tensor)
    dtype, field = DATATYPES[tensor.datatype]
    if field is None:
        raise _bad(tensor.name, f"{tensor.datatype} data must travel in raw_input_contents")
    values = getattr(tensor.contents, field)
    if len(values) != prod(shape):
        raise _bad(
            tensor.name,
            f"has {len(values)} values in contents.{field}; shape {list(shape)} needs "
            f"{prod(shape)}",
        )
    if tensor.datatype == "BYTES":
        return np.array(list(values), dtype=object).reshape(shape)
    return np.array(values, dtype=dtype).reshape(shape)


def decode_inputs(request: oip.ModelInferRequest) -> dict[str, np.ndarray]:
    if not request.inputs:
        raise InvalidArgument("the request has no inputs", field="inputs")
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(
            f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs; send "
            "one per input, in order",
            field="raw_input_contents",
        )
    decoded: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(request.inputs):
        if not tensor.name:
            raise InvalidArgument(f"input #{i} has no name", field="inputs.name")
        if tensor.datatype not in DATATYPES:
            raise _bad(
                tensor.name,
                f"datatype {tensor.datatype!r} is not one of {', '.join(DATATYPES)}",
            )
        if tensor.name in decoded:
            raise _bad(tensor.name, "appears twice")
        decoded[tensor.name] = _from_raw(tensor, raw[i]) if raw else _from_contents(tensor)
    return decoded


def _raw(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for item in array.reshape(-1):
            data = item if isinstance(item, bytes) else str(item).encode()
            parts.append(struct.pack("<I", len(data)))
            parts.append(data)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=np.dtype(array.dtype).newbyteorder("<")).tobytes()


def encode_outputs(
    response: oip.ModelInferResponse,
    outputs: Mapping[str, np.ndarray],
    raw: bool,
    wanted: set[str] | None = None,
) -> None:
    """Add the outputs to `response`: raw if the request was raw, or if any output can only
    travel raw (FP16); the protocol forbids mixing the two forms in one response."""
    chosen = {n: a for n, a in outputs.items() if not wanted or n in wanted}
    types = {n: datatype_of(a) for n, a in chosen.items()}
    raw = raw or any(DATATYPES[t][1] is None for t in types.values())
    for name, array in chosen.items():
        datatype = types[name]
        tensor = response.outputs.add(name=name, datatype=datatype, shape=list(array.shape))
        if raw:
            response.raw_output_contents.append(_raw(array, datatype))
            continue
        field = DATATYPES[datatype][1]
        assert field is not None
        flat = array.reshape(-1)
        if datatype == "BYTES":
            values: Any = [v if isinstance(v, bytes) else str(v).encode() for v in flat]
        else:
            values = flat.tolist()
        getattr(tensor.contents, field).extend(values)
