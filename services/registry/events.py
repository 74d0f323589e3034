"""The change feed behind WatchModelEvents.

Events are rows committed with the change they describe. Watchers read them from the store in
order; a write in this process wakes them at once, and a short poll catches writes made by other
replicas. A generation counter closes the gap between reading and waiting, so no wake-up is lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from modelyard.entities.registry import ModelEvent
from modelyard.errors import Unavailable
from modelyard.services.common.auth.grants import Visibility
from modelyard.services.common.changes import ChangeCounter
from modelyard.services.registry.store.base import RegistryStore

POLL_SECONDS = 0.5
_BATCH = 1000


class EventFeed:
    def __init__(self, store: RegistryStore, poll_seconds: float = POLL_SECONDS) -> None:
        self._store = store
        self._poll = poll_seconds
        self._changes = ChangeCounter()

    def notify(self) -> None:
        self._changes.bump()

    def close(self) -> None:
        """End every watch (with UNAVAILABLE, so clients watch again elsewhere) and refuse new
        ones."""
        self._changes.close()

    def watch(
        self,
        name: str,
        since_event_id: int,
        is_active: Callable[[], bool],
        visible: Callable[[], Visibility | None] = lambda: None,
    ) -> Iterator[ModelEvent]:
        """Events of `name` (or every model), re-asking `visible` which models may be seen."""
        last = since_event_id if since_event_id > 0 else self._store.last_event_id()
        while is_active():
            if self._changes.closed:
                raise Unavailable(
                    f"the registry is shutting down; watch again with since_event_id={last}"
                )
            seen = self._changes.current()
            events = self._store.list_events(name, last, _BATCH, readable=visible())
            for event in events:
                yield event
                last = event.event_id
            if len(events) < _BATCH:
                self._changes.wait_past(seen, self._poll)
