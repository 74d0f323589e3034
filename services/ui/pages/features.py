"""The feature store: entities, feature views with the freshness of their online values, feature
services, and each view's materialization history."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.features.client import FeatureStoreClient, Materialization
from modelyard.features.definitions import FeatureView
from modelyard.services.common.auth.policy import CREATOR_ROLES
from modelyard.services.ui import charts
from modelyard.services.ui.web import client, identity_of, render
from modelyard.services.ui.web import features as feature_store


def freshness(view: FeatureView, runs: list[Materialization]) -> dict[str, object]:
    """How old the newest materialized window is, against the view's TTL."""
    if not view.online:
        return {"status": "offline only", "age": None, "last_end": None}
    if not runs:
        return {"status": "never materialized", "age": None, "last_end": None}
    last = max(runs, key=lambda m: m.end_time)
    age = time.time() - last.end_time.timestamp()
    ttl = view.ttl.total_seconds() if view.ttl else None
    status = "stale" if ttl is not None and age > ttl else "fresh"
    return {"status": status, "age": _age(age), "last_end": last.end_time}


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def overview(request: Request) -> Response:
    """Each view's freshness from one call for every view's latest materialization: a call
    per view, each reading the view's whole history, made a page of many views slow."""
    store: FeatureStoreClient = feature_store(request)
    views = store.list_feature_views()
    latest = {m.feature_view: m for m in store.list_materializations("", latest_only=True)}
    rows = [(v, freshness(v, [latest[v.name]] if v.name in latest else [])) for v in views]
    return render(
        request,
        "features.html",
        entities=store.list_entities(),
        views=rows,
        services=store.list_feature_services(),
        can_define=not views and can_define(request),
    )


def can_define(request: Request) -> bool:
    """Whether the caller may apply definitions (the editor or admin role): only they are
    told to define views; a viewer who sees none is told whom to ask for access instead."""
    identity = identity_of(request)
    if identity is None or not identity.auth:
        return True
    principal, _ = client(request).whoami()
    return bool(set(principal.roles) & CREATOR_ROLES)


def view_page(request: Request) -> Response:
    store = feature_store(request)
    name = request.path_params["name"]
    view, version = store.get_definition("feature_view", name)
    assert isinstance(view, FeatureView)
    runs = store.list_materializations(name)
    chart = charts.figure(
        [
            {
                "type": "bar",
                "x": [m.end_time.isoformat() for m in runs],
                "y": [m.rows for m in runs],
                "name": "rows",
            }
        ],
        "Rows loaded per materialization (by window end)",
    )
    return render(
        request,
        "feature_view.html",
        view=view,
        version=version,
        runs=sorted(runs, key=lambda m: m.end_time, reverse=True),
        freshness=freshness(view, runs),
        chart=chart if runs else None,
        now=datetime.now(UTC),
    )


ROUTES = [Route("/features", overview), Route("/features/views/{name}", view_page)]
