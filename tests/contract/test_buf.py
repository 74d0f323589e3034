"""The wire contract is guarded: `buf lint` is clean and `buf breaking` finds no breaking change
against the contract before its latest change on main (or against HEAD when protos/ has
uncommitted edits)."""

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


def _contract_before_head() -> str | None:
    """The commit holding the contract before its latest change: uncommitted edits compare
    with HEAD; otherwise the parent of the newest commit that changed protos/, so a break is
    caught even when later commits on main left protos/ alone. None when protos/ is new."""
    if _git("status", "--porcelain", "--", "protos").stdout.strip():
        return "HEAD"
    changes = _git("rev-list", "HEAD", "--", "protos").stdout.split()
    assert changes, "protos/ is in no commit of this checkout; commit it"
    before = _git("rev-parse", "--verify", "--quiet", f"{changes[0]}~1").stdout.strip()
    if not before or _git("cat-file", "-e", f"{before}:protos").returncode != 0:
        return None
    return before  # a commit id: buf's git input does not read 'rev~1'


def test_buf_breaking_against_previous_contract() -> None:
    if _git("rev-parse", "--git-dir").returncode != 0:
        pytest.fail("not a git checkout: buf breaking needs the previous commit to compare with")
    against = _contract_before_head()
    if against is None:  # the commit that added protos/ has nothing to break
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
