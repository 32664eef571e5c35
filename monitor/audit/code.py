"""`dupewatch audit --source DIR`: the application's own lookups-then-inserts, read from its code."""

from __future__ import annotations

from pathlib import Path

from monitor.audit.candidates import Candidate
from monitor.audit.catalog import TableInfo


def code_lookups(sources: list[Path], tables: list[TableInfo]) -> list[Candidate]:
    return []
