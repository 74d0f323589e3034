"""Model signatures: the named, typed columns (or tensors) a model takes and returns.

A signature is inferred from an input example when a model is logged and enforced on every
predict: a missing column or an unsafe type is an InvalidArgument naming the column; extra columns
are dropped; safe widenings (int32 -> int64, integers or float32 -> double) are applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from modelyard.errors import InvalidArgument

# Column types, as MLflow names them, and the numpy dtype each becomes.
COLUMN_TYPES: dict[str, str] = {
    "boolean": "bool",
    "integer": "int32",
    "long": "int64",
    "float": "float32",
    "double": "float64",
    "string": "object",
    "binary": "object",
    "datetime": "datetime64[ns]",
}
# Which incoming types may be converted, losslessly, to a declared type.
_WIDENING: dict[str, tuple[str, ...]] = {
    "long": ("integer",),
    "double": ("integer", "long", "float"),
    "float": ("integer",),
}


def column_type(dtype: Any) -> str:
    dtype = np.dtype(dtype) if not isinstance(dtype, pd.api.extensions.ExtensionDtype) else dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer" if _itemsize(dtype) <= 4 else "long"
    if pd.api.types.is_float_dtype(dtype):
        return "float" if _itemsize(dtype) <= 4 else "double"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime"
    if pd.api.types.is_string_dtype(dtype) or dtype == np.dtype("O"):
        return "string"
    raise InvalidArgument(f"cannot describe dtype {dtype} in a signature")


def _itemsize(dtype: Any) -> int:
    """Bytes per value; pandas' nullable Int64, Float32... through the numpy type they hold
    (np.dtype refuses them with a TypeError)."""
    return np.dtype(getattr(dtype, "numpy_dtype", dtype)).itemsize


@dataclass(frozen=True)
class ColumnSpec:
    name: str
    type: str
    required: bool = True

    def __post_init__(self) -> None:
        if self.type not in COLUMN_TYPES:
            raise InvalidArgument(
                f"column {self.name!r}: type {self.type!r} is not one of {', '.join(COLUMN_TYPES)}",
                field=self.name,
            )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "required": self.required}


@dataclass(frozen=True)
class TensorSpec:
    dtype: str
    shape: tuple[int, ...]
    name: str | None = None

    def __post_init__(self) -> None:
        try:
            np.dtype(self.dtype)
        except TypeError:
            raise InvalidArgument(
                f"tensor {self.name or 'input'!r}: dtype {self.dtype!r} is no numpy dtype "
                "(float32, int64, str, ...)",
                field=self.name or "dtype",
            ) from None

    @property
    def takes_text(self) -> bool:
        return np.dtype(self.dtype).kind == "U"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "tensor", "dtype": self.dtype, "shape": list(self.shape)}
        if self.name:
            out["name"] = self.name
        return out


Spec = ColumnSpec | TensorSpec


@dataclass(frozen=True)
class Signature:
    inputs: tuple[Spec, ...]
    outputs: tuple[Spec, ...] = field(default=())

    @property
    def is_tabular(self) -> bool:
        return all(isinstance(s, ColumnSpec) for s in self.inputs)

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs if s.name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signature:
        return cls(
            tuple(_spec(d) for d in data.get("inputs", [])),
            tuple(_spec(d) for d in data.get("outputs", [])),
        )


def _spec(d: dict[str, Any]) -> Spec:
    if d.get("type") == "tensor":
        return TensorSpec(d["dtype"], tuple(d["shape"]), d.get("name"))
    return ColumnSpec(d["name"], d["type"], d.get("required", True))


# A text tensor's numpy dtype carries the example's longest text ("<U12"), which would refuse
# longer ones: signatures record the kind instead.
_STRING_KINDS = {"U": "str", "S": "bytes"}


def _specs_for(data: Any, name: str | None = None) -> tuple[Spec, ...]:
    if isinstance(data, pd.DataFrame):
        return tuple(ColumnSpec(str(c), column_type(t)) for c, t in data.dtypes.items())
    if isinstance(data, pd.Series):
        return (ColumnSpec(str(data.name or name or "prediction"), column_type(data.dtype)),)
    if isinstance(data, dict):
        return tuple(ColumnSpec(str(k), column_type(np.asarray(v).dtype)) for k, v in data.items())
    array = np.asarray(data)
    shape = (-1, *array.shape[1:]) if array.ndim else ()
    return (TensorSpec(_STRING_KINDS.get(array.dtype.kind, str(array.dtype)), shape, name),)


def records_as_table(data: Any) -> Any:
    """Input or an input example given as records, as a DataFrame: a dict of columns
    ({"a": [1, 2]}), one record ({"a": 1}) or a list of records ([{"a": 1}, ...]), the shapes
    MLflow's log_model and predict take. Anything else as given."""
    if isinstance(data, dict) and data:
        scalars = all(np.ndim(v) == 0 for v in data.values())
        return pd.DataFrame([data]) if scalars else pd.DataFrame(data)
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        return pd.DataFrame(data)
    return data


def infer_signature(model_input: Any, model_output: Any = None) -> Signature:
    outputs = _specs_for(model_output) if model_output is not None else ()
    return Signature(_specs_for(model_input), outputs)


def with_types(signature: Signature, example: Any) -> Any:
    """An input example read back from JSON, in the types the signature recorded from it: JSON
    keeps no int32, float32 or datetime, and the model would refuse its own example. A column
    whose values cannot take its type (a null in an integer column) is left as read."""
    if isinstance(example, pd.DataFrame):
        typed = example.copy()
        for spec in signature.inputs:
            if isinstance(spec, ColumnSpec) and spec.name in typed.columns:
                typed[spec.name] = _column_with_type(spec, typed[spec.name])
        return typed
    tensor = signature.inputs[0] if len(signature.inputs) == 1 else None
    if isinstance(tensor, TensorSpec) and isinstance(example, np.ndarray) and not tensor.takes_text:
        try:
            return example.astype(tensor.dtype)
        except (TypeError, ValueError):
            return example
    return example


def _column_with_type(spec: ColumnSpec, column: pd.Series) -> pd.Series:
    if spec.type in ("string", "binary"):
        return column
    if spec.type in ("boolean", "integer", "long") and column.isna().any():
        return column  # None would become False, and integers hold no null
    try:
        if spec.type == "datetime":
            return pd.to_datetime(column)
        return column.astype(COLUMN_TYPES[spec.type])
    except (TypeError, ValueError):
        return column


def enforce(signature: Signature, data: Any) -> Any:
    """Return `data` shaped as the signature demands, or raise naming what is wrong."""
    if signature.is_tabular:
        return _enforce_columns(signature, data)
    spec = signature.inputs[0]
    assert isinstance(spec, TensorSpec)
    if isinstance(data, pd.DataFrame):
        # As MLflow's pyfunc: a one-column frame is a 1-D model's array, columns are rows'.
        one = data.shape[1] == 1 and len(spec.shape) == 1
        array = data.iloc[:, 0].to_numpy() if one else data.to_numpy()
    else:
        array = np.asarray(data)
    return _enforce_tensor(spec, array)


def _enforce_columns(signature: Signature, data: Any) -> pd.DataFrame:
    # One record used to raise pandas' 'If using all scalar values, you must pass an index',
    # and a list of records was refused as a 1-D array.
    data = records_as_table(data)
    if not isinstance(data, pd.DataFrame):
        array = np.asarray(data)
        names = signature.input_names
        if array.ndim != 2 or array.shape[1] != len(names):
            raise InvalidArgument(
                f"input has shape {array.shape}; the model expects a table with columns "
                f"{names} (a DataFrame, or a 2-D array with {len(names)} columns in that order)",
                field="inputs",
            )
        data = pd.DataFrame(array, columns=names)
    out = {}
    for spec in signature.inputs:
        assert isinstance(spec, ColumnSpec)
        if spec.name not in data.columns:
            if spec.required:
                raise InvalidArgument(
                    f"input is missing column {spec.name!r} ({spec.type}); the model needs "
                    f"{signature.input_names}",
                    field=spec.name,
                )
            continue
        out[spec.name] = _convert_column(spec, data[spec.name])
    return pd.DataFrame(out, index=data.index)


def _convert_column(spec: ColumnSpec, column: pd.Series) -> pd.Series:
    try:
        actual = column_type(column.dtype)
    except InvalidArgument:
        actual = str(column.dtype)
    if actual == spec.type and isinstance(column.dtype, np.dtype) and column.dtype.kind == "u":
        return _signed(spec, column)
    if actual == spec.type:
        return column
    if actual in _WIDENING.get(spec.type, ()):
        changed = _changed_by_cast(column.to_numpy(), np.dtype(COLUMN_TYPES[spec.type]))
        if changed:
            raise InvalidArgument(
                f"column {spec.name!r} has type {actual}, {changed}; the model expects "
                f"{spec.type}: convert the values yourself if that is what you mean",
                field=spec.name,
            )
        return column.astype(COLUMN_TYPES[spec.type])
    if spec.type in ("string", "binary") and actual == "string":
        return column
    if actual == "string" and spec.type == "datetime":
        # Dates read from CSV or JSON arrive as text; ISO 8601 ones convert (as in MLflow).
        try:
            return pd.to_datetime(column, format="ISO8601")
        except (TypeError, ValueError):
            parsed = pd.to_datetime(column, format="ISO8601", errors="coerce")
            bad = column[parsed.isna() & column.notna()]
            if len(bad):  # which values, not only that the column is text
                shown = ", ".join(repr(v) for v in bad.drop_duplicates().head(3))
                raise InvalidArgument(
                    f"column {spec.name!r} has type string, and {len(bad)} value(s) are no "
                    f"ISO 8601 date or time, e.g. {shown}; the model expects datetime: send "
                    "values such as 2024-01-31 or 2024-01-31T08:00:00",
                    field=spec.name,
                ) from None
    if actual == "string" and spec.type in ("double", "float", "long", "integer"):
        # Values that arrived as text (JSON, CSV) but are all numbers convert safely.
        converted = pd.to_numeric(column, errors="coerce")
        integral = spec.type in ("double", "float") or bool((converted.dropna() % 1 == 0).all())
        if not converted.isna().any() and integral:
            return converted.astype(COLUMN_TYPES[spec.type])
    if actual in ("float", "double") and spec.type in ("long", "integer"):
        missing = np.flatnonzero(column.isna().to_numpy())
        if missing.size:  # the usual cause: integers with a gap, read from CSV or JSON
            raise InvalidArgument(
                f"column {spec.name!r} has a missing value (NaN at position {missing[0]}), which "
                f"a {spec.type} column cannot hold; fill it before calling predict, or log the "
                "model from an example with missing values there (the column is then double)",
                field=spec.name,
            )
        return _whole_numbers(spec, actual, column)
    raise InvalidArgument(
        f"column {spec.name!r} has type {actual}, but the model expects {spec.type}; convert it "
        "before calling predict",
        field=spec.name,
    )


def _whole_numbers(spec: ColumnSpec, actual: str, column: pd.Series) -> pd.Series:
    """A float column whose values are all whole numbers (17.0: an id JSON or a float column
    carried) as the integer type the signature says, as integral text already is; a value
    that is not one (17.5), or beyond that type, is refused naming the column and the value."""
    values = column.to_numpy()
    expected = np.dtype(COLUMN_TYPES[spec.type])
    info = np.iinfo(expected)
    with np.errstate(invalid="ignore"):
        bad = (
            ~np.isfinite(values)
            | (values % 1 != 0)
            | (values < info.min)
            | (values >= float(info.max) + 1)
        )
    if bad.any():
        shown = ", ".join(repr(float(v)) for v in pd.unique(values[bad])[:3])
        raise InvalidArgument(
            f"column {spec.name!r} has type {actual}, and {int(bad.sum())} value(s) are no "
            f"whole number a {spec.type} ({expected}) holds: {shown}; the model expects "
            f"{spec.type}: send whole numbers (17 or 17.0)",
            field=spec.name,
        )
    return column.astype(expected)


def _signed(spec: ColumnSpec, column: pd.Series) -> pd.Series:
    """An unsigned column (UINT64, UINT32 from OIP) as the signed type the signature says, or
    InvalidArgument naming a value beyond it: it reached the model unsigned, past int64's max."""
    expected = np.dtype(COLUMN_TYPES[spec.type])
    limit = np.iinfo(expected).max
    if len(column) and int(column.max()) > limit:
        raise InvalidArgument(
            f"column {spec.name!r} holds {int(column.max())}, beyond the model's {spec.type} "
            f"({expected}, at most {limit}); send values within it",
            field=spec.name,
        )
    return column.astype(expected)


def _changed_by_cast(array: np.ndarray, expected: np.dtype) -> str:
    """What numpy's "safe" cast would silently change, said for the user ("" for nothing).
    It takes booleans as numbers (Triton and KServe refuse BOOL for an FP64 input) and integers
    into floats whose mantissa cannot hold them (2**53 + 1 becomes 2**53 in float64)."""
    if array.dtype.kind == "b" and expected.kind != "b":
        return "true/false flags, not numbers"
    if array.dtype.kind in "iu" and expected.kind in "fc" and array.size:
        limit = 2 ** (np.finfo(expected).nmant + 1)
        if int(array.min()) < -limit or int(array.max()) > limit:
            bits = np.finfo(expected).nmant + 1
            return f"with integers beyond +-2**{bits}, which {expected} would round"
    return ""


def cast_tensor(array: np.ndarray, expected: np.dtype, field: str) -> np.ndarray:
    """`array` as the numeric dtype a tensor input expects, or InvalidArgument (naming `field`)
    where the cast is not safe or would change values."""
    if array.dtype == expected:
        return array
    if not np.can_cast(array.dtype, expected, casting="safe"):
        raise InvalidArgument(
            f"the tensor has dtype {array.dtype}; the model expects {expected}", field=field
        )
    changed = _changed_by_cast(array, expected)
    if changed:
        raise InvalidArgument(
            f"the tensor has dtype {array.dtype}, {changed}; the model expects "
            f"{expected}: convert the values yourself if that is what you mean",
            field=field,
        )
    return array.astype(expected)


def _enforce_tensor(spec: TensorSpec, array: np.ndarray) -> np.ndarray:
    expected = np.dtype(spec.dtype)
    if expected.kind in _STRING_KINDS:  # texts of any length (older packages: "<U12")
        text = str if expected.kind == "U" else bytes
        if array.dtype == object and all(isinstance(v, text) for v in array.ravel()):
            array = array.astype(expected.kind)
        if array.dtype.kind != expected.kind:
            raise InvalidArgument(
                f"the tensor has dtype {array.dtype}; the model expects {spec.dtype} texts",
                field=spec.name or "inputs",
            )
    else:
        array = cast_tensor(array, expected, spec.name or "inputs")
    if len(array.shape) != len(spec.shape) or any(
        want not in (-1, got) for want, got in zip(spec.shape, array.shape, strict=True)
    ):
        raise InvalidArgument(
            f"the tensor has shape {list(array.shape)}; the model expects {list(spec.shape)} "
            "(-1 is any size)",
            field=spec.name or "inputs",
        )
    return array
