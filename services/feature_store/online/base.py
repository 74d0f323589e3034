"""The online store interface, and choosing a backend from its URI.

Rows are keyed by (feature view, entity key); an entity key is the JSON of the view's join key
values in join-key order. A write only replaces a stored row that is not newer, by the order
training sets pick rows in (event time, then created time), so materializing an old window after a
fresh push never goes back in time, and online serves the row a training set would take.
"""

from __future__ import annotations

import abc
import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import orjson

from modelyard.errors import InvalidArgument

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


def row_order(event_us: int, created_us: int | None) -> tuple[int, str]:
    """(event time in ms, tiebreak) for a row with these times (µs since 1970): ordered as the
    offline side orders rows (by event time to the µs, then by created time, none first). The
    ms are floored (toward the earlier ms, as DuckDB's epoch_ms does); the tiebreak is text of
    fixed width, the sub-ms µs then the created time, so that both stores compare it as text."""
    ms, sub = divmod(event_us, 1000)
    if created_us is None:
        return ms, f"{sub:03d}"
    return ms, f"{sub:03d}{created_us - _MIN_US:018d}"


def entity_key(values: Sequence[Any]) -> str:
    return orjson.dumps(list(values), default=str).decode()


def _json_value(value: Any) -> Any:
    """What JSON lacks: bytes go in as base64 text, other timestamps (orjson writes datetimes
    itself) as ISO text; modelyard.convert.features reads both back by the feature's type."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def encode_values(values: dict[str, Any]) -> str:
    return orjson.dumps(values, default=_json_value, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def decode_values(data: str | bytes) -> dict[str, Any]:
    return orjson.loads(data)


class OnlineStore(abc.ABC):
    @abc.abstractmethod
    def write(self, view: str, rows: Sequence[OnlineRow]) -> int:
        """Store each row unless the stored one is newer (by `order`: a tie goes to the row
        written); returns how many rows were offered."""

    @abc.abstractmethod
    def read(self, view: str, keys: Sequence[str]) -> list[tuple[dict[str, Any], int] | None]:
        """(values, event time ms) per key, None where nothing is stored."""

    @abc.abstractmethod
    def delete_view(self, view: str) -> None: ...

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
