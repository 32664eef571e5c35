"""What the dialect modules answer that the guard and the fix build on (the parts not exercised elsewhere)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from monitor.config import DatabaseConfig
from monitor.db import Database


def test_mariadb_tells_which_columns_a_plain_unique_index_already_compares_case_insensitively(mysql):
    mysql.execute("CREATE TABLE person (id INTEGER PRIMARY KEY, inherited VARCHAR(40), "
                  "ci VARCHAR(40) COLLATE utf8mb4_unicode_ci, bin VARCHAR(40) COLLATE utf8mb4_bin, n INTEGER) "
                  "DEFAULT COLLATE utf8mb4_general_ci")
    database = Database("d", DatabaseConfig(url=mysql.url))
    try:
        with database.read_only() as conn:
            table = sa.Table("person", sa.MetaData(), autoload_with=conn)
            collations = database.rules.column_collations(conn, table)
    finally:
        database.dispose()
    enforces = {name: database.rules.plain_index_enforces_case_insensitive(collations[name])
                for name in ("inherited", "ci", "bin", "n")}
    assert enforces == {"inherited": True, "ci": True, "bin": False, "n": False}
    # and the rule is the server's: a unique index on the _ci column refuses a case variant
    mysql.execute("CREATE UNIQUE INDEX uq_ci ON person (ci)", "INSERT INTO person (id, ci) VALUES (1, 'Ann')")
    with pytest.raises(sa.exc.IntegrityError):
        mysql.execute("INSERT INTO person (id, ci) VALUES (2, 'ANN')")


def test_each_dialect_describes_its_guard_features(db):
    database = Database("d", DatabaseConfig(url=db.url))
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
    try:
        with database.read_only() as conn:
            version = database.rules.server_version(conn)
    finally:
        database.dispose()
    rules = database.rules
    expected = {"postgresql": (True, True, True, True), "mysql": (False, False, False, False),
                "sqlite": (False, False, True, False)}[db.dialect]
    nulls_not_distinct = rules.nulls_not_distinct(version)
    assert (rules.concurrent_index_build, nulls_not_distinct, rules.partial_index, rules.returning_delete) == expected
    lock = rules.named_lock("auth.login_source")
    assert (lock is None) == (db.dialect == "sqlite")


_WINDOW_OVER_200K_ROWS = ("SELECT count(*) FROM (SELECT seq, CAST(REPEAT('x', 60) AS CHAR(60)) AS pad, row_number() "
                          "OVER (PARTITION BY seq MOD 1000 ORDER BY seq) AS r FROM seq_1_to_200000) x WHERE r > 1")


def test_mariadb_whole_table_statement_keeps_temporary_tables_in_memory_then_restores_the_session(mysql):
    """The snapshot's window functions spill to on-disk temporary tables beyond 16 MiB (slow, and deleted under the
    statement by any mariadbd starting with the same tmpdir): inside `whole_table_statement` they stay in
    memory; afterwards the session has its own settings back."""
    database = Database("d", DatabaseConfig(url=mysql.url))

    def disk_tables(conn: sa.Connection) -> int:
        return int(conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Created_tmp_disk_tables'").one()[1])

    try:
        with database.connect(database.writer) as conn:
            conn.exec_driver_sql("SET SESSION tmp_table_size = 1048576, max_heap_table_size = 2097152, "
                                 "sort_buffer_size = 262144")
            before = disk_tables(conn)
            assert conn.exec_driver_sql(_WINDOW_OVER_200K_ROWS).scalar() == 199000
            spilled = disk_tables(conn)
            assert spilled > before  # the statement spills as it is
            with database.rules.whole_table_statement(conn):
                assert conn.exec_driver_sql(_WINDOW_OVER_200K_ROWS).scalar() == 199000
            assert disk_tables(conn) == spilled
            sizes = conn.exec_driver_sql("SELECT @@SESSION.tmp_table_size, @@SESSION.max_heap_table_size, "
                                         "@@SESSION.sort_buffer_size").one()
            assert tuple(sizes) == (1048576, 2097152, 262144)
    finally:
        database.dispose()


def test_mariadb_row_digest_is_sha2_which_fips_mode_keeps(mysql):
    """MySQL in FIPS mode returns NULL for MD5() (9.6 moved it to a component), and a NULL digest equals nothing,
    so a trigger rewriting a repointed row would pass unseen: the digest is SHA2's, non-NULL for NULLs and bytes,
    and differs when one value does. It is 32 hex digits, MD5's size: a fix that logged MD5 before has repoint logs
    with a 32-character digest column, and resuming it logs there (64 digits: "Data too long", at every run)."""
    mysql.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, a VARCHAR(10), b VARBINARY(4), c DATETIME(6))",
                  "INSERT INTO t VALUES (1, NULL, X'00FF', '2026-01-01 00:00:00'), (2, NULL, X'00FE', NULL)")
    database = Database("d", DatabaseConfig(url=mysql.url))
    try:
        with database.read_only() as conn:
            table = sa.Table("t", sa.MetaData(), autoload_with=conn)
            digest = database.rules.row_digest([table.c.a, table.c.b, table.c.c])
            assert digest is not None
            digests = conn.execute(sa.select(digest).order_by(table.c.id)).scalars().all()
            text = str(digest.compile(dialect=conn.dialect)).lower()
    finally:
        database.dispose()
    assert "md5" not in text and "sha2" in text, text
    assert all(d is not None and len(d) == 32 for d in digests) and digests[0] != digests[1], digests


def test_mariadb_shape_probe_does_not_wait_on_an_alter_queued_behind_the_dry_runs_own_read(mysql):
    """review of polish16: the dry run's transaction holds a metadata lock on the table it read; an ALTER TABLE of
    another session queues behind it, and the probe's CREATE TEMPORARY TABLE ... AS SELECT queued behind the ALTER:
    the dry run waited for its own probe until the ALTER's lock wait timed out. The probe waits a short time and
    then takes the server for one it cannot ask."""
    import threading
    import time

    mysql.execute("CREATE TABLE wide (id INTEGER PRIMARY KEY, v VARCHAR(10))")
    altered: list[BaseException | None] = []

    def alter() -> None:
        engine = sa.create_engine(mysql.url)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SET SESSION lock_wait_timeout = 60")
                conn.exec_driver_sql("ALTER TABLE wide ADD COLUMN w INTEGER")
            altered.append(None)
        except BaseException as exc:  # reported by the assertion below
            altered.append(exc)
        finally:
            engine.dispose()

    engine = sa.create_engine(mysql.url)
    watcher = sa.create_engine(mysql.url)
    writer = threading.Thread(target=alter)
    try:
        with engine.connect() as conn, conn.begin():
            conn.exec_driver_sql("SELECT * FROM wide")
            writer.start()
            with watcher.connect() as w:  # the ALTER waits for the metadata lock this transaction holds
                deadline = time.monotonic() + 30
                while not w.execute(sa.text("SELECT count(*) FROM information_schema.PROCESSLIST WHERE STATE = "
                                            "'Waiting for table metadata lock' AND INFO LIKE 'ALTER TABLE wide%'")
                                    ).scalar():
                    assert time.monotonic() < deadline, "the ALTER never queued"
            from monitor.dialects import for_backend
            started = time.monotonic()
            said = for_backend(conn.dialect.name).refused_table_shape(conn, "SELECT * FROM wide LIMIT 0")
            waited = time.monotonic() - started
        writer.join(60)
        assert said is None and waited < 30 and altered == [None]
    finally:
        engine.dispose()
        watcher.dispose()


def test_mariadb_shape_probe_asks_innodb_whatever_the_sessions_temporary_engine(mysql):
    """review of polish16: the probe made a temporary table of the session's `default_tmp_storage_engine`; with
    MEMORY, a table with a TEXT column failed the dry run with error 1163, and with Aria InnoDB's row-size limit
    was never asked. The probe names InnoDB, the archive's engine."""
    from monitor.dialects import for_backend

    mysql.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    memory = "SET SESSION default_tmp_storage_engine = MEMORY"
    engine = sa.create_engine(mysql.url, connect_args={"init_command": memory})
    try:
        with engine.connect() as conn:
            assert for_backend(conn.dialect.name).refused_table_shape(conn, "SELECT * FROM notes LIMIT 0") is None
    finally:
        engine.dispose()
