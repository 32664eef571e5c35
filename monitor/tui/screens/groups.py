"""The drill-down of a table check: its duplicate groups, largest first, a page at a time as the operator
scrolls, each with its key, its size and how far apart its rows were born (race or logic bug).
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from rich.text import Text
from textual import on, work
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.worker import get_current_worker

from monitor.detect import DuplicateGroup, GroupCursor, as_datetime
from monitor.engine import CheckError
from monitor.tui.format import format_count, format_spread, moment_text, plural
from monitor.tui.messages import GroupsPageLoaded, LoadFailed
from monitor.tui.screens.detail import CheckScreen, elapsed_ms
from monitor.tui.widgets.paged_table import PagedTable, cell


def loaded_text(loaded: int, total: int | None, *, more: bool, run_since: bool = False) -> Text:
    """How many groups are listed, against the last run's count. The pages are read after that run while the
    application writes, so the two may disagree; say how instead of "85 of 84". `run_since`: the last run
    finished after the list was read (its count is newer than the list: `r` reads the list again)."""
    if total is None:
        return Text.assemble((f"{loaded:,}", "bold"), f" {plural(loaded, 'group')} loaded")
    if run_since and (loaded != total or more):
        return Text.assemble((f"{loaded:,}", "bold"), " loaded, then the last run found ",
                             (format_count(total), "bold #ffaf00"), " (r: reload the list)")
    if loaded > total:
        return Text.assemble((f"{loaded:,}", "bold"), " loaded, ", (format_count(total), "bold"),
                             " at the last run, ", (f"{loaded - total:,} new since", "bold #ffaf00"))
    if not more and loaded < total:
        return Text.assemble("all ", (f"{loaded:,}", "bold"), " loaded, ", (format_count(total), "bold"),
                             " at the last run, ", (f"{total - loaded:,} gone since", "bold"))
    return Text.assemble((f"{loaded:,}", "bold"), " of ", (format_count(total), "bold"),
                         f" {plural(total, 'group')} loaded")


class GroupsScreen(CheckScreen):
    BINDINGS = [
        # priority: shown in the footer over the focused table's own (hidden) Enter
        Binding("enter", "open_group", "Rows", key_display="⏎", priority=True),
    ]

    def __init__(self, check: str) -> None:
        super().__init__(check)
        self.groups: list[DuplicateGroup] = []
        self.next_cursor: GroupCursor | None = None
        self.loading = False
        self.first_page_ms: float | None = None
        self._generation = 0
        self._columns_ready = False
        self._changes_seen: int | None = None  # the app's table_changes for this check when the list loaded
        self._listed_after: datetime | None = None  # when the run the list is compared with finished

    def on_mount(self) -> None:  # CheckScreen.on_mount runs after this one (Textual calls each class's handler)
        self._changes_seen = self.dash.table_changes[self.check]
        self.set_caption(Text("Duplicate groups, largest first", style="bold"))
        kept = self.dash.monitor.kept_first_page(self.check)
        if kept is not None:  # the last run kept it: shown in this very refresh, no worker round trip
            self._page_loaded(GroupsPageLoaded(self.check, None, kept, 0.0))
            return
        self.set_status(Text("loading the first page of groups…", style="dim"))
        self._request(None)

    # -- paging -------------------------------------------------------------------------------------

    def _request(self, after: GroupCursor | None, *, fresh: bool = False) -> None:
        self.loading = True
        self.load_page(after, self._generation, fresh)

    @work(thread=True, exit_on_error=False, exclusive=True, group="groups")
    def load_page(self, after: GroupCursor | None, generation: int, fresh: bool = False) -> None:
        """One page of groups from the engine (keyset-paginated: never the whole table). `fresh`: query the
        first page even when the last run kept one (the table changed since)."""
        started = time.perf_counter()
        try:
            page = self.dash.monitor.groups(self.check, after=after, fresh=fresh)
        except CheckError as exc:
            self.post_message(LoadFailed(self.check, str(exc)))
            return
        if get_current_worker().is_cancelled or generation != self._generation:
            return
        self.post_message(GroupsPageLoaded(self.check, after, page, elapsed_ms(started)))

    @on(GroupsPageLoaded)
    def _page_loaded(self, message: GroupsPageLoaded) -> None:
        self.loading = False
        page = message.page
        table = self.query_one(PagedTable)
        if not self._columns_ready:
            self._add_columns(page.key_columns)
        if message.after is None:
            self.first_page_ms = message.elapsed_ms
            last = self.state.last
            self._listed_after = last.finished_at if last is not None else None
        start = len(self.groups)
        for offset, group in enumerate(page.groups):
            table.add_row(*self._cells(start + offset + 1, group), key=str(start + offset))
        self.groups.extend(page.groups)
        self.next_cursor = page.next_cursor
        self._show_progress()

    @on(LoadFailed)
    def _failed(self, message: LoadFailed) -> None:
        self.loading = False

    def _add_columns(self, key_columns: list[str]) -> None:
        table = self.query_one(PagedTable)
        table.add_column(Text("#", justify="right"), key="n")
        for name in key_columns:
            table.add_column(name, key=f"key:{name}")
        table.add_column(Text("ROWS", justify="right"), key="rows")
        if self.state.config.timestamp:  # SPREAD first: the race-versus-bug verdict matters most in 80 columns
            table.add_column("SPREAD", key="spread")
            table.add_column("FIRST BORN", key="first")
        if self.state.config.incremental:
            table.add_column("FIRST SEEN", key="seen")
        self._columns_ready = True

    def _cells(self, number: int, group: DuplicateGroup) -> list[Any]:
        cells: list[Any] = [Text(f"{number:,}", style="dim", justify="right")]
        cells.extend(cell(value) for value in group.key)
        cells.append(Text(f"{group.rows:,}", style="bold #ffaf00", justify="right"))
        if self.state.config.timestamp:
            first = as_datetime(group.first_seen)
            cells.append(format_spread(group.spread))
            cells.append(Text(moment_text(first) if first else "—", style="dim"))
        if self.state.config.incremental:
            cells.append(self._seen_cell(group))
        return cells

    def _seen_cell(self, group: DuplicateGroup) -> Text:
        """`● new 12:03:04` for a group first seen by the latest run, else when dupewatch first saw it."""
        seen = self.dash.monitor.group_first_seen(self.check, group.key)
        if seen is None:
            return Text("—", style="dim")
        moment, new = seen
        when = moment_text(moment)
        return Text(f"● new {when}", style="bold #ffaf00") if new else Text(when, style="dim")

    def refresh_check(self, name: str) -> None:
        """A run finished: the figures above and the caption below say the same count."""
        super().refresh_check(name)
        if name == self.check and self._listed_after is not None:
            self._show_progress()

    def _show_progress(self) -> None:
        total = self.state.groups
        loaded = len(self.groups)
        last = self.state.last
        run_since = last is not None and self._listed_after is not None and last.finished_at > self._listed_after
        if loaded == 0 and self.next_cursor is None and not (run_since and total):
            self.set_status(Text("● no duplicate groups right now", style="bold #5fd75f"))
            return
        parts = [loaded_text(loaded, total, more=self.next_cursor is not None, run_since=run_since)]
        if self.next_cursor is not None:
            parts.append(Text("scroll down for more", style="dim"))
        parts.append(Text("Enter: the group's rows", style="dim"))
        self.set_status(Text("  ·  ").join(parts))

    @on(PagedTable.NearEnd)
    def _near_end(self) -> None:
        if not self.loading and self.next_cursor is not None:
            self._request(self.next_cursor)

    # -- actions --------------------------------------------------------------------------------

    @on(DataTable.RowSelected, "#rows")
    def _selected(self) -> None:
        self.action_open_group()

    def selected_group(self) -> DuplicateGroup | None:
        table = self.query_one(PagedTable)
        if table.row_count == 0:
            return None
        index = int(table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value or 0)
        return self.groups[index] if index < len(self.groups) else None

    def action_open_group(self) -> None:
        group = self.selected_group()
        if group is not None:
            from monitor.tui.screens.rows import GroupRowsScreen

            self.app.push_screen(GroupRowsScreen(self.check, group))

    def action_reload(self) -> None:
        """Re-run the check and reload the groups from the first page (they change as the application writes)."""
        super().action_reload()
        self._reload()

    def on_screen_resume(self) -> None:
        """Back on top after a fix or an undo of this check (`f` here, or `F`): the listed groups are stale."""
        if self._changes_seen is not None and self.dash.table_changes[self.check] != self._changes_seen:
            self._reload()

    def _reload(self) -> None:
        self._changes_seen = self.dash.table_changes[self.check]
        self._generation += 1
        self.groups.clear()
        self.next_cursor = None
        self.first_page_ms = None
        self.query_one(PagedTable).clear()
        self.set_status(Text("reloading groups…", style="dim"))
        self._request(None, fresh=True)

    def action_fix(self) -> None:
        group = self.selected_group()
        self.dash.request_fix(self.check, group.key if group else None)
