"""The duplicate groups of one table check as live mode keeps them: re-counted in the table, key by key.

`LiveGroups` holds every duplicate group of its check (its identity -> normalised key and rows). A group is
identified as the database compares keys (`TableCheck.group_identities`: on MariaDB/MySQL a text key's sort key
under its collation, on PostgreSQL a text key's hash under a nondeterministic collation, as the catalog says), so
a new spelling of a case-insensitive key joins its group instead of making a "new" one. A full
count (`resync`) fills it at start and after every gap in the stream; after that each change is a hint naming
keys whose groups are re-counted at once through the key (served by the key's index): the keys rows were just
given `RECOUNT_CHUNK` to a statement (`WHERE key IN (...) GROUP BY key`), a key rows may have left one by one
(its group may be gone, and is then found by its key among the known ones). So the figures follow the table at
a cost that follows the changes, and can never drift from it: counts always come from the table.

An UPDATE whose old row the stream gives whole (MariaDB/MySQL's full row image, a PostgreSQL table with
`REPLICA IDENTITY FULL`) re-counts nothing when it left every key column as it was (a check with a `where`
re-counts the row's one group: the `where` is SQL text, so any column may move the row in or out of it), and
the old key's group and the new one's when it changed a key column. A change whose old key the stream does not
give (an UPDATE or DELETE of a table whose replica identity is its primary key only, a TRUNCATE) may have shrunk
any known group: its new key is re-counted at once (a new duplicate is never late), and every known group is
queued to be re-counted again, `RECOUNT_BUDGET` groups per read of the stream, so that a group it dissolved
disappears within a bounded time at a bounded cost, however many groups are known.

**Big transactions.** The changes of a read are folded into the keys they name as they arrive (`fold`), so
only keys are held, never rows; and at most `KEYS_PER_READ` distinct keys per check and read: past it (a bulk
load, a mass update) the check stops collecting keys for that read and is counted in full instead (`resync`: one
`GROUP BY`, its new groups reported as new), which costs about what re-counting that many keys one by one would,
and bounds memory whatever the transaction's size. The reader logs each such overflow. A stream that queues
changes between reads (MariaDB/MySQL's binary log: monitor/live/mysql.py) bounds its queue with the same
limit and hands on an `overflowed` change for a table it stopped queueing, which overflows the same way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from monitor.detect import TableCheck
from monitor.incremental.values import encode_key
from monitor.live.changes import Change, OneOf, Row

Key = tuple[Any, ...]
RECOUNT_CHUNK = 200  # groups re-counted by one statement
RECOUNT_BUDGET = 1_000  # queued known groups re-counted per read of the stream (five statements)
KEYS_PER_READ = 20_000  # distinct keys a check collects per read; past it, the check is counted in full


@dataclass
class Named:
    """What a batch of changes names (`LiveGroups.keys_named`)."""

    present: set[tuple[Any, ...]] = field(default_factory=set)  # keys rows have now
    left: set[tuple[Any, ...]] = field(default_factory=set)  # keys rows had before (their groups may be gone)
    unknown_old: bool = False  # some row's old key is not given: any known group may have shrunk
    overflow: bool = False  # more than `KEYS_PER_READ` keys named: the check is counted in full, keys not kept
    changes: int = 0  # the changes folded in


@dataclass(frozen=True)
class Figures:
    """A check's figures after live changes: groups, excess rows, and groups that were not duplicates before."""

    groups: int
    excess_rows: int
    new_groups: int
    baseline: bool = False  # a daemon's first count with no groups saved before: none could be told new
    # A daemon's first count compared with the groups saved before it started: its new groups are those formed while
    # no daemon ran (the ones its runs found too). A count that did not (a reload's reader, a baseline) counted none.
    compared: bool = False


_NAN = float("nan")
_DECIMAL_NAN = Decimal("NaN")


def _values(values: Iterable[Any]) -> Key:
    """Values read from the table as a key Python compares as the database does: every NaN one object. The
    server's NaN equals NaN (one group); Python's equals nothing, not even another NaN (hashed by identity), so a
    NaN group read twice was two groups: never dissolved, and counted as new at each re-count."""
    return tuple(_NAN if isinstance(v, float) and v != v else _DECIMAL_NAN if isinstance(v, Decimal) and v.is_nan()
                 else v for v in values)


def _identity(values: Iterable[Any]) -> Key:
    """Identity values read from the table as a key of a dict: also an array (a list) as a tuple and a JSON
    document (a dict) as its canonical text. A jsonb or array key's group failed every re-count with TypeError
    (unhashable), each a gap, the stream opened again and failing again."""
    return tuple(_hashable(v) for v in _values(values))


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return value


def _each(key: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """The keys `key` may be: itself, or one per value of each `OneOf` in it."""
    keys: list[tuple[Any, ...]] = [()]
    for value in key:
        keys = [(*k, v) for k in keys for v in (value if isinstance(value, OneOf) else (value,))]
    return keys


class LiveGroups:
    def __init__(self, resolved: TableCheck, *, typed_values: bool = False) -> None:
        self.resolved = resolved
        self.typed_values = typed_values  # values arrive typed (MySQL's binlog) rather than as text (PostgreSQL)
        self.key_names = [column.name for column in resolved.key_columns]
        self.known: dict[Key, tuple[Key, int]] = {}  # identity -> (normalised key, rows)
        self._excess = 0  # the excess rows of `known`, kept as it changes (summing it per batch cost a core)
        # Key values are read, and bound back, as the database stores them (`Dialect.as_stored`): a MySQL DOUBLE
        # read as a Decimal of 10 places would make 1e-300 and 2e-300 one group, and find neither when bound.
        # Where the driver's value does not bind back as itself, as the poll reads them (`Dialect.polled_key`): the
        # database's text, cast back on the server, and identified by the type's hash where equal values print
        # apart (jsonb `{"a":1}` = `{"a":1.0}`: read as Python dicts, identified by their JSON text, the group was
        # another once the spelling GROUP BY returned was deleted, never dissolved, and counted as new; a range
        # with an infinite timestamp bound, which psycopg cannot read, failed every re-count, each a gap).
        rules = resolved.rules
        self.reads = [rules.polled_key(r) for r in resolved.key_reads]
        self._polled = [p is not r for p, r in zip(self.reads, resolved.key_reads, strict=True)]
        self.identity = self._identities(resolved.key_exprs, self.reads)
        # Python's equality of keys is the database's (no collation makes two spellings one group)
        self._exact_identity = all(i is r for i, r in zip(self.identity, self.reads, strict=True))
        # Where each key column's identity is its value, its hash under a nondeterministic collation or its type's
        # hash (`polled_key`), which the typed value carries (`_typed` casts to the column's type, collation
        # included), a key no row has any more is identified by the database from the value itself, not looked up
        # among the known keys' spellings (another spelling of a known group would queue every known group for a
        # re-count).
        self._identified_by_value = not self._exact_identity and all(
            i is r or polled or getattr(resolved.compared.get(c.name), "kind", None) == "collation"
            for c, i, r, polled in zip(resolved.key_columns, self.identity, self.reads, self._polled, strict=True))
        self.pending: dict[Key, None] = {}  # known groups queued for a re-count, oldest first
        self.recounted = 0  # groups re-counted from changes since the start (the cost live mode pays)
        self._where = bool(resolved.check.where)
        # What changed in `known` since the groups were last saved (`saved_changes`): identities that joined or
        # left it, or (`_replaced`) every group, after a full count.
        self._dirty: set[Key] = set()
        self._replaced = True
        self._saved_once = False  # the store holds what `known` was at the last save (none yet: all of them)

    def _identities(self, exprs: list[ColumnElement[Any]], reads: list[ColumnElement[Any]]) -> list[ColumnElement[Any]]:
        """The group identity of each key value `exprs` (one per key column, of its type), read as `reads`: the
        value as read where the database's equality is Python's, else as the dialect identifies it
        (`TableCheck.group_identities`; of the value as the poll reads it where it is read so: `polled_key`)."""
        plain = self.resolved.group_identities(exprs)
        carried = self.resolved.group_identities(reads)
        return [c if polled else (r if p is e else p)
                for p, c, e, r, polled in zip(plain, carried, exprs, reads, self._polled, strict=True)]

    def _read(self, exprs: list[ColumnElement[Any]]) -> list[ColumnElement[Any]]:
        """Key values (one per key column, of its type) as the key columns are read (`reads`)."""
        rules = self.resolved.rules
        return [rules.polled_key(e) if polled else e for e, polled in zip(exprs, self._polled, strict=True)]

    @property
    def figures(self) -> tuple[int, int]:
        return len(self.known), self._excess

    @property
    def fingerprint(self) -> str:
        """What decides the identities saved (`saved_changes`) beyond the check's subject (its database and
        definition): how each key column compares (its type and collation as reflected; a nondeterministic
        collation and its version, citext, as the catalog says). Saved identities of another fingerprint are not
        compared with: a collation changed since would make every group look new."""
        columns = [(c.name, type(c.type).__name__, getattr(c.type, "collation", None))
                   for c in self.resolved.key_columns]
        compared = sorted((name, *c.fingerprinted) for name, c in self.resolved.compared.items())
        # Key columns identified by their type's hash or text (`polled_key`) since identities were saved as the
        # driver's values: those saved before are not compared with (a restart counts the baseline, no group new).
        polled = [["polled", c.name] for c, p in zip(self.resolved.key_columns, self._polled, strict=True) if p]
        return hashlib.sha256(json.dumps(["live groups", 1, columns, compared, *polled], default=str).encode()
                              ).hexdigest()

    # -- full count -------------------------------------------------------------------------------

    def resync(self, conn: Connection, saved: set[str] | None = None) -> int:
        """Count every group in the table again; returns how many duplicate groups were not known before, or
        (`saved`: the identities a daemon saved before it stopped, `saved_changes`) not among `saved`."""
        r = self.resolved
        width = len(r.key_exprs)
        size = sa.func.count()
        statement = (sa.select(*[e.label(f"k{i}") for i, e in enumerate(self.reads)],
                               *[e.label(f"i{i}") for i, e in enumerate(self.identity)], size.label("n"))
                     .select_from(r.table).where(*r.filters).group_by(*r.key_exprs).having(size > 1))
        found = {_identity(row[width:2 * width]): (_values(row[:width]), int(row[-1]))
                 for row in conn.execute(statement)}
        if saved is not None:  # identities as the database computed them then and now: no spelling compared
            new = sum(encode_key(identity) not in saved for identity in found)
        else:
            new = len(found.keys() - self.known.keys())
        if self._saved_once and not self._replaced:  # the store holds `known`: what changed is enough
            self._dirty.update(self.known.keys() ^ found.keys())
        else:
            self._replaced = True
        self.known = found
        self._excess = sum(n - 1 for _key, n in found.values())
        self.pending.clear()
        return new

    def resave(self) -> None:
        """A save failed: the next one writes every known group."""
        self._replaced = True

    def saved_changes(self) -> tuple[list[str], list[str], bool] | None:
        """What to save of the known groups since the last call (None: nothing changed): identities (`encode_key`)
        present and gone, and whether the present ones are all of them (the first save, or after a failed one;
        a later full count, such as a bulk load's overflow, saves only the groups it added or removed: 100,000
        identities took 1.2 s to encode and write)."""
        if self._replaced:
            self._replaced, self._dirty, self._saved_once = False, set(), True
            return [encode_key(identity) for identity in self.known], [], True
        if not self._dirty:
            return None
        dirty, self._dirty = self._dirty, set()
        present = [encode_key(identity) for identity in dirty if identity in self.known]
        gone = [encode_key(identity) for identity in dirty if identity not in self.known]
        return present, gone, False

    # -- changes ----------------------------------------------------------------------------------

    def keys_named(self, changes: Iterable[Change]) -> Named:
        """What `changes` name (`fold`)."""
        named = Named()
        for change in changes:
            self.fold(named, change)
        return named

    def fold(self, named: Named, change: Change, limit: int = KEYS_PER_READ) -> None:
        """Add to `named` the raw key values whose groups `change` may have changed: the one its row has now (a
        new row) and the one it may have left (its old row, where the stream gives the key), or that it left
        its old key unknown (then every known group is queued); past `limit` distinct keys, only that the check
        must be counted in full (`Named.overflow`), as it must where the stream says it stopped keeping the
        table's changes (`overflowed`)."""
        if change.operation == "OVERFLOW":
            named.overflow, named.present, named.left = True, set(), set()
            return
        named.changes += 1
        if named.overflow:
            return
        if change.operation == "TRUNCATE":
            named.unknown_old = True
            return
        old = self._key_of(change.old) if change.old is not None else None
        after = self._row_after(change) if change.new is not None else None
        new = self._key_of(after) if after is not None else None
        if change.operation == "UPDATE" and old is not None and old == new and not self._where \
                and not any(isinstance(v, OneOf) for v in old):
            # No key column changed: no group did. A value the stream prints alike for several (`OneOf`:
            # wal2json's `null` for NaN and Infinity) may have changed though it reads the same: an UPDATE of a
            # float key from NaN to Infinity left the NaN group counted, the Infinity group short of its row.
            return
        if after is not None and new is None:
            # PostgreSQL sends no unchanged TOASTed value again, and without the old row (the default replica
            # identity) the row's key is not in the stream: whatever group it joined is found by a full count.
            named.overflow, named.present, named.left = True, set(), set()
            return
        if new is not None:
            named.present.update(_each(new))
        if old is not None:
            named.left.update(_each(old))
        elif change.operation != "INSERT":
            named.unknown_old = True
        if len(named.present) + len(named.left) > limit:
            named.overflow, named.present, named.left = True, set(), set()

    @staticmethod
    def _row_after(change: Change) -> Row:
        """The row after `change`; an UPDATE's new row lacks the columns PostgreSQL did not send again (an
        unchanged TOASTed value), which are the old row's where the stream gives it."""
        assert change.new is not None
        return {**change.old, **change.new} if change.old is not None else change.new

    def _key_of(self, row: Row) -> tuple[Any, ...] | None:
        if not all(name in row for name in self.key_names):
            return None
        return tuple(row[name] for name in self.key_names)

    def apply(self, conn: Connection, named: Named) -> Figures | None:
        """Re-count the groups `named` (`fold`), then up to `RECOUNT_BUDGET` queued ones, or every group where
        it overflowed; the new figures, or None when no group changed."""
        if named.overflow:
            before = self.figures
            new = self.resync(conn)
            return Figures(*self.figures, new_groups=new) if new or self.figures != before else None
        unknown_old = named.unknown_old
        # Keys rows were just given are counted many to a statement; a key rows may have left, one by one (its
        # group may be gone: found by its key among the known ones).
        one_by_one = named.left | {values for values in named.present if None in values}
        counted = self._count_present(conn, [values for values in named.present if values not in one_by_one])
        by_key: dict[Key, Key] | None = None  # known groups by their key's spelling, made once per batch
        for values in one_by_one:
            identity, key, rows = self._count_raw(conn, values)
            if identity is None:  # no row has the key now: the group it was, if any, is known by its key
                if by_key is None and not self._exact_identity:
                    by_key = {_identity(known): i for i, (known, _n) in self.known.items()}
                identity = self._known_by_key(key, by_key)
                if identity is None:  # not a known group, unless spelled otherwise under a collation
                    unknown_old |= not self._exact_identity
                    continue
            counted[identity] = (key, rows)
        if unknown_old:
            self.pending.update(dict.fromkeys(self.known))
        for identity in counted:
            self.pending.pop(identity, None)
        counted.update(self._count_pending(conn))
        before = self.figures
        new = 0
        for identity, (key, rows) in counted.items():
            before_rows = self.known.get(identity, (key, 1))[1]
            if rows > 1:
                if identity not in self.known:
                    new += 1
                    self._dirty.add(identity)
                self.known[identity] = (self.known.get(identity, (key, 0))[0], rows)
            elif self.known.pop(identity, None) is not None:
                self._dirty.add(identity)
            self._excess += max(rows, 1) - before_rows
        if not new and self.figures == before:
            return None
        return Figures(*self.figures, new_groups=new)

    def _known_by_key(self, key: Key, by_key: dict[Key, Key] | None) -> Key | None:
        """The known group whose key is `key`: the key itself where it is the identity, else looked up in
        `by_key` (a map of the known keys made once per batch: with 100,000 known groups a scan of them took
        5 ms per key a delete named, 10 s for a batch of 2,000; the map takes 15 ms per batch)."""
        identity = _identity(key)
        if self._exact_identity:  # the identity is the key itself
            return identity if identity in self.known else None
        return by_key.get(identity) if by_key is not None else None

    def _count_pending(self, conn: Connection) -> dict[Key, tuple[Key, int]]:
        """Re-count the oldest `RECOUNT_BUDGET` queued groups (those still known)."""
        chunk: list[Key] = []
        while self.pending and len(chunk) < RECOUNT_BUDGET:
            identity = next(iter(self.pending))
            del self.pending[identity]
            if identity in self.known:
                chunk.append(identity)
        return self._count_known(conn, chunk) if chunk else {}

    def _typed(self, column: sa.Column[Any], value: Any) -> ColumnElement[Any]:
        """A raw value of `column` as the check compares it: typed by the database (text from the stream cast
        to the column's type) or already typed (bound as the database stores it), then normalised."""
        rules = self.resolved.rules
        if self.typed_values:
            typed = rules.stream_value(column, value)
        elif isinstance(column.type, sa.types.NullType):
            # A type SQLAlchemy does not reflect (pg_lsn, an extension's: isn's isbn, ltree, PostGIS's geometry) has
            # no name to cast to: `CAST(... AS <NullType>)` was a cast to VARCHAR, `pg_lsn = character varying` failed
            # every re-count (each a gap, the stream opened again). Bound untyped, the text is taken by the server as
            # the type it is compared with, the column's.
            typed = sa.literal(value, sa.types.NullType())
        else:
            # As its type is stored: a domain's base type (a cast to the domain would run its CHECKs, which may call
            # VOLATILE functions: refused in the read-only session, or worse).
            typed = sa.cast(sa.literal(value, sa.Text()), rules.storage_type(column.type))
        return self.resolved.normalise(column, typed)

    def _count_present(self, conn: Connection, raws: list[tuple[Any, ...]]) -> dict[Key, tuple[Key, int]]:
        """The groups of keys without NULLs that rows have now, `RECOUNT_CHUNK` keys to a statement (served by
        the key's index); a key no row has any more is left out."""
        r = self.resolved
        width = len(r.key_exprs)
        counted: dict[Key, tuple[Key, int]] = {}
        for start in range(0, len(raws), RECOUNT_CHUNK):
            chunk = raws[start:start + RECOUNT_CHUNK]
            self.recounted += len(chunk)
            # `IN (a, b, b, b)` is `IN (a, b)`: padded to a power of two, a handful of statement shapes serve every
            # batch, and their compiled forms are reused (the reader's `compiled_cache`), not compiled per batch.
            chunk = chunk + chunk[-1:] * (min(1 << (len(chunk) - 1).bit_length(), RECOUNT_CHUNK) - len(chunk))
            values = [[self._typed(c, v) for c, v in zip(r.key_columns, raw, strict=True)] for raw in chunk]
            match = r.key_exprs[0].in_([v[0] for v in values]) if width == 1 else \
                sa.tuple_(*r.key_exprs).in_([sa.tuple_(*r.row_in_operands(v)) for v in values])
            statement = (sa.select(*self.reads, *self.identity, sa.func.count()).select_from(r.table)
                         .where(*r.filters, match).group_by(*r.key_exprs))
            for row in conn.execute(statement):
                counted[_identity(row[width:2 * width])] = (_values(row[:width]), int(row[-1]))
        return counted

    def _count_raw(self, conn: Connection, values: tuple[Any, ...]) -> tuple[Key | None, Key, int]:
        """The group identity (None when no row has the key, unless `_identified_by_value`), the normalised key
        of raw values (as text from the stream, cast to each column's type by the database, or typed already) and
        the rows of its group. The identity is read from a row of the group, so that it is computed in the
        column's collation (a MariaDB/MySQL value's own may be the connection's)."""
        r = self.resolved
        keys: list[ColumnElement[Any]] = []
        for column, value in zip(r.key_columns, values, strict=True):
            keys.append(sa.null() if value is None else r.rules.as_stored(self._typed(column, value)))
        match = [e.is_(None) if v is None else e == k for e, k, v in zip(r.key_exprs, keys, values, strict=True)]
        rows = sa.select(sa.func.count()).select_from(r.table).where(*r.filters, *match).scalar_subquery()
        identities = [sa.select(e).select_from(r.table).where(*r.filters, *match).limit(1).scalar_subquery()
                      for e in self.identity]
        # A value bound untyped (`_typed`) takes one type per statement, the column's where it is compared: read back
        # by a parameter of its own (as the server's text, as such a column is read), not the same one.
        read = self._read([sa.literal(value, sa.Text()) if isinstance(column.type, sa.types.NullType)
                           and value is not None else key for column, key, value in zip(r.key_columns, keys, values,
                                                                                        strict=True)])
        own = self._identities(keys, read) if self._identified_by_value else []
        width = len(keys)
        self.recounted += 1
        row = conn.execute(sa.select(*[k.label(f"k{i}") for i, k in enumerate(read)],
                                     *[e.label(f"i{i}") for i, e in enumerate(identities)],
                                     *[e.label(f"o{i}") for i, e in enumerate(own)], rows)).one()
        if not row[-1]:
            return (_identity(row[2 * width:3 * width]) if own else None), _values(row[:width]), 0
        return _identity(row[width:2 * width]), _values(row[:width]), int(row[-1])

    def _count_known(self, conn: Connection, identities: list[Key]) -> dict[Key, tuple[Key, int]]:
        """The rows of each known group in `identities` (0 for a group gone)."""
        r = self.resolved
        counted = {i: (self.known[i][0], 0) for i in identities}
        self.recounted += len(identities)
        width = len(r.key_exprs)
        for start in range(0, len(identities), RECOUNT_CHUNK):
            chunk = [self.known[i][0] for i in identities[start:start + RECOUNT_CHUNK]]
            match = sa.or_(*[sa.and_(*r.key_equals(key, self.reads)) for key in chunk])
            statement = (sa.select(*self.reads, *self.identity, sa.func.count()).select_from(r.table)
                         .where(*r.filters, match).group_by(*r.key_exprs))
            for row in conn.execute(statement):
                counted[_identity(row[width:2 * width])] = (_values(row[:width]), int(row[-1]))
        return counted


def merge(into: dict[str, Named], check: str, named: Named) -> None:
    """`named` added to what `into` names of `check`, in bounded memory: past `KEYS_PER_READ` keys the check is
    counted in full (`Named.overflow`)."""
    kept = into.setdefault(check, Named())
    kept.present |= named.present
    kept.left |= named.left
    kept.unknown_old |= named.unknown_old
    kept.overflow |= named.overflow or len(kept.present) + len(kept.left) > KEYS_PER_READ
    if kept.overflow:
        kept.present, kept.left = set(), set()
