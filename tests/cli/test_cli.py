"""The `modelyard` command line against real servers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard import Client
from modelyard.cli import app
from tests.conftest import start_up

runner = CliRunner()


def run(*args: str, ok: bool = True) -> str:
    result = (
        runner.invoke(app, list(args), catch_exceptions=False)
        if ok
        else runner.invoke(app, list(args))
    )
    if ok:
        assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def uri(server) -> str:
    return server.address


def test_experiments_commands(uri: str) -> None:
    out = run("experiments", "create", "cli-exp", "--tag", "team=ml", "--uri", uri, "--json")
    eid = json.loads(out)["experiment_id"]
    listed = json.loads(run("experiments", "list", "--uri", uri, "--json"))
    assert {e["name"] for e in listed} == {"Default", "cli-exp"}
    table = run("experiments", "list", "--uri", uri)
    assert "cli-exp" in table and "Default" in table
    got = json.loads(run("experiments", "get", "--name", "cli-exp", "--uri", uri, "--json"))
    assert got["experiment_id"] == eid and got["tags"] == {"team": "ml"}
    run("experiments", "rename", eid, "cli-exp-2", "--uri", uri)
    run("experiments", "delete", eid, "--uri", uri)
    deleted = json.loads(run("experiments", "list", "--view", "deleted", "--uri", uri, "--json"))
    assert [e["name"] for e in deleted] == ["cli-exp-2"]
    run("experiments", "restore", eid, "--uri", uri)


def test_runs_and_artifacts_commands(uri: str, tmp_path: Path) -> None:
    with Client(uri) as client:
        rid = client.create_run("0", run_name="cli-run").info.run_id
        client.log_metric(rid, "rmse", 0.25)
        client.log_param(rid, "alpha", "0.1")
        client.log_text(rid, "hello", "dir/a.txt")
        client.log_text(rid, "world", "dir/sub/b.txt")
    found = json.loads(
        run("runs", "search", "-e", "0", "--filter", "metrics.rmse < 0.5", "--uri", uri, "--json")
    )
    assert [r["info"]["run_id"] for r in found] == [rid]
    assert found[0]["data"]["metrics"] == {"rmse": 0.25}
    table = run("runs", "list", "-e", "0", "--uri", uri)
    assert "cli-run" in table and "metrics.rmse" in table
    detail = run("runs", "get", rid, "--uri", uri)
    assert "alpha" in detail and "0.25" in detail
    files = json.loads(run("artifacts", "list", rid, "dir", "--recursive", "--uri", uri, "--json"))
    assert [f["path"] for f in files] == ["dir/a.txt", "dir/sub/b.txt"]
    out = run("artifacts", "download", rid, "dir", "--dst", str(tmp_path), "--uri", uri)
    assert (tmp_path / "dir" / "sub" / "b.txt").read_text() == "world"
    assert "Downloaded" in out
    run("artifacts", "download", rid, "dir/a.txt", "--dst", str(tmp_path / "one"), "--uri", uri)
    assert (tmp_path / "one" / "a.txt").read_text() == "hello"
    src = tmp_path / "up"
    (src / "x").mkdir(parents=True)
    (src / "x" / "f.txt").write_text("f")
    run("artifacts", "upload", rid, str(src), "--artifact-path", "uploaded", "--uri", uri)
    files = json.loads(run("artifacts", "list", rid, "uploaded", "-r", "--uri", uri, "--json"))
    assert [f["path"] for f in files] == ["uploaded/x/f.txt"]


def test_errors_say_what_to_do(uri: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from modelyard.cli import main; main()",
            "runs",
            "get",
            "f" * 32,
            "--uri",
            uri,
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "NOT_FOUND" in result.stderr and "search runs" in result.stderr
    assert "Traceback" not in result.stderr
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from modelyard.cli import main; main()",
            "experiments",
            "list",
            "--uri",
            "127.0.0.1:1",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "GRPC_VERBOSITY": "NONE"},
    )
    assert result.returncode == 1 and "modelyard up" in result.stderr


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MODELYARD_SQLITE_SYNCHRONOUS", "bogus"),
        ("MODELYARD_S3__PRESIGN_EXPIRY_SECONDS", "abc"),
        ("MODELYARD_CPU_AFFINITY", "0-x"),
        ("MODELYARD_CPU_AFFINITY", "4096"),  # no such CPU here
    ],
)
def test_a_bad_setting_names_its_variable(tmp_path: Path, variable: str, value: str) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from modelyard.cli import main; main()",
            "up",
            "--home",
            str(tmp_path),
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, variable: value},
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert variable in result.stderr and repr(value) in result.stderr
    assert "--help" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "modelyard.db").exists()  # nothing started


def test_db_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    out = run("db", "upgrade", "--backend-store-uri", url)
    assert "up to date" in out and (tmp_path / "m.db").exists()


def test_up_serves_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    proc, address, _ = start_up(tmp_path)
    with Client(address) as client:
        rid = client.create_run("0").info.run_id
        client.log_metric(rid, "m", 1.0)
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0, rest
    assert "stopped" in rest
    assert (tmp_path / "modelyard.db").exists() and (tmp_path / "artifacts").is_dir()


def test_models_commands(uri: str, tmp_path: Path) -> None:
    with Client(uri) as client:
        rid = client.create_run("0").info.run_id
        client.log_text(rid, "manifest", "model/MLmodel")
        for _ in range(2):
            client.create_model_version("cli-model", f"runs:/{rid}/model", description="v")
    listed = json.loads(run("models", "list", "--uri", uri, "--json"))
    assert [m["name"] for m in listed] == ["cli-model"]
    run("models", "alias", "set", "cli-model", "champion", "2", "--uri", uri)
    got = json.loads(run("models", "get", "cli-model", "--uri", uri, "--json"))
    assert got["aliases"] == {"champion": 2}
    assert "champion" in run("models", "get", "cli-model", "--uri", uri)
    versions = json.loads(run("models", "versions", "cli-model", "--uri", uri, "--json"))
    assert [v["version"] for v in versions] == [2, 1]
    moved = json.loads(
        run("models", "stage", "cli-model", "1", "Production", "--uri", uri, "--json")
    )
    assert moved["current_stage"] == "Production"
    run("models", "alias", "delete", "cli-model", "champion", "--uri", uri)
    history = json.loads(run("models", "history", "cli-model", "--uri", uri, "--json"))
    assert [e["event_type"] for e in history][-2:] == ["STAGE_TRANSITIONED", "ALIAS_DELETED"]
    assert "ALIAS_SET" in run("models", "history", "cli-model", "--uri", uri)
    out = run(
        "models", "download", "models:/cli-model/latest", "--dst", str(tmp_path), "--uri", uri
    )
    assert (tmp_path / "cli-model-v2" / "MLmodel").read_text() == "manifest"
    assert "Downloaded" in out
