"""Who points at the table being fixed, and what a fix does with those rows.

Foreign keys come from the database's catalog (see `catalog.py`), from every schema or database the fixing
role can see, composite keys included. For each referencing table we also need its primary key (to record
repointed rows for undo), the unique constraints and indexes containing the foreign-key columns (a repoint
could violate them), and whether the *referred* columns are unique in the fixed table: MySQL/MariaDB accept a
foreign key to a non-unique indexed column, and InnoDB then applies ON DELETE to every referencing row that
holds a deleted row's value, even while another row still holds it (MariaDB documentation, "Foreign Keys",
and MySQL "FOREIGN KEY Constraints": "non-unique keys ... are an InnoDB extension").

What a fix does with the rows referencing a deleted duplicate is the check's `on_reference` choice, per
reference: `repoint` (default: point them at the kept row), `archive` (archive and delete them with their
parent) or `refuse`. A reference is named in the config as `table.column`, `schema.table.column` or, for a
composite key, `table.(a,b)`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.config import parse_reference_name
from monitor.fix.catalog import Catalog, ForeignKey, catalog_for
from monitor.fix.errors import FixRefused

Action = Literal["repoint", "archive", "refuse"]
ACTIONS: dict[str, Action] = {"repoint": "repoint", "archive": "archive", "refuse": "refuse"}


@dataclass(frozen=True)
class Reference:
    """A foreign key (`fk`, as the catalog states it) to the fixed table, what the fix needs to know about its
    referencing table, and what to do with it. The foreign key's fields read through (`ref.columns`, ...)."""

    fk: ForeignKey
    primary_key: tuple[str, ...]
    unique_sets: tuple[tuple[str, tuple[str, ...]], ...]  # (constraint or index name, columns) containing the FK
    self_reference: bool
    referred_unique: bool = True  # the referred columns are unique in the fixed table
    action: Action = "repoint"
    partition_key: tuple[str, ...] = ()  # the referencing table's partitioning columns (PostgreSQL)
    # Exclusion constraints (PostgreSQL EXCLUDE) of the referencing table that read a foreign-key column: the dry
    # run cannot tell whether a repoint violates one (its operators are arbitrary: overlaps, adjacency, ...).
    exclusions: tuple[str, ...] = ()
    # Unique keys of the referencing table over an expression or a generated column (`UniqueKey.label`), which the
    # dry run cannot evaluate on the repointed values (`lower(name)`, a column computed from the foreign key).
    computed_uniques: tuple[str, ...] = ()
    # The referencing table's triggers that the write this reference's action makes fires (a repoint's UPDATE of
    # the foreign key's columns, an archive's DELETE): one that writes another row stops the batch (its account).
    triggers: tuple[str, ...] = ()
    # The foreign key's columns that the referencing table generates (`GENERATED ALWAYS AS ... STORED`, MariaDB's
    # `AS (...) STORED`): the database computes them from other columns, so no UPDATE can repoint them.
    generated: tuple[str, ...] = ()
    # The referencing table's inheritance children (PostgreSQL `INHERITS`): the fix's reads and writes of the table
    # reach their rows too, which its foreign key does not cover.
    children: tuple[str, ...] = ()

    @property
    def schema(self) -> str | None:
        return self.fk.schema

    @property
    def table(self) -> str:
        return self.fk.table

    @property
    def name(self) -> str | None:
        return self.fk.name

    @property
    def columns(self) -> tuple[str, ...]:
        return self.fk.columns

    @property
    def referred_columns(self) -> tuple[str, ...]:
        return self.fk.referred_columns

    @property
    def ondelete(self) -> str | None:
        return self.fk.ondelete

    @property
    def visible(self) -> bool:
        """The fixing role may read and update the referencing table."""
        return self.fk.visible

    @property
    def hidden_from(self) -> str | None:
        """The fixing role, when row-level security may hide rows of the referencing table from it."""
        return self.fk.hidden_from

    @property
    def label(self) -> str:
        where = f"{self.schema}.{self.table}" if self.schema else self.table
        return f"{where}({', '.join(self.columns)})"

    @property
    def one_to_one(self) -> str | None:
        """The unique constraint whose columns are exactly the foreign key's, when there is one: each referred row
        has at most one referencing row (Django's multi-table inheritance parent link, its primary key; a
        OneToOneField), so a kept row never holds two, and the duplicate's row and the kept row's are one
        entity's two halves."""
        return next((name for name, columns in self.unique_sets if set(columns) == set(self.columns)), None)

    @property
    def cascades(self) -> bool:
        return (self.ondelete or "").upper() in ("CASCADE", "SET NULL", "SET DEFAULT")

    def as_json(self) -> dict[str, Any]:
        return {"table": self.table, "schema": self.schema, "constraint": self.name, "columns": list(self.columns),
                "referred_columns": list(self.referred_columns), "on_delete": self.ondelete,
                "referred_unique": self.referred_unique, "action": self.action}


def find_references(conn: Connection, table: sa.Table, on_reference: Mapping[str, str] | None = None,
                    *, check: str = "") -> list[Reference]:
    """Every foreign key, from any schema the role can see, that refers to `table`, with its action from
    `on_reference` (a check's config). Raises `FixRefused` for an `on_reference` entry that names no reference."""
    catalog = catalog_for(conn)
    unique = [set(cols) for _name, cols in catalog.unique_column_sets(table.schema, table.name)]
    wanted = {parse_reference_name(name): (name, action) for name, action in (on_reference or {}).items()}
    used: set[tuple[str | None, str, tuple[str, ...]]] = set()
    found = []
    facts: dict[tuple[str | None, str], _TableFacts] = {}  # read once per referencing table, not per reference
    for fk in catalog.foreign_keys_to(table):
        action: Action = "repoint"
        for spec, (_name, configured) in wanted.items():
            if _names(spec, fk):
                used.add(spec)
                action = ACTIONS[configured]  # the config accepts only these
        if (fk.schema, fk.table) not in facts:
            facts[fk.schema, fk.table] = _TableFacts(catalog, fk.schema, fk.table)
        found.append(_reference(catalog, table, fk, unique, action, facts[fk.schema, fk.table]))
    unknown = [name for spec, (name, _a) in wanted.items() if spec not in used]
    if unknown:
        have = ", ".join(config_name(r) for r in found) or "none"
        raise FixRefused(f"check {check!r}: on_reference: {unknown[0]!r} names no foreign key referring to "
                         f"{table.name!r} (references: {have})")
    return _one_per_key(found)


def _one_per_key(found: list[Reference]) -> list[Reference]:
    """One reference per referencing columns and referred columns: a schema may declare the same foreign key twice
    under two names (a migration that added it again, a dump's `fk_1` beside `fk_user_id`). Both hold the same rows,
    which one UPDATE repoints; counted once each, the preview promised every row twice. The one kept is the first
    whose ON DELETE writes (the database applies both), else the first."""
    kept: dict[tuple[Any, ...], int] = {}
    unique: list[Reference] = []
    for ref in found:
        key = (ref.schema, ref.table, ref.columns, ref.referred_columns, ref.fk.partition, ref.fk.ancestor)
        if key not in kept:
            kept[key] = len(unique)
            unique.append(ref)
        elif ref.cascades and not unique[kept[key]].cascades:
            unique[kept[key]] = ref
    return unique


class _TableFacts:
    """What the references of one referencing table share, read from the catalog once for all of them (a table
    with two foreign keys to the fixed table is read once): its unique column sets, partitioning columns and
    exclusion constraints, and, asked for by the first repointed reference, its opaque or computed unique keys."""

    def __init__(self, catalog: Catalog, schema: str | None, name: str) -> None:
        self.catalog, self.schema, self.name = catalog, schema, name
        self.sets: list[tuple[str, tuple[str, ...]]] = catalog.unique_column_sets(schema, name)
        self.partition_key: tuple[str, ...] = catalog.partition_columns(schema, name)
        self.children: tuple[str, ...] = catalog.inheritance_children(schema, name)
        self.exclusions: list[tuple[str, tuple[str, ...]]] = catalog.exclusion_constraints(schema, name)
        self._computed: tuple[str, ...] | None = None
        self._generated: set[str] | None = None

    def generated(self) -> set[str]:
        """The table's generated columns (`Catalog.generated_columns`), read once."""
        if self._generated is None:
            self._generated = self.catalog.generated_columns(sa.Table(self.name, sa.MetaData(), schema=self.schema))
        return self._generated

    def computed_uniques(self) -> tuple[str, ...]:
        """Unique keys over an expression or a generated column (`Reference.computed_uniques`)."""
        if self._computed is None:
            referencing = sa.Table(self.name, sa.MetaData(), schema=self.schema)
            generated = self.generated()
            self._computed = tuple(key.label for key in self.catalog.unique_keys(referencing) if not key.primary and (
                key.opaque or None in key.columns or generated & {c for c in key.columns if c}))
        return self._computed


def _reference(catalog: Any, table: sa.Table, fk: ForeignKey, unique: list[set[str]], action: Action,
               facts: _TableFacts) -> Reference:
    sets = facts.sets
    pk = next((cols for name, cols in sets if name == "PRIMARY KEY"), ())
    containing: list[tuple[str, tuple[str, ...]]] = []
    for name, cols in sets:
        if set(fk.columns) <= set(cols) and cols not in [c for _n, c in containing]:
            containing.append((name, cols))
    default = catalog.default_schema()
    same_schema = (fk.schema or default) == (table.schema or default)
    return Reference(fk, primary_key=pk, unique_sets=tuple(containing),
                     computed_uniques=facts.computed_uniques() if action == "repoint" else (),
                     self_reference=(same_schema and fk.table == table.name) or fk.within,
                     referred_unique=any(u <= set(fk.referred_columns) for u in unique), action=action,
                     partition_key=facts.partition_key, children=facts.children,
                     generated=tuple(c for c in fk.columns if c in facts.generated())
                     if action == "repoint" and fk.visible else (),
                     exclusions=tuple(name for name, cols in facts.exclusions if set(fk.columns) & set(cols)),
                     triggers=() if action == "refuse" or not fk.visible else catalog.write_triggers(
                         fk.schema, fk.table, "UPDATE" if action == "repoint" else "DELETE", fk.columns))


def _names(spec: tuple[str | None, str, tuple[str, ...]], fk: ForeignKey) -> bool:
    schema, table, columns = spec
    return table == fk.table and set(columns) == set(fk.columns) and (schema is None or schema == fk.schema)


def config_name(ref: Reference) -> str:
    """How `on_reference` names this reference, as `parse_reference_name` reads it back: every part quoted when
    one holds a character that the plain form reads otherwise (a dot, a quote, a parenthesis or comma, spaces
    at its ends), so a schema named `we.ird"s` is written `"we.ird""s".from."Sel"`."""
    parts = [p for p in (ref.schema, ref.table, *ref.columns) if p is not None]
    if any(not p or p != p.strip() or set(p) & set('."`(),') for p in parts):
        def q(part: str) -> str:
            return '"' + part.replace('"', '""') + '"'
    else:
        def q(part: str) -> str:
            return part
    where = f"{q(ref.schema)}.{q(ref.table)}" if ref.schema else q(ref.table)
    columns = [q(c) for c in ref.columns]
    return f"{where}.{columns[0]}" if len(columns) == 1 else f"{where}.({','.join(columns)})"


def reflect(conn: Connection, schema: str | None, name: str) -> sa.Table:
    return sa.Table(name, sa.MetaData(), schema=schema, autoload_with=conn)


def config_key(ref: Reference) -> str:
    """`config_name` as a TOML key, to paste into `[checks.on_reference]`: a literal string when the name holds
    a double quote (and no single one), else a basic string."""
    name = config_name(ref)
    if '"' in name and "'" not in name:
        return f"'{name}'"
    return json.dumps(name)  # a JSON string is a TOML basic string
