"""Input checks shared by services; each raises InvalidArgument naming the field at fault."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable

from google.protobuf.timestamp_pb2 import Timestamp

from modelyard._gen.common.v1.common_pb2 import Tag
from modelyard.convert.common import tags_to_dict, timestamp_to_ms
from modelyard.errors import InvalidArgument

# MLflow's rule for metric/param/tag keys: letters, digits, and _ - . space / (no '..' segments).
# Patterns end in \Z, not $: $ also matches before a final newline, so 'team\n' passed.
_KEY = re.compile(r"^[\w\-./ :]+\Z")
MAX_KEY_LENGTH = 250  # MLflow's, for metric, param and tag keys


def shown(value: str, limit: int = 80) -> str:
    """`value` quoted for an error message, cut short so the message stays readable. (What
    keeps any status small enough for gRPC's metadata is modelyard.errors.to_status.)"""
    if len(value) <= limit:
        return repr(value)
    return f"{value[:limit]!r}... ({len(value)} characters)"


def require(field: str, value: str) -> str:
    if not value or not value.strip():
        raise InvalidArgument(f"{field} is required", field=field)
    return value


def max_length(field: str, value: str, limit: int, hint: str = "") -> str:
    """`value`, if at most `limit` characters and free of NUL, which PostgreSQL cannot store in
    text: every stored string passes through here, so both backends refuse it alike. `hint`
    tells a caller over the limit what to do instead."""
    if len(value) > limit:
        then = f"; {hint}" if hint else ""
        raise InvalidArgument(
            f"{field} is {len(value)} characters long; the limit is {limit}{then}", field=field
        )
    if "\x00" in value:
        raise InvalidArgument(
            f"{field} contains a NUL character (\\x00), which cannot be stored; remove it",
            field=field,
        )
    return value


def key(field: str, value: str, limit: int = MAX_KEY_LENGTH, *, existing: bool = False) -> str:
    """A metric, param or tag key. One that names something `existing` (a read, a delete) is
    held only to the older rule (no '..' segment, no leading '/'), so that a key stored before
    MLflow's full path rule was applied stays reachable."""
    require(field, value)
    max_length(field, value, limit)
    if not _KEY.match(value):
        raise InvalidArgument(
            f"{field} {value!r} may only contain letters, digits, underscores, dashes, periods, "
            "spaces, colons and slashes",
            field=field,
        )
    escapes = ".." in value.split("/") or value.startswith("/")
    if escapes or (not existing and _not_its_own_path(value)):
        # Keys name files (artifacts, exported runs): 'a/' and 'a' would be one, '..' escapes.
        raise InvalidArgument(
            f"{field} {value!r} read as a path is not one of its own: write it without '.', "
            "'..', empty segments ('//'), or a leading or trailing '/' (as MLflow requires): "
            "'train/loss', not 'train//loss/'",
            field=field,
        )
    return value


def _not_its_own_path(value: str) -> bool:
    """MLflow's rule: a key must be its own normalized path, not '.', not above or at '/'."""
    norm = posixpath.normpath(value)
    return norm != value or norm == "." or norm.startswith("..") or norm.startswith("/")


def named_twice(names: Iterable[str]) -> str | None:
    """The first name that appears twice: a list read into a map (tags, columns) would otherwise
    keep one of them silently."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            return name
        seen.add(name)
    return None


def unique_tags(tags: Iterable[Tag]) -> dict[str, str]:
    """A request's tags as a map; a key sent twice is refused (one of its values would be
    dropped silently)."""
    tags = list(tags)
    twice = named_twice(t.key for t in tags)
    if twice is not None:
        raise InvalidArgument(
            f"tags has key {twice!r} more than once; send each key once", field="tags.key"
        )
    return tags_to_dict(tags)


def identifier(field: str, value: str, *, pattern: re.Pattern[str], example: str) -> str:
    require(field, value)
    if not pattern.fullmatch(value):
        raise InvalidArgument(
            f"{field} {shown(value)} is not a valid id (e.g. {example})", field=field
        )
    return value


def timestamp_ms(field: str, ts: Timestamp, present: bool = True) -> int | None:
    """Milliseconds of a Timestamp field (None when unset): a client can send seconds and nanos
    no calendar holds, which the conversions below would raise on as a server error."""
    try:
        return timestamp_to_ms(ts, present)
    except ValueError as exc:
        raise bad_timestamp(field, exc) from None


def bad_timestamp(field: str, exc: ValueError) -> InvalidArgument:
    """The refusal of a Timestamp out of range, from timestamp_to_ms's ValueError."""
    return InvalidArgument(f"{field}: {exc}; send a UTC time within that range", field=field)
