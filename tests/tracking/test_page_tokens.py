"""Keyset page tokens carried the last row's sort value, so their size followed it: a token for
a long non-ASCII param was written with \\uXXXX escapes (6 bytes a character, 8 after base64),
about 48 KB for a 6000-character value, and still ~24 KB as UTF-8, which ingresses (nginx:
8 KB) refuse in a UI link. A long position's token names its row now, with a digest of the
position; tokens of before, held by a client across an upgrade, still page, and a forged one is
still refused naming page_token."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import pytest

from modelyard import Client
from modelyard.entities import Experiment, PagedList, Run
from modelyard.errors import InvalidArgument
from modelyard.services.tracking.limits import (
    MAX_EXPERIMENT_NAME_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    MAX_TAG_VALUE_LENGTH,
)
from tests.test_bad_input import _bad_tokens, _token

# Characters of a token at most, whatever the sort value: a position of 256 bytes in base64,
# with the query's fingerprint and JSON around it.
MAX_TOKEN = 400


def _old_encoding(token: str) -> str:
    """`token` as the server wrote it before: JSON with \\uXXXX escapes, all ASCII."""
    data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize("char", ["é", "模", "😀"])
def test_a_long_non_ascii_sort_value_gives_a_compact_token_and_old_tokens_still_page(
    client: Client, char: str
) -> None:
    eid = client.create_experiment(f"tokens-{char}")
    value = char * (MAX_PARAM_VALUE_LENGTH - 1)
    for last in "ab":
        run_id = client.create_run(eid).info.run_id
        client.log_param(run_id, "p", value + last)
    order = ["params.p ASC"]
    first = client.search_runs([eid], max_results=1, order_by=order)
    assert [r.data.params["p"] for r in first] == [value + "a"]
    assert first.token
    assert len(first.token) <= MAX_TOKEN
    # as servers of before issued it: the position inline, with \\u escapes or in UTF-8
    run = client.get_run(first[0].info.run_id).info
    inline = _token(_query(first.token), [False, value + "a", run.start_time, run.run_id])

    for token in (first.token, inline, _old_encoding(inline)):
        second = client.search_runs([eid], max_results=1, order_by=order, page_token=token)
        assert [r.data.params["p"] for r in second] == [value + "b"]
        assert not second.token

    forged = [1, [value], [1, "x"], ["x", "y", "z"], {"row": [run.run_id]}, {"row": 1}]
    forged += [{"row": [1], "digest": "A" * 22}, {"row": [run.run_id, 1], "digest": "A" * 22}]
    forged += [{"row": [run.run_id], "digest": "A" * 22}, {"row": [run.run_id], "digest": 1}]
    for token in _bad_tokens(first.token, forged):
        with pytest.raises(InvalidArgument, match="page_token") as err:
            client.search_runs([eid], max_results=1, order_by=order, page_token=token)
        assert err.value.field == "page_token", token


def _query(token: str) -> str:
    """The query fingerprint inside a token."""
    return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["q"]


def _first_page_refused(search: Callable[[str], object], token: str) -> None:
    """`search(token)` is refused naming page_token, telling to start from the first page."""
    with pytest.raises(InvalidArgument, match="start again from the first page") as err:
        search(token)
    assert err.value.field == "page_token"


def test_runs_sorted_by_huge_values_page_with_short_tokens_until_the_row_changes(
    db_client: Client,
) -> None:
    """Each page's token is short, on each backend, and the pages read every run once; a
    token whose row's sort value changed since (the tag edited, or removed) is refused, with
    what to do: a new position would skip or repeat runs."""
    eid = db_client.create_experiment("huge tags")
    value = "模" * (MAX_TAG_VALUE_LENGTH - 1)
    ids = []
    for last in "abcd":
        ids.append(db_client.create_run(eid).info.run_id)
        db_client.set_tag(ids[-1], "t", value + last)

    def search(token: str | None) -> PagedList[Run]:
        return db_client.search_runs([eid], max_results=1, order_by=["tags.t"], page_token=token)

    seen: list[str] = []
    token: str | None = None
    for _ in range(4):
        page = search(token)
        seen += [r.info.run_id for r in page]
        token = page.token
        assert token is None or len(token) <= MAX_TOKEN
    assert seen == ids and token is None

    after_a = search(None).token
    after_b = search(after_a).token
    assert after_a and after_b
    db_client.set_tag(ids[0], "t", value + "z")
    db_client.delete_tag(ids[1], "t")
    _first_page_refused(search, after_a)
    _first_page_refused(search, after_b)


def test_experiments_sorted_by_huge_names_page_with_short_tokens(db_client: Client) -> None:
    names = ["實驗" * (MAX_EXPERIMENT_NAME_LENGTH // 2 - 1) + last for last in "abc"]
    ids = [db_client.create_experiment(name) for name in names]

    def search(token: str | None) -> PagedList[Experiment]:
        return db_client.search_experiments(
            max_results=1, order_by=["name"], filter_string="name LIKE '實驗%'", page_token=token
        )

    seen: list[str] = []
    token: str | None = None
    for _ in range(3):
        page = search(token)
        seen += [e.experiment_id for e in page]
        token = page.token
        assert token is None or len(token) <= MAX_TOKEN
    assert seen == ids and token is None

    after_a = search(None).token
    assert after_a
    db_client.rename_experiment(ids[0], names[0] + "z")
    _first_page_refused(search, after_a)
