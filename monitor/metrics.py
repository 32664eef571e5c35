"""Prometheus metrics: the collectors, their own registry, and the HTTP endpoint that serves them.

Shared by the daemon and the dashboard (which serves them when the config has a `[metrics]` section):

    exporter = MetricsExporter(config)
    exporter.serve()              # raises MetricsServeError (one line) when the port is taken
    exporter.observe(result)      # after every run, from any thread
    exporter.reload(new_config)   # after a config reload: series of removed checks disappear
    exporter.close()

Every series is labelled `check` and `database`, never by row values. Semantics, as operators read them:

- `dupewatch_duplicate_groups` / `dupewatch_duplicate_excess_rows` are the figures of the last *successful*
  run. When a run fails they keep their last value (there is no "zero duplicates" to report for a database
  that did not answer); `dupewatch_check_up` drops to 0 and `dupewatch_check_last_success_timestamp_seconds`
  stops advancing, which is what the down and stale alerts watch. A check that never succeeded has no
  figures at all, rather than a misleading 0.
- `dupewatch_check_duration_seconds` observes every run, failed ones included (a run killed by the
  statement timeout shows up in the top buckets).
- `dupewatch_check_errors_total` and `dupewatch_fix_deleted_rows_total` start at 0 for every check, so
  `rate()` and `increase()` work from the first scrape.
- `dupewatch_fix_deleted_rows_total` counts the rows deleted by every fix of the check, whichever process ran
  it (the CLI, a dashboard): the daemon reads the totals from the fix records in the database
  (`dupewatch_fix.deleted`, see `monitor.fixstats`) and a fix run by this process adds its rows at once.
- `dupewatch_check_interval_seconds` is the configured interval, so alerts can say "no success for N
  intervals" per check.

Scrapes are answered from a page rendered ahead of time, off the request path, by prometheus-client's own
app (same formats, content negotiation and gzip): rendering 200 checks' series takes tens of milliseconds of
pure Python, which would otherwise be paid by every scrape (and fight the check threads for the GIL). The
page is re-rendered after any change, at most once a second, so what a scrape sees is at most about a second
behind the checks (who run at intervals of seconds to minutes anyway).

The registry is private (not prometheus-client's global one). Besides dupewatch's own metrics it holds
only the standard `process_*` collector (memory, CPU, open files), added deliberately; the `_created`
series prometheus-client adds to counters and histograms are disabled, as they double the page size
without telling an operator anything here.
"""

from __future__ import annotations

import errno
import platform
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, ProcessCollector
from prometheus_client.exposition import choose_encoder, gzip_accepted, make_wsgi_app

from monitor import __version__
from monitor.config import Config, MetricsConfig

if TYPE_CHECKING:
    from monitor.detect import CheckResult
    from monitor.history import History
    from monitor.live.groups import Figures as LiveFigures

LABELS = ("check", "database")
# From a primary-key lookup on a small table to a full scan that hits a generous statement timeout.
# Ten buckets: every check carries the histogram, so each bucket costs a series per check.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)
# The page is rendered ahead of scrapes (see `PrerenderedApp`): at most once a second after a change, never
# more than a tenth of a core's time, and at least every 15 s (for the process_* metrics).
RENDER_MIN_SECONDS = 1.0
RENDER_MAX_SHARE = 0.1
HTTP_WORKERS = 4  # requests served at once
HTTP_QUEUED = 16  # accepted connections waiting for a worker; beyond that a new connection is closed at once
HTTP_IDLE_TIMEOUT_SECONDS = 5.0  # a connection that sends nothing (half-open, slowloris) is closed after this
RENDER_MAX_AGE_SECONDS = 15.0
RENDER_FORGET_SECONDS = 600.0  # a format nobody asked for in this long is no longer kept rendered

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client

_live_exporters: weakref.WeakSet[MetricsExporter] = weakref.WeakSet()


class MetricsServeError(Exception):
    """The metrics endpoint could not start (port taken, bad address, unreadable TLS files); one line."""


def record_fix(check: str, database: str, deleted: int) -> None:
    """Count rows a fix run by this process deleted (`dupewatch_fix_deleted_rows_total`).

    For the fix code: a no-op when this process exports no metrics (a one-shot `dupewatch fix`).
    """
    for exporter in list(_live_exporters):
        exporter.record_fix(check, database, deleted)


class DupewatchMetrics:
    """The collectors, registered in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = True) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.groups = Gauge("dupewatch_duplicate_groups",
                            "Duplicate groups (keys with more than one row) found by the last successful run.",
                            LABELS, registry=r)
        self.excess_rows = Gauge("dupewatch_duplicate_excess_rows",
                                 "Rows beyond the first in every duplicate group, by the last successful run.",
                                 LABELS, registry=r)
        self.duration = Histogram("dupewatch_check_duration_seconds",
                                  "Time taken by each run of a check, failed runs included.",
                                  LABELS, buckets=DURATION_BUCKETS, registry=r)
        self.last_success = Gauge("dupewatch_check_last_success_timestamp_seconds",
                                  "UNIX time at which the check last ran successfully.", LABELS, registry=r)
        self.up = Gauge("dupewatch_check_up", "1 when the last run of the check succeeded, 0 when it failed.",
                        LABELS, registry=r)
        self.errors = Counter("dupewatch_check_errors",
                              "Runs of the check that failed (database down, timeout, bad definition).",
                              LABELS, registry=r)
        self.interval = Gauge("dupewatch_check_interval_seconds", "The check's configured polling interval.",
                              LABELS, registry=r)
        self.fix_deleted = Counter("dupewatch_fix_deleted_rows",
                                   "Duplicate rows deleted by fixes of the check (from the fix records in the "
                                   "database, whichever process ran them).", LABELS, registry=r)
        # Incremental checks (`incremental = "column"`, monitor/incremental.py) only.
        self.new_groups = Counter("dupewatch_new_duplicate_groups",
                                  "Duplicate groups seen for the first time by a run of an incremental check "
                                  "(not counted on its first run, which has nothing to compare with).",
                                  LABELS, registry=r)
        self.rows_scanned = Gauge("dupewatch_check_rows_scanned",
                                  "Rows the last run of an incremental check read: past the watermark, or the "
                                  "whole table for a full pass.", LABELS, registry=r)
        self.last_full_pass = Gauge("dupewatch_check_last_full_pass_timestamp_seconds",
                                    "UNIX time of an incremental check's last full pass of its table.", LABELS,
                                    registry=r)
        self.build = Info("dupewatch_build", "The dupewatch version and the Python running it.", registry=r)
        self.build.info({"version": __version__, "python": platform.python_version()})
        if process:
            ProcessCollector(registry=r)

    @property
    def labelled(self) -> tuple[Gauge | Counter | Histogram, ...]:
        return (self.groups, self.excess_rows, self.duration, self.last_success, self.up, self.errors,
                self.interval, self.fix_deleted, self.new_groups, self.rows_scanned, self.last_full_pass)

    def add(self, check: str, database: str, interval: float, *, incremental: bool = False) -> None:
        """Create a check's series that must exist before its first run (counters at 0, its interval)."""
        self.interval.labels(check, database).set(interval)
        self.errors.labels(check, database)
        self.fix_deleted.labels(check, database)
        if incremental:
            self.new_groups.labels(check, database)

    def remove(self, check: str, database: str) -> None:
        for metric in self.labelled:
            metric.remove(check, database)

    def observe(self, result: CheckResult, *, figures: bool = True) -> None:
        """`figures=False`: the run's groups and excess rows are not taken (a live stream's are newer)."""
        labels = (result.name, result.database)
        self.duration.labels(*labels).observe(result.duration_ms / 1000)
        if result.status == "error":
            self.up.labels(*labels).set(0)
            self.errors.labels(*labels).inc()
            return
        if figures:
            self.groups.labels(*labels).set(result.groups or 0)
            self.excess_rows.labels(*labels).set(result.excess_rows or 0)
        self.last_success.labels(*labels).set(result.finished_at.timestamp())
        self.up.labels(*labels).set(1)
        if result.rows_scanned is not None:
            self.rows_scanned.labels(*labels).set(result.rows_scanned)
            if result.new_groups and not result.first_run:
                self.new_groups.labels(*labels).inc(result.new_groups)
        if result.last_full_pass is not None:
            self.last_full_pass.labels(*labels).set(result.last_full_pass.timestamp())

    def exposition(self) -> bytes:
        """The page a scrape gets, in the Prometheus text format."""
        return prometheus_client.generate_latest(self.registry)


class LiveMetrics:
    """Live mode's series (monitor/live/), labelled by `database` only: the stream belongs to a database.

    - `dupewatch_live_lag_seconds`: from the commit of the last change processed to the moment its groups were
      re-counted (commit to count, as Debezium's MilliSecondsBehindSource); held until the next change, so a
      quiet database does not look like a lagging stream.
    - `dupewatch_live_events_total`: row changes read from the stream (every table, watched or not).
    - `dupewatch_live_gaps_total`: times the stream broke (reconnect, slot lost, a re-count that failed after
      its changes were read); each is logged and followed by a full count of the database's checks.

    A live database's checks take their figures and `dupewatch_new_duplicate_groups` from the stream as well
    as from their runs; the counter counts each new group once (from the stream, not again from a run).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Gauge("dupewatch_live_lag_seconds",
                         "Seconds from the commit of the last change read from the database's stream to its count.",
                         ["database"], registry=registry)
        self.events = Counter("dupewatch_live_events", "Row changes read from the database's change stream.",
                              ["database"], registry=registry)
        self.gaps = Counter("dupewatch_live_gaps", "Breaks in the database's change stream (each followed by a "
                            "full count of its checks).", ["database"], registry=registry)

    def add(self, database: str) -> None:
        self.events.labels(database)
        self.gaps.labels(database)


class MetricsExporter:
    """The metrics of one config's checks, kept in step with reloads, optionally served over HTTP."""

    def __init__(self, config: Config, *, registry: CollectorRegistry | None = None,
                 process_metrics: bool = True) -> None:
        self.metrics = DupewatchMetrics(registry, process=process_metrics)
        self.settings = config.metrics or MetricsConfig()
        self._lock = threading.Lock()
        self._checks: set[tuple[str, str]] = set()
        self._fix_counted: dict[tuple[str, str], int] = {}  # what fix_deleted holds for each check
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._app: PrerenderedApp | None = None
        self.live = LiveMetrics(self.registry)
        self._live_databases: set[str] = set()  # followed at least once: the stream counts their new groups
        self._live_following: set[str] = set()  # followed now: the stream's figures win over a run's
        self.reload(config)
        _live_exporters.add(self)

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    def reload(self, config: Config) -> None:
        """Follow a new config: series of removed (or moved) checks disappear, new checks get theirs.

        The listen address is not changed by a reload (the caller restarts to move the endpoint).
        """
        wanted = {(c.name, c.database): c.interval for c in config.checks}
        incremental = {(c.name, c.database) for c in config.checks if c.incremental is not None}
        with self._lock:
            for gone in self._checks - wanted.keys():
                self.metrics.remove(*gone)
                self._fix_counted.pop(gone, None)
            for (check, database), interval in wanted.items():
                self.metrics.add(check, database, interval, incremental=(check, database) in incremental)
            self._checks = set(wanted)
        self._changed()

    def restore(self, history: History) -> None:
        """Start from the last successful run in the state store, so that a restart does not blank the
        figures or make `dupewatch_check_last_success_timestamp_seconds` forget when the check last worked
        (the staleness alert keys on it). `up` and the counters belong to this process: set by its runs."""
        with self._lock:
            for check, database in self._checks:
                run = history.last_success(check)
                if run is None or run.database != database:  # a check moved to another database starts afresh
                    continue
                labels = (check, database)
                self.metrics.groups.labels(*labels).set(run.groups or 0)
                self.metrics.excess_rows.labels(*labels).set(run.excess_rows or 0)
                self.metrics.last_success.labels(*labels).set(run.finished_at)
        self._changed()

    def observe(self, result: CheckResult) -> None:
        """Record one run. A late result of a check a reload removed is dropped, so its series stay gone."""
        with self._lock:
            if (result.name, result.database) in self._checks:
                if result.database in self._live_databases:  # its new groups are counted from the stream
                    result = replace(result, new_groups=0)
                # While the stream is followed its figures are newer than the run's snapshot of the table.
                self.metrics.observe(result, figures=result.database not in self._live_following)
        self._changed()

    def record_fix(self, check: str, database: str, deleted: int) -> None:
        if deleted > 0:
            with self._lock:
                self.metrics.fix_deleted.labels(check, database).inc(deleted)
                key = (check, database)
                self._fix_counted[key] = self._fix_counted.get(key, 0) + deleted
            self._changed()

    def fix_totals(self, database: str, totals: dict[str, int]) -> None:
        """The rows deleted by all fixes of each check of `database`, as its fix records say: the counter
        catches up with them (it never goes down: an undone fix still deleted its rows once)."""
        changed = False
        with self._lock:
            for check, total in totals.items():
                key = (check, database)
                if key not in self._checks:
                    continue
                behind = total - self._fix_counted.get(key, 0)
                if behind > 0:
                    self.metrics.fix_deleted.labels(check, database).inc(behind)
                    self._fix_counted[key] = total
                    changed = True
        if changed:
            self._changed()

    # -- live mode (monitor/live/; the `LiveSink` of its readers) --------------------------------------

    def live_database(self, database: str) -> None:
        """`database` has `live = true`: its series exist from now on."""
        with self._lock:
            self.live.add(database)
        self._changed()

    def live_following(self, database: str, following: bool) -> None:
        """The stream of `database` is followed (every check counted in full from it), or no longer is (a gap,
        a stop): then the runs' figures are taken again until it is followed anew."""
        with self._lock:
            if following:
                self._live_databases.add(database)
                self._live_following.add(database)
            else:
                self._live_following.discard(database)

    def live_figures(self, check: str, database: str, figures: LiveFigures) -> None:
        with self._lock:
            if (check, database) not in self._checks:
                return
            labels = (check, database)
            self.metrics.groups.labels(*labels).set(figures.groups)
            self.metrics.excess_rows.labels(*labels).set(figures.excess_rows)
            new_groups = self.metrics.new_groups.labels(*labels)
            if figures.new_groups:
                new_groups.inc(figures.new_groups)
        self._changed(urgent=True)  # a duplicate within a second of its commit, on the page too

    def live_events(self, database: str, events: int, lag_seconds: float | None) -> None:
        with self._lock:
            if lag_seconds is not None:
                self.live.lag.labels(database).set(lag_seconds)
            if events:
                self.live.events.labels(database).inc(events)
        if events:
            self._changed()

    def live_gap(self, database: str, reason: str) -> None:
        with self._lock:
            self.live.gaps.labels(database).inc()
            self._live_following.discard(database)
        self._changed()

    def _changed(self, *, urgent: bool = False) -> None:
        if self._app is not None:
            self._app.changed(urgent=urgent)

    # -- HTTP ------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self.settings.tls_cert else "http"
        host = self.settings.host
        host = f"[{host}]" if ":" in host else host
        port = self._server.server_port if self._server else self.settings.port
        return f"{scheme}://{host}:{port}/metrics"

    def serve(self) -> None:
        """Start serving /metrics on `[metrics] listen` (TLS when `tls_cert` and `tls_key` are set)."""
        settings = self.settings
        where = f"metrics listen {settings.listen}"
        if (settings.tls_cert is None) != (settings.tls_key is None):
            raise MetricsServeError(f"{where}: set both tls_cert and tls_key, or neither")
        for tls_file in (settings.tls_cert, settings.tls_key):
            if tls_file is not None and not Path(tls_file).is_file():
                raise MetricsServeError(f"{where}: TLS file not found: {tls_file}")
        app = PrerenderedApp(self.registry)
        try:
            self._server, self._thread = start_server(
                app, settings.host, settings.port, settings.tls_cert, settings.tls_key)
        except OSError as exc:  # ssl.SSLError included
            if exc.errno == errno.EADDRINUSE:
                raise MetricsServeError(f"{where}: address already in use (is another dupewatch running?)") \
                    from None
            raise MetricsServeError(f"{where}: {exc.strerror or exc}") from None
        self._app = app
        app.start()

    def close(self) -> None:
        """Stop serving (if serving); fixes run later are no longer counted here."""
        _live_exporters.discard(self)
        if self._app is not None:
            self._app.stop()
            self._app = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


# -- serving ---------------------------------------------------------------------------------------------


class _Page(NamedTuple):
    status: str
    headers: list[tuple[str, str]]
    body: bytes


class PrerenderedApp:
    """The /metrics WSGI app: prometheus-client's own app, its answers rendered ahead of the scrapes.

    A page is kept per format asked for (text or OpenMetrics, gzipped or not) and re-rendered by a
    background thread after `changed()`. Requests with parameters (`?name[]=...`) and other methods go
    straight to prometheus-client's app.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._inner = make_wsgi_app(registry)
        self._lock = threading.Lock()
        self._pages: dict[tuple[str, bool], _Page] = {}
        self._asked: dict[tuple[str, bool], tuple[str, float]] = {}  # key -> (an Accept header, last asked)
        self._dirty = threading.Event()
        self._urgent = threading.Event()  # a live figure changed: render without waiting out RENDER_MIN_SECONDS
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._render_loop, name="metrics-render", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._dirty.set()
        self._urgent.set()
        self._thread.join(timeout=5)

    def changed(self, *, urgent: bool = False) -> None:
        if urgent:
            self._urgent.set()
        self._dirty.set()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "GET" or environ.get("QUERY_STRING") \
                or environ.get("PATH_INFO") == "/favicon.ico":
            passed: Iterable[bytes] = self._inner(environ, start_response)
            return passed
        accept = environ.get("HTTP_ACCEPT") or ""
        key = (choose_encoder(accept)[1], gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING") or ""))
        with self._lock:
            self._asked[key] = (accept, time.monotonic())
            page = self._pages.get(key)
        if page is None:  # the first scrape in this format renders it
            page = self._render(key, accept)
        start_response(page.status, list(page.headers))
        return [page.body]

    def _render(self, key: tuple[str, bool], accept: str) -> _Page:
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], _exc_info: Any = None) -> None:
            captured.update(status=status, headers=headers)

        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/metrics", "QUERY_STRING": "", "HTTP_ACCEPT": accept,
                   "HTTP_ACCEPT_ENCODING": "gzip" if key[1] else ""}
        body = b"".join(self._inner(environ, start_response))
        page = _Page(captured["status"], captured["headers"], body)
        with self._lock:
            self._pages[key] = page
        return page

    def _render_loop(self) -> None:
        while not self._stopping.is_set():
            self._dirty.wait(RENDER_MAX_AGE_SECONDS)
            if self._stopping.is_set():
                return
            self._dirty.clear()
            self._urgent.clear()
            started = time.monotonic()
            for key, accept in self._wanted(started):
                self._render(key, accept)
            spent = time.monotonic() - started
            self._stopping.wait(spent / RENDER_MAX_SHARE)  # never more than a tenth of a core, urgent or not
            self._urgent.wait(max(RENDER_MIN_SECONDS - spent / RENDER_MAX_SHARE, 0.0))

    def _wanted(self, now: float) -> list[tuple[tuple[str, bool], str]]:
        with self._lock:
            for key, (_accept, asked) in list(self._asked.items()):
                if now - asked > RENDER_FORGET_SECONDS:
                    del self._asked[key]
                    self._pages.pop(key, None)
            return [(key, accept) for key, (accept, _asked) in self._asked.items()]


class _QuietHandler(WSGIRequestHandler):
    timeout = HTTP_IDLE_TIMEOUT_SECONDS  # socket timeout of every read and write, TLS handshake included

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line each."""


class BoundedWSGIServer(WSGIServer):
    """A WSGI server with a fixed pool of `HTTP_WORKERS` threads and at most `HTTP_QUEUED` connections waiting:
    thousands of half-open connections cost a few threads and sockets, not a thread each (the standard library's
    threading server starts one per connection, with no idle timeout)."""

    request_queue_size = 128  # the listen backlog: a burst of connects is accepted (or refused) without SYN retries

    def server_activate(self) -> None:
        super().server_activate()
        self._pool = ThreadPoolExecutor(HTTP_WORKERS, thread_name_prefix="metrics-http")
        self._slots = threading.BoundedSemaphore(HTTP_WORKERS + HTTP_QUEUED)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # full: refused rather than queued without bound
            return
        self._pool.submit(self._serve, request, client_address)

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that timed out or went away is not worth a traceback on stderr."""

    def server_close(self) -> None:
        super().server_close()
        pool = getattr(self, "_pool", None)
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def start_server(app: Callable[..., Iterable[bytes]], host: str, port: int, tls_cert: Path | None,
                 tls_key: Path | None) -> tuple[WSGIServer, threading.Thread]:
    """Serve `app` on a daemon thread (TLS when a certificate is given), as prometheus-client's own server."""
    family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    server_class = type("MetricsServer", (BoundedWSGIServer,), {"address_family": family})
    server: WSGIServer = make_server(str(sockaddr[0]), port, app, server_class, handler_class=_QuietHandler)
    if tls_cert is not None and tls_key is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(str(tls_cert), str(tls_key))
        except BaseException:
            server.server_close()
            raise
        # The handshake happens on a worker's first read, under its idle timeout, not in the accepting thread.
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return server, thread
