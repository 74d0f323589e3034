"""Keyset page tokens carry the last row's sort value, so their size follows it: a token for a
long non-ASCII param was written with \\uXXXX escapes (6 bytes a character, 8 after base64),
about 48 KB for a 6000-character value, which ingresses (nginx: 8 KB) refuse in a UI link.
Tokens are UTF-8 JSON now; one of the old encoding, held by a client across an upgrade, still
pages, and a forged one is still refused naming page_token."""

from __future__ import annotations

import base64
import json

import pytest

from modelyard import Client
from modelyard.errors import InvalidArgument
from modelyard.services.tracking.limits import MAX_PARAM_VALUE_LENGTH
from tests.test_bad_input import _bad_tokens

# Base64 of the value's UTF-8, with room for the query's fingerprint, the run id and JSON.
OVERHEAD = 200


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
    assert len(first.token) <= 4 * (len((value + "a").encode()) + OVERHEAD) // 3

    for token in (first.token, _old_encoding(first.token)):
        second = client.search_runs([eid], max_results=1, order_by=order, page_token=token)
        assert [r.data.params["p"] for r in second] == [value + "b"]
        assert not second.token

    for token in _bad_tokens(first.token, [1, [value], [1, "x"], ["x", "y", "z"]]):
        with pytest.raises(InvalidArgument, match="page_token") as err:
            client.search_runs([eid], max_results=1, order_by=order, page_token=token)
        assert err.value.field == "page_token", token
