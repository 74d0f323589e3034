"""RedisOnlineStore: the production store. One string per (view's online name, entity key), under
"<prefix>:<online name>:<entity key>" (the online name holds the view's generation, see
base.online_name, so deleting a view drops one exact prefix), holding
"<event time ms>|<tiebreak>|<values JSON>" (rows written before the tiebreak existed hold
"<event time ms>|<values JSON>", whose JSON starts with "{"); a server-side script keeps only
values not older (see OnlineRow.order), atomically (a partial write merges in a WATCHed
transaction instead), and reads are one MGET (plain strings, not hashes, so no script runs on
the read path).

`redis://host:6379/0?prefix=team-a` puts keys under `team-a:` (default `modelyard:online`), so
several deployments can share one Redis.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

from modelyard.errors import FailedPrecondition, ModelyardError, Unavailable
from modelyard.services.feature_store.online.base import (
    OnlineRow,
    OnlineStore,
    decode_values,
    encode_values,
    merge_all,
)

# KEYS: the rows' keys; ARGV: per row, values JSON, event time, tiebreak. Writes each row only if
# its (event time, tiebreak) is not older than the stored one's; the tiebreak is digits of fixed
# width, so compared as text (a stored row without one has ""). A key that holds something else
# (an older Modelyard kept rows as hashes) makes GET fail: it is replaced. Many rows a call: a
# call per row spent more time packing commands in Python than Redis spent running them.
_WRITE_IF_NEWER = """
for i, key in ipairs(KEYS) do
  local at = (i - 1) * 3
  local new, tiebreak_new = tonumber(ARGV[at + 2]), ARGV[at + 3]
  local stored = redis.pcall('GET', key)
  local older = true
  if type(stored) == 'string' then
    local t, tiebreak = string.match(stored, '^(-?%d+)|(%d*)|')
    if not t then
      t, tiebreak = string.match(stored, '^(-?%d+)|'), ''
    end
    t = tonumber(t)
    if t and (t > new or (t == new and tiebreak > tiebreak_new)) then older = false end
  end
  if older then
    redis.call('SET', key, ARGV[at + 2] .. '|' .. tiebreak_new .. '|' .. ARGV[at + 1])
  end
end
return #KEYS
"""
# Rows a script call writes: Redis runs nothing else meanwhile, so a call is kept short.
_ROWS_PER_CALL = 500
_PREFIX = "modelyard:online"


# What redis-py raises when Redis cannot be reached (refused, reset, timed out).
_DOWN = (redis.ConnectionError, redis.TimeoutError)


def _unreachable(exc: Exception) -> ModelyardError:
    """A Redis that cannot be reached, as Unavailable (the caller may retry), not INTERNAL;
    one that refuses the credentials, as the operator's to fix (no retry will help)."""
    if isinstance(exc, redis.AuthenticationError):
        return FailedPrecondition(
            f"the online store's Redis refused the credentials it was given ({exc}); set the "
            "right user and password in features.online_store_uri "
            "(redis://USER:PASSWORD@host:6379/0)",
            field="features.online_store_uri",
        )
    return Unavailable(f"the online store's Redis cannot be reached ({exc}); retry once it is back")


# Seconds to wait for Redis to connect or answer, unless the URI says (?socket_timeout=...):
# redis-py waits forever by default, so a Redis that accepts connections and never answers held
# each lookup (and a server thread) until the caller's deadline.
_TIMEOUTS = {"socket_connect_timeout": "5", "socket_timeout": "5"}


@contextmanager
def _reachable() -> Iterator[None]:
    try:
        yield
    except _DOWN as exc:
        raise _unreachable(exc) from None


class RedisOnlineStore(OnlineStore):
    def __init__(self, uri: str) -> None:
        parts = urlsplit(uri)
        query = dict(parse_qsl(parts.query))
        self.prefix = query.pop("prefix", _PREFIX)
        query = {**_TIMEOUTS, **query}
        self._redis = redis.Redis.from_url(urlunsplit(parts._replace(query=urlencode(query))))
        self._write = self._redis.register_script(_WRITE_IF_NEWER)

    def _key(self, view: str, entity_key: str) -> str:
        return f"{self.prefix}:{view}:{entity_key}"

    def write(self, view: str, rows: Sequence[OnlineRow], partial: bool = False) -> int:
        with _reachable():
            return self._write_rows(view, rows, partial)

    def _write_rows(self, view: str, rows: Sequence[OnlineRow], partial: bool) -> int:
        if partial:
            for start in range(0, len(rows), _ROWS_PER_CALL):
                self._write_merged(view, rows[start : start + _ROWS_PER_CALL])
            return len(rows)
        with self._redis.pipeline(transaction=False) as pipe:
            for start in range(0, len(rows), _ROWS_PER_CALL):
                part = rows[start : start + _ROWS_PER_CALL]
                args: list[str | int] = []
                for row in part:
                    args += (encode_values(row.values), row.event_time_ms, row.tiebreak)
                keys = [self._key(view, row.entity_key) for row in part]
                self._write(keys=keys, args=args, client=pipe)
            pipe.execute()
        return len(rows)

    def _write_merged(self, view: str, rows: Sequence[OnlineRow]) -> None:
        """Each row over its stored one (see base.merge_all), in a transaction that WATCHes the
        keys read, retried if another write changed one meanwhile: merging needs the stored
        values decoded (a script's cjson would round floats), and a merge over values
        replaced meanwhile would undo that write."""
        keys = [self._key(view, row.entity_key) for row in rows]
        while True:
            with self._redis.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(*keys)
                    found = cast(list[bytes | None], pipe.mget(keys))
                    stored = {
                        row.entity_key: _stored_row(row.entity_key, raw)
                        for row, raw in zip(rows, found, strict=True)
                        if raw is not None
                    }
                    pipe.multi()
                    for row in merge_all(rows, stored):
                        value = f"{row.event_time_ms}|{row.tiebreak}|{encode_values(row.values)}"
                        pipe.set(self._key(view, row.entity_key), value)
                    pipe.execute()
                    return
                except redis.WatchError:
                    continue

    def read(self, view: str, keys: Sequence[str]) -> list[tuple[dict[str, Any], int] | None]:
        # Keys as bytes, which redis-py passes on as they are (a third less of its time than
        # encoding text); responses come back undecoded (its default).
        # A try block rather than _reachable(): it costs nothing unless raised.
        base = self._key(view, "").encode()
        try:
            found = cast(
                list[bytes | None], self._redis.mget([base + key.encode() for key in keys])
            )
        except _DOWN as exc:
            raise _unreachable(exc) from None
        rows: list[tuple[dict[str, Any], int] | None] = []
        for raw in found:
            if raw is None:
                rows.append(None)
            else:
                event_time, _, values = raw.partition(b"|")
                if not values.startswith(b"{"):  # a tiebreak comes first
                    values = values.partition(b"|")[2]
                rows.append((decode_values(values), int(event_time)))
        return rows

    def delete_view(self, view: str) -> None:
        with _reachable():
            self._delete_view(view)

    def _delete_view(self, view: str) -> None:
        # The prefix is the operator's text: its glob characters are matched as themselves, or
        # a prefix "team-*" would delete every "team-b:" key of this view's name. UNLINK frees
        # the memory off Redis's main thread.
        batch = []
        for key in self._redis.scan_iter(
            match=f"{_glob_escaped(self.prefix)}:{view}:*", count=1000
        ):
            batch.append(key)
            if len(batch) >= 1000:
                self._redis.unlink(*batch)
                batch.clear()
        if batch:
            self._redis.unlink(*batch)

    def close(self) -> None:
        self._redis.close()


def _stored_row(entity_key: str, raw: bytes) -> OnlineRow:
    """A stored string as a row, in either layout (see the module); read() parses it inline,
    keeping the lookup path to what a lookup needs."""
    event_time, _, rest = raw.partition(b"|")
    tiebreak = b""
    if rest[:1] not in (b"{", b"["):  # a tiebreak (digits, maybe none) comes first
        tiebreak, _, rest = rest.partition(b"|")
    return OnlineRow(entity_key, decode_values(rest), int(event_time), tiebreak.decode())


def _glob_escaped(text: str) -> str:
    """`text` as a Redis glob pattern matching only itself."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
