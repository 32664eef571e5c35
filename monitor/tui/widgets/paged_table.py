"""A `DataTable` that asks for its next page when the operator scrolls or moves the cursor near its end."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from monitor.words import value_text

PREFETCH_ROWS = 20  # ask for the next page this many rows before the end, so scrolling rarely waits


class PagedTable(DataTable[Any]):
    BINDINGS = [
        Binding("enter", "select_cursor", "Open", key_display="⏎", show=False),  # screens say what Enter does
        Binding("end,G", "scroll_bottom", "Bottom", show=False),
        Binding("home,g", "scroll_top", "Top", show=False),
    ]

    DEFAULT_CSS = """
    PagedTable { height: 1fr; }
    PagedTable > .datatable--header { text-style: bold; }
    """

    class NearEnd(Message):
        """The operator is close to the last loaded row."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value > old_value and new_value >= self.max_scroll_y - PREFETCH_ROWS:
            self.post_message(self.NearEnd())

    def watch_cursor_coordinate(self, old: Any, new: Any) -> None:
        super().watch_cursor_coordinate(old, new)
        # Only an operator's move counts: adding rows also re-validates the cursor.
        if old != new and new.row > old.row and new.row >= self.row_count - PREFETCH_ROWS:
            self.post_message(self.NearEnd())


def cell(value: Any, width: int = 48) -> Text:
    """A database value as a table cell (written by `value_text`, like everywhere else): NULL dimmed, long text
    cut with an ellipsis, numbers right-aligned."""
    if value is None:
        return Text("NULL", style="dim italic")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Text(value_text(value), justify="right")
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        return Text(f"{value_text(raw[:16])}{'…' if len(raw) > 16 else ''}", style="dim")
    text = value_text(value)
    if len(text) > width:
        text = text[: width - 1] + "…"
    return Text(text)
