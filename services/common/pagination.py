"""Opaque page tokens, tied to the query that produced them.

A token carries the position to resume from (an offset, or the last key seen for keyset paging)
and a fingerprint of the query; presenting it with a different filter or order is refused
instead of silently returning the wrong page.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from typing import Any

from modelyard.errors import InvalidArgument
from modelyard.paths import MAX_PATH_LENGTH


def fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def encode_token(query: str, position: Any) -> str:
    """The token of `position` in `query`: JSON in UTF-8, URL-safe base64. A keyset position
    carries the last row's sort value, and JSON's \\u escapes (6 bytes a character) made a long
    non-ASCII one's token 3-6 times its UTF-8 size, past what ingresses allow in a link.
    Tokens written so (all ASCII) still read: both are JSON, and _read takes either."""
    raw = json.dumps({"q": query, "p": position}, separators=(",", ":"), ensure_ascii=False)
    # surrogatepass: a lone surrogate (no valid UTF-8) round-trips; json.loads decodes so too.
    return base64.urlsafe_b64encode(raw.encode("utf-8", "surrogatepass")).decode().rstrip("=")


def _read(token: str) -> tuple[Any, Any]:
    """(query, position) of a token; ValueError, KeyError or TypeError if it is none."""
    raw = base64.urlsafe_b64decode((token + "=" * (-len(token) % 4)).encode())
    try:
        data = json.loads(raw)
    except RecursionError:  # arrays nested past the parser's depth: no token nests at all
        raise ValueError("nested too deeply") from None
    return data["q"], data["p"]


def _not_issued(field: str) -> InvalidArgument:
    return InvalidArgument(
        f"{field} is not a token this server issued; pass the next_page_token of the previous "
        "response unchanged",
        field=field,
    )


INT64 = range(-(2**63), 2**63)  # what a 64-bit integer column holds


def is_path(position: object) -> bool:
    """The position of a file listing's keyset token (the last path listed, a directory's
    with a '/' after it): what a forged one is not."""
    return (
        isinstance(position, str)
        and len(position) <= MAX_PATH_LENGTH + 1
        and "\x00" not in position
    )


# Bytes (UTF-8) of a file listing's last path its token carries as they are: base64 of that
# with the query's fingerprint stays ~300 characters. A longer path (1024 CJK characters made a
# 4 KB token, past what a link behind nginx's default 8 KB request line can carry beside the
# listing's own path) is carried as its first PATH_INLINE bytes and a digest of the whole.
PATH_INLINE = 192
_RESOLVE_BATCH = 1000  # paths read at a time while finding a digest's
# Characters of short_digest: 16 bytes of SHA-256, URL-safe base64 without padding.
DIGEST_LENGTH = 22


def short_digest(data: bytes) -> str:
    """What a token carries in place of a value too long for it (a path, a keyset position):
    enough to tell that value from others once read back, short enough for a link."""
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()[:16]).decode().rstrip("=")


def path_digest(path: str) -> str:
    return short_digest(path.encode("utf-8", "surrogatepass"))


def path_position(path: str) -> str | dict[str, str]:
    """A file listing's token position for its last `path` (a directory's ending in '/'): the
    path itself when short; else {"cut": its first PATH_INLINE bytes, "sha": its digest}, which
    resolve_path turns back into the path. Not a row id: the index of files is keyed by path."""
    raw = path.encode("utf-8", "surrogatepass")
    if len(raw) <= PATH_INLINE:
        return path
    cut = raw[:PATH_INLINE].decode("utf-8", "ignore")  # a character cut in two goes whole
    return {"cut": cut, "sha": path_digest(path)}


def is_path_position(position: object) -> bool:
    """A position path_position makes (tokens from before it carry the path: is_path)."""
    if isinstance(position, dict):
        cut, sha = position.get("cut"), position.get("sha")
        return (
            position.keys() == {"cut", "sha"}
            and is_path(cut)
            and isinstance(sha, str)
            and len(sha) == DIGEST_LENGTH
        )
    return is_path(position)


def digest_named(path: str, cut: str, sha: str) -> str | None:
    """What of a stored `path` (starting with `cut`) the digest `sha` names: the path, one of
    the directories ('/'-ended) leading to it that is longer than `cut`, or None."""
    for end in range(len(cut), len(path)):
        if path[end] == "/" and path_digest(path[: end + 1]) == sha:
            return path[: end + 1]
    return path if path_digest(path) == sha else None


def resolve_path(
    position: str | dict[str, str],
    paths_after: Callable[[str, int], list[str]],
    field: str = "page_token",
) -> str:
    """The path (or directory, '/'-ended) a position names. A cut one is found among the stored
    paths from its cut on, in order (`paths_after(path, n)`: at most n paths sorting after
    `path`), as the path or a directory leading to it whose digest is the position's. This
    reads the paths sharing those first PATH_INLINE bytes that sort before it: few, unless a
    directory has a name that long and many files."""
    if isinstance(position, str):
        return position
    cut, sha = position["cut"], position["sha"]
    after = cut
    while paths := paths_after(after, _RESOLVE_BATCH):
        for path in paths:
            if not path.startswith(cut):
                break
            if named := digest_named(path, cut, sha):
                return named
        else:
            after = paths[-1]
            continue
        break
    raise InvalidArgument(
        f"{field}: the file the page before ended at was deleted or moved since; list again "
        "without a token (the first page)",
        field=field,
    )


def check_position(
    token: str, looks_issued: Callable[[Any], bool], field: str = "page_token"
) -> str:
    """`token` unchanged, once the position inside has the shape the RPC's tokens carry. A
    forged position (a negative offset, a list where a number goes) would otherwise reach the
    SQL and fail there, as INTERNAL. Tokens that do not decode are left to decode_token."""
    if not token:
        return token
    try:
        _query, position = _read(token)
    except (ValueError, KeyError, TypeError):
        return token
    if not looks_issued(position):
        raise _not_issued(field)
    return token


def decode_token(token: str, query: str, field: str = "page_token") -> Any:
    """The position stored in `token`, or None for an empty token."""
    if not token:
        return None
    try:
        stored_query, position = _read(token)
    except (ValueError, KeyError, TypeError):
        raise _not_issued(field) from None
    if stored_query != query:
        raise InvalidArgument(
            f"{field} belongs to a different query; repeat the same filter and order with it, "
            "or start again without a token",
            field=field,
        )
    return position


def page_size(value: int, *, default: int, maximum: int, field: str) -> int:
    if value < 0 or value > maximum:
        raise InvalidArgument(f"{field} must be between 1 and {maximum}, got {value}", field=field)
    return value or default
