"""Who points at the table being fixed: foreign keys reflected from the database's catalog.

Every table of the fixed table's schema is inspected (composite keys included). For each referencing
table we also need its primary key (to log repointed rows for undo) and the unique constraints and
unique indexes that contain the foreign-key columns (a repoint could violate them).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection


@dataclass(frozen=True)
class Reference:
    """A foreign key from `table(columns)` to the fixed table's `referred_columns`."""

    schema: str | None
    table: str
    name: str | None
    columns: tuple[str, ...]
    referred_columns: tuple[str, ...]
    ondelete: str | None
    primary_key: tuple[str, ...]
    unique_sets: tuple[tuple[str, tuple[str, ...]], ...]  # (constraint or index name, columns) containing the FK
    self_reference: bool

    @property
    def label(self) -> str:
        where = f"{self.schema}.{self.table}" if self.schema else self.table
        return f"{where}({', '.join(self.columns)})"

    @property
    def cascades(self) -> bool:
        return (self.ondelete or "").upper() in ("CASCADE", "SET NULL", "SET DEFAULT")

    def as_json(self) -> dict[str, Any]:
        return {"table": self.table, "schema": self.schema, "constraint": self.name, "columns": list(self.columns),
                "referred_columns": list(self.referred_columns), "on_delete": self.ondelete}


def _same_schema(a: str | None, b: str | None, default: str | None) -> bool:
    return (a or default) == (b or default)


def find_references(conn: Connection, table: sa.Table) -> list[Reference]:
    """Every foreign key in the fixed table's schema that refers to it."""
    inspector = sa.inspect(conn)
    default = inspector.default_schema_name
    found: list[Reference] = []
    all_fks = inspector.get_multi_foreign_keys(schema=table.schema)
    for (schema, child), fks in sorted(all_fks.items(), key=lambda item: str(item[0])):
        for fk in fks:
            if fk["referred_table"] != table.name or not _same_schema(fk.get("referred_schema"), table.schema,
                                                                      default):
                continue
            columns = tuple(fk["constrained_columns"])
            pk = tuple(inspector.get_pk_constraint(child, schema=schema).get("constrained_columns") or ())
            found.append(Reference(
                schema=schema, table=child, name=fk.get("name"), columns=columns,
                referred_columns=tuple(fk["referred_columns"]),
                ondelete=(fk.get("options") or {}).get("ondelete") or _sqlite_ondelete(conn, schema, child, columns),
                primary_key=pk,
                unique_sets=_unique_sets(inspector, schema, child, columns, pk),
                self_reference=child == table.name and _same_schema(schema, table.schema, default),
            ))
    return found


def _sqlite_ondelete(conn: Connection, schema: str | None, table: str, columns: tuple[str, ...]) -> str | None:
    """SQLAlchemy misses ON DELETE on SQLite's inline `REFERENCES`; the pragma always has it."""
    if conn.dialect.name != "sqlite":
        return None
    quote = conn.dialect.identifier_preparer.quote
    prefix = f"{quote(schema)}." if schema else ""
    rows = conn.exec_driver_sql(f"PRAGMA {prefix}foreign_key_list({quote(table)})").mappings().all()
    by_id: dict[int, list[dict]] = {}
    for row in rows:
        by_id.setdefault(row["id"], []).append(dict(row))
    for parts in by_id.values():
        if tuple(p["from"] for p in sorted(parts, key=lambda p: p["seq"])) == columns:
            action = parts[0]["on_delete"]
            return None if action in (None, "NO ACTION") else action
    return None


def _unique_sets(inspector: Any, schema: str | None, table: str, fk_columns: tuple[str, ...],
                 pk: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    candidates: list[tuple[str, tuple[str, ...]]] = []
    if pk:
        candidates.append(("PRIMARY KEY", pk))
    for uc in inspector.get_unique_constraints(table, schema=schema):
        candidates.append((uc.get("name") or "unique", tuple(uc["column_names"])))
    for index in inspector.get_indexes(table, schema=schema):
        names = index.get("column_names") or []
        if index.get("unique") and names and all(names):
            candidates.append((index.get("name") or "unique index", tuple(names)))
    seen: set[tuple[str, ...]] = set()
    chosen = []
    for name, columns in candidates:
        if set(fk_columns) <= set(columns) and columns not in seen:
            seen.add(columns)
            chosen.append((name, columns))
    return tuple(chosen)


def reflect(conn: Connection, schema: str | None, name: str) -> sa.Table:
    return sa.Table(name, sa.MetaData(), schema=schema, autoload_with=conn)
