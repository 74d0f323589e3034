"""`modelyard models ...`: the model registry from the command line."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Annotated

import typer

from modelyard.cli.output import (
    done,
    file_progress,
    key_values,
    ms,
    note,
    print_events,
    print_json,
    print_page,
    say,
    table,
)
from modelyard.cli.tracking import Json, MaxResults, PageToken, Token, Uri, client_for
from modelyard.entities.registry import ModelEvent, ModelVersion, RegisteredModel

models = typer.Typer(help="Registered models and their versions.", no_args_is_help=True)
alias = typer.Typer(help="Aliases: named pointers to versions.", no_args_is_help=True)
models.add_typer(alias, name="alias")


def _versions_table(versions: list[ModelVersion]) -> None:
    table(
        None,
        ["version", "status", "stage", "aliases", "run id", "created", "description"],
        [
            (
                v.version,
                v.status,
                v.current_stage,
                ", ".join(v.aliases),
                v.run_id,
                ms(v.creation_timestamp),
                v.description,
            )
            for v in versions
        ],
    )


@models.command("list")
def models_list(
    filter_string: Annotated[
        str, typer.Option("--filter", help="e.g. \"name LIKE 'fraud%'\"")
    ] = "",
    max_results: MaxResults = 100,
    page_token: PageToken = None,
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """List registered models, a page at a time."""
    page = client_for(uri, token).search_registered_models(
        filter_string, max_results, page_token=page_token
    )
    print_page(page, "registered_models", as_json, _models_table)


def _models_table(found: list[RegisteredModel]) -> None:
    table(
        None,
        ["name", "latest version", "aliases", "updated", "description"],
        [
            (
                m.name,
                max((v.version for v in m.latest_versions), default=""),
                ", ".join(f"{a}->v{v}" for a, v in m.aliases.items()),
                ms(m.last_updated_timestamp),
                m.description,
            )
            for m in found
        ],
    )


@models.command("get")
def models_get(name: str, uri: Uri = None, token: Token = None, as_json: Json = False) -> None:
    """Show a registered model with its aliases and latest versions."""
    model = client_for(uri, token).get_registered_model(name)
    if as_json:
        print_json(model)
        return
    key_values(
        f"model {model.name}",
        {
            "description": model.description,
            "created": ms(model.creation_timestamp),
            "updated": ms(model.last_updated_timestamp),
            "owner": model.user_id,
            **{f"alias {a}": f"version {v}" for a, v in model.aliases.items()},
            **{f"tags.{k}": v for k, v in model.tags.items()},
        },
    )
    _versions_table(list(model.latest_versions))


@models.command("versions")
def models_versions(
    name: str,
    max_results: MaxResults = 1000,
    page_token: PageToken = None,
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """List the versions of a model, newest first, a page at a time."""
    escaped = name.replace("'", "''")
    page = client_for(uri, token).search_model_versions(
        f"name = '{escaped}'", max_results, order_by=["version DESC"], page_token=page_token
    )
    # No versions of a model that does not exist is an empty page, as MLflow's search gives.
    print_page(page, "model_versions", as_json, partial(_versions_of, name))


def _versions_of(name: str, found: list[ModelVersion]) -> None:
    _versions_table(found)
    if not found:
        note(f"no versions of model {name!r} (does it exist? `modelyard models list`)")


@alias.command("set")
def alias_set(
    name: str,
    alias_name: str,
    version: int,
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Point ALIAS_NAME at VERSION of model NAME."""
    client_for(uri, token).set_registered_model_alias(name, alias_name, version)
    done(
        as_json,
        f"{name}@{alias_name} -> version {version}",
        name=name,
        alias=alias_name,
        version=version,
    )


@alias.command("delete")
def alias_delete(
    name: str, alias_name: str, uri: Uri = None, token: Token = None, as_json: Json = False
) -> None:
    """Remove an alias."""
    client_for(uri, token).delete_registered_model_alias(name, alias_name)
    done(
        as_json,
        f"Deleted alias {name}@{alias_name}",
        name=name,
        alias=alias_name,
        deleted=True,
    )


@models.command("stage")
def models_stage(
    name: str,
    version: int,
    stage: Annotated[str, typer.Argument(help="None, Staging, Production or Archived.")],
    archive_existing: Annotated[
        bool, typer.Option("--archive-existing", help="Archive other versions in that stage.")
    ] = False,
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Move a version to a stage."""
    moved = client_for(uri, token).transition_model_version_stage(
        name, version, stage, archive_existing
    )
    if as_json:
        print_json(moved)
    else:
        say(f"{name} version {version} is now in {moved.current_stage}")


@models.command("history")
def models_history(
    name: str,
    since: Annotated[int, typer.Option("--since", help="Only events after this id.")] = 0,
    max_results: Annotated[
        int, typer.Option("--max-results", help="Events to read at most.")
    ] = 1000,
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Who changed what, and when."""
    events = client_for(uri, token).list_model_events(name, since, max_results)
    print_events(events, since, max_results, as_json, partial(_events_table, name))


def _events_table(name: str, events: list[ModelEvent]) -> None:
    if not events:
        note(f"no events of model {name!r} (does it exist? `modelyard models list`)")
    table(
        None,
        ["id", "time", "event", "version", "user", "details"],
        [
            (
                e.event_id,
                ms(e.timestamp),
                e.event_type,
                e.version or "",
                e.user_id,
                ", ".join(f"{k}={v}" for k, v in e.details.items()),
            )
            for e in events
        ],
    )


@models.command("download")
def models_download(
    model_uri: Annotated[str, typer.Argument(help="models:/name/3, models:/name@champion, ...")],
    dst: Annotated[
        Path, typer.Option("--dst", help="Where to put its NAME-vVERSION folder.")
    ] = Path("."),
    uri: Uri = None,
    token: Token = None,
    as_json: Json = False,
) -> None:
    """Download a version's files, checking every sha256."""
    from modelyard.models.uri import resolve_model_version

    client = client_for(uri, token)
    name, version = resolve_model_version(model_uri, client)
    files = client.list_model_version_artifacts(name, version)
    target = dst / f"{name}-v{version}"
    with file_progress("downloading", as_json) as progress:
        task = progress.add_task("", total=len(files))
        for f in files:
            progress.update(task, description=f.path)
            client.download_model_version_file(name, version, f.path, target)
            progress.advance(task)
    done(
        as_json,
        f"Downloaded {name} version {version} to {target}",
        name=name,
        version=version,
        path=str(target),
        files=len(files),
    )
