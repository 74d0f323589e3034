"""A Modelyard server in a process of its own, for the tests that kill it (kill -9) mid-work and
check, after a restart, that every acknowledged write is still there."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import grpc
import pytest

from modelyard.errors import DeadlineExceeded, ModelyardError, Unavailable

# Every service in one process, without the web UI; `("serve", "tracking")` runs one alone.
EVERY_SERVICE = ("up", "--no-ui")


def start_server(
    home: Path, port: int, database_url: str, log: Path, command: Sequence[str] = EVERY_SERVICE
) -> subprocess.Popen:
    """The server, answering on 127.0.0.1:`port`, its output in `log` (a pipe nobody reads could
    fill up and block it)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from modelyard.cli import main; main()",
            *command,
            "--host",
            "127.0.0.1",
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
def to_crash(
    home: Path, port: int, database_url: str, log: Path, command: Sequence[str] = EVERY_SERVICE
) -> Iterator[subprocess.Popen]:
    """The server the test will crash; killed on the way out should the test fail first."""
    proc = start_server(home, port, database_url, log, command)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            crash(proc)


def crash(proc: subprocess.Popen) -> None:
    """kill -9: no drain, no flush."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def crash_amid(proc: subprocess.Popen, write: Callable[[int], object], enough: int) -> list[int]:
    """Call write(0), write(1), ... on a thread of its own and crash the server once `enough`
    calls were acknowledged, as they go on; the numbers of the acknowledged calls. The call
    the crash ended must have failed as a server that is gone fails, nothing else."""
    acknowledged: list[int] = []
    ended: list[ModelyardError] = []
    reached = threading.Event()

    def write_on() -> None:
        for i in itertools.count():
            try:
                write(i)
            except ModelyardError as exc:
                ended.append(exc)  # this call was never acknowledged
                return
            acknowledged.append(i)
            if len(acknowledged) == enough:
                reached.set()

    writer = threading.Thread(target=write_on)
    writer.start()
    assert reached.wait(120), f"the server never acknowledged {enough} calls: {ended}"
    crash(proc)
    writer.join(60)
    assert not writer.is_alive()
    assert len(ended) == 1 and isinstance(ended[0], (Unavailable, DeadlineExceeded)), ended
    return acknowledged


@contextlib.contextmanager
def restarted(
    home: Path, port: int, database_url: str, command: Sequence[str] = EVERY_SERVICE
) -> Iterator[str]:
    """The server started again after a crash, by its address; it must then stop cleanly."""
    log = home / "restarted.log"
    proc = start_server(home, port, database_url, log, command)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"no exit within 30 s of SIGTERM; the server's log:\n{log.read_text()}")
        assert code == 0, log.read_text()
