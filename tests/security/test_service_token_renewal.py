"""A service's token renewed while it runs: the chart mounts each service's token from a Secret
that the auth pod and the renewal CronJob rewrite, and the kubelet swaps the mounted file in
place. The running service must call with the new token, without a restart."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelyard import Client
from modelyard.errors import FailedPrecondition, Unauthenticated
from modelyard.services.common.auth.interceptor import AuthInterceptor
from modelyard.services.common.auth.state import AuthState
from modelyard.services.common.server import ModelyardServer
from modelyard.services.common.service_token import TokenFile
from modelyard.services.common.settings import AuthSettings, Settings
from tests.conftest import running_server
from tests.security.conftest import Secure, remote_tracking_settings


class MountedSecret:
    """A Secret volume as the kubelet writes it: <dir>/token -> ..data/token, and an update
    writes a new timestamped directory and renames the ..data symlink onto it (atomically)."""

    def __init__(self, directory: Path, token: str) -> None:
        self.directory = directory
        directory.mkdir()
        self._version = 0
        self.write(token)
        (directory / "token").symlink_to("..data/token")

    @property
    def path(self) -> Path:
        return self.directory / "token"

    def write(self, token: str) -> None:
        self._version += 1
        version = self.directory / f"..2026_{self._version}"
        version.mkdir()
        (version / "token").write_text(token)
        staged = self.directory / "..data_tmp"
        staged.symlink_to(version.name)
        os.replace(staged, self.directory / "..data")


def auth_state(server: ModelyardServer) -> AuthState:
    for interceptor in server._server._state.interceptor_pipeline.interceptors:
        if isinstance(interceptor, AuthInterceptor) and interceptor._authenticate:
            return interceptor._authenticate.state
    raise AssertionError("no auth interceptor")


def test_a_renewed_token_is_used_without_a_restart(secure: Secure, tmp_path: Path) -> None:
    """Tracking in a server of its own, as its pod runs it, reaches auth as svc-tracking. Its
    token is renewed and the old one revoked (or expired): tracking keeps refreshing the auth
    state, so a user's token revoked afterwards stops working there too."""
    admin = secure.admin
    old, old_info = admin.create_token("svc-tracking")
    secret = MountedSecret(tmp_path / "service-token", old)
    admin.create_principal("alice", ["editor"])
    alice_token, alice_info = admin.create_token("alice")
    settings = remote_tracking_settings(
        secure, tmp_path / "tracking-home", service_token_file=secret.path
    )
    with running_server(settings, ("tracking",)) as tracking:
        with Client(tracking.address, token=alice_token) as alice:
            alice.create_experiment("before")
        new, _ = admin.create_token("svc-tracking")
        secret.write(new)
        admin.revoke_token(old_info.token_id)
        admin.revoke_token(alice_info.token_id)
        secure.refresh()
        auth_state(tracking).refresh_now()  # as svc-tracking, with the renewed token
        with (
            Client(tracking.address, token=alice_token) as alice,
            pytest.raises(Unauthenticated, match="revoked"),
        ):
            alice.create_experiment("after")


def test_a_token_file_is_read_again_only_when_it_changes(tmp_path: Path) -> None:
    secret = MountedSecret(tmp_path / "service-token", "one\n")
    token = TokenFile(secret.path)
    assert token() == "one"
    secret.write("two")
    assert token() == "two"
    # A renewal half-written by hand (an empty file) keeps the token the service had.
    secret.write("")
    assert token() == "two"
    secret.write("three")
    assert token() == "three"


def test_a_missing_token_file_stops_start_up_saying_what_to_mount(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition, match="MODELYARD_AUTH__SERVICE_TOKEN_FILE"):
        TokenFile(tmp_path / "absent")
    settings = Settings(
        home=tmp_path / "home",
        port=0,
        auth=AuthSettings(
            enabled=True, auth_uri="127.0.0.1:1", service_token_file=tmp_path / "absent"
        ),
    )
    with (
        pytest.raises(FailedPrecondition, match=str(tmp_path / "absent")),
        running_server(settings, ("tracking",)),
    ):
        pass


def test_a_token_and_a_token_file_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        AuthSettings(service_token="x", service_token_file=tmp_path / "token")
