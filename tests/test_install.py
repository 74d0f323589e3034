"""The README's first command, `pip install . && modelyard up`, runs from a built wheel, not
from the checkout: everything the services read at run time (migrations, the web UI's templates
and static files, generated stubs) has to travel in it, and everything they import has to be a
declared dependency."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import sysconfig
import urllib.request
from pathlib import Path

from modelyard import Client
from tests.conftest import start_up, stop_cleanly

ROOT = Path(__file__).resolve().parents[1]


def _sources(dst: Path) -> Path:
    """The checkout's files (tracked, or new and not ignored), copied aside: pip builds a local
    directory in place and would leave build/ in the checkout."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dst / name)
    return dst


def test_up_runs_from_the_built_wheel(tmp_path: Path) -> None:
    src = _sources(tmp_path / "src")
    dist = tmp_path / "dist"
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    # setuptools warns of a directory of modules (or data) that no package names: left out.
    assert "BuildBackendWarning" not in built.stdout + built.stderr, built.stdout + built.stderr
    [wheel] = dist.glob("modelyard-*.whl")

    # A venv of its own holds the wheel; the dependencies come from this one's site-packages,
    # named by a .pth line (which adds the directory without running this venv's own .pth
    # files, so its editable install of the checkout stays out).
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(subprocess.check_output([python, "-c", purelib], text=True).strip())
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "-q", wheel],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    where = "import modelyard.services.tracking.app as m; print(m.__file__)"
    found = subprocess.check_output([python, "-c", where], text=True, cwd=tmp_path)
    assert Path(found.strip()).is_relative_to(site), found

    proc, address, printed = start_up(tmp_path / "home", program=[str(venv / "bin" / "modelyard")])
    try:
        [ui] = re.findall(r"http://127\.0\.0\.1:\d+", printed)
        with Client(address) as client:
            experiment = client.create_experiment("from-the-wheel")
            run_id = client.create_run(experiment).info.run_id
            client.log_metric(run_id, "m", 0.5)
            assert [r.info.run_id for r in client.search_runs([experiment])] == [run_id]
        with urllib.request.urlopen(f"{ui}/experiments", timeout=30) as page:
            assert "from-the-wheel" in page.read().decode()
    finally:
        stop_cleanly(proc)


def test_every_import_is_a_declared_dependency() -> None:
    """deptry (configured in pyproject.toml): a package the code imports but only gets as
    another's dependency today (urllib3 through minio, say) could vanish from an install."""
    checked = subprocess.run(
        [sys.executable, "-m", "deptry", "modelyard", "services", "--no-ansi"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
