"""Shared helpers of the fix tests: seed tables per dialect, configs, full-content snapshots, the CLI."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from click.testing import CliRunner, Result
from sqlalchemy.engine import make_url

from dbtest import TestDatabase, write_config
from monitor.cli import main
from monitor.config import Config, config_from_dict
from monitor.engine import Monitor
from monitor.fix import FixPlan, FixReport, prepare_fix, run_fix

T0 = datetime(2024, 5, 1, 9, 30, 0, 123456)


class FixThread(threading.Thread):
    """`run_fix` in a thread of its own, for tests where the application holds rows the fix waits for: once
    joined, `report` is what the fix returned, or `error` what it raised (surfaced by the test's assertions)."""

    def __init__(self, monitor: Monitor, check: str, plan: FixPlan, **options: Any) -> None:
        super().__init__(daemon=True)
        self.monitor, self.check, self.plan, self.options = monitor, check, plan, options
        self.report: FixReport | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.report = run_fix(self.monitor, self.check, self.plan, **self.options)
        except BaseException as exc:
            self.error = exc


def types(db: TestDatabase) -> dict[str, str]:
    return {
        "postgresql": {"ts": "TIMESTAMP(6)", "bin": "BYTEA", "text": "VARCHAR(64)"},
        "mysql": {"ts": "DATETIME(6)", "bin": "VARBINARY(64)", "text": "VARCHAR(64)"},
        "sqlite": {"ts": "DATETIME", "bin": "BLOB", "text": "VARCHAR(64)"},
    }[db.dialect]


def ts(db: TestDatabase, moment: datetime) -> Any:
    # SQLite has no timestamp type: store the text form SQLAlchemy's DateTime reads back.
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f") if db.dialect == "sqlite" else moment


def checks_dict(db: TestDatabase, checks: list[dict[str, Any]], **db_options: Any) -> dict[str, Any]:
    return {"databases": {"app": {"url": db.url, **db_options}},
            "checks": [{"database": "app", **c} for c in checks]}


def make_config(db: TestDatabase, checks: list[dict[str, Any]]) -> Config:
    return config_from_dict(checks_dict(db, checks))


# PostgreSQL looks for a deadlock once, `deadlock_timeout` after a session starts to wait, and rolls back the session
# that finds it. `fix_in_a_deadlock` wants the batch rolled back: the batch waits first, so its sessions look after
# this long, and the application's much later, however slowly a loaded machine lets the application's second lock
# follow (with the default second the application could ask after the batch had looked, and find it itself).
BATCH_DEADLOCK_TIMEOUT = "4s"


def deadlock_config(db: TestDatabase, checks: list[dict[str, Any]]) -> Config:
    """`make_config` for `fix_in_a_deadlock`: on PostgreSQL the fix's sessions wait `BATCH_DEADLOCK_TIMEOUT` before
    they look for a deadlock."""
    if db.dialect != "postgresql":
        return make_config(db, checks)
    url = make_url(db.url)
    options = f"{url.query['options']} -cdeadlock_timeout={BATCH_DEADLOCK_TIMEOUT}"
    waiting = url.update_query_dict({"options": options}).render_as_string(hide_password=False)
    return config_from_dict({**checks_dict(db, checks), "databases": {"app": {"url": waiting}}})


def config_file(tmp_path: Path, db: TestDatabase, checks: list[dict[str, Any]]) -> Path:
    return write_config(tmp_path / "dupewatch.toml", {"app": {"url": db.url}},
                        [{"database": "app", **c} for c in checks])


def contents(db: TestDatabase, *tables: str) -> dict[str, list[str]]:
    """Every row of every table, as text, order-independent: for before/after comparisons."""
    return {t: sorted(repr(row) for row in db.rows(f"SELECT * FROM {db.q(t)}")) for t in tables}


def run_cli(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def json_out(result: Result) -> Any:
    return json.loads(result.stdout)


def fix_json(check: str, path: Path) -> Any:
    """`fix CHECK --yes --json` with the config at `path`, asserted to exit 0: its JSON report."""
    fixed = run_cli("fix", check, "--config", str(path), "--yes", "--json")
    assert fixed.exit_code == 0, fixed.output
    return json_out(fixed)


def undo_restores(db: TestDatabase, path: Path, fix_id: str, before: dict[str, list[str]]) -> None:
    """`undo FIX_ID --yes --json` exits 0 and gives back the tables of `before` (a `contents` snapshot) as they
    were."""
    undone = run_cli("undo", fix_id, "--config", str(path), "--yes", "--json")
    assert undone.exit_code == 0, undone.output
    assert contents(db, *before) == before


def audit_trigger(db: TestDatabase, name: str, event: str, table: str, *, timing: str = "AFTER",
                  into: str = "audit") -> None:
    """A trigger `name`, `timing` `event` (`UPDATE OF note` too) ON `table`, writing the row's id into table `into`
    (id), made if missing: the row deleted (OLD), else the row written (NEW). PostgreSQL runs it through a function
    named after the trigger."""
    row = "OLD" if event == "DELETE" else "NEW"
    write = f"INSERT INTO {into} VALUES ({row}.id)"
    db.execute(f"CREATE TABLE IF NOT EXISTS {into} (id INTEGER)")
    if db.dialect == "postgresql":
        db.execute(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN {write}; RETURN {row}; END'",
                   f"CREATE TRIGGER {name} {timing} {event} ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()")
    elif db.dialect == "mysql":
        db.execute(f"CREATE TRIGGER {name} {timing} {event} ON {table} FOR EACH ROW {write}")
    else:
        db.execute(f"CREATE TRIGGER {name} {timing} {event} ON {table} BEGIN {write}; END")


# -- seeds: the incidents, small ------------------------------------------------------------------

LOGIN = {"name": "login-sources", "table": "user_known_login_source",
         "key": ["user_id", "agent_type", "device_type", "os_type"]}
CHECKINS = {"name": "daily-checkins", "table": "checkin", "key": ["user_id", "checkin_date"]}
MEMBERSHIP = {"name": "role-membership", "table": "role_membership", "key": ["group_id", "member_id"]}


def seed_login_sources(db: TestDatabase, users: int = 6) -> None:
    """Seed 000: two logins 5 ms apart stored the same device twice; `login_event` references the rows."""
    ty = types(db)
    db.execute(f"CREATE TABLE user_known_login_source (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, "
               f"agent_type {ty['text']} NOT NULL, device_type {ty['text']} NOT NULL, "
               f"os_type {ty['text']} NOT NULL, last_seen {ty['ts']} NOT NULL)")
    db.execute("CREATE TABLE login_event (id INTEGER PRIMARY KEY, "
               "source_id INTEGER NOT NULL REFERENCES user_known_login_source (id))")
    sources, events = [], []
    next_id = 1
    for user in range(1, users + 1):
        copies = 2 if user % 2 else 1
        for copy in range(copies):
            sources.append({"id": next_id, "u": user, "a": "Firefox", "d": "Pixel 8", "o": "Android",
                            "t": ts(db, T0 + timedelta(days=user, milliseconds=5 * copy))})
            events.append({"id": 100 + next_id, "s": next_id})
            next_id += 1
    db.execute("INSERT INTO user_known_login_source VALUES (:id, :u, :a, :d, :o, :t)", params=sources)
    db.execute("INSERT INTO login_event VALUES (:id, :s)", params=events)


def seed_checkins(db: TestDatabase, *, unique_credit: bool = False) -> None:
    """Seed 001: a double click wrote two (or four) check-ins and a credit for each."""
    ty = types(db)
    db.execute(f"CREATE TABLE checkin (id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, "
               f"checkin_date DATE NOT NULL, created_at {ty['ts']} NOT NULL)")
    unique = " UNIQUE" if unique_credit else ""
    db.execute(f"CREATE TABLE checkin_credit (id INTEGER PRIMARY KEY, checkin_id INTEGER NOT NULL{unique} "
               "REFERENCES checkin (id), credits INTEGER NOT NULL)")
    rows, credits = [], []
    plan = {1: 2, 2: 1, 3: 4, 4: 1}
    next_id = 1
    for user, copies in plan.items():
        for copy in range(copies):
            rows.append({"id": next_id, "u": user, "d": "2024-05-01",
                         "t": ts(db, T0 + timedelta(minutes=user, milliseconds=3 * copy))})
            credits.append({"id": 500 + next_id, "c": next_id, "n": 10})
            next_id += 1
    db.execute("INSERT INTO checkin VALUES (:id, :u, :d, :t)", params=rows)
    db.execute("INSERT INTO checkin_credit VALUES (:id, :c, :n)", params=credits)


def seed_memberships(db: TestDatabase) -> None:
    """Seed 003: a link table without a primary key got the same pair twice (once three times)."""
    db.execute("CREATE TABLE role_membership (group_id INTEGER NOT NULL, member_id INTEGER NOT NULL)")
    pairs = [(1, 1), (1, 1), (1, 2), (2, 1), (2, 1), (2, 1), (3, 3)]
    db.execute("INSERT INTO role_membership VALUES (:g, :m)", params=[{"g": g, "m": m} for g, m in pairs])


DECIMAL = Decimal("12.3450")


def blocked_by(db: TestDatabase, blocker: int, table: str = "visit") -> bool:
    """Whether some session waits for a row lock that session `blocker` holds (on MariaDB: whether a transaction
    waits for a lock on this test's `table`, as InnoDB's status reports it; information_schema.INNODB_LOCK_WAITS
    leaves out some waiting transactions)."""
    if db.dialect == "postgresql":
        return bool(db.scalar("SELECT count(*) FROM pg_stat_activity WHERE :b = ANY(pg_blocking_pids(pid))",
                              {"b": blocker}))
    status = db.rows("SHOW ENGINE INNODB STATUS")[0][2]
    return any(f"of table `{db.schema}`.`{table}`" in line and "waiting" in line for line in status.splitlines())


def fix_in_a_deadlock(db: TestDatabase, monitor: Monitor, check: str, timeout: float = 30) -> FixThread:
    """Run the fix of `check` (its monitor made from `deadlock_config`; on `visit`, ids 1-8 in key pairs (1, 2),
    (3, 4)..., rows 1-2 in its first batch; a table `ballast (n INTEGER)` made) into a deadlock: an application
    transaction that has written more (InnoDB rolls back the one that changed fewer rows) holds row 8, waits for
    the batch to wait for it, then asks for row 2, a row to delete, which the batch holds since it locked it in its
    first batch. The thread, joined."""
    app = db.engine.connect()
    try:
        thread = FixThread(monitor, check, prepare_fix(monitor, check), batch_size=10)
        with app.begin():
            blocker = app.execute(sa.text("SELECT pg_backend_pid()" if db.dialect == "postgresql"
                                          else "SELECT CONNECTION_ID()")).scalar_one()
            if db.dialect == "postgresql":  # the batch finds the deadlock (`deadlock_config`), not the application
                app.execute(sa.text("SET LOCAL deadlock_timeout = '10min'"))
            app.execute(sa.text("INSERT INTO ballast VALUES (:n)"), [{"n": n} for n in range(500)])
            app.execute(sa.text("SELECT id FROM visit WHERE id = 8 FOR UPDATE"))
            thread.start()
            deadline = time.monotonic() + timeout
            while not (blocked_by(db, blocker) or not thread.is_alive()):
                assert time.monotonic() < deadline, "the batch never waited for row 8"
                time.sleep(0.02)  # polling interval of a condition with a deadline
            app.execute(sa.text("SELECT id FROM visit WHERE id = 2 FOR UPDATE"))  # the batch holds row 2
        thread.join(timeout)
    finally:
        app.close()
    return thread


def stopped_after_one_batch(monitor: Monitor, check: str) -> FixPlan:
    """A fix of `check` stopped after its first batch of one group (one row deleted, archived); returns its plan."""
    plan = prepare_fix(monitor, check)
    stop = threading.Event()
    stopped = run_fix(monitor, check, plan, batch_size=1, progress=lambda _p: stop.set(), cancel=stop)
    assert (stopped.state, stopped.deleted) == ("stopped", 1)
    return plan
