"""Committed generated code matches protos/ (regenerate: python scripts/generate_protos.py)."""

from __future__ import annotations

import filecmp
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location(
        "generate_protos", ROOT / "scripts" / "generate_protos.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _differences(left: Path, right: Path) -> list[str]:
    cmp = filecmp.dircmp(left, right, ignore=["__pycache__"])
    found = [f"only in committed: {n}" for n in cmp.left_only]
    found += [f"missing from committed: {n}" for n in cmp.right_only]
    found += [f"differs: {n}" for n in cmp.diff_files]
    for name in cmp.subdirs:
        found += [f"{name}/{d}" for d in _differences(left / name, right / name)]
    return found


def test_generated_code_is_current(tmp_path: Path) -> None:
    fresh = tmp_path / "_gen"
    _generator().generate(fresh)
    stale = _differences(ROOT / "modelyard" / "_gen", fresh)
    assert not stale, (
        "modelyard/_gen is stale; run `python scripts/generate_protos.py` and commit: "
        + ", ".join(stale)
    )
