"""Artifact path rules, one copy for the SDK and the services (which import the SDK, never the
other way): the server stores and lists paths in `clean_path`'s normal form, so a client that
takes a path apart by the server's listing must normalize it the same way first."""

from __future__ import annotations

import re

from modelyard.errors import InvalidArgument

MAX_PATH_LENGTH = 1024
# Each name in a path, in UTF-8 bytes: what local file systems take (Linux's NAME_MAX).
MAX_NAME_BYTES = 255
# A Windows drive ('C:', 'C:/x'), which would make a path absolute there; 'a:b' is a plain name.
_DRIVE = re.compile(r"[A-Za-z]:(/|$)")


def clean_path(path: str, *, field: str = "path", allow_empty: bool = False) -> str:
    """Normalize a relative artifact path or raise InvalidArgument naming `field`."""
    if not path:
        if allow_empty:
            return ""
        raise InvalidArgument(f"{field} must not be empty", field=field)
    if len(path) > MAX_PATH_LENGTH:
        raise InvalidArgument(f"{field} is longer than {MAX_PATH_LENGTH} characters", field=field)
    if "\x00" in path or "\\" in path:
        raise InvalidArgument(f"{field} must not contain NUL or backslash characters", field=field)
    if path.startswith("/"):
        raise InvalidArgument(
            f"{field} {path!r} is absolute; give a path relative to the artifact root", field=field
        )
    if _DRIVE.match(path):
        raise InvalidArgument(
            f"{field} {path!r} starts with a Windows drive ({path[:2]!r}); give a path relative "
            "to the artifact root, or rename its first directory",
            field=field,
        )
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidArgument(f"{field} {path!r} must not contain '..'", field=field)
    for part in parts:
        if len(part.encode()) > MAX_NAME_BYTES:
            raise InvalidArgument(
                f"{field}: the name {part[:40]!r}... is {len(part.encode())} bytes in UTF-8; "
                f"each file or directory name may be at most {MAX_NAME_BYTES}: shorten it",
                field=field,
            )
    normalized = "/".join(parts)
    if not normalized and not allow_empty:
        raise InvalidArgument(f"{field} must name a file", field=field)
    return normalized


def relative_to(path: str, directory: str) -> str | None:
    """`path` (in normal form) below `directory` (in normal form; '' for the root), or None
    when it does not lie below it."""
    if not directory:
        return path
    rel = path.removeprefix(directory + "/")
    return rel if rel != path else None
