"""`dupewatch daemon`: every check on its schedule with no terminal, metrics over HTTP, logs on stderr.

Owns the process's life: signals (SIGTERM/SIGINT stop, SIGHUP reloads the config), the log format (plain
`key=value` lines or JSON lines, both password-free), and wiring the shared pieces together: the `Poller`
runs the checks, `History` keeps their runs for the dashboard, `MetricsExporter` serves them to Prometheus.

Stopping never waits for a query in flight: a database that hangs must not hold up a restart. The
scheduler stops, idle connections are closed, and the caller leaves the process without joining the
worker threads still blocked in a query (their connections die with the process).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
import logging
import queue
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from sqlalchemy.engine import URL

from monitor import __version__
from monitor.config import Config, ConfigError, TargetDatabaseConfig, load_config
from monitor.db import Database, parse_url, redact_text
from monitor.detect import CheckDefinitionError, CheckResult
from monitor.engine import CheckError, DatabaseRemoved, Monitor
from monitor.fixstats import FixTotals, read_totals
from monitor.fleet import Discovery, Shard, expand, static_label_names
from monitor.fleet.discover import SourceState, Targets, used_sources
from monitor.fleet.shard import ALL
from monitor.history import History, default_state_path
from monitor.live import Figures, LiveReader, start_live, stop_live, streamed_checks
from monitor.metrics import MetricsExporter
from monitor.schedule import Poller

log = logging.getLogger("dupewatch.daemon")

LogFormat = Literal["plain", "json"]
# How often the main thread looks up from waiting for a signal (signals wake it earlier).
SIGNAL_POLL_SECONDS = 1.0
# How often the daemon reads each database's fix records for dupewatch_fix_deleted_rows_total.
FIX_TOTALS_SECONDS = 5.0
# ... and each fleet target's (hundreds of them: once a minute keeps the extra query well below the checks' own).
FLEET_FIX_TOTALS_SECONDS = 60.0
# How long a config reload waits for each live reader of the new config to open its stream and take over from the
# previous one (a full count of its checks included) before stopping the previous one anyway.
LIVE_HANDOVER_SECONDS = 30.0


class DaemonStartError(Exception):
    """The daemon cannot start (metrics port taken, state file unwritable); one line."""


# -- logging ---------------------------------------------------------------------------------------


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a log call: structured fields both formats render."""
    return {"fields": values}


class _Redactor:
    """Masks every password of every database URL this process has been configured with."""

    def __init__(self) -> None:
        self.urls: list[str | URL] = []

    def learn(self, config: Config) -> None:
        # Passwords of a previous config stay masked: a run started before a reload may still report.
        for name, database in config.databases.items():
            for resolve in (database.resolved_url, database.resolved_fix_url):
                try:
                    self.urls.append(resolve(name))
                except ConfigError:
                    continue
        for name, source in config.sources.items():
            try:
                self.urls.append(source.resolved_url(name))
            except ConfigError:
                continue

    def __call__(self, text: str) -> str:
        return redact_text(text, self.urls) if self.urls else text


class _Formatter(logging.Formatter):
    def __init__(self, redact: _Redactor) -> None:
        super().__init__()
        self.redact = redact

    @staticmethod
    def timestamp(record: logging.LogRecord) -> str:
        return datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="milliseconds")

    @staticmethod
    def record_fields(record: logging.LogRecord) -> Mapping[str, Any]:
        return getattr(record, "fields", None) or {}


class PlainFormatter(_Formatter):
    """`TIME LEVEL message key=value ...`, one line per record (tracebacks indented below)."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [self.timestamp(record), f"{record.levelname:<7}", record.getMessage()]
        for key, value in self.record_fields(record).items():
            if value is None or (isinstance(value, list | tuple | set) and not value):
                continue
            text = ",".join(map(str, value)) if isinstance(value, list | tuple | set) else str(value)
            if isinstance(value, float):
                text = f"{value:.1f}"
            # A newline in a value (a database may be named so) must not start a forged record of its own.
            needs_quotes = not text or any(c in text for c in ' "=') or not text.isprintable()
            parts.append(f"{key}={json.dumps(text, ensure_ascii=False) if needs_quotes else text}")
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return self.redact(line)


class JsonFormatter(_Formatter):
    """One JSON object per line: time, level, logger, message and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        document: dict[str, Any] = {
            "time": self.timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": self.redact(record.getMessage()),
        }
        for key, value in self.record_fields(record).items():
            if isinstance(value, set):
                value = sorted(value)
            document[key] = self.redact(value) if isinstance(value, str) else value
        if record.exc_info:
            document["traceback"] = self.redact(self.formatException(record.exc_info))
        return json.dumps(document, ensure_ascii=False, default=str)


def configure_logging(log_format: LogFormat, redact: _Redactor) -> logging.Handler:
    """Send every log record of the process to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(redact) if log_format == "json" else PlainFormatter(redact))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    # APScheduler warns on every run skipped because the previous one is still going: for a check on a
    # hung database that is one line per interval, and the check's own errors already say it.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    logging.captureWarnings(True)
    return handler


# -- the daemon ------------------------------------------------------------------------------------


RELOAD_NAMES = 20  # names a reload's line lists of each kind (added, removed, changed); the others are counted


def first_names(names: Iterable[str], limit: int = RELOAD_NAMES) -> list[str]:
    """The first `limit` of `names` in order, then "and M more": a fleet template edited over 500 databases
    changes 500 checks, and the reload's line named every one of them."""
    ordered = sorted(names)
    return ordered if len(ordered) <= limit else [*ordered[:limit], f"and {len(ordered) - limit} more"]


def changed_checks(old: Config, new: Config) -> list[str]:
    """The checks of both configs whose definition differs, by name: a field of the check, or the SQL of a custom
    one (its `query` file, read at each load, edited in place while the check's fields stay the same)."""
    before = {c.name: c for c in old.checks}
    return sorted(c.name for c in new.checks if c.name in before and (
        c != before[c.name] or (c.is_custom and before[c.name].is_custom
                                and new.custom_sql(c) != old.custom_sql(before[c.name]))))


class Daemon:
    """The running pieces of one daemon process; `start`, then `reload` on SIGHUP, then `stop`.

    Fleet mode: `template` is the config as written (checks may name a source), `config` the one running: each
    source's targets (those of this daemon's `shard`) with one check per target (`monitor.fleet.expand`). When
    discovery finds other targets, the running config follows without a reload: new targets are scheduled
    (jittered), the checks of targets gone stop and their series are removed.
    """

    def __init__(self, config: Config, redact: _Redactor | None = None, shard: Shard = ALL) -> None:
        self.template = config
        self.config = config
        self.shard = shard
        self.discovery: Discovery | None = None
        self._retarget_lock = threading.Lock()
        self.redact = redact or _Redactor()
        self.redact.learn(config)
        self.history: History | None = None
        self.exporter: MetricsExporter | None = None
        self.monitor: Monitor | None = None
        self.poller: Poller | None = None
        self.live: list[LiveReader] = []
        self._advised: set[str] = set()  # checks whose missing index was logged (once per process)
        self._advised_notes: set[tuple[str, str]] = set()  # (check, kind) of standing notes logged
        self._fix_totals_read: dict[str, float] = {}  # database -> when its fix records were last read
        self._fix_totals_lock = threading.Lock()
        self._fix_totals_unread: set[str] = set()  # databases whose fix records could not be read (logged once)

    def start(self) -> None:
        """Open the state store, serve metrics, then start polling. Raises `DaemonStartError`."""
        from monitor.metrics import MetricsServeError

        validate_urls(self.config)
        self.config = self._expanded(self.template)
        state_path = self.config.state.path or default_state_path()
        try:
            self.history = History(state_path, self.config.state.retention)
        except (OSError, sqlite3.Error) as exc:
            raise DaemonStartError(f"state path {state_path}: cannot open the history file: {exc}") from None
        self.monitor = Monitor(self.config, state=self.history)
        self.exporter = MetricsExporter(self.config)
        # From what each server said last time: a start never waits on a server (see Monitor.place).
        self.exporter.restore(self.history, functools.partial(self.monitor.subject, ask=False), self.config)
        if self.shard.count > 1:
            self.exporter.shard(self.shard.index, self.shard.count)
        if self.discovery is not None:
            for name, state in self.discovery.states.items():
                self._discovery_status(name, state)
        try:
            self.exporter.serve()
        except MetricsServeError as exc:
            self.history.close()
            raise DaemonStartError(str(exc)) from None
        self.poller = Poller(self.monitor, self.on_result, history=self.history,
                             on_server_limit=self._server_limit)
        self._export_servers()
        # Until a live database's reader first counted its checks, their runs' new groups are held (see
        # `MetricsExporter.live_starting`): the stream's first count compares with the groups saved before.
        streamed = streamed_checks(self.config, self.monitor)
        self.exporter.live_starting({name: [c.name for c in checks] for name, checks in streamed.items()})
        self.poller.start()
        self._forget_removed_live_groups()
        self._start_live()
        for name in streamed.keys() - {reader.database for reader in self.live}:
            self.exporter.live_settled(name)  # no reader after all
        if self.discovery is not None:
            self.discovery.start()
        log.info("dupewatch daemon started", extra=fields(
            version=__version__, checks=len(self.config.checks), databases=len(self.config.databases),
            metrics=self.exporter.url, history=str(state_path),
            shard=str(self.shard) if self.shard.count > 1 else None))

    # -- fleet mode (monitor/fleet/) -------------------------------------------------------------------

    def _expanded(self, template: Config) -> Config:
        """The config to run: `template` with its sources' targets (listed now, the first time), sharded."""
        if not template.needs_targets and self.shard.count == 1:
            self.discovery = None
            return template
        if template.needs_targets:
            if self.discovery is None or self.discovery.config.sources != template.sources \
                    or set(self.discovery.states) != set(used_sources(template)):
                if self.discovery is not None:
                    self.discovery.stop()
                self.discovery = Discovery(template, on_change=self._targets_changed,
                                           on_status=self._discovery_status)
                self.discovery.refresh()
            else:
                self.discovery.config = template
        targets = self.discovery.targets() if self.discovery is not None else {}
        return expand(template, targets, self.shard)

    def _discovery_status(self, source: str, state: SourceState) -> None:
        if self.exporter is not None:
            self.exporter.discovery(source, up=state.up, failed=not state.up,
                                    targets=None if state.targets is None else len(state.targets),
                                    last_success=state.last_success)

    def _targets_changed(self, targets: Targets) -> None:
        """Discovery found other targets: run the same checks over them (on the discovery thread)."""
        if self.monitor is None or self.poller is None or self.exporter is None:
            return
        with self._retarget_lock:
            new = expand(self.template, targets, self.shard)
            old_names = set(self.config.names)
            self.config = new
            self.exporter.reload(new)  # first, so a late result of a removed target cannot revive its series
            self.monitor.retarget(new)
            self.poller.reload(self.monitor, only_new=True)
            self._export_servers()
        names = set(new.names)
        log.info("fleet targets changed", extra=fields(
            checks=len(new.checks), added=len(names - old_names), removed=len(old_names - names)))

    def _export_servers(self) -> None:
        """How many of our checks each server of the running fleet targets takes at once now."""
        assert self.exporter is not None and self.poller is not None
        servers = {d.server for d in self.config.databases.values() if isinstance(d, TargetDatabaseConfig)}
        self.exporter.servers({server: self.poller.budget.server_limit(server) for server in servers},
                              self.config.fleet.server_connections)

    def _server_limit(self, server: str, limit: int) -> None:
        """A server took fewer of our checks at once (it ran out of connections), or one more again."""
        if self.exporter is not None:
            self.exporter.server_limit(server, limit, self.config.fleet.server_connections)
        log.info("server connection limit changed", extra=fields(
            server=server, limit=limit, cap=self.config.fleet.server_connections))

    def on_result(self, result: CheckResult) -> None:
        """Called on a worker thread after every run: update the metrics, log one line."""
        assert self.exporter is not None and self.poller is not None
        self.exporter.observe(result)
        if result.status != "error":
            self._refresh_fix_totals(result.database)
        base = dict(check=result.name, database=result.database, duration_ms=round(result.duration_ms, 1))
        if result.status == "error":
            log.error("check failed", extra=fields(
                **base, failures=self.poller.failures(result.name), retry_in_s=self._retry_in(result.name),
                error=result.error))
        else:
            # A first run's groups are its baseline, none counted as new (the line after it says so): its line
            # said new_groups=100000 while dupewatch_new_duplicate_groups_total stayed 0.
            more = dict(mode=result.mode, rows_scanned=result.rows_scanned,
                        new_groups=0 if result.first_run else result.new_groups) \
                if result.rows_scanned is not None else {}
            log.info("check finished", extra=fields(
                **base, status=result.status, groups=result.groups, excess_rows=result.excess_rows, **more))
        self._log_notes(result)
        if result.first_run and result.rows_scanned is not None and result.status != "error":
            log.info("first run of the check: no state saved by an earlier run, so the groups it found are the "
                     "baseline, none counted as new", extra=fields(check=result.name, database=result.database,
                                                                  groups=result.groups))
        if result.index_advice and result.name not in self._advised:
            self._advised.add(result.name)
            log.warning("check needs an index to run incrementally at the cost of its new rows", extra=fields(
                check=result.name, database=result.database, create=result.index_advice))

    def _log_notes(self, result: CheckResult) -> None:
        """An incremental run's notes: a standing condition (late rows, rows in the future) once per check, what
        one run did every time."""
        from monitor.incremental import standing

        for note in result.notes:
            kind = standing(note)
            if kind is not None and (result.name, kind) in self._advised_notes:
                continue
            if kind is not None:
                self._advised_notes.add((result.name, kind))
            log.warning(note, extra=fields(check=result.name, database=result.database))

    def _refresh_fix_totals(self, database: str) -> None:
        """Read the fix records of `database` (at most every FIX_TOTALS_SECONDS, on the worker thread that
        just ran one of its checks), so `dupewatch_fix_deleted_rows_total` and `dupewatch_fix_restored_rows_total` count
        fixes and undos of other processes."""
        assert self.exporter is not None and self.monitor is not None
        now = time.monotonic()
        every = FLEET_FIX_TOTALS_SECONDS if isinstance(self.config.databases.get(database), TargetDatabaseConfig) \
            else FIX_TOTALS_SECONDS
        with self._fix_totals_lock:
            if now - self._fix_totals_read.get(database, -every) < every:
                return
            self._fix_totals_read[database] = now
        try:
            db = self.monitor.database(database)
        except DatabaseRemoved:  # a fleet target that discovery removed while its check ran
            return
        totals = read_totals(db)
        if isinstance(totals, FixTotals):
            self._fix_totals_unread.discard(database)
            self.exporter.fix_totals(database, totals.deleted, restored=totals.restored)
        elif database not in self._fix_totals_unread:
            # Read right after a successful run of the database: a failure is the records' own (the privilege a
            # separate detection role lacks, a column an older dupewatch's records lack, the table dropped
            # mid-read), and the counters would say "no row deleted" without a word. A privilege is suggested
            # only where the server coded its refusal as one.
            self._fix_totals_unread.add(database)
            grant = (f" ({totals.privilege}: grant the detection role SELECT on dupewatch_fix, see README)"
                     if totals.privilege else "")
            log.warning("fix records cannot be read: dupewatch_fix_deleted_rows_total and "
                        f"dupewatch_fix_restored_rows_total do not count the fixes of this database{grant}",
                        extra=fields(database=database, error=totals.reason))

    def _retry_in(self, name: str) -> float | None:
        assert self.poller is not None
        next_run = self.poller.next_run(name)
        if next_run is None:
            return None
        return round(max((next_run - datetime.now().astimezone()).total_seconds(), 0.0), 1)

    def reload(self) -> bool:
        """Load the config file again and switch to it; an invalid file is logged and changes nothing."""
        assert self.monitor is not None and self.poller is not None and self.exporter is not None
        path = self.config.path
        if path is None:
            log.error("config reload failed: the running config was not loaded from a file")
            return False
        try:
            template = load_config(path)
            validate_urls(template)
        except ConfigError as exc:
            log.error("config reload failed, still running the previous config", extra=fields(error=str(exc)))
            return False
        self.redact.learn(template)
        with self._retarget_lock:
            self.template = template
            new = self._expanded(template)
        for section in ("metrics", "state"):
            if getattr(new, section) != getattr(self.config, section):
                log.warning(f"[{section}] changed: restart the daemon to apply it")
        if static_label_names(new) != self.exporter.metrics.static:
            log.warning("static label names changed: restart the daemon to export them (the label set of a "
                        "series cannot change while Prometheus scrapes it)")
        old_names, old_config = set(self.config.names), self.config
        old_monitor, monitor = self.monitor, Monitor(new, state=self.history)
        new = monitor.config = self._resolvable(new, monitor)
        new_names = set(new.names)
        self.config, self.monitor = new, monitor
        self.exporter.reload(new)  # first, so a late result of a removed check cannot revive its series
        self.poller.reload(self.monitor)
        self._export_servers()
        if self.discovery is not None:
            self.discovery.start()  # a new one (its sources changed); a running one carries on
        previous = self.live
        self._start_live({reader.database: reader for reader in previous})
        # Each new reader opens its stream, then has its predecessor read to the end of the old one and stop (no
        # gap); one that cannot open in time leaves its predecessor to be stopped here (a gap it reports).
        deadline = time.monotonic() + LIVE_HANDOVER_SECONDS
        for reader in self.live:
            reader.took_over.wait(max(deadline - time.monotonic(), 0.0))
        stop_live(previous)
        self._forget_removed_live_groups()  # once the previous readers, which may save them, stopped
        old_monitor.close()  # cancels the old version's queries still running on the servers
        # What changed, by name: an operator who edited a check sees the reload took it (a changed definition
        # starts its incremental state again, a first run).
        log.info("config reloaded", extra=fields(
            checks=len(new.checks), added=first_names(new_names - old_names),
            removed=first_names(old_names - new_names), changed=first_names(changed_checks(old_config, new))))
        return True

    def _resolvable(self, new: Config, monitor: Monitor) -> Config:
        """`new` with each added or changed table check that does not resolve against its database (unknown
        table or column) replaced by its previous version, or left out when it is new; one log line for each."""
        previous = {c.name: c for c in self.config.checks}
        checks = []
        for check in new.checks:
            old = previous.get(check.name)
            # A fleet target's check reports a table it lacks when it runs: resolving hundreds here would connect
            # to every target at once.
            if check.is_custom or old == check or check.selects_targets:
                checks.append(check)
                continue
            try:
                monitor.resolve(check)
            except CheckDefinitionError as exc:
                keep = old is not None and old.database in new.databases
                log.error("config reload: check does not resolve, " + (
                    "still running its previous version" if keep else "not added"),
                    extra=fields(check=check.name, error=str(exc)))
                if keep and old is not None:
                    checks.append(old)
                continue
            except CheckError:
                pass  # the database is unreachable now: the check reports that itself, run after run
            checks.append(check)
        return new if checks == new.checks else new.model_copy(update={"checks": checks})

    def stop(self) -> list[str]:
        """Stop polling and serving; returns the checks whose queries were abandoned in flight."""
        abandoned = sorted(self.poller.running()) if self.poller else []
        if self.discovery is not None:
            self.discovery.stop()
        stop_live(self.live)
        if self.poller is not None:
            self.poller.shutdown(wait=False)
        if self.exporter is not None:
            self.exporter.close()
        if self.monitor is not None:
            self.monitor.close()  # idle connections close now; those in flight die with the process
        if self.history is not None:
            self.history.close()
        log.info("dupewatch daemon stopped", extra=fields(abandoned=abandoned))
        return abandoned


    # -- live mode (monitor/live/) ---------------------------------------------------------------------

    def _start_live(self, previous: dict[str, LiveReader] | None = None) -> None:
        assert self.monitor is not None and self.exporter is not None
        for name, database in self.config.databases.items():
            if database.live:
                self.exporter.live_database(name)
        self.live = start_live(self.monitor, _LiveSink(self), previous, remember=True, owner=self._live_owner())

    def _live_owner(self) -> str | None:
        """Who saves the live readers' groups in the state store: this config file and shard (None: the config was
        not loaded from a file, so nothing tells which saved groups are this daemon's)."""
        path = self.config.path
        return None if path is None else json.dumps([str(path.resolve()), str(self.shard)])

    def _forget_removed_live_groups(self) -> None:
        """Delete the live groups this daemon saved for checks its config no longer follows live (a check removed,
        renamed, moved to another database, or of a database no longer `live`): nothing reads them again, each
        holds up to every group of its check, and a check followed live again later would be compared with the
        groups as they were when it left, counting again as new those its runs counted meanwhile."""
        owner = self._live_owner()
        if owner is None or self.history is None or self.monitor is None:
            return
        if self.discovery is not None and any(s.targets is None for s in self.discovery.states.values()):
            return  # a source not listed yet: its targets' checks are missing from the config, not removed
        kept = [(name, check.name) for name, checks in streamed_checks(self.config, self.monitor).items()
                for check in checks]
        try:
            forgotten = self.history.forget_live_groups(owner, kept)
        except sqlite3.Error as exc:
            log.warning("the live groups of removed checks could not be deleted", extra=fields(error=str(exc)))
            return
        for database, check in forgotten:
            log.info("deleted the live groups saved for a check no longer followed live",
                     extra=fields(check=check, database=database))


class _LiveSink:
    """Live readers report here: figures and events to the metrics; a gap also to the log and the poller."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon

    def live_figures(self, check: str, database: str, figures: Figures) -> None:
        assert self.daemon.exporter is not None
        self.daemon.exporter.live_figures(check, database, figures)
        if figures.new_groups:
            log.info("new duplicate groups from the change stream", extra=fields(
                check=check, database=database, new_groups=figures.new_groups, groups=figures.groups,
                excess_rows=figures.excess_rows))

    def live_events(self, database: str, events: int, lag_seconds: float | None) -> None:
        assert self.daemon.exporter is not None
        self.daemon.exporter.live_events(database, events, lag_seconds)

    def live_following(self, database: str, following: bool) -> None:
        assert self.daemon.exporter is not None
        self.daemon.exporter.live_following(database, following)

    def live_overflow(self, database: str, check: str) -> None:
        assert self.daemon.exporter is not None
        self.daemon.exporter.live_overflow(database)

    def live_left(self, database: str, check: str) -> None:
        assert self.daemon.exporter is not None
        self.daemon.exporter.live_left(check, database)

    def live_gap(self, database: str, reason: str) -> None:
        assert self.daemon.exporter is not None and self.daemon.poller is not None
        self.daemon.exporter.live_gap(database, reason)
        log.warning("live stream gap: changes may have been missed, polling the database's checks now",
                    extra=fields(database=database, error=reason))
        for check in self.daemon.config.checks:
            if check.database == database:
                self.daemon.poller.run_now(check.name)


def validate_urls(config: Config) -> None:
    """Parse every database URL and load its driver (no connection): a bad URL, an unset variable or a
    driver that is not installed is a config error up front."""
    for name, database in config.databases.items():
        db = Database(name, database)
        db.engine  # noqa: B018 (creating the engine loads the driver; it connects only when used)
        db.dispose()
    for name, source in config.sources.items():
        parse_url(source.resolved_url(name), f"sources.{name}.url")


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's per-thread malloc arenas before the worker threads start.

    Each scheduler, pool and HTTP thread would otherwise get an arena of its own, which inflates resident
    memory by tens of MB for no speed gain in an I/O-bound daemon (the MALLOC_ARENA_MAX trick, applied here).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_ARENA_MAX, arenas)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to tune
        pass


_M_ARENA_MAX = -8


def run(config: Config, log_format: LogFormat = "plain", shard: Shard = ALL) -> int:
    """Run the daemon until SIGTERM or SIGINT; returns the exit code. Raises `DaemonStartError`."""
    redact = _Redactor()
    configure_logging(log_format, redact)
    limit_malloc_arenas()
    signals: queue.SimpleQueue[int] = queue.SimpleQueue()

    def enqueue(signum: int, _frame: Any) -> None:
        signals.put(signum)  # SimpleQueue.put is reentrant: safe inside a signal handler

    for handled in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(handled, enqueue)
    daemon = Daemon(config, redact, shard)
    daemon.start()
    try:
        while True:
            try:
                signum = signals.get(timeout=SIGNAL_POLL_SECONDS)
            except queue.Empty:
                continue
            if signum == signal.SIGHUP:
                daemon.reload()
                continue
            log.info("stopping", extra=fields(signal=signal.Signals(signum).name))
            break
    finally:
        daemon.stop()
    return 0
