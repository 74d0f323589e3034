"""Every page, clicked through in Chromium on data the test logs, with what it shows asserted."""

from __future__ import annotations

import re
import struct
import zlib
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from playwright.sync_api import expect
from sklearn.linear_model import LinearRegression

import modelyard
import modelyard.data
import modelyard.sklearn
from modelyard import Client
from modelyard.entities.serving import InferenceLogConfig, ServedModel
from modelyard.features import FeatureStoreClient
from modelyard.services.ui.pages import experiments
from tests.features.repo import NOW, make_repo
from tests.serving.conftest import wait_ready
from tests.ui.conftest import UI
from tests.ui.models import IntervalForecaster


def _png(width: int = 4, height: int = 3) -> bytes:
    """A small valid PNG, built by hand (no imaging library needed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _log_runs(n: int) -> list[str]:
    modelyard.set_experiment("churn")
    ids = []
    for i in range(n):
        with modelyard.start_run(run_name=f"run-{i:03d}") as run:
            modelyard.log_params({"depth": i % 7 + 1, "lr": round(0.01 * (i % 5 + 1), 3)})
            modelyard.log_metric("auc", 0.5 + i / (2 * n))
            ids.append(run.info.run_id)
    return ids


def test_experiments_runs_table_filter_sort_and_paging(ui: UI, client: Client) -> None:
    _log_runs(130)
    with modelyard.start_run(run_name="study") as parent:
        for i in range(3):
            with modelyard.start_run(run_name=f"trial-{i}", nested=True):
                modelyard.log_metric("auc", 0.9)
    page = ui.page
    ui.go("/experiments", "experiments")
    expect(page.get_by_test_id("experiments")).to_contain_text("churn")
    page.get_by_placeholder("Search by name").fill("chu")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_test_id("experiments").locator("tbody tr")).to_have_count(1)
    page.get_by_role("link", name="churn").click()

    rows = page.get_by_test_id("runs").locator("tbody tr")
    expect(rows).to_have_count(100)  # a page of 100; the rest behind "Next page"
    expect(page.get_by_test_id("runs")).to_contain_text("metric auc")
    expect(page.get_by_test_id("runs")).to_contain_text("param depth")
    # Nested runs sit right under their parent.
    study_row = page.get_by_test_id("runs").locator("tr", has_text="study")
    expect(study_row).to_contain_text("(3 nested)")
    expect(study_row.locator("xpath=following-sibling::tr[1]")).to_contain_text("trial-")
    ui.screenshot("experiment-runs")

    page.get_by_role("link", name="Next page").click()
    expect(rows).to_have_count(130 + 4 - 100)
    page.get_by_role("link", name="First page").click()
    expect(rows).to_have_count(100)

    # The search_runs grammar, sorting by a metric column, chosen columns.
    page.get_by_label("Filter").fill("metrics.auc > 0.9 and params.depth = '4'")
    page.get_by_label("Columns").fill("metrics.auc, params.lr")
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(4)  # runs 108, 115, 122, 129; the trials (auc 0.9, no depth) not
    page.get_by_role("link", name="metric auc").click()
    first = rows.nth(0).locator("td.num").first.inner_text()
    last = rows.nth(3).locator("td.num").first.inner_text()
    assert float(first) >= float(last)  # DESC after one click
    expect(page.get_by_test_id("runs").locator("thead")).not_to_contain_text("param depth")

    page.get_by_label("Filter").fill("metrics.auc >>> 1")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_test_id("filter-error")).to_contain_text("filter")
    ui.screenshot("experiment-filter-error")
    assert parent.info.run_id


def test_run_page_charts_artifacts_and_previews(ui: UI, client: Client, tmp_path) -> None:
    modelyard.set_experiment("previews")
    X = pd.DataFrame({"a": np.arange(20.0), "b": np.arange(20.0) % 3})
    with modelyard.start_run(run_name="trained", description="why: a baseline") as run:
        modelyard.log_params({"alpha": 0.5})
        modelyard.set_tag("team", "ml")
        for step in range(60):
            modelyard.log_metric("loss", 1 / (step + 1) + (step % 3) * 0.01, step=step)
            modelyard.log_metric("acc", 1 - 1 / (step + 2), step=step)
        modelyard.log_input(modelyard.data.from_pandas(X, name="train-set"), context="training")
        modelyard.log_text("plain notes\nsecond line", "notes/readme.txt")
        modelyard.log_dict({"k": [1, 2]}, "notes/config.json")
        X.to_csv(tmp_path / "sample.csv", index=False)
        X.to_parquet(tmp_path / "sample.parquet")
        (tmp_path / "plot.png").write_bytes(_png())
        for name in ("sample.csv", "sample.parquet", "plot.png"):
            modelyard.log_artifact(tmp_path / name, "files")
        modelyard.sklearn.log_model(
            LinearRegression().fit(X, X["a"] * 2), "model", input_example=X.head(2),
            registered_model_name="previewed",
        )  # fmt: skip
    rid = run.info.run_id
    page = ui.page
    ui.go(f"/runs/{rid}", "run")
    expect(page.get_by_test_id("metrics")).to_contain_text("loss")
    expect(page.get_by_test_id("description")).to_have_text("why: a baseline")
    expect(page.get_by_test_id("tags")).to_contain_text("team")
    expect(page.get_by_test_id("tags")).not_to_contain_text("mlflow.")  # shown as fields
    expect(page.get_by_test_id("datasets")).to_contain_text("train-set")
    expect(page.get_by_test_id("datasets")).to_contain_text("training")
    expect(page.get_by_test_id("lineage")).to_contain_text("previewed version 1")
    charts = page.locator("div.chart[data-drawn=true]")
    expect(charts).to_have_count(2)
    loss = page.locator("#metric-2")  # charts are in key order: acc, loss
    points = "() => document.getElementById('metric-2').data[0].y.slice(0, 5)"
    raw = page.evaluate(points)
    controls = page.locator('.chart-controls[data-for="metric-2"]')
    controls.locator(".smoothing").fill("0.9")
    smoothed = page.evaluate(points)
    assert smoothed[0] == raw[0] and smoothed[4] != raw[4]  # an EMA from the first point
    controls.locator(".x-axis").select_option("time")
    first = page.evaluate("() => document.getElementById('metric-2').data[0].x[0]")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}", first)  # UTC, as drawn
    expect(loss).to_be_visible()

    artifacts = page.get_by_test_id("artifacts")
    artifacts.get_by_role("link", name="notes/").click()
    page.get_by_test_id("listing").get_by_role("link", name="notes/readme.txt").click()
    expect(page.get_by_test_id("preview")).to_contain_text("second line")
    ui.screenshot("artifact-text")
    with page.expect_download() as download:
        page.get_by_test_id("download").click()
    assert download.value.path().read_text() == "plain notes\nsecond line"

    ui.go(f"/runs/{rid}/artifacts?path=files/sample.csv", "artifact-csv")
    table = page.get_by_test_id("table-preview")
    expect(table.locator("thead")).to_contain_text("a")
    expect(table.locator("tbody tr")).to_have_count(20)
    ui.go(f"/runs/{rid}/artifacts?path=files/sample.parquet", "artifact-parquet")
    expect(page.get_by_test_id("preview")).to_contain_text("20 of 20 rows")
    ui.go(f"/runs/{rid}/artifacts?path=files/plot.png", "artifact-image")
    image = page.get_by_test_id("preview").locator("img")
    expect(image).to_be_visible()
    assert page.evaluate("() => document.querySelector('.preview img').naturalWidth") == 4
    ui.go(f"/runs/{rid}/artifacts?path=model/MLmodel", "artifact-manifest")
    expect(page.get_by_test_id("signature")).to_contain_text("a")
    expect(page.get_by_test_id("preview")).to_contain_text("sklearn")
    ui.go(f"/runs/{rid}/artifacts?path=notes/config.json")
    expect(page.get_by_test_id("preview")).to_contain_text('"k"')


def test_compare_runs(ui: UI, client: Client) -> None:
    ids = _log_runs(5)
    page = ui.page
    ui.go(f"/experiments/{client.get_run(ids[0]).info.experiment_id}")
    for rid in ids[:4]:
        page.locator(f"input[name=runs][value='{rid}']").check()
    page.get_by_role("button", name="Compare selected").click()
    page.wait_for_load_state("load")
    ui.wait_for_charts()
    ui.screenshot("compare")
    params = page.get_by_test_id("compare-params")
    expect(params.locator("tr.differs")).to_have_count(2)  # depth and lr both vary
    expect(page.get_by_test_id("compare-metrics")).to_contain_text("auc")
    dims = page.evaluate("() => document.getElementById('parallel').data[0].dimensions.length")
    assert dims == 3  # params.depth, params.lr, metrics.auc
    response = ui.go(f"/compare?runs={ids[0]}")
    assert response.status == 400
    expect(page.get_by_test_id("error")).to_contain_text("2 to 10 runs")


def test_models_versions_actions_and_history(ui: UI, client: Client) -> None:
    X = pd.DataFrame({"x": np.arange(10.0)})
    modelyard.set_experiment("models")
    for _ in range(2):
        with modelyard.start_run():
            modelyard.log_input(modelyard.data.from_pandas(X, name="xs"), context="training")
            modelyard.sklearn.log_model(
                LinearRegression().fit(X, X["x"]), "model", input_example=X.head(2),
                registered_model_name="demand",
            )  # fmt: skip
    page = ui.page
    ui.go("/models", "models")
    page.get_by_role("link", name="demand").click()
    expect(page.get_by_test_id("versions").locator("tbody tr")).to_have_count(2)
    actions = page.get_by_test_id("actions")
    actions.get_by_label("Alias").fill("champion")
    actions.locator("form").first.get_by_label("→ version").fill("2")
    actions.get_by_role("button", name="Set alias").click()
    expect(page.locator(".flash.ok")).to_contain_text("champion now points to version 2")
    expect(page.get_by_test_id("aliases")).to_contain_text("@champion")
    stage_form = actions.locator("form").nth(1)
    stage_form.get_by_label("Version").fill("1")
    stage_form.get_by_label("to").select_option("Staging")
    stage_form.get_by_role("button", name="Transition").click()
    expect(page.get_by_test_id("versions")).to_contain_text("Staging")
    # A bad request is a message on the page, not a broken one.
    actions.get_by_label("Alias").fill("challenger")
    actions.locator("form").first.get_by_label("→ version").fill("9")
    actions.get_by_role("button", name="Set alias").click()
    expect(page.locator(".flash.error")).to_contain_text("9")
    expect(page.get_by_test_id("events")).to_contain_text("ALIAS_SET")
    ui.screenshot("model")
    page.get_by_test_id("versions").get_by_role("link", name="Version 2").click()
    expect(page.get_by_test_id("version-lineage")).to_contain_text("xs")
    expect(page.get_by_test_id("version-lineage")).to_contain_text("models")
    ui.screenshot("model-version")


def test_endpoint_dashboard(ui: UI, client: Client) -> None:
    rng = np.random.default_rng(3)
    train = pd.DataFrame({"a": rng.normal(0, 1, 500), "b": rng.normal(5, 2, 500)})
    target = 2 * train["a"] + 0.5 * train["b"]
    modelyard.set_experiment("serving")
    with modelyard.start_run():
        modelyard.log_input(modelyard.data.from_pandas(train, name="train"), context="training")
        modelyard.sklearn.log_model(
            LinearRegression().fit(train, target), "model", input_example=train.head(3),
            registered_model_name="reg",
        )  # fmt: skip
    client.create_endpoint("reg", [ServedModel("models:/reg/1")], InferenceLogConfig(enabled=True))
    wait_ready(client, "reg")
    truth = {}
    for i in range(60):
        row = pd.DataFrame({"a": [rng.normal(0, 1)], "b": [rng.normal(5, 2)]})
        client.predict("reg", row, request_id=f"r{i}")
        truth[f"r{i}"] = float(2 * row["a"][0] + 0.5 * row["b"][0] + 0.1)
    for i in range(60, 80):  # `a` drifts far from training, and predictions jump with it
        row = pd.DataFrame({"a": [rng.normal(8, 1)], "b": [rng.normal(5, 2)]})
        client.predict("reg", row, request_id=f"r{i}")
    client.log_ground_truth("reg", truth)

    page = ui.page
    ui.go("/endpoints", "endpoints")
    page.get_by_test_id("endpoints").get_by_role("link", name="reg").click()
    page.wait_for_load_state("load")
    ui.wait_for_charts()
    expect(page.get_by_test_id("served-models")).to_contain_text("READY")
    expect(page.get_by_test_id("live")).to_contain_text("80")  # logged requests
    drift = page.get_by_test_id("drift").locator("tbody tr")
    expect(drift).to_have_count(2)
    # Worst first: `a` moved 8 standard deviations; `b` only carries sampling noise (80 rows).
    expect(drift.nth(0).locator("td").nth(0)).to_have_text("a")
    expect(drift.nth(0)).to_contain_text("drifted")
    expect(drift.nth(1).locator("td").nth(0)).to_have_text("b")
    expect(page.get_by_test_id("accuracy")).to_contain_text("60 requests with ground truth")
    expect(page.get_by_test_id("accuracy")).to_contain_text("MAE 0.1")
    expect(page.get_by_test_id("anomalies")).to_contain_text("outside the rolling band")
    ui.screenshot("endpoint-dashboard")
    # Live numbers refresh on their own (the page polls every few seconds).
    page.wait_for_function(
        "() => document.querySelector('[data-stats]').dataset.updated !== undefined",
        timeout=20_000,
    )


def test_forecast_with_intervals(ui: UI, client: Client) -> None:
    history = pd.DataFrame({"step": np.arange(-30, 0)})
    modelyard.set_experiment("forecast")
    with modelyard.start_run():
        model = IntervalForecaster().fit(history, 10 + 0.2 * history["step"].to_numpy())
        modelyard.sklearn.log_model(
            model, "model", input_example=pd.DataFrame({"step": [1, 2]}),
            registered_model_name="sales-forecast",
        )  # fmt: skip
    client.create_endpoint(
        "sales", [ServedModel("models:/sales-forecast/1")], InferenceLogConfig(enabled=True)
    )
    wait_ready(client, "sales")
    client.predict("sales", pd.DataFrame({"step": np.arange(1, 13)}), request_id="horizon-12")
    ui.go("/endpoints/sales", "endpoint-forecast")
    traces = ui.page.evaluate(
        "() => document.getElementById('forecast').data.map(t => [t.name, t.y.length])"
    )
    assert traces == [["upper", 12], ["interval", 12], ["forecast", 12]]
    widths = ui.page.evaluate(
        "() => { const d = document.getElementById('forecast').data;"
        " return d[0].y.map((u, i) => u - d[1].y[i]); }"
    )
    assert widths[-1] > widths[0]  # the interval widens with the horizon


def test_the_runs_table_pages_back_as_well_as_forward_with_long_tokens(
    ui: UI, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runs table had "Next page" and "First page" only: from page 3 there was no way to
    page 2 but paging forward again. Sorted by a 6000-character CJK param, each keyset token
    carried the last row's value (~24 KB in the URL, past nginx's default 8 KB request line);
    it names the row instead, and the links work in a URL that fits."""
    monkeypatch.setattr(experiments, "PAGE", 2)
    eid = client.create_experiment("long sort keys")
    for i in range(5):
        rid = client.create_run(eid, run_name=f"run-{i}").info.run_id
        client.log_param(rid, "note", "模" * 5999 + str(i))
    page = ui.page
    ui.go(f"/experiments/{eid}?order=params.note+ASC")
    names = page.get_by_test_id("runs").locator("tbody tr td a")

    def shown() -> list[str]:
        return [n for n in names.all_inner_texts() if n.startswith("run-")]

    assert shown() == ["run-0", "run-1"]
    expect(page.get_by_test_id("previous-page")).to_have_count(0)
    for expected in (["run-2", "run-3"], ["run-4"]):
        page.get_by_test_id("next-page").click()
        page.wait_for_load_state("load")
        assert shown() == expected
    assert len(page.url.encode()) < 8 * 1024 - len("GET  HTTP/1.1")  # nginx's request line
    expect(page.get_by_test_id("next-page")).to_have_count(0)
    for expected in (["run-2", "run-3"], ["run-0", "run-1"]):
        page.get_by_test_id("previous-page").click()
        page.wait_for_load_state("load")
        assert shown() == expected
    expect(page.get_by_test_id("previous-page")).to_have_count(0)
    page.get_by_test_id("next-page").click()
    page.wait_for_load_state("load")
    assert shown() == ["run-2", "run-3"]
    ui.screenshot("experiment-runs-previous")


def test_features_pages(ui: UI, tmp_path) -> None:
    repo = make_repo(tmp_path / "repo")
    with FeatureStoreClient(ui.server.address) as store:
        store.apply(repo.objects)
        store.materialize(NOW - timedelta(days=5), NOW - timedelta(days=2))
        store.materialize(NOW - timedelta(days=2), NOW)
    page = ui.page
    ui.go("/features", "features")
    views = page.get_by_test_id("feature-views")
    expect(views).to_contain_text("driver_stats")
    expect(views).to_contain_text("fresh")
    expect(page.get_by_test_id("entities")).to_contain_text("driver_id: INT64")
    expect(page.get_by_test_id("feature-services")).to_contain_text("driver_model")
    views.get_by_role("link", name="driver_stats").click()
    page.wait_for_load_state("load")
    ui.wait_for_charts()
    expect(page.get_by_test_id("materializations").locator("tbody tr")).to_have_count(2)
    expect(page.get_by_test_id("freshness")).to_contain_text("fresh")
    ui.screenshot("feature-view")


def test_user_text_is_escaped_everywhere(ui: UI, client: Client) -> None:
    modelyard.set_experiment("<img src=x onerror=alert('exp')>")
    evil = "<script>alert('param')</script>"
    with modelyard.start_run(run_name="<img src=x onerror=alert('run')>") as run:
        modelyard.log_param("p", evil)
        modelyard.set_tag("t", "\"><svg onload=alert('tag')>")
        modelyard.log_text(evil, "x.txt")
    page = ui.page
    ui.go("/experiments")
    expect(page.get_by_test_id("experiments")).to_contain_text("<img src=x onerror=alert('exp')>")
    ui.go(f"/runs/{run.info.run_id}", "xss-run")
    expect(page.locator("h1")).to_have_text("<img src=x onerror=alert('run')>")
    expect(page.locator("body")).to_contain_text(evil)
    assert page.locator("img[src=x], svg[onload]").count() == 0
    ui.go(f"/experiments/{run.info.experiment_id}?columns=params.p,tags.t")
    expect(page.get_by_test_id("runs")).to_contain_text(evil)
    ui.go(f"/runs/{run.info.run_id}/artifacts?path=x.txt")
    expect(page.get_by_test_id("preview")).to_contain_text(evil)
    # The fixture fails the test if any alert() ran.


def test_user_text_in_charts_is_plain_text(ui: UI, client: Client) -> None:
    """Plotly reads chart text as its own HTML (links, styles): run names in a legend are shown
    as written, not drawn as a link or a huge red label."""
    names = [
        '<a href="https://evil.example/login" target="_top">Session expired: sign in</a>',
        '<span style="font-size:80px;fill:red">HUGE</span> &amp; more',
    ]
    modelyard.set_experiment("markup")
    ids = []
    for name in names:
        with modelyard.start_run(run_name=name) as run:
            for step in range(3):
                modelyard.log_metric("m", step * 1.0, step=step)
            ids.append(run.info.run_id)
    page = ui.page
    ui.go(f"/compare?runs={','.join(ids)}", "compare-markup")
    legend = page.locator("#history-1 .legendtext")
    expect(legend).to_have_count(2)
    assert sorted(legend.all_text_contents()) == sorted(names)
    assert page.locator("#history-1 a, #history-1 [style*='font-size:80px']").count() == 0


def test_a_diverged_run_and_odd_files_still_show(ui: UI, client: Client) -> None:
    """NaN and infinite metric values (a loss that diverged) are gaps in the chart and shown as
    they are in the table; JSON nested deeper than Python's stack is previewed as text."""
    modelyard.set_experiment("diverged")
    with modelyard.start_run(run_name="diverged") as run:
        for step, value in enumerate([1.0, float("nan"), float("inf"), 0.5]):
            modelyard.log_metric("loss", value, step=step)
        modelyard.log_metric("final", float("nan"))
        modelyard.log_text("[" * 5000 + "]" * 5000, "deep.json")
    rid = run.info.run_id
    page = ui.page
    assert ui.go(f"/runs/{rid}", "run-diverged").status == 200
    expect(page.get_by_test_id("metrics")).to_contain_text("nan")
    expect(page.locator("div.chart[data-drawn=true]")).to_have_count(2)
    # Charts are in key order: final, loss.
    assert page.evaluate("() => document.getElementById('metric-2').data[0].y") == [
        1.0,
        None,
        None,
        0.5,
    ]
    assert ui.go(f"/runs/{rid}/artifacts?path=deep.json").status == 200
    expect(page.get_by_test_id("preview")).to_contain_text("[[[[")


def _yaml_alias_bomb(levels: int) -> str:
    """A "billion laughs": 10**levels strings from a few hundred bytes of nested aliases."""
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, levels)]
    return "\n".join([*lines, f"created: *l{levels - 1}", "flavors: {python_function: {}}"])


def _parquet_of_long_strings(path, rows: int, mib: int) -> None:
    """A few KiB on disk that decode to rows * mib MiB."""
    long = pa.array(["a" * (mib * 2**20)] * rows, type=pa.large_string())
    pq.write_table(pa.table({"s": long}), path, compression="zstd", use_dictionary=False)


def test_previews_of_small_files_that_expand_stay_small(ui: UI, client: Client, tmp_path) -> None:
    """Artifacts are whatever a run logged: an MLmodel of nested YAML aliases, or Parquet whose
    values decompress a thousandfold, make a small page that says what it left out."""
    _parquet_of_long_strings(tmp_path / "huge.parquet", rows=50, mib=2)  # 100 MiB decoded
    _parquet_of_long_strings(tmp_path / "long.parquet", rows=8, mib=1)
    modelyard.set_experiment("expanding")
    with modelyard.start_run() as run:
        modelyard.log_text(_yaml_alias_bomb(6), "model/MLmodel")
        modelyard.log_artifact(tmp_path / "huge.parquet")
        modelyard.log_artifact(tmp_path / "long.parquet")
    page = ui.page

    def small_page(path: str) -> None:
        response = page.request.get(f"{ui.url}/runs/{run.info.run_id}/artifacts?path={path}")
        assert response.status == 200
        assert len(response.body()) < 100_000
        ui.go(f"/runs/{run.info.run_id}/artifacts?path={path}")

    small_page("model/MLmodel")
    expect(page.get_by_test_id("preview-note")).to_contain_text("uses YAML aliases")
    expect(page.get_by_test_id("preview")).to_contain_text("*l4")  # the text, unexpanded
    small_page("huge.parquet")
    expect(page.get_by_test_id("preview")).to_contain_text("decode to more than 32 MiB")
    small_page("long.parquet")
    expect(page.get_by_test_id("table-preview").locator("tbody tr")).to_have_count(8)
    expect(page.get_by_test_id("preview-note")).to_contain_text("values cut to 2000 characters")


def test_errors_are_pages_not_tracebacks(ui: UI, client: Client) -> None:
    page = ui.page
    response = ui.go("/runs/0123456789abcdef0123456789abcdef", "error-not-found")
    assert response.status == 404
    expect(page.get_by_test_id("error")).to_contain_text("0123456789abcdef0123456789abcdef")
    assert "Traceback" not in page.content()
    assert ui.go("/no/such/page").status == 404
    ui.go("/runs/0123456789abcdef0123456789abcdef/artifacts?path=../../etc/passwd")
    expect(page.get_by_test_id("error")).to_contain_text("..")
    ui.server.stop(grace=0)  # the services go away; the UI explains instead of failing blank
    response = ui.go("/experiments", "error-unavailable")
    assert response.status == 503
    expect(page.get_by_test_id("error")).to_contain_text("modelyard up")


def test_with_auth_on(secure_ui, tmp_path) -> None:
    ui, admin_token = secure_ui
    admin = Client(ui.server.address, token=admin_token)
    admin.create_principal("vera", ["viewer"])
    vera_token, _ = admin.create_token("vera")
    with Client(ui.server.address, token=admin_token) as c:
        eid = c.create_experiment("secret-project")
        c.create_run(eid, run_name="hidden")
        c.create_experiment("shared")
    page = ui.page
    ui.go("/experiments", "login")
    assert page.url.startswith(ui.url + "/login")
    page.get_by_label("Token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator(".flash.error")).to_contain_text("not accepted")
    page.get_by_label("Token").fill(vera_token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("user")).to_have_text("vera")
    expect(page.get_by_test_id("experiments")).not_to_contain_text("secret-project")
    response = ui.go(f"/experiments/{eid}", "forbidden")
    assert response.status == 403
    page.get_by_role("button", name="Log out").click()
    assert page.url.startswith(ui.url + "/login")
    page.get_by_label("Token").fill(admin_token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("experiments")).to_contain_text("secret-project")
    admin.close()


def test_automl_leaderboard(ui: UI, client: Client, tmp_path) -> None:
    import modelyard.automl
    from tests.automl.conftest import price_frame

    result = modelyard.automl.regress(
        price_frame(), "price", max_trials=3, cv_folds=None, experiment_name="prices",
        output_dir=tmp_path / "automl",
    )  # fmt: skip
    page = ui.page
    ui.go(f"/runs/{result.parent_run_id}")
    page.get_by_role("link", name="AutoML leaderboard").click()
    page.wait_for_load_state("load")
    ui.screenshot("automl")
    board = page.get_by_test_id("leaderboard")
    rows = board.locator("tbody tr")
    expect(rows).to_have_count(3)
    expect(page.locator("body")).to_contain_text("ranked by val_rmse")
    # Best first (lowest RMSE), and the best trial is the one AutoML picked.
    scores = [float(rows.nth(i).locator("td.num").first.inner_text()) for i in range(3)]
    assert scores == sorted(scores)
    expect(rows.nth(0)).to_contain_text("best")
    href = rows.nth(0).get_by_role("link").first.get_attribute("href")
    assert href is not None and result.best_trial.run_id in href
    rows.nth(0).locator("a.source").click()
    page.wait_for_load_state("load")
    expect(page.get_by_test_id("preview")).to_contain_text("import")  # the generated script


def test_times_are_utc_in_tables_and_charts_whatever_the_browsers_zone(
    ui: UI, client: Client, browser
) -> None:
    """The tables showed UTC without saying so, and the metric charts' time axis the browser's
    own time zone: in Tokyo a metric logged at 22:13 UTC was drawn at 07:13 next to a run
    "started 22:13". Both are UTC now, and say so."""
    at = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
    rid = client.create_run("0", start_time=at).info.run_id
    client.log_metric(rid, "loss", 0.5, timestamp=at, step=0)
    context = browser.new_context(timezone_id="Asia/Tokyo")
    try:
        page = context.new_page()
        page.goto(f"{ui.url}/runs/{rid}")
        page.wait_for_function("() => document.getElementById('metric-1')?.dataset.drawn")
        assert page.evaluate("() => new Date(0).getTimezoneOffset()") == -540  # in Tokyo
        expect(page.locator(".card", has_text="Started")).to_contain_text("2023-11-14 22:13:20 UTC")
        page.locator('.chart-controls[data-for="metric-1"] .x-axis').select_option("time")
        chart = "document.getElementById('metric-1')"
        assert page.evaluate(f"() => {chart}.data[0].x[0]") == "2023-11-14 22:13:20.000"
        assert page.evaluate(f"() => {chart}.layout.xaxis.title.text") == "time (UTC)"
    finally:
        context.close()
