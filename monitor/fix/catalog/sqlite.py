"""SQLite's catalog: reflection, `PRAGMA foreign_key_list`/`index_list`/`index_xinfo`/`table_xinfo`, and
`sqlite_master` for triggers."""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.dialects import for_backend
from monitor.dialects.sqlite import affinity_type, is_strict
from monitor.fix.catalog.base import Catalog, ForeignKey, Trigger, UniqueKey
from monitor.fix.errors import FixRefused

# SQLite compares table and column names folding the 26 ASCII capitals only (`REFERENCES ÖKONOM` is no reference to
# the table ökonom): the NOCASE collation's rule, which the dialect's reflection asks SQLite to apply.
_SQLITE_NAME_FOLD = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def _compares_alike(referred: tuple[str, str], referring: tuple[str, str]) -> bool:
    """Whether `referring = referred` compares as the foreign key does, given each column's (affinity,
    collation): the same collation, and `=` converting the values as the foreign key does (SQLite docs,
    "Comparison Affinity Rules"): a numeric referred column's affinity is the one `=` applies to any other
    referencing value (as the foreign key does), but a TEXT referred column's value is made a number beside a
    numeric referencing column, and a referred column without affinity (BLOB) converts nothing, where `=` applies
    a referencing column's affinity."""
    (mine, collation), (theirs, their_collation) = referred, referring
    if collation != their_collation:
        return False
    # (not TEXT beside a column without affinity: two columns' `=` applies TEXT to neither when one is BLOB or
    # untyped, SQLite's BLOB affinity, where the documented rule speaks of expressions without any; the foreign key
    # applies TEXT to the referencing 1, which then refers to '1')
    return mine == "numeric" or mine == theirs


class SqliteCatalog(Catalog):
    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)
        self._declared: dict[tuple[str | None, str], dict[str, str]] = {}  # `_declared_types`, per table

    def foreign_keys_to(self, table: sa.Table) -> list[ForeignKey]:
        inspector = sa.inspect(self.conn)
        found = []
        pragmas: dict[tuple[str | None, str], list[dict[str, Any]]] = {}  # (a table with two keys read once)
        wanted = table.name.translate(_SQLITE_NAME_FOLD)
        for (schema, child), fks in sorted(inspector.get_multi_foreign_keys(schema=table.schema).items(),
                                           key=lambda item: str(item[0])):
            for fk in fks:
                if fk["referred_table"].translate(_SQLITE_NAME_FOLD) != wanted:
                    continue
                columns = tuple(fk["constrained_columns"])
                referred = self._referred(table, schema, child, columns, tuple(fk["referred_columns"]))
                if (schema, child) not in pragmas:
                    pragmas[schema, child] = self._foreign_key_list(schema, child)
                ondelete, onupdate = self._actions(pragmas[schema, child], columns)
                found.append(ForeignKey(schema, child, fk.get("name"), columns, referred, ondelete,
                                        onupdate=onupdate,
                                        compared_as=self._compared_as(table, schema, child, columns, referred),
                                        compared_under=tuple(self._comparisons(table.schema, table.name, referred)[r][1]
                                                             for r in referred)))
        return found

    def _compared_as(self, table: sa.Table, schema: str | None, child: str, columns: tuple[str, ...],
                     referred: tuple[str, ...]) -> tuple[str | None, ...]:
        """`ForeignKey.compared_as`: SQLite matches a referencing value with the referred column's affinity and
        collation; where the referencing column's differ, `=` would match other rows (an INTEGER column's 7
        equals the text '007', which the foreign key compares as '7'; a BINARY 'bb' differs from a NOCASE 'BB'),
        so the referred column's collation is named for `ForeignKey.refers`."""
        mine = self._comparisons(table.schema, table.name, referred)
        theirs = self._comparisons(schema, child, columns)
        return tuple(None if _compares_alike(mine[r], theirs[c]) else mine[r][1]
                     for c, r in zip(columns, referred, strict=True))

    def _comparisons(self, schema: str | None, name: str, columns: tuple[str, ...]) -> dict[str, tuple[str, str]]:
        """(affinity, collation) of each of `columns`, by SQLite's rules for a declared type (docs, "Determination
        Of Column Affinity"; INTEGER, REAL and NUMERIC compare alike) and as SQLite compiles `=` on it."""
        declared = self._declared_types(schema, name)
        collations = for_backend("sqlite").compared_apart(
            self.conn, sa.Table(name, sa.MetaData(), *[sa.Column(c) for c in columns], schema=schema))
        strict = is_strict(self.conn, schema, name)  # (a STRICT table's ANY column has no affinity)
        found = {}
        for column in columns:
            kind = affinity_type(declared.get(column.translate(_SQLITE_NAME_FOLD), ""), strict)
            affinity = {"TEXT": "text", "BLOB": "none", "ANY": "none"}.get(kind, "numeric")
            found[column] = (affinity, collations[column].name if column in collations else "BINARY")
        return found

    def _referred(self, table: sa.Table, schema: str | None, child: str, columns: tuple[str, ...],
                  written: tuple[str, ...]) -> tuple[str, ...]:
        """The columns of `table` a foreign key of `child(columns)` refers to, as `table` declares them (none
        written: the primary key). Reflection names them so wherever SQLite matches them (case-insensitively, ASCII
        letters only: see the SQLite dialect's `_resolve_referred_names`). One that is no declared column
        (`REFERENCES u(rowid)`, `u(ÉMAIL)` for the column émail, or no column written and no primary key) is what
        SQLite calls a "foreign key mismatch": refused, naming the reference."""
        names = [c.name for c in table.columns] or \
            [c["name"] for c in sa.inspect(self.conn).get_columns(table.name, schema=table.schema)]
        declared = {name.translate(_SQLITE_NAME_FOLD): name for name in names}
        referred = tuple(declared.get(c.translate(_SQLITE_NAME_FOLD), "") for c in written) if written else \
            tuple(c.name for c in table.primary_key.columns)
        if referred and all(referred):
            return referred
        where = f"{schema}.{child}" if schema else child
        to = f"{table.name}({', '.join(written)})" if written else f"{table.name} (its primary key: it has none)"
        raise FixRefused(
            f"foreign key {where}({', '.join(columns)}) refers to {to}, which is not a declared column of "
            f"{table.name}: SQLite calls this a foreign key mismatch (while foreign keys are "
            f"enforced it refuses writes to both tables), and dupewatch cannot tell which rows it refers to; make "
            "it refer to a declared key (an INTEGER PRIMARY KEY column is the rowid) or drop it; nothing changed")

    def _declared_types(self, schema: str | None, name: str) -> dict[str, str]:
        """Each column's declared type (upper case) by its folded name, read once per table and catalog."""
        cache = self._declared
        if (schema, name) not in cache:
            quote = self.conn.dialect.identifier_preparer.quote
            prefix = f"{quote(schema)}." if schema else ""
            cache[schema, name] = {
                str(r["name"]).translate(_SQLITE_NAME_FOLD): str(r["type"] or "").upper()
                for r in self.conn.exec_driver_sql(f"PRAGMA {prefix}table_xinfo({quote(name)})").mappings()}
        return cache[schema, name]

    def _foreign_key_list(self, schema: str | None, table: str) -> list[dict[str, Any]]:
        """`PRAGMA foreign_key_list` of the table: every foreign key's parts, with both actions."""
        quote = self.conn.dialect.identifier_preparer.quote
        prefix = f"{quote(schema)}." if schema else ""
        return [dict(row) for row in
                self.conn.exec_driver_sql(f"PRAGMA {prefix}foreign_key_list({quote(table)})").mappings()]

    @staticmethod
    def _actions(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> tuple[str | None, str | None]:
        """(ON DELETE, ON UPDATE) of the foreign key over `columns` among a table's `_foreign_key_list`:
        SQLAlchemy misses ON DELETE on SQLite's inline `REFERENCES`; the pragma always has both (ON DELETE NO
        ACTION as None)."""
        by_id: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            by_id.setdefault(row["id"], []).append(row)
        for parts in by_id.values():
            if tuple(p["from"] for p in sorted(parts, key=lambda p: p["seq"])) == columns:
                action = parts[0]["on_delete"]
                return None if action in (None, "NO ACTION") else action, parts[0]["on_update"]
        return None, None

    def _read_triggers(self, schema: str | None, name: str) -> tuple[Trigger, ...]:
        # SQLite keeps no catalog of a trigger's timing and event: its CREATE TRIGGER text is the record (one
        # event each; `UPDATE OF a, b` fires only when the UPDATE sets a listed column; the default timing is
        # BEFORE).
        rows = self.conn.execute(sa.text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND lower(tbl_name) = lower(:t) "
            "ORDER BY name"), {"t": name}).all()
        found: list[Trigger] = []
        for trigger, sql in rows:
            match = re.search(r"\b(BEFORE|AFTER|INSTEAD\s+OF)?\s*\b(DELETE|INSERT|UPDATE)(\s+OF\s+(.*?))?\s+ON\b",
                              sql or "", re.I | re.S)
            if match is None:
                continue
            listed = frozenset(c.strip().strip('"`[]').lower() for c in (match.group(4) or "").split(",") if c.strip())
            timing = re.sub(r"\s+", " ", (match.group(1) or "BEFORE").upper())
            found.append(Trigger(str(trigger), timing, match.group(2).upper(), listed))
        return tuple(found)

    def column_types(self, tables: Sequence[sa.Table]) -> list[dict[str, str]]:
        if not tables:
            return []
        parts = " UNION ALL ".join(f"SELECT {j} AS i, name, type FROM pragma_table_xinfo(:t{j}, :s{j})"
                                   for j in range(len(tables)))
        values = {**{f"t{j}": t.name for j, t in enumerate(tables)},
                  **{f"s{j}": t.schema or "main" for j, t in enumerate(tables)}}
        found: list[dict[str, str]] = [{} for _ in tables]
        for r in self.conn.execute(sa.text(parts), values):
            found[int(r.i)][str(r.name)] = str(r.type or "")
        return found

    def same_type(self, one: str, other: str) -> bool:
        # `CREATE TABLE ... AS SELECT` declares each column by its affinity only (`NUMERIC(10,2)` becomes `NUM`),
        # and the affinity is all SQLite stores by: compared by the rules of "Determination Of Column Affinity".
        # A STRICT table's `ANY` column keeps every value as given, and its copy is declared with no type (BLOB
        # affinity, which keeps values as given too).
        if {one.upper(), other.upper()} <= {"", "ANY"}:
            return True
        return affinity_type(one, strict=False) == affinity_type(other, strict=False)

    def user_triggers(self, tables: Sequence[sa.Table]) -> list[tuple[str, str]]:
        # A TEMP trigger may be on a table of any schema: `sqlite_temp_master` too.
        quote = self.conn.dialect.identifier_preparer.quote
        schemas = sorted({t.schema or "main" for t in tables} | {"temp"})
        names = sorted({t.name.lower() for t in tables})
        if not names:
            return []
        holders = ", ".join(f":n{j}" for j in range(len(names)))
        body = " UNION ALL ".join(f"SELECT tbl_name, name FROM {quote(s)}.sqlite_master WHERE type = 'trigger' "
                                  f"AND lower(tbl_name) IN ({holders})" for s in schemas)
        rows = self.conn.execute(sa.text(f"{body} ORDER BY 1, 2"), {f"n{j}": n for j, n in enumerate(names)})
        return [(str(r[0]), f"trigger {r[1]}") for r in rows]

    def table_identity(self, table: sa.Table) -> str:
        return f"sqlite {(table.schema or 'main').lower()}.{table.name.lower()}"

    def index_names(self, table: sa.Table) -> set[str]:
        quote = self.conn.dialect.identifier_preparer.quote
        prefix = f"{quote(table.schema)}." if table.schema else ""
        return {row[1] for row in self.conn.exec_driver_sql(f"PRAGMA {prefix}index_list({quote(table.name)})")}

    def generated_columns(self, table: sa.Table) -> set[str]:
        # table_xinfo's `hidden`: 2 a virtual, 3 a stored generated column.
        quote = self.conn.dialect.identifier_preparer.quote
        prefix = f"{quote(table.schema)}." if table.schema else ""
        return {row[1] for row in self.conn.exec_driver_sql(f"PRAGMA {prefix}table_xinfo({quote(table.name)})")
                if row[6] in (2, 3)}

    def unique_column_sets(self, schema: str | None, name: str) -> list[tuple[str, tuple[str, ...]]]:
        """From SQLite's own list (`PRAGMA index_list`): reflection misses a column's inline `UNIQUE` when its
        type has a length (`email varchar(254) NOT NULL UNIQUE`, as Django writes it). Partial and expression
        indexes are left out, as on the other databases."""
        quote = self.conn.dialect.identifier_preparer.quote
        prefix = f"{quote(schema)}." if schema else ""
        pk = tuple(sa.inspect(self.conn).get_pk_constraint(name, schema=schema).get("constrained_columns") or ())
        found: list[tuple[str, tuple[str, ...]]] = [("PRIMARY KEY", pk)] if pk else []
        # index_list rows: (seq, name, unique, origin, partial); index_xinfo: (seqno, cid, name, desc, coll, key).
        for row in self.conn.exec_driver_sql(f"PRAGMA {prefix}index_list({quote(name)})").all():
            if not row[2] or row[3] == "pk" or row[4]:
                continue
            keys = [r for r in self.conn.exec_driver_sql(f"PRAGMA {prefix}index_xinfo({quote(row[1])})") if r[5]]
            if keys and all(r[1] >= 0 for r in keys):
                found.append((row[1], tuple(r[2] for r in keys)))
        return found

    def unique_keys(self, table: sa.Table) -> list[UniqueKey]:
        quote = self.conn.dialect.identifier_preparer.quote
        prefix = f"{quote(table.schema)}." if table.schema else ""
        found = []
        # index_list rows: (seq, name, unique, origin, partial); index_xinfo: (seqno, cid, name, desc, coll, key).
        # cid -2 is an expression, kept only as text: such an index is `opaque` (any column may be part of it).
        for row in self.conn.exec_driver_sql(f"PRAGMA {prefix}index_list({quote(table.name)})").all():
            if not row[2]:
                continue
            keys = [r for r in self.conn.exec_driver_sql(f"PRAGMA {prefix}index_xinfo({quote(row[1])})") if r[5]]
            columns = tuple(r[2] if r[1] >= 0 else None for r in keys)
            found.append(UniqueKey(row[1], columns, primary=row[3] == "pk", opaque=None in columns))
        if not any(u.primary for u in found) and table.primary_key.columns:  # INTEGER PRIMARY KEY is the rowid
            found.append(UniqueKey("PRIMARY KEY", tuple(c.name for c in table.primary_key.columns), primary=True))
        return found

