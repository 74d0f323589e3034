"""The online store interface, and choosing a backend from its URI.

Rows are keyed by (feature view's online name, entity key), the online name being the view's name
and generation (see online_name); an entity key is the JSON of the view's join key
values in join-key order. A write only replaces a stored row that is not newer, by the order
training sets pick rows in (event time, then created time), so materializing an old window after a
fresh push never goes back in time, and online serves the row a training set would take.

A partial write (a push of some of a view's features) updates only the features it sends, as
Feast's online stores do; the others keep their stored values. A row has one event time, that of
its latest write, so the kept values are served with it (Feast's Redis store keeps one
`_ts:<view>` per entity likewise): a view's TTL counts from the entity's latest write. A write
older than the stored row is dropped whole, its sent features included.
"""

from __future__ import annotations

import abc
import base64
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from modelyard.errors import InvalidArgument
from modelyard.features.definitions import Field, ValueType

# Microseconds from 1970 to 0001-01-01, the first instant a datetime holds.
_MIN_US = -62_135_596_800_000_000


@dataclass(frozen=True)
class OnlineRow:
    """`tiebreak` orders rows of the same `event_time_ms` (see `row_order`); rows stored before
    it existed have "", which sorts first."""

    entity_key: str
    values: dict[str, Any]
    event_time_ms: int
    tiebreak: str = ""

    @property
    def order(self) -> tuple[int, str]:
        return self.event_time_ms, self.tiebreak


def merge_all(rows: Sequence[OnlineRow], stored: dict[str, OnlineRow]) -> list[OnlineRow]:
    """What a partial write of `rows` stores over `stored` (the stored rows by key): each row's
    values over its key's stored ones, at the row's own time; a row older than its key's stored
    row is dropped. `stored` is updated as it goes, so a key's later row merges over its
    earlier one."""
    out = []
    for row in rows:
        before = stored.get(row.entity_key)
        if before is not None:
            if row.order < before.order:
                continue
            row = replace(row, values={**before.values, **row.values})
        stored[row.entity_key] = row
        out.append(row)
    return out


def row_order(event_us: int, created_us: int | None) -> tuple[int, str]:
    """(event time in ms, tiebreak) for a row with these times (µs since 1970): ordered as the
    offline side orders rows (by event time to the µs, then by created time, none first). The
    ms are floored (toward the earlier ms, as DuckDB's epoch_ms does); the tiebreak is text of
    fixed width, the sub-ms µs then the created time, so that both stores compare it as text."""
    ms, sub = divmod(event_us, 1000)
    if created_us is None:
        return ms, f"{sub:03d}"
    return ms, f"{sub:03d}{created_us - _MIN_US:018d}"


def row_orders(event_us: pa.Array, created_us: pa.Array | None) -> tuple[list[int], list[str]]:
    """`row_order` of each row (event times without nulls; created times None where null), in
    Arrow's and numpy's passes rather than a Python call per row: materialize takes it of every
    entity of a view."""
    events = np.asarray(event_us.to_numpy(zero_copy_only=False), dtype=np.int64)
    ms, sub = np.divmod(events, 1000)  # floored, as row_order's divmod
    tiebreaks = pc.utf8_lpad(pa.array(sub).cast(pa.string()), 3, "0")
    if created_us is not None and created_us.null_count < len(created_us):
        if pc.min(created_us).as_py() < _MIN_US:  # no fixed width: row_order's own text
            orders = map(row_order, events.tolist(), created_us.to_pylist())
            times, ties = zip(*orders, strict=True)
            return list(times), list(ties)
        created = pc.subtract(created_us.cast(pa.int64()), pa.scalar(_MIN_US, pa.int64()))
        padded = pc.utf8_lpad(created.cast(pa.string()), 18, "0")
        tiebreaks = pc.binary_join_element_wise(tiebreaks, pc.fill_null(padded, ""), "")
    return ms.tolist(), tiebreaks.to_pylist()


def online_name(view: str, generation: int) -> str:
    """What the online store keys a view's rows by: its name and generation (see
    store.schema.definitions), so a view created again under a deleted one's name never reads
    rows the delete left. "@" is in no view's name; generation 0 is the layout rows were stored
    in before generations, the name alone, so they keep being read."""
    return f"{view}@{generation}" if generation else view


def entity_key(values: Sequence[Any]) -> str:
    """The key of one entity row's join key values, already canonical (see entity_keys)."""
    return orjson.dumps(list(values), default=str).decode()


class _NotKey(Exception):
    pass


def _whole(value: Any, bits: int) -> int:
    if isinstance(value, float) and value.is_integer():  # a source's 3.0 for an integer key
        value = int(value)
    if type(value) is not int or not -(2 ** (bits - 1)) <= value < 2 ** (bits - 1):
        raise _NotKey
    return value


def _real(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _NotKey
    return float(value)


def _float32(value: Any) -> float:
    """The shortest decimal of the nearest float32, so that 0.1 and the float32 0.1 read back as
    0.10000000149 are one key."""
    narrowed = np.float32(_real(value))
    if not np.isfinite(narrowed):
        raise _NotKey
    return float(str(narrowed))


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if type(value) is int:  # a source's integer column for a STRING key
        return str(value)
    raise _NotKey


def _moment(value: Any) -> datetime:
    """In UTC as a plain datetime (pandas' Timestamp serializes otherwise); a time without an
    offset is taken as UTC, as the offline side reads it."""
    if not isinstance(value, datetime):
        raise _NotKey
    v = value.astimezone(UTC) if value.tzinfo else value
    return datetime(v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond, UTC)


def _exactly(kind: type) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        if type(value) is not kind:
            raise _NotKey
        return value

    return convert


_CANONICAL: dict[ValueType, Callable[[Any], Any]] = {
    ValueType.INT32: lambda v: _whole(v, 32),
    ValueType.INT64: lambda v: _whole(v, 64),
    ValueType.FLOAT32: _float32,
    ValueType.FLOAT64: _real,
    ValueType.STRING: _text,
    ValueType.BOOL: _exactly(bool),
    ValueType.BYTES: _exactly(bytes),
    ValueType.UNIX_TIMESTAMP: _moment,
}


# The kinds of column that hold keys of each declared join key type, as `_CANONICAL` takes
# them: for the offline side (training joins, pushes), which looks at a column's type rather
# than each value. A real number is a key of an integer type only where whole.
KEY_KINDS: dict[ValueType, frozenset[str]] = {
    ValueType.INT32: frozenset({"integer", "real"}),
    ValueType.INT64: frozenset({"integer", "real"}),
    ValueType.FLOAT32: frozenset({"integer", "real"}),
    ValueType.FLOAT64: frozenset({"integer", "real"}),
    ValueType.STRING: frozenset({"text", "integer"}),
    ValueType.BOOL: frozenset({"bool"}),
    ValueType.BYTES: frozenset({"bytes"}),
    ValueType.UNIX_TIMESTAMP: frozenset({"time"}),
}


def _canonical_already(dtype: ValueType, values: Sequence[Any]) -> bool:
    """Whether a column is canonical as it is: the common case on the lookup path, checked in
    C-speed passes rather than a call per value."""
    if dtype in (ValueType.INT64, ValueType.INT32):
        bits = 64 if dtype == ValueType.INT64 else 32
        return (
            all(type(v) is int for v in values)
            and -(2 ** (bits - 1)) <= min(values, default=0)
            and max(values, default=0) < 2 ** (bits - 1)
        )
    if dtype == ValueType.STRING:
        return all(type(v) is str for v in values)
    if dtype == ValueType.FLOAT64:
        return all(type(v) is float for v in values) and all(map(math.isfinite, values))
    return False


def entity_keys(fields: Sequence[Field], columns: Sequence[Sequence[Any]]) -> list[str]:
    """The online key of each entity row: the join key values made the canonical value of each
    key's declared type, on write (push, materialize) and on lookup alike, so that a key reads
    back however the source or the caller typed it (1 and 1.0 for a FLOAT64 key, 7 and "7" for
    a STRING one). Raises InvalidArgument naming the key of a value that cannot be its type."""
    canonical = []
    for field, values in zip(fields, columns, strict=True):
        if _canonical_already(field.dtype, values):
            canonical.append(values)
            continue
        convert = _CANONICAL[field.dtype]
        out = []
        for value in values:
            try:
                out.append(convert(value.item() if isinstance(value, np.generic) else value))
            except _NotKey:
                raise InvalidArgument(
                    f"join key {field.name!r} is {field.dtype}; got {type(value).__name__} value "
                    f"{value!r}, which is not one",
                    field=field.name,
                ) from None
        canonical.append(out)
    return [entity_key(row) for row in zip(*canonical, strict=True)]


def _json_value(value: Any) -> Any:
    """What JSON lacks: bytes go in as base64 text, other timestamps (orjson writes datetimes
    itself) as ISO text; modelyard.convert.features reads both back by the feature's type."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _dumps(data: Any) -> bytes:
    return orjson.dumps(data, default=_json_value, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_values(values: dict[str, Any]) -> str:
    """The values as a JSON object; JSON has no NaN or infinity (orjson writes them as null), so
    a row holding one is [object, {feature: "nan" | "inf" | "-inf"}] instead, which
    decode_values reads back. Only a row with a null is looked through for them."""
    data = _dumps(values)
    if b"null" in data:
        odd = {
            k: str(float(v))
            for k, v in values.items()
            if isinstance(v, float | np.floating) and not math.isfinite(v)
        }
        if odd:
            data = _dumps([values, odd])
    return data.decode()


def decode_values(data: str | bytes) -> dict[str, Any]:
    values = orjson.loads(data)
    if type(values) is list:  # see encode_values
        values, odd = values
        for feature, text in odd.items():
            values[feature] = float(text)
    return values


class OnlineStore(abc.ABC):
    """Each method's `view` is a view's online name (online_name), not its bare name."""

    @abc.abstractmethod
    def write(self, view: str, rows: Sequence[OnlineRow], partial: bool = False) -> int:
        """Store each row unless the stored one is newer (by `order`: a tie goes to the row
        written); returns how many rows were offered. `partial`: the rows hold some of the
        view's features, and a stored row keeps its values of the others (see the module)."""

    @abc.abstractmethod
    def read(self, view: str, keys: Sequence[str]) -> list[tuple[dict[str, Any], int] | None]:
        """(values, event time ms) per key, None where nothing is stored."""

    @abc.abstractmethod
    def delete_view(self, view: str) -> None:
        """Delete the rows of `view` (an online name): those of that generation only."""

    def close(self) -> None:
        """Release connections."""


def open_online_store(uri: str) -> OnlineStore:
    scheme = urlparse(uri).scheme
    if scheme == "sqlite":
        from modelyard.services.feature_store.online.sqlite import SqliteOnlineStore

        return SqliteOnlineStore(uri)
    if scheme in ("redis", "rediss"):
        from modelyard.services.feature_store.online.redis import RedisOnlineStore

        return RedisOnlineStore(uri)
    raise InvalidArgument(
        f"unsupported online store {uri!r}; use sqlite:///path.db or redis://host:6379/0",
        field="features.online_store_uri",
    )
