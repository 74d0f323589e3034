"""Acknowledged writes survive a crash: kill -9 the server mid-logging, restart, check them all."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from modelyard import Client
from modelyard.errors import ModelyardError
from tests.conftest import free_port


def start_server(home: Path, port: int, database_url: str, log: Path) -> subprocess.Popen:
    """The server in a process of its own, its output in `log` (a pipe nobody reads could fill
    up and block it)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from modelyard.cli import main; main()",
            "serve",
            "tracking",
            "--port",
            str(port),
            "--home",
            str(home),
            "--backend-store-uri",
            database_url,
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        grpc.channel_ready_future(channel).result(timeout=60)
    except grpc.FutureTimeoutError:
        proc.kill()
        proc.wait()
        pytest.fail(f"server did not start; its log:\n{log.read_text()}")
    finally:
        channel.close()
    return proc


@contextlib.contextmanager
def restarted(home: Path, port: int, database_url: str) -> Iterator[Client]:
    """The server started again after a crash, and a client of it; it must stop cleanly."""
    log = home / "restarted.log"
    proc = start_server(home, port, database_url, log)
    try:
        with Client(f"127.0.0.1:{port}") as client:
            yield client
    finally:
        proc.terminate()
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"no exit within 30 s of SIGTERM; the server's log:\n{log.read_text()}")
        assert code == 0, log.read_text()


@pytest.mark.slow
def test_acknowledged_writes_survive_kill(tmp_path: Path, database_url: str) -> None:
    port = free_port()
    proc = start_server(tmp_path, port, database_url, tmp_path / "first.log")
    client = Client(f"127.0.0.1:{port}", timeout=5)
    rid = client.create_run("0").info.run_id
    acknowledged: list[int] = []
    enough = threading.Event()

    def log_forever() -> None:
        step = 0
        while True:
            try:
                client.log_metric(rid, "loss", float(step), step=step)
            except ModelyardError:
                return  # the server is gone; this write was never acknowledged
            acknowledged.append(step)
            if step == 200:
                enough.set()
            step += 1

    writer = threading.Thread(target=log_forever)
    writer.start()
    assert enough.wait(120), "the server never acknowledged 200 writes"
    os.kill(proc.pid, signal.SIGKILL)  # no drain, no flush: a crash
    proc.wait()
    writer.join(60)
    assert not writer.is_alive()
    client.close()

    with restarted(tmp_path, port, database_url) as after:
        history = after.get_metric_history(rid, "loss")
    stored = {int(m.step) for m in history}
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged writes lost, e.g. {sorted(missing)[:5]}"
    assert len(acknowledged) > 200


@pytest.mark.slow
def test_artifact_uploads_survive_kill(tmp_path: Path, database_url: str) -> None:
    """Kill -9 while two writers upload: one replacing the same file over and over, one adding
    new files. After a restart every acknowledged new file reads back whole, and the replaced
    file reads back as one of the versions uploaded, matching its recorded sha256 (a record
    left behind its bytes would read as DataLoss)."""
    port = free_port()
    proc = start_server(tmp_path, port, database_url, tmp_path / "first.log")
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
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    for writer in writers:
        writer.join(60)
        assert not writer.is_alive()
    client.close()

    with restarted(tmp_path, port, database_url) as after:
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
