"""Running a fix: the snapshot, then batches of groups, each one all-or-nothing on `Database.writer`.

The snapshot is one `INSERT INTO dupewatch_plan_<id> SELECT ...` of the plan relation (one sort of the table,
see plan.py), then its unique key `(dw_group, dw_rn)` and, on PostgreSQL, `ANALYZE`. Groups are numbered
1..total without gaps, so a batch is the range `done_through < dw_group <= done_through + size`, its size set
by `pace.BatchSizer` to fit a target time (a deadlock victim batch is run again, see pace.py), and runs in one
transaction:

1. lock the fix record (`FOR UPDATE`), read where the fix stands;
2. lock and re-check in one statement: the batch's planned rows, keepers included, joined to the live rows
   that still have their identity, their keeper's planned key, the check's `where` and the referred-to values, locked
   (`SELECT ... ORDER BY identity FOR UPDATE`; SQLite: the transaction began with `BEGIN IMMEDIATE`) and
   counted per group; a group missing a row, or its keeper, changed since the plan: it is skipped
   (reported) and dropped from the plan table, so the rest of the range is exactly what the batch fixes.
   PostgreSQL, a table with a primary key that nothing references (and no unique key beyond the check's): one
   statement locks and re-checks only the keepers and does step 4, its DELETE re-checking each row it deletes in
   its own `WHERE`, under the row lock it takes; unless every keeper and exactly the planned rows were found, the
   batch's transaction is rolled back and the same range runs again as above (`_Batch._keepers_locked`). That
   statement reaches the rows by the `ctid` the snapshot read (`plan.ADDRESS`, a TID scan) and matches each by
   primary key and key: a row that moved since the plan is not found there, and the batch runs as above;
3. repoint referencing rows to the keeper (logged per reference, see `fix/links.py`) and verify none is left
   pointing at a row to delete (a cascade would fire otherwise); skipped when nothing references the table;
4. archive and delete the planned non-keepers, set-based: on PostgreSQL one
   `WITH moved AS (DELETE ... RETURNING *) INSERT INTO archive SELECT ... FROM moved` reporting both
   counts, elsewhere `INSERT INTO archive SELECT ...` then `DELETE`; both counts must equal the plan's
   (MySQL/MariaDB without a primary key: both match only rows equal to the plan's copy of the group's row);
5. settle the batch's account: what the database counted the transaction changing (per table on PostgreSQL,
   trigger writes and foreign key actions included) must be exactly what steps 2-4 planned, else the batch is
   rolled back naming the table (see accounting.py);
6. advance the fix record (`done_through`, counts) and commit.

A crash at any point rolls back the open batch; running the fix again resumes after `done_through`.
Rows that were not in the snapshot are never touched, and a keeper is never deleted (it is locked, must
be present, and `dw_rn = 1` rows are never selected for deletion), so no key ever loses its last row.
Nothing is reflected per batch: the plan, archive and referencing tables are resolved once per run. Every run, a
resumed one too, first checks that the fix role may use dupewatch's tables (`_refuse_unusable`) and that each
archive and repoint log still keeps what the fix copies there (`archive.refuse_altered`: column types as the
database spells them, no trigger or rule on them), and refuses otherwise with nothing changed.
"""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.db import Database, DatabaseError, first_line
from monitor.detect import refused_where
from monitor.dialects import for_backend
from monitor.engine import Monitor
from monitor.fix import records
from monitor.fix.accounting import NOTHING_KEPT, BatchAccount, Planned, UnplannedChange, ddl_step
from monitor.fix.archive import (
    FIX_ID_COLUMN,
    Copy,
    archive_name,
    archive_rows,
    columns_of,
    ensure_archive,
    refuse_altered,
)
from monitor.fix.catalog import catalog_for, distinct_entity_keys
from monitor.fix.errors import BatchAborted, FixError, FixRefused, NestedRows, PrivilegeMissing, RepointNotDone
from monitor.fix.links import (
    Link,
    apply,
    children_archived,
    copies,
    delete_joined,
    drop_empty_logs,
    prepare_links,
    verify_clear,
)
from monitor.fix.locks import fix_lock
from monitor.fix.pace import ATTEMPTS, DEFAULT_LARGEST, BatchSizer, pause
from monitor.fix.plan import (
    ADDRESS,
    COUNTER,
    GROUP,
    RANK,
    SAMPLE_GROUPS,
    SIZE,
    FixPlan,
    Layout,
    LeftOut,
    archives,
    build_preview,
    distinct_groups,
    unrollable_triggers,
)
from monitor.fix.privileges import fix_writes, refused_writes
from monitor.fix.records import FixRecord, reference_table, unusable_tables
from monitor.fix.refs import find_references, reflect
from monitor.fix.target import Target as _Target
from monitor.fix.target import target
from monitor.words import command

DEFAULT_BATCH_SIZE = DEFAULT_LARGEST  # groups per batch at most, unless `batch_size` says otherwise
_IN_CHUNK = 500


@dataclass(frozen=True)
class FixProgress:
    """Sent to the progress callback after every committed batch (plain data, any thread)."""

    fix_id: str
    check: str
    groups_total: int
    groups_done: int  # fixed or skipped so far
    deleted: int
    archived: int
    repointed: int
    skipped: int


ProgressCallback = Callable[[FixProgress], None]


@dataclass
class FixReport:
    fix_id: str
    check: str
    state: str
    groups: int
    deleted: int
    archived: int
    repointed: int
    skipped: int
    constraint: str | None = None
    resumed: bool = False
    # Groups the plan left out (counted in `skipped`), as the plan this run started from listed them; empty
    # when resuming a fix planned by another run (its plan is not at hand).
    left_out: list[LeftOut] = field(default_factory=list)
    left_out_groups: int = 0  # how many groups `left_out` lists (one left out on two unique keys is listed twice)
    notes: list[str] = field(default_factory=list)
    references_archived: int = 0  # referencing rows archived with their parents (on_reference = "archive")
    # The fixes `--add-constraint`'s later rounds made of the duplicates written meanwhile and that stand, oldest
    # first: each is undone on its own (`render.undo_lines`).
    straggler_fixes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"fix_id": self.fix_id, "check": self.check, "groups": self.groups, "deleted": self.deleted,
                "archived": self.archived, "repointed": self.repointed, "skipped": self.skipped,
                "references_archived": self.references_archived, "constraint": self.constraint,
                "left_out_groups": self.left_out_groups, "left_out": [x.as_json() for x in self.left_out],
                "straggler_fixes": self.straggler_fixes}


@dataclass
class _Outcome:
    groups: int = 0
    deleted: int = 0
    archived: int = 0
    repointed: int = 0
    skipped: int = 0
    children_archived: int = 0


def _writer(t: _Target) -> Any:
    """A connection on the writing engine (`fix_url`, else `url`)."""
    return t.db.connect(t.db.bookkeeping)


def _session(conn: Connection, db: Database) -> Connection:
    """The fix's isolation level (MySQL/MariaDB: READ COMMITTED, so that locking reads see the latest rows and
    the snapshot's INSERT ... SELECT takes no shared locks on the live table)."""
    level = db.rules.fix_isolation_level
    return conn.execution_options(isolation_level=level) if level else conn


def _layout(conn: Connection, t: _Target) -> Layout:
    _vet_where(conn, t)
    if engine := t.db.rules.non_transactional_engine(conn, t.tc.table):
        raise FixRefused(f"check {t.config.name!r} cannot be fixed: table {t.table_name!r} uses the {engine} storage "
                         "engine, which cannot roll back: a batch stopped half-way (a trigger, a deadlock, Ctrl-C) "
                         "would keep its deletes without their archive; convert it first (ALTER TABLE ... "
                         "ENGINE=InnoDB) or fix by hand")
    refs = find_references(conn, t.tc.table, t.config.on_reference, check=t.config.name)
    catalog = catalog_for(conn)
    # The check's key columns aside, folded or not: a check with case_insensitive on `email UNIQUE` exists to merge
    # 'Bob@x' into 'bob@x'; the key's own unique constraint is no evidence beyond the key the operator chose.
    distinct = distinct_entity_keys(conn, t.tc.table, [c.name for c in t.tc.key_columns], [r.fk for r in refs])
    return Layout(t.tc, refs, catalog.delete_hooks(t.tc.table), distinct, merge_distinct=t.merge_distinct,
                  collations=t.db.rules.column_collations(conn, t.tc.table),
                  declared_types=t.db.rules.declared_types(conn, t.tc.table))


def _vet_where(conn: Connection, t: _Target) -> None:
    """Vet the check's `where` again as the fix role reads it: detection vetted it on its own connection, but the
    fix runs it on `fix_url`'s, whose search_path (a schema named after the role, `ALTER ROLE ... SET
    search_path`) may resolve the same name to another function; the server resolves it here, before it runs."""
    if not t.tc.check.where:
        return
    refused = refused_where(t.db.rules, conn, t.tc, t.db.describe)
    if refused:
        raise FixRefused(f"check {t.config.name!r}: where, as the fix's connection reads it: {refused}")


@contextmanager
def table_lock(t: _Target) -> Iterator[None]:
    """The fix lock of the resolved table (so `parent` and `public.parent` are one table)."""
    try:
        with _writer(t) as conn, conn.begin():
            identity = catalog_for(conn).table_identity(t.tc.table)
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(t.db.describe(exc)) from None
    with fix_lock(t.db, identity, t.table_name):
        yield


# -- planning ------------------------------------------------------------------------------------


def make_plan(monitor: Monitor, check: str, *, sample: int = SAMPLE_GROUPS,
              group: Sequence[Any] | None = None, merge_distinct: bool = False) -> FixPlan:
    """The dry run: the plan computed over the live table in a read-only transaction; changes nothing.
    It is planned with the fix role's eyes (`fix_url`), which may see other rows, references and row-level
    security than the detection role. `group`: plan only the group with these key values. `merge_distinct`:
    merge rows that another unique constraint says are different entities (else they block the fix; also the
    check's `merge_distinct`)."""
    t = target(monitor, check, group, merge_distinct=merge_distinct)
    try:
        with _planning_view(t) as conn:
            layout = _layout(conn, t)
            layout.plan_table("dupewatch_plan", None)  # refuses here what the fix's snapshot would refuse
            rel = layout.relation_select().subquery("dupewatch_plan")
            with t.db.rules.whole_table_statement(conn):  # each preview query windows the whole table
                return build_preview(conn, layout, rel, database=t.config.database, sample=sample)
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(t.db.describe(exc)) from None


@contextmanager
def _planning_view(t: _Target) -> Iterator[Connection]:
    """A read-only transaction that sees what the fix will see: on the writing connection where a role decides
    what is visible, else (SQLite) the detection connection. Always rolled back."""
    if not t.db.rules.roles:
        with t.db.read_only() as conn:
            yield conn
        return
    with _writer(t) as conn:
        conn.begin()
        try:
            t.db.rules.read_only_planning(conn)
            yield conn
        finally:
            if conn.in_transaction() and not conn.invalidated:
                conn.rollback()


def prepare_fix(monitor: Monitor, check: str, *, sample: int = SAMPLE_GROUPS,
                group: Sequence[Any] | None = None, merge_distinct: bool = False) -> FixPlan:
    """Snapshot the plan (the rows the fix may delete) into a plan table and return its preview.

    The returned plan has `fix_id` set; pass it to `run_fix` after the operator confirms, or to
    `discard_fix` if they do not. Only dupewatch's own tables are written. `group`: only that group's rows.
    `merge_distinct`: see `make_plan`.
    """
    t = target(monitor, check, group, merge_distinct=merge_distinct)
    with table_lock(t):
        return _snapshot(t, sample=sample)


def _snapshot(t: _Target, *, sample: int) -> FixPlan:
    """Take the plan's snapshot; whatever goes wrong (a database error, a bug, Ctrl-C), the fix record is not
    left `planning` and its plan table is dropped."""
    fix_id = records.new_fix_id()
    try:
        return _take_snapshot(t, fix_id, sample=sample)
    except BaseException as exc:
        message = t.db.describe(exc) if isinstance(exc, sa.exc.DBAPIError) else f"{type(exc).__name__}: {exc}"
        _abandon(t, fix_id, message)
        if isinstance(exc, sa.exc.DBAPIError):
            raise DatabaseError(message) from None
        raise


def _abandon(t: _Target, fix_id: str, message: str) -> None:
    """Best effort after a failed snapshot: drop the plan table, mark the record discarded."""
    try:
        with _writer(t) as conn:
            with conn.begin():
                record = records.get_record(conn, fix_id) if records.has_tables(conn) else None
            if record is not None:
                _drop_plan(conn, t, record)
                with conn.begin():
                    records.update_record(conn, fix_id, state="discarded", finished_at=records.now_text(),
                                          message=f"planning failed: {message}"[:1000])
    except Exception:  # the database is gone too: the next run cleans up (`_clean_planning`)
        pass


def _clean_planning(conn: Connection, t: _Target) -> None:
    """Discard snapshots of this check that never finished (a process killed while planning): only this
    process can be planning the table now, since it holds the table's fix lock."""
    with conn.begin():
        stale = records.planning(conn, t.config.name, t.table_name) if records.has_tables(conn) else []
    for record in stale:
        _drop_plan(conn, t, record)
        with conn.begin():
            records.update_record(conn, record.fix_id, state="discarded", finished_at=records.now_text(),
                                  message="the process planning it stopped before the snapshot was complete")


def _take_snapshot(t: _Target, fix_id: str, *, sample: int) -> FixPlan:
    plan_name = "dupewatch_plan_" + fix_id.replace("-", "_")
    try:
        with _writer(t) as raw:
            conn = _session(raw, t.db)
            _clean_planning(conn, t)
            step = f"the fix of check {t.config.name!r}"
            with ddl_step(conn, t.db.rules, f"{step} (creating its records)") as account:
                refusal = t.db.rules.create_refusal(conn, records.place(conn, t.tc.table.schema))
                if refusal is not None:  # the dry run's blocker, before anything is created
                    raise FixRefused(f"check {t.config.name!r} cannot be fixed: {refusal}")
                records.ensure_tables(conn)
                account.writes(*records.own_tables(conn))
                layout = _layout(conn, t)
                records.insert_record(
                    conn, fix_id=fix_id, check_name=t.config.name, table_name=t.table_name,
                    identity=layout.mode, plan_table=plan_name,
                    archive_table=archive_name(t.tc.table, apart=records.home(conn) is not None),
                    os_user=records.os_user(), host=records.host_name(), created_at=records.now_text(),
                    state="planning")
            plan_table = layout.plan_table(plan_name, records.place(conn, t.tc.table.schema))
            # DDL: MySQL commits it implicitly, so it gets its own transaction
            with ddl_step(conn, t.db.rules, f"{step} (creating its plan and archive tables)"):
                plan_table.create(conn)
                catalog_for(conn).restrict_access(plan_table)
                ensure_archive(conn, t.tc.table, records.place(conn, t.tc.table.schema),
                               apart=records.home(conn) is not None)
            with ddl_step(conn, t.db.rules, f"{step} (filling and indexing its plan table)") as account:
                account.writes(plan_table, *records.own_tables(conn))
                t.db.rules.prepare_snapshot(conn)
                columns = [c.name for c in plan_table.columns]
                source = layout.relation_select()
                ordered = source.with_only_columns(*[source.selected_columns[c] for c in columns])
                with t.db.rules.whole_table_statement(conn):
                    conn.execute(sa.insert(plan_table).from_select(columns, ordered))
                layout.plan_index(plan_table).create(conn)
                t.db.rules.refresh_statistics(conn, plan_table)
                # Groups the plan leaves out are dropped from the plan table as a batch drops those it skips.
                plan = build_preview(conn, layout, plan_table, database=t.config.database, sample=sample,
                                     forget=lambda groups: _forget(conn, plan_table, groups))
                plan.fix_id = fix_id
                records.update_record(conn, fix_id, state="planned", total_groups=plan.groups)
    except sa.exc.DBAPIError as exc:
        code = t.db.rules.privilege_refusal(exc.orig) if exc.orig is not None else None
        if code is not None:  # MariaDB/MySQL: no catalog function says ahead whether the role may CREATE
            raise DatabaseError(f"{t.db.describe(exc)} ({code}: the fix role lacks the privilege the database "
                                "names; grant it to the fix role, or point fix_url / fix_url_env at a role that has "
                                "it)") from None
        raise DatabaseError(t.db.describe(exc)) from None
    return plan


def discard_fix(monitor: Monitor, check: str, fix_id: str) -> None:
    """Forget a prepared fix that was not confirmed: drop its plan table, mark it discarded."""
    t = target(monitor, check)
    with _writer(t) as conn:
        record = _load(conn, fix_id)
        if record.state != "planned":
            raise FixRefused(f"fix {fix_id} is {record.state}, only a planned fix can be discarded")
        _drop_plan(conn, t, record)
        with conn.begin():
            records.update_record(conn, fix_id, state="discarded", finished_at=records.now_text())


def find_unfinished(monitor: Monitor, check: str) -> FixRecord | None:
    """A fix of this check that was interrupted or not run yet; `run_fix` resumes it."""
    t = target(monitor, check)
    with _writer(t) as conn, conn.begin():
        if not records.has_tables(conn):
            return None
        return records.unfinished(conn, t.config.name, t.table_name)


def _load(conn: Connection, fix_id: str) -> FixRecord:
    with conn.begin():
        record = records.get_record(conn, fix_id) if records.has_tables(conn) else None
    if record is None:
        raise FixRefused(f"no fix with id {fix_id!r} in this database")
    return record


def _reload(conn: Connection, fix_id: str) -> FixRecord:
    """The record of a fix this run loaded before (`_load`, which also vetted the bookkeeping tables), read again."""
    with conn.begin():
        record = records.get_record(conn, fix_id)
    if record is None:
        raise FixRefused(f"no fix with id {fix_id!r} in this database")
    return record


def _drop_plan(conn: Connection, t: _Target, record: FixRecord) -> None:
    with ddl_step(conn, t.db.rules, f"fix {record.fix_id} (dropping its plan table {record.plan_table}; the "
                  f"fix is {record.state})"):
        schema = records.place(conn, t.tc.table.schema)
        if sa.inspect(conn).has_table(record.plan_table, schema=schema):
            sa.Table(record.plan_table, sa.MetaData(), schema=schema).drop(conn)


def _refuse_stale_plan(conn: Connection, t: _Target, record: FixRecord) -> None:
    """The plan no longer fits the table (its primary key or the foreign keys referring to it changed) or
    was made by another version of dupewatch. A fix that changed nothing yet is discarded; one that did must
    be undone (or finished by hand) first, so that no half-fixed state goes unnoticed."""
    what = (f"table {t.table_name!r} (its primary key or the foreign keys referring to it) changed since fix "
            f"{record.fix_id} was planned, or another version of dupewatch planned it")
    if record.state != "planned":
        raise FixRefused(f"{what}: undo it (`{command('undo', record.fix_id)}` restores what its batches did) or "
                         f"abandon it (`{command('fixes', 'abandon', record.fix_id)}` keeps what they did, "
                         "archived and undoable), then fix again")
    _drop_plan(conn, t, record)
    with conn.begin():
        records.update_record(conn, record.fix_id, state="discarded", finished_at=records.now_text(),
                              message=what)
    raise FixRefused(f"{what}: it had changed nothing and was discarded; run the fix again to plan afresh")


def _refuse_lost_plan(conn: Connection, t: _Target, record: FixRecord) -> None:
    """The plan table of an unfinished fix is gone (the schema restored from a dump, `dupewatch_*` tables dropped
    by hand): only it says which rows the fix may delete, so the fix cannot go on. One that committed no batch yet
    (planned, or stopped at its first batch) changed nothing and is discarded; one that did must be undone first."""
    what = (f"fix {record.fix_id} ({record.state}) cannot be resumed: its plan table {record.plan_table} no longer "
            "exists (dropped since the fix was planned), and only it says which rows the fix may delete")
    if record.state != "planned" and record.done_through > 0:
        raise FixRefused(f"{what}; `{command('undo', record.fix_id)}` puts back what its batches did, then fix "
                         f"again, or `{command('fixes', 'abandon', record.fix_id)}` keeps it (archived, still "
                         "undoable) and lets a new fix start")
    with conn.begin():
        records.update_record(conn, record.fix_id, state="discarded", finished_at=records.now_text(), message=what)
    raise FixRefused(f"{what}; it had changed nothing and was discarded: run the fix again to plan afresh")


# -- running -------------------------------------------------------------------------------------


def run_fix(monitor: Monitor, check: str, plan: FixPlan | None = None, *, batch_size: int | None = None,
            batch_time: float | None = None, progress: ProgressCallback | None = None,
            cancel: threading.Event | None = None, merge_distinct: bool = False) -> FixReport:
    """Run (or resume) a fix of `check` and return what it did.

    `plan`: a prepared plan (`prepare_fix`) to run; None resumes an unfinished fix of the check or, if
    there is none, snapshots a new plan and runs it (refusing if anything blocks it). `progress` is called
    after each committed batch; setting `cancel` stops between batches (the fix stays resumable).
    Batches are sized to take `batch_time` seconds (default: `[fix] batch_time`), at most `batch_size` groups;
    `batch_size` alone fixes every batch at that many groups (see `pace.py`).
    `merge_distinct`: see `make_plan` (a batch skips a group whose rows differ on another unique key, unless set).
    Raises `FixRefused` (nothing changed) or `FixError` (a batch was rolled back; earlier batches stand).
    """
    if batch_size is not None and batch_size < 1:
        raise FixRefused("--batch-size must be at least 1")
    if batch_time is not None and batch_time <= 0:
        raise FixRefused("--batch-time must be a positive duration")
    if batch_time is None and batch_size is None:
        batch_time = monitor.config.fix.batch_time
    t = target(monitor, check, merge_distinct=merge_distinct)
    sizer = BatchSizer(batch_time, batch_size or DEFAULT_BATCH_SIZE, t.db.config.statement_timeout)
    with table_lock(t):
        resumed = False
        left_out: list[LeftOut] = []
        left_out_groups = 0
        layout: Layout | None = None  # a resumed fix's, read once for its vetting and its run
        if plan is not None and plan.fix_id is not None:
            if plan.blockers:
                raise FixRefused(f"check {check!r} cannot be fixed: {plan.blockers[0]}")
            fix_id, left_out, left_out_groups = plan.fix_id, plan.left_out, plan.left_out_groups
        else:
            with _writer(t) as conn, conn.begin():
                pending = records.unfinished(conn, t.config.name, t.table_name) \
                    if records.has_tables(conn) else None
            vetted = _refuse_unusable(t, pending)  # a resumed fix too: a fix_url changed since its last run
            if pending is not None:
                fix_id, resumed, layout = pending.fix_id, True, vetted
            else:
                fresh = _snapshot(t, sample=0)
                if fresh.blockers:
                    with _writer(t) as conn:
                        _drop_plan(conn, t, _load(conn, fresh.fix_id or ""))
                        with conn.begin():
                            records.update_record(conn, fresh.fix_id or "", state="discarded",
                                                  finished_at=records.now_text(), message=fresh.blockers[0])
                    raise FixRefused(f"check {check!r} cannot be fixed: {fresh.blockers[0]}")
                fix_id, left_out, left_out_groups = fresh.fix_id or "", fresh.left_out, fresh.left_out_groups
        try:
            report = _execute(t, fix_id, sizer, progress, cancel, layout)
        finally:  # what any batch deleted: incremental checks of the table re-count their groups
            monitor.table_changed(t.db.name, t.tc.table.name, f"fix {fix_id}", restored=False)
        report.resumed, report.left_out, report.left_out_groups = resumed, left_out, left_out_groups
    return report


def _refuse_unusable(t: _Target, pending: FixRecord | None = None) -> Layout:
    """Refuse before anything is written when the fix role may not use a table of dupewatch's the fix will
    write (an archive an earlier fix created as another role): its first batch would stop on it, and so would
    every resumed run. `pending`: the unfinished fix about to be resumed (its run may be through another role
    than the one that planned it), whose plan table and repoint logs are checked too. Returns the layout it read
    (`_execute` runs a resumed fix with it)."""
    try:
        with _writer(t) as conn, conn.begin():
            layout = _layout(conn, t)
            refusals = unusable_tables(conn, archives(conn, layout))
            if pending is not None and (unrollable := unrollable_triggers(conn, layout)):
                refusals.insert(0, unrollable)  # (a new fix's plan refused it already)
            if pending is not None and (policed := t.db.rules.row_security_refusal(conn, layout.table)):
                refusals.insert(0, policed)  # (policies changed since the plan: each batch would stop on them)
            if not refusals and pending is not None:
                place = records.place(conn, t.tc.table.schema)
                logs = conn.execute(sa.select(reference_table.c.log_table).where(
                    reference_table.c.fix_id == pending.fix_id, reference_table.c.action == "repoint")).scalars()
                refusals = unusable_tables(conn, [sa.Table(name, sa.MetaData(), schema=place)
                                                  for name in [pending.plan_table, *logs] if name])
    except sa.exc.DBAPIError as exc:
        raise DatabaseError(t.db.describe(exc)) from None
    if refusals:
        raise FixRefused(f"check {t.config.name!r} cannot be fixed: {refusals[0]}")
    return layout


def _execute(t: _Target, fix_id: str, sizer: BatchSizer, progress: ProgressCallback | None,
             cancel: threading.Event | None, layout: Layout | None = None) -> FixReport:
    """Run the fix's batches. `layout`: the table's, read by this run already (a resumed fix's, see
    `_refuse_unusable`); else read here (a new fix's, after its snapshot)."""
    with _writer(t) as raw:
        conn = _session(raw, t.db)
        record = _load(conn, fix_id)
        if record.state not in records.UNFINISHED:
            raise FixRefused(f"fix {fix_id} is {record.state}; nothing left to run")
        with conn.begin():
            lost = not sa.inspect(conn).has_table(record.plan_table,
                                                  schema=records.place(conn, t.tc.table.schema))
        if lost:
            _refuse_lost_plan(conn, t, record)
        with conn.begin():
            layout = _layout(conn, t) if layout is None else layout
            plan_table = layout.plan_table(record.plan_table, records.place(conn, t.tc.table.schema))
            empty = sa.select(sa.text("*")).select_from(sa.table(plan_table.name, schema=plan_table.schema)).limit(0)
            planned = set(conn.execute(empty).keys())
            if layout.address is not None and ADDRESS not in planned:
                # A plan made before batches reached rows by their address: by primary key only, not stale.
                layout.address = None
                plan_table = layout.plan_table(record.plan_table, records.place(conn, t.tc.table.schema))
            stale = layout.mode != record.identity or planned != {c.name for c in plan_table.columns}
        if stale:
            _refuse_stale_plan(conn, t, record)
        with ddl_step(conn, t.db.rules, f"fix {fix_id} (creating its log tables)") as account:
            account.writes(*records.own_tables(conn))
            home = records.place(conn, t.tc.table.schema)
            archive = columns_of(conn, record.archive_table, home)
            links = prepare_links(conn, layout, fix_id, home)
            # (on its first run: the archives' columns as the database reports them, which undo compares with
            # theirs then, an archive being shared by the fixes of its table)
            archived = [link.log for link in links if link.ref.action == "archive" and link.log is not None]
            records.record_archives(conn, fix_id, [archive, *archived])
            # (every run, before its first batch: an archive or log changed since it was created)
            refuse_altered(conn, [Copy(archive, layout.table, {c.name: c.name for c in layout.table.columns}),
                                  *copies(links)])
            records.update_record(conn, fix_id, state="running", message=None)
        batch = _Batch(t, layout, plan_table, archive, links, fix_id)
        counted = record.deleted  # rows deleted by earlier runs of this fix are not this process's to count
        retried: dict[str, int] = {}
        while True:
            if cancel is not None and cancel.is_set():
                with conn.begin():
                    records.update_record(conn, fix_id, state="stopped")
                break
            try:
                advanced = _paced_batch(conn, t, batch, sizer, record.done_through, retried, cancel)
            except _CommitUnanswered as exc:
                message = (f"the connection was lost while the current batch committed ({exc}): whether the "
                           f"database committed it is unknown (`{command('fixes')}` shows what its record says); "
                           f"earlier batches stand; run the fix again to resume from what the database kept, or "
                           f"`{command('undo', fix_id)}`")
                _mark_failed(t, fix_id, message)
                raise FixError(f"fix {fix_id} stopped, {message}") from None
            except BaseException as exc:
                kept = _rollback_kept(conn, t)  # (first: the rollback's own warnings)
                message = _batch_failure(t, layout, exc, _violated_keys(conn, t, batch, sizer.size, exc))
                rolled = "the current batch was rolled back"
                if kept:
                    message = message.replace(NOTHING_KEPT, "") + (
                        "; the database could not roll all of it back: a table whose storage engine cannot roll "
                        "back (MyISAM, Aria), written by a trigger the batch fired, keeps the batch's changes "
                        "(warning 1196); compare it with what it held before the fix")
                    rolled = "the current batch was rolled back except in tables that cannot roll back"
                _mark_failed(t, fix_id, message)
                if not isinstance(exc, BatchAborted | sa.exc.DBAPIError):
                    raise
                missing = _missing_privilege(t, layout, exc)
                stop = FixError if missing is None else PrivilegeMissing
                raise stop(f"fix {fix_id} stopped, {rolled}: {message} "
                           f"({_after_stop(exc, fix_id, missing, t.db.rules.violated_check(exc))})") from None
            if advanced is None:
                with conn.begin():
                    records.update_record(conn, fix_id, state="done", finished_at=records.now_text())
                _drop_plan(conn, t, _reload(conn, fix_id))
                drop_empty_logs(conn, fix_id, home)
                break
            record = advanced
            _count_deleted(t, record.deleted - counted)
            counted = record.deleted
            if progress is not None:
                progress(FixProgress(fix_id, t.config.name, record.total_groups,
                                     record.groups + record.skipped, record.deleted, record.archived,
                                     record.repointed, record.skipped))
        final = _reload(conn, fix_id)
        with conn.begin():
            references_archived = children_archived(conn, fix_id)
    report = FixReport(final.fix_id, final.check_name, final.state, final.groups, final.deleted, final.archived,
                       final.repointed, final.skipped, final.constraint_name,
                       references_archived=references_archived)
    report.notes.extend(f"{n} batch(es) rolled back by the database and run again: {why}"
                        for why, n in retried.items())
    return report


class _NotAsPlanned(Exception):
    """A keepers-only batch (`_Batch._keepers_locked`) found a group changed since the plan: its transaction is
    rolled back and the same range runs again with every row locked and re-checked (`_Batch._fix_groups`)."""


class _CommitUnanswered(Exception):
    """The connection was lost after a batch's COMMIT was sent: the batch may have committed or not, and only the
    database's record of the fix (committed with the batch) says which."""


_BATCHES = Counter[str]()  # batches this process began (an unexpected error's message says whether one was open)


def batches_begun() -> int:
    """How many fix batches this process has begun (one transaction each)."""
    return _BATCHES["begun"]


def _paced_batch(conn: Connection, t: _Target, batch: _Batch, sizer: BatchSizer, done_through: int,
                 retried: dict[str, int], cancel: threading.Event | None) -> FixRecord | None:
    """The next batch, `sizer.size` groups, committed; None when no group is left. A batch the database rolled
    back to resolve a conflict is run again after a pause (at most `pace.ATTEMPTS` tries), one cancelled by the
    statement timeout again at a smaller size (see `pace.py`). `retried` counts the reruns by cause."""
    attempt = 1
    fresh = True
    while True:
        committing = False
        try:
            if fresh:
                sizer.begin()
            fresh = True
            with conn.begin():
                _BATCHES["begun"] += 1
                t.db.rules.relax_batch_durability(conn)
                advanced = _advance(conn, batch, sizer.size)
                # (the guard's locked round pins the connection: its COMMIT is a savepoint's release in the
                # guard's one transaction, which a lost connection rolls back whole, so that is known)
                committing = not getattr(conn.connection.dbapi_connection, "pinned", False)
            if advanced is not None:  # one fixer per table (the fix lock): nobody else moved done_through
                sizer.done(advanced.done_through - done_through)
            return advanced
        except _NotAsPlanned:  # rolled back whole: the same range again, locking and re-checking every row
            batch.recheck_next = True
            fresh = False  # the rolled-back attempt's time, its lock waits included, counts for the batch's size
        except sa.exc.DBAPIError as exc:
            if committing and exc.connection_invalidated:  # the COMMIT was sent, its answer never came
                raise _CommitUnanswered(first_line(exc)) from exc
            why = t.db.rules.conflict(exc.orig or exc)
            if why is not None and attempt < ATTEMPTS:
                attempt += 1
            elif t.db.rules.is_timeout(first_line(exc)) and sizer.timed_out():
                why = f"statement timeout; next tried with {sizer.size} group(s)"
            else:
                raise
            retried[why] = retried.get(why, 0) + 1
            (cancel or threading.Event()).wait(pause(attempt - 1))


def _rollback_kept(conn: Connection, t: _Target) -> bool:
    """Whether the batch's rollback, the connection's last statement, left changes in place (`Dialect.rollback_kept`);
    False when that cannot be asked (a broken connection)."""
    try:
        with conn.begin():
            return t.db.rules.rollback_kept(conn)
    except sa.exc.SQLAlchemyError:
        return False


def _violated_keys(conn: Connection, t: _Target, batch: _Batch, size: int, exc: BaseException) -> str:
    """Where the database refused a batch by a foreign key it does not name (SQLite): `: ` and the rows the batch
    would leave referring to no row, by key, as the database lists them: the batch run again in a transaction that
    checks keys only at its commit, listed before its commit (less those listed before its writes: rows that
    referred to no row already), rolled back. Empty where the database names the key, lists nothing, or the run
    again fails."""
    if not isinstance(exc, sa.exc.IntegrityError) or t.db.rules.violated_foreign_key(exc) != "":
        return ""
    rules = t.db.rules
    try:
        with conn.begin() as transaction:
            if not rules.defer_foreign_keys(conn):
                return ""
            before = rules.foreign_key_violations(conn)
            with suppress(FixError, sa.exc.SQLAlchemyError):  # what it wrote until then is listed
                _advance(conn, batch, size)
            found = [new for v in rules.foreign_key_violations(conn) if (new := v.since(before)) is not None]
            transaction.rollback()
    except Exception:  # only a better message: never in place of the batch's own failure
        return ""
    return f": {'; '.join(v.describe() for v in found)}" if found else ""


def _batch_failure(t: _Target, layout: Layout, exc: BaseException, keys: str = "") -> str:
    """One line on why a batch was rolled back: when counts disagreed, the table's delete hooks and the
    referencing tables' triggers the batch's writes fired (whose own writes may be the reason); for a database
    error, `keys` (`_violated_keys`) and the trigger that raised it as far as the database says (`_raised_by`)."""
    if not isinstance(exc, sa.exc.DBAPIError | BatchAborted):
        return f"interrupted ({type(exc).__name__}: {exc})" if str(exc) else f"interrupted ({type(exc).__name__})"
    if isinstance(exc, sa.exc.DBAPIError):
        return t.db.describe(exc) + keys + _raised_by(t, layout, exc)
    said = str(exc)
    hooks = [h for h in (*layout.hooks.blocking, *layout.hooks.firing) if h not in said]  # (not named twice)
    if hooks:
        said += f" (the table has {', '.join(hooks)})"
    # (an account that names what may have written, SQLite's, already names them)
    fired = list(dict.fromkeys(f"{ref.table} has {', '.join(ref.triggers)}" for ref in layout.refs
                               if ref.triggers and not all(f"{t} on {ref.table}" in said for t in ref.triggers)))
    return said + (f" ({'; '.join(fired)})" if fired else "")


def _raised_by(t: _Target, layout: Layout, exc: sa.exc.DBAPIError) -> str:
    """The trigger that raised a batch's database error, only as far as the database supports it: none for a
    conflict between transactions or a timeout (the server's own doing); where the error names the functions
    that were running (PostgreSQL's CONTEXT), the triggers of those functions, else none; where it names none
    (MySQL/MariaDB, SQLite), the triggers the batch's writes fire, as suspects."""
    error = exc.orig if exc.orig is not None else exc
    if t.db.rules.between_transactions(error) or t.db.rules.is_timeout(first_line(exc)):
        return ""
    context = t.db.rules.error_context(error)
    if context is None:
        fired = [*(f"{h} on {layout.table.name}" for h in layout.hooks.firing),
                 *(f"{h} on {ref.table}" for ref in layout.refs for h in ref.triggers)]
        return f"; the write fires {', '.join(dict.fromkeys(fired))} (which may have raised it)" if fired else ""
    if not context:
        return ""
    try:
        with _writer(t) as conn, conn.begin():
            written = [layout.table, *(sa.Table(ref.table, sa.MetaData(), schema=ref.schema) for ref in layout.refs)]
            raised = catalog_for(conn).raising_triggers(context, written)
    except Exception:  # the name is advice only: no connection, ... -> the server's words alone
        return ""
    if not raised:
        return ""
    return f" (raised by {', '.join(raised[:3])}{', ...' if len(raised) > 3 else ''})"


def _missing_privilege(t: _Target, layout: Layout, exc: BaseException) -> str | None:
    """When the database refused the batch for a missing privilege: which write the fix role may not make and
    what to grant, as the server answers the dry run's probe (`privileges.py`) on a fresh connection, else the
    database's own words; None for any other error."""
    error = exc.orig if isinstance(exc, sa.exc.DBAPIError) else None
    code = t.db.rules.privilege_refusal(error) if error is not None else None
    if code is None:
        return None
    try:
        with _writer(t) as conn, conn.begin():
            refused = refused_writes(conn, fix_writes(layout.table, layout.refs,
                                                      lambda ref: reflect(conn, ref.schema, ref.table)))
    except Exception:  # the probe is advice only: a referencing table gone, no connection, ... -> the server's words
        refused = []
    if refused:
        return refused[0]
    return (f"the fix role lacks the privilege the database names ({code}): grant it to the fix role, or point "
            "fix_url / fix_url_env at a role that has it")


def _after_stop(exc: BaseException, fix_id: str, missing: str | None = None, check: str | None = None) -> str:
    """What the operator can do after a rolled-back batch: resume, unless resuming would meet the same thing.
    `check`: the CHECK constraint the database reports it refused the batch by, where its error class says no
    more (`Dialect.violated_check`: MariaDB's is not an integrity error)."""
    if missing is not None:
        # Resuming meets the same refusal until the privilege is granted: no "run it again to resume".
        return (f"{missing}; until then every run stops here. Earlier batches stand; `{command('undo', fix_id)}` "
                "puts them back")
    if isinstance(exc, NestedRows):
        # The refusal is the batch's own (`links._archive_children`: their ON DELETE would reach them unarchived),
        # and the rows stay until someone removes them: every run meets them at the same batch. A new fix, once
        # this one is given up, plans afresh with the on_reference it is given.
        return (f"earlier batches stand; running the fix again stops here while those rows of {exc.grandchild} "
                f"refer to them: delete those rows or point them at other rows of {exc.table}, then run "
                f"the fix again to resume; or `{command('fixes', 'abandon', fix_id)}` (what its batches did stays "
                f"undoable) and fix again with `on_reference = \"repoint\"` for "
                f"{exc.config_name}; or `{command('undo', fix_id)}`")
    if isinstance(exc, UnplannedChange):
        return (f"earlier batches stand; running the fix again would do the same: deal with what is named, then "
                f"run it again to resume, or `{command('undo', fix_id)}`")
    if check is not None:
        # The same rows meet the same CHECK on every run: resuming is no way out.
        return (f"earlier batches stand; running the fix again would meet the same {check}, which refuses a "
                "repointed row: change the rows it refuses (or that constraint), or set `on_reference = "
                f"\"archive\"` for that reference, then run it again to resume, or `{command('undo', fix_id)}`")
    if isinstance(exc, sa.exc.IntegrityError):
        # A constraint the batch's change breaks (an exclusion constraint on a referencing table, say) breaks
        # again on the same rows: resuming is no way out until those rows or the constraint change.
        return (f"earlier batches stand; running the fix again would meet the same constraint: change the rows "
                f"it names, or set `on_reference = \"archive\"` for that reference, then run it again to resume, "
                f"or `{command('undo', fix_id)}`")
    if isinstance(exc, RepointNotDone):
        return (f"earlier batches stand; once what is named is dealt with, run the fix again to resume, or "
                f"`{command('undo', fix_id)}`")
    return "earlier batches stand; run the fix again to resume"


def _mark_failed(t: _Target, fix_id: str, message: str) -> None:
    """Record a stopped batch on a fresh connection: the batch's own may be broken (or mid-rollback)."""
    try:
        with _writer(t) as conn, conn.begin():
            records.update_record(conn, fix_id, state="failed", message=message[:1000])
    except Exception:  # the database went away: the record says `running`, which resuming treats the same
        pass


def _count_deleted(t: _Target, rows: int) -> None:
    """Add a committed batch's deletions to `dupewatch_fix_deleted_rows_total` of this process's exporter.

    Only if `monitor.metrics` is already loaded: an exporter (dashboard, daemon) needs it, so without it
    there is nothing to count in, and a one-shot `dupewatch fix` never imports prometheus-client.
    """
    metrics = sys.modules.get("monitor.metrics")
    if metrics is not None and rows > 0:
        metrics.record_fix(t.config.name, t.config.database, rows)


def _advance(conn: Connection, batch: _Batch, batch_size: int) -> FixRecord | None:
    """One batch in the caller's transaction; None when no group is left. Groups are numbered 1..total
    without gaps, so the batch is a plain range of group numbers."""
    record = records.get_record(conn, batch.fix_id, lock=True)
    assert record is not None
    if record.done_through >= record.total_groups:
        return None
    upper = min(record.done_through + batch_size, record.total_groups)
    outcome = batch.run(conn, record.done_through, upper)
    values = {"done_through": upper, "groups": record.groups + outcome.groups,
              "deleted": record.deleted + outcome.deleted, "archived": record.archived + outcome.archived,
              "repointed": record.repointed + outcome.repointed, "skipped": record.skipped + outcome.skipped}
    records.update_record(conn, batch.fix_id, **values)
    return FixRecord(**{**record.__dict__, **values})


class _Batch:
    """The statements of one batch (see the module docstring for the order)."""

    def __init__(self, t: _Target, layout: Layout, plan: sa.Table, archive: sa.Table, links: list[Link],
                 fix_id: str) -> None:
        self.t, self.layout, self.plan, self.archive = t, layout, plan, archive
        self.links, self.fix_id = links, fix_id
        self.table = layout.table
        self._references: sa.Table | None = None  # `dupewatch_fix_reference` where this connection keeps it
        # Nothing references the table and nothing else is asked under the batch's locks: a batch may lock only
        # the keepers and let its DELETE re-check the rows it deletes (`_keepers_locked`).
        self._unreferenced = (not layout.refs and layout.mode == "pk" and not layout.distinct_flags()
                              and layout.rules.returning_delete)
        self.recheck_next = False  # the next batch locks and re-checks every row (set after `_NotAsPlanned`)
        # `plan.COUNTER`: the range whose counts differed once already (a row written meanwhile with a planned
        # AUTO_INCREMENT value and key); its next difference stops the fix. Another range's first difference
        # runs that range again as well (the range run again may leave every group out and delete nothing).
        self._counted_again: range | None = None
        # (table, kind) -> the counts the database keeps a planned change under (see accounting.py)
        self._counted_as: dict[tuple[sa.Table, str], tuple[tuple[str, str], ...]] = {}

    def run(self, conn: Connection, lower: int, upper: int) -> _Outcome:
        """Fix the groups numbered `lower` < group <= `upper`; before returning, the database's own count of
        what the transaction changed must equal the plan's (see accounting.py), else `BatchAborted`."""
        account = BatchAccount(conn, self.t.db.rules, self._suspects(), self._counted_as)
        planned = Planned()
        in_batch = sa.and_(self.plan.c[GROUP] > lower, self.plan.c[GROUP] <= upper)
        if self.layout.mode == "identical":
            outcome = self._identical(conn, in_batch)
            outcome.skipped = upper - lower - outcome.groups  # with the groups the plan left out (not in it)
        elif self._unreferenced and not self.recheck_next:
            outcome = self._keepers_locked(conn, in_batch, upper - lower)
        else:
            self.recheck_next = False
            outcome = self._fix_groups(conn, in_batch, range(lower + 1, upper + 1), planned)
        planned.deleted(self.table, outcome.deleted)
        planned.inserted(self.archive, outcome.archived)
        account.settle(conn, planned)
        return outcome

    def _fix_groups(self, conn: Connection, in_batch: sa.ColumnElement[bool], groups: range,
                    planned: Planned) -> _Outcome:
        intact, expected, skipped = self._lock_and_recheck(conn, in_batch, groups)
        distinct = distinct_groups(conn, self.layout, self.plan, in_batch)  # asked under the batch's locks
        if distinct:  # a row changed since the plan so that the schema now tells the group's rows apart
            planned.deleted(self.plan, _forget(conn, self.plan, distinct))
            intact, expected, skipped = self._lock_and_recheck(conn, in_batch, groups)
        outcome = _Outcome(groups=intact, skipped=len(skipped))
        planned.deleted(self.plan, _forget(conn, self.plan, skipped))
        if not intact:
            return outcome
        doomed = sa.and_(in_batch, self.plan.c[RANK] > 1)
        # Archives first, as the plan counts them (`plan._archiving`): a row one reference archives and another
        # repoints is archived as it is, not repointed first (in catalog order, which differs per database).
        for link in sorted(self.links, key=lambda link: link.ref.action != "archive"):
            moved = apply(conn, self.layout, self.plan, link, doomed, self.fix_id)
            self._plan_link(conn, planned, link, moved)
            if link.ref.action == "repoint":
                outcome.repointed += moved
            else:
                outcome.children_archived += moved
        verify_clear(conn, self.layout, self.plan, self.links, doomed)
        deleted, archived = self._archive_and_delete(conn, doomed)
        if self.layout.mode == COUNTER and (archived, deleted) != (expected, expected):
            if self._counted_again != groups:
                # A row written since the lock with a planned AUTO_INCREMENT value and key (an explicit insert): the
                # batch is rolled back whole and its range runs again, whose re-check leaves that group out.
                self._counted_again = groups
                raise _NotAsPlanned()
            counter = str(self.layout.identity[0].name)
            raise BatchAborted(f"archived {archived} and deleted {deleted} rows, expected {expected}, twice: the "
                               f"application wrote rows with a value of {counter} and a key the batch deletes while "
                               f"it ran (an explicit {counter}); a group still holding such a row is skipped when the "
                               "fix resumes")
        self._counted_again = None
        if archived != expected:
            raise BatchAborted(f"archived {archived} rows, expected {expected}")
        if deleted != expected:
            raise BatchAborted(f"deleted {deleted} rows, expected {expected}")
        outcome.archived, outcome.deleted = archived, deleted
        return outcome

    def _keepers_locked(self, conn: Connection, in_batch: sa.ColumnElement[bool], groups: int) -> _Outcome:
        """The batch when every group is as planned, locking only what must stay: one statement locks the keepers
        still as planned (in identity order), then archives and deletes the other planned rows with the re-check
        in the DELETE's own `WHERE` (each row compared with the plan under the row lock the DELETE takes, after
        waiting for any writer of it), and reports the keepers locked, the plan's rows to delete and the rows
        deleted and archived. All keepers and exactly the planned rows to delete: the batch goes on to its
        account and commit. Anything less (a row changed, gone, or a keeper changed since the plan):
        `_NotAsPlanned`, which rolls the batch's whole transaction back, and the same range runs again as
        `_fix_groups` does, which skips the changed groups. Half the rows locked and fetched of `_lock_and_recheck`
        on a table whose groups are pairs, and no savepoint (a subtransaction, two more round trips) per batch.

        One statement, so the DELETE runs even when a keeper is missing (then the rollback undoes it): what is
        kept at commit is only ever a batch whose every keeper is locked. The keepers' count is the statement's
        first output, so PostgreSQL locks them before the DELETE starts (its scalar subqueries run in order).

        Every keeper is locked, also one no transaction has touched (`xmax` 0), though that lock is most of the
        batch's WAL after a checkpoint: it holds off, until the commit, an application that reaches the keeper
        after the batch's last statement and would otherwise see the rows the batch deleted still there (not yet
        committed) and delete the keeper for them, the key left with no row; no re-read before the commit closes
        that window (tests/db/test_fix_untouched_keepers.py)."""
        p, layout = self.plan, self.layout
        keepers, doomed = sa.and_(in_batch, p.c[RANK] == 1), sa.and_(in_batch, p.c[RANK] > 1)
        locking = (sa.select(p.c[GROUP]).select_from(p).join(self.table, layout.live_match(p))
                   .where(keepers, self._reached(keepers))
                   .order_by(*[p.c[label] for label in layout.identity_labels]))
        locked = self._lock(locking).cte("dupewatch_locked")
        moved, copied = self._moved(doomed, recheck=True)
        counts = sa.select(sa.select(sa.func.count()).select_from(locked).scalar_subquery(),
                           sa.select(sa.func.count()).select_from(p).where(doomed).scalar_subquery(),
                           sa.select(sa.func.count()).select_from(moved).scalar_subquery(),
                           sa.select(sa.func.count()).select_from(copied).scalar_subquery())
        found, expected, deleted, archived = (int(n) for n in conn.execute(counts).one())
        if found == groups and deleted == archived == expected:
            return _Outcome(groups=groups, deleted=deleted, archived=archived)
        raise _NotAsPlanned()

    def _plan_link(self, conn: Connection, planned: Planned, link: Link, moved: int) -> None:
        """What `links.apply` changed for `moved` referencing rows: their update (repoint) or delete (archive),
        as many log or archive rows, and the reference's row count in `dupewatch_fix_reference`."""
        if not moved or link.log is None:
            return
        if link.ref.action == "repoint":
            planned.updated(link.child, moved)
        else:
            planned.deleted(link.child, moved)
        planned.inserted(link.log, moved)
        if self._references is None:
            self._references = sa.Table(reference_table.name, sa.MetaData(), schema=records.home(conn))
        planned.updated(self._references, 1)

    def _suspects(self) -> list[str]:
        """What can write beyond the plan unseen, named when the database counts changes for all tables at once."""
        actions = [f"ON DELETE {link.ref.ondelete} of {link.ref.label}" for link in self.links if link.ref.cascades]
        fired = [f"{t} on {link.ref.table}" for link in self.links for t in link.ref.triggers]
        return [*self.layout.hooks.blocking, *self.layout.hooks.firing, *fired, *actions]

    def _lock(self, statement: sa.Select[Any]) -> sa.Select[Any]:
        return self.layout.rules.for_update(statement, self.table)

    def _lock_and_recheck(self, conn: Connection, in_batch: sa.ColumnElement[bool],
                          groups: range) -> tuple[int, int, list[int]]:
        """Lock the batch's planned rows that are still as planned (keepers included) and return how many
        groups are intact (every planned row found and its keeper among them), their rows to delete, and the
        groups to skip. One statement, so a row is counted only if it is locked. Locks are taken in identity
        order (MariaDB may drop the ORDER BY of a derived table and lock in the plan's (group, rank) order
        instead: a fixed order all the same). Only when some group changed are the intact ones listed (the
        rows are locked already, so asking again finds at least those)."""
        p, layout = self.plan, self.layout
        # Every row's live key must equal its keeper's planned key, which the plan holds on every row of the
        # group (see plan.py), by the database's `=` on the live column (`live_match`: NULL-safe, the live
        # column on the left so that SQLite compares by its collation: the plan table does not carry it,
        # SQLAlchemy does not reflect SQLite's COLLATE): a GROUP BY or PARTITION BY may group more coarsely
        # (MariaDB sorts TEXT on its first max_sort_length bytes).
        locking = (sa.select(p.c[GROUP], p.c[RANK], p.c[SIZE])
                   .select_from(p).join(self.table, layout.live_match(p)).where(in_batch)
                   .order_by(*[p.c[label] for label in layout.identity_labels]))
        if layout.rules.identity_array_scan:
            locking = locking.where(self._identity_in(in_batch))  # keeps the join an index scan
        locked = self._lock(locking).subquery("dupewatch_locked")
        intact = (sa.select(locked.c[GROUP], locked.c[SIZE]).group_by(locked.c[GROUP], locked.c[SIZE])
                  .having(sa.and_(sa.func.count() == locked.c[SIZE], sa.func.min(locked.c[RANK]) == 1)))
        counted = intact.subquery("dupewatch_intact")
        found, doomed = conn.execute(sa.select(sa.func.count(), sa.func.sum(counted.c[SIZE] - 1))).one()
        if found == len(groups):
            return int(found), int(doomed or 0), []
        sizes = {int(group): int(size) for group, size in conn.execute(intact)}
        return len(sizes), sum(n - 1 for n in sizes.values()), [g for g in groups if g not in sizes]

    def _archive_and_delete(self, conn: Connection, doomed: sa.ColumnElement[bool], *,
                            recheck: bool = False) -> tuple[int, int]:
        """Move the doomed rows into the archive; returns (deleted, archived) as the database counted them.
        `recheck`: the rows are not locked yet, the DELETE deletes only those still as planned (`live_match`)."""
        if self.layout.rules.returning_delete:
            # The rows are locked and re-checked already (or the DELETE re-checks them): one statement deletes
            # them and archives exactly what the DELETE returned, and reports both counts.
            moved, copied = self._moved(doomed, recheck=recheck)
            counts = sa.select(sa.select(sa.func.count()).select_from(moved).scalar_subquery(),
                               sa.select(sa.func.count()).select_from(copied).scalar_subquery())
            deleted, archived = conn.execute(counts).one()
            return int(deleted), int(archived)
        if self.layout.rules.joined_batch_writes:
            # Joins driven by the plan's (group, rank) index and the table's primary key: an `IN (subquery)`
            # becomes a DEPENDENT SUBQUERY that scans the whole table once per batch on MariaDB.
            # (`row_match`: an AUTO_INCREMENT value with its group's key, `plan.COUNTER`; neither statement
            # re-checks the `where`: the rows are locked as planned, and a row written since with a planned value
            # and key makes a count differ, whatever else it holds)
            match = sa.and_(self.layout.row_match(self.plan), doomed)
            joined = self.plan.join(self.table, self.layout.row_match(self.plan))
            archived = conn.execute(archive_rows(self.archive, self.table, self.fix_id, doomed,
                                                 joined=joined)).rowcount
            deleted = conn.execute(delete_joined(conn, self.table, self.plan, match)).rowcount
            return deleted, archived
        where = self._identity_in(doomed)
        archived = conn.execute(archive_rows(self.archive, self.table, self.fix_id, where)).rowcount
        deleted = conn.execute(sa.delete(self.table).where(where)).rowcount
        return deleted, archived

    def _moved(self, doomed: sa.ColumnElement[bool], *, recheck: bool) -> tuple[sa.CTE, sa.CTE]:
        """`WITH moved AS (DELETE ... RETURNING *), copied AS (INSERT INTO archive SELECT ... FROM moved)`: the
        archive receives exactly what the DELETE returned. `recheck`: see `_archive_and_delete`."""
        if recheck:
            delete = sa.delete(self.table).where(self._reached(doomed), self.layout.live_match(self.plan), doomed)
        else:
            delete = sa.delete(self.table).where(self._identity_in(doomed))
        moved = delete.returning(*self.table.columns).cte("dupewatch_moved")
        names = [c.name for c in self.table.columns]
        copied = (sa.insert(self.archive)
                  .from_select([*names, FIX_ID_COLUMN],
                               sa.select(*[moved.c[n] for n in names], sa.literal(self.fix_id, sa.String(40))))
                  .returning(sa.literal_column("1")).cte("dupewatch_copied"))
        return moved, copied

    def _reached(self, chosen: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
        """The live rows at the addresses the plan holds for its rows matching `chosen` (`plan.ADDRESS`: a TID scan,
        no index descent per row), else by identity (`_identity_in`). Only an access path: every caller also
        matches each row's identity and key with the plan (`live_match`), and a row that moved since the snapshot
        (an update, a VACUUM FULL) is not found there, so the batch does not take this path (`_keepers_locked`);
        a row updated while the statement waits for it is followed to its new version and matched again."""
        address = self.layout.address
        if address is None:
            return self._identity_in(chosen)
        planned = sa.select(self.plan.c[ADDRESS]).where(chosen).scalar_subquery()
        return address == sa.any_(sa.func.array(planned))

    def _identity_in(self, chosen: sa.ColumnElement[bool]) -> sa.ColumnElement[bool]:
        """The live table's rows whose identity is in the plan rows matching `chosen`."""
        p, layout = self.plan, self.layout
        planned = sa.select(*[p.c[label] for label in layout.identity_labels]).where(chosen)
        whole = (layout.identity[0].in_(planned) if len(layout.identity) == 1
                 else sa.tuple_(*layout.identity).in_(planned))
        if not layout.rules.identity_array_scan:
            return whole
        # `id = ANY(ARRAY(...))` is an index (or TID) scan whatever the planner thinks of the batch's size;
        # a join or `IN (subquery)` turns into a sequential scan of the whole table once a batch is a few
        # thousand rows (and `ctid IN (...)` always does). With a composite key it narrows the first column.
        first = sa.select(p.c[layout.identity_labels[0]]).where(chosen).scalar_subquery()
        narrowed = layout.identity[0] == sa.any_(sa.func.array(first))
        return narrowed if len(layout.identity) == 1 else sa.and_(narrowed, whole)

    def _identical(self, conn: Connection, in_batch: sa.ColumnElement[bool]) -> _Outcome:
        """MySQL/MariaDB without a primary key: delete all but one of fully identical rows, per group.

        The plan holds each group's row content (`Layout.copy_match`). A group's rows equal to it in every
        column (text compared as bytes, NULL-safe) are locked and counted in one statement; at least the
        planned number must be there and nobody may reference them. Then the extra copies are archived and
        deleted, both statements matching only rows equal to that content, with `LIMIT`: any copy is every
        copy, so what is deleted is exactly what was archived, and a row the application adds to the group
        meanwhile (READ COMMITTED neither locks nor counts it) is neither deleted nor archived.

        The DELETE leaves out the check's `where`: InnoDB reads a sub-select in an UPDATE's or DELETE's WHERE with
        shared locks even under READ COMMITTED (measured on MariaDB 10.11: an application's UPDATE of the
        sub-select's row waited for the batch), where the locking count and the archive's INSERT ... SELECT take
        none. The copies it matches are equal in every column, so the `where` says the same of each of them;
        had it changed since the count, the archive (which keeps it) copies another number and the batch stops."""
        p, layout = self.plan, self.layout
        outcome = _Outcome()
        for number, planned in conn.execute(sa.select(p.c[GROUP], p.c[SIZE]).where(in_batch)
                                            .order_by(p.c[GROUP])).all():
            one = p.c[GROUP] == number
            copies = self.table.join(p, sa.and_(layout.key_match(p), layout.copy_match(p), one))
            found = conn.execute(self._lock(sa.select(sa.func.count()).select_from(copies)
                                            .where(*layout.tc.filters))).scalar_one()
            if int(found) < planned or self._referenced(conn, copies):
                outcome.skipped += 1
                continue
            extra = int(planned) - 1
            archived = conn.execute(archive_rows(self.archive, self.table, self.fix_id,
                                                 sa.and_(one, *layout.tc.filters), limit=extra,
                                                 joined=copies)).rowcount
            deleted = conn.execute(sa.delete(self.table).where(*self._equal_to_copy(one))
                                   .with_dialect_options(mysql_limit=extra)).rowcount
            if archived != extra or deleted != extra:
                raise BatchAborted(f"group {number}: archived {archived} and deleted {deleted} rows, "
                                   f"expected {extra}")
            outcome.groups += 1
            outcome.archived += archived
            outcome.deleted += deleted
        return outcome

    def _equal_to_copy(self, one: sa.ColumnElement[bool]) -> list[sa.ColumnElement[bool]]:
        """A live row has the group's planned key and is equal to its planned copy, compared with values read
        from the plan by scalar subqueries (a DELETE with LIMIT names one table)."""
        p, layout = self.plan, self.layout
        planned: list[tuple[sa.ColumnElement[Any], sa.ColumnElement[Any]]] = [
            (expr, p.c[label]) for expr, label in zip(layout.tc.key_exprs, layout.key_labels, strict=True)]
        exact = for_backend(layout.dialect).exact
        planned += [(exact(column), exact(p.c[f"dw_c{j}"])) for j, column in enumerate(self.table.columns)]
        return [live.is_not_distinct_from(sa.select(stored).where(one).scalar_subquery()) for live, stored in planned]

    def _referenced(self, conn: Connection, members: sa.FromClause) -> bool:
        """Whether any row of another table holds the values of this group's rows: InnoDB applies ON DELETE
        to them even though an identical row stays."""
        for link in self.links:
            ref = link.ref
            holds = sa.and_(*[link.child.c[c] == self.table.c[r]
                              for c, r in zip(ref.columns, ref.referred_columns, strict=True)])
            if conn.execute(sa.select(sa.func.count()).select_from(members.join(link.child, holds))).scalar_one():
                return True
        return False


def _forget(conn: Connection, plan: sa.Table, skipped: list[int]) -> int:
    """Drop skipped groups from the plan (in the caller's transaction: a batch's, or the snapshot's for the groups
    the plan leaves out): what is left of a batch's range is exactly what gets repointed, archived and deleted,
    and a batch counts a group missing from its range as skipped. Returns the plan rows dropped."""
    dropped = 0
    for start in range(0, len(skipped), _IN_CHUNK):
        chunk = skipped[start:start + _IN_CHUNK]
        dropped += conn.execute(sa.delete(plan).where(plan.c[GROUP].in_(chunk))).rowcount
    return dropped


def repoint_statement(child: sa.Table, pk: list[sa.Column[Any]], fk: list[sa.Column[Any]]) -> sa.Update:
    """UPDATE child SET fk = :v* WHERE pk = :p* AND fk = :o* (executemany over the rows to move)."""
    return (sa.update(child)
            .where(*[c == sa.bindparam(f"p{j}") for j, c in enumerate(pk)],
                   *[c == sa.bindparam(f"o{j}") for j, c in enumerate(fk)])
            .values({c.name: sa.bindparam(f"v{j}") for j, c in enumerate(fk)}))


def list_fixes(monitor: Monitor, database: str | None = None) -> list[tuple[str, FixRecord]]:
    """Every recorded fix of the configured databases (or one), newest first, as (database, record)."""
    found: list[tuple[str, FixRecord]] = []
    names = [database] if database else sorted(monitor.config.databases)
    for name in names:
        db = monitor.database(name)
        try:
            with db.connect(db.bookkeeping) as conn, conn.begin():
                if records.has_tables(conn):
                    found.extend((name, r) for r in records.records(conn))
        except sa.exc.DBAPIError as exc:
            raise DatabaseError(db.describe(exc)) from None
    found.sort(key=lambda item: (item[1].created_at, item[1].fix_id), reverse=True)
    return found

