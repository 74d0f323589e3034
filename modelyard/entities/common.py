"""Entities shared by several services."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar, overload

T = TypeVar("T")


class ViewType(enum.IntEnum):
    """Which resources a search returns; values match MLflow's ViewType and the proto enum."""

    ACTIVE_ONLY = 1
    DELETED_ONLY = 2
    ALL = 3

    # MLflow's helpers; its strings are the lower-case names ("active_only").

    @classmethod
    def from_string(cls, view: str) -> ViewType:
        found = cls.__members__.get(view.upper()) if isinstance(view, str) else None
        if found is None:
            raise ValueError(
                f"{view!r} is not a view type; use one of {[v.name.lower() for v in cls]}"
            )
        return found

    @classmethod
    def to_string(cls, view: ViewType | int) -> str:
        return cls(view).name.lower()


class PermissionLevel(enum.IntEnum):
    """Access to one resource; each level includes the ones below it (values match the proto)."""

    READ = 1
    USE = 2
    EDIT = 3
    MANAGE = 4


@dataclass(frozen=True, slots=True)
class Grant:
    """A principal's access to one resource; principal "*" means every authenticated caller."""

    principal: str
    level: PermissionLevel


class LifecycleStage(enum.StrEnum):
    ACTIVE = "active"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class FileInfo:
    """An artifact file (or directory, with is_dir set) relative to its owner's artifact root."""

    path: str
    is_dir: bool
    file_size: int | None = None
    sha256: str | None = None
    created_time: int | None = None


@dataclass(frozen=True, slots=True)
class PresignedUrl:
    """A short-lived URL that moves one file's bytes straight to or from object storage, so big
    files skip the service; `method` is the HTTP method to use (GET or PUT)."""

    url: str
    method: str
    expire_time: int


class PagedList(Sequence[T], Generic[T]):
    """One page of results plus the opaque token for the next page ("" or None when done)."""

    def __init__(self, items: Sequence[T], token: str | None) -> None:
        self._items = list(items)
        self.token = token or None

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[T]:
        return iter(self._items)

    def __repr__(self) -> str:
        return f"PagedList({self._items!r}, token={self.token!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PagedList):
            return self._items == other._items and self.token == other.token
        return self._items == other
