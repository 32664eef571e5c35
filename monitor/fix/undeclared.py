"""References the database does not declare: `*_id` columns without a foreign key (Django's
`db_constraint=False`, MyISAM-era schemas, an audit log's `author_id`) and Rails' polymorphic
`commentable_type`/`commentable_id` pairs. The fix cannot repoint what no foreign key names (which table such a
column means is the application's knowledge), so the rows holding a deleted row's key are left pointing at no
row if the column refers to the fixed table. The plan says so with evidence only: per such column of the fixed
table's schema, how many of its rows hold, compared by the database, the primary key of a row the fix deletes
(beside a `<name>_type` column, only the rows whose type value names the fixed table as a class, 'Account' or
'app.Account' for `account`; the other types' counts are listed as not referring); a column whose rows hold
none is not named.

Candidates are columns of the tables in the fixed table's schema (database) whose name ends in `_id` (or `Id`
after a lower-case letter, `userId`), that no foreign key of their table covers, whose type compares with the
fixed table's single-column primary key (integers with integers, text with text, otherwise the same Python
type), excluding dupewatch's own tables (copies, not references) and the partitions and inheritance children the
catalog lists (their parent's count holds their rows). A table the database would not count (the fix role may
not read it) is named as not counted, with the database's reason."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.expression import FromClause

from monitor.fix.catalog import catalog_for
from monitor.fix.values import display

# `account_id`, `ACCOUNT_ID`, `accountId`; not `paid`, `void`, `valid`, `pid`, `uuid` (case matters for `Id`).
_NAME = re.compile(r"(?:_[iI][dD]|(?<=[a-z])Id)$")
TYPE_VALUES = 5  # type values shown per polymorphic column


@dataclass(frozen=True)
class Undeclared:
    """One column no foreign key declares whose rows hold keys of rows to delete: `rows` of them, and per value
    of its polymorphic `<name>_type` column (when the table has one), the rows of the most frequent values."""

    schema: str | None
    table: str
    column: str
    rows: int
    type_column: str | None = None
    by_type: list[tuple[Any, int]] = field(default_factory=list)
    other_types: list[tuple[Any, int]] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.schema + '.' if self.schema else ''}{self.table}({self.column})"

    def describe(self, referred: str, target: str) -> str:
        """Evidence, not a verdict: a column named like a reference whose values equal keys of rows to delete."""
        line = f"{self.label} is named like a reference and no foreign key declares it"
        if self.type_column:
            shown = ", ".join(f"{display(value)!r} {rows:,}" for value, rows in self.by_type)
            line += f"; of its rows whose {self.type_column} names {target} ({shown})"
        line += (f", {self.rows:,} hold the {referred} of a row to delete: if it refers to {target}, {self.rows:,} of "
                 "its row(s) will point at no row")
        if self.other_types:
            shown = ", ".join(f"{display(value)!r} {rows:,}" for value, rows in self.other_types)
            line += f" (holding these values with other {self.type_column}, not referring to {target}: {shown})"
        return line

    def as_json(self) -> dict[str, Any]:
        return {"schema": self.schema, "table": self.table, "column": self.column, "rows": self.rows,
                "type_column": self.type_column,
                "by_type": [{"value": display(value), "rows": rows} for value, rows in self.by_type],
                "other_types": [{"value": display(value), "rows": rows} for value, rows in self.other_types]}


def _squash(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def names_table(value: Any, table: str) -> bool:
    """Whether a polymorphic type value names `table` as a class: 'Account', 'Admin::Account' or 'app.Account'
    for `account` or `accounts` (Rails' plural table names), 'AuditEntry' for `audit_entry`."""
    if not isinstance(value, str):
        return False
    last = _squash(re.split(r"::|\.", value.strip())[-1])
    squashed = _squash(table)
    return bool(last) and last in (squashed, squashed[:-1] if squashed.endswith("s") else squashed,
                                   squashed[:-2] if squashed.endswith("es") else squashed)


def _family(kind: sa.types.TypeEngine[Any]) -> str | None:
    if isinstance(kind, sa.types.Integer):
        return "integer"
    if isinstance(kind, sa.types.String):
        return "text"
    try:
        return kind.python_type.__name__
    except NotImplementedError:
        return None


def undeclared_references(conn: Connection, table: sa.Table, rel: FromClause, identity: str,
                          doomed: sa.ColumnElement[bool]) -> tuple[list[Undeclared], list[str]]:
    """The undeclared references holding keys of `rel`'s rows to delete (`doomed`, their primary key
    `rel.c[identity]`), and the tables that could not be read. Only for a single-column primary key."""
    pk = list(table.primary_key.columns)
    if len(pk) != 1 or (family := _family(pk[0].type)) is None:
        return [], []
    inspector = sa.inspect(conn)
    schema = table.schema
    # A partition or inheritance child is counted with its parent, whose query reads its rows.
    descendants = catalog_for(conn).descendant_tables(schema)
    names = [n for n in inspector.get_table_names(schema=schema)
             if not n.startswith("dupewatch_") and n not in descendants]
    if not names:
        return [], []
    columns = inspector.get_multi_columns(schema=schema, filter_names=names)
    declared = inspector.get_multi_foreign_keys(schema=schema, filter_names=names)
    found: list[Undeclared] = []
    unread: list[str] = []
    for (_schema, name), cols in sorted(columns.items(), key=lambda item: item[0][1]):
        covered = {c for fk in declared.get((_schema, name), []) for c in fk["constrained_columns"]}
        own = [c["name"] for c in cols]
        candidates = [c for c in cols if _NAME.search(c["name"]) and c["name"] not in covered
                      and not (name == table.name and c["name"] == pk[0].name)
                      and _family(c["type"]) == family]
        for col in candidates:
            stem = col["name"][:-2].rstrip("_")
            polymorphic = next((n for n in sorted(own) if n.lower() in (f"{stem}_type".lower(),
                                                                           f"{stem}type".lower())), None)
            child = sa.table(name, *[sa.column(n) for n in (col["name"], polymorphic) if n],
                             schema=schema).alias("dupewatch_undeclared")
            on = child.c[col["name"]] == rel.c[identity]
            try:
                with conn.begin_nested():
                    if polymorphic is None:
                        rows = int(conn.execute(sa.select(sa.func.count()).select_from(child.join(rel, on))
                                                .where(doomed)).scalar_one())
                        by_type: list[tuple[Any, int]] = []
                        others: list[tuple[Any, int]] = []
                    else:
                        kind = child.c[polymorphic]
                        counted = conn.execute(sa.select(kind, sa.func.count().label("n"))
                                               .select_from(child.join(rel, on)).where(doomed)
                                               .group_by(kind).order_by(sa.desc("n"), kind)).all()
                        by_type = [(r[0], int(r[1])) for r in counted if names_table(r[0], table.name)]
                        others = [(r[0], int(r[1])) for r in counted if not names_table(r[0], table.name)]
                        rows = sum(n for _v, n in by_type)
                        by_type, others = by_type[:TYPE_VALUES], others[:TYPE_VALUES]
            except sa.exc.DBAPIError as exc:
                reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
                unread.append(f"{schema + '.' if schema else ''}{name} ({reason})")
                break
            if rows:
                found.append(Undeclared(schema, name, col["name"], rows, polymorphic, by_type, others))
    return found, unread
