"""Every mutating call is recorded: who, which RPC, which resource, the outcome, when."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from modelyard.cli import app
from modelyard.errors import PermissionDenied
from tests.security.conftest import Secure


def flush_audit(secure: Secure) -> None:
    from modelyard.services.common.auth.interceptor import AuthInterceptor

    for interceptor in secure.server._server._state.interceptor_pipeline.interceptors:
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
