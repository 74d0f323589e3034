"""Tables keep numbers, dates, statuses and ids whole; piped, they are wide enough for a row a
line; a runs table says how many metric and param columns it left out."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from modelyard import Client
from tests.cli.test_cli import run

DATE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


def piped(*args: str) -> str:
    """`modelyard <args> | ...`: stdout a pipe, and no COLUMNS to size it."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    result = subprocess.run(
        [sys.executable, "-m", "modelyard.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_piped_runs_table_has_a_row_a_line_and_says_what_it_left_out(server) -> None:
    with Client(server.address) as client:
        rid = client.create_run("0", run_name="a-rather-long-run-name-for-a-table").info.run_id
        for i in range(8):
            client.log_metric(rid, f"metric_number_{i}", i / 3)
            client.log_param(rid, f"param_number_{i}", f"value-{i}")
    out = piped("runs", "list", "-e", "0", "--uri", server.address)
    [row] = [line for line in out.splitlines() if rid in line]
    assert "a-rather-long-run-name-for-a-table" in row and "RUNNING" in row
    assert DATE.search(row) and "0.333333" in row and "value-5" in row
    assert "2 metric columns and 2 param columns not shown" in out


def test_numbers_dates_and_statuses_stay_whole_on_a_narrow_terminal(
    server, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Client(server.address) as client:
        experiment = client.create_experiment("a fairly long experiment name to fold")
        rid = client.create_run(experiment, run_name="some run with a long name").info.run_id
        client.log_metric(rid, "rmse", 123456.789)
    monkeypatch.setenv("COLUMNS", "60")
    listed = run("experiments", "list", "--uri", server.address)
    assert len(DATE.findall(listed)) == 2, listed  # Default's and the new one's
    monkeypatch.setenv("COLUMNS", "100")  # room for the whole values; the name folds
    runs = run("runs", "list", "-e", experiment, "--uri", server.address)
    assert DATE.search(runs) and "RUNNING" in runs and "123457" in runs, runs
