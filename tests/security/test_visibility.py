"""Searches and lists return only what the caller may read; service identities can do only what
their service needs."""

from __future__ import annotations

import pytest

from modelyard.entities.common import PermissionLevel as L
from modelyard.errors import PermissionDenied
from tests.security.conftest import Secure


def grant_experiment(client, experiment_id: str, who: str, level: L) -> None:
    from modelyard._gen.common.v1 import common_pb2
    from modelyard._gen.tracking.v1 import tracking_pb2 as pb

    client._t.call(
        client._tracking.SetExperimentPermission,
        pb.SetExperimentPermissionRequest(
            experiment_id=experiment_id,
            grant=common_pb2.Grant(
                principal=who, level=common_pb2.PermissionLevel.ValueType(int(level))
            ),
        ),
    )


def test_viewer_sees_only_granted_experiments_and_runs(secure: Secure) -> None:
    alice = secure.user("alice", "editor")
    bob = secure.user("bob", "viewer")
    shared = alice.create_experiment("shared")
    private = alice.create_experiment("private")
    for eid in (shared, private):
        rid = alice.create_run(eid).info.run_id
        alice.log_metric(rid, "m", 1.0)
    grant_experiment(alice, shared, "bob", L.READ)
    assert [e.name for e in bob.search_experiments()] == ["shared"]
    assert len(bob.search_runs([shared])) == 1
    with pytest.raises(PermissionDenied, match=f"experiment {private}"):
        bob.search_runs([shared, private])
    with pytest.raises(PermissionDenied):
        bob.get_experiment(private)
    # "*" grants to every authenticated caller.
    grant_experiment(alice, private, "*", L.READ)
    assert {e.name for e in bob.search_experiments()} == {"shared", "private"}
    # Paging only ever walks readable experiments.
    for i in range(5):
        alice.create_experiment(f"hidden-{i}")
    page = bob.search_experiments(max_results=1)
    second = bob.search_experiments(max_results=1, page_token=page.token)
    assert {page[0].name, second[0].name} == {"shared", "private"}
    assert second.token is None


def test_registry_searches_and_events_are_filtered(secure: Secure) -> None:
    alice = secure.user("alice", "editor")
    bob = secure.user("bob", "viewer")
    rid = alice.create_run(alice.create_experiment("e")).info.run_id
    alice.log_text(rid, "m", "model/MLmodel")
    alice.create_model_version("visible", f"runs:/{rid}/model")
    alice.create_model_version("hidden", f"runs:/{rid}/model")
    from modelyard._gen.common.v1 import common_pb2
    from modelyard._gen.registry.v1 import registry_pb2 as pb

    alice._t.call(
        alice._registry.SetRegisteredModelPermission,
        pb.SetRegisteredModelPermissionRequest(
            name="visible",
            grant=common_pb2.Grant(
                principal="bob", level=common_pb2.PermissionLevel.ValueType(int(L.READ))
            ),
        ),
    )
    assert [m.name for m in bob.search_registered_models()] == ["visible"]
    assert {v.name for v in bob.search_model_versions()} == {"visible"}
    assert {e.model_name for e in bob.list_model_events()} == {"visible"}
    assert {e.model_name for e in bob.list_model_events("hidden")} == set()
    # READ is not enough to load the files: that needs USE.
    with pytest.raises(PermissionDenied, match="USE"):
        bob.list_model_version_artifacts("visible", 1)


def test_registering_needs_read_on_the_source_run(secure: Secure) -> None:
    alice = secure.user("alice", "editor")
    mallory = secure.user("mallory", "editor")
    rid = alice.create_run(alice.create_experiment("secret")).info.run_id
    alice.log_text(rid, "m", "model/MLmodel")
    with pytest.raises(PermissionDenied, match="experiment"):
        mallory.create_model_version("stolen", f"runs:/{rid}/model")


def test_service_identity_has_only_what_it_needs(secure: Secure) -> None:
    alice = secure.user("alice", "editor")
    eid = alice.create_experiment("e")
    rid = alice.create_run(eid).info.run_id
    service_token, _ = secure.admin.create_token("svc-registry")
    registry = secure.client(service_token)
    assert registry.get_run(rid).info.run_id == rid  # it may read runs, to copy model files
    with pytest.raises(PermissionDenied):
        registry.log_metric(rid, "m", 1.0)
    with pytest.raises(PermissionDenied):
        registry.delete_experiment(eid)
    with pytest.raises(PermissionDenied):
        registry.create_experiment("by-a-service")
    with pytest.raises(PermissionDenied):
        registry.list_principals()
    serving_token, _ = secure.admin.create_token("svc-serving")
    serving = secure.client(serving_token)
    with pytest.raises(PermissionDenied):
        serving.get_run(rid)  # serving loads models; it has no business reading runs


def test_registration_copies_with_the_registry_identity(secure: Secure) -> None:
    """The background copy reads the run as svc-registry, not as the (departed) caller."""
    alice = secure.user("alice", "editor")
    rid = alice.create_run(alice.create_experiment("e")).info.run_id
    alice.log_text(rid, "weights", "model/weights.bin")
    mv = alice.create_model_version("copied", f"runs:/{rid}/model")
    assert mv.status == "READY"
    assert [f.path for f in alice.list_model_version_artifacts("copied", 1)] == ["weights.bin"]
