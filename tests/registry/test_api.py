"""The model registry over real gRPC: registration, aliases, stages, events, files, lineage."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

import modelyard
import modelyard.pyfunc
import modelyard.sklearn
from modelyard import Client
from modelyard.entities.registry import ModelVersionStatus, Stage
from modelyard.errors import DataLoss, FailedPrecondition, InvalidArgument, NotFound
from modelyard.services.common.settings import RegistrySettings, Settings
from tests.conftest import running_server


def logged_model(client: Client, files: dict[str, bytes] | None = None) -> str:
    rid = client.create_run("0").info.run_id
    for path, data in (files or {"MLmodel": b"flavors: {}\n", "model.pkl": b"\x00" * 2048}).items():
        client.log_text(rid, data.decode("latin-1"), f"model/{path}")
    return rid


def test_register_copies_files_into_registry_storage(stack: Client, tmp_path: Path) -> None:
    rid = logged_model(stack, {"MLmodel": b"m", "data/weights.bin": b"w" * 5000})
    mv = stack.create_model_version("fraud", f"runs:/{rid}/model", description="first")
    assert (mv.version, mv.status, mv.run_id) == (1, ModelVersionStatus.READY, rid)
    assert "/registry/" in mv.storage_location
    files = {f.path: f for f in stack.list_model_version_artifacts("fraud", 1)}
    assert set(files) == {"MLmodel", "data/weights.bin"}
    assert files["data/weights.bin"].sha256 == hashlib.sha256(b"w" * 5000).hexdigest()
    # The registry's copy is independent of the run: deleting the run's files changes nothing.
    stack.delete_artifact(rid, "model")
    out = stack.download_model_version("fraud", 1, tmp_path / "v1")
    assert (out / "data" / "weights.bin").read_bytes() == b"w" * 5000
    model = stack.get_registered_model("fraud")
    assert [v.version for v in model.latest_versions] == [1]


def test_a_source_registers_the_same_files_however_its_path_is_spelled(stack: Client) -> None:
    """Tracking lists a run's files in normal form; the copy took them apart by the length of
    the source's spelling, and stored a READY version whose MLmodel was named 'model'."""
    rid = logged_model(stack, {"MLmodel": b"m", "data/weights.bin": b"w"})
    for spelling, files in (
        ("model", {"MLmodel", "data/weights.bin"}),
        ("./model", {"MLmodel", "data/weights.bin"}),
        ("model/./", {"MLmodel", "data/weights.bin"}),
        ("./model//data", {"weights.bin"}),
    ):
        mv = stack.create_model_version("spelled", f"runs:/{rid}/{spelling}")
        assert mv.status == ModelVersionStatus.READY, spelling
        listed = {f.path for f in stack.list_model_version_artifacts("spelled", mv.version)}
        assert listed == files, spelling


def test_a_versions_files_come_a_page_at_a_time(stack: Client) -> None:
    """ListModelVersionArtifacts sent every file in one response, however many a model holds;
    it pages by path now, and a page size of 0 (older clients) still gets them all."""
    from modelyard._gen.registry.v1 import registry_pb2 as pb

    paths = sorted(["MLmodel", *(f"shards/{i:02}.bin" for i in range(7)), "é/ü.txt"])
    rid = logged_model(stack, {p: p.encode() for p in paths})
    stack.create_model_version("paged", f"runs:/{rid}/model")
    pages, token = [], None
    while True:
        page = stack.list_model_version_artifacts_page("paged", 1, max_results=3, page_token=token)
        pages.append([f.path for f in page])
        token = page.token
        if not token:
            break
    assert pages == [paths[i : i + 3] for i in range(0, len(paths), 3)]
    assert [f.path for f in stack.list_model_version_artifacts("paged", 1)] == paths
    under = stack.list_model_version_artifacts_page("paged", 1, "shards", max_results=5)
    assert [f.path for f in under] == paths[1:6] and under.token
    unpaged = stack._t.call(  # what a client from before paging sends
        stack._registry.ListModelVersionArtifacts,
        pb.ListModelVersionArtifactsRequest(name="paged", version=1),
    )
    assert [f.path for f in unpaged.files] == paths and not unpaged.next_page_token
    first = stack.list_model_version_artifacts_page("paged", 1, max_results=3)
    stack.create_model_version("paged", f"runs:/{rid}/model")
    for bad in (under.token, "nonsense"):  # another listing's token, or none at all
        with pytest.raises(InvalidArgument) as err:
            stack.list_model_version_artifacts_page("paged", 1, max_results=3, page_token=bad)
        assert err.value.field == "page_token"
    with pytest.raises(InvalidArgument) as err:
        stack.list_model_version_artifacts_page("paged", 2, max_results=3, page_token=first.token)
    assert err.value.field == "page_token"
    with pytest.raises(InvalidArgument) as err:
        stack.list_model_version_artifacts_page("paged", 1, max_results=10_001)
    assert err.value.field == "page_size"


def test_a_versions_long_file_paths_page_with_short_tokens(stack: Client) -> None:
    """A token carried the last path whole (~4 KB for 1000 CJK characters): too long for a
    link. Long paths' tokens carry a prefix and a digest now, and page the same."""
    long_dir = "/".join(["模" * 30] * 4)  # ~460 bytes a path: S3 takes it under a key
    paths = sorted([f"{long_dir}/{'型' * 30}{i}" for i in range(5)] + ["MLmodel"])
    rid = logged_model(stack, {p: b"x" for p in paths})
    stack.create_model_version("long", f"runs:/{rid}/model")
    found, tokens, token = [], [], None
    while True:
        page = stack.list_model_version_artifacts_page("long", 1, max_results=2, page_token=token)
        found += [f.path for f in page]
        token = page.token
        if not token:
            break
        tokens.append(token)
    assert found == paths
    assert len(tokens) == 2 and max(len(t) for t in tokens) < 400


def test_registration_errors(stack: Client) -> None:
    with pytest.raises(NotFound, match="source run"):
        stack.create_model_version("m", f"runs:/{'0' * 32}/model")
    with pytest.raises(InvalidArgument) as err:
        stack.create_model_version("m", "s3://bucket/somewhere")
    assert err.value.field == "source"
    rid = stack.create_run("0").info.run_id
    stack.log_text(rid, "elsewhere", "other/file.txt")
    for path in ("model", "oth"):
        # Refused up front: a FAILED version burned a number and was left behind to delete.
        with pytest.raises(FailedPrecondition, match="holds no files") as failed:
            stack.create_model_version("m", f"runs:/{rid}/{path}")
        assert failed.value.field == "source" and f"runs:/{rid}/{path}" in failed.value.message
    # A file of the model, not its directory: 'holds no files' misled, as it holds itself.
    with pytest.raises(FailedPrecondition, match="is a file") as failed:
        stack.create_model_version("m", f"runs:/{rid}/other/file.txt")
    assert failed.value.field == "source" and f"runs:/{rid}/other" in failed.value.message
    assert stack.search_model_versions("name = 'm'") == []
    stack.delete_run(rid)
    with pytest.raises(FailedPrecondition, match="deleted"):
        stack.create_model_version("m", f"runs:/{rid}/model")


def test_aliases_stages_and_uris(stack: Client) -> None:
    for _ in range(3):
        stack.create_model_version("m", f"runs:/{logged_model(stack)}/model")
    stack.set_registered_model_alias("m", "champion", 2)
    assert stack.get_model_version_by_alias("m", "champion").version == 2
    stack.transition_model_version_stage("m", 1, "Production")
    stack.transition_model_version_stage("m", 3, Stage.PRODUCTION, archive_existing_versions=True)
    assert [v.version for v in stack.get_latest_versions("m", ["Production"])] == [3]
    assert stack.get_model_version("m", 1).current_stage == Stage.ARCHIVED
    from modelyard.models.uri import resolve_model_version

    assert resolve_model_version("models:/m@champion", stack) == ("m", 2)
    assert resolve_model_version("models:/m/Production", stack) == ("m", 3)
    assert resolve_model_version("models:/m/latest", stack) == ("m", 3)
    assert resolve_model_version("models:/m/1", stack) == ("m", 1)
    for bad in ("latest", "v2", "has space"):
        with pytest.raises(InvalidArgument) as err:
            stack.set_registered_model_alias("m", bad, 1)
        assert err.value.field == "alias"


def test_watch_delivers_an_alias_move(stack: Client) -> None:
    """Pushed by the server as it happens (no polling on either side); how fast is measured in
    bench/registry_watch.py, not asserted here."""
    for _ in range(2):
        stack.create_model_version("w", f"runs:/{logged_model(stack)}/model")
    stack.set_registered_model_alias("w", "champion", 1)
    since = stack.list_model_events("w")[-1].event_id  # replay from here: no subscription race
    seen: list[tuple[str, int | None]] = []

    def watch() -> None:
        for event in stack.watch_model_events("w", since_event_id=since, timeout=30):
            if event.event_type == "ALIAS_SET":
                seen.append((event.details["alias"], event.version))
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    stack.set_registered_model_alias("w", "champion", 2)
    watcher.join(30)
    assert seen == [("champion", 2)], "the alias move was never delivered"


def test_events_record_who_did_what(stack: Client) -> None:
    stack.create_model_version("h", f"runs:/{logged_model(stack)}/model")
    stack.set_registered_model_alias("h", "champion", 1)
    stack.update_model_version("h", 1, "checked")
    kinds = [e.event_type for e in stack.list_model_events("h")]
    assert kinds == [
        "MODEL_CREATED",
        "VERSION_CREATED",
        "VERSION_READY",
        "ALIAS_SET",
        "VERSION_UPDATED",
    ]
    assert {e.user_id for e in stack.list_model_events("h") if e.event_type != "VERSION_READY"} == {
        "anonymous"
    }


def test_a_history_pages_back_newest_first(stack: Client) -> None:
    """Newest first, only the newest events could be listed: since_event_id bounds from
    below. before_event_id bounds from above, so a page's last id gives the older page."""
    from modelyard._gen.registry.v1 import registry_pb2 as pb

    stack.create_model_version("paged", f"runs:/{logged_model(stack)}/model")
    for alias in ("a", "b", "c"):
        stack.set_registered_model_alias("paged", alias, 1)
    stack.create_registered_model("other")  # another model's event among the ids
    everything = stack.list_model_events("paged", newest_first=True)
    pages: list[list[int]] = []
    before = 0
    for _ in range(len(everything)):  # a bound that ignores before_event_id cannot loop forever
        page = stack.list_model_events(
            "paged", max_results=2, newest_first=True, before_event_id=before
        )
        if not page:
            break
        pages.append([e.event_id for e in page])
        before = page[-1].event_id
    assert [i for p in pages for i in p] == [e.event_id for e in everything]
    assert len(everything) == 6 and all(len(p) == 2 for p in pages)
    with pytest.raises(InvalidArgument) as err:
        stack._t.call(
            stack._registry.ListModelEvents,
            pb.ListModelEventsRequest(name="paged", before_event_id=-1),
        )
    assert err.value.field == "before_event_id"


def test_lineage(stack: Client) -> None:
    from modelyard.entities import DatasetInput
    from modelyard.entities.tracking import Dataset, InputTag

    eid = stack.create_experiment("lineage-exp")
    rid = stack.create_run(eid).info.run_id
    stack.log_param(rid, "alpha", 1)
    stack.log_inputs(
        rid, [DatasetInput(Dataset("train", "d1"), (InputTag("mlflow.data.context", "training"),))]
    )
    stack.log_text(rid, "m", "model/MLmodel")
    stack.create_model_version("lin", f"runs:/{rid}/model")
    lineage = stack.get_model_version_lineage("lin", 1)
    assert lineage.run is not None and lineage.experiment is not None  # made from a run
    assert lineage.run.info.run_id == rid
    assert lineage.experiment.name == "lineage-exp"
    assert lineage.run.data.params == {"alpha": "1"}
    assert [d.dataset.name for d in lineage.run.inputs.dataset_inputs] == ["train"]


def test_concurrent_registrations_over_grpc(stack: Client) -> None:
    rid = logged_model(stack)
    versions: list[int] = []
    lock = threading.Lock()

    def register() -> None:
        mv = stack.create_model_version("busy", f"runs:/{rid}/model", await_creation_for=0)
        with lock:
            versions.append(mv.version)

    threads = [threading.Thread(target=register) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == list(range(1, 21))
    for v in range(1, 21):
        assert stack.wait_for_version("busy", v, timeout=60).status == ModelVersionStatus.READY


def test_tampered_registry_file_is_refused(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, port=0, grace_period=0)
    with running_server(settings) as server, Client(server.address) as client:
        mv = client.create_model_version("t", f"runs:/{logged_model(client)}/model")
        stored = Path(mv.storage_location.removeprefix("file://")) / "model.pkl"
        stored.write_bytes(b"evil")
        with pytest.raises(DataLoss, match="sha256"):
            client.download_model_version("t", 1, tmp_path / "dl")


def test_registry_streams_from_a_separate_tracking_service(tmp_path: Path) -> None:
    """Two processes' worth of services with different artifact roots: files cross over gRPC."""
    tracking_settings = Settings(home=tmp_path / "t", port=0, grace_period=0)
    with running_server(tracking_settings, ("tracking",)) as tracking_server:
        registry_settings = Settings(
            home=tmp_path / "r",
            port=0,
            grace_period=0,
            registry=RegistrySettings(tracking_uri=tracking_server.address),
        )
        with (
            running_server(registry_settings, ("registry",)) as registry_server,
            Client(tracking_server.address) as tracking,
            Client(registry_server.address) as registry,
        ):
            rid = logged_model(tracking, {"MLmodel": b"x", "model.pkl": b"y" * 100_000})
            mv = registry.create_model_version("remote", f"runs:/{rid}/model")
            assert mv.status == ModelVersionStatus.READY
            assert mv.storage_location.startswith((tmp_path / "r").as_uri())
            out = registry.download_model_version("remote", 1, tmp_path / "dl")
            assert (out / "model.pkl").read_bytes() == b"y" * 100_000


def test_pending_registration_resumes_after_restart(tmp_path: Path) -> None:
    from modelyard.services.common.db import Database
    from modelyard.services.registry.store.sql import SqlRegistryStore

    settings = Settings(home=tmp_path, port=0, grace_period=0)
    with running_server(settings) as server, Client(server.address) as client:
        rid = logged_model(client)
    # A version recorded as pending whose copy never ran (the process died in between).
    store = SqlRegistryStore(Database(settings.database_url), f"{settings.artifact_root}/registry")
    store.create_model_version("resume", f"runs:/{rid}/model", rid, "", {}, "u")
    store.close()
    with running_server(settings) as server, Client(server.address) as client:
        assert client.wait_for_version("resume", 1, timeout=60).status == ModelVersionStatus.READY
        assert [f.path for f in client.list_model_version_artifacts("resume", 1)] == [
            "MLmodel",
            "model.pkl",
        ]


def test_train_register_alias_and_load_in_a_fresh_process(fluent, tmp_path: Path) -> None:
    X, y = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=500).fit(X, y)
    with fluent.start_run():
        info = modelyard.sklearn.log_model(
            model, "model", input_example=X.head(5), registered_model_name="iris"
        )
    assert info.registered_model_version == 1
    fluent.client().set_registered_model_alias("iris", "champion", 1)
    X.to_csv(tmp_path / "X.csv", index=False)
    script = (
        "import sys, numpy as np, pandas as pd, modelyard, modelyard.pyfunc\n"
        "modelyard.set_tracking_uri(sys.argv[1])\n"
        "m = modelyard.pyfunc.load_model('models:/iris@champion')\n"
        "np.save(sys.argv[3], np.asarray(m.predict(pd.read_csv(sys.argv[2]))))\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            fluent.get_tracking_uri(),
            str(tmp_path / "X.csv"),
            str(tmp_path / "p.npy"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert np.array_equal(np.load(tmp_path / "p.npy"), model.predict(X))
    with pytest.raises(InvalidArgument, match="missing column"):
        modelyard.pyfunc.load_model("models:/iris/1").predict(pd.DataFrame({"x": [1.0]}))


@pytest.mark.parametrize("stage", [Stage.ARCHIVED, Stage.NONE])
def test_archiving_existing_versions_applies_only_to_staging_and_production(
    client: Client, stage: Stage
) -> None:
    """As MLflow: moving into Archived or None archives nothing, so asking for it is refused
    (it was accepted silently), and the version stays where it was."""
    for _ in range(2):
        client.create_model_version("a", f"runs:/{logged_model(client)}/model")
    client.transition_model_version_stage("a", 1, Stage.PRODUCTION)
    with pytest.raises(InvalidArgument, match="Staging or Production") as err:
        client.transition_model_version_stage("a", 2, stage, archive_existing_versions=True)
    assert err.value.field == "archive_existing_versions"
    assert client.get_model_version("a", 2).current_stage == Stage.NONE
    assert client.get_model_version("a", 1).current_stage == Stage.PRODUCTION


def test_alias_and_tag_key_with_a_trailing_newline_are_refused(client: Client) -> None:
    """'champion\\n' used to be stored as a second alias beside 'champion' (needing only EDIT,
    as it is not the protected name), and 'team\\n' as a second tag key."""
    client.create_model_version("nl", f"runs:/{logged_model(client)}/model")
    calls = {
        "alias": lambda: client.set_registered_model_alias("nl", "champion\n", 1),
        "tag.key": lambda: client.set_registered_model_tag("nl", "team\n", "risk"),
        "tags.key": lambda: client.create_registered_model("nl2", tags={"team\n": "risk"}),
    }
    for field, call in calls.items():
        with pytest.raises(InvalidArgument) as err:
            call()
        assert err.value.field == field
    with pytest.raises(InvalidArgument) as err:
        client.set_model_version_tag("nl", 1, "team\n", "risk")
    assert err.value.field == "tag.key"
    model = client.get_registered_model("nl")
    assert (model.aliases, model.tags) == ({}, {})
    assert client.get_model_version("nl", 1).tags == {}


def test_latest_names_the_newest_ready_version(
    db_client: Client, database_url: str, tmp_path: Path
) -> None:
    """Registration is asynchronous and can fail: `models:/m/latest` and latest_versions named a
    FAILED_REGISTRATION or PENDING version (which has no files to load) over an older READY one,
    and an alias or a stage could be moved onto a failed version."""
    from modelyard.models.uri import resolve_model_version
    from modelyard.services.common.db import Database
    from modelyard.services.registry.store.sql import SqlRegistryStore

    rid = logged_model(db_client)
    db_client.create_model_version("lf", f"runs:/{rid}/model")
    # A version whose copy failed, then one still registering (its copy not started).
    store = SqlRegistryStore(Database(database_url), (tmp_path / "unused").as_uri())
    _version, failed = store.create_model_version("lf", f"runs:/{rid}/model", rid, "", {}, "u")
    assert store.fail_registration(failed, "the copy failed")
    store.create_model_version("lf", f"runs:/{rid}/model", rid, "", {}, "u")
    store.close()
    statuses = [v.status for v in db_client.search_model_versions("name = 'lf'")]
    assert statuses == [
        ModelVersionStatus.PENDING_REGISTRATION,
        ModelVersionStatus.FAILED_REGISTRATION,
        ModelVersionStatus.READY,
    ]
    assert resolve_model_version("models:/lf/latest", db_client) == ("lf", 1)
    assert resolve_model_version("models:/lf/None", db_client) == ("lf", 1)
    assert [v.version for v in db_client.get_registered_model("lf").latest_versions] == [1]
    assert [v.version for v in db_client.get_latest_versions("lf")] == [1]

    moves = {
        "alias": lambda version: db_client.set_registered_model_alias("lf", "champion", version),
        "stage": lambda version: db_client.transition_model_version_stage(
            "lf", version, Stage.PRODUCTION
        ),
    }
    for move in moves.values():
        with pytest.raises(FailedPrecondition, match=r"FAILED_REGISTRATION.*register it again"):
            move(2)
        move(3)  # a pending version becomes READY: naming it is allowed
    assert db_client.get_model_version("lf", 2).current_stage == Stage.NONE
    assert db_client.get_model_version_by_alias("lf", "champion").version == 3


@pytest.mark.parametrize("uri", ["models:/it's/latest", "models:/a' AND name != 'b/latest"])
def test_a_model_uri_with_a_name_no_model_can_have_is_refused(client: Client, uri: str) -> None:
    """The name went into a search filter unchecked: the error described a filter the user never
    wrote ('unexpected character'), and a quote could add conditions to it."""
    from modelyard.models.uri import resolve_model_version

    with pytest.raises(InvalidArgument, match="not a valid model name") as err:
        resolve_model_version(uri, client)
    assert uri in err.value.message and "filter" not in err.value.message


def test_a_tag_key_sent_twice_is_refused(client: Client) -> None:
    """It was last-wins, silently, for a new model's and a new version's tags."""
    from modelyard._gen.common.v1.common_pb2 import Tag
    from modelyard._gen.registry.v1 import registry_pb2 as pb

    twice = [Tag(key="team", value="a"), Tag(key="team", value="b")]
    rid = logged_model(client)
    requests = [
        (
            client._registry.CreateRegisteredModel,
            pb.CreateRegisteredModelRequest(name="tw", tags=twice),
        ),
        (
            client._registry.CreateModelVersion,
            pb.CreateModelVersionRequest(name="tw", source=f"runs:/{rid}/model", tags=twice),
        ),
    ]
    for rpc, request in requests:
        with pytest.raises(InvalidArgument, match="'team' more than once") as err:
            client._t.call(rpc, request)
        assert err.value.field == "tags.key"
    with pytest.raises(NotFound):
        client.get_registered_model("tw")


def test_registering_from_a_deleted_experiment_says_to_restore_the_experiment(
    client: Client,
) -> None:
    """Its runs read as deleted, and the message said to restore the run, which does not help."""
    eid = client.create_experiment("gone")
    rid = client.create_run(eid).info.run_id
    client.log_text(rid, "m", "model/MLmodel")
    client.delete_experiment(eid)
    with pytest.raises(FailedPrecondition, match=r"experiment 'gone'.*restore the experiment"):
        client.create_model_version("dx", f"runs:/{rid}/model")
    client.restore_experiment(eid)
    assert (
        client.create_model_version("dx", f"runs:/{rid}/model").status == ModelVersionStatus.READY
    )


def test_deleting_an_alias_the_model_does_not_hold_changes_nothing(db_client: Client) -> None:
    """As MLflow's SQL store: deleting an alias is idempotent (a retried delete, or one racing
    another, used to fail NOT_FOUND); a model that does not exist is still NOT_FOUND."""
    db_client.create_model_version("da", f"runs:/{logged_model(db_client)}/model")
    db_client.set_registered_model_alias("da", "champion", 1)
    db_client.delete_registered_model_alias("da", "champion")
    before = db_client.get_registered_model("da")
    events = len(db_client.list_model_events("da"))
    db_client.delete_registered_model_alias("da", "champion")
    db_client.delete_registered_model_alias("da", "never-set")
    after = db_client.get_registered_model("da")
    assert (after.aliases, after.last_updated_timestamp) == ({}, before.last_updated_timestamp)
    assert len(db_client.list_model_events("da")) == events  # no ALIAS_DELETED for nothing
    with pytest.raises(NotFound) as err:
        db_client.delete_registered_model_alias("no-such-model", "champion")
    assert "no-such-model" in err.value.message


def test_a_version_that_fails_registration_loses_its_aliases(
    db_client: Client, database_url: str, tmp_path: Path
) -> None:
    """An alias may name a PENDING version (it becomes READY); if its registration then failed,
    the alias went on naming a version with no files, so every models:/m@alias load failed until
    someone moved it. It is now removed with the failure, as deleting a version removes its
    aliases, with an ALIAS_DELETED event saying why; other versions' aliases stay."""
    from modelyard.services.common.db import Database
    from modelyard.services.registry.store.sql import SqlRegistryStore

    rid = logged_model(db_client)
    db_client.create_model_version("fa", f"runs:/{rid}/model")
    store = SqlRegistryStore(Database(database_url), (tmp_path / "unused").as_uri())
    _version, pending = store.create_model_version("fa", f"runs:/{rid}/model", rid, "", {}, "u")
    db_client.set_registered_model_alias("fa", "champion", 1)
    db_client.set_registered_model_alias("fa", "challenger", 2)
    db_client.set_registered_model_alias("fa", "canary", 2)
    assert store.fail_registration(pending, "the copy failed")
    store.close()

    assert db_client.get_registered_model("fa").aliases == {"champion": 1}
    assert db_client.get_model_version("fa", 2).aliases == []
    with pytest.raises(NotFound):
        db_client.get_model_version_by_alias("fa", "challenger")
    last = [(e.event_type, e.details) for e in db_client.list_model_events("fa")][-3:]
    reason = "version 2 failed registration: the copy failed"
    assert last == [
        ("ALIAS_DELETED", {"alias": "canary", "reason": reason}),
        ("ALIAS_DELETED", {"alias": "challenger", "reason": reason}),
        ("VERSION_FAILED", {"reason": "the copy failed"}),
    ]


def test_a_pending_version_archives_no_stage_before_it_is_ready(
    db_client: Client, database_url: str, tmp_path: Path
) -> None:
    """Moving a PENDING version to Production with archive_existing_versions archived the READY
    Production version at once: models:/m/Production had nothing to load until the copy ended,
    and nothing at all if it failed. It is refused until READY; without archiving it is taken."""
    from modelyard.services.common.db import Database
    from modelyard.services.registry.store.sql import SqlRegistryStore

    rid = logged_model(db_client)
    db_client.create_model_version("pa", f"runs:/{rid}/model")
    db_client.transition_model_version_stage("pa", 1, "Production")
    store = SqlRegistryStore(Database(database_url), (tmp_path / "unused").as_uri())
    _version, _pending = store.create_model_version("pa", f"runs:/{rid}/model", rid, "", {}, "u")
    store.close()
    with pytest.raises(FailedPrecondition, match="still PENDING_REGISTRATION") as refused:
        db_client.transition_model_version_stage("pa", 2, "Production", True)
    assert refused.value.resource_name == "pa/2"
    assert db_client.get_model_version("pa", 1).current_stage == "Production"
    assert db_client.get_model_version("pa", 2).current_stage == "None"
    db_client.transition_model_version_stage("pa", 2, "Production")
    assert [v.version for v in db_client.get_latest_versions("pa", ["Production"])] == [1]


def test_deleting_a_tag_the_model_or_version_does_not_hold_changes_nothing(
    db_client: Client,
) -> None:
    """As MLflow's SQL store (delete_registered_model_tag, delete_model_version_tag): deleting a
    tag that is not there is no error (it was NOT_FOUND); the model and version must exist."""
    db_client.create_model_version("dt", f"runs:/{logged_model(db_client)}/model")
    events = len(db_client.list_model_events("dt"))
    db_client.delete_registered_model_tag("dt", "never-set")
    db_client.delete_model_version_tag("dt", 1, "never-set")
    assert len(db_client.list_model_events("dt")) == events
    with pytest.raises(NotFound, match="no-such"):
        db_client.delete_registered_model_tag("no-such", "k")
    with pytest.raises(NotFound, match="no version 9"):
        db_client.delete_model_version_tag("dt", 9, "k")


def test_version_aliases_and_latest_versions_are_lists_as_in_mlflow(client: Client) -> None:
    """MLflow's ModelVersion.aliases and RegisteredModel.latest_versions are lists; ours were
    tuples, so code ported from MLflow comparing them to a list (mv.aliases == ['champion'])
    was False however they matched."""
    client.create_model_version("ls", f"runs:/{logged_model(client)}/model")
    client.set_registered_model_alias("ls", "champion", 1)
    assert client.get_model_version("ls", 1).aliases == ["champion"]
    assert client.get_model_version_by_alias("ls", "champion").aliases == ["champion"]
    model = client.get_registered_model("ls")
    assert [v.aliases for v in model.latest_versions] == [["champion"]]
    assert isinstance(model.latest_versions, list)
    (found,) = client.search_registered_models("name = 'ls'")
    assert found.latest_versions == model.latest_versions
