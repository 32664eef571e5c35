"""The plan of a fix: which groups, which row each keeps, which rows go, who points at them, what blocks it.

Everything is computed by the database from one *plan relation*, a row per member of every duplicate group:
`dw_group` (groups numbered 1, 2, ... in key order, without gaps), `dw_rn` (1 = the keeper, by
`TableCheck.keeper_order()`, the one place that decides), `dw_n` (group size), `dw_i*` (row identity: primary
key, `ctid` or `rowid`), `dw_k*` (the normalised key) and `dw_r*` (the columns other tables' foreign keys
refer to). For a dry run the relation is a window-function subquery over the live table (read-only); for a
real fix it is materialised once as the fix's plan table (`dupewatch_plan_<fix id>`), the snapshot the
batches work through. Tables with no primary key on MySQL/MariaDB have no row identity: their relation has
one row per group and its size, and the fix deletes all but one of fully identical rows.

Preview queries aggregate over the relation, so their cost and memory do not grow with the number of groups
in Python; only `sample` groups are listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import ColumnClause, FromClause

from monitor.detect import TableCheck
from monitor.fix.errors import FixRefused
from monitor.fix.records import now_text
from monitor.fix.refs import Reference, reflect
from monitor.fix.values import display

# Columns of the plan relation (see the module docstring); identity, key and referred columns are
# `dw_i<j>`, `dw_k<j>`, `dw_r<j>`.
GROUP, RANK, SIZE = "dw_group", "dw_rn", "dw_n"
SAMPLE_GROUPS = 20
SAMPLE_ROWS = 1000
ROWS_SHOWN_PER_GROUP = 10


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


def _uncomparable(column: sa.Column[Any], dialect: str) -> bool:
    """Columns PostgreSQL cannot compare with `=` / DISTINCT (json, xml, geometric, unknown types)."""
    if dialect != "postgresql":
        return False
    kind = column.type
    if isinstance(kind, sa.JSON) and not isinstance(kind, postgresql.JSONB):
        return True
    return isinstance(kind, sa.types.NullType)


class Layout:
    """How one table check is planned and executed: identity mode, plan relation, join conditions."""

    def __init__(self, tc: TableCheck, refs: list[Reference]) -> None:
        self.tc = tc
        self.table = tc.table
        self.dialect = tc.dialect
        self.refs = refs
        pk = list(self.table.primary_key.columns)
        self.identity: list[ColumnElement[Any]]
        if pk:
            self.mode = "pk"
            self.identity = list(pk)
            self.identity_types = [c.type for c in pk]
        elif self.dialect == "postgresql":
            self.mode = "ctid"
            self.identity = [ColumnClause("ctid", type_=Tid(), _selectable=self.table)]
            self.identity_types = [Tid()]
        elif self.dialect == "sqlite":
            self.mode = "rowid"
            self.identity = [ColumnClause("rowid", type_=sa.Integer(), _selectable=self.table)]
            self.identity_types = [sa.Integer()]
        else:
            self.mode = "identical"
            self.identity = []
            self.identity_types = []
        referred: list[str] = []
        for ref in refs:
            referred.extend(c for c in ref.referred_columns if c not in referred)
        self.ref_names = referred if self.mode != "identical" else []
        self.ref_label = {name: f"dw_r{j}" for j, name in enumerate(self.ref_names)}

    # -- the plan relation ---------------------------------------------------------------------

    @property
    def identity_labels(self) -> list[str]:
        return [f"dw_i{j}" for j in range(len(self.identity))]

    @property
    def key_labels(self) -> list[str]:
        return [f"dw_k{j}" for j in range(len(self.tc.key_exprs))]

    def relation_select(self) -> sa.Select[Any]:
        """The plan relation as a SELECT over the live table (see the module docstring)."""
        tc = self.tc
        keys = [e.label(label) for e, label in zip(tc.key_exprs, self.key_labels, strict=True)]
        if self.mode == "identical":
            size = sa.func.count()
            return (sa.select(sa.func.row_number().over(order_by=tc.key_exprs).label(GROUP),
                              sa.literal_column("1").label(RANK), *keys, size.label(SIZE))
                    .select_from(self.table).where(*tc.filters).group_by(*tc.key_exprs)
                    .having(size > sa.literal_column("1")))
        # One sort of the table, the same one a hand-written `row_number() OVER (PARTITION BY key ...)` needs:
        # row_number and lead share the window, and a row belongs to a duplicate group when it is not the
        # first of its key or a next one exists. Numbering and sizing the groups then only touches their rows.
        window = {"partition_by": tc.key_exprs, "order_by": tc.keeper_order()}
        ranked = sa.select(
            sa.func.row_number().over(**window).label(RANK),
            sa.func.lead(sa.literal_column("1")).over(**window).label("dw_next"),
            *[e.label(label) for e, label in zip(self.identity, self.identity_labels, strict=True)],
            *keys,
            *[self.table.c[name].label(self.ref_label[name]) for name in self.ref_names],
        ).select_from(self.table).where(*tc.filters).subquery("dupewatch_ranked")
        group_keys = [ranked.c[label] for label in self.key_labels]
        carried = [*self.identity_labels, *self.key_labels, *self.ref_label.values()]
        return sa.select(
            sa.func.dense_rank().over(order_by=group_keys).label(GROUP),
            ranked.c[RANK],
            *[ranked.c[label] for label in carried],
            sa.func.count().over(partition_by=group_keys).label(SIZE),
        ).where(sa.or_(ranked.c[RANK] > 1, ranked.c.dw_next.is_not(None)))

    def plan_table(self, name: str) -> sa.Table:
        """The table a real fix materialises its plan into (same schema as the fixed table). Its columns
        carry a `dw_` prefix so that a `where` filter naming the fixed table's columns stays unambiguous
        when the plan is joined to the table."""
        columns = [sa.Column(GROUP, sa.BigInteger, nullable=False), sa.Column(RANK, sa.BigInteger, nullable=False)]
        columns += [sa.Column(label, self._storable(t)) for label, t in zip(self.identity_labels,
                                                                          self.identity_types, strict=True)]
        columns += [sa.Column(label, self._storable(c.type))
                    for label, c in zip(self.key_labels, self.tc.key_columns, strict=True)]
        columns += [sa.Column(self.ref_label[n], self._storable(self.table.c[n].type)) for n in self.ref_names]
        columns.append(sa.Column(SIZE, sa.BigInteger, nullable=False))
        return sa.Table(name, sa.MetaData(), *columns, schema=self.table.schema)

    @staticmethod
    def plan_index(plan: sa.Table) -> sa.Index:
        """(group, rank) is the plan's key; built after the snapshot is inserted (cheaper than maintaining
        it row by row)."""
        return sa.Index(f"{plan.name}_key", plan.c[GROUP], plan.c[RANK], unique=True)

    def _storable(self, kind: sa.types.TypeEngine[Any]) -> sa.types.TypeEngine[Any]:
        if isinstance(kind, sa.types.NullType):
            if self.dialect == "sqlite":
                return Untyped()
            raise FixRefused(f"check {self.tc.check.name!r}: a key or identity column of {self.tc.check.table!r} "
                             "has a type dupewatch cannot reflect; fix this table by hand")
        return kind

    # -- joins between the relation and the live table -----------------------------------------

    def identity_match(self, rel: FromClause) -> ColumnElement[bool]:
        return sa.and_(*[e == rel.c[label] for e, label in zip(self.identity, self.identity_labels, strict=True)])

    def key_match(self, rel: FromClause) -> ColumnElement[bool]:
        """The live row still has the planned (normalised) key; NULLs compare equal."""
        return sa.and_(*[e.is_not_distinct_from(rel.c[label])
                        for e, label in zip(self.tc.key_exprs, self.key_labels, strict=True)])

    def live_match(self, rel: FromClause) -> ColumnElement[bool]:
        """The live row is the planned one and still as planned: same identity, the planned key, inside the
        check's `where`, and the referred-to values the repoint will use."""
        referred = [self.table.c[name].is_not_distinct_from(rel.c[label]) for name, label in self.ref_label.items()]
        return sa.and_(self.identity_match(rel), self.key_match(rel), *self.tc.filters, *referred)

    def member_match(self, rel: FromClause) -> ColumnElement[bool]:
        if self.mode == "identical":
            return sa.and_(self.key_match(rel), *self.tc.filters)
        return self.identity_match(rel)

    def keeper_description(self) -> str:
        names = [c.name for c in self.tc.order_columns]
        if self.mode in ("ctid", "rowid") and not names:
            names = [f"{self.mode} (physical order)"]
        elif self.mode in ("ctid", "rowid"):
            names.append(f"{self.mode} to break ties")
        if self.mode == "identical":
            return "first of the identical rows"
        return f"{self.tc.check.keep} by {', '.join(names)}"

    def comparable_columns(self) -> list[sa.Column[Any]]:
        """Columns whose differences inside a group are worth reporting (not the row identity)."""
        skip = {c.name for c in self.table.primary_key.columns}
        return [c for c in self.table.columns if c.name not in skip and not _uncomparable(c, self.dialect)]

    def exact(self, column: sa.Column[Any]) -> ColumnElement[Any]:
        """The column's value as stored: MySQL/MariaDB compare text per collation, to which `a` and `A `
        are equal, yet such rows are not identical and the one kept is not interchangeable."""
        if self.dialect == "mysql" and isinstance(column.type, sa.String):
            return sa.cast(column, sa.LargeBinary)
        return column


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
    reference: Reference
    rows: int  # referencing rows that point at rows to delete and will be repointed to the keeper
    conflicts: dict[str, int]  # unique constraint -> groups whose repoint would violate it

    def as_json(self) -> dict[str, Any]:
        return {**self.reference.as_json(), "rows_to_repoint": self.rows,
                "unique_conflicts": self.conflicts}


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
    fix_id: str | None = None
    planned_at: str = field(default_factory=now_text)

    @property
    def fixable(self) -> bool:
        return not self.blockers

    def as_json(self) -> dict[str, Any]:
        return {"check": self.check, "database": self.database, "table": self.table, "fix_id": self.fix_id,
                "planned_at": self.planned_at, "identity": self.identity, "keeper": self.keeper,
                "groups": self.groups, "rows_to_delete": self.rows_to_delete,
                "rows_to_repoint": sum(r.rows for r in self.references),
                "sample": [g.as_json() for g in self.sample],
                "references": [r.as_json() for r in self.references],
                "differences": self.differences, "blockers": self.blockers, "notes": self.notes}


def _display_row(row: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if row is None else {k: display(v) for k, v in row.items()}


def build_preview(conn: Connection, layout: Layout, rel: FromClause, *, database: str,
                  sample: int = SAMPLE_GROUPS) -> FixPlan:
    """Every figure of the plan, computed by the database over the plan relation `rel`."""
    tc = layout.tc
    groups, rows_to_delete = _totals(conn, layout, rel)
    # Differences only block tables without a row identity; otherwise they inform a preview someone reads.
    wanted = groups and (sample > 0 or layout.mode == "identical")
    differences, differing_groups = _differences(conn, layout, rel) if wanted else ({}, 0)
    references = [_reference_plan(conn, layout, rel, ref) for ref in layout.refs] if groups else []
    plan = FixPlan(
        check=tc.check.name, database=database, table=tc.check.table or tc.table.name, dialect=layout.dialect,
        identity=layout.mode, keeper=layout.keeper_description(), groups=groups, rows_to_delete=rows_to_delete,
        sample=_sample(conn, layout, rel, sample) if groups and sample > 0 else [],
        references=references, differences=differences, blockers=[],
    )
    _judge(plan, layout, differing_groups)
    return plan


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


def _reference_plan(conn: Connection, layout: Layout, rel: FromClause, ref: Reference) -> ReferencePlan:
    if layout.mode == "identical":
        return ReferencePlan(ref, 0, {})
    child = reflect(conn, ref.schema, ref.table)
    on = sa.and_(*[child.c[c] == rel.c[layout.ref_label[r]]
                   for c, r in zip(ref.columns, ref.referred_columns, strict=True)])
    rows = conn.execute(sa.select(sa.func.count()).select_from(child).join(rel, on)
                        .where(rel.c[RANK] > 1)).scalar_one()
    conflicts: dict[str, int] = {}
    for name, unique in ref.unique_sets:
        rest = [child.c[c] for c in unique if c not in ref.columns]
        colliding = (sa.select(rel.c[GROUP], *rest).select_from(child).join(rel, on)
                     .where(*[c.is_not(None) for c in rest])
                     .group_by(rel.c[GROUP], *rest).having(sa.func.count() > 1).subquery("dupewatch_clash"))
        count = conn.execute(sa.select(sa.func.count()).select_from(colliding)).scalar_one()
        if count:
            conflicts[name] = int(count)
    return ReferencePlan(ref, int(rows), conflicts)


def _sample(conn: Connection, layout: Layout, rel: FromClause, limit: int) -> list[PlanGroup]:
    """The first `limit` groups (groups are numbered densely from 1), keeper first."""
    keys = [rel.c[k] for k in layout.key_labels]
    statement = (sa.select(rel.c[GROUP], rel.c[SIZE], *keys, layout.table)
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
    compared = [c.name for c in layout.comparable_columns()]
    differs = [name for name in compared if len({repr(r[name]) for r in rows}) > 1]
    keep = rows[0] if rows else None
    return PlanGroup(number, tuple(group["key"]), group["n"], keep, rows[1:1 + ROWS_SHOWN_PER_GROUP], differs)


def _judge(plan: FixPlan, layout: Layout, differing_groups: int) -> None:
    """Fill in what blocks the fix and what the operator should know before confirming."""
    table = plan.table
    if layout.mode == "identical" and differing_groups:
        columns = ", ".join(plan.differences) or "?"
        plan.blockers.append(
            f"table {table!r} has no primary key and {differing_groups} group(s) hold rows that differ (in "
            f"{columns}; text compared as stored, case and trailing spaces included): nothing tells those rows "
            "apart, so dupewatch cannot delete one safely; add a primary key or merge them by hand")
    elif differing_groups:
        columns = ", ".join(f"{name} in {count:,}" for name, count in plan.differences.items())
        plan.notes.append(
            f"{differing_groups:,} group(s) hold rows that differ outside the key ({columns}): the kept row's values "
            "are the ones that stay; the deleted rows' values are archived and `dupewatch undo` restores them")
    for ref_plan in plan.references:
        ref = ref_plan.reference
        if not ref_plan.rows:
            continue
        cascade = f"; its ON DELETE {ref.ondelete.upper()} would fire" if ref.cascades and ref.ondelete else ""
        if ref.self_reference:
            plan.blockers.append(
                f"{ref.label} references {table!r} itself and {ref_plan.rows} of its rows point at rows to "
                f"delete: repointing inside the table being deduplicated is not supported{cascade}")
        elif not ref.primary_key:
            plan.blockers.append(
                f"{ref.label} has no primary key, so the {ref_plan.rows} referencing row(s) cannot be repointed "
                f"and recorded for undo{cascade}; add a primary key to {ref.table!r} or repoint them by hand")
        for name, groups in ref_plan.conflicts.items():
            plan.blockers.append(
                f"repointing {ref.label} to the kept rows would violate its unique constraint {name} in "
                f"{groups} group(s){cascade}; merge those referencing rows first")
        if ref.cascades and not plan.blockers:
            plan.notes.append(f"{ref.label} has ON DELETE {ref.ondelete}: its {ref_plan.rows} row(s) are repointed "
                              "before the delete, so nothing cascades (each batch verifies it)")
