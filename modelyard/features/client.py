"""FeatureStoreClient: the feature store from Python, with Feast's method names.

store = FeatureStoreClient()                      # set_tracking_uri, MODELYARD_URI; TOKEN
store.apply([driver, driver_stats, model_v1])
training = store.get_historical_features(entity_df, features=["driver_stats:conv_rate"]).to_df()
store.materialize_incremental(datetime.now(UTC))
store.get_online_features(
    features=["driver_stats:conv_rate"], entity_rows=[{"driver_id": 1}]
).to_dict()
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pyarrow as pa

from modelyard._gen.features.v1 import features_pb2 as pb
from modelyard._gen.features.v1 import features_pb2_grpc
from modelyard.client._transport import Transport
from modelyard.client.config import (
    default_timeout,
    default_tls_ca,
    default_token,
    default_uri,
)
from modelyard.convert.common import grant_to_entity, grant_to_proto, ms_to_timestamp
from modelyard.convert.features import (
    append_python_values,
    array_to_python,
    definition_to_entity,
    definition_to_proto,
    from_micros,
    python_value,
    values_to_python,
)
from modelyard.data import profile
from modelyard.entities import Dataset
from modelyard.entities.common import Grant, PermissionLevel
from modelyard.errors import InvalidArgument
from modelyard.features.definitions import (
    Definition,
    Entity,
    FeatureService,
    FeatureView,
)

_CHUNK = 1024 * 1024
# Rows sent in one Push: well under the smallest message a server may be set to take (4 MB).
_PUSH_BYTES = 2 * 1024 * 1024
_ACTIONS = {v: k.removeprefix("PLAN_ACTION_").lower() for k, v in pb.PlanAction.items()}
_STATUS = {v: k.removeprefix("FEATURE_STATUS_") for k, v in pb.FeatureStatus.items()}


@dataclass(frozen=True)
class PlanStep:
    action: str
    kind: str
    name: str
    changes: tuple[str, ...]

    def __str__(self) -> str:
        detail = f" ({'; '.join(self.changes)})" if self.changes else ""
        return f"{self.action:9} {self.kind} {self.name}{detail}"


@dataclass(frozen=True)
class Materialization:
    feature_view: str
    start_time: datetime
    end_time: datetime
    rows: int


def _materialization(m: pb.Materialization) -> Materialization:
    start, end = m.start_time.ToDatetime(tzinfo=UTC), m.end_time.ToDatetime(tzinfo=UTC)
    return Materialization(m.feature_view, start, end, m.rows)


def _arrow_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ms(moment: datetime) -> int:
    """Milliseconds since 1970, floored as the server floors event times, in integers: float
    maths rounded a time far ahead with 999 µs up a ms and truncated times before 1970 toward it,
    moving an end that materialize includes to the ms."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


class RetrievalJob:
    """A training set being computed server-side; results stream back as Arrow on first use."""

    def __init__(self, run: Any, source: dict[str, Any]) -> None:
        self._run = run
        self._source = source  # what was asked for: a feature service or feature refs
        self._table: pa.Table | None = None
        self.summary: pb.HistoricalFeaturesSummary | None = None

    def to_arrow(self) -> pa.Table:
        if self._table is None:
            data = bytearray()
            for reply in self._run():
                if reply.WhichOneof("part") == "arrow_chunk":
                    data.extend(reply.arrow_chunk)
                else:
                    self.summary = reply.summary
            self._table = pa.ipc.open_stream(bytes(data)).read_all()
        return self._table

    def to_df(self) -> pd.DataFrame:
        return self.to_arrow().to_pandas()

    @property
    def output_uri(self) -> str | None:
        self.to_arrow()
        return self.summary.output_uri if self.summary and self.summary.output_uri else None

    def to_dataset(self, name: str) -> Dataset:
        """This training set as a run input: `modelyard.log_input(job.to_dataset("train"))`
        records its features, digest (of the written Parquet, if any), schema and row count."""
        table = self.to_arrow()
        digest = (self.summary.output_sha256 if self.summary else "") or hashlib.sha256(
            _arrow_bytes(table)
        ).hexdigest()
        schema = json.dumps(
            {"columns": [{"name": f.name, "type": str(f.type)} for f in table.schema]}
        )
        return Dataset(
            name=name,
            digest=digest[:16],
            source_type="feature_store",
            source=json.dumps({**self._source, "uri": self.output_uri}),
            schema=schema,
            profile=json.dumps(profile(table.to_pandas())),
        )


class OnlineResponse:
    def __init__(
        self, response: pb.GetOnlineFeaturesResponse, sent_keys: Sequence[list[Any] | None] = ()
    ) -> None:
        """`sent_keys`: the request's entity columns, each where it holds only plain integers or
        text (else None). The response starts with them, echoed as sent, so they need not be
        read back out of a Value message each (the larger part of reading a 100-row answer)."""
        self._response = response
        self._sent_keys = sent_keys

    def to_dict(self) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for i, c in enumerate(self._response.columns):
            sent = self._sent_keys[i] if i < len(self._sent_keys) else None
            if sent is not None:
                out[c.name] = list(sent)
            elif c.HasField("array"):
                out[c.name] = array_to_python(c.array)
            else:
                out[c.name] = values_to_python(c.values)
        return out

    def to_df(self) -> pd.DataFrame:
        return pd.DataFrame(self.to_dict())

    def statuses(self) -> dict[str, list[str]]:
        """PRESENT, NOT_FOUND or OUTSIDE_MAX_AGE per value, for feature columns."""
        return {
            c.name: [_STATUS[s] for s in c.statuses] for c in self._response.columns if c.statuses
        }

    def event_timestamps(self) -> dict[str, list[datetime | None]]:
        """When each value was true, None where NOT_FOUND."""
        times: dict[str, list[datetime | None]] = {}
        for c in self._response.columns:
            if not c.statuses:
                continue
            if len(c.event_time_micros) == len(c.statuses):
                times[c.name] = [
                    None if s == pb.FEATURE_STATUS_NOT_FOUND else from_micros(t)
                    for s, t in zip(c.statuses, c.event_time_micros, strict=True)
                ]
            else:  # a server that ignores packed_event_times
                times[c.name] = [
                    ts.ToDatetime(tzinfo=UTC) if ts.seconds or ts.nanos else None
                    for ts in c.event_timestamps
                ]
        return times


def _refuse_entity_value(name: str, items: Sequence[Any]) -> None:
    """The first entity row value of column `name` a request cannot hold (an integer beyond
    int64, 2**63 say), as InvalidArgument naming the column and the row."""
    for i, item in enumerate(items):
        try:
            python_value(item)
        except ValueError:
            raise InvalidArgument(
                f"entity row {i}: {name!r} is {item!r}, which no key holds (integer keys are "
                f"64-bit signed, {-(2**63)} to {2**63 - 1}); give a key in range",
                field=name,
            ) from None


class FeatureStoreClient:
    def __init__(
        self,
        uri: str | None = None,
        token: str | None = None,
        *,
        transport: Transport | None = None,
    ) -> None:
        self._t = transport or Transport(
            uri or default_uri(), token or default_token(), default_tls_ca(), default_timeout()
        )
        self._stub = self._t.stub(features_pb2_grpc.FeatureStoreServiceStub)

    def close(self) -> None:
        self._t.close()

    def __enter__(self) -> FeatureStoreClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- definitions ---------------------------------------------------------------------------

    def apply(
        self, objects: Sequence[Definition], dry_run: bool = False, partial: bool = True
    ) -> list[PlanStep]:
        """Create or update these definitions. With partial=False the set is complete: anything
        else is deleted (what `modelyard features apply` does with a definitions file)."""
        request = pb.ApplyDefinitionsRequest(
            definitions=[definition_to_proto(o) for o in objects], dry_run=dry_run, partial=partial
        )
        response = self._t.call(self._stub.ApplyDefinitions, request)
        return [
            PlanStep(_ACTIONS[s.action], s.kind, s.name, tuple(s.changes)) for s in response.plan
        ]

    def plan(self, objects: Sequence[Definition], partial: bool = True) -> list[PlanStep]:
        return self.apply(objects, dry_run=True, partial=partial)

    def _list(self, kind: str) -> list[Definition]:
        response = self._t.call(self._stub.ListDefinitions, pb.ListDefinitionsRequest(kind=kind))
        return [definition_to_entity(d) for d in response.definitions]

    def list_entities(self) -> list[Entity]:
        return self._list("entity")  # type: ignore[return-value]

    def list_feature_views(self) -> list[FeatureView]:
        return self._list("feature_view")  # type: ignore[return-value]

    def list_feature_services(self) -> list[FeatureService]:
        return self._list("feature_service")  # type: ignore[return-value]

    def get_definition(self, kind: str, name: str, version: int = 0) -> tuple[Definition, int]:
        response = self._t.call(
            self._stub.GetDefinition, pb.GetDefinitionRequest(kind=kind, name=name, version=version)
        )
        return definition_to_entity(response.definition), response.definition.version

    def get_feature_view(self, name: str) -> FeatureView:
        return self.get_definition("feature_view", name)[0]  # type: ignore[return-value]

    def get_feature_service(self, name: str) -> FeatureService:
        return self.get_definition("feature_service", name)[0]  # type: ignore[return-value]

    # -- training sets -------------------------------------------------------------------------

    def get_historical_features(
        self,
        entity_df: pd.DataFrame | pa.Table,
        features: Sequence[str] | FeatureService | str | None = None,
        full_feature_names: bool = False,
        event_timestamp_column: str = "event_timestamp",
        output_uri: str | None = None,
    ) -> RetrievalJob:
        """Point-in-time correct features for each entity row (features: "view:feature" refs,
        or a FeatureService / its name)."""
        header = pb.HistoricalFeaturesHeader(
            full_feature_names=full_feature_names,
            event_timestamp_column=event_timestamp_column,
            output_uri=output_uri or "",
        )
        if isinstance(features, FeatureService):
            header.feature_service = features.name
        elif isinstance(features, str):
            header.feature_service = features
        else:
            header.features.extend(features or [])
        table = (
            entity_df
            if isinstance(entity_df, pa.Table)
            else pa.Table.from_pandas(entity_df, preserve_index=False)
        )
        data = _arrow_bytes(table)

        def requests() -> Iterator[pb.GetHistoricalFeaturesRequest]:
            yield pb.GetHistoricalFeaturesRequest(header=header)
            for start in range(0, len(data), _CHUNK):
                yield pb.GetHistoricalFeaturesRequest(arrow_chunk=data[start : start + _CHUNK])

        source: dict[str, Any] = (
            {"feature_service": header.feature_service}
            if header.feature_service
            else {"features": list(header.features)}
        )
        return RetrievalJob(
            lambda: self._t.stream(self._stub.GetHistoricalFeatures, requests(), timeout=3600),
            source,
        )

    # -- materialization and online ------------------------------------------------------------

    def _materialize(
        self, start: datetime | None, end: datetime, views: Sequence[str] | None
    ) -> list[Materialization]:
        request = pb.MaterializeRequest(
            feature_views=list(views or []), end_time=ms_to_timestamp(_ms(end))
        )
        if start is not None:
            request.start_time.FromMilliseconds(_ms(start))
        response = self._t.call(self._stub.Materialize, request, timeout=3600)
        return [_materialization(m) for m in response.materializations]

    def materialize(
        self, start_date: datetime, end_date: datetime, feature_views: Sequence[str] | None = None
    ) -> list[Materialization]:
        """Load the latest value per entity with an event time in [start_date, end_date] online:
        both included (to the millisecond), as in Feast."""
        return self._materialize(start_date, end_date, feature_views)

    def materialize_incremental(
        self, end_date: datetime, feature_views: Sequence[str] | None = None
    ) -> list[Materialization]:
        """Continue each view from where its last materialization ended: event times after that
        end, up to and including end_date (a view never materialized starts its TTL back)."""
        return self._materialize(None, end_date, feature_views)

    def list_materializations(
        self, feature_view: str, latest_only: bool = False
    ) -> list[Materialization]:
        """A view's materializations in the order they ran, or every readable view's for "";
        with `latest_only`, only each view's latest (the one whose window ends last)."""
        response = self._t.call(
            self._stub.ListMaterializations,
            pb.ListMaterializationsRequest(feature_view=feature_view, latest_only=latest_only),
        )
        return [_materialization(m) for m in response.materializations]

    def get_online_features(
        self,
        features: Sequence[str] | FeatureService | str,
        entity_rows: Sequence[dict[str, Any]],
        full_feature_names: bool = False,
    ) -> OnlineResponse:
        request = pb.GetOnlineFeaturesRequest(
            full_feature_names=full_feature_names, typed_arrays=True, packed_event_times=True
        )
        if isinstance(features, FeatureService):
            request.feature_service = features.name
        elif isinstance(features, str):
            request.feature_service = features
        else:
            request.features.extend(features)
        names: list[str] = []
        for row in entity_rows:
            for name in row:
                if name not in names:
                    names.append(name)
        sent: list[list[Any] | None] = []
        for name in names:
            try:
                items = [row[name] for row in entity_rows]
            except KeyError:
                row = next(r for r in entity_rows if name not in r)
                raise InvalidArgument(f"entity row {row} lacks {name!r}", field=name) from None
            try:
                append_python_values(request.entities.add(name=name).values, items)
            except ValueError:  # protobuf's, naming neither the column nor the row
                _refuse_entity_value(name, items)
                raise
            plain = all(type(x) is int for x in items) or all(type(x) is str for x in items)
            sent.append(items if plain else None)
        return OnlineResponse(self._t.call(self._stub.GetOnlineFeatures, request), sent)

    def push(self, feature_view: str, df: pd.DataFrame, to: str = "online") -> int:
        """Write fresh rows: to "online", "offline" or "online_and_offline". Online, the
        features a frame lacks keep their stored values; the offline store takes only frames
        with every feature (a training set takes a row whole). A frame larger than one message
        takes several pushes (rows of one entity and time written later win, as within one
        push)."""
        if to not in ("online", "offline", "online_and_offline"):
            raise InvalidArgument("to must be online, offline or online_and_offline", field="to")
        table = pa.Table.from_pandas(df, preserve_index=False)
        per_push = max(1, table.num_rows * _PUSH_BYTES // max(table.nbytes, 1))
        pushed = 0
        for start in range(0, max(table.num_rows, 1), per_push):
            request = pb.PushRequest(
                feature_view=feature_view,
                arrow_rows=_arrow_bytes(table.slice(start, per_push)),
                to_online="online" in to,
                to_offline="offline" in to,
            )
            pushed += self._t.call(self._stub.Push, request).rows
        return pushed

    def set_permission(self, kind: str, name: str, principal: str, level: PermissionLevel) -> None:
        grant = grant_to_proto(Grant(principal, level))
        self._t.call(
            self._stub.SetFeaturePermission,
            pb.SetFeaturePermissionRequest(kind=kind, name=name, grant=grant),
        )

    def delete_permission(self, kind: str, name: str, principal: str) -> None:
        request = pb.DeleteFeaturePermissionRequest(kind=kind, name=name, principal=principal)
        self._t.call(self._stub.DeleteFeaturePermission, request)

    def list_permissions(self, kind: str, name: str) -> list[Grant]:
        request = pb.ListFeaturePermissionsRequest(kind=kind, name=name)
        response = self._t.call(self._stub.ListFeaturePermissions, request)
        return [grant_to_entity(g) for g in response.grants]
