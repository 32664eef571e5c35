"""The rows of other tables that reference a deleted duplicate: repointed or archived, set-based, and undone.

Every statement joins the referencing table to the plan table in the database, so which rows point at a
deleted duplicate is decided by the database's own comparison rules (a `_ci` collation's `ROOT` points at
`root`; a `real` compares as stored) and no value travels through Python.

- **repoint**: the referencing rows are locked, logged into the fix's typed log table
  `dupewatch_repoint_<fix id>_<n>` (the child's primary key, the old and the new foreign-key values, each in
  the child's own column types, `INSERT ... SELECT`), then updated from that log; the update must touch exactly
  the logged rows. Undo runs the log backwards and refuses when a row was changed since.
- **archive**: the referencing rows are copied into the child's archive (`dupewatch_archive_<child>`, tagged with
  the fix id) and deleted, before their parents; undo restores them after their parents.

After either, no referencing row may point at a row the batch deletes (else the database's ON DELETE would
fire): `verify_clear` counts them, and the batch is rolled back if any is left. Which log or archive table a
fix used is recorded in `dupewatch_fix_reference`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from monitor.detect import split_table_name
from monitor.dialects import for_backend
from monitor.fix import archive, records
from monitor.fix.accounting import Planned, ddl_step
from monitor.fix.archive import (
    Copy,
    archive_rows,
    create_table_as,
    dropped_since,
    ensure_archive,
    reflect_archive,
    restore_rows,
)
from monitor.fix.catalog import ForeignKey, catalog_for
from monitor.fix.errors import BatchAborted, FixRefused, NestedRows, RepointNotDone
from monitor.fix.plan import GROUP, RANK, Layout, nested_references
from monitor.fix.records import reference_table, safe_identifier
from monitor.fix.refs import Reference, config_name, reflect
from monitor.words import command


@dataclass
class Link:
    """One reference of the fixed table as a fix treats it: the referencing table and its log or archive."""

    ref: Reference
    child: sa.Table
    log: sa.Table | None  # repoint: the typed log; archive: the child's archive; refuse/non-unique: None
    position: int = 0  # in `dupewatch_fix_reference`
    kept: tuple[str, ...] = ()  # columns an UPDATE would change by itself (ON UPDATE CURRENT_TIMESTAMP)
    digest: ColumnElement[Any] | None = None  # of the columns a repoint leaves alone (`_rest_digest`), logged

    def pointing(self, layout: Layout, plan: sa.FromClause) -> ColumnElement[bool]:
        """The child row points at the plan row (compared by the database)."""
        return sa.and_(*[self.ref.fk.refers(layout.dialect, self.child.c[c], plan.c[layout.ref_label[r]], j)
                         for j, (c, r) in enumerate(zip(self.ref.columns, self.ref.referred_columns, strict=True))])


def prepare_links(conn: Connection, layout: Layout, fix_id: str, schema: str | None) -> list[Link]:
    """The fix's links, creating their log and archive tables on its first run and recording them in
    `dupewatch_fix_reference`; a resumed fix finds them there. Call inside a transaction."""
    recorded = {row.position: row for row in conn.execute(
        sa.select(reference_table).where(reference_table.c.fix_id == fix_id))}
    links = []
    catalog = catalog_for(conn)
    for position, ref in enumerate(layout.refs):
        child = reflect(conn, ref.schema, ref.table)
        kept = catalog.auto_updated_columns(child) if ref.action == "repoint" else ()
        digest = _rest_digest(conn, child, ref.columns) if ref.action == "repoint" and ref.primary_key else None
        # Nothing to move: refused, not a unique reference, no row identity, or the table itself (its archive
        # is the fixed table's, whose rows undo restores already).
        if ref.action == "refuse" or not ref.referred_unique or layout.mode == "identical" or ref.self_reference:
            links.append(Link(ref, child, None, position))
            continue
        row = recorded.get(position)
        if row is not None:
            log_schema = schema if ref.action == "repoint" else records.place(conn, ref.schema)
            log = reflect(conn, log_schema, row.log_table)
            links.append(Link(ref, child, log, position, kept, digest if _DIGEST in log.c else None))
            continue
        if ref.action == "archive":
            log = ensure_archive(conn, child, records.place(conn, ref.schema), apart=records.home(conn) is not None)
        else:
            name = safe_identifier("dupewatch_repoint_", f"{fix_id}_{position}".replace("-", "_"))
            if sa.inspect(conn).has_table(name, schema=schema):
                # Left by a run of this fix refused after creating it where DDL commits at once (MySQL/MariaDB),
                # before its row above: this fix's own, and empty, since no batch ran without that row.
                log = reflect(conn, schema, name)
                if conn.execute(sa.select(sa.func.count()).select_from(log)).scalar_one():
                    raise FixRefused(f"repoint log table {name!r} of fix {fix_id} holds rows but is not recorded "
                                     "as this fix's: not used; move it away, then run the fix again")
            else:
                log = create_table_as(conn, name, schema, _log_shape(ref, child, digest))
                sa.Index(safe_identifier("", f"{name}_group"), log.c[GROUP]).create(conn)
        conn.execute(reference_table.insert().values(
            fix_id=fix_id, position=position, child_schema=ref.schema, child_table=ref.table,
            fk_columns=json.dumps(list(ref.columns)), referred_columns=json.dumps(list(ref.referred_columns)),
            action=ref.action, log_table=log.name))
        links.append(Link(ref, child, log, position, kept, digest))
    return links


def copies(links: list[Link]) -> list[Copy]:
    """The tables the links copy referencing rows' values into, each column to the child's column it copies: an
    archived child's archive (every column), a repoint log (`pk_<j>`, `old_<j>`, `new_<j>`)."""
    found = []
    for link in links:
        if link.log is None:
            continue
        if link.ref.action == "archive":
            found.append(Copy(link.log, link.child, {c.name: c.name for c in link.child.columns}))
            continue
        columns = {f"pk_{j}": c for j, c in enumerate(link.ref.primary_key)}
        columns |= {f"{side}_{j}": c for j, c in enumerate(link.ref.columns) for side in ("old", "new")}
        found.append(Copy(link.log, link.child, columns, "repoint log table"))
    return found


_DIGEST = "rest_digest"


def _rest_digest(conn: Connection, child: sa.Table, columns: tuple[str, ...] | list[str]) -> ColumnElement[Any] | None:
    """The database's digest of the columns of a referencing row that its repoint (or undo's point back) must
    leave as they are (all but the repointed `columns` and the generated ones), or None where a trigger cannot
    rewrite the row an UPDATE writes."""
    generated = catalog_for(conn).generated_columns(child)
    rest = [c for c in child.columns if c.name not in columns and c.name not in generated]
    return for_backend(conn.dialect.name).row_digest(rest)


def _log_shape(ref: Reference, child: sa.Table, digest: ColumnElement[Any] | None) -> sa.Select[Any]:
    """The repoint log's columns: the batch's group, the child's primary key, the old and new values, and the
    digest of the rest of the row before the repoint."""
    return sa.select(sa.cast(sa.literal(0), sa.BigInteger).label(GROUP),
                     *[child.c[c].label(f"pk_{j}") for j, c in enumerate(ref.primary_key)],
                     *[child.c[c].label(f"old_{j}") for j, c in enumerate(ref.columns)],
                     *[child.c[c].label(f"new_{j}") for j, c in enumerate(ref.columns)],
                     *([digest.label(_DIGEST)] if digest is not None else []))


def _lock_rows(conn: Connection, link: Link, statement: sa.Select[Any]) -> None:
    """Lock the child rows `statement` selects, so that the application cannot change them under the batch
    (PostgreSQL `FOR UPDATE OF child`, MySQL `FOR UPDATE`; SQLite's write transaction holds the database)."""
    rules = for_backend(conn.dialect.name)
    if rules.row_locks:
        conn.execute(rules.for_update(statement, link.child))


def apply(conn: Connection, layout: Layout, plan: sa.Table, link: Link, doomed: ColumnElement[bool],
          fix_id: str) -> int:
    """Repoint or archive the rows of `link` that point at the plan rows matching `doomed`; returns how many."""
    if link.log is None:
        return 0
    on = link.pointing(layout, plan)
    pk = [link.child.c[c] for c in (link.ref.primary_key or link.ref.columns)]
    _lock_rows(conn, link, sa.select(*pk).select_from(link.child).join(plan, on).where(doomed))
    moved = (_archive_children(conn, layout, plan, link, doomed, fix_id) if link.ref.action == "archive"
             else _repoint(conn, layout, plan, link, doomed))
    if moved:
        conn.execute(reference_table.update().where(reference_table.c.fix_id == fix_id,
                                                    reference_table.c.position == link.position)
                     .values(rows=reference_table.c.rows + moved))
    return moved


def _repoint(conn: Connection, layout: Layout, plan: sa.Table, link: Link, doomed: ColumnElement[bool]) -> int:
    ref, child, log = link.ref, link.child, link.log
    assert log is not None
    nested = nested_references(conn, child, child, plan, sa.and_(link.pointing(layout, plan), doomed),
                               changed=ref.columns)
    if nested:
        label, count = next(iter(nested.items()))
        raise BatchAborted(f"{count} row(s) of {label} now refer to the {ref.table} columns the repoint changes")
    keeper = plan.alias("dupewatch_keeper")
    digest = [link.digest] if link.digest is not None else []
    rows = (sa.select(plan.c[GROUP], *[child.c[c] for c in ref.primary_key], *[child.c[c] for c in ref.columns],
                      *[keeper.c[layout.ref_label[r]] for r in ref.referred_columns], *digest)
            .select_from(child).join(plan, link.pointing(layout, plan))
            .join(keeper, sa.and_(keeper.c[GROUP] == plan.c[GROUP], keeper.c[RANK] == 1)).where(doomed))
    names = [GROUP, *[f"pk_{j}" for j in range(len(ref.primary_key))],
             *[f"old_{j}" for j in range(len(ref.columns))], *[f"new_{j}" for j in range(len(ref.columns))],
             *([_DIGEST] if digest else [])]
    logged = conn.execute(sa.insert(log).from_select(names, rows).execution_options(preserve_rowcount=True)).rowcount
    if not logged:
        return 0
    batch = sa.select(plan.c[GROUP]).where(doomed)
    update = (sa.update(child)
              .where(*[child.c[c] == log.c[f"pk_{j}"] for j, c in enumerate(ref.primary_key)],
                     *[child.c[c] == log.c[f"old_{j}"] for j, c in enumerate(ref.columns)],
                     log.c[GROUP].in_(batch))
              .values({**_unchanged(child, link.kept), **{child.c[c]: log.c[f"new_{j}"]
                                                         for j, c in enumerate(ref.columns)}}))
    moved = conn.execute(for_backend(conn.dialect.name).abort_on_conflict(update)).rowcount
    if moved != logged:
        raise RepointNotDone(f"repointed {moved} row(s) of {ref.label}, expected {logged}: a row changed meanwhile, or "
                           f"{_TRIGGER_HINT.format(table=ref.table)}")
    if link.digest is not None:
        _rewritten(conn, link, batch)
    return int(logged)


def _rewritten(conn: Connection, link: Link, batch: sa.Select[Any]) -> None:
    """Raise when the repoint's UPDATE changed more than the repointed columns of a row (a BEFORE UPDATE trigger
    setting `NEW.updated_at`): the database's digest of the rest of each row, logged before, compared after."""
    ref, child, log = link.ref, link.child, link.log
    assert log is not None and link.digest is not None
    # The row by its primary key, a repointed key column by its new value (as undo finds it).
    found = [child.c[c] == log.c[f"new_{ref.columns.index(c)}" if c in ref.columns else f"pk_{j}"]
             for j, c in enumerate(ref.primary_key)]
    changed = conn.execute(sa.select(sa.func.count()).select_from(child).join(log, sa.and_(*found))
                           .where(log.c[GROUP].in_(batch), link.digest != log.c[_DIGEST])).scalar_one()
    if changed:
        fired = catalog_for(conn).fired_on(child, "UPDATE", tuple(ref.columns))
        by = f" ({', '.join(fired)})" if fired else ""
        raise RepointNotDone(f"the repoint of {ref.label} changed other columns of {changed} row(s) as well: a BEFORE "
                             f"UPDATE trigger or an UPDATE rule of {ref.table}{by} rewrites the rows it updates, which "
                             "undo could not put back (running the fix again meets it again: disable it for the fix)")


def _archive_children(conn: Connection, layout: Layout, plan: sa.Table, link: Link, doomed: ColumnElement[bool],
                      fix_id: str) -> int:
    ref, child, archive = link.ref, link.child, link.log
    assert archive is not None
    on = link.pointing(layout, plan)
    nested = nested_references(conn, child, child, plan, sa.and_(on, doomed))
    if nested:
        label, count = next(iter(nested.items()))
        raise NestedRows(count, label, ref.label, ref.table, config_name(ref))
    archived = conn.execute(archive_rows(archive, child, fix_id, doomed, joined=child.join(plan, on))).rowcount
    deleted = conn.execute(delete_joined(conn, child, plan, sa.and_(on, doomed))).rowcount
    if archived != deleted:
        raise BatchAborted(f"archived {archived} row(s) of {ref.label} but deleted {deleted}")
    return int(deleted)


# A repoint the database did not do as planned: a concurrent writer (resuming helps), or something of the referencing
# table that rewrites or cancels the update, which resuming meets again.
_TRIGGER_HINT = ("a BEFORE UPDATE trigger or an UPDATE rule of {table} changed or cancelled the repoint (running the "
                 "fix again meets it again: disable it for the fix)")


def delete_joined(conn: Connection, table: sa.Table, other: sa.FromClause, where: ColumnElement[bool]) -> sa.Delete:
    """DELETE the rows of `table` that have a match in `other`: a join where the database has one
    (`DELETE ... USING`), which the optimiser drives from the small side; SQLite: `EXISTS`."""
    if not for_backend(conn.dialect.name).delete_using:
        return sa.delete(table).where(sa.exists().select_from(other).where(where))
    return sa.delete(table).where(where)


def verify_clear(conn: Connection, layout: Layout, plan: sa.Table, links: list[Link],
                 doomed: ColumnElement[bool]) -> None:
    """No referencing row points at a row about to be deleted (its ON DELETE would fire otherwise)."""
    for link in links:
        left = conn.execute(sa.select(sa.func.count()).select_from(link.child)
                            .join(plan, link.pointing(layout, plan)).where(doomed)).scalar_one()
        if left:
            ref = link.ref
            why = ("it refers to a column that is not unique" if not ref.referred_unique
                   else "its on_reference is \"refuse\"" if ref.action == "refuse"
                   else f"after the repoint: a row changed meanwhile, or {_TRIGGER_HINT.format(table=ref.table)}")
            cascade = f"; its ON DELETE {ref.ondelete} would fire" if ref.cascades else ""
            error = RepointNotDone if ref.referred_unique and ref.action != "refuse" else BatchAborted
            raise error(f"{left} row(s) of {ref.label} still point at rows to delete ({why}){cascade}")


def drop_empty_logs(conn: Connection, fix_id: str, schema: str | None) -> None:
    """Once a fix is done, the repoint logs it wrote nothing to (one was created per foreign key) are dropped
    with their entry, so a fix leaves a log in the application's schema only for a reference it repointed.
    The entry goes first: a crash in between leaves an empty table, never an entry without its log."""
    with conn.begin():
        entries = conn.execute(sa.select(reference_table).where(reference_table.c.fix_id == fix_id,
                                                                reference_table.c.action == "repoint")).all()
    for entry in entries:
        with conn.begin():
            log = sa.Table(entry.log_table, sa.MetaData(), schema=schema)
            if not sa.inspect(conn).has_table(entry.log_table, schema=schema):
                continue
            if conn.execute(sa.select(sa.func.count()).select_from(log)).scalar_one():
                continue
            conn.execute(reference_table.delete().where(reference_table.c.fix_id == fix_id,
                                                        reference_table.c.position == entry.position))
        step = f"fix {fix_id} (done; dropping its empty log {entry.log_table})"
        with ddl_step(conn, for_backend(conn.dialect.name), step):
            log.drop(conn, checkfirst=True)


# -- undo -------------------------------------------------------------------------------------------


def children_archived(conn: Connection, fix_id: str) -> int:
    """Referencing rows a fix archived with their parents (on_reference = "archive")."""
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.sum(reference_table.c.rows), 0))
                            .where(reference_table.c.fix_id == fix_id,
                                   reference_table.c.action == "archive")).scalar_one())


def undo_links(conn: Connection, fix_id: str, schema: str | None, planned: Planned,
               fired: list[str], held: list[Held], left: dict[str, list[str]] | None = None) -> tuple[int, int]:
    """Undo a fix's repoints and restore its archived referencing rows (after the parents are back);
    returns (rows pointed back, rows restored), adding each table's rows to `planned` (undo's account), the
    triggers and rules those writes fire to `fired`, the rows a NO ACTION or RESTRICT foreign key holds to
    the values undo changes to `held` (`_refuse_referred`), and to `left` the columns a referencing table no
    longer has, by the archive that keeps their values (`archive.dropped_since`). Raises `FixRefused` if a
    repointed row changed since."""
    pointed = restored = 0
    catalog = catalog_for(conn)
    entries = conn.execute(sa.select(reference_table).where(reference_table.c.fix_id == fix_id)
                           .order_by(reference_table.c.position)).all()
    archives_done: set[tuple[str | None, str]] = set()
    pending: list[_PointBack] = []
    for entry in entries:
        columns = json.loads(entry.fk_columns)
        child = undo_target(conn, entry.child_schema, entry.child_table, fix_id, columns,
                            "whose rows it repointed" if entry.action == "repoint" else "whose rows it archived")
        if entry.action == "archive":
            where = (records.place(conn, entry.child_schema), entry.log_table)
            if where not in archives_done:  # two references from one table share its archive
                archives_done.add(where)
                fired += catalog.fired_on(child, "INSERT")
                kept = reflect(conn, *where)
                rows = restore_rows(conn, kept, child, fix_id)
                if rows and left is not None and (gone := dropped_since(conn, kept, child, fix_id)):
                    left[kept.name] = gone
                planned.inserted(child, rows)
                restored += rows
            continue
        fired += catalog.fired_on(child, "UPDATE", tuple(columns))
        log = reflect(conn, schema, entry.log_table)
        _refuse_referred(conn, child, columns, log, fix_id, held)
        expected = conn.execute(sa.select(sa.func.count()).select_from(log)).scalar_one()
        moved = _point_back(conn, child, columns, log, fix_id, expected)
        pending.append(_PointBack(child, columns, log, expected, moved))
    # A row whose primary key holds the columns of two repointed references (`friendship(from_id, to_id)`, both
    # ends duplicates) is found by each log at the key it had when that reference moved it: it comes back one
    # reference at a time, the last moved first, whatever the order of the logs, so those still missing rows are
    # pointed back again until none moves.
    while (waiting := [p for p in pending if p.moved < p.expected]) and any(
            [_again(conn, p, fix_id) for p in reversed(waiting)]):
        pass
    for p in pending:
        if p.moved != p.expected:
            raise FixRefused(f"undo of fix {fix_id} refused, nothing changed: {p.expected - p.moved} of the "
                             f"{p.expected} row(s) of {p.child.name}({', '.join(p.columns)}) it repointed are no "
                             "longer as it left them, so it cannot point them back (undo restores all of a fix or "
                             f"nothing): {_not_as_left(conn, p.child, p.columns, p.log, fix_id, p.expected - p.moved)}")
        planned.updated(p.child, p.moved)
        pointed += p.moved
    return pointed, restored


@dataclass
class _PointBack:
    """One repoint log undo points back: its table, columns and log, how many rows the log holds, how many are back."""

    child: sa.Table
    columns: list[str]
    log: sa.Table
    expected: int
    moved: int


def _again(conn: Connection, p: _PointBack, fix_id: str) -> int:
    """Point back the rows of `p` found now; how many."""
    moved = _point_back(conn, p.child, p.columns, p.log, fix_id, p.expected)
    p.moved += moved
    return moved


def undo_target(conn: Connection, schema: str | None, name: str, fix_id: str, columns: list[str],
                what: str) -> sa.Table:
    """A table undo writes back into, reflected; refuses (nothing changed) when it, or one of `columns`, is gone
    since the fix (dropped or renamed by a migration): what it would put back has nowhere to go."""
    try:
        table = reflect(conn, schema, name)
    except sa.exc.NoSuchTableError:
        raise FixRefused(f"undo of fix {fix_id} refused, nothing changed: table {name!r}, {what}, no longer "
                         "exists (dropped or renamed since the fix); restore it under its name for the undo") from None
    if missing := [c for c in columns if c not in table.c]:
        raise FixRefused(f"undo of fix {fix_id} refused, nothing changed: table {name!r}, {what}, no longer has "
                         f"column(s) {', '.join(missing)} (dropped or renamed since the fix); give them back for "
                         "the undo")
    return table


def _unchanged(child: sa.Table, kept: tuple[str, ...]) -> dict[Any, Any]:
    """`SET ts = ts` for each column the database would otherwise set on UPDATE (MySQL/MariaDB: an
    auto-updated column explicitly set to its current value is left alone)."""
    return {child.c[name]: child.c[name] for name in kept}


def _logged(child: sa.Table, columns: list[str], log: sa.Table) -> ColumnElement[bool]:
    """The child row is one the repoint log holds, as the repoint left it (pointing at the kept row). A primary
    key column that is also a repointed column (a link table keyed by `(user_id, group_id)`) was changed by the
    repoint: the row is found by its new value, logged beside the old key."""
    pk = list(child.primary_key.columns)
    return sa.and_(*[c == log.c[f"new_{columns.index(c.name)}" if c.name in columns else f"pk_{j}"]
                     for j, c in enumerate(pk)],
                   *[child.c[c] == log.c[f"new_{j}"] for j, c in enumerate(columns)])


def _refuse_referred(conn: Connection, child: sa.Table, columns: list[str], log: sa.Table, fix_id: str,
                     held: list[Held]) -> None:
    """Refuse (nothing changed) when rows of another table refer, by a foreign key over a column undo points
    back whose ON UPDATE writes (CASCADE, SET NULL, SET DEFAULT, or an action the catalog does not show), to a
    row it points back (rows referring to the kept value, written since the fix): that action would change them
    one level down, where undo's plan does not reach, and InnoDB's foreign key actions are in no counter of
    MariaDB's account (`Handler_*`). Under NO ACTION or RESTRICT the database changes nothing else, it refuses
    the point back while such a row refers to the old value: that is left to it, and the key and its rows are
    added to `held` for the refusal's message (`Held`); unless the session does not check foreign keys (SQLite's
    `PRAGMA foreign_keys` off, its default; MySQL `foreign_key_checks = 0`), where the rows would be left
    referring to a value no row has: refused. The rows to point back are locked first, so that no such
    row is added before undo commits. Refuses as well when the role may not see every foreign key to the table
    (MariaDB's information_schema hides those of tables it has no privilege on: `Dialect.unseen_references`)."""
    if not conn.execute(sa.select(sa.func.count()).select_from(log)).scalar_one():
        return
    rules = for_backend(conn.dialect.name)
    if unseen := rules.unseen_references(conn, child):
        raise FixRefused(f"undo of fix {fix_id} refused, nothing changed: it would point rows of {child.name!r} "
                         f"back, and {unseen}")
    logged = _logged(child, columns, log)
    if rules.row_locks:
        conn.execute(rules.for_update(sa.select(*child.primary_key.columns).select_from(child).join(log, logged),
                                      child))
    enforced = rules.enforces_foreign_keys(conn)
    for fk in catalog_for(conn).foreign_keys_to(child):
        if not set(columns) & set(fk.referred_columns):
            continue
        grand = reflect(conn, fk.schema, fk.table).alias("dupewatch_grandchild")
        holds = sa.and_(*[fk.refers(conn.dialect.name, grand.c[c], child.c[r], j)
                          for j, (c, r) in enumerate(zip(fk.columns, fk.referred_columns, strict=True))])
        rows = conn.execute(sa.select(sa.func.count()).select_from(grand).join(child, holds).join(log, logged)
                            ).scalar_one()
        if not rows:
            continue
        if not fk.update_writes and enforced:
            held.append(Held(fk, child.name, int(rows)))
            continue
        if not fk.update_writes:
            raise FixRefused(
                f"undo of fix {fix_id} refused, nothing changed: {rows} row(s) of {fk.label} refer to rows of "
                f"{child.name!r} undo would point back (by foreign key {fk.name or '(unnamed)'} ON UPDATE "
                f"{fk.onupdate}), and the database does not check foreign keys on undo's connection, so they would "
                "be left referring to a value no row has; point those rows elsewhere or delete them, then undo again")
        action = f"ON UPDATE {fk.onupdate}" if fk.onupdate else "ON UPDATE action (which the catalog does not show)"
        raise FixRefused(
            f"undo of fix {fix_id} refused, nothing changed: {rows} row(s) of {fk.label} refer to rows of "
            f"{child.name!r} undo would point back (by foreign key {fk.name or '(unnamed)'} on "
            f"{child.name}({', '.join(fk.referred_columns)})): its {action} would change them, which undo "
            "cannot account for; point those rows elsewhere or delete them, then undo again")


def _not_as_left(conn: Connection, child: sa.Table, columns: list[str], log: sa.Table, fix_id: str,
                 unmatched: int) -> str:
    """Who changed the repointed rows undo cannot find as the fix left them (`unmatched` of them), by count, no
    row's value: another dupewatch fix, whose archive (it deleted them) or repoint log (it repointed them again)
    holds them, named with the undo to run first; the rest, changed or deleted by something else, with the log
    that lists them by primary key."""
    try:
        return _who_changed(conn, child, columns, log, fix_id, unmatched)
    except (sa.exc.SQLAlchemyError, KeyError):  # only a better message, never in place of the refusal
        return (f"changed or deleted since the fix; the fix's log {log.name} lists the rows it repointed by primary "
                "key with the values it set; put those rows back as the fix left them and undo again, or keep this "
                "fix")


def _who_changed(conn: Connection, child: sa.Table, columns: list[str], log: sa.Table, fix_id: str,
                 unmatched: int) -> str:
    pk = list(child.primary_key.columns)
    left = sa.and_(*[child.c[c] == log.c[f"new_{j}"] for j, c in enumerate(columns)])

    def by_key(other: sa.Table, logged_key: bool) -> ColumnElement[bool]:
        """`other`'s row is the logged row, by primary key (`logged_key`: `other` is a log, holding it as pk_j)."""
        return sa.and_(*[(other.c[f"pk_{j}"] if logged_key else other.c[c.name])
                         == log.c[f"new_{columns.index(c.name)}" if c.name in columns else f"pk_{j}"]
                         for j, c in enumerate(pk)])

    # Not found as the fix left it, nor as this undo's UPDATE, which ran already, pointed it back.
    back = sa.and_(*[c == log.c[f"pk_{j}"] for j, c in enumerate(pk)],
                   *[child.c[c] == log.c[f"old_{j}"] for j, c in enumerate(columns)])
    gone = sa.and_(~sa.exists().select_from(child).where(by_key(child, False), left),
                   ~sa.exists().select_from(child).where(back))
    held: dict[tuple[str, bool, str], int] = {}
    for other, by, logged_key in _copies_of(conn, child, fix_id):
        if any((f"pk_{j}" if logged_key else c.name) not in other.c for j, c in enumerate(pk)):
            continue  # (an archive of the table from before a key column was dropped or renamed)
        tagged = other.c[archive.FIX_ID_COLUMN] == by if not logged_key else sa.true()
        rows = conn.execute(sa.select(sa.func.count()).select_from(log).where(
            gone, sa.exists().select_from(other).where(by_key(other, logged_key), tagged))).scalar_one()
        if rows:
            held[(by, logged_key, other.name)] = int(rows)
    said = [f"{rows} repointed again by fix {by} (its log {name} holds them)" if logged_key else
            f"{rows} deleted by fix {by}, which archived them in {name}"
            for (by, logged_key, name), rows in sorted(held.items())]
    if held:
        first = sorted({by for by, _logged, _name in held}, reverse=True)  # the newest first
        said[-1] += (f": undo {'it' if len(first) == 1 else 'them'} first ("
                     f"{', then '.join('`' + command('undo', by) + '`' for by in first)}), then undo this fix again")
    changed = conn.execute(sa.select(sa.func.count()).select_from(log).where(
        gone, sa.exists().select_from(child).where(by_key(child, False)))).scalar_one()
    again = sum(rows for (_by, logged_key, _name), rows in held.items() if logged_key)
    rest = {"changed": max(int(changed) - again, 0),
            "deleted": max(unmatched - int(changed) - (sum(held.values()) - again), 0)}  # (`unmatched`: counted
    # by the UPDATE itself, exact where the rows' own state is not: a row moved back to its old value by hand)
    if any(rest.values()):
        counts = " and ".join(f"{n} {what}" for what, n in rest.items() if n)
        said.append(f"{counts} since by something else than a dupewatch fix: the fix's log {log.name} lists the "
                    f"rows it repointed by primary key with the values it set; put those rows back as the fix left "
                    "them and undo again, or keep this fix")
    return "; ".join(said)


def _copies_of(conn: Connection, child: sa.Table, fix_id: str) -> list[tuple[sa.Table, str, bool]]:
    """The archives and repoint logs of the fixes made after `fix_id` (not undone or purged since) that may hold
    rows of `child`: (table, fix id, whether it is a repoint log). An archive holds each fix's rows tagged with
    its id; a fix's repoint logs live beside its table (`records.place`)."""
    found: list[tuple[sa.Table, str, bool]] = []
    mine = records.get_record(conn, fix_id)
    seen: set[tuple[str | None, str, str]] = set()

    def add(schema: str | None, name: str, other: str, logged: bool) -> None:
        if (schema, name, other) in seen:  # two references from one table share its archive
            return
        seen.add((schema, name, other))
        table = reflect_archive(conn, schema, name)
        if table is not None and (logged or archive.FIX_ID_COLUMN in table.c):
            found.append((table, other, logged))

    for record in records.records(conn):
        if mine is None or record.created_at <= mine.created_at or record.state in ("undone", "purged"):
            continue
        schema, name = split_table_name(record.table_name)
        if name == child.name and schema in (None, child.schema):
            add(records.place(conn, child.schema), record.archive_table, record.fix_id, False)
        for entry in conn.execute(sa.select(reference_table).where(reference_table.c.fix_id == record.fix_id,
                                                                   reference_table.c.child_table == child.name)):
            if entry.child_schema not in (None, child.schema):
                continue
            if entry.action == "archive":
                add(records.place(conn, entry.child_schema), entry.log_table, record.fix_id, False)
            else:
                add(records.place(conn, schema), entry.log_table, record.fix_id, True)
    return found


@dataclass(frozen=True)
class Held:
    """Rows referring, by a foreign key whose ON UPDATE is NO ACTION or RESTRICT, to rows of `child` that undo
    points back: the database refuses the point back while they refer to the value it changes."""

    fk: ForeignKey
    child: str
    rows: int

    def describe(self) -> str:
        return (f"{self.rows} row(s) of {self.fk.label} refer to rows of {self.child!r} undo would point back, by "
                f"foreign key {self.fk.name or '(unnamed)'} ON UPDATE {self.fk.onupdate}")


def _point_back(conn: Connection, child: sa.Table, columns: list[str], log: sa.Table, fix_id: str,
                expected: int) -> int:
    """Point back the rows of `log` found as the fix left them (`_logged`); how many. Refuses when the point back
    changed their other columns too."""
    pk = list(child.primary_key.columns)
    if not expected:
        return 0
    back = (sa.update(child)
            .where(_logged(child, columns, log))
            .values({**_unchanged(child, catalog_for(conn).auto_updated_columns(child)),
                     **{child.c[c]: log.c[f"old_{j}"] for j, c in enumerate(columns)}}))
    # The rows' other columns must be after the point back as they were before it (a BEFORE UPDATE trigger enabled
    # since the fix would rewrite them): each row's digest read before and after, in this transaction.
    digest = _rest_digest(conn, child, columns) if pk else None
    keys = [log.c[f"pk_{j}"] for j in range(len(pk))]
    found_now = [c == log.c[f"new_{columns.index(c.name)}" if c.name in columns else f"pk_{j}"]
                 for j, c in enumerate(pk)]
    found_back = [c == log.c[f"pk_{j}"] for j, c in enumerate(pk)]
    before = None if digest is None else _rest_digests(conn, child, log, found_now, keys, digest)
    moved = conn.execute(for_backend(conn.dialect.name).abort_on_conflict(back)).rowcount
    # (compared over the rows this statement moved: those an earlier one pointed back are found back too)
    after = None if digest is None else _rest_digests(conn, child, log, found_back, keys, digest)
    if after is not None and before is not None and {k: after.get(k) for k in before} != before:
        fired = catalog_for(conn).fired_on(child, "UPDATE", tuple(columns))
        by = f" ({', '.join(fired)})" if fired else ""
        raise FixRefused(f"undo of fix {fix_id} refused, nothing changed: pointing the rows of {child.name!r} back "
                         f"changed their other columns as well: a BEFORE UPDATE trigger or an UPDATE rule of "
                         f"{child.name}{by} rewrites the rows it updates; disable it for the undo")
    return int(moved)


def _rest_digests(conn: Connection, child: sa.Table, log: sa.Table, found: list[ColumnElement[bool]],
                  keys: list[sa.Column[Any]], digest: ColumnElement[Any]) -> dict[tuple[Any, ...], Any]:
    """Each logged row's digest of its other columns, by the primary key the log holds, as this transaction reads
    it. Compared before and after the point back in one session, so the session settings that shape a value's
    text (TimeZone, DateStyle, extra_float_digits; MariaDB's time_zone) cannot make them differ or agree by
    themselves, as a digest the fix's session logged could."""
    return {tuple(row[:-1]): row[-1] for row in conn.execute(
        sa.select(*keys, digest).select_from(child).join(log, sa.and_(*found)))}
