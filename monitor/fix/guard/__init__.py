"""The guard: the unique index every seed incident ended with, added once the duplicates are gone.

What counts as "the guard is there" is decided by the database's catalog, never by the index's name alone:
an index named `uq_dupewatch_<check>` counts only if it is valid and its definition is the one this check
needs (columns or expressions, uniqueness, NULLS NOT DISTINCT, predicate). An invalid one (an interrupted
PostgreSQL build) is dropped and rebuilt; a valid one with another definition is a refusal naming it.

- PostgreSQL: `CREATE UNIQUE INDEX CONCURRENTLY` on an autocommit connection (the table stays writable),
  `NULLS NOT DISTINCT` on 15+ when the check treats NULLs as equal, an expression index (`lower()`,
  `trim()`) for case-insensitive or trimmed keys, and the check's `where` as a partial-index predicate.
  Before anything is built the definition is tried on an empty temporary copy of the table
  (`CREATE TEMP TABLE ... (LIKE ...)`, rolled back): PostgreSQL itself says whether the predicate and the
  expressions are IMMUTABLE (a `where` with `now()` is refused up front, naming it) and deparses the
  definition we compare an existing index against (`pg_get_indexdef`, `pg_index.indisvalid/indisready`).
  A partitioned table cannot be indexed concurrently (PostgreSQL docs, CREATE INDEX, "Notes"): the index is
  created `ON ONLY` the parent, then concurrently on each partition and attached (`ALTER INDEX ... ATTACH
  PARTITION`), which makes the parent's index valid. Ctrl-C during a build cancels it on the server and drops
  the half-built index from a fresh connection, or names the exact `DROP INDEX CONCURRENTLY` to run.
- MySQL/MariaDB: `CREATE UNIQUE INDEX` (an online `ALTER TABLE ... ADD UNIQUE`), atomic. A case-insensitive
  key on a column whose collation already compares case-insensitively (and a trimmed key under a PAD SPACE
  collation, which ignores trailing spaces) needs no expression: the column itself is indexed, as the server
  says when asked to compare with the column's collation (information_schema.COLUMNS). Other normalised keys
  need MySQL 8.0.13+ functional key parts; MariaDB has none, and we refuse rather than add a generated column
  behind the application's back. No partial indexes.
- SQLite: `CREATE UNIQUE INDEX`, expressions and partial indexes included, in the same `BEGIN IMMEDIATE`
  transaction as the duplicate count, so no writer can slip a duplicate in between.

While the application keeps writing duplicates, `secure_guard` converges: it fixes the stragglers (`run_fix`)
and retries the build, at most `GUARD_ROUNDS` rounds, each reported; with `lock_timeout` it finally takes the
table's write lock (PostgreSQL `LOCK TABLE ... IN SHARE ROW EXCLUSIVE MODE` under `SET LOCAL lock_timeout`;
MariaDB/MySQL `LOCK TABLES ... WRITE` under `lock_wait_timeout`), re-counts under the lock and builds a plain
`CREATE UNIQUE INDEX`, or gives up cleanly when the lock is not granted in time.

MySQL, MariaDB and SQLite (and PostgreSQL before 15) treat NULLs in a unique index as distinct; when the
check treats them as equal and a key column is nullable, the report says so. The index name is
deterministic: `uq_dupewatch_<check>`, sanitised, at most 63 characters.
"""

from __future__ import annotations

from monitor.fix.guard.report import DuplicatesFound, GuardInterrupted, GuardReport, GuardRound, guard_name
from monitor.fix.guard.rounds import GUARD_ROUNDS, add_guard, guard_after_fix, guard_refusal, secure_guard

__all__ = ["GUARD_ROUNDS", "DuplicatesFound", "GuardInterrupted", "GuardReport", "GuardRound", "add_guard",
           "guard_after_fix", "guard_name", "guard_refusal", "secure_guard"]
