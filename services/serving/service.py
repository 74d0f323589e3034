"""ServingService: endpoint management and the data plane behind both gRPC APIs.

Endpoint specs live in the serving store; their runtimes (loaded versions, batchers) live here.
Changing an endpoint keeps served models whose spec did not change (their loaded version keeps
answering) and loads the others in the background (see endpoints.py for how it answers meanwhile).
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, TypeVar

import numpy as np
from prometheus_client import Counter, Histogram

from modelyard.client.registry import RegistryClient
from modelyard.entities.common import Grant, PermissionLevel
from modelyard.entities.serving import Endpoint, InferenceRecord, ServedModel
from modelyard.errors import Internal, InvalidArgument, ModelyardError, NotFound, Unavailable
from modelyard.models.uri import check_models_uri, parse_models_uri
from modelyard.services.common import identity
from modelyard.services.common import logging as mlog
from modelyard.services.common import validation as v
from modelyard.services.common.auth.grants import GrantStore
from modelyard.services.common.call_end import CallEnded
from modelyard.services.common.changes import ChangeCounter
from modelyard.services.common.pagination import page_size
from modelyard.services.serving.codec import unknown_outputs
from modelyard.services.serving.endpoints import EndpointRuntime, ServedModelRuntime
from modelyard.services.serving.inference_log import (
    MAX_LOGGED_BYTES,
    InferenceLogWriter,
    to_json,
)
from modelyard.services.serving.loader import ModelLoader
from modelyard.services.serving.model import LoadedModel
from modelyard.services.serving.statistics import StatsSnapshot, Timing
from modelyard.services.serving.store.sql import SqlServingStore

log = mlog.get_logger(__name__)

# Short enough for "modelyard-ep-<name>" to stay a valid Kubernetes Service name (a longer
# "<instance>-ep-<name>" is cut, with a hash: cluster.object_name).
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,48}[a-z0-9])?\Z")
_SERVED_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,200}\Z")

Answer = TypeVar("Answer")

INFER_REQUESTS = Counter(
    "modelyard_serving_requests_total",
    "Inference requests by endpoint, served model, version and status code.",
    ["endpoint", "served_model", "version", "code"],
)
INFER_LATENCY = Histogram(
    "modelyard_serving_latency_seconds",
    "Inference latency (decode, queue, predict, encode) by endpoint and served model.",
    ["endpoint", "served_model", "version"],
    buckets=(0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)


MAX_GROUND_TRUTH = 10_000
# The longest request id the inference log keeps (and ground truth is logged against).
MAX_REQUEST_ID = 128
# A GetInferenceLog page stops short of max_results at this many bytes: below gRPC's default
# 4 MiB receive limit (clients in any language) and the smallest max_message_mb a server takes.
# Callers go on from last_record_id.
LOG_PAGE_BYTES = 3 * 1024 * 1024
# How often a watch looks whether its caller went away while nothing changes.
WATCH_POLL = 1.0


def _served_name(spec: ServedModel) -> str:
    name, kind, ref = parse_models_uri(spec.model_uri)
    return f"{name}-{ref}" if kind != "latest" else f"{name}-latest"


def validate_endpoint(endpoint: Endpoint) -> Endpoint:
    """The endpoint with defaults filled in, or InvalidArgument naming what is wrong."""
    if not _NAME.match(endpoint.name or ""):
        raise InvalidArgument(
            f"endpoint.name {endpoint.name!r} must be 1-50 lowercase letters, digits or '-', "
            "starting and ending with a letter or digit",
            field="endpoint.name",
        )
    if not endpoint.served_models:
        raise InvalidArgument(
            "endpoint.served_models must name at least one model", field="endpoint.served_models"
        )
    served = []
    for i, s in enumerate(endpoint.served_models):
        field = f"endpoint.served_models[{i}]"
        if not s.model_uri.startswith("models:/"):
            raise InvalidArgument(
                f"{field}.model_uri {s.model_uri!r} must be models:/<name>@<alias> or "
                "models:/<name>/<version>",
                field=f"{field}.model_uri",
            )
        try:
            check_models_uri(s.model_uri)
        except InvalidArgument as exc:
            raise InvalidArgument(exc.message, field=f"{field}.model_uri") from None
        if not 0 <= s.traffic_percent <= 100:
            raise InvalidArgument(
                f"{field}.traffic_percent must be 0-100", field=f"{field}.traffic_percent"
            )
        if (
            not 1 <= s.batching.max_batch_size <= 4096
            or not 0 <= s.batching.max_queue_delay_micros <= 1_000_000
        ):
            raise InvalidArgument(
                f"{field}.batching: max_batch_size 1-4096, max_queue_delay_micros 0-1000000",
                field=f"{field}.batching",
            )
        name = s.name or _served_name(s)
        if not _SERVED_NAME.match(name):
            raise InvalidArgument(
                f"{field}.name {name!r} is not a valid served model name", field=f"{field}.name"
            )
        served.append(replace(s, name=name, state=None, version=0, reason="", loaded_time=None))
    names = [s.name for s in served]
    if len(set(names)) != len(names):
        raise InvalidArgument(
            f"served model names must be unique within an endpoint, got {names}; set name",
            field="endpoint.served_models.name",
        )
    total = sum(s.traffic_percent for s in served)
    if total != 100:
        raise InvalidArgument(
            f"traffic percentages add up to {total}; they must add up to 100",
            field="endpoint.served_models.traffic_percent",
        )
    rate = endpoint.inference_log.sampling_rate
    if not 0 <= rate <= 1:
        raise InvalidArgument(
            "inference_log.sampling_rate must be 0-1", field="endpoint.inference_log.sampling_rate"
        )
    return replace(endpoint, served_models=tuple(served))


class ServingService:
    def __init__(
        self,
        store: SqlServingStore,
        loader: ModelLoader,
        grants: GrantStore,
        registry_as_caller: Callable[[], RegistryClient],
        inference_log: InferenceLogWriter,
        load_workers: int = 4,
        only: set[str] | None = None,
    ) -> None:
        self.store = store
        self.loader = loader
        self.grants = grants
        self._registry_as_caller = registry_as_caller
        self.inference_log = inference_log
        self._runtimes: dict[str, EndpointRuntime] = {}
        # Held across each management write and its runtime change, so the stored endpoints and
        # the served ones never disagree (a create landing between a delete's commit and its
        # runtime removal once left an endpoint stored but unservable until a restart).
        self._manage = threading.Lock()
        self._loads = ThreadPoolExecutor(load_workers, thread_name_prefix="modelyard-model-load")
        # An endpoint's own pods serve just it; the serving service serves all of them.
        self._only = only
        self._listeners: list[Callable[[], None]] = []
        # Bumped on every change an endpoint watcher could see (spec, state, served version).
        self._changes = ChangeCounter()

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` after endpoints are created, updated or deleted."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        for listener in self._listeners:
            listener()
        self._changes.bump()

    def watch_endpoint(self, name: str, active: Callable[[], bool]) -> Iterator[Endpoint]:
        """The endpoint now and after every change, while `active()`; ends once it is deleted."""
        seen = self._changes.current()
        last = self.get_endpoint(name)
        yield last
        while active():
            seen = self._changes.wait_past(seen, WATCH_POLL)
            if self._changes.closed:
                raise Unavailable(f"serving is shutting down; watch endpoint {name!r} again")
            if name not in self._runtimes:
                return
            current = self.get_endpoint(name)
            if current != last:
                last = current
                yield current

    def answers(self) -> bool:
        """Whether every endpoint this process alone serves (an endpoint's own pods) can answer
        now: a served model is loaded, or the endpoint as it was before an update stands in."""
        return all(
            (runtime := self._runtimes.get(name)) is not None and runtime.answering
            for name in self._only or ()
        )

    def follow_answers(self, report: Callable[[bool], None]) -> None:
        """report(answers()) now and whenever it changes, from a thread, until watches end."""

        def follow() -> None:
            seen, last = self._changes.current(), self.answers()
            report(last)
            while not self._changes.closed:
                seen = self._changes.wait_past(seen, WATCH_POLL)
                now = self.answers()
                if now != last:
                    last = now
                    report(now)

        threading.Thread(target=follow, name="modelyard-serving-ready", daemon=True).start()

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        for endpoint in self.store.list_endpoints():
            if self._only is None or endpoint.name in self._only:
                self._install(endpoint)

    def end_watches(self) -> None:
        """End every endpoint watch with UNAVAILABLE, so clients watch again elsewhere."""
        self._changes.close()

    def close(self) -> None:
        self._loads.shutdown(wait=False, cancel_futures=True)

    def _install(self, endpoint: Endpoint, old: EndpointRuntime | None = None) -> EndpointRuntime:
        """Serve `endpoint`, taking from `old` (the endpoint before an update) what it has
        loaded: no request fails while the new served models load."""
        reusable = (
            {(s.spec.model_uri, s.spec.batching, s.name): s for s in old.served} if old else {}
        )
        served: list[ServedModelRuntime] = []
        loads: list[ServedModelRuntime] = []
        for spec in endpoint.served_models:
            same = reusable.pop((spec.model_uri, spec.batching, spec.name), None)
            if same is not None:
                # Same model and batching: keep what is loaded (traffic may change).
                same.spec = spec
                served.append(same)
                continue
            runtime = ServedModelRuntime(endpoint.name, spec, self.loader, self._changes.bump)
            # Only batching or the name changed: serve the loaded model (the load below then
            # finds it current, unless the registry moved on meanwhile).
            donor = next(
                (k for k, s in reusable.items() if s.spec.model_uri == spec.model_uri), None
            )
            if donor is not None:
                adopted = reusable.pop(donor)
                runtime.adopt(adopted)
                adopted.retire()  # its load, if under way, is this runtime's to do
            served.append(runtime)
            loads.append(runtime)
        for replaced in reusable.values():
            replaced.retire()  # a load of a model no longer served is not waited for
        previous = None
        if old is not None:
            previous = old if any(s.ready for s in old.served) else old.stand_in()
        if previous is not None:
            previous.previous = None  # it answers itself: no chain of older endpoints
        self._runtimes[endpoint.name] = runtime_ = EndpointRuntime(endpoint, served, previous)
        for runtime in loads:
            self._loads.submit(self._load_into, runtime_, runtime)
        return runtime_

    @staticmethod
    def _load_into(endpoint: EndpointRuntime, served: ServedModelRuntime) -> None:
        served.load()
        endpoint.stand_in()  # lets the endpoint as it was before go, once this one can answer

    def runtime(self, name: str) -> EndpointRuntime:
        runtime = self._runtimes.get(name)
        if runtime is None:
            raise NotFound(
                f"endpoint {name!r} does not exist; list endpoints with ListEndpoints",
                resource_type="endpoint",
                resource_name=name,
            )
        return runtime

    def readable(self) -> set[str] | None:
        me = identity.current()
        if me.unrestricted:
            return None
        return self.grants.visible(me.name, PermissionLevel.READ)

    # -- management ----------------------------------------------------------------------------

    def _check_models_usable(self, endpoint: Endpoint) -> None:
        """The caller must be allowed to load (USE) every model it puts behind the endpoint."""
        registry = self._registry_as_caller()
        for s in endpoint.served_models:
            name, version = self.loader.resolve_with(registry, s.model_uri)
            registry.list_model_version_artifacts(name, version)

    def create_endpoint(self, endpoint: Endpoint) -> Endpoint:
        endpoint = validate_endpoint(endpoint)
        self._check_models_usable(endpoint)
        with self._manage:
            created = self.store.create_endpoint(endpoint, identity.caller())
            me = identity.current()
            if me.enforced:
                self.grants.set(created.name, me.name, PermissionLevel.MANAGE)
            installed = self._install(created).to_entity()
        self._changed()
        return installed

    def get_endpoint(self, name: str) -> Endpoint:
        runtime = self.runtime(name)
        return runtime.to_entity(self.inference_log.dropped[name])

    def list_endpoints(self) -> list[Endpoint]:
        visible = self.readable()
        return [
            r.to_entity(self.inference_log.dropped[n])
            for n, r in sorted(self._runtimes.items())
            if visible is None or n in visible
        ]

    def update_endpoint(self, endpoint: Endpoint) -> Endpoint:
        endpoint = validate_endpoint(endpoint)
        self.runtime(endpoint.name)
        self._check_models_usable(endpoint)
        with self._manage:
            old = self.runtime(endpoint.name)
            updated = self.store.update_endpoint(endpoint)
            installed = self._install(updated, old).to_entity()
        self._changed()
        return installed

    def delete_endpoint(self, name: str) -> None:
        with self._manage:
            runtime = self.runtime(name)
            self.store.delete_endpoint(name)
            del self._runtimes[name]
            self.grants.delete_all(name)
        # Loads under way are discarded when they end, rather than keep a model nobody serves.
        self._unload(runtime)
        self._changed()

    def set_permission(self, name: str, principal: str, level: PermissionLevel | None) -> None:
        self.runtime(name)
        v.require("grant.principal", principal)
        v.max_length("grant.principal", principal, 256)
        if level is None:
            raise InvalidArgument(
                "grant.level must be READ, USE, EDIT or MANAGE", field="grant.level"
            )
        self.grants.set(name, principal, level)

    def delete_permission(self, name: str, principal: str) -> None:
        self.runtime(name)
        if not self.grants.delete(name, principal):
            raise NotFound(
                f"{principal!r} holds no grant on endpoint {name!r}",
                resource_type="grant",
                resource_name=principal,
            )

    def list_permissions(self, name: str) -> list[Grant]:
        self.runtime(name)
        return self.grants.list(name)

    def get_inference_log(
        self, name: str, since_record_id: int, max_results: int, newest_first: bool = False
    ) -> list[InferenceRecord]:
        self.runtime(name)
        if since_record_id < 0:
            raise InvalidArgument("since_record_id must not be negative", field="since_record_id")
        size = page_size(max_results, default=1000, maximum=10000, field="max_results")
        self.inference_log.flush()  # what was answered is readable at once
        return self.store.list_inferences(
            name,
            since_record_id,
            size,
            newest_first,
            max_bytes=LOG_PAGE_BYTES,
            field_bytes=MAX_LOGGED_BYTES,
        )

    def log_ground_truth(
        self, name: str, values: Sequence[tuple[str, str]], skip_unlogged: bool = False
    ) -> tuple[int, list[str]]:
        """Values recorded, and (with skip_unlogged) the ids the log does not hold."""
        self.runtime(name)
        if len(values) > MAX_GROUND_TRUTH:
            raise InvalidArgument(
                f"ground_truth holds {len(values)} values; send at most {MAX_GROUND_TRUTH} per "
                "request",
                field="ground_truth",
            )
        first: dict[str, int] = {}  # request id -> the first ground_truth[i] naming it
        for i, (request_id, value) in enumerate(values):
            at = f"ground_truth[{i}]"
            v.require(f"{at}.request_id", request_id)
            v.max_length(f"{at}.request_id", request_id, MAX_REQUEST_ID)
            j = first.setdefault(request_id, i)
            if j != i and values[j][1] != value:
                # One is kept per id: the other was lost, and counted as recorded.
                raise InvalidArgument(
                    f"{at}.request_id {request_id!r} is given ground_truth[{j}]'s id with another "
                    "value; send one value per request id (nothing was recorded)",
                    field=f"{at}.request_id",
                )
            if len(value) > 65536:
                raise InvalidArgument(
                    f"{at}.value_json (request {request_id!r}) exceeds 64 KiB",
                    field="ground_truth.value_json",
                )
            try:
                json.loads(value)
            except ValueError:
                raise InvalidArgument(
                    f"{at}.value_json (request {request_id!r}) is not JSON (e.g. 3.5 or [0, 1])",
                    field="ground_truth.value_json",
                ) from None
        self.inference_log.flush()  # a request answered just now is in the log
        unknown = self.store.record_ground_truth(name, values, skip_unlogged=skip_unlogged)
        if not unknown:
            return len(first), []
        if not skip_unlogged:
            raise self._not_logged(name, unknown)
        skipped = set(unknown)
        return sum(rid not in skipped for rid in first), unknown

    def _not_logged(self, name: str, unknown: list[str]) -> NotFound:
        """Ground truth for request ids the endpoint's inference log does not hold: refused
        whole, naming them (at most 5), as nothing could ever join it to a prediction."""
        shown = ", ".join(repr(r) for r in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        config = self.runtime(name).spec.inference_log
        if not config.enabled:
            why = "its inference log is disabled; enable it (inference_log.enabled) first"
        elif 0 < config.sampling_rate < 1:
            why = (
                f"it logs a sample ({config.sampling_rate:g}) of its requests; send ground "
                "truth for the request ids GetInferenceLog lists"
            )
        else:
            why = "send ground truth for the request ids GetInferenceLog lists"
        return NotFound(
            f"endpoint {name!r} logged no request with id {shown}{more} (nothing was recorded): "
            + why
            + ", or set skip_unlogged to record the others",
            resource_type="inference_request",
            resource_name=unknown[0],
        )

    # -- loading -------------------------------------------------------------------------------

    def model_changed(self, model_name: str) -> None:
        """A registry event for `model_name`: re-resolve every served model that uses it."""
        for runtime in list(self._runtimes.values()):
            for served in runtime.served:
                if served.model_name == model_name:
                    self._loads.submit(served.load, requested=False)

    def load_now(self, name: str) -> EndpointRuntime:
        runtime = self.runtime(name)
        for served in runtime.served:
            served.load()
        return runtime

    def unload(self, name: str) -> None:
        self._unload(self.runtime(name))

    @staticmethod
    def _unload(runtime: EndpointRuntime) -> None:
        """Stop serving at once, loads under way included (ServedModelRuntime.unload)."""
        runtime.previous = None  # nor does the endpoint as it was before an update answer
        for served in runtime.served:
            served.unload()

    # -- inference -----------------------------------------------------------------------------

    def statistics(self, name: str, version: str) -> list[tuple[str, int, StatsSnapshot]]:
        """(endpoint, registry version, counters) of what is loaded: of one endpoint (of one
        served model or version of it), or of every endpoint the caller may read."""
        if version and not name:
            raise InvalidArgument(
                f"version {version!r} was given without name; name the endpoint too",
                field="version",
            )
        if name:
            runtime = self.runtime(name)
            chosen = [(name, [runtime.select(version)] if version else runtime.served)]
        else:
            visible = self.readable()
            chosen = [
                (n, r.served)
                for n, r in sorted(self._runtimes.items())
                if visible is None or n in visible
            ]
        found: list[tuple[str, int, StatsSnapshot]] = []
        for endpoint, served in chosen:
            by_version: dict[int, StatsSnapshot] = {}
            for s in served:
                if (stats := s.statistics()) is not None:
                    number, snapshot = stats
                    by_version[number] = (
                        by_version[number] + snapshot if number in by_version else snapshot
                    )
            found.extend((endpoint, n, by_version[n]) for n in sorted(by_version))
        if name and not found:
            # As Triton's: a model named while nothing of it is loaded is an error, not an
            # empty list that reads as "no requests yet".
            ((_endpoint, served),) = chosen
            reasons = "; ".join(f"{s.name}: {s.why_not_loaded()}" for s in served)
            raise Unavailable(
                f"endpoint {name!r} has no model loaded, so it has no statistics ({reasons})",
                resource_type="endpoint",
                resource_name=name,
            )
        return found

    def infer(
        self,
        endpoint: str,
        version: str,
        request_id: str,
        tensors: dict[str, np.ndarray],
        respond: Callable[[LoadedModel, dict[str, Any]], Answer],
        deadline: float | None = None,
        wanted: Sequence[str] = (),
        table: bool = False,
        timeout: float | None = None,
    ) -> Answer:
        """The answer `respond` makes of the model's outputs, made here so that its refusals
        (an output of no protocol type, an answer over the message limit) are counted and
        logged as what the caller gets, not OK. `deadline` (a time.monotonic() value): when the
        caller stops waiting. `wanted`: the outputs asked for, checked here for the same reason.
        `table`: the tensors are a table's columns (LoadedModel.to_input). `timeout`: seconds
        the request may wait for the model before it is refused unrun (Triton's parameter)."""
        start = time.perf_counter()
        timing = Timing()
        runtime = self.runtime(endpoint)
        if len(request_id) > MAX_REQUEST_ID and runtime.spec.inference_log.enabled:
            # It was logged cut to its first 128 characters: no ground truth could name it,
            # and two ids alike that far were one.
            raise InvalidArgument(
                f"id is {len(request_id)} characters; endpoint {endpoint!r} logs its requests "
                f"by id, which holds at most {MAX_REQUEST_ID}: send a shorter id (a UUID)",
                field="id",
            )
        served = runtime.select(version) if version else runtime.route(request_id)
        model: LoadedModel | None = None
        code = "OK"
        outputs: dict[str, Any] = {}
        try:
            model, outputs = served.predict(
                tensors, runtime.spec.missing_features, deadline, timing, table, timeout
            )
            unknown_outputs(wanted, outputs)
            return respond(model, outputs)
        except ModelyardError as exc:
            code = exc.code.name
            if isinstance(exc, Internal):  # the model's fault: the operator's to find by its id
                exc.request_id = exc.request_id or mlog.request_id.get()
                log.error(
                    "endpoint %s, served model %s: %s",
                    endpoint,
                    served.name,
                    exc.message,
                    exc_info=exc.__cause__ or exc,
                )
            raise
        except CallEnded:
            code = "CANCELLED"
            raise
        except Exception:
            code = "INTERNAL"
            raise
        finally:
            elapsed = time.perf_counter() - start
            if timing.stats is not None:  # a version took it: its ModelStatistics count it
                timing.stats.request(code == "OK", timing.rows, int(elapsed * 1e9), timing)
            # The version that took it, though it failed (its own fault, or the caller's).
            label_version = str(timing.version) if timing.version else "none"
            INFER_REQUESTS.labels(endpoint, served.name, label_version, code).inc()
            INFER_LATENCY.labels(endpoint, served.name, label_version).observe(elapsed)
            config = runtime.spec.inference_log
            if config.enabled and random.random() < (config.sampling_rate or 1.0):
                self.inference_log.record(
                    InferenceRecord(
                        record_id=0,
                        # Without an id (tritonclient sends none by default), the call's
                        # x-request-id, else its generated id: ground truth can name it.
                        request_id=request_id or mlog.request_id.get(),
                        request_time=int(time.time() * 1000),
                        endpoint=endpoint,
                        served_model=served.name,
                        model_version=timing.version,
                        latency_ms=elapsed * 1000,
                        inputs_json=to_json(tensors),
                        outputs_json=to_json(outputs),
                        status=code,
                    )
                )
