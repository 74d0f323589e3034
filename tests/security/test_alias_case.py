"""Alias names are case-sensitive, as in MLflow's SQL store on SQLite and PostgreSQL; the names
the registry reserves or protects are so in any case, as MLflow reserves 'latest' in any case."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from modelyard.entities.common import PermissionLevel as L
from modelyard.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from tests.registry.test_api import logged_model
from tests.security.conftest import Secure


def test_an_alias_is_its_exact_spelling_and_a_protected_one_is_protected_in_any_case(
    make_secure: Callable[..., Secure], database_url: str
) -> None:
    """'Champion' was stored beside 'champion' as a second alias: a look-alike that a
    models:/m@Champion URI (or a person) took for the protected one, though it pointed
    elsewhere. A name differing only in case from one the model holds is now refused, naming
    it; a lookup by another case is NOT_FOUND and names the spelling the model holds."""
    secure = make_secure(backend_store_uri=database_url)
    owner = secure.admin
    editor = secure.user("editor", "viewer")
    for _ in range(2):
        owner.create_model_version("m", f"runs:/{logged_model(owner)}/model")
    owner.set_registered_model_permission("m", "editor", L.EDIT)
    owner.set_registered_model_alias("m", "champion", 1)

    # Case-sensitive: the exact spelling names the alias, another one does not.
    assert owner.get_model_version_by_alias("m", "champion").version == 1
    with pytest.raises(NotFound) as missing:
        owner.get_model_version_by_alias("m", "Champion")
    assert "'champion'" in missing.value.message and "case" in missing.value.message
    with pytest.raises(FailedPrecondition) as lookalike:
        owner.set_registered_model_alias("m", "Champion", 2)
    assert lookalike.value.resource_name == "m@champion"
    assert "'champion'" in lookalike.value.message
    assert owner.get_registered_model("m").aliases == {"champion": 1}
    owner.delete_registered_model_alias("m", "CHAMPION")  # not held: nothing to do
    assert owner.get_registered_model("m").aliases == {"champion": 1}

    # Case-insensitive: reserved and protected names are so however they are spelled.
    for reserved in ("LATEST", "Latest", "V2"):
        with pytest.raises(InvalidArgument):
            owner.set_registered_model_alias("m", reserved, 2)
    for protected in ("champion", "CHAMPION", "Production"):
        with pytest.raises(PermissionDenied, match="MANAGE"):
            editor.set_registered_model_alias("m", protected, 2)
    editor.set_registered_model_alias("m", "Shadow", 2)  # neither: EDIT is enough
    with pytest.raises(FailedPrecondition):
        editor.set_registered_model_alias("m", "shadow", 1)
    assert owner.get_registered_model("m").aliases == {"Shadow": 2, "champion": 1}
