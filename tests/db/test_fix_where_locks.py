"""A check's `where` with a sub-select on another table, on MariaDB: InnoDB reads a sub-select in a DELETE's WHERE
with shared locks even under the fix's READ COMMITTED (an INSERT ... SELECT or a SELECT ... FOR UPDATE reads it
without), so a fix batch of a table without a primary key held shared locks on the sub-select's rows (`account`)
until it committed, and the application's UPDATE of an account waited for it. The batch's DELETE now leaves the
`where` out (the copies it matches are equal in every column: the locking count and the archive keep it)."""

from __future__ import annotations

import time

import sqlalchemy as sa

from fix_support import FixThread, blocked_by, make_config
from monitor.engine import Monitor
from monitor.fix import prepare_fix

CHECK = {"name": "memberships", "table": "membership", "key": ["group_id", "user_id"],
         "where": "account_id IN (SELECT id FROM account WHERE active = 1)"}


def test_a_where_sub_select_takes_no_shared_locks_in_the_batch(mysql):
    mysql.execute("CREATE TABLE account (id INTEGER PRIMARY KEY, active INTEGER NOT NULL)",
                  "CREATE TABLE membership (group_id INTEGER NOT NULL, user_id INTEGER NOT NULL, "
                  "account_id INTEGER NOT NULL, KEY (group_id, user_id))",
                  "INSERT INTO account VALUES (1, 1), (2, 1)",
                  "INSERT INTO membership VALUES (1, 7, 1), (1, 7, 1), (2, 7, 2), (2, 7, 2)")
    # rows enough that the batch finds a group's rows by the index, not by a scan that waits for group 2's
    mysql.execute("INSERT INTO membership VALUES (:g, 1, 1)", params=[{"g": g} for g in range(100, 400)])
    monitor = Monitor(make_config(mysql, [CHECK]))
    app, probe = mysql.engine.connect(), mysql.engine.connect()
    try:
        plan = prepare_fix(monitor, CHECK["name"])
        assert not plan.blockers and plan.rows_to_delete == 2, plan.blockers
        fix = FixThread(monitor, CHECK["name"], plan, batch_size=10)
        with app.begin():
            blocker = app.execute(sa.text("SELECT CONNECTION_ID()")).scalar_one()
            # the batch deletes group 1's extra copy, then waits for group 2's rows
            app.execute(sa.text("SELECT * FROM membership WHERE group_id = 2 FOR UPDATE")).all()
            fix.start()
            deadline = time.monotonic() + 20
            while not (blocked_by(mysql, blocker, "membership") or not fix.is_alive()):
                assert time.monotonic() < deadline, "the batch never waited for group 2"
                time.sleep(0.02)  # polling interval of a condition with a deadline
            assert fix.is_alive(), fix.error or fix.report
            with probe.begin():
                probe.execute(sa.text("SET SESSION innodb_lock_wait_timeout = 1"))
                # account 1 is group 1's sub-select row, read by the batch's DELETE
                assert probe.execute(sa.text("UPDATE account SET active = 1 WHERE id = 1")).rowcount == 1
        fix.join(20)
    finally:
        app.close()
        probe.close()
        monitor.close()
    assert fix.error is None and fix.report is not None and fix.report.deleted == 2, fix.error or fix.report
    assert mysql.rows("SELECT group_id, count(*) FROM membership WHERE group_id < 100 GROUP BY group_id "
                      "ORDER BY 1") == [(1, 1), (2, 1)]
