"""The rows of one duplicate group, every column, the row a fix would keep marked (keeper first, as the
engine orders them: `TableCheck.keeper_order()`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from monitor.detect import DuplicateGroup
from monitor.engine import CheckError
from monitor.tui.format import counted, format_spread, plural
from monitor.tui.messages import LoadFailed, MembersLoaded
from monitor.tui.screens.base import DashboardScreen
from monitor.tui.widgets.footer import Footer
from monitor.tui.widgets.paged_table import PagedTable, cell

if TYPE_CHECKING:
    pass

KEEP = Text("★ keep", style="bold #5fd75f")
EXTRA = Text("✖ extra", style="#ffaf00")


class GroupRowsScreen(DashboardScreen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("r", "reload", "Reload"),
        Binding("f", "fix", "Fix"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, check: str, group: DuplicateGroup) -> None:
        super().__init__()
        self.check = check
        self.group = group
        self.columns: list[str] = []
        self._changes_seen: int | None = None  # the app's table_changes for this check when the rows loaded

    def compose(self) -> ComposeResult:
        config = self.dash.dashboard[self.check].config
        key = ", ".join(f"{name}={cell(value).plain}" for name, value in zip(config.key or [], self.group.key,
                                                                             strict=False))
        title = Text.assemble(("◀ ", "dim"), (self.check, "bold #ffaf00"), ("  /  group ", "dim"), (key, "bold"))
        yield Static(title, id="title")
        yield Static(self._facts(self.dash.monitor.keeper_description(self.check)), id="caption")
        yield PagedTable(id="rows")
        yield Static(Text("loading rows…", style="dim"), id="status")
        yield Footer()

    def _facts(self, kept_by: str | None) -> Text:
        config = self.dash.dashboard[self.check].config
        if kept_by is None:
            kept_by = f"{config.keep} by {', '.join(config.order_by) if config.order_by else 'primary key'}"
        facts = Text.assemble((counted(self.group.rows, "row"), "bold #ffaf00"),
                              " shares this key.  " if self.group.rows == 1 else " share this key.  ")
        if config.timestamp:
            facts.append_text(format_spread(self.group.spread))
            facts.append("  ")
        facts.append(f"A fix keeps the {kept_by} (★) and removes the others.", style="dim")
        return facts

    def on_mount(self) -> None:
        self._changes_seen = self.dash.table_changes[self.check]
        self.load_members()
        self.query_one(PagedTable).focus()

    def on_screen_resume(self) -> None:
        """Back on top after a fix or an undo of this check: the rows shown may be gone or back."""
        if self._changes_seen is not None and self.dash.table_changes[self.check] != self._changes_seen:
            self._changes_seen = self.dash.table_changes[self.check]
            self.load_members()

    @work(thread=True, exit_on_error=False, exclusive=True, group="members")
    def load_members(self) -> None:
        try:
            members = self.dash.monitor.members(self.check, self.group.key)
        except CheckError as exc:
            self.post_message(LoadFailed(self.check, str(exc)))
            return
        self.post_message(MembersLoaded(self.check, self.group.key, members))

    @on(MembersLoaded)
    def _loaded(self, message: MembersLoaded) -> None:
        members = message.members
        if members.kept_by:
            self.query_one("#caption", Static).update(self._facts(members.kept_by))
        table = self.query_one(PagedTable)
        table.clear(columns=True)
        table.add_column("", key="mark")
        for name in members.columns:
            table.add_column(name, key=f"col:{name}")
        for index, row in enumerate(members.rows):
            mark = KEEP if index == members.keeper else EXTRA
            table.add_row(mark, *(cell(value) for value in row), key=str(index))
        status = Text.assemble((f"{len(members.rows):,}", "bold"), f" {plural(len(members.rows), 'row')}")
        if members.truncated:
            status.append(f" (the first {len(members.rows):,}; the group has more)", style="dim")
        if not members.rows:
            status = Text("this group no longer exists: its rows were fixed or deleted", style="bold #5fd75f")
        self.query_one("#status", Static).update(status)

    @on(LoadFailed)
    def _failed(self, message: LoadFailed) -> None:
        self.query_one("#status", Static).update(Text(f"✖ {message.error}", style="#ff5f5f"))

    def action_back(self) -> None:
        self.dismiss()

    def action_reload(self) -> None:
        self.load_members()

    def action_fix(self) -> None:
        self.dash.request_fix(self.check, self.group.key)
