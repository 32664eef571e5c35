"""The fleet view (`t` on the main screen): targets by checks with their state, worst first.

One row per target (a fleet source's database or `database/schema`, or a `[databases]` entry), one column per
check as configured (a fleet check's template name). `:` jumps to a target by name (k9s-style: the exact name,
else the first containing what was typed), `/` filters by label (`env=prod`, several terms all apply) or by
name, Enter goes back to the main screen showing that target's checks. The single-database view is unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Input, Static

from monitor.config import Config
from monitor.fleet.targets import series_labels
from monitor.tui.screens.base import DashboardScreen
from monitor.tui.state import CheckState, Dashboard
from monitor.tui.widgets.footer import Footer

# Worst first: a failing check, then rows found (most first), then not run yet, then clean.
_RANK = {"error": 0, "duplicates": 1, "violations": 1, "pending": 2, "running": 2, "ok": 3}


@dataclass
class TargetRow:
    """One target: its checks' states by check (template) name, and its labels."""

    target: str
    labels: dict[str, str]
    read_only: bool
    states: dict[str, CheckState] = field(default_factory=dict)

    @property
    def rank(self) -> tuple[int, int, str]:
        worst = min((_RANK.get(s.status, 2) for s in self.states.values()), default=2)
        rows = sum(s.figure or 0 for s in self.states.values())
        return worst, -rows, self.target

    def matches(self, terms: list[str]) -> bool:
        """Every term holds: `name=value` on a label, or text in the target's name."""
        for term in terms:
            name, sep, value = term.partition("=")
            if sep and self.labels.get(name.strip()) != value.strip():
                return False
            if not sep and term.lower() not in self.target.lower():
                return False
        return True


def target_rows(config: Config, dashboard: Dashboard) -> tuple[list[str], list[TargetRow]]:
    """The check (template) names in config order, and one row per target, worst first."""
    rows: dict[str, TargetRow] = {}
    checks: list[str] = []
    for state in dashboard:
        check = state.config
        name, _database, target = series_labels(config, check, ())
        if name not in checks:
            checks.append(name)
        database = config.databases.get(check.database)
        row = rows.setdefault(target, TargetRow(target, dict(database.labels) if database else {},
                                                bool(database and database.read_only)))
        row.states[name] = state
    return checks, sorted(rows.values(), key=lambda r: r.rank)


def cell(state: CheckState | None) -> str:
    if state is None:
        return ""
    status = state.status
    if status == "error":
        return "✖ error"
    if status in ("duplicates", "violations"):
        return f"▲ {state.figure or 0:,}"
    if status == "ok":
        return "● ok"
    return "…"


class FleetScreen(DashboardScreen):
    BINDINGS = [
        Binding("enter", "open_target", "Checks"),
        Binding("colon", "jump", "Jump"),
        Binding("slash", "filter", "Filter"),
        Binding("escape", "back", "Back"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.ready = False
        self.filter_text = ""
        self.rows: list[TargetRow] = []
        self._kept: str | None = None  # the target the cursor was on (see `refresh_all`)

    def compose(self) -> ComposeResult:
        yield Static(id="title")
        yield DataTable(id="targets", cursor_type="row", zebra_stripes=True)
        yield Input(placeholder="target name (Enter to jump, Esc to cancel)", id="jump")
        yield Input(placeholder="filter: label=value or part of a name (Enter to keep, Esc to clear)", id="filter")
        yield Footer()

    def on_mount(self) -> None:
        for box in self.query(Input):
            box.display = False
        self.ready = True
        self.refresh_all()
        self.query_one(DataTable).focus()

    def refresh_all(self) -> None:
        checks, rows = target_rows(self.dash.config, self.dash.dashboard)
        terms = self.filter_text.split()
        # Before the rows change: the cursor follows its target, not its index, through re-sorting results and
        # a filter typed letter by letter (matching nothing on the way).
        current = self.selected() or self._kept
        self.rows = [r for r in rows if r.matches(terms)]
        table = self.query_one(DataTable)
        table.clear(columns=True)
        table.add_columns("TARGET", *checks)
        for row in self.rows:
            name = f"{row.target} (read-only)" if row.read_only else row.target
            table.add_row(name, *(cell(row.states.get(c)) for c in checks), key=row.target)
        names = [r.target for r in self.rows]
        if current in names:
            table.move_cursor(row=names.index(current))
        self._kept = current
        failing = sum(1 for r in self.rows if r.rank[0] == 0)
        found = sum(1 for r in self.rows if r.rank[0] == 1)
        shown = f"{len(self.rows)} of {len(rows)} targets" if terms else f"{len(rows)} targets"
        self.query_one("#title", Static).update(
            f"[b]Fleet[/b]  {shown} · {found} with rows found · {failing} failing  (worst first)")

    def refresh_check(self, _name: str) -> None:
        self.refresh_all()

    def selected(self) -> str | None:
        table = self.query_one(DataTable)
        if not self.rows or table.cursor_row >= len(self.rows) or table.cursor_row < 0:
            return None
        return self.rows[table.cursor_row].target

    def move_to(self, target: str) -> bool:
        """Put the cursor on `target`: the exact name, else the first target containing it."""
        names = [r.target for r in self.rows]
        index = names.index(target) if target in names else \
            next((i for i, n in enumerate(names) if target.lower() in n.lower()), None)
        if index is None:
            return False
        self.query_one(DataTable).move_cursor(row=index)
        return True

    # -- actions ---------------------------------------------------------------------------------

    def action_jump(self) -> None:
        box = self.query_one("#jump", Input)
        box.value = ""
        box.display = True
        box.focus()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def action_back(self) -> None:
        boxes = [b for b in self.query(Input) if b.display]
        if not boxes:
            self.dash.pop_screen()
            return
        for box in boxes:
            box.display = False
            if box.id == "filter" and box.value:
                box.value = ""
        self.query_one(DataTable).focus()

    def action_open_target(self) -> None:
        """Back to the main screen, showing the checks of the target under the cursor."""
        target = self.selected()
        self.dash.pop_screen()
        if target is not None:
            show = getattr(self.dash.screen, "show_target", None)
            if show is not None:
                show(target)

    @on(DataTable.RowSelected, "#targets")
    def _row_selected(self) -> None:
        self.action_open_target()

    @on(Input.Submitted, "#jump")
    def _jumped(self, event: Input.Submitted) -> None:
        event.input.display = False
        self.query_one(DataTable).focus()
        if event.value.strip() and not self.move_to(event.value.strip()):
            self.notify(f"no target named {event.value.strip()!r}", severity="warning", timeout=4)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter_text = event.value.strip()
        self.refresh_all()

    @on(Input.Submitted, "#filter")
    def _filter_kept(self, event: Input.Submitted) -> None:
        event.input.display = False
        self.query_one(DataTable).focus()
