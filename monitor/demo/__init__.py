"""The embedded demo: an SQLite database holding one table per seed incident, duplicates planted the way
the races left them, and the built-in configuration that watches it.

| table                    | seed | race                                                          |
| ------------------------ | ---- | ------------------------------------------------------------- |
| user_known_login_source  | 000  | two logins 5 ms apart both insert the same device             |
| checkin (+ checkin_credit)| 001 | a double-clicked "check in" writes two rows and two credits   |
| candidate, payment       | 002  | `total += n; save()` drifts the stored vote total             |
| role_membership          | 003  | a link table without a primary key holds a pair twice         |
| race_profile             | 004  | ten threads in `get_or_create` create several rows            |
"""

from __future__ import annotations

import json
import random
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import platformdirs

from monitor.config import Config, config_from_dict

# AUTOINCREMENT as Django and Rails declare it on SQLite: an id a fix deleted is never handed to a row the racer
# inserts after it, so `dupewatch undo` can put the deleted rows back under their own keys.
SCHEMA = """
CREATE TABLE user_known_login_source (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    agent_type VARCHAR(64) NOT NULL,
    device_type VARCHAR(64) NOT NULL,
    os_type VARCHAR(64) NOT NULL,
    last_seen DATETIME NOT NULL
);
CREATE INDEX ix_login_source_user ON user_known_login_source (user_id);
CREATE TABLE checkin (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    checkin_date DATE NOT NULL,
    created_at DATETIME NOT NULL
);
CREATE TABLE checkin_credit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    checkin_id INTEGER NOT NULL REFERENCES checkin (id),
    credits INTEGER NOT NULL
);
CREATE TABLE candidate (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name VARCHAR(64) NOT NULL,
    total_votes INTEGER NOT NULL
);
CREATE TABLE payment (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    candidate_id INTEGER NOT NULL REFERENCES candidate (id),
    votes INTEGER NOT NULL,
    verified BOOLEAN NOT NULL,
    paid_at DATETIME NOT NULL
);
CREATE TABLE role_membership (
    group_id INTEGER NOT NULL,
    member_id INTEGER NOT NULL
);
CREATE TABLE race_profile (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id VARCHAR(32) NOT NULL,
    name VARCHAR(32) NOT NULL,
    created_at DATETIME NOT NULL
);
"""

AGENTS = ["Chrome Mobile", "Firefox", "Safari", "Chrome", "Edge", "Samsung Internet"]
DEVICES = ["K", "iPhone", "Other", "Pixel 8", "SM-G991B"]
OSES = ["Android", "iOS", "Windows", "Mac OS X", "Linux"]
FIRST_NAMES = ["Ada", "Grace", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "Edsger", "Radia"]


def demo_dir() -> Path:
    return Path(platformdirs.user_data_dir("dupewatch", appauthor=False)) / "demo"


def ts(moment: datetime) -> str:
    """The text form SQLAlchemy's SQLite DateTime type reads back."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def build_demo(path: Path | None = None, *, seed: int = 2024, now: datetime | None = None) -> Path:
    """(Re)build the demo database at `path` and return it. Deterministic for a given seed and `now`."""
    path = path or demo_dir() / "demo.sqlite"
    path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    rng = random.Random(seed)
    now = now or datetime.now().replace(microsecond=0)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(SCHEMA)
        _plant_login_sources(conn, rng, now)
        _plant_checkins(conn, rng, now)
        _plant_votes(conn, rng, now)
        _plant_memberships(conn, rng)
        _plant_profiles(conn, rng, now)
        conn.commit()
    finally:
        conn.close()
    return path


def _burst(rng: random.Random, start: datetime, copies: int, max_ms: int = 8) -> list[datetime]:
    """Birth times of rows created by a race: a few milliseconds apart."""
    times = [start]
    for _ in range(copies - 1):
        times.append(times[-1] + timedelta(microseconds=rng.randint(1000, max_ms * 1000)))
    return times


def _plant_login_sources(conn: sqlite3.Connection, rng: random.Random, now: datetime) -> None:
    rows: list[tuple[Any, ...]] = []
    for user_id in range(1, 1501):
        combos = rng.sample([(a, d, o) for a in AGENTS for d in DEVICES for o in OSES], rng.randint(1, 3))
        for agent, device, os_type in combos:
            seen = now - timedelta(seconds=rng.randint(60, 30 * 86400))
            copies = 2 if rng.random() < 0.03 else 1  # two concurrent logins, ~5 ms apart
            rows.extend((user_id, agent, device, os_type, ts(t)) for t in _burst(rng, seen, copies))
    conn.executemany(
        "INSERT INTO user_known_login_source (user_id, agent_type, device_type, os_type, last_seen)"
        " VALUES (?, ?, ?, ?, ?)", rows)


def _plant_checkins(conn: sqlite3.Connection, rng: random.Random, now: datetime) -> None:
    for user_id in range(1, 401):
        for days_ago in range(14, 0, -1):
            if rng.random() < 0.5:
                continue
            day = (now - timedelta(days=days_ago)).date()
            moment = datetime.combine(day, datetime.min.time()) + timedelta(seconds=rng.randint(8 * 3600, 22 * 3600))
            roll = rng.random()
            # a double click races four uWSGI workers; rarely a cron re-run checks a user in hours later
            if roll < 0.02:
                times = _burst(rng, moment, rng.choice([2, 2, 3, 4]), max_ms=15)
            elif roll < 0.025:
                times = [moment, moment + timedelta(hours=rng.randint(1, 5))]
            else:
                times = [moment]
            for t in times:
                cur = conn.execute("INSERT INTO checkin (user_id, checkin_date, created_at) VALUES (?, ?, ?)",
                                   (user_id, day.isoformat(), ts(t)))
                conn.execute("INSERT INTO checkin_credit (checkin_id, credits) VALUES (?, ?)", (cur.lastrowid, 10))


def _plant_votes(conn: sqlite3.Connection, rng: random.Random, now: datetime) -> None:
    for candidate_id in range(1, 41):
        payments = [(rng.choice([1, 5, 10, 20]), rng.random() > 0.1) for _ in range(rng.randint(3, 30))]
        paid = sum(votes for votes, verified in payments if verified)
        roll = rng.random()
        if roll < 0.1:
            total = paid + rng.choice([v for v, ok in payments if ok] or [10])  # a webhook processed twice
        elif roll < 0.15:
            total = max(0, paid - rng.choice([1, 5, 10]))  # a lost update
        else:
            total = paid
        name = f"{rng.choice(FIRST_NAMES)} #{candidate_id}"
        conn.execute("INSERT INTO candidate (id, name, total_votes) VALUES (?, ?, ?)", (candidate_id, name, total))
        conn.executemany(
            "INSERT INTO payment (candidate_id, votes, verified, paid_at) VALUES (?, ?, ?, ?)",
            [(candidate_id, votes, int(ok), ts(now - timedelta(minutes=rng.randint(1, 20000))))
             for votes, ok in payments])


def _plant_memberships(conn: sqlite3.Connection, rng: random.Random) -> None:
    rows = []
    for member_id in range(1, 801):
        for group_id in rng.sample(range(1, 30), rng.randint(1, 4)):
            rows.append((group_id, member_id))
            if rng.random() < 0.02:  # two concurrent OAuth callbacks synced the same membership
                rows.append((group_id, member_id))
    conn.executemany("INSERT INTO role_membership (group_id, member_id) VALUES (?, ?)", rows)


def _plant_profiles(conn: sqlite3.Connection, rng: random.Random, now: datetime) -> None:
    rows: list[tuple[object, ...]] = []
    for n in range(600):
        user_id = f"{rng.getrandbits(128):032x}"
        created = now - timedelta(seconds=rng.randint(60, 10 * 86400))
        copies = rng.choice([2, 3, 4]) if rng.random() < 0.03 else 1  # get_or_create in ten threads
        rows.extend((user_id, FIRST_NAMES[n % len(FIRST_NAMES)], ts(t)) for t in _burst(rng, created, copies, 3))
    conn.executemany("INSERT INTO race_profile (user_id, name, created_at) VALUES (?, ?, ?)", rows)


def shipped_query(name: str) -> str:
    """The text of a custom query shipped in `queries/` (inside the wheel, or beside the source tree)."""
    here = Path(__file__).resolve().parent.parent
    for folder in (here / "queries", here.parent / "queries"):
        candidate = folder / name
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise FileNotFoundError(f"shipped query {name} not found")


def demo_config(path: Path, *, interval: str = "5s") -> Config:
    """The built-in configuration watching the demo database at `path`."""
    return config_from_dict(demo_config_data(path, interval=interval), None)


def demo_config_toml(path: Path) -> str:
    """The demo's configuration as a TOML file for `dupewatch daemon` (and Prometheus): the same checks on the
    same database, metrics on the default address, and a run history of its own (the demo dashboard starts its
    own afresh each time it rebuilds the database)."""
    data = demo_config_data(path)
    data["state"] = {"path": str(path.parent / "daemon-state.sqlite")}
    data["metrics"] = {"listen": "127.0.0.1:9641"}
    lines = ["# The dupewatch demo, for `dupewatch daemon --config FILE` (written by `dupewatch demo --print-config`).",
             f"# The demo database: {path} (rebuilt by each `dupewatch demo`; the daemon reopens it).", ""]
    for section in ("databases",):
        for name, table in data[section].items():
            lines.append(f"[{section}.{name}]")
            lines.extend(f"{key} = {_toml_value(value)}" for key, value in table.items())
            lines.append("")
    for section in ("metrics", "state"):
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in data[section].items())
        lines.append("")
    for check in data["checks"]:
        lines.append("[[checks]]")
        lines.extend(f"{key} = {_toml_value(value)}" for key, value in check.items())
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    """A string, number or list of strings in TOML (JSON's string escapes are TOML's)."""
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value), ensure_ascii=False)


def demo_config_data(path: Path, *, interval: str = "5s") -> dict[str, Any]:
    """The demo's configuration as the data of a TOML file."""
    data: dict[str, Any] = {
        "databases": {"demo": {"url": f"sqlite:///{path}", "statement_timeout": "10s"}},
        "state": {"path": str(path.parent / "state.sqlite")},
        "checks": [
            {"name": "login-sources", "database": "demo", "table": "user_known_login_source",
             "key": ["user_id", "agent_type", "device_type", "os_type"], "timestamp": "last_seen",
             "interval": interval,
             "description": "Seed 000 (Pretix): two logins 5 ms apart inserted the same device twice; "
                            "update_or_create then raised MultipleObjectsReturned and login returned 500."},
            {"name": "daily-checkins", "database": "demo", "table": "checkin",
             "key": ["user_id", "checkin_date"], "timestamp": "created_at", "interval": interval,
             "description": "Seed 001 (Flask check-in): a double click let four workers each read "
                            "is_signin = False and each write a check-in and a credit."},
            {"name": "vote-drift", "database": "demo", "sql": shipped_query("vote_drift.sql"),
             "interval": interval,
             "description": "Seed 002 (Django voting): total += n; save() under concurrency drifted the "
                            "stored totals from the verified payments. An invariant, not a duplicate row."},
            {"name": "role-membership", "database": "demo", "table": "role_membership",
             "key": ["group_id", "member_id"], "interval": interval,
             "description": "Seed 003 (Aleph): a link table with no primary key got the same pair twice "
                            "from concurrent OAuth logins; the next sync's delete raised StaleDataError."},
            {"name": "profiles-get-or-create", "database": "demo", "table": "race_profile",
             "key": ["user_id"], "timestamp": "created_at", "interval": interval,
             "description": "Seed 004 (Django get_or_create): ten threads created several rows for one "
                            "user_id; later calls raised MultipleObjectsReturned."},
        ],
    }
    return data
