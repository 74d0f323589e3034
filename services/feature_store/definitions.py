"""Applying feature definitions: validation, the plan (create/update/delete/unchanged with what
changes), and the rules that protect data already written (no in-place type or key changes)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from urllib.parse import urlparse

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from modelyard.errors import FailedPrecondition, InvalidArgument, ModelyardError
from modelyard.features.definitions import (
    Definition,
    Entity,
    FeatureService,
    FeatureView,
    FileSource,
    SqlSource,
    ValueType,
    kind_of,
    plain,
)
from modelyard.services.common.db.engine import MASKED_PASSWORD, shown_url
from modelyard.services.common.validation import shown
from modelyard.services.feature_store.offline.base import RESERVED_PREFIX

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,127}\Z")


@dataclass(frozen=True)
class Step:
    action: str  # create, update, delete, unchanged
    kind: str
    name: str
    changes: tuple[str, ...] = field(default=())


def _check_name(field: str, kind: str, name: str) -> None:
    if not _NAME.match(name or ""):
        raise InvalidArgument(
            f"{field}: {kind} name {name!r} must start with a letter or '_' and hold only "
            "letters, digits, '_' and '-' (at most 128)",
            field=field,
        )


def _check_column(field: str, what: str, name: str) -> None:
    """Feature and join key names become columns beside the engine's own working ones."""
    if name.startswith(RESERVED_PREFIX):
        raise InvalidArgument(
            f"{field}: {what} {name!r} starts with {RESERVED_PREFIX!r}, which the feature store "
            "keeps for its own working columns; rename it",
            field=field,
        )


def _missing(
    field: str, user: str, kind: str, name: str, existing: Mapping[tuple[str, str], Definition]
) -> ModelyardError:
    """`user` (a definition, as "feature view 'v'") refers to a `kind` `name` the apply would
    leave undefined: deleted by a full apply that omits it, or never defined."""
    if (kind, name) in existing:
        return FailedPrecondition(
            f"{kind.replace('_', ' ')} {name!r} would be deleted but {user} uses it; keep it in "
            "the apply, or change what uses it first",
            resource_type=kind,
            resource_name=name,
        )
    return InvalidArgument(
        f"{field}: {user} uses {kind.replace('_', ' ')} {name!r}, which is not defined",
        field=field,
    )


def validate(
    desired: Sequence[Definition], existing: Mapping[tuple[str, str], Definition], partial: bool
) -> None:
    """Check the definitions as they will be after the apply (a full apply keeps only what it
    names): InvalidArgument for a requested definition that does not hold together, naming the
    field by its place in the request (`definitions[2].feature_service.projections[0]
    .features`); FailedPrecondition where the apply would delete or change what a definition it
    leaves in place uses."""
    seen: set[tuple[str, str]] = set()
    for i, d in enumerate(desired):
        kind = kind_of(d)
        field = f"definitions[{i}].{kind}.name"
        _check_name(field, kind, d.name)
        if (kind, d.name) in seen:
            raise InvalidArgument(f"{field}: {kind} {d.name!r} is defined twice", field=field)
        seen.add((kind, d.name))
    after = dict(existing) if partial else {}
    after |= {(kind_of(d), d.name): d for d in desired}
    entities = {n: e for (_, n), e in after.items() if isinstance(e, Entity)}
    views = {n: v for (_, n), v in after.items() if isinstance(v, FeatureView)}
    for i, d in enumerate(desired):
        at = f"definitions[{i}].{kind_of(d)}"
        if isinstance(d, Entity):
            if not d.join_keys:
                raise InvalidArgument(
                    f"{at}.join_keys: entity {d.name!r} has no join keys", field=f"{at}.join_keys"
                )
            seen_keys: set[str] = set()
            for j, key in enumerate(d.join_keys):
                _check_column(f"{at}.join_keys[{j}].name", f"entity {d.name!r}: join key", key.name)
                if key.name in seen_keys:
                    raise InvalidArgument(
                        f"{at}.join_keys[{j}].name: entity {d.name!r} lists join key "
                        f"{key.name!r} twice; list each once",
                        field=f"{at}.join_keys[{j}].name",
                    )
                seen_keys.add(key.name)
        elif isinstance(d, FeatureView):
            _validate_view(at, d, entities, existing)
        elif isinstance(d, FeatureService):
            _validate_service(at, d, views, existing)
    # What a partial apply leaves in place must still hold: a service must keep its features.
    for (kind, name), d in after.items():
        if (kind, name) not in seen and isinstance(d, FeatureService):
            for p in d.projections:
                view = views[p.feature_view]  # a partial apply deletes no view
                lost = sorted(set(p.features) - set(view.feature_names))
                if lost:
                    raise FailedPrecondition(
                        f"feature view {view.name!r} would lose feature {lost[0]!r}, which feature "
                        f"service {name!r} uses; change the service first (or in the same apply)",
                        resource_type="feature_view",
                        resource_name=view.name,
                    )


def _validate_service(
    at: str,
    service: FeatureService,
    views: dict[str, FeatureView],
    existing: Mapping[tuple[str, str], Definition],
) -> None:
    given: set[tuple[str, str]] = set()
    for j, p in enumerate(service.projections):
        field = f"{at}.projections[{j}]"
        view = views.get(p.feature_view)
        if view is None:
            raise _missing(
                f"{field}.feature_view",
                f"feature service {service.name!r}",
                "feature_view",
                p.feature_view,
                existing,
            )
        unknown = set(p.features) - set(view.feature_names)
        if unknown:
            raise InvalidArgument(
                f"{field}.features: feature service {service.name!r}: view {p.feature_view!r} "
                f"has no feature {sorted(unknown)[0]!r}",
                field=f"{field}.features",
            )
        # Lookups give each feature once: a service naming one twice could never be served.
        for feature in p.features or view.feature_names:
            if (view.name, feature) in given:
                raise InvalidArgument(
                    f"{field}.features: feature service {service.name!r} gives feature "
                    f"'{view.name}:{feature}' more than once; name it in one projection",
                    field=f"{field}.features",
                )
            given.add((view.name, feature))


def _validate_view(
    at: str,
    view: FeatureView,
    entities: dict[str, Entity],
    existing: Mapping[tuple[str, str], Definition],
) -> None:
    if not view.entities:
        raise InvalidArgument(
            f"{at}.entities: feature view {view.name!r} names no entity", field=f"{at}.entities"
        )
    for name in view.entities:
        if name not in entities:
            raise _missing(
                f"{at}.entities", f"feature view {view.name!r}", "entity", name, existing
            )
    keys = {k.name for e in view.entities for k in entities[e].join_keys}
    names = [f.name for f in view.schema if f.name not in keys]
    for j, f in enumerate(view.schema):
        _check_column(f"{at}.schema[{j}].name", f"feature view {view.name!r}: feature", f.name)
    if not names:
        raise InvalidArgument(
            f"{at}.schema: feature view {view.name!r} has no features", field=f"{at}.schema"
        )
    if len(set(names)) != len(names):
        raise InvalidArgument(
            f"{at}.schema: feature view {view.name!r} lists a feature twice", field=f"{at}.schema"
        )
    if not view.source.timestamp_field:
        raise InvalidArgument(
            f"{at}.source.timestamp_field: feature view {view.name!r}: the source needs a "
            "timestamp_field",
            field=f"{at}.source.timestamp_field",
        )
    times = {view.source.timestamp_field, view.source.created_timestamp_column}
    for j, f in enumerate(view.schema):
        if f.name in times and f.dtype != ValueType.UNIX_TIMESTAMP:
            raise InvalidArgument(
                f"{at}.schema[{j}]: feature view {view.name!r}: feature {f.name!r} is the "
                f"source's timestamp column, so it is a UNIX_TIMESTAMP, not {f.dtype}; declare "
                "it so or leave it out of the schema",
                field=f"{at}.schema[{j}].dtype",
            )
    _validate_source(f"{at}.source", view)


def _validate_source(at: str, view: FeatureView) -> None:
    """What the readers (offline/file_sources.py, sql_sources.py) can open, checked when the
    view is applied rather than when it is first read."""
    source = view.source
    if isinstance(source, FileSource):
        try:
            parsed = urlparse(source.path)
        except ValueError:  # an unclosed [ of an IPv6 host, say
            parsed = None
        if (
            parsed is None
            or not source.path
            or parsed.scheme not in ("", "file", "s3")
            or (parsed.scheme == "s3" and not parsed.netloc)
        ):
            raise InvalidArgument(
                f"{at}.file.path: feature view {view.name!r}: {shown(source.path)} is not a local "
                "path, file:// or s3://bucket/key URI",
                field=f"{at}.file.path",
            )
        if source.file_format not in ("parquet", "csv"):
            raise InvalidArgument(
                f"{at}.file.file_format: feature view {view.name!r}: "
                f"{shown(source.file_format)} is not a format sources are read in; use parquet "
                "or csv",
                field=f"{at}.file.file_format",
            )
        return
    try:
        dialect = make_url(source.url).get_dialect()
    except (ArgumentError, NoSuchModuleError, ValueError):
        raise InvalidArgument(
            f"{at}.sql.url: feature view {view.name!r}: the source's URL is not one SQLAlchemy "
            "can connect with; use one such as postgresql://host/database or "
            "sqlite:///path.db",
            field=f"{at}.sql.url",
        ) from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise InvalidArgument(
            f"{at}.sql.url: feature view {view.name!r}: the feature store lacks the driver for "
            f"{dialect.name} ({exc.name}); install it where the feature store runs",
            field=f"{at}.sql.url",
        ) from None
    if not source.query.strip():
        raise InvalidArgument(
            f"{at}.sql.query: feature view {view.name!r}: give the table or SELECT to read",
            field=f"{at}.sql.query",
        )


def without_join_keys(view: FeatureView, keys: Sequence[str]) -> FeatureView:
    """Feast lets a schema list the join keys too; features are the other fields."""
    schema = tuple(f for f in view.schema if f.name not in keys)
    if schema == view.schema:
        return view
    return FeatureView(
        view.name,
        list(view.entities),
        list(schema),
        view.source,
        view.ttl,
        view.online,
        view.description,
        view.tags,
        view.owner,
    )


def _field_changes(name: str, old: object, new: object) -> list[str]:
    """`name: old -> new` in plain values, for only the parts that differ: a source or tags
    changed in one field shows that field (`source.path: a -> b`), not two whole reprs."""
    if is_dataclass(old) and type(old) is type(new):
        return [
            change
            for f in fields(old)
            for change in _field_changes(
                f"{name}.{f.name}", getattr(old, f.name), getattr(new, f.name)
            )
        ]
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            change
            for key in sorted(old.keys() | new.keys())
            for change in _field_changes(f"{name}.{key}", old.get(key), new.get(key))
        ]
    if old == new:
        return []
    if is_dataclass(old) and is_dataclass(new):  # e.g. a FileSource replaced by a SqlSource
        return [f"{name}: {type(old).__name__} -> {type(new).__name__}"]
    if name.endswith(".url"):  # a database URL may hold a password: the plan is printed
        old, new = shown_url(str(old)), shown_url(str(new))
    return [f"{name}: {plain(old)} -> {plain(new)}"]


def _changes(old: Definition, new: Definition) -> tuple[str, ...]:
    changes: list[str] = []
    if isinstance(old, FeatureView) and isinstance(new, FeatureView):
        old_types = {f.name: f.dtype for f in old.schema}
        new_types = {f.name: f.dtype for f in new.schema}
        for name in sorted(old_types.keys() & new_types.keys()):
            if old_types[name] != new_types[name]:
                raise FailedPrecondition(
                    f"feature view {new.name!r}: feature {name!r} would change type from "
                    f"{old_types[name]} to {new_types[name]} in place, which would mix types in "
                    "stored data; add it under a new name (and drop the old one) instead",
                    resource_type="feature_view",
                    resource_name=new.name,
                )
        if old.entities != new.entities:
            raise FailedPrecondition(
                f"feature view {new.name!r}: its entities would change from {list(old.entities)} "
                f"to {list(new.entities)}; define a new view instead",
                resource_type="feature_view",
                resource_name=new.name,
            )
        changes += [f"+feature {n}" for n in sorted(new_types.keys() - old_types.keys())]
        changes += [f"-feature {n}" for n in sorted(old_types.keys() - new_types.keys())]
        for attr in ("ttl", "online", "source", "description", "owner", "tags"):
            changes += _field_changes(attr, getattr(old, attr), getattr(new, attr))
    elif isinstance(old, Entity) and isinstance(new, Entity):
        if old.join_keys != new.join_keys:
            raise FailedPrecondition(
                f"entity {new.name!r}: its join keys would change from "
                f"{[(k.name, str(k.dtype)) for k in old.join_keys]} to "
                f"{[(k.name, str(k.dtype)) for k in new.join_keys]}; define a new entity instead",
                resource_type="entity",
                resource_name=new.name,
            )
        for attr in ("description", "owner", "tags"):
            if getattr(old, attr) != getattr(new, attr):
                changes.append(f"{attr} changed")
    elif isinstance(old, FeatureService) and isinstance(new, FeatureService):
        before = {(p.feature_view, p.features) for p in old.projections}
        after = {(p.feature_view, p.features) for p in new.projections}
        changes += [f"+{v}:{','.join(f) or '*'}" for v, f in sorted(after - before)]
        changes += [f"-{v}:{','.join(f) or '*'}" for v, f in sorted(before - after)]
        for attr in ("description", "owner", "tags"):
            if getattr(old, attr) != getattr(new, attr):
                changes.append(f"{attr} changed")
    return tuple(changes) or ("metadata",)


def _check_retyped(view: FeatureView, past: Sequence[tuple[int, Definition]]) -> None:
    """A feature dropped from a view keeps its values in rows stored before (the online store's,
    the push log's): added back under another type, those would be read as the new type (a
    STRING 'hello' as BOOL True). Refuse that, as a change of type in place is refused."""
    types = {f.name: f.dtype for f in view.schema}
    for version, old in reversed(past):
        assert isinstance(old, FeatureView)
        for f in old.schema:
            if f.name in types and types[f.name] != f.dtype:
                raise FailedPrecondition(
                    f"feature view {view.name!r}: feature {f.name!r} was {f.dtype} (version "
                    f"{version}) and rows stored then still hold such values; it cannot come back "
                    f"as {types[f.name]}: add it under a new name, or delete and re-create the "
                    "view (which drops its stored rows)",
                    resource_type="feature_view",
                    resource_name=view.name,
                )


def plan(
    desired: Sequence[Definition],
    existing: Mapping[tuple[str, str], Definition],
    partial: bool,
    history: Callable[[str, str], Sequence[tuple[int, Definition]]],
) -> list[Step]:
    """The steps of an apply `validate` passed; `history(kind, name)` gives a definition's
    versions since it was created, oldest first."""
    steps = []
    wanted = {(kind_of(d), d.name): d for d in desired}
    for (kind, name), d in sorted(wanted.items()):
        old = existing.get((kind, name))
        if old is None:
            steps.append(Step("create", kind, name))
        elif old == d:
            steps.append(Step("unchanged", kind, name))
        else:
            changes = _changes(old, d)
            if isinstance(d, FeatureView) and any(c.startswith("+feature ") for c in changes):
                _check_retyped(d, history(kind, name))
            steps.append(Step("update", kind, name, changes))
    if not partial:
        for kind, name in sorted(existing.keys() - wanted.keys()):
            steps.append(Step("delete", kind, name))
    return steps


# -- what callers see of a definition ---------------------------------------------------------


def as_shown(d: Definition) -> Definition:
    """`d` as definitions are answered: a SQL source's password masked. Reading a view's
    definition (READ) is not using its database: only the server needs those credentials."""
    if isinstance(d, FeatureView) and isinstance(d.source, SqlSource):
        url = shown_url(d.source.url)
        if url != d.source.url:
            return replace(d, source=replace(d.source, url=url))
    return d


def with_stored_password(d: Definition, before: Definition | None, at: str) -> Definition:
    """A view applied as it was answered (its source's password masked) keeps the password
    stored for the same URL: the masked text is no password."""
    if not (isinstance(d, FeatureView) and isinstance(d.source, SqlSource)):
        return d
    url = d.source.url
    try:
        masked = make_url(url).password == MASKED_PASSWORD
    except (ArgumentError, ValueError):
        return d
    if not masked:
        return d
    if (
        isinstance(before, FeatureView)
        and isinstance(before.source, SqlSource)
        and shown_url(before.source.url) == url
    ):
        return replace(d, source=replace(d.source, url=before.source.url))
    raise InvalidArgument(
        f"{at}.source.url has the password masked ({MASKED_PASSWORD!r}), as definitions are "
        "answered, and it is not the URL stored for this view; give the database's password",
        field=f"{at}.source.url",
    )
