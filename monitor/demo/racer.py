"""The demo's racer: keeps reproducing the seed races against the demo database so the figures move.

Each race is real, not a planted row: several threads each run the application's "check, then write"
against their own connection, and a barrier between the check and the write makes them all see "not
there yet", exactly as the concurrent requests in the incident reports did. Ordinary, race-free
traffic is mixed in so that not every write is a duplicate.
"""

from __future__ import annotations

import random
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from monitor.demo import AGENTS, DEVICES, OSES, ts


class Racer:
    def __init__(self, path: Path, *, pace: float = 1.5, seed: int | None = None) -> None:
        self.path = path
        self.pace = pace
        self.rng = random.Random(seed)
        self.races = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dupewatch-demo-racer", daemon=True)
        self._scenarios: list[Callable[[], None]] = [
            self.double_login, self.double_checkin, self.vote_lost_update, self.oauth_double_sync,
            self.get_or_create_race,
        ]

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.wait(self.rng.uniform(0.5, 1.5) * self.pace):
            try:
                self.normal_traffic()
                self.rng.choice(self._scenarios)()
                self.races += 1
            except sqlite3.Error:
                continue  # the operator may be fixing the same table right now; try again next tick

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10, isolation_level=None)

    def _race(self, workers: int, request: Callable[[sqlite3.Connection, threading.Barrier], None]) -> None:
        """Run `request` in `workers` threads at once, each on its own connection."""
        barrier = threading.Barrier(workers, timeout=5)

        def worker() -> None:
            conn = self._connect()
            try:
                request(conn, barrier)
            except (threading.BrokenBarrierError, sqlite3.Error):
                pass
            finally:
                conn.close()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)

    # -- seed 000: two logins 5 ms apart, update_or_create without a unique constraint ---------

    def double_login(self) -> None:
        user_id = self.rng.randint(1, 1500)
        agent, device, os_type = self.rng.choice(AGENTS), self.rng.choice(DEVICES), self.rng.choice(OSES)

        def login(conn: sqlite3.Connection, barrier: threading.Barrier) -> None:
            found = conn.execute(
                "SELECT id FROM user_known_login_source WHERE user_id = ? AND agent_type = ? AND device_type = ?"
                " AND os_type = ?", (user_id, agent, device, os_type)).fetchone()
            barrier.wait()
            if found:
                conn.execute("UPDATE user_known_login_source SET last_seen = ? WHERE id = ?", (_now(), found[0]))
            else:
                conn.execute("INSERT INTO user_known_login_source (user_id, agent_type, device_type, os_type,"
                             " last_seen) VALUES (?, ?, ?, ?, ?)", (user_id, agent, device, os_type, _now()))

        self._race(2, login)

    # -- seed 001: a double-clicked check-in, four workers ------------------------------------

    def double_checkin(self) -> None:
        user_id = self.rng.randint(401, 100_000)
        today = datetime.now().date().isoformat()

        def checkin(conn: sqlite3.Connection, barrier: threading.Barrier) -> None:
            done = conn.execute("SELECT 1 FROM checkin WHERE user_id = ? AND checkin_date = ?",
                                (user_id, today)).fetchone()
            barrier.wait()
            if not done:
                cur = conn.execute("INSERT INTO checkin (user_id, checkin_date, created_at) VALUES (?, ?, ?)",
                                   (user_id, today, _now()))
                conn.execute("INSERT INTO checkin_credit (checkin_id, credits) VALUES (?, 10)", (cur.lastrowid,))

        self._race(self.rng.choice([2, 2, 3, 4]), checkin)

    # -- seed 002: total += n; save() ----------------------------------------------------------

    def vote_lost_update(self) -> None:
        candidate_id = self.rng.randint(1, 40)
        votes = self.rng.choice([1, 5, 10])

        def pay(conn: sqlite3.Connection, barrier: threading.Barrier) -> None:
            conn.execute("INSERT INTO payment (candidate_id, votes, verified, paid_at) VALUES (?, ?, 1, ?)",
                         (candidate_id, votes, _now()))
            (total,) = conn.execute("SELECT total_votes FROM candidate WHERE id = ?", (candidate_id,)).fetchone()
            barrier.wait()
            conn.execute("UPDATE candidate SET total_votes = ? WHERE id = ?", (total + votes, candidate_id))

        self._race(2, pay)

    # -- seed 003: concurrent OAuth callbacks sync the same membership ----------------------------

    def oauth_double_sync(self) -> None:
        group_id, member_id = self.rng.randint(1, 29), self.rng.randint(801, 100_000)

        def sync(conn: sqlite3.Connection, barrier: threading.Barrier) -> None:
            present = conn.execute("SELECT 1 FROM role_membership WHERE group_id = ? AND member_id = ?",
                                   (group_id, member_id)).fetchone()
            barrier.wait()
            if not present:
                conn.execute("INSERT INTO role_membership (group_id, member_id) VALUES (?, ?)", (group_id, member_id))

        self._race(2, sync)

    # -- seed 004: get_or_create from ten threads ------------------------------------------------

    def get_or_create_race(self) -> None:
        user_id = f"{self.rng.getrandbits(128):032x}"

        def get_or_create(conn: sqlite3.Connection, barrier: threading.Barrier) -> None:
            found = conn.execute("SELECT id FROM race_profile WHERE user_id = ?", (user_id,)).fetchone()
            barrier.wait()
            if not found:
                conn.execute("INSERT INTO race_profile (user_id, name, created_at) VALUES (?, 'foo', ?)",
                             (user_id, _now()))

        self._race(self.rng.choice([3, 5, 10]), get_or_create)

    def normal_traffic(self) -> None:
        """A few race-free writes, so the tables grow the way a real application's do."""
        conn = self._connect()
        try:
            for _ in range(self.rng.randint(1, 4)):
                conn.execute("INSERT INTO race_profile (user_id, name, created_at) VALUES (?, 'normal', ?)",
                             (f"{self.rng.getrandbits(128):032x}", _now()))
        finally:
            conn.close()


def _now() -> str:
    return ts(datetime.now())
