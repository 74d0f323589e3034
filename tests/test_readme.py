"""The README's two commands are the ones CI and users run, and its quickstart runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from modelyard import Client
from tests.conftest import start_up, stop_cleanly

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, re.DOTALL)
    test_command = next(b.strip() for b in blocks if "pytest" in b)
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines(), f"{test_command!r} is not a line of .ci/run"
    assert any("modelyard up" in b for b in blocks)


def test_the_quickstart_runs_as_written_against_modelyard_up(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1]
    block = re.search(r"```python\n(.*?)```", quickstart, re.DOTALL)
    assert block is not None
    proc, address, _ = start_up(tmp_path / "home")
    try:
        # Only the address differs: the test's server listens on a free port, not on 50051.
        code = block.group(1).replace("127.0.0.1:50051", address)
        ran = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
        )
        assert ran.returncode == 0, ran.stderr
        assert "[1 rows x" in ran.stdout  # the DataFrame of the runs found: the one run
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
    finally:
        stop_cleanly(proc)
