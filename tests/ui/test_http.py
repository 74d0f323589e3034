"""The UI over plain HTTP: the headers, names and odd requests a browser would not show."""

from __future__ import annotations

import csv
import html
import io
import re
import threading
import time
import tracemalloc
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, unquote, urlencode

import pytest
import urllib3
from prometheus_client import REGISTRY

from modelyard import Client
from modelyard.entities import PermissionLevel
from modelyard.entities.serving import InferenceLogConfig, ServedModel
from modelyard.entities.tracking import Dataset, DatasetInput, InputTag, Metric, SystemTag
from modelyard.errors import FailedPrecondition
from modelyard.features import FeatureStoreClient
from modelyard.services.common.auth import tokens
from modelyard.services.common.server import ModelyardServer
from modelyard.services.common.settings import AuthSettings, Settings
from modelyard.services.ui import charts, previews
from modelyard.services.ui import web as web_module
from modelyard.services.ui.pages import automl, experiments, models, runs
from modelyard.services.ui.web import CSP
from tests import silent_peer
from tests.conftest import failed_registration, free_port, running_server
from tests.features.repo import NOW, make_repo
from tests.ui.http import WebSession, serving_ui

NGINX_REQUEST_LINE = 8 * 1024  # bytes: large_client_header_buffers' default buffer


@pytest.fixture
def web(settings: Settings, server: ModelyardServer) -> Iterator[WebSession]:
    """A cookie jar on a UI (auth off) over started services."""
    with serving_ui(settings, server.address) as url:
        yield WebSession(url)


def test_pages_answer_only_to_the_uis_own_host_names(
    settings: Settings, server: ModelyardServer, web: WebSession
) -> None:
    """A page fetched under another name (DNS rebinding: an attacker's name that resolves to
    127.0.0.1) is refused, so the attacker's page cannot read it or post its forms."""
    port = web.url.rsplit(":", 1)[1]
    rebound = {"Host": f"attacker.example:{port}"}
    refused = web.get("/experiments", rebound)
    assert refused.status == 400
    said = refused.data.decode()  # what to do, for whoever put the UI behind a new name
    assert "'attacker.example'" in said and "MODELYARD_UI__ALLOWED_HOSTS" in said
    assert web.request("POST", "/logout", {"csrf": "x"}, rebound).status == 400
    for host in ("127.0.0.1", "localhost", "[::1]"):
        assert web.get("/experiments", {"Host": f"{host}:{port}"}).status == 200, host
    settings.ui.allowed_hosts = ["modelyard.corp.example"]  # e.g. an ingress's host
    with serving_ui(settings, server.address) as url:
        named = WebSession(url)
        assert named.get("/experiments", {"Host": "modelyard.corp.example"}).status == 200
        assert named.get("/experiments", {"Host": "attacker.example"}).status == 400


@pytest.fixture
def run_id(server: ModelyardServer) -> str:
    with Client(server.address) as c:
        return c.create_run("0").info.run_id


def test_html_artifacts_shown_inline_load_nothing_from_elsewhere(
    server: ModelyardServer, web: WebSession, run_id: str
) -> None:
    """The artifact's Content-Security-Policy replaces the page's: a sandbox alone would let the
    HTML load scripts' look-alikes, images and styles from any site (tracking its viewers)."""
    with Client(server.address) as c:
        c.log_text(run_id, '<img src="https://tracker.example/p.gif">', "report.html")
    response = web.get(f"/runs/{run_id}/artifact?path=report.html&inline=1")
    assert response.status == 200
    policy = [p.strip() for p in response.headers["content-security-policy"].split(";")]
    assert policy == ["sandbox", "default-src 'none'", "img-src data:", "style-src 'unsafe-inline'"]


@pytest.mark.parametrize(
    ("name", "fallback", "utf8"),
    [
        ("模型.txt", "__.txt", "%E6%A8%A1%E5%9E%8B.txt"),
        ("résumé.txt", "r_sum_.txt", "r%C3%A9sum%C3%A9.txt"),
        ("a\r\nSet-Cookie: x=1.txt", "aSet-Cookie: x=1.txt", "aSet-Cookie%3A%20x%3D1.txt"),
        ('q"uote;x.txt', "q_uote;x.txt", "q%22uote%3Bx.txt"),
    ],
)
def test_downloads_keep_any_file_name(
    server: ModelyardServer, web: WebSession, run_id: str, name: str, fallback: str, utf8: str
) -> None:
    """Non-Latin-1 names made a 500, and CR/LF in a name cut the connection."""
    with Client(server.address) as c:
        c.log_text(run_id, "data", name)
    response = web.get(f"/runs/{run_id}/artifact?path={quote(name)}")
    assert response.status == 200 and response.data == b"data"
    assert response.headers["content-disposition"] == (
        f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{utf8}"
    )
    assert not [c for c in web.set_cookies if c.startswith("x=")]


@pytest.fixture
def model(server: ModelyardServer, run_id: str) -> str:
    """A registered model "plain" with version 1."""
    with Client(server.address) as c:
        c.log_text(run_id, "m", "model/MLmodel")
        c.create_model_version("plain", f"runs:/{run_id}/model")
    return "plain"


def test_a_model_action_with_an_extra_form_field(web: WebSession, model: str) -> None:
    """A form field named like the message's own `name` made a 500 after the change was saved."""
    fields = {"alias": "champion", "version": "1", "name": "other"}
    response = web.post(f"/models/{model}/alias", {"csrf": web.csrf(f"/models/{model}"), **fields})
    assert response.status == 303
    page = web.get(response.headers["location"]).data.decode()
    assert "Alias champion now points to version 1." in page


def test_out_of_range_versions_and_long_searches_are_not_server_errors(
    web: WebSession, model: str
) -> None:
    """A version past int64 could not be asked for, and SQLite fails LIKE patterns over 50,000
    bytes: both were 500s."""
    response = web.get(f"/models/{model}/versions/{10**22}")
    assert response.status == 404
    assert "has no version" in response.data.decode()
    for path in ("/experiments", "/models"):
        response = web.get(f"{path}?q={'a' * 50_010}")
        assert response.status == 400, path
        assert "(`q`) takes 50010 characters in a link" in response.data.decode()
        assert web.get(f"{path}?q={'a' * 1000}").status == 200


def test_runs_table_links_stay_bounded_whatever_the_url(web: WebSession, run_id: str) -> None:
    """Every column's sort link carried the whole columns list and filter again: a 41 KB URL of
    3,000 columns made a 134 MiB page (15 s, +600 MB in the UI). Both are bounded now."""
    columns = ",".join(f"metrics.m{i}" for i in range(51))
    response = web.get(f"/experiments/0?columns={columns}")
    assert response.status == 400
    assert "51 columns were chosen; show at most 50" in response.data.decode()
    for name in ("filter", "columns"):
        response = web.get(f"/experiments/0?{name}={'a' * 3001}")
        assert response.status == 400, name
        assert "takes 3001 characters in a link" in response.data.decode()
    # the most a page may be asked for: 50 columns of long keys, and the longest filter
    longest = ",".join(f"metrics.{'k' * 27}{i:02}" for i in range(50))
    text = quote(f"attributes.run_name != '{'x' * 1960}'")
    response = web.get(f"/experiments/0?columns={quote(longest)}&filter={text}")
    assert response.status == 200
    assert len(response.data) < 1_000_000


def filled(prefix: str, filler: str, suffix: str, limit: int) -> str:
    """`prefix`, as many `filler`s as fit, `suffix`: at most `limit` characters URL-encoded."""
    n = 0
    while web_module.encoded_length(prefix + filler * (n + 1) + suffix) <= limit:
        n += 1
    return prefix + filler * n + suffix


@pytest.mark.parametrize("filler", ["模", "<>&%#+=?/;"], ids=["cjk", "punctuation"])
def test_search_text_is_bounded_as_links_carry_it(
    server: ModelyardServer,
    web: WebSession,
    monkeypatch: pytest.MonkeyPatch,
    filler: str,
) -> None:
    """The runs table's `filter`, `columns` and `order`, and the lists' `q`, were bounded in
    characters, not as links carry them: 2000 CJK characters are 18 KB percent-encoded, past
    nginx's default 8 KB request line, so each of the table's links broke behind the default
    ingress. Longer text is refused naming its parameter and what to do; at the bounds, every
    link of a page deep in the listing fits MAX_LINK."""
    monkeypatch.setattr(experiments, "PAGE", 1)
    with Client(server.address) as c:
        eid = c.create_experiment("bounded links")
        for i in range(3):
            rid = c.create_run(eid, run_name=f"run-{i}").info.run_id
            c.set_tag(rid, "note", "模" * 200 + str(i))  # a long sort value: the longest tokens
    over = {
        "filter": f"attributes.run_name != '{filler * 700}'",
        "columns": f"metrics.{filler * 500}",
        "order": f"tags.`{filler * 200}` DESC",
    }
    for name, text in over.items():
        response = web.get(f"/experiments/{eid}?" + urlencode({name: text}))
        page = html.unescape(response.data.decode())
        assert response.status == 400, name
        assert f"(`{name}`) takes" in page and "once URL-encoded" in page, name
    refused = web.get(f"/experiments/{eid}?filter=" + quote(over["filter"])).data.decode()
    assert "search_runs" in html.unescape(refused)
    for path in ("/experiments", "/models"):
        response = web.get(f"{path}?" + urlencode({"q": filler * 1000}))
        assert response.status == 400, path
        assert "search for a shorter part of the name" in response.data.decode()

    longest = {
        "filter": filled("attributes.run_name != '", filler, "'", experiments.MAX_FILTER),
        "columns": filled("metrics.", filler, "", experiments.MAX_COLUMNS_TEXT),
        "order": "tags.note ASC",
    }
    link: str | None = f"/experiments/{eid}?" + urlencode(longest)
    seen = 0
    while link:
        assert len(link) <= web_module.MAX_LINK, link
        page = web.get(link).data.decode()
        assert "run-" in page, page
        links = [html.unescape(href) for href in re.findall(r'href="([^"]+)"', page)]
        assert all(len(f"GET {ln} HTTP/1.1") <= web_module.MAX_LINK for ln in links)
        link, seen = web.link(page, "next-page"), seen + 1
    assert seen == 3
    for path in ("/experiments", "/models"):
        q = filled("", filler, "", web_module.MAX_SEARCH)
        assert web.get(f"{path}?" + urlencode({"q": q})).status == 200, path


def test_artifact_links_of_long_paths_fit_a_request_line(
    server: ModelyardServer, web: WebSession, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The artifact browser carried a path whole in its links, and the listing's token carried
    the last one again: a 900-character CJK path made links of 8 KB and more, so they broke
    behind nginx's default request line. A long path goes as its first bytes and a digest that
    the UI finds again; each link fits MAX_LINK, and leads where it did. The version page's
    file pages too."""
    deep = "/".join(["模" * 80] * 10)  # names are at most 255 bytes: long paths are deep
    names = [f"{deep}/{'型' * 80}{i}.txt" for i in range(3)]
    with Client(server.address) as c:
        for name in names:
            c.log_text(run_id, f"text {name[-5:]}", f"model/{name}")
        c.log_text(run_id, "m", "model/MLmodel")
        c.create_model_version("long paths", f"runs:/{run_id}/model")

    def links(page: str) -> list[str]:
        found = [html.unescape(h) for h in re.findall(r'(?:href|src)="([^"]+)"', page)]
        assert all(len(f"GET {h} HTTP/1.1") <= web_module.MAX_LINK for h in found), page
        return found

    def opened(link: str | None) -> str:
        assert link, link
        response = web.get(link)
        assert response.status == 200, (link, response.data.decode())
        page = response.data.decode()
        links(page)
        return page

    def entries(page: str) -> list[tuple[str, str]]:
        """(link, name) of each entry the listing shows."""
        listing = re.search(r'data-testid="listing">(.*?)</ul>', page, re.S)
        assert listing, page
        found = re.findall(r'<li><a href="([^"]+)">([^<]+)</a>', listing.group(1))
        return [(html.unescape(h), html.unescape(n)) for h, n in found]

    link = next(h for h in links(opened(f"/runs/{run_id}")) if "artifacts?" in h)
    while into := [h for h, name in entries(opened(link)) if name.endswith("/")]:
        link = into[0]  # down the long directory, to the one that holds the files
    assert "sha=" in link
    monkeypatch.setattr(runs, "FILES_PAGE", 1)  # a page of each file, and a token after it
    page = opened(link)
    shown: list[str] = []
    while True:
        [(entry, _)] = entries(page)
        download = next(h for h in links(opened(entry)) if "/artifact?" in h)
        shown.append(web.get(download).data.decode())
        more = web.link(page, "more-files")
        if not more:
            break
        page = opened(more)
    assert shown == [f"text {n[-5:]}" for n in names]
    cut = re.search(r"sha=[^&]+", link)
    assert cut and web.get(link.replace(cut.group(0), "sha=" + "A" * 22)).status == 404

    version = opened("/models/long%20paths/versions/1")
    while more := web.link(version, "more-files"):
        version = opened(more)


def test_previews_read_nothing_of_files_they_will_not_show(
    web: WebSession, run_id: str, server: ModelyardServer, tmp_path, monkeypatch
) -> None:
    """A Parquet file over PARQUET_BYTES was read up to that limit (64 MiB, then copied) only
    to be refused: eight previews at once of a 200 MB one took the UI from 366 to 989 MB."""
    monkeypatch.setattr(previews, "PARQUET_BYTES", 16 * 2**20)
    big = tmp_path / "big.parquet"
    big.write_bytes(b"\0" * (20 * 2**20))
    with Client(server.address) as c:
        c.log_artifact(run_id, big)
    tracemalloc.start()
    try:
        response = web.get(f"/runs/{run_id}/artifacts?path=big.parquet")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert response.status == 200
    assert "Parquet file too large to preview" in response.data.decode()
    assert peak < 8 * 2**20, f"{peak / 2**20:.1f} MiB"


def test_a_page_that_fails_unexpectedly_keeps_the_security_headers(
    web: WebSession, run_id: str, server: ModelyardServer, monkeypatch
) -> None:
    """Starlette sent the 500 page from outside every middleware: no Content-Security-Policy,
    no X-Frame-Options, and cacheable, though it shows the user and the logout's CSRF token."""
    with Client(server.address) as c:
        c.log_text(run_id, "text", "notes.txt")

    def fail(*args: object) -> None:
        raise RuntimeError("a bug in a preview")

    monkeypatch.setattr(previews, "build", fail)
    response = web.get(f"/runs/{run_id}/artifacts?path=notes.txt")
    assert response.status == 500
    page = response.data.decode()
    assert "Something went wrong" in page and "a bug in a preview" not in page
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-frame-options"] == "SAMEORIGIN"
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("2020-13-01 00:00:00", "month must be in 1..12"),
        ("!!int 0x", "invalid literal for int()"),
        ("!!float abc", "could not convert string to float"),
    ],
)
def test_a_manifest_with_a_value_yaml_cannot_read_is_shown_as_text(
    web: WebSession, run_id: str, server: ModelyardServer, value: str, reason: str
) -> None:
    """YAML's constructors raise ValueError for a date or number they cannot build: the
    artifact page of such an MLmodel was a 500."""
    with Client(server.address) as c:
        c.log_text(run_id, f"flavors: {{python_function: {{}}}}\ncreated: {value}\n", "m/MLmodel")
    response = web.get(f"/runs/{run_id}/artifacts?path=m/MLmodel")
    assert response.status == 200
    page = response.data.decode()
    assert "It has a value YAML cannot read" in page and reason in page
    assert "python_function" in page  # the text itself


def test_every_version_of_a_model_is_reachable_from_its_page(
    web: WebSession, model: str, server: ModelyardServer, run_id: str
) -> None:
    """The model page showed the newest 200 versions and nothing of the others, not even that
    there were more."""
    with Client(server.address) as c:
        for _ in range(200):
            c.create_model_version(model, f"runs:/{run_id}/model", await_creation_for=0)
    seen: list[int] = []
    path: str | None = f"/models/{model}"
    while path is not None:
        response = web.get(path)
        assert response.status == 200
        page = response.data.decode()
        seen += [int(v) for v in re.findall(r">Version (\d+)</a>", page)]
        older = re.search(r'<a href="([^"]+)" class="next" data-testid="older-versions">', page)
        path = html.unescape(older.group(1)) if older else None
    assert seen == list(range(201, 0, -1))
    assert "Newest versions" in page
    newer = re.search(r'<a href="([^"]+)" class="previous" data-testid="previous-page">', page)
    assert newer, page  # back a page: the versions before the oldest
    page = web.get(html.unescape(newer.group(1))).data.decode()
    assert [int(v) for v in re.findall(r">Version (\d+)</a>", page)] == list(range(101, 1, -1))


@pytest.fixture
def silent_port() -> Iterator[int]:
    with silent_peer.silent_port() as port:
        yield port


def test_a_hung_service_fails_pages_with_504_naming_it(
    settings: Settings, silent_port: int
) -> None:
    """Each page waited for a hung service (port open, no answer) until gRPC gave up on the
    connection, ~23 s, then blamed a missing server. Each call now waits ui.call_timeout."""
    settings.ui.call_timeout = 0.5
    with serving_ui(settings, f"127.0.0.1:{silent_port}") as url:
        web = WebSession(url)
        for path in ("/experiments", "/experiments/0", "/models"):
            response = web.get(path)
            assert response.status == 504, path
            page = html.unescape(response.data.decode())
            assert "A service did not answer" in page
            assert f"service at 127.0.0.1:{silent_port} did not answer within 0.5 s" in page
            assert "MODELYARD_UI__CALL_TIMEOUT" in page and "kubectl logs" in page


def test_services_that_are_not_there_get_the_uis_own_advice(settings: Settings) -> None:
    """The page repeated the SDK's advice (set MODELYARD_URI), which the UI does not read."""
    with serving_ui(settings, f"127.0.0.1:{free_port()}") as url:
        response = WebSession(url).get("/experiments")
    assert response.status == 503
    page = html.unescape(response.data.decode())
    assert "No Modelyard services answered at 127.0.0.1:" in page
    assert "modelyard ui --uri HOST:PORT" in page and "MODELYARD_UI__SERVICES_URI" in page
    assert "MODELYARD_URI" not in page


def test_error_pages_name_pages_not_api_methods(web: WebSession, run_id: str) -> None:
    """A missing experiment said "list experiments with SearchExperiments": an API method,
    which a UI user has no way to call."""
    said = {
        "/experiments/987654": "list experiments with the Experiments page",
        "/runs/0123456789abcdef0123456789abcdef": "search runs with the experiment's runs table",
        f"/runs/{run_id}/artifacts?path=nope.txt": "list its files with the run's Artifacts page",
        "/endpoints/nope": "list endpoints with the Endpoints page",
        "/models/nope": "list models with the Models page",
    }
    for path, advice in said.items():
        response = web.get(path)
        assert response.status == 404, path
        page = html.unescape(response.data.decode())
        assert advice in page, path
        assert not re.search(r"\b(Search|List)[A-Z][a-z]+", page), path


def test_columns_whose_keys_have_spaces_or_dashes_sort(
    web: WebSession, server: ModelyardServer
) -> None:
    """A column header's sort link wrote `metrics.val-acc DESC`, which the order grammar
    refuses: the table came back unsorted under an order_by error."""
    with Client(server.address) as c:
        eid = c.create_experiment("keys")
        for i, name in enumerate(["low", "mid", "high"]):
            rid = c.create_run(eid, run_name=name).info.run_id
            c.log_metric(rid, "val-acc", i)
            c.log_param(rid, "max depth", str(i))
    page = web.get(f"/experiments/{eid}").data.decode()
    for label in ("metric val-acc", "param max depth"):
        link = re.search(rf'<a href="([^"]+)" class="col-\w+">{label}</a>', page)
        assert link, label
        order = []
        for _ in range(2):  # descending, then ascending
            response = web.get(html.unescape(link.group(1)))
            assert response.status == 200
            sorted_page = response.data.decode()
            assert 'data-testid="filter-error"' not in sorted_page, label
            order.append(re.findall(r'<a href="/runs/\w+">(\w+)</a>', sorted_page))
            link = re.search(rf'<a href="([^"]+)" class="col-\w+">{label}</a>', sorted_page)
            assert link, label
        assert order == [["high", "mid", "low"], ["low", "mid", "high"]], label


def test_runs_download_as_csv_with_the_tables_filter_and_order(
    web: WebSession, server: ModelyardServer, monkeypatch
) -> None:
    """The runs table had no download; MLflow's has one. Every page of the filtered runs comes,
    in the table's order, and text a spreadsheet would run as a formula stays text."""
    monkeypatch.setattr(experiments, "CSV_PAGE", 2)  # several pages from few runs
    with Client(server.address) as c:
        eid = c.create_experiment("csv <export>")
        for i in range(6):
            rid = c.create_run(eid, run_name=f"run-{i}").info.run_id
            c.log_metric(rid, "loss", -0.5 * i)
            c.log_param(rid, "note", '=HYPERLINK("http://evil.example","x")' if i == 4 else "-1")
    page = web.get(f"/experiments/{eid}?filter=metrics.loss+<+-0.6&order=metrics.loss+ASC")
    link = re.search(r'<a href="([^"]+)" data-testid="runs-csv"', page.data.decode())
    assert link
    response = web.get(html.unescape(link.group(1)))
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "csv <export>-runs.csv" in unquote(response.headers["content-disposition"])
    rows = list(csv.DictReader(io.StringIO(response.data.decode())))
    assert [r["tags.mlflow.runName"] for r in rows] == ["run-5", "run-4", "run-3", "run-2"]
    assert [float(r["metrics.loss"]) for r in rows] == [-2.5, -2.0, -1.5, -1.0]
    assert rows[1]["params.note"] == '\'=HYPERLINK("http://evil.example","x")'
    assert rows[0]["params.note"] == "-1"


def test_a_runs_csv_is_refused_like_the_page(web: WebSession) -> None:
    assert web.get("/experiments/987654/runs.csv").status == 404
    response = web.get("/experiments/0/runs.csv?filter=metrics.loss+>>>+1")
    assert response.status == 400
    assert "filter" in html.unescape(response.data.decode())


def test_deleted_runs_can_be_listed_and_deleted_things_say_so(
    web: WebSession, server: ModelyardServer
) -> None:
    """The runs table showed active runs only, with no way to find a deleted one (MLflow's has
    a state choice), and a deleted run's or experiment's page looked like a live one."""
    with Client(server.address) as c:
        eid = c.create_experiment("cleanup")
        kept = c.create_run(eid, run_name="kept").info.run_id
        gone = c.create_run(eid, run_name="gone").info.run_id
        c.delete_run(gone)

    def names(path: str) -> list[str]:
        response = web.get(path)
        assert response.status == 200, path
        return re.findall(r'<a href="/runs/\w+">(\w+)</a>', response.data.decode())

    assert names(f"/experiments/{eid}") == ["kept"]
    assert names(f"/experiments/{eid}?view=deleted") == ["gone"]
    assert sorted(names(f"/experiments/{eid}?view=all")) == ["gone", "kept"]
    page = web.get(f"/experiments/{eid}?view=deleted").data.decode()
    for link in re.findall(r'<th><a href="([^"]+)"', page):  # sorting keeps the choice
        assert "view=deleted" in html.unescape(link)
    exported = web.get(f"/experiments/{eid}/runs.csv?view=deleted").data.decode()
    assert [r["run_id"] for r in csv.DictReader(io.StringIO(exported))] == [gone]
    assert web.get(f"/experiments/{eid}?view=purged").status == 400

    run_page = html.unescape(web.get(f"/runs/{gone}").data.decode())
    assert "This run is deleted" in run_page and f"modelyard runs restore {gone}" in run_page
    assert "is deleted" not in web.get(f"/runs/{kept}").data.decode()
    with Client(server.address) as c:
        c.delete_experiment(eid)
    page = html.unescape(web.get(f"/experiments/{eid}").data.decode())
    assert "This experiment is deleted" in page and f"modelyard experiments restore {eid}" in page


def test_a_refused_model_action_names_no_api_method(
    web: WebSession, server: ModelyardServer, run_id: str
) -> None:
    """Pointing an alias at a version whose registration failed said "register it again
    (CreateModelVersion)", an API method no page offers."""
    failed_registration(server.settings, "empty", run_id)
    form = {"csrf": web.csrf("/models/empty"), "alias": "champion", "version": "1"}
    response = web.post("/models/empty/alias", form)
    assert response.status == 303
    page = html.unescape(web.get(response.headers["location"]).data.decode())
    assert "register it again (`modelyard.register_model` in Python)" in page
    assert "CreateModelVersion" not in page


@pytest.fixture
def secure(tmp_path) -> Iterator[tuple[ModelyardServer, str, str, str]]:
    """Auth on: the services, a UI over them, the admin's token and viewer vera's."""
    from modelyard.services.auth.app import open_service
    from modelyard.services.common.runtime import Runtime

    settings = Settings(home=tmp_path, port=0, grace_period=0, auth=AuthSettings(enabled=True))
    auth = open_service(settings, Runtime(settings))
    root = auth.bootstrap_admin("root").token
    auth.store.close()
    with running_server(settings) as server, serving_ui(settings, server.address) as url:
        with Client(server.address, token=root) as admin:
            admin.create_principal("vera", ["viewer"])
            vera, _ = admin.create_token("vera")
        yield server, url, root, vera


def test_a_model_readable_from_a_hidden_experiment_shows_its_versions(secure) -> None:
    """A viewer given READ on a model trained in an experiment they cannot read got a 403 for
    each version's page: the lineage call failed on the run (the page says "not readable"
    instead), and listing files takes USE, which they have not either."""
    server, url, root, vera = secure
    with Client(server.address, token=root) as admin:
        run_id = admin.create_run(admin.create_experiment("secret")).info.run_id
        admin.log_param(run_id, "secret_param", "1")
        admin.log_text(run_id, "m", "model/MLmodel")
        admin.create_model_version("shared", f"runs:/{run_id}/model")
        admin.set_registered_model_permission("shared", "vera", PermissionLevel.READ)
    with Client(server.address, token=vera) as c:
        lineage = c.get_model_version_lineage("shared", 1)
        assert lineage.model_version.version == 1 and lineage.run is None
    web = WebSession(url)
    assert web.post("/login", {"csrf": web.csrf("/login"), "token": vera}).status == 303
    response = web.get("/models/shared/versions/1")
    assert response.status == 200
    page = html.unescape(response.data.decode())
    assert "The source run is not readable" in page and "secret_param" not in page
    assert "Its files are not shown: vera needs USE on registered_model/shared" in page
    assert "MLmodel" not in page


def test_a_refused_page_says_whom_to_ask_once(secure) -> None:
    """A refused grant said "ask someone with MANAGE on it for a grant" and the page added "Ask
    someone with MANAGE on it for access" below it."""
    server, url, root, vera = secure
    with Client(server.address, token=root) as admin:
        eid = admin.create_experiment("secret")
    web = WebSession(url)
    assert web.post("/login", {"csrf": web.csrf("/login"), "token": vera}).status == 303
    response = web.get(f"/experiments/{eid}")
    assert response.status == 403
    page = html.unescape(response.data.decode())
    assert page.lower().count("someone with manage on it") == 1
    assert f"vera needs READ on experiment/{eid}" in page


def test_compare_leaves_out_the_runs_it_cannot_show(secure) -> None:
    """One run the caller may not read (or a deleted one's stale link) made the whole
    comparison a 403; the readable runs are compared now, with what was left out and why."""
    server, url, root, vera = secure
    with Client(server.address, token=root) as admin:
        shared = admin.create_experiment("shared")
        admin.set_experiment_permission(shared, "vera", PermissionLevel.READ)
        seen = [admin.create_run(shared, run_name=f"seen-{i}").info.run_id for i in range(2)]
        secret = admin.create_experiment("secret")
        hidden = admin.create_run(secret, run_name="hidden-run")
        admin.log_param(hidden.info.run_id, "secret_param", "1")
        also_hidden = admin.create_run(secret).info.run_id
    web = WebSession(url)
    assert web.post("/login", {"csrf": web.csrf("/login"), "token": vera}).status == 303
    response = web.get(f"/compare?runs={seen[0]},{hidden.info.run_id},{seen[1]}")
    assert response.status == 200
    page = html.unescape(response.data.decode())
    assert "Comparing 2 runs" in page and "seen-0" in page and "seen-1" in page
    assert "Left out: vera needs READ on experiment/" in page
    assert "hidden-run" not in page and "secret_param" not in page
    assert web.get(f"/compare?runs={hidden.info.run_id},{also_hidden}").status == 403


def test_a_bad_registrations_token_names_the_pages_own_parameter(
    web: WebSession, run_id: str
) -> None:
    """A hand-edited registrations link was refused naming the API's page_token and telling
    the user to pass "the next_page_token of the previous response", which no page shows."""
    response = web.get(f"/runs/{run_id}?registered_token=abc")
    assert response.status == 400
    said = html.unescape(response.data.decode())
    assert "registered_token is not one" in said and f"(/runs/{run_id})" in said
    assert "page_token" not in said.replace("registered_token", "")


def test_a_bad_page_token_in_a_link_is_explained_in_the_uis_terms(
    web: WebSession, run_id: str
) -> None:
    """An edited or stale page_token in a listing's link was refused with the API's advice,
    "pass the next_page_token of the previous response unchanged", which no page shows."""
    for path in ("/models", "/experiments", "/experiments/0", f"/runs/{run_id}/artifacts"):
        response = web.get(f"{path}?page_token=abc")
        said = html.unescape(response.data.decode())
        assert "page_token in this link is not one" in said, path
        assert "next_page_token" not in said and "previous response" not in said, path


def test_counts_of_one_take_the_singular(
    server: ModelyardServer, web: WebSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one readable run of two the compare page said "Comparing 1 runs"; a one-byte
    file was "1 bytes" and the last page of a run's registrations "1 registrations shown"."""
    monkeypatch.setattr(runs, "MAX_REGISTERED", 1)
    with Client(server.address) as c:
        rid = c.create_run("0").info.run_id
        c.log_text(rid, "x", "one.txt")
        c.log_text(rid, "m", "model/MLmodel")
        for name in ("a", "b"):
            c.create_model_version(name, f"runs:/{rid}/model")
        for i in range(2):
            c.log_metric(rid, f"m{i}", 1.0)
    monkeypatch.setattr(charts, "MAX_CHARTS", 1)
    missing = "0" * 32  # no run has this id: the comparison leaves it out
    compared = html.unescape(web.get(f"/compare?runs={rid},{missing}").data.decode())
    assert "Comparing 1 run<" in compared and "<title>Compare 1 run" in compared
    assert "1 more metric is not charted" in compared
    run_page = html.unescape(web.get(f"/runs/{rid}").data.decode())
    assert "1 byte<" in run_page and "1 more metric is not charted" in run_page
    more = re.search(r'<a href="([^"]+)"[^>]* data-testid="more-registered"', run_page)
    assert more, run_page
    last = html.unescape(web.get(more.group(1)).data.decode())
    assert "1 registration shown" in last
    file_page = html.unescape(web.get(f"/runs/{rid}/artifacts?path=one.txt").data.decode())
    assert "1 byte ·" in file_page
    for page in (compared, run_page, last, file_page):
        assert not re.search(r"\b1 (runs|bytes|registrations|more metrics)\b", page)


class SlowStore:
    """The tracking service's artifact reads, each file sent in `pieces` chunks `gap` seconds
    apart, and, if `stall_after` is set, nothing after that many chunks (0: not even the header)
    until the test ends: a storage backend that hangs, as an unreachable S3 does."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, pieces: int = 4) -> None:
        from modelyard.services.tracking.service import TrackingService

        self.pieces, self.gap = pieces, 0.0
        self.stall_after: int | None = None
        self.released = threading.Event()
        real = TrackingService.open_artifact

        def open_artifact(service: TrackingService, rid: str, path: str) -> tuple[Any, Any]:
            if self.stall_after == 0:
                self.released.wait()
            file, chunks = real(service, rid, path)
            return file, self._slowed(b"".join(chunks))

        monkeypatch.setattr(TrackingService, "open_artifact", open_artifact)

    def _slowed(self, data: bytes) -> Iterator[bytes]:
        size = -(-len(data) // self.pieces)
        for i in range(self.pieces):
            if self.stall_after is not None and i >= self.stall_after:
                self.released.wait()
            elif i:
                time.sleep(self.gap)  # a slow link, not synchronisation
            yield data[i * size : (i + 1) * size]


@pytest.fixture
def slow_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowStore]:
    store = SlowStore(monkeypatch)
    yield store
    store.released.set()


def test_a_preview_of_a_stalled_artifact_fails_the_page_in_the_call_timeout(
    settings: Settings, server: ModelyardServer, run_id: str, slow_store: SlowStore
) -> None:
    """A preview waited on the SDK's 1-hour stream deadline: a store that hung mid-file held
    the browser's request (and a worker thread) for an hour. It now gets ui.call_timeout."""
    with Client(server.address) as c:
        c.log_text(run_id, "line\n" * 1000, "notes.txt")
    settings.ui.call_timeout = 0.5
    slow_store.stall_after = 1
    with serving_ui(settings, server.address) as url:
        response = WebSession(url).get(f"/runs/{run_id}/artifacts?path=notes.txt")
    assert response.status == 504
    page = html.unescape(response.data.decode())
    assert "the tracking service at 127.0.0.1:" in page and "within 0.5 s" in page
    assert "MODELYARD_UI__CALL_TIMEOUT" in page


@pytest.mark.parametrize("stall_after", [0, 2])
def test_a_download_that_stalls_fails_instead_of_hanging(
    settings: Settings,
    server: ModelyardServer,
    run_id: str,
    slow_store: SlowStore,
    stall_after: int,
) -> None:
    """A download waited on the SDK's 1-hour stream deadline when the store hung. Now a store
    that sends nothing for ui.call_timeout fails it: with the error page before its first
    byte, by cutting the connection after (the browser then shows a failed download, never a
    short file taken for the whole)."""
    with Client(server.address) as c:
        c.log_text(run_id, "line\n" * 1000, "notes.txt")
    settings.ui.call_timeout = 0.5
    slow_store.stall_after = stall_after
    with serving_ui(settings, server.address) as url:
        web = WebSession(url)
        if stall_after == 0:
            response = web.get(f"/runs/{run_id}/artifact?path=notes.txt")
            assert response.status == 504
            page = html.unescape(response.data.decode())
            assert "the tracking service at 127.0.0.1:" in page and "0.5 s" in page
        else:
            with pytest.raises(urllib3.exceptions.ProtocolError):
                web.get(f"/runs/{run_id}/artifact?path=notes.txt")
        # the UI is not left waiting on the stalled download
        assert web.get("/experiments").status == 200


def test_a_download_longer_than_the_call_timeout_completes_while_it_progresses(
    settings: Settings, server: ModelyardServer, run_id: str, slow_store: SlowStore
) -> None:
    """The stall bound is on each wait for the store, not on the whole download."""
    data = "line\n" * 1000
    with Client(server.address) as c:
        c.log_text(run_id, data, "notes.txt")
    settings.ui.call_timeout = 1.0
    slow_store.pieces, slow_store.gap = 8, 0.25  # 1.75 s in all, 0.25 s at most without a byte
    with serving_ui(settings, server.address) as url:
        response = WebSession(url).get(f"/runs/{run_id}/artifact?path=notes.txt")
    assert response.status == 200 and response.data.decode() == data


@pytest.mark.parametrize("profile", ["[1, 2]", '"rows"', "null", "7", "{not json"])
def test_a_dataset_whose_profile_is_no_json_object_leaves_the_run_page_up(
    server: ModelyardServer, web: WebSession, run_id: str, profile: str
) -> None:
    """A dataset's profile is free-form JSON (MLflow's too); one that was not an object (a
    list, a string) made the run page a 500, for every run that logged that dataset."""
    dataset = Dataset(name="train <b>set</b>", digest="d1", profile=profile)
    context = InputTag(SystemTag.DATASET_CONTEXT, "training")
    with Client(server.address) as c:
        c.log_inputs(run_id, [DatasetInput(dataset, (context,))])
    response = web.get(f"/runs/{run_id}")
    assert response.status == 200
    page = response.data.decode()
    assert "train &lt;b&gt;set&lt;/b&gt;" in page and "training" in page


def _login_then(web: WebSession, response: urllib3.BaseHTTPResponse, token: str) -> str:
    """Follow a redirect to the login page and sign in there: where the login sends us."""
    assert response.status == 303
    form = web.get(response.headers["location"]).data.decode()
    found = re.search(r'name="next" value="([^"]*)"', form)
    assert found, form
    fields = {"csrf": web.csrf("/login"), "token": token, "next": html.unescape(found.group(1))}
    signed_in = web.post("/login", fields)
    assert signed_in.status == 303
    return signed_in.headers["location"]


def test_signing_in_leads_back_to_the_link_with_its_query(
    secure, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The login led back to the link's path without its query: a shared comparison link
    (/compare?runs=...) landed on "pick 2 to 10 runs", a filtered runs table unfiltered, an
    artifact's page on the run's root. And after a form's post whose session the UI had
    forgotten (a restart), to the post's own path: 405 Method Not Allowed."""
    server, url, root, vera = secure
    with Client(server.address, token=root) as admin:
        eid = admin.create_experiment("shared")
        ids = [admin.create_run(eid).info.run_id for _ in range(2)]
        admin.create_registered_model("m")
    link = f"/compare?runs={ids[0]},{ids[1]}"
    web = WebSession(url)
    assert _login_then(web, web.get(link), root) == link
    assert web.get(link).status == 200

    expired = WebSession(url)  # signed in, and then the services refuse the session's token
    assert expired.post("/login", {"csrf": expired.csrf("/login"), "token": vera}).status == 303
    query = urlencode({"filter": "attributes.status = 'RUNNING'"})
    filtered = f"/experiments/{eid}?{query}"
    years_later = time.time() + 10 * 365 * 86400
    with monkeypatch.context() as later:
        later.setattr(tokens, "time", SimpleNamespace(time=lambda: years_later))
        refused = expired.get(filtered)
    assert _login_then(expired, refused, root) == filtered

    restarted = WebSession(url)  # a form posted from a page the UI no longer has a session for
    posted = restarted.post(
        "/models/m/alias", {"csrf": "x", "alias": "a", "version": "1"},
        {"Referer": f"{url}/models/m"},
    )  # fmt: skip
    assert _login_then(restarted, posted, root) == "/models/m"


def test_a_run_with_more_nested_runs_than_shown_links_to_all_of_them(
    server: ModelyardServer, web: WebSession
) -> None:
    """The lineage listed the first 50 nested runs and said nothing of the rest: a sweep of
    200 trials looked like one of 50."""
    with Client(server.address) as c:
        parent = c.create_run("0", run_name="sweep").info.run_id
        names = [f"trial-{i}" for i in range(51)]
        for name in names:
            c.create_run("0", run_name=name, parent_run_id=parent)
        few = c.create_run("0", run_name="few").info.run_id
        c.create_run("0", run_name="only-child", parent_run_id=few)
    page = web.get(f"/runs/{parent}").data.decode()
    link = re.search(r'<a href="([^"]+)" data-testid="all-nested-runs">', page)
    assert link, page
    assert "the newest 50 are shown" in page
    table = web.get(html.unescape(link.group(1))).data.decode()
    assert all(f">{name}</a>" in table for name in names)
    assert ">few</a>" not in table and ">sweep</a>" not in table
    assert "all-nested-runs" not in web.get(f"/runs/{few}").data.decode()


def test_system_metrics_do_not_take_the_charts_of_the_models_own(
    server: ModelyardServer, web: WebSession
) -> None:
    """The run and compare pages chart 24 metrics, picked by name: with system metrics on
    (eight system/* keys), a model's val_loss, named after "system", was never charted, and
    nothing said so."""
    model_keys = [f"acc_{i:02}" for i in range(20)] + ["val_loss"]
    system_keys = [f"system/{name}" for name in "abcdefgh"]
    with Client(server.address) as c:
        ids = [c.create_run("0").info.run_id for _ in range(2)]
        for rid in ids:
            c.log_batch(rid, metrics=[Metric(k, 1.0, 0, 0) for k in model_keys + system_keys])
    for path in (f"/runs/{ids[0]}", f"/compare?runs={ids[0]},{ids[1]}"):
        page = web.get(path).data.decode()
        charted = re.findall(r'"kind":"metrics","title":"([^"]+)"', page)
        assert charted == model_keys + system_keys[:3], path
        assert "5 more metrics are not charted here" in page, path


def test_a_run_ended_without_an_end_time_is_not_shown_as_running(
    server: ModelyardServer, web: WebSession
) -> None:
    """update_run(status="KILLED") records no end time (MLflow's neither): the run page put
    "running" for its duration, beside the status KILLED."""
    with Client(server.address) as c:
        killed = c.create_run("0").info.run_id
        c.update_run(killed, status="KILLED")
        running = c.create_run("0").info.run_id
    duration = r"<h3>Duration</h3><p[^>]*>([^<]*)<"
    assert re.findall(duration, web.get(f"/runs/{killed}").data.decode()) == ["not recorded"]
    assert re.findall(duration, web.get(f"/runs/{running}").data.decode()) == ["running"]


def test_compare_marks_params_that_differ_only_in_case(
    server: ModelyardServer, web: WebSession
) -> None:
    """Params were marked "differs" through Jinja's `unique`, which ignores case: optimizer
    "Adam" in one run and "adam" in the other were shown as the same."""
    with Client(server.address) as c:
        ids = [c.create_run("0").info.run_id for _ in range(2)]
        for rid, optimizer in zip(ids, ("Adam", "adam"), strict=True):
            c.log_param(rid, "optimizer", optimizer)
            c.log_param(rid, "seed", "7")
    page = web.get(f"/compare?runs={ids[0]},{ids[1]}").data.decode()
    rows = {key: kind for kind, key in re.findall(r'<tr class="(\w*)"><th>(\w+)', page)}
    assert rows == {"optimizer": "differs", "seed": ""}


def _files(page: str, testid: str) -> list[str]:
    """The entries a page lists under `testid`, as shown."""
    listing = re.search(rf'<ul class="files" data-testid="{testid}">(.*?)</ul>', page, re.S)
    return re.findall(r'path=[^"]*">([^<]+)</a>', listing.group(1)) if listing else []


def test_a_run_with_more_files_than_a_page_lists_them_a_page_at_a_time(
    server: ModelyardServer, web: WebSession, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run page and the artifacts browser listed every file of a directory, however many:
    a run of thousands of checkpoints was one page of thousands of links."""
    monkeypatch.setattr(runs, "FILES_PAGE", 4)
    names = [f"step-{i}.txt" for i in range(6)]
    local = tmp_path / "ckpt"
    local.mkdir()
    for name in names:
        (local / name).write_text(name)
    with Client(server.address) as c:
        rid = c.create_run("0").info.run_id
        c.log_artifacts(rid, local, "ckpt")
        for name in names[:4]:
            c.log_text(rid, name, name)
        few = c.create_run("0").info.run_id
        c.log_text(few, "x", "only.txt")
    first = web.get(f"/runs/{rid}/artifacts?path=ckpt").data.decode()
    assert _files(first, "listing") == [f"ckpt/{n}" for n in names[:4]]
    more = re.search(r'<a href="([^"]+)" class="next" data-testid="more-files">', first)
    assert more, first
    second = web.get(html.unescape(more.group(1))).data.decode()
    assert _files(second, "listing") == [f"ckpt/{n}" for n in names[4:]]
    assert "more-files" not in second and "First files" in second
    back = re.search(r'<a href="([^"]+)" class="previous" data-testid="previous-page">', second)
    assert back, second
    again = web.get(html.unescape(back.group(1))).data.decode()
    assert _files(again, "listing") == [f"ckpt/{n}" for n in names[:4]]
    run_page = web.get(f"/runs/{rid}").data.decode()
    assert _files(run_page, "artifacts") == ["ckpt/", *names[:3]]
    rest = re.search(r'data-testid="more-artifacts">[^<]*<a href="([^"]+)"', run_page)
    assert rest, run_page
    carried_on = web.get(html.unescape(rest.group(1))).data.decode()
    assert _files(carried_on, "listing") == [names[3]]
    back = re.search(r'<a href="([^"]+)" class="previous" data-testid="previous-page">', carried_on)
    assert back, carried_on
    first_files = _files(web.get(html.unescape(back.group(1))).data.decode(), "listing")
    assert first_files == ["ckpt/", *names[:3]]
    assert "more-artifacts" not in web.get(f"/runs/{few}").data.decode()
    assert web.get(f"/runs/{rid}/artifacts?path=ckpt&page_token=x").status == 400


def test_a_run_registered_more_times_than_listed_links_to_the_rest_and_back(
    server: ModelyardServer, web: WebSession, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run page's lineage listed the first 50 versions registered from the run and said
    nothing of the rest; then its "More registrations" went forward only."""
    monkeypatch.setattr(runs, "MAX_REGISTERED", 2)
    with Client(server.address) as c:
        c.log_text(run_id, "m", "model/MLmodel")
        for name in ("a", "b", "c", "d", "e"):
            c.create_model_version(name, f"runs:/{run_id}/model")
    registered = r">(\w) version 1</a>"

    def follow(page: str, testid: str) -> str:
        link = re.search(rf'<a href="([^"]+)"[^>]* data-testid="{testid}"', page)
        assert link, (testid, page)
        assert link.group(1).startswith(f"/runs/{run_id}") and link.group(1).endswith("#lineage")
        return web.get(html.unescape(link.group(1))).data.decode()

    pages = [web.get(f"/runs/{run_id}").data.decode()]
    assert "previous-page" not in pages[0] and "first-page" not in pages[0]
    for _ in range(2):
        pages.append(follow(pages[-1], "more-registered"))
    assert [re.findall(registered, p) for p in pages] == [["a", "b"], ["c", "d"], ["e"]]
    assert "more-registered" not in pages[-1] and "First registrations" in pages[-1]
    back = follow(pages[-1], "previous-page")
    assert re.findall(registered, back) == ["c", "d"]
    assert "Earlier registrations" in back
    assert re.findall(registered, follow(back, "previous-page")) == ["a", "b"]
    assert re.findall(registered, follow(pages[-1], "first-page")) == ["a", "b"]


def test_an_endpoint_with_nothing_logged_says_why_as_its_log_is(
    server: ModelyardServer, web: WebSession, model: str
) -> None:
    """An endpoint whose inference log was on but had logged nothing yet was told to turn the
    log on; one whose log was off was not told how."""
    with Client(server.address) as c:
        c.create_endpoint("on", [ServedModel(f"models:/{model}/1")], InferenceLogConfig(True, 0.25))
        c.create_endpoint("off", [ServedModel(f"models:/{model}/1")])
    on = web.get("/endpoints/on").data.decode()
    assert "keeps 25% of the requests served" in on and "--log-sampling" not in on
    off = web.get("/endpoints/off").data.decode()
    assert "the inference log is off" in off
    assert "modelyard endpoints update off --log-sampling 1.0" in off


def test_a_model_with_more_events_than_shown_pages_through_them(
    server: ModelyardServer, web: WebSession, model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The model page's history showed the newest 100 events, and older ones only through the
    CLI: it pages back through them now, and forward again."""
    monkeypatch.setattr(models, "MAX_EVENTS", 2)
    with Client(server.address) as c:
        for alias in ("champion", "challenger"):
            c.set_registered_model_alias(model, alias, 1)
        c.create_registered_model("quiet")
        assert len(c.list_model_events(model)) == 5  # created, version created, ready, 2 aliases

    def follow(page: str, testid: str) -> str | None:
        link = re.search(rf'<a href="([^"]+)"[^>]* data-testid="{testid}"', page)
        return web.get(html.unescape(link.group(1))).data.decode() if link else None

    def kinds_on(page: str) -> list[str]:
        history = page[page.index('data-testid="events"') :]
        return re.findall(r"<tr><td>[^<]+</td><td>(\w+)</td>", history)

    pages = [web.get(f"/models/{model}").data.decode()]
    for _ in range(5):  # bounded: a link back to the same page must not loop forever
        older = follow(pages[-1], "older-events")
        if older is None:
            break
        pages.append(older)
    kinds = [kinds_on(p) for p in pages]
    assert kinds == [
        ["ALIAS_SET", "ALIAS_SET"],
        ["VERSION_READY", "VERSION_CREATED"],
        ["MODEL_CREATED"],
    ]
    assert f"modelyard models history {model}" in pages[0]
    assert "newer-events" not in pages[0] and "Newest events" in pages[-1]
    back: str | None = pages[-1]
    for expected in reversed(kinds[:-1]):
        assert back is not None
        back = follow(back, "newer-events")
        assert back is not None and kinds_on(back) == expected
    assert back is not None and "newer-events" not in back
    assert "older-events" not in web.get("/models/quiet").data.decode()
    assert web.get(f"/models/{model}?events_before=x").status == 400


def test_a_pasted_token_grpc_cannot_send_is_refused_with_what_to_do(web: WebSession) -> None:
    """A token pasted with a stray character (a line break, a typographic quote) or a page of
    text in its place made gRPC refuse the header client-side (ValueError, not a status): the
    login answered 500 "Something went wrong", with a traceback in the UI's log."""
    for token in ("eyJ\u201cabc", "eyJ\nabc", "eyJ\x7fabc", "x" * 20_000):
        response = web.post("/login", {"csrf": web.csrf("/login"), "token": token})
        said = html.unescape(response.data.decode())
        assert response.status == 400, token[:10]
        assert "That is not an API token" in said and "modelyard tokens create" in said


def test_a_history_link_with_a_digit_that_is_no_number_is_refused(
    web: WebSession, model: str
) -> None:
    """events_before was checked with str.isdigit, which '²' passes and int() then refuses:
    the model page answered 500 ("Something went wrong"), with a traceback in the UI's log."""
    for text in ("²", "١٢"):
        response = web.get(f"/models/{model}?{urlencode({'events_before': text})}")
        assert response.status == 400, text
        assert "events_before" in html.unescape(response.data.decode())


def test_an_automl_run_with_more_trials_than_ranked_shows_the_best(
    server: ModelyardServer, web: WebSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The leaderboard ranked the newest 1000 trials and said nothing of the rest: in a
    longer search the best trial, an early one, was not on it."""
    monkeypatch.setattr(automl, "MAX_TRIALS", 2)
    with Client(server.address) as c:
        parent = c.create_run("0", tags={"modelyard.automl.role": "parent"}).info.run_id
        c.log_param(parent, "primary_metric", "rmse")
        c.set_tag(parent, "modelyard.automl.problem_type", "regression")
        for name, rmse in (("early-best", 0.1), ("middle", 0.5), ("late", 0.3)):
            trial = c.create_run("0", run_name=name, parent_run_id=parent).info.run_id
            c.log_metric(trial, "val_rmse", rmse)
    page = web.get(f"/automl/{parent}").data.decode()
    assert re.findall(r">(early-best|middle|late)</a>", page) == ["early-best", "late"]
    link = re.search(r'data-testid="more-trials">[^<]*<a href="([^"]+)"', page)
    assert link, page
    table = web.get(html.unescape(link.group(1))).data.decode()
    assert all(f">{name}</a>" in table for name in ("early-best", "middle", "late"))


def test_an_automl_leaderboards_links_to_long_paths_fit_a_request_line(
    server: ModelyardServer, web: WebSession
) -> None:
    """The leaderboard linked its report and each trial's source by the path in their tags,
    whole: a deep CJK path made a link past nginx's default 8 KB request line."""
    deep = "/".join(["模" * 80] * 10)
    with Client(server.address) as c:
        parent = c.create_run("0", tags={"modelyard.automl.role": "parent"}).info.run_id
        c.log_param(parent, "primary_metric", "rmse")
        c.log_text(parent, "report", f"{deep}/report.html")
        c.set_tag(parent, "modelyard.automl.report", f"{deep}/report.html")
        trial = c.create_run("0", run_name="t", parent_run_id=parent).info.run_id
        c.log_text(trial, "source", f"{deep}/train.py")
        c.set_tag(trial, "modelyard.automl.source", f"{deep}/train.py")
    page = web.get(f"/automl/{parent}").data.decode()
    links = [html.unescape(h) for h in re.findall(r'href="([^"]+/artifacts\?[^"]+)"', page)]
    assert len(links) == 2
    for link, text in zip(links, ("report", "source"), strict=True):
        assert len(f"GET {link} HTTP/1.1") <= web_module.MAX_LINK, link
        download = re.search(r'href="([^"]+/artifact\?[^"]+)"', web.get(link).data.decode())
        assert download, link
        assert web.get(html.unescape(download.group(1))).data.decode() == text


def test_the_features_overview_reads_every_views_freshness_in_one_call(
    server: ModelyardServer, web: WebSession, tmp_path: Path
) -> None:
    """The overview made one ListMaterializations per view, each reading the view's whole
    history; one call now brings each view's latest window."""
    repo = make_repo(tmp_path / "repo")
    views = [replace(repo.stats, name=f"stats_{i}", ttl=timedelta(days=3)) for i in range(3)]
    with FeatureStoreClient(server.address) as store:
        store.apply([repo.driver, *views])
        day = timedelta(days=1)
        for start, end in ((5, 2), (6, 4)):  # the older window loaded last
            store.materialize(NOW - start * day, NOW - end * day, ["stats_0", "stats_1"])
    labels = {
        "service": "modelyard.features.v1.FeatureStoreService",
        "method": "ListMaterializations",
        "code": "OK",
    }
    before = REGISTRY.get_sample_value("modelyard_rpc_requests_total", labels) or 0
    page = web.get("/features").data.decode()
    assert REGISTRY.get_sample_value("modelyard_rpc_requests_total", labels) == before + 1
    rows = re.findall(r'<a href="/features/views/(stats_\d)">.*?</tr>', page, re.S)
    assert rows == ["stats_0", "stats_1", "stats_2"]
    table = page[page.index('data-testid="feature-views"') :]
    ends = re.findall(r"<td>(\d{4}-\d\d-\d\d [^<]*)</td>", table)
    assert ends == [str(NOW - timedelta(days=2))] * 2, ends
    assert "never materialized" in table


def test_a_view_page_says_an_incremental_window_excludes_its_start(
    server: ModelyardServer, web: WebSession, tmp_path: Path
) -> None:
    """A view's materializations were shown as start and end with nothing saying which were
    included: an incremental run's start is the run before's end, which it does not load."""
    repo = make_repo(tmp_path / "repo")
    with FeatureStoreClient(server.address) as store:
        store.apply([repo.driver, repo.stats])
        store.materialize(NOW - timedelta(days=2), NOW - timedelta(days=1))
        store.materialize_incremental(NOW)
    page = html.unescape(web.get("/features/views/driver_stats").data.decode())
    note = page[page.index('data-testid="window-ends"') :].split("</p>")[0]
    assert "both included" in note and "incremental" in note and "excludes" in note


def test_no_feature_views_tells_a_viewer_whom_to_ask_and_an_editor_how_to_define_them(
    secure, tmp_path: Path
) -> None:
    """A viewer who could read no feature view was told to define some and run `modelyard
    features apply`, which needs the editor role they have not."""
    server, url, root, vera = secure
    repo = make_repo(tmp_path / "repo")
    with FeatureStoreClient(server.address, token=root) as store:
        store.apply([repo.driver, repo.stats])
    with Client(server.address, token=root) as admin:
        admin.create_principal("ed", ["editor"])
        ed, _ = admin.create_token("ed")

    def empty_state(token: str) -> str:
        web = WebSession(url)
        assert web.post("/login", {"csrf": web.csrf("/login"), "token": token}).status == 303
        page = html.unescape(web.get("/features").data.decode())
        said = re.search(r"(No feature views.*?)</td>", page, re.S)
        return said.group(1) if said else ""

    viewer = empty_state(vera)
    assert "No feature views you may read" in viewer and "MANAGE" in viewer and "admin" in viewer
    assert "features apply" not in viewer
    editor = empty_state(ed)
    assert "modelyard features apply" in editor and "you may read" not in editor
    assert empty_state(root) == ""  # the admin reads the view: no empty state at all


def test_a_model_version_with_more_files_than_a_page_lists_them_a_page_at_a_time(
    server: ModelyardServer, web: WebSession, run_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The version page listed every file of the version, however many: a model of thousands
    of shards was one page of thousands of rows, read in one unpaged call."""
    monkeypatch.setattr(runs, "FILES_PAGE", 4)
    names = ["MLmodel", *(f"shards/{i}.bin" for i in range(5))]
    with Client(server.address) as c:
        for name in names:
            c.log_text(run_id, name, f"model/{name}")
        c.create_model_version("sharded model", f"runs:/{run_id}/model")

    def files(page: str) -> list[str]:
        listing = re.search(r'data-testid="version-files">(.*?)</ul>', page, re.S)
        assert listing, page
        return re.findall(r"<li>(\S+) <span", listing.group(1))

    here = f"/models/{quote('sharded model', safe='')}/versions/1"
    first = web.get(here).data.decode()
    assert files(first) == names[:4]
    link = re.search(r'<a href="([^"]+)" class="next" data-testid="more-files">Next 4', first)
    assert link, first
    rest = web.get(html.unescape(link.group(1))).data.decode()
    assert files(rest) == names[4:]
    assert "more-files" not in rest and ">First files</a>" in rest
    back = re.search(r'<a href="([^"]+)" class="previous" data-testid="previous-page">', rest)
    assert back, rest
    assert files(web.get(html.unescape(back.group(1))).data.decode()) == names[:4]
    assert web.get(f"{here}?page_token=forged").status == 400


def test_listings_page_back_and_keep_a_bounded_trail(
    server: ModelyardServer, web: WebSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Paged listings linked only forward (and to the first page). "Previous page" follows
    the earlier pages' tokens the links carry; past MAX_LINK characters of link the oldest
    are dropped, so a deep page's URL stays bounded, and "First page" still goes back."""
    monkeypatch.setattr(models, "PAGE", 1)
    with Client(server.address) as c:
        for name in ("m0", "m1", "m2", "m3"):
            c.create_registered_model(name)

    follow = web.follow

    def shown(page: str) -> list[str]:
        return re.findall(r'<a href="/models/[^"]+">(m\d)</a>', page)

    pages = [web.get("/models").data.decode()]
    for _ in range(3):
        pages.append(follow(pages[-1], "next-page"))
    assert [shown(p) for p in pages] == [["m0"], ["m1"], ["m2"], ["m3"]]
    assert "next-page" not in pages[-1] and "previous-page" not in pages[0]
    back = pages[-1]
    for expected in (["m2"], ["m1"], ["m0"]):
        back = follow(back, "previous-page")
        assert shown(back) == expected
    assert "previous-page" not in back and "first-page" not in back

    monkeypatch.setattr(web_module, "MAX_LINK", 0)  # only the page before is kept
    deep = web.get("/models").data.decode()
    for _ in range(3):
        deep = follow(deep, "next-page")
    one_back = follow(deep, "previous-page")
    assert shown(one_back) == ["m2"] and "previous-page" not in one_back
    assert shown(follow(one_back, "first-page")) == ["m0"]
    # a link made by hand with a long trail: the links it gets carry the page before only
    token = re.search(r"page_token=([^&\"]+)", html.unescape(deep)).group(1)  # type: ignore[union-attr]
    crafted = web.get(f"/models?page_token={token}&back=" + "&back=x" * 500).data.decode()
    previous = re.search(r'<a href="([^"]+)"[^>]* data-testid="previous-page"', crafted)
    assert previous and html.unescape(previous.group(1)).count("back=") == 1


@pytest.mark.parametrize(
    "chars",
    [5998, 64],  # a 6000-character CJK tag; the longest a token still carries whole (~380)
)
def test_a_deep_page_of_long_sort_values_keeps_its_links_within_a_request_line(
    server: ModelyardServer, web: WebSession, monkeypatch: pytest.MonkeyPatch, chars: int
) -> None:
    """Sorted by 6000-character CJK tags, a page's link carried the last row's value in its
    keyset token (~24 KB), and earlier pages' tokens for "Previous" (up to 16 KB more): past
    nginx's default 8 KB request line, so such pages broke behind the default ingress. Every
    link of a page 25 deep fits in one, "Previous" leads back through the pages its trail
    keeps, and "First page" from there. A link whose page before ended at a run whose value
    changed since says so, and where to go."""
    monkeypatch.setattr(experiments, "PAGE", 1)
    names = [f"run-{i:02d}" for i in range(25)]
    with Client(server.address) as c:
        eid = c.create_experiment("long sort values")
        ids = [c.create_run(eid, run_name=name).info.run_id for name in names]
        for rid, name in zip(ids, names, strict=True):
            c.set_tag(rid, "note", "模" * chars + name[-2:])

    def opened(link: str | None) -> str:
        assert link and len(f"GET {link} HTTP/1.1".encode()) < NGINX_REQUEST_LINE, link
        return web.get(link).data.decode()

    def shown(page: str) -> list[str]:
        return re.findall(r">(run-\d\d)</a>", page)

    pages = [opened(f"/experiments/{eid}?order=tags.note+ASC")]
    while web.link(pages[-1], "next-page"):
        pages.append(opened(web.link(pages[-1], "next-page")))
    assert [shown(p) for p in pages] == [[n] for n in names]
    back, at = pages[-1], len(names) - 1
    while web.link(back, "previous-page"):
        back, at = opened(web.link(back, "previous-page")), at - 1
        assert shown(back) == [names[at]]
    assert at <= len(names) - 10  # ten pages back at least, however long the tokens
    if at:  # past the trail the links keep: the first page is a link away
        assert shown(opened(web.link(back, "first-page"))) == names[:1]

    first = opened(f"/experiments/{eid}?order=tags.note+ASC")
    with Client(server.address) as c:
        c.set_tag(ids[0], "note", "changed")
    stale = html.unescape(opened(web.link(first, "next-page")))
    if chars > 64:  # the token names the run, whose value changed: from the first page again
        assert "changed or deleted since" in stale and "(its first page)" in stale
    else:  # the token carries the value: the pages after it, whatever became of the run
        assert shown(stale) == names[1:2]


def test_a_version_trained_in_a_deleted_run_says_so(
    server: ModelyardServer, web: WebSession, run_id: str
) -> None:
    """The version page named its source run and experiment as if both were live after they
    were deleted; the link led to a run page saying so, the version page did not."""
    with Client(server.address) as c:
        eid = c.create_experiment("gone")
        rid = c.create_run(eid, run_name="gone-run").info.run_id
        c.log_text(rid, "m", "model/MLmodel")
        c.create_model_version("kept", f"runs:/{rid}/model")
        c.log_text(run_id, "m", "model/MLmodel")
        c.create_model_version("kept", f"runs:/{run_id}/model")
        c.delete_run(rid)
        c.delete_experiment(eid)
    page = html.unescape(web.get("/models/kept/versions/1").data.decode())
    assert "gone-run</a> <span" in page and "(deleted: its files here" in page
    assert 'gone</a> <span class="muted">(deleted)</span>' in page
    assert "MLmodel" in page  # the registry's copy is still listed
    assert "(deleted" not in web.get("/models/kept/versions/2").data.decode()


def test_a_served_model_that_failed_is_told_in_the_uis_terms(
    server: ModelyardServer, web: WebSession, model: str
) -> None:
    """A served model's failure was shown as serving kept it, naming an API method ("list them
    with SearchModelVersions"), and the endpoints list gave a version never loaded as "v?"."""
    with Client(server.address) as c:
        c.create_endpoint("orphan", [ServedModel(f"models:/{model}/1")])
        with pytest.raises(FailedPrecondition, match="no flavors"):  # its MLmodel is no model
            c.wait_endpoint_ready("orphan", timeout=60)
        c.delete_model_version(model, 1)  # serving loads it again, and fails on the version
        reasons = (e.served_models[0].reason for e in c.watch_endpoint("orphan", timeout=60))
        reason = next(r for r in reasons if "has no version" in r)
    assert "SearchModelVersions" in reason  # as the SDK reads it
    page = html.unescape(web.get("/endpoints/orphan").data.decode())
    assert "has no version 1; list them with the model's page" in page
    assert "SearchModelVersions" not in page
    listing = web.get("/endpoints").data.decode()
    assert "v?" not in listing and "no version loaded" in listing
