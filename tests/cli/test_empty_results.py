"""An empty listing is not an error (exit 0, no items with --json, as MLflow's search gives), but a
person is told on stderr why it may be empty: the name or id may not exist, and which experiment
`runs list` searched when no -e was given."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from modelyard.cli import app

runner = CliRunner()


@pytest.fixture
def uri(server) -> str:
    return str(server.address)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["models", "versions", "nope"],
            "no versions of model 'nope' (does it exist? `modelyard models list`)",
        ),
        (
            ["models", "history", "nope"],
            "no events of model 'nope' (does it exist? `modelyard models list`)",
        ),
        (
            ["runs", "list", "-e", "999"],
            "no runs in experiment 999 (does it exist? `modelyard experiments list`)",
        ),
    ],
)
def test_an_empty_result_says_what_may_be_missing(uri: str, args: list[str], said: str) -> None:
    shown = runner.invoke(app, [*args, "--uri", uri], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert said in shown.stderr
    assert "does it exist" not in shown.stdout  # the table alone on stdout
    scripted = runner.invoke(app, [*args, "--uri", uri, "--json"])
    assert scripted.exit_code == 0 and scripted.stderr == ""
    parsed = json.loads(scripted.stdout)
    assert parsed in (
        {"model_versions": [], "next_page_token": None},
        {"events": [], "last_event_id": 0},
        {"runs": [], "next_page_token": None},
    )


def test_runs_list_without_an_experiment_says_which_it_searched(uri: str) -> None:
    shown = runner.invoke(app, ["runs", "list", "--uri", uri], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "searched experiment 0 (the default); pass -e ID for another" in shown.stderr
    given = runner.invoke(app, ["runs", "list", "-e", "0", "--uri", uri])
    assert "searched" not in given.stderr
