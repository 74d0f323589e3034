"""`modelyard features ...` against a real server: apply a definitions file, look, materialize."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from modelyard.cli import app
from modelyard.errors import InvalidArgument, NotFound
from modelyard.features import FeatureStoreClient
from tests.cli.test_cli import run, runner
from tests.features.repo import NOW, make_repo

DEFINITIONS = """
from datetime import timedelta

from modelyard.features import (
    Entity, FeatureService, FeatureView, Field, FileSource, Float64, Int64
)

driver = Entity(name="driver", join_keys=["driver_id"])
driver_stats = FeatureView(
    name="driver_stats",
    entities=[driver],
    ttl=timedelta(days={ttl}),
    schema=[Field(name="conv_rate", dtype=Float64), Field(name="trips", dtype=Int64)],
    source=FileSource(path={path!r}, created_timestamp_column="created"),
)
{service}
"""
SERVICE = 'driver_model = FeatureService(name="driver_model", features=[driver_stats])'


def _write(tmp_path: Path, path: Path, ttl: int, service: bool) -> Path:
    file = tmp_path / "features_repo.py"
    file.write_text(DEFINITIONS.format(ttl=ttl, path=str(path), service=SERVICE if service else ""))
    return file


def test_apply_plan_list_describe_materialize_get_online(server, tmp_path: Path) -> None:
    uri = server.address
    repo = make_repo(tmp_path / "data")
    file = _write(tmp_path, repo.path, 1, service=True)

    dry = run("features", "apply", str(file), "--dry-run", "--uri", uri)
    assert "plan" in dry and "create" in dry and "dry run: 3 change(s) not applied" in dry
    with FeatureStoreClient(uri) as store:
        assert store.list_feature_views() == []

    applied = json.loads(run("features", "apply", str(file), "--uri", uri, "--json"))
    assert applied["applied"] is True
    assert sorted((s["action"], s["name"]) for s in applied["plan"]) == [
        ("create", "driver"),
        ("create", "driver_model"),
        ("create", "driver_stats"),
    ]
    # Dropping the service from the file deletes it; a longer TTL is an update.
    changed = run("features", "apply", str(_write(tmp_path, repo.path, 2, False)), "--uri", uri)
    assert "delete" in changed and "update" in changed and "ttl" in changed

    listed = json.loads(run("features", "list", "--uri", uri, "--json"))
    assert [(r["kind"], r["name"]) for r in listed["definitions"]] == [
        ("entity", "driver"),
        ("feature_view", "driver_stats"),
    ]
    described = run("features", "describe", "driver_stats", "--uri", uri)
    assert "version 2" in described and "conv_rate" in described

    start = NOW - timedelta(days=5)
    done = json.loads(
        run("features", "materialize", start.isoformat(), NOW.isoformat(), "--uri", uri, "--json")
    )
    assert [(m["feature_view"], m["rows"]) for m in done["runs"]] == [("driver_stats", 2)]
    described = run("features", "describe", "driver_stats", "--uri", uri)
    assert "materializations" in described

    got = json.loads(
        run(
            "features",
            "get-online",
            "--feature",
            "driver_stats:trips",
            "--entity",
            '{"driver_id": 1}',
            "--entity",
            '{"driver_id": 3}',
            "--uri",
            uri,
            "--json",
        )
    )
    assert got["values"] == {"driver_id": [1, 3], "trips": [35, None]}
    assert got["statuses"] == {"trips": ["PRESENT", "NOT_FOUND"]}
    shown = run(
        "features",
        "get-online",
        "--feature",
        "driver_stats:trips",
        "--entity",
        '{"driver_id": 3}',
        "--uri",
        uri,
    )
    assert "NOT_FOUND" in shown


def test_errors_say_what_to_do(server, tmp_path: Path) -> None:
    uri = server.address
    bad_row = run(
        "features", "get-online", "--feature", "v:f", "--entity", "driver=1", "--uri", uri, ok=False
    )
    assert "not a JSON object" in bad_row
    # What is missing is named by its flag, not by the API's field (features, entities).
    no_features = run("features", "get-online", "--entity", '{"driver_id": 1}', ok=False)
    assert "--feature view:feature" in no_features and "--service" in no_features
    no_rows = run("features", "get-online", "--feature", "v:f", "--uri", uri, ok=False)
    assert "--entity" in no_rows and "entities is empty" not in no_rows
    bad_time = run("features", "materialize", "yesterday", "--uri", uri, ok=False)
    assert "not an ISO time" in bad_time
    missing = run("features", "apply", str(tmp_path / "nope.py"), "--uri", uri, ok=False)
    assert "Invalid value" in missing and "path" in missing
    # Server errors reach main(), which prints them; the message names the view and the fix.
    unknown = runner.invoke(app, ["features", "describe", "nope", "--uri", uri])
    assert isinstance(unknown.exception, NotFound)
    assert "'nope'" in str(unknown.exception) and "modelyard features apply" in str(
        unknown.exception
    )


def test_a_file_that_defines_nothing_deletes_nothing_unless_told(server, tmp_path: Path) -> None:
    """Applying is declarative: what the file lacks is deleted. A file that defines nothing (the
    definitions inside a function, the wrong file) deleted every view, its online rows and its
    pushed data, without a word."""
    uri = server.address
    repo = make_repo(tmp_path / "data")
    run("features", "apply", str(_write(tmp_path, repo.path, 1, service=True)), "--uri", uri)
    empty = tmp_path / "empty.py"
    empty.write_text("def definitions():\n    pass\n")

    refused = runner.invoke(app, ["features", "apply", str(empty), "--uri", uri])
    assert isinstance(refused.exception, InvalidArgument), refused.output
    said = str(refused.exception)
    assert "defines no entity, feature view or feature service" in said
    assert "delete all 3 definitions" in said and "--delete-all" in said
    with FeatureStoreClient(uri) as store:
        assert [v.name for v in store.list_feature_views()] == ["driver_stats"]

    dry = run("features", "apply", str(empty), "--dry-run", "--uri", uri)  # shows the plan
    assert "delete" in dry and "driver_stats" in dry
    run("features", "apply", str(empty), "--delete-all", "--uri", uri)
    with FeatureStoreClient(uri) as store:
        assert store.list_feature_views() == []
