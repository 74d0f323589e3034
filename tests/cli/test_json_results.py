"""Commands that change something print, with --json, one object of what they did and nothing
else: a script reads ids, names, paths and counts from fields, not from a sentence."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from modelyard import Client
from modelyard.cli import app
from modelyard.services.common.settings import AuthSettings, Settings
from tests.conftest import running_server

runner = CliRunner()


def result(*args: str) -> dict[str, object]:
    """The command's stdout, which must be exactly one JSON object."""
    done = runner.invoke(app, [*args, "--json"], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    parsed = json.loads(done.stdout)  # fails on any text around the object
    assert isinstance(parsed, dict), done.stdout
    return parsed


def test_experiment_and_run_changes_print_what_they_did(server) -> None:
    uri = server.address
    with Client(uri) as client:
        eid = client.create_experiment("json-exp")
        rid = client.create_run(eid).info.run_id
    assert result("experiments", "rename", eid, "json-exp-2", "--uri", uri) == {
        "experiment_id": eid,
        "name": "json-exp-2",
    }
    assert result("experiments", "set-tag", eid, "team", "ml", "--uri", uri) == {
        "experiment_id": eid,
        "key": "team",
        "value": "ml",
    }
    assert result("experiments", "delete-tag", eid, "team", "--uri", uri) == {
        "experiment_id": eid,
        "key": "team",
        "deleted": True,
    }
    assert result("runs", "set-tag", rid, "k", "v", "--uri", uri) == {
        "run_id": rid,
        "key": "k",
        "value": "v",
    }
    assert result("runs", "delete-tag", rid, "k", "--uri", uri)["deleted"] is True
    assert result("runs", "delete", rid, "--uri", uri) == {"run_id": rid, "deleted": True}
    assert result("runs", "restore", rid, "--uri", uri) == {"run_id": rid, "restored": True}
    assert result("experiments", "delete", eid, "--uri", uri) == {
        "experiment_id": eid,
        "deleted": True,
    }
    assert result("experiments", "restore", eid, "--uri", uri)["restored"] is True
    with Client(uri) as client:
        assert client.get_experiment(eid).name == "json-exp-2"


def test_transfers_print_their_paths_and_counts(server, tmp_path: Path) -> None:
    uri = server.address
    with Client(uri) as client:
        rid = client.create_run("0").info.run_id
    (tmp_path / "up" / "sub").mkdir(parents=True)
    (tmp_path / "up" / "a.txt").write_text("a")
    (tmp_path / "up" / "sub" / "b.txt").write_text("b")
    many = result(
        "artifacts", "upload", rid, str(tmp_path / "up"), "--artifact-path", "d", "--uri", uri
    )
    assert many == {"run_id": rid, "artifact_path": "d", "files": 2}
    one = result("artifacts", "upload", rid, str(tmp_path / "up" / "a.txt"), "--uri", uri)
    assert (one["artifact_path"], one["files"], one["size"]) == ("a.txt", 1, 1)
    got = result("artifacts", "download", rid, "d", "--dst", str(tmp_path / "down"), "--uri", uri)
    assert got == {"run_id": rid, "path": str(tmp_path / "down" / "d"), "files": 2}
    assert (tmp_path / "down" / "d" / "sub" / "b.txt").read_text() == "b"

    with Client(uri) as client:
        client.log_text(rid, "manifest", "model/MLmodel")
        client.create_model_version("json-model", f"runs:/{rid}/model")
    assert result("models", "alias", "set", "json-model", "best", "1", "--uri", uri) == {
        "name": "json-model",
        "alias": "best",
        "version": 1,
    }
    model = result(
        "models", "download", "models:/json-model@best", "--dst", str(tmp_path), "--uri", uri
    )
    assert model == {
        "name": "json-model",
        "version": 1,
        "path": str(tmp_path / "json-model-v1"),
        "files": 1,
    }
    assert result("models", "alias", "delete", "json-model", "best", "--uri", uri) == {
        "name": "json-model",
        "alias": "best",
        "deleted": True,
    }


def test_db_upgrade_prints_the_database_and_its_services(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    upgraded = result("db", "upgrade", "--backend-store-uri", url)
    assert upgraded["database"] == url
    assert "tracking" in upgraded["services"]  # type: ignore[operator]


def test_db_upgrade_never_prints_the_databases_password(postgres_url: str) -> None:
    """The URL names a password (this server's trust auth ignores it); what is printed, for a
    terminal, a log or a script, masks it."""
    url = postgres_url.replace("postgres@", "postgres:s3cret-pw@", 1)
    upgraded = result("db", "upgrade", "--backend-store-uri", url)
    assert "s3cret-pw" not in json.dumps(upgraded) and "***" in str(upgraded["database"])
    plain = runner.invoke(app, ["db", "upgrade", "--backend-store-uri", url])
    assert plain.exit_code == 0 and "s3cret-pw" not in plain.output, plain.output


def test_bootstrap_gives_the_token_as_a_field_and_admin_commands_report(tmp_path: Path) -> None:
    boot = result("admin", "bootstrap", "--name", "root", "--home", str(tmp_path))
    assert boot["name"] == "root" and "admin" in boot["roles"]  # type: ignore[operator]
    token = str(boot["token"])
    settings = Settings(home=tmp_path, port=0, grace_period=0, auth=AuthSettings(enabled=True))
    with running_server(settings) as srv, Client(srv.address, token=token) as admin:
        admin.create_principal("carol", ["editor"], "user")
        _secret, info = admin.create_token("carol", "", 3600)
        revoked = result("tokens", "revoke", info.token_id, "--uri", srv.address, "--token", token)
        assert revoked == {"token_id": info.token_id, "revoked": True}
        updated = result(
            "users", "update", "carol", "--role", "viewer", "--uri", srv.address, "--token", token
        )
        assert (updated["name"], updated["roles"]) == ("carol", ["viewer"])
