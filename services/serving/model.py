"""A loaded model version: how protocol tensors become model input, and predictions tensors.

Tabular models (a signature of named columns) take one tensor per column, or one 2-D tensor with
the columns in signature order; tensor models take their single tensor. The signature is enforced
on every request, so a missing column or an unsafe type is INVALID_ARGUMENT naming the input.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from modelyard.convert.tensors import BY_DTYPE
from modelyard.entities.serving import MissingFeaturePolicy
from modelyard.errors import Internal, InvalidArgument, ModelyardError
from modelyard.models.signature import (
    COLUMN_TYPES,
    ColumnSpec,
    TensorSpec,
    cast_tensor,
    enforce,
)
from modelyard.pyfunc import PyFuncModel
from modelyard.services.common.logging import get_logger
from modelyard.services.serving.features import KEY_DATATYPE, FeatureJoin

log = get_logger(__name__)

# How many sets of ignored columns a loaded model logs: bounded, as callers choose the names.
_MAX_IGNORED_SETS = 100

# Signature column type -> protocol datatype.
_COLUMN_DATATYPE = {
    "boolean": "BOOL",
    "integer": "INT32",
    "long": "INT64",
    "float": "FP32",
    "double": "FP64",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}


# What the SDK names an array ("input"), and MLflow's tensor payloads ({"inputs": ...},
# {"instances": ...}): a model logged from an array takes any of them as its one input.
_ARRAY_NAMES = ("input", "inputs", "instances")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    datatype: str
    shape: tuple[int, ...]


def _decoded(values: np.ndarray, name: str) -> np.ndarray:
    """BYTES elements (of any shape) as text; InvalidArgument naming the input where one is no
    UTF-8."""
    try:
        flat = [v.decode() if isinstance(v, bytes) else v for v in values.ravel()]
    except UnicodeDecodeError as exc:
        raise InvalidArgument(
            f"input {name!r}: a value is not UTF-8 text ({exc.reason} at byte {exc.start}); "
            "send text, or log the model with a binary column",
            field=name,
        ) from None
    return np.array(flat, dtype=object).reshape(values.shape)


def _column(values: np.ndarray, spec: ColumnSpec) -> Any:
    """One column's BYTES as the signature's type takes them: binary stays bytes, times are
    read from ISO 8601 text, the rest is text (numbers in it are converted by `enforce`)."""
    if values.dtype != object or spec.type == "binary":
        return values
    text = _decoded(values, spec.name)
    if spec.type != "datetime":
        return text
    try:
        return pd.to_datetime(pd.Series(text), format="ISO8601").to_numpy()
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(
            f"input {spec.name!r}: {exc}; send times as ISO 8601 text (2026-12-06T17:30:00)",
            field=spec.name,
        ) from None


def _columns_as_rows(tensors: dict[str, np.ndarray], spec: Any) -> np.ndarray | None:
    """Tensors that are a table's columns (each 1-D, all as long) side by side, in the order
    sent; None for anything else. Each is first cast to the numeric dtype `spec` (a TensorSpec,
    if the model has a signature) says, naming the column where that would change it: stacked
    as they came, a bool column became 1.0 and an integer beyond 2**53 was rounded."""
    columns = list(tensors.values())
    if any(c.ndim != 1 for c in columns) or len({len(c) for c in columns}) != 1:
        return None
    expected = np.dtype(spec.dtype) if isinstance(spec, TensorSpec) else None
    if expected is not None and expected.kind in "biuf":
        try:
            columns = [cast_tensor(c, expected, name) for name, c in tensors.items()]
        except InvalidArgument as exc:  # named as the request named it
            raise InvalidArgument(f"input {exc.field!r}: {exc.message}", field=exc.field) from None
    return np.column_stack(columns)


class LoadedModel:
    def __init__(
        self,
        name: str,
        version: int,
        model: PyFuncModel,
        features: FeatureJoin | None = None,
        digest: str = "",
    ) -> None:
        self.name = name
        self.version = version
        self.digest = digest  # of the version's files: what tells two models of one name apart
        self.model = model
        # Set for models trained from a feature service: requests carry entity keys.
        self.features = features
        self.signature = model.signature
        columns = [
            s
            for s in (self.signature.inputs if self.signature else ())
            if isinstance(s, ColumnSpec)
        ]
        self.columns: list[ColumnSpec] = (
            columns if self.signature and self.signature.is_tabular else []
        )
        self._names = [c.name for c in self.columns]
        self._index = pd.Index(self._names)  # built once, not per request
        # Sent, though not a column: the entity keys its features are looked up by.
        self._expected = frozenset(self._names) | frozenset(
            k.name for k in (features.join_keys if features else ())
        )
        self._ignored: set[tuple[str, ...]] = set()  # column sets already logged as ignored
        self._ignored_lock = threading.Lock()
        self._numeric_dtype = (
            np.dtype(COLUMN_TYPES[self.columns[0].type])
            if self.columns
            and len({c.type for c in self.columns}) == 1
            and self.columns[0].type in ("double", "float", "long", "integer")
            else None
        )
        # All-numeric tables go to the model as one array when the flavor can take it (for
        # scikit-learn: checked on the input example to give the same answers as a DataFrame).
        self._array_predict = None
        for_arrays = getattr(model._impl, "for_arrays", None)
        if self._numeric_dtype is not None and for_arrays is not None:
            example = model.input_example()
            self._array_predict = for_arrays(
                self._names, example if isinstance(example, pd.DataFrame) else None
            )
        self._array_ok = self._array_predict is not None

    # -- tensors -> model input ----------------------------------------------------------------

    def to_input(
        self,
        tensors: dict[str, np.ndarray],
        missing_features: MissingFeaturePolicy = MissingFeaturePolicy.FAIL,
        table: bool = False,
    ) -> Any:
        """The model input for one request (with its online features joined in, for a model
        trained from a feature service), validated against the signature. `table`: the tensors
        are a DataFrame's columns (the request said so: content_type "pd"), whatever their
        names; a model logged from an array takes them as MLflow's pyfunc takes a frame."""
        if self.features is not None:
            tensors = self.features.join(tensors, missing_features)
        if self.columns:
            return self._table(tensors)
        spec = self.signature.inputs[0] if self.signature else None
        if table and len(tensors) == 1:
            # One column: its values are the array (shaped [rows, 1] if the model says so).
            ((_name, array),) = tensors.items()
            shape = getattr(spec, "shape", ())
            tensors = {"inputs": array[:, None] if array.ndim == 1 and shape == (-1, 1) else array}
        elif len(tensors) > 1 and (rows := _columns_as_rows(tensors, spec)) is not None:
            # A table's columns (a DataFrame, one tensor each) for a model logged from an array:
            # its rows are the array, as MLflow's pyfunc takes a frame for a tensor model.
            self._check_columns(list(tensors), spec)
            tensors = {"inputs": rows}
        if len(tensors) != 1:
            raise InvalidArgument(
                f"model {self.name} takes one input tensor (it was logged from an array, not a "
                f"table), got {len(tensors)}: {sorted(tensors)}; send the rows as one tensor, "
                "e.g. predict(endpoint, frame.to_numpy()) from the SDK",
                field=getattr(spec, "name", None) or "input",
            )
        ((name, array),) = tensors.items()
        if self.signature is not None:
            spec = self.signature.inputs[0]
            if isinstance(spec, TensorSpec):
                self._check_name(name, spec)
            if array.dtype == object and isinstance(spec, TensorSpec) and spec.takes_text:
                array = _decoded(array, name)
            try:
                return enforce(self.signature, array)
            except InvalidArgument as exc:  # named as the request named it
                raise InvalidArgument(f"input {name!r}: {exc.message}", field=name) from None
        return array

    def _check_columns(self, sent: list[str], spec: Any) -> None:
        """Refuse a table whose column count is not the model's array's width, naming the
        columns sent and the input they were for: stacked, they were refused as an input
        'inputs' of the wrong shape, an input no model has."""
        if not isinstance(spec, TensorSpec) or len(spec.shape) not in (1, 2):
            return
        width = 1 if len(spec.shape) == 1 or spec.shape[1] == 1 else spec.shape[1]
        if width in (-1, len(sent)):
            return
        what = (
            "one column"
            if width == 1
            else f"{width} columns (in the order of the array it was trained on)"
        )
        name = spec.name or "input"
        raise InvalidArgument(
            f"model {self.name} takes {what}: its one input {name!r} is a tensor "
            f"({BY_DTYPE.get(spec.dtype, 'BYTES')}, shape {list(spec.shape)}), and the request "
            f"sent {len(sent)} columns {sent}; send only "
            + (
                f"the column it was trained on, as a one-column frame (frame[[{sent[0]!r}]])"
                if width == 1
                else what
            ),
            field=name,
        )

    def _check_name(self, name: str, spec: TensorSpec) -> None:
        """Refuse a tensor named as the model's input is not (Triton's "unexpected inference
        input"): it was served as if it were the input. The name the metadata gives, and the
        names MLflow's payloads and the SDK give an array, are the input."""
        expected = spec.name or "input"
        if name in (expected, *_ARRAY_NAMES):
            return
        raise InvalidArgument(
            f"model {self.name} has no input {name!r}; it takes one tensor {expected!r} "
            f"({BY_DTYPE.get(spec.dtype, 'BYTES')}, shape {list(spec.shape)}): send it under "
            "that name",
            field=name,
        )

    def _table(self, tensors: dict[str, np.ndarray]) -> Any:
        names = self._names
        if len(tensors) == 1 and next(iter(tensors)) not in names:
            ((name, array),) = tensors.items()
            if array.ndim != 2 or array.shape[1] != len(names):
                raise InvalidArgument(
                    f"input {name!r} has shape {list(array.shape)}; send a [rows, {len(names)}] "
                    f"tensor with columns {names} in order, or one tensor per column",
                    field=name,
                )
            if self._array_ok and array.dtype == self._numeric_dtype:
                return array  # already exactly what the model takes
            if array.dtype == object:
                frame = pd.DataFrame(
                    {c.name: _column(array[:, j], c) for j, c in enumerate(self.columns)}
                )
            else:
                frame = pd.DataFrame(array, columns=self._index)
        else:
            missing = [c.name for c in self.columns if c.required and c.name not in tensors]
            if missing:
                raise InvalidArgument(
                    f"input is missing column {missing[0]!r}; the model takes {names}",
                    field=missing[0],
                )
            data = {}
            rows = None
            for spec in self.columns:
                n = spec.name
                if n not in tensors:
                    continue  # an optional column
                column = tensors[n]
                if column.ndim == 2 and column.shape[1] == 1:
                    column = column[:, 0]
                if column.ndim != 1:
                    raise InvalidArgument(
                        f"input {n!r} has shape {list(column.shape)}; a column is [rows] or "
                        "[rows, 1]",
                        field=n,
                    )
                if rows is not None and len(column) != rows:
                    raise InvalidArgument(
                        f"input {n!r} has {len(column)} rows, the others {rows}", field=n
                    )
                rows = len(column)
                data[n] = _column(column, spec)
            if len(tensors) > len(data):  # more than the model's columns came
                self._ignoring(tensors)
            if (
                self._array_ok
                and len(data) == len(names)
                and all(c.dtype == self._numeric_dtype for c in data.values())
            ):
                return np.column_stack(list(data.values()))  # the types are already right
            # The index built once, where every column came (no optional one left out).
            frame = pd.DataFrame(data, columns=self._index if len(data) == len(names) else None)
        return self._enforced(frame)

    def _ignoring(self, tensors: dict[str, np.ndarray]) -> None:
        """Columns the signature does not have are dropped, as MLflow's pyfunc drops them (with
        a warning): tables carrying an id or a label column keep working. Logged once per set
        of them, so that a misspelt optional column (left out unnoticed) can be found."""
        extra = tuple(sorted(n for n in tensors if n not in self._expected))
        if not extra:
            return
        with self._ignored_lock:
            if extra in self._ignored or len(self._ignored) >= _MAX_IGNORED_SETS:
                return
            self._ignored.add(extra)
        log.warning(
            "model %s version %s ignores input columns %s: its signature has none of that name "
            "(it takes %s), so requests sending them are answered without them, as MLflow's "
            "pyfunc answers; logged once per set of columns",
            self.name,
            self.version,
            list(extra),
            self._names,
        )

    def _enforced(self, frame: pd.DataFrame) -> Any:
        assert self.signature is not None
        checked = enforce(self.signature, frame)
        return checked.to_numpy() if self._array_ok else checked

    # -- prediction ----------------------------------------------------------------------------

    def predict(self, model_input: Any) -> dict[str, np.ndarray]:
        """Named output arrays, first dimension = rows."""
        impl = self.model._impl
        try:
            if self._array_predict is not None and isinstance(model_input, np.ndarray):
                result = self._array_predict(model_input)
            else:
                result = impl.predict(model_input)
        except ModelyardError:
            raise
        # The model's own code failed: say so, without a traceback. BaseException too: a
        # sys.exit() in a preprocessing step must answer the call, not leave it hanging.
        except BaseException as exc:
            limit = float(np.finfo(np.float32).max) if _BEYOND_FLOAT32.search(str(exc)) else np.inf
            if _about_non_finite(exc) and (found := self._non_finite(model_input, limit)):
                raise self._refused_values(*found, exc) from None
            raise Internal(
                f"model {self.name} version {self.version} failed to predict: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        try:
            if isinstance(result, pd.DataFrame):
                outputs = {str(c): result[c].to_numpy() for c in result.columns}
            elif isinstance(result, pd.Series):
                outputs = {str(result.name or self.output_name): result.to_numpy()}
            elif isinstance(result, dict):
                outputs = {str(k): np.asarray(v) for k, v in result.items()}
            else:
                outputs = {self.output_name: np.asarray(result)}
        except (ValueError, TypeError) as exc:  # ragged lists, say
            raise Internal(
                f"model {self.name} version {self.version} returned {type(result).__name__} "
                f"that is no tensor ({exc}); return an array, a DataFrame or a dict of arrays"
            ) from None
        return {name: _sendable(array) for name, array in outputs.items()}

    def _non_finite(self, model_input: Any, limit: float = np.inf) -> tuple[str, int, float] | None:
        """The first NaN or infinity (or value beyond +-`limit`) in the input: its column or
        tensor, row and value; None if it holds none. Looked for only once the model has
        failed, so answers cost nothing."""
        if isinstance(model_input, pd.DataFrame):
            named = [(str(c), model_input[c].to_numpy()) for c in model_input.columns]
        elif (array := np.asarray(model_input)).ndim == 2 and self.columns:
            named = [(n, array[:, j]) for j, n in enumerate(self._names)]  # a table's columns
        else:
            spec = self.signature.inputs[0] if self.signature else None
            named = [(getattr(spec, "name", None) or "input", array)]
        for name, values in named:
            if values.dtype.kind != "f" or values.ndim == 0:
                continue
            per_row = values.reshape(len(values), -1)
            refused = ~np.isfinite(per_row)
            if limit < np.inf:
                refused |= np.abs(per_row, where=~refused, out=np.zeros_like(per_row)) > limit
            bad = np.flatnonzero(refused.any(axis=1))
            if bad.size:
                return name, int(bad[0]), float(per_row[bad[0]][refused[bad[0]]][0])
        return None

    def _refused_values(
        self, name: str, row: int, value: float, exc: BaseException
    ) -> InvalidArgument:
        """The model refused values the caller sent (scikit-learn's "Input X contains NaN"): the
        caller's to fix, named, where a failure on finite values stays the model's (INTERNAL)."""
        said = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if np.isfinite(value):
            what = f"{value:g}, beyond the float32 range the model computes in (+-3.4e38)"
            fix = "send values within it (scale them)"
        else:
            what = "NaN" if np.isnan(value) else "infinity"
            fix = (
                "replace missing or infinite values before sending (impute them), or serve a "
                "model that accepts NaN (such as scikit-learn's HistGradientBoosting)"
            )
        return InvalidArgument(
            f"input {name!r} holds {what} (row {row}), which model {self.name} version "
            f"{self.version} refuses ({type(exc).__name__}: {said}); {fix}",
            field=name,
        )

    @property
    def output_name(self) -> str:
        outputs = self.signature.outputs if self.signature else ()
        if len(outputs) == 1 and outputs[0].name:
            return str(outputs[0].name)
        return "predictions"

    # -- metadata ------------------------------------------------------------------------------

    def inputs_metadata(self) -> list[TensorInfo]:
        if self.features is not None:  # the keys, and whatever the feature store does not give
            looked_up = {f.name for f in self.features.features}
            return [
                TensorInfo(k.name, KEY_DATATYPE[k.dtype], (-1,)) for k in self.features.join_keys
            ] + [
                TensorInfo(c.name, _COLUMN_DATATYPE[c.type], (-1,))
                for c in self.columns
                if c.name not in looked_up
            ]
        if self.columns:
            return [TensorInfo(c.name, _COLUMN_DATATYPE[c.type], (-1,)) for c in self.columns]
        specs = self.signature.inputs if self.signature else ()
        return [
            TensorInfo(s.name or "input", BY_DTYPE.get(s.dtype, "BYTES"), tuple(s.shape))
            for s in specs
            if isinstance(s, TensorSpec)
        ]

    @property
    def batchable(self) -> bool:
        """Whether every input and output has rows first (-1), so that requests are batches
        along it: always for tables, for tensors as their signature says; never for a model
        without a signature, which says nothing of its tensors."""
        inputs = self.inputs_metadata()
        return bool(inputs) and all(t.shape[:1] == (-1,) for t in inputs + self.outputs_metadata())

    @property
    def merges_requests(self) -> bool:
        """Whether concurrent requests may run as one model call. Not when the signature gives
        a tensor a fixed first dimension (a sequence of steps, an image): two requests merged
        would be one input of another meaning, whose answer can even have the right number of
        rows. A model without a signature is merged (the batcher stops once its answers' rows
        do not match)."""
        return self.signature is None or self.batchable

    def optional_inputs(self) -> set[str]:
        """Columns a request may leave out."""
        return {c.name for c in self.columns if not c.required}

    def outputs_metadata(self) -> list[TensorInfo]:
        outputs = self.signature.outputs if self.signature else ()
        infos = []
        for s in outputs:
            if isinstance(s, ColumnSpec):
                infos.append(TensorInfo(self.output_name, _COLUMN_DATATYPE[s.type], (-1,)))
            else:
                infos.append(
                    TensorInfo(
                        s.name or self.output_name,
                        BY_DTYPE.get(s.dtype, "BYTES"),
                        tuple(s.shape),
                    )
                )
        return infos


# Exception types that are, by their library's own account, a refusal of missing or non-finite
# values, whatever their words: pandas' IntCastingNaNError (a float column with NaN cast to
# int), statsmodels' MissingDataError ("exog contains inf or nans", not a ValueError), named by
# module so statsmodels (a second to import) is never imported here.
_NON_FINITE_TYPES = (pd.errors.IntCastingNaNError,)
_NON_FINITE_TYPE_NAMES = {("statsmodels.tools.sm_exceptions", "MissingDataError")}

# How other libraries word the refusal, in ValueErrors (and OverflowError, Python's for
# int(inf)): each phrase whole, as the words alone ("nan", "inf", "missing values") turn up in
# a model's own faults too, which must stay INTERNAL (a server fault to report) though the
# request holds a NaN. A library not listed answers INTERNAL: add its phrase here.
_REFUSAL_PHRASES = re.compile(
    "|".join(
        (
            # scikit-learn: "Input X contains NaN.", "Input contains infinity or a value too
            # large for dtype('float64')."
            r"\bInput (?:\w+ )?contains (?:NaN|infinity)\b",
            # xgboost's DMatrix (its predict and lightgbm's take NaN as missing, inf as a value)
            r"\bInput data contains `inf`",
            # numpy's asarray_chkfinite (scipy.linalg and others) and numpy.linalg
            r"\b[Aa]rray must not contain infs or NaNs\b",
            # Python's int() of a float (numpy's casts of one value)
            r"\bcannot convert float (?:NaN|infinity) to integer\b",
            # pandas: nullable integers, and nullable arrays to numpy
            r"\bcannot convert NA to integer\b",
            r"\bcannot convert to '\w+'-dtype NumPy array with missing values\b",
        )
    )
)

# scikit-learn's trees and xgboost compute in float32 and refuse a finite value beyond it in the
# same words as infinity ("Input X contains infinity or a value too large for dtype('float32')",
# "Input data contains `inf` or a value too large").
_BEYOND_FLOAT32 = re.compile(r"value too large(?! for dtype\('float64'\))")


def _about_non_finite(exc: BaseException) -> bool:
    """Whether the model's failure is its refusal of NaN or infinity (a type its library
    raises for that alone, or a ValueError in a library's own words for it), rather than a
    fault of its own code. The values must also be in the request for it to be answered as
    the caller's."""
    if isinstance(exc, _NON_FINITE_TYPES) or any(
        (c.__module__, c.__qualname__) in _NON_FINITE_TYPE_NAMES for c in type(exc).__mro__
    ):
        return True
    return isinstance(exc, (ValueError, OverflowError)) and bool(_REFUSAL_PHRASES.search(str(exc)))


def _sendable(array: np.ndarray) -> np.ndarray:
    """Times as ISO 8601 text (the protocol has no time type), as a JSON answer would carry
    them; everything else as it is."""
    if array.dtype.kind == "M":
        return np.datetime_as_string(array).astype(object)
    if array.dtype.kind == "m":
        return np.array([str(v) for v in array.ravel()], dtype=object).reshape(array.shape)
    return array


def rows(model_input: Any) -> int:
    return len(model_input)


def batch_key(model_input: Any) -> tuple[Any, ...]:
    """What requests must share to be batched as one model call: their columns and types (a
    table), or their dtype and row shape (an array). Merging others would change an answer: a
    column one request left out would reach the model as NaN, an array would be upcast."""
    if isinstance(model_input, pd.DataFrame):
        # Half the cost of pairing them through dtypes.items() (45 against 93 us, 4 columns).
        return (tuple(model_input.columns), tuple(model_input.dtypes.tolist()))
    array = np.asarray(model_input)
    return (array.dtype.str, array.shape[1:])


def concat(parts: list[Any]) -> Any:
    if isinstance(parts[0], pd.DataFrame):
        return pd.concat(parts, ignore_index=True)
    return np.concatenate(parts, axis=0)
