"""on PostgreSQL, the paths of version files compare byte by byte

A directory of a version's files is the range ('dir/', 'dir0') of `path`, which holds only byte
by byte: under a linguistic default collation (ICU, or glibc's en_US.UTF-8) listing 'a' showed
'A/x'. `model_version_files.path` becomes `COLLATE "C"`, as SQLite compares already.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06 23:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute('ALTER TABLE model_version_files ALTER COLUMN path TYPE varchar(1024) COLLATE "C"')


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        'ALTER TABLE model_version_files ALTER COLUMN path TYPE varchar(1024) COLLATE "default"'
    )
