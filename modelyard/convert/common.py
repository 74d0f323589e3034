"""Converters for shared messages: timestamps, tags, enums, file infos."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from typing import overload

from google.protobuf.timestamp_pb2 import Timestamp

from modelyard._gen.common.v1 import common_pb2
from modelyard.entities.common import (
    FileInfo,
    Grant,
    LifecycleStage,
    PermissionLevel,
    PresignedUrl,
    ViewType,
)
from modelyard.errors import InvalidArgument

# JSON has no NaN or infinity, and strict parsers (JavaScript's, jq's) refuse Python's bare
# `NaN`: non-finite floats are written as protobuf's JSON mapping writes them.
_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def non_finite_text(value: float) -> str:
    """ "NaN", "Infinity" or "-Infinity" for a float that is not finite."""
    return _NON_FINITE.get(value, "NaN")


@overload
def ms_to_timestamp(ms: int) -> Timestamp: ...
@overload
def ms_to_timestamp(ms: int | None) -> Timestamp | None: ...
def ms_to_timestamp(ms: int | None) -> Timestamp | None:
    if ms is None:
        return None
    ts = Timestamp()
    ts.FromMilliseconds(ms)
    return ts


# Timestamp's valid range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z.
MIN_SECONDS = -62_135_596_800
MAX_SECONDS = 253_402_300_799


@overload
def timestamp_to_ms(ts: Timestamp) -> int: ...
@overload
def timestamp_to_ms(ts: Timestamp, present: bool) -> int | None: ...
def timestamp_to_ms(ts: Timestamp, present: bool = True) -> int | None:
    """Milliseconds, or None for an unset message field (pass msg.HasField(...) as `present`).
    Checks the range as Timestamp.ToMilliseconds does (ValueError), at a third of its cost:
    a batch carries a thousand timestamps."""
    if not present:
        return None
    seconds, nanos = ts.seconds, ts.nanos
    if MIN_SECONDS <= seconds <= MAX_SECONDS and 0 <= nanos < 1_000_000_000:
        return seconds * 1000 + nanos // 1_000_000
    raise ValueError(
        f"timestamp {seconds}s + {nanos}ns is outside 0001-01-01 to 9999-12-31 "
        "(nanos must be 0 to 999,999,999)"
    )


def key_text(key: object, field: str) -> str:
    """`key`, if a string: protobuf refuses any other key with a TypeError that names neither
    the field nor the key ('bad argument type for built-in operation')."""
    if isinstance(key, str):
        return key
    raise InvalidArgument(
        f"{field} {key!r} is of type {type(key).__name__}; keys are strings, e.g. {str(key)!r}",
        field=field,
    )


_MAX_INT32 = 2**31 - 1
_MAX_INT64 = 2**63 - 1


def _whole(value: object, field: str, maximum: int, too_big: str) -> int:
    """`value` as an int if it is a whole number within +-maximum: protobuf refuses anything
    else with a bare ValueError or TypeError ('Value out of range: ...') naming no field."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        if -maximum - 1 <= int(value) <= maximum:
            return int(value)
        raise InvalidArgument(f"{field} {value} {too_big}", field=field)
    raise InvalidArgument(
        f"{field} is {value!r} ({type(value).__name__}); it must be a whole number", field=field
    )


def count_arg(value: object, field: str) -> int:
    """A count sent in an int32 field (max_results, page_size), if it fits one. The server
    checks its own, far lower, limits."""
    return _whole(
        value,
        field,
        _MAX_INT32,
        "is more than any page holds; ask for fewer and follow the page token (search results "
        "are PagedLists: .token)",
    )


def page_size_arg(value: object, field: str) -> int:
    """A page size the caller chose: 1 or more, as MLflow requires. On the wire 0 is an unset
    int32, the server's default page, so an explicit 0 came back as up to 1000 results."""
    size = count_arg(value, field)
    if size < 1:
        raise InvalidArgument(
            f"{field} must be 1 or more, got {size}; leave it out for the server's default "
            "page size",
            field=field,
        )
    return size


def id_arg(value: object, field: str) -> int:
    """An event or record id sent in an int64 field (since_event_id), if it fits one."""
    return _whole(
        value,
        field,
        _MAX_INT64,
        "is beyond any id the server issues; pass an id it returned (0 for the beginning)",
    )


def version_arg(value: object, field: str = "version") -> int:
    """A model version number, as MlflowClient takes it: an int, or a string of its digits
    ("3"). int() took "abc" and "v2" with a bare ValueError naming no field, and 2.5 and True
    as versions 2 and 1, so a call could act on a version the caller never named."""
    if isinstance(value, str):
        digits = value.strip()
        if digits.isascii() and digits.isdigit():
            value = int(digits)
        else:
            raise InvalidArgument(
                f"{field} {value!r} is not a version number; pass the number, e.g. 3 or '3'",
                field=field,
            )
    return _whole(
        value,
        field,
        _MAX_INT64,
        "is beyond any version number; list the versions with search_model_versions",
    )


def order_by_to_proto(order_by: str | Sequence[str] | None) -> list[str]:
    """A search's order_by clauses. One clause passed as a string ("metrics.rmse DESC") is that
    clause: taken as a sequence, it was sent as its characters, and the server's answer
    ("unexpected character '.' at position 0") named none of what the caller wrote."""
    if isinstance(order_by, str):
        return [order_by]
    return list(order_by or [])


def tags_to_proto(tags: Mapping[str, str]) -> list[common_pb2.Tag]:
    return [common_pb2.Tag(key=k, value=v) for k, v in tags.items()]


def tags_to_dict(tags: Iterable[common_pb2.Tag]) -> dict[str, str]:
    return {t.key: t.value for t in tags}


_STAGE_TO_PROTO = {
    LifecycleStage.ACTIVE: common_pb2.LIFECYCLE_STAGE_ACTIVE,
    LifecycleStage.DELETED: common_pb2.LIFECYCLE_STAGE_DELETED,
}
_STAGE_FROM_PROTO = {v: k for k, v in _STAGE_TO_PROTO.items()}


def stage_to_proto(stage: LifecycleStage) -> common_pb2.LifecycleStage.ValueType:
    return _STAGE_TO_PROTO[stage]


def stage_to_entity(stage: common_pb2.LifecycleStage.ValueType) -> LifecycleStage:
    return _STAGE_FROM_PROTO.get(stage, LifecycleStage.ACTIVE)


def view_type_to_proto(
    view: ViewType | int | str | None, field: str = "view_type"
) -> common_pb2.ViewType.ValueType:
    """A ViewType, its number, or MLflow's name for it ("all", as ViewType.from_string reads);
    None (or 0) is active only. Anything else is refused naming `field`: a name was a bare
    ValueError from int() ("invalid literal for int() with base 10: 'all'")."""
    if isinstance(view, str):
        try:
            return common_pb2.ViewType.ValueType(ViewType.from_string(view))
        except ValueError as exc:
            raise InvalidArgument(f"{field}: {exc}", field=field) from None
    whole = isinstance(view, numbers.Integral) and not isinstance(view, bool)
    if view is None or (whole and int(view) == 0):
        return common_pb2.ViewType.ValueType(ViewType.ACTIVE_ONLY)
    if whole and int(view) in set(ViewType):
        return common_pb2.ViewType.ValueType(int(view))
    raise InvalidArgument(
        f"{field} is {view!r}; use a ViewType (e.g. ViewType.ALL) or one of "
        f"{[v.name.lower() for v in ViewType]}",
        field=field,
    )


def view_type_to_entity(view: common_pb2.ViewType.ValueType) -> ViewType:
    """UNSPECIFIED means active only; an unknown number is rejected by the caller's validation."""
    return ViewType(view) if view else ViewType.ACTIVE_ONLY


def file_info_to_proto(info: FileInfo) -> common_pb2.FileInfo:
    msg = common_pb2.FileInfo(path=info.path, is_dir=info.is_dir)
    if info.file_size is not None:
        msg.file_size = info.file_size
    if info.sha256:
        msg.sha256 = info.sha256
    if info.created_time is not None:
        msg.create_time.FromMilliseconds(info.created_time)
    return msg


def file_info_to_entity(msg: common_pb2.FileInfo) -> FileInfo:
    return FileInfo(
        path=msg.path,
        is_dir=msg.is_dir,
        file_size=None if msg.is_dir else msg.file_size,
        sha256=msg.sha256 or None,
        created_time=timestamp_to_ms(msg.create_time, msg.HasField("create_time")),
    )


def presigned_to_proto(url: PresignedUrl) -> common_pb2.PresignedUrl:
    return common_pb2.PresignedUrl(
        url=url.url, method=url.method, expire_time=ms_to_timestamp(url.expire_time)
    )


def presigned_to_entity(msg: common_pb2.PresignedUrl) -> PresignedUrl:
    return PresignedUrl(msg.url, msg.method, msg.expire_time.ToMilliseconds())


def grant_to_proto(grant: Grant) -> common_pb2.Grant:
    return common_pb2.Grant(
        principal=grant.principal, level=common_pb2.PermissionLevel.ValueType(int(grant.level))
    )


def level_to_entity(level: int) -> PermissionLevel | None:
    """None for PERMISSION_LEVEL_UNSPECIFIED or an unknown number."""
    try:
        return PermissionLevel(level)
    except ValueError:
        return None


def grant_to_entity(msg: common_pb2.Grant) -> Grant:
    return Grant(msg.principal, level_to_entity(msg.level) or PermissionLevel.READ)
