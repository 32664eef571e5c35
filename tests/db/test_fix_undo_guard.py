"""Undo (byte-identical rows, references pointed back, clear refusals) and the guard (the unique index)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from fix_support import (
    CHECKINS,
    DECIMAL,
    T0,
    config_file,
    contents,
    json_out,
    make_config,
    run_cli,
    seed_checkins,
    seed_login_sources,
    ts,
    types,
)
from monitor.engine import Monitor
from monitor.fix import FixRefused, add_guard, run_fix, undo_fix


def _typed_table(db) -> None:
    ty = types(db)

    def dec(value):  # the sqlite3 module cannot bind Decimal; NUMERIC affinity stores the text as a number
        return str(value) if db.dialect == "sqlite" else value

    db.execute(f"CREATE TABLE payload (id INTEGER PRIMARY KEY, k {ty['text']} NOT NULL, at {ty['ts']}, "
               f"amount NUMERIC(12, 4), raw {ty['bin']}, note {ty['text']})")
    db.execute("CREATE TABLE payload_ref (id INTEGER PRIMARY KEY, payload_id INTEGER REFERENCES payload (id))")
    rows = [
        {"id": 1, "k": "a", "at": ts(db, T0), "amount": dec(DECIMAL), "raw": b"\x00\x01\xff", "note": None},
        {"id": 2, "k": "a", "at": ts(db, T0 + timedelta(microseconds=7)), "amount": None, "raw": b"\x00",
         "note": "second"},
        {"id": 3, "k": "a", "at": None, "amount": dec(DECIMAL * 3), "raw": None, "note": ""},
        {"id": 4, "k": "b", "at": ts(db, T0), "amount": dec(DECIMAL), "raw": b"", "note": "solo"},
    ]
    db.execute("INSERT INTO payload VALUES (:id, :k, :at, :amount, :raw, :note)", params=rows)
    db.execute("INSERT INTO payload_ref VALUES (10, 2), (11, 3), (12, 1), (13, NULL)")


def test_undo_restores_byte_identical_rows_and_references(db, tmp_path):
    _typed_table(db)
    checks = [{"name": "payload", "table": "payload", "key": ["k"]}]
    path = config_file(tmp_path, db, checks)
    before = contents(db, "payload", "payload_ref")
    fixed = json_out(run_cli("fix", "payload", "--config", str(path), "--yes", "--json"))
    assert (fixed["deleted"], fixed["repointed"]) == (2, 2)
    assert db.rows("SELECT id, payload_id FROM payload_ref ORDER BY id") == [(10, 1), (11, 1), (12, 1), (13, None)]
    refused = run_cli("undo", fixed["fix_id"], "--config", str(path))
    assert refused.exit_code == 2 and "without confirmation" in refused.stderr
    result = run_cli("undo", fixed["fix_id"], "--config", str(path), "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json_out(result) == {"fix_id": fixed["fix_id"], "check": "payload", "restored": 2, "repointed": 2}
    assert contents(db, "payload", "payload_ref") == before
    raw = {r[0]: bytes(r[1]) if r[1] is not None else None for r in db.rows("SELECT id, raw FROM payload")}
    assert raw == {1: b"\x00\x01\xff", 2: b"\x00", 3: None, 4: b""}
    listed = json_out(run_cli("fixes", "--config", str(path), "--json"))["fixes"]
    assert [(f["fix_id"], f["state"], f["deleted"]) for f in listed] == [(fixed["fix_id"], "undone", 2)]
    twice = run_cli("undo", fixed["fix_id"], "--config", str(path), "--yes")
    assert twice.exit_code == 2 and "is undone: there is nothing to undo" in twice.stderr


def test_composite_foreign_key_repointed_and_pointed_back(db):
    db.execute("CREATE TABLE account (region INTEGER NOT NULL, num INTEGER NOT NULL, email VARCHAR(64) NOT NULL, "
               "PRIMARY KEY (region, num))")
    db.execute("CREATE TABLE invoice (id INTEGER PRIMARY KEY, region INTEGER, num INTEGER, "
               "FOREIGN KEY (region, num) REFERENCES account (region, num))")
    db.execute("INSERT INTO account VALUES (1, 1, 'a@x'), (1, 2, 'a@x'), (2, 1, 'a@x'), (2, 2, 'b@x')")
    db.execute("INSERT INTO invoice VALUES (1, 1, 2), (2, 2, 1), (3, 2, 2), (4, 1, 1)")
    before = contents(db, "account", "invoice")
    checks = [{"name": "accounts", "table": "account", "key": ["email"]}]
    monitor = Monitor(make_config(db, checks))
    try:
        report = run_fix(monitor, "accounts")
        assert (report.deleted, report.repointed) == (2, 2)
        assert db.rows("SELECT id, region, num FROM invoice ORDER BY id") == [
            (1, 1, 1), (2, 1, 1), (3, 2, 2), (4, 1, 1)]
        undone = undo_fix(monitor, report.fix_id)
    finally:
        monitor.close()
    assert (undone.restored, undone.repointed) == (2, 2)
    assert contents(db, "account", "invoice") == before


def test_undo_refuses_when_a_restored_key_is_taken(db, tmp_path):
    seed_checkins(db)
    path = config_file(tmp_path, db, [CHECKINS])
    fixed = json_out(run_cli("fix", "daily-checkins", "--config", str(path), "--yes", "--json"))
    db.execute("INSERT INTO checkin VALUES (2, 9, '2024-06-01', :t)", params={"t": ts(db, T0)})
    before = contents(db, "checkin", "checkin_credit")
    result = run_cli("undo", fixed["fix_id"], "--config", str(path), "--yes")
    assert result.exit_code == 2
    assert "1 archived row(s) have a primary key (id) that a row of 'checkin' written since the fix holds " \
        "again" in result.stderr
    assert contents(db, "checkin", "checkin_credit") == before


def test_undo_refuses_after_the_guard_was_added(db, tmp_path):
    seed_checkins(db)
    path = config_file(tmp_path, db, [CHECKINS])
    fixed = json_out(run_cli("fix", "daily-checkins", "--config", str(path), "--yes", "--json",
                             "--add-constraint"))
    assert fixed["constraint"] == "uq_dupewatch_daily_checkins"
    before = contents(db, "checkin", "checkin_credit")
    result = run_cli("undo", fixed["fix_id"], "--config", str(path), "--yes")
    assert result.exit_code == 2
    assert "would violate the unique index uq_dupewatch_daily_checkins" in result.stderr
    assert "this fix added it" in result.stderr and "--drop-constraint" in result.stderr
    assert contents(db, "checkin", "checkin_credit") == before


def test_undo_refuses_when_a_repointed_row_changed(db, tmp_path):
    seed_checkins(db)
    path = config_file(tmp_path, db, [CHECKINS])
    fixed = json_out(run_cli("fix", "daily-checkins", "--config", str(path), "--yes", "--json"))
    db.execute("DELETE FROM checkin_credit WHERE id = 502")
    before = contents(db, "checkin", "checkin_credit")
    result = run_cli("undo", fixed["fix_id"], "--config", str(path), "--yes")
    assert result.exit_code == 2 and "no longer as it left them" in result.stderr
    assert "1 deleted since by something else than a dupewatch fix" in " ".join(result.stderr.split())
    assert contents(db, "checkin", "checkin_credit") == before


def test_guard_blocks_a_later_duplicate_insert(db, tmp_path):
    seed_login_sources(db)
    path = config_file(tmp_path, db, [{"name": "login-sources", "table": "user_known_login_source",
                                       "key": ["user_id", "agent_type", "device_type", "os_type"]}])
    refused = run_cli("guard", "login-sources", "--config", str(path))
    assert refused.exit_code == 2 and "has 3 duplicate group(s)" in refused.stderr
    assert not _has_index(db, "user_known_login_source", "uq_dupewatch_login_sources")
    assert run_cli("fix", "login-sources", "--config", str(path), "--yes").exit_code == 0
    result = run_cli("guard", "login-sources", "--config", str(path), "--json")
    assert result.exit_code == 0, result.output
    assert json_out(result)["constraint"] == "uq_dupewatch_login_sources" and json_out(result)["created"]
    with pytest.raises(sa.exc.IntegrityError):
        db.execute("INSERT INTO user_known_login_source VALUES (99, 1, 'Firefox', 'Pixel 8', 'Android', :t)",
                   params={"t": ts(db, T0)})
    again = run_cli("guard", "login-sources", "--config", str(path))
    assert again.exit_code == 0 and "already present" in again.stdout


def test_guard_case_insensitive_key_is_an_expression_index(db):
    db.execute("CREATE TABLE person (id INTEGER PRIMARY KEY, email VARCHAR(64))")
    db.execute("INSERT INTO person VALUES (1, 'Ada@x'), (2, 'grace@x'), (3, NULL), (4, NULL)")
    checks = [{"name": "emails", "table": "person", "key": ["email"], "case_insensitive": True,
               "nulls": "distinct"}]
    monitor = Monitor(make_config(db, checks))
    try:
        report = add_guard(monitor, "emails")
    finally:
        monitor.close()
    if db.dialect == "mysql":  # utf8mb4's default collation already compares case-insensitively
        assert "lower(" not in report.statement and report.statement.endswith("(email)")
    else:
        assert "lower(email)" in report.statement
    if db.dialect == "postgresql":
        assert "CONCURRENTLY" in report.statement
        assert db.scalar("SELECT indisvalid FROM pg_index WHERE indexrelid = 'uq_dupewatch_emails'::regclass")
    with pytest.raises(sa.exc.IntegrityError):
        db.execute("INSERT INTO person VALUES (5, 'ADA@x')")
    db.execute("INSERT INTO person VALUES (6, NULL)")  # nulls = "distinct": NULL keys stay allowed


def test_guard_nulls_equal(db):
    db.execute("CREATE TABLE device (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, os VARCHAR(20))")
    db.execute("INSERT INTO device VALUES (1, 1, NULL), (2, 2, NULL)")
    monitor = Monitor(make_config(db, [{"name": "devices", "table": "device", "key": ["user_id", "os"]}]))
    try:
        report = add_guard(monitor, "devices")
    finally:
        monitor.close()
    if db.dialect == "postgresql":
        assert "NULLS NOT DISTINCT" in report.statement and not report.notes
        with pytest.raises(sa.exc.IntegrityError):
            db.execute("INSERT INTO device VALUES (3, 1, NULL)")
    else:
        assert "treat NULLs as distinct" in report.notes[0]
        db.execute("INSERT INTO device VALUES (3, 1, NULL)")


def test_guard_where_filter(db):
    db.execute("CREATE TABLE sub (id INTEGER PRIMARY KEY, email VARCHAR(64) NOT NULL, active INTEGER NOT NULL)")
    db.execute("INSERT INTO sub VALUES (1, 'a', 1), (2, 'a', 0)")
    checks = [{"name": "subs", "table": "sub", "key": ["email"], "where": "active = 1"}]
    monitor = Monitor(make_config(db, checks))
    try:
        if db.dialect == "mysql":
            with pytest.raises(FixRefused, match="no partial indexes"):
                add_guard(monitor, "subs")
            return
        report = add_guard(monitor, "subs")
    finally:
        monitor.close()
    assert "WHERE (active = 1)" in report.statement
    db.execute("INSERT INTO sub VALUES (3, 'a', 0)")  # outside the filter: allowed, as the check allows it
    with pytest.raises(sa.exc.IntegrityError):
        db.execute("INSERT INTO sub VALUES (4, 'a', 1)")


def test_guard_refuses_a_non_immutable_where_and_leaves_nothing(pg):
    pg.execute("CREATE TABLE ev (id INTEGER PRIMARY KEY, k INTEGER NOT NULL, at TIMESTAMPTZ NOT NULL)")
    checks = [{"name": "ev", "table": "ev", "key": ["k"], "where": "at > now() - interval '1 day'"}]
    monitor = Monitor(make_config(pg, checks))
    try:
        with pytest.raises(FixRefused, match="IMMUTABLE"):
            add_guard(monitor, "ev")
    finally:
        monitor.close()
    assert not _has_index(pg, "ev", "uq_dupewatch_ev")


def _has_index(db, table: str, name: str) -> bool:
    return any(i["name"] == name for i in sa.inspect(db.engine).get_indexes(table))


def test_mariadb_guard_refusal_of_a_trimmed_key_says_both_ends(mysql):
    """trim_whitespace trims both ends of the key (trim()), so the refusal of a MariaDB guard on a column whose
    collation does not compare that way names both, not 'trailing spaces' alone."""
    mysql.execute("CREATE TABLE person (id INTEGER PRIMARY KEY, email VARCHAR(64) COLLATE utf8mb4_nopad_bin)")
    mysql.execute("INSERT INTO person VALUES (1, 'ada@x'), (2, 'grace@x')")
    checks = [{"name": "emails", "table": "person", "key": ["email"], "trim_whitespace": True}]
    monitor = Monitor(make_config(mysql, checks))
    try:
        with pytest.raises(FixRefused, match="ignoring leading and trailing spaces"):
            add_guard(monitor, "emails")
    finally:
        monitor.close()
