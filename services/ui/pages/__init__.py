"""The UI's pages, one module per area; `routes()` is everything the app serves."""

from __future__ import annotations

from starlette.routing import BaseRoute

from modelyard.services.ui.pages import (
    automl,
    compare,
    endpoints,
    experiments,
    features,
    models,
    runs,
    session,
)


def routes() -> list[BaseRoute]:
    return [
        *session.ROUTES,
        *experiments.ROUTES,
        *runs.ROUTES,
        *compare.ROUTES,
        *models.ROUTES,
        *endpoints.ROUTES,
        *features.ROUTES,
        *automl.ROUTES,
    ]
