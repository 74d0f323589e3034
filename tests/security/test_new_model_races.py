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


def test_the_creator_of_a_model_manages_that_model_not_the_next_one_of_its_name(
    make_secure: Callable[..., Secure], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CreateRegisteredModel granted its creator MANAGE on the model looked up by name after the
    write: if the model was renamed and another made under the name in between, the creator got
    MANAGE on that other model, and none on its own."""
    secure = make_secure(backend_store_uri=database_url)
    creator = secure.user("creator", "editor")
    create = SqlRegistryStore.create_registered_model

    def renamed_then_taken(store: SqlRegistryStore, name: str, *args: Any) -> Any:
        created = create(store, name, *args)
        if name == "m":  # an admin's rename, then another editor's model of the name
            store.rename_registered_model("m", "m-first", "root")
            create(store, "m", "someone else's", {}, "other")
        return created

    monkeypatch.setattr(SqlRegistryStore, "create_registered_model", renamed_then_taken)
    creator.create_registered_model("m")
    creator.update_registered_model("m-first", "mine")  # its creator manages it
    assert {g.principal for g in creator.list_registered_model_permissions("m-first")} == {
        "creator"
    }
    with pytest.raises(PermissionDenied):
        creator.get_registered_model("m")
    assert secure.admin.list_registered_model_permissions("m") == []
