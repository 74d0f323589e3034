"""What `modelyard` prints when a command fails: one or two lines that say what went wrong and
what to do next, a non-zero status, and a traceback only on request. Every case is real: a port
this test holds, a closed port, a missing file."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from modelyard.cli import app
from tests.conftest import free_port
from tests.silent_peer import silent_port


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`modelyard <args>` as a user runs it: through `main`, the one place errors are printed."""
    return subprocess.run(
        [sys.executable, "-m", "modelyard.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def invoke(*args: str) -> Result:
    """In process, for refusals typer makes before a command runs (wide, so none wraps)."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "300"})


def assert_reported(result: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2, result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that this test is listening on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        (["up", "--no-ui"], "--port"),
        (["up", "--port", "0"], "--ui-port"),
        (["up", "--port", "0", "--no-ui"], "--metrics-port"),
        (["ui"], "--port"),
    ],
)
def test_a_taken_port_names_the_flag_that_moves_it(
    tmp_path: Path, taken_port: int, command: list[str], flag: str
) -> None:
    result = cli(*command, "--home", str(tmp_path), flag, str(taken_port))
    assert_reported(result, "could not listen", f"127.0.0.1:{taken_port}", f"with {flag}")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr  # no line of grpc's own


@pytest.mark.parametrize("command", [["up", "--port", "0", "--no-ui"], ["db", "upgrade"]])
def test_an_unreachable_database_says_what_to_check(tmp_path: Path, command: list[str]) -> None:
    closed = f"postgresql://postgres@127.0.0.1:{free_port()}/test"
    result = cli(*command, "--home", str(tmp_path), "--backend-store-uri", closed)
    assert_reported(
        result,
        "could not use the metadata database",
        "--backend-store-uri",
        "MODELYARD_BACKEND_STORE_URI",
    )


def test_a_backend_uri_without_a_driver_says_what_to_write(tmp_path: Path) -> None:
    url = f"postgresql+nodriver://postgres@127.0.0.1:{free_port()}/test"
    result = cli("db", "upgrade", "--backend-store-uri", url)
    assert_reported(result, "backend store URI is not usable", "postgresql://user@host/db")


def test_a_server_that_is_not_running_says_how_to_start_one() -> None:
    address = f"127.0.0.1:{free_port()}"
    result = cli("runs", "list", env={"MODELYARD_URI": address})
    assert_reported(
        result, "UNAVAILABLE", address, "modelyard up", "MODELYARD_URI", "--uri names the server"
    )


def test_a_hung_server_is_not_taken_for_a_missing_one() -> None:
    """A port that takes the connection and never answers was reported as no server at all,
    with advice to start one; the fix is to look at the one that hangs (or the address)."""
    with silent_port() as port:
        result = cli("experiments", "list", "--uri", f"127.0.0.1:{port}")
    assert_reported(result, f"something at 127.0.0.1:{port} took the connection but never")
    assert "a hung Modelyard server (check its log" in result.stderr
    assert "start one with `modelyard up`" not in result.stderr


def test_a_port_out_of_range_is_refused_before_dialling() -> None:
    """127.0.0.1:99999 dialled 34463 (99999 mod 65536), which may be some other server."""
    result = cli("runs", "list", "--uri", "127.0.0.1:99999")
    assert_reported(result, "INVALID_ARGUMENT", "'127.0.0.1:99999'", "1 to 65535", "--uri")


def test_a_missing_file_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-ca.pem"
    result = cli("runs", "list", "--uri", "127.0.0.1:1", env={"MODELYARD_TLS_CA": str(missing)})
    assert_reported(result, str(missing), "Check the path")


@pytest.mark.parametrize(
    "args",
    [
        ["artifacts", "upload", "f" * 32, "{missing}", "--uri", "127.0.0.1:1"],
        ["endpoints", "predict", "ep", "--data", "{missing}", "--uri", "127.0.0.1:1"],
    ],
)
def test_a_missing_input_file_is_refused_before_any_call(tmp_path: Path, args: list[str]) -> None:
    missing = tmp_path / "missing.json"
    result = invoke(*(a.format(missing=missing) for a in args))
    assert result.exit_code == 2, result.output
    assert "does not exist" in result.output and missing.name in result.output


def test_input_that_is_not_json_is_refused_with_what_to_give(tmp_path: Path) -> None:
    data = tmp_path / "rows.json"
    data.write_text("{not json")
    result = invoke("endpoints", "predict", "ep", "--data", str(data), "--uri", "127.0.0.1:1")
    assert result.exit_code == 2, result.output
    assert "is not JSON" in result.output and ".csv" in result.output


# Commands that fail in ways nobody planned for: what a bug, or an odd system error, looks like to
# `main`.
UNPLANNED = """
import errno, os
from modelyard.cli import app, main

@app.command("buggy")
def buggy() -> None:
    raise RuntimeError("the widget is misaligned")

@app.command("reset")
def reset() -> None:
    raise ConnectionResetError(errno.ECONNRESET, os.strerror(errno.ECONNRESET))

main()
"""


def unplanned(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", UNPLANNED, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


@pytest.mark.parametrize(
    ("args", "env", "traceback"),
    [
        (["buggy"], {}, False),
        (["buggy"], {"MODELYARD_DEBUG": "1"}, True),
        (["--debug", "buggy"], {}, True),
    ],
)
def test_an_unexpected_error_is_reported_with_how_to_see_its_traceback(
    args: list[str], env: dict[str, str], traceback: bool
) -> None:
    result = unplanned(*args, env=env)
    assert result.returncode == 1, result.stderr
    assert "unexpected RuntimeError: the widget is misaligned" in result.stderr
    assert "MODELYARD_DEBUG=1" in result.stderr
    assert ("Traceback" in result.stderr) is traceback, result.stderr


def test_a_system_error_without_a_file_says_how_to_see_where_it_happened() -> None:
    result = unplanned("reset")
    assert_reported(result, os.strerror(errno.ECONNRESET), "MODELYARD_DEBUG=1")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql://", "names no database"),  # would connect to a database named after you
        ("sqlite://", "names no database"),  # in memory: gone when the server stops
        ("postgresql://u@127.0.0.1:xx/db", "does not parse"),
    ],
)
def test_a_backend_uri_that_names_no_usable_database_is_a_settings_error(
    url: str, reason: str
) -> None:
    result = cli("db", "upgrade", "--backend-store-uri", url)
    assert result.returncode == 2, result.stderr
    assert reason in result.stderr and "postgresql://user@host/db" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def hung_handler() -> Iterator[int]:
    """A real gRPC server on 127.0.0.1 whose every handler waits until the test ends."""
    import threading
    from concurrent import futures

    import grpc

    release = threading.Event()

    class Hang(grpc.GenericRpcHandler):
        def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
            def wait(request: bytes, context: grpc.ServicerContext) -> bytes:
                release.wait()
                return b""

            return grpc.unary_unary_rpc_method_handler(wait)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[Hang()])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        release.set()
        server.stop(None)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_timeout_bounds_each_call_to_a_hung_handler(hung_handler: int, how: str) -> None:
    """A handler that never answered held every command for the SDK's built-in 60 s."""
    args = ["--timeout", "0.5"] if how == "flag" else []
    env = {"MODELYARD_TIMEOUT": "0.5"} if how == "env" else {}
    result = cli(*args, "experiments", "list", "--uri", f"127.0.0.1:{hung_handler}", env=env)
    assert_reported(result, "DEADLINE_EXCEEDED", "did not answer within 0.5 s")


def test_a_timeout_that_is_no_number_of_seconds_is_refused() -> None:
    result = invoke("--timeout", "0", "runs", "list")
    assert result.exit_code == 2
    assert "Invalid value for '--timeout'" in result.output
