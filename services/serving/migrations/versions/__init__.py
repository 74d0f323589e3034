"""Alembic revisions of the serving schema, one module each."""
