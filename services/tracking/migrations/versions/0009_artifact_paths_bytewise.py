"""on PostgreSQL, artifact paths compare byte by byte

A directory's files are the range ('dir/', 'dir0') of `path`, and a listing's pages resume after
a path; both hold only byte by byte. Under a linguistic default collation (ICU, or glibc's
en_US.UTF-8) 'A/keep.txt' lies inside that range of 'a', so deleting directory 'a' deleted it,
listings showed it, and pages skipped files. `path` of `artifacts` and `artifact_placements`
becomes `COLLATE "C"`, as SQLite compares already.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 23:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("artifacts", "artifact_placements")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.execute(f'ALTER TABLE {table} ALTER COLUMN path TYPE varchar(1024) COLLATE "C"')


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.execute(f'ALTER TABLE {table} ALTER COLUMN path TYPE varchar(1024) COLLATE "default"')
