"""Feature store grants beyond the matrix: creators own what they apply, editors need EDIT to
change someone else's view, lists show only what the caller may read, and the serving identity
looks features up without any grant."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from modelyard.entities.common import PermissionLevel as L
from modelyard.errors import PermissionDenied
from modelyard.features import FeatureStoreClient
from tests.features.repo import NOW, make_repo
from tests.security.conftest import Secure


def _features(secure: Secure, name: str, *roles: str) -> FeatureStoreClient:
    secure.admin.create_principal(name, list(roles))
    token, _ = secure.admin.create_token(name)
    return FeatureStoreClient(secure.address, token)


def test_creator_owns_and_others_need_grants(secure: Secure, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    alice = _features(secure, "alice", "editor")
    bob = _features(secure, "bob", "editor")
    viewer = _features(secure, "vera", "viewer")
    alice.apply(repo.objects)
    alice.materialize(NOW - timedelta(days=5), NOW)

    # Bob, an editor with no grant, can neither change nor see Alice's view.
    with pytest.raises(PermissionDenied) as err:
        bob.apply([replace(repo.stats, description="mine now")])
    assert "EDIT" in str(err.value) and "driver_stats" in str(err.value)
    assert bob.list_feature_views() == []
    assert [e.name for e in bob.list_entities()] == ["driver"]  # entities are shared vocabulary
    with pytest.raises(PermissionDenied):
        bob.get_online_features(["driver_stats:trips"], [{"driver_id": 1}])

    # READ shows the view but does not let one use its values.
    alice.set_permission("feature_view", "driver_stats", "vera", L.READ)
    assert [v.name for v in viewer.list_feature_views()] == ["driver_stats"]
    with pytest.raises(PermissionDenied):
        viewer.get_online_features(["driver_stats:trips"], [{"driver_id": 1}])
    # USE on the feature service is enough to look up through it, without a grant on the view.
    alice.set_permission("feature_service", "driver_model", "vera", L.USE)
    assert viewer.get_online_features("driver_model", [{"driver_id": 1}]).to_dict()["trips"] == [35]

    # EDIT lets Bob change it; he still cannot hand out grants (MANAGE).
    alice.set_permission("feature_view", "driver_stats", "bob", L.EDIT)
    assert bob.apply([replace(repo.stats, description="better")])[0].action == "update"
    with pytest.raises(PermissionDenied):
        bob.set_permission("feature_view", "driver_stats", "vera", L.EDIT)

    # Grants are listed and taken back through the client too.
    granted = {
        (g.principal, g.level) for g in alice.list_permissions("feature_view", "driver_stats")
    }
    assert {("vera", L.READ), ("bob", L.EDIT)} <= granted
    alice.delete_permission("feature_view", "driver_stats", "vera")
    assert viewer.list_feature_views() == []
    for c in (alice, bob, viewer):
        c.close()


def test_the_serving_identity_reads_features_but_cannot_change_them(
    secure: Secure, tmp_path: Path
) -> None:
    repo = make_repo(tmp_path / "repo")
    with FeatureStoreClient(secure.address, secure.admin_token) as admin:
        admin.apply(repo.objects)
        admin.materialize(NOW - timedelta(days=5), NOW)
    token, _ = secure.admin.create_token("svc-serving")
    with FeatureStoreClient(secure.address, token) as serving:
        assert serving.get_online_features("driver_model", [{"driver_id": 1}]).to_dict() == {
            "driver_id": [1],
            "conv_rate": [0.35],
            "trips": [35],
        }
        with pytest.raises(PermissionDenied):
            serving.apply([replace(repo.stats, ttl=timedelta(days=9))])
        with pytest.raises(PermissionDenied):
            serving.materialize(NOW - timedelta(days=1), NOW)
