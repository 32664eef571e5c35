"""The dashboard app: wires the engine, the scheduler and the history store to the screens.

`DashboardApp` is the factory tests reuse: the monitor, the history store, the poller and the clock can
all be injected. Results arrive from scheduler threads as messages (`CheckStarted`, `CheckFinished`);
the handlers update the model (`Dashboard`) and then the visible screens, always on the UI thread.
When the config has a `[metrics]` section, `run_dashboard` serves them (`MetricsExporter`) and every result
is observed on the scheduler's thread, before it is posted to the UI.

`f` opens the confirm-to-fix modal (`screens/fix.py`), `F` the past fixes and undo (`screens/fixes.py`);
both import `monitor.fix` only when opened.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from textual import on, work
from textual.app import App
from textual.css.query import NoMatches
from textual.worker import Worker, WorkerState, active_worker

from monitor.config import Config, ConfigError
from monitor.db import first_line, register_owner_lookup
from monitor.detect import GROUP_PAGE_SIZE, CheckResult
from monitor.engine import Monitor
from monitor.history import History, default_state_path
from monitor.schedule import Poller
from monitor.tui import has_terminal
from monitor.tui.format import counted
from monitor.tui.messages import CheckFinished, CheckStarted, FixRequest, HistoryLoaded, LiveReported
from monitor.tui.state import HISTORY_POINTS, Dashboard, result_from_run
from monitor.tui.widgets.live_status import LiveState

if TYPE_CHECKING:
    from monitor.live import Figures, LiveReader, LiveSink
    from monitor.metrics import MetricsExporter

log = logging.getLogger("dupewatch.tui")
# A query run by a thread worker is owned by it: leaving its screen cancels it (`DashboardApp.abandon`).
register_owner_lookup(lambda: active_worker.get(None))

PollerFactory = Callable[..., Poller]
LiveStarter = Callable[[Monitor, "LiveSink"], "list[LiveReader]"]
FixHandler = Callable[["DashboardApp", FixRequest], None]
Clock = Callable[[], datetime]
TICK_SECONDS = 1.0  # relative times ("12s ago") and running timers are refreshed this often


def default_poller(monitor: Monitor, on_result: Callable[[CheckResult], None], *, history: History | None,
                   on_start: Callable[[str], None]) -> Poller:
    return Poller(monitor, on_result, history=history, on_start=on_start)


def default_live(monitor: Monitor, sink: LiveSink) -> list[LiveReader]:
    from monitor.live import start_live

    return start_live(monitor, sink)


def local_now() -> datetime:
    return datetime.now().astimezone()


class DashboardApp(App[int]):
    """The live dashboard over one configuration."""

    CSS_PATH = "dashboard.tcss"
    TITLE = "dupewatch"
    ENABLE_COMMAND_PALETTE = False

    def __init__(self, config: Config, *, monitor: Monitor | None = None, history: History | None = None,
                 poller_factory: PollerFactory = default_poller, clock: Clock = local_now, demo: bool = False,
                 on_fix: FixHandler | None = None, tick: bool = True, exporter: MetricsExporter | None = None,
                 fix_batch_size: int | None = None, live_starter: LiveStarter = default_live) -> None:
        super().__init__()
        self.config = config
        self.history = history if history is not None else open_history(config)
        self._owns_history = history is None
        self.monitor = monitor or Monitor(config, first_page_size=GROUP_PAGE_SIZE, state=self.history)
        self._owns_monitor = monitor is None
        if self.monitor.state is None:  # incremental checks keep their state where the daemon keeps it
            self.monitor.state = self.history
        self.dashboard = Dashboard(config)
        self.demo = demo
        self.now = clock
        self.on_fix = on_fix
        self.exporter = exporter
        self.fix_batch_size = fix_batch_size
        self._fixes: dict[str, threading.Event] = {}  # check -> cancel event of its fix running here
        self.table_changes: Counter[str] = Counter()  # check -> fixes and undos that changed its table here
        self._fixes_lock = threading.Lock()
        self._tick = tick
        self.poller = poller_factory(self.monitor, self._result_from_thread, history=self.history,
                                     on_start=self._start_from_thread)
        self._advised: set[str] = set()  # checks whose missing index was shown (once per session)
        self._noted: set[tuple[str, str]] = set()  # (check, kind) of standing notes shown
        self.started_at = time.perf_counter()
        self.first_paint_ms: float | None = None
        self.startup_notice: str | None = None  # shown once the screen is up (e.g. metrics served elsewhere)
        self.live_starter = live_starter
        self.live_readers: list[LiveReader] = []
        self.live_states = {name: LiveState(polling="no change stream" if self.monitor.database(name).rules
                                            .change_stream_absent else None)
                            for name, database in config.databases.items() if database.live}
        self._live_refusals: set[str] = set()  # databases whose refusal was shown

    # -- lifecycle ------------------------------------------------------------------------------

    def on_mount(self) -> None:
        from monitor.tui.screens.main import MainScreen

        self.push_screen(MainScreen())
        if self.startup_notice:
            self.notify(self.startup_notice, title="Metrics", timeout=10)
        self.load_history()
        self.poller.start()
        if self.live_states:
            self.live_readers = self.live_starter(self.monitor, _LiveSink(self))
        if self._tick:
            self.set_interval(TICK_SECONDS, self.refresh_all)
        self.call_after_refresh(self._painted)

    def _painted(self) -> None:
        self.first_paint_ms = (time.perf_counter() - self.started_at) * 1000
        # Everything built so far (modules, widgets, styles) lives as long as the app: keep it out of the
        # collector's full passes, which otherwise show up as the longest waits for a key.
        gc.freeze()

    def on_unmount(self) -> None:
        self.stop()
        gc.unfreeze()  # what the app built may be collected again (several apps run in one test process)

    def stop(self) -> None:
        """Stop polling and release what this app opened (runs in flight finish on their own threads).

        A fix in progress is asked to stop after its current batch (it stays resumable).
        """
        with self._fixes_lock:
            for cancel in self._fixes.values():
                cancel.set()
        self.poller.shutdown(wait=False)
        readers, self.live_readers = self.live_readers, []
        for reader in readers:
            reader.stop(timeout=1.0)
        if self._owns_monitor:
            self.monitor.close()  # cancels the queries still running, then closes the pools
        else:
            self.monitor.cancel_queries([w for w in self.workers if w.is_running])

    # -- the safety net of background work --------------------------------------------------------

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.worker_changed(event)

    def worker_changed(self, event: Worker.StateChanged) -> None:
        """An unexpected exception in a thread worker (a history file error, a bug) becomes an error
        notification on the screen (click to dismiss) and a log record; the dashboard keeps running."""
        if event.state is not WorkerState.ERROR:
            return
        worker, error = event.worker, event.worker.error
        log.error("background task %s failed", worker.name, exc_info=error)
        what = worker.group if worker.group != "default" else worker.name
        self.notify(f"{what} failed: {first_line(error) if error else 'unknown error'} (click to dismiss; the "
                    "dashboard keeps running)", title="Background task failed", severity="error", timeout=600)

    def abandon(self, workers: list[Worker[Any]]) -> None:
        """Cancel these workers and, off the UI thread, the queries they are running (a screen was left)."""
        running = [w for w in workers if w.is_running]
        for worker in running:
            worker.cancel()
        if running:
            threading.Thread(target=self.monitor.cancel_queries, args=(running,), name="dupewatch-abandon",
                             daemon=True).start()

    # -- results from the scheduler's threads ---------------------------------------------------------

    def _start_from_thread(self, name: str) -> None:
        self.post_message(CheckStarted(name))  # thread-safe

    def _result_from_thread(self, result: CheckResult) -> None:
        if self.exporter is not None:
            self.exporter.observe(result)
        failures = self.poller.failures(result.name)
        self.post_message(CheckFinished(result, failures))

    @on(CheckStarted)
    def _check_started(self, message: CheckStarted) -> None:
        self.dashboard[message.name].started_at = self.now()
        self.refresh_check(message.name)

    @on(CheckFinished)
    def _check_finished(self, message: CheckFinished) -> None:
        state = self.dashboard[message.result.name]
        state.apply(message.result)
        state.failures = message.failures
        self.refresh_check(message.result.name)
        self._advise_index(message.result)
        self._say_notes(message.result)

    def _say_notes(self, result: CheckResult) -> None:
        """Once per check, kind and session: a standing condition of an incremental check (late rows waiting for
        the full pass, rows in the future)."""
        from monitor.incremental import standing

        for note in result.notes:
            kind = standing(note)
            if kind is not None and (result.name, kind) not in self._noted:
                self._noted.add((result.name, kind))
                self.notify(f"{result.name}: {note}", title="Incremental check", severity="warning", timeout=30)

    @on(LiveReported)
    def _live_reported(self, message: LiveReported) -> None:
        state = self.live_states.get(message.database)
        if state is None:
            return
        if message.following is not None:
            state.following = message.following
        if message.gap is not None:  # changes may have been missed: the database's checks run now (the poll)
            state.following = False
            state.gaps += 1
            if not self.paused:
                for check in self.config.checks:
                    if check.database == message.database:
                        self.poller.run_now(check.name)
        state.events += message.events
        if message.lag_seconds is not None:
            state.lag_seconds = message.lag_seconds
        self.refresh_live()

    def _show_live_refusals(self) -> None:
        """A reader the server refused (wal_level, a role without REPLICATION...): its one line, once."""
        for reader in self.live_readers:
            if reader.refused and reader.database not in self._live_refusals:
                self._live_refusals.add(reader.database)
                self.live_states[reader.database].polling = "refused"
                self.notify(reader.refused, title="Live mode refused", severity="error", timeout=30)
                self.refresh_live()

    def refresh_live(self) -> None:
        for screen in self.screen_stack:
            refresh = getattr(screen, "refresh_live", None)
            if refresh is not None and getattr(screen, "ready", False):
                with contextlib.suppress(NoMatches):
                    refresh()

    def _advise_index(self, result: CheckResult) -> None:
        """Once per check and session: the index an incremental check lacks (also in its details panel)."""
        if result.index_advice and result.name not in self._advised:
            self._advised.add(result.name)
            self.notify(f"{result.name}: incremental runs need an index to stay cheap: {result.index_advice}",
                        title="Index advice", severity="warning", timeout=30)

    @work(thread=True, exit_on_error=False, exclusive=True, group="history")
    def load_history(self) -> None:
        """Recent runs from the state store, so trends survive a restart (read off the UI thread)."""
        runs = {name: self.history.recent(self.monitor.subject(name), HISTORY_POINTS) for name in self.config.names}
        self.post_message(HistoryLoaded(runs))

    @on(HistoryLoaded)
    def _history_loaded(self, message: HistoryLoaded) -> None:
        for name, runs in message.runs.items():
            if runs:
                state = self.dashboard[name]
                state.load([result_from_run(run, state.config) for run in runs])
        self.refresh_all()

    # -- pushing state to the screens -------------------------------------------------------------

    def refresh_check(self, name: str) -> None:
        for screen in self.screen_stack:
            if not getattr(screen, "ready", False):
                continue  # not composed yet: it reads the model when it mounts
            refresh = getattr(screen, "refresh_check", None)
            if refresh is not None:
                with contextlib.suppress(NoMatches):  # a screen being torn down as the app quits
                    refresh(name)

    def refresh_all(self) -> None:
        if self.live_readers:
            self._show_live_refusals()
        for screen in self.screen_stack:
            if not getattr(screen, "ready", False):
                continue
            refresh = getattr(screen, "refresh_all", None)
            with contextlib.suppress(NoMatches):
                if refresh is not None:
                    refresh()
                elif hasattr(screen, "refresh_check"):
                    screen.refresh_check(getattr(screen, "check", ""))

    # -- what the screens ask for ------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self.poller.paused

    def retry_in(self, name: str) -> float | None:
        """Seconds until a failing check is retried (its backoff), or None when it is not failing."""
        state = self.dashboard[name]
        if not state.failures or self.paused:
            return None
        next_run = self.poller.next_run(name)
        if next_run is None:
            return None
        return max((next_run - self.now()).total_seconds(), 0.0)

    def open_check(self, name: str) -> None:
        from monitor.tui.screens.custom import CustomRowsScreen
        from monitor.tui.screens.groups import GroupsScreen

        check = self.config.check(name)
        self.push_screen(CustomRowsScreen(name) if check.is_custom else GroupsScreen(name))

    def run_checks(self, name: str | None) -> None:
        """`r` / `R`: run now. While paused, the check still runs once, on request."""
        names = [name] if name else self.config.names
        if self.paused:
            for check in names:
                if not self.poller.is_running(check):
                    self.run_once(check)
        else:
            self.poller.run_now(name)
        what = name or ("the only check" if len(names) == 1 else f"all {counted(len(names), 'check')}")
        self.notify(f"Re-running {what}", timeout=2)

    @work(thread=True, exit_on_error=False, group="manual")
    def run_once(self, name: str) -> None:
        self.poller.run_once(name)

    def toggle_pause(self) -> None:
        if self.paused:
            self.poller.resume()
            self.notify("Polling resumed", timeout=2)
        else:
            self.poller.pause()
            self.notify("Polling paused: press p to resume", timeout=3)
        self.refresh_all()

    def read_only(self, name: str) -> bool:
        """Whether the check's database (or fleet source) says `read_only = true`: no fix is offered on it."""
        try:
            check = self.config.check(name)
        except ConfigError:
            return False
        database = self.config.databases.get(check.database)
        return database is not None and database.read_only

    def request_fix(self, name: str, key: tuple[Any, ...] | None = None) -> None:
        """`f`: open the confirm-to-fix modal for the check (`key`: the group the operator was on).

        Custom query checks cannot be fixed, and say why. An `on_fix` hook, when given, takes the request
        instead (for embedding the dashboard elsewhere).
        """
        check = self.config.check(name)
        if self.read_only(name):
            self.notify(f"{name} runs on a read-only target (read_only = true): no fix is offered on it.",
                        title="Cannot fix", severity="warning", timeout=6)
            return
        if check.is_custom:
            self.notify(f"{name} is a custom query check: it reports rows that break an invariant, not "
                        "duplicate rows of one table, so there is nothing dupewatch can delete safely.",
                        title="Cannot fix", severity="warning", timeout=6)
            return
        request = FixRequest(name, key)
        if self.on_fix is not None:
            self.on_fix(self, request)
            return
        from monitor.tui.screens.fix import FixScreen

        kwargs = {"batch_size": self.fix_batch_size} if self.fix_batch_size else {}
        self.push_screen(FixScreen(request, **kwargs))

    def open_fixes(self) -> None:
        """`F`: the fixes recorded in the configured databases, with undo."""
        from monitor.tui.screens.fixes import FixesScreen

        if not isinstance(self.screen, FixesScreen):
            self.push_screen(FixesScreen())

    def rerun(self, name: str) -> None:
        """Run a check again after a fix or an undo changed its table (also while paused: the operator acted).
        Screens showing the check's groups or rows reload when they are back on top (`table_changes`)."""
        self.table_changes[name] += 1
        if self.paused:
            if not self.poller.is_running(name):
                self.run_once(name)
        else:
            self.poller.run_now(name)

    def fix_started(self, check: str, cancel: threading.Event) -> None:
        """Called by a fix worker: quitting the dashboard asks it to stop between batches."""
        with self._fixes_lock:
            self._fixes[check] = cancel

    def fix_ended(self, check: str) -> None:
        with self._fixes_lock:
            self._fixes.pop(check, None)

    def action_help(self) -> None:
        from monitor.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())


class _LiveSink:
    """The `LiveSink` of the dashboard's live readers: each report becomes a message (readers run on threads)."""

    def __init__(self, app: DashboardApp) -> None:
        self.app = app

    def live_figures(self, check: str, database: str, figures: Figures) -> None:
        pass  # the checks' figures come from their runs here; the stream's lag and gaps are shown

    def live_events(self, database: str, events: int, lag_seconds: float | None) -> None:
        self.app.post_message(LiveReported(database, events=events, lag_seconds=lag_seconds))

    def live_gap(self, database: str, reason: str) -> None:
        log.warning("live stream gap: %s", reason)
        self.app.post_message(LiveReported(database, gap=reason))

    def live_following(self, database: str, following: bool) -> None:
        self.app.post_message(LiveReported(database, following=following))

    def live_overflow(self, database: str, check: str) -> None:
        pass  # not a gap: the check was counted in full, nothing was missed

    def live_left(self, database: str, check: str) -> None:
        pass  # the dashboard's runs keep counting the check


def open_history(config: Config) -> History:
    path = config.state.path or default_state_path()
    return History(Path(path).expanduser(), config.state.retention)


NO_TERMINAL = ("the dashboard needs a terminal (it reads keys from stdin and draws on stderr); "
               "`dupewatch check` prints the figures once and `dupewatch daemon` runs without one")


class DashboardStartError(Exception):
    """The dashboard cannot start (the metrics endpoint could not be served); one line."""


def start_metrics(config: Config) -> tuple[MetricsExporter | None, str | None]:
    """Serve the config's `[metrics]` (no exporter without that section), and a notice for the operator.

    With the address taken (a daemon with the same config serves the same checks' metrics) the dashboard opens
    without serving them, and says so: it does not need to when the daemon does. Any other problem (a TLS file
    missing, an address that cannot be bound) raises `DashboardStartError`. prometheus-client is imported only
    when the config asks for metrics.
    """
    if config.metrics is None:
        return None, None
    from monitor.metrics import MetricsExporter, MetricsServeError

    exporter = MetricsExporter(config)
    try:
        exporter.serve()
    except MetricsServeError as exc:
        exporter.close()
        if exc.in_use:
            return None, (f"[metrics] {config.metrics.listen} is already served (by the daemon?): this dashboard "
                          "does not serve metrics")
        raise DashboardStartError(f"{exc}; the dashboard serves [metrics] as the daemon does: fix it or open the "
                                  "dashboard with a config without [metrics]") from None
    return exporter, None


def run_dashboard(config: Config, racer_path: Path | None = None, *, demo: bool | None = None) -> int:
    """Run the dashboard in this terminal until the operator quits; returns the exit code.

    Raises `DashboardStartError` before the terminal is taken over when `[metrics]` cannot be served.
    """
    # Coalesced runs are expected here ("skipped: maximum number of running instances"), not news.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    exporter, notice = start_metrics(config)
    if not has_terminal():
        if exporter is not None:
            exporter.close()
        raise DashboardStartError(NO_TERMINAL)
    racer = None
    if racer_path is not None:
        from monitor.demo.racer import Racer

        racer = Racer(racer_path, pace=DEMO_RACER_PACE)
        racer.start()
    app = DashboardApp(config, demo=racer_path is not None if demo is None else demo, exporter=exporter)
    app.startup_notice = notice
    if exporter is not None:
        # As the daemon does: a restart keeps the last figures and success time.
        exporter.restore(app.history, lambda check: app.monitor.subject(check, ask=False), config)
    try:
        code = app.run()
    finally:
        if racer is not None:
            racer.stop()
        app.stop()
        if exporter is not None:
            exporter.close()
    code = code if isinstance(code, int) else (app.return_code or 0)
    _exit_without_waiting_for_queries(code)
    return code


DEMO_RACER_PACE = 1.5


def _exit_without_waiting_for_queries(code: int) -> None:
    """A check can still be running (a 10-minute query): the operator asked to quit, so don't wait for it.

    The scheduler's pool threads are joined at interpreter exit; a query in flight would hold the
    terminal for up to its statement_timeout. Its result is not needed, and it is read-only.
    """
    busy = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon
            and t.is_alive()]
    if not busy:
        return
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and any(t.is_alive() for t in busy):
        time.sleep(0.05)
    if any(t.is_alive() for t in busy):
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
