"""Error hints on the command line name commands to run, not API methods, and a mistake in a
user's definitions file is reported as theirs, with its line, not as a Modelyard bug."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard import Client
from tests.cli.test_errors import assert_reported, cli
from tests.conftest import failed_registration


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


def test_a_failed_registration_names_what_registers_again(server) -> None:
    """The hint said "register it again (CreateModelVersion)", an API method no command is."""
    with Client(server.address) as c:
        run_id = c.create_run("0").info.run_id
    failed_registration(server.settings, "empty", run_id)
    result = cli("models", "alias", "set", "empty", "champion", "1", "--uri", server.address)
    assert_reported(result, "register it again (`modelyard.register_model` in Python)")
    assert "CreateModelVersion" not in result.stderr


@pytest.mark.parametrize(
    ("source", "line", "kind"),
    [
        ("x = 1\n\ny = (\n", 3, "SyntaxError"),
        ("import os\nimport no_such_module_here\n", 2, "ModuleNotFoundError"),
        # Any error the file's own code raises is the file's: a misspelt keyword, a bad value,
        # a data file it reads that is missing.
        (
            "from modelyard.features import FeatureView\n\nFeatureView(name='v', tll=1)\n",
            3,
            "TypeError: FeatureView.__init__() got an unexpected keyword argument 'tll'",
        ),
        (
            "from modelyard.features import Field\nx = Field('x', dtype='float')\n",
            2,
            "ValueError: Field 'x': dtype 'float' is not a feature type",
        ),
        ("x = 1\ny = x / 0\n", 2, "ZeroDivisionError"),
        ("open('/no/such/data.csv')\n", 1, "FileNotFoundError"),
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


def test_a_definition_bound_to_two_names_is_applied_once(server, tmp_path: Path) -> None:
    """`DRIVER = driver` (or an import of it) made the file define the entity twice, which
    apply refused as two definitions of one name."""
    path = tmp_path / "repo.py"
    path.write_text(
        "from modelyard.features import Entity\n"
        "driver = Entity(name='driver', join_keys=['driver_id'])\n"
        "DRIVER = driver\n"
        "also = Entity(name='driver', join_keys=['driver_id'])\n"
    )
    result = cli("features", "apply", str(path), "--uri", server.address)
    assert result.returncode == 0, result.stderr
    assert "applied 1 change(s)" in result.stdout
