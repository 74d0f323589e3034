"""Registered models: versions with aliases and stages, lineage to runs and datasets, the event
history, and the alias/stage actions for callers allowed to take them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.client import Client
from modelyard.entities.common import FileInfo, PermissionLevel
from modelyard.entities.registry import Stage
from modelyard.errors import InvalidArgument, ModelyardError, NotFound, PermissionDenied
from modelyard.services.ui.pages import runs
from modelyard.services.ui.pages.runs import datasets
from modelyard.services.ui.web import (
    Pager,
    check_csrf,
    client,
    flash,
    identity_of,
    name_search,
    pager,
    redirect,
    render,
    said,
)

PAGE = 100  # models, and one model's versions
MAX_EVENTS = 100  # the newest of a model's history events on its page
MAX_VERSION = 2**63 - 1
STAGES = [s.value for s in Stage]


def access_level(request: Request, c: Client, name: str) -> PermissionLevel | None:
    """What the caller may do to the model, to show only the actions it can take (the services
    check again on every call)."""
    identity = identity_of(request)
    if identity is None or not identity.auth:
        return PermissionLevel.MANAGE
    principal, _ = c.whoami()
    if "admin" in principal.roles:
        return PermissionLevel.MANAGE
    try:
        grants = c.list_registered_model_permissions(name)
    except PermissionDenied:
        return None
    mine = [g.level for g in grants if g.principal == principal.name]
    return max(mine) if mine else PermissionLevel.READ


def models(request: Request) -> Response:
    query, filter_string = name_search(request)
    page = client(request).search_registered_models(
        filter_string=filter_string,
        max_results=PAGE,
        page_token=request.query_params.get("page_token") or None,
    )
    return render(
        request,
        "models.html",
        models=list(page),
        pages=pager(request, "/models", {"q": query}, page.token),
        q=query,
    )


def model(request: Request) -> Response:
    name = request.path_params["name"]
    c = client(request)
    registered = c.get_registered_model(name)
    page_token = request.query_params.get("page_token") or None
    versions = c.search_model_versions(
        filter_string=f"name = '{name.replace(chr(39), '')}'",
        order_by=["version_number DESC"],
        max_results=PAGE,
        page_token=page_token,
    )
    here = f"/models/{quote(name, safe='')}"
    history = _history(c, name, here, _event_bound(request))
    level = access_level(request, c, name)
    return render(
        request,
        "model.html",
        model=registered,
        versions=list(versions),
        pages=pager(request, f"/models/{quote(name, safe='')}", {}, versions.token),
        **history,
        stages=STAGES,
        can_edit=level is not None and level >= PermissionLevel.EDIT,
        can_manage=level is not None and level >= PermissionLevel.MANAGE,
    )


def _event_bound(request: Request) -> int:
    """The History's `events_before` (0 for the newest events)."""
    text = request.query_params.get("events_before", "") or "0"
    if not (text.isascii() and text.isdigit()):  # '²' is a digit to isdigit, not to int()
        raise InvalidArgument(
            f"events_before {text[:20]!r} is not an event id; follow the History's links",
            field="events_before",
        )
    return int(text)


def _history(c: Client, name: str, here: str, before: int) -> dict[str, Any]:
    """A page of the model's events, newest first, before event id `before` (0: the newest),
    with links to the older and the newer page: the page showed the newest MAX_EVENTS and
    nothing older but through the CLI."""
    # one more than shown, to know whether there are older ones
    events = c.list_model_events(
        name, max_results=MAX_EVENTS + 1, newest_first=True, before_event_id=before
    )
    shown = events[:MAX_EVENTS]
    older = newer = ""
    if len(events) > MAX_EVENTS:
        older = f"{here}?{urlencode({'events_before': shown[-1].event_id})}#history"
    if before:
        # the page above this one: the MAX_EVENTS events just newer than its first
        since = shown[0].event_id if shown else before - 1
        above = c.list_model_events(name, since_event_id=since, max_results=MAX_EVENTS + 1)
        newer = here + "#history"
        if len(above) > MAX_EVENTS:
            bound = above[MAX_EVENTS - 1].event_id + 1
            newer = f"{here}?{urlencode({'events_before': bound})}#history"
    return {
        "events": shown,
        "older_events": older,
        "newer_events": newer,
        "newest_events": here + "#history" if before else "",
    }


def model_version(request: Request) -> Response:
    name = request.path_params["name"]
    version = int(request.path_params["version"])
    if version > MAX_VERSION:  # the API's versions are int64: the call could not be made
        raise NotFound(f"model {name!r} has no version {version}; see its versions on /models")
    page_token = request.query_params.get("page_token") or None
    c = client(request)
    lineage = c.get_model_version_lineage(name, version)
    here = f"/models/{quote(name, safe='')}/versions/{version}"
    # a version may hold thousands of files (checkpoints, shards): a page of them at a time
    files: list[FileInfo] = []
    files_refused = ""
    pages = Pager()
    try:
        page = c.list_model_version_artifacts_page(
            name, version, max_results=runs.FILES_PAGE, page_token=page_token
        )
        files = list(page)
        pages = pager(request, here, {}, page.token)
    except PermissionDenied as exc:  # listing files takes USE; the rest of the page, READ
        files_refused = said(request, exc)
    return render(
        request,
        "model_version.html",
        lineage=lineage,
        version=lineage.model_version,
        datasets=datasets(lineage.run) if lineage.run else [],
        files=files,
        files_refused=files_refused,
        pages=pages,
        page_size=runs.FILES_PAGE,
    )


async def _act(request: Request, action: Callable[[Client, str, dict[str, str]], str]) -> Response:
    """Run a change as the caller; it returns the message the model page shows, built from the
    form fields it reads (formatting a message with the whole form let any extra field, such as
    `name`, break it after the change was made). Errors come back as a message too."""
    name = request.path_params["name"]
    form = await check_csrf(request)
    try:
        flash(request, await run_in_threadpool(action, client(request), name, form))
    except ModelyardError as exc:
        flash(request, said(request, exc), "error")
    except (KeyError, ValueError):
        flash(request, "Fill in the form: a version number and a name.", "error")
    return redirect(f"/models/{name}")


def _set_alias(c: Client, name: str, form: dict[str, str]) -> str:
    alias, version = form["alias"].strip(), int(form["version"])
    c.set_registered_model_alias(name, alias, version)
    return f"Alias {alias} now points to version {version}."


def _delete_alias(c: Client, name: str, form: dict[str, str]) -> str:
    c.delete_registered_model_alias(name, form["alias"])
    return f"Alias {form['alias']} deleted."


def _transition_stage(c: Client, name: str, form: dict[str, str]) -> str:
    version, stage = int(form["version"]), form["stage"]
    c.transition_model_version_stage(
        name, version, stage, archive_existing_versions=bool(form.get("archive"))
    )
    return f"Version {version} moved to {stage}."


async def set_alias(request: Request) -> Response:
    return await _act(request, _set_alias)


async def delete_alias(request: Request) -> Response:
    return await _act(request, _delete_alias)


async def transition_stage(request: Request) -> Response:
    return await _act(request, _transition_stage)


ROUTES = [
    Route("/models", models),
    Route("/models/{name}", model),
    Route("/models/{name}/versions/{version:int}", model_version),
    Route("/models/{name}/alias", set_alias, methods=["POST"]),
    Route("/models/{name}/alias/delete", delete_alias, methods=["POST"]),
    Route("/models/{name}/stage", transition_stage, methods=["POST"]),
]
