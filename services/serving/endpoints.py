"""Endpoints at run time: the loaded versions behind each served model, and traffic routing.

A served model holds one loaded version at a time. Reloading (an alias moved, a load was asked
for) loads the new version while the old one keeps answering, then swaps the reference in one
assignment: no request fails or waits during the switch. A version that fails to load leaves the
old one serving and records why.

An update likewise: a served model whose batching or name alone changed serves the model already
loaded, and while none of an updated endpoint's served models is loaded yet, the endpoint as it
was before answers, until one is READY or all have failed.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from modelyard.entities.serving import (
    Endpoint,
    MissingFeaturePolicy,
    ServedModel,
    ServedModelState,
)
from modelyard.errors import InvalidArgument, NotFound, Unavailable
from modelyard.models.uri import parse_models_uri
from modelyard.services.common.logging import get_logger
from modelyard.services.serving.batching import DynamicBatcher
from modelyard.services.serving.loader import ModelLoader, VersionFiles
from modelyard.services.serving.model import LoadedModel, rows
from modelyard.services.serving.statistics import StatsSnapshot, Timing

log = get_logger(__name__)


class ServedModelRuntime:
    def __init__(
        self,
        endpoint: str,
        spec: ServedModel,
        loader: ModelLoader,
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        self.endpoint = endpoint
        self.spec = spec
        self._changed = changed  # told whenever the state or the served version changes
        self.model_name = parse_models_uri(spec.model_uri)[0]
        self._loader = loader
        # (model, batcher) is swapped as one tuple, so readers never see a mixed pair.
        self._current: tuple[LoadedModel, DynamicBatcher] | None = None
        self.state = ServedModelState.LOADING
        self.reason = ""
        self.loaded_time: int | None = None
        # One load at a time; held for a whole load, so unload() never waits on it.
        self._load_lock = threading.Lock()
        # Guards what a load reads at its start and publishes at its end against unload().
        self._state_lock = threading.Lock()
        # Bumped by every unload and by retirement: a load begun before it is discarded when it
        # ends; `_discarding` says why, for the log.
        self._generation = 0
        self._discarding = ""
        # Unloaded on request: registry events leave it so, only a load asked for brings it back.
        self._unloaded = False
        # Replaced or removed by an endpoint update: no load of it ever serves again.
        self._retired = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def ready(self) -> bool:
        return self._current is not None

    @property
    def current(self) -> tuple[LoadedModel, DynamicBatcher]:
        current = self._current
        if current is None:
            raise Unavailable(
                f"served model {self.name!r} of endpoint {self.endpoint!r} is not loaded: "
                f"{self.why_not_loaded()}",
                resource_type="served_model",
                resource_name=f"{self.endpoint}/{self.name}",
            )
        return current

    def why_not_loaded(self) -> str:
        """Why nothing is loaded, and what to do: only a load under way is worth a retry (an
        unloaded model was once told "retry shortly", which never helped)."""
        if self._unloaded:
            return f"{self.reason}; load it again (RepositoryModelLoad, tritonclient's load_model)"
        if self.state == ServedModelState.FAILED:
            return f"{self.reason}; fix the model version, then update the endpoint"
        return "loading; retry shortly"

    def load(self, requested: bool = True) -> bool:
        """Resolve the URI now and load that version if it is not the one serving; True if the
        served version changed. Failures are recorded, never raised. `requested`: False for a
        reload the registry prompted, which leaves a model unloaded on request unloaded."""
        try:
            return self._load(requested)
        finally:
            self._changed()

    def _load(self, requested: bool) -> bool:
        with self._load_lock:
            with self._state_lock:
                if self._retired:
                    return False
                if requested:
                    if self._unloaded:
                        self.state, self.reason = ServedModelState.LOADING, ""
                    self._unloaded = False
                elif self._unloaded:
                    return False
                generation = self._generation
            version = 0
            try:
                name, version = self._loader.resolve(self.spec.model_uri)
                located = self._loader.files_of(name, version)
                if self._serving(located, self._current):
                    with self._state_lock:
                        if self._generation == generation:
                            self.state, self.reason = ServedModelState.READY, ""
                    return False
                model = self._loader.load_files(located)
                with self._state_lock:
                    if self._generation != generation:
                        log.info(
                            "endpoint %s: discarded %s version %s, %s while it loaded",
                            self.endpoint,
                            name,
                            version,
                            self._discarding,
                        )
                        return False
                    self._current = (model, self._batcher(model))  # the atomic switch
                    self.state, self.reason = ServedModelState.READY, ""
                    self.loaded_time = int(time.time() * 1000)
                log.info("endpoint %s serves %s version %s", self.endpoint, name, version)
                return True
            except Exception as exc:
                target = f"version {version}" if version else self.spec.model_uri
                with self._state_lock:
                    if self._generation != generation:
                        log.info(
                            "endpoint %s: discarded the failed load of %s, %s while it loaded: %s",
                            self.endpoint,
                            target,
                            self._discarding,
                            exc,
                        )
                        return False
                    self.reason = f"loading {target} failed: {exc}"
                    self.state = (
                        ServedModelState.READY if self._current else ServedModelState.FAILED
                    )
                log.warning("endpoint %s: %s", self.endpoint, self.reason)
                return False

    def _batcher(self, model: LoadedModel) -> DynamicBatcher:
        batching = self.spec.batching
        return DynamicBatcher(
            model.predict,
            batching.max_batch_size if model.merges_requests else 1,  # one request a call
            batching.max_queue_delay_micros,
            labels=(self.endpoint, self.name),
        )

    def adopt(self, donor: ServedModelRuntime) -> None:
        """Serve the model `donor` (the same URI, before an update changed its batching or name)
        has loaded, with a batcher of this spec's own: nothing is loaded again."""
        current = donor._current
        if current is None:
            return
        with self._load_lock, self._state_lock:
            if self._current is None and not self._unloaded:
                self._current = (current[0], self._batcher(current[0]))
                self.state, self.reason = ServedModelState.READY, ""
                self.loaded_time = donor.loaded_time

    @staticmethod
    def _serving(located: VersionFiles, current: tuple[LoadedModel, DynamicBatcher] | None) -> bool:
        """Whether `current` is that version: its number and its files' digest, as a model
        deleted and registered again reuses names and numbers for other content."""
        return (
            current is not None
            and current[0].version == located.version
            and current[0].digest == located.digest
        )

    def unload(self) -> None:
        """Stop serving until a load is asked for, at once: a load under way goes on (a model's
        unpickling cannot be interrupted) but is discarded when it ends, so it cannot bring the
        model back, and what it loaded is released then (KServe and Triton unload so)."""
        with self._state_lock:
            self._discard_loads("unloaded")
            self._unloaded = True
            self._current = None
            self.state, self.reason = ServedModelState.UNLOADED, "unloaded on request"
        self._changed()

    def retire(self) -> None:
        """An endpoint update replaced or removed this served model: a load of it under way (or
        not yet begun) is discarded as unload() discards one, so it neither turns READY nor holds
        its model longer than it takes. What is loaded stays: the endpoint as it was before the
        update may answer with it until the new served models are loaded."""
        with self._state_lock:
            self._discard_loads("replaced by an endpoint update")
            self._retired = True

    def _discard_loads(self, why: str) -> None:
        """Under _state_lock: a load begun before now is discarded when it ends."""
        self._generation += 1
        self._discarding = why

    def predict(
        self,
        tensors: dict[str, Any],
        missing_features: MissingFeaturePolicy = MissingFeaturePolicy.FAIL,
        deadline: float | None = None,
        timing: Timing | None = None,
        table: bool = False,
        timeout: float | None = None,
    ) -> tuple[LoadedModel, dict[str, Any]]:
        """`timing` learns which version's counters took the request (they count its outcome)
        and where its time went; `table`: see LoadedModel.to_input; `timeout`: seconds the
        request may wait for the model (DynamicBatcher)."""
        model, batcher = self.current
        start = time.perf_counter_ns()
        if timing is not None:
            timing.stats, timing.version = batcher.stats, model.version
        model_input = model.to_input(tensors, missing_features, table)
        if timing is not None:
            timing.input_ns = time.perf_counter_ns() - start
            timing.rows = rows(model_input)
        if rows(model_input) == 0:
            raise InvalidArgument(
                "inputs: the request has no rows (a first dimension of 0); send at least one",
                field="inputs",
            )
        return model, batcher(model_input, deadline, timing, timeout)

    def statistics(self) -> tuple[int, StatsSnapshot] | None:
        """The serving version and its counters; None while nothing is loaded."""
        current = self._current
        return (current[0].version, current[1].stats.snapshot()) if current else None

    def to_entity(self) -> ServedModel:
        current = self._current
        return replace(
            self.spec,
            state=self.state,
            version=current[0].version if current else 0,
            reason=self.reason,
            loaded_time=self.loaded_time,
        )


def _bucket(request_id: str) -> float:
    """A stable point in [0, 100) for a request id, so retries land on the same model."""
    digest = hashlib.sha256(request_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


class EndpointRuntime:
    def __init__(
        self,
        spec: Endpoint,
        served: list[ServedModelRuntime],
        previous: EndpointRuntime | None = None,
    ) -> None:
        self.spec = spec
        self.served = served
        # The endpoint before an update, answering until one of `served` is loaded.
        self.previous = previous

    @property
    def name(self) -> str:
        return self.spec.name

    def stand_in(self) -> EndpointRuntime | None:
        """The endpoint as it was before this update, while it should still answer: until one
        of the new served models is ready or all have failed (then it is let go)."""
        previous = self.previous
        if previous is None:
            return None
        if any(s.ready for s in self.served) or all(
            s.state == ServedModelState.FAILED for s in self.served
        ):
            self.previous = None
            return None
        return previous

    @property
    def answering(self) -> bool:
        """Whether inference gets an answer now: from a loaded model, or from the endpoint as it
        was before an update while the new model loads (readiness probes ask this)."""
        if any(s.ready for s in self.served):
            return True
        previous = self.stand_in()
        return previous is not None and previous.answering

    def route(self, request_id: str = "") -> ServedModelRuntime:
        """A served model by traffic share (among those ready), stable for one request id."""
        ready = [s for s in self.served if s.ready and s.spec.traffic_percent > 0]
        if not ready:
            ready = [s for s in self.served if s.ready]
        if not ready and (previous := self.stand_in()) is not None:
            return previous.route(request_id)
        if not ready:
            reasons = "; ".join(f"{s.name}: {s.why_not_loaded()}" for s in self.served)
            raise Unavailable(
                f"endpoint {self.name!r} has no model loaded ({reasons})",
                resource_type="endpoint",
                resource_name=self.name,
            )
        total = sum(s.spec.traffic_percent for s in ready) or len(ready)
        point = (_bucket(request_id) if request_id else random.random() * 100) / 100 * total
        for s in ready:
            point -= s.spec.traffic_percent or 1
            if point < 0:
                return s
        return ready[-1]

    def primary(self) -> ServedModelRuntime:
        """What ModelMetadata and ModelConfig describe when no version is named: the ready
        served model taking the most traffic (the first of equals). They once described one
        picked by traffic share at random, so two calls could describe two models."""
        ready = [s for s in self.served if s.ready]
        if not ready:
            return self.route()  # the endpoint before an update, or why nothing answers
        return max(ready, key=lambda s: s.spec.traffic_percent)

    def select(self, version: str) -> ServedModelRuntime:
        """A served model by its name, or by the registry version it serves."""
        for s in self.served:
            if s.name == version:
                return s
        for s in self.served:
            current = s._current
            if current is not None and str(current[0].version) == version:
                return s
        if (previous := self.stand_in()) is not None:
            return previous.select(version)
        raise NotFound(
            f"endpoint {self.name!r} serves no model {version!r}; served models: "
            f"{[s.name for s in self.served]}",
            resource_type="served_model",
            resource_name=f"{self.name}/{version}",
        )

    def to_entity(self, dropped_log_rows: int = 0) -> Endpoint:
        return replace(
            self.spec,
            served_models=tuple(s.to_entity() for s in self.served),
            dropped_log_rows=dropped_log_rows,
        )
