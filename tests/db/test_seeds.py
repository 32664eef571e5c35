"""The five seed incidents, planted the way the races left them, are detected on every dialect.

Each table is built through SQLAlchemy on PostgreSQL, MariaDB and SQLite. The expected figures are
counted twice without the engine: in Python from the planted rows, and by a hand-written SQL aggregate.
"""

from __future__ import annotations

import random
import shutil
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from dbtest import REPO_ROOT, write_config
from monitor.config import load_config
from monitor.engine import Monitor

# MySQL's DATETIME keeps whole seconds unless asked for microseconds; the bursts are milliseconds apart.
PreciseDateTime = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
T0 = datetime(2024, 5, 1, 9, 0, 0)

metadata = sa.MetaData()
login_source = sa.Table(
    "user_known_login_source", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("agent_type", sa.String(64), nullable=False),
    sa.Column("device_type", sa.String(64), nullable=False),
    sa.Column("os_type", sa.String(64), nullable=False),
    sa.Column("last_seen", PreciseDateTime, nullable=False),
)
checkin = sa.Table(
    "checkin", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.Integer, nullable=False),
    sa.Column("checkin_date", sa.Date, nullable=False),
    sa.Column("created_at", PreciseDateTime, nullable=False),
)
candidate = sa.Table(
    "candidate", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(64), nullable=False),
    sa.Column("total_votes", sa.Integer, nullable=False),
)
payment = sa.Table(
    "payment", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("candidate_id", sa.Integer, nullable=False),
    sa.Column("votes", sa.Integer, nullable=False),
    sa.Column("verified", sa.Boolean, nullable=False),
)
role_membership = sa.Table(  # seed 003: no primary key, no unique constraint
    "role_membership", metadata,
    sa.Column("group_id", sa.Integer, nullable=False),
    sa.Column("member_id", sa.Integer, nullable=False),
)
race_profile = sa.Table(
    "race_profile", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("user_id", sa.String(32), nullable=False),
    sa.Column("name", sa.String(32), nullable=False),
    sa.Column("created_at", PreciseDateTime, nullable=False),
)

CHECKS: list[dict[str, Any]] = [
    {"name": "login-sources", "database": "app", "table": "user_known_login_source",
     "key": ["user_id", "agent_type", "device_type", "os_type"], "timestamp": "last_seen"},
    {"name": "daily-checkins", "database": "app", "table": "checkin", "key": ["user_id", "checkin_date"],
     "timestamp": "created_at"},
    {"name": "vote-drift", "database": "app", "query": "queries/vote_drift.sql"},
    {"name": "role-membership", "database": "app", "table": "role_membership", "key": ["group_id", "member_id"]},
    {"name": "profiles", "database": "app", "table": "race_profile", "key": ["user_id"],
     "timestamp": "created_at"},
]


def burst(start: datetime, copies: int, step_ms: int) -> list[datetime]:
    return [start + timedelta(milliseconds=step_ms * i) for i in range(copies)]


def excess_of(keys: list[tuple[Any, ...]]) -> tuple[int, int]:
    """(duplicate groups, excess rows) counted in Python from the planted keys."""
    sizes = [n for n in Counter(keys).values() if n > 1]
    return len(sizes), sum(n - 1 for n in sizes)


def plant_seeds(engine: sa.Engine) -> dict[str, tuple[int, int]]:
    """Build the five seed tables; return the planted (groups, excess rows) per check."""
    metadata.create_all(engine)
    rng = random.Random(3)
    expected: dict[str, tuple[int, int]] = {}
    with engine.begin() as conn:
        # 000: two concurrent logins 5 ms apart insert the same (user, agent, device, os).
        rows = []
        for user in range(1, 61):
            devices = [("Chrome Mobile", "K", "Android"), ("Firefox", "Other", "Linux")]
            for n, (agent, device, os_type) in enumerate(devices):
                copies = 3 if user == 42 and n == 0 else 2 if user % 7 == 0 and n == 0 else 1
                start = T0 + timedelta(minutes=user)
                rows += [dict(user_id=user, agent_type=agent, device_type=device, os_type=os_type, last_seen=t)
                         for t in burst(start, copies, 5)]
        conn.execute(login_source.insert(), rows)
        expected["login-sources"] = excess_of([(r["user_id"], r["agent_type"], r["device_type"], r["os_type"])
                                               for r in rows])
        # 001: a double click raced four workers: up to four check-ins for one user and day.
        rows = []
        for user in range(1, 31):
            for day in range(5):
                copies = rng.choice([2, 2, 3, 4]) if rng.random() < 0.15 else 1
                start = T0 + timedelta(days=day, hours=user % 12)
                rows += [dict(user_id=user, checkin_date=(T0 + timedelta(days=day)).date(), created_at=t)
                         for t in burst(start, copies, 4)]
        conn.execute(checkin.insert(), rows)
        expected["daily-checkins"] = excess_of([(r["user_id"], r["checkin_date"]) for r in rows])
        # 002: `total += n; save()` drifted some stored totals away from the verified payments.
        drifted = 0
        for cid in range(1, 26):
            pays = [dict(candidate_id=cid, votes=rng.choice([1, 5, 10]), verified=rng.random() > 0.2)
                    for _ in range(rng.randint(0, 6))]
            paid = sum(p["votes"] for p in pays if p["verified"])
            total = paid + (10 if cid % 6 == 0 else -1 if cid % 11 == 0 and paid else 0)
            drifted += total != paid
            conn.execute(candidate.insert(), dict(id=cid, name=f"candidate {cid}", total_votes=total))
            if pays:
                conn.execute(payment.insert(), pays)
        expected["vote-drift"] = (drifted, drifted)
        # 003: concurrent OAuth logins synced the same membership twice into a table without a primary key.
        rows = [dict(group_id=g, member_id=m) for m in range(1, 81) for g in range(1, 1 + m % 4 + 1)]
        rows += [dict(group_id=1, member_id=m) for m in range(5, 81, 9)]
        rows += [dict(group_id=2, member_id=13)] * 2
        conn.execute(role_membership.insert(), rows)
        expected["role-membership"] = excess_of([(r["group_id"], r["member_id"]) for r in rows])
        # 004: ten threads in get_or_create(user_id=...) created several rows for one user.
        rows = []
        for n in range(120):
            uid = f"{rng.getrandbits(64):016x}"
            copies = rng.choice([2, 3, 4]) if n % 10 == 3 else 1
            rows += [dict(user_id=uid, name=f"user {n}", created_at=t)
                     for t in burst(T0 + timedelta(seconds=n), copies, 1)]
        conn.execute(race_profile.insert(), rows)
        expected["profiles"] = excess_of([(r["user_id"],) for r in rows])
    return expected


def hand_counted(db: Any) -> dict[str, tuple[int, int]]:
    """The same figures from hand-written SQL, independent of the engine's statement builder."""
    def dup(table: str, key: str) -> tuple[int, int]:
        groups, excess = db.rows(f"SELECT COUNT(*), SUM(n - 1) FROM (SELECT COUNT(*) AS n FROM {table} "
                                 f"GROUP BY {key} HAVING COUNT(*) > 1) AS g")[0]
        return int(groups), int(excess or 0)

    drift = db.scalar("SELECT COUNT(*) FROM candidate c WHERE c.total_votes <> (SELECT COALESCE(SUM(p.votes), 0) "
                      "FROM payment p WHERE p.candidate_id = c.id AND p.verified = TRUE)")
    return {
        "login-sources": dup("user_known_login_source", "user_id, agent_type, device_type, os_type"),
        "daily-checkins": dup("checkin", "user_id, checkin_date"),
        "vote-drift": (int(drift), int(drift)),
        "role-membership": dup("role_membership", "group_id, member_id"),
        "profiles": dup("race_profile", "user_id"),
    }


def seed_config(db: Any, tmp_path: Path) -> Path:
    (tmp_path / "queries").mkdir()
    shutil.copy(REPO_ROOT / "queries" / "vote_drift.sql", tmp_path / "queries" / "vote_drift.sql")
    return write_config(tmp_path / "dupewatch.toml", {"app": {"url": db.url}}, CHECKS)


def test_every_seed_incident_is_detected_with_hand_counted_figures(db, tmp_path, dupewatch):
    expected = plant_seeds(db.engine)
    assert all(groups > 0 for groups, _ in expected.values()), "every seed must plant duplicates"
    assert hand_counted(db) == expected

    run = dupewatch("check", "--json", "--config", seed_config(db, tmp_path))

    assert run.code == 1, run.output
    got = {c["name"]: (c["groups"], c["excess_rows"]) for c in run.json["checks"]}
    assert got == expected
    # vote-drift is a custom query: the stored totals break an invariant, they are not duplicate rows
    custom = {c["name"] for c in CHECKS if "query" in c or "sql" in c}
    assert custom == {"vote-drift"}
    assert {c["name"]: c["status"] for c in run.json["checks"]} == \
        {name: "violations" if name in custom else "duplicates" for name in expected}


def test_seed_groups_show_millisecond_bursts_and_keep_the_oldest_row(db, tmp_path):
    plant_seeds(db.engine)
    monitor = Monitor(load_config(seed_config(db, tmp_path)))
    try:
        page = monitor.groups("login-sources", limit=100)
        assert page.key_columns == ["user_id", "agent_type", "device_type", "os_type"]
        assert page.groups[0].key == (42, "Chrome Mobile", "K", "Android") and page.groups[0].rows == 3
        # born 5 ms apart, as in the Pretix incident: the spread tells a race from a slow logic bug
        assert page.groups[0].spread == timedelta(milliseconds=10)
        assert all(g.spread == timedelta(milliseconds=5) for g in page.groups[1:])

        members = monitor.members("login-sources", page.groups[0].key)
        ids = [row[members.columns.index("id")] for row in members.rows]
        assert members.keeper == 0 and ids == sorted(ids) and len(ids) == 3

        # seed 003: no primary key, yet the group's rows are listed
        pair = monitor.groups("role-membership", limit=1).groups[0]
        assert (pair.key, pair.rows) == ((2, 13), 3)
        assert monitor.members("role-membership", pair.key).rows == [(2, 13)] * 3
    finally:
        monitor.close()


def test_vote_drift_rows_name_each_drifted_candidate(db, tmp_path):
    plant_seeds(db.engine)
    monitor = Monitor(load_config(seed_config(db, tmp_path)))
    try:
        columns, rows = monitor.custom_rows("vote-drift", limit=100)
    finally:
        monitor.close()
    assert columns == ["candidate_id", "name", "stored_total", "paid_votes", "drift"]
    expected = db.rows("SELECT c.id FROM candidate c WHERE c.total_votes <> (SELECT COALESCE(SUM(p.votes), 0) "
                       "FROM payment p WHERE p.candidate_id = c.id AND p.verified = TRUE)")
    assert sorted(r[0] for r in rows) == sorted(r[0] for r in expected)
    assert all(int(r[2]) - int(r[3]) == int(r[4]) != 0 for r in rows)
