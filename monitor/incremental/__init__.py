"""Incremental detection: a run that costs what the new rows cost, not what the table costs.

A check with `incremental = "<column>"` runs in one of two modes:

- **full**: the first run, a run once `full_every` has passed since the last full pass, a forced run
  (`dupewatch check --full`), a run whose saved state belongs to another database or another definition of the
  check (its fingerprint differs), a run after an undo restored rows (`Monitor.table_changed`), a run after the
  table was empty, a run after its storage changed (a TRUNCATE, a rewrite, a partition attached or detached, on
  MariaDB/MySQL also a table renamed in the table's place: `Dialect.storage_identity_column`), and a run where
  the planner expects a full pass to cost less (no index on the key). It aggregates the whole table, as a plain
  check does, and keeps every duplicate group it finds.
- **incremental**: it reads the keys of the rows whose incremental column is past the watermark, minus an
  overlap window (`window.py`: from what the database says of its running transactions and sequence caches; on
  PostgreSQL only the window's rows committed since the last run read, by their `xmin` against the xmin of the
  snapshot that run read with, `Dialect.snapshot_mark`; on MariaDB/MySQL, with integer keys counted on the
  server, none of the window's rows where the digest the last run took of the window is still the database's,
  `Dialect.window_digest`), drops the rows it already read (by row identity and key:
  primary key, else ctid or rowid), and counts in the whole table the rows of every key it read and of a budget of
  the groups it already knew (all of them up to `RECOUNT_BUDGET`; above it, one of `RECOUNT_ROUNDS` slices per
  `recount_every / RECOUNT_ROUNDS` seconds since the last run, rotating so that each is re-counted by the first run
  `recount_every` (default `RECOUNT_PERIOD`) after, however often the runs come; all of them after a fix).
  Groups whose count fell below two are gone; groups counted for the first time are new. Where the key is
  integers no row leaves NULL and an index serves it (`counted_on_server`, PostgreSQL and MariaDB/MySQL), the
  database reads the rows and counts their keys in one statement that returns one row: the keys of more than one
  row with their counts as one text and the keys of one row as another, never the rows (a row read again is
  counted again, to the same figure).

Invariants: the watermark never runs ahead of the rows still to come (the database's clock, the sequence's
position); the figures of an incremental run equal a full pass's for inserts whose incremental value lies above
the watermark minus the overlap window when they commit, and for deletes within `recount_every` (at once after a
fix); a duplicate made by an UPDATE of old rows' key columns, by a row committed later than the overlap window
allows, or by an insert with a value further below (an explicit low id, a row dated in the past), waits for the
next full pass, which says how many groups such rows made (`IncrementalCheck._missed_note`), and a run says when
the window cannot be bounded. Groups are identified as the database compares keys (`_ci` collations,
nondeterministic collations and citext, as the catalog says: `TableCheck.group_identities`; PostgreSQL jsonb,
ranges and multiranges by their type's hash). A key whose driver value does not bind back as itself (jsonb, ranges,
inet) is read as the database's text of it and cast back to the column's type on the server
(`Dialect.polled_key`). The
state (watermark, rows seen in the window, known groups) lives in the state store (`History`), keyed by what the
check measures and its watermark column, and is written in one transaction per run.

Modules: `values` (how values are kept), `window` (the watermark's bounds), `check` (the runs), `advice` (the
indexes a check lacks). What differs per database is asked of the dialect (`monitor.dialects.polling`).
"""

from monitor.incremental.advice import index_advice
from monitor.incremental.check import (
    RECOUNT_BUDGET,
    RECOUNT_PERIOD,
    RECOUNT_ROUNDS,
    ColumnTypeChanged,
    IncrementalCheck,
    Outcome,
    column_kind,
    full_pass_due,
    refuse_unreadable_watermark,
    state_key,
    table_key,
)
from monitor.incremental.values import decode_key, decode_value, encode_key, encode_value, lower_watermark
from monitor.incremental.window import CACHED_IDS, FUTURE_TOLERANCE, ID_OVERLAP, REMOVALS_UNSEEN, TIMESTAMP_OVERLAP

# Notes that state a standing condition (said once per check by the dashboard and the daemon's log); other notes
# tell what one run did (`check` prints every note of its run).
STANDING_NOTES = ("late rows", CACHED_IDS, "rows in the future", "no key index", REMOVALS_UNSEEN)


def standing(note: str) -> str | None:
    """The kind of a note that states a standing condition, or None for a note about one run."""
    kind = note.split(":", 1)[0]
    return kind if kind in STANDING_NOTES else None


__all__ = [
    "CACHED_IDS",
    "FUTURE_TOLERANCE",
    "ID_OVERLAP",
    "RECOUNT_BUDGET",
    "RECOUNT_PERIOD",
    "RECOUNT_ROUNDS",
    "REMOVALS_UNSEEN",
    "STANDING_NOTES",
    "TIMESTAMP_OVERLAP",
    "ColumnTypeChanged",
    "IncrementalCheck",
    "Outcome",
    "column_kind",
    "decode_key",
    "decode_value",
    "encode_key",
    "encode_value",
    "full_pass_due",
    "index_advice",
    "lower_watermark",
    "refuse_unreadable_watermark",
    "standing",
    "state_key",
    "table_key",
]
