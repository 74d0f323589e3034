"""Every mutating call is recorded: who, which RPC, which resource, the outcome, when."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard import Client
from modelyard.cli import app
from modelyard.client._transport import Transport
from modelyard.client.auth import AuthClient
from modelyard.entities.auth import AuditEvent
from modelyard.entities.common import PermissionLevel as L
from modelyard.errors import NotFound, PermissionDenied
from modelyard.features import FeatureStoreClient
from modelyard.services.common.server import ModelyardServer
from modelyard.services.common.settings import Settings
from tests.conftest import running_server
from tests.features.repo import make_repo
from tests.security.conftest import Secure, remote_tracking_settings


def flush_audit(secure: Secure | ModelyardServer) -> None:
    from modelyard.services.common.auth.interceptor import AuthInterceptor

    server = secure.server if isinstance(secure, Secure) else secure
    for interceptor in server._server._state.interceptor_pipeline.interceptors:
        if isinstance(interceptor, AuthInterceptor) and interceptor._audit:
            interceptor._audit.flush()


def test_mutations_and_refusals_are_audited(secure: Secure) -> None:
    alice = secure.user("alice", "editor")
    bob = secure.user("bob", "viewer")
    eid = alice.create_experiment("audited")
    rid = alice.create_run(eid).info.run_id
    alice.log_metric(rid, "m", 1.0)
    alice.get_run(rid)  # a read: not audited
    with pytest.raises(PermissionDenied):
        bob.delete_experiment(eid)
    flush_audit(secure)
    events = secure.admin.list_audit_events()
    mine = [
        (e.principal, e.method, e.resource, e.outcome)
        for e in events
        if e.principal in ("alice", "bob")
    ]
    assert ("alice", "CreateExperiment", "", "OK") in mine
    assert ("alice", "CreateRun", f"experiment/{eid}", "OK") in mine
    assert ("alice", "LogMetric", f"experiment/{eid}", "OK") in mine
    assert ("bob", "DeleteExperiment", f"experiment/{eid}", "PERMISSION_DENIED") in mine
    assert not [m for m in mine if m[1] == "GetRun"]
    assert all(e.timestamp > 0 for e in events)
    only_bob = secure.admin.list_audit_events(principal="bob")
    assert {e.principal for e in only_bob} == {"bob"}
    with pytest.raises(PermissionDenied, match="admin"):
        alice.list_audit_events()


def test_only_service_identities_write_the_audit_log(secure: Secure, tmp_path: Path) -> None:
    """The audit log holds admins to account: an admin must not write events into it (as
    anyone, at any time) nor read the services' auth state. Services still record theirs."""
    forged = AuditEvent(1, "alice", "x", "DeleteExperiment", "experiment/1", "OK")
    root = AuthClient(Transport(secure.address, secure.admin_token))
    with pytest.raises(PermissionDenied, match=r"svc-<service>.*not even admins"):
        root.record_audit_events([forged])
    with pytest.raises(PermissionDenied, match="not even admins"):
        root.get_auth_state()
    root._t.close()

    # A tracking service in a server of its own reaches auth over gRPC as svc-tracking: it
    # reads the auth state and records its calls.
    secure.admin.create_principal("alice", ["editor"])
    alice_token, _ = secure.admin.create_token("alice")
    service_token, _ = secure.admin.create_token("svc-tracking")
    settings = remote_tracking_settings(
        secure, tmp_path / "tracking-home", service_token=service_token
    )
    with running_server(settings, ("tracking",)) as tracking:
        with Client(tracking.address, token=alice_token) as alice:
            alice.create_experiment("remote")
        flush_audit(tracking)
    events = [
        (e.principal, e.service, e.method, e.outcome) for e in secure.admin.list_audit_events()
    ]
    assert ("alice", "modelyard.tracking.v1.TrackingService", "CreateExperiment", "OK") in events
    assert not [e for e in events if e[1] == "x"]  # the forged event


def test_identity_and_grant_changes_name_whom_they_change(secure: Secure, tmp_path: Path) -> None:
    """Who was created, promoted, disabled or given a token, and whose access a grant change
    touched: the most security-relevant events must say it."""
    root = secure.admin
    root.create_principal("mallory", ["viewer"])
    root.update_principal("mallory", roles=["admin"])
    _, minted = root.create_token("mallory", "for mallory")
    root.revoke_token(minted.token_id)
    root.create_token(description="root's own")
    root.update_principal("mallory", disabled=True)

    root.create_principal("alice", ["editor"])
    alice_token, _ = root.create_token("alice")
    alice = secure.client(alice_token)
    bob = secure.user("bob", "viewer")
    eid = alice.create_experiment("shared")
    alice.set_experiment_permission(eid, "bob", L.READ)
    alice.delete_experiment_permission(eid, "bob")
    with pytest.raises(PermissionDenied):
        bob.set_experiment_permission(eid, "bob", L.MANAGE)
    alice.create_registered_model("fraud")
    alice.set_registered_model_permission("fraud", "bob", L.USE)
    alice.delete_registered_model_permission("fraud", "bob")
    with pytest.raises(NotFound):
        alice.set_endpoint_permission("no-such-endpoint", "bob", L.READ)
    repo = make_repo(tmp_path / "repo")
    features = FeatureStoreClient(secure.address, alice_token)
    features.apply([repo.driver, repo.stats])
    features.set_permission("feature_view", "driver_stats", "bob", L.READ)
    features.delete_permission("feature_view", "driver_stats", "bob")
    features.close()
    flush_audit(secure)

    events = [(e.principal, e.method, e.resource, e.outcome) for e in root.list_audit_events()]
    assert [e for e in events if e[0] == "root"] == [
        ("root", "AdminBootstrap", "principal/root", "OK"),  # the fixture's `admin bootstrap`
        ("root", "CreatePrincipal", "principal/mallory", "OK"),
        ("root", "UpdatePrincipal", "principal/mallory", "OK"),
        ("root", "CreateToken", "principal/mallory", "OK"),
        ("root", "RevokeToken", f"token/{minted.token_id}", "OK"),
        ("root", "CreateToken", "principal/root", "OK"),
        ("root", "UpdatePrincipal", "principal/mallory", "OK"),
        ("root", "CreatePrincipal", "principal/alice", "OK"),
        ("root", "CreateToken", "principal/alice", "OK"),
        ("root", "CreatePrincipal", "principal/bob", "OK"),  # secure.user()
        ("root", "CreateToken", "principal/bob", "OK"),
    ]
    grants = [e for e in events if e[1].endswith("Permission")]
    assert grants == [
        ("alice", "SetExperimentPermission", f"experiment/{eid}#bob", "OK"),
        ("alice", "DeleteExperimentPermission", f"experiment/{eid}#bob", "OK"),
        ("bob", "SetExperimentPermission", f"experiment/{eid}#bob", "PERMISSION_DENIED"),
        ("alice", "SetRegisteredModelPermission", "registered_model/fraud#bob", "OK"),
        ("alice", "DeleteRegisteredModelPermission", "registered_model/fraud#bob", "OK"),
        ("alice", "SetEndpointPermission", "endpoint/no-such-endpoint#bob", "NOT_FOUND"),
        ("alice", "SetFeaturePermission", "feature_view/driver_stats#bob", "OK"),
        ("alice", "DeleteFeaturePermission", "feature_view/driver_stats#bob", "OK"),
    ]


def test_every_grant_change_is_audited_with_its_grantee(tmp_path: Path) -> None:
    """A Set/Delete*Permission RPC added to any service must name the grantee as well."""
    from modelyard.services.apps import SERVICES, build_server

    server = build_server(Settings(home=tmp_path, port=0), list(SERVICES))
    try:
        rules = {
            f"{service}/{rpc}": rule
            for r in server._registrations
            for service, access in r.access.items()
            for rpc, rule in access.rules.items()
            if rpc.startswith(("Set", "Delete")) and rpc.endswith("Permission")
        }
    finally:
        server.stop(0)
    assert len(rules) == 8
    assert not [name for name, rule in rules.items() if not rule.changes_grant]


def test_audit_cli(secure: Secure) -> None:
    alice = secure.user("alice", "editor")
    alice.create_experiment("via-cli")
    flush_audit(secure)
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "audit",
            "--principal",
            "alice",
            "--uri",
            secure.address,
            "--token",
            secure.admin_token,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    events = listed["events"]
    assert [(e["method"], e["outcome"]) for e in events] == [("CreateExperiment", "OK")]
    assert listed["last_event_id"] == events[-1]["event_id"]
    table = runner.invoke(
        app,
        ["audit", "--uri", secure.address, "--token", secure.admin_token],
        env={"COLUMNS": "200"},
    )
    assert "CreateExperiment" in table.output


def test_refusals_are_counted_in_the_rpc_metrics(secure: Secure) -> None:
    """Auth refuses before the service runs; the error counters must still see it."""
    from prometheus_client import REGISTRY

    labels = {
        "service": "modelyard.tracking.v1.TrackingService",
        "method": "DeleteExperiment",
        "code": "PERMISSION_DENIED",
    }
    before = REGISTRY.get_sample_value("modelyard_rpc_errors_total", labels) or 0.0
    eid = secure.user("carol", "editor").create_experiment("counted")
    with pytest.raises(PermissionDenied):
        secure.user("dave", "viewer").delete_experiment(eid)
    assert REGISTRY.get_sample_value("modelyard_rpc_errors_total", labels) == before + 1
