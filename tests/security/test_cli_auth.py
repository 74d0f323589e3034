"""`modelyard admin bootstrap`, `tokens` and `users` against a server with auth on."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path

from typer.testing import CliRunner

from modelyard import Client
from modelyard.cli import app
from modelyard.services.common.settings import AuthSettings, Settings
from tests.conftest import running_server, start_up, stop_cleanly
from tests.security.conftest import Secure

runner = CliRunner()


def cli(*args: str, token: str) -> str:
    result = runner.invoke(app, [*args, "--token", token], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_bootstrap_then_manage_users_and_tokens(tmp_path: Path) -> None:
    first = runner.invoke(app, ["admin", "bootstrap", "--name", "root", "--home", str(tmp_path)])
    assert first.exit_code == 0, first.output
    found = re.search(r"(eyJ[\w-]+\.[\w-]+\.[\w-]+)", first.output)
    assert found is not None, first.output  # bootstrap prints the admin's token
    token = found.group(1)
    again = runner.invoke(app, ["admin", "bootstrap", "--home", str(tmp_path)])
    assert again.exit_code != 0
    proc, address, _ = start_up(tmp_path, "--auth")
    try:
        created = json.loads(
            cli(
                "users",
                "create",
                "carol",
                "--role",
                "editor",
                "--uri",
                address,
                "--json",
                token=token,
            )
        )
        assert created["roles"] == ["editor"]
        listed = json.loads(cli("users", "list", "--uri", address, "--json", token=token))
        assert {p["name"] for p in listed["principals"]} >= {"root", "carol", "svc-registry"}
        issued = json.loads(
            cli("tokens", "create", "--principal", "carol", "--uri", address, "--json", token=token)
        )
        with Client(address, token=issued["token"]) as carol:
            assert carol.whoami()[0].name == "carol"
        tokens = json.loads(
            cli("tokens", "list", "--principal", "carol", "--uri", address, "--json", token=token)
        )
        assert [t["token_id"] for t in tokens["tokens"]] == [issued["info"]["token_id"]]
        cli("tokens", "revoke", issued["info"]["token_id"], "--uri", address, token=token)
        cli("users", "update", "carol", "--role", "viewer", "--uri", address, token=token)
        assert "carol" in cli("users", "list", "--uri", address, token=token)
    finally:
        stop_cleanly(proc)


def test_up_without_auth_says_so_loudly(tmp_path: Path) -> None:
    proc, _address, printed = start_up(tmp_path)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert "Authentication is OFF" in printed


def test_users_update_enables_or_disables_only_when_told(secure: Secure) -> None:
    secure.admin.create_principal("erin", ["editor"])
    where = ("--uri", secure.address, "--json")

    def update(*flags: str) -> tuple[tuple[str, ...], bool]:
        found = json.loads(cli("users", "update", "erin", *flags, *where, token=secure.admin_token))
        return tuple(found["roles"]), found["disabled"]

    assert update("--disable") == (("editor",), True)
    assert update("--role", "viewer") == (("viewer",), True)
    assert update() == (("viewer",), True)
    assert update("--enable") == (("viewer",), False)
    assert update("--role", "editor") == (("editor",), False)


def test_bootstrap_gives_an_admin_a_new_token(tmp_path: Path) -> None:
    """The way back in when the admin's tokens are lost, expired or revoked."""

    def bootstrap(name: str, *flags: str) -> tuple[int, str]:
        done = runner.invoke(
            app, ["admin", "bootstrap", "--name", name, "--home", str(tmp_path), *flags]
        )
        return done.exit_code, done.output + str(done.exception or "")  # main() prints errors

    code, printed = bootstrap("root", "--json")
    first = json.loads(printed)
    assert (code, first["outcome"]) == (0, "created")
    code, printed = bootstrap("mallory")
    assert code != 0
    assert "enabled admins exist (root) and 'mallory' is not one; ask one of them" in printed
    settings = Settings(home=tmp_path, port=0, grace_period=0, auth=AuthSettings(enabled=True))
    with running_server(settings) as server:
        with Client(server.address, token=first["token"]) as root:
            for t in root.list_tokens():
                root.revoke_token(t.token_id)
        code, printed = bootstrap("root")
        assert code == 0, printed
        assert "'root' is an admin: here is a new token for it" in printed
        found = re.search(r"(eyJ[\w-]+\.[\w-]+\.[\w-]+)", printed)
        assert found is not None, printed
        with Client(server.address, token=found.group(1)) as root:
            assert root.whoami()[0].roles == ("admin",)
            assert [t.revoked for t in root.list_tokens()] == [True, False]


def test_tokens_create_says_when_its_lifetime_was_capped(secure: Secure) -> None:
    secure.admin.create_principal("fay", ["viewer"])
    short, _ = secure.admin.create_token("fay", "ci", 3600)
    printed = cli("tokens", "create", "--uri", secure.address, token=short)
    assert "(no later than the token that created it)" in printed
    printed = cli(
        "tokens", "create", "--principal", "fay", "--uri", secure.address, token=secure.admin_token
    )
    assert "no later than" not in printed
