"""The wire contract is guarded: `buf lint` is clean and `buf breaking` finds no breaking change
against the previous commit on main (or against HEAD when protos/ has uncommitted edits)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require

ROOT = Path(__file__).resolve().parents[2]


def _buf() -> str:
    found = shutil.which("buf") or shutil.which("buf", path=str(Path(sys.executable).parent))
    require(found is not None, "buf is not installed (pip install buf-bin)")
    assert found is not None
    return found


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)


def test_buf_lint() -> None:
    result = subprocess.run([_buf(), "lint"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_against_previous_commit() -> None:
    if _git("rev-parse", "--git-dir").returncode != 0:
        pytest.fail("not a git checkout: buf breaking needs the previous commit to compare with")
    dirty = _git("status", "--porcelain", "--", "protos").stdout.strip()
    against = "HEAD" if dirty else "HEAD~1"
    if _git("cat-file", "-e", f"{against}:protos").returncode != 0:
        # The first commit that adds protos/ has nothing to break.
        assert _git("rev-list", "--count", "HEAD").stdout.strip() in ("0", "1") or against == "HEAD"
        return
    result = subprocess.run(
        [_buf(), "breaking", "--against", f".git#ref={against},subdir=."],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, (
        f"wire-breaking change against {against}:\n{result.stdout}{result.stderr}"
    )
