"""A caller who may read only some models or experiments, through more grants than a query may
bind parameters.

The registry's searches and event listings, and tracking's experiment search, read the caller's
granted ids and bound each as a parameter (model_id IN (?, ?, ...)): past the backend's limit
(PostgreSQL: 65,535; SQLite: as built, 32,766 by default, 250,000 in Debian's) they failed, as
INTERNAL. The grants are now a subquery of the grants table, however many.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from sqlalchemy import Table, insert

from modelyard.entities.common import PermissionLevel as L
from modelyard.services.common.db import Database
from modelyard.services.registry.store.schema import registered_model_permissions
from modelyard.services.tracking.store.schema import experiment_permissions
from tests.security.conftest import Secure


def parameter_limit(db: Database) -> int:
    """How many parameters one statement may bind on `db`."""
    if not db.is_sqlite:
        return 65_535  # PostgreSQL's protocol counts them in 16 bits
    with db.read() as conn:
        driver = conn.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        return driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)


def test_a_reader_with_more_grants_than_parameters_searches(
    make_secure: Callable[..., Secure], database_url: str
) -> None:
    secure = make_secure(database_url)
    alice = secure.user("alice", "editor")
    bob = secure.user("bob", "viewer")
    rid = alice.create_run(alice.create_experiment("e")).info.run_id
    alice.log_text(rid, "m", "model/MLmodel")
    for name in ("visible", "hidden"):
        alice.create_model_version(name, f"runs:/{rid}/model")
    alice.set_registered_model_permission("visible", "bob", L.READ)
    _grant_many(database_url, registered_model_permissions, "bob")
    assert [m.name for m in bob.search_registered_models()] == ["visible"]
    assert [m.name for m in bob.search_registered_models("name LIKE 'vis%'")] == ["visible"]
    assert {v.name for v in bob.search_model_versions()} == {"visible"}
    assert {e.model_name for e in bob.list_model_events()} == {"visible"}


def test_a_reader_with_more_grants_than_parameters_searches_experiments(
    make_secure: Callable[..., Secure], database_url: str
) -> None:
    secure = make_secure(database_url)
    alice = secure.user("alice", "editor")
    bob = secure.user("bob", "viewer")
    visible, _ = (alice.create_experiment(name) for name in ("visible", "hidden"))
    alice.set_experiment_permission(visible, "bob", L.READ)
    _grant_many(database_url, experiment_permissions, "bob")
    assert [e.name for e in bob.search_experiments()] == ["visible"]
    assert [e.name for e in bob.search_experiments(filter_string="name LIKE 'vis%'")] == ["visible"]


def _grant_many(database_url: str, table: Table, principal: str) -> None:
    """As many grants to `principal` as one statement may bind parameters, on ids of nothing
    here (what matters is how many a search must consider), written at once into the store's
    database rather than by an RPC each."""
    db = Database(database_url)
    try:
        many = parameter_limit(db)
        with db.write() as conn:
            conn.execute(
                insert(table),
                [
                    {"resource_id": str(10**12 + i), "principal": principal, "level": int(L.READ)}
                    for i in range(many)
                ],
            )
    finally:
        db.dispose()
