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
from modelyard.errors import PermissionDenied
from modelyard.services.common.server import ModelyardServer
from modelyard.services.common.settings import AuthSettings, Settings
from tests.conftest import running_server
from tests.security.conftest import Secure


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
    settings = Settings(
        home=tmp_path / "tracking-home",
        port=0,
        grace_period=0,
        auth=AuthSettings(
            enabled=True,
            auth_uri=secure.address,
            service_token=service_token,
            public_key_file=secure.settings.home_dir / "auth" / "signing-key.pub.pem",
        ),
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
