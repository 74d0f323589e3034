"""Where editors may point feature view sources: inside `features.source_locations` (the secure
fixture lists the test's directory), never at the server's own data, and anywhere for admins.
The server reads sources with its own access, so a source elsewhere would let an editor read
what the server can: other teams' artifacts, mounted keys."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from modelyard.entities.common import PermissionLevel as L
from modelyard.errors import InvalidArgument, PermissionDenied
from modelyard.features import FeatureStoreClient, FeatureView, FileSource, SqlSource
from tests.features.repo import NOW, Repo, make_repo
from tests.security.conftest import Secure


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return make_repo(tmp_path / "repo")


@pytest.fixture
def elsewhere(tmp_path_factory: pytest.TempPathFactory, repo: Repo) -> Path:
    """The repo's data, copied outside the allowed location."""
    outside = tmp_path_factory.mktemp("elsewhere") / "driver_stats.parquet"
    shutil.copy(repo.path, outside)
    return outside


@pytest.fixture
def editor(secure: Secure) -> Iterator[FeatureStoreClient]:
    secure.admin.create_principal("eddie", ["editor"])
    token, _ = secure.admin.create_token("eddie")
    with FeatureStoreClient(secure.address, token) as client:
        yield client


def _at(view: FeatureView, path: str | Path) -> FeatureView:
    assert isinstance(view.source, FileSource)
    return replace(view, source=replace(view.source, path=str(path)))


def _sql(view: FeatureView, url: str) -> FeatureView:
    return replace(view, source=SqlSource(url=url, query="SELECT * FROM stats"))


def _refused(client: FeatureStoreClient, view: FeatureView, *expected: str) -> str:
    with pytest.raises(PermissionDenied) as err:
        client.apply([view])
    message = str(err.value)
    for part in ("definitions[0].feature_view.source.", *expected):
        assert part in message
    return message


def test_an_editor_may_use_sources_inside_the_locations_only(
    secure: Secure, editor: FeatureStoreClient, repo: Repo, elsewhere: Path
) -> None:
    assert [s.action for s in editor.apply(repo.objects)] == ["create"] * 3

    outside = replace(_at(repo.stats, elsewhere), name="outside_stats")
    _refused(editor, outside, str(elsewhere), "features.source_locations")
    with pytest.raises(PermissionDenied):
        editor.apply([outside], dry_run=True)  # a plan is refused as the apply would be
    # Nothing of the refused view was stored.
    with FeatureStoreClient(secure.address, secure.admin_token) as admin:
        assert [v.name for v in admin.list_feature_views()] == ["driver_stats"]


def test_climbing_out_or_a_link_out_of_a_location_is_refused(
    editor: FeatureStoreClient, repo: Repo, elsewhere: Path, tmp_path: Path
) -> None:
    editor.apply([repo.driver])
    climbing = tmp_path / "repo" / ".." / ".." / elsewhere.parent.name / elsewhere.name
    _refused(editor, _at(repo.stats, climbing), "'..'")
    link = tmp_path / "repo" / "linked.parquet"
    link.symlink_to(elsewhere)
    _refused(editor, _at(repo.stats, link), "outside the locations")
    _refused(editor, _at(repo.stats, f"file://{link}"), "outside the locations")


def test_the_servers_own_data_is_no_source_even_inside_a_location(
    secure: Secure, editor: FeatureStoreClient, repo: Repo
) -> None:
    """The secure fixture's home (database, online store, artifacts) lies inside the allowed
    directory."""
    home = secure.settings.home_dir
    editor.apply([repo.driver])
    _refused(editor, _at(repo.stats, home / "online.db"), "server's own data")
    _refused(editor, _at(repo.stats, secure.settings.artifact_root), "server's own data")
    _refused(editor, _sql(repo.stats, secure.settings.database_url), "server's own data")


def test_sql_sources_are_held_to_the_same_locations(
    editor: FeatureStoreClient, repo: Repo, tmp_path: Path
) -> None:
    editor.apply([repo.driver])
    # A SQLite file is a local file: the directory's location covers it.
    inside = _sql(repo.stats, f"sqlite:///{tmp_path / 'warehouse.db'}")
    assert editor.apply([inside])[0].action == "create"
    message = _refused(
        editor,
        _sql(repo.stats, "postgresql://analyst:s3cret@10.1.2.3/warehouse"),
        "postgresql://analyst:***@10.1.2.3/warehouse",
        "outside the locations",
    )
    assert "s3cret" not in message
    # A query parameter that picks another server is refused before any location is compared.
    _refused(
        editor, _sql(repo.stats, f"sqlite:///{tmp_path / 'w.db'}?host=10.9.9.9"), "host", "another"
    )


def test_admins_choose_any_source_and_editors_may_edit_around_it(
    secure: Secure, editor: FeatureStoreClient, repo: Repo, elsewhere: Path
) -> None:
    with FeatureStoreClient(secure.address, secure.admin_token) as admin:
        admin.apply([repo.driver, _at(repo.stats, elsewhere)])
        admin.set_permission("feature_view", "driver_stats", "eddie", L.EDIT)
    # The source stays where the admin put it: the editor's change is the description alone.
    moved_not = replace(_at(repo.stats, elsewhere), description="from the admin's source")
    assert editor.apply([moved_not])[0].action == "update"
    # Moving it is a new choice of source, held to the locations.
    other = elsewhere.with_name("other.parquet")
    shutil.copy(elsewhere, other)
    _refused(editor, _at(repo.stats, other), "outside the locations")


def test_each_caller_writes_training_sets_into_its_own_folder(
    secure: Secure, editor: FeatureStoreClient, repo: Repo
) -> None:
    """With auth on, output_uri lies in training-sets/<caller>/: no one overwrites another's."""
    editor.apply(repo.objects)
    area = f"{secure.settings.artifact_root}/training-sets"
    rows = pd.DataFrame({"driver_id": [1], "event_timestamp": [NOW]})
    job = editor.get_historical_features(
        rows, ["driver_stats:trips"], output_uri=f"{area}/eddie/train.parquet"
    )
    assert job.to_df()["trips"].tolist() == [35]
    assert job.summary is not None and job.summary.output_sha256
    for elsewhere in (f"{area}/alice/train.parquet", f"{area}/train.parquet"):
        with pytest.raises(InvalidArgument) as err:
            editor.get_historical_features(
                rows, ["driver_stats:trips"], output_uri=elsewhere
            ).to_arrow()
        assert f"{area}/eddie/" in str(err.value)
