"""Loading model versions: the shared local cache under concurrent loads, and reloading when
a name and version number come back with other content."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier

import modelyard
import modelyard.sklearn
from modelyard.entities.serving import ServedModel, ServedModelState
from modelyard.errors import DataLoss
from modelyard.services.serving.loader import ModelLoader
from modelyard.services.serving.model import LoadedModel
from tests.serving.conftest import register, wait_ready


def _load_at_once(loaders: list[ModelLoader], threads: int) -> list[LoadedModel | BaseException]:
    """Iris version 1 loaded by `threads` threads (taking the loaders in turn), all started at
    the same moment: each one's model or error."""
    start = threading.Barrier(threads)
    results: list[LoadedModel | BaseException] = []

    def load(loader: ModelLoader) -> None:
        start.wait(30)
        try:
            results.append(loader.load("iris", 1))
        except BaseException as exc:
            results.append(exc)

    running = [
        threading.Thread(target=load, args=(loaders[i % len(loaders)],)) for i in range(threads)
    ]
    for t in running:
        t.start()
    for t in running:
        t.join()
    return results


def test_concurrent_loads_of_one_version_never_break_each_other(
    platform, iris, two_versions, tmp_path: Path
) -> None:
    """Loads of one version started at the same moment, by threads of one loader and of a second
    loader on the same cache directory (a second replica on a shared volume), all succeed: none
    deletes or replaces files another is reading (they once did, leaving endpoints FAILED)."""
    _server, client = platform
    X, _y = iris
    expected = two_versions[0].predict(X.head(5))
    for round_ in range(5):  # a fresh cache each round, so every round races to fill it
        cache = tmp_path / f"cache-{round_}"
        results = _load_at_once([ModelLoader(lambda: client, cache) for _ in range(2)], 8)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors == [], f"round {round_}: {errors}"
        for model in results:
            assert isinstance(model, LoadedModel)
            assert np.array_equal(model.model.predict(X.head(5)), expected)
        # One complete entry, and no staging copy left behind.
        entries = [p.name for p in cache.iterdir() if p.is_dir()]
        assert len(entries) == 1 and not entries[0].startswith("."), entries


def test_a_corrupted_cache_entry_is_downloaded_again(
    platform, iris, two_versions, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A cache entry whose files no longer match their digests (the registry's copy is fine) is
    moved aside and downloaded again: it once failed every load of that version, restarts
    included, telling the user to log the model again."""
    _server, client = platform
    X, _y = iris
    cache = tmp_path / "cache"
    ModelLoader(lambda: client, cache).load("iris", 1)
    (entry,) = [p for p in cache.iterdir() if p.is_dir()]
    pickle = entry / "model.pkl"
    good = pickle.read_bytes()
    pickle.write_bytes(good[: len(good) // 2])
    with caplog.at_level(logging.WARNING, logger="modelyard.services.serving.loader"):
        model = ModelLoader(lambda: client, cache).load("iris", 1)  # as after a restart
    assert np.array_equal(model.model.predict(X.head(5)), two_versions[0].predict(X.head(5)))
    assert pickle.read_bytes() == good
    assert [r.getMessage() for r in caplog.records] == [
        f"model cache entry {entry.name} failed verification; downloading it again"
    ]
    # Only the entry is left: the damaged copy is gone.
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == [entry.name]


def test_load_failures_do_not_show_the_cache_path(
    platform, iris, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A version whose registered package does not match its own manifest fails on every load
    (downloaded again once): the message names the file, not where the server keeps its cache."""
    _server, client = platform
    X, y = iris
    package = tmp_path / "package"
    modelyard.sklearn.save_model(DummyClassifier().fit(X, y), package, input_example=X[:3])
    (package / "model.pkl").write_bytes(b"not what the manifest recorded")
    with modelyard.start_run() as run:
        modelyard.log_artifacts(package, "model")
    modelyard.register_model(f"runs:/{run.info.run_id}/model", "broken")
    cache = tmp_path / "cache"
    with (
        caplog.at_level(logging.WARNING, logger="modelyard.services.serving.loader"),
        pytest.raises(DataLoss) as err,
    ):
        ModelLoader(lambda: client, cache).load("broken", 1)
    assert "model.pkl was modified" in err.value.message
    assert "log the model again" in err.value.message
    (entry,) = [p for p in cache.iterdir() if p.is_dir()]
    assert str(tmp_path) not in err.value.message and entry.name in err.value.message
    assert len(caplog.records) == 1, "downloaded again once, not in a loop"


def test_a_model_registered_again_replaces_the_deleted_one(platform, iris, two_versions) -> None:
    """After model "m" is deleted and registered again, endpoints on models:/m@live and
    models:/m/1 load the new version 1 on their own (from the registry's events), though name
    and version number are the same (they once kept serving the deleted model)."""
    _server, client = platform
    X, y = iris
    register(two_versions[0], X, "m")
    client.set_registered_model_alias("m", "live", 1)
    uris = {"by-alias": "models:/m@live", "by-number": "models:/m/1"}
    loaded_at = {}
    for endpoint, uri in uris.items():
        client.create_endpoint(endpoint, [ServedModel(uri)])
        loaded_at[endpoint] = wait_ready(client, endpoint, version=1).served_models[0].loaded_time
    client.delete_registered_model("m")
    for endpoint in uris:  # they keep serving what they have, and say why it is stale
        stale = next(
            s
            for e in client.watch_endpoint(endpoint, timeout=60)
            if (s := e.served_models[0]).reason
        )
        assert stale.state == ServedModelState.READY and "'m'" in stale.reason, stale.reason
    again = DummyClassifier(strategy="constant", constant=2).fit(X, y)
    assert register(again, X, "m") == 1
    client.set_registered_model_alias("m", "live", 1)
    for endpoint in uris:
        reloaded = next(
            s
            for e in client.watch_endpoint(endpoint, timeout=60)
            if (s := e.served_models[0]).loaded_time != loaded_at[endpoint]
        )
        assert reloaded.state == ServedModelState.READY and reloaded.version == 1
        out = client.predict(endpoint, X.head(5))
        assert np.array_equal(out["predictions"], again.predict(X.head(5))), endpoint
