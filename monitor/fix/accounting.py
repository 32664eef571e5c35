"""The database's own account of a fix batch: what the transaction changed, table by table, against the plan.

A batch reasons from what the fix role can see; the database may do more than that: a cascade into rows that
row-level security hides, a trigger writing elsewhere, a rule, a foreign key action on a table the role cannot
list. So before a batch commits, the fix asks the database what it changed and rolls the batch back on anything
the plan did not say. The counts are read before the batch's first statement and again after its last one, in
the same transaction (see `Dialect.changes_so_far`):

- PostgreSQL `pg_stat_xact_user_tables`: per table, inserted, updated and deleted rows of this transaction;
- SQLite `total_changes()`: every row changed by this connection, trigger bodies and foreign key actions
  included, in one count (the batch's own tables are all it may change, so the total must equal the plan's);
- MariaDB/MySQL `Handler_write`, `Handler_update`, `Handler_delete`: the session's row writes, triggers
  included; InnoDB's foreign key actions (ON DELETE and ON UPDATE CASCADE, SET NULL) are not counted there
  (MariaDB 10.11, measured), so none may fire: the plan refuses up front when the fix role cannot see every
  foreign key to the fixed table or to a referencing table it repoints or archives (`Dialect.unseen_references`),
  each batch verifies that no referencing row is left pointing at a row it deletes (`links.verify_clear`) and
  that no row one level down refers to a row it archives, or by a foreign key whose ON UPDATE writes to a row it
  repoints (`plan.nested_references`), and undo refuses to point back a row another row refers to by such a key
  (`links.undo_links`); under ON UPDATE NO ACTION or RESTRICT the database writes nothing there, it refuses.

The fix's, undo's and guard's DDL (plan, archive and log tables, their indexes and grants, the guard) fires what
the database attaches to DDL (PostgreSQL event triggers: an unfiltered `ddl_command_end` trigger of an audit log
wrote 22 rows during one fix). Each transaction running that DDL settles its own account (`ddl_step`): a row
written in a table the step does not write itself rolls the step back, and the fix, undo or guard stops naming the
event triggers that fire (`Dialect.ddl_triggers`). Triggers that write nothing (a NOTIFY) pass.

What a batch plans (`Planned`): the deletes on the fixed table and their archive inserts, the repoint
updates on referencing tables and their log inserts, on_reference = "archive" deletes and archive inserts,
the update of each used row of `dupewatch_fix_reference`, the deletes of skipped groups from the plan table.
Anything else (a cascade, a SET NULL, a trigger's write) is unplanned: `settle` raises `BatchAborted` naming
the table and the count, and the caller rolls the whole batch back.

Undo (`undo.py`) settles the same account for its one transaction: it plans the rows it inserts into the fixed
table and each archived referencing table, the rows it points back, and the update of the fix's record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from monitor.dialects import Dialect
from monitor.dialects.base import (
    ALL_TABLES,
    CATALOG_CHANGED,
    DELETED,
    FOREIGN_WRITTEN,
    INSERTED,
    TRUNCATED,
    UNCOUNTED_KINDS,
    UPDATED,
)
from monitor.fix.errors import BatchAborted, FixRefused

NOTHING_KEPT = "; nothing of this batch was kept"  # what a batch's refusal says of the rolled-back batch


class UnplannedChange(BatchAborted):
    """The database changed rows the plan did not: running the fix again would do the same."""


class Planned:
    """The rows a batch means to change, per table and kind (`inserted`, `updated`, `deleted`)."""

    def __init__(self) -> None:
        self.rows: Counter[tuple[sa.Table, str]] = Counter()

    def inserted(self, table: sa.Table, rows: int) -> None:
        self.rows[(table, INSERTED)] += rows

    def updated(self, table: sa.Table, rows: int) -> None:
        self.rows[(table, UPDATED)] += rows

    def deleted(self, table: sa.Table, rows: int) -> None:
        self.rows[(table, DELETED)] += rows


class BatchAccount:
    """The database's change counts when a batch began; `settle` compares what it changed since with the plan."""

    def __init__(self, conn: Connection, rules: Dialect, suspects: Iterable[str] = (),
                 names: dict[tuple[sa.Table, str], tuple[tuple[str, str], ...]] | None = None, *,
                 subject: str = "this batch", kept: str = NOTHING_KEPT) -> None:
        self.rules = rules
        self.suspects = list(suspects)  # what may act unseen, named where the database counts no table
        self.subject, self.kept = subject, kept  # what is accounted for (undo's transaction), and what is kept
        self.before = rules.changes_so_far(conn)
        # (table, kind) -> the counts a planned row of that kind is counted under (shareable between batches)
        self._names = {} if names is None else names
        self._own: Counter[tuple[str, str]] = Counter()  # what the caller's own DDL changed (`own_ddl`)

    @contextmanager
    def own_ddl(self, conn: Connection, *targets: sa.Table) -> Iterator[None]:
        """DDL of dupewatch's own on `targets` inside the accounted transaction (undo's drop of the plan table, of
        the guard on the fixed table): the system catalog rows it changes and the ACCESS EXCLUSIVE locks it holds
        on `targets` are planned; rows it writes in user tables and another table locked exclusively (an event
        trigger's TRUNCATE) are not."""
        if self.before is None:
            yield
            return
        mine = {self.rules.counted_as(conn, t) for t in targets}  # (before the DDL: a dropped table has no name)
        start = self.rules.changes_so_far(conn) or {}
        yield
        end = self.rules.changes_so_far(conn) or {}
        for key, rows in end.items():
            if key[1] == TRUNCATED and key[0] not in mine:
                continue
            if key[1] in UNCOUNTED_KINDS and rows > start.get(key, 0):
                self._own[key] += rows - start.get(key, 0)

    def settle(self, conn: Connection, planned: Planned) -> None:
        """Raise `UnplannedChange` when the database counted a change the plan does not hold."""
        if self.before is None:
            return
        self.rules.fire_deferred(conn)  # else what the database defers to COMMIT would write uncounted
        after = self.rules.changes_so_far(conn) or {}
        done = Counter({key: rows - self.before.get(key, 0) for key, rows in after.items()})
        expected: Counter[tuple[str, str]] = Counter(self._own)
        for (table, kind), rows in planned.rows.items():
            for counted in self._counted_under(conn, table, kind):
                expected[counted] += rows
        # what no row count shows named first (a truncated table also changes pg_class), then a table the plan
        # does not write, then a system catalog
        wrong = sorted((key for key in set(done) | set(expected) if done[key] != expected[key]),
                       key=lambda k: (k[1] not in (TRUNCATED, FOREIGN_WRITTEN), k[1] == CATALOG_CHANGED,
                                      expected[k] > 0, k))
        if wrong:
            first = wrong[0]
            raise UnplannedChange(self._describe(first, done[first], expected[first], planned))

    def _counted_under(self, conn: Connection, table: sa.Table, kind: str) -> tuple[tuple[str, str], ...]:
        if (table, kind) not in self._names:
            self._names[(table, kind)] = self.rules.counted_under(conn, table, kind)
        return self._names[(table, kind)]

    def _describe(self, key: tuple[str, str], done: int, expected: int, planned: Planned) -> str:
        table, kind = key
        if kind == TRUNCATED:
            return (f"a trigger (or a rule) truncated {table}, or altered or locked it exclusively (the transaction "
                    "holds ACCESS EXCLUSIVE on it), which removes rows the database does not count as deleted"
                    f"{self._what_fired()}{self.kept}")
        if kind == FOREIGN_WRITTEN:
            return (f"a trigger (or a rule) wrote to foreign table {table}, whose changes the database cannot count "
                    f"(they are another server's rows){self._what_fired()}{self.kept}")
        if kind == CATALOG_CHANGED:
            return (f"the database counted {done} row(s) changed in system catalog {table}, the plan {expected}: "
                    "something the fix cannot see changed the schema or a large object (a trigger's DDL, TRUNCATE "
                    f"or lo_unlink){self._what_fired()}{self.kept}")
        what = "row(s) changed" if kind not in (INSERTED, UPDATED, DELETED) else f"row(s) {kind}"
        if table != ALL_TABLES:
            return (f"the database counted {done} {what} in {table}, the plan {expected}: something the fix "
                    "cannot see acted on it (a cascade, a trigger, a rule, or rows row-level security hides)"
                    f"{self.kept}")
        written = sorted({t.name for (t, _k), rows in planned.rows.items() if rows})
        suspects = f"; what may have done it: {', '.join(self.suspects)}" if self.suspects else ""
        return (f"the database counted {done} {what} in {self.subject}, the plan {expected} (in "
                f"{', '.join(written)}): something the fix cannot see wrote other rows (a trigger or a foreign "
                f"key action){suspects}{self.kept}")

    def _what_fired(self) -> str:
        return f"; what may have done it: {', '.join(self.suspects)}" if self.suspects else ""



class UnplannedDdlWrite(FixRefused):
    """A row written while the fix, undo or guard ran its DDL, in a table that step does not write: rolled back."""


class DdlAccount:
    """The database's change counts when a DDL step began, where something may fire on DDL
    (`Dialect.ddl_fires_triggers`); `settle` refuses a row changed in any table but those the step `writes`."""

    def __init__(self, conn: Connection, rules: Dialect, step: str) -> None:
        self.rules, self.step = rules, step
        self.written: list[sa.Table] = []
        self.before = rules.changes_so_far(conn) if rules.ddl_fires_triggers else None

    def writes(self, *tables: sa.Table) -> None:
        """The step's own writes (the plan table it fills, the fix's record it updates): counted as planned."""
        self.written.extend(tables)

    def settle(self, conn: Connection) -> None:
        if self.before is None:
            return
        self.rules.fire_deferred(conn)
        after = self.rules.changes_so_far(conn) or {}
        own = {self.rules.counted_as(conn, table) for table in self.written}
        # (the step's DDL itself changes system catalogs and takes ACCESS EXCLUSIVE: only rows written count here)
        extra = sorted((key, rows - self.before.get(key, 0)) for key, rows in after.items()
                       if key[0] not in own and key[1] not in UNCOUNTED_KINDS and rows > self.before.get(key, 0))
        if not extra:
            return
        counted = ", ".join(f"{rows} row(s) {kind} in {table}" for (table, kind), rows in extra)
        fired = self.rules.ddl_triggers(conn) or "something fires on DDL that the catalog does not name"
        raise UnplannedDdlWrite(f"{self.step} stopped: the database counted {counted} while it ran its DDL, in "
                                f"tables it does not write; {fired}; nothing of that step was committed")


@contextmanager
def ddl_step(conn: Connection, rules: Dialect, step: str) -> Iterator[DdlAccount]:
    """A transaction on `conn` running DDL (`step` names it for the operator), whose account is settled before it
    commits: a row written elsewhere than the step's own `writes` (an event trigger's) rolls it all back."""
    with conn.begin():
        account = DdlAccount(conn, rules, step)
        yield account
        account.settle(conn)
