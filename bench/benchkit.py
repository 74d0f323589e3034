"""Helpers every benchmark script shares. Standard library only: the scripts (and the load
generators they spawn) also run under the peers' venvs, which do not have Modelyard installed."""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list (nan for an empty one)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(q / 100 * len(sorted_values))))
    return sorted_values[rank - 1]


def paused_latencies_ms(
    call: Callable[[int], object], calls: int, pause_s: float, warmup: int = 0
) -> list[float]:
    """Sorted ms of `calls` calls of `call(i)`, each after spinning `pause_s` (a sleep would
    let the CPU idle, which is what the pause stands in for a server not to do); `warmup`
    untimed calls first, with negative i."""
    lat = []
    for i in range(-warmup, calls):
        start = time.perf_counter()
        while time.perf_counter() - start < pause_s:
            pass
        t0 = time.perf_counter()
        call(i)
        if i >= 0:
            lat.append((time.perf_counter() - t0) * 1000)
    return sorted(lat)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (everything in the benchmarks listens on loopback only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_average() -> dict[str, Any]:
    """The machine's load: other jobs share its cores, so every result records it."""
    one, five, fifteen = os.getloadavg()
    try:
        text = subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        text = ""
    return {"load1": one, "load5": five, "load15": fifteen, "uptime": text.strip()}


def wait_for_load(limit: float, max_minutes: float, poll: float = 60.0) -> dict[str, Any]:
    """Wait (polling) until the 1-minute load is at most `limit`, for at most `max_minutes`."""
    start = time.monotonic()
    first = os.getloadavg()[0]
    while os.getloadavg()[0] > limit and time.monotonic() - start < max_minutes * 60:
        log(f"load {os.getloadavg()[0]:.2f} > {limit}; waiting (up to {max_minutes:.0f} min)")
        time.sleep(poll)
    return {
        "limit": limit,
        "load1_before_wait": first,
        "waited_s": round(time.monotonic() - start),
        "load1_after_wait": os.getloadavg()[0],
        "gave_up": os.getloadavg()[0] > limit,
    }


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = f"{int(Path('/proc/meminfo').read_text().split()[1]) / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        mem = ""
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "memory": mem,
        "os": platform.platform(),
        "python": platform.python_version(),
        "note": "servers and benchmark clients share these cores; other jobs may run too",
    }


def group_cpu_seconds(pgid: int) -> float:
    """CPU time (user + system) of every live process in a process group, from /proc."""
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid:  # fields after "comm)": state ppid pgrp ... utime stime
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """Busy CPU time over one timed phase: of the whole machine (/proc/stat), of this process,
    and of the server's process group when its id is given.

    Whether a rate is bound by CPU or by waiting decides what can raise it: a phase that keeps
    the cores (or the server's one core: Python runs its handlers under one lock) busy goes
    faster only with less CPU per call; one that leaves them idle is waiting on hand-offs, locks
    or disk. Linux only; elsewhere `result` returns None.
    """

    def __init__(self, server_pgid: int | None = None) -> None:
        self._server = server_pgid
        self._start = self._sample()

    def _sample(self) -> tuple[float, float, float, float] | None:
        try:
            ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        # idle and iowait are not busy; steal (ticks[7]) is the hypervisor's; guest is in user.
        idle = ticks[3] + ticks[4]
        busy = (sum(ticks[:7]) - idle) / os.sysconf("SC_CLK_TCK")
        own = os.times()
        server = group_cpu_seconds(self._server) if self._server else 0.0
        return busy, own.user + own.system, server, time.perf_counter()

    def result(self, calls: int) -> dict[str, float] | None:
        """Cores kept busy on average, and CPU microseconds per call: the machine's (every
        process: client, server, database, anything else running), this client's and the
        server's."""
        end = self._sample()
        if self._start is None or end is None or calls <= 0:
            return None
        busy, own, server, wall = (b - a for a, b in zip(self._start, end, strict=True))
        out = {
            "cores_busy": round(busy / wall, 2),
            "machine_us_per_call": round(busy / calls * 1e6, 1),
            "client_us_per_call": round(own / calls * 1e6, 1),
        }
        if self._server:
            out["server_cores_busy"] = round(server / wall, 2)
            out["server_us_per_call"] = round(server / calls * 1e6, 1)
        return out


class ServerProcess:
    """A server under test as a subprocess in its own session (so its whole process tree stops
    with it), its output in `logfile`, reporting through `say`."""

    def __init__(
        self,
        label: str,
        argv: list[str],
        env: dict[str, str],
        logfile: Path,
        cwd: Path | None = None,
        say: Callable[[str], None] = log,
    ) -> None:
        self.label, self.logfile, self.say = label, logfile, say
        self._log = open(logfile, "wb")  # noqa: SIM115 (closed in stop())
        say(f"start {label}: {' '.join(argv)}  (log: {os.path.relpath(logfile)})")
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, probe: Callable[[], Any], timeout: float = 180.0) -> float:
        """Call `probe` until it stops raising; seconds it took."""
        t0 = time.monotonic()
        last = ""
        while time.monotonic() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.label} exited with {self.proc.returncode} before it "
                    f"was ready:\n{self.tail()}"
                )
            try:
                probe()
                took = time.monotonic() - t0
                self.say(f"{self.label} ready after {took:.1f}s")
                return took
            except Exception as exc:  # not up yet
                last = repr(exc)
            time.sleep(0.1)
        raise RuntimeError(f"{self.label} not ready after {timeout}s ({last}):\n{self.tail()}")

    def tail(self, n: int = 30) -> str:
        self._log.flush()
        return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.say(f"{self.label} ignored SIGTERM for 30s; SIGKILL")
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            except ProcessLookupError:
                pass
        self._log.close()
        self.say(f"stopped {self.label} (exit {self.proc.returncode})")


def emit(result: Any, output: Path | None) -> None:
    """A benchmark's one JSON object: on stdout, and in `output` when given."""
    text = json.dumps(result, indent=2)
    if output:
        output.write_text(text + "\n")
    print(text)


# -- MLflow's venv: the peer of the tracking and serving benchmarks, never a project dependency

MLFLOW_VENV = Path(__file__).resolve().parent / ".venvs" / "mlflow"


def venv_bin(venv: Path, name: str) -> Path:
    return venv / "bin" / name


def quiet_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true", PYTHONUNBUFFERED="1")
    env.pop("VIRTUAL_ENV", None)
    env.update(extra)
    return env


def ensure_venv(venv: Path, imports: str, requirements: list[str], env: dict[str, str]) -> str:
    """The version of the first module of `imports` in `venv`, which is made and pip-installed
    with `requirements` on first use (a peer's venv: never the project's)."""
    py = venv_bin(venv, "python")
    first = imports.split(",")[0].strip()
    probe = [str(py), "-c", f"import {imports}; print({first}.__version__)"]
    if py.exists():
        done = subprocess.run(probe, capture_output=True, text=True, env=env)
        if done.returncode == 0:
            return done.stdout.strip()
    else:
        log(f"creating {venv}")
        base = getattr(sys, "_base_executable", None) or sys.executable
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    log(f"pip install {' '.join(requirements)} into {venv} (takes a few minutes)")
    subprocess.run([str(py), "-m", "pip", "install", "-q", *requirements], check=True, env=env)
    return subprocess.run(probe, capture_output=True, text=True, check=True, env=env).stdout.strip()


def ensure_mlflow(spec: str) -> str:
    """MLflow's version in MLFLOW_VENV. psycopg 3: SQLAlchemy 2.1 maps postgresql:// to it
    (older ones needed psycopg2)."""
    requirements = [spec, "psycopg[binary]", "psycopg2-binary"]
    return ensure_venv(MLFLOW_VENV, "mlflow, psycopg", requirements, quiet_env())
