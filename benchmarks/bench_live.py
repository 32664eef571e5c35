"""Benchmark: commit-to-count latency of live mode on PostgreSQL under a steady insert load.

Builds `signup` with `--rows` rows (one INSERT ... SELECT from generate_series) of which `--groups` keys are
already duplicated (the known groups), with an index on the key, in a throwaway cluster with
`wal_level = logical` (tests/pgcluster.py) or at DUPEWATCH_BENCH_PG_LIVE_URL. A `LiveReader` follows it
in-process while one writer session inserts `--rate` rows per second for `--seconds`, each its own
transaction; `--repeat-share` of them (default 10%) repeat an old key that had one row, so each makes a new
duplicate group. The latency of a new group is from its insert's commit (as the writer saw it return) to the
reader reporting figures that count it (new groups are matched to the writer's inserts in commit order).
Prints p50/p95/max (target: p95 under 1 s) and how many new groups were counted against how many were made.

    .venv/bin/python benchmarks/bench_live.py [--rows 10000000] [--groups 100000] [--rate 1000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import threading
import time
from pathlib import Path

import sqlalchemy as sa

sys.path[:0] = [str(Path(__file__).resolve().parent.parent / "tests")]

from monitor.config import config_from_dict  # noqa: E402
from monitor.engine import Monitor  # noqa: E402
from monitor.live import Figures, LiveReader  # noqa: E402


class Timeline:
    """A `LiveSink` keeping when each new group was counted."""

    def __init__(self) -> None:
        self.counted: list[float] = []  # monotonic time of each new group counted
        self.gaps: list[str] = []

    def live_figures(self, check: str, database: str, figures: Figures) -> None:
        now = time.monotonic()
        self.counted.extend([now] * figures.new_groups)

    def live_events(self, database: str, events: int, lag_seconds: float | None) -> None:
        pass

    def live_gap(self, database: str, reason: str) -> None:
        self.gaps.append(reason)

    def live_following(self, database: str, following: bool) -> None:
        pass


def build(engine: sa.Engine, rows: int, groups: int) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS signup"))
        conn.execute(sa.text("CREATE TABLE signup (id bigserial PRIMARY KEY, email text NOT NULL)"))
        # Keys 1..rows-groups once each, then keys 1..groups a second time: `groups` duplicate groups.
        conn.execute(sa.text("INSERT INTO signup (email) SELECT 'user' || g || '@example.com' "
                             "FROM generate_series(1, :unique) g"), {"unique": rows - groups})
        conn.execute(sa.text("INSERT INTO signup (email) SELECT 'user' || g || '@example.com' "
                             "FROM generate_series(1, :groups) g"), {"groups": groups})
        conn.execute(sa.text("CREATE INDEX signup_email ON signup (email)"))
        conn.execute(sa.text("ANALYZE signup"))


def write(engine: sa.Engine, rows: int, groups: int, rate: float, seconds: float, share: float) -> list[float]:
    """Insert at `rate` per second; returns the commit times of the inserts that made a new group."""
    made: list[float] = []
    singles = list(range(groups + 1, rows - groups + 1))  # keys with one row: repeating one makes a new group
    random.shuffle(singles)
    fresh = rows
    start = time.monotonic()
    n = 0
    with engine.connect() as conn:
        while (now := time.monotonic()) - start < seconds:
            due = start + n / rate
            if due > now:
                time.sleep(due - now)  # pacing the load, not synchronisation
            n += 1
            repeat = random.random() < share and singles
            key = singles.pop() if repeat else (fresh := fresh + 1)
            conn.execute(sa.text("INSERT INTO signup (email) VALUES (:e)"), {"e": f"user{key}@example.com"})
            conn.commit()
            if repeat:
                made.append(time.monotonic())
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeat-share", type=float, default=0.1)
    args = parser.parse_args()

    cluster = None
    url = os.environ.get("DUPEWATCH_BENCH_PG_LIVE_URL")
    if url is None:
        from pgcluster import Cluster

        cluster = Cluster(wal_level="logical")
        cluster.start()
        url = cluster.url
    engine = sa.create_engine(url)
    try:
        started = time.monotonic()
        build(engine, args.rows, args.groups)
        print(f"built {args.rows:,} rows with {args.groups:,} duplicate groups in {time.monotonic() - started:.1f} s")
        monitor = Monitor(config_from_dict({"databases": {"bench": {"url": url}}, "checks": [
            {"name": "signups", "database": "bench", "table": "signup", "key": ["email"]}]}))
        db = monitor.database("bench")
        stream = db.rules.change_stream("bench", db.url)
        assert stream is not None
        timeline = Timeline()
        reader = LiveReader(monitor, "bench", list(monitor.config.checks), stream, timeline)
        reader.start()
        assert reader.following.wait(600), "the live reader never followed the stream"
        cpu_before = time.process_time()
        made: list[float] = []
        writer = threading.Thread(target=lambda: made.extend(
            write(engine, args.rows, args.groups, args.rate, args.seconds, args.repeat_share)))
        writer.start()
        writer.join()
        deadline = time.monotonic() + 10
        while len(timeline.counted) < len(made) and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting for the reader to catch up
        cpu = time.process_time() - cpu_before
        reader.stop()
        monitor.close()
        latencies = sorted(c - m for c, m in zip(timeline.counted, made, strict=False))
        print(f"new groups made {len(made)}, counted {len(timeline.counted)}, gaps {len(timeline.gaps)}")
        if latencies:
            p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
            print(f"commit-to-count latency: p50 {statistics.median(latencies) * 1000:.0f} ms, "
                  f"p95 {p95 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms")
        print(f"process CPU (reader and writer together) {cpu:.1f} s for {args.rate * args.seconds:,.0f} changes")
    finally:
        engine.dispose()
        if cluster is not None:
            cluster.stop()


if __name__ == "__main__":
    main()
