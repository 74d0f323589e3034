"""`modelyard up` serves the UI beside the services; `modelyard ui` serves it for services
elsewhere. Both as real processes, stopped with SIGTERM."""

from __future__ import annotations

import signal
import urllib.request
from pathlib import Path

from tests.conftest import running_server, start_command, start_up


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        return response.read().decode()


def test_up_serves_the_ui(tmp_path: Path) -> None:
    proc, url, _ = start_up(tmp_path / "home", pattern=r"web UI\s*│?\s*(http://127\.0\.0\.1:\d+)")
    try:
        assert "Default" in _get(url + "/experiments")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


def test_ui_command_reaches_services_elsewhere(tmp_path: Path, settings) -> None:
    with running_server(settings) as server:
        proc, url, _ = start_command(
            ["ui", "--port", "0", "--uri", server.address],
            r"UI on (http://\S+)",
            env={"MODELYARD_HOME": str(tmp_path / "home")},
        )
        try:
            assert "Default" in _get(url + "/experiments")
            assert "Registered models" in _get(url + "/models")
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(60) == 0
