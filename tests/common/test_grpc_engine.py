"""Every Modelyard process runs grpc on its polling engine unless it chose otherwise (see
modelyard/_grpc_engine.py): the engine shows in grpc's own TCP trace, which names the source file
each line comes from (the polling engine's is tcp_posix.cc)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

# Imports modelyard, then serves and calls a health check over loopback in one process.
SCRIPT = textwrap.dedent(
    """
    import os
    import modelyard  # noqa: F401  (first: it chooses grpc's engine)
    from concurrent import futures
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    server = grpc.server(futures.ThreadPoolExecutor(2))
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
    server.stop(None)
    print("GRPC_EXPERIMENTS" in os.environ, flush=True)
    """
)


def run(**env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, "GRPC_VERBOSITY": "debug", "GRPC_TRACE": "tcp", **env},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_client_and_server_use_the_polling_engine_and_leave_no_variable_behind() -> None:
    proc = run()
    assert "tcp_posix.cc" in proc.stderr  # the polling engine's endpoint, both ends
    assert "tcp_client_posix.cc" in proc.stderr  # its connector: the client side
    assert "tcp_server_posix.cc" in proc.stderr  # its listener: the server side
    assert proc.stdout.strip() == "False"  # child processes do not inherit the choice


def test_a_process_that_sets_grpc_experiments_keeps_its_own_choice() -> None:
    proc = run(GRPC_EXPERIMENTS="")  # empty: grpc's defaults, i.e. EventEngine
    assert "tcp_posix.cc" not in proc.stderr
    assert proc.stdout.strip() == "True"
