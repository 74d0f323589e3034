"""Input checks shared by services; each raises InvalidArgument naming the field at fault."""

from __future__ import annotations

import re

from modelyard.errors import InvalidArgument

# MLflow's rule for metric/param/tag keys: letters, digits, and _ - . space / (no '..' segments).
_KEY = re.compile(r"^[\w\-./ :]+$")


def require(field: str, value: str) -> str:
    if not value or not value.strip():
        raise InvalidArgument(f"{field} is required", field=field)
    return value


def max_length(field: str, value: str, limit: int) -> str:
    if len(value) > limit:
        raise InvalidArgument(
            f"{field} is {len(value)} characters long; the limit is {limit}", field=field
        )
    return value


def key(field: str, value: str, limit: int = 250) -> str:
    require(field, value)
    max_length(field, value, limit)
    if not _KEY.match(value) or ".." in value.split("/") or value.startswith("/"):
        raise InvalidArgument(
            f"{field} {value!r} may only contain letters, digits, underscores, dashes, periods, "
            "spaces, colons and slashes, and must not be a path that escapes ('..', leading '/')",
            field=field,
        )
    return value


def identifier(field: str, value: str, *, pattern: re.Pattern[str], example: str) -> str:
    require(field, value)
    if not pattern.match(value):
        raise InvalidArgument(f"{field} {value!r} is not a valid id (e.g. {example})", field=field)
    return value
