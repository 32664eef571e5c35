"""Tables a fix must refuse, clearly and before writing anything: views, materialized views and PK-less
partitioned tables."""

from fix_support import config_file, make_config, run_cli
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
