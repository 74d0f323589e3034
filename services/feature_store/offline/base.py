"""The offline engine interface: what a bigger engine (Spark, a SQL warehouse) would implement to
take DuckDB's place when the data outgrows one machine."""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa

from modelyard.features.definitions import FeatureView

# The engines' working columns (`__ts`, `__created`, `__row`, `__event_time_ms`) start with
# this; no feature, join key or entity row column may, so none can be taken for one of them.
RESERVED_PREFIX = "__"


@dataclass(frozen=True)
class ViewRequest:
    """Features wanted from one view, and the names they get in the result; `online_name`:
    what the online store keys the view's rows by (online.base.online_name), taken with the
    definition so that a lookup asks for nothing more; its pushed offline rows are kept under it
    too, so a view created again under a deleted one's name reads none of the deleted one's."""

    view: FeatureView
    features: tuple[str, ...]
    output_names: tuple[str, ...]
    online_name: str


class OfflineEngine(abc.ABC):
    @abc.abstractmethod
    def historical(
        self, entities: pa.Table, requests: Sequence[ViewRequest], event_timestamp_column: str
    ) -> pa.RecordBatchReader:
        """For each entity row: the latest values at or before its event time and within each
        view's TTL, never from the future; ties broken by the created timestamp. Rows come back
        in the order they were given, with the requested columns appended."""

    @abc.abstractmethod
    def latest(
        self, view: FeatureView, online_name: str, start_us: int, end_us: int
    ) -> Iterator[pa.RecordBatch]:
        """The latest row per entity with an event time in [start, end] (µs since 1970, both
        included, as Feast's materialize window), for materialization; `online_name`: as
        ViewRequest's (the view's pushed rows are kept under it). Join keys,
        `__event_time_us` and `__created_time_us` (µs since 1970, the latter null where the row
        has none), then the features. In batches, each entity in one only, so that a
        view's size does not decide the server's memory; errors of reading the source may come
        with any batch."""
