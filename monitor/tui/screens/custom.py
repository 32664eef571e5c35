"""The drill-down of a custom query check: the rows its query returns (each one offence), a page at a time."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.worker import get_current_worker

from monitor.detect import GROUP_PAGE_SIZE
from monitor.engine import CheckError
from monitor.tui.format import format_count, plural
from monitor.tui.messages import CustomRowsLoaded, LoadFailed
from monitor.tui.screens.detail import CheckScreen
from monitor.tui.widgets.paged_table import PagedTable, cell


class CustomRowsScreen(CheckScreen):
    def __init__(self, check: str) -> None:
        super().__init__(check)
        self.loaded = 0
        self.exhausted = False
        self.loading = False
        self.listed = False  # a page has been shown
        self._generation = 0

    def on_mount(self) -> None:  # CheckScreen.on_mount runs after this one (Textual calls each class's handler)
        if self.state.finds == "violations":
            caption = "Violating rows: each row the check's query returns breaks its invariant (a fix does not apply)"
        else:
            caption = "Rows the check's query returns: each one is a duplicate group"
        self.set_caption(Text(caption, style="bold"))
        self.set_status(Text("running the query…", style="dim"))
        self._request()

    def _request(self) -> None:
        self.loading = True
        self.load_rows(self.loaded, self._generation)

    @work(thread=True, exit_on_error=False, exclusive=True, group="custom")
    def load_rows(self, offset: int, generation: int) -> None:
        try:
            columns, rows = self.dash.monitor.custom_rows(self.check, offset=offset, limit=GROUP_PAGE_SIZE)
        except CheckError as exc:
            self.post_message(LoadFailed(self.check, str(exc)))
            return
        if get_current_worker().is_cancelled or generation != self._generation:
            return
        self.post_message(CustomRowsLoaded(self.check, offset, columns, rows))

    @on(CustomRowsLoaded)
    def _loaded(self, message: CustomRowsLoaded) -> None:
        self.loading = False
        table = self.query_one(PagedTable)
        if not table.columns:
            for name in message.columns:
                table.add_column(name, key=f"col:{name}")
        for offset, row in enumerate(message.rows):
            table.add_row(*(cell(value) for value in row), key=str(message.offset + offset))
        self.loaded += len(message.rows)
        self.exhausted = len(message.rows) < GROUP_PAGE_SIZE
        self.listed = True
        self._show_progress()

    def refresh_check(self, name: str) -> None:
        """A run finished: the count above and the caption below say the same figure."""
        super().refresh_check(name)
        if name == self.check and self.listed:
            self._show_progress()

    def _show_progress(self) -> None:
        if self.loaded == 0:
            self.set_status(Text("● the query returned no rows when the list was read", style="bold #5fd75f"))
            return
        more = "" if self.exhausted else "  ·  scroll down for more"
        total = self.state.groups
        if total == self.loaded or total is None:
            self.set_status(Text.assemble((f"{self.loaded:,}", "bold"), f" {plural(self.loaded, 'row')} loaded{more}"))
            return
        self.set_status(Text.assemble((f"{self.loaded:,}", "bold"), " loaded, ", (format_count(total), "bold"),
                                      f" at the last run (r: reload the list){more}"))

    @on(LoadFailed)
    def _failed(self) -> None:
        self.loading = False

    @on(PagedTable.NearEnd)
    def _near_end(self) -> None:
        if not self.loading and not self.exhausted:
            self._request()

    def action_reload(self) -> None:
        super().action_reload()
        self._generation += 1
        self.loaded = 0
        self.exhausted = False
        self.query_one(PagedTable).clear()
        self._request()
