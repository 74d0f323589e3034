"""The README's two commands are the ones CI and users run, every block of its user-facing
sections runs as written against `modelyard up`, and every flag it names exists."""

from __future__ import annotations

import functools
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from typer import _click as click  # typer vendors click: its classes are these
from typer.testing import CliRunner

from modelyard import Client
from modelyard.cli import app
from tests.conftest import start_up, stop_cleanly

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.DOTALL)
    test_command = next(b.strip() for b in blocks if "pytest" in b)
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines(), f"{test_command!r} is not a line of .ci/run"
    assert any("modelyard up" in b for b in blocks)


# -- every block of the user-facing sections ------------------------------------------------------

# The user-facing sections, in the README's order: a user reads them top to bottom, and later
# blocks use what earlier ones made (the "fraud" model, its X, the feature definitions).
FIRST_SECTION, LAST_SECTION = "## Quickstart", "## How it is built"

# Blocks that cannot run here, by their first line, and why. Each must still be in the README.
NOT_RUN = {
    "modelyard up [--host 127.0.0.1] [--port 50051] [--home ~/.modelyard] \\": (
        "a synopsis, not a command; its flags are checked against --help below"
    ),
    "export MODELYARD_S3__ENDPOINT=http://minio.internal:9000   # https:// turns TLS on": (
        "needs PostgreSQL and S3 at *.internal hosts; its flags are checked below"
    ),
    "modelyard admin bootstrap --name alice        # creates the first admin, prints its token": (
        "starts a second server with --auth; tests/security runs bootstrap, users, tokens, audit"
    ),
    'docker build -t registry.example.com/ml/modelyard:0.1.0 --build-arg REVISION="$(git rev-parse'
    ' HEAD)" .': "needs a Docker engine",
    "helm install modelyard helm/modelyard -n modelyard --create-namespace \\": (
        "needs a Kubernetes cluster; tests/helm renders the chart with each example values file"
    ),
    "kubectl create namespace modelyard": "needs a Kubernetes cluster (and tests/helm, as above)",
}

# What the README leaves to its reader (their data, their objective), set up before the block
# whose first line is the key, in the session's namespace.
SETUP = {
    "modelyard endpoints create fraud": 'X.head(3).to_csv("rows.csv", index=False)',
    "modelyard features apply features_repo.py --dry-run": """
pd.DataFrame({
    "driver_id": [1001, 1002, 1001],
    "event_timestamp": pd.to_datetime(
        ["2026-11-19 22:00", "2026-11-19 23:00", "2026-11-19 23:00"], utc=True
    ),
    "created": pd.to_datetime(["2026-11-20"] * 3, utc=True),
    "conv_rate": [0.5, 0.7, 0.6],
    "trips": [10, 20, 12],
}).to_parquet("driver_stats.parquet")
""",
    "from modelyard.features import FeatureStoreClient": """
from sklearn.linear_model import LinearRegression
entity_df = pd.DataFrame({
    "driver_id": [1001, 1002],
    "event_timestamp": pd.to_datetime(["2026-11-20", "2026-11-20"], utc=True),
})
model = LinearRegression().fit(pd.DataFrame({"conv_rate": [0.1, 0.9], "trips": [1, 9]}), [1, 2])
fresh_rows = pd.DataFrame({
    "driver_id": [1001], "event_timestamp": [pd.Timestamp.now(tz="UTC")],
    "conv_rate": [0.9], "trips": [99],
})
""",
    "import optuna, modelyard.tuning": """
def objective(trial):
    x = trial.suggest_float("x", -10, 10)
    trial.report((x - 2) ** 2, 0)
    return -((x - 2) ** 2)
""",
    "import modelyard.automl": """
import numpy as np
_rng = np.random.default_rng(0)
df = pd.DataFrame({"tenure": _rng.integers(1, 60, 200), "spend": _rng.normal(50, 10, 200)})
df["churned"] = ((df.tenure < 12) | (df.spend > 60)).astype(int)
df.to_csv("churn.csv", index=False)
""",
}

# Edits that keep the session fast or local, each of text the README must still hold: a free port
# for 50051, a local file for the feature view's S3 path, fewer trials, and waiting for an
# endpoint's models before predicting (a reader takes longer than the next line does).
EDITS = {
    "s3://lake/driver_stats.parquet": "{work}/driver_stats.parquet",
    "n_trials=100": "n_trials=3",
    "timeout_minutes=5)": "timeout_minutes=5, max_trials=1)",
    "--timeout 5": "--timeout 5 --max-trials 1",
    "--model models:/fraud/1=10": "--model models:/fraud/1=10 --wait",
}

# Runs a README block: python in the session's namespace, each `modelyard ...` line of a bash
# block through the CLI in this process (a failure raises, naming the line).
SESSION = r"""
import json, shlex, sys
import pandas as pd
import typer
from modelyard.cli import app

cli = typer.main.get_command(app)
namespace = {"pd": pd}
for kind, first, code in json.load(sys.stdin):
    print(f"--- {first}", flush=True)
    if kind == "python":
        if first.startswith("# ") and first.endswith(".py"):  # a file the README names
            open(first[2:], "w").write(code)
        exec(compile(code, first, "exec"), namespace)
        continue
    if kind == "setup":
        exec(code, namespace)
        continue
    for line in code.replace("\\\n", " ").splitlines():
        line = line.split("  #")[0].strip()
        if line:
            cli.main(shlex.split(line)[1:], prog_name="modelyard", standalone_mode=False)
print("--- all blocks ran")
"""


def _user_blocks(readme: str) -> list[tuple[str, str]]:
    """(language, code) of every fenced block of the user-facing sections, in order."""
    start, end = readme.index(FIRST_SECTION), readme.index(LAST_SECTION)
    return re.findall(r"```(\w+)\n(.*?)```", readme[start:end], re.DOTALL)


def test_every_block_of_the_user_facing_sections_runs_against_modelyard_up(tmp_path: Path) -> None:
    """One `modelyard up` and one Python session, as a reader who runs each block in turn."""
    readme = (ROOT / "README.md").read_text()
    for old in EDITS:
        assert old in readme, f"{old!r} is no longer in the README: update EDITS"
    work = tmp_path / "work"  # the session's working directory
    work.mkdir()
    steps: list[tuple[str, str, str]] = []
    skipped = set()
    for lang, code in _user_blocks(readme):
        first = code.splitlines()[0]
        if first in NOT_RUN:
            skipped.add(first)
            continue
        assert lang in ("python", "bash"), first
        for key, setup in SETUP.items():
            if first.startswith(key):
                steps.append(("setup", key, setup))
        for old, new in EDITS.items():
            code = code.replace(old, new.format(work=work))
        steps.append((lang, first, code))
    assert skipped == set(NOT_RUN), f"not in the README any more: {set(NOT_RUN) - skipped}"
    assert {key for _kind, key, _code in steps} >= set(SETUP)

    proc, address, _ = start_up(tmp_path / "home")
    try:
        script = json.dumps([(k, f, c.replace("127.0.0.1:50051", address)) for k, f, c in steps])
        ran = subprocess.run(
            [sys.executable, "-c", SESSION],
            input=script,
            capture_output=True,
            text=True,
            timeout=300,
            cwd=work,
            env={**os.environ, "MODELYARD_URI": address, "COLUMNS": "200"},
        )
        assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-5000:]
        assert "--- all blocks ran" in ran.stdout
        assert "[1 rows x" in ran.stdout  # the Quickstart's DataFrame of the runs found
        with Client(address) as client:
            experiment = client.get_experiment_by_name("quickstart")
            assert experiment is not None
            [run] = client.search_runs([experiment.experiment_id], "metrics.loss < 0.5")
            assert run.info.run_name == "first"
            assert run.data.params == {"alpha": "0.5", "l1_ratio": "0.1"}
            history = client.get_metric_history(run.info.run_id, "loss")
            assert [(m.step, m.value) for m in history] == [(0, 0.9), (1, 0.6), (2, 0.4)]
            [note] = client.list_artifacts(run.info.run_id, "notes")
            assert note.path == "notes/readme.txt"
            fraud = client.get_registered_model("fraud")
            assert fraud.aliases == {"champion": 1}
            endpoint = client.get_endpoint("fraud")
            assert [s.traffic_percent for s in endpoint.served_models] == [90, 10]
            assert client.search_registered_models("name = 'eta'")  # the feature-store model
    finally:
        stop_cleanly(proc)


# -- the command line it names ------------------------------------------------------------------


def _flags(path: tuple[str, ...]) -> set[str]:
    """The flags `modelyard <path> --help` lists: the command's options, as click parses them."""
    return {
        opt
        for param in _command(path).get_params(click.Context(_command(path)))
        for opt in (*param.opts, *param.secondary_opts)
        if opt.startswith("-")
    }


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for name, command in group.commands.items():
        yield (*prefix, name)
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))


@functools.cache
def _command(path: tuple[str, ...]) -> Any:
    """The click command `modelyard <path>` runs (typer builds the tree anew on each call)."""
    if not path:
        return typer.main.get_command(app)
    command = _command(path[:-1])
    for part in path[-1:]:
        command = command.commands[part]
    return command


def _resolve(words: list[str]) -> tuple[list[tuple[str, ...]], list[str]]:
    """The commands a README line names (`experiments list|search ...`: each alternative) and
    the words after them."""
    paths: list[tuple[str, ...]] = [()]
    for i, word in enumerate(words):
        found = []
        for path in paths:
            group = _command(path)
            if hasattr(group, "commands"):
                found += [(*path, alt) for alt in word.split("|") if alt in group.commands]
        if not found:
            return paths, words[i:]
        paths = found
    return paths, []


def test_every_command_and_flag_the_readme_names_exists() -> None:
    """Each `modelyard <command> ... --flag` of the README (its bash blocks and inline code) is a
    command that takes the flag, and each flag named alone in its prose (`--max-batch`) is some
    command's: the options each command's --help lists."""
    readme = (ROOT / "README.md").read_text()
    lines = [
        line.split(" #")[0]
        for block in re.findall(r"```bash\n(.*?)```", readme, re.DOTALL)
        for line in block.replace("\\\n", " ").splitlines()
    ] + re.findall(r"`(modelyard [^`]*)`", readme)
    checked = 0
    for line in lines:
        for named in re.finditer(r"(?:^|&&\s*|--\s+)modelyard\s+(.*)", line):
            words = named.group(1).replace("[", " ").replace("]", " ").split()
            paths, rest = _resolve(words)
            # `modelyard --debug ...`: the program's own options
            assert paths != [()] or rest[0].startswith("-"), f"no command `{named.group(0)}`"
            for flag in re.findall(r"(?<![\w-])(--?[a-zA-Z][\w-]*)", " ".join(rest)):
                for one in flag.split("/"):
                    assert any(one in _flags(p) for p in paths), (
                        f"README: `modelyard {named.group(1)}`: no {one} in "
                        f"`modelyard {'|'.join(' '.join(p) for p in paths)} --help`"
                    )
                    checked += 1
    assert checked > 30  # the synopsis alone names that many
    every = set().union(*(_flags(path) for path in _commands(_command(()))))
    for span in re.findall(r"`(--[a-z][^`]*)`", readme):
        for flag in re.findall(r"--[a-z][\w-]*", span):
            assert flag in every, f"README: no command has {flag}"


def test_help_of_every_command_renders_with_what_it_does() -> None:
    """`modelyard ... --help` of each group lists its commands with a line on what each does, and
    every option of every command says what it is for."""
    for path in [(), *(p for p in _commands(_command(())) if hasattr(_command(p), "commands"))]:
        shown = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
        assert shown.exit_code == 0, shown.output
        for name, command in _command(path).commands.items():
            named = f"modelyard {' '.join((*path, name))}"
            assert command.get_short_help_str(), f"{named}: no help"
            for option in command.params:
                # An argument's name says what it is; an option's flag alone often does not.
                if option.param_type_name == "option":
                    assert option.help, f"{named} {option.opts[0]}: no help"
            assert re.search(rf"^\W*{re.escape(name)}\s+\w", shown.output, re.M), shown.output
