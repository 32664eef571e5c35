"""The model behind tests/db/test_fix_model.py: generated schemas, an application that writes while a fix runs,
and an oracle that checks every promise of a fix in SQL.

A `Scenario` is plain data drawn by hypothesis: the fixed table `p` (key columns of mixed types and collations,
with or without a primary key, an `ord` column with ties for `order_by`), the tables referencing it (to the
primary key, to a unique column, to a non-unique column on MariaDB, composite, a self-reference, a child in
another schema or database), the rows, and the application's operations at each point of the fix (after the
snapshot, after each batch).

The application keeps a *shadow* of every table it writes (`exp_<table>`, same column definitions, no
constraints): the table as it would be had dupewatch never run. It only deletes rows nothing references and
never changes referred-to columns, so the shadow is exact without re-implementing cascades. The oracle then
compares the live tables, the archive and the shadow in SQL: multisets by grouped counts joined NULL-safely on
exact (byte) forms, ordered digests for undo. Nothing the fix did is judged by Python values.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from dbtest import TestDatabase, make_test_database
from monitor.config import CheckConfig, config_from_dict
from monitor.detect import DuplicateGroup
from monitor.engine import Monitor
from monitor.fix import (
    FixError,
    FixPlan,
    FixProgress,
    FixRefused,
    FixReport,
    discard_fix,
    make_plan,
    prepare_fix,
    run_fix,
    undo_fix,
)

KEY_TYPES = ["int", "float", "numeric", "text", "text_ci", "date", "ts"]
POOLS: dict[str, list[Any]] = {
    "int": [1, 2, 3],
    "float": [0.3, 1.5, 0.1],
    "numeric": [Decimal("1.5000"), Decimal("12.3450"), Decimal("0.1000")],
    "text": ["a", "A", "b", "a "],
    "text_ci": ["a", "A", "b", "a "],
    "date": [date(2024, 1, 1), date(2024, 1, 2)],
    "ts": [datetime(2024, 1, 1, 9, 0, 0), datetime(2024, 1, 1, 9, 0, 1)],
}
# order_by values: two equal moments (a tie the keeper rule must break) and NULL
ORD_POOL: list[datetime | None] = [datetime(2024, 5, 1, 9, 30, 0), datetime(2024, 5, 1, 9, 30, 0),
                                   datetime(2024, 5, 1, 9, 30, 1), None]
ACTIONS = ["CASCADE", "RESTRICT", "SET NULL", "NO ACTION"]
TARGETS = ["pk", "unique", "nonunique", "composite", "self", "text"]
RLS = ["", "hidden", "hidden", "forced", "owner"]
# weights: the operations that race a planned row (delete, update, VACUUM and reuse its slot) come often
# "mid": a row added to an existing group while a batch runs, between its locking read and its DELETE (issue 16
# item 2, the seed incident's shape); not on SQLite, where a batch holds the database's write lock
OPS = ["dup", "new", "delete", "delete", "update", "update", "vacuum_reinsert", "vacuum_reinsert", "child", "mid"]
DELETES_FROM_P = re.compile(r"\bDELETE\s+FROM\s+(?:\S+\.)?[`\"]?p[`\"]?\s", re.I)
TEXT_TYPES = ("text", "text_ci")


# -- the scenario -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Child:
    """A table referencing `p` (or, with target "self", `p.sref` referencing `p.id`)."""

    target: str
    ondelete: str
    has_pk: bool
    other_schema: bool
    refs: tuple[int | None, ...]  # per child row: the parent row (index, modulo) it points at, or NULL
    pk_type: str = "int"  # of the child's primary key: int, text, or (PostgreSQL) inet (issue 9 item 11)
    # PostgreSQL row-level security on this table against the fix role (a login role, neither superuser nor
    # BYPASSRLS, that the fix runs as): "" none; "hidden": a policy hides some of its rows from the fix role;
    # "forced": the fix role owns the table, FORCE ROW LEVEL SECURITY and the same policy; "owner": the fix role
    # owns the table and the policy does not apply to it (it sees every row). Issue 16 item 1.
    rls: str = ""


@dataclass(frozen=True)
class Op:
    kind: str
    a: int
    b: int
    values: tuple[int, ...]  # pool indices for a new key


@dataclass(frozen=True)
class Scenario:
    dialect: str
    has_pk: bool
    tagged: bool
    key_types: tuple[str, ...]
    nullable: bool
    rows: tuple[tuple[tuple[int | None, ...], int], ...]  # (key pool indices or None, ord pool index)
    use_order: bool
    keep: str
    children: tuple[Child, ...]
    ops: tuple[tuple[Op, ...], ...]  # ops[0] between snapshot and run, ops[i] after batch i
    batch_size: int
    on_reference: tuple[str, ...] = ()
    one_group: bool = False  # fix only the first group the drill-down lists (`group=` its key values)
    trigger: bool = False  # an AFTER DELETE trigger on `p` writes to `audit_p`: no batch deleting a row may commit
    # `merge_distinct` on the check: without it, rows differing on the unique columns u / ut outside the key
    # (issue 16 item 4) must never be merged
    merge_distinct: bool = True
    versioned: bool = False  # MariaDB: `p` is system-versioned (issue 16 item 5; its period columns hidden)
    # MariaDB: `p` has no primary key but `id INTEGER NOT NULL AUTO_INCREMENT, KEY (id)`, which need not be unique:
    # the application sometimes writes a row with the id (and key) of an existing one, between batches and inside
    # one (issue 16 follow-up: the fix tells rows apart by that value and its group's key)
    counter: bool = False

    @property
    def distinct_columns(self) -> bool:
        return self.needs_u or self.needs_ut

    @property
    def needs_u(self) -> bool:
        return any(c.target in ("unique", "composite") for c in self.children)

    @property
    def needs_ut(self) -> bool:
        return any(c.target == "text" for c in self.children)

    @property
    def needs_nu(self) -> bool:
        return any(c.target in ("nonunique", "composite") for c in self.children)

    @property
    def fix_role(self) -> bool:
        """Whether the fix runs as its own role (`fix_url`), apart from the application's superuser."""
        return any(c.rls for c in self.children)

    @property
    def hidden_children(self) -> list[int]:
        """The referencing tables (indices into `tables`) with rows row-level security hides from the fix role."""
        return [j for j, c in enumerate(self.tables) if c.rls in ("hidden", "forced")]

    @property
    def self_ref(self) -> Child | None:
        return next((c for c in self.children if c.target == "self"), None)

    @property
    def tables(self) -> list[Child]:
        return [c for c in self.children if c.target != "self"]


HAS_ON_REFERENCE = "on_reference" in CheckConfig.model_fields
HAS_MERGE_DISTINCT = "merge_distinct" in CheckConfig.model_fields


@st.composite
def scenarios(draw: st.DrawFn, dialect: str, *, children: bool = True, app: bool = True,
              primary_key: bool | None = None, tagged: bool | None = None, trigger: bool = False,
              rls: bool = False, versioned: bool = False, counter: bool = False) -> Scenario:
    """`tagged=False`: rows carry nothing but their key and `ord` (fully identical copies are possible, what
    MariaDB without a primary key can fix); the application then only inserts. `rls` (PostgreSQL): the fix
    runs as its own role and referencing tables may have row-level security against it (`Child.rls`)."""
    has_pk = draw(st.booleans()) if primary_key is None else primary_key
    if has_pk:
        tagged = True
    elif tagged is None:
        tagged = dialect != "mysql" or draw(st.booleans())
    key_types = tuple(draw(st.lists(st.sampled_from(KEY_TYPES), min_size=1, max_size=2)))
    nullable = draw(st.booleans())
    sizes = [len(POOLS[t]) for t in key_types]
    key = st.tuples(*[st.one_of(st.none(), st.integers(0, n - 1)) if nullable else st.integers(0, n - 1)
                      for n in sizes])
    base = draw(st.lists(st.tuples(key, st.integers(0, len(ORD_POOL) - 1)), min_size=2, max_size=10))
    # duplicates on purpose: repeat some rows' keys
    repeats = draw(st.lists(st.tuples(st.integers(0, len(base) - 1), st.booleans()), min_size=1, max_size=8))
    # a repeat is an exact copy (what MariaDB without a primary key can fix) or the same key at another moment
    rows = tuple(base + [(base[i][0], base[i][1] if same else draw(st.integers(0, len(ORD_POOL) - 1)))
                         for i, same in repeats])
    if not tagged and draw(st.booleans()):  # rows of one key all alike: fixable without a row identity
        rows = tuple((key_values, 0) for key_values, _ in rows)
    targets = [t for t in TARGETS if (has_pk or t not in ("pk", "self")) and (dialect == "mysql" or t != "nonunique")]
    kids: list[Child] = []
    if children:
        for _ in range(draw(st.integers(0 if app and not rls else 1, 3))):
            target = draw(st.sampled_from(targets))
            if target == "self" and any(k.target == "self" for k in kids):
                continue
            other = target != "self" and dialect != "sqlite" and draw(st.integers(0, 3)) == 0
            kids.append(Child(target, draw(st.sampled_from(ACTIONS)), draw(st.integers(0, 4)) > 0, other,
                              tuple(draw(st.lists(st.one_of(st.none(), st.integers(0, 40)), min_size=1,
                                                  max_size=8))),
                              draw(st.sampled_from(["int", "int", "text", *(["inet"] if dialect == "postgresql"
                                                                           else [])])),
                              draw(st.sampled_from(RLS)) if rls and target != "self" else ""))
        if rls and not any(k.rls for k in kids):  # the fix runs as its own role in every such scenario
            kids.append(Child("pk" if has_pk else "unique", draw(st.sampled_from(ACTIONS)), True, False,
                              (0, 1, 2, None), rls=draw(st.sampled_from(RLS[1:]))))
    op = st.builds(Op, st.sampled_from([o for o in OPS if (dialect == "postgresql" or o != "vacuum_reinsert")
                                        and (dialect != "sqlite" or o != "mid")]),
                   st.integers(0, 40), st.integers(0, 40),
                   st.tuples(*[st.integers(0, n - 1) for n in sizes]))
    batch_size = draw(st.integers(1, 3))
    ops: tuple[tuple[Op, ...], ...] = ()
    if app:
        ops = tuple(tuple(draw(st.lists(op, max_size=3))) for _ in range(draw(st.integers(1, 4))))
    on_reference: tuple[str, ...] = ()
    if HAS_ON_REFERENCE and kids:
        on_reference = tuple(draw(st.sampled_from(["repoint", "archive", "refuse"])) for _ in kids)
    return Scenario(dialect, has_pk, tagged, key_types, nullable, rows, draw(st.booleans()),
                    draw(st.sampled_from(["oldest", "newest"])), tuple(kids), ops, batch_size, on_reference,
                    draw(st.integers(0, 3)) == 0, trigger, merge_distinct=draw(st.integers(0, 3)) > 0,
                    versioned=versioned, counter=counter and not has_pk)


# -- SQL per dialect ------------------------------------------------------------------------------------------


def column_type(dialect: str, kind: str) -> str:
    return {
        "postgresql": {"int": "INTEGER", "float": "REAL", "numeric": "NUMERIC(12,4)", "text": "VARCHAR(20)",
                       "text_ci": 'VARCHAR(20) COLLATE "dw_ci"', "date": "DATE", "ts": "TIMESTAMP(0)"},
        "mysql": {"int": "INT", "float": "FLOAT", "numeric": "DECIMAL(12,4)",
                  "text": "VARCHAR(20) COLLATE utf8mb4_bin", "text_ci": "VARCHAR(20) COLLATE utf8mb4_general_ci",
                  "date": "DATE", "ts": "DATETIME(0)"},
        "sqlite": {"int": "INTEGER", "float": "REAL", "numeric": "NUMERIC", "text": "VARCHAR(20)",
                   "text_ci": "VARCHAR(20) COLLATE NOCASE", "date": "DATE", "ts": "DATETIME"},
    }[dialect][kind]


def bind(dialect: str, value: Any) -> Any:
    """A value as the application binds it (SQLite has no date, timestamp or decimal type)."""
    if dialect != "sqlite" or value is None:
        return value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


@dataclass
class Col:
    name: str
    kind: str  # a KEY_TYPES entry, "id", "ord", "u", "nu", "ut", "sref", "tag", "body", "fk", "tfk", "cid"

    @property
    def is_text(self) -> bool:
        return self.kind in (*TEXT_TYPES, "tag", "body", "ut", "tfk")


class Sql:
    """Hand-written test SQL for one dialect (identifiers quoted by the dialect's preparer)."""

    def __init__(self, db: TestDatabase, other: str | None) -> None:
        self.db, self.dialect, self.other = db, db.dialect, other
        self.preparer = db.engine.dialect.identifier_preparer

    def q(self, name: str) -> str:
        return self.preparer.quote_identifier(name)

    def table(self, name: str, other: bool = False) -> str:
        if other:
            assert self.other is not None
            return f"{self.q(self.other)}.{self.q(name)}"
        return self.q(name)

    def nse(self, a: str, b: str) -> str:
        """NULL-safe equality, by the database's own comparison rules."""
        return {"postgresql": f"{a} IS NOT DISTINCT FROM {b}", "mysql": f"{a} <=> {b}", "sqlite": f"{a} IS {b}"}[
            self.dialect]

    def exact(self, expr: str, col: Col) -> str:
        """A column's value as stored: text as bytes, so that 'a', 'A' and 'a ' stay apart."""
        if not col.is_text:
            return expr
        return {"postgresql": f"convert_to({expr}, 'UTF8')", "mysql": f"CAST({expr} AS BINARY)",
                "sqlite": f"CAST({expr} AS BLOB)"}[self.dialect]

    def canon(self, alias: str, cols: list[Col]) -> str:
        """One row as canonical text (for ordered digests)."""
        if self.dialect == "postgresql":
            parts = [f"COALESCE(CAST({alias}.{self.q(c.name)} AS text), '<null>')" for c in cols]
            return " || '|' || ".join(parts) if len(parts) > 1 else parts[0]
        if self.dialect == "mysql":
            parts = [f"IFNULL(HEX(CAST({alias}.{self.q(c.name)} AS BINARY)), 'N')" for c in cols]
            return f"CONCAT_WS('|', {', '.join(parts)})"
        return " || '|' || ".join(f"quote({alias}.{self.q(c.name)})" for c in cols)

    def digest(self, table: str, cols: list[Col], where: str = "1=1") -> str:
        """An ordered digest of the rows of `table`, computed by the database."""
        canon = self.canon("x", cols)
        if self.dialect == "postgresql":
            sql = (f"SELECT count(*) || ':' || COALESCE(md5(string_agg(t, E'\\n' ORDER BY t COLLATE \"C\")), '') "
                   f"FROM (SELECT {canon} AS t FROM {table} x WHERE {where}) s")
        elif self.dialect == "mysql":
            sql = (f"SELECT CONCAT(COUNT(*), ':', IFNULL(MD5(GROUP_CONCAT(t ORDER BY t SEPARATOR '\\n')), '')) "
                   f"FROM (SELECT {canon} AS t FROM {table} x WHERE {where}) s")
        else:
            sql = (f"SELECT count(*) || ':' || COALESCE(group_concat(t, char(10)), '') "
                   f"FROM (SELECT {canon} AS t FROM {table} x WHERE {where} ORDER BY t) s")
        with self.db.engine.connect() as conn:
            if self.dialect == "mysql":
                conn.exec_driver_sql("SET SESSION group_concat_max_len = 104857600")
            return str(conn.execute(sa.text(sql)).scalar())

    def grouped(self, source: str, cols: list[Col]) -> str:
        exprs = [self.exact(f"s.{self.q(c.name)}", c) for c in cols]
        picked = ", ".join(f"{e} AS c{j}" for j, e in enumerate(exprs))
        return f"SELECT {picked}, COUNT(*) AS n FROM ({source}) s GROUP BY {', '.join(exprs)}"

    def missing(self, x: str, y: str, cols: list[Col]) -> list[tuple[Any, ...]]:
        """Rows of multiset `x` (a SELECT of `cols`) that `y` holds fewer times (exact forms, NULL-safe)."""
        match = " AND ".join(self.nse(f"gx.c{j}", f"gy.c{j}") for j in range(len(cols)))
        sql = (f"SELECT gx.* FROM ({self.grouped(x, cols)}) gx WHERE NOT EXISTS "
               f"(SELECT 1 FROM ({self.grouped(y, cols)}) gy WHERE {match} AND gy.n >= gx.n)")
        return self.db.rows(sql)

    def select(self, table: str, cols: list[Col], where: str = "") -> str:
        names = ", ".join(self.q(c.name) for c in cols)
        return f"SELECT {names} FROM {table}" + (f" WHERE {where}" if where else "")

    def exists(self, table: str) -> bool:
        return sa.inspect(self.db.engine).has_table(table)


# -- the world: tables, shadows, the application ------------------------------------------------------------


@dataclass
class World:
    """A scenario built in a test database, with its application."""

    s: Scenario
    db: TestDatabase
    sql: Sql
    app: sa.Engine
    pcols: list[Col]
    ccols: list[list[Col]]
    counter: int = 1000
    log: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # found while the fix ran (at batch boundaries)
    fix_role: str | None = None  # the role the fix runs as, when not the application's (Scenario.fix_role)

    @property
    def key_cols(self) -> list[Col]:
        return [c for c in self.pcols if c.kind in KEY_TYPES]

    @property
    def data_cols(self) -> list[Col]:
        """Parent columns a fix must never change (all but the self-reference, which it may repoint)."""
        return [c for c in self.pcols if c.kind != "sref"]

    def child_table(self, j: int, shadow: bool = False) -> str:
        name = f"exp_c{j}" if shadow else f"c{j}"
        return self.sql.table(name, self.s.tables[j].other_schema and not shadow)

    def next_id(self) -> int:
        self.counter += 1
        return self.counter


def parent_columns(s: Scenario) -> list[Col]:
    cols = [Col("id", "id")] if s.has_pk or s.counter else []
    cols += [Col(f"k{j}", t) for j, t in enumerate(s.key_types)]
    cols.append(Col("ord", "ord"))
    if s.needs_u:
        cols.append(Col("u", "u"))
    if s.needs_nu:
        cols.append(Col("nu", "nu"))
    if s.needs_ut:
        cols.append(Col("ut", "ut"))
    if s.self_ref:
        cols.append(Col("sref", "sref"))
    if s.tagged:
        cols.append(Col("tag", "tag"))
    cols.append(Col("body", "body"))
    return cols


def child_columns(c: Child) -> list[Col]:
    cols = [Col("cid", "cid")] if c.has_pk else []
    cols.append(Col("f0", "tfk" if c.target == "text" else "fk"))
    if c.target == "composite":
        cols.append(Col("f1", "fk"))
    cols.append(Col("ctag", "tag"))
    return cols


def _parent_ddl(w: World, name: str, constraints: bool) -> str:
    s, d = w.s, w.s.dialect
    nn = "" if s.nullable else " NOT NULL"
    defs = []
    for c in w.pcols:
        if c.kind == "id" and s.counter:
            defs.append(f"id INTEGER{' NOT NULL AUTO_INCREMENT' if constraints else ''}")
        elif c.kind == "id":
            defs.append(f"id INTEGER{' PRIMARY KEY' if constraints else ''}")
        elif c.kind in KEY_TYPES:
            defs.append(f"{c.name} {column_type(d, c.kind)}{nn}")
        elif c.kind == "ord":
            defs.append(f"ord {column_type(d, 'ts')}")
        elif c.kind in ("u", "nu", "sref"):
            defs.append(f"{c.name} INTEGER")
        elif c.kind == "ut":  # a case-insensitive unique text column other tables refer to (issue 9 item 5)
            defs.append(f"ut {column_type(d, 'text_ci')}")
        else:
            defs.append(f"{c.name} VARCHAR(40)")
    if constraints:
        if s.counter:
            defs.append("KEY (id)")
        if s.needs_u:
            defs.append("UNIQUE (u)")
            if s.needs_nu:
                defs.append("UNIQUE (u, nu)")
        if s.needs_nu and d == "mysql":
            defs.append("KEY (nu)")
        if s.needs_ut:
            defs.append("UNIQUE (ut)")
        ref = s.self_ref
        if ref is not None:
            defs.append(f"FOREIGN KEY (sref) REFERENCES {w.sql.q(name)} (id) ON DELETE {ref.ondelete}")
    return f"CREATE TABLE {w.sql.q(name)} ({', '.join(defs)})"


def _child_ddl(w: World, j: int, shadow: bool) -> str:
    c = w.s.tables[j]
    kind = {"int": "INTEGER", "text": "VARCHAR(20)", "inet": "INET"}[c.pk_type]
    defs = [f"cid {kind}{'' if shadow else ' PRIMARY KEY'}"] if c.has_pk else []
    defs += [f"{col.name} INTEGER" for col in w.ccols[j] if col.kind == "fk"]
    defs += [f"{col.name} {column_type(w.s.dialect, 'text_ci')}" for col in w.ccols[j] if col.kind == "tfk"]
    defs.append("ctag VARCHAR(40)")
    if not shadow:
        fk, referred = {"pk": ("f0", "id"), "unique": ("f0", "u"), "nonunique": ("f0", "nu"),
                        "composite": ("f0, f1", "u, nu"), "text": ("f0", "ut")}[c.target]
        parent = w.sql.table("p") if not c.other_schema else (
            f"{w.sql.q(w.db.schema)}.{w.sql.q('p')}" if w.db.schema else w.sql.q("p"))
        defs.append(f"FOREIGN KEY ({fk}) REFERENCES {parent} ({referred}) ON DELETE {c.ondelete}")
    return f"CREATE TABLE {w.child_table(j, shadow)} ({', '.join(defs)})"


def _sqlite_foreign_keys(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on(dbapi: Any, _record: Any) -> None:
        dbapi.execute("PRAGMA foreign_keys = ON")


@contextlib.contextmanager
def world(s: Scenario) -> Iterator[World]:
    """The scenario's tables in a fresh test database (and, if a child lives elsewhere, a second schema)."""
    tmp = Path(tempfile.mkdtemp(prefix="dw_model_"))
    databases = make_test_database(s.dialect, tmp)
    db = next(databases)
    other = f"{db.schema}_x" if db.schema and any(c.other_schema for c in s.tables) else None
    app = sa.create_engine(db.url)
    if s.dialect == "sqlite":
        _sqlite_foreign_keys(app)
    try:
        if other:
            db.execute(f"CREATE SCHEMA {db.q(other)}" if s.dialect == "postgresql" else
                       f"CREATE DATABASE {db.q(other)} CHARACTER SET utf8mb4")
        try:
            w = World(s, db, Sql(db, other), app, parent_columns(s), [child_columns(c) for c in s.tables])
            with fix_role(w):
                build(w)
                yield w
        finally:
            app.dispose()
            if other:
                db.execute(f"DROP SCHEMA {db.q(other)} CASCADE" if s.dialect == "postgresql" else
                           f"DROP DATABASE {db.q(other)}")
    finally:
        with contextlib.suppress(StopIteration):
            next(databases)
        shutil.rmtree(tmp, ignore_errors=True)


def build(w: World) -> None:
    s, d = w.s, w.s.dialect
    if d == "postgresql" and ("text_ci" in s.key_types or s.needs_ut):
        w.db.execute("CREATE COLLATION dw_ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
    w.db.execute(_parent_ddl(w, "p", True), _parent_ddl(w, "exp_p", False))
    if not s.has_pk:  # an index can order a row the application adds before the group's copies (the seed incident)
        columns = ", ".join(w.sql.q(c.name) for c in [*w.key_cols, Col("ord", "ord")])
        w.db.execute(f"CREATE INDEX p_by_key ON {w.sql.q('p')} ({columns})")
    for j in range(len(s.tables)):
        w.db.execute(_child_ddl(w, j, False), _child_ddl(w, j, True))
    for n, (key, ord_index) in enumerate(s.rows):
        values = {c.name: bind(d, POOLS[c.kind][i] if i is not None else None)
                  for c, i in zip(w.key_cols, key, strict=True)}
        insert_parent(w, {**values, "ord": bind(d, ORD_POOL[ord_index])}, row_no=n + 1, log=False)
    ids = parent_ids(w)
    ref = s.self_ref
    if ref is not None:
        for n, target in enumerate(ref.refs):
            if target is not None and n < len(ids):
                with w.app.begin() as conn:
                    for table in ("p", "exp_p"):
                        conn.execute(sa.text(f"UPDATE {w.sql.q(table)} SET sref = :t WHERE id = :id"),
                                     {"t": ids[target % len(ids)]["id"], "id": ids[n]["id"]})
    for j, c in enumerate(s.tables):
        for target in c.refs:
            insert_child(w, j, None if target is None else target, log=False)
    if s.trigger:
        audit_trigger(w)
    if s.versioned:  # after its rows: the fix, the application and undo write a versioned table's current rows
        w.db.execute(f"ALTER TABLE {w.sql.q('p')} ADD SYSTEM VERSIONING")
    if w.fix_role is not None:
        row_level_security(w)


@contextlib.contextmanager
def fix_role(w: World) -> Iterator[None]:
    """A login role for the fix, neither superuser nor BYPASSRLS, dropped with what it owns afterwards."""
    if not w.s.fix_role:
        yield
        return
    role = w.fix_role = f"dw_fix_{uuid.uuid4().hex[:8]}"
    w.db.execute(f"CREATE ROLE {w.sql.q(role)} LOGIN NOSUPERUSER NOBYPASSRLS")
    try:
        yield
    finally:
        w.db.execute(f"DROP OWNED BY {w.sql.q(role)}", f"DROP ROLE {w.sql.q(role)}")


def row_level_security(w: World) -> None:
    """Give the fix role every privilege on the scenario's schemas, and each referencing table its `Child.rls`:
    a policy hiding the rows whose tag ends in an odd digit from the fix role."""
    q, q_role = w.sql.q, w.sql.q(w.fix_role or "")
    for schema in [w.db.schema, w.sql.other] if w.sql.other else [w.db.schema]:
        w.db.execute(f"GRANT USAGE, CREATE ON SCHEMA {q(schema or '')} TO {q_role}",
                     f"GRANT ALL ON ALL TABLES IN SCHEMA {q(schema or '')} TO {q_role}")
    for j, c in enumerate(w.s.tables):
        if not c.rls:
            continue
        table = w.child_table(j)
        statements = [f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
                      f"CREATE POLICY dw_hide ON {table} TO {q_role} "
                      "USING (right(ctag, 1) IN ('0', '2', '4', '6', '8'))"]
        if c.rls in ("forced", "owner"):
            statements.append(f"ALTER TABLE {table} OWNER TO {q_role}")
        if c.rls == "forced":
            statements.append(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        w.db.execute(*statements)


def audit_trigger(w: World) -> None:
    """What the fix cannot see from its plan: each deleted row of `p` writes a row elsewhere."""
    w.db.execute("CREATE TABLE audit_p (body VARCHAR(40))")
    if w.s.dialect == "postgresql":
        w.db.execute("CREATE FUNCTION audit_p() RETURNS trigger LANGUAGE plpgsql AS "
                     "'BEGIN INSERT INTO audit_p VALUES (OLD.body); RETURN OLD; END'",
                     "CREATE TRIGGER audit_p AFTER DELETE ON p FOR EACH ROW EXECUTE FUNCTION audit_p()")
    elif w.s.dialect == "mysql":
        w.db.execute("CREATE TRIGGER audit_p AFTER DELETE ON p FOR EACH ROW INSERT INTO audit_p VALUES (OLD.body)")
    else:
        w.db.execute("CREATE TRIGGER audit_p AFTER DELETE ON p BEGIN INSERT INTO audit_p VALUES (old.body); END")


def insert_parent(w: World, values: dict[str, Any], *, row_no: int | None = None, log: bool = True) -> None:
    n = row_no if row_no is not None else w.next_id()
    row = dict(values)
    if w.s.has_pk or (w.s.counter and "id" not in row):
        row["id"] = n
    if w.s.needs_u:
        row["u"] = n
    if w.s.needs_nu:
        row["nu"] = n % 3
    if w.s.needs_ut:
        row["ut"] = f"v{n}"
    if w.s.self_ref:
        row.setdefault("sref", None)
    if w.s.tagged:
        row["tag"] = f"r{n}"
    row["body"] = "seed" if row_no is not None else "app"
    names = [c.name for c in w.pcols]
    cols = ", ".join(w.sql.q(x) for x in names)
    marks = ", ".join(f":{x}" for x in names)
    with w.app.begin() as conn:
        for table in ("p", "exp_p"):
            conn.execute(sa.text(f"INSERT INTO {w.sql.q(table)} ({cols}) VALUES ({marks})"),
                         {x: row.get(x) for x in names})
    if log:
        w.log.append(f"insert p {row}")


def parent_ids(w: World) -> list[dict[str, Any]]:
    """The live parent rows the application can address, in a fixed order."""
    order = "tag" if w.s.tagged else ", ".join(w.sql.q(c.name) for c in w.pcols)
    with w.app.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text(f"SELECT * FROM {w.sql.q('p')} ORDER BY {order}"))]


def insert_child(w: World, j: int, target: int | None, *, log: bool = True) -> None:
    c = w.s.tables[j]
    rows = parent_ids(w)
    n = w.next_id()
    row: dict[str, Any] = {"ctag": f"c{n}"}
    if c.has_pk:
        row["cid"] = {"int": n, "text": f"k{n}", "inet": f"10.0.{n // 256}.{n % 256}"}[c.pk_type]
    parent = rows[target % len(rows)] if target is not None and rows else None
    for k, name in enumerate(_referred(c)):
        row[f"f{k}"] = parent[name] if parent is not None else None
    if c.target == "text" and parent is not None and target is not None and target % 2:
        row["f0"] = row["f0"].upper()  # the same parent by the column's case-insensitive collation
    names = list(row)
    cols = ", ".join(w.sql.q(x) for x in names)
    marks = ", ".join(f":{x}" for x in names)
    with w.app.begin() as conn:
        for shadow in (False, True):
            conn.execute(sa.text(f"INSERT INTO {w.child_table(j, shadow)} ({cols}) VALUES ({marks})"), row)
    if log:
        w.log.append(f"insert c{j} {row}")


def referenced(w: World, row: dict[str, Any]) -> bool:
    """Whether anything points at this parent row (the application deletes only unreferenced rows)."""
    checks = []
    if w.s.self_ref and row.get("id") is not None:
        checks.append((f"SELECT count(*) FROM {w.sql.q('p')} WHERE sref = :a", {"a": row["id"]}))
    for j, c in enumerate(w.s.tables):
        t = w.child_table(j)
        if c.target == "pk":
            checks.append((f"SELECT count(*) FROM {t} WHERE f0 = :a", {"a": row["id"]}))
        elif c.target == "unique":
            checks.append((f"SELECT count(*) FROM {t} WHERE f0 = :a", {"a": row["u"]}))
        elif c.target == "nonunique":
            checks.append((f"SELECT count(*) FROM {t} WHERE f0 = :a", {"a": row["nu"]}))
        elif c.target == "text":
            checks.append((f"SELECT count(*) FROM {t} WHERE f0 = :a", {"a": row["ut"]}))
        else:
            checks.append((f"SELECT count(*) FROM {t} WHERE f0 = :a AND f1 = :b", {"a": row["u"], "b": row["nu"]}))
    with w.app.connect() as conn:
        return any(conn.execute(sa.text(q), p).scalar() for q, p in checks)


def apply(w: World, op: Op, fix_id: str | None = None) -> None:
    """One application operation, on its own connection, mirrored in the shadow tables. `fix_id`: the fix whose
    batch runs now (a "mid" operation inside it)."""
    s = w.s
    rows = parent_ids(w)
    if op.kind == "child":
        if s.tables:
            insert_child(w, op.a % len(s.tables), op.b)
            return
        op = Op("dup", op.a, op.b, op.values)
    if op.kind == "new" or not rows:
        values = {c.name: bind(s.dialect, POOLS[c.kind][i]) for c, i in zip(w.key_cols, op.values, strict=True)}
        insert_parent(w, {**values, "ord": bind(s.dialect, ORD_POOL[op.b % len(ORD_POOL)])})
        return
    row = rows[op.a % len(rows)]
    if op.kind == "mid":  # a row of an existing key, any moment (NULL: first in the index of a table without a key)
        if s.counter and op.b % 2:  # an explicit insert repeating the AUTO_INCREMENT value of a row to delete
            row = doomed_now(w, fix_id) or row
        copy = {c.name: row[c.name] for c in w.key_cols}
        if s.counter and op.b % 2:
            copy["id"] = row["id"]
        insert_parent(w, {**copy, "ord": bind(s.dialect, ORD_POOL[op.b % len(ORD_POOL)])})
        return
    if op.kind == "dup" or not s.tagged:  # without a tag the application can only add rows
        copy = {c.name: row[c.name] for c in w.key_cols}
        if s.counter and op.a % 2:
            copy["id"] = row["id"]
        insert_parent(w, {**copy, "ord": row["ord"] if op.b % 2 else bind(s.dialect, ORD_POOL[op.b % 3])})
        return
    if op.kind == "update":
        col = w.key_cols[op.b % len(w.key_cols)]
        value = bind(s.dialect, POOLS[col.kind][op.values[op.b % len(w.key_cols)]])
        with w.app.begin() as conn:
            for table in ("p", "exp_p"):
                conn.execute(sa.text(f"UPDATE {w.sql.q(table)} SET {w.sql.q(col.name)} = :v WHERE tag = :t"),
                             {"v": value, "t": row["tag"]})
        w.log.append(f"update {row['tag']} {col.name} = {value!r}")
        return
    if referenced(w, row):
        return
    slot = where_is(w, row["tag"])
    with w.app.begin() as conn:
        for table in ("p", "exp_p"):
            conn.execute(sa.text(f"DELETE FROM {w.sql.q(table)} WHERE tag = :t"), {"t": row["tag"]})
    w.log.append(f"delete {row['tag']}")
    if op.kind == "vacuum_reinsert":
        vacuum(w)
        copy = {c.name: row[c.name] for c in w.key_cols}
        insert_parent(w, {**copy, "ord": bind(s.dialect, ORD_POOL[op.b % len(ORD_POOL)])})
        w.log.append(f"the new row took {row['tag']}'s slot {slot}" if where_is(w, f"r{w.counter}") == slot
                     else f"the new row did not take {row['tag']}'s slot {slot}")


def doomed_now(w: World, fix_id: str | None) -> dict[str, Any] | None:
    """A live row the running batch is about to delete, as far as the application can tell: the first row of the
    plan (by group) not kept whose id and key still name a row of `p` (the batches before it committed their
    deletes; this one has not)."""
    if fix_id is None:
        return None
    plan = f"dupewatch_plan_{fix_id.replace('-', '_')}"
    if not w.sql.exists(plan):
        return None
    keys = " AND ".join(w.sql.nse(f"l.{w.sql.q(c.name)}", f"d.dw_gk{j}") for j, c in enumerate(w.key_cols))
    with w.app.connect() as conn:
        found = conn.execute(sa.text(f"SELECT l.* FROM {w.sql.q(plan)} d JOIN {w.sql.q('p')} l ON l.id = d.dw_i0 "
                                     f"AND {keys} WHERE d.dw_rn > 1 ORDER BY d.dw_group, d.dw_rn LIMIT 1")).first()
    return dict(found._mapping) if found is not None else None


def where_is(w: World, tag: str) -> str | None:
    if w.s.dialect != "postgresql":
        return None
    return w.db.scalar(f"SELECT CAST(ctid AS text) FROM {w.sql.q('p')} WHERE tag = :t", {"t": tag})


def vacuum(w: World) -> None:
    """VACUUM `p` once no other session of the database holds a snapshot that still sees the deleted row
    (on a shared server other tests' transactions would keep it), so that the next insert reuses its slot."""
    deadline = time.monotonic() + 10
    with w.app.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        others = ("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                  "AND backend_xmin IS NOT NULL AND pid <> pg_backend_pid()")
        while conn.exec_driver_sql(others).scalar() and time.monotonic() < deadline:
            time.sleep(0.05)  # polling a condition with a deadline
        conn.exec_driver_sql(f"VACUUM {w.sql.q('p')}")
    w.log.append("vacuum p")


# -- the fix, driven ------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    refused: str | None = None  # the one-line message of a FixRefused (or blockers)
    error: str | None = None  # the message of a FixError (earlier batches stand)
    fix_id: str | None = None
    group: DuplicateGroup | None = None  # the one group fixed (Scenario.one_group), as the drill-down listed it
    dry_run: FixPlan | None = None  # make_plan, just before the snapshot
    plan: FixPlan | None = None  # prepare_fix
    report: FixReport | None = None  # run_fix


def check_config(w: World) -> dict[str, Any]:
    s = w.s
    check: dict[str, Any] = {"name": "model", "database": "app", "table": "p",
                             "key": [c.name for c in w.key_cols], "keep": s.keep}
    if s.use_order:
        check["order_by"] = ["ord"]
    if s.distinct_columns and HAS_MERGE_DISTINCT:
        check["merge_distinct"] = s.merge_distinct
    if s.on_reference:
        ref = {}
        for j, c in enumerate(s.children):
            if c.target == "self":
                ref["p.sref"] = s.on_reference[j]
            else:
                table = f"{w.sql.other}.c{j}" if c.other_schema else f"c{s.tables.index(c)}"
                ref[f"{table}.f0" if c.target != "composite" else f"{table}.(f0,f1)"] = s.on_reference[j]
        check["on_reference"] = ref
    return check


SAMPLE = 20


def tie_rule_applies(w: World) -> bool:
    """Whether the keeper is fully determined by the table: a primary key breaks every tie on `order_by`
    (issue 9 item 6), and nothing but an unrelated UPDATE happens between the dry run and the fix."""
    return w.s.has_pk and w.s.tagged and not any(w.s.ops)


def touch_every_row(w: World) -> None:
    """An UPDATE that changes no key and no order column, only where PostgreSQL keeps the rows."""
    with w.app.begin() as conn:
        for table in ("p", "exp_p"):
            conn.execute(sa.text(f"UPDATE {w.sql.q(table)} SET body = 'touched'"))
    w.log.append("update p set body = 'touched' (every row)")


def snapshot(w: World) -> None:
    """The oracle's copy of the parent at snapshot time (`snap_p`, same column definitions)."""
    w.db.execute(_parent_ddl(w, "snap_p", False))
    names = ", ".join(w.sql.q(c.name) for c in w.pcols)
    w.db.execute(f"INSERT INTO {w.sql.q('snap_p')} ({names}) SELECT {names} FROM {w.sql.q('p')}")


def drive(w: World) -> tuple[Outcome, Monitor]:
    """prepare_fix, the application's operations after the snapshot and after every batch, run_fix."""
    database = {"url": w.db.url}
    if w.fix_role is not None:
        database["fix_url"] = make_url(w.db.url).set(username=w.fix_role).render_as_string(hide_password=False)
    monitor = Monitor(config_from_dict({"databases": {"app": database}, "checks": [check_config(w)]}))
    out = Outcome()
    try:
        if w.s.one_group:
            page = monitor.groups("model", fresh=True)
            out.group = page.groups[0] if page.groups else None
        key = out.group.key if out.group is not None else None
        if out.group is not None:
            listed = len(monitor.members("model", key).rows)
            if listed != out.group.rows:
                w.problems.append(f"the drill-down of group {key!r} listed {listed} rows, the group has "
                                  f"{out.group.rows}")
        out.dry_run = make_plan(monitor, "model", sample=SAMPLE, group=key)
        if tie_rule_applies(w):
            touch_every_row(w)
        plan = out.plan = prepare_fix(monitor, "model", sample=0, group=key)
    except FixRefused as exc:
        out.refused = str(exc)
        return out, monitor
    out.fix_id = plan.fix_id
    snapshot(w)
    if plan.blockers:
        discard_fix(monitor, "model", plan.fix_id or "")
        out.refused = plan.blockers[0]
        return out, monitor
    batches = iter(w.s.ops[1:])
    during: list[Op] = []  # "mid" operations: run inside the next batch, just before it deletes from `p`

    def between(_p: FixProgress) -> None:
        w.problems += check_keepers(w, out.fix_id) + changed_references(w)
        schedule(next(batches, ()))

    def schedule(ops: tuple[Op, ...]) -> None:
        for op in ops:
            if op.kind == "mid":
                during.append(op)
            else:
                apply(w, op)

    def inside_the_batch(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if during and conn.engine is not w.app and DELETES_FROM_P.search(statement):
            ops, during[:] = list(during), []
            for op in ops:  # the application commits on its own connection while the batch holds its locks
                w.log.append("while the batch runs:")
                apply(w, op, out.fix_id)

    schedule(w.s.ops[0] if w.s.ops else ())
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", inside_the_batch)
    try:
        out.report = run_fix(monitor, "model", plan, batch_size=w.s.batch_size, progress=between)
    except FixRefused as exc:
        out.refused = str(exc)
    except FixError as exc:
        out.error = str(exc)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", inside_the_batch)
    return out, monitor


# -- the oracle -----------------------------------------------------------------------------------------------


class Violations(AssertionError):
    pass


def key_match(w: World, a: str, b: str) -> str:
    """Same key by the database's own comparison (the column's collation), NULLs equal (nulls = "equal")."""
    return " AND ".join(w.sql.nse(f"{a}.{w.sql.q(c.name)}", f"{b}.{w.sql.q(c.name)}") for c in w.key_cols)


def exact_match(w: World, a: str, b: str, cols: list[Col]) -> str:
    return " AND ".join(w.sql.nse(w.sql.exact(f"{a}.{w.sql.q(c.name)}", c), w.sql.exact(f"{b}.{w.sql.q(c.name)}", c))
                        for c in cols)


def archive_source(w: World, fix_id: str | None, cols: list[Col]) -> str | None:
    if fix_id is None or not w.sql.exists("dupewatch_archive_p"):
        return None
    return w.sql.select(w.sql.q("dupewatch_archive_p"), cols, f"dupewatch_fix_id = '{fix_id}'")


def before(w: World, s_alias: str, r_alias: str) -> str:
    """Row `s` comes strictly before row `r` in the keeper order (NULL never preferred)."""
    column = "ord" if w.s.use_order else ("id" if w.s.has_pk else None)
    if column is None:
        return "1=0"
    a, b = f"{s_alias}.{w.sql.q(column)}", f"{r_alias}.{w.sql.q(column)}"
    cmp = "<" if w.s.keep == "oldest" else ">"
    return f"(({a} IS NOT NULL AND {b} IS NULL) OR {a} {cmp} {b})"


def check_keepers(w: World, fix_id: str | None) -> list[str]:
    """At a batch boundary (before the application writes again): every group that lost rows in the batch
    still has one of its first rows of the snapshot (keeper order; ties allowed), with its planned key by the
    database's comparison (an application may respell a keeper's key within its collation, 'A' to 'a' under
    NOCASE: the row is still its group's, as the fix's re-check asks the database). Rows are told apart by their
    tag, so tables without one (MariaDB's identical rows) are not judged here."""
    sql, q = w.sql, w.sql.q
    data = w.data_cols
    archived = archive_source(w, fix_id, data)
    if not archived or not w.s.tagged:
        return []
    if not sql.exists("oracle_seen"):
        w.db.execute("CREATE TABLE oracle_seen (tag VARCHAR(40))")
    fresh = f"SELECT * FROM ({archived}) a0 WHERE NOT EXISTS (SELECT 1 FROM oracle_seen o WHERE o.tag = a0.tag)"
    keeperless = w.db.rows(
        f"SELECT DISTINCT {', '.join('a.' + q(c.name) for c in w.key_cols)} FROM ({fresh}) a WHERE NOT EXISTS ("
        f"SELECT 1 FROM {q('snap_p')} r JOIN {q('p')} l ON r.{q('tag')} = l.{q('tag')} AND {key_match(w, 'r', 'l')} "
        f"WHERE {key_match(w, 'r', 'a')} AND NOT EXISTS (SELECT 1 FROM {q('snap_p')} s2 "
        f"WHERE {key_match(w, 's2', 'r')} AND {before(w, 's2', 'r')}))")
    w.db.execute(f"INSERT INTO oracle_seen (tag) SELECT tag FROM ({fresh}) f")
    if keeperless:
        return [f"groups that lost rows in a batch while none of their planned keepers was left as planned "
                f"(keeper deleted or changed before the batch, or a later row kept): keys {keeperless[:3]}"]
    return []


def check_fix(w: World, out: Outcome) -> list[str]:
    """Every promise of a fix, checked in SQL after it ran (or refused). Returns what was broken."""
    sql, q = w.sql, w.sql.q
    problems: list[str] = []
    data = w.data_cols
    live, shadow = q("p"), q("exp_p")
    archived = archive_source(w, out.fix_id, data)
    if out.refused is not None:
        if archived and w.db.scalar(f"SELECT count(*) FROM ({archived}) a"):
            problems.append("refused, yet rows were archived")
        for name, table, cols in tables(w):
            if sql.digest(table[0], cols) != sql.digest(table[1], cols):
                problems.append(f"refused ({out.refused[:80]}), yet {name} changed")
        return problems
    if w.s.trigger:  # the database's account of each batch rolls back every batch whose deletes fired it
        fired = w.db.scalar(f"SELECT count(*) FROM {q('audit_p')}")
        by_application = sum(1 for entry in w.log if entry.startswith("delete "))  # its own deletes fire it too
        if fired != by_application or counted_rows(w, archived):
            problems.append(f"a batch whose deletes fired a trigger writing audit_p committed ({fired} audit rows, "
                            f"{by_application} from the application's deletes)")
        if counted_rows(w, archived) == 0 and out.report is not None and out.dry_run and out.dry_run.groups \
                and not any(w.s.ops):
            problems.append("the fix finished although each deleted row fires a trigger writing another table")
    # 0. rows row-level security hides from the fix role are out of its sight: it refuses, or changes nothing
    if w.s.hidden_children:
        changed = [name for name, table, cols in tables(w) if sql.digest(table[0], cols) != sql.digest(table[1], cols)]
        if changed:
            hidden = [f"c{j}" for j in w.s.hidden_children]
            problems.append(f"the fix changed {changed} although row-level security hides rows of {hidden} from "
                            "its role")
    # 0. rows that differ on a unique column outside the key (u, ut: never NULL, one value per row) are
    # different entities: merged only with merge_distinct
    counted = w.db.scalar(f"SELECT count(*) FROM ({archived}) a") if archived else 0
    if w.s.distinct_columns and not w.s.merge_distinct and HAS_MERGE_DISTINCT and counted:
        problems.append(f"merged {counted} row(s) that differ on a unique column outside the key (u/ut) "
                        "without merge_distinct")
    # 1. nothing lost: live + archive == what the application left (no row deleted without its archive copy)
    both = sql.select(live, data) + (f" UNION ALL {archived}" if archived else "")
    lost = sql.missing(sql.select(shadow, data), both, data)
    if lost:
        problems.append(f"rows of p deleted but not archived (or changed): {lost[:3]}")
    extra = sql.missing(both, sql.select(shadow, data), data)
    if extra:
        problems.append(f"live + archive holds rows the application does not have (archived twice, or "
                        f"archive differs from the row deleted): {extra[:3]}")
    if archived:
        # 2. only planned rows: every archived row was in the snapshot, in a group of two or more. A row told apart
        # by its tag is the snapshot's row of that tag with the same key by the database's comparison: the
        # application may have respelled its key within the collation since ('a' to 'a ' under PAD SPACE), and
        # the batch's re-check compares keys with the database's `=`, so the row is still its group's and is
        # archived as it is now ("nothing lost" above holds its values); rows without a tag, as they were.
        if w.s.tagged:
            unplanned = w.db.rows(f"SELECT a.* FROM ({archived}) a WHERE NOT EXISTS (SELECT 1 FROM {q('snap_p')} s "
                                  f"WHERE s.{q('tag')} = a.{q('tag')} AND {key_match(w, 's', 'a')})")
        else:
            unplanned = sql.missing(archived, sql.select(q("snap_p"), data), data)
        if unplanned:
            problems.append(f"deleted rows that were not in the snapshot (arrived after the plan): {unplanned[:3]}")
        alone = w.db.rows(f"SELECT a.* FROM ({archived}) a "
                          f"WHERE (SELECT count(*) FROM {q('snap_p')} s WHERE {key_match(w, 's', 'a')}) < 2")
        if alone:
            problems.append(f"deleted rows whose key had no duplicate at snapshot time: {alone[:3]}")
    # 4. what the fix reported is what the database holds; without the application, the preview's promise too
    if out.report is not None and (out.report.deleted, out.report.archived) != (counted, counted):
        problems.append(f"the fix reported {out.report.deleted} deleted and {out.report.archived} archived, "
                        f"the archive holds {counted} rows of it")
    quiet = not any(w.s.ops)
    if quiet and out.report is not None and out.error is None:
        keys = ", ".join(q(c.name) for c in w.key_cols)
        left = [] if out.group is not None else w.db.rows(
            f"SELECT {keys}, count(*) FROM {live} GROUP BY {keys} HAVING count(*) > 1")
        if out.group is not None and counted != out.group.rows - 1:
            problems.append(f"fixing the one group {out.group.key!r} of {out.group.rows} rows (as the check listed "
                            f"it) deleted {counted} rows")
        # the groups the plan leaves out (its rows differ, no row identity) stay, and count as skipped
        expected = 0 if out.group is not None else left_out_groups(w)
        if len(left) != expected or out.report.skipped != expected:
            problems.append(f"nothing changed the table during the fix, yet {out.report.skipped} group(s) were "
                            f"skipped and these keys still have duplicates: {left[:3]} ({expected} group(s) "
                            "whose rows differ expected left out)")
        told = [x.left_out_groups for x in (out.dry_run, out.plan) if x is not None]
        if any(n != expected for n in told):
            problems.append(f"the dry run / prepared plan left {told} group(s) out, {expected} expected")
        promised = [x.rows_to_delete for x in (out.dry_run, out.plan) if x is not None]
        if any(n != counted for n in promised):
            problems.append(f"the dry run / prepared plan promised {promised} rows to delete, the fix deleted "
                            f"{counted}")
    if out.dry_run is not None and tie_rule_applies(w):
        promised = [g.keep["tag"] for g in out.dry_run.sample if g.keep is not None]
        marks = ", ".join(f"'{t}'" for t in promised) or "NULL"
        kept = {r[0] for r in w.db.rows(f"SELECT tag FROM {live} WHERE tag IN ({marks})")}
        if set(promised) - kept:
            problems.append(f"the dry run showed rows {sorted(set(promised) - kept)} as kept, the fix deleted them "
                            "(ties on order_by not broken by the primary key)")
    # 5. every key the application has still has a row (with the application writing, a key may lose its
    # last row by the application's own doing after a batch: the keeper check at each boundary covers it)
    keys_of_e = ", ".join("e." + q(c.name) for c in w.key_cols)
    gone = [] if not quiet else w.db.rows(
        f"SELECT DISTINCT {keys_of_e} FROM {shadow} e "
        f"WHERE NOT EXISTS (SELECT 1 FROM {live} l WHERE {key_match(w, 'l', 'e')})")
    if gone:
        problems.append(f"keys that lost their last row: {gone[:3]}")
    problems += check_references(w, out.fix_id)
    return problems


def left_out_groups(w: World) -> int:
    """Groups a fix must leave out, by the oracle's own SQL over what the application left: without any row
    identity (MySQL/MariaDB without a primary key), the groups whose rows are not all identical as stored. (Rows
    differing on u/ut differ in every group: the fix refuses as a whole, checked above.)"""
    if w.s.has_pk or w.sql.dialect != "mysql":
        return 0
    keys = ", ".join(f"x.{w.sql.q(c.name)}" for c in w.key_cols)
    if w.s.counter and not w.s.children:  # told apart by id (no table refers to p): the groups repeating one
        return int(w.db.scalar(f"SELECT count(*) FROM (SELECT 1 AS one FROM {w.sql.q('exp_p')} x GROUP BY {keys} "
                               f"HAVING count(*) > 1 AND count(*) > count(DISTINCT x.id)) g"))
    return int(w.db.scalar(f"SELECT count(*) FROM (SELECT 1 AS one FROM {w.sql.q('exp_p')} x GROUP BY {keys} "
                           f"HAVING count(*) > 1 AND count(DISTINCT {w.sql.canon('x', w.data_cols)}) > 1) g"))


def counted_rows(w: World, source: str | None) -> int:
    return int(w.db.scalar(f"SELECT count(*) FROM ({source}) a")) if source else 0


def tables(w: World) -> list[tuple[str, tuple[str, str], list[Col]]]:
    found = [("p", (w.sql.q("p"), w.sql.q("exp_p")), w.pcols)]
    for j in range(len(w.s.tables)):
        found.append((f"c{j}", (w.child_table(j), w.child_table(j, True)), w.ccols[j]))
    return found


def _referred(c: Child) -> list[str]:
    return {"pk": ["id"], "unique": ["u"], "nonunique": ["nu"], "composite": ["u", "nu"], "self": ["id"],
            "text": ["ut"]}[c.target]


def child_archive(w: World, j: int, fix_id: str | None) -> str | None:
    """The archived rows of child `j` (a SELECT of its columns) when the check says `archive` for it."""
    c = w.s.tables[j]
    if not w.s.on_reference or w.s.on_reference[w.s.children.index(c)] != "archive" or fix_id is None:
        return None
    name = f"dupewatch_archive_c{j}"
    inspector = sa.inspect(w.db.engine)
    if not inspector.has_table(name, schema=w.sql.other if c.other_schema else None):
        return w.sql.select(w.child_table(j, True), w.ccols[j], "1=0")
    return w.sql.select(w.sql.table(name, c.other_schema), w.ccols[j], f"dupewatch_fix_id = '{fix_id}'")


def check_references(w: World, fix_id: str | None) -> list[str]:
    """No referencing row lost (unless archived, with `on_reference = "archive"`) or left dangling; a changed
    reference points at a row of the same key (judged by `changed_references`, at each batch boundary)."""
    problems: list[str] = []
    for j, c in enumerate(w.s.tables):
        t, e = w.child_table(j), w.child_table(j, True)
        fks = [col.name for col in w.ccols[j] if col.kind in ("fk", "tfk")]
        gone = f"SELECT e.* FROM {e} e WHERE NOT EXISTS (SELECT 1 FROM {t} c WHERE c.ctag = e.ctag)"
        archive = child_archive(w, j, fix_id)
        if archive is not None:  # on_reference = "archive": a child row may go, archived exactly as it was
            lost = w.sql.missing(gone, archive, w.ccols[j])
        else:
            lost = w.db.rows(gone)
        if lost:
            problems.append(f"c{j} ({c.target}, ON DELETE {c.ondelete}) lost rows {lost[:3]}")
        problems += _dangling(w, Refs(f"c{j}", t, e, f"oracle_ref_c{j}", "ctag", fks, _referred(c)))
    if w.s.self_ref is not None:
        problems += _dangling(w, _self_refs(w))
    return problems + changed_references(w)


@dataclass(frozen=True)
class Refs:
    """One referencing column set: the live table, its shadow, the oracle's record of the references it last
    judged, the column telling rows apart, the referencing columns and the columns of `p` they refer to."""

    label: str
    live: str
    shadow: str
    judged: str
    ident: str
    fks: list[str]
    referred: list[str]


def _self_refs(w: World) -> Refs:
    return Refs("p.sref", w.sql.q("p"), w.sql.q("exp_p"), "oracle_ref_p", "tag", ["sref"], ["id"])


def _references(w: World) -> list[Refs]:
    found = [Refs(f"c{j}", w.child_table(j), w.child_table(j, True), f"oracle_ref_c{j}", "ctag",
                  [col.name for col in w.ccols[j] if col.kind in ("fk", "tfk")], _referred(c))
             for j, c in enumerate(w.s.tables)]
    return found + ([_self_refs(w)] if w.s.self_ref is not None else [])


def changed_references(w: World) -> list[str]:
    """Every reference the fix changed since the last judgement points at a row of the same key as the row it
    pointed at before, both keys as they are now (at a batch boundary, before the application writes again: as
    they were when the batch committed). The application may change a keeper's key after the batch that
    repointed rows to it; a reference is therefore judged once, at the boundary after the batch that changed
    it, against the reference last judged (the shadow's, for a row never changed), never later."""
    sql, q = w.sql, w.sql.q
    problems = []
    for r in _references(w):
        cols = ", ".join([r.ident, *(q(f) for f in r.fks)])
        judged = q(r.judged)
        if not sql.exists(r.judged):
            w.db.execute(f"CREATE TABLE {judged} AS SELECT {cols} FROM {r.shadow} WHERE 1=0")
        previous = (f"SELECT {cols} FROM {judged} UNION ALL SELECT {cols} FROM {r.shadow} x "
                    f"WHERE NOT EXISTS (SELECT 1 FROM {judged} j WHERE j.{r.ident} = x.{r.ident})")
        same = " AND ".join(sql.nse(f"c.{q(f)}", f"e.{q(f)}") for f in r.fks)
        was = " AND ".join(f"o.{q(p)} = e.{q(f)}" for f, p in zip(r.fks, r.referred, strict=True))
        now = " AND ".join(f"n.{q(p)} = c.{q(f)}" for f, p in zip(r.fks, r.referred, strict=True))
        moved = w.db.rows(
            f"SELECT c.{r.ident} FROM {r.live} c JOIN ({previous}) e ON c.{r.ident} = e.{r.ident} "
            f"WHERE NOT ({same}) AND NOT EXISTS (SELECT 1 FROM {q('exp_p')} o JOIN {q('p')} n "
            f"ON {key_match(w, 'o', 'n')} WHERE {was} AND {now})")
        if moved:
            problems.append(f"{r.label} rows whose reference changed to a row of another key, or to NULL: "
                            f"{moved[:3]}")
        w.db.execute(f"DELETE FROM {judged}", f"INSERT INTO {judged} ({cols}) SELECT {cols} FROM {r.live}")
    return problems


def _dangling(w: World, r: Refs) -> list[str]:
    q = w.sql.q
    notnull = " AND ".join(f"c.{q(f)} IS NOT NULL" for f in r.fks)
    points = " AND ".join(f"l.{q(p)} = c.{q(f)}" for f, p in zip(r.fks, r.referred, strict=True))
    dangling = w.db.rows(f"SELECT c.{r.ident} FROM {r.live} c WHERE {notnull} AND NOT EXISTS "
                         f"(SELECT 1 FROM {q('p')} l WHERE {points})")
    return [f"{r.label} rows left pointing at no row: {dangling[:3]}"] if dangling else []


def check_undo(w: World) -> list[str]:
    """After undo every table is exactly what the application left (ordered digests, computed in SQL)."""
    problems = []
    for name, (live, shadow), cols in tables(w):
        if w.sql.digest(live, cols) != w.sql.digest(shadow, cols):
            problems.append(f"after undo {name} differs from what the application left")
    return problems


def check_debris(w: World) -> list[str]:
    problems = []
    names = sa.inspect(w.db.engine).get_table_names()
    leaked = [n for n in names if n.startswith("dupewatch_plan_")]
    if leaked:
        states = w.db.rows("SELECT plan_table, state FROM dupewatch_fix") if "dupewatch_fix" in names else []
        problems.append(f"plan tables left behind after the fix was undone or refused: {leaked} (records: {states})")
    if "dupewatch_fix" in names:
        stuck = w.db.rows("SELECT fix_id, state FROM dupewatch_fix WHERE state IN ('running', 'planning')")
        if stuck:
            problems.append(f"fix records left {stuck}")
    return problems


def run_scenario(s: Scenario) -> None:
    """Build, fix, check, undo, check. Raises `Violations` listing every broken promise."""
    problems, description = scenario_problems(s)
    if problems:
        raise Violations(description + "\n  - " + "\n  - ".join(problems))


def scenario_problems(s: Scenario) -> tuple[list[str], str]:
    """Every promise the fix broke in scenario `s`, and a description of the scenario and the app's log."""
    with world(s) as w:
        problems: list[str] = []
        monitor = None
        try:
            out, monitor = drive(w)
            for message in (out.refused, out.error):
                if message is not None and "\n" in message.strip():
                    problems.append(f"message is not one line: {message!r}")
            problems += w.problems + check_fix(w, out)
            if out.refused is None and out.fix_id is not None:
                try:
                    undo_fix(monitor, out.fix_id)
                except FixRefused as exc:
                    problems.append(f"undo refused: {exc}")
                else:
                    problems += check_undo(w)
            problems += check_debris(w)
        except Exception as exc:  # anything else from the fix is a bug: one line, no traceback, is the contract
            problems.append(f"unhandled {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        finally:
            if monitor is not None:
                monitor.close()
        return problems, describe(s, w)


def describe(s: Scenario, w: World) -> str:
    return f"{s}\n  app log: {w.log}"

