"""Acknowledged writes survive a crash: kill -9 the server mid-logging, restart, check them all."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import pytest

from modelyard import Client
from modelyard.errors import ModelyardError
from tests.conftest import free_port
from tests.server_process import crash, crash_amid, restarted, to_crash

TRACKING = ("serve", "tracking")


@pytest.mark.slow
def test_acknowledged_writes_survive_kill(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    with to_crash(tmp_path, port, database_url, tmp_path / "first.log", TRACKING) as proc:
        client = Client(f"127.0.0.1:{port}", timeout=5)
        rid = client.create_run("0").info.run_id
        acknowledged = crash_amid(
            proc, lambda step: client.log_metric(rid, "loss", float(step), step=step), 200
        )
    client.close()

    with restarted(tmp_path, port, database_url, TRACKING) as address, Client(address) as after:
        history = after.get_metric_history(rid, "loss")
    stored = {int(m.step) for m in history}
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {sorted(missing)[:5]}"


@pytest.mark.slow
def test_artifact_uploads_survive_kill(tmp_path: Path, database_url: str) -> None:
    """Kill -9 while two writers upload: one replacing the same file over and over, one adding
    new files. After a restart every acknowledged new file reads back whole, and the replaced
    file reads back as one of the versions uploaded, matching its recorded sha256 (a record
    left behind its bytes would read as DataLoss)."""
    port = free_port()
    with to_crash(tmp_path, port, database_url, tmp_path / "first.log", TRACKING) as proc:
        client = Client(f"127.0.0.1:{port}", timeout=5)
        rid = client.create_run("0").info.run_id
        added: list[int] = []
        replaced = 0
        enough = threading.Event()  # both writers have 50 acknowledged uploads (and go on)

        def replace_forever() -> None:
            nonlocal replaced
            for i in itertools.count():
                try:
                    client.log_text(rid, _version(i), "model/weights.txt")
                except ModelyardError:
                    return
                replaced = i + 1
                if replaced > 50 and len(added) > 50:
                    enough.set()

        def add_forever() -> None:
            for i in itertools.count():
                try:
                    client.log_text(rid, _version(i), f"files/{i}.txt")
                except ModelyardError:
                    return
                added.append(i)
                if replaced > 50 and len(added) > 50:
                    enough.set()

        writers = [threading.Thread(target=replace_forever), threading.Thread(target=add_forever)]
        for writer in writers:
            writer.start()
        assert enough.wait(120), "the server never acknowledged 50 uploads of each kind"
        crash(proc)
    for writer in writers:
        writer.join(60)
        assert not writer.is_alive()
    client.close()

    with restarted(tmp_path, port, database_url, TRACKING) as address, Client(address) as after:
        # Downloads check each file against its recorded sha256: DataLoss if they differ.
        files = Path(after.download_artifacts(rid, "", tmp_path / "after"))
    for i in added:
        assert (files / "files" / f"{i}.txt").read_text() == _version(i)
    shown = (files / "model" / "weights.txt").read_text()
    index = int(shown.split("\n", 1)[0].removeprefix("version "))
    assert index <= replaced and shown == _version(index)


def _version(i: int) -> str:
    """Upload i's content: 14-98 KB, its number on every line."""
    return f"version {i}\n" * (1 + i % 7) * 1000
