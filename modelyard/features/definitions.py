"""Feature definitions, named and shaped like Feast's so a Feast repository ports by changing
imports: Entity, Field, FileSource, SqlSource, FeatureView, FeatureService.

    driver = Entity(name="driver", join_keys=["driver_id"])
    stats = FeatureView(
        name="driver_stats", entities=[driver], ttl=timedelta(days=1),
        schema=[Field(name="conv_rate", dtype=Float32), Field(name="trips", dtype=Int64)],
        source=FileSource(path="data/driver_stats.parquet", timestamp_field="event_timestamp"),
    )
    model_v1 = FeatureService(name="model_v1", features=[stats[["conv_rate"]]])
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import timedelta


class ValueType(enum.StrEnum):
    INT32 = "INT32"
    INT64 = "INT64"
    FLOAT32 = "FLOAT32"
    FLOAT64 = "FLOAT64"
    STRING = "STRING"
    BOOL = "BOOL"
    BYTES = "BYTES"
    UNIX_TIMESTAMP = "UNIX_TIMESTAMP"


# Feast's type names.
Int32 = ValueType.INT32
Int64 = ValueType.INT64
Float32 = ValueType.FLOAT32
Float64 = ValueType.FLOAT64
String = ValueType.STRING
Bool = ValueType.BOOL
Bytes = ValueType.BYTES
UnixTimestamp = ValueType.UNIX_TIMESTAMP


def ttl_text(ttl: timedelta | None) -> str:
    """A TTL as people write it (2d, 6h, 90s), `-` for none: values that never expire."""
    if ttl is None:
        return "-"
    seconds = int(ttl.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def plain(value: object) -> str:
    """A definition's value for people to read: `-` for none, yes/no, a TTL as `2d`; never a
    Python repr."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, timedelta):
        return ttl_text(value)
    return str(value)


@dataclass(frozen=True)
class Field:
    name: str
    dtype: ValueType
    description: str = ""

    def __post_init__(self) -> None:
        """A type given by its name ("FLOAT64") is taken; anything else is refused here, where
        the definitions file says it, rather than when the definition is sent."""
        if not isinstance(self.dtype, ValueType):
            try:
                object.__setattr__(self, "dtype", ValueType(str(self.dtype).upper()))
            except ValueError:
                raise ValueError(
                    f"Field {self.name!r}: dtype {self.dtype!r} is not a feature type; use one "
                    f"of {', '.join(t.value for t in ValueType)} (or Float64, Int64, String...)"
                ) from None


@dataclass(frozen=True)
class Entity:
    name: str
    join_keys: tuple[Field, ...]
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict, hash=False)
    owner: str = ""

    def __init__(
        self,
        name: str,
        join_keys: list[str] | list[Field] | tuple[Field, ...] | None = None,
        value_type: ValueType = ValueType.INT64,
        description: str = "",
        tags: dict[str, str] | None = None,
        owner: str = "",
    ) -> None:
        if isinstance(join_keys, str):  # iterated, it would be one key per character
            raise TypeError(
                f"Entity {name!r}: join_keys is a list of names; write join_keys=[{join_keys!r}]"
            )
        keys = join_keys or [name]
        fields = tuple(k if isinstance(k, Field) else Field(k, value_type) for k in keys)
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "join_keys", fields)
        object.__setattr__(self, "description", description)
        object.__setattr__(self, "tags", dict(tags or {}))
        object.__setattr__(self, "owner", owner)

    @property
    def join_key_names(self) -> list[str]:
        return [k.name for k in self.join_keys]


@dataclass(frozen=True)
class FileSource:
    path: str
    timestamp_field: str = "event_timestamp"
    created_timestamp_column: str = ""
    file_format: str = "parquet"
    name: str = ""


@dataclass(frozen=True)
class SqlSource:
    url: str
    query: str
    timestamp_field: str = "event_timestamp"
    created_timestamp_column: str = ""
    name: str = ""


DataSource = FileSource | SqlSource


@dataclass(frozen=True)
class FeatureViewProjection:
    feature_view: str
    features: tuple[str, ...] = ()


@dataclass(frozen=True)
class FeatureView:
    name: str
    entities: tuple[str, ...]
    schema: tuple[Field, ...]
    source: DataSource
    ttl: timedelta | None = None
    online: bool = True
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict, hash=False)
    owner: str = ""

    def __init__(
        self,
        name: str,
        entities: list[Entity | str] | tuple[str, ...],
        schema: list[Field] | tuple[Field, ...],
        source: DataSource,
        ttl: timedelta | None = None,
        online: bool = True,
        description: str = "",
        tags: dict[str, str] | None = None,
        owner: str = "",
    ) -> None:
        if not isinstance(source, FileSource | SqlSource):
            raise TypeError(
                f"FeatureView {name!r}: source is a FileSource or SqlSource, not "
                f"{type(source).__name__} {source!r}; e.g. source=FileSource(path=...)"
            )
        if ttl is not None and not isinstance(ttl, timedelta):
            raise TypeError(
                f"FeatureView {name!r}: ttl is a timedelta (or None for no limit), not "
                f"{type(ttl).__name__} {ttl!r}; e.g. ttl=timedelta(days=1)"
            )
        object.__setattr__(self, "name", name)
        object.__setattr__(
            self, "entities", tuple(e.name if isinstance(e, Entity) else e for e in entities)
        )
        object.__setattr__(self, "schema", tuple(schema))
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "ttl", ttl if ttl else None)
        object.__setattr__(self, "online", online)
        object.__setattr__(self, "description", description)
        object.__setattr__(self, "tags", dict(tags or {}))
        object.__setattr__(self, "owner", owner)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.schema]

    def __getitem__(self, features: list[str]) -> FeatureViewProjection:
        """stats[["conv_rate"]]: a subset of the view's features, for a feature service."""
        return FeatureViewProjection(self.name, tuple(features))


@dataclass(frozen=True)
class FeatureService:
    name: str
    projections: tuple[FeatureViewProjection, ...]
    description: str = ""
    tags: dict[str, str] = field(default_factory=dict, hash=False)
    owner: str = ""

    def __init__(
        self,
        name: str,
        features: list[FeatureView | FeatureViewProjection] | None = None,
        description: str = "",
        tags: dict[str, str] | None = None,
        owner: str = "",
        projections: tuple[FeatureViewProjection, ...] | None = None,
    ) -> None:
        items = projections or tuple(
            f if isinstance(f, FeatureViewProjection) else FeatureViewProjection(f.name)
            for f in features or []
        )
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "projections", tuple(items))
        object.__setattr__(self, "description", description)
        object.__setattr__(self, "tags", dict(tags or {}))
        object.__setattr__(self, "owner", owner)


Definition = Entity | FeatureView | FeatureService

KINDS: dict[type, str] = {
    Entity: "entity",
    FeatureView: "feature_view",
    FeatureService: "feature_service",
}


def kind_of(definition: Definition) -> str:
    return KINDS[type(definition)]
