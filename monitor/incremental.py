"""Incremental detection: a run that costs what the new rows cost, not what the table costs.

A check with `incremental = "<column>"` runs in one of two modes:

- **full**: the first run, a run once `full_every` has passed since the last full pass, a forced run
  (`dupewatch check --full`), and any run whose saved state belongs to another database or another
  definition of the check (its fingerprint differs). It aggregates the whole table, as a plain check does,
  and keeps every duplicate group it finds.
- **incremental**: it reads the keys of the rows whose incremental column is past the watermark, minus an
  overlap window (`TIMESTAMP_OVERLAP` or `ID_OVERLAP`, for rows committed late with an earlier value),
  drops the rows it already read (by row identity: primary key, else ctid or rowid), and counts in the whole
  table the rows of every key it read and of every group it already knew. Groups whose count fell below two
  are gone; groups counted for the first time are new.

Invariants: the figures of an incremental run equal a full pass's for inserts and deletes; a duplicate made
by an UPDATE of old rows' key columns, or by a row committed later than the overlap window allows, waits for
the next full pass. The state (watermark, rows seen in the window, known groups) lives in the state store
(`History`) and is written in one transaction per run.

Everything that differs per database is in small functions named after the dialect and the concern
(`database_identity_sql`, `index_statement`, `_served_by_index_*`), ready to move to `monitor/dialects/`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from monitor.detect import CheckDefinitionError, TableCheck
from monitor.history import IncrementalState, KnownGroup

Mode = Literal["full", "incremental"]
TIMESTAMP_OVERLAP = timedelta(minutes=5)  # a timestamp watermark re-reads rows this much older than itself
ID_OVERLAP = 1000  # an integer watermark re-reads this many values below itself (sequences commit late too)
KEY_BATCH = 500  # keys counted per statement


# -- encoding values for the state store ------------------------------------------------------------


def encode_value(value: Any) -> Any:
    """A JSON-able, type-tagged form of a key or watermark value that `decode_value` turns back into the
    same Python value (so it binds as that type again)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return {"f": repr(value)}
    if isinstance(value, Decimal):
        return {"d": str(value)}
    if isinstance(value, datetime):
        return {"dt": value.isoformat()}
    if isinstance(value, date):
        return {"da": value.isoformat()}
    if isinstance(value, dt_time):
        return {"t": value.isoformat()}
    if isinstance(value, timedelta):
        return {"td": value.total_seconds()}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"b": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, uuid.UUID):
        return {"u": str(value)}
    return {"s": str(value)}


def decode_value(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    (tag, text), = value.items()
    decoders: dict[str, Any] = {
        "f": float, "d": Decimal, "dt": datetime.fromisoformat, "da": date.fromisoformat,
        "t": dt_time.fromisoformat, "td": lambda s: timedelta(seconds=s),
        "b": base64.b64decode, "u": uuid.UUID, "s": str,
    }
    return decoders[tag](text)


_PLAIN = (int, str, type(None))


def encode_key(values: Sequence[Any]) -> str:
    """The canonical text of a key tuple (or of a row identity): JSON, compact."""
    if all(type(v) is int for v in values):  # the commonest keys and identities, without json's overhead
        return "[" + ",".join(map(str, values)) + "]"
    if all(type(v) in _PLAIN for v in values):  # no tagging needed
        return json.dumps(list(values), separators=(",", ":"))
    return json.dumps([encode_value(v) for v in values], separators=(",", ":"))


def decode_key(text: str) -> tuple[Any, ...]:
    return tuple(decode_value(v) for v in json.loads(text))


def lower_watermark(a: str | None, b: str | None) -> str | None:
    """The lower of two encoded watermarks (None, meaning "nothing read yet", is lowest)."""
    if a is None or b is None:
        return None
    va, vb = decode_value(json.loads(a)), decode_value(json.loads(b))
    try:
        return a if va <= vb else b
    except TypeError:  # naive against aware datetimes: keep the first (a full pass will come)
        return a


# -- the outcome of one run --------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one run of an incremental check found: figures, mode, cost, and the state to save."""

    groups: int
    excess_rows: int
    mode: Mode
    rows_scanned: int
    new_groups: int
    state: IncrementalState
    first_run: bool = False


def column_kind(check: str, column: sa.Column[Any]) -> Literal["id", "timestamp"]:
    """`id` for an integer column, `timestamp` for a date/time one; anything else cannot be a watermark."""
    if isinstance(column.type, sa.Integer):
        return "id"
    if isinstance(column.type, sa.DateTime | sa.Date):
        return "timestamp"
    raise CheckDefinitionError(
        f"check {check!r}: incremental: column {column.name!r} has type {column.type}; it must grow for new "
        "rows: an integer (identity, serial, auto-increment) or a timestamp")


class IncrementalCheck:
    """A resolved table check with an `incremental` column: the statements of full and incremental runs."""

    def __init__(self, resolved: TableCheck, subject: str) -> None:
        self.resolved = resolved
        self.subject = subject  # what the check measures: the key its state is stored by (`monitor.history`)
        check = resolved.check
        assert check.incremental is not None
        self.column = resolved._column(check.incremental, "incremental")
        self.kind = column_kind(check.name, self.column)
        self.identity = self._identity_columns()
        self.key_indexed = True  # whether an index serves the key lookups (set by `index_advice`)
        self._tuples: dict[str, tuple[Any, ...]] = {}  # encoded key -> key values, for the known groups
        self._texts: dict[tuple[Any, ...], str] = {}

    def _identity_columns(self) -> list[ColumnElement[Any]]:
        """What tells rows apart for the overlap window: the primary key, else ctid/rowid, else nothing."""
        if self.resolved.has_primary_key:
            return list(self.resolved.table.primary_key.columns)
        identity = self.resolved.row_identity
        return [sa.type_coerce(identity, sa.String()).label("dupewatch_identity")] if identity is not None else []

    # -- fingerprint -----------------------------------------------------------------------------

    def fingerprint(self, conn: Connection, url: sa.engine.URL) -> str:
        """A digest of where the state belongs: the database (its URL without credentials, and what the
        server says it is) and the parts of the check that decide its groups."""
        check = self.resolved.check
        place = url.set(username=None, password=None).render_as_string(hide_password=True)
        server = database_identity(conn, self.resolved.dialect)
        parts = [place, *server, check.table, check.key, check.where, check.nulls, check.case_insensitive,
                 check.trim_whitespace, check.incremental]
        return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()

    # -- statements ------------------------------------------------------------------------------

    def _max_statement(self) -> sa.Select[Any]:
        return sa.select(sa.func.max(self.column)).select_from(self.resolved.table).where(*self.resolved.filters)

    def _count_statement(self) -> sa.Select[Any]:
        return sa.select(sa.func.count()).select_from(self.resolved.table).where(*self.resolved.filters)

    def _all_groups_statement(self) -> sa.Select[Any]:
        exprs = self.resolved.key_exprs
        size = sa.func.count()
        return (sa.select(*[e.label(f"k{i}") for i, e in enumerate(exprs)], size.label("n"))
                .select_from(self.resolved.table).where(*self.resolved.filters)
                .group_by(*exprs).having(size > 1))

    def _window_statement(self, after: Any, upto: Any = None) -> sa.Select[Any]:
        """Identity, incremental value and key of the rows with `after < column [<= upto]`."""
        conditions = [*self.resolved.filters, self.column.is_not(None)]
        if after is not None:
            conditions.append(self.column > after)
        if upto is not None:
            conditions.append(self.column <= upto)
        exprs = self.resolved.key_exprs
        return (sa.select(*self.identity, self.column.label("dupewatch_inc"),
                          *[e.label(f"k{i}") for i, e in enumerate(exprs)])
                .select_from(self.resolved.table).where(*conditions))

    def _key_count_statement(self, keys: Sequence[tuple[Any, ...]]) -> sa.Select[Any]:
        """Rows per key for these keys, in the whole table (with the check's filters): the statement suited
        to the dialect, each an index lookup per key when the key is indexed."""
        if self.resolved.dialect == "postgresql" and all(None not in k for k in keys):
            return _key_count_statement_postgresql(self.resolved, keys)
        return self._key_count_statement_generic(keys)

    def _key_count_statement_generic(self, keys: Sequence[tuple[Any, ...]]) -> sa.Select[Any]:
        """`WHERE (k0, k1) IN ((..), ..) OR (k0 IS NULL AND k1 = ..)` grouped by the key."""
        exprs = self.resolved.key_exprs
        plain = [k for k in keys if None not in k]
        with_null = [k for k in keys if None in k]
        matches: list[ColumnElement[bool]] = []
        if plain:
            if len(exprs) == 1:
                matches.append(exprs[0].in_([k[0] for k in plain]))
            else:
                matches.append(sa.tuple_(*exprs).in_(plain))
        matches.extend(sa.and_(*TableCheck.key_equals(k, exprs)) for k in with_null)
        size = sa.func.count()
        return (sa.select(*[e.label(f"k{i}") for i, e in enumerate(exprs)], size.label("n"))
                .select_from(self.resolved.table).where(*self.resolved.filters, sa.or_(*matches))
                .group_by(*exprs))

    # -- runs ------------------------------------------------------------------------------------

    def overlap_start(self, watermark: Any) -> Any:
        """Where the next window starts: the watermark minus the overlap."""
        if watermark is None:
            return None
        if self.kind == "id":
            return watermark - ID_OVERLAP
        if isinstance(watermark, datetime):
            return watermark - TIMESTAMP_OVERLAP
        return watermark - timedelta(days=1)  # a DATE column: the overlap is the day before

    def _restarted_below(self, conn: Connection, watermark: Any) -> bool:
        """Whether the table's highest value (any row, an index lookup) fell below the overlap window: the
        table was emptied or recreated since the watermark was read. A fix deleting the newest rows of a
        group stays inside the window."""
        if watermark is None:
            return False
        top = conn.execute(sa.select(sa.func.max(self.column)).select_from(self.resolved.table)).scalar()
        try:
            return top is not None and top <= self.overlap_start(watermark)
        except TypeError:  # naive and aware datetimes (a changed column type): start over
            return True

    def _identity_of(self, row: Sequence[Any]) -> str | None:
        return encode_key(row[:len(self.identity)]) if self.identity else None

    def _key_of(self, row: Sequence[Any]) -> tuple[Any, ...]:
        start = len(self.identity) + 1
        return tuple(row[start:start + len(self.resolved.key_exprs)])

    def full_pass(self, conn: Connection, fingerprint: str, before: IncrementalState | None) -> Outcome:
        """Aggregate the whole table; every group found becomes known."""
        watermark = conn.execute(self._max_statement()).scalar()
        seen = [] if watermark is None else [
            i for i in (self._identity_of(r) for r in conn.execute(
                self._window_statement(self.overlap_start(watermark), watermark))) if i is not None]
        found = {tuple(r[:-1]): int(r[-1]) for r in conn.execute(self._all_groups_statement())}
        rows = int(conn.execute(self._count_statement()).scalar() or 0)
        groups, new = self._known(found, before)
        state = IncrementalState(self.subject, fingerprint, _encoded(watermark), seen, time.time(),
                                 _next_generation(before), groups)
        return _outcome(state, "full", rows, new, first_run=before is None)

    def incremental_pass(self, conn: Connection, state: IncrementalState) -> Outcome:
        """Read past the watermark (minus the overlap), count the touched and the known keys."""
        watermark = decode_value(json.loads(state.watermark)) if state.watermark is not None else None
        if self._restarted_below(conn, watermark):  # emptied or recreated: the watermark means nothing now
            return self.full_pass(conn, state.fingerprint, state)
        seen_before = set(state.seen)
        read = [(self._identity_of(r), r) for r in conn.execute(self._window_statement(self.overlap_start(watermark)))]
        fresh = [r for i, r in read if i is None or i not in seen_before]
        at = len(self.identity)  # where the incremental value sits in a row
        highest = max([watermark, *(r[at] for _, r in read)], key=_sortable, default=None)
        fresh_keys = {self._encoded_key(key): key for key in (self._key_of(r) for r in fresh)}
        changed = self._changed_counts(conn, state.groups, fresh_keys)
        start = self.overlap_start(highest)
        seen = [i for i, r in read if i is not None and (start is None or r[at] > start)]
        groups, new, updated, removed = self._applied(changed, state)
        saved = IncrementalState(state.subject, state.fingerprint, _encoded(highest), seen, state.last_full_at,
                                 _next_generation(state), groups, updated, removed)
        return _outcome(saved, "incremental", len(fresh), new)

    def _changed_counts(self, conn: Connection, known: dict[str, KnownGroup],
                        fresh: dict[str, tuple[Any, ...]]) -> dict[str, int]:
        """Rows now, by encoded key, for the known and freshly read keys whose count is not what the state
        says (0 for a key not known)."""
        plain = [text for text in known if "null" not in text]
        if _counts_as_json(self.resolved) and all(None not in key for key in fresh.values()):
            texts = [*plain, *(t for t in fresh if t not in known)]
            expected = [known[t].rows if t in known else 0 for t in texts]
            with_nulls = [t for t in known if "null" in t]
            changed = changed_counts(conn, self.resolved, texts, expected)
        else:
            with_nulls = list(known) + [t for t in fresh if t not in known]
            changed = {}
        if with_nulls:
            keys = [fresh[t] if t in fresh else self._decoded(t) for t in with_nulls]
            found = {self._encoded_key(k): n for k, n in self._count_keys(conn, keys).items()}
            for text in with_nulls:
                rows = found.get(text, 0)
                if rows != (known[text].rows if text in known else 0) and (rows > 1 or text in known):
                    changed[text] = rows
            for text, rows in found.items():  # a key the database spells differently (collations)
                if text not in known and text not in changed:
                    changed[text] = rows
        return changed

    def _count_keys(self, conn: Connection, keys: list[tuple[Any, ...]]) -> dict[tuple[Any, ...], int]:
        """Rows per key (only keys with more than one row), in as few statements as the dialect allows."""
        counts: dict[tuple[Any, ...], int] = {}
        plain = [k for k in keys if None not in k]
        with_null = [k for k in keys if None in k]  # matched by IS NULL: always the IN-list form
        for chunk, size in ((plain, key_batch_size(self.resolved, indexed=self.key_indexed)),
                            (with_null, KEY_BATCH)):
            for start in range(0, len(chunk), size):
                for row in conn.execute(self._key_count_statement(chunk[start:start + size])):
                    if row[-1] > 1:
                        counts[tuple(row[:-1])] = int(row[-1])
        return counts

    def _applied(self, changed: dict[str, int], state: IncrementalState
                 ) -> tuple[dict[str, KnownGroup], int, list[str], list[str]]:
        """The known groups after these count changes: (groups, how many are new, updated keys, removed keys)."""
        now, generation = time.time(), _next_generation(state)
        groups = dict(state.groups)
        new, updated, removed = 0, [], []
        for text, rows in changed.items():
            old = groups.get(text)
            if rows < 2:
                if old is not None:
                    del groups[text]
                    removed.append(text)
                continue
            if old is None:
                new += 1
                groups[text] = KnownGroup(text, rows, now, generation)
            else:
                groups[text] = KnownGroup(text, rows, old.first_seen_at, old.first_seen_generation)
            updated.append(text)
        for text in removed:
            key = self._tuples.pop(text, None)
            self._texts.pop(key, None) if key is not None else None
        return groups, new, updated, removed

    def _decoded(self, text: str) -> tuple[Any, ...]:
        """A known group's key as values (cached: a check with 100,000 groups recounts them every run)."""
        key = self._tuples.get(text)
        if key is None:
            key = self._tuples[text] = decode_key(text)
            self._texts[key] = text
        return key

    def _encoded_key(self, key: tuple[Any, ...]) -> str:
        text = self._texts.get(key)
        if text is None:
            text = encode_key(key)
        return text

    def _known(self, found: dict[tuple[Any, ...], int], before: IncrementalState | None
               ) -> tuple[dict[str, KnownGroup], int]:
        """Known groups from the counts found, keeping when each was first seen; and how many are new."""
        now = time.time()
        generation = _next_generation(before)
        previous = before.groups if before is not None else {}
        groups: dict[str, KnownGroup] = {}
        tuples: dict[str, tuple[Any, ...]] = {}
        new = 0
        for key, rows in found.items():
            text = self._encoded_key(key)
            tuples[text] = key
            old = previous.get(text)
            if old is None:
                new += 1
                groups[text] = KnownGroup(text, rows, now, generation)
            elif old.rows == rows:
                groups[text] = old
            else:
                groups[text] = KnownGroup(text, rows, old.first_seen_at, old.first_seen_generation)
        self._tuples = tuples  # the caches follow the known groups
        self._texts = {key: text for text, key in tuples.items()}
        return groups, new


def _next_generation(state: IncrementalState | None) -> int:
    return (state.generation if state is not None else 0) + 1


def _outcome(state: IncrementalState, mode: Mode, rows_scanned: int, new: int, *, first_run: bool = False
             ) -> Outcome:
    groups = state.groups.values()
    return Outcome(len(state.groups), sum(g.rows - 1 for g in groups), mode, rows_scanned, new, state, first_run)


def _encoded(value: Any) -> str | None:
    return None if value is None else json.dumps(encode_value(value))


def _sortable(value: Any) -> Any:
    """Sort key that puts None (no watermark yet) below everything."""
    return (value is not None, value)


def full_pass_due(state: IncrementalState | None, fingerprint: str, full_every: float,
                  now: float | None = None) -> bool:
    """Whether this run must be a full pass: no state, a foreign state, or `full_every` elapsed."""
    if state is None or state.fingerprint != fingerprint or state.last_full_at is None:
        return True
    return (now if now is not None else time.time()) - state.last_full_at >= full_every


# -- what differs per database -----------------------------------------------------------------------


def key_batch_size(resolved: TableCheck, *, indexed: bool) -> int:
    """Keys (without NULL) counted per statement. PostgreSQL takes them as arrays: a few parameters whatever
    their number. Elsewhere each key value is a bound parameter of an IN list: 500 keys a statement when an
    index serves the lookups; without one each statement reads the whole table, so then as many as the
    dialect binds at once (MariaDB turns a long IN list into a hash lookup, "Conversion of Big IN Predicates
    Into Subqueries"; SQLite binds at most 32,766 parameters)."""
    if resolved.dialect == "postgresql":
        return 50_000
    if indexed:
        return KEY_BATCH
    if resolved.dialect == "sqlite":
        return max(KEY_BATCH, 32_000 // len(resolved.key_exprs))
    return 1_000_000


def _counts_as_json(resolved: TableCheck) -> bool:
    """Whether the keys can travel to the database as one JSON document: integer and text keys on
    PostgreSQL; integer keys on MySQL/MariaDB (JSON_TABLE's text columns would compare in their own collation,
    not the table's); never on SQLite, which takes the IN lists."""
    if resolved.dialect == "postgresql":
        return all(isinstance(c.type, sa.Integer) or _is_plain_text(c) for c in resolved.key_columns)
    if resolved.dialect == "mysql":
        return all(isinstance(c.type, sa.Integer) and not isinstance(c.type, sa.Boolean) for c in resolved.key_columns)
    return False


def changed_counts(conn: Connection, resolved: TableCheck, texts: list[str], expected: list[int]) -> dict[str, int]:
    """Rows now, by encoded key, of those keys (JSON arrays without NULL) whose count is not `expected`."""
    if not texts:
        return {}
    document = "[" + ",".join(f"{t[:-1]},{n}]" for t, n in zip(texts, expected, strict=True)) + "]"
    if resolved.dialect == "postgresql":
        rows = _changed_counts_postgresql(conn, resolved, document)
    else:
        rows = _changed_counts_mysql(conn, resolved, document)
    return {texts[ordinal - 1]: int(count) for ordinal, count in rows}


def _changed_counts_mysql(conn: Connection, resolved: TableCheck, document: str) -> list[Any]:
    """MySQL/MariaDB: the keys as `JSON_TABLE` rows (MariaDB 10.6+, MySQL 8.0), each counted by a dependent
    subquery that looks the key up in its index; only the keys whose count differs come back."""
    exprs = resolved.key_exprs
    types = [c.type.compile(dialect=conn.dialect) for c in resolved.key_columns]
    columns = ", ".join(f"k{i} {kind} PATH '$[{i}]'" for i, kind in enumerate(types))
    source = sa.text(f"JSON_TABLE(:dupewatch_keys, '$[*]' COLUMNS (ord FOR ORDINALITY, {columns}, "
                     f"expected BIGINT PATH '$[{len(exprs)}]')) AS dupewatch_keys").bindparams(dupewatch_keys=document)
    size = (sa.select(sa.func.count()).select_from(resolved.table).where(
        *resolved.filters, *[e == sa.literal_column(f"dupewatch_keys.k{i}") for i, e in enumerate(exprs)])
        .scalar_subquery())
    counted = sa.select(sa.literal_column("dupewatch_keys.ord").label("ord"), size.label("n"),
                        sa.literal_column("dupewatch_keys.expected").label("expected")).select_from(source)
    inner = counted.subquery("counted")
    return list(conn.execute(sa.select(inner.c.ord, inner.c.n).where(inner.c.n != inner.c.expected)))


def _is_plain_text(column: sa.Column[Any]) -> bool:
    return isinstance(column.type, sa.String) and not isinstance(column.type, sa.Enum)


def _changed_counts_postgresql(conn: Connection, resolved: TableCheck, document: str) -> list[Any]:
    """PostgreSQL: the keys as `json_array_elements` rows, each counted by a correlated index lookup; only
    the keys whose count differs come back (ordinal, count).

    JIT is off for this transaction (`SET LOCAL jit = off`): compiling the plan costs more than the lookups
    it would speed up ("JIT Accelerated Operations" in the PostgreSQL docs)."""
    from sqlalchemy.dialects import postgresql

    conn.exec_driver_sql("SET LOCAL jit = off")
    exprs = resolved.key_exprs
    keys = sa.func.json_array_elements(sa.cast(sa.bindparam("dupewatch_keys", document, type_=sa.Text),
                                               postgresql.JSON)).table_valued(
        sa.column("value", postgresql.JSON), with_ordinality="ordinality").render_derived(name="dupewatch_keys")
    values = [sa.cast(keys.c.value[i].astext, resolved.key_columns[i].type) for i in range(len(exprs))]
    size = (sa.select(sa.func.count()).select_from(resolved.table)
            .where(*resolved.filters, *[e == v for e, v in zip(exprs, values, strict=True)]).scalar_subquery())
    counted = sa.select(keys.c.ordinality.label("ord"), size.label("n"),
                        sa.cast(keys.c.value[len(exprs)].astext, sa.BigInteger).label("expected")).subquery("counted")
    return list(conn.execute(sa.select(counted.c.ord, counted.c.n).where(counted.c.n != counted.c.expected)))


def _key_count_statement_postgresql(resolved: TableCheck, keys: Sequence[tuple[Any, ...]]) -> sa.Select[Any]:
    """PostgreSQL: the keys as arrays, `unnest`ed, each counted by a correlated subquery (a nested loop of
    index lookups; "Table Functions" and "Scalar Subqueries" in the PostgreSQL docs). No NULL in the keys:
    `=` would never match them."""
    from sqlalchemy.dialects import postgresql

    exprs = resolved.key_exprs
    arrays = [sa.bindparam(f"dupewatch_keys_{i}", [k[i] for k in keys],
                           type_=postgresql.ARRAY(resolved.key_columns[i].type)) for i in range(len(exprs))]
    wanted = sa.func.unnest(*arrays).table_valued(
        *[sa.column(f"k{i}", resolved.key_columns[i].type) for i in range(len(exprs))]
    ).render_derived(name="dupewatch_keys")
    size = (sa.select(sa.func.count()).select_from(resolved.table)
            .where(*resolved.filters, *[e == wanted.c[f"k{i}"] for i, e in enumerate(exprs)]).scalar_subquery())
    return sa.select(*wanted.c, size.label("n"))


def database_identity(conn: Connection, dialect: str) -> list[str]:
    """What the server says this connection reached (for the fingerprint); see `database_identity_sql`."""
    statements = database_identity_sql(conn, dialect)
    return [str(v) for statement in statements for v in conn.execute(sa.text(statement)).one()]


def database_identity_sql(conn: Connection, dialect: str) -> list[str]:
    """Statements of one row each naming the database server and database a connection reached.

    PostgreSQL: the cluster's system identifier (`pg_control_system()`, "System Information Functions" in
    the PostgreSQL docs; only when the role may call it) and the current database; MySQL/MariaDB: the server's
    host name, port and default schema; SQLite: the main database file's path.
    """
    if dialect == "postgresql":
        allowed = conn.execute(sa.text("SELECT has_function_privilege('pg_control_system()', 'EXECUTE')")).scalar()
        cluster = "SELECT system_identifier FROM pg_control_system()" if allowed else "SELECT inet_server_port()"
        return [cluster, "SELECT current_database()"]
    if dialect == "mysql":
        return ["SELECT @@hostname, @@port, DATABASE()"]
    return ["SELECT file FROM pragma_database_list WHERE name = 'main'"]


def index_advice(conn: Connection, incremental: IncrementalCheck) -> str | None:
    """The statement(s) creating the indexes an incremental check lacks (None when it has them): one on the
    incremental column (reading past the watermark) and one on the key as compared (counting a key's rows),
    an expression index when the key is normalised (`lower(trim(col))`)."""
    resolved = incremental.resolved
    wanted = [("watermark", [incremental.column]), ("key", list(resolved.key_exprs))]
    advice = []
    for purpose, exprs in wanted:
        served = served_by_index(conn, resolved, exprs)
        if purpose == "key":
            incremental.key_indexed = served
        if not served:
            advice.append(index_statement(resolved, exprs, purpose))
    return "; ".join(advice) or None


def served_by_index(conn: Connection, resolved: TableCheck, exprs: Sequence[ColumnElement[Any]]) -> bool:
    """Whether an index of the table leads with these expressions (in any order), so equality or range
    lookups on them need not read the table."""
    if resolved.dialect == "sqlite":
        return _served_by_index_sqlite(conn, resolved, exprs)
    if resolved.dialect == "postgresql":
        return _served_by_index_postgresql(conn, resolved, exprs)
    return _served_by_index_mysql(conn, resolved, exprs)


def _expr_text(expr: ColumnElement[Any]) -> str:
    """A normalised text of a key expression (`lower(trim(email))`) to compare with an index's."""
    text = str(expr.compile(compile_kwargs={"literal_binds": True}))
    return _normalised_sql(text.split(".")[-1] if "(" not in text else _unqualified(text))


def _unqualified(text: str) -> str:
    inner = text[text.rfind("(") + 1:text.find(")")]
    return text.replace(inner, inner.split(".")[-1])


def _normalised_sql(text: str) -> str:
    text = text.lower().replace('"', "").replace("`", "").replace(" ", "")
    return text.replace("trim(bothfrom", "trim(").replace("btrim(", "trim(").replace("::text", "")


def _leads(index_columns: Sequence[str], wanted: Sequence[str]) -> bool:
    return len(index_columns) >= len(wanted) and set(index_columns[:len(wanted)]) == set(wanted)


def _served_by_index_postgresql(conn: Connection, resolved: TableCheck,
                                exprs: Sequence[ColumnElement[Any]]) -> bool:
    """PostgreSQL: each index's key columns as `pg_get_indexdef(index, n, true)` deparses them."""
    table = resolved.table
    name = sa.literal(f"{_quoted(conn, table.schema)}.{_quoted(conn, table.name)}" if table.schema
                      else _quoted(conn, table.name))
    rows = conn.execute(sa.text(
        "SELECT i.indexrelid, i.indnkeyatts FROM pg_index i WHERE i.indrelid = to_regclass(:t)"
        " AND i.indpred IS NULL AND i.indisvalid"), {"t": name.value}).all()
    wanted = [_expr_text(e) for e in exprs]
    for index_id, width in rows:
        columns = [conn.execute(sa.text("SELECT pg_get_indexdef(:i, :n, true)"), {"i": index_id, "n": n}).scalar()
                   for n in range(1, width + 1)]
        if _leads([_normalised_sql(c) for c in columns], wanted):
            return True
    return False


def _quoted(conn: Connection, name: str | None) -> str:
    return conn.dialect.identifier_preparer.quote(name or "")


def _served_by_index_mysql(conn: Connection, resolved: TableCheck, exprs: Sequence[ColumnElement[Any]]) -> bool:
    """MySQL/MariaDB: reflected indexes by column; MariaDB cannot index an expression, so a normalised key
    (`lower(col)`) is never served."""
    if any(not isinstance(e, sa.Column) for e in exprs):
        return False
    table = resolved.table
    inspector = sa.inspect(conn)
    indexes = [list(table.primary_key.columns.keys())]
    indexes += [[c for c in ix["column_names"] if c] for ix in inspector.get_indexes(table.name, schema=table.schema)]
    wanted = [e.name for e in exprs if isinstance(e, sa.Column)]
    return any(_leads(columns, wanted) for columns in indexes if columns)


def _served_by_index_sqlite(conn: Connection, resolved: TableCheck, exprs: Sequence[ColumnElement[Any]]) -> bool:
    """SQLite: ask the planner (EXPLAIN QUERY PLAN, "The SQLite Query Optimizer Overview") whether an
    equality lookup on every expression searches an index; it does on any table size."""
    probe = sa.select(sa.func.count()).select_from(resolved.table).where(*[e == sa.literal(0) for e in exprs])
    compiled = probe.compile(conn, compile_kwargs={"literal_binds": True})
    plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}").all()
    return any("USING" in str(row[-1]) and ("INDEX" in str(row[-1]) or "PRIMARY KEY" in str(row[-1]))
               for row in plan)


def index_statement(resolved: TableCheck, exprs: Sequence[ColumnElement[Any]], purpose: str) -> str:
    """The exact statement that creates the index: `CREATE INDEX CONCURRENTLY` on PostgreSQL (no long lock on
    a busy table), `CREATE INDEX` elsewhere; identifiers quoted by SQLAlchemy. MariaDB cannot index an
    expression (MariaDB docs, "Generated Columns"), so a normalised key there gets an explanation instead."""
    table = resolved.table
    names = [e.name if isinstance(e, sa.Column) else _expr_text(e).split("(")[-1].rstrip(")") for e in exprs]
    name = f"{table.name}_{'_'.join(names)}_dw_{purpose[:3]}"[:60]
    if resolved.dialect == "mysql" and any(not isinstance(e, sa.Column) for e in exprs):
        return (f"(MariaDB/MySQL before 8.0.13 cannot index {', '.join(_expr_text(e) for e in exprs)}: the key "
                "lookups of incremental runs read the whole table; on MySQL 8.0.13+: "
                + _compiled_create_index(resolved, sa.Index(name, *[_functional(e) for e in exprs])) + ")")
    index = sa.Index(name, *exprs, postgresql_concurrently=True)
    return _compiled_create_index(resolved, index)


def _functional(expr: ColumnElement[Any]) -> ColumnElement[Any]:
    return expr if isinstance(expr, sa.Column) else sa.Grouping(expr)


def _compiled_create_index(resolved: TableCheck, index: sa.Index) -> str:
    from sqlalchemy.dialects import mysql, postgresql, sqlite

    dialect = {"postgresql": postgresql.dialect(), "mysql": mysql.dialect(), "sqlite": sqlite.dialect()}
    try:
        return str(sa.schema.CreateIndex(index).compile(dialect=dialect[resolved.dialect])).strip()
    finally:
        resolved.table.indexes.discard(index)  # an Index attaches itself to its table: keep reflection as read
