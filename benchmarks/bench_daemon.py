"""The daemon at scale: 200 checks over 10 PostgreSQL tables, one scrape's latency and the process's memory.

Targets: a scrape served in under 20 ms (median, issue 6), resident memory under 60 MB (issue 12). Measured in the
same run against:
- bare SQL: the same 200 duplicate-count queries run back to back on one psycopg connection (the floor
  for what one check costs; the ratio is dupewatch's mean run time over it);
- query-exporter, when its command is available (`--query-exporter PATH`, or on PATH), running the same
  200 queries as gauges; its published figures are 84 MB and 88 ms per scrape.

    python benchmarks/bench_daemon.py [--pg-url URL] [--checks 200] [--tables 10] [--scrapes 300]
                                      [--query-exporter /tmp/qe-venv/bin/query-exporter]

Creates a schema `dw_bench_<random>` and drops it at the end. Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
from prometheus_client.parser import text_string_to_metric_families

DEFAULT_PG = os.environ.get("DUPEWATCH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROWS_PER_TABLE = 20_000
KEYS = [["a"], ["b"], ["c"], ["a", "b"], ["a", "c"], ["b", "c"], ["a", "b", "c"], ["c", "d"], ["a", "d"],
        ["b", "d"]]
INTERVAL_SECONDS = 10
TARGET_SCRAPE_MS, TARGET_RSS_MB = 20.0, 60.0  # memory: issue 12 (was 120 MB in issue 6)
QE_PUBLISHED_RSS_MB, QE_PUBLISHED_SCRAPE_MS = 84.0, 88.0


def libpq_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def create_tables(url: str, schema: str, tables: int) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        for t in range(tables):
            conn.execute(f'CREATE TABLE "{schema}".t{t} (id serial PRIMARY KEY, a int, b int, c text, d int, '
                         "created timestamptz DEFAULT now())")
            conn.execute(f'INSERT INTO "{schema}".t{t} (a, b, c, d) SELECT g % 5000, g % 3000, '
                         f"'v' || (g % 4000), g % 7 FROM generate_series(1, {ROWS_PER_TABLE}) g")
            conn.execute(f'ANALYZE "{schema}".t{t}')


def drop_schema(url: str, schema: str) -> None:
    with psycopg.connect(libpq_url(url), autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def checks(schema: str, count: int, tables: int) -> list[tuple[str, str, list[str], str | None]]:
    """(name, table, key, where) for `count` checks spread evenly over the tables."""
    out = []
    for i in range(count):
        table, key = f"{schema}.t{i % tables}", KEYS[(i // tables) % len(KEYS)]
        where = None if i < len(KEYS) * tables else f"d <> {i % 7}"  # the second hundred filter some rows
        out.append((f"check_{i:03d}", table, key, where))
    return out


def count_sql(table: str, key: list[str], where: str | None) -> str:
    columns = ", ".join(key)
    return (f"SELECT count(*) AS groups, coalesce(sum(n - 1), 0) AS excess FROM (SELECT count(*) AS n FROM {table}"
            f"{' WHERE ' + where if where else ''} GROUP BY {columns} HAVING count(*) > 1) AS g")


def bare_sql_ms(url: str, specs: list[tuple[str, str, list[str], str | None]]) -> float:
    """Mean milliseconds per query, running each check's counting query once on one connection."""
    with psycopg.connect(libpq_url(url)) as conn:
        for _, table, key, where in specs[:10]:  # warm the cache like the daemon's first runs did
            conn.execute(count_sql(table, key, where)).fetchone()
        started = time.perf_counter()
        for _, table, key, where in specs:
            conn.execute(count_sql(table, key, where)).fetchone()
        return (time.perf_counter() - started) * 1000 / len(specs)


def write_dupewatch_config(path: Path, url: str, specs: list[tuple[str, str, list[str], str | None]],
                           port: int) -> None:
    lines = ["[databases.bench]", f'url = "{url}"', "", "[metrics]", f'listen = "127.0.0.1:{port}"', "",
             "[state]", f'path = "{path.parent / "history.sqlite"}"', ""]
    for name, table, key, where in specs:
        lines += ["[[checks]]", f'name = "{name}"', 'database = "bench"', f'table = "{table}"',
                  "key = [" + ", ".join(f'"{k}"' for k in key) + "]", f"interval = {INTERVAL_SECONDS}"]
        if where:
            lines.append(f'where = "{where}"')
        lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def write_query_exporter_config(path: Path, url: str, specs: list[tuple[str, str, list[str], str | None]]) -> None:
    dsn = url if "+psycopg" in url else url.replace("postgresql://", "postgresql+psycopg://")
    lines = ["databases:", "  bench:", f"    dsn: {dsn}", "metrics:",
             "  qe_duplicate_groups:", "    type: gauge", "    description: duplicate groups", "    labels: [check]",
             "  qe_duplicate_excess_rows:", "    type: gauge", "    description: excess rows", "    labels: [check]",
             "queries:"]
    for name, table, key, where in specs:
        sql = count_sql(table, key, where).replace("AS groups", "AS qe_duplicate_groups").replace(
            "AS excess", f"AS qe_duplicate_excess_rows, '{name}' AS check")
        lines += [f"  {name}:", f"    interval: {INTERVAL_SECONDS}", "    databases: [bench]",
                  "    metrics: [qe_duplicate_groups, qe_duplicate_excess_rows]", f'    sql: "{sql}"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# What Prometheus sends: OpenMetrics preferred, gzip accepted. Text (0.0.4) is what `scrape` parses.
PROMETHEUS_HEADERS = {
    "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
              "text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
    "Accept-Encoding": "gzip",
}


def scrape(url: str, headers: dict[str, str] | None = None) -> str:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as response:
        body = response.read()
    return body.decode("utf-8") if not headers else str(len(body))


def wait_until(condition: Callable[[], bool], what: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"{what}: process exited with {proc.returncode}")
        try:
            if condition():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def checks_reporting(url: str, sample: str) -> int:
    return sum(1 for family in text_string_to_metric_families(scrape(url))
               for s in family.samples if s.name == sample and s.value >= 0)


def measure(url: str, scrapes: int, pid: int) -> tuple[float, float, int, float]:
    """Median and 95th percentile ms per scrape as Prometheus asks (sequential, 50 ms apart), the bytes
    on the wire, and the share of one core the process used meanwhile (checks running included)."""
    for _ in range(10):
        scrape(url, PROMETHEUS_HEADERS)
    times = []
    size = 0
    cpu_before, wall_before = cpu_seconds(pid), time.monotonic()
    for _ in range(scrapes):
        started = time.perf_counter()
        size = int(scrape(url, PROMETHEUS_HEADERS))
        times.append((time.perf_counter() - started) * 1000)
        time.sleep(0.05)  # pacing between scrapes, so the process's own work interleaves as in production
    cpu_share = (cpu_seconds(pid) - cpu_before) / (time.monotonic() - wall_before)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], size, cpu_share


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> tuple[float, float]:
    """Current and peak resident memory of a process, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    values = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines()
              if line.startswith(("VmRSS", "VmHWM"))}
    return values["VmRSS"] / 1024, values["VmHWM"] / 1024


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_dupewatch(workdir: Path, url: str, specs: list, scrapes: int) -> dict[str, float]:
    port = free_port()
    config = workdir / "dupewatch.toml"
    write_dupewatch_config(config, url, specs, port)
    log = (workdir / "dupewatch.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "monitor.cli", "daemon", "--config", str(config)],
                            stdout=subprocess.DEVNULL, stderr=log)
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_until(lambda: checks_reporting(metrics_url, "dupewatch_check_up") == len(specs),
                   "every dupewatch check to report", proc, 180)
        page = scrape(metrics_url)
        parsed = [s for family in text_string_to_metric_families(page) for s in family.samples]
        sums = [s.value for s in parsed if s.name == "dupewatch_check_duration_seconds_sum"]
        counts = [s.value for s in parsed if s.name == "dupewatch_check_duration_seconds_count"]
        mean_run_ms = sum(sums) / sum(counts) * 1000
        median, p95, size, cpu = measure(metrics_url, scrapes, proc.pid)
        rss, peak = rss_mb(proc.pid)
        samples = sum(1 for line in page.splitlines() if line and not line.startswith("#"))
        return {"median": median, "p95": p95, "bytes": size, "samples": samples, "rss": rss, "peak": peak,
                "run_ms": mean_run_ms, "cpu": cpu}
    finally:
        stop(proc)
        log.close()


def run_query_exporter(command: str, workdir: Path, url: str, specs: list, scrapes: int) -> dict[str, float]:
    port = free_port()
    config = workdir / "query-exporter.yaml"
    write_query_exporter_config(config, url, specs)
    log = (workdir / "query-exporter.log").open("wb")
    proc = subprocess.Popen([command, "--config", str(config), "-H", "127.0.0.1", "-p", str(port),
                             "-L", "warning"], stdout=subprocess.DEVNULL, stderr=log)
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    try:
        wait_until(lambda: checks_reporting(metrics_url, "qe_duplicate_groups") == len(specs),
                   "every query-exporter query to report", proc, 180)
        median, p95, size, cpu = measure(metrics_url, scrapes, proc.pid)
        rss, peak = rss_mb(proc.pid)
        page = scrape(metrics_url)
        samples = sum(1 for line in page.splitlines() if line and not line.startswith("#"))
        return {"median": median, "p95": p95, "bytes": size, "samples": samples, "rss": rss, "peak": peak,
                "cpu": cpu}
    finally:
        stop(proc)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--checks", type=int, default=200)
    parser.add_argument("--tables", type=int, default=10)
    parser.add_argument("--scrapes", type=int, default=300)
    parser.add_argument("--query-exporter", default=shutil.which("query-exporter"),
                        help="the query-exporter command, to compare against (default: from PATH)")
    args = parser.parse_args()

    schema = f"dw_bench_{uuid.uuid4().hex[:8]}"
    specs = checks(schema, args.checks, args.tables)
    create_tables(args.pg_url, schema, args.tables)
    try:
        with tempfile.TemporaryDirectory(prefix="dw-bench-") as tmp:
            workdir = Path(tmp)
            bare_ms = bare_sql_ms(args.pg_url, specs)
            dw = run_dupewatch(workdir, args.pg_url, specs, args.scrapes)
            qe = None
            if args.query_exporter:
                try:
                    qe = run_query_exporter(args.query_exporter, workdir, args.pg_url, specs, args.scrapes)
                except SystemExit as exc:
                    print(f"query-exporter did not run: {exc}\n{(workdir / 'query-exporter.log').read_text()[-800:]}")
            report(args, dw, qe, bare_ms)
    finally:
        drop_schema(args.pg_url, schema)


def report(args: argparse.Namespace, dw: dict[str, float], qe: dict[str, float] | None, bare_ms: float) -> None:
    print(f"dupewatch daemon: {args.checks} checks over {args.tables} tables of {ROWS_PER_TABLE:,} rows, "
          f"{args.scrapes} sequential scrapes")
    print(f"  scrape          median {dw['median']:6.2f} ms   p95 {dw['p95']:6.2f} ms   "
          f"({dw['bytes'] / 1024:.0f} KiB gzipped, {dw['samples']:.0f} samples)   target < {TARGET_SCRAPE_MS:g} ms: "
          f"{'met' if dw['median'] < TARGET_SCRAPE_MS else 'MISSED'}")
    print(f"  resident memory {dw['rss']:6.1f} MB (peak {dw['peak']:.1f} MB)   target < {TARGET_RSS_MB:g} MB: "
          f"{'met' if dw['peak'] < TARGET_RSS_MB else 'MISSED'}")
    print(f"  CPU while scraped {dw['cpu'] * 100:5.1f}% of a core (checks every {INTERVAL_SECONDS} s included)")
    print(f"  one check run   mean {dw['run_ms']:6.2f} ms vs bare SQL {bare_ms:.2f} ms per query: "
          f"{dw['run_ms'] / bare_ms:.2f}x")
    if qe is not None:
        print("query-exporter, same 200 queries, same run:")
        print(f"  scrape          median {qe['median']:6.2f} ms   p95 {qe['p95']:6.2f} ms   "
              f"({qe['bytes'] / 1024:.0f} KiB on the wire, {qe['samples']:.0f} samples)   "
              f"dupewatch/query-exporter: {dw['median'] / qe['median']:.2f}x")
        print(f"  resident memory {qe['rss']:6.1f} MB (peak {qe['peak']:.1f} MB)   "
              f"dupewatch/query-exporter: {dw['rss'] / qe['rss']:.2f}x")
        print(f"  CPU while scraped {qe['cpu'] * 100:5.1f}% of a core")
    else:
        print(f"query-exporter not available: compared with its published figures only "
              f"({QE_PUBLISHED_RSS_MB:g} MB, {QE_PUBLISHED_SCRAPE_MS:g} ms per scrape): scrape "
              f"{dw['median'] / QE_PUBLISHED_SCRAPE_MS:.2f}x, memory {dw['rss'] / QE_PUBLISHED_RSS_MB:.2f}x")


if __name__ == "__main__":
    main()
