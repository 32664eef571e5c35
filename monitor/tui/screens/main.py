"""The main screen: every check, its figures and trend, the totals, and the keys that act on them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Static

from monitor.fleet.targets import series_labels, target_of
from monitor.tui.format import counted
from monitor.tui.screens.base import DashboardScreen
from monitor.tui.state import CheckState
from monitor.tui.widgets.checks_table import ChecksTable, row_cells
from monitor.tui.widgets.details import CheckDetails, error_line
from monitor.tui.widgets.footer import Footer
from monitor.tui.widgets.live_status import LiveStatus
from monitor.tui.widgets.totals import HeaderTotals
from monitor.tui.widgets.trend import TrendChart

if TYPE_CHECKING:
    pass

SORTS = ["config order", "most rows", "largest change", "name"]
DEMO_BANNER = (
    "[b]DEMO[/b]  five real race-condition incidents, replayed live on a local SQLite database  ·  "
    "[b]↑↓[/b] pick a check  ·  [b]Enter[/b] its duplicate rows  ·  [b]?[/b] help"
)


class MainScreen(DashboardScreen):
    BINDINGS = [
        Binding("enter", "drill", "Open"),
        Binding("r", "run_selected", "Re-run"),
        Binding("R", "run_all", "All"),
        Binding("p", "toggle_pause", "Pause"),
        Binding("slash", "filter", "Filter"),
        Binding("s", "cycle_sort", "Sort"),
        Binding("f", "fix", "Fix"),
        Binding("F", "fixes", "Fixes"),
        Binding("t", "targets", "Targets"),
        Binding("question_mark", "help", "Help"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.ready = False
        self.sort_mode = SORTS[0]
        self.filter_text = ""
        self.target: str | None = None  # from the fleet view: only this target's checks are shown

    def compose(self) -> ComposeResult:
        yield HeaderTotals(id="header")
        yield LiveStatus(id="live-status")
        if self.dash.demo:
            yield Static(DEMO_BANNER, id="banner")
        yield ChecksTable(id="checks")
        yield Static(id="errors")
        with Horizontal(id="preview"):
            yield CheckDetails(id="details")
            yield TrendChart(id="preview-trend")
        yield Input(placeholder="filter checks by name (Enter to keep, Esc to clear)", id="filter")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(ChecksTable)
        states = list(self.dash.dashboard.checks.values())
        table.setup(states)
        table.show(states, self._cells)
        self.query_one("#filter", Input).display = False
        self.ready = True
        self.refresh_all()
        self.refresh_live()
        table.focus()

    # -- updates (called by the app on the UI thread) ----------------------------------------------

    def _cells(self, state: CheckState) -> dict[str, Any]:
        return row_cells(state, self.dash.now(), paused=self.dash.paused)

    def refresh_check(self, name: str) -> None:
        state = self.dash.dashboard[name]
        table = self.query_one(ChecksTable)
        table.update(name, self._cells(state))
        if self.sort_mode != SORTS[0]:
            table.order(self._ordered_names())
        self._refresh_summary(details=name == table.selected_name)

    def refresh_all(self) -> None:
        table = self.query_one(ChecksTable)
        for state in self.dash.dashboard.checks.values():
            table.update(state.name, self._cells(state))
        table.order(self._ordered_names())
        self._refresh_summary()

    def refresh_live(self) -> None:
        self.query_one(LiveStatus).show(self.dash.live_states)

    def _refresh_summary(self, details: bool = True) -> None:
        dash = self.dash
        self.query_one(HeaderTotals).show(dash.dashboard, dash.now(), paused=dash.paused, sort=self.sort_mode,
                                          filter_text=self.filter_text)
        failing = [s for s in dash.dashboard.checks.values() if s.last is not None and s.last.status == "error"]
        errors = self.query_one("#errors", Static)
        errors.display = bool(failing)
        errors.update("")
        if failing:
            lines = [Text.assemble((f"{s.name}: ", "bold"), error_line(s, dash.retry_in(s.name)))
                     for s in failing[:5]]
            if len(failing) > 5:
                lines.append(Text(f"… and {counted(len(failing) - 5, 'more failing check')}", style="dim"))
            errors.update(Text("\n").join(lines))
        if details:  # the preview chart is the costly part: redraw it only for the check it shows
            self._refresh_details()

    def _refresh_details(self) -> None:
        name = self.query_one(ChecksTable).selected_name
        state = self.dash.dashboard[name] if name else None
        kept_by = self.dash.monitor.keeper_description(name) if name else None
        self.query_one(CheckDetails).show(state, self.dash.retry_in(name) if name else None, kept_by)
        self.query_one("#preview-trend", TrendChart).show(list(state.history) if state else [], self.dash.now(),
                                                          violations=state is not None and state.finds == "violations")

    # -- ordering and filtering ------------------------------------------------------------------

    def _visible(self) -> list[CheckState]:
        needle = self.filter_text.lower()
        config = self.dash.config
        return [s for s in self.dash.dashboard.checks.values() if needle in s.name.lower()
                and (self.target is None or series_labels(config, s.config, ())[2] == self.target)]

    def show_target(self, target: str) -> None:
        """Only the checks of `target` (chosen in the fleet view); Esc shows every check again."""
        self.target = target
        self._apply_filter()
        self.notify(f"showing the checks of {target}; Esc shows every check", timeout=4)

    def _ordered_names(self) -> list[str]:
        states = self._visible()
        config_rank = {name: i for i, name in enumerate(self.dash.dashboard.checks)}
        if self.sort_mode == "most rows":  # the ROWS column, largest first
            states.sort(key=lambda s: (-(s.figure or 0), config_rank[s.name]))
        elif self.sort_mode == "largest change":  # the CHANGE column, largest growth first
            states.sort(key=lambda s: (-(s.change or 0), -(s.figure or 0), config_rank[s.name]))
        elif self.sort_mode == "name":
            states.sort(key=lambda s: s.name.lower())
        return [s.name for s in states]

    def _apply_filter(self) -> None:
        table = self.query_one(ChecksTable)
        table.show(self._visible(), self._cells)
        table.order(self._ordered_names())
        self._refresh_summary()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self._apply_filter()

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self) -> None:
        self.query_one("#filter", Input).display = False
        self.query_one(ChecksTable).focus()

    @on(DataTable.RowHighlighted, "#checks")
    def _highlighted(self) -> None:
        self._refresh_details()
        self.refresh_bindings()  # `f` hides on a read-only target
        name = self._selected_name()
        if name:
            # Runs of the check under the cursor keep their first page of groups, so Enter opens it at once.
            self.dash.monitor.keep_first_page(name)

    @on(DataTable.RowSelected, "#checks")
    def _selected(self) -> None:
        self.action_drill()

    # -- actions ------------------------------------------------------------------------------

    def _selected_name(self) -> str | None:
        return self.query_one(ChecksTable).selected_name

    def action_drill(self) -> None:
        name = self._selected_name()
        if name:
            self.dash.open_check(name)

    def action_run_selected(self) -> None:
        name = self._selected_name()
        if name:
            self.dash.run_checks(name)

    def action_run_all(self) -> None:
        self.dash.run_checks(None)

    def action_toggle_pause(self) -> None:
        self.dash.toggle_pause()

    def action_cycle_sort(self) -> None:
        self.sort_mode = SORTS[(SORTS.index(self.sort_mode) + 1) % len(SORTS)]
        self.query_one(ChecksTable).order(self._ordered_names())
        self._refresh_summary()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = False
        if box.value:
            box.value = ""  # fires Input.Changed, which shows every check again
        self.filter_text = ""
        self.target = None
        self._apply_filter()
        self.query_one(ChecksTable).focus()

    def current_check(self) -> str | None:
        return self._selected_name()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`t` (the fleet view) only when some check runs on a fleet target."""
        if action == "targets":
            return any(target_of(self.dash.config, c) is not None for c in self.dash.config.checks)
        return super().check_action(action, parameters)

    def action_targets(self) -> None:
        from monitor.tui.screens.fleet import FleetScreen

        self.dash.push_screen(FleetScreen())

    def action_fix(self) -> None:
        name = self._selected_name()
        if name:
            self.dash.request_fix(name)
