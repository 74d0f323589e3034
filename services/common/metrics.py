"""Prometheus metrics common to every RPC; services add their own beside these."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RPC_REQUESTS = Counter(
    "modelyard_rpc_requests_total",
    "RPCs handled, by method and final status code.",
    ["service", "method", "code"],
)
RPC_LATENCY = Histogram(
    "modelyard_rpc_latency_seconds",
    "Time to handle an RPC, by method.",
    ["service", "method"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RPC_ERRORS = Counter(
    "modelyard_rpc_errors_total",
    "RPCs that ended in a status other than OK, by method and code.",
    ["service", "method", "code"],
)
# Read from the server's pool when scraped (services/common/thread_pool.py): threads beyond the
# core ones were added because calls were stuck (streams, calls waiting on other calls).
RPC_THREADS = Gauge("modelyard_rpc_threads", "Threads in the pool that runs RPCs.")
RPC_QUEUED = Gauge("modelyard_rpc_queued", "RPCs waiting for a thread of the pool.")


def serve_metrics(port: int, host: str) -> int:
    """Start the /metrics HTTP exporter in a daemon thread, on the gRPC server's host; returns
    the bound port."""
    server, _thread = start_http_server(port, addr=host)
    return server.server_port
