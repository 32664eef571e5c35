"""Issue 16, found by an adversarial run (F9, F10, F11): what a trigger does that no row count of a user table
shows. PostgreSQL's `pg_stat_xact_user_tables` does not count a TRUNCATE (it sets that table's counts of the
transaction back), a large object's `lo_unlink` (system catalogs), nor a write through a foreign table (another
server's rows). The account now also reads system catalogs' counts and the transaction's own locks (ACCESS
EXCLUSIVE on a table: truncated, altered; ROW EXCLUSIVE on a foreign table: written): fix and undo roll back,
naming the table and why, nothing changed. What the fix and undo do themselves (a toasted row's delete, the drop
of the plan table and of the guard, a trigger that takes a lock and writes nothing) passes.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from dbtest import TestDatabase
from fix_support import config_file, contents, json_out, run_cli

USR = {"name": "usr", "table": "usr", "key": ["email"]}


def _usr(db: TestDatabase) -> None:
    db.execute("CREATE TABLE usr (id INT PRIMARY KEY, email TEXT NOT NULL)",
               "INSERT INTO usr VALUES (1, 'a'), (2, 'a'), (3, 'b')",
               "CREATE TABLE user_stats (usr_id INT, logins INT)",
               "INSERT INTO user_stats VALUES (1, 10), (2, 5), (3, 7)")


def _trigger(db: TestDatabase, name: str, when: str, body: str, each: str = "ROW") -> None:
    db.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body}; RETURN NULL; END $$",
               f"CREATE TRIGGER {name} {when} ON usr FOR EACH {each} EXECUTE FUNCTION {name}()")


def _fix_stops(db: TestDatabase, tmp_path, *tables: str) -> str:
    path = str(config_file(tmp_path, db, [USR]))
    before = contents(db, *tables)
    fixed = run_cli("fix", "usr", "--config", path, "--yes")
    assert fixed.exit_code == 2, fixed.output
    assert contents(db, *tables) == before
    message = fixed.stderr.strip()
    assert "\n" not in message and "rolled back" in message, message
    return message


def _undo_refused(db: TestDatabase, path: str, fix_id: str, *tables: str) -> str:
    before = contents(db, *tables)
    undone = run_cli("undo", fix_id, "--config", path, "--yes")
    assert undone.exit_code == 2, undone.output
    assert contents(db, *tables) == before
    assert db.scalar("SELECT state FROM dupewatch_fix") == "done"
    message = undone.stderr.strip()
    assert "\n" not in message and "nothing changed" in message, message
    return message


def _fixed(db: TestDatabase, tmp_path) -> tuple[str, str]:
    path = str(config_file(tmp_path, db, [USR]))
    fixed = run_cli("fix", "usr", "--config", path, "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    return path, json_out(fixed)["fix_id"]


@pytest.mark.parametrize("each", ["ROW", "STATEMENT"])
def test_postgres_a_trigger_truncating_another_table_rolls_the_batch_back(pg, tmp_path, each):
    """F9: the fix said done, 1 deleted, exit 0, and all of `user_stats` was gone, none of it archived."""
    _usr(pg)
    _trigger(pg, "clear_stats", "AFTER DELETE", "TRUNCATE user_stats", each)
    message = _fix_stops(pg, tmp_path, "usr", "user_stats")
    assert "truncated user_stats" in message and "clear_stats" in message, message
    assert pg.scalar("SELECT COUNT(*) FROM user_stats") == 3


def test_postgres_undo_refuses_a_trigger_truncating_another_table(pg, tmp_path):
    """F9, undo: an AFTER INSERT trigger added since the fix emptied `user_stats`; undo said "1 row restored"."""
    _usr(pg)
    path, fix_id = _fixed(pg, tmp_path)
    _trigger(pg, "clear_stats", "AFTER INSERT", "TRUNCATE user_stats")
    message = _undo_refused(pg, path, fix_id, "usr", "user_stats")
    assert "truncated user_stats" in message and "clear_stats" in message, message


@pytest.fixture
def doc(pg: TestDatabase) -> Iterator[list[int]]:
    """Files kept as large objects: two `cv` rows, each the only reference to its object. Yields their oids."""
    with pg.engine.begin() as conn:
        oids = [int(conn.execute(sa.text(f"SELECT lo_from_bytea(0, '{content}'::bytea)")).scalar_one())
                for content in ("original", "newer")]
    try:
        pg.execute("CREATE TABLE doc (id INT PRIMARY KEY, name TEXT, blob OID)",
                   f"INSERT INTO doc VALUES (1, 'cv', {oids[0]}), (2, 'cv', {oids[1]})")
        yield oids
    finally:
        for oid in oids:
            pg.execute(f"SELECT lo_unlink(oid) FROM pg_largeobject_metadata WHERE oid = {oid}")


def _objects(pg: TestDatabase, oids: list[int]) -> int:
    return int(pg.scalar(f"SELECT COUNT(*) FROM pg_largeobject_metadata WHERE oid IN ({oids[0]}, {oids[1]})"))


def test_postgres_a_trigger_unlinking_a_large_object_rolls_the_batch_back(pg, doc, tmp_path):
    """F10: an AFTER DELETE trigger's `lo_unlink(OLD.blob)`: the file was gone, and undo brought back a row pointing
    at nothing. `pg_largeobject_metadata` is a system catalog, which the account now counts."""
    pg.execute("CREATE FUNCTION doc_unlink() RETURNS trigger LANGUAGE plpgsql AS "
               "$$ BEGIN PERFORM lo_unlink(OLD.blob); RETURN NULL; END $$",
               "CREATE TRIGGER doc_unlink AFTER DELETE ON doc FOR EACH ROW EXECUTE FUNCTION doc_unlink()")
    path = str(config_file(tmp_path, pg, [{"name": "doc", "table": "doc", "key": ["name"]}]))
    fixed = run_cli("fix", "doc", "--config", path, "--yes")
    assert fixed.exit_code == 2, fixed.output
    assert "system catalog pg_largeobject" in fixed.stderr and "doc_unlink" in fixed.stderr, fixed.stderr
    assert _objects(pg, doc) == 2
    assert pg.scalar("SELECT COUNT(*) FROM doc") == 2


def test_postgres_undo_refuses_a_trigger_unlinking_a_large_object(pg, doc, tmp_path):
    path = str(config_file(tmp_path, pg, [{"name": "doc", "table": "doc", "key": ["name"]}]))
    fixed = run_cli("fix", "doc", "--config", path, "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    pg.execute("CREATE FUNCTION doc_unlink() RETURNS trigger LANGUAGE plpgsql AS "
               f"$$ BEGIN PERFORM lo_unlink({doc[0]}); RETURN NULL; END $$",
               "CREATE TRIGGER doc_unlink AFTER INSERT ON doc FOR EACH ROW EXECUTE FUNCTION doc_unlink()")
    before = contents(pg, "doc")
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", path, "--yes")
    assert undone.exit_code == 2 and "nothing changed" in undone.stderr, undone.output
    assert "system catalog" in undone.stderr and "doc_unlink" in undone.stderr, undone.stderr
    assert contents(pg, "doc") == before and _objects(pg, doc) == 2


@pytest.fixture
def remote_sessions(own_pg: TestDatabase) -> Iterator[TestDatabase]:
    """Sessions kept on another server through postgres_fdw (here a loopback to the test's own database):
    `remote_session` is a foreign table on `session`, holding one row of user 1 and one of user 2."""
    url = make_url(own_pg.url)
    own_pg.execute("CREATE EXTENSION postgres_fdw",
                   "CREATE TABLE session (id INT PRIMARY KEY, usr_id INT, token TEXT)",
                   "INSERT INTO session VALUES (1, 1, 'tok-keeper'), (2, 2, 'tok-duplicate')",
                   "CREATE SERVER elsewhere FOREIGN DATA WRAPPER postgres_fdw OPTIONS "
                   f"(host '{url.host}', port '{url.port or 5432}', dbname '{url.database}')",
                   f"CREATE USER MAPPING FOR CURRENT_USER SERVER elsewhere OPTIONS (user '{url.username}'"
                   + (f", password '{url.password}')" if url.password else ")"),
                   "CREATE FOREIGN TABLE remote_session (id INT, usr_id INT, token TEXT) SERVER elsewhere "
                   "OPTIONS (table_name 'session')")
    own_pg.execute("CREATE TABLE usr (id INT PRIMARY KEY, email TEXT NOT NULL)",
                   "INSERT INTO usr VALUES (1, 'a'), (2, 'a')")
    yield own_pg


def test_postgres_a_trigger_writing_a_foreign_table_rolls_the_batch_back(remote_sessions, tmp_path):
    """F11: the duplicate's session was deleted on the remote server, counted by no one, fix and undo exit 0."""
    db = remote_sessions
    _trigger(db, "usr_gone", "AFTER DELETE", "DELETE FROM remote_session WHERE usr_id = OLD.id")
    message = _fix_stops(db, tmp_path, "usr", "session")
    assert "wrote to foreign table remote_session" in message and "usr_gone" in message, message
    assert db.scalar("SELECT COUNT(*) FROM session") == 2


def test_postgres_undo_refuses_a_trigger_writing_a_foreign_table(remote_sessions, tmp_path):
    db = remote_sessions
    path, fix_id = _fixed(db, tmp_path)
    _trigger(db, "usr_back", "AFTER INSERT", "INSERT INTO remote_session VALUES (NEW.id + 100, NEW.id, 'new')")
    message = _undo_refused(db, path, fix_id, "usr", "session")
    assert "wrote to foreign table remote_session" in message and "usr_back" in message, message


def test_postgres_a_foreign_table_only_read_passes(remote_sessions, tmp_path):
    """A trigger that reads the foreign table (and writes nothing) is no change: the fix and its undo pass."""
    db = remote_sessions
    db.execute("CREATE TABLE usr_seen (usr_id INT)")
    _trigger(db, "usr_look", "AFTER DELETE",
             "PERFORM count(*) FROM remote_session WHERE usr_id = OLD.id; UPDATE usr_seen SET usr_id = 0 WHERE false")
    path, fix_id = _fixed(db, tmp_path)
    assert run_cli("undo", fix_id, "--config", path, "--yes").exit_code == 0
    assert db.rows("SELECT id FROM usr ORDER BY id") == [(1,), (2,)]


def test_postgres_what_the_fix_and_undo_do_themselves_passes(pg, tmp_path):
    """Rows whose values are stored out of line (TOAST: the chunks are deleted and archived with the row), a
    trigger that takes ROW EXCLUSIVE on another table and writes nothing, a guard added by the fix and dropped by
    its undo, and the drop of the plan table inside undo's account: none of it is refused."""
    # 128 kB of random hex per row, hard to compress: stored in the TOAST table
    big = "(SELECT string_agg(md5(random()::text || g || i), '') FROM generate_series(1, 4000) g)"
    pg.execute("CREATE TABLE usr (id INT PRIMARY KEY, email TEXT NOT NULL, bio TEXT)",
               f"INSERT INTO usr SELECT i, 'a', {big} FROM generate_series(1, 3) i",
               "CREATE TABLE user_stats (usr_id INT, logins INT)")
    _trigger(pg, "touch_stats", "AFTER DELETE", "UPDATE user_stats SET logins = logins + 1 WHERE usr_id = OLD.id")
    assert pg.scalar("SELECT pg_total_relation_size(reltoastrelid) FROM pg_class WHERE relname = 'usr' "
                     "AND relnamespace = current_schema()::regnamespace") > 100_000
    before = contents(pg, "usr")
    path = str(config_file(tmp_path, pg, [USR]))
    fixed = run_cli("fix", "usr", "--config", path, "--yes", "--json", "--add-constraint")
    assert fixed.exit_code == 0, fixed.output
    assert pg.scalar("SELECT COUNT(*) FROM usr") == 1
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", path, "--yes", "--drop-constraint")
    assert undone.exit_code == 0, undone.output
    assert contents(pg, "usr") == before
    assert pg.scalar("SELECT COUNT(*) FROM pg_indexes WHERE tablename = 'usr' AND schemaname = current_schema()") == 1


def test_postgres_the_dry_run_says_what_the_account_cannot_see(pg, tmp_path):
    _usr(pg)
    _trigger(pg, "clear_stats", "AFTER DELETE", "TRUNCATE user_stats")
    dry = run_cli("fix", "usr", "--config", str(config_file(tmp_path, pg, [USR])), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "a TRUNCATE" in dry.output and "not a write through dblink or another connection" in dry.output


def test_postgres_a_checked_foreign_table_is_refused_up_front(remote_sessions, tmp_path):
    """F7: the dry run said exit 0 and promised a fix that could never run (its account counts no row of another
    server); the fix then stopped `failed`, blocking the check's next fix. Refused as a view is, in one line."""
    db = remote_sessions
    db.execute("INSERT INTO session VALUES (3, 2, 'tok-again')")
    path = str(config_file(tmp_path, db, [{"name": "s", "table": "remote_session", "key": ["usr_id"]}]))
    before = contents(db, "session")
    for mode in ("--dry-run", "--yes"):
        refused = run_cli("fix", "s", "--config", path, mode)
        assert refused.exit_code == 2, refused.output
        message = refused.stderr.strip()
        assert "\n" not in message and "watches a foreign table ('remote_session')" in message, message
    assert contents(db, "session") == before
    assert ("dupewatch_fix",) not in db.rows("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")


def test_postgres_undo_refuses_an_event_trigger_truncating_another_table_during_its_own_ddl(own_pg, tmp_path):
    """Undo's own DDL (`--drop-constraint` dropping the guard) is planned only for the table it holds exclusively:
    an event trigger that truncates another table as the guard is dropped refuses undo, nothing changed (its own
    database: an event trigger fires on every DDL of the database)."""
    _usr(own_pg)
    path = str(config_file(tmp_path, own_pg, [USR]))
    fixed = run_cli("fix", "usr", "--config", path, "--yes", "--json", "--add-constraint")
    assert fixed.exit_code == 0, fixed.output
    own_pg.execute("CREATE FUNCTION clear_stats() RETURNS event_trigger LANGUAGE plpgsql AS "
                   "$$ BEGIN TRUNCATE user_stats; END $$",
                   "CREATE EVENT TRIGGER clear_stats ON sql_drop EXECUTE FUNCTION clear_stats()")
    before = contents(own_pg, "usr", "user_stats")
    try:
        undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", path, "--yes", "--drop-constraint")
    finally:
        own_pg.execute("DROP EVENT TRIGGER clear_stats")
    assert undone.exit_code == 2, undone.output
    assert "nothing changed" in undone.stderr and "truncated user_stats" in undone.stderr, undone.stderr
    assert contents(own_pg, "usr", "user_stats") == before
