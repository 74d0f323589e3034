"""Page tokens of the registry's searches: one the server did not issue is refused as
INVALID_ARGUMENT naming page_token, on each backend. A forged offset used to reach the SQL and
fail there (INTERNAL, with a traceback logged per call); a negative one read from offset 0 on
SQLite. Tokens hold the last row's sort key (keyset), so models and versions created or deleted
between pages neither repeat nor hide another; an offset token of before is refused."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from modelyard import Client
from modelyard.entities import PagedList
from modelyard.errors import InvalidArgument
from tests.registry.test_api import logged_model
from tests.test_bad_input import _bad_tokens, _token

# Each forged into a token of the very query it is sent with: the fingerprint is no secret.
POSITIONS = [-5, -1, "abc", "1", 1.5, 1e300, 2**53 + 1, 2**63, 2**70, [1], {"a": 1}, True, None]
POSITIONS += [["tok-a", 2**70], ["tok-a", "1"], ["tok-a", 1, 1], [None, 1], [1, 1]]


@pytest.mark.parametrize("search", ["search_registered_models", "search_model_versions"])
def test_a_page_token_the_server_did_not_issue_is_refused(db_client: Client, search: str) -> None:
    src = f"runs:/{logged_model(db_client)}/model"
    for name in ("tok-a", "tok-b"):
        db_client.create_model_version(name, src)
    first = getattr(db_client, search)("name LIKE 'tok-%'", max_results=1)
    assert first.token
    second = getattr(db_client, search)("name LIKE 'tok-%'", max_results=1, page_token=first.token)
    assert [r.name for r in second] == ["tok-b"]
    for token in _bad_tokens(first.token, POSITIONS):
        with pytest.raises(InvalidArgument, match="page_token") as err:
            getattr(db_client, search)("name LIKE 'tok-%'", max_results=1, page_token=token)
        assert err.value.field == "page_token", token


@pytest.mark.parametrize("search", ["search_registered_models", "search_model_versions"])
def test_an_offset_token_of_before_is_refused_with_what_to_do(
    db_client: Client, search: str
) -> None:
    src = f"runs:/{logged_model(db_client)}/model"
    for name in ("old-a", "old-b", "old-c"):
        db_client.create_model_version(name, src)
    first = getattr(db_client, search)("name LIKE 'old-%'", max_results=1)
    query = json.loads(base64.urlsafe_b64decode(first.token + "=" * (-len(first.token) % 4)))["q"]
    with pytest.raises(InvalidArgument, match="start again without a token") as err:
        getattr(db_client, search)("name LIKE 'old-%'", max_results=1, page_token=_token(query, 1))
    assert err.value.field == "page_token"


@pytest.mark.parametrize("change", ["create", "delete"])
def test_model_pages_see_each_model_once_while_models_come_and_go(
    db_client: Client, change: str
) -> None:
    """Between pages a model is created before the page read (an offset then repeated the
    page's last model) or one already read is deleted (an offset then skipped the next)."""
    names = [f"pg-{c}" for c in "bdfhj"]
    for name in names:
        db_client.create_registered_model(name)
    seen: list[str] = []
    token = ""
    while True:
        page = db_client.search_registered_models(
            "name LIKE 'pg-%'", max_results=2, page_token=token
        )
        seen += [m.name for m in page]
        token = page.token or ""
        if not token:
            break
        if change == "create":
            db_client.create_registered_model(f"pg-a{len(seen)}")
        else:
            db_client.delete_registered_model(seen[-1])
    assert len(seen) == len(set(seen)), seen
    assert set(names) <= set(seen), seen


@pytest.mark.parametrize("change", ["create", "delete"])
def test_version_pages_see_each_version_once_while_versions_come_and_go(
    db_client: Client, change: str
) -> None:
    """Newest first: a version registered between pages sorts before the page read."""
    src = f"runs:/{logged_model(db_client)}/model"
    for _ in range(5):
        db_client.create_model_version("pv", src)
    seen: list[int] = []
    token = ""
    while True:
        page = db_client.search_model_versions("name = 'pv'", max_results=2, page_token=token)
        seen += [v.version for v in page]
        token = page.token or ""
        if not token:
            break
        if change == "create":
            db_client.create_model_version("pv", src)
        else:
            db_client.delete_model_version("pv", seen[-1])
    assert len(seen) == len(set(seen)), seen
    assert set(range(1, 6)) <= set(seen), seen


@pytest.mark.parametrize("search", ["search_registered_models", "search_model_versions"])
def test_a_long_position_is_carried_by_its_row_until_the_row_changes(
    db_client: Client, search: str
) -> None:
    """Sorted by 256-character names, a page's position is longer than a token carries: the
    token names the page's last model (or version) and the next page reads the position back
    from it, so every token stays short. Once that row is renamed or deleted, its token is
    refused naming page_token, telling to start from the first page (paging on from its new
    place would skip or repeat rows)."""
    src = f"runs:/{logged_model(db_client)}/model"
    names = ["long" + "n" * 251 + last for last in "abc"]
    for name in names:
        db_client.create_model_version(name, src)

    def page(token: str | None) -> PagedList[Any]:
        return getattr(db_client, search)(
            "name LIKE 'longn%'", max_results=1, order_by=["name"], page_token=token
        )

    seen: list[str] = []
    token: str | None = None
    for _ in names:
        found = page(token)
        seen += [m.name for m in found]
        token = found.token
        assert token is None or len(token) < 200
    assert seen == names and token is None

    after_a = page(None).token
    assert after_a and [m.name for m in page(after_a)] == names[1:2]
    if search == "search_registered_models":
        db_client.rename_registered_model(names[0], names[0][:-1] + "z")
    else:
        db_client.delete_model_version(names[0], 1)
    with pytest.raises(InvalidArgument, match="start again from the first page") as err:
        page(after_a)
    assert err.value.field == "page_token"
