"""Feature store grants beyond the matrix: creators own what they apply, editors need EDIT to
change someone else's view, lists show only what the caller may read, and the serving identity
looks features up without any grant."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from modelyard.entities.common import PermissionLevel as L
from modelyard.errors import NotFound, PermissionDenied
from modelyard.features import FeatureService, FeatureStoreClient
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


def test_a_feature_service_needs_use_on_the_views_it_serves(secure: Secure, tmp_path: Path) -> None:
    """USE on a feature service is enough to read through it, so defining one must not let an
    editor read views he holds no USE on."""
    repo = make_repo(tmp_path / "repo")
    alice = _features(secure, "alice", "editor")
    bob = _features(secure, "bob", "editor")
    secret = replace(repo.stats, name="secret_stats")
    alice.apply([*repo.objects, secret])
    alice.materialize(NOW - timedelta(days=5), NOW)
    rows = pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW]})

    # Bob's own service over Alice's view is refused, in the plan too, and nothing is created.
    mine = FeatureService("bobs_service", [repo.stats[["conv_rate", "trips"]]])
    for dry_run in (True, False):
        with pytest.raises(PermissionDenied) as err:
            bob.apply([mine], dry_run=dry_run)
        assert "USE on feature_view 'driver_stats'" in str(err.value)
        assert "bobs_service" in str(err.value)
    with pytest.raises(NotFound):
        bob.get_online_features("bobs_service", [{"driver_id": 1}])
    with pytest.raises(NotFound):
        bob.get_historical_features(rows, "bobs_service").to_df()

    # EDIT on Alice's service does not let him point it at a view he cannot use either.
    alice.set_permission("feature_service", "driver_model", "bob", L.EDIT)
    with pytest.raises(PermissionDenied, match="USE on feature_view 'secret_stats'"):
        bob.apply([FeatureService("driver_model", [secret[["trips"]]])])
    served = bob.get_online_features("driver_model", [{"driver_id": 1}]).to_dict()
    assert "conv_rate" in served  # still Alice's projection of driver_stats

    # With USE on the view, his service serves it, online and for training sets.
    alice.set_permission("feature_view", "driver_stats", "bob", L.USE)
    assert [s.action for s in bob.apply([mine])] == ["create"]
    assert bob.get_online_features("bobs_service", [{"driver_id": 1}]).to_dict() == {
        "driver_id": [1],
        "conv_rate": [0.35],
        "trips": [35],
    }
    training = bob.get_historical_features(rows, "bobs_service").to_df()
    assert training["trips"].tolist() == [35]
    # A view he creates in the same apply is his: no grant needed beforehand.
    own = replace(repo.stats, name="bobs_stats")
    steps = bob.apply([own, FeatureService("bobs_own", [own[["trips"]]])])
    assert {(s.kind, s.action) for s in steps} == {
        ("feature_view", "create"),
        ("feature_service", "create"),
    }
    for c in (alice, bob):
        c.close()


def test_deleting_a_feature_view_or_service_needs_manage(secure: Secure, tmp_path: Path) -> None:
    """Deleting drops every grant, and whoever applies the name again owns it: with EDIT only,
    a grantee could take the view from its owner."""
    repo = make_repo(tmp_path / "repo")
    alice = _features(secure, "alice", "editor")
    bob = _features(secure, "bob", "editor")
    alice.apply(repo.objects)
    alice.materialize(NOW - timedelta(days=5), NOW)
    for kind, name in (("feature_view", "driver_stats"), ("feature_service", "driver_model")):
        alice.set_permission(kind, name, "bob", L.EDIT)

    # A complete apply without them would delete both: refused, in the plan too.
    for dry_run in (True, False):
        with pytest.raises(PermissionDenied) as err:
            bob.apply([repo.driver], dry_run=dry_run, partial=False)
        assert "MANAGE on feature_service 'driver_model' to delete it (has EDIT)" in str(err.value)
    alice.set_permission("feature_service", "driver_model", "bob", L.MANAGE)
    with pytest.raises(PermissionDenied, match="MANAGE on feature_view 'driver_stats'"):
        bob.apply([repo.driver], partial=False)
    # Nothing changed: Alice still owns her view and reads its rows.
    assert alice.get_online_features(["driver_stats:trips"], [{"driver_id": 1}]).to_dict()[
        "trips"
    ] == [35]
    granted = {
        (g.principal, g.level) for g in alice.list_permissions("feature_view", "driver_stats")
    }
    assert granted == {("alice", L.MANAGE), ("bob", L.EDIT)}
    # EDIT still updates; MANAGE deletes.
    assert bob.apply([replace(repo.stats, description="better")])[0].action == "update"
    alice.set_permission("feature_view", "driver_stats", "bob", L.MANAGE)
    steps = bob.apply([repo.driver], partial=False)
    assert {(s.kind, s.action) for s in steps if s.action == "delete"} == {
        ("feature_view", "delete"),
        ("feature_service", "delete"),
    }
    for c in (alice, bob):
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


def test_materializations_of_all_views_show_only_those_one_may_read(
    secure: Secure, tmp_path: Path
) -> None:
    """Without a view named, the access rule has nothing to check: the list itself is filtered,
    or anyone could see the names, windows and row counts of views they may not read."""
    repo = make_repo(tmp_path / "repo")
    alice = _features(secure, "alice", "editor")
    eve = _features(secure, "eve", "viewer")
    alice.apply(repo.objects)
    alice.materialize(NOW - timedelta(days=5), NOW)
    with pytest.raises(PermissionDenied):
        eve.list_materializations("driver_stats")
    assert eve.list_materializations("") == []
    assert eve.list_materializations("", latest_only=True) == []
    assert [m.feature_view for m in alice.list_materializations("")] == ["driver_stats"]
    alice.set_permission("feature_view", "driver_stats", "eve", L.READ)
    assert [m.rows for m in eve.list_materializations("")] == [2]
    assert eve.list_materializations("", latest_only=True) == eve.list_materializations("")
    with pytest.raises(NotFound, match="nope"):
        alice.list_materializations("nope")
    for c in (alice, eve):
        c.close()
