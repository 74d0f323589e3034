"""What users store is printed as stored: names, params and tags with square brackets are text,
never Rich markup (which crashed on `[/]`, and hid `[bold]` and `[red]`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelyard import Client
from modelyard.features import FeatureStoreClient
from tests.cli.test_cli import run
from tests.features.repo import make_repo

BRACKETS = ["exp[/]x", "brackets [bold]x[/bold]", "[red]"]


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # every value on one line, so it can be found whole


@pytest.mark.parametrize("name", BRACKETS)
def test_an_experiment_name_with_brackets_is_created_listed_and_shown(uri: str, name: str) -> None:
    created = run("experiments", "create", name, "--tag", f"t={name}", "--uri", uri)
    assert name in created
    listed = run("experiments", "list", "--uri", uri)
    assert name in listed
    got = run("experiments", "get", "--name", name, "--uri", uri)
    assert got.count(name) == 2  # the name and the tag
    eid = json.loads(run("experiments", "get", "--name", name, "--uri", uri, "--json"))[
        "experiment_id"
    ]
    assert name in run("experiments", "set-tag", eid, "k", name, "--uri", uri)
    assert name in run("experiments", "rename", eid, name + "2", "--uri", uri)


def test_run_names_params_and_tags_with_brackets_are_shown_as_stored(uri: str) -> None:
    with Client(uri) as client:
        rid = client.create_run("0", run_name="brackets [bold]x[/bold]").info.run_id
        client.log_param(rid, "colour", "[red]")
        client.set_tag(rid, "a", "a[/]b")
    listed = run("runs", "list", "-e", "0", "--uri", uri)
    assert "brackets [bold]x[/bold]" in listed and "[red]" in listed
    got = run("runs", "get", rid, "--uri", uri)
    for value in ("brackets [bold]x[/bold]", "[red]", "a[/]b"):
        assert value in got, got
    assert "a[/]b" in run("runs", "set-tag", rid, "b", "a[/]b", "--uri", uri)


def test_model_descriptions_and_tags_with_brackets_are_shown_as_stored(uri: str) -> None:
    """Model names allow no brackets (the server refuses them); what is said about one does."""
    with Client(uri) as client:
        rid = client.create_run("0").info.run_id
        client.log_text(rid, "manifest", "model/MLmodel")
        client.create_model_version("m", f"runs:/{rid}/model", description="[bold]x[/bold]")
        client.set_registered_model_tag("m", "t", "a[/]b")
        client.update_registered_model("m", "[red]")
    assert "[red]" in run("models", "list", "--uri", uri)
    shown = run("models", "get", "m", "--uri", uri)
    for value in ("[red]", "a[/]b", "[bold]x[/bold]"):
        assert value in shown, shown
    assert "[bold]x[/bold]" in run("models", "versions", "m", "--uri", uri)


def test_a_feature_service_detail_keeps_its_brackets(uri: str, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "data")  # its service projects driver_stats[conv_rate,trips]
    with FeatureStoreClient(uri) as store:
        store.apply(repo.objects)
    assert "driver_stats[conv_rate,trips]" in run("features", "list", "--uri", uri)


@pytest.fixture
def uri(server) -> str:
    return server.address
