"""Alembic revisions of the auth schema, one module each."""
