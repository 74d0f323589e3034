"""The change counter behind the registry's event watches and serving's endpoint watches."""

from __future__ import annotations

import threading

from modelyard.services.common.changes import ChangeCounter

LONG = 60.0  # no wait here lasts this long while the counter works


def test_a_change_between_reading_and_waiting_is_not_missed() -> None:
    changes = ChangeCounter()
    seen = changes.current()
    changes.bump()  # lands after the watcher read the count, before it waits
    assert changes.wait_past(seen, LONG) == seen + 1
    assert not changes.closed


def test_a_wait_returns_the_count_it_woke_to() -> None:
    changes = ChangeCounter()
    for _ in range(3):
        changes.bump()
    assert changes.wait_past(0, LONG) == 3
    assert changes.current() == 3


def test_close_wakes_a_waiting_watch_for_good() -> None:
    changes = ChangeCounter()
    seen = changes.current()
    woke: list[int] = []
    watcher = threading.Thread(target=lambda: woke.append(changes.wait_past(seen, LONG)))
    watcher.start()
    changes.close()
    watcher.join(LONG / 2)  # woken by close, not by its own timeout
    assert not watcher.is_alive()
    assert woke == [seen]
    assert changes.closed
    assert changes.wait_past(seen, LONG) == seen  # later waits return at once


def test_an_unchanged_count_waits_out_its_timeout() -> None:
    changes = ChangeCounter()
    assert changes.wait_past(changes.current(), 0.01) == 0
