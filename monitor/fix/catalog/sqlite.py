"""SQLite's catalog: reflection, `PRAGMA foreign_key_list`/`index_list`/`index_xinfo`/`table_xinfo`, and
`sqlite_master` for triggers."""

from __future__ import annotations

import re
from typing import Any

import sqlalchemy as sa

from monitor.fix.catalog.base import Catalog, ForeignKey, Trigger, UniqueKey


class SqliteCatalog(Catalog):
    def foreign_keys_to(self, table: sa.Table) -> list[ForeignKey]:
        inspector = sa.inspect(self.conn)
        found = []
        wanted = table.name.lower()
        for (schema, child), fks in sorted(inspector.get_multi_foreign_keys(schema=table.schema).items(),
                                           key=lambda item: str(item[0])):
            for fk in fks:
                if fk["referred_table"].lower() != wanted:
                    continue
                columns = tuple(fk["constrained_columns"])
                referred = tuple(fk["referred_columns"]) or tuple(c.name for c in table.primary_key.columns)
                ondelete, onupdate = self._actions(schema, child, columns)
                found.append(ForeignKey(schema, child, fk.get("name"), columns, referred, ondelete,
                                        onupdate=onupdate))
        return found

    def _actions(self, schema: str | None, table: str, columns: tuple[str, ...]) -> tuple[str | None, str | None]:
        """(ON DELETE, ON UPDATE): SQLAlchemy misses ON DELETE on SQLite's inline `REFERENCES`; the pragma always
        has both (ON DELETE NO ACTION as None)."""
        quote = self.conn.dialect.identifier_preparer.quote
        prefix = f"{quote(schema)}." if schema else ""
        rows = self.conn.exec_driver_sql(f"PRAGMA {prefix}foreign_key_list({quote(table)})").mappings().all()
        by_id: dict[int, list[dict[str, Any]]] = {}
        for row in rows:
            by_id.setdefault(row["id"], []).append(dict(row))
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
