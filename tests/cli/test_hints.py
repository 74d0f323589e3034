"""Error hints on the command line name commands to run, not API methods, and a mistake in a
user's definitions file is reported as theirs, with its line, not as a Modelyard bug."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_errors import assert_reported, cli


@pytest.mark.parametrize(
    ("args", "command", "method"),
    [
        (["runs", "get", "f" * 32], "`modelyard runs list`", "SearchRuns"),
        (["experiments", "get", "999"], "`modelyard experiments list`", "SearchExperiments"),
        (["models", "get", "nope"], "`modelyard models list`", "SearchRegisteredModels"),
        (["endpoints", "get", "nope"], "`modelyard endpoints list`", "ListEndpoints"),
    ],
)
def test_a_hint_names_the_command_that_helps(
    server, args: list[str], command: str, method: str
) -> None:
    result = cli(*args, "--uri", server.address)
    assert_reported(result, command)
    assert method not in result.stderr


@pytest.mark.parametrize(
    ("source", "line", "kind"),
    [
        ("x = 1\n\ny = (\n", 3, "SyntaxError"),
        ("import os\nimport no_such_module_here\n", 2, "ModuleNotFoundError"),
    ],
)
def test_a_broken_definitions_file_is_the_users_error_with_its_line(
    tmp_path: Path, source: str, line: int, kind: str
) -> None:
    path = tmp_path / "repo.py"
    path.write_text(source)
    result = cli("features", "apply", str(path), "--uri", "127.0.0.1:1")
    assert_reported(result, f"error in {path} line {line}", kind, "features apply")
    assert "This is a bug" not in result.stderr
