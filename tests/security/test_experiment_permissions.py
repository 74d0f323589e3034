"""Experiment grants through the SDK's Client: what a grant allows, and taking it back."""

from __future__ import annotations

import pytest

from modelyard.entities import Grant
from modelyard.entities.common import PermissionLevel as L
from modelyard.errors import InvalidArgument, NotFound, PermissionDenied
from tests.security.conftest import Secure


def test_experiment_permissions_through_the_client(secure: Secure) -> None:
    alice = secure.user("alice", "editor")
    bob = secure.user("bob", "viewer")
    eid = alice.create_experiment("shared")
    with pytest.raises(PermissionDenied):
        bob.get_experiment(eid)

    alice.set_experiment_permission(eid, "bob", L.READ)
    assert bob.get_experiment(eid).name == "shared"
    assert Grant("bob", L.READ) in alice.list_experiment_permissions(eid)
    with pytest.raises(PermissionDenied):
        bob.create_run(eid)

    # A new grant replaces the old one.
    alice.set_experiment_permission(eid, "bob", L.EDIT)
    assert [g for g in alice.list_experiment_permissions(eid) if g.principal == "bob"] == [
        Grant("bob", L.EDIT)
    ]
    bob.create_run(eid)
    # EDIT is not MANAGE: bob cannot hand out access.
    with pytest.raises(PermissionDenied):
        bob.set_experiment_permission(eid, "mallory", L.READ)

    alice.delete_experiment_permission(eid, "bob")
    assert "bob" not in {g.principal for g in alice.list_experiment_permissions(eid)}
    with pytest.raises(PermissionDenied):
        bob.get_experiment(eid)
    with pytest.raises(NotFound) as missing:
        alice.delete_experiment_permission(eid, "bob")
    assert missing.value.resource_name == "bob"
    with pytest.raises(InvalidArgument) as bad:
        alice.set_experiment_permission(eid, "", L.READ)
    assert bad.value.field == "grant.principal"


def test_registered_model_permissions_through_the_client(secure: Secure) -> None:
    alice = secure.user("alice", "editor")
    bob = secure.user("bob", "viewer")
    alice.create_registered_model("shared-model")
    with pytest.raises(PermissionDenied):
        bob.get_registered_model("shared-model")
    alice.set_registered_model_permission("shared-model", "bob", L.READ)
    assert bob.get_registered_model("shared-model").name == "shared-model"
    assert Grant("bob", L.READ) in alice.list_registered_model_permissions("shared-model")
    alice.delete_registered_model_permission("shared-model", "bob")
    with pytest.raises(PermissionDenied):
        bob.get_registered_model("shared-model")
