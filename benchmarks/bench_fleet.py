"""Fleet mode at scale: one daemon over many PostgreSQL databases and tenant schemas, then three shards.

Issue 20's targets, on this machine: 500 databases plus 200 tenant schemas in one database, 5 checks each; one
daemon stays within its connection caps, memory under 150 MB, `/metrics` under 50 ms, every target checked
within its interval; three shards together check every target exactly once (counted from their metrics); a killed
shard restarts and resumes its targets; a database created during the run is discovered within one discovery
interval. The scale is a parameter (the machine is shared): the figures say which was used.

    python benchmarks/bench_fleet.py [--databases 500] [--schemas 200] [--checks 5] [--interval 60]
                                     [--server-connections 4] [--max-running 8]

Runs on a throwaway PostgreSQL cluster of its own (initdb + pg_ctl, fsync off; tests/pgcluster.py), removed at the
end. Measured in the same run as the baseline: a scrape of a one-database daemon, for the /metrics ratio.
Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from pgcluster import Cluster, free_port

TABLES = ["login_source", "profile", "vote", "invoice", "session"]
DISCOVERY_EVERY = 10.0
TARGET_RSS_MB, TARGET_SCRAPE_MS = 150.0, 50.0
NEW_TARGET_SERIES = 'target="tenant_new"'


def libpq(url: str, database: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://").rsplit("/", 1)[0] + f"/{database}"


def table_sql(schema: str | None) -> list[str]:
    prefix = f'"{schema}".' if schema else ""
    statements = []
    for table in TABLES:
        statements.append(f"CREATE TABLE {prefix}{table} (id serial PRIMARY KEY, k int NOT NULL)")
        statements.append(f"INSERT INTO {prefix}{table} (k) SELECT g % 90 FROM generate_series(1, 100) g")
    return statements


def build(url: str, databases: int, schemas: int) -> None:
    started = time.monotonic()
    with psycopg.connect(libpq(url, "postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE fleet_template")
        with psycopg.connect(libpq(url, "fleet_template"), autocommit=True) as template:
            for statement in table_sql(None):
                template.execute(statement)
        for i in range(databases):
            conn.execute(f"CREATE DATABASE tenant_{i:04d} TEMPLATE fleet_template STRATEGY FILE_COPY")
        conn.execute("CREATE DATABASE saas")
    with psycopg.connect(libpq(url, "saas"), autocommit=True) as conn:
        conn.execute("CREATE TABLE tenants (schema_name text)")
        for i in range(schemas):
            conn.execute(f'CREATE SCHEMA "acct_{i:04d}"')
            for statement in table_sql(f"acct_{i:04d}"):
                conn.execute(statement)
            conn.execute("INSERT INTO tenants VALUES (%s)", (f"acct_{i:04d}",))
    print(f"built {databases} databases and {schemas} schemas of {len(TABLES)} tables in "
          f"{time.monotonic() - started:.0f}s")


def write_config(path: Path, url: str, port: int, args: argparse.Namespace) -> Path:
    server = url.rsplit("/", 1)[0]
    lines = [
        "[sources.dbs]", f'url = "{server}/postgres"', 'discover = "databases"', 'include = "^tenant_"',
        f"every = {DISCOVERY_EVERY}", 'labels = { kind = "database" }', "",
        "[sources.accounts]", f'url = "{server}/saas"', 'discover = "schemas"',
        'schemas_query = "SELECT schema_name FROM tenants"', f"every = {DISCOVERY_EVERY}",
        'labels = { kind = "schema" }', "",
        "[fleet]", f"max_running = {args.max_running}", f"server_connections = {args.server_connections}", "",
        "[metrics]", f'listen = "127.0.0.1:{port}"', "",
        "[state]", f'path = "{path.with_suffix(".sqlite")}"', "",
    ]
    for source in ("dbs", "accounts"):
        for table in TABLES[:args.checks]:
            lines += ["[[checks]]", f'name = "{source}-{table}"', f'source = "{source}"', f'table = "{table}"',
                      'key = ["k"]', f"interval = {args.interval}", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def start(config: Path, port: int, *args: str) -> subprocess.Popen[bytes]:
    log = open(config.with_suffix(f".{port}.log"), "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "daemon", "--config", str(config), *args],
                            stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    wait_until(lambda: scrape(port) is not None, "the daemon serving metrics", proc, 120)
    return proc


def scrape(port: int, *, gzipped: bool = False) -> str | None:
    """The page; `gzipped` asks for it as Prometheus does (`Accept-Encoding: gzip`) and returns it undecoded."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                     headers={"Accept-Encoding": "gzip"} if gzipped else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
            return body.decode("latin-1") if gzipped else str(body.decode())
    except OSError:
        return None


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(dict(s.labels), s.value) for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == name]


def wait_until(condition: Callable[[], object], what: str, proc: subprocess.Popen[bytes] | None,
               timeout: float, *, give_up: bool = False, every: float = 0.5) -> float | None:
    """Seconds until `condition` held; None after `timeout` when `give_up` (the run goes on to measure the
    rest), else the benchmark stops."""
    started = time.monotonic()
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the daemon exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() - started > timeout:
            if give_up:
                return None
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)
    return time.monotonic() - started


def seconds(value: float | None) -> str:
    return f"{value:.1f}s" if value is not None else "the window (not all of them)"


def ran(port: int) -> int:
    return sum(1 for n in checked(port).values() if n > 0)


def checked(port: int) -> Counter[tuple[str, str]]:
    """(check, target) -> runs, from the daemon's duration histogram."""
    text = scrape(port) or ""
    return Counter({(labels["check"], labels["target"]): int(value)
                    for labels, value in samples(text, "dupewatch_check_duration_seconds_count")})


def rss_mb(pid: int) -> tuple[float, float]:
    values = {line.split(":")[0]: int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
              if line.startswith(("VmRSS", "VmHWM"))}
    return values["VmRSS"] / 1024, values["VmHWM"] / 1024


class ConnectionSampler(threading.Thread):
    """The most connections dupewatch held open at once on the server (pg_stat_activity, every 50 ms)."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.peak = 0
        self.stopping = threading.Event()

    def run(self) -> None:
        with psycopg.connect(libpq(self.url, "postgres"), autocommit=True) as conn:
            while not self.stopping.is_set():
                row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'dupewatch'"
                                   ).fetchone()
                self.peak = max(self.peak, int(row[0]) if row else 0)
                self.stopping.wait(0.05)


def scrape_ms(port: int, count: int, *, gzipped: bool = False) -> tuple[float, float, int]:
    times = []
    size = 0
    for _ in range(count):
        started = time.perf_counter()
        size = len(scrape(port, gzipped=gzipped) or "")
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], size


def one_daemon(url: str, workdir: Path, args: argparse.Namespace, expected: int) -> None:
    port = free_port()
    config = write_config(workdir / "one.toml", url, port, args)
    sampler = ConnectionSampler(url)
    sampler.start()
    started = time.monotonic()
    proc = start(config, port)
    serving = time.monotonic()
    try:
        print(f"one daemon: serving metrics {serving - started:.1f}s after its start (discovery, expansion)")
        window = args.interval * 2 + 30
        first = wait_until(lambda: ran(port) >= expected, "every target's first run", proc, window, give_up=True)
        if first is not None:
            print(f"  all {expected} checks ran within {first:.1f}s of serving metrics "
                  f"(interval {args.interval:g}s, first runs jittered over min(interval, 60s))")
        else:
            done = ran(port)
            print(f"  NOT every check ran: {done} of {expected} within {window:.0f}s "
                  f"({done / window:.1f} checks/s; the interval needs {expected / args.interval:.1f}/s)")
        # Every target checked within its interval: over the next interval, every check runs again.
        before = checked(port)
        began = time.monotonic()
        time.sleep(args.interval + 5)
        after = checked(port)
        runs = sum(after.values()) - sum(before.values())
        late = [key for key in before if after[key] <= before[key]]
        print(f"  checks that ran again within one interval (+5 s): {len(before) - len(late)} of {len(before)}; "
              f"{runs / (time.monotonic() - began):.1f} runs/s")
        for gzipped, asked in ((True, "gzip, as Prometheus asks"), (False, "uncompressed")):
            median, p95, size = scrape_ms(port, args.scrapes, gzipped=gzipped)
            print(f"  /metrics ({asked}): median {median:.1f} ms, p95 {p95:.1f} ms, {size / 1024:.0f} KiB   "
                  f"target < {TARGET_SCRAPE_MS:g} ms: {'met' if p95 < TARGET_SCRAPE_MS else 'MISSED'} (p95)")
        rss, peak = rss_mb(proc.pid)
        print(f"  resident memory {rss:.1f} MB (peak {peak:.1f} MB)   target < {TARGET_RSS_MB:g} MB: "
              f"{'met' if peak < TARGET_RSS_MB else 'MISSED'}")
        cap = args.server_connections
        print(f"  connections dupewatch held on the server at once: peak {sampler.peak} "
              f"(cap: {cap} for checks + discovery's own short-lived one per source; "
              f"{'held' if sampler.peak <= cap + 2 else 'EXCEEDED'})")
        with psycopg.connect(libpq(url, "postgres"), autocommit=True) as conn:
            conn.execute("CREATE DATABASE tenant_new TEMPLATE fleet_template STRATEGY FILE_COPY")
        # A substring, not the parser: parsing a 10 MB page takes seconds, which would be counted as discovery's.
        found = wait_until(lambda: NEW_TARGET_SERIES in (scrape(port) or ""), "the new database", proc, 120,
                           give_up=True, every=0.1)
        print(f"  a database created during the run was exported (its checks scheduled) {seconds(found)} later "
              f"(discovery every {DISCOVERY_EVERY:g}s)")
    finally:
        sampler.stopping.set()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def three_shards(url: str, workdir: Path, args: argparse.Namespace, expected: int) -> None:
    ports = [free_port() for _ in range(3)]
    procs = [start(write_config(workdir / f"shard{i}.toml", url, port, args), port, "--shard", f"{i}/3")
             for i, port in enumerate(ports)]
    try:
        def every_run() -> bool:
            return sum(sum(1 for n in checked(p).values() if n > 0) for p in ports) >= expected

        took = wait_until(every_run, "every target's first run across shards", None, args.interval * 2 + 30,
                          give_up=True)
        owners: Counter[tuple[str, str]] = Counter()
        per_shard = []
        for port in ports:
            mine = {key for key, runs in checked(port).items() if runs > 0}
            per_shard.append(len(mine))
            owners.update(mine)
        once = sum(1 for n in owners.values() if n == 1)
        print(f"three shards: {len(owners)} checks of targets ran ({per_shard} per shard) in "
              f"{seconds(took)}; "
              f"{once} by exactly one shard, {len(owners) - once} by more; expected {expected}")
        # A killed shard restarts and resumes its targets.
        killed = per_shard[1]
        procs[1].kill()
        procs[1].wait()
        procs[1] = start(workdir / "shard1.toml", ports[1], "--shard", "1/3")
        back = wait_until(lambda: ran(ports[1]) >= killed, "the restarted shard's targets", procs[1],
                          args.interval * 2 + 30, give_up=True)
        print(f"  shard 1 killed (SIGKILL) and restarted: {ran(ports[1])} of its {killed} checks ran again "
              f"within {seconds(back)}")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--databases", type=int, default=500)
    parser.add_argument("--schemas", type=int, default=200)
    parser.add_argument("--checks", type=int, default=5, choices=range(1, len(TABLES) + 1))
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--server-connections", type=int, default=4)
    parser.add_argument("--max-running", type=int, default=8)
    parser.add_argument("--scrapes", type=int, default=200)
    args = parser.parse_args()
    cluster = Cluster(max_connections="300")
    with tempfile.TemporaryDirectory(prefix="dw_bench_fleet_") as directory:
        try:
            cluster.start()
            url = cluster.url
            build(url, args.databases, args.schemas)
            expected = (args.databases + args.schemas) * args.checks
            print(f"scale: {args.databases} databases + {args.schemas} schemas, {args.checks} checks each = "
                  f"{expected} checks of targets; interval {args.interval:g}s; server_connections "
                  f"{args.server_connections}, max_running {args.max_running}; 2 shared cores")
            one_daemon(url, Path(directory), args, expected)
            three_shards(url, Path(directory), args, expected + args.checks)  # tenant_new is a target now
        finally:
            cluster.stop()


if __name__ == "__main__":
    main()
