"""The `modelyard` command line against real servers."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard import Client
from modelyard.cli import app
from tests.conftest import start_up, stop_cleanly

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
    assert {e["name"] for e in listed["experiments"]} == {"Default", "cli-exp"}
    assert listed["next_page_token"] is None
    table = run("experiments", "list", "--uri", uri)
    assert "cli-exp" in table and "Default" in table
    got = json.loads(run("experiments", "get", "--name", "cli-exp", "--uri", uri, "--json"))
    assert got["experiment_id"] == eid and got["tags"] == {"team": "ml"}
    run("experiments", "rename", eid, "cli-exp-2", "--uri", uri)
    run("experiments", "delete", eid, "--uri", uri)
    for view in ("deleted", "deleted_only"):  # ours, and MLflow's spelling
        deleted = json.loads(run("experiments", "list", "--view", view, "--uri", uri, "--json"))
        assert [e["name"] for e in deleted["experiments"]] == ["cli-exp-2"]
    run("experiments", "restore", eid, "--uri", uri)
    run("experiments", "set-tag", eid, "stage", "beta", "--uri", uri)
    run("experiments", "delete-tag", eid, "team", "--uri", uri)
    with Client(uri) as client:
        assert client.get_experiment(eid).tags == {"stage": "beta"}


def test_runs_and_artifacts_commands(
    uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "120")  # every column unfolded
    with Client(uri) as client:
        rid = client.create_run("0", run_name="cli-run").info.run_id
        client.log_metric(rid, "rmse", 0.25)
        client.log_param(rid, "alpha", "0.1")
        client.log_text(rid, "hello", "dir/a.txt")
        client.log_text(rid, "world", "dir/sub/b.txt")
    found = json.loads(
        run("runs", "search", "-e", "0", "--filter", "metrics.rmse < 0.5", "--uri", uri, "--json")
    )
    assert [r["info"]["run_id"] for r in found["runs"]] == [rid]
    assert found["runs"][0]["data"]["metrics"] == {"rmse": 0.25}
    table = run("runs", "list", "-e", "0", "--uri", uri)
    assert "cli-run" in table and "metrics.rmse" in table
    detail = run("runs", "get", rid, "--uri", uri)
    assert "alpha" in detail and "0.25" in detail
    run("runs", "set-tag", rid, "reviewed", "yes", "--uri", uri)
    with Client(uri) as client:
        assert client.get_run(rid).data.tags["reviewed"] == "yes"
    run("runs", "delete-tag", rid, "reviewed", "--uri", uri)
    with Client(uri) as client:
        assert "reviewed" not in client.get_run(rid).data.tags
    listed = json.loads(run("artifacts", "list", rid, "dir", "-r", "--uri", uri, "--json"))
    assert [f["path"] for f in listed["files"]] == ["dir/a.txt", "dir/sub/b.txt"]
    out = run("artifacts", "download", rid, "dir", "--dst", str(tmp_path), "--uri", uri)
    assert (tmp_path / "dir" / "sub" / "b.txt").read_text() == "world"
    assert "Downloaded" in out
    run("artifacts", "download", rid, "dir/a.txt", "--dst", str(tmp_path / "one"), "--uri", uri)
    assert (tmp_path / "one" / "a.txt").read_text() == "hello"
    src = tmp_path / "up"
    (src / "x").mkdir(parents=True)
    (src / "x" / "f.txt").write_text("f")
    run("artifacts", "upload", rid, str(src), "--artifact-path", "uploaded", "--uri", uri)
    listed = json.loads(run("artifacts", "list", rid, "uploaded", "-r", "--uri", uri, "--json"))
    assert [f["path"] for f in listed["files"]] == ["uploaded/x/f.txt"]


def test_json_output_stays_json_with_non_finite_metrics(uri: str) -> None:
    """JSON has no NaN or Infinity: they go out as protobuf's JSON mapping writes them, so a
    strict parser (JavaScript's, jq's) reads the document."""
    with Client(uri) as client:
        rid = client.create_run("0").info.run_id
        for key, value in (("nan", math.nan), ("up", math.inf), ("down", -math.inf)):
            client.log_metric(rid, key, value)

    def strict(constant: str) -> None:
        raise ValueError(f"not JSON: {constant}")

    got = json.loads(run("runs", "get", rid, "--uri", uri, "--json"), parse_constant=strict)
    assert got["data"]["metrics"] == {"nan": "NaN", "up": "Infinity", "down": "-Infinity"}


def test_tables_keep_ids_whole_on_narrow_terminals(
    uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Client(uri) as client:
        experiment = client.create_experiment("narrow")
        rid = client.create_run(experiment, run_name="a-rather-long-run-name").info.run_id
        for i in range(6):
            client.log_metric(rid, f"metric_{i}", i / 3)
    monkeypatch.setenv("COLUMNS", "70")
    listed = run("runs", "list", "-e", experiment, "--uri", uri)
    assert any(rid in line for line in listed.splitlines()), listed


def test_runs_list_pages_with_the_token_it_prints(uri: str) -> None:
    with Client(uri) as client:
        made = {client.create_run("0", run_name=f"r{i}").info.run_id for i in range(5)}
    query = ["runs", "list", "-e", "0", "--max-results", "2", "--uri", uri]
    seen: list[str] = []
    token = None
    for _ in range(3):  # 2 + 2 + 1
        page = json.loads(run(*query, "--json", *(["--page-token", token] if token else [])))
        seen += [r["info"]["run_id"] for r in page["runs"]]
        token = page["next_page_token"]
    assert token is None and len(seen) == 5 and set(seen) == made
    first = run(*query)
    assert next_page_flag(first) == [
        "--page-token",
        json.loads(run(*query, "--json"))["next_page_token"],
    ]
    second = run(*query, *next_page_flag(first))
    last = run(*query, *next_page_flag(second))
    assert "--page-token" not in last  # no hint after the last page
    names = [re.findall(r"\br\d\b", page) for page in (first, second, last)]
    assert [len(n) for n in names] == [2, 2, 1]
    assert sorted(n for page in names for n in page) == [f"r{i}" for i in range(5)]


def next_page_flag(table: str) -> list[str]:
    """The `--page-token TOKEN` a table ends with, for the next page."""
    [line] = [line for line in table.splitlines() if "--page-token" in line]
    return line[line.index("--page-token") :].split()


def test_experiments_search_filters_orders_and_pages(uri: str) -> None:
    with Client(uri) as client:
        for name in ("fraud-a", "fraud-b", "churn"):
            client.create_experiment(name, tags={"team": "ml" if "fraud" in name else "bi"})
    ml = ["--filter", "tags.team = 'ml'", "--order-by", "name DESC"]
    found = json.loads(run("experiments", "search", *ml, "--uri", uri, "--json"))
    assert [e["name"] for e in found["experiments"]] == ["fraud-b", "fraud-a"]
    query = ["experiments", "search", "--order-by", "name", "--max-results", "2", "--uri", uri]
    first = json.loads(run(*query, "--json"))
    rest = json.loads(run(*query, "--json", "--page-token", first["next_page_token"]))
    names = [e["name"] for e in first["experiments"] + rest["experiments"]]
    assert names == ["Default", "churn", "fraud-a", "fraud-b"]
    assert rest["next_page_token"] is None
    refused = runner.invoke(app, [*query, "--page-token", "not-a-token"])
    assert refused.exit_code != 0 and "page_token" in str(refused.exception)


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
    assert "stopped" in stop_cleanly(proc)
    assert (tmp_path / "modelyard.db").exists() and (tmp_path / "artifacts").is_dir()


def test_models_commands(uri: str, tmp_path: Path) -> None:
    with Client(uri) as client:
        rid = client.create_run("0").info.run_id
        client.log_text(rid, "manifest", "model/MLmodel")
        for _ in range(2):
            client.create_model_version("cli-model", f"runs:/{rid}/model", description="v")
        client.create_model_version("other-model", f"runs:/{rid}/model")
    first = json.loads(run("models", "list", "--max-results", "1", "--uri", uri, "--json"))
    assert [m["name"] for m in first["registered_models"]] == ["cli-model"]
    assert f"--page-token {first['next_page_token']}" in run(
        "models", "list", "--max-results", "1", "--uri", uri
    )
    rest = json.loads(
        run("models", "list", "--page-token", first["next_page_token"], "--uri", uri, "--json")
    )
    assert ([m["name"] for m in rest["registered_models"]], rest["next_page_token"]) == (
        ["other-model"],
        None,
    )
    run("models", "alias", "set", "cli-model", "champion", "2", "--uri", uri)
    got = json.loads(run("models", "get", "cli-model", "--uri", uri, "--json"))
    assert got["aliases"] == {"champion": 2}
    assert "champion" in run("models", "get", "cli-model", "--uri", uri)
    versions = json.loads(run("models", "versions", "cli-model", "--uri", uri, "--json"))
    assert [v["version"] for v in versions["model_versions"]] == [2, 1]
    assert versions["next_page_token"] is None
    # A page at a time: the token printed with the first page fetches the second.
    first = json.loads(
        run("models", "versions", "cli-model", "--max-results", "1", "--uri", uri, "--json")
    )
    assert [v["version"] for v in first["model_versions"]] == [2]
    assert f"--page-token {first['next_page_token']}" in run(
        "models", "versions", "cli-model", "--max-results", "1", "--uri", uri
    )
    rest = run(
        "models",
        "versions",
        "cli-model",
        "--page-token",
        first["next_page_token"],
        "--uri",
        uri,
        "--json",
    )
    assert [v["version"] for v in json.loads(rest)["model_versions"]] == [1]
    moved = json.loads(
        run("models", "stage", "cli-model", "1", "Production", "--uri", uri, "--json")
    )
    assert moved["current_stage"] == "Production"
    run("models", "alias", "delete", "cli-model", "champion", "--uri", uri)
    history = json.loads(run("models", "history", "cli-model", "--uri", uri, "--json"))
    events = history["events"]
    assert [e["event_type"] for e in events][-2:] == ["STAGE_TRANSITIONED", "ALIAS_DELETED"]
    assert history["last_event_id"] == events[-1]["event_id"]
    assert "ALIAS_SET" in run("models", "history", "cli-model", "--uri", uri)
    # A table that fills --max-results says how to read on; --since reads on from there.
    first = run("models", "history", "cli-model", "--max-results", "2", "--uri", uri)
    assert f"--since {events[1]['event_id']}" in first
    since = events[-2]["event_id"]
    rest = json.loads(
        run("models", "history", "cli-model", "--since", str(since), "--uri", uri, "--json")
    )
    assert [e["event_id"] for e in rest["events"]] == [events[-1]["event_id"]]
    out = run(
        "models", "download", "models:/cli-model/latest", "--dst", str(tmp_path), "--uri", uri
    )
    assert (tmp_path / "cli-model-v2" / "MLmodel").read_text() == "manifest"
    assert "Downloaded" in out
