"""Who may take a version out of Production is decided on the stage the move finds, not the one
the call was authorized on."""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
import pytest
from sqlalchemy.engine import make_url

from modelyard.entities.common import PermissionLevel as L
from modelyard.entities.registry import Stage
from modelyard.errors import PermissionDenied
from tests.races import wait_until_blocking
from tests.security.conftest import Secure


@pytest.mark.postgres
def test_an_editor_cannot_move_a_version_out_of_production_it_reached_meanwhile(
    make_secure: Callable[..., Secure], postgres_url: str
) -> None:
    """An EDIT grantee's move of a Staging version was authorized on "Staging"; if an owner
    moved it to Production before the move took the row, it used to go through and take the
    Production version out of Production, which needs MANAGE."""
    secure = make_secure(backend_store_uri=postgres_url)
    owner = secure.user("owner", "editor")
    editor = secure.user("editor", "viewer")
    rid = owner.create_run(owner.create_experiment("e")).info.run_id
    owner.log_text(rid, "flavors: {}\n", "model/MLmodel")
    owner.create_model_version("m", f"runs:/{rid}/model")
    owner.transition_model_version_stage("m", 1, Stage.STAGING)
    owner.set_registered_model_permission("m", "editor", L.EDIT)

    url = make_url(postgres_url).set(drivername="postgresql")
    outcome: list[BaseException | None] = []

    def archive() -> None:
        try:
            editor.transition_model_version_stage("m", 1, Stage.ARCHIVED)
            outcome.append(None)
        except Exception as err:  # the test asserts on it
            outcome.append(err)

    with psycopg.connect(url.render_as_string(hide_password=False)) as holder:
        # The owner's move to Production, as a session that holds the model's row (as every
        # registry write does) until it commits.
        holder.execute("SELECT 1 FROM registered_models WHERE name = 'm' FOR UPDATE")
        holder.execute("UPDATE model_versions SET current_stage = 'Production' WHERE version = 1")
        mover = threading.Thread(target=archive)
        mover.start()

        wait_until_blocking(holder, "the editor's move waiting on the model's row")
        holder.commit()
    mover.join(30)
    assert not mover.is_alive()

    assert isinstance(outcome[0], PermissionDenied), outcome
    assert "MANAGE" in str(outcome[0])
    assert owner.get_model_version("m", 1).current_stage == Stage.PRODUCTION
