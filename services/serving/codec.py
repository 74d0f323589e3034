"""Open Inference Protocol requests' inputs -> numpy arrays, and outputs -> responses.

Inputs arrive as typed `contents` or as `raw_input_contents` (the raw form, and the datatypes,
are modelyard.convert.tensors, shared with the client; FP16 and BF16 travel only raw). Outputs go
back in the form the request used, so a raw-speaking client (tritonclient's default) gets raw.
"""

from __future__ import annotations

from collections.abc import Mapping
from math import prod
from typing import Any

import numpy as np

from modelyard._gen.inference import grpc_predict_v2_pb2 as oip
from modelyard.convert.tensors import (
    DATATYPES,
    bad_tensor,
    checked_shape,
    datatype_of,
    from_raw,
    to_raw,
)
from modelyard.errors import InvalidArgument


def _from_contents(tensor: Any) -> np.ndarray:
    shape = checked_shape(tensor.name, tensor.shape)
    dtype, field = DATATYPES[tensor.datatype]
    if field is None:
        raise bad_tensor(tensor.name, f"{tensor.datatype} data must travel in raw_input_contents")
    values = getattr(tensor.contents, field)
    if len(values) != prod(shape):
        raise bad_tensor(
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
            raise bad_tensor(
                tensor.name,
                f"datatype {tensor.datatype!r} is not one of {', '.join(DATATYPES)}",
            )
        if tensor.name in decoded:
            raise bad_tensor(tensor.name, "appears twice")
        decoded[tensor.name] = (
            from_raw(tensor.name, tensor.datatype, tensor.shape, raw[i])
            if raw
            else _from_contents(tensor)
        )
    return decoded


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
            response.raw_output_contents.append(to_raw(array, datatype))
            continue
        field = DATATYPES[datatype][1]
        assert field is not None
        flat = array.reshape(-1)
        if datatype == "BYTES":
            values: Any = [v if isinstance(v, bytes) else str(v).encode() for v in flat]
        else:
            values = flat.tolist()
        getattr(tensor.contents, field).extend(values)
