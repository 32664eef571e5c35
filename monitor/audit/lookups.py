"""`check_then_insert`: read the application's own statements (PostgreSQL `pg_stat_statements`) for tables
that are looked up by an equality on some columns and then inserted into, with no unique index on those
columns: the shape of `get_or_create` and of every hand-written "SELECT, then INSERT if missing".

The statements are normalised by PostgreSQL (constants replaced by `$1`, `$2`, ...). This is a
deliberately small reader of the common single-table forms, not a SQL parser: a SELECT with a join, a
sub-query, an `OR` or any condition other than `column = $n` / `column IS NULL` is ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from monitor.audit.candidates import Candidate, ordered
from monitor.audit.catalog import TableInfo

_NAME = r'(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)'
_QUALIFIED = rf"{_NAME}(?:\s*\.\s*{_NAME})?"
_INSERT = re.compile(rf"^\s*INSERT\s+INTO\s+(?P<table>{_QUALIFIED})", re.IGNORECASE)
_SELECT = re.compile(
    rf"^\s*SELECT\s.+?\sFROM\s+(?P<table>{_QUALIFIED})(?:\s+(?:AS\s+)?(?P<alias>{_NAME}))?"
    r"\s+WHERE\s+(?P<where>.+?)(?:\s+(?:ORDER\s+BY|LIMIT|OFFSET|FETCH|FOR\s+UPDATE|FOR\s+SHARE|GROUP\s+BY)\b.*)?$",
    re.IGNORECASE | re.DOTALL)
_TERM = re.compile(rf"^(?:{_NAME}\s*\.\s*)*(?P<column>{_NAME})\s*(?:=\s*\$\d+|(?P<null>IS\s+NULL))$",
                   re.IGNORECASE)
_NOT_A_TABLE = {"where", "join", "inner", "left", "right", "full", "cross", "natural", "on", "using"}


@dataclass(frozen=True)
class Lookup:
    table: str  # unquoted, without schema
    columns: frozenset[str]
    calls: int
    nulls: frozenset[str] = frozenset()  # the columns looked up as `IS NULL`


def unquote(name: str) -> str:
    name = name.strip()
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


def table_name(qualified: str) -> str:
    parts = re.findall(_NAME, qualified)
    return unquote(parts[-1])


def parse_lookup(query: str, calls: int) -> Lookup | None:
    """The table and equality columns of a single-table `SELECT ... WHERE a = $1 AND b = $2`, else None."""
    match = _SELECT.match(" ".join(query.split()))
    if match is None:
        return None
    alias = match.group("alias")
    if alias and alias.lower() in _NOT_A_TABLE:
        return None
    where = match.group("where").strip()
    while where.startswith("(") and where.endswith(")"):
        where = where[1:-1].strip()
    if re.search(r"\b(OR|SELECT|EXISTS)\b|[()]", where, re.IGNORECASE):
        return None
    columns, nulls = set(), set()
    for term in re.split(r"\s+AND\s+", where, flags=re.IGNORECASE):
        term_match = _TERM.match(term.strip())
        if term_match is None:
            return None
        columns.add(unquote(term_match.group("column")))
        if term_match.group("null"):
            nulls.add(unquote(term_match.group("column")))
    return Lookup(table_name(match.group("table")), frozenset(columns), calls, frozenset(nulls))


def inserted_table(query: str) -> str | None:
    match = _INSERT.match(query)
    return table_name(match.group("table")) if match else None


def check_then_insert(statements: list[tuple[str, int]], tables: list[TableInfo]) -> list[Candidate]:
    """Candidates for tables that are both looked up by equality and inserted into, ranked by lookup calls;
    lookups that a primary key or valid unique index already answers are left out."""
    inserted = {name for query, _calls in statements if (name := inserted_table(query))}
    by_name = {t.name: t for t in tables}
    calls: dict[tuple[str, frozenset[str], frozenset[str]], int] = {}
    for query, count in statements:
        lookup = parse_lookup(query, count)
        if lookup is None or lookup.table not in inserted or lookup.table not in by_name:
            continue
        key = (lookup.table, lookup.columns, lookup.nulls)
        calls[key] = calls.get(key, 0) + count
    found = []
    for (name, columns, nulls), count in sorted(calls.items(), key=lambda item: -item[1]):
        table = by_name[name]
        if not columns <= set(table.columns) or table.stops_copies(columns, nulls):
            continue
        found.append(Candidate("check_then_insert", table, ordered(table, columns),
                               f"looked up by {', '.join(ordered(table, columns))} {count:,} times and inserted "
                               "into, with no unique index on those columns", needs_duplicates=False, calls=count))
    return found
