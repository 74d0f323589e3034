"""The type hints hold: mypy (configured in pyproject.toml, pinned in the test extras) over the
SDK, the services, the tests and the benchmarks, so a hint that lies about a value fails here,
not in a user's editor, and a test or benchmark cannot drift from the hints it calls."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_sdk_services_tests_and_benchmarks_type_check() -> None:
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "modelyard", "services", "tests", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
