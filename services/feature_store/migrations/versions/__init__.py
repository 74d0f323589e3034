"""Alembic revisions of the feature store schema, one module each."""
