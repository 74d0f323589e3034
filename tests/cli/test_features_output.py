"""`modelyard features` shows definitions as plain values, never Python reprs, and its --json
gives lists, seconds and booleans rather than a sentence."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from modelyard.features import FeatureStoreClient
from tests.cli.test_cli import run
from tests.features.repo import make_repo

# What a repr looks like: `Entity(name=`, `<ValueType.INT64: 'INT64'>`, `2 days, 0:00:00`, `None`.
REPR = re.compile(r"\w+\(\w+=|<\w+\.\w+: |\d+ days?, \d|\bNone\b|\bFalse\b|\bTrue\b")


@pytest.fixture
def uri(server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("COLUMNS", "200")
    with FeatureStoreClient(server.address) as store:
        store.apply(make_repo(tmp_path / "data").objects)
    return str(server.address)


def test_describe_shows_entities_and_services_as_key_value_tables(uri: str) -> None:
    entity = run("features", "describe", "driver", "--kind", "entity", "--uri", uri)
    assert not REPR.search(entity), entity
    assert re.search(r"join_keys\s*│\s*driver_id \(INT64\)", entity), entity
    service = run("features", "describe", "driver_model", "--kind", "feature_service", "--uri", uri)
    assert not REPR.search(service), service
    assert re.search(r"features\.driver_stats\s*│\s*conv_rate, trips", service), service
    view = run("features", "describe", "driver_stats", "--uri", uri)
    assert not REPR.search(view), view
    assert re.search(r"ttl\s*│\s*1d\b", view) and re.search(r"online\s*│\s*yes", view), view


def test_json_gives_structured_fields(uri: str) -> None:
    found = json.loads(run("features", "list", "--uri", uri, "--json"))["definitions"]
    listed = {r["name"]: r for r in found}
    assert listed["driver"]["keys"] == ["driver_id"]
    assert listed["driver_stats"]["keys"] == ["driver"]
    assert (listed["driver_stats"]["ttl_seconds"], listed["driver_stats"]["online"]) == (
        86400,
        True,
    )
    assert listed["driver_model"]["projections"] == [
        {"feature_view": "driver_stats", "features": ["conv_rate", "trips"]}
    ]
    entity = json.loads(
        run("features", "describe", "driver", "--kind", "entity", "--uri", uri, "--json")
    )
    assert entity["definition"]["join_keys"] == [{"name": "driver_id", "dtype": "INT64"}]


def test_list_shows_ttl_and_online_plainly(uri: str, tmp_path: Path) -> None:
    with FeatureStoreClient(uri) as store:
        stats = store.get_feature_view("driver_stats")
        store.apply([replace(stats, ttl=timedelta(days=2), online=False)], partial=True)
    listed = run("features", "list", "--uri", uri)
    assert "ttl 2d, online no" in listed, listed
    assert not REPR.search(listed), listed


def test_a_plan_shows_only_the_source_fields_that_change(uri: str, tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "data")
    moved = tmp_path / "moved.parquet"
    moved.write_bytes(repo.path.read_bytes())
    file = tmp_path / "defs.py"
    file.write_text(
        "from tests.features.repo import make_repo\n"
        "from dataclasses import replace\n"
        "from pathlib import Path\n"
        f"repo = make_repo(Path({str(tmp_path / 'data')!r}))\n"
        "driver, service = repo.driver, repo.service\n"
        f"stats = replace(repo.stats, source=replace(repo.stats.source, path={str(moved)!r}))\n"
    )
    planned = json.loads(run("features", "apply", str(file), "--dry-run", "--uri", uri, "--json"))
    changes = {s["name"]: s["changes"] for s in planned["plan"]}
    assert changes["driver_stats"] == [f"source.path: {repo.path} -> {moved}"]
    plan = run("features", "apply", str(file), "--dry-run", "--uri", uri)
    assert "source.path:" in plan and "FileSource" not in plan, plan


def test_a_missing_online_value_shows_a_dash(uri: str) -> None:
    shown = run(
        "features", "get-online", "--feature", "driver_stats:trips",
        "--entity", '{"driver_id": 999}', "--uri", uri,
    )  # fmt: skip
    assert "- (NOT_FOUND)" in shown and "None" not in shown, shown
