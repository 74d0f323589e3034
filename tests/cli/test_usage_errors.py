"""Usage errors (a bad or missing flag or argument, a file that is not there) honour --json: a
script gets the JSON error object on stdout with exit status 2, as it gets any other failure;
without --json they look as typer draws them."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.cli.test_errors import cli

NOWHERE = ["--uri", "127.0.0.1:1"]  # refused before any call, so no server is dialled


@pytest.mark.parametrize(
    ("args", "field", "text"),
    [
        (["experiments", "list", "--view", "bogus", *NOWHERE], None, "--view must be one of"),
        (["endpoints", "predict", "ep", *NOWHERE], "--data", "Missing option"),
        (["endpoints", "predict", "ep", "--data", "{missing}", *NOWHERE], "--data", "not exist"),
        (["runs", "list", "--max-results", "many", *NOWHERE], "--max-results", "Invalid value"),
        # Neither given was refused as "not both".
        (["experiments", "get", *NOWHERE], None, "give an experiment id or --name; "),
        (["experiments", "get", "1", "--name", "x", *NOWHERE], None, "--name, not both"),
        # 0 days reached the service as "unset" and silently made a 90-day token.
        (
            ["tokens", "create", "--ttl-days", "0", *NOWHERE],
            "--ttl-days",
            "greater than or equal to 1",
        ),
    ],
)
def test_a_usage_error_is_json_with_json(
    tmp_path: Path, args: list[str], field: str | None, text: str
) -> None:
    argv = [a.format(missing=tmp_path / "missing.txt") for a in args]
    result = cli(*argv, "--json")
    assert result.returncode == 2, result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "INVALID_ARGUMENT"
    assert text in error["message"] and "--help" in error["message"]
    if field is not None:
        assert error["field"] == field
    plain = cli(*argv)
    assert plain.returncode == 2 and plain.stdout == ""
    assert text in plain.stderr and "Usage:" in plain.stderr


def test_help_and_success_exit_0() -> None:
    shown = cli("runs", "list", "--help")
    assert shown.returncode == 0 and "--max-results" in shown.stdout


def test_materialize_with_no_online_views_is_a_json_error(server) -> None:
    result = cli("features", "materialize", "--uri", server.address, "--json")
    assert result.returncode == 1, result.stderr
    error = json.loads(result.stdout)["error"]
    assert error["code"] == "FAILED_PRECONDITION"
    assert "online=True" in error["message"]
    plain = cli("features", "materialize", "--uri", server.address)
    assert plain.returncode == 1 and "online=True" in plain.stderr


def test_version_prints_the_installed_version() -> None:
    result = cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"modelyard {version('modelyard')}"
