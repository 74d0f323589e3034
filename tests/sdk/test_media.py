"""Figures, images and tables, logged with MLflow's functions and read back from a real server
in the layout MLflow's UI and loaders expect."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from matplotlib.figure import Figure
from PIL import Image

import modelyard.sklearn
from modelyard.errors import InvalidArgument, NotFound

matplotlib.use("Agg")  # no display: figures render off screen

ROOT = Path(__file__).resolve().parents[2]
MLFLOW_PYTHON = ROOT / "bench" / ".venvs" / "mlflow" / "bin" / "python"
# How MLflow's UI parses a step-indexed image's file name (its JS splits on "+" like this).
STEP_IMAGE = re.compile(
    r"images/(?P<key>[^+]+)\+step\+(?P<step>\d+)\+timestamp\+(?P<timestamp>\d+)"
    r"\+(?P<uuid>[0-9a-f-]{36})(?P<compressed>\+compressed)?\.(?P<ext>png|webp)"
)


def step_image(path: str) -> re.Match[str]:
    """`path` parsed as MLflow's UI parses a step image's name: it must parse."""
    parsed = STEP_IMAGE.fullmatch(path)
    assert parsed is not None, path
    return parsed


def fetch(fluent, run_id: str, path: str, tmp_path: Path) -> Path:
    return Path(fluent.client().download_artifacts(run_id, path, tmp_path / "download"))


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


# -- images --------------------------------------------------------------------------------------

RNG = np.random.default_rng(7)
RGB = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)
RGBA = RNG.integers(0, 256, (4, 7, 4), dtype=np.uint8)
GRAY = RNG.integers(0, 256, (5, 3), dtype=np.uint8)
FLOATS = RNG.random((4, 4, 3))
MASK = RNG.random((3, 6)) > 0.5


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        pytest.param(RGB, RGB, id="uint8-rgb"),
        pytest.param(RGBA, RGBA, id="uint8-rgba"),
        pytest.param(GRAY, GRAY, id="gray-2d"),
        pytest.param(GRAY[:, :, None], GRAY, id="gray-one-channel"),
        pytest.param(GRAY.astype(np.int64), GRAY, id="int64-in-range"),
        # floats in 0..1 are scaled to 0..255, truncating as MLflow does
        pytest.param(FLOATS, (FLOATS * 255).astype(np.uint8), id="float-0-1"),
        pytest.param(MASK, MASK.astype(np.uint8) * 255, id="bool-mask"),
    ],
)
def test_array_image_reads_back_as_the_same_pixels(
    fluent, tmp_path: Path, array: np.ndarray, expected: np.ndarray
) -> None:
    with fluent.start_run() as run:
        info = fluent.log_image(array, "plots/image.png")
    assert info.path == "plots/image.png"
    got = pixels(fetch(fluent, run.info.run_id, "plots/image.png", tmp_path))
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def test_pil_image_is_saved_in_the_format_its_name_gives(fluent, client, tmp_path: Path) -> None:
    picture = Image.fromarray(RNG.integers(0, 256, (8, 9, 3), dtype=np.uint8))
    run_id = client.create_run("0").info.run_id
    client.log_image(run_id, picture, "a.png")
    client.log_image(run_id, picture, "b.jpg")
    with Image.open(fetch(fluent, run_id, "a.png", tmp_path)) as png:
        assert png.format == "PNG"
        np.testing.assert_array_equal(np.asarray(png), np.asarray(picture))
    with Image.open(fetch(fluent, run_id, "b.jpg", tmp_path)) as jpeg:
        assert jpeg.format == "JPEG" and jpeg.size == (9, 8)


def test_float_image_outside_0_1_is_rescaled_with_a_warning(fluent, tmp_path: Path) -> None:
    array = np.array([[-1.0, 0.0], [1.0, 3.0]])
    with fluent.start_run() as run, pytest.warns(UserWarning, match=r"0\.\.1.*rescaling"):
        fluent.log_image(array, "scaled.png")
    got = pixels(fetch(fluent, run.info.run_id, "scaled.png", tmp_path))
    np.testing.assert_array_equal(got, [[0, 63], [127, 255]])


PNG = {"artifact_file": "x.png"}
BLANK = np.zeros((2, 2), dtype=np.uint8)


@pytest.mark.parametrize(
    ("image", "kwargs", "error", "match"),
    [
        (np.zeros((2, 2), dtype=np.complex64), PNG, TypeError, "bools, integers or floats"),
        (np.array([["a", "b"]]), PNG, TypeError, "bools, integers or floats"),
        (np.zeros((2, 2, 5), dtype=np.uint8), PNG, ValueError, "1 .*3 .*or 4 .*not 5"),
        (np.zeros((2, 2, 3, 1), dtype=np.uint8), PNG, ValueError, "2-D .* or 3-D"),
        (np.full((2, 2), 256), PNG, ValueError, r"0\.\.255, found 0\.\.256|found 256"),
        (np.full((2, 2), -1), PNG, ValueError, r"0\.\.255, found -1"),
        (np.array([[np.nan, 0.5]]), PNG, ValueError, "NaN"),
        ([[0, 1], [1, 0]], PNG, TypeError, "numpy.ndarray or a PIL.Image.Image"),
        (BLANK, {"artifact_file": "x.notanimage"}, ValueError, r"\.png"),
        (BLANK, {**PNG, "key": "k"}, TypeError, "not both"),
        (BLANK, {**PNG, "step": 1}, TypeError, "not both"),
        (BLANK, {}, TypeError, "pass one of them"),
        (BLANK, {"key": "a:b"}, ValueError, "rename it"),
    ],
)
def test_bad_image_input_is_refused_before_anything_is_stored(
    fluent, image: object, kwargs: dict, error: type[Exception], match: str
) -> None:
    with fluent.start_run() as run, pytest.raises(error, match=match):
        fluent.log_image(image, **kwargs)
    assert fluent.client().list_artifacts(run.info.run_id) == []


def test_array_image_without_pillow_says_to_install_it(fluent, monkeypatch) -> None:
    for name in ("PIL", "PIL.Image"):
        monkeypatch.setitem(sys.modules, name, None)  # `import PIL.Image` now fails
    with fluent.start_run() as run, pytest.raises(ImportError, match="pip install pillow"):
        fluent.log_image(GRAY, "gray.png")
    assert fluent.client().list_artifacts(run.info.run_id) == []


def test_step_images_are_laid_out_as_mlflow_ui_finds_them(fluent, tmp_path: Path) -> None:
    frame = RNG.integers(0, 256, (50, 100, 3), dtype=np.uint8)  # 100 wide, 50 high
    with fluent.start_run() as run:
        fluent.log_image(frame, key="train/samples", step=3, timestamp=1_700_000_000_000)
        fluent.log_image(frame[:, :, 0], key="train/samples", step=4)
    run_id = run.info.run_id
    files = sorted(f.path for f in fluent.client().list_artifacts(run_id, "images"))
    assert len(files) == 4, files
    parsed = [step_image(p) for p in files]
    assert {m["key"] for m in parsed} == {"train~samples"}  # "/" becomes "~", as MLflow's
    by_step: dict[str, dict[str, str]] = {}
    for path, m in zip(files, parsed, strict=True):
        by_step.setdefault(m["step"], {})["thumb" if m["compressed"] else "full"] = path
        assert m["ext"] == ("webp" if m["compressed"] else "png")
    assert set(by_step) == {"3", "4"}
    step3 = step_image(by_step["3"]["full"])
    assert step3["timestamp"] == "1700000000000"
    # The thumbnail is the full image's name plus "+compressed".
    assert by_step["3"]["thumb"] == by_step["3"]["full"].removesuffix(".png") + "+compressed.webp"
    np.testing.assert_array_equal(
        pixels(fetch(fluent, run_id, by_step["3"]["full"], tmp_path)), frame
    )
    with Image.open(fetch(fluent, run_id, by_step["3"]["thumb"], tmp_path)) as thumb:
        assert thumb.format == "WEBP" and thumb.size == (256, 128)  # longer side 256
    assert fluent.get_run(run_id).data.tags["mlflow.loggedImages"] == "True"


# -- figures -------------------------------------------------------------------------------------


def line_figure() -> Figure:
    figure = Figure(figsize=(4, 3), dpi=100)
    figure.add_subplot().plot([0, 1, 2], [2, 0, 1])
    return figure


def test_matplotlib_figure_is_saved_in_its_extensions_format(fluent, tmp_path: Path) -> None:
    with fluent.start_run() as run:
        fluent.log_figure(line_figure(), "figures/line.png")
        fluent.log_figure(line_figure(), "figures/line.svg")
        fluent.log_figure(line_figure(), "figures/small.png", save_kwargs={"dpi": 50})
    run_id = run.info.run_id
    with Image.open(fetch(fluent, run_id, "figures/line.png", tmp_path)) as png:
        assert png.format == "PNG" and png.size == (400, 300)
    with Image.open(fetch(fluent, run_id, "figures/small.png", tmp_path)) as small:
        assert small.size == (200, 150)  # save_kwargs reach savefig
    svg = fetch(fluent, run_id, "figures/line.svg", tmp_path).read_text()
    assert svg.startswith("<?xml") and "<svg" in svg


def test_plotly_figure_is_saved_as_html(fluent, tmp_path: Path) -> None:
    figure = go.Figure(go.Scatter(x=[0, 1, 2], y=[5, 7, 6], name="latency-series"))
    with fluent.start_run() as run:
        fluent.log_figure(figure, "latency.html")
    html = fetch(fluent, run.info.run_id, "latency.html", tmp_path).read_text()
    assert html.rstrip().endswith("</html>") and "latency-series" in html
    assert "cdn.plot.ly" in html  # plotly.js from its CDN, as MLflow writes it, not inlined


def test_plotly_image_without_kaleido_says_what_to_do(fluent) -> None:
    pytest.importorskip("plotly")
    try:
        import kaleido  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("kaleido is installed here, so plotly can write images")
    with fluent.start_run(), pytest.raises(ImportError, match=r"\.html.*pip install kaleido"):
        fluent.log_figure(go.Figure(), "latency.png")


@pytest.mark.parametrize(
    ("figure", "name", "match"),
    [
        (go.Figure(), "latency.txt", "plotly figure cannot be saved as '.txt'.*name"),
        ({"data": []}, "figure.png", "matplotlib.figure.Figure or a plotly"),
        (np.zeros((3, 3)), "figure.png", "use log_image"),
    ],
)
def test_unsupported_figures_are_refused(fluent, figure: object, name: str, match: str) -> None:
    with fluent.start_run() as run, pytest.raises(TypeError, match=match):
        fluent.log_figure(figure, name)
    assert fluent.client().list_artifacts(run.info.run_id) == []


# -- tables --------------------------------------------------------------------------------------

QA = pd.DataFrame(
    {
        "inputs": ["What is Modelyard?", "What is MLflow?"],
        "score": [0.25, 0.5],
        "passed": [True, False],
        "tokens": [12, 7],
    }
)


def logged_tables(client, run_id: str) -> list[dict[str, str]]:
    return json.loads(client.get_run(run_id).data.tags["mlflow.loggedArtifacts"])


def test_table_round_trips_appends_and_is_listed_in_the_tag(stack) -> None:
    exp = stack.create_experiment("tables")
    run_id = stack.create_run(exp).info.run_id
    stack.log_table(run_id, QA, "evals/qa.json")
    pd.testing.assert_frame_equal(stack.load_table(exp, "evals/qa.json"), QA)
    # Floats keep 15 digits (pandas' default keeps 10, and reads 0.3 back as 0.30000000000000004).
    stack.log_table(run_id, {"third": [1 / 3], "tenth": [0.3]}, "floats.json")
    floats = stack.load_table(exp, "floats.json")
    assert floats["third"][0] == pytest.approx(1 / 3, rel=1e-14) and floats["tenth"][0] == 0.3
    # A second log of the same table appends its rows.
    more = {"inputs": ["Why?"], "score": [1.0], "passed": [True], "tokens": [3]}
    stack.log_table(run_id, more, "evals/qa.json")
    both = stack.load_table(exp, "evals/qa.json", extra_columns=["run_id"])
    expected = pd.concat([QA, pd.DataFrame(more)], ignore_index=True).assign(run_id=run_id)
    pd.testing.assert_frame_equal(both, expected)
    # The tag MLflow's UI reads names the table once, however often it is logged.
    assert logged_tables(stack, run_id) == [
        {"path": "evals/qa.json", "type": "table"},
        {"path": "floats.json", "type": "table"},
    ]
    # Names the search's LIKE would get wrong: "_" is its wildcard, non-ASCII JSON may escape.
    other = stack.create_run(exp).info.run_id
    stack.log_table(other, {"n": [1]}, "evals/q_.json")
    stack.log_table(other, {"n": [2]}, "évals.json")
    assert stack.load_table(exp, "evals/q_.json")["n"].tolist() == [1]
    assert stack.load_table(exp, "évals.json")["n"].tolist() == [2]
    assert len(stack.load_table(exp, "evals/qa.json")) == len(QA) + 1


def test_load_table_joins_runs_and_filters_by_run_ids(fluent) -> None:
    fluent.set_experiment("qa-evals")
    run_ids = []
    for score in (0.1, 0.2, 0.3):
        with fluent.start_run() as run:
            fluent.log_table({"question": ["q"], "score": [score]}, "qa.json")
        run_ids.append(run.info.run_id)
    with fluent.start_run():
        fluent.log_table({"question": ["elsewhere"], "score": [8.0]}, "q_.json")
    # "_" is LIKE's one-character wildcard: the server's filter matches qa.json too.
    assert fluent.load_table("q_.json")["question"].tolist() == ["elsewhere"]
    table = fluent.load_table("qa.json", extra_columns=["run_id"])
    assert sorted(zip(table["run_id"], table["score"], strict=True)) == sorted(
        zip(run_ids, (0.1, 0.2, 0.3), strict=True)
    )
    chosen = fluent.load_table("qa.json", run_ids=run_ids[:2], extra_columns=["run_id"])
    assert sorted(chosen["run_id"]) == sorted(run_ids[:2])


def test_table_column_named_like_an_extra_column_keeps_both(fluent) -> None:
    with fluent.start_run() as run:
        fluent.log_table({"run_id": ["mine"], "value": [1]}, "t.json")
    table = fluent.load_table("t.json", extra_columns=["run_id"])
    assert table["run_id"].tolist() == ["mine"]
    assert table["run_id_"].tolist() == [run.info.run_id]


def test_dict_of_scalars_is_one_row(fluent) -> None:
    with fluent.start_run():
        fluent.log_table({"question": "What is MLflow?", "score": 0.5}, "row.json")
    pd.testing.assert_frame_equal(
        fluent.load_table("row.json"), pd.DataFrame({"question": ["What is MLflow?"], "score": 0.5})
    )


@pytest.mark.parametrize(
    ("data", "name", "error", "match"),
    [
        (QA, "qa.csv", ValueError, r"must end in \.json"),
        (QA, "qa.parquet", ValueError, r"must end in \.json"),
        (QA, "a:b.json", ValueError, "holds ':'"),
        ([1, 2, 3], "qa.json", InvalidArgument, "DataFrame or a dict"),
        (
            {"image": [Image.new("RGB", (2, 2)), "not an image"]},
            "qa.json",
            ValueError,
            "'image' mixes images with other values",
        ),
    ],
)
def test_bad_tables_are_refused(
    fluent, data: object, name: str, error: type[Exception], match: str
) -> None:
    with fluent.start_run() as run, pytest.raises(error, match=match):
        fluent.log_table(data, name)
    assert fluent.client().list_artifacts(run.info.run_id) == []
    assert "mlflow.loggedArtifacts" not in fluent.get_run(run.info.run_id).data.tags


def test_image_cells_are_stored_as_files_the_table_points_to(fluent, tmp_path: Path) -> None:
    shots = [Image.fromarray(RGB), Image.fromarray(GRAY)]
    with fluent.start_run() as run:
        fluent.log_table({"prompt": ["a dog", "a cat"], "output": shots}, "evals/gen.json")
    table = fluent.load_table("evals/gen.json")
    assert table["prompt"].tolist() == ["a dog", "a cat"]
    for cell, shot in zip(table["output"], shots, strict=True):
        assert cell["type"] == "image"
        assert re.fullmatch(r"table_images/evals/gen/[0-9a-f-]{36}\.png", cell["filepath"])
        assert cell["compressed_filepath"] == cell["filepath"].removesuffix(".png") + ".webp"
        stored = fetch(fluent, run.info.run_id, cell["filepath"], tmp_path)
        np.testing.assert_array_equal(pixels(stored), np.asarray(shot))
        with Image.open(fetch(fluent, run.info.run_id, cell["compressed_filepath"], tmp_path)) as t:
            assert t.format == "WEBP" and max(t.size) == 256


def test_load_table_nobody_logged_says_so(fluent) -> None:
    with fluent.start_run() as run:
        fluent.log_table(QA, "qa.json")
    with pytest.raises(NotFound, match=r"logged a table at 'missing\.json'; check the name"):
        fluent.load_table("missing.json")
    with pytest.raises(NotFound, match="none of runs"):
        fluent.load_table("qa.json", run_ids=["0" * 32])
    with pytest.raises(InvalidArgument, match=r"extra_columns \['nope'\]"):
        fluent.load_table("qa.json", extra_columns=["nope"])
    with pytest.warns(UserWarning, match="logged no table"):
        found = fluent.load_table("qa.json", run_ids=[run.info.run_id, "0" * 32])
    assert len(found) == len(QA)
    fluent.client().delete_artifact(run.info.run_id, "qa.json")
    with pytest.raises(NotFound, match="the file is gone"):
        fluent.load_table("qa.json")


@pytest.mark.skipif(
    not MLFLOW_PYTHON.exists(), reason="MLflow's venv (bench/.venvs/mlflow) is not installed"
)
def test_mlflow_reads_the_table_file(fluent, tmp_path: Path) -> None:
    """MLflow's own table reader, in its own venv, reads the file Modelyard stored."""
    with fluent.start_run() as run:
        fluent.log_table(QA, "qa.json")
        fluent.log_table(QA.iloc[:1], "qa.json")
    local = fetch(fluent, run.info.run_id, "qa.json", tmp_path)
    script = (
        "import sys; from mlflow.tracking.client import MlflowClient; "
        "frame = MlflowClient.__new__(MlflowClient)._read_from_file(sys.argv[1]); "
        "print(frame.to_json(orient='records'))"
    )
    done = subprocess.run(
        [str(MLFLOW_PYTHON), "-c", script, str(local)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    expected = pd.concat([QA, QA.iloc[:1]], ignore_index=True)
    assert json.loads(done.stdout) == json.loads(expected.to_json(orient="records"))


# -- autolog -------------------------------------------------------------------------------------


@pytest.fixture
def autolog_off(fluent) -> Iterator[None]:
    try:
        yield
    finally:
        modelyard.sklearn.autolog(disable=True)


def test_autolog_turns_on_sklearn_with_the_common_arguments(fluent, autolog_off) -> None:
    from sklearn.linear_model import LinearRegression

    X, y = np.arange(12.0).reshape(6, 2), np.arange(6.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # log_traces and exclude_flavors reach no flavor's autolog
        fluent.autolog(log_models=False, extra_tags={"team": "search"}, log_traces=False)
    LinearRegression().fit(X, y)
    run = fluent.last_active_run()
    assert run.data.params["fit_intercept"] == "True"
    assert run.data.tags["team"] == "search"
    assert "training_r2_score" in run.data.metrics
    assert "model" not in {f.path for f in fluent.client().list_artifacts(run.info.run_id)}

    fluent.autolog(disable=True, exclude_flavors=["sklearn", "tensorflow"])  # sklearn stays on
    LinearRegression().fit(X, y)
    second = fluent.last_active_run()
    assert second.info.run_id != run.info.run_id and second.data.params

    fluent.autolog(disable=True)
    LinearRegression().fit(X, y)
    assert fluent.last_active_run().info.run_id == second.info.run_id  # no new run
