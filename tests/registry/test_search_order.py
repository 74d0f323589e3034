"""Searches of the registry return ties of their order_by keys in MLflow's order: registered models
by name ascending, versions by name ascending then version descending (unless the caller orders by
those fields), page after page. Before, ties came back in the order of the models' random ids.

Every registry timestamp is pinned to one value, so ordering by a timestamp ties everywhere.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from modelyard import Client
from modelyard.entities import PagedList
from modelyard.errors import InvalidArgument
from modelyard.services.registry.store import sql
from tests.registry.test_api import logged_model

# Created in this order; eight names, so the random ids put them in name order 1 time in 40320.
NAMES = ["tieh", "tiec", "tiea", "tief", "tieb", "tieg", "tied", "tiee"]


@pytest.fixture
def registry(db_client: Client, monkeypatch: pytest.MonkeyPatch) -> Client:
    """Models NAMES with one version each, and "tiea" with three; all stamped at one instant."""
    monkeypatch.setattr(sql, "_now", lambda: 1_700_000_000_000)
    src = f"runs:/{logged_model(db_client)}/model"
    for name in NAMES:
        db_client.create_model_version(name, src)
    for _ in range(2):
        db_client.create_model_version("tiea", src)
    return db_client


def every_page(
    search: Callable[..., PagedList[Any]], order_by: list[str], size: int
) -> list[tuple[str, int]]:
    """(name, version) of each result of `search`, `size` per page, through the last page
    (version 0 for a registered model)."""
    found: list[tuple[str, int]] = []
    token = None
    while True:
        page = search("name LIKE 'tie%'", max_results=size, order_by=order_by, page_token=token)
        found += [(r.name, getattr(r, "version", 0)) for r in page]
        if not (token := page.token):
            return found


VERSIONS = [("tiea", 3), ("tiea", 2), ("tiea", 1)] + [(n, 1) for n in sorted(NAMES)[1:]]


@pytest.mark.parametrize(
    "order_by",
    [
        ["creation_timestamp ASC"],
        ["last_updated_timestamp DESC"],
        ["creation_timestamp DESC", "last_updated_timestamp ASC"],
    ],
)
@pytest.mark.parametrize("size", [100, 3])
def test_ties_come_back_by_name_then_newest_version(
    registry: Client, order_by: list[str], size: int
) -> None:
    assert every_page(registry.search_model_versions, order_by, size) == VERSIONS
    models = every_page(registry.search_registered_models, order_by, size)
    assert models == [(n, 0) for n in sorted(NAMES)]


@pytest.mark.parametrize("size", [100, 3])
def test_caller_ordering_by_version_or_name_keeps_the_other_tiebreak(
    registry: Client, size: int
) -> None:
    by_number = every_page(registry.search_model_versions, ["version_number ASC"], size)
    assert by_number == [(n, 1) for n in sorted(NAMES)] + [("tiea", 2), ("tiea", 3)]
    by_name = every_page(registry.search_model_versions, ["name DESC"], size)
    assert by_name == [(n, 1) for n in sorted(NAMES, reverse=True)[:-1]] + VERSIONS[:3]


@pytest.mark.parametrize(
    ("search", "order_by"),
    [
        ("search_registered_models", ["name ASC", "name DESC"]),
        ("search_registered_models", ["last_updated_timestamp", "last_update_time DESC"]),
        ("search_model_versions", ["name ASC", "name DESC"]),
        ("search_model_versions", ["version ASC", "version_number DESC"]),
    ],
)
def test_a_field_named_twice_in_order_by_is_refused(
    db_client: Client, search: str, order_by: list[str]
) -> None:
    with pytest.raises(InvalidArgument, match="given twice") as err:
        getattr(db_client, search)(order_by=order_by)
    assert err.value.field == "order_by"


@pytest.mark.parametrize("search", ["search_registered_models", "search_model_versions"])
def test_an_order_by_key_that_is_not_a_field_is_named_as_written(
    db_client: Client, search: str
) -> None:
    """order_by=['tags.team'] was refused as "cannot order by 'team'", naming an attribute the
    caller never wrote."""
    with pytest.raises(InvalidArgument, match=r"cannot order by 'tags\.team'; use one of") as err:
        getattr(db_client, search)(order_by=["tags.team DESC"])
    assert err.value.field == "order_by"


def test_registered_models_order_by_timestamp_as_in_mlflow(
    db_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's search_registered_models takes 'timestamp' for last_updated_timestamp (its docs'
    examples order by it); it was refused as not a field."""
    ticks = itertools.count(1_700_000_000_000, 1000)  # each write a second after the last
    monkeypatch.setattr(sql, "_now", lambda: next(ticks))
    src = f"runs:/{logged_model(db_client)}/model"
    for name in ("ts-old", "ts-new", "ts-mid"):
        db_client.create_model_version(name, src)
    db_client.set_registered_model_tag("ts-mid", "touched", "1")
    db_client.set_registered_model_tag("ts-old", "touched", "2")  # last updated: old, then mid
    models = db_client.search_registered_models("name LIKE 'ts-%'", order_by=["timestamp DESC"])
    assert [m.name for m in models] == ["ts-old", "ts-mid", "ts-new"]
    with pytest.raises(InvalidArgument, match="given twice"):
        db_client.search_registered_models(order_by=["timestamp", "last_updated_timestamp"])
