"""Tables a fix must refuse, clearly and before writing anything: views, materialized views, PK-less
partitioned tables, and (MariaDB) a table too wide for its archive's one more column."""

import uuid

from sqlalchemy.engine import make_url

from dbtest import server_login, write_config
from fix_support import config_file, contents, make_config, run_cli
from monitor.engine import Monitor
from monitor.fix import FixRefused, make_plan


def _refusal(db, table):
    monitor = Monitor(make_config(db, [{"name": "c", "table": table, "key": ["k"]}]))
    try:
        make_plan(monitor, "c")
    except FixRefused as exc:
        return str(exc)
    finally:
        monitor.close()
    raise AssertionError("the fix was not refused")


def test_fix_refuses_a_view(db):
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k VARCHAR(10))",
               "INSERT INTO t (id, k) VALUES (1, 'x'), (2, 'x')",
               "CREATE VIEW v AS SELECT id, k FROM t")
    assert "watches a view" in _refusal(db, "v")
    assert db.scalar("SELECT count(*) FROM t") == 2


def test_fix_refuses_a_partitioned_table_without_primary_key(pg):
    pg.execute("CREATE TABLE p (id INT, k TEXT, created DATE) PARTITION BY RANGE (created)",
               "CREATE TABLE p2024 PARTITION OF p FOR VALUES FROM ('2024-01-01') TO ('2025-01-01')",
               "CREATE TABLE p2025 PARTITION OF p FOR VALUES FROM ('2025-01-01') TO ('2026-01-01')",
               "INSERT INTO p VALUES (1, 'x', '2024-02-01'), (2, 'x', '2025-02-01')")
    assert "partitioned and has no primary key" in _refusal(pg, "p")
    assert pg.scalar("SELECT count(*) FROM p") == 2


def test_fix_refuses_a_materialized_view_up_front(pg, tmp_path):
    """Its rows read like a table's (with a ctid), so the dry run promised a fix that then stopped at its first
    batch (`cannot lock rows in materialized view ... run the fix again to resume`)."""
    pg.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k VARCHAR(10))",
               "INSERT INTO t (id, k) VALUES (1, 'x'), (2, 'x')",
               "CREATE MATERIALIZED VIEW mv AS SELECT id, k FROM t")
    path = config_file(tmp_path, pg, [{"name": "c", "table": "mv", "key": ["k"]}])
    for args in (["--dry-run"], ["--yes"]):
        result = run_cli("fix", "c", "--config", str(path), *args)
        assert result.exit_code == 2, result.output
        assert "watches a materialized view ('mv')" in result.stderr
    assert pg.scalar("SELECT count(*) FROM mv") == 2
    assert not pg.rows("SELECT tablename FROM pg_tables WHERE tablename LIKE 'dupewatch%' "
                       "AND schemaname = current_schema()")


def test_mariadb_table_too_wide_for_its_archive_is_refused_in_one_line_leaving_no_half_made_archive(mysql,
                                                                                                  tmp_path):
    """64 `VARCHAR(255)` utf8mb4 columns: the table fits MariaDB's 65,535-byte row, its copy with the archive's
    `dupewatch_fix_id VARCHAR(40)` does not. The archive was created by `CREATE TABLE ... AS` and then `ALTER
    TABLE ... ADD`; MariaDB committed the first and refused the second, so the fix failed with the server's words and
    left an archive without the fix id, and every later run said that the table had changed since an earlier fix
    and to rename the archive. Now one statement creates it or nothing: the same refusal each run, naming the
    cause and what to do."""
    columns = ", ".join(f"c{i} VARCHAR(255)" for i in range(64))
    mysql.execute(f"CREATE TABLE wide (id INT PRIMARY KEY, email VARCHAR(20), {columns}) DEFAULT CHARSET=utf8mb4",
                  "INSERT INTO wide (id, email, c0) VALUES (1, 'a', 'x'), (2, 'a', 'y'), (3, 'b', 'z')")
    path = config_file(tmp_path, mysql, [{"name": "wide", "table": "wide", "key": ["email"]}])
    before = contents(mysql, "wide")
    for _run in range(2):
        fixed = run_cli("fix", "wide", "--config", str(path), "--yes")
        assert fixed.exit_code == 2, fixed.output
        assert len(fixed.stderr.strip().splitlines()) == 1 and "Traceback" not in fixed.output
        assert "the archive of 'wide' cannot be created" in fixed.stderr and "too wide a row" in fixed.stderr
        assert "no longer matches" not in fixed.stderr
        assert mysql.scalar("SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND "
                            "(TABLE_NAME LIKE 'dupewatch\\_archive\\_%' OR TABLE_NAME LIKE 'dupewatch\\_plan%')") == 0
        assert contents(mysql, "wide") == before


def test_mariadb_dry_run_lists_a_table_too_wide_for_its_archive_as_a_blocker(mysql, tmp_path):
    """The dry run exited 0 for the table `fix --yes` then refused (the server's ER_TOO_BIG_ROWSIZE on the
    archive's shape): now the dry run asks the server the same question, and changes nothing doing so."""
    columns = ", ".join(f"c{i} VARCHAR(255)" for i in range(64))
    mysql.execute(f"CREATE TABLE wide (id INT PRIMARY KEY, email VARCHAR(20), {columns}) DEFAULT CHARSET=utf8mb4",
                  "INSERT INTO wide (id, email, c0) VALUES (1, 'a', 'x'), (2, 'a', 'y'), (3, 'b', 'z')")
    path = config_file(tmp_path, mysql, [{"name": "wide", "table": "wide", "key": ["email"]}])
    before = contents(mysql, "wide")
    dry = run_cli("fix", "wide", "--config", str(path), "--dry-run")
    assert dry.exit_code == 2, dry.output
    assert "BLOCKED: the archive of 'wide' cannot be created" in dry.output and "too wide a row" in dry.output
    assert contents(mysql, "wide") == before
    assert mysql.scalar("SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE() AND "
                        "TABLE_NAME LIKE 'dupewatch\\_archive\\_%'") == 0
    mysql.execute("ALTER TABLE wide MODIFY c63 TEXT")  # now its archive fits: no blocker
    fits = run_cli("fix", "wide", "--config", str(path), "--dry-run")
    assert fits.exit_code == 0 and "BLOCKED" not in fits.output, fits.output


def test_mariadb_dry_run_of_a_fix_role_that_may_not_create_temporary_tables_leaves_the_width_to_the_fix(mysql,
                                                                                                       tmp_path):
    """The dry run asks the width with a TEMPORARY table: a fix role without CREATE TEMPORARY TABLES cannot ask,
    and the dry run says nothing of it (no crash, no blocker it cannot prove); `fix --yes` refuses as before."""
    columns = ", ".join(f"c{i} VARCHAR(255)" for i in range(64))
    mysql.execute(f"CREATE TABLE wide (id INT PRIMARY KEY, email VARCHAR(20), {columns}) DEFAULT CHARSET=utf8mb4",
                  "INSERT INTO wide (id, email, c0) VALUES (1, 'a', 'x'), (2, 'a', 'y')")
    password = uuid.uuid4().hex
    grant = (f"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, INDEX, ALTER ON `{mysql.schema}`.* TO {{user}}")
    with server_login("mysql", grant, "GRANT PROCESS ON *.* TO {user}", prefix="polish16",
                      password=password) as user:
        fix_url = make_url(mysql.url).set(username=user, password=password).render_as_string(hide_password=False)
        path = write_config(tmp_path / "dupewatch.toml", {"app": {"url": mysql.url, "fix_url": fix_url}},
                            [{"database": "app", "name": "wide", "table": "wide", "key": ["email"]}])
        dry = run_cli("fix", "wide", "--config", str(path), "--dry-run")
        assert dry.exit_code == 0 and "too wide a row" not in dry.output, dry.output
        fixed = run_cli("fix", "wide", "--config", str(path), "--yes")
        assert fixed.exit_code == 2 and "too wide a row" in fixed.stderr, fixed.output
    assert contents(mysql, "wide")["wide"] and mysql.scalar("SELECT count(*) FROM wide") == 2
