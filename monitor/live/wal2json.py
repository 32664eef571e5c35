"""Reading the `wal2json` output plugin's format-version 2 into `Transaction`s.

With the options the stream passes (`format-version 2`, `include-timestamp`, `include-xids`, type OIDs instead of
type names) each line is one JSON object:

    {"action":"B","xid":741,"timestamp":"2026-12-03 14:02:11.123456+00"}
    {"action":"I","schema":"public","table":"signup","columns":[{"name":"id","typeoid":23,"value":7}, ...]}
    {"action":"U", ..., "columns":[...],"identity":[{"name":"id","typeoid":23,"value":7}]}
    {"action":"D", ..., "identity":[...]}
    {"action":"T","schema":"public","table":"signup"}
    {"action":"C","timestamp":"2026-12-03 14:02:11.123456+00"}

`identity` is the old row's replica identity (the primary key by default, every column with `REPLICA IDENTITY
FULL`). Names arrive unquoted. Values are JSON: numbers are kept as the digits the server printed (never a
float), booleans as `true`/`false`, everything else as the server's text, so that the database casts them
back exactly as it does `test_decoding`'s. Unlike `test_decoding`, wal2json prints nothing for the DELETE of a
row of a table without a replica identity (it logs a warning on the server): a transaction that shows no change
at all is therefore marked `unseen`, and every known group of the database is re-counted. Two values print
otherwise than the server does: a `bytea` as its bare hex digits (given back their `\\x`), and a float's or
numeric's NaN and infinities as `null`, like a NULL (given as any of the four, each re-counted).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from monitor.live.changes import Change, Fold, OneOf, Operation, Row, Transaction
from monitor.live.test_decoding import DecodingError, commit_time, keep

OPERATIONS: dict[str, Operation] = {"I": "INSERT", "U": "UPDATE", "D": "DELETE", "T": "TRUNCATE"}


def transactions(lines: list[str], pending: Transaction | None = None, fold: Fold | None = None
                 ) -> tuple[list[Transaction], Transaction | None]:
    """The committed transactions in `lines`, and the one still open at their end (to continue with). With
    `fold`, changes are handed to it, not kept in their transaction."""
    done: list[Transaction] = []
    current = pending
    for line in lines:
        record = _record(line)
        action = record.get("action")
        if action == "B":
            xid = record.get("xid")
            current = Transaction(xid=None if xid is None else str(xid))
        elif action == "C":
            finished = current or Transaction()
            finished.committed_at = _timestamp(record)
            finished.unseen = not finished.events
            done.append(finished)
            current = None
        elif action in OPERATIONS:
            if current is None:  # a change outside B/C: keep it rather than lose a hint
                current = Transaction()
            keep(current, _change(record, OPERATIONS[action]), fold)
    return done, current


def _record(line: str) -> dict[str, Any]:
    try:
        record = json.loads(line, parse_int=str, parse_float=str)
    except ValueError:
        raise DecodingError(f"unexpected wal2json line: {line[:80]!r}") from None
    if not isinstance(record, dict):
        raise DecodingError(f"unexpected wal2json line: {line[:80]!r}")
    return record


def _timestamp(record: dict[str, Any]) -> datetime | None:
    text = record.get("timestamp")
    return commit_time(f"(at {text})") if isinstance(text, str) else None


def _change(record: dict[str, Any], operation: Operation) -> Change:
    schema, table = record.get("schema"), record.get("table")
    if not isinstance(schema, str) or not isinstance(table, str):
        raise DecodingError(f"wal2json change without schema or table: {str(record)[:80]!r}")
    new = _row(record["columns"]) if "columns" in record else None
    old = _row(record["identity"]) if "identity" in record else None
    return Change(schema, table, operation, new=new, old=old)


# wal2json prints a float's or numeric's NaN, Infinity and -Infinity as JSON `null` (JSON has no such number),
# as it prints a NULL: such a value is any of them, and each is re-counted (`changes.OneOf`).
_NOT_FINITE = OneOf((None, "NaN", "Infinity", "-Infinity"))
_FLOATS = ("real", "double precision", "numeric", "float4", "float8")
# The same types by their OIDs (float4, float8, numeric; bytea), as wal2json tells them apart: the stream asks for
# each column's type OID (`include-type-oids`), not its name (`include-types` off), because wal2json 2.5 prints a
# name format_type() quotes whole (`"Billing"."Status"`, an enum in a schema of capitals) without escaping it: an
# invalid JSON line, which failed every read holding a row of any table with such a column (a gap each time).
_FLOAT_OIDS = ("700", "701", "1700")
_BYTEA_OID = "17"


def _row(columns: list[dict[str, Any]]) -> Row:
    return {str(column["name"]): _value(column) for column in columns}


def _value(column: dict[str, Any]) -> str | OneOf | None:
    value, kind, oid = column.get("value"), str(column.get("type", "")), str(column.get("typeoid", ""))
    if value is None and (oid in _FLOAT_OIDS or kind.split("(", 1)[0] in _FLOATS):
        return _NOT_FINITE
    if (oid == _BYTEA_OID or kind == "bytea") and isinstance(value, str):  # its hex digits without the server's `\x`
        return "\\x" + value
    return _text(value)


def _text(value: Any) -> str | None:
    """A JSON value as the text the server would print (numbers arrive as their digits already)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(value)  # an array or object (a json column): its JSON text
