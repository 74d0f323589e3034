"""The metric-logging hot path in plain SQL, run on the raw DBAPI cursor.

log_metric is the call training loops make thousands of times; going through SQLAlchemy's
execution machinery for its two statements costs more than the statements themselves on SQLite.
The SQL is the same for SQLite and PostgreSQL apart from the parameter markers. The insert also
checks that the run exists and is active (no separate SELECT): a row count short of the batch
means the caller gets the precise error from the slow path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from modelyard.entities import Metric

_COLUMNS = "run_uuid, key, value, is_nan, timestamp, step"
_INSERT_IF_ACTIVE = (
    f"INSERT INTO metrics ({_COLUMNS}) SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS "
    "(SELECT 1 FROM runs WHERE run_uuid = ? AND lifecycle_stage = 'active')"
)
_INSERT = f"INSERT INTO metrics ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
_UPSERT_LATEST = (
    f"INSERT INTO latest_metrics ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (run_uuid, key) DO UPDATE SET value = excluded.value, "
    "is_nan = excluded.is_nan, timestamp = excluded.timestamp, step = excluded.step "
    "WHERE (excluded.step, excluded.timestamp) >= (latest_metrics.step, latest_metrics.timestamp)"
)


class MetricWriter:
    def __init__(self, dialect: str) -> None:
        def native(sql: str) -> str:
            return sql.replace("?", "%s") if dialect == "postgresql" else sql

        self._insert_if_active = native(_INSERT_IF_ACTIVE)
        self._insert = native(_INSERT)
        self._upsert_latest = native(_UPSERT_LATEST)

    def write(self, cursor: Any, run_id: str, batch: Sequence[Metric], checked: bool) -> bool:
        """Insert the batch and move the latest values; False if the run is missing or deleted
        (only tested when `checked` is False, i.e. the caller has not looked at the run yet)."""
        rows = [
            (
                run_id,
                m.key,
                0.0 if math.isnan(m.value) else m.value,
                math.isnan(m.value),
                m.timestamp,
                m.step,
            )
            for m in batch
        ]
        if checked:
            cursor.executemany(self._insert, rows)
        else:
            cursor.executemany(self._insert_if_active, [(*row, run_id) for row in rows])
            if cursor.rowcount != len(rows):
                return False
        newest: dict[str, tuple[Any, ...]] = {}
        for row in rows:
            current = newest.get(row[1])
            if current is None or (row[5], row[4]) >= (current[5], current[4]):
                newest[row[1]] = row
        cursor.executemany(self._upsert_latest, list(newest.values()))
        return True
