"""Prometheus metrics: the collectors, their own registry, and the HTTP endpoint that serves them.

Shared by the daemon and the dashboard (which serves them when the config has a `[metrics]` section):

    exporter = MetricsExporter(config)
    exporter.serve()              # raises MetricsServeError (one line) when the port is taken
    exporter.observe(result)      # after every run, from any thread
    exporter.reload(new_config)   # after a config reload: series of removed checks disappear
    exporter.close()

Every per-check series is labelled `check`, `database` and `target` (the database, or `database/schema` for a
fleet target; a `[databases]` entry is its own target), plus the config's static labels (`labels = {...}` of
sources and databases: every name on every series, empty where a target has none), never by row values. A
fleet check is exported under its template's name. Per target, `dupewatch_target_up`, `_last_success_...`
and `_duration_seconds` take its checks together; per source, `dupewatch_discovery_*` say how discovery goes.
Semantics, as operators read them:

- A check finds duplicates (a table check, or a custom query with `kind = "duplicates"`) or violations (a
  custom query: each row it returns breaks an invariant). The two are exported apart, so that a violation is
  never counted, graphed or alerted on as a duplicate: `dupewatch_duplicate_groups` /
  `dupewatch_duplicate_excess_rows` for the first, `dupewatch_violation_rows` for the second.
- These figures are those of the last *successful* run. When a run fails they keep their last value (there is
  no "zero duplicates" to report for a database that did not answer); `dupewatch_check_up` drops to 0 and
  `dupewatch_check_last_success_timestamp_seconds` stops advancing, which is what the down and stale alerts
  watch. A check that never succeeded has no figures at all, rather than a misleading 0.
- `dupewatch_duplicate_rows_appeared_total` / `dupewatch_violation_rows_appeared_total` count the excess rows
  (violating rows) that appeared between two successful runs: what the later run found beyond what the earlier
  one left, after the rows fixes deleted in between. A fix never makes it go down, so growth after a fix is
  seen at once (the growing alerts watch it); the first run of a process that has no earlier figures (none in
  the state store either) adds nothing, having nothing to compare with.
- `dupewatch_check_duration_seconds` observes every run, failed ones included (a run killed by the
  statement timeout shows up in the top buckets).
- The counters start at 0 for every check, so `rate()` and `increase()` work from the first scrape.
- `dupewatch_fix_deleted_rows_total` counts the rows deleted by every fix of the check, whichever process ran
  it (the CLI, a dashboard): the daemon reads the totals from the fix records in the database
  (`dupewatch_fix.deleted`, see `monitor.fixstats`) and a fix run by this process adds its rows at once. A
  counter never goes down: a fix later undone still deleted its rows once. `dupewatch_fix_restored_rows_total`
  (same labels, read the same way from the undone fixes' records, an undo by this process added at once) counts
  the rows undos put back, so `deleted - restored` is what the fixes removed for good. Restored rows are not
  counted as rows that appeared when the undo is known before the next run (an undo by this process, or the
  records read first); an undo read only after the run that saw its rows come back has been counted by then.
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

import contextlib
import errno
import gzip
import io
import platform
import queue
import selectors
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Info, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder, gzip_accepted, make_wsgi_app
from prometheus_client.utils import floatToGoString

from monitor import __version__
from monitor.config import CheckConfig, Config, MetricsConfig
from monitor.fleet.targets import series_labels, static_label_names
from monitor.thresholds import OUTCOMES, Outcome, judge

if TYPE_CHECKING:
    from monitor.detect import CheckResult
    from monitor.history import History
    from monitor.live.groups import Figures as LiveFigures

LABELS = ("check", "database", "target")  # then the config's static labels (`monitor.fleet.static_label_names`)
TARGET_LABELS = ("database", "target")  # per-target series: then the static labels
# From a primary-key lookup on a small table to a full scan that hits a generous statement timeout.
# Ten buckets: every check carries the histogram, so each bucket costs a series per check.
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0)
# The page is rendered ahead of scrapes (see `PrerenderedApp`): at most once a second after a change, never
# more than a tenth of a core's time, and at least every 15 s (for the process_* metrics).
RENDER_MIN_SECONDS = 1.0
RENDER_MAX_SHARE = 0.1
HTTP_WORKERS = 8  # requests served at once
HTTP_QUEUED = 16  # requests waiting for a worker; beyond that a new request's connection is closed at once
HTTP_WAITING = 256  # connections waiting for their first bytes (no thread each); beyond that the oldest is closed
HTTP_IDLE_TIMEOUT_SECONDS = 5.0  # a connection that sends nothing (half-open, slowloris) is closed after this
RENDER_MAX_AGE_SECONDS = 15.0
RENDER_CHUNK_SERIES = 250  # series of one family rendered at a time (a fleet has thousands per family)
RENDER_FORGET_SECONDS = 600.0  # a format nobody asked for in this long is no longer kept rendered

prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus-client

_live_exporters: weakref.WeakSet[MetricsExporter] = weakref.WeakSet()


class MetricsServeError(Exception):
    """The metrics endpoint could not start (port taken, bad address, unreadable TLS files); one line.
    `in_use`: the address is taken (by a daemon with the same config, most likely)."""

    def __init__(self, message: str, *, in_use: bool = False) -> None:
        super().__init__(message)
        self.in_use = in_use


def record_undo(check: str, database: str, restored: int) -> None:
    """Count rows an undo run by this process restored (`dupewatch_fix_restored_rows_total`); a no-op when this
    process exports no metrics."""
    for exporter in list(_live_exporters):
        exporter.record_undo(check, database, restored)


def record_fix(check: str, database: str, deleted: int) -> None:
    """Count rows a fix run by this process deleted (`dupewatch_fix_deleted_rows_total`).

    For the fix code: a no-op when this process exports no metrics (a one-shot `dupewatch fix`).
    """
    for exporter in list(_live_exporters):
        exporter.record_fix(check, database, deleted)


class Family:
    """One labelled metric of `SeriesStore`: the last value of each series (a histogram's cumulative bucket
    counts and sum), set, added to and removed as prometheus-client's labelled metrics are."""

    def __init__(self, store: SeriesStore, kind: str, name: str, documentation: str, labels: Sequence[str],
                 buckets: Sequence[float] = ()) -> None:
        self.store = store
        self.kind = kind
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labels)
        self.buckets = (*buckets, float("inf")) if buckets else ()
        # As prometheus-client writes `le` (0.01, 1.0, +Inf).
        self._les = [floatToGoString(le) for le in self.buckets]  # type: ignore[no-untyped-call]  # untyped
        self.values: dict[tuple[str, ...], Any] = {}  # a float, or [count per le..., sum] for a histogram
        self._lock = threading.Lock()

    def labels(self, *values: str) -> Series:
        return Series(self, self.store.key(values))

    def remove(self, *values: str) -> None:
        with self._lock:
            self.values.pop(values, None)

    def chunks(self) -> Iterator[Metric]:
        """The family as metric families of at most `RENDER_CHUNK_SERIES` series each, in order (a page rendered
        from them holds one chunk's samples at a time; `_encoded` writes the family's header once)."""
        with self._lock:
            keys = list(self.values)
        for start in range(0, max(len(keys), 1), RENDER_CHUNK_SERIES):
            yield self.family(keys[start:start + RENDER_CHUNK_SERIES])

    def family(self, keys: Sequence[tuple[str, ...]]) -> Metric:
        with self._lock:
            items: list[tuple[tuple[str, ...], Any]] = [
                (key, list(value) if isinstance(value, list) else value) for key in keys
                if (value := self.values.get(key)) is not None]
        if self.kind == "histogram":
            histogram = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
            for key, counts in items:
                histogram.add_metric(list(key), list(zip(self._les, counts, strict=False)), counts[-1])
            return histogram
        made = (CounterMetricFamily if self.kind == "counter" else GaugeMetricFamily)(
            self.name, self.documentation, labels=self.labelnames)
        for key, value in items:
            made.add_metric(list(key), value)
        return made


class Series:
    """One series of a `Family` (what `labels(...)` returns)."""

    __slots__ = ("_family", "_key")

    def __init__(self, family: Family, key: tuple[str, ...]) -> None:
        self._family = family
        self._key = key

    def set(self, value: float) -> None:
        with self._family._lock:
            self._family.values[self._key] = float(value)

    def inc(self, amount: float = 1.0) -> None:
        with self._family._lock:
            values = self._family.values
            values[self._key] = values.get(self._key, 0.0) + amount

    def create(self) -> None:
        """A counter's series at 0 before anything counts (`rate()` works from the first scrape)."""
        self.inc(0.0)

    def observe(self, value: float) -> None:
        family = self._family
        with family._lock:
            counts = family.values.get(self._key)
            if counts is None:
                counts = family.values[self._key] = [0] * len(family.buckets) + [0.0]
            for index, le in enumerate(family.buckets):
                if value <= le:
                    counts[index] += 1
            counts[-1] += value


class SeriesStore:
    """The per-check and per-target series of thousands of fleet checks, kept as plain values and turned into
    metric families when the page is rendered (prometheus-client's custom-collector way): a prometheus-client
    child per series (an object with its own lock, a histogram's a dozen) cost the daemon tens of MB at 3,500
    checks. Names, types, labels and samples are those prometheus-client's Gauge, Counter and Histogram give."""

    def __init__(self) -> None:
        self.families: list[Family] = []
        self._keys: dict[tuple[str, ...], tuple[str, ...]] = {}  # one tuple per label set, shared by families

    def key(self, values: tuple[str, ...]) -> tuple[str, ...]:
        return self._keys.setdefault(values, values)

    def forget_unused_keys(self) -> None:
        used = {key for family in self.families for key in family.values}
        self._keys = {key: key for key in used}

    def _family(self, kind: str, name: str, documentation: str, labels: Sequence[str],
                buckets: Sequence[float] = ()) -> Family:
        family = Family(self, kind, name, documentation, labels, buckets)
        self.families.append(family)
        return family

    def gauge(self, name: str, documentation: str, labels: Sequence[str]) -> Family:
        return self._family("gauge", name, documentation, labels)

    def counter(self, name: str, documentation: str, labels: Sequence[str]) -> Family:
        return self._family("counter", name, documentation, labels)

    def histogram(self, name: str, documentation: str, labels: Sequence[str], buckets: Sequence[float]) -> Family:
        return self._family("histogram", name, documentation, labels, buckets)

    def describe(self) -> Iterable[Metric]:
        return [Metric(f.name, f.documentation, f.kind) for f in self.families]

    def collect(self) -> Iterator[Metric]:
        for family in self.families:
            yield from family.chunks()


class DupewatchMetrics:
    """The collectors, registered in a registry of their own."""

    def __init__(self, registry: CollectorRegistry | None = None, *, process: bool = True,
                 static: tuple[str, ...] = ()) -> None:
        self.registry = registry or CollectorRegistry()
        self.static = static
        r = self.registry
        labels = (*LABELS, *static)
        target_labels = (*TARGET_LABELS, *static)
        self._series = SeriesStore()
        gauge, counter, histogram = self._series.gauge, self._series.counter, self._series.histogram
        self.groups = gauge("dupewatch_duplicate_groups",
                            "Duplicate groups (keys with more than one row) found by the last successful run.",
                            labels)
        self.excess_rows = gauge("dupewatch_duplicate_excess_rows",
                                 "Rows beyond the first in every duplicate group, by the last successful run.",
                                 labels)
        self.appeared = counter("dupewatch_duplicate_rows_appeared",
                                "Excess duplicate rows that appeared between two successful runs (beyond what "
                                "the earlier run found, less what fixes deleted in between).", labels)
        self.violations = gauge("dupewatch_violation_rows",
                                "Rows breaking the check's invariant (each row its query returns), by the last "
                                "successful run of a violations check.", labels)
        self.violations_appeared = counter("dupewatch_violation_rows_appeared",
                                           "Violating rows that appeared between two successful runs of a "
                                           "violations check.", labels)
        self.duration = histogram("dupewatch_check_duration_seconds",
                                  "Time taken by each run of a check, failed runs included.",
                                  labels, buckets=DURATION_BUCKETS)
        self.last_success = gauge("dupewatch_check_last_success_timestamp_seconds",
                                  "UNIX time at which the check last ran successfully.", labels)
        self.up = gauge("dupewatch_check_up", "1 when the last run of the check succeeded, 0 when it failed.", labels)
        self.errors = counter("dupewatch_check_errors",
                              "Runs of the check that failed (database down, timeout, bad definition).",
                              labels)
        self.interval = gauge("dupewatch_check_interval_seconds", "The check's configured polling interval.", labels)
        self.fix_deleted = counter("dupewatch_fix_deleted_rows",
                                   "Duplicate rows deleted by fixes of the check (from the fix records in the "
                                   "database, whichever process ran them).", labels)
        self.fix_restored = counter("dupewatch_fix_restored_rows",
                                    "Rows put back by undos of fixes of the check (from the records of the undone "
                                    "fixes in the database, whichever process ran them).", labels)
        # Incremental checks (`incremental = "column"`, monitor/incremental.py) only.
        self.new_groups = counter("dupewatch_new_duplicate_groups",
                                  "Duplicate groups seen for the first time by a run of an incremental check "
                                  "(not counted on its first run, which has nothing to compare with).",
                                  labels)
        self.rows_scanned = gauge("dupewatch_check_rows_scanned",
                                  "Rows the last successful run of a table check read: the whole table under its "
                                  "where and nulls rule (a full pass), or the rows past the watermark (an "
                                  "incremental pass).", labels)
        # Thresholds and percentages (monitor/thresholds.py): what the on-call compares with `warn_above`.
        self.excess_ratio = gauge("dupewatch_duplicate_excess_ratio",
                                  "Excess rows as a share of the rows grouped by the last full pass of a table "
                                  "check (0.005 is 0.5%; Soda's duplicate_percent / 100).", labels)
        self.status = gauge("dupewatch_check_status",
                            "The last successful run judged by the check's warn_above / fail_above: 0 ok, 1 warn, "
                            "2 fail (a check without thresholds fails as soon as it finds anything).",
                            labels)
        self.last_full_pass = gauge("dupewatch_check_last_full_pass_timestamp_seconds",
                                    "UNIX time of an incremental check's last full pass of its table.", labels)
        # Per target (fleet mode; a `[databases]` entry is its own target): its checks taken together.
        self.target_up = gauge("dupewatch_target_up", "1 when the last run of every check of the target succeeded.",
                               target_labels)
        self.target_last_success = gauge("dupewatch_target_last_success_timestamp_seconds",
                                         "UNIX time at which a check of the target last ran successfully.",
                                         target_labels)
        self.target_duration = gauge("dupewatch_target_duration_seconds",
                                     "Time taken by the last run of each of the target's checks, added up.",
                                     target_labels)
        r.register(self._series)
        # Discovery (monitor/fleet/discover.py), per source.
        self.discovery_up = Gauge("dupewatch_discovery_up", "1 when the last listing of the source's targets "
                                  "succeeded; 0 when it failed (its last good list is still checked).",
                                  ["source"], registry=r)
        self.discovery_targets = Gauge("dupewatch_discovery_targets",
                                       "Targets of the source (its last good list, before sharding).", ["source"],
                                       registry=r)
        self.discovery_last_success = Gauge("dupewatch_discovery_last_success_timestamp_seconds",
                                            "UNIX time of the last successful listing of the source's targets.",
                                            ["source"], registry=r)
        self.discovery_errors = Counter("dupewatch_discovery_errors", "Listings of the source's targets that "
                                        "failed.", ["source"], registry=r)
        # The fleet's servers (monitor/fleet/budget.py): how many of our checks each takes at once.
        self.server_limit = Gauge("dupewatch_server_connection_limit", "How many of our checks the server takes at "
                                  "once now: [fleet] server_connections, fewer after it ran out of connections "
                                  "for us.", ["server"], registry=r)
        self.server_limited = Gauge("dupewatch_server_connections_limited", "1 while the server takes fewer of our "
                                    "checks at once than [fleet] server_connections (it ran out of connections "
                                    "for us: a role's or database's CONNECTION LIMIT, max_connections, "
                                    "max_user_connections); 0 otherwise.", ["server"], registry=r)
        self.shard = Gauge("dupewatch_shard", "This daemon's shard: 1, labelled with its index and the count.",
                           ["shard", "shards"], registry=r)
        self.build = Info("dupewatch_build", "The dupewatch version and the Python running it.", registry=r)
        self.build.info({"version": __version__, "python": platform.python_version()})
        if process:
            ProcessCollector(registry=r)

    @property
    def labelled(self) -> tuple[Family, ...]:
        return (self.groups, self.excess_rows, self.appeared, self.violations, self.violations_appeared,
                self.duration, self.last_success, self.up, self.errors, self.interval, self.fix_deleted,
                self.fix_restored, self.new_groups, self.rows_scanned, self.last_full_pass, self.excess_ratio,
                self.status)

    def add(self, labels: tuple[str, ...], interval: float, *, incremental: bool = False,
            violations: bool = False) -> None:
        """Create a check's series that must exist before its first run (counters at 0, its interval)."""
        self.interval.labels(*labels).set(interval)
        self.errors.labels(*labels).create()
        if violations:
            self.violations_appeared.labels(*labels).create()
        else:
            self.appeared.labels(*labels).create()
            self.fix_deleted.labels(*labels).create()
            self.fix_restored.labels(*labels).create()
        if incremental:
            self.new_groups.labels(*labels).create()

    def remove(self, labels: tuple[str, ...]) -> None:
        for metric in self.labelled:
            metric.remove(*labels)

    def forget_unused_labels(self) -> None:
        self._series.forget_unused_keys()

    def remove_target(self, labels: tuple[str, ...]) -> None:
        for metric in (self.target_up, self.target_last_success, self.target_duration):
            metric.remove(*labels)

    def set_figures(self, labels: tuple[str, ...], groups: int, excess_rows: int, *, violations: bool) -> None:
        """The figures of a successful run, under the metrics of what the check finds."""
        if violations:
            self.violations.labels(*labels).set(groups)
        else:
            self.groups.labels(*labels).set(groups)
            self.excess_rows.labels(*labels).set(excess_rows)

    def observe(self, result: CheckResult, labels: tuple[str, ...], *, violations: bool = False, appeared: int = 0,
                figures: bool = True) -> None:
        """Record one run under `labels`; `appeared` is what the run found beyond the previous one (see
        `Appearance`). `figures=False`: the run's groups and excess rows are not taken (a live stream's are newer)."""
        self.duration.labels(*labels).observe(result.duration_ms / 1000)
        if result.status == "error":
            self.up.labels(*labels).set(0)
            self.errors.labels(*labels).inc()
            return
        if figures:
            self.set_figures(labels, result.groups or 0, result.excess_rows or 0, violations=violations)
        if appeared > 0:
            (self.violations_appeared if violations else self.appeared).labels(*labels).inc(appeared)
        self.last_success.labels(*labels).set(result.finished_at.timestamp())
        self.up.labels(*labels).set(1)
        if result.rows_scanned is not None:
            self.rows_scanned.labels(*labels).set(result.rows_scanned)
            if result.new_groups and not result.first_run:
                self.new_groups.labels(*labels).inc(result.new_groups)
        if result.last_full_pass is not None:
            self.last_full_pass.labels(*labels).set(result.last_full_pass.timestamp())
        self.set_judgement(labels, result.outcome, result.excess_ratio)

    def set_judgement(self, labels: tuple[str, ...], outcome: Outcome | None, ratio: float | None = None) -> None:
        """The run's outcome (`dupewatch_check_status`) and excess share; an unknown one keeps its last value."""
        if outcome is not None:
            self.status.labels(*labels).set(OUTCOMES.index(outcome))
        if ratio is not None:
            self.excess_ratio.labels(*labels).set(ratio)

    def exposition(self) -> bytes:
        """The page a scrape gets, in the Prometheus text format."""
        return prometheus_client.generate_latest(self.registry)


@dataclass
class Appearance:
    """What one check's figure (excess rows, or violating rows) was at its last successful run, and the rows
    fixes deleted since: from these, how many rows appeared by the next run.

    A fix's rows may be counted before or after the next run (the fix records are read every few seconds):
    counting them against the figure they were taken from (never more than it held) gives the same answer
    either way, so a fix never hides rows that appeared, and never makes rows seem to appear."""

    figure: int | None = None
    fixed_since: int = 0
    restored_since: int = 0  # rows undos put back since: they come back, they do not appear

    def next(self, figure: int) -> int:
        """Rows that appeared by a run that found `figure`; the run becomes the one to compare with."""
        if self.figure is None:
            appeared = 0  # nothing to compare with
        else:
            left = max(self.figure - self.fixed_since, 0) + self.restored_since
            appeared = max(figure - left, 0)
        self.figure, self.fixed_since, self.restored_since = figure, 0, 0
        return appeared
class LiveMetrics:
    """Live mode's series (monitor/live/), labelled by `database` only: the stream belongs to a database.

    - `dupewatch_live_lag_seconds`: from the commit of the last change processed to the moment its groups were
      re-counted (commit to count, as Debezium's MilliSecondsBehindSource); held until the next change, so a
      quiet database does not look like a lagging stream.
    - `dupewatch_live_events_total`: row changes read from the stream (every table, watched or not).
    - `dupewatch_live_gaps_total`: times the stream broke (reconnect, slot lost, a re-count that failed after
      its changes were read); each is logged and followed by a full count of the database's checks.
    - `dupewatch_live_overflows_total`: reads of the stream that named more keys of a check's table than live
      mode re-counts one by one (a bulk load, a mass update; `KEYS_PER_READ` in monitor/live/groups.py), or
      a table whose changes the binary log's queue stopped keeping (monitor/live/mysql.py): that check was
      counted in full instead. Not a gap: nothing was missed.
    - `dupewatch_live_following`: 1 while the stream is followed, 0 before it opens, after a gap until it is
      followed again, and for good when the server refused it (the refusal's one line is in the log): a refused
      or broken stream does not look like a quiet database.

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
        self.overflows = Counter("dupewatch_live_overflows", "Reads of the database's change stream that named too "
                                 "many keys of a check's table to re-count them one by one (that check was counted "
                                 "in full instead).", ["database"], registry=registry)
        self._added: set[str] = set()
        self.following = Gauge("dupewatch_live_following",
                               "1 while the database's change stream is followed; 0 before it opens, after a gap "
                               "until it is followed again, or when the server refused it.", ["database"],
                               registry=registry)

    def add(self, database: str) -> None:
        self.events.labels(database)
        self.gaps.labels(database)
        self.overflows.labels(database)
        if database not in self._added:  # a reload keeps what the stream's reader last said
            self._added.add(database)
            self.following.labels(database).set(0)


class MetricsExporter:
    """The metrics of one config's checks, kept in step with reloads, optionally served over HTTP."""

    def __init__(self, config: Config, *, registry: CollectorRegistry | None = None,
                 process_metrics: bool = True) -> None:
        # Static label names are fixed for the process (Prometheus wants one label set per metric): one that a
        # reload adds is not exported until a restart (the daemon says so).
        self.metrics = DupewatchMetrics(registry, process=process_metrics, static=static_label_names(config))
        self.settings = config.metrics or MetricsConfig()
        self._lock = threading.Lock()
        self._checks: set[tuple[str, str]] = set()
        self._series: dict[tuple[str, str], tuple[str, ...]] = {}  # (check, database) -> its label values
        # Per target (its label values): each check's last run as (succeeded, seconds), and its last success.
        self._targets: dict[tuple[str, ...], dict[tuple[str, str], tuple[bool, float]]] = {}
        self._violations: set[tuple[str, str]] = set()  # the checks that find violations, not duplicates
        self._appearance: dict[tuple[str, str], Appearance] = {}
        self._fix_totals_read: set[tuple[str, str]] = set()  # checks whose fix records were read once
        self._fix_counted: dict[tuple[str, str], int] = {}  # what fix_deleted holds for each check
        self._restore_counted: dict[tuple[str, str], int] = {}  # what fix_restored holds for each check
        self._servers: set[str] = set()  # the fleet servers exported (`servers`)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._app: PrerenderedApp | None = None
        self.live = LiveMetrics(self.registry)
        # The checks a live stream counts (table checks; not custom SQL, nor one it could not resolve): the stream
        # counts their new groups, and while their database's stream is followed its figures win over a run's.
        self._live_checks: set[tuple[str, str]] = set()
        self._live_following: set[str] = set()  # databases whose stream is followed now
        # At a daemon's start, before a live database's reader first counted its checks, which of them the stream
        # will count is not known yet: the new groups their runs find are held (`_held`) until it is
        # (`live_settled`): dropped for a check whose first count by the stream compared with the groups saved
        # before the restart (`Figures.compared`: they would be counted twice), counted for any other (left to its
        # poll, a baseline, counted first by a reload's reader, or never counted: a stream that does not open).
        self._live_unsettled: dict[str, set[tuple[str, str]]] = {}  # database -> its table checks
        self._held: dict[tuple[str, str], int] = {}
        self._compared: set[tuple[str, str]] = set()  # checks whose stream's first count compared with saved groups
        self.reload(config)
        _live_exporters.add(self)

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    def reload(self, config: Config) -> None:
        """Follow a new config: series of removed (or moved) checks disappear, new checks get theirs.

        The listen address is not changed by a reload (the caller restarts to move the endpoint).
        """
        wanted = {(c.name, c.database): c for c in config.checks}
        series = {key: series_labels(config, c, self.metrics.static) for key, c in wanted.items()}
        with self._lock:
            changed_kind = {key for key, c in wanted.items()
                            if key in self._checks and (c.finds == "violations") != (key in self._violations)}
            relabelled = {key for key in wanted.keys() & self._checks if self._series.get(key) != series[key]}
            for gone in (self._checks - wanted.keys()) | changed_kind | relabelled:
                self.metrics.remove(self._series[gone])
                self._fix_counted.pop(gone, None)
                self._restore_counted.pop(gone, None)
                self._appearance.pop(gone, None)
                self._fix_totals_read.discard(gone)  # if it comes back, its first reading is the past again
            self._violations = {key for key, c in wanted.items() if c.finds == "violations"}
            for key, c in wanted.items():
                self.metrics.add(series[key], c.interval, incremental=c.incremental is not None,
                                 violations=c.finds == "violations")
            self._checks = set(wanted)
            self._series = series
            targets = {labels[1:] for labels in series.values()}
            for target in set(self._targets) - targets:
                self.metrics.remove_target(target)
                del self._targets[target]
            for target, runs in self._targets.items():
                removed = set(runs) - wanted.keys()
                for key in removed:
                    del runs[key]
                if removed and runs:  # its up and duration take the checks it still has
                    self._set_target(target, runs)
            self.metrics.forget_unused_labels()
        self._changed(reshaped=True)

    def discovery(self, source: str, *, up: bool, targets: int | None, last_success: float | None,
                  failed: bool) -> None:
        """How the last listing of a fleet source went (`monitor.fleet.Discovery`)."""
        with self._lock:
            self.metrics.discovery_up.labels(source).set(1 if up else 0)
            errors = self.metrics.discovery_errors.labels(source)
            if failed:
                errors.inc()
            if targets is not None:
                self.metrics.discovery_targets.labels(source).set(targets)
            if last_success is not None:
                self.metrics.discovery_last_success.labels(source).set(last_success)
        self._changed()

    def servers(self, limits: Mapping[str, int], cap: int) -> None:
        """How many of our checks each fleet server takes at once now (`monitor.fleet.budget`); a server left out
        of `limits` is no longer a target's (its series go)."""
        with self._lock:
            for server, limit in limits.items():
                self.metrics.server_limit.labels(server).set(limit)
                self.metrics.server_limited.labels(server).set(1 if limit < cap else 0)
            for server in self._servers - set(limits):
                self.metrics.server_limit.remove(server)
                self.metrics.server_limited.remove(server)
            self._servers = set(limits)
        self._changed()

    def server_limit(self, server: str, limit: int, cap: int) -> None:
        with self._lock:
            if server not in self._servers:  # a late change of a server whose targets went
                return
            self.metrics.server_limit.labels(server).set(limit)
            self.metrics.server_limited.labels(server).set(1 if limit < cap else 0)
        self._changed()

    def shard(self, index: int, count: int) -> None:
        with self._lock:
            self.metrics.shard.labels(str(index), str(count)).set(1)
        self._changed()

    def _observe_target(self, key: tuple[str, str], result: CheckResult) -> None:
        """The per-target series after one run of one of its checks (the lock is held)."""
        target = self._series[key][1:]
        runs = self._targets.setdefault(target, {})
        runs[key] = (result.status != "error", result.duration_ms / 1000)
        self._set_target(target, runs)
        if result.status != "error":
            self.metrics.target_last_success.labels(*target).set(result.finished_at.timestamp())

    def _set_target(self, target: tuple[str, ...], runs: dict[tuple[str, str], tuple[bool, float]]) -> None:
        """A target's up and duration from the last run of each of its checks (the lock is held)."""
        self.metrics.target_up.labels(*target).set(1 if all(ok for ok, _ in runs.values()) else 0)
        self.metrics.target_duration.labels(*target).set(sum(seconds for _, seconds in runs.values()))

    def restore(self, history: History, subject_of: Callable[[CheckConfig], str], config: Config) -> None:
        """Start from the last successful run of what each check measures (its subject, see
        `monitor.history.subject`), so that a restart does not blank the figures or make
        `dupewatch_check_last_success_timestamp_seconds` forget when the check last worked (the staleness alert
        keys on it), and rows that appear are counted from those figures. A run of another database or another
        definition that had the same names is never restored. `up` and the counters belong to this process."""
        with self._lock:
            for check in config.checks:
                key = (check.name, check.database)
                if key not in self._checks:
                    continue
                run = history.last_success(subject_of(check))
                if run is None:
                    continue
                violations = key in self._violations
                labels = self._series[key]
                self.metrics.set_figures(labels, run.groups or 0, run.excess_rows or 0, violations=violations)
                self.metrics.last_success.labels(*labels).set(run.finished_at)
                self.metrics.set_judgement(labels, judge(check, (run.groups if violations else run.excess_rows) or 0,
                                                         None))
                self._appearance[key] = Appearance((run.groups if violations else run.excess_rows) or 0)
        self._changed()

    def observe(self, result: CheckResult) -> None:
        """Record one run. A late result of a check a reload removed is dropped, so its series stay gone."""
        key = (result.name, result.database)
        with self._lock:
            if key in self._checks:
                streamed = key in self._live_checks
                if streamed:  # its new groups are counted from the stream
                    result = replace(result, new_groups=0)
                elif result.new_groups and not result.first_run \
                        and key in self._live_unsettled.get(result.database, ()):
                    self._held[key] = self._held.get(key, 0) + result.new_groups
                    result = replace(result, new_groups=0)
                violations = key in self._violations
                appeared = 0
                if result.status != "error":
                    figure = (result.groups if violations else result.excess_rows) or 0
                    appeared = self._appearance.setdefault(key, Appearance()).next(figure)
                # While the stream is followed its figures are newer than the run's snapshot of the table.
                self.metrics.observe(result, self._series[key], violations=violations, appeared=appeared,
                                     figures=not (streamed and result.database in self._live_following))
                self._observe_target(key, result)
        self._changed()

    def record_fix(self, check: str, database: str, deleted: int) -> None:
        if deleted > 0:
            with self._lock:
                key = (check, database)
                if key in self._violations or key not in self._checks:
                    return
                self.metrics.fix_deleted.labels(*self._series[key]).inc(deleted)
                self._fix_counted[key] = self._fix_counted.get(key, 0) + deleted
                self._appearance.setdefault(key, Appearance()).fixed_since += deleted
            self._changed()

    def record_undo(self, check: str, database: str, restored: int) -> None:
        if restored > 0:
            with self._lock:
                key = (check, database)
                if key in self._violations or key not in self._checks:
                    return
                self.metrics.fix_restored.labels(*self._series[key]).inc(restored)
                self._restore_counted[key] = self._restore_counted.get(key, 0) + restored
                self._appearance.setdefault(key, Appearance()).restored_since += restored
            self._changed()

    def fix_totals(self, database: str, totals: dict[str, int], *, restored: dict[str, int] | None = None) -> None:
        """The rows deleted by all fixes of each check of `database`, and (`restored`) those the undos of the
        undone ones put back, as its fix records say: each counter catches up with its total (never going down:
        an undone fix still deleted its rows once, and a record purged of its undo marker is no undo less)."""
        changed = False
        with self._lock:
            first: set[tuple[str, str]] = set()
            for check, total in totals.items():
                key = (check, database)
                if key not in self._checks or key in self._violations:
                    continue
                behind = total - self._fix_counted.get(key, 0)
                if behind > 0:
                    self.metrics.fix_deleted.labels(*self._series[key]).inc(behind)
                    self._fix_counted[key] = total
                    if key in self._fix_totals_read:  # the first reading is the past, not fixes since the last run
                        self._appearance.setdefault(key, Appearance()).fixed_since += behind
                    changed = True
                if key not in self._fix_totals_read:
                    first.add(key)
                self._fix_totals_read.add(key)
            for check, total in (restored or {}).items():
                key = (check, database)
                if key not in self._checks or key in self._violations:
                    continue
                behind = total - self._restore_counted.get(key, 0)
                if behind > 0:
                    self.metrics.fix_restored.labels(*self._series[key]).inc(behind)
                    self._restore_counted[key] = total
                    if key not in first:
                        self._appearance.setdefault(key, Appearance()).restored_since += behind
                    changed = True
        if changed:
            self._changed()

    # -- live mode (monitor/live/; the `LiveSink` of its readers) --------------------------------------

    def live_database(self, database: str) -> None:
        """`database` has `live = true`: its series exist from now on."""
        with self._lock:
            self.live.add(database)
        self._changed()

    def live_starting(self, checks: Mapping[str, Iterable[str]]) -> None:
        """The daemon starts readers of these databases' streams (their table checks, by name): until each has
        counted its checks (`live_settled`), the new groups their runs find are held."""
        with self._lock:
            for database, names in checks.items():
                self._live_unsettled[database] = {(name, database) for name in names}

    def live_settled(self, database: str) -> None:
        """The reader of `database` counted its checks (or will not: refused, no stream): the new groups held for
        a check it does not count are counted; those of a check it counts are dropped (it counted them)."""
        with self._lock:
            self._settle(database)
        self._changed()

    def _settle(self, database: str) -> None:
        """(a stream with no groups saved for a check, such as the first start after an upgrade, or a reload's
        reader, which does not compare with them, counted none new: the run's, compared with the check's
        incremental state, are counted)"""
        for key in self._live_unsettled.pop(database, set()):
            held = self._held.pop(key, 0)
            compared = key in self._compared
            self._compared.discard(key)
            if held and not compared and key in self._checks:
                self.metrics.new_groups.labels(*self._series[key]).inc(held)

    def live_following(self, database: str, following: bool) -> None:
        """The stream of `database` is followed (every check counted in full from it), or no longer is (a gap,
        a stop, a refusal): then the runs' figures are taken again until it is followed anew."""
        with self._lock:
            self._settle(database)
            if following:
                self._live_following.add(database)
            else:
                self._live_following.discard(database)
            self.live.following.labels(database).set(1 if following else 0)
        self._changed()

    def live_figures(self, check: str, database: str, figures: LiveFigures) -> None:
        with self._lock:
            if (check, database) not in self._checks:
                return
            self._live_checks.add((check, database))
            if figures.compared and database in self._live_unsettled:
                self._compared.add((check, database))
            labels = self._series[(check, database)]
            self.metrics.groups.labels(*labels).set(figures.groups)
            self.metrics.excess_rows.labels(*labels).set(figures.excess_rows)
            self.metrics.new_groups.labels(*labels).inc(figures.new_groups)  # (0 makes the series exist)
        self._changed(urgent=True)  # a duplicate within a second of its commit, on the page too

    def live_events(self, database: str, events: int, lag_seconds: float | None) -> None:
        with self._lock:
            if lag_seconds is not None:
                self.live.lag.labels(database).set(lag_seconds)
            if events:
                self.live.events.labels(database).inc(events)
        if events:
            self._changed()

    def live_overflow(self, database: str) -> None:
        with self._lock:
            self.live.overflows.labels(database).inc()

    def live_left(self, check: str, database: str) -> None:
        """The stream no longer counts `check` (`LiveSink.live_left`): its runs' figures and new groups count again."""
        with self._lock:
            self._live_checks.discard((check, database))

    def live_gap(self, database: str, reason: str) -> None:
        with self._lock:
            self.live.gaps.labels(database).inc()
            self._live_following.discard(database)
            self.live.following.labels(database).set(0)
        self._changed()

    def _changed(self, *, urgent: bool = False, reshaped: bool = False) -> None:
        if self._app is not None:
            self._app.changed(urgent=urgent, reshaped=reshaped)

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
                raise MetricsServeError(f"{where}: address already in use (is another dupewatch running?)",
                                        in_use=True) from None
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
        self._registry = registry
        self._inner = make_wsgi_app(registry)
        self._lock = threading.Lock()
        self._pages: dict[tuple[str, bool], _Page] = {}
        self._asked: dict[tuple[str, bool], tuple[str, float]] = {}  # key -> (an Accept header, last asked)
        self._dirty = threading.Event()
        self._urgent = threading.Event()  # a live figure changed: render without waiting out RENDER_MIN_SECONDS
        # Series were added or removed (a reload, targets discovered or gone): render without waiting out the
        # render's share of a core either. Rare by nature, so the share still holds over time.
        self._reshaped = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._render_loop, name="metrics-render", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._dirty.set()
        self._urgent.set()
        self._reshaped.set()
        self._thread.join(timeout=5)

    def changed(self, *, urgent: bool = False, reshaped: bool = False) -> None:
        if reshaped:
            self._reshaped.set()
            self._urgent.set()
        elif urgent:
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
        """The page prometheus-client's app would answer (its encoders, headers and gzip), rendered one metric
        family at a time: rendered whole, a fleet's page (about 10 MB for 3,500 checks) cost four times its
        size in lines and samples at once, every render."""
        encoder, content_type = choose_encoder(accept)
        body = _encoded(encoder, self._registry)
        headers = [("Content-Type", content_type)]
        if key[1]:
            body = gzip.compress(body)
            headers.append(("Content-Encoding", "gzip"))
        page = _Page("200 OK", headers, body)
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
            self._reshaped.clear()
            started = time.monotonic()
            for key, accept in self._wanted(started):
                self._render(key, accept)
            spent = time.monotonic() - started
            self._reshaped.wait(spent / RENDER_MAX_SHARE)  # at most a tenth of a core, unless series came or went
            self._urgent.wait(max(RENDER_MIN_SECONDS - spent / RENDER_MAX_SHARE, 0.0))

    def _wanted(self, now: float) -> list[tuple[tuple[str, bool], str]]:
        with self._lock:
            for key, (_accept, asked) in list(self._asked.items()):
                if now - asked > RENDER_FORGET_SECONDS:
                    del self._asked[key]
                    self._pages.pop(key, None)
            return [(key, accept) for key, (accept, _asked) in self._asked.items()]


class _Families:
    """A collector of the given metric families (what an encoder is given to encode just those)."""

    def __init__(self, *families: Metric) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def _encoded(encoder: Callable[[Any], bytes], registry: CollectorRegistry) -> bytes:
    """What `encoder(registry)` returns, encoded family by family: the format's ending (OpenMetrics' `# EOF`),
    which each part ends with, is written once at the end."""
    ending = encoder(_Families())
    out = io.BytesIO()
    previous: Metric | None = None
    for family in registry.collect():
        part = encoder(_Families(family))
        if ending and part.endswith(ending):
            part = part[:len(part) - len(ending)]
        if previous is not None and (previous.name, previous.type) == (family.name, family.type):
            # Another chunk of the same family (`Family.chunks`): its header is written once.
            header = encoder(_Families(Metric(family.name, family.documentation, family.type, family.unit)))
            header = header[:len(header) - len(ending)] if ending else header
            part = part.removeprefix(header)
        out.write(part)
        previous = family
    out.write(ending)
    return out.getvalue()


class _QuietHandler(WSGIRequestHandler):
    timeout = HTTP_IDLE_TIMEOUT_SECONDS  # socket timeout of every read and write, TLS handshake included

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line each."""


class BoundedWSGIServer(WSGIServer):
    """A WSGI server that gives a worker only to a connection that has sent something, from a fixed pool of
    `HTTP_WORKERS` threads with at most `HTTP_QUEUED` requests waiting for one.

    Accepted connections wait, costing a socket and no thread, in a selector watched by one thread until their
    first bytes arrive; one that sends nothing for `HTTP_IDLE_TIMEOUT_SECONDS` is closed, and when
    `HTTP_WAITING` of them wait, the oldest is closed to let the new one in. So silent or half-open connections
    (a scanner, a broken proxy, an attacker holding hundreds) never hold the workers Prometheus's scrape needs,
    and never cost a thread each (the standard library's threading server starts one per connection, with no
    idle timeout)."""

    request_queue_size = 128  # the listen backlog: a burst of connects is accepted (or refused) without SYN retries

    def server_activate(self) -> None:
        super().server_activate()
        self._pool = ThreadPoolExecutor(HTTP_WORKERS, thread_name_prefix="metrics-http")
        self._slots = threading.BoundedSemaphore(HTTP_WORKERS + HTTP_QUEUED)
        self._selector = selectors.DefaultSelector()
        self._waiting: dict[Any, tuple[float, Any]] = {}  # socket -> (accepted at, address), oldest first
        self._arrived: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._selector.register(self._wake_read, selectors.EVENT_READ)
        self._stopping = False
        self._watcher = threading.Thread(target=self._watch, name="metrics-accept", daemon=True)
        self._watcher.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        """Called on the accepting thread: hand the connection to the watcher, which waits for its request."""
        self._arrived.put((request, client_address))
        with contextlib.suppress(OSError):
            self._wake_write.send(b"\0")

    def _watch(self) -> None:
        while not self._stopping:
            timeout = None
            if self._waiting:
                oldest = next(iter(self._waiting.values()))[0]
                timeout = max(oldest + HTTP_IDLE_TIMEOUT_SECONDS - time.monotonic(), 0.0)
            for key, _events in self._selector.select(timeout):
                if key.fileobj is self._wake_read:
                    with contextlib.suppress(OSError):
                        self._wake_read.recv(4096)
                    self._take_arrivals()
                else:
                    self._ready(key.fileobj)
            self._close_idle()

    def _take_arrivals(self) -> None:
        while True:
            try:
                request, address = self._arrived.get_nowait()
            except queue.Empty:
                return
            if self._stopping:
                self.shutdown_request(request)
                continue
            if len(self._waiting) >= HTTP_WAITING:  # the oldest silent connection makes room for the new one
                self._drop(next(iter(self._waiting)))
            self._waiting[request] = (time.monotonic(), address)
            try:
                self._selector.register(request, selectors.EVENT_READ)
            except (OSError, ValueError):  # closed by the client already
                self._drop(request)

    def _ready(self, request: Any) -> None:
        """The connection sent something: a worker serves it, or it is closed when all are taken and queued."""
        _accepted, address = self._waiting.pop(request)
        self._selector.unregister(request)
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        self._pool.submit(self._serve, request, address)

    def _close_idle(self) -> None:
        expired = time.monotonic() - HTTP_IDLE_TIMEOUT_SECONDS
        while self._waiting:
            request, (accepted, _address) = next(iter(self._waiting.items()))
            if accepted > expired:
                return
            self._drop(request)

    def _drop(self, request: Any) -> None:
        self._waiting.pop(request, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._selector.unregister(request)
        self.shutdown_request(request)

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
        if getattr(self, "_watcher", None) is None:
            return
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_write.send(b"\0")
        self._watcher.join(timeout=5)
        for request in list(self._waiting):
            self._drop(request)
        self._selector.close()
        self._wake_read.close()
        self._wake_write.close()
        self._pool.shutdown(wait=False, cancel_futures=True)


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
