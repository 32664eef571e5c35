"""PostgreSQL's change stream: logical decoding on a temporary slot, read with `wal2json` or `test_decoding`.

The stream has a connection of its own (not one of the read-only detection pool: creating a slot is refused
in a read-only transaction), in autocommit mode. It checks the server first and refuses, with one line saying
what to change, when `wal_level` is not `logical`, when the role lacks `REPLICATION` or when the server allows
no replication slots; it never changes a setting, never creates a publication, never touches a table's replica
identity.

The slot is **temporary**: it belongs to the stream's session and the server drops it when the session ends,
however it ends (a crash, a kill -9, a network cut), so an abandoned daemon can never make the server retain
WAL. It is read by polling `pg_logical_slot_get_changes(slot, NULL, upto_nchanges)` (psycopg 3 has no
replication-protocol API); each call consumes what it returns. Nothing is written to any table.

**Memory.** `upto_nchanges` is checked only at transaction boundaries: one call returns a whole transaction,
however big (a bulk load of 10M rows). The server keeps the call's result in a tuplestore, which spills to disk
past `work_mem`; the stream reads it through a server-side cursor (`DECLARE ... CURSOR` in a transaction block of
its session), `FETCH_ROWS` at a time, and hands each change to the reader's `fold` as it
is parsed, so neither the result nor its changes are ever held whole. Position semantics are those of the plain
call: the function runs to its end, and consumes what it returns, at the first fetch (decoding only ever
returns committed transactions, so their rows are visible to the re-counts before the last block is read). A
daemon that dies in the middle dies with the session and its temporary slot: the next stream is a gap, reported.
Peeking (`pg_logical_slot_peek_changes`) and then `pg_replication_slot_advance` would leave the changes on the
slot until they were counted, but advancing a logical slot decodes the WAL again, and a count that fails already
ends the session (a gap, every check counted in full), so it would buy nothing for twice the decoding.
`test_decoding`'s `stream-changes` (in-progress transactions in blocks) would hand over rows not yet committed,
which a re-count cannot see, and needs abort handling; the cursor bounds memory without either.

**Partitions.** Both plugins name a partitioned table's changes by the partition that holds the row (and an
inheritance parent's by the child that holds it): each table a change names is asked once for the tables above it
(pg_inherits: partitioned tables and inheritance parents), and its change is handed on as theirs too. ATTACH and
DETACH PARTITION (and ALTER TABLE ... [NO] INHERIT) change a partitioned table's rows without a change: the
partition tree is part of a watched table's shape, so either is a gap followed by a full count. A partition that
joins the tree holding no row is no gap (`CREATE TABLE ... PARTITION OF`, a premade monthly partition): in the
statement that reads the tree, the catalog says which of its tables cannot hold a row (a heap table of no page, a
partitioned table, which stores none); every row such a partition holds later comes by a change the stream shows,
named by the partition and handed on as the watched table's. A new partition that already holds a row when it is
first seen (its rows came before it was attached, or in the few hundred milliseconds before the next read), a
partition of another storage (a foreign table), and any partition that leaves the tree are gaps.

**Output plugin.** The server is asked, by creating the slot: with `wal2json` (format-version 2: JSON, typed
values; monitor/live/wal2json.py) where it is installed and the server lets this role use it, else with the
built-in `test_decoding` (monitor/live/test_decoding.py). Which one a stream uses is `plugin`. wal2json prints
nothing of an UPDATE or DELETE of a table without a replica identity (no primary key, `REPLICA IDENTITY NOTHING`,
an identity index dropped), only a warning in the server's log: an UPDATE of a link table that made a duplicate
was never seen (beside another change in its transaction, nor its DELETE), and one alone in its transaction
re-counted the known groups only. So where a watched table (or a partition of it) has none, the stream reads a
slot of `test_decoding` instead, which prints those rows without their old key: the slot is created again when
the table is first named (`table_name`, before any check is counted), and the stream opens with it from then
on. A watched table that loses its identity while a wal2json slot is read is a gap (every check counted in full,
the slot created again).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection

from monitor.dialects.base import Dialect
from monitor.live import test_decoding, wal2json
from monitor.live.changes import Cascade, Change, Fold, LiveRefused, StreamLost, Transaction
from monitor.live.test_decoding import DecodingError

Parse = Callable[[list[str], Transaction | None, Fold | None], tuple[list[Transaction], Transaction | None]]


@dataclass(frozen=True)
class Plugin:
    """A logical decoding output plugin: its name, the options each read passes, and its parser."""

    name: str
    options: tuple[str, ...]  # name, value, name, value...
    parse: Parse
    # Prints the UPDATEs and DELETEs of a table without a replica identity (wal2json prints nothing of them).
    unidentified: bool = True


# Type OIDs, not names: wal2json 2.5 prints a name format_type() quotes whole unescaped (monitor/live/wal2json.py).
WAL2JSON = Plugin("wal2json", ("format-version", "2", "include-timestamp", "1", "include-xids", "1",
                               "include-types", "0", "include-type-oids", "1"),
                  wal2json.transactions, unidentified=False)
TEST_DECODING = Plugin("test_decoding", ("include-timestamp", "1", "skip-empty-xacts", "1"),
                       test_decoding.transactions)
PLUGINS = (WAL2JSON, TEST_DECODING)  # preferred first; test_decoding ships with PostgreSQL
CONNECT_TIMEOUT_SECONDS = 10.0
STATEMENT_TIMEOUT_SECONDS = 30.0
FETCH_ROWS = 2_000  # rows of the slot's result fetched at a time (a few hundred bytes each)


def slot_name() -> str:
    """A name no other process uses: `dupewatch_live_<pid>_<random>` (letters, digits and `_` only)."""
    return f"dupewatch_live_{os.getpid()}_{secrets.token_hex(4)}"


class LogicalDecodingStream:
    """One database's changes, from a temporary logical slot; `open()`, then `read()` repeatedly, `close()`."""

    typed_values = False  # both plugins' values are read as the server's text
    recount_again = 0.0  # `unsettled` tells

    def __init__(self, database: str, url: URL, rules: Dialect, *, batch: int = 10_000,
                 plugins: tuple[Plugin, ...] = PLUGINS) -> None:
        self.database = database
        self.url = url
        self.rules = rules
        self.batch = batch
        self.plugins = plugins
        self.plugin: Plugin | None = None
        self.slot: str | None = None
        self._conn: psycopg.Connection[Any] | None = None
        self._pending: Transaction | None = None
        self.position: str | None = None
        self._closed = threading.Event()
        # Logical decoding shows no DDL: each watched table's shape (its storage and columns) as its check was
        # counted, compared at each read (`_reshaped`), and the tables the previous read saw truncated.
        self._shapes: dict[int, tuple[str, str, str]] = {}  # oid -> (schema, table, shape)
        self._truncated: set[tuple[str, str]] = set()
        # Logical decoding names a partitioned table's changes by the partition holding the row: each table a
        # change names -> the tables it is part of (itself, then the partitioned tables above it), asked once.
        self._ancestors: dict[tuple[str, str], tuple[tuple[str, str], ...]] = {}
        # The tables the reader follows (`watch`): the checks' and those their changes reach (a `where` reads them)
        self._followed: frozenset[tuple[str, str]] = frozenset()
        # A watched table was seen without a replica identity: a plugin that prints its rows is tried first.
        self._unidentified = False

    def open(self, resume: str | None = None) -> str | None:
        """Connect, check the server, create the slot; a slot cannot start at `resume` (see the module's
        docstring), so a gap is returned when it is given. Raises `LiveRefused` or `StreamLost`."""
        args = self.rules.connect_args(self.url, read_only=False, timeout=STATEMENT_TIMEOUT_SECONDS,
                                       connect_timeout=CONNECT_TIMEOUT_SECONDS)
        args["application_name"] = "dupewatch live"
        conninfo = self.url.set(drivername="postgresql").render_as_string(hide_password=False)
        try:
            self._closed.clear()
            self._conn = psycopg.connect(conninfo, autocommit=True, **args)
            self._pending = None
            self._shapes.clear()  # filled again as the checks are counted (`table_name`)
            self._truncated = set()
            self._ancestors.clear()
            self._refuse_unless_ready()
            self.slot = slot_name()
            self.plugin, start = self._create_slot(self.slot)
        except psycopg.Error as exc:
            self.close()
            raise StreamLost(f"database {self.database}: live stream: {_first_line(exc)}") from None
        except (LiveRefused, StreamLost):
            self.close()
            raise
        self.position = f"lsn:{start}"
        if resume is None:
            return None
        return (f"the previous stream's temporary slot ended with its session (read up to {resume.removeprefix('lsn:')}"
                f", the new one starts at {start}): changes committed in between were not streamed")

    def _create_slot(self, slot: str) -> tuple[Plugin, str]:
        """The temporary slot, with the first plugin the server accepts (it refuses one that is not installed
        or, where the server has that setting, not listed in `output_plugin_libraries`); the last one's error
        is raised. Returns the plugin and the LSN the slot starts at."""
        assert self._conn is not None
        plugins = sorted(self.plugins, key=lambda p: not p.unidentified) if self._unidentified else self.plugins
        for index, plugin in enumerate(plugins):
            try:
                row = self._conn.execute("SELECT lsn::text FROM pg_create_logical_replication_slot(%s, %s,"
                                         " temporary => true)", (slot, plugin.name)).fetchone()
                assert row is not None
                return plugin, str(row[0])
            except psycopg.errors.QueryCanceled:
                raise StreamLost(self._slot_waited()) from None
            except psycopg.errors.InsufficientPrivilege as exc:
                if index == len(plugins) - 1:
                    raise LiveRefused(
                        f"database {self.database}: live = true needs an output plugin this role may use "
                        f"({_first_line(exc)}): add {plugin.name} to output_plugin_libraries and reload the "
                        "server, or remove live = true") from None
            except psycopg.Error:
                if index == len(plugins) - 1:
                    raise
        raise AssertionError("no output plugin to try")

    def _print_unidentified(self) -> None:
        """A watched table has no replica identity and the slot's plugin prints nothing of its UPDATEs and DELETEs:
        the slot is created again with a plugin that prints them, where one is allowed, and the old one dropped.
        Called before any check is counted (`table_name`), so the new slot misses nothing they count."""
        self._unidentified = True
        if self._conn is None or self.plugin is None or self.plugin.unidentified \
                or not any(p.unidentified for p in self.plugins):
            return
        old, slot = self.slot, slot_name()
        try:
            plugin, start = self._create_slot(slot)
            if old is not None:
                # A plugin the server refused ended the attempt with an error, and an error drops every temporary
                # slot of the session (ReplicationSlotCleanup): the old one may be gone already. Dropping it by name
                # failed ("does not exist"), and live mode never opened on a server allowing wal2json only.
                self._conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                                   " WHERE slot_name = %s", (old,))
        except psycopg.Error as exc:
            self.close()
            raise StreamLost(f"database {self.database}: live stream: {_first_line(exc)}") from None
        self.slot, self.plugin, self._pending, self.position = slot, plugin, None, f"lsn:{start}"

    def _slot_waited(self) -> str:
        """Why the slot's creation outlasted the statement timeout: a logical slot starts once every transaction
        running when it was created has ended (an idle-in-transaction session holds it back for as long as it
        stays so); the oldest one still running, as pg_locks (readable by every role) and pg_stat_activity (its
        start and state, where the role may see them) tell. Before, the log said only `canceling statement due to
        statement timeout` at each attempt, and live mode waited without saying what for."""
        why = (f"database {self.database}: live stream: the temporary slot waits for the transactions running when "
               "it was created to end (logical decoding starts once they have)")
        assert self._conn is not None
        try:
            row = self._conn.execute(_OLDEST_WRITER).fetchone()
        except psycopg.Error:
            row = None
        if row is None:
            return f"{why}, past the {STATEMENT_TIMEOUT_SECONDS:.0f} s statement timeout"
        pid, started, state, gid, prepared = row
        if gid is not None:
            oldest = f"the prepared transaction '{gid}' (since {prepared:%Y-%m-%d %H:%M:%S %Z}; COMMIT PREPARED or " \
                     "ROLLBACK PREPARED it)"
        else:
            seen = f", {state} since {started:%Y-%m-%d %H:%M:%S %Z}" if started is not None else ""
            oldest = f"pid {pid}{seen} (end or commit it; pg_terminate_backend)"
        return f"{why}: the oldest, {oldest}, outlasted the {STATEMENT_TIMEOUT_SECONDS:.0f} s statement timeout"

    def _refuse_unless_ready(self) -> None:
        assert self._conn is not None
        row = self._conn.execute(
            "SELECT current_setting('wal_level'), current_setting('max_replication_slots')::int,"
            " (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user), current_user"
        ).fetchone()
        assert row is not None
        wal_level, max_slots, may_replicate, role = row
        where = f"database {self.database}: live = true"
        if wal_level != "logical":
            raise LiveRefused(f"{where} needs wal_level = logical (the server has {wal_level}): set it in "
                              "postgresql.conf and restart the server, or remove live = true")
        if not may_replicate:
            raise LiveRefused(f"{where} needs a role with REPLICATION to read a temporary logical slot "
                              f"(ALTER ROLE {role} REPLICATION), or remove live = true")
        if max_slots < 1:
            raise LiveRefused(f"{where} needs max_replication_slots >= 1 (the server has 0): set it in "
                              "postgresql.conf and restart the server, or remove live = true")

    @property
    def backend_pid(self) -> int | None:
        return self._conn.info.backend_pid if self._conn is not None else None

    def watch(self, columns: dict[tuple[str, str], frozenset[str]], filtered: frozenset[tuple[str, str]]) -> None:
        """Changes are read, and folded into keys, only when `read()` is called; the tables followed beside the
        checks' (a table a `where` reads, `where_tables`) are kept, so that a partition's change is handed on as
        theirs too (`_as_watched`)."""
        self._followed = frozenset(columns)

    def read(self, fold: Fold | None = None) -> list[Transaction]:
        """The transactions committed since the last read (at least one, else at most about `batch` changes),
        read `FETCH_ROWS` rows at a time (see the module's docstring). Raises `StreamLost`."""
        if self._conn is None or self.slot is None or self.plugin is None:
            raise StreamLost(f"database {self.database}: live stream is not open")
        options = self.plugin.options
        truncated: set[tuple[str, str]] = set()
        watched = {(schema, name) for schema, name, _shape in self._shapes.values()} | self._followed

        def folding(change: Change) -> None:
            if change.operation == "TRUNCATE":
                truncated.add((change.schema, change.table))
            assert fold is not None
            for named in self._as_watched(change, watched):
                fold(named)

        done: list[Transaction] = []
        last = None
        try:
            shapes, empty = self._shapes_now()  # before the read: a change seen here was committed before it
            if any(shapes.get(oid) not in (None, _REPLACED, before) and shapes[oid].split(":", 2)[-1]
                   != before.split(":", 2)[-1] for oid, (_schema, _name, before) in self._shapes.items()):
                # A tree changed: a table a change of this read names may be a partition now (attached while
                # empty, then given rows before the read), or no longer; asked again, before its changes map.
                self._ancestors.clear()
            with self._conn.transaction(), self._conn.cursor(f"{self.slot}_read") as cursor:
                cursor.execute("SELECT lsn::text, data FROM pg_logical_slot_get_changes(%s, NULL, %s"
                               + ", %s" * len(options) + ")", (self.slot, self.batch, *options))
                while rows := cursor.fetchmany(FETCH_ROWS):
                    block, self._pending = self.plugin.parse([row[1] for row in rows], self._pending,
                                                             None if fold is None else folding)
                    done += block
                    last = rows[-1][0]
        except (psycopg.Error, DecodingError) as exc:
            self.close()
            raise StreamLost(f"database {self.database}: live stream: {_first_line(exc)}") from None
        if last is not None:
            self.position = f"lsn:{last}"
        for transaction in done:  # changes a `fold` did not take
            if transaction.changes:
                transaction.changes = [n for c in transaction.changes for n in self._as_watched(c, watched)]
        truncated.update((c.schema, c.table) for t in done for c in t.changes if c.operation == "TRUNCATE")
        if (reshaped := self._reshaped(shapes, truncated, empty)) is not None:
            done.append(Transaction(unnamed=reshaped))
        return done

    def _as_watched(self, change: Change, watched: set[tuple[str, str]]) -> list[Change]:
        """`change` as a change of each watched table its table is part of: a partition's change is its partitioned
        table's (each level's); a change of a table that is no partition, as it is."""
        table = (change.schema, change.table)
        if not change.table:  # no table's (`UNSEEN`)
            return [change]
        ancestors = self._ancestors.get(table)
        if ancestors is None:
            assert self._conn is not None
            ancestors = self._ancestors[table] = tuple(dict.fromkeys((str(schema), str(name)) for schema, name in
                                                                     self._conn.execute(_ANCESTORS, table).fetchall()))
        if len(ancestors) < 2:  # no partition (or gone already: its rows went with it)
            return [change]
        return [change if above == table else dataclasses.replace(change, schema=above[0], table=above[1])
                for above in ancestors if above == table or above in watched]

    def _shapes_now(self) -> tuple[dict[int, str], dict[int, frozenset[str]]]:
        """Each watched table's shape now (`_REPLACED` where its name no longer names it: renamed, dropped; another
        table may hold the name, whose rows no change named), and the tables of its partition tree that were not
        in it before and hold no row now (`_EMPTY`), read in the same statement."""
        assert self._conn is not None
        if not self._shapes:
            return {}, {}
        oids = list(self._shapes)
        # A plugin that prints the rows of a table without a replica identity (test_decoding): whether one has
        # it does not matter (`_reshaped`), and reading it doubled this statement's time (1000 partitions).
        printed = self.plugin is not None and self.plugin.unidentified
        shape = _SHAPE_PRINTED if printed else _SHAPE
        rows = self._conn.execute(
            f"SELECT w.oid, {shape}, to_regclass(format('%%I.%%I', w.nspname, w.relname)) IS NOT DISTINCT FROM"
            f" w.oid::regclass, {_EMPTY} FROM unnest(%s::oid[], %s::text[], %s::text[], %s::text[])"
            " AS w(oid, nspname, relname, tree) LEFT JOIN pg_class c ON c.oid = w.oid",
            (oids, [self._shapes[o][0] for o in oids], [self._shapes[o][1] for o in oids],
             [self._shapes[o][2].split(":", 2)[-1] for o in oids])).fetchall()
        shapes = {int(oid): (_identity_of(str(shape), self._shapes[int(oid)][2]) if printed else str(shape))
                  if named else _REPLACED for oid, shape, named, _empty in rows}
        empty = {int(oid): frozenset(str(e or "").split(",")) - {""} for oid, _shape, _named, e in rows}
        return shapes, empty

    def _reshaped(self, shapes: dict[int, str], truncated: set[tuple[str, str]],
                  empty: dict[int, frozenset[str]]) -> str | None:
        """Why a watched table may hold keys no change named (a table rewritten, or its columns changed, since its
        check was counted: `ALTER TABLE ... TYPE ... USING`, a collation, VACUUM FULL, CLUSTER; a partition attached,
        whose rows no change names, or detached), or None. A new
        storage with the same columns is a TRUNCATE where the stream shows one of the table, in this read or the
        previous one (a TRUNCATE committed between the shapes and the read is seen in the next shapes). A partition
        tree that only gained tables holding no row (`empty`, read with `shapes`) brought no row: no gap."""
        seen, self._truncated = truncated | self._truncated, truncated
        reshaped, repartitioned, replaced, unidentified = [], [], [], []
        regrown = False  # a tree gained only empty tables: a table a change names may be a partition now
        for oid, (schema, name, before) in list(self._shapes.items()):
            now = shapes.get(oid)
            if now == _REPLACED:  # the check's table is another now (its own shape is kept as it is counted)
                del self._shapes[oid]
                replaced.append(f"{schema}.{name}")
                continue
            if now is None or now == before:
                continue
            self._shapes[oid] = (schema, name, now)
            (storage, columns, tree), (storage_before, columns_before, tree_before) = (
                now.split(":", 2), before.split(":", 2))
            if not _identified(now) and self.plugin is not None and not self.plugin.unidentified:
                # It lost its replica identity: rows the plugin does not print may have changed unseen since.
                unidentified.append(f"{schema}.{name}")
            if (storage.split("/")[0], columns, tree) == (storage_before.split("/")[0], columns_before, tree_before):
                continue  # only its replica identity changed
            if columns != columns_before or (tree == tree_before and (schema, name) not in seen):
                reshaped.append(f"{schema}.{name}")
            elif _only_empty_joined(tree_before, tree, empty.get(oid, frozenset())):
                regrown = True
            elif tree != tree_before:
                repartitioned.append(f"{schema}.{name}")
        if repartitioned or replaced or regrown:
            self._ancestors.clear()  # a table a change names may be a partition now, or no longer
        if replaced:
            return (f"table {', '.join(replaced)} replaced: another table (or none) has its name now (a rename, an "
                    "online schema change's cut-over; logical decoding shows no DDL): every check counted in full")
        if reshaped:
            return (f"table {', '.join(reshaped)} rewritten or its columns changed (ALTER TABLE, VACUUM FULL, "
                    "CLUSTER; logical decoding shows no DDL): every check counted in full")
        if repartitioned:
            return (f"table {', '.join(repartitioned)}: partitions or inheritance children attached or detached (their "
                    "rows are in no change; logical decoding shows no DDL): every check counted in full")
        if unidentified:
            return (f"table {', '.join(unidentified)} lost its replica identity, and the output plugin "
                    f"{self.plugin.name if self.plugin else ''} prints nothing of such a table's UPDATEs and DELETEs: "
                    "every check counted in full, the stream read with a plugin that prints them")
        return None

    def wait(self, timeout: float) -> None:
        """The slot is polled: wait out `timeout`, or until the stream is closed."""
        self._closed.wait(timeout)

    def unlogged_cascades(self, conn: Connection, table: tuple[str, str]) -> list[Cascade]:
        return []  # a foreign key's actions run as statements, decoded as any other

    def where_tables(self, conn: Connection, table: sa.Table, filters: list[Any]) -> set[tuple[str, str]]:
        """The tables the plan of `SELECT 1 FROM table WHERE filters` scans (EXPLAIN: a subquery's, a view's base
        tables), but `table`'s own tree. Before, a check whose `where` read another table (`id NOT IN (SELECT
        signup_id FROM ignored)`) kept its figures when that table changed: a row let back in made a duplicate the
        stream never counted, and a row shut out left a group counted. A table a function of the `where` reads is
        not in the plan."""
        if not filters:
            return set()
        statement: sa.Select[Any] = sa.select(sa.literal_column("1")).select_from(table).where(*filters)
        compiled = statement.compile(conn, compile_kwargs={"literal_binds": True})
        plan: Any = conn.exec_driver_sql(f"EXPLAIN (VERBOSE, FORMAT JSON) {compiled}").scalar()
        named: set[tuple[str, str]] = set()
        stack = [json.loads(plan) if isinstance(plan, str) else plan]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                if isinstance(node.get("Relation Name"), str) and isinstance(node.get("Schema"), str):
                    named.add((node["Schema"], node["Relation Name"]))
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
        if not named:
            return set()
        schemas, names = zip(*sorted(named), strict=True)
        quoted = conn.dialect.identifier_preparer.format_table(table)
        # With every table above them (pg_inherits): a plan names a partitioned table's partitions (or an inheritance
        # parent's children) it scans, not the table; a partition created while the stream is followed is none of
        # them, and its changes are handed on as its partitioned table's (`_as_watched`), followed so.
        rows = conn.execute(sa.text(
            "WITH RECURSIVE up(relid) AS (SELECT c.oid FROM unnest(CAST(:schemas AS text[]), CAST(:names AS text[]))"
            " AS p(s, r) JOIN pg_namespace n ON n.nspname = p.s JOIN pg_class c ON c.relnamespace = n.oid"
            " AND c.relname = p.r UNION SELECT i.inhparent FROM pg_inherits i JOIN up ON i.inhrelid = up.relid)"
            " SELECT n.nspname, c.relname FROM up JOIN pg_class c ON c.oid = up.relid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.oid NOT IN (SELECT t.relid FROM (SELECT to_regclass(:table)::oid AS oid) c CROSS JOIN LATERAL "
            + _TREE + " t)"), {"schemas": list(schemas), "names": list(names), "table": quoted}).all()
        return {(str(schema), str(name)) for schema, name in rows}

    def unstreamed(self, conn: Connection, table: sa.Table) -> str | None:
        """The tables of `table`'s tree whose rows logical decoding never sees: UNLOGGED (or temporary) tables, which
        write no WAL, and foreign tables (another server's rows). A duplicate their rows made was missed without a
        gap (its check's figures came from the stream, which never named them); `ALTER TABLE ... SET UNLOGGED`
        rewrites the table, a gap and a full count that asks again. Also a table without a replica identity where
        no output plugin the server allows prints its UPDATEs and DELETEs (`_print_unidentified` tried)."""
        quoted = conn.dialect.identifier_preparer.format_table(table)
        row = conn.execute(sa.text(
            "SELECT string_agg(format('%s (%s)', v.oid::regclass, CASE WHEN v.relkind = 'f' THEN 'a foreign table'"
            " WHEN v.relpersistence = 'u' THEN 'UNLOGGED' ELSE 'temporary' END), ', ' ORDER BY v.oid)"
            " FROM pg_class c CROSS JOIN LATERAL " + _TREE + " t JOIN pg_class v ON v.oid = t.relid"
            " WHERE c.oid = to_regclass(:name)"
            " AND (v.relkind = 'f' OR (v.relkind IN ('r', 'm') AND v.relpersistence <> 'p'))"),
            {"name": quoted}).scalar()
        if row is not None:
            return (f"its table's rows are in no change logical decoding shows, {row}: a duplicate they make would be "
                    "missed (ALTER TABLE ... SET LOGGED makes an UNLOGGED table's changes seen; then reload)")
        identified = conn.execute(sa.text(f"SELECT {_IDENTIFIED} FROM pg_class c WHERE c.oid = to_regclass(:name)"),
                                  {"name": quoted}).scalar()
        if identified == "f" and (self.plugin is None or not self.plugin.unidentified):
            self._print_unidentified()  # the slot made again with a plugin that prints such a table's rows, if any
            if self.plugin is not None and not self.plugin.unidentified:
                # None the server lets this role use (output_plugin_libraries without test_decoding): the stream
                # went on with wal2json, which prints none of this table's UPDATEs and DELETEs, and an UPDATE that
                # made a duplicate beside another change in its transaction was missed without a gap.
                return (f"its table has no replica identity (no primary key), and the output plugin {self.plugin.name} "
                        "prints none of its UPDATEs and DELETEs (the server lets this role use no plugin that does): "
                        "add test_decoding to output_plugin_libraries, or give the table a primary key, and reload")
        return None

    def table_name(self, conn: Connection, table: sa.Table) -> tuple[str, str]:
        """Also keeps the table's shape now (before its check is counted), for `_reshaped`; a table without a
        replica identity makes the stream read a plugin that prints its rows (`_print_unidentified`)."""
        quoted = conn.dialect.identifier_preparer.format_table(table)
        row = conn.execute(sa.text(
            f"SELECT n.nspname, c.relname, c.oid, {_SHAPE} FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(:name)"),
            {"name": quoted}).one()
        self._shapes[int(row[2])] = (str(row[0]), str(row[1]), str(row[3]))
        if not _identified(str(row[3])):
            self._print_unidentified()
        return str(row[0]), str(row[1])

    def unsettled(self, xids: set[str]) -> set[str]:
        """The transactions of `xids` a new snapshot does not see (`_UNSETTLED`). Logical decoding returns a
        transaction once its commit record is flushed; the committing session makes it visible after that, and
        with a synchronous standby only once the standby answers (or the wait is cancelled): a re-count before then
        counted the rows as they were, and the duplicate they made was never shown. Raises `StreamLost`."""
        if self._conn is None:
            raise StreamLost(f"database {self.database}: live stream is not open")
        wanted = sorted(int(x) for x in xids if x.isdigit())
        if not wanted:
            return set()
        try:
            row = self._conn.execute(_UNSETTLED, (wanted,)).fetchone()
        except psycopg.Error as exc:
            self.close()
            raise StreamLost(f"database {self.database}: live stream: {_first_line(exc)}") from None
        return {str(x) for x in (row[0] if row is not None and row[0] is not None else [])}

    def close(self) -> None:
        """End the session; the server drops the temporary slot with it."""
        conn, self._conn, self.slot = self._conn, None, None
        self._closed.set()
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()


# The tables of `c`'s tree (`relid`): `c` and every table below it, partitions and inheritance children alike (both are
# in pg_inherits, and a query of the parent reads both). pg_partition_tree() knows partitions only: the rows of an
# inheritance child (`CREATE TABLE ... INHERITS`), which a check of the parent counts, were named by the child alone
# and never handed on as the parent's (a duplicate across parent and child missed without a gap), and ALTER TABLE ...
# INHERIT brought a child's rows in without a gap. Read in the statement's snapshot, like the rest of its catalog.
_TREE = ("(WITH RECURSIVE tree(relid) AS (SELECT c.oid UNION SELECT i.inhrelid FROM pg_inherits i"
         " JOIN tree ON i.inhparent = tree.relid) SELECT relid FROM tree)")
# Whether the table and every table of its partition tree whose rows are decoded (a plain table or a materialized view,
# whose REFRESH ... CONCURRENTLY deletes and inserts rows: a partitioned table holds none, a view or a foreign table is
# not decoded) has a replica identity, which the catalog says as the
# server decides what to log of an UPDATE or DELETE: FULL, the primary key under DEFAULT, the index named by USING
# INDEX (ready and valid). `t` or `f`.
_IDENTIFIED = ("(SELECT CASE WHEN coalesce(bool_and(r.relreplident = 'f' OR EXISTS (SELECT FROM pg_index i"
               " WHERE i.indrelid = r.oid AND i.indisvalid AND i.indisready AND CASE r.relreplident"
               " WHEN 'd' THEN i.indisprimary WHEN 'i' THEN i.indisreplident ELSE false END)), true)"
               " THEN 't' ELSE 'f' END FROM pg_class r WHERE r.relkind IN ('r', 'm')"
               " AND r.oid IN " + _TREE + ")")
# A table's storage (relfilenode: new after a rewrite or a TRUNCATE) and whether it has a replica identity
# (`_IDENTIFIED`), its columns' types, type modifiers, collations and names (a rename may make the key's name
# another column's), and the tables of its partition tree (ATTACH PARTITION brings rows no change names), as text:
# `relfilenode/identified:columns:partitions` (names as their bytes in hex, so that no `:` in one splits the text
# elsewhere; not md5(), which a FIPS-mode build refuses).
_SHAPE = ("c.relfilenode::text || '/' || " + _IDENTIFIED + " || ':' || coalesce((SELECT string_agg(a.attnum"
          " || ',' || a.atttypid || ',' || a.atttypmod || ',' || a.attcollation || ',' ||"
          " encode(convert_to(a.attname::text, getdatabaseencoding()), 'hex'), ';' ORDER BY a.attnum)"
          " FROM pg_attribute a"
          " WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '') || ':' ||"
          " coalesce((SELECT string_agg(t.relid::oid::text, ',' ORDER BY t.relid::oid)"
          " FROM " + _TREE + " t JOIN pg_class v ON v.oid = t.relid), '')")
# `_SHAPE` without the replica identity (`_identity_of` keeps the one the table had), while the plugin prints the rows
# of a table without one.
_SHAPE_PRINTED = _SHAPE.replace(_IDENTIFIED, "'?'")


# The tables of a watched table's partition tree not in the tree it had (`w.tree`, `_SHAPE`'s list) that hold no
# row, as the catalog and the storage say in the statement that reads the tree (`_shapes_now`): a partitioned
# table (rows live in its partitions only) and a heap table whose main fork has no page (a row needs one; VACUUM
# gives back the pages of deleted rows at the end only, so a table rows were deleted from may count as holding
# some: a gap, never a miss). Another storage (a foreign table, another access method) may hold rows without pages
# here: never counted empty. Only the new tables' sizes are asked (a file's size, once per new partition).
# The size is asked in a CASE that names the tree's table (`t`), so that it is asked of the new tables only, after the
# join: a filter of pg_class alone may be evaluated on every table of the database first, and pg_relation_size() waits
# for a lock an ALTER TABLE of any table holds (the read stalled behind it). An UNLOGGED new table is never counted
# empty: logical decoding would show none of the rows it is given (a gap, then `unstreamed` leaves the check).
_EMPTY = ("(SELECT string_agg(t.relid::oid::text, ',') FROM " + _TREE + " t JOIN pg_class p ON p.oid ="
          " t.relid WHERE CASE WHEN t.relid::oid::text = ANY (string_to_array(w.tree, ',')) THEN false"
          " WHEN p.relkind = 'p' THEN true WHEN p.relkind = 'r' AND p.relpersistence = 'p'"
          " AND p.relam = (SELECT a.oid FROM pg_am a WHERE a.amname = 'heap') THEN pg_relation_size(p.oid) = 0"
          " ELSE false END)")

# Of the 32-bit transaction ids bound (decoded, so committed in the WAL), those a new snapshot does not see: each is
# `d` ids behind the snapshot's xmax (modulo 2^32; the epoch is the snapshot's); at or past xmax (`d` = 0, or more
# than 2^31 behind: ahead of it) or listed as running, it is not visible yet. A committing session leaves the running
# transactions (and moves xmax past its id) only after its commit record is flushed and, with a synchronous standby,
# answered: until then its id is at or past xmax (measured, PostgreSQL 15: `725:725:` while 725 waited on SyncRep).
_UNSETTLED = ("SELECT array_agg(x) FROM unnest(%s::bigint[]) AS x, txid_current_snapshot() AS s,"
              " LATERAL (SELECT ((txid_snapshot_xmax(s) - x) %% 4294967296 + 4294967296) %% 4294967296 AS d) AS behind"
              " WHERE d = 0 OR d > 2147483648 OR NOT txid_visible_in_snapshot(txid_snapshot_xmax(s) - d, s)")

# The oldest transaction still running that holds a transaction id (a logical slot's creation waits for those),
# with its start and state where pg_stat_activity shows them to the role.
# A prepared transaction (PREPARE TRANSACTION) holds it back too: it has no session (pid NULL), but a gid.
_OLDEST_WRITER = ("SELECT l.pid, a.xact_start, a.state, p.gid, p.prepared FROM pg_locks l"
                  " LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
                  " LEFT JOIN pg_prepared_xacts p ON p.transaction = l.transactionid"
                  " WHERE l.locktype = 'transactionid' AND l.mode = 'ExclusiveLock' AND l.granted"
                  " AND l.pid IS DISTINCT FROM pg_backend_pid() ORDER BY age(l.transactionid) DESC LIMIT 1")

# The table a change names (schema, name), then every table above it: partitioned tables and inheritance parents
# (`_TREE`), nearest first.
_ANCESTORS = ("WITH RECURSIVE up(relid, depth) AS (SELECT to_regclass(format('%%I.%%I', %s::text, %s::text))::oid, 0"
              " UNION SELECT i.inhparent, up.depth + 1 FROM pg_inherits i JOIN up ON i.inhrelid = up.relid)"
              " SELECT n.nspname, c.relname FROM up JOIN pg_class c ON c.oid = up.relid"
              " JOIN pg_namespace n ON n.oid = c.relnamespace ORDER BY up.depth")

_REPLACED = "replaced"  # no shape: a watched table's name names another table, or none (`_shapes_now`)


def _identified(shape: str) -> bool:
    """Whether a table of `_SHAPE` has a replica identity (every table of its tree holding rows)."""
    return not shape.split(":", 1)[0].endswith("/f")


def _identity_of(shape: str, before: str) -> str:
    """`shape` read without the replica identity (`_SHAPE_PRINTED`), with the one `before` (`_SHAPE`) says."""
    storage, rest = shape.split(":", 1)
    return f"{storage.rsplit('/', 1)[0]}/{before.split(':', 1)[0].rsplit('/', 1)[-1]}:{rest}"


def _only_empty_joined(before: str, now: str, empty: frozenset[str]) -> bool:
    """Whether a partition tree (`_SHAPE`'s list of its tables) changed only by gaining tables that hold no row
    (`_EMPTY`): none left it (its rows left the watched table without a change), none joined with rows."""
    old, new = set(before.split(",")) - {""}, set(now.split(",")) - {""}
    return new != old and old <= new and new - old <= empty


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
