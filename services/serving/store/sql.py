"""SqlServingStore: endpoint specs and the inference log."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from sqlalchemy import and_, case, delete, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from modelyard.entities.serving import (
    BatchingConfig,
    Endpoint,
    InferenceLogConfig,
    InferenceRecord,
    MissingFeaturePolicy,
    ServedModel,
)
from modelyard.errors import AlreadyExists, NotFound
from modelyard.services.common.db import Database
from modelyard.services.serving.store.schema import endpoints, ground_truth, inference_log

# What an inputs or outputs JSON too long to read back (see list_inferences) reads as.
TRUNCATED_JSON = '{"truncated": true}'
# A record's bytes besides its JSON (ids, names, times) in a GetInferenceLog response, at most.
_RECORD_OVERHEAD = 512


def _capped(column: Any, limit: int) -> Any:
    return case((func.length(column) > limit, literal(TRUNCATED_JSON)), else_=column)


def _within(sizes: Sequence[Any], max_bytes: int) -> list[int]:
    """The ids of the leading records whose sizes add up to `max_bytes` at most (one at least)."""
    ids: list[int] = []
    total = 0
    for record_id, size in sizes:
        total += size + _RECORD_OVERHEAD
        if ids and total > max_bytes:
            break
        ids.append(record_id)
    return ids


def _now() -> int:
    return int(time.time() * 1000)


def _spec_json(endpoint: Endpoint) -> str:
    return json.dumps(
        {
            "served_models": [
                {
                    "name": s.name,
                    "model_uri": s.model_uri,
                    "traffic_percent": s.traffic_percent,
                    "batching": asdict(s.batching),
                }
                for s in endpoint.served_models
            ],
            "inference_log": asdict(endpoint.inference_log),
            "missing_features": endpoint.missing_features.value,
        }
    )


def _endpoint(row: Any) -> Endpoint:
    spec = json.loads(row.spec)
    return Endpoint(
        name=row.name,
        served_models=tuple(
            ServedModel(
                model_uri=s["model_uri"],
                traffic_percent=s["traffic_percent"],
                name=s["name"],
                batching=BatchingConfig(**s["batching"]),
            )
            for s in spec["served_models"]
        ),
        inference_log=InferenceLogConfig(**spec["inference_log"]),
        missing_features=MissingFeaturePolicy(spec["missing_features"]),
        creation_time=row.creation_time,
        last_update_time=row.last_update_time,
        user_id=row.user_id,
    )


def _not_found(name: str) -> NotFound:
    return NotFound(
        f"endpoint {name!r} does not exist; list endpoints with ListEndpoints",
        resource_type="endpoint",
        resource_name=name,
    )


class SqlServingStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def close(self) -> None:
        self.db.dispose()

    def create_endpoint(self, endpoint: Endpoint, user: str) -> Endpoint:
        now = _now()
        try:
            with self.db.write() as conn:
                conn.execute(
                    insert(endpoints).values(
                        name=endpoint.name,
                        spec=_spec_json(endpoint),
                        user_id=user,
                        creation_time=now,
                        last_update_time=now,
                    )
                )
        except IntegrityError:
            raise AlreadyExists(
                f"endpoint {endpoint.name!r} already exists; update it or choose another name",
                resource_type="endpoint",
                resource_name=endpoint.name,
            ) from None
        return self.get_endpoint(endpoint.name)

    def find_endpoint(self, name: str) -> Endpoint | None:
        with self.db.read() as conn:
            row = conn.execute(select(endpoints).where(endpoints.c.name == name)).first()
        return _endpoint(row) if row else None

    def get_endpoint(self, name: str) -> Endpoint:
        found = self.find_endpoint(name)
        if found is None:
            raise _not_found(name)
        return found

    def list_endpoints(self) -> list[Endpoint]:
        with self.db.read() as conn:
            rows = conn.execute(select(endpoints).order_by(endpoints.c.name)).all()
        return [_endpoint(r) for r in rows]

    def update_endpoint(self, endpoint: Endpoint) -> Endpoint:
        with self.db.write() as conn:
            changed = conn.execute(
                update(endpoints)
                .where(endpoints.c.name == endpoint.name)
                .values(spec=_spec_json(endpoint), last_update_time=_now())
            ).rowcount
        if not changed:
            raise _not_found(endpoint.name)
        return self.get_endpoint(endpoint.name)

    def delete_endpoint(self, name: str) -> None:
        with self.db.write() as conn:
            if not conn.execute(delete(endpoints).where(endpoints.c.name == name)).rowcount:
                raise _not_found(name)
            conn.execute(delete(inference_log).where(inference_log.c.endpoint == name))
            conn.execute(delete(ground_truth).where(ground_truth.c.endpoint == name))

    def record_inferences(self, records: Sequence[InferenceRecord]) -> None:
        if not records:
            return
        with self.db.write() as conn:
            self.db.ids_in_commit_order(conn, inference_log.name)
            conn.execute(
                insert(inference_log),
                [
                    {
                        "endpoint": r.endpoint,
                        "served_model": r.served_model,
                        "model_version": r.model_version,
                        "request_id": r.request_id[:128],
                        "request_time": r.request_time,
                        "latency_ms": r.latency_ms,
                        "inputs_json": r.inputs_json,
                        "outputs_json": r.outputs_json,
                        "status": r.status,
                    }
                    for r in records
                ],
            )

    def list_inferences(
        self,
        endpoint: str,
        since_record_id: int,
        max_results: int,
        newest_first: bool = False,
        max_bytes: int | None = None,
        field_bytes: int | None = None,
    ) -> list[InferenceRecord]:
        """Up to `max_results` records, fewer when more would exceed `max_bytes` (one at least),
        so that a page fits a gRPC message. An inputs or outputs JSON longer than `field_bytes`
        (logged before records were capped) reads as TRUNCATED_JSON: its size alone is read."""
        t, g = inference_log.c, ground_truth.c
        joined = inference_log.outerjoin(
            ground_truth, and_(g.endpoint == t.endpoint, g.request_id == t.request_id)
        )
        order = t.record_id.desc() if newest_first else t.record_id
        where = [t.endpoint == endpoint]
        if newest_first:
            if since_record_id:
                where.append(t.record_id < since_record_id)
        else:
            where.append(t.record_id > since_record_id)
        inputs, outputs = t.inputs_json, t.outputs_json
        if field_bytes is not None:
            inputs, outputs = _capped(inputs, field_bytes), _capped(outputs, field_bytes)
        with self.db.read() as conn:
            if max_bytes is not None:
                sizes = (
                    select(
                        t.record_id,
                        func.length(inputs)
                        + func.length(outputs)
                        + func.coalesce(func.length(g.value_json), 0),
                    )
                    .select_from(joined)
                    .where(*where)
                    .order_by(order)
                    .limit(max_results)
                )
                ids = _within(conn.execute(sizes).all(), max_bytes)
                if not ids:
                    return []
                where = [t.endpoint == endpoint, t.record_id.between(min(ids), max(ids))]
            query = (
                select(
                    *[c for c in inference_log.c if c.name not in ("inputs_json", "outputs_json")],
                    inputs.label("inputs_json"),
                    outputs.label("outputs_json"),
                    g.value_json,
                )
                .select_from(joined)
                .where(*where)
                .order_by(order)
                .limit(max_results)
            )
            rows = conn.execute(query).all()
        return [
            InferenceRecord(
                record_id=r.record_id,
                request_id=r.request_id,
                request_time=r.request_time,
                endpoint=r.endpoint,
                served_model=r.served_model,
                model_version=r.model_version,
                latency_ms=r.latency_ms,
                inputs_json=r.inputs_json,
                outputs_json=r.outputs_json,
                status=r.status,
                ground_truth_json=r.value_json or "",
            )
            for r in rows
        ]

    def record_ground_truth(
        self, endpoint: str, values: Sequence[tuple[str, str]], skip_unlogged: bool = False
    ) -> list[str]:
        """Upsert (request id, value JSON) pairs for requests the endpoint's log holds; the ids
        it does not hold, in the order given (then nothing is written, unless skip_unlogged:
        then the others are). Ground truth is only
        ever read joined to the log, so a value for another id would be stored unreadable.
        One indexed query checks the whole batch, in the transaction that writes it."""
        if not values:
            return []
        ids = list(dict.fromkeys(rid for rid, _value in values))
        now = int(time.time() * 1000)
        rows = [
            {"endpoint": endpoint, "request_id": rid, "value_json": value, "record_time": now}
            for rid, value in values
        ]
        t = inference_log.c
        logged = (
            select(t.request_id).where(t.endpoint == endpoint, t.request_id.in_(ids)).distinct()
        )
        with self.db.write() as conn:
            known = set(conn.execute(logged).scalars())
            unknown = [rid for rid in ids if rid not in known] if len(known) < len(ids) else []
            if unknown and not skip_unlogged:
                return unknown
            if unknown:
                rows = [row for row in rows if row["request_id"] in known]
            if not rows:
                return unknown
            dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
            stmt = dialect.insert(ground_truth)
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["endpoint", "request_id"],
                    set_={"value_json": stmt.excluded.value_json, "record_time": now},
                ),
                rows,
            )
        return unknown
