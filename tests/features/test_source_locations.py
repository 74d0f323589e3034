"""How sources are compared with the allowed locations (services/feature_store/
source_locations.py): S3 and database places, without a server; the rule's enforcement over
gRPC is in tests/security/test_feature_sources.py."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from modelyard.errors import PermissionDenied
from modelyard.features import FeatureView, FileSource, SqlSource
from modelyard.services.feature_store.source_locations import SourceLocations
from tests.features.repo import make_repo


@pytest.fixture
def view(tmp_path: Path) -> FeatureView:
    return make_repo(tmp_path).stats


def _file(view: FeatureView, path: str) -> FeatureView:
    return replace(view, source=FileSource(path=path))


def _sql(view: FeatureView, url: str) -> FeatureView:
    return replace(view, source=SqlSource(url=url, query="stats"))


def test_s3_sources_inside_a_prefix_pass_and_the_artifact_root_never_does(
    view: FeatureView,
) -> None:
    locations = SourceLocations(
        ["s3://warehouse/features/", "s3://ml-artifacts"],
        server_own=["s3://ml-artifacts/modelyard"],
    )
    locations.check("fv", _file(view, "s3://warehouse/features/drivers/part-0.parquet"))
    locations.check("fv", _file(view, "s3://warehouse/features"))
    locations.check("fv", _file(view, "s3://ml-artifacts/shared/x.parquet"))
    for refused, why in (
        ("s3://warehouse/features-private/x.parquet", "outside the locations"),  # not a folder
        ("s3://warehouse/x.parquet", "outside the locations"),
        ("s3://ml-artifacts/modelyard/1/run/artifacts/data.parquet", "server's own data"),
    ):
        with pytest.raises(PermissionDenied, match=why) as err:
            locations.check("fv", _file(view, refused))
        assert "fv.source.file.path" in str(err.value)


def test_database_places_compare_by_host_port_and_database(view: FeatureView) -> None:
    locations = SourceLocations(
        ["postgresql://Warehouse.internal/analytics", "postgresql://127.0.0.1"],
        server_own=["postgresql+psycopg://modelyard@127.0.0.1:5432/modelyard"],
    )
    # The driver, credentials, the default port and the host's case do not matter.
    locations.check("fv", _sql(view, "postgresql+psycopg://u:p@warehouse.internal:5432/analytics"))
    locations.check("fv", _sql(view, "postgresql://127.0.0.1/scratch?sslmode=require"))
    for refused, why in (
        ("postgresql://warehouse.internal/finance", "outside the locations"),
        ("postgresql://warehouse.internal:6543/analytics", "outside the locations"),
        ("postgresql://127.0.0.1/modelyard", "server's own data"),  # default port: the same
        ("postgresql://warehouse.internal/analytics?host=10.0.0.9", "another server"),
    ):
        with pytest.raises(PermissionDenied, match=why) as err:
            locations.check("fv", _sql(view, refused))
        assert "fv.source.sql.url" in str(err.value)


def test_no_locations_leave_sources_to_admins(view: FeatureView) -> None:
    with pytest.raises(PermissionDenied, match=r"\(none are set\); add its location"):
        SourceLocations([], server_own=[]).check("fv", _file(view, "s3://warehouse/x.parquet"))
