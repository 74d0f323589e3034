"""Online features for models trained from a feature service.

A model logged with `feature_service=` is called with its entity keys (and, if the caller has
them, request-time values). Before predicting, serving looks the service's features up in the
online store as svc-serving and adds them to the request; a column the request already carries
wins over the stored one. A feature that is missing or older than its view's TTL either fails the
request with NOT_FOUND naming the entity or takes its type's default, per the endpoint's
MissingFeaturePolicy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelyard.entities.serving import MissingFeaturePolicy
from modelyard.errors import InvalidArgument, NotFound, Unavailable
from modelyard.features.client import FeatureStoreClient
from modelyard.features.definitions import Entity, Field, ValueType
from modelyard.services.common.logging import get_logger

log = get_logger(__name__)

_NUMPY: dict[ValueType, Any] = {
    ValueType.INT32: np.int32,
    ValueType.INT64: np.int64,
    ValueType.FLOAT32: np.float32,
    ValueType.FLOAT64: np.float64,
    ValueType.BOOL: np.bool_,
}
_DEFAULTS: dict[ValueType, Any] = {
    ValueType.INT32: 0,
    ValueType.INT64: 0,
    ValueType.FLOAT32: 0.0,
    ValueType.FLOAT64: 0.0,
    ValueType.BOOL: False,
    ValueType.STRING: "",
    ValueType.BYTES: b"",
    ValueType.UNIX_TIMESTAMP: None,
}
# The protocol datatype a join key arrives as.
KEY_DATATYPE: dict[ValueType, str] = {
    ValueType.INT32: "INT32",
    ValueType.INT64: "INT64",
    ValueType.FLOAT32: "FP32",
    ValueType.FLOAT64: "FP64",
    ValueType.BOOL: "BOOL",
    ValueType.STRING: "BYTES",
    ValueType.BYTES: "BYTES",
    ValueType.UNIX_TIMESTAMP: "INT64",
}


def _column(array: np.ndarray, name: str) -> list[Any]:
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise InvalidArgument(
            f"input {name!r} has shape {list(array.shape)}; an entity key is [rows] or [rows, 1]",
            field=name,
        )
    return [v.decode() if isinstance(v, bytes) else v for v in array.tolist()]


@dataclass(frozen=True)
class FeatureJoin:
    """What one model needs from the feature store: its service, keys and typed features."""

    service: str
    join_keys: tuple[Field, ...]
    features: tuple[Field, ...]
    lookup: Callable[[], FeatureStoreClient]

    @classmethod
    def resolve(cls, service: str, lookup: Callable[[], FeatureStoreClient]) -> FeatureJoin:
        """Read the service's definition now (at load), so a bad one fails the load, not calls."""
        client = lookup()
        definition = client.get_feature_service(service)
        keys: dict[str, Field] = {}
        features: list[Field] = []
        for projection in definition.projections:
            view = client.get_feature_view(projection.feature_view)
            for name in view.entities:
                entity, _ = client.get_definition("entity", name)
                assert isinstance(entity, Entity)
                keys |= {k.name: k for k in entity.join_keys if k.name not in keys}
            types = {f.name: f for f in view.schema}
            features += [types[n] for n in projection.features or view.feature_names]
        return cls(service, tuple(keys.values()), tuple(features), lookup)

    def join(
        self, tensors: dict[str, np.ndarray], policy: MissingFeaturePolicy
    ) -> dict[str, np.ndarray]:
        wanted = [f for f in self.features if f.name not in tensors]
        if not wanted:
            return tensors  # the caller sent every feature itself
        keys = [k.name for k in self.join_keys]
        missing = [k for k in keys if k not in tensors]
        if missing:
            raise InvalidArgument(
                f"send input {missing[0]!r}: this model looks its features up in feature service "
                f"{self.service!r} by {keys}",
                field=missing[0],
            )
        columns = [_column(tensors[k], k) for k in keys]
        if len({len(c) for c in columns}) != 1:
            raise InvalidArgument(f"entity keys {keys} differ in length", field=keys[-1])
        rows = [dict(zip(keys, values, strict=True)) for values in zip(*columns, strict=True)]
        if not rows:
            raise InvalidArgument(f"input {keys[0]!r} has no rows", field=keys[0])
        try:
            response = self.lookup().get_online_features(self.service, rows)
        except Unavailable as exc:
            # The peer client's message names the store's address and advises its own user
            # (MODELYARD_URI, `modelyard up`): neither is the endpoint caller's to act on.
            log.warning("feature store unreachable for feature service %s: %s", self.service, exc)
            raise Unavailable(
                f"serving could not reach its feature store to look up the features of feature "
                f"service {self.service!r}; retry shortly",
                resource_type="feature_service",
                resource_name=self.service,
            ) from None
        values, statuses = response.to_dict(), response.statuses()
        joined = dict(tensors)
        for feature in wanted:
            column = values[feature.name]
            for i, status in enumerate(statuses[feature.name]):
                if status == "PRESENT" and column[i] is not None:
                    continue
                if policy == MissingFeaturePolicy.FAIL:
                    entity = ", ".join(f"{k}={rows[i][k]!r}" for k in keys)
                    raise NotFound(
                        f"feature {feature.name!r} of {entity} is {status} in feature service "
                        f"{self.service!r}; materialize or push it, or set the endpoint's "
                        "missing_features to IMPUTE",
                        resource_type="entity",
                        resource_name=entity,
                    )
                column[i] = _DEFAULTS[feature.dtype]
            dtype = _NUMPY.get(feature.dtype, object)
            joined[feature.name] = np.asarray(column, dtype=dtype)
        return joined
