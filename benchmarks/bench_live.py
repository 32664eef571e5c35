"""Benchmark: live mode under a steady insert load, on PostgreSQL and on MariaDB.

For each database it starts a throwaway server with the change stream on (tests/pgcluster.py with
`wal_level = logical`; tests/mariadbserver.py with the binary log in ROW format), builds `signup` with `--rows`
rows of which `--groups` keys are already duplicated (the known groups), with an index on the key, and follows
it with a `LiveReader` in this process (what the daemon runs; its sink notes when figures are reported, the
moment the daemon sets /metrics). A writer in **another process** inserts `--rate` rows per second for
`--seconds`, each its own transaction; `--repeat-share` of them (default 10%) repeat an old key that had one
row, so each makes a new duplicate group. Measured:

- (a) commit-to-metric latency of a new duplicate: from its insert's commit (as the writer saw it return) to
  the reader reporting figures that count it (new groups are matched to the writer's repeats in commit order):
  p50, p95, max (target: under 1 s);
- (b) daemon CPU per 1,000 changes: the CPU time of this process (the reader, its stream thread and the
  detection connections' client side; the writer runs elsewhere) and of the stream's decoder process where it
  has one (MariaDB's binary log), over the changes written; and the groups the reader re-counted per 1,000
  changes (each is one indexed count on the server, whose CPU is not included). The load average is printed
  before and after each database's run.

    .venv/bin/python benchmarks/bench_live.py [--database postgresql|mariadb|both] [--pg-rows 10000000]
        [--pg-groups 100000] [--mariadb-rows 2000000] [--mariadb-groups 20000] [--rate 1000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
        self.events = 0
        self.lock = threading.Lock()

    def live_figures(self, check: str, database: str, figures: Figures) -> None:
        now = time.monotonic()
        with self.lock:
            self.counted.extend([now] * figures.new_groups)

    def live_events(self, database: str, events: int, lag_seconds: float | None) -> None:
        self.events += events

    def live_gap(self, database: str, reason: str) -> None:
        self.gaps.append(reason)

    def live_following(self, database: str, following: bool) -> None:
        pass

    def live_overflow(self, database: str, check: str) -> None:
        pass


@dataclass(frozen=True)
class Schema:
    """The statements that build the table on one database."""

    create: str
    series: str  # rows 1..{n} as column g
    analyze: str


POSTGRESQL = Schema("CREATE TABLE signup (id bigserial PRIMARY KEY, email text NOT NULL)",
                    "generate_series(1, {n}) g", "ANALYZE signup")
MARIADB = Schema("CREATE TABLE signup (id bigint AUTO_INCREMENT PRIMARY KEY, email varchar(100) NOT NULL)",
                 "(SELECT seq AS g FROM seq_1_to_{n}) s", "ANALYZE TABLE signup")


def build(engine: sa.Engine, rows: int, groups: int, schema: Schema) -> None:
    """Keys 1..rows-groups once each, then keys 1..groups a second time: `groups` duplicate groups."""
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS signup"))
        conn.execute(sa.text(schema.create))
        for count in (rows - groups, groups):
            conn.execute(sa.text(f"INSERT INTO signup (email) SELECT concat('user', g, '@example.com') "
                                 f"FROM {schema.series.format(n=count)}"))
        conn.execute(sa.text("CREATE INDEX signup_email ON signup (email)"))
        conn.execute(sa.text(schema.analyze))


def write(url: str, rows: int, groups: int, rate: float, seconds: float, share: float, out: Any) -> None:
    """In another process: insert at `rate` per second; sends the commit times of the inserts that made a new
    group, and how many rows were inserted."""
    engine = sa.create_engine(url)
    made: list[float] = []
    singles = list(range(groups + 1, rows - groups + 1))  # keys with one row: repeating one makes a new group
    random.Random(7).shuffle(singles)
    fresh = rows
    n = 0
    start = time.monotonic()
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
    engine.dispose()
    out.send((made, n, time.monotonic() - start))


@dataclass
class Measured:
    database: str
    rows: int
    groups: int
    build_seconds: float
    first_count_seconds: float
    changes: int
    write_seconds: float
    made: int
    counted: int
    gaps: int
    latencies: list[float]
    cpu_seconds: float
    decoder_cpu_seconds: float
    recounted: int

    def report(self) -> str:
        lat = sorted(self.latencies)
        p95 = lat[min(len(lat) - 1, int(0.95 * len(lat)))] if lat else float("nan")
        per_k = 1000 / self.changes if self.changes else float("nan")
        return "\n".join([
            f"== {self.database}: {self.rows:,} rows, {self.groups:,} known groups "
            f"(built in {self.build_seconds:.0f} s, first full count {self.first_count_seconds:.1f} s)",
            f"   load: {self.changes:,} inserts in {self.write_seconds:.1f} s ({self.changes / self.write_seconds:,.0f}"
            f"/s), {self.made:,} new duplicate groups made, {self.counted:,} counted, {self.gaps} gaps",
            f"   (a) commit-to-metric latency of a new duplicate: p50 {statistics.median(lat) * 1000:.0f} ms, "
            f"p95 {p95 * 1000:.0f} ms, max {lat[-1] * 1000:.0f} ms" if lat else "   (a) no latency measured",
            f"   (b) daemon CPU {(self.cpu_seconds + self.decoder_cpu_seconds) * per_k:.2f} s per 1,000 changes "
            f"({self.cpu_seconds:.1f} s reader + {self.decoder_cpu_seconds:.1f} s stream decoder for "
            f"{self.changes:,}); groups re-counted per 1,000 changes {self.recounted * per_k:,.0f}",
        ])


def measure(name: str, url: str, rows: int, groups: int, schema: Schema, args: argparse.Namespace) -> Measured:
    engine = sa.create_engine(url)
    started = time.monotonic()
    build(engine, rows, groups, schema)
    built = time.monotonic() - started
    engine.dispose()
    monitor = Monitor(config_from_dict({"databases": {"bench": {"url": url}}, "checks": [
        {"name": "signups", "database": "bench", "table": "signup", "key": ["email"]}]}))
    db = monitor.database("bench")
    stream = db.rules.change_stream("bench", db.url)
    assert stream is not None
    timeline = Timeline()
    reader = LiveReader(monitor, "bench", list(monitor.config.checks), stream, timeline)
    started = time.monotonic()
    reader.start()
    assert reader.following.wait(900), "the live reader never followed the stream"
    first_count = time.monotonic() - started
    decoder = getattr(stream, "decoder_pid", None)
    cpu_before, decoder_before = time.process_time(), process_cpu(decoder)
    receive, send = multiprocessing.get_context("spawn").Pipe(duplex=False)
    writer = multiprocessing.get_context("spawn").Process(
        target=write, args=(url, rows, groups, args.rate, args.seconds, args.repeat_share, send))
    writer.start()
    made, changes, write_seconds = receive.recv()
    writer.join()
    deadline = time.monotonic() + 30
    while len(timeline.counted) < len(made) and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for the reader to catch up
    cpu, decoder_cpu = time.process_time() - cpu_before, process_cpu(decoder) - decoder_before
    recounted = reader.groups["signups"].recounted
    reader.stop()
    monitor.close()
    with timeline.lock:
        counted = list(timeline.counted)
    return Measured(name, rows, groups, built, first_count, changes, write_seconds, len(made), len(counted),
                    len(timeline.gaps), [c - m for c, m in zip(counted, made, strict=False)], cpu, decoder_cpu,
                    recounted)


def process_cpu(pid: int | None) -> float:
    """User and system CPU seconds of a running process (Linux `/proc`), 0 without one."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def on_postgresql(args: argparse.Namespace) -> Measured:
    from pgcluster import Cluster

    cluster = Cluster(wal_level="logical", shared_buffers="512MB", max_wal_size="4GB", maintenance_work_mem="512MB")
    cluster.start()
    try:
        return measure("PostgreSQL", cluster.url, args.pg_rows, args.pg_groups, POSTGRESQL, args)
    finally:
        cluster.stop()


def on_mariadb(args: argparse.Namespace) -> Measured:
    from mariadbserver import MariaDBServer

    server = MariaDBServer(**{"log-bin": "binlog", "binlog-format": "ROW", "innodb-buffer-pool-size": "512M",
                              "innodb-log-file-size": "512M", "max-binlog-size": "1G"})
    server.start()
    try:
        return measure("MariaDB", server.url, args.mariadb_rows, args.mariadb_groups, MARIADB, args)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=["postgresql", "mariadb", "both"], default="both")
    parser.add_argument("--pg-rows", type=int, default=10_000_000)
    parser.add_argument("--pg-groups", type=int, default=100_000)
    parser.add_argument("--mariadb-rows", type=int, default=2_000_000)
    parser.add_argument("--mariadb-groups", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--repeat-share", type=float, default=0.1)
    args = parser.parse_args()
    print(f"load: {args.rate:,.0f} inserts/s for {args.seconds:.0f} s, {args.repeat_share:.0%} repeating an old key")
    if args.database in ("postgresql", "both"):
        print(f"load average before: {load_average()}", flush=True)
        print(on_postgresql(args).report(), f"\nload average after: {load_average()}", flush=True)
    if args.database in ("mariadb", "both"):
        print(f"load average before: {load_average()}", flush=True)
        print(on_mariadb(args).report(), f"\nload average after: {load_average()}", flush=True)


if __name__ == "__main__":
    main()
