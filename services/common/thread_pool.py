"""The servers' RPC thread pool: a few threads take the calls; more join only when calls starve.

grpc's sync server runs every call on a thread of the pool it is given. With the standard
ThreadPoolExecutor of 32, concurrent small calls each wake a sleeping thread, and the runnable
threads then contend for the GIL. With 4 threads taking the calls (a thread that finishes takes
the next queued call without sleeping), 8 client threads got 11% more calls/s through the
tracking server on SQLite and 7% more on PostgreSQL, at 8-13% less server CPU per call there
(bench/README.md).

A small fixed pool is no answer: a streaming call (artifact transfer, change feed) holds its
thread for its whole length, and under `modelyard up` a call can wait on another call to the
same server (serving looks features up over gRPC). So this pool keeps `core` threads and adds
one, up to `maximum`, whenever calls are queued and none has finished for `grow_after` seconds:
the threads are stuck, not busy (the starvation rule of .NET's thread pool). Threads beyond
`core` leave after `idle_timeout` without work.

`maximum` bounds the threads that work, not those waiting on a call this same pool must run.
Under `modelyard up` the registry checks each new version with tracking over gRPC on this very
server: 31 concurrent CreateModelVersion calls (and serving's event watch) took all 32 threads,
their tracking calls queued behind them, and every one waited until the watch's stream ended
30 s later (or failed DEADLINE_EXCEEDED after 60 s). A thread waiting on such a call says so
(`lending`), and the pool may run one thread more for as long as it waits.

Idle threads are woken oldest-idle first. Waking the thread that finished last instead cost
15-20% of the single-call rate (measured: 1,063-1,087 against 1,262-1,296 calls/s, and 16% more
server CPU per call). So under steady traffic every thread keeps getting calls, and a pool that
has grown stays that size, as the standard pool does, until traffic falls off.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent import futures
from contextlib import contextmanager
from typing import Any


class _Call:
    __slots__ = ("args", "fn", "future", "kwargs")

    def __init__(self, fn: Callable[..., Any], args: tuple, kwargs: dict[str, Any]) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.future: futures.Future[Any] = futures.Future()

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)


class _Idle:
    """An idle thread's mailbox: the call handed to it, and a lock held until it is woken (a
    bare lock is the cheapest wake-up there is; an Event runs a Condition's Python code)."""

    __slots__ = ("call", "wake")

    def __init__(self) -> None:
        self.call: _Call | None = None
        self.wake = threading.Lock()
        self.wake.acquire()


class ElasticThreadPool(futures.Executor):
    """See the module docstring. `threads` and `queued` say how it stands now."""

    def __init__(
        self,
        core: int,
        maximum: int,
        *,
        grow_after: float = 0.005,
        idle_timeout: float = 30.0,
        name: str = "pool",
    ) -> None:
        if not 1 <= core <= maximum:
            raise ValueError(f"need 1 <= core ({core}) <= maximum ({maximum})")
        self.core, self.maximum = core, maximum
        self._grow_after, self._idle_timeout, self._name = grow_after, idle_timeout, name
        self._lock = threading.Lock()
        self._starving = threading.Condition(self._lock)  # the watchdog waits on it
        self._queue: deque[_Call] = deque()
        self._idle: deque[_Idle] = deque()  # oldest idle first
        self._threads: set[threading.Thread] = set()
        self._finished = 0  # calls finished: the watchdog's sign of progress
        self._lent = 0  # threads of the pool waiting on a call to this pool (`lending`)
        self._watchdog: threading.Thread | None = None
        self._numbers = itertools.count(1)
        self._shutdown = False
        self._leaving: list[threading.Thread] = []  # the threads at shutdown

    @property
    def threads(self) -> int:
        with self._lock:
            return len(self._threads)

    @property
    def queued(self) -> int:
        with self._lock:
            return len(self._queue)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        call = _Call(fn, args, kwargs)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new calls after shutdown")
            if self._idle:
                idle = self._idle.popleft()
                idle.call = call
                idle.wake.release()
            elif len(self._threads) < self.core:
                self._start(call)
            else:
                self._queue.append(call)
                if self._watchdog is None:
                    self._watchdog = self._thread(self._watch, "watchdog")
                    self._watchdog.start()
                elif len(self._queue) == 1:
                    self._starving.notify()
        return call.future

    @contextmanager
    def lending(self) -> Iterator[None]:
        """Around a wait of the calling thread on a call this pool will run (a server's call to
        itself): while it lasts, and the caller is a thread of the pool, the pool may grow one
        thread past `maximum`, so the call waited on is not queued behind its own caller."""
        with self._lock:
            ours = threading.current_thread() in self._threads
            if ours:
                self._lent += 1
                if self._queue:
                    self._starving.notify()
        try:
            yield
        finally:
            if ours:
                with self._lock:
                    self._lent -= 1

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Queued calls still run unless `cancel_futures`; idle threads leave at once."""
        with self._lock:
            self._shutdown = True
            cancelled: list[_Call] = []
            if cancel_futures:
                cancelled, self._queue = list(self._queue), deque()
            for idle in self._idle:
                idle.wake.release()  # with no call: leave
            self._idle.clear()
            self._starving.notify()
            threads = [*self._threads, *([self._watchdog] if self._watchdog else [])]
            self._leaving = threads
        # Outside the lock: a future's done-callbacks take their own locks (grpc's server state),
        # and grpc holds that lock while it submits.
        for call in cancelled:
            call.future.cancel()
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    def join(self, timeout: float) -> bool:
        """After `shutdown`: wait at most `timeout` seconds for the threads to leave; whether
        all have. A thread still ending its call when the process exits would run while the
        interpreter finalizes."""
        deadline = time.monotonic() + timeout
        others = [t for t in self._leaving if t is not threading.current_thread()]
        for thread in others:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in others)

    # -- inside the pool -----------------------------------------------------------------------

    def _thread(self, target: Callable[..., None], role: str, *args: Any) -> threading.Thread:
        # Daemon: a pool nobody shut down must not keep the process alive at exit.
        return threading.Thread(target=target, args=args, name=f"{self._name}-{role}", daemon=True)

    def _start(self, call: _Call) -> None:
        """With the lock held: a new thread, which runs `call` first."""
        thread = self._thread(self._serve, str(next(self._numbers)), call)
        self._threads.add(thread)
        thread.start()

    def _serve(self, call: _Call | None) -> None:
        idle = _Idle()
        try:
            while call is not None:
                call.run()
                call = self._next(idle)
        finally:
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _next(self, idle: _Idle) -> _Call | None:
        """The next call for this thread, once it has finished one; None: leave."""
        finished = 1
        while True:
            with self._lock:
                self._finished += finished
                finished = 0
                if self._queue:
                    return self._queue.popleft()
                if self._shutdown:
                    return None
                self._idle.append(idle)
                extra = len(self._threads) > self.core
            woken = idle.wake.acquire(timeout=self._idle_timeout if extra else -1)
            with self._lock:
                if not woken and idle not in self._idle:  # handed a call as the wait timed out
                    idle.wake.acquire()  # take back the lock that was released
                    woken = True
                call, idle.call = idle.call, None
                if woken:
                    return call  # None: woken by shutdown
                # Timed out. Leave under the lock that counted the threads, so that two idle
                # extras never both leave when only one of them is extra.
                self._idle.remove(idle)
                if len(self._threads) > self.core:
                    self._threads.discard(threading.current_thread())
                    return None

    def _watch(self) -> None:
        """Add a thread whenever calls are queued and none finished for `grow_after`."""
        with self._lock:
            while not self._shutdown:
                if not self._queue:
                    self._starving.wait()
                    continue
                finished = self._finished
                deadline = time.monotonic() + self._grow_after
                while (left := deadline - time.monotonic()) > 0 and not self._shutdown:
                    self._starving.wait(left)
                stuck = self._queue and self._finished == finished and not self._shutdown
                if stuck and len(self._threads) < self.maximum + self._lent:
                    self._start(self._queue.popleft())
