"""From measured candidates to findings: which are reported, how severe they are, and the check that
would watch each.

Severity rules: `high` needs evidence (duplicates measured, or an invalid unique index); a structural risk
without measured duplicates is `medium` (`low` for a table without a primary key, or for a suspicion the
budget left unmeasured). Candidates that are only suspicious *if* duplicates exist are dropped when none
are found, and a natural key whose values mostly repeat (orders per customer) is taken to repeat by design.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from monitor.audit.candidates import Candidate, Kind
from monitor.audit.measure import Measurement, Unmeasured

Severity = Literal["high", "medium", "low"]
SEVERITY_RANK = {"high": 0, "medium": 1, "low": 2}
ONE_TO_ONE_SHARE = 0.99  # one_to_one_suspect: at least this share of values occur once ...
ONE_TO_ONE_MIN_VALUES = 20  # ... among at least this many distinct values
DESIGN_SHARE = 0.5  # a natural key whose values occur once less often than this repeats by design
DATABASE_NAME = "app"  # the [databases] entry a written config uses
TIMESTAMP_NAMES = ("created_at", "inserted_at", "created", "date_created", "created_on", "creation_date")


@dataclass(frozen=True)
class Finding:
    kind: Kind
    table: str  # schema.table
    columns: list[str]
    severity: Severity
    duplicate_groups: int | None
    excess_rows: int | None
    estimated: bool
    evidence: str
    check: dict[str, Any] | None
    calls: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "table": self.table, "columns": self.columns, "severity": self.severity,
                "duplicate_groups": self.duplicate_groups, "excess_rows": self.excess_rows,
                "estimated": self.estimated, "evidence": self.evidence, "check": self.check}

    @property
    def has_duplicates(self) -> bool:
        return bool(self.duplicate_groups)

    def sort_key(self) -> tuple[int, int, int, str, str]:
        """Worst first: severity, then excess rows, then lookup calls."""
        return (SEVERITY_RANK[self.severity], -(self.excess_rows or 0), -(self.calls or 0), self.table, self.kind)


def decide(candidate: Candidate, measured: Measurement | Unmeasured | None) -> Finding | None:
    """The finding a candidate becomes, or None when the measurement clears it."""
    if isinstance(measured, Measurement) and not _suspicious(candidate, measured):
        return None
    severity = _severity(candidate, measured)
    groups = measured.groups if isinstance(measured, Measurement) else None
    excess = measured.excess_rows if isinstance(measured, Measurement) else None
    estimated = isinstance(measured, Measurement) and measured.estimated
    return Finding(candidate.kind, candidate.table.qualified, list(candidate.columns), severity, groups, excess,
                   estimated, _evidence(candidate, measured), _check_entry(candidate, measured),
                   candidate.calls)


def _suspicious(candidate: Candidate, m: Measurement) -> bool:
    if candidate.kind == "non_unique_natural_key" and m.groups and m.once_share < DESIGN_SHARE:
        return False  # most values repeat: many rows per key is the design (orders per customer and status)
    if candidate.kind == "one_to_one_suspect":
        return bool(m.groups) and m.distinct_keys >= ONE_TO_ONE_MIN_VALUES and m.once_share >= ONE_TO_ONE_SHARE
    return bool(m.groups) or not candidate.needs_duplicates


def _severity(candidate: Candidate, measured: Measurement | Unmeasured | None) -> Severity:
    if candidate.kind == "invalid_unique_index":
        return "high"
    if isinstance(measured, Measurement) and measured.groups:
        return "high"
    if candidate.kind == "no_primary_key" or candidate.needs_duplicates:
        return "low"  # no evidence: a table without a key, or a suspicion the budget left unmeasured
    return "medium"


def _evidence(candidate: Candidate, measured: Measurement | Unmeasured | None) -> str:
    parts = [candidate.reason]
    if isinstance(measured, Measurement):
        parts.append(_figures(candidate, measured))
    elif isinstance(measured, Unmeasured):
        parts.append(measured.reason)
    if candidate.rebuild:
        parts.append(f"rebuild: {candidate.rebuild}")
    return "; ".join(p for p in parts if p)


def _figures(candidate: Candidate, m: Measurement) -> str:
    where = f" (estimated from a {m.sample_percent:.2g}% sample)" if m.estimated and m.sample_percent else ""
    if not m.groups:
        return f"no duplicates{where}"
    text = f"{m.groups:,} duplicate group(s), {m.excess_rows:,} excess row(s), largest {m.largest}{where}"
    if candidate.kind == "one_to_one_suspect":
        text += f"; {m.once_share:.1%} of {m.distinct_keys:,} values occur once"
    if candidate.kind == "unique_with_nullable_columns":
        text = "rows differing only by NULLs: " + text
    return text


def _check_entry(candidate: Candidate, measured: Measurement | Unmeasured | None) -> dict[str, Any] | None:
    if not candidate.columns or candidate.kind == "no_primary_key":
        return None
    table = candidate.table
    entry: dict[str, Any] = {
        "name": check_name(table.name, candidate.columns),
        "database": DATABASE_NAME,
        "description": f"{candidate.kind}: {candidate.reason}",
        "table": config_table_name(table.schema, table.name),
        "key": list(candidate.columns),
    }
    if candidate.row_filter == "not_null":
        entry["nulls"] = "distinct"
    stamp = next((c for c in TIMESTAMP_NAMES if c in table.columns and table.columns[c].type_class == "temporal"),
                 None)
    if stamp:
        entry["timestamp"] = stamp
    return entry


def check_name(table: str, columns: tuple[str, ...]) -> str:
    raw = "-".join([table, *columns]).lower()
    return re.sub(r"[^a-z0-9_-]+", "-", raw).strip("-") or "check"


def config_table_name(schema: str, name: str) -> str:
    """`schema.table` as the config's `table` reads it, quoting a part that holds a dot or a quote."""
    def part(text: str) -> str:
        return '"' + text.replace('"', '""') + '"' if any(ch in text for ch in '."`') else text
    return f"{part(schema)}.{part(name)}"
