"""What every per-check screen shares: the check's title, description, live summary and trend chart.

Subclasses add the table underneath (groups for a table check, rows for a custom query).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Static

from monitor.detect import CheckResult
from monitor.tui.format import change_text, format_count, format_duration, format_interval, relative_time
from monitor.tui.messages import LoadFailed, TrendLoaded
from monitor.tui.screens.base import DashboardScreen
from monitor.tui.state import CheckState, result_from_run
from monitor.tui.widgets.checks_table import RUNNING_GRACE_SECONDS
from monitor.tui.widgets.details import definition, error_line
from monitor.tui.widgets.footer import Footer
from monitor.tui.widgets.paged_table import PagedTable
from monitor.tui.widgets.palette import status_text
from monitor.tui.widgets.trend import TrendChart

if TYPE_CHECKING:
    pass

TREND_WINDOW_SECONDS = 24 * 3600
SHORT_SCREEN_ROWS = 35  # below this, the overview (figures and chart) takes 8 rows instead of 12


class CheckScreen(DashboardScreen):
    """Base for the drill-down screens of one check."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("r", "reload", "Re-run"),
        Binding("f", "fix", "Fix"),
        Binding("F", "fixes", "Fixes", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, check: str) -> None:
        super().__init__()
        self.check = check
        self.ready = False
        self._trend: list[CheckResult] = []

    @property
    def state(self) -> CheckState:
        return self.dash.dashboard[self.check]

    def compose(self) -> ComposeResult:
        config = self.state.config
        yield Static(Text.assemble(("◀ ", "dim"), (config.name, "bold #ffaf00"), ("  on ", "dim"),
                                   (config.database, "bold")), id="title")
        about = Text(definition(config, self.dash.monitor.keeper_description(config.name)), style="dim")
        if config.description:
            about = Text.assemble(config.description, "\n", about)
        yield Static(about, id="description")
        with Horizontal(id="overview"):
            yield Static(id="summary")
            yield TrendChart(id="trend")
        yield Static(id="caption")
        yield PagedTable(id="rows")
        yield Static(id="status")
        yield Footer()

    def on_resize(self) -> None:
        """A short terminal gives the list of groups (or rows) the room: the overview shrinks to its figures."""
        self.query_one("#overview").styles.height = 12 if self.size.height >= SHORT_SCREEN_ROWS else 8

    def on_mount(self) -> None:
        self._trend = list(self.state.history)
        self.ready = True
        self.refresh_check(self.check)
        self.load_trend()
        self.query_one(PagedTable).focus()

    # -- live figures -----------------------------------------------------------------------------

    def refresh_check(self, name: str) -> None:
        if name != self.check:
            return
        last = self.state.last
        if last is not None and (not self._trend or self._trend[-1].finished_at < last.finished_at):
            self._trend.append(last)
        self.query_one("#summary", Static).update(self._summary())
        self.query_one(TrendChart).show(self._trend, self.dash.now(), violations=self.state.finds == "violations")

    def _summary(self) -> Text:
        state, now = self.state, self.dash.now()
        running_for = state.running_for(now)
        if running_for is not None and running_for >= RUNNING_GRACE_SECONDS:
            status = "running"
        else:
            status = state.last.status if state.last else "pending"
        status_cell = status_text(status)
        if self.dash.paused:  # paused keeps what the last run found: a paused check is not a clean one
            status_cell.append("  ‖ paused", style="dim")
        age = state.age_seconds(now)
        known = state.last_known
        stale = known is not None and known is not state.last
        suffix = f"  (last known, {relative_time((now - known.finished_at).total_seconds())})" \
            if stale and known is not None else ""
        groups = known.groups if known else None
        if state.finds == "violations":
            figures: list[tuple[str, Text | str]] = [("violating", format_count(groups) + suffix)]
            previous = state.previous.groups if state.previous else None
            change = change_text(previous, groups) if not stale else Text("—", style="dim")
        else:
            excess = known.excess_rows if known else None
            figures = [("groups", format_count(groups) + suffix), ("excess rows", format_count(excess) + suffix)]
            change = change_text(state.previous_excess, state.excess)
        rows: list[tuple[str, Text | str]] = [
            ("status", status_cell),
            *figures,
            ("change", change),
            ("last run", "never" if age is None else relative_time(age)),
            ("duration", format_duration(state.last.duration_ms) if state.last else "—"),
            ("interval", format_interval(state.config.interval)),
        ]
        text = Text()
        for label, value in rows:
            text.append(f"{label:<12}", style="dim")
            text.append_text(value if isinstance(value, Text) else Text(value, style="bold"))
            text.append("\n")
        if state.last is not None and state.last.status == "error":
            text.append_text(error_line(state, self.dash.retry_in(self.check)))
        return text

    @work(thread=True, exit_on_error=False, exclusive=True, group="trend")
    def load_trend(self) -> None:
        """Read the check's runs over the chart window from the state store (off the UI thread)."""
        since = self.dash.now().timestamp() - TREND_WINDOW_SECONDS
        history = self.dash.history
        runs = history.since(self.dash.monitor.subject(self.check), since) if history else []
        self.post_message(TrendLoaded(self.check, runs))

    @on(TrendLoaded)
    def _trend_loaded(self, message: TrendLoaded) -> None:
        stored = [result_from_run(run, self.state.config) for run in message.runs]
        newest = stored[-1].finished_at if stored else None
        live = [r for r in self._trend if newest is None or r.finished_at > newest]
        self._trend = [*stored, *live]
        self.query_one(TrendChart).show(self._trend, self.dash.now(), violations=self.state.finds == "violations")

    @on(LoadFailed)
    def _load_failed(self, message: LoadFailed) -> None:
        self.set_status(Text.assemble(("✖ ", "bold #ff5f5f"), (message.error, "#ff5f5f")))

    def set_status(self, text: Text | str) -> None:
        self.query_one("#status", Static).update(text)

    def set_caption(self, text: Text | str) -> None:
        self.query_one("#caption", Static).update(text)

    # -- actions ------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.dismiss()

    def action_reload(self) -> None:
        self.dash.run_checks(self.check)

    def action_fix(self) -> None:
        self.dash.request_fix(self.check)



def elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
