"""Reading the text of PostgreSQL's built-in `test_decoding` output plugin into `Transaction`s.

With the options the stream passes (`include-timestamp`, `skip-empty-xacts`) a transaction reads:

    BEGIN 741
    table public.signup: INSERT: id[integer]:7 email[text]:'a@example.com'
    table public.signup: UPDATE: old-key: id[integer]:7 new-tuple: id[integer]:8 email[text]:'b@example.com'
    table public.signup: DELETE: id[integer]:8
    COMMIT 741 (at 2026-12-03 14:02:11.123456+00)

Names are quoted as `quote_identifier` quotes them; values as `print_literal` prints them (numbers and
booleans bare, everything else in single quotes with quotes doubled, `null`, `unchanged-toast-datum`).
An UPDATE or DELETE carries the old row's replica identity columns only (the primary key by default), or
`(no-tuple-data)` for a table without one.
"""

from __future__ import annotations

import re
from datetime import datetime

from monitor.live.changes import Change, Fold, Operation, Row, Transaction

_NAME = r'(?:"(?:[^"]|"")*"|[^.":,])+\.(?:"(?:[^"]|"")*"|[^.":,])+'
# One TRUNCATE statement of several tables is one line naming them all: `table public.a, public.b: TRUNCATE: ...`
_CHANGE = re.compile(rf'^table (?P<name>{_NAME}(?:, {_NAME})*): '
                     r'(?P<op>INSERT|UPDATE|DELETE|TRUNCATE):(?: (?P<data>.*))?$', re.DOTALL)
_COMMIT_TIME = re.compile(r"\(at (?P<at>[^)]+)\)\s*$")
UNCHANGED_TOAST = "unchanged-toast-datum"


class DecodingError(ValueError):
    """A line the parser does not understand (a plugin version it does not know)."""


def transactions(lines: list[str], pending: Transaction | None = None, fold: Fold | None = None
                 ) -> tuple[list[Transaction], Transaction | None]:
    """The committed transactions in `lines`, and the one still open at their end (to continue with). With
    `fold`, changes are handed to it, not kept in their transaction."""
    done: list[Transaction] = []
    current = pending
    for line in lines:
        if line.startswith("BEGIN"):
            current = Transaction(xid=line.split()[1] if len(line.split()) > 1 else None)
        elif line.startswith("COMMIT"):
            finished = current or Transaction()
            finished.committed_at = commit_time(line)
            done.append(finished)
            current = None
        elif line.startswith("table "):
            if current is None:  # a change outside BEGIN/COMMIT: keep it rather than lose a hint
                current = Transaction()
            for change in parse_changes(line):
                keep(current, change, fold)
    return done, current


def keep(transaction: Transaction, change: Change, fold: Fold | None) -> None:
    """`change` kept in `transaction`, or handed to `fold` and counted."""
    if fold is None:
        transaction.changes.append(change)
    else:
        transaction.folded += 1
        fold(change)


def commit_time(line: str) -> datetime | None:
    match = _COMMIT_TIME.search(line)
    if match is None:
        return None
    text = match["at"].strip()
    if re.search(r"[+-]\d\d$", text):  # `+00`: a bare hour offset
        text += ":00"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def parse_changes(line: str) -> list[Change]:
    """The changes of one line: one, or one TRUNCATE per table of a statement that truncated several (before, such
    a line was taken for an unknown one: a gap, every check counted in full)."""
    match = _CHANGE.match(line)
    if match is None:
        raise DecodingError(f"unexpected test_decoding line: {line[:80]!r}")
    operation: Operation = match["op"]  # type: ignore[assignment]  # the regex allows these four only
    if operation == "TRUNCATE":
        return [Change(schema, table, operation) for schema, table in split_list(match["name"])]
    schema, table = split_qualified(match["name"])
    return [parse_change(schema, table, operation, match["data"] or "")]


def parse_change(schema: str, table: str, operation: Operation, data: str) -> Change:
    if data.startswith("(no-tuple-data)"):
        return Change(schema, table, operation)
    if operation == "INSERT":
        return Change(schema, table, operation, new=parse_tuple(data))
    if operation == "DELETE":
        return Change(schema, table, operation, old=parse_tuple(data))
    if data.startswith("old-key: "):
        old_text, _, new_text = data[len("old-key: "):].partition(" new-tuple: ")
        return Change(schema, table, operation, new=parse_tuple(new_text), old=parse_tuple(old_text))
    return Change(schema, table, operation, new=parse_tuple(data))


def split_qualified(name: str) -> tuple[str, str]:
    tables = split_list(name)
    if len(tables) != 1:
        raise DecodingError(f"unexpected table name {name!r}")
    return tables[0]


def split_list(names: str) -> list[tuple[str, str]]:
    """`schema.table, schema.table, ...` (names quoted as `quote_identifier` quotes them) as (schema, table) pairs."""
    tables: list[tuple[str, str]] = []
    parts: list[str] = []
    position = 0
    while position < len(names):
        identifier, position = _identifier(names, position, stop=".,")
        parts.append(identifier)
        if names.startswith(".", position):
            position += 1
        elif position == len(names) or names.startswith(", ", position):
            if len(parts) != 2:
                raise DecodingError(f"unexpected table name {names!r}")
            tables.append((parts[0], parts[1]))
            parts, position = [], position + 2
        else:
            raise DecodingError(f"unexpected table name {names!r}")
    return tables


def _identifier(text: str, position: int, stop: str = ".") -> tuple[str, int]:
    if text.startswith('"', position):
        end = position + 1
        while True:
            end = text.index('"', end)
            if text.startswith('""', end):
                end += 2
                continue
            return text[position + 1:end].replace('""', '"'), end + 1
    end = position
    while end < len(text) and text[end] not in stop:
        end += 1
    return text[position:end], end


def parse_tuple(text: str) -> Row:
    """`name[type]:value name[type]:value ...` as {name: value}; `unchanged-toast-datum` columns are left out
    (their value did not change and was not sent)."""
    row: Row = {}
    position = 0
    while position < len(text):
        name, position = _identifier(text, position, stop="[")
        end = text.find("]:", position)
        if not text.startswith("[", position) or end < 0:
            raise DecodingError(f"unexpected test_decoding tuple near {text[position:position + 40]!r}")
        position = end + 2
        value, position = _value(text, position)
        if value is not _UNCHANGED:
            row[name] = value if isinstance(value, str) or value is None else None
        while position < len(text) and text[position] == " ":
            position += 1
    return row


_UNCHANGED = object()


def _value(text: str, position: int) -> tuple[str | object | None, int]:
    if text.startswith("B'", position):  # bit strings
        position += 1
    if text.startswith("'", position):
        pieces: list[str] = []
        end = position + 1
        while True:
            close = text.index("'", end)
            pieces.append(text[end:close])
            if text.startswith("''", close):
                pieces.append("'")
                end = close + 2
                continue
            return "".join(pieces), close + 1
    end = text.find(" ", position)
    end = len(text) if end < 0 else end
    bare = text[position:end]
    if bare == "null":
        return None, end
    if bare == UNCHANGED_TOAST:
        return _UNCHANGED, end
    return bare, end
