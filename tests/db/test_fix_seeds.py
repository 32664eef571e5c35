"""The seed incidents fixed end to end through `dupewatch fix`, on PostgreSQL, MariaDB and SQLite."""

from __future__ import annotations

from fix_support import (
    CHECKINS,
    LOGIN,
    MEMBERSHIP,
    config_file,
    contents,
    json_out,
    run_cli,
    seed_checkins,
    seed_login_sources,
    seed_memberships,
)

FIX_KEYS = {"fix_id", "check", "groups", "deleted", "archived", "repointed", "skipped", "references_archived",
            "constraint", "left_out_groups", "left_out", "straggler_fixes"}


def test_fix_login_sources_keeps_oldest_and_repoints_login_events(db, tmp_path):
    seed_login_sources(db)
    path = config_file(tmp_path, db, [LOGIN])
    result = run_cli("fix", "login-sources", "--config", str(path), "--yes", "--json")
    assert result.exit_code == 0, result.output
    report = json_out(result)
    assert set(report) == FIX_KEYS
    assert (report["check"], report["groups"], report["deleted"], report["archived"], report["repointed"],
            report["skipped"], report["constraint"]) == ("login-sources", 3, 3, 3, 3, 0, None)
    # users 1, 3, 5 had two rows (ids 1+2, 4+5, 7+8): the oldest (lower id) stays
    assert [r[0] for r in db.rows("SELECT id FROM user_known_login_source ORDER BY id")] == [1, 3, 4, 6, 7, 9]
    assert db.rows("SELECT id, source_id FROM login_event ORDER BY id") == [
        (101, 1), (102, 1), (103, 3), (104, 4), (105, 4), (106, 6), (107, 7), (108, 7), (109, 9)]
    assert sorted(r[0] for r in db.rows("SELECT id FROM dupewatch_archive_user_known_login_source")) == [2, 5, 8]
    again = run_cli("check", "--config", str(path), "--json")
    assert again.exit_code == 0 and json_out(again)["checks"][0]["groups"] == 0


def test_fix_checkins_repoints_checkin_credit_and_adds_constraint(db, tmp_path):
    seed_checkins(db)
    path = config_file(tmp_path, db, [CHECKINS])
    result = run_cli("fix", "daily-checkins", "--config", str(path), "--yes", "--json", "--add-constraint",
                     "--batch-size", "1")
    assert result.exit_code == 0, result.output
    report = json_out(result)
    assert (report["groups"], report["deleted"], report["repointed"], report["constraint"]) == \
        (2, 4, 4, "uq_dupewatch_daily_checkins")
    assert [r[0] for r in db.rows("SELECT id FROM checkin ORDER BY id")] == [1, 3, 4, 8]
    # every credit survives, now pointing at its day's kept check-in
    assert db.rows("SELECT id, checkin_id FROM checkin_credit ORDER BY id") == [
        (501, 1), (502, 1), (503, 3), (504, 4), (505, 4), (506, 4), (507, 4), (508, 8)]


def test_fix_role_membership_without_primary_key(db, tmp_path):
    seed_memberships(db)
    path = config_file(tmp_path, db, [MEMBERSHIP])
    plan = run_cli("fix", "role-membership", "--config", str(path), "--dry-run", "--json")
    assert plan.exit_code == 0, plan.output
    assert json_out(plan)["identity"] == {"postgresql": "ctid", "sqlite": "rowid", "mysql": "identical"}[db.dialect]
    result = run_cli("fix", "role-membership", "--config", str(path), "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert (json_out(result)["groups"], json_out(result)["deleted"]) == (2, 3)
    assert sorted(db.rows("SELECT group_id, member_id FROM role_membership")) == [(1, 1), (1, 2), (2, 1), (3, 3)]
    assert sorted(db.rows("SELECT group_id, member_id FROM dupewatch_archive_role_membership")) == [
        (1, 1), (2, 1), (2, 1)]


def test_dry_run_lists_plan_and_changes_nothing(db, tmp_path):
    seed_checkins(db)
    path = config_file(tmp_path, db, [CHECKINS])
    before = contents(db, "checkin", "checkin_credit")
    result = run_cli("fix", "daily-checkins", "--config", str(path), "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    plan = json_out(result)
    assert (plan["groups"], plan["rows_to_delete"], plan["rows_to_repoint"], plan["blockers"]) == (2, 4, 4, [])
    first = plan["sample"][0]
    assert first["keep"]["id"] == 1 and [r["id"] for r in first["delete"]] == [2]
    assert first["differs"] == ["created_at"]
    assert plan["references"][0]["table"] == "checkin_credit"
    assert plan["differences"] == {"created_at": 2}
    assert "2 group(s) hold rows that differ outside the key (created_at in 2): the kept row's values are the ones " \
        "that stay" in plan["notes"][0]
    human = run_cli("fix", "daily-checkins", "--config", str(path), "--dry-run")
    assert "keep    id=1" in human.stdout and "delete  id=2" in human.stdout
    assert contents(db, "checkin", "checkin_credit") == before
    assert not db.rows("SELECT 1 FROM checkin WHERE id = -1")  # the connection still works
    tables = {name.lower() for name in _tables(db)}
    assert not any(name.startswith("dupewatch") for name in tables)


def test_preview_caps_listed_groups_but_counts_all(db, tmp_path):
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER NOT NULL)")
    db.execute("INSERT INTO t VALUES (:id, :k)", params=[{"id": i, "k": i // 2} for i in range(200)])
    path = config_file(tmp_path, db, [{"name": "t", "table": "t", "key": ["k"]}])
    plan = json_out(run_cli("fix", "t", "--config", str(path), "--dry-run", "--json"))
    assert (plan["groups"], plan["rows_to_delete"], len(plan["sample"])) == (100, 100, 20)


def _tables(db):
    import sqlalchemy as sa

    return sa.inspect(db.engine).get_table_names()
