"""Every RPC of every proto is in its service's access table; only health and reflection are
public. The protos are parsed from source, so a new RPC without a rule fails here."""

from __future__ import annotations

import re
from pathlib import Path

from modelyard.services.apps import SERVICES, build_server
from modelyard.services.common.auth.policy import PUBLIC_SERVICES
from modelyard.services.common.settings import Settings

PROTOS = Path(__file__).resolve().parents[2] / "protos"
_SERVICE = re.compile(r"service\s+(\w+)\s*\{(.*?)\n\}", re.DOTALL)
_RPC = re.compile(r"^\s*rpc\s+(\w+)\s*\(", re.MULTILINE)
_PACKAGE = re.compile(r"^package\s+([\w.]+);", re.MULTILINE)


def proto_rpcs() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in PROTOS.rglob("*.proto"):
        text = path.read_text()
        package = _PACKAGE.search(text)
        for name, body in _SERVICE.findall(text):
            full = f"{package.group(1)}.{name}" if package else name
            found[full] = set(_RPC.findall(body))
    return found


def access_tables(tmp_path: Path) -> dict[str, set[str]]:
    server = build_server(Settings(home=tmp_path, port=0), list(SERVICES))
    try:
        registrations = server._registrations
        return {name: set(a.rules) for r in registrations for name, a in r.access.items()}
    finally:
        server.stop(0)


def test_every_rpc_has_a_rule(tmp_path: Path) -> None:
    rpcs = proto_rpcs()
    tables = access_tables(tmp_path)
    served = set(rpcs)
    assert served, "no protos found"
    missing = {
        f"{service}/{rpc}"
        for service in served
        for rpc in rpcs[service] - tables.get(service, set())
    }
    assert not missing, f"RPCs without an access rule: {sorted(missing)}"
    stale = {
        f"{service}/{rule}"
        for service, rules in tables.items()
        for rule in rules - rpcs.get(service, set())
    }
    assert not stale, f"access rules for RPCs that do not exist: {sorted(stale)}"


def test_only_health_and_reflection_are_public(tmp_path: Path) -> None:
    server = build_server(Settings(home=tmp_path, port=0), list(SERVICES))
    try:
        guarded = set(access_tables(tmp_path))
        assert set(server.service_names) - guarded <= PUBLIC_SERVICES
    finally:
        server.stop(0)
