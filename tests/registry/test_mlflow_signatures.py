"""Registry methods take MlflowClient's arguments, in its order, and keep what they are given."""

from __future__ import annotations

import pytest

from modelyard import Client
from modelyard.errors import InvalidArgument
from tests.registry.test_api import logged_model


def test_create_model_version_takes_mlflow_arguments_and_keeps_the_run_link(
    db_client: Client,
) -> None:
    """MLflow's fifth positional argument is run_link: it was stored as the description, and
    run_link= raised TypeError."""
    rid = logged_model(db_client)
    link = f"https://ci.example/runs/{rid}"
    mv = db_client.create_model_version("linked", f"runs:/{rid}/model", rid, None, link)
    assert (mv.run_link, mv.description) == (link, "")
    mv = db_client.create_model_version(
        "linked", f"runs:/{rid}/model", run_link="l2", description="second"
    )
    assert (mv.run_link, mv.description) == ("l2", "second")
    assert db_client.get_model_version("linked", 1).run_link == link
    found = {v.version: v.run_link for v in db_client.search_model_versions("name = 'linked'")}
    assert found == {1: link, 2: "l2"}
    latest = db_client.get_registered_model("linked").latest_versions
    assert [v.run_link for v in latest] == ["l2"]
    # MLflow's logged-model arguments are refused by name, rather than ignored.
    with pytest.raises(InvalidArgument, match="model_id"):
        db_client.create_model_version("linked", f"runs:/{rid}/model", model_id="m-1")


def test_version_tags_take_mlflow_stage_argument(client: Client) -> None:
    """MlflowClient's set/delete_model_version_tag take stage= in place of a version (the
    newest version in that stage); ported calls using it raised TypeError."""
    rid = logged_model(client)
    for _ in range(2):
        client.create_model_version("staged", f"runs:/{rid}/model")
    client.transition_model_version_stage("staged", 1, "Production")
    client.set_model_version_tag("staged", key="k", value="v", stage="Production")
    assert [client.get_model_version("staged", n).tags for n in (1, 2)] == [{"k": "v"}, {}]
    client.delete_model_version_tag("staged", key="k", stage="production")
    assert client.get_model_version("staged", 1).tags == {}
    with pytest.raises(InvalidArgument, match="stage"):
        client.set_model_version_tag("staged", key="k", value="v", stage="Staging")
    with pytest.raises(InvalidArgument, match="version or stage"):
        client.set_model_version_tag("staged", key="k", value="v")
    with pytest.raises(InvalidArgument, match="version or stage"):
        client.delete_model_version_tag("staged", 1, "k", stage="Production")
