"""System metrics of a run, as MLflow's `log_system_metrics`: CPU, memory, disk and network of the
machine, sampled by a background thread and logged as `system/*` metrics under MLflow's names,
one step per sample. Ending the run logs a last sample, so even a short run has one.

    modelyard.start_run(log_system_metrics=True)         # one run
    modelyard.enable_system_metrics_logging()             # every run (or the environment's
                                                          # MODELYARD_ENABLE_SYSTEM_METRICS_LOGGING)
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence

import psutil

from modelyard.entities import Metric

log = logging.getLogger(__name__)

_PREFIX = "system/"
_MB = 1e6
_interval = 10.0  # seconds between samples, MLflow's default
_enabled: bool | None = None  # None: the environment decides


def enable_system_metrics_logging() -> None:
    global _enabled
    _enabled = True


def disable_system_metrics_logging() -> None:
    global _enabled
    _enabled = False


def set_system_metrics_sampling_interval(seconds: float | None) -> None:
    """Seconds between samples; None restores the default (10)."""
    global _interval
    if seconds is not None and not seconds > 0:
        raise ValueError(f"sampling interval {seconds!r} must be a positive number of seconds")
    _interval = 10.0 if seconds is None else float(seconds)


def next_step(latest: Sequence[Metric]) -> int:
    """The step a resumed run's system metrics go on from, after its latest values'."""
    return max((m.step + 1 for m in latest if m.key.startswith(_PREFIX)), default=0)


def wanted(asked: bool | None) -> bool:
    """Whether a run started with `log_system_metrics=asked` logs system metrics."""
    if asked is not None:
        return asked
    if _enabled is not None:
        return _enabled
    flag = os.environ.get("MODELYARD_ENABLE_SYSTEM_METRICS_LOGGING", "")
    return flag.lower() in ("1", "true", "yes")


class SystemMetricsMonitor:
    """Samples every `interval` seconds on a daemon thread and hands each sample to `send` as
    one batch; a failed send is logged and sampling goes on (it must never stop training)."""

    def __init__(
        self,
        send: Callable[[Sequence[Metric]], object],
        interval: float | None = None,
        first_step: int = 0,
    ) -> None:
        self._send = send
        self._interval = _interval if interval is None else interval
        self._stop = threading.Event()
        self._step = first_step
        self._lock = threading.Lock()  # one sample at a time: steps stay in order
        self._network = psutil.net_io_counters()
        psutil.cpu_percent(None)  # the first reading only starts the measurement
        self._thread = threading.Thread(
            target=self._loop, name="modelyard-system-metrics", daemon=True
        )

    def start(self) -> SystemMetricsMonitor:
        self._thread.start()
        return self

    def finish(self) -> None:
        """Stop sampling, after one last sample (once: finishing again does nothing)."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self._log_sample()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self._log_sample()

    def _log_sample(self) -> None:
        with self._lock:
            now, step = int(time.time() * 1000), self._step
            try:
                self._send([Metric(_PREFIX + k, v, now, step) for k, v in self._sample().items()])
            except Exception as exc:
                log.warning("system metrics not logged (step %d): %s", step, exc)
            self._step += 1

    def _sample(self) -> dict[str, float]:
        memory = psutil.virtual_memory()
        disk = psutil.disk_usage(os.path.abspath(os.sep))
        network = psutil.net_io_counters()
        return {
            "cpu_utilization_percentage": psutil.cpu_percent(None),
            "system_memory_usage_megabytes": (memory.total - memory.available) / _MB,
            "system_memory_usage_percentage": memory.percent,
            "disk_usage_percentage": disk.percent,
            "disk_usage_megabytes": disk.used / _MB,
            "disk_available_megabytes": disk.free / _MB,
            "network_receive_megabytes": (network.bytes_recv - self._network.bytes_recv) / _MB,
            "network_transmit_megabytes": (network.bytes_sent - self._network.bytes_sent) / _MB,
        }
