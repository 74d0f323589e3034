"""Names no definition can hold are answered NOT_FOUND, on PostgreSQL too, which fails any query
holding a NUL character (it was INTERNAL, for admins as for everyone)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.errors import ModelyardError, NotFound
from modelyard.features import FeatureStoreClient
from modelyard.services.common.settings import Settings
from tests.conftest import running_server


@pytest.mark.postgres
def test_a_name_with_nul_is_not_found(postgres_url: str, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, port=0, grace_period=0, backend_store_uri=postgres_url)
    with (
        running_server(settings, ("features",)) as server,
        FeatureStoreClient(server.address) as store,
    ):
        for lookup in (
            lambda: store.get_feature_view("a\x00b"),
            lambda: store.get_feature_service("a\x00b"),
            lambda: store.get_definition("feature_view", "a\x00b", version=3),
            lambda: store.list_materializations("a\x00b"),
        ):
            with pytest.raises(NotFound):
                lookup()
        with pytest.raises(ModelyardError) as err:
            store.get_online_features(["a\x00b:f"], [{"k": 1}])
        assert err.value.code.name in ("NOT_FOUND", "INVALID_ARGUMENT"), err.value
