"""Page tokens of the registry's searches: one the server did not issue is refused as
INVALID_ARGUMENT naming page_token, on each backend. A forged offset used to reach the SQL and
fail there (INTERNAL, with a traceback logged per call); a negative one read from offset 0 on
SQLite."""

from __future__ import annotations

import pytest

from modelyard import Client
from modelyard.errors import InvalidArgument
from tests.registry.test_api import logged_model
from tests.test_bad_input import _bad_tokens

# Each forged into a token of the very query it is sent with: the fingerprint is no secret.
POSITIONS = [-5, -1, "abc", "1", 1.5, 1e300, 2**53 + 1, 2**63, 2**70, [1], {"a": 1}, True, None]


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
