"""The indexes an incremental check needs, as the exact statements that create them."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from monitor.dialects.polling import expr_text
from monitor.incremental.check import IncrementalCheck


def index_advice(conn: Connection, incremental: IncrementalCheck) -> str | None:
    """The statement(s) creating the indexes an incremental check lacks (None when it has them): one on the
    incremental column (reading past the watermark) and one on the key as compared (counting a key's rows), an
    expression index when the key is normalised (`lower(trim(col))`). Sets `incremental.key_indexed`."""
    resolved = incremental.resolved
    rules, table = resolved.rules, resolved.table
    wanted: list[tuple[str, list[ColumnElement[Any]]]] = [
        ("watermark", [incremental.column]), ("key", list(resolved.key_exprs))]
    advice = []
    for purpose, exprs in wanted:
        served = rules.served_by_index(conn, table, exprs)
        if purpose == "key":
            incremental.key_indexed = served
        if not served:
            names = [str(getattr(e, "name", "")) or expr_text(e).split("(")[-1].rstrip(")") for e in exprs]
            name = f"{table.name}_{'_'.join(names)}_dw_{purpose[:3]}"[:60]
            advice.append(rules.index_statement(table, exprs, name))
    return "; ".join(advice) or None
