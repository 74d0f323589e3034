"""A run: overview, metric charts, datasets and lineage, and its artifacts (browse, preview,
download)."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote, urlencode

from starlette.concurrency import iterate_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from modelyard.client import Client
from modelyard.entities.common import FileInfo
from modelyard.entities.tracking import Run, SystemTag
from modelyard.errors import InvalidArgument, ModelyardError, NotFound
from modelyard.services.common.pagination import digest_named, path_position
from modelyard.services.ui import charts, monitoring, previews
from modelyard.services.ui.web import client, pager, render, ui_of

# An HTML artifact shown inline: this policy replaces the page's, so it must forbid on its own
# what the sandbox does not (loading scripts, frames, fonts or beacons from anywhere).
HTML_PREVIEW_CSP = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
MAX_CHILDREN = 50  # nested runs linked from the run's lineage
MAX_REGISTERED = 50  # model versions registered from the run, listed in its lineage at a time
FILES_PAGE = 100  # artifact entries listed at a time, on the run page and in the browser
# Characters of an artifact's path, percent-encoded, that its links carry as it is: a longer one
# (1000 CJK characters are 9 KB) goes as its first bytes and a digest (path_query). ASCII paths
# (at most 1024 characters) mostly fit.
MAX_PATH_LINK = 2000
RESOLVE_PAGE = 10_000  # entries read at a time while finding a digest's path


def metric_charts(c: Client, keys: list[str], run: Run) -> list[dict[str, Any]]:
    return [
        charts.metric_chart(
            key,
            [
                charts.metric_series(
                    key, c.sample_metric_history(run.info.run_id, key, charts.MAX_POINTS)
                )
            ],
        )
        for key in keys
    ]


def datasets(run: Run) -> list[dict[str, Any]]:
    out = []
    for item in run.inputs.dataset_inputs:
        d = item.dataset
        rows = monitoring.profile_of(d.profile).get("num_rows")
        out.append(
            {
                "name": d.name,
                "digest": d.digest,
                "source_type": d.source_type,
                "source": d.source,
                "rows": rows,
                "context": item.context,
            }
        )
    return out


def run_page(request: Request) -> Response:
    rid = request.path_params["run_id"]
    c = client(request)
    run = c.get_run(rid)
    experiment = c.get_experiment(run.info.experiment_id)
    parent = c.get_run(run.info.parent_run_id) if run.info.parent_run_id else None
    of_parent = f"attributes.parent_run_id = '{rid}'"
    children = c.search_runs(
        [run.info.experiment_id], filter_string=of_parent, max_results=MAX_CHILDREN
    )
    # a sweep's trials may be hundreds: the rest are in the runs table, filtered to them
    all_children = (
        f"/experiments/{run.info.experiment_id}?{urlencode({'filter': of_parent})}"
        if children.token
        else ""
    )
    # a run's model may be registered under many names (or again and again): a page at a time
    try:
        versions = c.search_model_versions(
            filter_string=f"run_id = '{rid}'",
            max_results=MAX_REGISTERED,
            page_token=request.query_params.get("registered_token") or None,
        )
    except InvalidArgument as exc:  # named the API's page_token, not this page's parameter
        if exc.field != "page_token":
            raise
        raise InvalidArgument(
            "registered_token is not one this page's links carry; open the run page again "
            f"(/runs/{rid}) and follow its registration links",
            field="registered_token",
        ) from None
    charted, uncharted = charts.charted_keys(run.data.metrics)
    # a run may log thousands of files (checkpoints, per-step plots): a page of them at a time
    artifacts = c.list_artifacts_page(rid, max_results=FILES_PAGE)
    return render(
        request,
        "run.html",
        run=run,
        experiment=experiment,
        parent=parent,
        children=list(children),
        all_children=all_children,
        versions=list(versions),
        registered_pages=pager(
            request,
            f"/runs/{rid}",
            {},
            versions.token,
            token_param="registered_token",
            back_param="registered_back",
            fragment="lineage",
        ),
        datasets=datasets(run),
        metrics=sorted(run.data.latest_metrics, key=lambda m: m.key),
        charts=metric_charts(c, charted, run),
        uncharted=uncharted,
        artifacts=artifacts,
        more_artifacts=_files_link(rid, "", artifacts.token),
        path_query=path_query,
        automl=run.data.tags.get("modelyard.automl.role") == "parent",
        description=run.data.tags.get(SystemTag.NOTE, ""),
        # MLflow's system tags repeat what the page shows already (name, user, parent, source)
        tags={k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.")},
    )


def _safe_path(path: str) -> str:
    parts = PurePosixPath(path).parts
    if path.startswith("/") or ".." in parts:
        raise InvalidArgument("artifact paths are relative, without '..'", field="path")
    return path


def _head(chunks: Iterator[bytes], limit: int) -> bytes:
    """The first `limit` bytes; none are read when `limit` is 0."""
    data = bytearray()
    for chunk in chunks if limit > 0 else ():
        data.extend(chunk)
        if len(data) >= limit:
            break
    del data[limit:]
    return bytes(data)


def path_params(path: str, is_dir: bool = False) -> dict[str, str]:
    """How the artifact pages' links name `path`: as it is, or past MAX_PATH_LINK once
    encoded, by its first bytes and the digest of the whole (a directory's with a '/' after
    it), which wanted_path finds again; so every link fits nginx's default request line."""
    if len(quote(path, safe="")) <= MAX_PATH_LINK:
        return {"path": path}
    position = path_position(f"{path}/" if is_dir else path)
    assert isinstance(position, dict)  # longer than path_position keeps whole
    return {"path": position["cut"], "sha": position["sha"]}


def path_query(path: str, is_dir: bool = False) -> str:
    return urlencode(path_params(path, is_dir))


def wanted_path(request: Request, c: Client, rid: str) -> str:
    """The artifact a page's `path` (and `sha`, for a long one: path_params) names."""
    path = _safe_path(request.query_params.get("path", ""))
    sha = request.query_params.get("sha", "")
    if not sha:
        return path
    # its stored paths from the deepest directory `path` names whole, in order, to the digest's
    directory = path.rpartition("/")[0]
    token = None
    while True:
        page = c.list_artifacts_page(
            rid, directory or None, max_results=RESOLVE_PAGE, page_token=token, recursive=True
        )
        for f in page:
            named = digest_named(f.path, path, sha) if f.path.startswith(path) else None
            if named:
                return named.removesuffix("/")
            if f.path > path and not f.path.startswith(path):
                token = None
                break
        else:
            token = page.token
        if not token:
            raise NotFound(
                f"run {rid} has no artifact this link names (sha {sha[:32]!r}): it was deleted "
                f"or the link was cut; browse to it from the run's artifacts (/runs/{rid})",
                resource_type="artifact",
                resource_name=path,
            )


def _files_link(rid: str, path: str, token: str | None) -> str:
    """The artifacts browser's page from `token` on ("" when there is no next page), whose
    page before is the first (`back`, as web.pager reads it)."""
    if not token:
        return ""
    query = {**path_params(path, is_dir=True), "page_token": token, "back": ""}
    return f"/runs/{rid}/artifacts?{urlencode(query)}"


def artifacts_page(request: Request) -> Response:
    rid = request.path_params["run_id"]
    page_token = request.query_params.get("page_token") or None
    c = client(request)
    path = wanted_path(request, c, rid)
    run = c.get_run(rid)
    page = c.list_artifacts_page(rid, path or None, max_results=FILES_PAGE, page_token=page_token)
    listing: list[FileInfo] = list(page)
    is_file = len(listing) == 1 and listing[0].path == path and not listing[0].is_dir
    preview = None
    info = None
    if path and (is_file or not listing):
        # the page's own call timeout for the whole read: the head is at most PARQUET_BYTES
        info, chunks = c.open_artifact(rid, path, timeout=ui_of(request).transport.timeout)
        with contextlib.closing(chunks):  # the rest is not read: the stream ends here
            if not info.is_dir:
                size = info.file_size or 0
                head = _head(chunks, previews.read_limit(path, size))
                preview = previews.build(path, head, max(size, len(head)))
        listing = []
    parent = str(PurePosixPath(path).parent) if path else None
    return render(
        request,
        "artifacts.html",
        run=run,
        path=path,
        parent="" if parent == "." else parent,
        listing=listing,
        pages=pager(
            request,
            f"/runs/{rid}/artifacts",
            path_params(path, is_dir=True),
            page.token if listing else None,
        ),
        path_query=path_query,
        info=info,
        preview=preview,
        preview_kib=previews.PREVIEW_BYTES // 1024,
        page_size=FILES_PAGE,
    )


def attachment(name: str) -> str:
    """A Content-Disposition that downloads as `name`: in UTF-8 (RFC 6266's filename*), with an
    ASCII fallback for old clients. Control characters go: CR/LF would end the header."""
    name = "".join(ch for ch in name if ch.isprintable()) or "download"
    fallback = re.sub(r'[^\x20-\x7e]|["\\]', "_", name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


class DownloadCut(Exception):
    """A download whose stream failed after its response began; raised through the server
    (not one of the error pages' types, too late for a page) so that it cuts the connection."""


def artifact_raw(request: Request) -> Response:
    """The file's bytes. Only raster images are shown inline; HTML is sandboxed (no scripts, no
    access to this origin, nothing loaded from elsewhere); everything else downloads."""
    rid = request.path_params["run_id"]
    path = wanted_path(request, client(request), rid)
    # A download may take hours: no deadline on the whole, but a service that sends nothing
    # for a page's call timeout has stalled, and the download fails rather than hang.
    stall = ui_of(request).transport.timeout
    info, chunks = client(request).open_artifact(rid, path, timeout=None, idle_timeout=stall)
    suffix = PurePosixPath(path).suffix.lower()
    headers = {"content-disposition": attachment(PurePosixPath(path).name)}
    media = "application/octet-stream"
    if suffix in previews.IMAGE_TYPES:
        media, headers = previews.IMAGE_TYPES[suffix], {"content-disposition": "inline"}
    elif suffix in (".html", ".htm") and request.query_params.get("inline"):
        media = "text/html; charset=utf-8"
        headers = {"content-disposition": "inline", "content-security-policy": HTML_PREVIEW_CSP}
    if info.file_size:
        headers["content-length"] = str(info.file_size)

    def guarded() -> Iterator[bytes]:
        """The bytes, or, if the stream fails once the response has begun, a cut connection:
        the browser then reports a failed download. Ending the body instead would pass a short
        file for the whole where the size was not declared, and made uvicorn log only a
        Content-Length error that did not say what went wrong."""
        try:
            yield from chunks
        except ModelyardError as exc:
            raise DownloadCut(f"download of {path!r} from run {rid} cut short: {exc}") from None

    return StreamingResponse(iterate_in_threadpool(guarded()), media_type=media, headers=headers)


ROUTES = [
    Route("/runs/{run_id}", run_page),
    Route("/runs/{run_id}/artifacts", artifacts_page),
    Route("/runs/{run_id}/artifact", artifact_raw),
]
