"""A write addressed by a model's name applies to the model the call was authorized on.

The access check looks the name up, then the write looks it up again: if, in between, the model
is renamed away and another renamed to its name, the write used to land on that other model,
on which the caller may hold no grant at all. Each write now fails ABORTED and changes nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from modelyard import Client
from modelyard.entities.common import PermissionLevel
from modelyard.entities.registry import Stage
from modelyard.errors import Aborted
from modelyard.services.registry.store.sql import SqlRegistryStore
from tests.registry.test_api import logged_model
from tests.security.conftest import Secure

WRITES: dict[str, Callable[[Client, str], object]] = {
    "delete model": lambda c, run: c.delete_registered_model("a"),
    "rename": lambda c, run: c.rename_registered_model("a", "c"),
    "update description": lambda c, run: c.update_registered_model("a", "changed"),
    "set model tag": lambda c, run: c.set_registered_model_tag("a", "k", "changed"),
    "delete model tag": lambda c, run: c.delete_registered_model_tag("a", "k"),
    "create version": lambda c, run: c.create_model_version("a", f"runs:/{run}/model"),
    "update version": lambda c, run: c.update_model_version("a", 1, "changed"),
    "delete version": lambda c, run: c.delete_model_version("a", 1),
    "set version tag": lambda c, run: c.set_model_version_tag("a", 1, "k", "changed"),
    "delete version tag": lambda c, run: c.delete_model_version_tag("a", 1, "k"),
    "transition": lambda c, run: c.transition_model_version_stage("a", 1, Stage.STAGING),
    "set alias": lambda c, run: c.set_registered_model_alias("a", "other", 1),
    "delete alias": lambda c, run: c.delete_registered_model_alias("a", "x"),
}


def snapshot(admin: Client, name: str) -> tuple[object, ...]:
    model = admin.get_registered_model(name)
    versions = sorted(
        (v.version, v.description, sorted(v.tags.items()), v.current_stage, sorted(v.aliases))
        for v in admin.search_model_versions(f"name = '{name}'")
    )
    grants = sorted(g.principal for g in admin.list_registered_model_permissions(name))
    return model.description, sorted(model.tags.items()), versions, grants


@pytest.mark.parametrize("write", list(WRITES))
def test_a_write_lands_on_the_model_it_was_authorized_on_or_nowhere(
    make_secure: Callable[..., Secure],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    write: str,
) -> None:
    secure = make_secure(backend_store_uri=database_url)
    admin = secure.admin
    alice = secure.user("alice", "viewer")
    run = logged_model(admin)
    for name in ("a", "b"):
        admin.create_registered_model(name, description=f"{name}'s")
        admin.set_registered_model_tag(name, "k", name)
        admin.create_model_version(name, f"runs:/{run}/model")
        admin.set_model_version_tag(name, 1, "k", name)
        admin.set_registered_model_alias(name, "x", 1)
    admin.set_registered_model_permission("a", "alice", PermissionLevel.MANAGE)
    admin.set_experiment_permission("0", "alice", PermissionLevel.READ)  # the source run
    a_before, b_before = snapshot(admin, "a"), snapshot(admin, "b")

    swaps: list[Callable[[SqlRegistryStore], object]] = []
    write_transaction = SqlRegistryStore._write

    @contextlib.contextmanager
    def swapped_first(store: SqlRegistryStore) -> Iterator[Any]:
        """Between alice's access check and her write: "a" is renamed away, "b" takes its name."""
        renames, swaps[:] = list(swaps), []  # taken first: the renames' own writes run no hook
        for rename in renames:
            rename(store)
        with write_transaction(store) as conn:
            yield conn

    monkeypatch.setattr(SqlRegistryStore, "_write", swapped_first)
    swaps.append(lambda store: store.rename_registered_model("a", "a-old", "root"))
    swaps.append(lambda store: store.rename_registered_model("b", "a", "root"))
    with pytest.raises(Aborted, match="'a' is another model") as refused:
        WRITES[write](alice, run)
    assert "nothing was changed" in refused.value.message
    assert "now called 'a-old'" in refused.value.message
    assert not swaps
    assert snapshot(admin, "a") == b_before  # b, now called "a", is untouched
    assert snapshot(admin, "a-old") == a_before


def swap_names_after_the_check(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Makes the first name lookup (the access check's) rename a away and b to "a" just after
    it; returns the list that records the name it was made for."""
    looked_up = SqlRegistryStore.model_id_of
    swapped: list[str] = []

    def swap_after_the_check(store: SqlRegistryStore, name: str) -> str | None:
        model_id = looked_up(store, name)
        if not swapped:
            swapped.append(name)
            store.rename_registered_model("a", "a-old", "root")
            store.rename_registered_model("b", "a", "root")
        return model_id

    monkeypatch.setattr(SqlRegistryStore, "model_id_of", swap_after_the_check)
    return swapped


def test_a_grant_goes_on_the_model_it_was_authorized_on(
    make_secure: Callable[..., Secure], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SetRegisteredModelPermission looked the name up again after the check: the grant went on
    the model renamed to that name in between, which its caller did not manage."""
    secure = make_secure(backend_store_uri=database_url)
    admin = secure.admin
    alice = secure.user("alice", "viewer")
    for name in ("a", "b"):
        admin.create_registered_model(name)
    admin.set_registered_model_permission("a", "alice", PermissionLevel.MANAGE)
    swapped = swap_names_after_the_check(monkeypatch)
    alice.set_registered_model_permission("a", "bob", PermissionLevel.READ)
    assert swapped == ["a"]
    grants = {
        n: {g.principal for g in admin.list_registered_model_permissions(n)} for n in ("a", "a-old")
    }
    assert grants == {"a": {"root"}, "a-old": {"root", "alice", "bob"}}


def test_a_file_listing_is_of_the_model_it_was_authorized_on(
    make_secure: Callable[..., Secure], database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ListModelVersionArtifacts looked the name up again after the check: a model renamed to
    that name in between had its files listed to a caller holding no grant on it."""
    secure = make_secure(backend_store_uri=database_url)
    admin = secure.admin
    alice = secure.user("alice", "viewer")
    for name in ("a", "b"):
        run = logged_model(admin, {"MLmodel": b"m", f"{name}.pkl": b"x"})
        admin.create_model_version(name, f"runs:/{run}/model")
    admin.set_registered_model_permission("a", "alice", PermissionLevel.USE)
    swapped = swap_names_after_the_check(monkeypatch)
    with pytest.raises(Aborted, match="'a' is another model"):
        alice.list_model_version_artifacts("a", 1)
    assert swapped == ["a"]


READS: dict[str, Callable[[Client], object]] = {
    "model": lambda c: c.get_registered_model("a"),
    "version": lambda c: c.get_model_version("a", 1),
    "latest": lambda c: c.get_latest_versions("a"),
    "alias": lambda c: c.get_model_version_by_alias("a", "x"),
    "lineage": lambda c: c.get_model_version_lineage("a", 1),
}


@pytest.mark.parametrize("read", list(READS))
def test_a_read_is_of_the_model_it_was_authorized_on(
    make_secure: Callable[..., Secure],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    read: str,
) -> None:
    """The READ-gated lookups by name looked the name up again after the check: a model renamed
    to that name in between was shown to a caller holding no grant on it."""
    secure = make_secure(backend_store_uri=database_url)
    admin = secure.admin
    alice = secure.user("alice", "viewer")
    run = logged_model(admin)
    for name in ("a", "b"):
        admin.create_model_version(name, f"runs:/{run}/model")
        admin.set_registered_model_alias(name, "x", 1)
    admin.set_registered_model_permission("a", "alice", PermissionLevel.READ)
    swapped = swap_names_after_the_check(monkeypatch)
    with pytest.raises(Aborted, match="'a' is another model") as refused:
        READS[read](alice)
    assert swapped == ["a"]
    # A read changes nothing, so it does not say it changed nothing; it says where the model is.
    assert "changed" not in refused.value.message
    assert "now called 'a-old'" in refused.value.message
