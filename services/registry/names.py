"""The registry's rules for model names, version numbers and aliases: one place for the service
and for the SDK, which checks the name in a models:/ URI before it builds a search from it."""

from __future__ import annotations

import re

from modelyard.errors import InvalidArgument
from modelyard.services.common import validation as v

_MODEL_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_\-. ]{0,255}\Z")
_ALIAS = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,254}\Z")
_RESERVED_ALIAS = re.compile(r"^(latest|v\d+)\Z", re.IGNORECASE)


def model_name(field: str, value: str) -> str:
    v.require(field, value)
    if not _MODEL_NAME.match(value) or value != value.strip():
        raise InvalidArgument(
            f"{field} {value!r} is not a valid model name: use 1-256 letters, digits, '_', '-', "
            "'.' or inner spaces",
            field=field,
        )
    return value


def version_number(field: str, value: int) -> int:
    if value <= 0:
        raise InvalidArgument(
            f"{field} must be a positive version number, got {value}", field=field
        )
    return value


def alias_name(field: str, value: str) -> str:
    v.require(field, value)
    if not _ALIAS.match(value):
        raise InvalidArgument(
            f"{field} {value!r} is not a valid alias: start with a letter or '_', then letters, "
            "digits, '_' or '-'",
            field=field,
        )
    if _RESERVED_ALIAS.match(value):
        raise InvalidArgument(
            f"{field} {value!r} is reserved ('latest' and v<number> name versions directly)",
            field=field,
        )
    return value
