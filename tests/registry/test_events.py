"""The registry's change feed: a reader that follows events by id (WatchModelEvents, a page of
ListModelEvents with since_event_id) sees every committed event; a model's history is its own,
across renames, and never another model's of the same name."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from modelyard import Client
from modelyard.entities.registry import Stage
from modelyard.services.common.settings import Settings
from tests.conftest import running_server
from tests.races import wait_until_blocking
from tests.registry.test_api import logged_model


@pytest.fixture
def pg_client(postgres_url: str, tmp_path: Path) -> Iterator[Client]:
    settings = Settings(home=tmp_path, port=0, grace_period=0, backend_store_uri=postgres_url)
    with running_server(settings) as server, Client(server.address, timeout=60) as c:
        yield c


@pytest.mark.postgres
def test_a_reader_by_id_never_passes_an_event_committed_after_it(
    pg_client: Client, postgres_url: str
) -> None:
    """PostgreSQL draws ids when rows are inserted, and transactions commit in any order: a
    write that drew its event id and then waited (here on a row another session holds) used to
    commit after a later write's event had been read, and readers following `id > last` never
    saw it (3-5% of events under 12 concurrent writers; serving missed alias moves)."""
    c = pg_client
    rid = logged_model(c)
    for _ in range(2):
        c.create_model_version("slow", f"runs:/{rid}/model")
    c.transition_model_version_stage("slow", 2, Stage.PRODUCTION)
    c.create_registered_model("quick")
    start = c.list_model_events(max_results=1, newest_first=True)[0].event_id

    url = make_url(postgres_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False)) as holder:
        # Another session holds version 2's row, so archiving it (below) waits on it.
        holder.execute("SELECT 1 FROM model_versions WHERE version = 2 FOR UPDATE")
        moved = threading.Thread(
            target=c.transition_model_version_stage,
            args=("slow", 1, Stage.PRODUCTION, True),
        )
        moved.start()

        wait_until_blocking(holder, "archiving update waiting on the held row")
        c.set_registered_model_tag("quick", "k", "v")  # commits while the move waits
        first = c.list_model_events(since_event_id=start)
        holder.rollback()  # let the move go on and commit
        moved.join(30)
        assert not moved.is_alive()

    last = first[-1].event_id if first else start
    then = c.list_model_events(since_event_id=last)
    everything = c.list_model_events(since_event_id=start)
    assert [e.event_id for e in first + then] == [e.event_id for e in everything]
    assert [e.event_type for e in everything] == [
        "MODEL_TAG_SET",
        "STAGE_TRANSITIONED",
        "STAGE_TRANSITIONED",
    ]


def test_history_follows_the_model_across_renames_and_not_its_old_name(
    db_client: Client,
) -> None:
    c = db_client
    rid = logged_model(c)
    c.create_model_version("old", f"runs:/{rid}/model")
    c.rename_registered_model("old", "new")
    c.set_registered_model_tag("new", "team", "fraud")
    kinds = ["MODEL_CREATED", "VERSION_CREATED", "VERSION_READY", "MODEL_RENAMED", "MODEL_TAG_SET"]
    assert [e.event_type for e in c.list_model_events("new")] == kinds
    # Asked by a name it no longer has, the history is still that model's (the last one so
    # called), until another model takes the name: then only the newcomer's own.
    assert [e.event_type for e in c.list_model_events("old")] == kinds
    c.create_registered_model("old")
    assert [e.event_type for e in c.list_model_events("old")] == ["MODEL_CREATED"]
    assert [e.event_type for e in c.list_model_events("new")] == kinds
    # A deleted model's history stays readable by its name.
    c.delete_registered_model("new")
    assert [e.event_type for e in c.list_model_events("new")] == [*kinds, "MODEL_DELETED"]
    assert c.list_model_events("never-existed") == []


def test_watching_a_model_by_name_sees_its_events_after_a_rename(db_client: Client) -> None:
    c = db_client
    c.create_registered_model("watched")
    since = c.list_model_events("watched")[-1].event_id
    c.rename_registered_model("watched", "renamed")
    c.set_registered_model_tag("renamed", "k", "v")
    seen = []
    for event in c.watch_model_events("watched", since_event_id=since, timeout=30):
        seen.append(event.event_type)
        if len(seen) == 2:
            break
    assert seen == ["MODEL_RENAMED", "MODEL_TAG_SET"]
