"""`modelyard endpoints ...` against a real server."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from modelyard.cli import app

runner = CliRunner()


def run(*args: str) -> str:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def test_endpoint_commands(platform, iris, two_versions, tmp_path: Path) -> None:
    server, _client = platform
    uri = server.address
    X, _y = iris
    created = json.loads(
        run(
            "endpoints",
            "create",
            "cli-ep",
            "--model",
            "models:/iris/1=70",
            "--model",
            "models:/iris/2",
            "--wait",
            "--uri",
            uri,
            "--json",
        )
    )
    assert [(s["name"], s["traffic_percent"], s["state"]) for s in created["served_models"]] == [
        ("iris-1", 70, "READY"),  # --wait returned once both had loaded
        ("iris-2", 30, "READY"),
    ]
    table = run("endpoints", "get", "cli-ep", "--uri", uri)
    assert "iris-1" in table and "READY" in table
    assert "cli-ep" in run("endpoints", "list", "--uri", uri)
    listed = json.loads(run("endpoints", "list", "--uri", uri, "--json"))
    assert [e["name"] for e in listed["endpoints"]] == ["cli-ep"]
    data = tmp_path / "rows.csv"
    X.head(4).to_csv(data, index=False)
    predicted = json.loads(
        run("endpoints", "predict", "cli-ep", "--data", str(data), "--uri", uri, "--json")
    )
    assert len(predicted["predictions"]) == 4
    updated = json.loads(
        run(
            "endpoints", "update", "cli-ep", "--model", "models:/iris/2",
            "--missing-features", "impute", "--uri", uri, "--json",
        )
    )  # fmt: skip
    assert [s["model_uri"] for s in updated["served_models"]] == ["models:/iris/2"]
    assert updated["missing_features"] == "IMPUTE"
    run("endpoints", "delete", "cli-ep", "--uri", uri)
    assert "cli-ep" not in run("endpoints", "list", "--uri", uri)
