"""The online store interface, and choosing a backend from its URI.

Rows are keyed by (feature view, entity key); an entity key is the JSON of the view's join key
values in join-key order. A write only replaces a stored row that is older (by event time), so
materializing an old window after a fresh push never goes back in time.
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


@dataclass(frozen=True)
class OnlineRow:
    entity_key: str
    values: dict[str, Any]
    event_time_ms: int


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
        """Store rows newer than what is stored; returns how many rows were offered."""

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
