"""Who may add a version to a model is decided on the model the store finds, not on the one the
call was authorized on: a name no model had lets any editor through, to create one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from modelyard.errors import PermissionDenied
from modelyard.services.registry.store.sql import SqlRegistryStore
from tests.security.conftest import Secure


def test_a_version_for_a_new_model_is_not_added_to_one_another_editor_created_meanwhile(
    make_secure: Callable[..., Secure], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CreateModelVersion for a name no model has is authorized as a creation. If another
    editor's call created that model before this one reached the store, the version used to be
    added to it, a model this caller held no grant on (and did not own)."""
    secure = make_secure(backend_store_uri=database_url)
    intruder = secure.user("intruder", "editor")
    rid = intruder.create_run(intruder.create_experiment("e")).info.run_id
    intruder.log_text(rid, "flavors: {}\n", "model/MLmodel")

    create = SqlRegistryStore.create_model_version
    raced: list[str] = []

    def owner_first(store: SqlRegistryStore, name: str, *args: Any, **kwargs: Any) -> Any:
        """The owner's CreateRegisteredModel lands between the intruder's authorization (no
        model of that name) and its store call."""
        if not raced:
            raced.append(name)
            store.create_registered_model(name, "the owner's", {}, "owner")
        return create(store, name, *args, **kwargs)

    monkeypatch.setattr(SqlRegistryStore, "create_model_version", owner_first)
    with pytest.raises(PermissionDenied, match="needs EDIT") as err:
        intruder.create_model_version("m", f"runs:/{rid}/model")
    assert err.value.resource_name == "m"
    assert raced == ["m"]
    admin = secure.admin
    assert admin.get_registered_model("m").description == "the owner's"
    assert admin.search_model_versions("name = 'm'") == []
