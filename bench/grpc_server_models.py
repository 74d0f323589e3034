#!/usr/bin/env python3
"""Would grpc.aio make a small call cheaper than grpc's synchronous server? A bare health Check.

    . .venv/bin/activate
    python bench/grpc_server_models.py --repeats 2 --output bench/results/grpc_server_models.json

Most of a Modelyard call's server CPU is grpcio's synchronous server (bench/README.md, "What
this machine allows"), so the asyncio server is the obvious other model. This measures the two
with nothing of Modelyard's in between: a health servicer that answers SERVING, in a process
pinned to CPU 0 as compare_tracking pins Modelyard's server, and a client on the polling engine
(Modelyard's default) making sequential calls, then calls from 8 threads on one channel.

  sync_polling     grpc.server with a 4-thread pool (Modelyard's core_workers) on the polling
                   engine: the model Modelyard's servers run
  aio_eventengine  grpc.aio.server on grpc's default engine (EventEngine)
  aio_polling      grpc.aio.server on the polling engine

Configurations run interleaved, `--repeats` times. One JSON object on stdout: every run and each
configuration's medians (calls/s, and the server process's CPU µs per call from /proc).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchkit import ServerProcess, emit, free_port, group_cpu_seconds, log, machine

POLLING = "-event_engine_client,-event_engine_listener"
# name -> (server model, GRPC_EXPERIMENTS of the server: "" keeps grpc's defaults)
CONFIGS = {
    "sync_polling": ("sync", POLLING),
    "aio_eventengine": ("aio", ""),
    "aio_polling": ("aio", POLLING),
}


def serve(model: str, port: int) -> None:
    """The server under test (run in a child process)."""
    os.sched_setaffinity(0, {0})  # before grpc starts a thread: they all inherit it
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    address = f"127.0.0.1:{port}"
    if model == "sync":
        from concurrent import futures

        from grpc_health.v1 import health

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
        server.add_insecure_port(address)
        server.start()
        server.wait_for_termination()
        return

    serving = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    class Health(health_pb2_grpc.HealthServicer):
        async def Check(self, request: Any, context: Any) -> Any:
            return serving

    async def main() -> None:
        server = grpc.aio.server()
        health_pb2_grpc.add_HealthServicer_to_server(Health(), server)
        server.add_insecure_port(address)
        await server.start()
        await server.wait_for_termination()

    asyncio.run(main())


def measure(name: str, calls: int, work: Path) -> dict[str, Any]:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    model, experiments = CONFIGS[name]
    port = free_port()
    env = {**os.environ, "GRPC_EXPERIMENTS": experiments}
    argv = [sys.executable, __file__, "--serve", model, "--port", str(port)]
    server = ServerProcess(name, argv, env, work / f"{name}.log")
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest()
    try:
        server.wait_ready(lambda: stub.Check(request, timeout=2))
        for _ in range(500):  # warm up
            stub.Check(request, timeout=60)
        result: dict[str, Any] = {}
        for threads, per_thread in ((1, calls), (8, calls // 4)):

            def loop(n: int = per_thread) -> None:
                for _ in range(n):
                    stub.Check(request, timeout=60)

            pool = [threading.Thread(target=loop) for _ in range(threads)]
            cpu0, t0 = group_cpu_seconds(server.proc.pid), time.perf_counter()
            for t in pool:
                t.start()
            for t in pool:
                t.join()
            wall = time.perf_counter() - t0
            cpu = group_cpu_seconds(server.proc.pid) - cpu0
            total = threads * per_thread
            result[f"threads_{threads}"] = {
                "calls": total,
                "calls_per_s": round(total / wall),
                "server_us_per_call": round(cpu / total * 1e6, 1),
            }
        log(f"{name}: {result}")
        return result
    finally:
        channel.close()
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--calls", type=int, default=4000, help="sequential calls (8 threads: /4 each)")
    p.add_argument("--output", type=Path)
    p.add_argument("--serve", choices=("sync", "aio"), help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.serve, args.port)
        return

    from modelyard._grpc_engine import use_polling_engine

    use_polling_engine()  # the client as Modelyard's: on the polling engine
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIGS}
    with tempfile.TemporaryDirectory(prefix="grpc-models-") as tmp:
        for _ in range(args.repeats):
            for name in CONFIGS:
                runs[name].append(measure(name, args.calls, Path(tmp)))
    medians = {
        name: {
            key: {
                field: statistics.median(r[key][field] for r in results)
                for field in ("calls_per_s", "server_us_per_call")
            }
            for key in results[0]
        }
        for name, results in runs.items()
    }
    result = {"machine": machine(), "repeats": args.repeats, "runs": runs, "medians": medians}
    emit(result, args.output)


if __name__ == "__main__":
    main()
