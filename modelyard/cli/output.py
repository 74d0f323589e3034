"""CLI output: readable tables for people, `--json` for scripts, errors that say what to do."""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn
from rich.table import Table
from rich.text import Text

from modelyard.convert.common import non_finite_text
from modelyard.entities import PagedList

T = TypeVar("T")


class _Event(Protocol):
    @property
    def event_id(self) -> int: ...


E = TypeVar("E", bound=_Event)

console = Console()
err_console = Console(stderr=True)


def to_jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return non_finite_text(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        for prop in ("metrics",):
            if hasattr(type(value), prop) and isinstance(getattr(type(value), prop), property):
                data[prop] = to_jsonable(getattr(value, prop))
        return data
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def print_json(value: Any) -> None:
    console.print_json(json.dumps(to_jsonable(value), default=str, allow_nan=False))


def print_page(
    page: PagedList[T], key: str, as_json: bool, show: Callable[[list[T]], None]
) -> None:
    """One page of a listing. JSON carries the token beside the items (`{key: [...],
    "next_page_token": str | null}`, as the API's responses do), so a script pages with the
    document it already parses; a table ends with the flag that fetches the next page."""
    if as_json:
        print_json({key: list(page), "next_page_token": page.token})
        return
    show(list(page))
    if page.token:
        console.print(
            f"More results: run the same command with --page-token {page.token}",
            soft_wrap=True,  # one line, so the token can be copied whole
            markup=False,
            highlight=False,
        )


def print_events(
    events: list[E], since: int, max_results: int, as_json: bool, show: Callable[[list[E]], None]
) -> None:
    """An event listing. Events are read by cursor, not page token: JSON carries
    `last_event_id`, what `--since` takes to read on; a table that filled --max-results ends
    with that flag."""
    if as_json:
        last = events[-1].event_id if events else since
        print_json({"events": events, "last_event_id": last})
        return
    show(events)
    if events and len(events) >= max_results:
        note(f"More events may follow: run the same command with --since {events[-1].event_id}")


def ms(value: int | None) -> str:
    if value is None:
        return ""
    return datetime.fromtimestamp(value / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def say(message: str) -> None:
    """Print a message that embeds user values (names, tags, paths) exactly as they are: a name
    like `exp[/]x` is text, not Rich markup that would fail or vanish. Not wrapped at the
    terminal's width either: a path or a command to copy is never broken in two."""
    console.print(message, markup=False, highlight=False, soft_wrap=True)


def note(message: str) -> None:
    """A remark beside the result (an empty listing, which experiment was searched): on stderr,
    so stdout stays the table or JSON a pipe reads."""
    err_console.print(message, markup=False, highlight=False, soft_wrap=True)


def done(as_json: bool, message: str, **what: Any) -> None:
    """Report a change: the sentence for a person, or with --json one object of what was done
    (ids, names, paths, counts) and nothing else on stdout, so a script reads it, not the text."""
    if as_json:
        print_json(what)
    else:
        say(message)


# Values that break in two are unreadable and cannot be copied or compared: such columns never
# wrap. Only free text (names, descriptions, paths) folds to fit.
_WHOLE_COLUMNS = {"id", "status", "state", "stage", "version", "traffic", "kind", "action"}
_WHOLE_VALUE = re.compile(
    r"-?(\d[\d_.,]*(e[-+]?\d+)?%?|inf|nan|infinity)"  # a number, or a percentage
    r"|\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:\d{2}|Z)?)?"  # a date/time
    r"|[0-9a-f]{16,}",  # a hash or generated id
    re.IGNORECASE,
)
# Piped output is read by grep, awk or a file, not a window: one line a row, not 80 columns. A
# table is only as wide as its content needs; this is just "no limit".
_PIPED_WIDTH = 10_000


def _whole(column: str, cells: list[str]) -> bool:
    if column in _WHOLE_COLUMNS or column.endswith((" id", "_id")):
        return True
    values = [c for c in cells if c]
    return bool(values) and all(_WHOLE_VALUE.fullmatch(c) for c in values)


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Numbers, dates, statuses and identifiers stay whole on one line (so an id can be copied
    into the next command); free text folds to fit the terminal. Piped, the table is as wide as
    it needs unless COLUMNS says otherwise.

    Titles, headers and cells are `Text`, never markup: they hold user data (`[red]` is a valid
    param value, `a[/]b` a valid tag), which must show as stored."""
    cells = [["" if v is None else str(v) for v in row] for row in rows]
    t = Table(title=None if title is None else Text(title), show_lines=False, header_style="bold")
    for i, c in enumerate(columns):
        column = [row[i] for row in cells]
        if _whole(c, column):
            widest = max((len(v) for v in column), default=0)
            t.add_column(Text(c), no_wrap=True, min_width=max(widest, len(c)))
        else:
            t.add_column(Text(c), overflow="fold")
    for row in cells:
        t.add_row(*(Text(cell) for cell in row))
    piped = not console.is_terminal and "COLUMNS" not in os.environ
    # print(width=) cannot widen past the console's width: a console of that width can
    (Console(file=console.file, width=_PIPED_WIDTH) if piped else console).print(t)


def key_values(title: str, items: dict[str, Any]) -> None:
    table(title, ["key", "value"], sorted(items.items()))


def progress(*columns: str | ProgressColumn, as_json: bool = False) -> Progress:
    """A live bar for a person watching: on stderr, so stdout stays the result a pipe or script
    reads; not drawn at all when stderr is not a terminal (its frames would fill a log) or with
    --json; transient, so the result is not printed under a stale bar."""
    return Progress(
        *columns,
        console=err_console,
        disable=as_json or not err_console.is_terminal,
        transient=True,
    )


def file_progress(verb: str, as_json: bool = False) -> Progress:
    """The bar of a transfer of many files: "<verb> ━━━━ 3/10 <file being moved>"."""
    return progress(
        TextColumn(verb, style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.description}", markup=False),  # a file name, not markup
        as_json=as_json,
    )
