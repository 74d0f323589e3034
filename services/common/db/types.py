"""Column types every service's schema shares."""

from __future__ import annotations

from sqlalchemy import String


def bytewise(length: int) -> String:
    """A string PostgreSQL compares byte by byte, as SQLite does. For columns only tested for
    equality, it spares strcoll calls in every index; for artifact paths it is a matter of
    correctness: a directory is the range ('dir/', 'dir0') and pages resume after a path, which
    hold only byte by byte (an ICU or glibc collation puts 'A/x' between 'a/' and 'a0')."""
    return String(length).with_variant(String(length, collation="C"), "postgresql")
