"""Undo after the application's schema changed since the fix (a migration deployed in between): a column added
with a default gets it in the restored rows; one the rows could have no value for, or a rename (an archived
column gone while another appeared), or a table or column undo writes into that is gone, is refused in one
line, changing nothing. Undo crashed on each (`unexpected KeyError: 'flag' ... please report this`): the fix could
not be undone."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.engine import make_url

from dbtest import server_login, write_config
from fix_support import config_file, contents, json_out, run_cli


def _fixed(db, tmp_path):
    db.execute("CREATE TABLE account (id INTEGER PRIMARY KEY, email VARCHAR(20) NOT NULL, secret VARCHAR(20))",
               "CREATE TABLE login (id INTEGER PRIMARY KEY, account_id INTEGER REFERENCES account (id))",
               "INSERT INTO account VALUES (1, 'a', 's1'), (2, 'a', 's2'), (3, 'b', 's3')",
               "INSERT INTO login VALUES (10, 1), (11, 2)")
    path = config_file(tmp_path, db, [{"name": "c", "table": "account", "key": ["email"]}])
    before = contents(db, "account", "login")
    fixed = run_cli("fix", "c", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    return path, json_out(fixed)["fix_id"], before


def _fixed_archiving_logins(db, tmp_path):
    """Accounts 1 and 2 alike, each with a login (`ip` a column of it): fixed, archiving the duplicate's login."""
    db.execute("CREATE TABLE account (id INTEGER PRIMARY KEY, email VARCHAR(20) NOT NULL)",
               "CREATE TABLE login (id INTEGER PRIMARY KEY, account_id INTEGER REFERENCES account (id), "
               "ip VARCHAR(20))",
               "INSERT INTO account VALUES (1, 'a'), (2, 'a')", "INSERT INTO login VALUES (10, 1, 'x'), (11, 2, 'y')")
    path = config_file(tmp_path, db, [{"name": "c", "table": "account", "key": ["email"],
                                       "on_reference": {"login.account_id": "archive"}}])
    fixed = run_cli("fix", "c", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0 and json_out(fixed)["references_archived"] == 1, fixed.output
    return path, json_out(fixed)["fix_id"]


def test_a_column_added_with_a_default_since_the_fix_takes_it_in_the_restored_rows(db, tmp_path):
    path, fix_id, _before = _fixed(db, tmp_path)
    db.execute("ALTER TABLE account ADD COLUMN flag INTEGER DEFAULT 5")
    undone = run_cli("undo", fix_id, "--config", str(path), "--yes", "--json")
    assert undone.exit_code == 0, undone.output
    assert (json_out(undone)["restored"], json_out(undone)["repointed"]) == (1, 1)
    assert json_out(undone)["defaulted"] == ["flag"]
    assert db.rows("SELECT id, email, secret, flag FROM account ORDER BY id") == [
        (1, "a", "s1", 5), (2, "a", "s2", 5), (3, "b", "s3", 5)]
    assert db.rows("SELECT id, account_id FROM login ORDER BY id") == [(10, 1), (11, 2)]


@pytest.mark.parametrize("as_json", [False, True])
def test_a_column_dropped_since_the_fix_is_reported_with_the_archive_that_keeps_its_values(db, tmp_path, as_json):
    """break16b finding 7: undo restored the rows without the dropped column and said nothing of its archived
    values (an added column was reported)."""
    path, fix_id, _before = _fixed(db, tmp_path)
    db.execute("ALTER TABLE account DROP COLUMN secret")
    undone = run_cli("undo", fix_id, "--config", str(path), "--yes", *(["--json"] if as_json else []))
    assert undone.exit_code == 0, undone.output
    if as_json:
        assert json_out(undone)["left_in_archive"] == {"dupewatch_archive_account": ["secret"]}
    else:
        assert ("column(s) dropped since the fix were not restored, their archived values stay in the archive: "
                "secret (in dupewatch_archive_account)") in " ".join(undone.stdout.split()), undone.stdout
    assert db.rows("SELECT id, email FROM account ORDER BY id") == [(1, "a"), (2, "a"), (3, "b")]
    assert db.rows("SELECT id, secret FROM dupewatch_archive_account") == [(2, "s2")]  # where it says


def test_a_column_of_an_archived_referencing_table_dropped_since_the_fix_is_reported(db, tmp_path):
    path, fix_id = _fixed_archiving_logins(db, tmp_path)
    db.execute("ALTER TABLE login DROP COLUMN ip")
    undone = run_cli("undo", fix_id, "--config", str(path), "--yes", "--json")
    assert undone.exit_code == 0, undone.output
    assert json_out(undone)["left_in_archive"] == {"dupewatch_archive_login": ["ip"]}
    assert db.rows("SELECT id, account_id FROM login ORDER BY id") == [(10, 1), (11, 2)]


@pytest.mark.parametrize("migration", ["rename", "not_null_without_default"])
def test_a_column_change_the_restored_rows_cannot_follow_is_refused_naming_it(pg, tmp_path, migration):
    """PostgreSQL alone: SQLite and MariaDB cannot add a NOT NULL column without a default to a table with rows
    (the rename is the same code on every database)."""
    path, fix_id, _before = _fixed(pg, tmp_path)
    if migration == "rename":
        pg.execute("ALTER TABLE account RENAME COLUMN secret TO token")
    else:
        pg.execute("ALTER TABLE account ADD COLUMN flag INTEGER NOT NULL DEFAULT 0",
                   "ALTER TABLE account ALTER COLUMN flag DROP DEFAULT")
    after_fix = contents(pg, "account", "login")
    undone = run_cli("undo", fix_id, "--config", str(path), "--yes")
    assert undone.exit_code == 2, undone.output
    assert "refused, nothing changed" in undone.stderr and "Traceback" not in undone.output
    assert ("(token) and lacks archived one(s) that hold values of this fix's rows (secret: 1 row(s))"
            if migration == "rename"
            else "(flag: part of the primary key, or NOT NULL without a default)") in undone.stderr
    assert len(undone.stderr.strip().splitlines()) == 1
    assert contents(pg, "account", "login") == after_fix


def test_a_rename_is_refused_on_every_database(db, tmp_path):
    path, fix_id, before = _fixed(db, tmp_path)
    db.execute("ALTER TABLE account RENAME COLUMN secret TO token")
    after_fix = contents(db, "account", "login")
    undone = run_cli("undo", fix_id, "--config", str(path), "--yes")
    assert undone.exit_code == 2 and "a renamed column's archived values would come back empty" in undone.stderr
    assert contents(db, "account", "login") == after_fix
    # Renamed back, the undo puts everything back.
    db.execute("ALTER TABLE account RENAME COLUMN token TO secret")
    undone = run_cli("undo", fix_id, "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert contents(db, "account", "login") == before


@pytest.mark.parametrize("migration", ["drop_referencing_table", "rename_referencing_column", "drop_fixed_table"])
def test_a_table_or_column_undo_writes_into_gone_since_the_fix_is_refused_naming_it(db, tmp_path, migration):
    """Undo said `unexpected NoSuchTableError: login ... please report this` (or KeyError for a renamed column)."""
    path, fix_id, _before = _fixed(db, tmp_path)
    if migration == "drop_referencing_table":
        db.execute("DROP TABLE login")
        expected = "table 'login', whose rows it repointed, no longer exists"
    elif migration == "rename_referencing_column":
        if db.dialect == "mysql":  # MariaDB refuses to rename a column its foreign key uses
            name = db.scalar("SELECT CONSTRAINT_NAME FROM information_schema.REFERENTIAL_CONSTRAINTS "
                             "WHERE CONSTRAINT_SCHEMA = DATABASE() AND TABLE_NAME = 'login'")
            db.execute(f"ALTER TABLE login DROP FOREIGN KEY {name}")
        db.execute("ALTER TABLE login RENAME COLUMN account_id TO owner_id")
        expected = "table 'login', whose rows it repointed, no longer has column(s) account_id"
    else:
        db.execute("DROP TABLE login", "DROP TABLE account")
        expected = "table 'account', whose rows it deleted, no longer exists"
    undone = run_cli("undo", fix_id, "--config", str(path), "--yes")
    assert undone.exit_code == 2, undone.output
    assert "refused, nothing changed" in undone.stderr and expected in undone.stderr, undone.stderr
    assert "unexpected" not in undone.stderr and len(undone.stderr.strip().splitlines()) == 1


def test_a_check_constraint_added_since_the_fix_is_not_blamed_on_a_conflicting_row(pg, tmp_path):
    """PostgreSQL: undo said only "a row now conflicts with a row to restore", about a CHECK that the restored
    row itself fails."""
    pg.execute("CREATE TABLE account (id INTEGER PRIMARY KEY, email VARCHAR(20) NOT NULL, credit INTEGER)",
               "INSERT INTO account VALUES (1, 'a', 5), (2, 'a', -1), (3, 'b', 3)")
    path = config_file(tmp_path, pg, [{"name": "c", "table": "account", "key": ["email"]}])
    fixed = run_cli("fix", "c", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    pg.execute("ALTER TABLE account ADD CONSTRAINT credit_positive CHECK (credit > 0)")
    undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes")
    assert undone.exit_code == 2, undone.output
    assert "credit_positive" in undone.stderr and "refused, nothing changed" in undone.stderr
    assert "a constraint added or changed since the fix (a CHECK, a NOT NULL) refuses a restored row" in undone.stderr
    assert pg.rows("SELECT id FROM account ORDER BY id") == [(1,), (3,)]


NARROWED = {"postgresql": "ALTER TABLE account ALTER COLUMN secret TYPE VARCHAR(1)",
            "mysql": "ALTER TABLE account MODIFY secret VARCHAR(1)"}


@pytest.mark.parametrize("strict", [True, False], ids=["strict", "lenient"])
def test_a_column_narrowed_since_the_fix_is_named_with_both_types(server, tmp_path, strict):
    """A migration narrowed `secret` (VARCHAR(20) to (1)): the restored values do not fit. Strict servers refuse
    the insert, lenient MariaDB (`sql_mode = ''`) cuts them, which undo sees as rows not the archived ones; either
    way undo refuses, nothing changed, naming the column with the table's and the archive's types, and no trigger
    (it blamed one that did not exist, and named no column on PostgreSQL)."""
    db = server
    if not strict and db.dialect != "mysql":
        pytest.skip("PostgreSQL has no lenient mode")
    path, fix_id, _before = _fixed(db, tmp_path)
    db.execute("UPDATE account SET secret = NULL", NARROWED[db.dialect])
    if not strict:
        text = path.read_text().replace(db.url, db.url + "?init_command=SET+SESSION+sql_mode%3D%27%27")
        path.write_text(text)
    after_fix = contents(db, "account", "login")
    undone = run_cli("undo", fix_id, "--config", str(path), "--yes")
    assert undone.exit_code == 2, undone.output
    line, = undone.stderr.strip().splitlines()
    assert "refused, nothing changed" in line and "the table changed since the fix" in line, line
    assert "account.secret is " in line and "the archive's " in line and "trigger" not in line, line
    assert contents(db, "account", "login") == after_fix


def _fixed_twice(db, tmp_path):
    """Two fixes of `account` sharing its archive: the first's row holds a `secret`, the second's (id 4) NULL."""
    path, first, _before = _fixed(db, tmp_path)
    db.execute("INSERT INTO account VALUES (4, 'b', NULL)")
    fixed = run_cli("fix", "c", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert db.rows("SELECT id, secret FROM dupewatch_archive_account ORDER BY id") == [(2, "s2"), (4, None)]
    return path, first, json_out(fixed)["fix_id"]


def test_a_dropped_column_is_named_only_on_the_undo_of_a_fix_whose_archived_rows_hold_a_value_there(db, tmp_path):
    """The archive is shared by the fixes of a table: `secret` holds fix 1's values and NULL in fix 2's rows. Undo
    of fix 2 named it as left in the archive though nothing of fix 2's is there; undo of fix 1 still names it.
    (A column dropped before fix 2 refuses fix 2: its archive no longer matches the table.)"""
    path, first, second = _fixed_twice(db, tmp_path)
    db.execute("ALTER TABLE account DROP COLUMN secret")
    undone = run_cli("undo", second, "--config", str(path), "--yes", "--json")
    assert undone.exit_code == 0, undone.output
    assert "left_in_archive" not in json_out(undone), json_out(undone)
    assert db.rows("SELECT id, email FROM account ORDER BY id") == [(1, "a"), (3, "b"), (4, "b")]
    undone = run_cli("undo", first, "--config", str(path), "--yes", "--json")
    assert undone.exit_code == 0, undone.output
    assert json_out(undone)["left_in_archive"] == {"dupewatch_archive_account": ["secret"]}


def test_a_renamed_column_holding_null_in_every_row_of_the_fix_does_not_refuse_its_undo(db, tmp_path):
    """The archive is shared by the fixes of a table: `secret` holds fix 1's value and NULL in fix 2's row. After
    `secret` was renamed `token`, undo of fix 2 was refused as a rename whose archived values would come back empty,
    though none of fix 2's is there: it restores its row (token NULL, as archived), and undo of fix 1, whose row
    holds a value there, is still refused, naming the column and how many of its rows hold one."""
    path, first, second = _fixed_twice(db, tmp_path)
    db.execute("ALTER TABLE account RENAME COLUMN secret TO token")
    undone = run_cli("undo", second, "--config", str(path), "--yes", "--json")
    assert undone.exit_code == 0, undone.output
    assert json_out(undone)["restored"] == 1 and json_out(undone)["defaulted"] == ["token"], json_out(undone)
    assert "left_in_archive" not in json_out(undone), json_out(undone)
    assert db.rows("SELECT id, email, token FROM account ORDER BY id") == [
        (1, "a", "s1"), (3, "b", "s3"), (4, "b", None)]
    after_undo = contents(db, "account", "login")
    undone = run_cli("undo", first, "--config", str(path), "--yes")
    assert undone.exit_code == 2, undone.output
    line, = undone.stderr.strip().splitlines()
    assert "refused, nothing changed" in line and "(token) and lacks archived one(s) that hold values of this " \
        "fix's rows (secret: 1 row(s))" in line, line
    assert contents(db, "account", "login") == after_undo


def test_postgres_a_column_dropped_from_the_archive_by_hand_is_not_taken_for_one_added_to_the_table(pg, tmp_path):
    """The archive altered by hand (a column dropped from `dupewatch_archive_account`, the table unchanged): undo
    restored the rows with NULL there, exit 0, saying the column had been "added since the fix" and took its
    default: the fix's archived values were lost without a word of it. PostgreSQL's catalog keeps a trace of a
    dropped column (`attisdropped`), so undo now refuses, nothing changed, naming the archive and the column."""
    path, fix_id, _before = _fixed(pg, tmp_path)
    pg.execute("ALTER TABLE dupewatch_archive_account DROP COLUMN secret")
    before = contents(pg, "account", "login")
    undone = run_cli("undo", fix_id, "--config", str(path), "--yes")
    assert undone.exit_code == 2, undone.output
    message = " ".join(undone.stderr.split())
    assert "nothing changed" in message and "dupewatch_archive_account" in message and "(secret)" in message
    assert "added since the fix" not in message and "Traceback" not in undone.output
    assert contents(pg, "account", "login") == before
    assert pg.scalar("SELECT state FROM dupewatch_fix") == "done"


def test_a_column_dropped_from_the_archive_by_hand_is_refused_naming_it_on_every_database(db, tmp_path):
    """Issue 16: MySQL/MariaDB and SQLite keep no trace of a dropped column, so undo restored the rows with NULL in
    `secret`, exit 0, the fix's archived values lost without a word. The fix records the archive's columns as the
    database reported them; undo compares them with the archive's now: refused, nothing changed, one line naming
    the archive and the column."""
    path, fix_id, _before = _fixed(db, tmp_path)
    db.execute("ALTER TABLE dupewatch_archive_account DROP COLUMN secret")
    before = contents(db, "account", "login")
    undone = run_cli("undo", fix_id, "--config", str(path), "--yes")
    assert undone.exit_code == 2, undone.output
    line, = undone.stderr.strip().splitlines()
    assert "refused, nothing changed" in line and "Traceback" not in undone.output, line
    assert "archive table 'dupewatch_archive_account' no longer has column(s) it had when the fix archived its " \
        "rows there (secret)" in line, line
    assert contents(db, "account", "login") == before
    assert db.scalar("SELECT state FROM dupewatch_fix") == "done"
    # The column given back (its values lost: NULL), the operator's choice, undo restores what the archive holds.
    db.execute("ALTER TABLE dupewatch_archive_account ADD COLUMN secret VARCHAR(20)")
    undone = run_cli("undo", fix_id, "--config", str(path), "--yes")
    assert undone.exit_code == 0, undone.output
    assert db.rows("SELECT id, secret FROM account ORDER BY id") == [(1, "s1"), (2, None), (3, "s3")]


def _undo_refused_in_one_line(db, path, fix_id):
    """`undo FIX_ID --yes` is refused (exit 2) in one line saying "refused, nothing changed", and account and login
    are as they were: that line."""
    before = contents(db, "account", "login")
    undone = run_cli("undo", fix_id, "--config", str(path), "--yes")
    assert undone.exit_code == 2, undone.output
    line, = undone.stderr.strip().splitlines()
    assert "refused, nothing changed" in line, line
    assert contents(db, "account", "login") == before
    return line


def test_a_column_dropped_by_hand_from_an_archived_referencing_tables_archive_is_refused(db, tmp_path):
    """The same for the archive of a referencing table (on_reference = "archive"): undo restored its rows with
    NULL in `ip`, exit 0."""
    path, fix_id = _fixed_archiving_logins(db, tmp_path)
    db.execute("ALTER TABLE dupewatch_archive_login DROP COLUMN ip")
    line = _undo_refused_in_one_line(db, path, fix_id)
    assert "'dupewatch_archive_login' no longer has column(s)" in line and "(ip)" in line, line


def test_a_shared_archive_that_gained_a_column_refuses_only_the_fix_whose_column_was_dropped_by_hand(db, tmp_path):
    """An archive shared by two fixes of `account`: after fix 1 the table gained `flag` and the operator gave the
    archive `flag` too (a fix refuses an archive that no longer matches its table), fix 2 archived a row holding
    flag 7; then `flag` was dropped from the archive by hand. Undo of fix 2 lost its flag without a word
    (MySQL/MariaDB, SQLite: NULL restored, exit 0); undo of fix 1, whose archive never had `flag`, was refused on
    PostgreSQL (its catalog knows a column was dropped from the archive, not whose). Now fix 2's undo is refused
    naming `flag`, and fix 1's restores its row with the column's default, as the table's other rows got it."""
    path, first, _before = _fixed(db, tmp_path)
    db.execute("ALTER TABLE account ADD COLUMN flag INTEGER DEFAULT 5",
               "ALTER TABLE dupewatch_archive_account ADD COLUMN flag INTEGER",
               "INSERT INTO account (id, email, secret, flag) VALUES (4, 'b', 's4', 7)")
    fixed = run_cli("fix", "c", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    second = json_out(fixed)["fix_id"]
    assert db.rows("SELECT id, flag FROM dupewatch_archive_account ORDER BY id") == [(2, None), (4, 7)]
    db.execute("ALTER TABLE dupewatch_archive_account DROP COLUMN flag")
    line = _undo_refused_in_one_line(db, path, second)
    assert "'dupewatch_archive_account' no longer has column(s)" in line and "(flag)" in line, line
    undone = run_cli("undo", first, "--config", str(path), "--yes", "--json")
    assert undone.exit_code == 0, undone.output
    assert json_out(undone)["defaulted"] == ["flag"], json_out(undone)
    assert db.rows("SELECT id, secret, flag FROM account ORDER BY id") == [
        (1, "s1", 5), (2, "s2", 5), (3, "s3", 5)]


def _recorded_before_the_archives(db):
    """The fix records as dupewatch wrote them before it recorded the archives' columns: no `archives` column."""
    db.execute("ALTER TABLE dupewatch_fix DROP COLUMN archives")


def test_a_fix_recorded_before_the_archives_columns_were_undoes_as_before(db, tmp_path):
    """A fix recorded by an earlier dupewatch (no `archives` in `dupewatch_fix`), then a later fix of the same
    table by this one (which adds it, recording only its own archive): undo of the old fix, the table having gained
    a column since, restores its rows with the column's default as before; the new fix's undo too."""
    path, first, _before = _fixed(db, tmp_path)
    _recorded_before_the_archives(db)
    db.execute("INSERT INTO account VALUES (4, 'b', 's4')")
    fixed = run_cli("fix", "c", "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    assert db.scalar("SELECT count(*) FROM dupewatch_fix WHERE archives IS NULL") == 1  # the old fix's
    db.execute("ALTER TABLE account ADD COLUMN flag INTEGER DEFAULT 5")
    for fix_id in (json_out(fixed)["fix_id"], first):
        undone = run_cli("undo", fix_id, "--config", str(path), "--yes", "--json")
        assert undone.exit_code == 0, undone.output
        assert json_out(undone)["defaulted"] == ["flag"], json_out(undone)
    assert db.rows("SELECT id, email, secret, flag FROM account ORDER BY id") == [
        (1, "a", "s1", 5), (2, "a", "s2", 5), (3, "b", "s3", 5), (4, "b", "s4", 5)]


def test_postgres_a_fix_recorded_before_the_archives_columns_is_still_refused_by_the_catalogs_trace(pg, tmp_path):
    """A fix recorded without the archives' columns: PostgreSQL's catalog still tells of a column dropped from the
    archive by hand (as before: `attisdropped`), undo refuses, nothing changed."""
    path, fix_id, _before = _fixed(pg, tmp_path)
    _recorded_before_the_archives(pg)
    pg.execute("ALTER TABLE dupewatch_archive_account DROP COLUMN secret")
    before = contents(pg, "account", "login")
    undone = run_cli("undo", fix_id, "--config", str(path), "--yes")
    assert undone.exit_code == 2, undone.output
    line, = undone.stderr.strip().splitlines()
    assert "nothing changed" in line and "dupewatch_archive_account" in line and "(secret)" in line, line
    assert "columns were dropped from the archive since dupewatch created it" in line, line
    assert contents(pg, "account", "login") == before


def test_mysql_a_fix_role_without_alter_fixes_and_undoes_after_the_upgrade(mysql, tmp_path):
    """rev1: a fix role without ALTER (a fix needs it only for the guard) fixed before `dupewatch_fix.archives`
    existed; its first fix after the upgrade stopped on the ALTER adding it ("unexpected OperationalError ... ALTER
    command denied ... please report this"), and every later one. It fixes, recorded as before (no `archives`), and
    its fix undoes."""
    path, _first, _before = _fixed(mysql, tmp_path)
    _recorded_before_the_archives(mysql)
    mysql.execute("INSERT INTO account VALUES (4, 'b', 's4')")
    password = uuid.uuid4().hex
    with server_login("mysql", "GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX ON "
                      f"`{mysql.schema}`.* TO {{user}}", "GRANT PROCESS ON *.* TO {user}", prefix="dw_fix",
                      password=password) as user:
        url = make_url(mysql.url).set(username=user, password=password).render_as_string(hide_password=False)
        path = write_config(tmp_path / "role.toml", {"app": {"url": mysql.url, "fix_url": url}},
                            [{"database": "app", "name": "c", "table": "account", "key": ["email"]}])
        before = contents(mysql, "account", "login")
        fixed = run_cli("fix", "c", "--config", str(path), "--yes", "--json")
        assert fixed.exit_code == 0, fixed.output
        assert mysql.rows("SELECT id FROM account ORDER BY id") == [(1,), (3,)]
        undone = run_cli("undo", json_out(fixed)["fix_id"], "--config", str(path), "--yes")
        assert undone.exit_code == 0, undone.output
        assert contents(mysql, "account", "login") == before


def test_a_column_dropped_from_the_table_and_its_archive_does_not_refuse_a_column_added_since(db, tmp_path):
    """rev1: a migration dropped `secret` from the table and the operator dropped it from the archive too (its
    values wanted gone everywhere), then `flag` was added to the table. Undo was refused, saying the archive "no
    longer has column(s) it had ... (secret)" and the restored rows "would get the column's default instead", with
    a remedy (give the archive the column back) that restores nothing the table has: `secret` is no column of the
    table any more, `flag` one added since, whose default the restored rows take."""
    path, fix_id, _before = _fixed(db, tmp_path)
    db.execute("ALTER TABLE account DROP COLUMN secret", "ALTER TABLE dupewatch_archive_account DROP COLUMN secret",
               "ALTER TABLE account ADD COLUMN flag INTEGER DEFAULT 5")
    undone = run_cli("undo", fix_id, "--config", str(path), "--yes", "--json")
    assert undone.exit_code == 0, undone.output
    assert json_out(undone)["defaulted"] == ["flag"], json_out(undone)
    assert db.rows("SELECT id, email, flag FROM account ORDER BY id") == [(1, "a", 5), (2, "a", 5), (3, "b", 5)]
