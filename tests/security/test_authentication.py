"""Bearer tokens: missing, malformed, expired, tampered, foreign, revoked, disabled."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from modelyard.errors import NotFound, PermissionDenied, Unauthenticated
from modelyard.services.auth.app import open_service
from modelyard.services.auth.process_tokens import PROCESS_TOKEN_TTL
from modelyard.services.common.auth.tokens import TokenSigner, generate_keypair
from modelyard.services.common.runtime import Runtime
from tests.conftest import running_server
from tests.security.conftest import Secure, secure_settings


def test_admin_token_works_and_whoami(secure: Secure) -> None:
    principal, enforced = secure.admin.whoami()
    assert (principal.name, principal.roles, enforced) == ("root", ("admin",), True)


@pytest.mark.parametrize(
    ("token", "message"),
    [
        (None, "requires a token"),
        ("not-a-jwt", "malformed"),
        ("a.b.c", "malformed"),
    ],
)
def test_missing_or_malformed_token(secure: Secure, token: str | None, message: str) -> None:
    with pytest.raises(Unauthenticated, match=message):
        secure.client(token).search_experiments()


def test_wrong_scheme(secure: Secure) -> None:
    import grpc

    from modelyard._gen.tracking.v1 import tracking_pb2 as pb
    from modelyard._gen.tracking.v1 import tracking_pb2_grpc

    with grpc.insecure_channel(secure.address) as channel:
        stub = tracking_pb2_grpc.TrackingServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            stub.SearchExperiments(
                pb.SearchExperimentsRequest(),
                metadata=(("authorization", f"Basic {secure.admin_token}"),),
            )
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "Bearer" in err.value.details()


def test_expired_token(secure: Secure) -> None:
    from modelyard.services.common.auth.setup import key_files
    from modelyard.services.common.runtime import Runtime

    private, _ = key_files(Runtime(secure.settings))
    token, _ = TokenSigner(private.read_bytes()).sign("root", ttl_seconds=-5)
    with pytest.raises(Unauthenticated, match="expired"):
        secure.client(token).search_experiments()


def test_tampered_token(secure: Secure) -> None:
    header, payload, signature = secure.admin_token.split(".")
    forged = f"{header}.{payload}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
    with pytest.raises(Unauthenticated, match="signature"):
        secure.client(forged).search_experiments()
    # A payload changed to another subject fails the signature check too.
    import base64
    import json

    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["sub"] = "someone-else"
    other = base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    with pytest.raises(Unauthenticated, match="signature"):
        secure.client(f"{header}.{other}.{signature}").search_experiments()


def test_token_from_another_installation(secure: Secure) -> None:
    private, _ = generate_keypair()
    token, _ = TokenSigner(private).sign("root", ttl_seconds=3600)
    with pytest.raises(Unauthenticated, match="signature"):
        secure.client(token).search_experiments()


def test_revoked_token_stops_at_the_next_refresh(make_secure) -> None:
    secure = make_secure(refresh_seconds=0.5)
    token, info = secure.admin.create_token("root", "to revoke")
    client = secure.client(token)
    client.search_experiments()
    secure.admin.revoke_token(info.token_id)
    secure.refresh()  # what each service's poller does every refresh_seconds
    with pytest.raises(Unauthenticated) as err:
        client.search_experiments()
    assert "revoked" in str(err.value)


def test_the_auth_state_is_pulled_again_and_again() -> None:
    """The poller behind the revocation bound: it refreshes every refresh_seconds, and keeps
    the last state when a pull fails."""
    from modelyard.services.common.auth.state import AuthState, Snapshot

    pulls: list[int] = []
    third = threading.Event()

    def fetch() -> Snapshot:
        pulls.append(len(pulls))
        if len(pulls) == 2:
            raise ConnectionError("auth service restarting")
        if len(pulls) >= 3:
            third.set()
        return Snapshot(revoked=frozenset({f"t{len(pulls)}"}))

    state = AuthState(fetch, refresh_seconds=0.01)
    state.start()
    try:
        assert third.wait(30), "the poller stopped pulling"
    finally:
        state.close()
    assert state.snapshot.revoked  # a failed pull never emptied the state


def test_disabled_principal_and_role_changes(secure: Secure) -> None:
    editor = secure.user("dana", "editor")
    editor.create_experiment("dana-exp")
    secure.admin.update_principal("dana", roles=["viewer"])
    secure.refresh()
    with pytest.raises(PermissionDenied, match="editor or admin role"):
        editor.create_experiment("dana-exp-2")
    secure.admin.update_principal("dana", disabled=True)
    secure.refresh()
    with pytest.raises(Unauthenticated, match="disabled"):
        editor.search_experiments()


def test_a_role_change_leaves_a_disabled_principal_disabled(secure: Secure) -> None:
    """Disabling is undone only by enabling, and it revoked the tokens the principal had: an
    admin who disables a leaked account and later trims its roles does not bring it back."""
    dana = secure.user("dana", "editor")
    assert secure.admin.update_principal("dana", disabled=True).disabled
    assert secure.admin.update_principal("dana", roles=["viewer"]).disabled
    secure.refresh()
    with pytest.raises(Unauthenticated, match="disabled"):
        dana.search_experiments()
    enabled = secure.admin.update_principal("dana", disabled=False)
    assert (enabled.disabled, enabled.roles) == (False, ("viewer",))
    secure.refresh()
    with pytest.raises(Unauthenticated, match="revoked"):
        dana.search_experiments()
    assert all(t.revoked for t in secure.admin.list_tokens("dana"))
    fresh, _ = secure.admin.create_token("dana", "after enabling")
    assert secure.client(fresh).whoami()[0].name == "dana"


def test_users_manage_only_their_own_tokens(secure: Secure) -> None:
    alice = secure.user("alice", "viewer")
    _token, info = alice.create_token(description="mine")
    assert info.principal == "alice"
    assert [t.token_id for t in alice.list_tokens() if not t.revoked][-1] == info.token_id
    with pytest.raises(PermissionDenied):
        alice.create_token("root")
    with pytest.raises(PermissionDenied):
        alice.list_tokens("root")
    admin_tokens = secure.admin.list_tokens("root")
    with pytest.raises(PermissionDenied):
        alice.revoke_token(admin_tokens[0].token_id)
    with pytest.raises(PermissionDenied, match="admin role"):
        alice.list_principals()


def test_a_token_made_by_a_token_ends_and_is_revoked_with_it(secure: Secure) -> None:
    """A short-lived or leaked token cannot outlive itself through tokens it mints."""
    secure.admin.create_principal("alice", ["viewer"])
    short, short_info = secure.admin.create_token("alice", "ci", 3600)
    alice = secure.client(short)
    child, child_info = alice.create_token(description="longer", ttl_seconds=366 * 86400)
    assert child_info.expires <= short_info.expires
    grandchild, _ = secure.client(child).create_token(description="longer still")
    secure.admin.revoke_token(short_info.token_id)
    secure.refresh()
    for token in (short, child, grandchild):
        with pytest.raises(Unauthenticated, match="revoked"):
            secure.client(token).whoami()
    # Tokens an admin makes for someone else are theirs: they outlive the admin's token.
    other_admin_token, other_info = secure.admin.create_token(description="second")
    for_alice, _ = secure.client(other_admin_token).create_token("alice", "from an admin")
    long_own, long_info = secure.client(other_admin_token).create_token(ttl_seconds=366 * 86400)
    assert long_info.expires > other_info.expires  # admins are not capped
    secure.admin.revoke_token(other_info.token_id)
    secure.refresh()
    assert secure.client(for_alice).whoami()[0].name == "alice"
    with pytest.raises(Unauthenticated, match="revoked"):
        secure.client(long_own).whoami()


def test_listing_the_tokens_of_a_missing_principal_is_not_found(secure: Secure) -> None:
    with pytest.raises(NotFound, match="principal 'ghost' does not exist; list them with"):
        secure.admin.list_tokens("ghost")
    # A non-admin is refused before the lookup: no way to learn who exists.
    with pytest.raises(PermissionDenied):
        secure.user("alice", "viewer").list_tokens("ghost")


def test_service_tokens_live_only_while_their_server_runs(tmp_path: Path) -> None:
    """Each start mints its services their tokens; a stop revokes them, so restarts leave no
    valid service credentials behind."""
    settings = secure_settings(tmp_path / "home")
    service = open_service(settings, Runtime(settings))
    service.bootstrap_admin("root")

    def valid_service_tokens() -> list[str]:
        return [
            t.token_id
            for p in service.list_principals()
            if p.kind == "service"
            for t in service.store.list_tokens(p.name)
            if not t.revoked
        ]

    try:
        for _ in range(3):
            with running_server(settings):
                live = valid_service_tokens()
                assert live  # the services hold tokens to call each other with
            assert valid_service_tokens() == []
    finally:
        service.store.close()


def test_a_process_renews_its_service_tokens_at_half_their_short_life(tmp_path: Path) -> None:
    """A token minted for the life of the process had to outlive any uptime, and a process
    killed without stopping never revoked it. Renewed tokens leave at most an hour."""
    settings = secure_settings(tmp_path / "home")
    service = open_service(settings, Runtime(settings))
    now = [time.time()]
    try:
        token = service.process_token("tracking", clock=lambda: now[0])
        first = token()
        (info,) = service.store.list_tokens("svc-tracking")
        assert info.expires - info.created == pytest.approx(PROCESS_TOKEN_TTL * 1000, abs=1000)

        now[0] += PROCESS_TOKEN_TTL / 2 - 5
        assert token() == first  # no renewal while more than half its life is left
        now[0] += 10
        second = token()
        assert second != first
        assert token() == second
        tokens = service.store.list_tokens("svc-tracking")
        # The replaced token stays valid: a call that picked it up just before still passes.
        assert [t.revoked for t in tokens] == [False, False]

        service.close()
        assert [t.revoked for t in service.store.list_tokens("svc-tracking")] == [True, True]
    finally:
        service.store.close()


def test_only_expired_tokens_are_forgotten(tmp_path: Path) -> None:
    """A revoked token still within its life must stay listed, or it would pass checks again."""
    settings = secure_settings(tmp_path / "home")
    service = open_service(settings, Runtime(settings))
    store = service.store
    try:
        now_ms = int(time.time() * 1000)
        store.add_token("expired", "svc-tracking", "old", now_ms - 1000)
        store.add_token("revoked", "svc-tracking", "old", now_ms + 3_600_000)
        store.revoke_token("revoked")
        store.delete_tokens(["expired", "revoked"])
        assert [t.token_id for t in store.list_tokens("svc-tracking")] == ["revoked"]
        assert "revoked" in store.revoked_token_ids()
    finally:
        store.close()
