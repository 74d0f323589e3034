"""`modelyard features ...`: apply definitions, look at them, materialize, look values up."""

from __future__ import annotations

import dataclasses
import json
import runpy
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn
from rich.text import Text

from modelyard.cli.output import console, key_values, print_json, progress, say, table
from modelyard.cli.tracking import Json, Token, Uri
from modelyard.errors import FailedPrecondition, InvalidArgument
from modelyard.features.client import FeatureStoreClient
from modelyard.features.definitions import (
    Definition,
    Entity,
    FeatureService,
    FeatureView,
    plain,
)

features = typer.Typer(help="The feature store.", no_args_is_help=True)


def _client(uri: str | None, token: str | None) -> FeatureStoreClient:
    return FeatureStoreClient(uri, token)


def load_definitions(path: Path) -> list[Any]:
    """Every Entity, FeatureView and FeatureService defined at the top of a Python file, each
    once however many names it is bound to (`DRIVER = driver`, an import of it)."""
    try:
        namespace = runpy.run_path(str(path))
    except Exception as exc:
        # Whatever the file's own code raised (a misspelt keyword, a value a definition refuses,
        # a data file it reads) is the user's to fix, not Modelyard's: say where, as Python would.
        raise InvalidArgument(
            f"error in {path}{_where(exc, path)}: {_what(exc)}\n"
            f"Fix the file, then run `modelyard features apply {path}` again."
        ) from None
    found = [v for v in namespace.values() if isinstance(v, Entity | FeatureView | FeatureService)]
    return list(dict.fromkeys(found))


def _where(exc: BaseException, path: Path) -> str:
    """ " line N" of the definitions file where `exc` happened, if it happened in it."""
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f" line {exc.lineno}"
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
    return f" line {frames[-1].lineno}" if frames else ""


def _what(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"{type(exc).__name__}: {exc.msg}"
    return f"{type(exc).__name__}: {exc}"


def _when(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is not an ISO time; write it like 2026-11-23T12:00:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@features.command("apply")
def features_apply(
    path: Annotated[
        Path,
        typer.Argument(
            help="A Python file defining entities, views and services.",
            exists=True,
            dir_okay=False,
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; change nothing.")
    ] = False,
    delete_all: Annotated[
        bool,
        typer.Option(
            "--delete-all", help="Apply a file that defines nothing: delete every definition."
        ),
    ] = False,
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Make the registry match a definitions file: create, update, and delete what it lacks.

    The plan is printed first; with --dry-run nothing else happens."""
    objects = load_definitions(path)
    client = _client(uri, token)
    plan = client.plan(objects, partial=False)
    deletes = [s for s in plan if s.action == "delete"]
    if not objects and deletes and not (dry_run or delete_all):
        # An empty file (definitions inside a function, a wrong file) would otherwise delete
        # every view and its online rows and pushed data without a word.
        raise InvalidArgument(
            f"{path} defines no entity, feature view or feature service at its top level, so "
            f"applying it would delete all {len(deletes)} definitions; check the file, or pass "
            "--delete-all if that is what you mean",
            field="path",
        )
    rows = [(s.action, s.kind, s.name, "; ".join(s.changes)) for s in plan]
    if not as_json:
        table("plan", ["action", "kind", "name", "changes"], rows)
    changes = [s for s in plan if s.action != "unchanged"]
    if not dry_run and changes:
        plan = client.apply(objects, partial=False)
    if as_json:
        print_json(
            {
                "applied": not dry_run,
                "plan": [
                    {"action": s.action, "kind": s.kind, "name": s.name, "changes": list(s.changes)}
                    for s in plan
                ],
            }
        )
    elif dry_run:
        say(f"dry run: {len(changes)} change(s) not applied; run without --dry-run")
    else:
        say(f"applied {len(changes)} change(s)")


def _record(definition: Definition) -> dict[str, Any]:
    """A definition as --json gives it: lists, seconds and booleans a script can use as they are
    (`keys`: an entity's join keys, a view's entities; a TTL in seconds, null for none)."""
    if isinstance(definition, Entity):
        return {
            "kind": "entity",
            "name": definition.name,
            "keys": [k.name for k in definition.join_keys],
            "join_keys": [{"name": k.name, "dtype": k.dtype} for k in definition.join_keys],
            "description": definition.description,
            "owner": definition.owner,
            "tags": definition.tags,
        }
    if isinstance(definition, FeatureView):
        ttl = definition.ttl
        return {
            "kind": "feature_view",
            "name": definition.name,
            "keys": list(definition.entities),
            "features": [{"name": f.name, "dtype": f.dtype} for f in definition.schema],
            "ttl_seconds": None if ttl is None else int(ttl.total_seconds()),
            "online": definition.online,
            "source": {"type": type(definition.source).__name__, **_fields(definition.source)},
            "description": definition.description,
            "owner": definition.owner,
            "tags": definition.tags,
        }
    return {
        "kind": "feature_service",
        "name": definition.name,
        "keys": [],
        "projections": [
            {"feature_view": p.feature_view, "features": list(p.features)}
            for p in definition.projections
        ],
        "description": definition.description,
        "owner": definition.owner,
        "tags": definition.tags,
    }


def _fields(value: Any) -> dict[str, Any]:
    return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}


def _projection(feature_view: str, names: tuple[str, ...]) -> str:
    return f"{feature_view}[{','.join(names) or '*'}]"


@features.command("list")
def features_list(uri: Uri = None, token: Token = None, as_json: Json = False) -> None:
    """List entities, feature views and feature services."""
    client = _client(uri, token)
    found: list[Definition] = [
        *client.list_entities(),
        *client.list_feature_views(),
        *client.list_feature_services(),
    ]
    if as_json:
        print_json({"definitions": [_record(d) for d in found]})
        return
    table(None, ["kind", "name", "entities / join keys", "detail"], [_row(d) for d in found])


def _row(definition: Definition) -> tuple[str, str, str, str]:
    record = _record(definition)
    if isinstance(definition, FeatureView):
        detail = (
            f"{len(definition.schema)} features, ttl {plain(definition.ttl)}, "
            f"online {plain(definition.online)}"
        )
    elif isinstance(definition, FeatureService):
        detail = ", ".join(_projection(p.feature_view, p.features) for p in definition.projections)
    else:
        detail = ""
    return record["kind"], definition.name, ", ".join(record["keys"]), detail


@features.command("describe")
def features_describe(
    name: str,
    kind: Annotated[
        str, typer.Option(help="entity, feature_view or feature_service")
    ] = "feature_view",
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Show one definition, its version, and (for views) its materializations."""
    client = _client(uri, token)
    definition, version = client.get_definition(kind, name)
    if as_json:
        print_json({"version": version, "definition": _record(definition)})
        return
    console.print(Text.assemble((f"{kind} {name}", "bold"), f" version {version}"))
    key_values(kind, _described(definition))
    if isinstance(definition, FeatureView):
        table(None, ["feature", "type"], [(f.name, f.dtype) for f in definition.schema])
        runs = client.list_materializations(name)
        if runs:
            table(
                "materializations",
                ["start", "end", "rows"],
                [(m.start_time, m.end_time, m.rows) for m in runs],
            )


def _described(definition: Definition) -> dict[str, str]:
    """A definition's fields as plain text, one a row (a view's features have their own table)."""
    shown: dict[str, str] = {}
    if isinstance(definition, Entity):
        shown["join_keys"] = ", ".join(f"{k.name} ({k.dtype})" for k in definition.join_keys)
    elif isinstance(definition, FeatureView):
        shown["entities"] = ", ".join(definition.entities)
        shown["ttl"] = plain(definition.ttl)
        shown["online"] = plain(definition.online)
        shown["source"] = type(definition.source).__name__
        shown |= {f"source.{k}": plain(v) for k, v in _fields(definition.source).items()}
    else:
        shown |= {
            f"features.{p.feature_view}": ", ".join(p.features) or "*"
            for p in definition.projections
        }
    shown["description"] = plain(definition.description)
    shown["owner"] = plain(definition.owner)
    shown |= {f"tags.{k}": v for k, v in definition.tags.items()}
    return shown


@features.command("materialize")
def features_materialize(
    start: Annotated[
        str | None,
        typer.Argument(help="ISO time, included; omit for incremental (after the last end)."),
    ] = None,
    end: Annotated[str | None, typer.Argument(help="ISO time, included (default now).")] = None,
    view: Annotated[
        list[str] | None, typer.Option("--view", help="Only these views (repeatable).")
    ] = None,
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Load the latest values per entity with an event time from START to END, both included,
    into the online store, one view at a time."""
    client = _client(uri, token)
    end_time = _when(end) if end else datetime.now(UTC)
    start_time = _when(start) if start else None
    views = view or [v.name for v in client.list_feature_views() if v.online]
    if not views:
        raise FailedPrecondition(
            "no online feature views to materialize; define one with online=True and apply it "
            "with `modelyard features apply FILE`"
        )
    runs = []
    with progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        as_json=as_json,
    ) as bar:
        task = bar.add_task("materializing", total=len(views))
        for name in views:
            bar.update(task, description=f"materializing {name}")
            if start_time:
                runs += client.materialize(start_time, end_time, [name])
            else:
                runs += client.materialize_incremental(end_time, [name])
            bar.advance(task)
    if as_json:
        print_json({"runs": runs})
        return
    table(
        None,
        ["feature view", "start", "end", "rows"],
        [(m.feature_view, m.start_time, m.end_time, m.rows) for m in runs],
    )


@features.command("get-online")
def features_get_online(
    feature: Annotated[
        list[str] | None, typer.Option("--feature", help="view:feature (repeatable).")
    ] = None,
    service: Annotated[
        str | None, typer.Option("--service", help="A feature service instead.")
    ] = None,
    entity: Annotated[
        list[str], typer.Option("--entity", help="JSON row, e.g. '{\"driver_id\": 1}'.")
    ] = [],  # noqa: B006
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Look feature values up for entity rows."""
    # Said here in terms of the flags: the server's messages name the API's fields.
    if not feature and not service:
        raise typer.BadParameter(
            "name the features with --feature view:feature (repeatable), or give --service NAME",
            param_hint="--feature",
        )
    if not entity:
        raise typer.BadParameter(
            "give the entity rows to look up, e.g. --entity '{\"driver_id\": 1}' (repeatable)",
            param_hint="--entity",
        )
    rows = []
    for text in entity:
        try:
            row = json.loads(text)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict):
            raise typer.BadParameter(
                f"{text!r} is not a JSON object; write it like '{{\"driver_id\": 1}}'",
                param_hint="--entity",
            )
        rows.append(row)
    response = _client(uri, token).get_online_features(service or (feature or []), rows)
    values, statuses = response.to_dict(), response.statuses()
    if as_json:
        print_json({"values": values, "statuses": statuses})
        return
    names = list(values)
    table(
        None,
        names,
        [
            tuple(_cell(values[n][i], statuses.get(n, [])[i : i + 1]) for n in names)
            for i in range(len(rows))
        ],
    )


def _cell(value: Any, status: list[str]) -> str:
    """A looked-up value as text: `-` for none, and the status --json gives when it is not
    PRESENT (`- (NOT_FOUND)`)."""
    text = "-" if value is None else str(value)  # a feature's own value, as stored
    if status and status[0] != "PRESENT":
        text += f" ({status[0]})"
    return text
