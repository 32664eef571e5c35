"""The plan of a fix: which groups, which row each keeps, which rows go, who points at them, what blocks it.

Everything is computed by the database from one *plan relation*, a row per member of every duplicate group:
`dw_group` (groups numbered 1, 2, ... in key order, without gaps), `dw_rn` (1 = the keeper, by
`TableCheck.keeper_order()`, the one place that decides), `dw_n` (group size), `dw_i*` (row identity: primary
key, `ctid` or `rowid`), `dw_gk*` (the group's normalised key as its keeper holds it, on every row of the group,
so that a batch compares each live row with its keeper's key without joining the plan to itself; where PARTITION BY
groups exactly as `=` compares, each row's own, equal to it by that `=`), `dw_r*`
(the columns other tables' foreign keys refer to) and, beside a primary key on PostgreSQL, `dw_at` (the row's
`ctid` when planned: the address a batch reaches it by, then matching its primary key and key). For a dry run
the relation is a window-function subquery over the live table (read-only); for a real fix it is materialised
once as the fix's plan table
(`dupewatch_plan_<fix id>`), the snapshot the batches work through. Tables with no primary key on MySQL/MariaDB
have no row identity: their relation has one row per group and its size, and the fix deletes all but one of
fully identical rows.

Preview queries aggregate over the relation, so their cost and memory do not grow with the number of groups
in Python; only `sample` groups are listed.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateIndex
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import ColumnClause, FromClause

from monitor.detect import TableCheck
from monitor.dialects import for_backend
from monitor.dialects.base import CheckConstraint
from monitor.fix.archive import Copy, archive_name, archive_refusal, refuse_altered
from monitor.fix.catalog import DeleteHooks, ForeignKey, UniqueKey, catalog_for
from monitor.fix.errors import FixRefused
from monitor.fix.privileges import fix_writes, refused_writes
from monitor.fix.records import home, now_text, place, safe_identifier, unusable_tables
from monitor.fix.refs import Reference, config_key, reflect
from monitor.fix.undeclared import Undeclared, undeclared_references
from monitor.fix.values import display
from monitor.words import command, value_text

# Columns of the plan relation (see the module docstring); identity, key and referred columns are
# `dw_i<j>`, `dw_gk<j>`, `dw_r<j>`. (Earlier plans held each row's own key as `dw_k<j>`: the different columns make
# `run_fix` refuse to resume such a plan rather than compare rows with their own planned keys only.)
GROUP, RANK, SIZE = "dw_group", "dw_rn", "dw_n"
# Each row's physical address at the snapshot, beside its primary key, where the database reaches a row by it
# without an index (`Dialect.address_scan`): only an access path, the batch still matches the primary key.
ADDRESS = "dw_at"
SAMPLE_GROUPS = 20
SAMPLE_ROWS = 1000
ROWS_SHOWN_PER_GROUP = 10
T = TypeVar("T")
# Up to this many repointed references of one table, the dry run evaluates CHECK constraints in every state between
# their repoints; beyond, in the fix's order (`_intermediate_states`).
ALL_ORDERS = 4
LEFT_OUT_KEYS = 5  # keys of the first groups left out, per reason
# The reason a group of a table without any row identity is left out (`refusals`).
IDENTICAL_DIFFER = "rows that differ"
# The reason a group of a table told apart by its AUTO_INCREMENT column (mode `COUNTER`) is left out: two of its
# rows hold the same value (an explicit insert may repeat one), so that value names no single row.
COUNTER_REPEATED = "repeated AUTO_INCREMENT value"
# The identity mode of a MariaDB/MySQL table without a primary key whose AUTO_INCREMENT column tells its rows apart
# (`Dialect.counter_identity`), when no other table refers to it.
COUNTER = "auto_increment"


class Tid(sa.types.UserDefinedType[str]):
    """PostgreSQL's physical row address type, for plan tables of tables without a primary key."""

    cache_ok = True

    def get_col_spec(self, **_kw: Any) -> str:
        return "TID"


class Untyped(sa.types.UserDefinedType[Any]):
    """An SQLite column without a declared type (no affinity: values are stored as they come)."""

    cache_ok = True

    def get_col_spec(self, **_kw: Any) -> str:
        return ""


class Declared(sa.types.UserDefinedType[Any]):
    """A column of a type reflection does not know (PostgreSQL `citext`, MariaDB `POINT`), declared in the plan
    table as the server's catalog writes the live column's type, so the plan holds and compares its values as
    the live table does. The text comes from the server's own catalog (`Dialect.declared_types`)."""

    cache_ok = True

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def get_col_spec(self, **_kw: Any) -> str:
        return self.spec


# The type of a physical row identity (`Dialect.row_identity`) in the plan table.
_PHYSICAL_TYPES: dict[str, Callable[[], sa.types.TypeEngine[Any]]] = {"ctid": Tid, "rowid": sa.Integer}


class Layout:
    """How one table check is planned and executed: identity mode, plan relation, join conditions."""

    def __init__(self, tc: TableCheck, refs: list[Reference], hooks: DeleteHooks | None = None,
                 distinct_keys: list[UniqueKey] | None = None, *, merge_distinct: bool = False,
                 collations: dict[str, str | None] | None = None,
                 declared_types: dict[str, str] | None = None) -> None:
        self.tc = tc
        # Each column's type as the catalog declares it (`Dialect.declared_types`), for columns reflection does
        # not know: the plan table declares those the same way.
        self.declared_types = declared_types or {}
        # Each text column's collation as the catalog states it (`Dialect.column_collations`): the plan table's
        # copies of a column hold its bytes only in its own character set (MariaDB: a latin1 'é' copied into
        # the database's default utf8mb4 is two other bytes, and `copy_match` compares bytes).
        self.collations = collations or {}
        self.hooks = hooks or DeleteHooks()
        # Unique constraints and indexes beyond the key (see `catalog.distinct_entity_keys`): rows of a group
        # that differ on one are different entities, merged only when the operator asks (`merge_distinct`).
        self.distinct_keys = distinct_keys or []
        self.merge_distinct = merge_distinct
        self.table = tc.table
        self.dialect = tc.dialect
        self.rules = tc.rules
        self.refs = refs
        pk = list(self.table.primary_key.columns)
        self.identity: list[ColumnElement[Any]]
        # A row's table, where the table's inheritance children repeat its primary key and row addresses: part of
        # the identity, so that each row read through the parent is matched to itself only (the fix is refused).
        origin = self.rules.row_origin(self.table) if self.hooks.children else None
        if pk:
            self.mode = "pk"
            self.identity = list(pk)
            self.identity_types = [c.type for c in pk]
            physical = self.rules.row_identity(is_view=False) if self.rules.address_scan else None
            # The address a batch may reach the row by (see `ADDRESS`); None: by its primary key only.
            self.address: ColumnElement[Any] | None = None if physical is None else ColumnClause(
                str(physical.name), type_=_PHYSICAL_TYPES[str(physical.name)](), _selectable=self.table)
        elif (physical := self.rules.row_identity(is_view=False)) is not None:  # PostgreSQL ctid, SQLite rowid
            self.mode = str(physical.name)
            kind = _PHYSICAL_TYPES[self.mode]()
            self.identity = [ColumnClause(self._physical_name(), type_=kind, _selectable=self.table)]
            self.identity_types = [kind]
            self.address = None
        elif not refs and (counter := self.rules.counter_identity(self.table)) is not None \
                and counter.name not in {c.name for c in tc.key_columns}:
            # MariaDB/MySQL: the AUTO_INCREMENT column, which need not be unique (`id INT AUTO_INCREMENT,
            # KEY(id)`, and an explicit insert may repeat a value). A row is the one live row with its planned
            # value *and* its group's key (`row_match`): a group where a value repeats is left out (`refusals`,
            # asked again under each batch's locks), and a batch archives and deletes by value and key, each
            # statement counted against the locked rows, so a row written meanwhile with a planned value makes
            # the counts differ and the batch roll back. A table other tables refer to keeps the whole-row mode
            # (`identical`): a reference by a value that is not unique cannot be repointed. So does a check whose key
            # holds the column (its groups are rows repeating a value: exact copies are what it can fix).
            self.mode = COUNTER
            self.identity = [counter]
            self.identity_types = [counter.type]
            self.address = None
        else:
            self.mode = "identical"
            self.identity = []
            self.identity_types = []
            self.address = None
        if self.mode == COUNTER:
            # A unique key holding the AUTO_INCREMENT column (`UNIQUE (id)` in place of a primary key) differs
            # between any two rows of a group the fix takes (a group repeating a value is left out), as a primary
            # key does (`catalog.distinct_entity_keys`): no evidence of different entities.
            self.distinct_keys = [key for key in self.distinct_keys if self.identity[0].name not in key.columns]
        if origin is not None and self.mode != "identical":
            self.identity.append(origin)
            self.identity_types.append(origin.type)
        referred: list[str] = []
        for ref in refs:
            referred.extend(c for c in ref.referred_columns if c not in referred)
        self.ref_names = referred if self.mode != "identical" else []
        self.ref_label = {name: f"dw_r{j}" for j, name in enumerate(self.ref_names)}
        self.row_copies = self._row_copies()
        # What the plan reads of the referencing tables (reflected, their indexes, their unique keys, the foreign
        # keys to them): read once per layout, so a plan reads a table once however many of its foreign keys refer
        # to this one.
        self._read: dict[tuple[Any, ...], Any] = {}

    def once(self, key: tuple[Any, ...], read: Callable[[], T]) -> T:
        """`read()`, called once per layout for `key` (what it reads, and of which table)."""
        if key not in self._read:
            self._read[key] = read()
        return cast(T, self._read[key])

    def reflect(self, conn: Connection, schema: str | None, name: str) -> sa.Table:
        """Table `name` of `schema` reflected, once per layout."""
        return self.once(("reflect", schema, name), lambda: reflect(conn, schema, name))

    def full_indexes(self, conn: Connection, schema: str | None, name: str,
                     columns: Sequence[str] = ()) -> list[list[str | None]]:
        """The columns of each index of the table that is not partial (a partial one serves only the rows of its
        predicate), as reflection lists them, once per layout; and of each partial one whose predicate only says
        that some of `columns` are not NULL (Mastodon's `list_accounts (follow_id) WHERE follow_id IS NOT NULL`):
        a lookup by `column = value` holds only such rows, and the database proves it and uses the index."""
        indexes = self.once(("indexes", schema, name), lambda: sa.inspect(conn).get_indexes(name, schema=schema))
        found = []
        for index in indexes:
            where = [str(value) for key, value in index.get("dialect_options", {}).items()
                     if key.endswith("_where") and value is not None]
            if not where or all(_not_null_only(w, columns) for w in where):
                found.append(list(index.get("column_names") or []))
        return found

    def _physical_name(self) -> str:
        """The name that reaches the physical identity: SQLite's rowid is also `_rowid_` and `oid`, and a column
        of the table named like one of them hides it (a `rowid` column of equal values made every row of a group
        its keeper's and its duplicates' at once)."""
        if self.mode != "rowid":
            return self.mode
        taken = {c.name.lower() for c in self.table.columns}
        for name in ("rowid", "_rowid_", "oid"):
            if name not in taken:
                return name
        raise FixRefused(f"check {self.tc.check.name!r}: table {self.tc.check.table!r} has no primary key and "
                         "columns named rowid, _rowid_ and oid, which hide SQLite's row identity: nothing tells its "
                         "rows apart; add a primary key first")

    def _row_copies(self) -> list[tuple[str, ColumnElement[Any], sa.types.TypeEngine[Any]]]:
        """(label, expression, type) of the copy of every column a physical identity needs: a `ctid` or
        `rowid` is a slot, not a row, and may hold another row by the time a batch runs (after a delete and
        a VACUUM, or a delete of SQLite's last row), so a planned row is only the planned row while all its
        columns are as snapshotted. Values PostgreSQL cannot compare with `=` are compared as text.

        Without any identity (`identical`), the copy is the group's one row content (its rows are identical,
        or the plan is blocked): a batch archives and deletes only rows equal to it in every column, so a row
        the application adds to the group meanwhile is neither deleted nor archived (issue 16 item 2)."""
        if self.mode == "identical":
            return [(f"dw_c{j}", column, column.type) for j, column in enumerate(self.table.columns)]
        if self.mode not in ("ctid", "rowid"):
            return []
        copies: list[tuple[str, ColumnElement[Any], sa.types.TypeEngine[Any]]] = []
        for j, column in enumerate(self.table.columns):
            if not self.rules.comparable(column):
                copies.append((f"dw_c{j}", sa.cast(column, sa.Text), sa.Text()))
            else:
                copies.append((f"dw_c{j}", column, column.type))
        return copies

    # -- the plan relation ---------------------------------------------------------------------

    @property
    def identity_labels(self) -> list[str]:
        return [f"dw_i{j}" for j in range(len(self.identity))]

    @property
    def key_labels(self) -> list[str]:
        return [f"dw_gk{j}" for j in range(len(self.tc.key_exprs))]

    def relation_select(self) -> sa.Select[Any]:
        """The plan relation as a SELECT over the live table (see the module docstring)."""
        tc = self.tc
        keys = [e.label(label) for e, label in zip(tc.key_exprs, self.key_labels, strict=True)]
        if self.mode == "identical":
            size = sa.func.count()
            copies = [sa.func.min(expr).label(label) for label, expr, _type in self.row_copies]
            return (sa.select(sa.func.row_number().over(order_by=tc.key_exprs).label(GROUP),
                              sa.literal_column("1").label(RANK), *keys, *copies, size.label(SIZE))
                    .select_from(self.table).where(*tc.filters).group_by(*tc.key_exprs)
                    .having(size > sa.literal_column("1")))
        # One sort of the table, the same one a hand-written `row_number() OVER (PARTITION BY key ...)` needs.
        partition, order = tc.key_exprs, self.keeper_order()
        own = [f"dw_k{j}" for j in range(len(tc.key_exprs))]  # each row's own key, inside this statement only
        identified = [
            *[e.label(label) for e, label in zip(self.identity, self.identity_labels, strict=True)],
            *([] if self.address is None else [self.address.label(ADDRESS)]),
            *[e.label(label) for e, label in zip(tc.key_exprs, own, strict=True)],
            *[self.table.c[name].label(self.ref_label[name]) for name in self.ref_names],
            *[expr.label(label) for label, expr, _type in self.row_copies],
        ]
        carried = [*self.identity_labels, *([] if self.address is None else [ADDRESS]), *self.ref_label.values(),
                   *[label for label, _expr, _type in self.row_copies]]
        if self.rules.partition_is_equality:
            # Where PARTITION BY groups exactly as `=` compares (`Dialect.partition_is_equality`), each row's own
            # key equals its keeper's by the `=` a batch compares with, so it stands for it, and the group's size
            # is counted in the same window as the rank: both over the whole group as the frame, one window the
            # database computes in one pass (PostgreSQL: one WindowAgg over the table, the size aggregated once
            # per group; a row belongs to a duplicate group where its size passes 1). Only the numbering of the
            # groups is left for their rows. Measured at 2M rows: the snapshot's `SELECT` 1.18 s of server CPU against
            # 1.30 s with a `lead` in the table's window and the size in a second one (8 alternated runs).
            def whole_key(function: sa.FunctionElement[Any]) -> sa.Over[Any]:
                return function.over(partition_by=partition, order_by=order, rows=(None, None))

            sized = sa.select(whole_key(sa.func.row_number()).label(RANK),
                              whole_key(sa.func.count()).label(SIZE), *identified,
                              ).select_from(self.table).where(*tc.filters).subquery("dupewatch_ranked")
            own_keys = [sized.c[label] for label in own]
            return sa.select(
                sa.func.dense_rank().over(order_by=own_keys).label(GROUP),
                sized.c[RANK],
                *[sized.c[label] for label in carried],
                *[sized.c[label].label(kept) for label, kept in zip(own, self.key_labels, strict=True)],
                sized.c[SIZE],
            ).where(sized.c[SIZE] > 1)
        # row_number and lead share the window, and a row belongs to a duplicate group when it is not the first of
        # its key or a next one exists. Numbering and sizing the groups then only touches their rows.
        ranked = sa.select(
            sa.func.row_number().over(partition_by=partition, order_by=order).label(RANK),
            sa.func.lead(sa.literal_column("1")).over(partition_by=partition, order_by=order).label("dw_next"),
            *identified,
        ).select_from(self.table).where(*tc.filters).subquery("dupewatch_ranked")
        group_keys = [ranked.c[label] for label in own]

        # Every row carries its keeper's key (the first by rank of its group): a batch compares each live row's
        # key with the keeper's planned key by the database's `=` (a PARTITION BY may group more coarsely than
        # `=`: MariaDB sorts TEXT on its first max_sort_length bytes) without joining the plan to itself. Over
        # the groups' rows only. The keepers' keys and the group's size over one window (the whole group as its
        # frame), so the database computes them in one pass over the groups' rows.
        def whole_group(function: sa.FunctionElement[Any]) -> sa.Over[Any]:
            return function.over(partition_by=group_keys, order_by=ranked.c[RANK], rows=(None, None))

        keepers = [whole_group(sa.func.first_value(ranked.c[label], type_=e.type)).label(kept)
                   for e, label, kept in zip(tc.key_exprs, own, self.key_labels, strict=True)]
        return sa.select(
            sa.func.dense_rank().over(order_by=group_keys).label(GROUP),
            ranked.c[RANK],
            *[ranked.c[label] for label in carried],
            *keepers,
            whole_group(sa.func.count()).label(SIZE),
        ).where(sa.or_(ranked.c[RANK] > 1, ranked.c.dw_next.is_not(None)))

    def plan_table(self, name: str, schema: str | None) -> sa.Table:
        """The table a real fix materialises its plan into (same schema as the fixed table). Its columns
        carry a `dw_` prefix so that a `where` filter naming the fixed table's columns stays unambiguous
        when the plan is joined to the table."""
        columns = [sa.Column(GROUP, sa.BigInteger, nullable=False), sa.Column(RANK, sa.BigInteger, nullable=False)]
        identity_names: list[str | None] = [c.name for c in self.table.primary_key.columns] if self.mode == "pk" \
            else [str(c.name) for c in self.identity] if self.mode == COUNTER else []
        identity_names += [None] * (len(self.identity_types) - len(identity_names))  # a physical one, the origin
        columns += [sa.Column(label, self._storable(t, name)) for label, t, name in zip(
            self.identity_labels, self.identity_types, identity_names, strict=True)]
        if self.address is not None:
            columns.append(sa.Column(ADDRESS, self.address.type))
        columns += [sa.Column(label, self._storable(self._collated(c.name, kind), c.name))
                    for label, c, kind in zip(self.key_labels, self.tc.key_columns, self.tc.key_types, strict=True)]
        columns += [sa.Column(self.ref_label[n], self._storable(self._collated(n, self.table.c[n].type), n))
                    for n in self.ref_names]
        copied = [c.name for c in self.table.columns] if self.row_copies else []  # a copy is of every column
        columns += [sa.Column(label, self._storable(self._collated(name, kind), name))
                    for (label, _expr, kind), name in zip(self.row_copies, copied, strict=True)]
        columns.append(sa.Column(SIZE, sa.BigInteger, nullable=False))
        return sa.Table(name, sa.MetaData(), *columns, schema=schema)

    @staticmethod
    def plan_index(plan: sa.Table) -> sa.Index:
        """(group, rank) is the plan's key; built after the snapshot is inserted (cheaper than maintaining
        it row by row)."""
        return sa.Index(f"{plan.name}_key", plan.c[GROUP], plan.c[RANK], unique=True)

    def _collated(self, name: str, kind: sa.types.TypeEngine[Any]) -> sa.types.TypeEngine[Any]:
        """`kind` with the column's catalog collation (hence its character set), for a text column."""
        collation = self.collations.get(name)
        if not collation or not isinstance(kind, sa.String) or kind.collation:
            return kind
        collated = copy.copy(kind)
        collated.collation = collation
        return collated

    def _storable(self, kind: sa.types.TypeEngine[Any], name: str | None) -> sa.types.TypeEngine[Any]:
        """`kind`, or for a type reflection does not know, the live column's type as the catalog declares it."""
        if isinstance(kind, sa.types.NullType):
            if self.rules.stores_untyped:
                return Untyped()
            if name is not None and name in self.declared_types:
                return Declared(self.declared_types[name])
            raise FixRefused(f"check {self.tc.check.name!r}: a key or identity column of {self.tc.check.table!r} "
                             "has a type dupewatch cannot reflect; fix this table by hand")
        return kind

    # -- joins between the relation and the live table -----------------------------------------

    def identity_match(self, rel: FromClause) -> ColumnElement[bool]:
        return sa.and_(*[e == rel.c[label] for e, label in zip(self.identity, self.identity_labels, strict=True)])

    def row_match(self, rel: FromClause) -> ColumnElement[bool]:
        """The live rows a plan row names: by its identity; an AUTO_INCREMENT value (`COUNTER`) only with its
        group's key as well (the value may repeat in other groups)."""
        if self.mode == COUNTER:
            return sa.and_(self.identity_match(rel), self.key_match(rel))
        return self.identity_match(rel)

    def keeper_order(self) -> list[ColumnElement[Any]]:
        """`TableCheck.keeper_order()`, ties broken by the AUTO_INCREMENT value in mode `COUNTER`."""
        order = self.tc.keeper_order()
        if self.mode != COUNTER:
            return order
        counter = self.identity[0]
        return [*order, counter.desc() if self.tc.check.keep == "newest" else counter.asc()]

    def key_match(self, rel: FromClause) -> ColumnElement[bool]:
        """The live row has its group's planned (normalised) key, as the keeper held it; NULLs compare equal."""
        return sa.and_(*[e.is_not_distinct_from(rel.c[label])
                        for e, label in zip(self.tc.key_exprs, self.key_labels, strict=True)])

    def live_match(self, rel: FromClause) -> ColumnElement[bool]:
        """The live row is the planned one and still as planned: same identity, the planned key, inside the
        check's `where`, and the referred-to values the repoint will use; for a physical identity, every
        column as snapshotted (NULL-safe, by the database's own comparison)."""
        referred = [self.table.c[name].is_not_distinct_from(rel.c[label]) for name, label in self.ref_label.items()]
        whole = [expr.is_not_distinct_from(rel.c[label]) for label, expr, _type in self.row_copies]
        return sa.and_(self.identity_match(rel), self.key_match(rel), *self.tc.filters, *referred, *whole)

    def copy_match(self, rel: FromClause) -> ColumnElement[bool]:
        """The live row equals the plan's copy of a row in every column as stored (text as bytes, NULL-safe)."""
        exact = for_backend(self.dialect).exact
        return sa.and_(*[exact(column).is_not_distinct_from(exact(rel.c[f"dw_c{j}"]))
                         for j, column in enumerate(self.table.columns)])

    def member_match(self, rel: FromClause) -> ColumnElement[bool]:
        if self.mode == "identical":
            return sa.and_(self.key_match(rel), *self.tc.filters)
        return self.row_match(rel)

    def keeper_description(self) -> str:
        names = [c.name for c in self.tc.order_columns]
        if self.mode in ("ctid", "rowid") and not names:
            names = [f"{self.mode} (physical order)"]
        elif self.mode in ("ctid", "rowid"):
            names.append(f"{self.mode} to break ties")
        if self.mode == "identical":
            return "first of the identical rows"
        if self.mode == COUNTER:
            counter = str(self.identity[0].name)
            names.append(f"{counter} to break ties" if names else counter)
        return f"{self.tc.check.keep} by {', '.join(names)}"

    def distinct_flags(self) -> list[sa.Label[int]]:
        """Per unique key in `distinct_keys`, an aggregate over a group's rows (the plan relation joined to the
        table): 1 when at least two of them hold different values on it where it applies, counted by the
        database with its own comparison (collation included), NULLs ignored unless the key holds them as values
        (`UniqueKey.nulls_are_values`: then a NULL and a value differ)."""
        flags = []
        for j, key in enumerate(self.distinct_keys):
            differs = []
            for part in key.parts(self.table):
                values: ColumnElement[Any] = sa.func.count(sa.distinct(key.where_applies(self.table, part)))
                if key.nulls_are_values:
                    null = key.where_applies(self.table, sa.case((part.is_(None), 1), else_=0))
                    values = values + sa.func.coalesce(sa.func.max(null), 0)
                differs.append(values > 1)
            flags.append(sa.case((sa.or_(*differs), 1), else_=0).label(f"dw_u{j}"))
        return flags

    def evidence(self, label: str) -> str:
        """What the distinct key labelled `label` is, for a sentence `rows that differ on ...` (for
        `COUNTER_REPEATED`, the AUTO_INCREMENT column's name)."""
        if label == COUNTER_REPEATED:
            return str(self.identity[0].name)
        return next((key.evidence for key in self.distinct_keys if key.label == label), f"unique constraint {label}")

    def described_columns(self) -> list[sa.Column[Any]]:
        """Columns whose differences inside a group are worth reporting: all but the row identity."""
        skip = {c.name for c in self.table.primary_key.columns}
        if self.mode == COUNTER:
            skip.add(str(self.identity[0].name))
        return [c for c in self.table.columns if c.name not in skip]

    def comparable_columns(self) -> list[sa.Column[Any]]:
        """`described_columns` the database can compare (`=`): those a statement can tell differ."""
        return [c for c in self.described_columns() if self.rules.comparable(c)]

    def exact(self, column: sa.Column[Any]) -> ColumnElement[Any]:
        """The column's value as stored: MySQL/MariaDB compare text per collation, to which `a` and `A `
        are equal, yet such rows are not identical and the one kept is not interchangeable."""
        return self.rules.exact(column)


# -- the preview -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlanGroup:
    """One duplicate group as the fix will treat it."""

    group_no: int
    key: tuple[Any, ...]
    rows: int
    keep: dict[str, Any] | None
    delete: list[dict[str, Any]]
    differs: list[str]

    def as_json(self) -> dict[str, Any]:
        return {"key": [display(v) for v in self.key], "rows": self.rows,
                "keep": _display_row(self.keep), "delete": [_display_row(r) for r in self.delete],
                "differs": self.differs}


@dataclass(frozen=True)
class ReferencePlan:
    """What the fix does with one reference's rows. `rows`: referencing rows that point at rows to delete
    (to be repointed, archived or refused, per `reference.action`); `crowded`: for a repoint, (kept rows that
    end up with more than one referencing row, fewest, most) or None; `conflicts`: unique constraint -> groups
    whose repoint would violate it."""

    reference: Reference
    rows: int
    conflicts: dict[str, int]
    crowded: tuple[int, int, int] | None = None
    # references to the rows an archive deletes, or (a repoint) by a foreign key whose ON UPDATE writes, to the
    # values a repoint changes: label -> rows
    nested: dict[str, int] = field(default_factory=dict)
    # a repoint: rows referring by a NO ACTION / RESTRICT foreign key to the values it changes, which the database
    # would refuse to change: (label, foreign key, ON UPDATE action) -> rows
    held: dict[tuple[str, str, str], int] = field(default_factory=dict)
    index: str | None = None  # the CREATE INDEX the referencing columns lack, or None when an index leads with them
    # a repoint: CHECK constraint of the referencing table -> rows of this reference that the database, evaluating
    # the constraint's own expression on them as the repoint would leave them, says it would refuse
    # (`_check_refusals`); None where the database does not give the expressions (not evaluated beforehand)
    # (PostgreSQL) and the constraints of a repointed column's domain likewise, each keyed
    # `<constraint> of domain <domain> (<column>)`, a domain's NOT NULL as the constraint `NOT NULL`
    checks: dict[str, int] | None = field(default_factory=dict)
    unchecked: dict[str, str] = field(default_factory=dict)  # CHECK constraint -> the VOLATILE function it calls
    named: dict[str, str] = field(default_factory=dict)  # a domain's constraint in `checks`/`unchecked` -> its words
    # a constraint in `checks` refusing rows only between repoints (`_count_between`): its key there -> the state,
    # "after repointing X but not yet Y"
    between: dict[str, str] = field(default_factory=dict)
    # A repoint: rows another reference of the table archives (not in `rows`), but in a later group than the one
    # this reference points at, so repointed first where the two groups fall in different batches (`_archiving`)
    repointed_first: int = 0
    # A self-reference: of `rows`, how many are rows to delete themselves (the others stay)
    doomed_referrers: int = 0
    # a repoint: referencing rows whose group's kept row holds NULL in a referred column, so that the repoint would
    # write NULL into them, pointing them at no row at all (`_unreferable`)
    unreferable: int = 0
    # a repoint into referencing columns of another type or size than the referred ones (`varchar(3)` referring to a
    # `varchar(10)`): the rows whose kept row's values the referencing column's type would not hold unchanged, or
    # the database's words when it refuses to convert them (`smallint out of range`) (`_unfit`)
    unfit: int | str = 0
    # More than `ALL_ORDERS` repointed references of its table (on its first one): the rows moved by several of them
    # whose rows to delete lie in different groups, whose states between repoints in another order than the fix's
    # within one batch (their groups in different batches) are not evaluated (`_intermediate_states`)
    unordered: int = 0

    def check_words(self, key: str) -> str:
        """How the plan names the constraint `key` of `checks` or `unchecked`."""
        if key in self.between:
            key = key.removesuffix(f" {self.between[key]}")
        return self.named.get(key, f"CHECK constraint {key} of {self.reference.table}")

    @property
    def action(self) -> str:
        return self.reference.action

    def describe(self, table: str) -> str:
        """One line: what happens to this reference's rows."""
        r = self.reference
        through = f" (declared on {r.fk.ancestor}, of which it is a partition)" if r.fk.ancestor else ""
        head = f"{r.label} -> {table}({', '.join(r.referred_columns)}){through} ON DELETE {r.ondelete or 'NO ACTION'}"
        if not r.referred_unique:
            return f"{head}: {self.rows:,} row(s) hold values of rows to delete (not a unique column)"
        if r.self_reference and self.action != "refuse":  # (the blocker says why, and what to run by hand)
            return (f"{head}: {self.rows:,} row(s) of the table itself point at rows to delete (a self-reference: "
                    "neither repointed nor archived by the fix)")
        if self.action == "archive":
            return f"{head}: {self.rows:,} referencing row(s) archived and deleted with the rows they reference"
        if self.action == "refuse":
            return f"{head}: {self.rows:,} referencing row(s) point at rows to delete (on_reference = refuse)"
        line = f"{head}: {self.rows:,} referencing row(s) repointed to the kept rows"
        if self.repointed_first:
            line += (f" (and up to {self.repointed_first:,} that another reference's archive takes in a later "
                     "batch, repointed first where their groups fall in different batches)")
        if self.crowded:
            kept, low, high = self.crowded
            spread = f"{low}" if low == high else f"{low}-{high}"
            line += f"; {kept:,} kept row(s) will each have {spread} {r.table} rows"
        return line

    def as_json(self) -> dict[str, Any]:
        crowded = None if self.crowded is None else {"kept_rows": self.crowded[0], "fewest": self.crowded[1],
                                                     "most": self.crowded[2]}
        return {**self.reference.as_json(), "rows": self.rows,
                "rows_to_repoint": self.rows if self.action == "repoint" and self.reference.referred_unique
                and not self.reference.self_reference else 0,
                "rows_to_archive": self.rows if self.action == "archive" and not self.reference.self_reference else 0,
                "repointed_before_archive": self.repointed_first, "kept_rows_with_several": crowded,
                "unique_conflicts": self.conflicts,
                "check_refusals": self.checks, "missing_index": self.index,
                "rows_kept_row_null": self.unreferable, "rows_unfit": self.unfit}


@dataclass(frozen=True)
class LeftOut:
    """Groups the fix leaves alone for one reason (a unique key's label, or `IDENTICAL_DIFFER`), decided by the
    database per group: how many, and the keys of the first few."""

    reason: str
    groups: int
    keys: list[tuple[Any, ...]]
    evidence: str = ""  # for a distinct key: `UniqueKey.evidence`

    def describe(self, check: str) -> str:
        """One line: what is left out, why, and how to proceed."""
        keys = "; ".join("(" + ", ".join(value_text(v) for v in key) + ")" for key in self.keys)
        more = ", ..." if self.groups > len(self.keys) else ""
        if self.reason == COUNTER_REPEATED:
            return (f"{self.groups:,} group(s) in which two rows hold the same value of {self.evidence}: the table "
                    f"has no primary key, and its AUTO_INCREMENT column tells its rows apart only where its values "
                    f"differ, so none of these is deleted; keys {keys}{more}; give those rows values of their own "
                    f"(or add a primary key) and fix again")
        if self.reason == IDENTICAL_DIFFER:
            return (f"{self.groups:,} group(s) whose rows differ: the table has no primary key, so nothing tells "
                    f"those rows apart and none is deleted; keys {keys}{more}; add a primary key or merge them by "
                    "hand")
        evidence = self.evidence or f"unique constraint {self.reason}"
        return (f"{self.groups:,} group(s) whose rows differ on {evidence}: the schema says "
                f"they are different entities, not duplicates, so they are not merged; keys {keys}{more}; merge "
                f"them anyway with `{command('fix', check, '--merge-distinct')}` (or merge_distinct = true on the "
                "check)")

    def as_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "groups": self.groups, "keys": [[display(v) for v in k] for k in self.keys]}


@dataclass
class FixPlan:
    """What a fix will do; `fix_id` is set once the plan is a snapshot a fix can run (see `prepare_fix`)."""

    check: str
    database: str
    table: str
    dialect: str
    identity: str
    keeper: str
    groups: int
    rows_to_delete: int
    sample: list[PlanGroup]
    references: list[ReferencePlan]
    differences: dict[str, int]
    blockers: list[str]
    notes: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)  # what makes the fix faster (indexes its deletes need)
    distinct_entities: dict[str, int] = field(default_factory=dict)  # unique key label -> groups it tells apart
    # Groups the fix leaves alone (their rows differ on another unique key, or without identity at all), per
    # reason; `groups` counts them, `rows_to_delete` does not. `left_out_groups`: how many in all.
    left_out: list[LeftOut] = field(default_factory=list)
    left_out_groups: int = 0
    # Columns no foreign key declares whose rows hold keys of rows to delete (`undeclared`): the fix leaves them.
    undeclared: list[Undeclared] = field(default_factory=list)
    # Per nullable key column: the groups the fix merges whose key holds NULL there (`nulls` "equal" or
    # "skip_all_null" count NULL as a value; `_judge_null_keys`).
    null_key_groups: dict[str, int] = field(default_factory=dict)
    fix_id: str | None = None
    planned_at: str = field(default_factory=now_text)

    @property
    def fixable(self) -> bool:
        return not self.blockers

    def as_json(self) -> dict[str, Any]:
        return {"check": self.check, "database": self.database, "table": self.table, "fix_id": self.fix_id,
                "planned_at": self.planned_at, "identity": self.identity, "keeper": self.keeper,
                "groups": self.groups, "rows_to_delete": self.rows_to_delete,
                "rows_to_repoint": sum(r.as_json()["rows_to_repoint"] for r in self.references),
                "sample": [g.as_json() for g in self.sample],
                "references": [r.as_json() for r in self.references],
                "differences": self.differences, "distinct_entities": self.distinct_entities,
                "left_out_groups": self.left_out_groups, "left_out": [x.as_json() for x in self.left_out],
                "undeclared_references": [u.as_json() for u in self.undeclared],
                "null_key_groups": self.null_key_groups,
                "blockers": self.blockers, "notes": self.notes, "advice": self.advice}


def _display_row(row: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if row is None else {k: display(v) for k, v in row.items()}


def build_preview(conn: Connection, layout: Layout, rel: FromClause, *, database: str,
                  sample: int = SAMPLE_GROUPS, forget: Callable[[list[int]], object] | None = None) -> FixPlan:
    """Every figure of the plan, computed by the database over the plan relation `rel`. Groups the fix leaves
    out (`refusals`) are counted in `groups` and listed, and left out of every other figure; `forget` drops them
    from a snapshot's plan table (see `_left_out`)."""
    tc = layout.tc
    groups, rows_to_delete = _totals(conn, layout, rel)
    # Differences only block tables without a row identity (asked before their groups are left out, to name the
    # columns); otherwise they inform a preview someone reads, about the groups the fix merges.
    identical = layout.mode == "identical"
    differences, differing_groups = _differences(conn, layout, rel) if groups and identical else ({}, 0)
    distinct = _distinct_entities(conn, layout, rel) if groups and layout.merge_distinct else {}
    left_out, left_out_groups, rel = _left_out(conn, layout, rel, forget) if groups else ([], 0, rel)
    if left_out_groups:
        rows_to_delete = _totals(conn, layout, rel)[1]
        distinct = {x.reason: x.groups for x in left_out if not identical and x.reason != COUNTER_REPEATED}
    if groups and sample > 0 and not identical:
        differences, differing_groups = _differences(conn, layout, rel)
    references = [_reference_plan(conn, layout, rel, ref) for ref in layout.refs] if groups else []
    references = _check_refusals(conn, layout, rel, references)
    references = _unique_refusals(conn, layout, rel, references)
    plan = FixPlan(
        check=tc.check.name, database=database, table=tc.check.table or tc.table.name, dialect=layout.dialect,
        identity=layout.mode, keeper=layout.keeper_description(), groups=groups, rows_to_delete=rows_to_delete,
        sample=_sample(conn, layout, rel, sample) if groups and sample > 0 else [],
        references=references, differences=differences, blockers=[],
        distinct_entities=distinct, left_out=left_out, left_out_groups=left_out_groups,
    )
    _judge(plan, layout, differing_groups)
    if groups:
        _judge_null_keys(conn, plan, layout, rel)
        _judge_collations(plan, layout)
        _judge_unseen(conn, plan, layout)
        if layout.mode in ("pk", COUNTER) and rows_to_delete:
            _judge_undeclared(conn, plan, layout, rel)
    return plan


def _judge_null_keys(conn: Connection, plan: FixPlan, layout: Layout, rel: FromClause) -> None:
    """Groups the fix merges because their key holds NULL in a nullable column (the check's `nulls` rule counts
    NULL as a value): rows where NULL means "none" or "unknown" (Oscar's anonymous baskets, `owner_id` NULL)
    are not copies of one another, and a guard (NULLS NOT DISTINCT) would then let the application write one such
    row only. Counted in the plan (the groups it merges) and said, so that the operator decides."""
    tc = layout.tc
    if tc.check.nulls == "distinct":
        return
    nullable = [(label, column.name) for label, column in zip(layout.key_labels, tc.key_columns, strict=True)
                if column.nullable]
    if not nullable or layout.mode == "identical":
        return
    # Per column, and in all (a group may hold NULL in one column, another group in another: the total is theirs,
    # not the largest column's).
    *counts, total = conn.execute(sa.select(*[
        sa.func.count(sa.distinct(sa.case((rel.c[label].is_(None), rel.c[GROUP])))) for label, _n in nullable
    ], sa.func.count(sa.distinct(sa.case((sa.or_(*[rel.c[label].is_(None) for label, _n in nullable]),
                                         rel.c[GROUP])))))).one()
    plan.null_key_groups = {name: int(n) for (_label, name), n in zip(nullable, counts, strict=True) if n}
    if not plan.null_key_groups:
        return
    shown = ", ".join(f"{name} in {n:,}" for name, n in plan.null_key_groups.items())
    plan.notes.append(
        f"{int(total):,} group(s) are formed by a NULL in the key ({shown}), counted as one "
        f"value (nulls = \"{tc.check.nulls}\"): if NULL there means none or unknown (an anonymous owner), those rows "
        "are not copies of one another, yet the fix merges them, and a guard treating NULLs as equal (PostgreSQL "
        "15+) refuses the application's next such row; set nulls = \"distinct\" on the check to leave them out")


def _judge_collations(plan: FixPlan, layout: Layout) -> None:
    """A reference compared under a collation the database's own query plans may get wrong
    (`Dialect.unsound_collations`): whatever rows it counts, a batch could miss some, repoint the others and delete
    the row they refer to."""
    unsound = layout.rules.unsound_collations()
    for ref in layout.refs if unsound else []:
        if wrong := sorted(set(ref.fk.compared_under) & unsound):
            plan.blockers.append(
                f"{ref.label} refers to {plan.table}({', '.join(ref.referred_columns)}) under COLLATE "
                f"{', '.join(wrong)}, and this database's library finds values equal under it apart in some query "
                "plans (SQLite's Bloom filter: 'a ' and 'a'), so the fix could miss rows referring to rows it "
                "deletes and leave them referring to no row; fix by hand, or with a library that compares them right")


def _judge_undeclared(conn: Connection, plan: FixPlan, layout: Layout, rel: FromClause) -> None:
    """Rows of columns no foreign key declares that hold keys of rows to delete (see `undeclared`): the fix
    leaves them pointing at no row, so the preview names each with the database's count."""
    identity = layout.identity[0]
    counter = identity if layout.mode == COUNTER and isinstance(identity, sa.Column) else None  # (`COUNTER`)
    found, unread = undeclared_references(conn, layout.table, rel, layout.identity_labels[0], rel.c[RANK] > 1,
                                          counter)
    plan.undeclared = found
    referred = ", ".join(c.name for c in layout.table.primary_key.columns) if counter is None else str(counter.name)
    target = layout.table.name
    for undeclared in found:
        # A column whose rows refer to several tables, as its type column says, is no foreign key's to declare.
        way = (f"(a column whose {undeclared.type_column} says which table each row refers to cannot be declared a "
               "foreign key)" if undeclared.type_column else
               "or declare a foreign key (the fix then repoints them and undo points them back)")
        plan.notes.append(f"{undeclared.describe(referred, target)}; the fix does not change them (undo restores the "
                          f"rows they point at): if it is a reference, repoint them by hand before the fix {way}")
    if found and layout.rules.reads_beside_writer:
        plan.notes.append("the rows to delete are the plan's snapshot; the rows holding their keys in columns no "
                          "foreign key declares were counted just after it, in the data then current (another "
                          "connection): what the application writes meanwhile is counted there, not in the plan")
    if unread:
        plan.notes.append(f"not counted: columns no foreign key declares that may hold keys of rows to delete, in "
                          f"{'; '.join(unread)}")


def _judge_unseen(conn: Connection, plan: FixPlan, layout: Layout) -> None:
    """What the catalog says the fix role cannot see or the server would refuse: foreign keys hidden from the role
    (MariaDB/MySQL), publications refusing the fix's deletes and updates, publications replicating its tables."""
    rules = for_backend(conn.dialect.name)
    uncounted = rules.account_refusal(conn)
    if uncounted:
        plan.blockers.append(uncounted)
    unseen = rules.unseen_references(conn, layout.table)
    if unseen:
        plan.blockers.append(unseen)
    create = rules.create_refusal(conn, place(conn, layout.table.schema))
    if create:
        plan.blockers.append(create)
    fired = rules.ddl_triggers(conn)
    if fired:  # what they write is counted in each DDL step (`accounting.ddl_step`), not guessed from the catalog
        plan.notes.append(f"the fix's DDL (its plan, archive and log tables, and undo's): {fired}; a row they write "
                          "rolls that step back and stops the fix there (a trigger that only notifies passes)")
    if unrollable := unrollable_triggers(conn, layout):
        plan.blockers.append(unrollable)
    if policed := rules.row_security_refusal(conn, layout.table):
        plan.blockers.append(policed)
    missing = rules.missing_fix_privileges(conn, layout.table)
    if missing:  # else the first batch fails on "permission denied", and a resume meets the same refusal
        name = conn.dialect.identifier_preparer.format_table(layout.table)
        plan.blockers.append(f"the fix role may not {' or '.join(missing)} {name}, which a fix needs (the row locks "
                             f"take UPDATE): GRANT SELECT, UPDATE, DELETE ON {name} TO the fix role (INSERT too, for "
                             "undo), or point fix_url / fix_url_env at a role that has them")
    # The server's own answer for each write the fix makes, as the fix role (what the catalog checks above
    # cannot say: MariaDB/MySQL grants, column grants, a referencing table's privileges); a batch stopped by a
    # privilege error says the same (`execute._after_stop`).
    writes = fix_writes(layout.table, [p.reference for p in plan.references if p.rows],
                        lambda ref: layout.reflect(conn, ref.schema, ref.table))
    plan.blockers.extend(refused_writes(conn, [w for w in writes if not (missing and w.table is layout.table)]))
    plan.blockers.extend(rules.replication_blockers(conn, layout.table, "delete"))
    plan.blockers.extend(unusable_tables(conn, archives(conn, layout)))
    plan.blockers.extend(_altered_archives(conn, layout))
    plan.blockers.extend(_unmade_archives(conn, layout))
    asked: set[tuple[Any, ...]] = set()  # (a table with two references is asked once)
    for ref_plan in plan.references:
        ref = ref_plan.reference
        if ref_plan.rows and ref.visible and ref.action != "refuse":
            child = layout.reflect(conn, ref.schema, ref.table)
            if (ref.schema, ref.table, ref.action) not in asked:
                asked.add((ref.schema, ref.table, ref.action))
                plan.blockers.extend(rules.replication_blockers(conn, child, "update" if ref.action == "repoint"
                                                                else "delete"))
            # The repoint's updates and the archive's deletes reach one level down by foreign keys to the
            # referencing table, which `nested_references` counts only where the fix role sees them.
            if ref.referred_unique and not ref.self_reference and (ref.schema, ref.table) not in asked:
                asked.add((ref.schema, ref.table))
                if unseen := rules.unseen_references(conn, child):
                    plan.blockers.append(unseen)
    plan.notes.extend(rules.replication_notes(conn, sorted({layout.table.schema, home(conn)}, key=str)))


def unrollable_triggers(conn: Connection, layout: Layout) -> str | None:
    """Why the fix refuses when its writes fire a user trigger (an AFTER DELETE trigger of the table, a trigger
    of a referencing table it repoints or archives) while the server holds tables whose engine cannot roll back
    (`Dialect.unrollable_tables`: MyISAM, Aria): the database does not say which tables a trigger body writes, and
    a batch its account rolls back would keep what the trigger wrote there. None otherwise."""
    fired = [*(f"{hook} on {layout.table.name}" for hook in layout.hooks.firing),
             *(f"{trigger} on {ref.table}" for ref in layout.refs if ref.action != "refuse" and ref.visible
               for trigger in ref.triggers)]
    if not fired:
        return None
    return unrollable_refusal(conn, list(dict.fromkeys(fired)), "the fix's writes", "for the fix's duration")


def unrollable_refusal(conn: Connection, fired: list[str], writes: str, during: str) -> str | None:
    """The refusal for `fired` triggers (of `writes`) while the server holds tables that cannot roll back."""
    tables, count = for_backend(conn.dialect.name).unrollable_tables(conn)
    if not count:
        return None
    more = f", ... ({count} in all)" if count > len(tables) else ""
    shown = f"{', '.join(fired[:3])}{', ...' if len(fired) > 3 else ''}"
    return (f"{writes} fire {shown}, and the server holds table(s) whose storage engine cannot roll back "
            f"({', '.join(tables)}{more}): the database does not say which tables a trigger writes, and what it "
            "wrote in one of those would stay even when the transaction is rolled back (its account refuses an "
            "unplanned write by rolling back); convert those tables to InnoDB (ALTER TABLE ... ENGINE=InnoDB), or "
            f"drop the trigger {during} (and create it again after)")


def archives(conn: Connection, layout: Layout) -> list[sa.Table]:
    """The archive tables a fix of the layout's table writes (its own, and those of the referencing tables it
    archives with their parents), where `archive.ensure_archive` keeps them; an earlier fix may have created
    them as another role."""
    apart = home(conn) is not None
    return [sa.Table(archive_name(sa.Table(name, sa.MetaData(), schema=schema), apart=apart), sa.MetaData(),
                     schema=place(conn, schema)) for schema, name in _archived(layout)]


def _archived(layout: Layout) -> list[tuple[str | None, str]]:
    """(schema, name) of each table whose rows a fix of the layout's table archives, its own first."""
    return [(layout.table.schema, layout.table.name),
            *((ref.schema, ref.table) for ref in layout.refs if ref.action == "archive")]


def _unmade_archives(conn: Connection, layout: Layout) -> list[str]:
    """The server's refusal of each archive the fix would create (`archive.archive_refusal`: MariaDB/MySQL's row
    size limit), asked of the archives no earlier fix created."""
    inspector = sa.inspect(conn)
    refusals = []
    for i, ((schema, name), archive) in enumerate(zip(_archived(layout), archives(conn, layout), strict=True)):
        source = layout.reflect(conn, schema, name) if i else layout.table
        if not inspector.has_table(archive.name, schema=archive.schema) and (refused := archive_refusal(conn, source)):
            refusals.append(refused)
    return refusals


def _altered_archives(conn: Connection, layout: Layout) -> list[str]:
    """What every run of the fix refuses before its first batch (`archive.refuse_altered`) about the archives it
    writes (`archives`: an earlier fix's, altered since; one not made yet has no column or trigger to refuse), as
    the plan's blocker, in the same words."""
    sources = [layout.table, *[layout.reflect(conn, ref.schema, ref.table) for ref in layout.refs
                               if ref.action == "archive"]]
    try:  # (`archives` lists the archive of each of these tables, in this order)
        refuse_altered(conn, [Copy(archive, source, {c.name: c.name for c in source.columns})
                              for archive, source in zip(archives(conn, layout), sources, strict=True)])
    except FixRefused as refused:
        return [str(refused)]
    return []


def _totals(conn: Connection, layout: Layout, rel: FromClause) -> tuple[int, int]:
    if layout.mode == "identical":
        row = conn.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(rel.c[SIZE] - 1), 0))).one()
    else:
        keeper = sa.case((rel.c[RANK] == 1, 1), else_=0)
        row = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(keeper), 0),
                                     sa.func.coalesce(sa.func.sum(1 - keeper), 0))).one()
    return int(row[0]), int(row[1])


def _differences(conn: Connection, layout: Layout, rel: FromClause) -> tuple[dict[str, int], int]:
    """Per column outside the row identity: in how many groups its values differ (NULL counts as a value)."""
    columns = layout.comparable_columns()
    if not columns:
        return {}, 0
    flags = []
    for j, column in enumerate(columns):
        nulls = sa.func.max(sa.case((column.is_(None), 1), else_=0))
        distinct = sa.func.count(sa.distinct(layout.exact(column)))
        flags.append(sa.case((distinct + nulls > 1, 1), else_=0).label(f"d{j}"))
    per_group = (sa.select(*flags).select_from(rel).join(layout.table, layout.member_match(rel))
                 .group_by(rel.c[GROUP]).subquery("dupewatch_diff"))
    any_flag = sa.case((sum((per_group.c[f"d{j}"] for j in range(len(columns))), sa.literal(0)) > 0, 1), else_=0)
    row = conn.execute(sa.select(*[sa.func.coalesce(sa.func.sum(per_group.c[f"d{j}"]), 0)
                                   for j in range(len(columns))],
                                 sa.func.coalesce(sa.func.sum(any_flag), 0))).one()
    counts = {c.name: int(row[j]) for j, c in enumerate(columns) if int(row[j])}
    return counts, int(row[-1])


def _distinct_entities(conn: Connection, layout: Layout, rel: FromClause) -> dict[str, int]:
    """Per unique key beyond the check's key: in how many groups the rows differ on it (see `distinct_flags`)."""
    flags = layout.distinct_flags()
    if not flags or layout.mode == "identical":  # identical rows hold no different values on anything
        return {}
    per_group = (sa.select(*flags).select_from(rel).join(layout.table, layout.member_match(rel))
                 .group_by(rel.c[GROUP]).subquery("dupewatch_distinct"))
    row = conn.execute(sa.select(*[sa.func.coalesce(sa.func.sum(per_group.c[f.name]), 0) for f in flags])).one()
    return {key.label: int(n) for key, n in zip(layout.distinct_keys, row, strict=True) if n}


def refusals(layout: Layout) -> list[tuple[str, ColumnElement[Any]]]:
    """Why a group is left out of the fix, as (reason, an aggregate over the group's rows in the table that is 1
    when it holds): its rows differ on another unique key (unless the operator merges them, `merge_distinct`),
    or, without any row identity (`identical`), its rows differ at all (nothing tells them apart)."""
    if layout.mode == "identical":
        columns = layout.comparable_columns()
        if not columns:
            return []
        differ = [sa.func.count(sa.distinct(layout.exact(c))) + sa.func.max(sa.case((c.is_(None), 1), else_=0)) > 1
                  for c in columns]
        return [(IDENTICAL_DIFFER, sa.case((sa.or_(*differ), 1), else_=0))]
    # (joined by `member_match`: a plan row meets every live row of its value and key, so a value that repeats in
    # the group, planned or written since, counts more rows than values)
    repeated: list[tuple[str, ColumnElement[Any]]] = [] if layout.mode != COUNTER else [
        (COUNTER_REPEATED, sa.case((sa.func.count() > sa.func.count(sa.distinct(layout.identity[0])), 1), else_=0))]
    if layout.merge_distinct:
        return repeated
    return repeated + [(key.label, flag.element)
                       for key, flag in zip(layout.distinct_keys, layout.distinct_flags(), strict=True)]


def refused_select(layout: Layout, plan: FromClause,
                   chosen: ColumnElement[bool] | None = None) -> sa.Select[Any] | None:
    """The groups (`GROUP`, then one 0/1 column per reason of `refusals`) the fix leaves out, decided by the
    database over the plan relation (or plan table) `plan` joined to the live table; None when nothing can be."""
    reasons = refusals(layout)
    if not reasons:
        return None
    flags = [flag.label(f"dw_u{j}") for j, (_reason, flag) in enumerate(reasons)]
    statement = (sa.select(plan.c[GROUP], *flags).select_from(plan).join(layout.table, layout.member_match(plan))
                 .group_by(plan.c[GROUP]).having(sa.or_(*[flag == 1 for _reason, flag in reasons])))
    return statement if chosen is None else statement.where(chosen)


def distinct_groups(conn: Connection, layout: Layout, plan: FromClause,
                    chosen: ColumnElement[bool]) -> list[int]:
    """The groups among the plan rows matching `chosen` whose rows differ on a unique key beyond the check's key
    now (a batch asks under its locks); [] when the operator merges them anyway."""
    if layout.mode == "identical":  # the batch compares every row with the plan's copy (`_identical`)
        return []
    statement = refused_select(layout, plan, chosen)
    return [] if statement is None else [int(row[0]) for row in conn.execute(statement)]


def _left_out(conn: Connection, layout: Layout, rel: FromClause,
              forget: Callable[[list[int]], object] | None) -> tuple[list[LeftOut], int, FromClause]:
    """The groups the fix leaves out (see `refusals`), per reason with the keys of the first few; how many groups
    in all; and the relation without them. With `forget` (a snapshot), the groups are dropped from the plan table
    the way a batch drops the groups it skips, so no batch touches them; a dry run filters them out."""
    statement = refused_select(layout, rel)
    if statement is None:
        return [], 0, rel
    reasons = [reason for reason, _flag in refusals(layout)]
    found = conn.execute(statement.order_by(rel.c[GROUP])).all()
    if not found:
        return [], 0, rel
    counts = [sum(int(row[1 + j]) for row in found) for j in range(len(reasons))]
    shown: list[list[int]] = [[int(row[0]) for row in found if row[1 + j]][:LEFT_OUT_KEYS] for j in range(len(reasons))]
    wanted = sorted({g for groups in shown for g in groups})
    as_stored = layout.rules.as_stored
    keys = {int(row[0]): tuple(row[1:]) for row in conn.execute(
        sa.select(rel.c[GROUP], *[as_stored(rel.c[k]) for k in layout.key_labels])
        .where(rel.c[GROUP].in_(wanted), rel.c[RANK] == 1))}
    left_out = [LeftOut(reason, counts[j], [keys[g] for g in shown[j] if g in keys], layout.evidence(reason))
                for j, reason in enumerate(reasons) if counts[j]]
    if forget is not None:
        forget([int(row[0]) for row in found])
        return left_out, len(found), rel
    remaining = sa.select(rel).where(rel.c[GROUP].not_in(
        sa.select(statement.subquery("dupewatch_refused").c[GROUP]))).subquery("dupewatch_fixed")
    return left_out, len(found), remaining


def _pointing(child: FromClause, layout: Layout, rel: FromClause, ref: Reference) -> ColumnElement[bool]:
    """A referencing row points at a plan row: compared by the database, with the columns' own rules
    (a `_ci` collation's `ROOT` points at `root`)."""
    return sa.and_(*[ref.fk.refers(layout.dialect, child.c[c], rel.c[layout.ref_label[r]], j)
                     for j, (c, r) in enumerate(zip(ref.columns, ref.referred_columns, strict=True))])


def _archiving(child: FromClause, layout: Layout, rel: FromClause, ref: Reference, *,
               by_then: bool = False) -> list[ColumnElement[bool]]:
    """For a repointed reference: per other reference of its table that archives, whether it archives the row (by
    the group of the row of `rel` it points at, or a group before it, when `by_then`). The fix archives first in
    each batch (a `post` row whose `author_id` is archived and `editor_id` repointed is archived only), and batches
    are ranges of groups in order, so such a row is repointed only when its archive comes in a later batch."""
    archiving = [other for other in layout.refs if other.action == "archive" and other.visible
                 and other.referred_unique and not other.self_reference
                 and (other.schema, other.table) == (ref.schema, ref.table)]
    conditions: list[ColumnElement[bool]] = []
    for j, other in enumerate(archiving):
        doomed = rel.alias(f"dupewatch_archived{j}")
        then = [doomed.c[GROUP] <= rel.c[GROUP]] if by_then else []
        conditions.append(sa.exists().where(_pointing(child, layout, doomed, other), doomed.c[RANK] > 1, *then))
    return conditions


def _reference_plan(conn: Connection, layout: Layout, rel: FromClause, ref: Reference) -> ReferencePlan:
    if layout.mode == "identical" or not ref.visible:
        return ReferencePlan(ref, 0, {})
    found = _reference_rows(conn, layout, rel, ref)
    index = None if _indexed(conn, layout, ref) else missing_index(conn, layout.dialect, ref)
    return replace(found, index=index) if index else found


def _indexed(conn: Connection, layout: Layout, ref: Reference) -> bool:
    """Whether the primary key, a unique constraint or a (non-partial) index of the referencing table starts with
    the foreign key's columns, so that the rows pointing at a deleted row are found by an index lookup, not by a
    scan of the whole table (PostgreSQL's foreign key check does this once per deleted row). (A key or index that
    starts with them contains them: `Reference.unique_sets` holds every unique one that may.)"""
    leading: list[list[str | None]] = [list(cols) for _name, cols in ref.unique_sets]
    leading += layout.full_indexes(conn, ref.schema, ref.table, ref.columns)
    wanted = set(ref.columns)
    return any(set(columns[:len(wanted)]) == wanted for columns in leading)


_NOT_NULL = re.compile(r"^\s*(\w+)\s+IS\s+NOT\s+NULL\s*$", re.IGNORECASE)


def _not_null_only(predicate: str, columns: Sequence[str]) -> bool:
    """Whether a partial index's predicate, as the catalog writes it (`(follow_id IS NOT NULL)`, `(("a" IS NOT NULL)
    AND (b IS NOT NULL))`), only says that some of `columns` are not NULL: one the lookup `column = value` of
    each of them implies (`=` is strict: NULL matches nothing)."""
    parts = re.split(r"\s+AND\s+", predicate.replace("(", " ").replace(")", " ").replace('"', ""),
                     flags=re.IGNORECASE)
    return all((m := _NOT_NULL.match(part)) is not None and m.group(1) in columns for part in parts)


def missing_index(conn: Connection, dialect: str, ref: Reference) -> str:
    """The CREATE INDEX (CONCURRENTLY where the database can build it without blocking writes) on the foreign
    key's columns, quoted by SQLAlchemy for this database."""
    name = safe_identifier("", f"{ref.table}_{'_'.join(ref.columns)}_idx")
    child = sa.Table(ref.table, sa.MetaData(), *[sa.Column(c) for c in ref.columns], schema=ref.schema)
    options = for_backend(dialect).index_options(where=None, nulls_not_distinct=False)
    index = sa.Index(name, *[child.c[c] for c in ref.columns], **options)
    return str(CreateIndex(index).compile(dialect=conn.dialect)).strip()


def _reference_rows(conn: Connection, layout: Layout, rel: FromClause, ref: Reference) -> ReferencePlan:
    table = layout.reflect(conn, ref.schema, ref.table)
    child = table.alias("dupewatch_child")  # may be the fixed table itself
    on = _pointing(child, layout, rel, ref)
    archived = _archiving(child, layout, rel, ref) if ref.action == "repoint" else []
    first = 0
    checked = on  # the rows a repoint may move, in whichever batches their groups fall: what its checks judge
    if archived:  # counted as the archive's; those it takes in a later batch may be repointed first
        by_then = _archiving(child, layout, rel, ref, by_then=True)
        first = conn.execute(sa.select(sa.func.count()).select_from(child).join(rel, on).where(
            rel.c[RANK] > 1, sa.or_(*archived), *[~then for then in by_then])).scalar_one()
        checked = sa.and_(on, *[~then for then in by_then])
        on = sa.and_(on, *[~a for a in archived])
    rows = conn.execute(sa.select(sa.func.count()).select_from(child).join(rel, on)
                        .where(rel.c[RANK] > 1)).scalar_one()
    if rows and ref.self_reference and ref.referred_unique and not ref.fk.within:
        # Of them, the rows the fix deletes too (one pointing at itself, an Odoo partner's commercial_partner_id).
        doomed = rel.alias("dupewatch_doomed_referrer")
        deleted = conn.execute(sa.select(sa.func.count()).select_from(child).join(rel, on).where(
            rel.c[RANK] > 1, sa.exists().where(doomed.c[RANK] > 1, *[
                doomed.c[layout.ref_label[r]] == child.c[r] for r in ref.referred_columns]))).scalar_one()
        return ReferencePlan(ref, int(rows), {}, doomed_referrers=int(deleted))
    if rows and ref.action == "archive" and ref.referred_unique and not ref.self_reference:
        return ReferencePlan(ref, int(rows), {}, nested=nested_references(conn, table, child, rel, on,
                                                                          layout=layout))
    if not (rows or first) or ref.action != "repoint" or not ref.referred_unique:
        return ReferencePlan(ref, int(rows), {}, repointed_first=int(first))
    # Rows one level down referring to the columns the repoint changes: by a key whose ON UPDATE writes (`nested`),
    # or by a NO ACTION / RESTRICT one, under which the database would refuse the repoint (`held`).
    referring = [] if ref.self_reference else _referring(conn, table, child, rel, checked, ref.columns, layout)
    nested = {fk.label: count for fk, count in referring if fk.update_writes}
    held = {(fk.label, fk.name or "(unnamed)", str(fk.onupdate)): count for fk, count in referring
            if not fk.update_writes}
    conflicts: dict[str, int] = {}
    keys = layout.once(("unique_keys", ref.schema, ref.table), lambda: catalog_for(conn).unique_keys(table))
    # PostgreSQL 15's `UNIQUE NULLS NOT DISTINCT`: a NULL beside the repointed columns is a value like any other
    # (a permission with no codename once per group), so two such rows collide.
    nulls_equal = {key.name for key in keys if key.nulls_not_distinct}
    # The primary key is a unique set named "PRIMARY KEY" there and by its own name in the catalog's keys
    # (Keycloak's `USER_ROLE_MAPPING` keyed by `(ROLE_ID, USER_ID)`): one constraint, named and counted once.
    primary = next((key.name for key in keys if key.primary), None)
    for name, unique in ref.unique_sets:
        rest = [child.c[c] for c in unique if c not in ref.columns]
        colliding = (sa.select(rel.c[GROUP], *rest).select_from(child).join(rel, checked)
                     .where(*[c.is_not(None) for c in rest if name not in nulls_equal])
                     .group_by(rel.c[GROUP], *rest).having(sa.func.count() > 1).subquery("dupewatch_clash"))
        count = conn.execute(_clashing_groups(colliding)).scalar_one()
        if count:
            conflicts[f"{primary} (the primary key)" if name == "PRIMARY KEY" and primary else name] = int(count)
    known = {name for name, _cols in ref.unique_sets}
    for key in keys:
        if key.primary and "PRIMARY KEY" in known:
            continue
        # A partial unique index (GitLab's `members`: `UNIQUE (user_id, source_id) WHERE requested_at IS NULL`)
        # is not a unique set, yet a repoint breaks it all the same, where its predicate holds (SQLite keeps no
        # predicate: there it is applied to every row, a refusal too many).
        columns = [c for c in key.columns if c is not None]
        if key.name in known or len(columns) < len(key.columns) or not set(ref.columns) <= set(columns):
            continue
        rest = [child.c[c] for c in columns if c not in ref.columns]
        where: list[ColumnElement[bool]] = [] if key.nulls_not_distinct else [c.is_not(None) for c in rest]
        if key.predicate:
            where.append(sa.literal_column(f"({key.predicate})", sa.Boolean))
        colliding = (sa.select(rel.c[GROUP], *rest).select_from(child).join(rel, checked).where(*where)
                     .group_by(rel.c[GROUP], *rest).having(sa.func.count() > 1).subquery("dupewatch_clash"))
        count = conn.execute(_clashing_groups(colliding)).scalar_one()
        if count:
            conflicts[key.name] = int(count)
    crowded = None if ref.one_to_one else _crowded(conn, child, rel, on)  # (never two rows per kept row)
    return ReferencePlan(ref, int(rows), conflicts, crowded, nested, held,
                         repointed_first=int(first),
                         unreferable=_unreferable(conn, layout, child, rel, checked, ref),
                         unfit=_unfit(conn, layout, child, rel, checked, ref))


def _clashing_groups(colliding: FromClause) -> sa.Select[tuple[Any]]:
    """How many duplicate groups hold a clash of `colliding` (one row per group and clashing value): a group
    whose repoint makes two pairs collide is one group, as the blocker says, not two."""
    return sa.select(sa.func.count(sa.distinct(colliding.c[GROUP])))


def _kept_of(rel: FromClause) -> tuple[FromClause, ColumnElement[bool]]:
    """The plan's rows again, as the kept row of each plan row's group: the alias and the join condition."""
    kept = rel.alias("dupewatch_kept")
    return kept, sa.and_(kept.c[GROUP] == rel.c[GROUP], kept.c[RANK] == 1)


def _unreferable(conn: Connection, layout: Layout, child: FromClause, rel: FromClause, on: ColumnElement[bool],
                 ref: Reference) -> int:
    """Referencing rows pointing at rows to delete whose group's kept row holds NULL in a column the foreign key
    refers to (a nullable UNIQUE column, `orders(customer_code) -> customer(code)`): a repoint would copy that NULL
    into them, and a NULL refers to no row (MATCH SIMPLE; MATCH FULL refuses part of one), so they would silently
    lose their reference. Counted by the database, from the plan's own copy of the referred values."""
    if not any(layout.table.c[r].nullable for r in ref.referred_columns):
        return 0  # a primary key, or NOT NULL columns: nothing to count
    kept, is_kept = _kept_of(rel)
    labels = [layout.ref_label[r] for r in ref.referred_columns]
    return int(conn.execute(
        sa.select(sa.func.count()).select_from(child).join(rel, on).join(kept, is_kept)
        .where(rel.c[RANK] > 1, sa.or_(*[kept.c[label].is_(None) for label in labels]))).scalar_one())


def _unfit(conn: Connection, layout: Layout, child: FromClause, rel: FromClause, on: ColumnElement[bool],
           ref: Reference) -> int | str:
    """Where a referencing column's type is not the referred column's (`orders.cc varchar(3)` referring to
    `customer.code varchar(10)`, `smallint` to `int`, `numeric(5,1)` to `numeric`), the repoint writes the kept
    row's value into it, which the database may refuse (too long, out of range) or round, and the batch then stops,
    every run at the same place: the referencing rows whose kept value the column's type does not hold unchanged,
    as the database converts and compares it, or the database's words when it refuses to convert one. Where
    columns take any value, a table whose columns do not (SQLite STRICT) gives its words for the first kept value
    it would refuse (`Dialect.refused_value`)."""
    kept, is_kept = _kept_of(rel)
    if not layout.rules.enforces_column_types:
        table = layout.reflect(conn, ref.schema, ref.table)
        for j, (column, referred) in enumerate(zip(ref.columns, ref.referred_columns, strict=True)):
            values = (sa.select(sa.type_coerce(kept.c[layout.ref_label[referred]], sa.types.NullType()))
                      .select_from(child).join(rel, on).join(kept, is_kept).where(rel.c[RANK] > 1).distinct())
            # the column may store the value as one that refers to no row (SQLite: an INTEGER column stores the
            # text '00' as 0, and 0 is no '00'; a TEXT one the REAL 0.30000000000000004 as '0.3'), compared as the
            # foreign key does (`ForeignKey.compared_as`; BINARY where `=` does: the same collation on both)
            collation = ref.fk.compared_as[j] if j < len(ref.fk.compared_as) else None
            if refusal := layout.rules.refused_value(
                    conn, table, column, values, referred=(layout.table, referred, collation or "BINARY")):
                return refusal
        return 0
    changed = []
    for column, referred in zip(ref.columns, ref.referred_columns, strict=True):
        value = kept.c[layout.ref_label[referred]]
        target = layout.rules.storage_type(child.c[column].type)
        if isinstance(target, sa.types.NullType) or _declared(conn, target) == _declared(
                conn, layout.rules.storage_type(layout.table.c[referred].type)):
            continue
        changed.append(sa.cast(value, target) != value)
    if not changed:
        return 0
    statement = (sa.select(sa.func.count()).select_from(child).join(rel, on).join(kept, is_kept)
                 .where(rel.c[RANK] > 1, sa.or_(*changed)))
    try:
        with conn.begin_nested():
            return int(conn.execute(statement).scalar_one())
    except sa.exc.DataError as exc:  # out of range
        return str(exc.orig).splitlines()[0]


def _declared(conn: Connection, kind: sa.types.TypeEngine[Any]) -> str | None:
    """A column type as this database declares it, or None where SQLAlchemy cannot write it."""
    try:
        return kind.compile(dialect=conn.dialect)
    except sa.exc.CompileError:
        return None


def _check_refusals(conn: Connection, layout: Layout, rel: FromClause,
                    plans: list[ReferencePlan]) -> list[ReferencePlan]:
    """`plans` with, for each reference whose rows are repointed, the CHECK constraints of its table that the
    database says would refuse a repointed row (`ReferencePlan.checks`). Each constraint's expression is the
    server's own text (`Dialect.check_constraints`), evaluated by the server over the rows as the repoint would
    leave them (`_after_repoint`: every repointed reference of the table at once), NULL passing as it does for a
    CHECK: one read per (referencing table, constraint), none for a table without any; and, for a table with several
    repointed references, over every state a row moved by more than one passes through between their UPDATEs
    (`_intermediate_states`, `_count_between`): one read per (state, constraint), none where no row is moved by
    two (`_moved_twice`, one read). Likewise the constraints
    of a repointed column's domain (`Dialect.domain_constraints`: PostgreSQL), which the UPDATE checks on the value
    it assigns: evaluated over that value alone, as `value`, on the rows the reference moves. A constraint calling
    a VOLATILE function is not run (`ReferencePlan.unchecked`)."""
    plans = list(plans)
    for (schema, name), positions in _repointed_tables(plans).items():
        child = layout.reflect(conn, schema, name)
        constraints = layout.rules.check_constraints(conn, child)
        if constraints is None:
            for j in positions:
                plans[j] = replace(plans[j], checks=None)
            continue
        refs = [plans[j].reference for j in positions]
        domains = {column: domain for column, domain in layout.rules.domain_constraints(conn, child).items()
                   if any(column in ref.columns for ref in refs)}
        if not constraints and not domains:
            continue
        refused: list[dict[str, int]] = [{} for _j in positions]
        unchecked: list[dict[str, str]] = [{c.name: c.volatile for c in constraints if c.volatile is not None}
                                           for _j in positions]
        named: list[dict[str, str]] = [{} for _j in positions]
        between: list[dict[str, str]] = [{} for _j in positions]
        unordered = [0 for _j in positions]
        repoint = _repoint(child, layout, rel, refs)
        after, moved = _after_repoint(repoint)
        evaluated = [c for c in constraints if c.volatile is None]
        twice = len(refs) > 1 and bool(evaluated) and _moved_twice(conn, repoint)
        states = _intermediate_states(len(refs)) if twice else []
        if twice and len(refs) > ALL_ORDERS:
            unordered[0] = _moved_apart(conn, repoint)
        for constraint in constraints:
            if constraint.volatile is None:
                _count_refused(conn, after, constraint, list(enumerate(moved)), refused)
                for state, moving, earlier in states:
                    _count_between(conn, repoint, (state, moving, earlier), constraint, refused, between)
        for column, domain in domains.items():
            # The value each repointed row's UPDATE assigns to the column, as the domain's expressions name it
            # (VALUE: PostgreSQL reads it as a column named value), of the type beneath the domains.
            holders = [(k, flag) for k, (ref, flag) in enumerate(zip(refs, moved, strict=True))
                       if column in ref.columns]
            values = sa.select(sa.cast(after.c[column], Declared(domain.base)).label("value"),
                               *[after.c[flag] for _k, flag in holders]).subquery("dupewatch_domain")
            for constraint in domain.constraints:
                key = f"{constraint.name} of domain {constraint.domain} ({column})"
                what = "the NOT NULL" if constraint.name == "NOT NULL" else f"CHECK constraint {constraint.name}"
                for k, _flag in holders:
                    named[k][key] = f"{what} of domain {constraint.domain} (the type of {refs[k].table}.{column})"
                    if constraint.volatile is not None:
                        unchecked[k][key] = constraint.volatile
                if constraint.volatile is None:
                    _count_refused(conn, values, constraint, holders, refused, key)
        for k, j in enumerate(positions):
            plans[j] = replace(plans[j], checks=refused[k], unchecked=unchecked[k], named=named[k],
                               between=between[k], unordered=unordered[k])
    return plans


def _repointed_tables(plans: list[ReferencePlan]) -> dict[tuple[str | None, str], list[int]]:
    """The referencing tables (schema, name) whose rows the fix repoints, each with the positions in `plans` of its
    references that repoint rows, in order."""
    repointed: dict[tuple[str | None, str], list[int]] = {}
    for j, found in enumerate(plans):
        ref = found.reference
        if found.rows and ref.action == "repoint" and ref.referred_unique and ref.visible and not ref.hidden_from:
            repointed.setdefault((ref.schema, ref.table), []).append(j)
    return repointed


def _unique_refusals(conn: Connection, layout: Layout, rel: FromClause,
                     plans: list[ReferencePlan]) -> list[ReferencePlan]:
    """`plans` with, for a referencing table with several repointed references, the unique constraints and indexes
    over the columns of more than one of them that the repoint would violate (into `ReferencePlan.conflicts` of the
    first such reference). Mastodon's `follows(account_id, target_account_id)` with `UNIQUE (account_id,
    target_account_id)`, when both accounts of a follow are duplicates: `_reference_rows` compares each reference's
    rows by the other columns as they are now, so `(A2, B1)` and `(A1, B2)` look apart, and both become `(A1, B1)`.
    Asked of the database over the table's rows that point at a planned row (a row that could equal a moved one
    points at a kept row), in the final state and every state between the references' UPDATEs
    (`_intermediate_states`): the database checks a unique constraint at each statement."""
    plans = list(plans)
    for (schema, name), positions in _repointed_tables(plans).items():
        if len(positions) < 2:
            continue
        child = layout.reflect(conn, schema, name)
        refs = [plans[j].reference for j in positions]
        every = layout.once(("unique_keys", schema, name), partial(catalog_for(conn).unique_keys, child))
        keys = [key for key in every if None not in key.columns and not key.opaque
                and sum(1 for ref in refs if set(ref.columns) & set(key.columns)) > 1]
        if not keys:
            continue
        repoint = _repoint(child, layout, rel, refs)
        # (IN, not a correlated EXISTS: the plan relation is read once, a hashed subplan, not once per row)
        # (a reference SQLite compares otherwise than `=`, `ForeignKey.compared_as`: as the foreign key does)
        near = sa.or_(*[sa.exists().where(_pointing(repoint.source, layout, rel, ref)) if any(ref.fk.compared_as)
                        else sa.tuple_(*[repoint.source.c[c] for c in ref.columns]).in_(
                            sa.select(*[rel.c[layout.ref_label[r]] for r in ref.referred_columns])) for ref in refs])
        states = [*{tuple(at[0]): at[0] for at in _intermediate_states(len(refs))}.values(), list(range(len(refs)))]
        for key in keys:
            for state in states:
                count = _unique_clashes(conn, repoint, state, key, near)
                if count:
                    words = " and ".join(refs[k].label for k in state)
                    plans[positions[state[0]]].conflicts[f"{key.name} (after repointing {words})"] = count
                    break
    return plans


def _unique_clashes(conn: Connection, repoint: _Repoint, state: list[int], key: UniqueKey,
                    near: ColumnElement[bool]) -> int:
    """How many values of `key` more than one row of `repoint`'s table would hold once the references in `state`
    moved their rows (the others not yet), one of them at least moved: the rows `near` selects, in that state, under
    the table's own column names (a partial index's predicate reads them)."""
    taken = {c.name for c in repoint.child.columns}
    flag = _unused(taken, "dupewatch_moved")
    moved = sum((sa.case((repoint.moved(k), 1), else_=0) for k in state), sa.literal(0))
    rows = (sa.select(*[value.label(column.name) for value, column in zip(
                repoint.values(state), repoint.child.columns, strict=True)], moved.label(flag))
            .select_from(repoint.joined).where(near).subquery("dupewatch_state"))
    parts = [rows.c[c] for c in key.columns if c is not None]
    where: list[ColumnElement[bool]] = [] if key.nulls_not_distinct else [c.is_not(None) for c in parts]
    if key.predicate:
        where.append(sa.literal_column(f"({key.predicate})", sa.Boolean))
    clashes = (sa.select(*parts).select_from(rows).where(*where).group_by(*parts)
               .having(sa.and_(sa.func.count() > 1, sa.func.sum(rows.c[flag]) > 0)).subquery("dupewatch_clash"))
    return int(conn.execute(sa.select(sa.func.count()).select_from(clashes)).scalar_one())


def _count_refused(conn: Connection, rows: FromClause, constraint: CheckConstraint, flags: list[tuple[int, str]],
                   refused: list[dict[str, int]], key: str | None = None) -> None:
    """Count, per reference (k, its 0/1 column of `rows` saying the reference moves the row), the rows of `rows`
    that `constraint`'s expression, evaluated by the server, refuses: into `refused[k][key or its name]`."""
    # NOT (...) is NULL where the expression is: such a row passes, as it passes the CHECK itself.
    fails = sa.not_(sa.literal_column(f"({constraint.expression})", sa.Boolean))
    counts = conn.execute(sa.select(*[sa.func.coalesce(sa.func.sum(rows.c[flag]), 0) for _k, flag in flags])
                          .select_from(rows).where(fails)).one()
    for (k, _flag), count in zip(flags, counts, strict=True):
        if count:
            refused[k][key or constraint.name] = int(count)


@dataclass(frozen=True)
class _Repoint:
    """The rows of a referencing table its repointed references (`refs`) move: `joined`, the table (`source`) joined
    to each reference's moves (`moves[k]`, its row to delete's rank and its kept row's values), from which any
    state of a row is read: `values(state)`, its columns after the references in `state` moved it."""

    child: sa.Table
    layout: Layout
    refs: list[Reference]
    source: FromClause
    joined: FromClause
    moves: list[FromClause]

    def moved(self, k: int) -> ColumnElement[bool]:
        """Whether reference `k` moves the row."""
        return self.moves[k].c[RANK].is_not(None)

    def values(self, state: list[int]) -> list[ColumnElement[Any]]:
        """The child's columns, in order, as the references in `state` leave them (a column two of them share: the
        first's kept value)."""
        columns: list[ColumnElement[Any]] = []
        for column in self.child.columns:
            label = self.layout.ref_label
            whens = [(self.moved(k), self.moves[k].c[
                f"{label[self.refs[k].referred_columns[self.refs[k].columns.index(column.name)]]}_kept"])
                for k in state if column.name in self.refs[k].columns]
            columns.append(sa.case(*whens, else_=self.source.c[column.name]) if whens else self.source.c[column.name])
        return columns


def _repoint(child: sa.Table, layout: Layout, rel: FromClause, refs: list[Reference]) -> _Repoint:
    """The rows of `child` that `refs` (its repointed references) repoint (`_Repoint`). The kept row's values come
    from the plan relation's own window (its rank 1 row of the group), read once (a common table expression, which
    each reference joins: PostgreSQL computes it once)."""
    source = child.alias("dupewatch_child")  # may be the fixed table itself
    labels = list(dict.fromkeys(layout.ref_label[r] for ref in refs for r in ref.referred_columns))
    kept = [sa.func.first_value(rel.c[label], type_=rel.c[label].type)
            .over(partition_by=rel.c[GROUP], order_by=rel.c[RANK]).label(f"{label}_kept") for label in labels]
    every = sa.select(rel.c[GROUP], rel.c[RANK], *[rel.c[label] for label in labels], *kept).cte("dupewatch_moves")
    joined: FromClause = source
    moves: list[FromClause] = []
    for j, ref in enumerate(refs):
        move: FromClause = every.alias(f"dupewatch_move{j}")
        joined = joined.outerjoin(move, sa.and_(_pointing(source, layout, move, ref), move.c[RANK] > 1))
        moves.append(move)
    return _Repoint(child, layout, refs, source, joined, moves)


def _unused(taken: set[str], name: str) -> str:
    """`name`, or `name_`, `name__`... the first that is not in `taken` (a column of the child); added to it."""
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def _after_repoint(repoint: _Repoint) -> tuple[FromClause, list[str]]:
    """The rows `repoint`'s references repoint, as the repoint would leave them: a derived table with the child's
    own column names, each foreign key column holding its kept row's value where the row points at a row to delete;
    and, per reference, the name of its 0/1 column saying the reference moves the row."""
    taken = {c.name for c in repoint.child.columns}
    everything = list(range(len(repoint.refs)))
    flags = [_unused(taken, f"dupewatch_moved{k}") for k in everything]
    columns = [value.label(column.name) for value, column in zip(
        repoint.values(everything), repoint.child.columns, strict=True)]
    columns += [sa.case((repoint.moved(k), 1), else_=0).label(flag) for k, flag in zip(everything, flags, strict=True)]
    after = (sa.select(*columns).select_from(repoint.joined).where(sa.or_(*[repoint.moved(k) for k in everything]))
             .subquery("dupewatch_after"))
    return after, flags


def _moved_twice(conn: Connection, repoint: _Repoint) -> bool:
    """Whether any row is moved by more than one of `repoint`'s references (else no row has a state between
    repoints, and none is read)."""
    twice = sa.select(sa.literal(1)).select_from(repoint.joined).where(
        sum((sa.case((repoint.moved(k), 1), else_=0) for k in range(len(repoint.refs))), sa.literal(0)) > 1)
    return bool(conn.execute(sa.select(sa.exists(twice))).scalar())


def _moved_apart(conn: Connection, repoint: _Repoint) -> int:
    """How many rows two of `repoint`'s references both move whose rows to delete lie in different groups (which
    batches may repoint in another order than the fix's within one batch)."""
    n = len(repoint.refs)
    apart = sa.or_(*[sa.and_(repoint.moved(k), repoint.moved(m), repoint.moves[k].c[GROUP] != repoint.moves[m].c[GROUP])
                     for k in range(n) for m in range(k + 1, n)])
    return int(conn.execute(sa.select(sa.func.count()).select_from(repoint.joined).where(apart)).scalar_one())


def _intermediate_states(n: int) -> list[tuple[list[int], list[int], list[int]]]:
    """The states a row moved by several of `n` repointed references can pass through before its last UPDATE, each
    as (the references, by position, applied so far; those of them that must move a row for the state to be its
    own; references one of which must move it too, or none), see `_count_between`. Each batch runs one UPDATE per
    reference, in their order (`execute._Batch`, one reference's columns each), and a batch is a range of groups:
    the references of a row whose rows to delete lie in one group move it in that order, so it passes through the
    prefixes of that order (of the references that move it); those of a row whose rows to delete lie in several
    groups move it batch by batch, in any order the batch boundaries (sized by time, `pace.BatchSizer`) make. Up
    to `ALL_ORDERS` references: every proper non-empty subset (14 states for 4), which covers every order; beyond
    that, the prefixes of the fix's order (`n - 1` states, each a row's own where its last reference moves it) and
    each reference alone where an earlier one moves the row too (else that is its prefix), and the rows whose rows
    to delete lie in different groups are named as not evaluated in other orders (`_moved_apart`). A row is
    counted in one state of each of its own."""
    if n > ALL_ORDERS:
        prefixes: list[tuple[list[int], list[int], list[int]]] = [(list(range(k + 1)), [k], []) for k in range(n - 1)]
        return prefixes + [([k], [k], list(range(k))) for k in range(1, n)]
    subsets = [[k for k in range(n) if mask >> k & 1] for mask in range(1, 2 ** n - 1)]
    return [(state, state, []) for state in subsets]


def _count_between(conn: Connection, repoint: _Repoint, at: tuple[list[int], list[int], list[int]],
                   constraint: CheckConstraint, refused: list[dict[str, int]], between: list[dict[str, str]]) -> None:
    """At `at` = (state, moving, earlier) of `_intermediate_states`: count the rows that the references in
    `moving` (of those in `state`) move, one of `earlier` too where any, and some reference not in `state` too,
    which `constraint` refuses in that state (the references of `state` that move the row
    moved, the others not yet) while their final state passes (a row refused there is counted there): into
    `refused[k]` of the first reference of `state` that moves such rows, keyed by the constraint and the state,
    named in `between` by the references of `state` and those not yet repointed that move such rows."""
    child, refs = repoint.child, repoint.refs
    state, moving, earlier = at
    rest = [k for k in range(len(refs)) if k not in state]
    also = [sa.or_(*[repoint.moved(k) for k in earlier])] if earlier else []
    taken = {c.name for c in child.columns}
    alternates = [_unused(taken, f"dupewatch_state{i}") for i, _column in enumerate(child.columns)]
    flags = [_unused(taken, f"dupewatch_moved{k}") for k in [*state, *rest]]
    expression = sa.literal_column(f"({constraint.expression})", sa.Boolean)
    # The rows with both values of each column: the final state's under the child's names, the state's beside.
    final = (sa.select(*[value.label(column.name) for value, column in zip(
                 repoint.values(list(range(len(refs)))), child.columns, strict=True)],
                       *[value.label(name) for value, name in zip(repoint.values(state), alternates, strict=True)],
                       *[sa.case((repoint.moved(k), 1), else_=0).label(flag) for k, flag in zip([*state, *rest], flags,
                                                                                                 strict=True)])
             .select_from(repoint.joined)
             .where(*[repoint.moved(k) for k in moving], *also, sa.or_(*[repoint.moved(k) for k in rest]))
             .subquery("dupewatch_final"))
    # NULL passes a CHECK: a row whose final state the expression does not refuse, in the state's values.
    rows = (sa.select(*[final.c[name].label(column.name) for name, column in zip(alternates, child.columns,
                                                                                 strict=True)],
                      *[final.c[flag] for flag in flags])
            .select_from(final).where(sa.func.coalesce(expression, sa.true())).subquery("dupewatch_between"))
    counts = conn.execute(sa.select(sa.func.count(), *[sa.func.coalesce(sa.func.sum(rows.c[flag]), 0)
                                                       for flag in flags])
                          .select_from(rows).where(sa.not_(expression))).one()
    if not counts[0]:
        return
    moved = dict(zip([*state, *rest], counts[1:], strict=True))
    applied = [k for k in state if moved[k]]
    pending = [refs[k].label for k in rest if moved[k]]
    words = f"after repointing {' and '.join(refs[k].label for k in applied)} but not yet {' or '.join(pending)}"
    key = f"{constraint.name} {words}"
    refused[applied[0]][key] = refused[applied[0]].get(key, 0) + int(counts[0])
    between[applied[0]][key] = words


def nested_references(conn: Connection, table: sa.Table, child: FromClause, rel: FromClause,
                      on: ColumnElement[bool], changed: tuple[str, ...] | None = None, *,
                      layout: Layout | None = None) -> dict[str, int]:
    """References to the rows of `table` (as `child`, maybe an alias) that point at `rel`'s rows to delete,
    and that an archive would delete (or, with `changed`, whose columns a repoint changes, by a foreign key whose
    ON UPDATE writes: CASCADE, SET NULL, SET DEFAULT, or an action the catalog does not show): label -> rows.
    Their ON DELETE (ON UPDATE) would fire one level down, where no plan or log reaches. Under NO ACTION or
    RESTRICT the database refuses the repoint itself, where it checks foreign keys on this session (SQLite's
    `PRAGMA foreign_keys` is off by default): where it does not, those rows count too. `layout`: the plan's, whose
    catalog reads are made once (`Layout.once`)."""
    referring = _referring(conn, table, child, rel, on, changed, layout)
    if changed is None:
        return {fk.label: rows for fk, rows in referring}
    # (the session is asked only when such rows exist: this runs in every batch of a repoint)
    left_to_database = any(not fk.update_writes for fk, _rows in referring) and \
        for_backend(conn.dialect.name).enforces_foreign_keys(conn)
    return {fk.label: rows for fk, rows in referring if fk.update_writes or not left_to_database}


def _referring(conn: Connection, table: sa.Table, child: FromClause, rel: FromClause, on: ColumnElement[bool],
               changed: tuple[str, ...] | None, layout: Layout | None = None) -> list[tuple[ForeignKey, int]]:
    """Each foreign key to `table` (over a `changed` column, when given) with rows referring to the rows of
    `child` that point at `rel`'s rows to delete, and how many. With `layout`, the foreign keys and their tables
    are read once per layout."""
    found: list[tuple[ForeignKey, int]] = []
    keys = catalog_for(conn).foreign_keys_to(table) if layout is None else \
        layout.once(("foreign_keys_to", table.schema, table.name), lambda: catalog_for(conn).foreign_keys_to(table))
    for fk in keys:
        if changed is not None and not set(changed) & set(fk.referred_columns):
            continue
        grand = (reflect(conn, fk.schema, fk.table) if layout is None else layout.reflect(conn, fk.schema, fk.table)
                 ).alias("dupewatch_grandchild")
        holds = sa.and_(*[fk.refers(conn.dialect.name, grand.c[c], child.c[r], j)
                          for j, (c, r) in enumerate(zip(fk.columns, fk.referred_columns, strict=True))])
        count = conn.execute(sa.select(sa.func.count()).select_from(grand).join(child, holds).join(rel, on)
                             .where(rel.c[RANK] > 1)).scalar_one()
        if count:
            found.append((fk, int(count)))
    return found


def _crowded(conn: Connection, child: FromClause, rel: FromClause,
             on: ColumnElement[bool]) -> tuple[int, int, int] | None:
    """After the repoint, how many kept rows have more than one referencing row, and the fewest and most."""
    per_group = (sa.select(sa.func.count().label("n")).select_from(child).join(rel, on)
                 .group_by(rel.c[GROUP]).having(sa.func.count() > 1).subquery("dupewatch_crowded"))
    kept, low, high = conn.execute(sa.select(sa.func.count(), sa.func.min(per_group.c.n),
                                             sa.func.max(per_group.c.n))).one()
    return (int(kept), int(low), int(high)) if kept else None


def _sample(conn: Connection, layout: Layout, rel: FromClause, limit: int) -> list[PlanGroup]:
    """The first `limit` groups (groups are numbered densely from 1), keeper first. Keys and columns are read as
    stored (`Dialect.as_stored`): SQLite keeps `n/a` in a NUMERIC column, which SQLAlchemy's type cannot read."""
    as_stored = layout.rules.as_stored
    keys = [as_stored(rel.c[k]) for k in layout.key_labels]
    columns = [as_stored(c).label(c.name) for c in layout.table.columns]
    statement = (sa.select(rel.c[GROUP], rel.c[SIZE], *keys, *columns)
                 .select_from(rel).join(layout.table, layout.member_match(rel))
                 .where(rel.c[GROUP] <= limit).order_by(rel.c[GROUP], rel.c[RANK]).limit(SAMPLE_ROWS))
    names = [c.name for c in layout.table.columns]
    width = 2 + len(keys)
    groups: dict[int, dict[str, Any]] = {}
    for row in conn.execute(statement):
        values = tuple(row)
        group = groups.setdefault(int(values[0]), {"key": values[2:width], "n": int(values[1]), "rows": []})
        group["rows"].append(dict(zip(names, values[width:], strict=True)))
    return [_plan_group(layout, number, g) for number, g in groups.items()]


def _plan_group(layout: Layout, number: int, group: dict[str, Any]) -> PlanGroup:
    rows: list[dict[str, Any]] = group["rows"]
    # every column but the identity, as read (a json, xml, point or array column has no `=` but differs all the same)
    compared = [c.name for c in layout.described_columns()]
    differs = [name for name in compared if len({repr(r[name]) for r in rows}) > 1]
    keep = rows[0] if rows else None
    return PlanGroup(number, tuple(group["key"]), group["n"], keep, rows[1:1 + ROWS_SHOWN_PER_GROUP], differs)


def _judge(plan: FixPlan, layout: Layout, differing_groups: int) -> None:
    """Fill in what blocks the fix and what the operator should know before confirming."""
    table = plan.table
    everything = plan.left_out_groups == plan.groups > 0  # nothing left to fix: the fix refuses as a whole
    if layout.mode == "identical" and differing_groups and everything:
        columns = ", ".join(plan.differences) or "?"
        plan.blockers.append(
            f"table {table!r} has no primary key and {differing_groups} group(s) hold rows that differ (in "
            f"{columns}; text compared as stored, case and trailing spaces included): nothing tells those rows "
            "apart, so dupewatch cannot delete one safely; add a primary key or merge them by hand")
    elif differing_groups and layout.mode != "identical":
        columns = ", ".join(f"{name} in {count:,}" for name, count in plan.differences.items())
        plan.notes.append(
            f"{differing_groups:,} group(s) hold rows that differ outside the key ({columns}): the kept row's values "
            "are the ones that stay; the deleted rows' values are archived and `dupewatch undo` restores them")
    _judge_distinct(plan, layout, everything)
    repeated = next((x for x in plan.left_out if x.reason == COUNTER_REPEATED), None)
    if repeated is not None and everything:
        plan.blockers.append(repeated.describe(plan.check))
    for ref_plan in plan.references:
        _judge_reference(plan, ref_plan)
        if ref_plan.index and plan.rows_to_delete:
            plan.advice.append(
                f"{ref_plan.reference.label} has no index on ({', '.join(ref_plan.reference.columns)}): every "
                f"deleted row makes the database search all of {ref_plan.reference.table} for rows pointing at it, "
                f"so batches are slow (and shrink to fit --batch-time); before fixing, run: {ref_plan.index}")
    if unevaluated := [p.reference.label for p in plan.references if p.checks is None]:
        plan.notes.append(f"risk: CHECK constraints of referencing tables are not evaluated beforehand (this database "
                          f"keeps them only in each table's DDL text): a repointed row of {', '.join(unevaluated)} "
                          "that one refuses stops its batch, rolled back, naming it")
    for hook in layout.hooks.blocking:
        plan.blockers.append(f"{table!r} has a {hook}, which can cancel or redirect the fix's deletes, so "
                             "dupewatch cannot prove its rows go to the archive; disable it for the fix or fix "
                             "by hand")
    if children := layout.hooks.children:
        names = f"{', '.join(children[:3])}{', ...' if len(children) > 3 else ''}"
        plan.blockers.append(f"{table!r} has inheritance children ({names}), whose rows a query of {table!r} also "
                             "reads and a DELETE on it also reaches (the groups listed hold them, each as its own "
                             f"row, with the columns of {table!r}): fixing an inheritance tree is not supported; "
                             "fix by hand, or check each table alone")
    if layout.hooks.firing:
        plan.notes.append(f"each deleted row fires {', '.join(layout.hooks.firing)}: if it changes any row, the "
                          "batch's account rolls the batch back and the fix stops (disable it for the fix)"
                          f"{layout.rules.account_sees}")


def _judge_distinct(plan: FixPlan, layout: Layout, everything: bool) -> None:
    """Rows the schema declares different entities (they differ on another unique constraint or index, or on a
    column foreign keys refer to beside the primary key: `catalog.distinct_entity_keys`) are not
    merged unless the operator says so: their groups are left out (`plan.left_out`), and when no other group is
    left to fix, the fix refuses."""
    for label, groups in plan.distinct_entities.items():
        if not layout.merge_distinct and not everything:
            continue
        if layout.merge_distinct:
            plan.notes.append(f"{groups:,} group(s) hold rows that differ on {layout.evidence(label)}, which says "
                              "they are different entities; they are merged as asked (merge_distinct): each group "
                              "keeps one row")
        else:
            plan.blockers.append(
                f"{groups:,} group(s) hold rows that differ on {layout.evidence(label)}: the schema says they "
                "are different entities, not duplicates; review the key (a NULL in it groups unrelated rows), "
                f"or merge them anyway with `{command('fix', plan.check, '--merge-distinct')}` (or merge_distinct = "
                "true on the check)")


def _judge_reference(plan: FixPlan, ref_plan: ReferencePlan) -> None:
    ref, rows, table = ref_plan.reference, ref_plan.rows, plan.table
    if not ref.visible:
        plan.blockers.append(f"{ref.label} references {table!r} but the fix role may not read and update it, so "
                             "dupewatch cannot see what a delete would do to its rows; grant SELECT, UPDATE on it")
        return
    if ref.hidden_from:
        role = ref.hidden_from
        plan.blockers.append(
            f"{ref.label} references {table!r} and has row-level security that the fix role {role!r} does not "
            f"bypass: rows it hides would be reached unseen by ON DELETE {ref.ondelete or 'NO ACTION'}; run "
            f"`ALTER ROLE \"{role}\" BYPASSRLS`, or add a policy showing {role} every row of {ref.table}")
        return
    if not rows and not ref_plan.repointed_first:  # (rows another reference archives later may be repointed first)
        return
    if ref.fk.partition:
        plan.blockers.append(
            f"{ref.label} refers to partition {ref.fk.partition} of {table!r}, not to the table, and {rows} of its "
            "rows point at rows to delete: a kept row in another partition cannot be pointed at, and the fix would "
            "stop at its first batch; make it refer to the table, or fix by hand")
        return
    if ref.children and ref.action != "refuse":
        names = f"{', '.join(ref.children[:3])}{', ...' if len(ref.children) > 3 else ''}"
        plan.blockers.append(
            f"{ref.label} has inheritance children ({names}), whose rows a query or UPDATE of {ref.table} also "
            f"reaches though its foreign key covers only {ref.table}'s own ({rows} row(s) counted, theirs included): "
            "the fix would write the children's rows too, which the foreign key does not cover, and stop at its first "
            "batch; repointing or archiving through an inheritance tree is not supported, fix by hand")
        return
    cascade = f"; its ON DELETE {ref.ondelete.upper()} would fire" if ref.cascades and ref.ondelete else ""
    if not ref.referred_unique:
        plan.blockers.append(
            f"{ref.label} refers to {table}({', '.join(ref.referred_columns)}), which is not unique, and "
            f"{rows} of its rows hold values of rows to delete: the database applies ON DELETE "
            f"{ref.ondelete or 'NO ACTION'} to them even while another row holds the same value, and there is "
            "no single row to repoint them to; make the referred columns unique or fix by hand")
        return
    if ref.action == "refuse":
        plan.blockers.append(f"{rows} row(s) of {ref.label} reference rows to delete and its on_reference is "
                             "\"refuse\"")
        return
    if ref.self_reference:
        itself = "as a partitioned table and its partition (one holds the other's rows)" if ref.fk.within else "itself"
        plan.blockers.append(f"{ref.label} references {table!r} {itself} and {rows} of its rows point at rows to "
                             f"delete{_self_referrers(ref_plan)}: repointing or archiving inside the table being "
                             f"deduplicated is not supported{cascade}{_by_hand(ref)}")
        _judge_checks(plan, ref_plan)  # what a repoint by hand would meet too
        return
    if ref.action == "archive" and ref_plan.nested:
        label, count = next(iter(ref_plan.nested.items()))
        plan.blockers.append(f"{count} row(s) of {label} reference rows of {ref.label} that on_reference = "
                             "\"archive\" would delete; archiving more than one level is not supported")
        return
    if ref.action == "archive":
        plan.notes.append(f"{rows} row(s) of {ref.label} are archived and deleted before the rows they reference "
                          "(on_reference = archive); undo restores them")
        _judge_triggers(plan, ref, rows)
        return
    for label, count in ref_plan.nested.items():
        plan.blockers.append(f"{count} row(s) of {label} refer to the {ref.table} columns the repoint changes "
                             f"({', '.join(ref.columns)}): their ON UPDATE action would fire where no log reaches; "
                             "repoint them by hand first")
    for (label, name, action), count in ref_plan.held.items():
        plan.blockers.append(f"{count} row(s) of {label} refer to the {ref.table} columns the repoint changes "
                             f"({', '.join(ref.columns)}) by foreign key {name}, ON UPDATE {action}: the database "
                             "would refuse the repoint while they refer to the old values; repoint them by hand "
                             "first")
    if moving := [c for c in ref.columns if c in ref.partition_key]:
        plan.blockers.append(
            f"{ref.table} is partitioned by {', '.join(moving)}, which the repoint of {ref.label} changes: "
            "PostgreSQL would move its rows to other partitions (a delete and an insert each, not the update the "
            f"fix plans and logs); set its on_reference to \"archive\" (`{config_key(ref)} = \"archive\"`)")
    if ref.generated:
        plan.blockers.append(
            f"{ref.table}({', '.join(ref.generated)}) is a generated column, which the repoint of {ref.label} would "
            "have to change: the database computes it from other columns and refuses (or ignores) an UPDATE of it, "
            "so every batch would stop there; change the columns it is computed from by hand, or set its "
            f"on_reference to \"archive\" (`{config_key(ref)} = \"archive\"`)")
    if not ref.primary_key:
        plan.blockers.append(
            f"{ref.label} has no primary key, so the {rows} referencing row(s) cannot be repointed "
            f"and recorded for undo{cascade}; add a primary key to {ref.table!r}, repoint them by hand, or set "
            "its on_reference to \"archive\"")
    if ref_plan.unreferable:
        plan.blockers.append(
            f"{ref_plan.unreferable:,} row(s) of {ref.label} point at rows to delete whose kept row holds NULL in "
            f"{table}({', '.join(ref.referred_columns)}): repointed, they would hold NULL and refer to no row; give "
            "those kept rows a value there first, keep another row (the check's keep/order_by), or set its "
            f"on_reference to \"archive\" (`{config_key(ref)} = \"archive\"`)")
    if ref_plan.unfit:
        plan.blockers.append(
            f"repointing {ref.label} would write the kept rows' {table}({', '.join(ref.referred_columns)}) values "
            f"into columns of another type, which the database " + (
                f"does not take as they are ({ref_plan.unfit})" if isinstance(ref_plan.unfit, str) else
                f"would not hold unchanged in {ref_plan.unfit:,} row(s) (too long, or rounded)") +
            f": the batch would be rolled back and every run would stop there, or the rows would refer to no row; "
            f"widen {ref.label} to the type "
            f"of {table}({', '.join(ref.referred_columns)}), keep another row, or set its on_reference to "
            f"\"archive\" (`{config_key(ref)} = \"archive\"`)")
    if ref.one_to_one and ref_plan.conflicts:  # (any other unique set holding its columns clashes with it)
        plan.blockers.append(_one_to_one_clash(table, ref, ref_plan, rows))
    for name, groups in ref_plan.conflicts.items() if not ref.one_to_one else ():
        plan.blockers.append(
            f"repointing {ref.label} to the kept rows would violate its unique constraint {name} in "
            f"{groups} group(s){cascade}; merge those referencing rows first, or set its on_reference to "
            f"\"archive\" (`{config_key(ref)} = \"archive\"`), which archives all {rows:,} row(s) of {ref.label} "
            "that point at rows to delete, not only those that clash")
    _judge_checks(plan, ref_plan)
    for name in ref.exclusions:
        plan.notes.append(
            f"risk: {ref.table} has exclusion constraint {name} over {', '.join(ref.columns)}, which the repoint of "
            f"{ref.label} changes; the dry run cannot evaluate it, so a repointed row that conflicts with a kept "
            "row's stops its batch, rolled back, naming the constraint; resolve those rows by hand, or set its "
            f"on_reference to \"archive\" (`{config_key(ref)} = \"archive\"`)")
    for label in ref.computed_uniques:
        plan.notes.append(
            f"risk: {ref.table} has unique index {label} over an expression or a generated column, which the dry "
            f"run cannot evaluate on the repointed values of {ref.label}; a repointed row that would equal another "
            "under it stops its batch, rolled back, naming the index; resolve those rows by hand, or set its "
            f"on_reference to \"archive\" (`{config_key(ref)} = \"archive\"`)")
    _judge_triggers(plan, ref, rows)
    if ref_plan.crowded:
        kept, low, high = ref_plan.crowded
        spread = f"{low}" if low == high else f"{low}-{high}"
        plan.notes.append(f"after the repoint {kept:,} kept row(s) will each have {spread} {ref.table} rows; "
                          f"if each should have one, set on_reference {config_key(ref)} = \"archive\"")
    if ref.cascades and not plan.blockers:
        plan.notes.append(f"{ref.label} has ON DELETE {ref.ondelete}: its {rows} row(s) are repointed "
                          "before the delete, so nothing cascades (each batch verifies it)")


def _self_referrers(ref_plan: ReferencePlan) -> str:
    """Which of a self-reference's rows pointing at rows to delete are rows to delete too."""
    if ref_plan.reference.fk.within:
        return ""
    staying = ref_plan.rows - ref_plan.doomed_referrers
    return f" ({ref_plan.doomed_referrers:,} of them rows to delete too, {staying:,} rows that stay)"


def _one_to_one_clash(table: str, ref: Reference, ref_plan: ReferencePlan, rows: int) -> str:
    """The blocker of a repoint onto kept rows that have their own row in a table holding at most one row per
    referred row (`Reference.one_to_one`): Django's multi-table inheritance child, a profile. The two rows are
    the halves of one entity, which the fix cannot merge; archiving the duplicate's half is the way forward only
    where no row refers to it."""
    groups = max(ref_plan.conflicts.values())
    # (the conflicts name the primary key by its own name: "<name> (the primary key)")
    own = [n for n in ref_plan.conflicts if n == ref.one_to_one or (ref.one_to_one == "PRIMARY KEY"
                                                                     and n.endswith("(the primary key)"))]
    name = (own or list(ref_plan.conflicts))[0]
    line = (f"{ref.label} is the whole of unique constraint {name}: each {table} row has at most one {ref.table} "
            f"row (a one-to-one extension, as Django's multi-table inheritance child or a profile), and in {groups:,} "
            f"group(s) the kept row and a row to delete both have one, so those {ref.table} rows cannot be "
            "repointed; they are one entity's, which the fix cannot merge")
    referring = [label for label in ref_plan.nested] + [label for label, _name, _action in ref_plan.held]
    if referring:
        return (f"{line}, nor archive while rows of {', '.join(referring)} refer to them; merge them by hand "
                f"(point those rows at the kept rows' {ref.table} rows, then set its on_reference to \"archive\", "
                f"`{config_key(ref)} = \"archive\"`)")
    return (f"{line}; merge them by hand, or set its on_reference to \"archive\" (`{config_key(ref)} = "
            f"\"archive\"`), which archives all {rows:,} {ref.table} row(s) of rows to delete (undo restores them)")


def _by_hand(ref: Reference) -> str:
    """What to do about a refused self-reference: the fix re-checks each row to delete against the plan's copy of
    it and archives it as it is, so a repoint inside the table would change rows the plan holds."""
    if ref.fk.within:
        return ""
    column = ", ".join(ref.columns)
    return (" (a repoint there would change rows the plan holds, re-checks before each delete and archives as they "
            f"are); point them at the kept rows by hand first (UPDATE {ref.table} SET {column} = <kept row's "
            f"{', '.join(ref.referred_columns)}> WHERE {column} = <deleted row's>, for each row to delete; the "
            "sample shows each group's kept row), then run the fix again")


def _judge_checks(plan: FixPlan, ref_plan: ReferencePlan) -> None:
    """The CHECK constraints that would refuse repointed rows of the reference (`ReferencePlan.checks`): each a
    blocker, since the batch repointing them would be rolled back and every run would stop there; a constraint
    not evaluated (a VOLATILE function) is a risk."""
    ref = ref_plan.reference
    instead = "" if ref.self_reference else \
        f", or set its on_reference to \"archive\" (`{config_key(ref)} = \"archive\"`)"
    for name, count in (ref_plan.checks or {}).items():
        if name in ref_plan.between:
            plan.blockers.append(
                f"repointing {ref.label} to the kept rows would leave {count:,} row(s) that "
                f"{ref_plan.check_words(name)} refuses {ref_plan.between[name]} (the database evaluated it on the "
                "values of that state; their final state passes, but the fix runs one UPDATE per reference in each "
                "batch of groups, and the database checks each): the batch would be rolled back and the fix would "
                f"stop there; change those rows (or the constraint) first{instead}")
            continue
        plan.blockers.append(
            f"repointing {ref.label} to the kept rows would leave {count:,} row(s) that "
            f"{ref_plan.check_words(name)} refuses (the database evaluated it on the repointed values): the batch "
            f"would be rolled back and the fix would stop there; change those rows (or the constraint) first{instead}")
    if ref_plan.unordered:
        plan.notes.append(
            f"risk: {ref_plan.unordered:,} row(s) of {ref.table} are repointed by several of its more than "
            f"{ALL_ORDERS} repointed references, to rows to delete of different groups: the dry run evaluated its "
            "CHECK constraints in the states the fix's order passes through within one batch (and each reference "
            "alone), not in every order batches of different groups may repoint them in; a state there that one "
            "refuses stops its batch, rolled back, naming it")
    for name, function in ref_plan.unchecked.items():
        plan.notes.append(
            f"risk: {ref_plan.check_words(name)} calls VOLATILE function {function}, which the dry run "
            f"does not run: a repointed row of {ref.label} it refuses stops its batch, rolled back, naming it")


def _judge_triggers(plan: FixPlan, ref: Reference, rows: int) -> None:
    """The referencing table's triggers the fix's writes fire (a repoint's UPDATE, an archive's DELETE): what one
    writes beyond its own row, the batch's account finds and rolls the batch back, so the preview names them."""
    if ref.triggers:
        write = "repointed" if ref.action == "repoint" else "archived and deleted"
        plan.notes.append(
            f"the {rows:,} {write} row(s) of {ref.label} fire {', '.join(ref.triggers)} (a row trigger once per "
            "row, a statement trigger once per statement): if it writes any "
            "other row (an audit or history table), or changes or cancels the fix's own write, the batch is rolled "
            f"back and the fix stops at its first batch; disable it on {ref.label.rsplit('(', 1)[0]} for the fix "
            "(undo fires it too)")
