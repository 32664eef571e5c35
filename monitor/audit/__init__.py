"""`dupewatch audit`: from a database URL to findings (and a config that watches them).

`run_audit(url, schemas, budget)` reads the catalog (`catalog.py`, `dialect_catalog.py`), lists the
candidates (`candidates.py`, `lookups.py`, `code.py`, and `generic.py`: generic relations the data confirms),
measures them read-only within the budget (`measure.py`) and
decides what to report (`findings.py`). It returns plain data; `report.py` renders it. Nothing here writes
to the audited database: the connection is `monitor.db.Database`'s read-only one, and every transaction is
rolled back.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from monitor.audit import dialect_catalog
from monitor.audit.candidates import Candidate, QuoteFn, all_candidates
from monitor.audit.catalog import SchemaNotFound, read_catalog, resolve_schemas
from monitor.audit.code import code_lookups
from monitor.audit.findings import Finding, decide, fold_covered
from monitor.audit.generic import generic_candidates
from monitor.audit.lookups import check_then_insert
from monitor.audit.measure import Budget, Measurement, Measurer, Unmeasured
from monitor.config import ConfigError, DatabaseConfig
from monitor.db import Database, DatabaseError, redact_url

DEFAULT_BUDGET_SECONDS = 60.0
CATALOG_TIMEOUT_FLOOR = 5.0  # seconds the catalog queries may take even when the budget is smaller

__all__ = ["DEFAULT_BUDGET_SECONDS", "AuditReport", "Finding", "run_audit"]


@dataclass
class AuditReport:
    """What an audit found. `notes` are one-line remarks (for example, why check_then_insert was skipped)."""

    url: str  # password masked
    dialect: str
    schemas: list[str]
    findings: list[Finding]
    tables: int
    candidates: int
    duration_ms: float
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds spent in catalog, measuring, per table

    def as_json(self) -> dict[str, Any]:
        """The `--json` document: findings worst first, counts, and the whole duration in milliseconds."""
        return {"findings": [f.as_json() for f in self.findings], "tables": self.tables,
                "candidates": self.candidates, "duration_ms": round(self.duration_ms, 1)}

    @property
    def has_duplicates(self) -> bool:
        """Exit code 1: some finding has duplicates, or is an invalid unique index."""
        return any(f.has_duplicates or f.kind == "invalid_unique_index" for f in self.findings)


def open_database(url: str, budget: float, given_as: str = "--url") -> Database:
    """The audited database, read-only, with the whole budget as its statement timeout until each query
    arms its own share. Raises ConfigError (one line, password masked) for a URL that is not one. Errors name
    it `given_as`: what the user typed (`--url`, or `$DUPEWATCH_URL`), never an internal name."""
    timeout = min(max(budget, CATALOG_TIMEOUT_FLOOR), 24 * 86400.0)
    return Database("audit", DatabaseConfig(url=url, statement_timeout=timeout), given_as=given_as)


def run_audit(url: str, schemas: list[str] | None = None, budget: float = DEFAULT_BUDGET_SECONDS,
              sources: list[Path] | None = None, given_as: str = "--url") -> AuditReport:
    """Audit the schemas of `url` (default: the connection's default schema) within `budget` seconds;
    with `sources`, the application's code directories, its lookups-then-inserts too.

    Raises `monitor.db.DatabaseError` when the database cannot be reached and `ConfigError` for a bad URL or
    an unknown schema; both carry one line with the password masked.
    """
    started = time.perf_counter()
    clock = Budget(budget)
    database = open_database(url, budget, given_as)
    try:
        with database.read_only() as conn:
            # the catalog must be read whatever the budget: without it there is nothing to report
            dialect_catalog.set_query_timeout(conn, max(clock.remaining, CATALOG_TIMEOUT_FLOOR))
            try:
                chosen = resolve_schemas(conn, schemas or [])
            except SchemaNotFound as exc:
                raise ConfigError(str(exc)) from None
            try:
                tables = read_catalog(conn, chosen)
            except sa.exc.DBAPIError as exc:
                raise DatabaseError(f"reading the catalog of {', '.join(chosen)}: {database.describe(exc)}") from None
            stats = dialect_catalog.queries_for(conn).statement_stats(conn)
            conn.rollback()
            catalog_seconds = time.perf_counter() - started
            lookups = check_then_insert(stats.statements, tables)
            if sources:
                lookups = code_lookups(sources, tables) + lookups
            related = generic_candidates(conn, tables, max(clock.query_timeout(), CATALOG_TIMEOUT_FLOOR / 5))
            candidates = all_candidates(tables, QuoteFn(conn.dialect.identifier_preparer), lookups, related)
            findings, measured_seconds = _measure_all(Measurer(database, conn, clock), candidates)
    finally:
        database.dispose()
    notes = [stats.unavailable] if stats.unavailable else []
    findings = fold_covered(findings)
    findings.sort(key=Finding.sort_key)
    return AuditReport(redact_url(database.url), database.dialect, chosen, findings, len(tables), len(candidates),
                       (time.perf_counter() - started) * 1000, notes,
                       {"catalog": catalog_seconds, **measured_seconds})


def _measure_all(measurer: Measurer, candidates: list[Candidate]) -> tuple[list[Finding], dict[str, float]]:
    findings: list[Finding] = []
    seconds: dict[str, float] = {"measure": 0.0}
    for candidate in candidates:
        began = time.perf_counter()
        measured: Measurement | Unmeasured | None = measurer.measure(candidate) if candidate.measure else None
        spent = time.perf_counter() - began
        seconds["measure"] += spent
        table_key = f"table:{candidate.table.qualified}"
        seconds[table_key] = seconds.get(table_key, 0.0) + spent
        finding = decide(candidate, measured)
        if finding is not None:
            findings.append(finding)
    return findings, seconds
