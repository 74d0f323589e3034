"""Metadata database plumbing: engines, transactions, migrations."""

from modelyard.services.common.db.engine import Database, normalize_url

__all__ = ["Database", "normalize_url"]
