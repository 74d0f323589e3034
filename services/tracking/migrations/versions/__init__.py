"""Alembic revisions of the tracking schema, one module each."""
