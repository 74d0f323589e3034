"""There is always an enabled admin, and `admin bootstrap` is the way back in when admin access is
lost; both hold with concurrent callers, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import update

from modelyard.errors import FailedPrecondition
from modelyard.services.auth.app import migrate
from modelyard.services.auth.service import AuthService
from modelyard.services.auth.store.schema import principals
from modelyard.services.auth.store.sql import SqlAuthStore
from modelyard.services.common.auth.tokens import TokenSigner, generate_keypair
from modelyard.services.common.db import Database
from tests.security.conftest import Secure


@pytest.fixture
def open_auth(database_url: str) -> Iterator[Callable[[], AuthService]]:
    """Opens AuthServices on one migrated database, each with its own engine, as separate
    processes would have."""
    private, _ = generate_keypair()
    opened: list[AuthService] = []

    def open_one() -> AuthService:
        service = AuthService(SqlAuthStore(Database(database_url)), TokenSigner(private))
        opened.append(service)
        return service

    migrate(open_one().store.db)
    yield open_one
    for service in opened:
        service.store.close()


def _together(calls: list[Callable[[], object]]) -> list[object]:
    """Run `calls` in threads released at once; each one's result or exception."""
    results: list[object] = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def run(i: int) -> None:
        start.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def _enabled_admins(service: AuthService) -> list[str]:
    return [p.name for p in service.list_principals() if "admin" in p.roles and not p.disabled]


def test_the_last_enabled_admin_can_be_neither_demoted_nor_disabled(secure: Secure) -> None:
    for change in ({"roles": ["viewer"]}, {"disabled": True}):
        with pytest.raises(FailedPrecondition, match="'root' is the last enabled admin; make"):
            secure.admin.update_principal("root", **change)  # type: ignore[arg-type]
    secure.admin.create_principal("ann", ["admin"])
    secure.admin.update_principal("ann", disabled=True)  # a disabled admin does not count
    with pytest.raises(FailedPrecondition, match="last enabled admin"):
        secure.admin.update_principal("root", roles=["editor"])
    secure.admin.update_principal("ann", disabled=False)
    assert secure.admin.update_principal("root", roles=["editor"]).roles == ("editor",)
    assert [p.name for p in secure.admin.list_principals() if "admin" in p.roles] == ["ann"]


def test_two_admins_demoting_each_other_at_once_leave_one(
    open_auth: Callable[[], AuthService],
) -> None:
    first, second = open_auth(), open_auth()
    for name in ("a1", "a2"):
        first.create_principal(name, "user", ["admin"])
    for _ in range(5):
        results = _together(
            [
                lambda: first.update_principal("a1", ["viewer"], None),
                lambda: second.update_principal("a2", [], True),
            ]
        )
        refused = [r for r in results if isinstance(r, FailedPrecondition)]
        assert len(refused) == 1, results
        assert len(_enabled_admins(first)) == 1
        first.update_principal("a1", ["admin"], False)
        first.update_principal("a2", ["admin"], False)


def test_concurrent_bootstraps_make_one_admin(open_auth: Callable[[], AuthService]) -> None:
    services = [open_auth() for _ in range(4)]
    results = _together(
        [lambda s=s, i=i: s.bootstrap_admin(f"boss{i}") for i, s in enumerate(services)]  # type: ignore[misc]
    )
    refused = [r for r in results if isinstance(r, FailedPrecondition)]
    assert len(refused) == 3, results
    assert all("enabled admins exist (boss" in str(r) for r in refused)
    assert len(_enabled_admins(services[0])) == 1


def test_bootstrap_restores_an_admin_when_none_is_enabled(
    open_auth: Callable[[], AuthService],
) -> None:
    """An installation locked out before the last-admin guard (its only admin disabled or
    demoted) gets it back without editing SQL."""
    service = open_auth()
    assert service.bootstrap_admin("root").outcome == "created"
    service.create_principal("vic", "user", ["viewer"])
    _, old = service.create_token("root", "lost", 3600)
    with service.store.db.write() as conn:  # as the API allowed before the guard
        conn.execute(update(principals).where(principals.c.name == "root").values(disabled=True))
    made = service.bootstrap_admin("root")
    assert (made.outcome, made.principal.roles, made.principal.disabled) == (
        "restored",
        ("admin",),
        False,
    )
    assert service.store.get_token(old.token_id).revoked  # enabling revokes what it had
    assert service.bootstrap_admin("root").outcome == "existing"
    with pytest.raises(FailedPrecondition, match=r"enabled admins exist \(root\) and 'vic'"):
        service.bootstrap_admin("vic")
    assert [(e.principal, e.method, e.resource) for e in service.list_audit("", "", "", 0, 10)] == [
        ("root", "AdminBootstrap", "principal/root")
    ] * 3  # the break-glass path leaves a trace
    service.create_principal("svc-x", "service", ["service:tracking"])
    with pytest.raises(FailedPrecondition, match="'svc-x' is a service account, not a user"):
        service.bootstrap_admin("svc-x")
