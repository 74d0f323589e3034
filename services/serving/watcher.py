"""Follow the registry's change feed and reload endpoints whose aliases or stages moved."""

from __future__ import annotations

import threading
from collections.abc import Callable

from modelyard.client.registry import RegistryClient
from modelyard.errors import DeadlineExceeded, ModelyardError
from modelyard.services.common.logging import get_logger

log = get_logger(__name__)

# Events after which a models:/ URI may point elsewhere, or at other files: a model deleted and
# registered again reuses its name and version numbers.
RELOAD_EVENTS = {
    "ALIAS_SET",
    "ALIAS_DELETED",
    "STAGE_TRANSITIONED",
    "VERSION_READY",
    "VERSION_DELETED",
    "MODEL_DELETED",
    "MODEL_RENAMED",
}


class RegistryWatcher:
    def __init__(
        self,
        registry: Callable[[], RegistryClient],
        on_change: Callable[[str], None],
        retry_seconds: float = 1.0,
    ) -> None:
        self._registry = registry
        self._on_change = on_change
        self._retry = retry_seconds
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._since = 0

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._loop, name="modelyard-serving-watch", daemon=True
        )
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                registry = self._registry()
                if not self._since:
                    latest = registry.list_model_events(max_results=1, newest_first=True)
                    self._since = latest[0].event_id if latest else 0
                # A finite deadline lets the loop notice a stop request between streams.
                for event in registry.watch_model_events(since_event_id=self._since, timeout=30):
                    self._since = event.event_id
                    if event.event_type in RELOAD_EVENTS:
                        self._on_change(event.model_name)
                        if old_name := event.details.get("old_name"):
                            self._on_change(old_name)  # renamed: its URIs resolve no longer
                    if self._stop.is_set():
                        return
            except ModelyardError as exc:
                if self._stop.is_set():
                    return
                if not isinstance(exc, DeadlineExceeded):
                    log.warning("registry change feed interrupted (%s); reconnecting", exc)
                    self._stop.wait(self._retry)
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("registry change feed failed; reconnecting")
                self._stop.wait(self._retry)

    def close(self) -> None:
        self._stop.set()
