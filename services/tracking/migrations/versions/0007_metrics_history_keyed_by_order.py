"""on PostgreSQL, the metric history is keyed by its read order and compares names bytewise

Every history row written went into two indexes: the primary key `(id)` and
`ix_metrics_run_key_step`, which serves reading a run's history in order, and that one compared
run ids and keys through the database's collation (strcoll, e.g. for `C.UTF-8`). On PostgreSQL
the primary key becomes `(run_uuid, key, step, timestamp, id)`, the read order with its `id`
tie-break, the second index goes, and `run_uuid` and `key` compare byte by byte (`COLLATE "C"`;
the history only ever tests them for equality, which means the same under either). Measured
in-process on PostgreSQL 15, COPY of 1000 rows into the history: 6.6-8.6 -> 5.5-6.2 ms.

SQLite keeps `id` as its INTEGER PRIMARY KEY, the rowid, which numbers rows in the order they
are written, with the read order's index beside it; it compares strings bytewise already.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-05 22:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # One ALTER TABLE, so the new key's index is built once.
    op.drop_index("ix_metrics_run_key_step", table_name="metrics")
    op.execute(
        "ALTER TABLE metrics DROP CONSTRAINT pk_metrics, "
        'ALTER COLUMN run_uuid TYPE varchar(32) COLLATE "C", '
        'ALTER COLUMN key TYPE varchar(250) COLLATE "C", '
        "ADD CONSTRAINT pk_metrics PRIMARY KEY (run_uuid, key, step, timestamp, id)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "ALTER TABLE metrics DROP CONSTRAINT pk_metrics, "
        'ALTER COLUMN run_uuid TYPE varchar(32) COLLATE "default", '
        'ALTER COLUMN key TYPE varchar(250) COLLATE "default", '
        "ADD CONSTRAINT pk_metrics PRIMARY KEY (id)"
    )
    op.create_index("ix_metrics_run_key_step", "metrics", ["run_uuid", "key", "step", "timestamp"])
