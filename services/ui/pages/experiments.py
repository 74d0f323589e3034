"""Experiments, and one experiment's runs as a table: chosen columns, search_runs filters,
sorting, page tokens (so 10k+ runs page as fast as 100), children grouped under their parent."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.client.tracking import runs_to_frame
from modelyard.entities.common import ViewType
from modelyard.entities.tracking import Run
from modelyard.errors import InvalidArgument
from modelyard.services.ui.pages.runs import attachment
from modelyard.services.ui.web import (
    client,
    encoded_length,
    name_search,
    pager,
    query_text,
    render,
    said,
)

PAGE = 100
AUTO_COLUMNS = 6  # when none are chosen: this many metrics and params seen on the page
# Every column's sort link carries the filter and the columns again: these bound the page, and
# each link. Characters once percent-encoded (web.query_text), as a link carries them: with the
# path, `view` and two page tokens (this page's and the one before, ~380 each) every link fits
# MAX_LINK. ASCII filters of 2000 characters fit, CJK ones of 300.
MAX_COLUMNS = 50
MAX_FILTER = 2800  # `filter`
MAX_COLUMNS_TEXT = 2200  # `columns`
MAX_ORDER = 1000  # `order`: a column's sort link whose order is longer is not made
FILTER_ADVICE = (
    "shorten it, or search with the SDK's search_runs (modelyard.search_runs), which takes "
    "filters of any length"
)
COLUMN_KINDS = ("metrics", "params", "tags")
MAX_CSV_RUNS = 10_000  # runs in a CSV download (the SDK's search_runs has no bound)
# The runs table's choice of runs, as the SDK and CLI (--view) name them.
VIEWS = {"active": ViewType.ACTIVE_ONLY, "deleted": ViewType.DELETED_ONLY, "all": ViewType.ALL}
CSV_PAGE = 1000  # runs asked for per call while building one


def experiments(request: Request) -> Response:
    query, filter_string = name_search(request)
    page = client(request).search_experiments(
        filter_string=filter_string,
        max_results=PAGE,
        page_token=request.query_params.get("page_token") or None,
        order_by=["last_update_time DESC"],
    )
    return render(
        request,
        "experiments.html",
        experiments=list(page),
        pages=pager(request, "/experiments", {"q": query}, page.token),
        q=query,
    )


@dataclass
class Row:
    run: Run
    depth: int = 0
    children: list[Run] = field(default_factory=list)


def group_nested(runs: list[Run]) -> list[Row]:
    """Each run's children right below it (for children whose parent is on this page)."""
    on_page = {r.info.run_id for r in runs}
    children: dict[str, list[Run]] = {}
    for run in runs:
        parent = run.info.parent_run_id
        if parent and parent in on_page:
            children.setdefault(parent, []).append(run)
    rows: list[Row] = []

    def add(run: Run, depth: int) -> None:
        kids = children.get(run.info.run_id, [])
        rows.append(Row(run, depth, kids))
        for child in kids:
            add(child, depth + 1)

    for run in runs:
        if not (run.info.parent_run_id and run.info.parent_run_id in on_page):
            add(run, 0)
    return rows


def parse_columns(text: str) -> list[tuple[str, str]]:
    """'metrics.rmse, params.alpha' -> [("metrics", "rmse"), ("params", "alpha")]."""
    columns = []
    for item in text.split(","):
        kind, _, key = item.strip().partition(".")
        if kind in COLUMN_KINDS and key:
            columns.append((kind, key))
    return columns


def auto_columns(runs: list[Run]) -> list[tuple[str, str]]:
    metrics: list[str] = []
    params: list[str] = []
    for run in runs:
        metrics += [k for k in run.data.metrics if k not in metrics]
        params += [k for k in run.data.params if k not in params]
    return [("metrics", k) for k in metrics[:AUTO_COLUMNS]] + [
        ("params", k) for k in params[:AUTO_COLUMNS]
    ]


def filter_and_order(request: Request) -> tuple[str, str, str]:
    """The runs table's `filter`, `order` (one column, maybe with ASC/DESC) and `view` (which
    runs: active, deleted or all)."""
    filter_string = query_text(request, "filter", MAX_FILTER, "the filter", FILTER_ADVICE)
    order = query_text(
        request, "order", MAX_ORDER, "the sort order", "sort by one column, from its heading"
    )
    view = request.query_params.get("view") or "active"
    if view not in VIEWS:
        raise InvalidArgument(
            f"view {view[:20]!r} is not one of {', '.join(VIEWS)}; pick one in the list",
            field="view",
        )
    return filter_string, order, view


def experiment(request: Request) -> Response:
    eid = request.path_params["experiment_id"]
    c = client(request)
    exp = c.get_experiment(eid)
    params = request.query_params
    filter_string, order, view = filter_and_order(request)
    chosen_text = query_text(
        request, "columns", MAX_COLUMNS_TEXT, "the columns list", "choose fewer or shorter columns"
    )
    chosen = parse_columns(chosen_text)
    if len(chosen) > MAX_COLUMNS:
        raise InvalidArgument(
            f"{len(chosen)} columns were chosen; show at most {MAX_COLUMNS}", field="columns"
        )
    error = ""
    runs: list[Run] = []
    next_token = None
    try:
        page = c.search_runs(
            [eid],
            filter_string=filter_string,
            max_results=PAGE,
            order_by=[order] if order else None,
            page_token=params.get("page_token") or None,
            run_view_type=VIEWS[view],
        )
        runs, next_token = list(page), page.token
    except InvalidArgument as exc:
        error = said(request, exc)  # a filter typo: show it next to the box, keep the page
    columns = chosen or auto_columns(runs)

    # which runs, in which order: what the table's links and its CSV download keep
    selection = {"filter": filter_string, "order": order, "view": "" if view == "active" else view}

    def link(**changes: str) -> str:
        query = {**selection, "columns": chosen_text, **changes}
        return f"/experiments/{eid}?" + urlencode({k: v for k, v in query.items() if v})

    def sort_link(column: str) -> str:
        """The link sorting by `column`, or "" if its order is too long for one (a 250-character
        CJK key): the page would refuse it."""
        descending = order == f"{column} DESC"
        changed = f"{column} {'ASC' if descending else 'DESC'}"
        if encoded_length(changed) > MAX_ORDER:
            return ""
        return link(order=changed, page_token="")

    def sort_key_link(kind: str, key: str) -> str:
        # Back-quoted: keys may hold spaces, dashes, colons and slashes, never a back-quote.
        return sort_link(f"{kind}.`{key}`")

    return render(
        request,
        "experiment.html",
        experiment=exp,
        rows=group_nested(runs),
        columns=columns,
        filter=filter_string,
        order=order,
        view=view,
        views=list(VIEWS),
        chosen=chosen_text,
        error=error,
        pages=pager(
            request,
            f"/experiments/{eid}",
            {**selection, "columns": chosen_text},
            next_token,
        ),
        csv_link=f"/experiments/{eid}/runs.csv?"
        + urlencode({k: v for k, v in selection.items() if v}),
        max_csv_runs=MAX_CSV_RUNS,
        sort_link=sort_link,
        sort_key_link=sort_key_link,
    )


def runs_csv(request: Request) -> Response:
    """The runs the table's filter selects, in its order, as CSV (the SDK's search_runs frame):
    every page of them, up to MAX_CSV_RUNS."""
    eid = request.path_params["experiment_id"]
    c = client(request)
    exp = c.get_experiment(eid)  # a missing or forbidden experiment is its error page
    filter_string, order, view = filter_and_order(request)
    runs: list[Run] = []
    token: str | None = None
    while len(runs) < MAX_CSV_RUNS:
        page = c.search_runs(
            [eid],
            filter_string=filter_string,
            max_results=min(CSV_PAGE, MAX_CSV_RUNS - len(runs)),
            order_by=[order] if order else None,
            page_token=token,
            run_view_type=VIEWS[view],
        )
        runs += page
        token = page.token
        if not token:
            break
    frame = runs_to_frame(runs)
    for column in frame.select_dtypes(include=["object", "string"]).columns:
        frame[column] = frame[column].map(spreadsheet_text)
    return Response(
        frame.to_csv(index=False),
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": attachment(f"{exp.name}-runs.csv")},
    )


# What a spreadsheet takes for a formula at the start of a cell (OWASP's CSV injection list).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_text(value: object) -> object:
    """A text cell that a spreadsheet would run as a formula (a param "=HYPERLINK(...)"),
    quoted as text with a leading apostrophe; numbers stay as they are ("-0.5")."""
    if not isinstance(value, str) or not value.startswith(_FORMULA_START):
        return value
    try:
        float(value)
    except ValueError:
        return "'" + value
    return value


ROUTES = [
    Route("/experiments", experiments),
    Route("/experiments/{experiment_id}", experiment),
    Route("/experiments/{experiment_id}/runs.csv", runs_csv),
]
