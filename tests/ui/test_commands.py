"""`modelyard up` serves the UI beside the services; `modelyard ui` serves it for services
elsewhere. Both as real processes, stopped with SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.conftest import running_server


def _start(args: list[str], tmp_path: Path, pattern: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "COLUMNS": "200", "MODELYARD_HOME": str(tmp_path / "home")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelyard.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:  # the command prints its address once it listens
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return proc, found.group(1)
    proc.kill()
    raise AssertionError("".join(seen))


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        return response.read().decode()


def test_up_serves_the_ui(tmp_path: Path) -> None:
    proc, url = _start(
        ["up", "--port", "0", "--ui-port", "0", "--home", str(tmp_path / "home")],
        tmp_path,
        r"web UI\s*│?\s*(http://127\.0\.0\.1:\d+)",
    )
    try:
        assert "Default" in _get(url + "/experiments")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def test_ui_command_reaches_services_elsewhere(tmp_path: Path, settings) -> None:
    with running_server(settings) as server:
        proc, url = _start(
            ["ui", "--port", "0", "--uri", server.address], tmp_path, r"UI on (http://\S+)"
        )
        try:
            assert "Default" in _get(url + "/experiments")
            assert "Registered models" in _get(url + "/models")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
