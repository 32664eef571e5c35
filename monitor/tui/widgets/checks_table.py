"""The main table: one row per check, updated cell by cell as results arrive (never rebuilt)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey, RowKey

from monitor.thresholds import format_percent
from monitor.tui.format import change_text, format_count, format_duration, relative_time, sparkline
from monitor.tui.state import CheckState
from monitor.tui.widgets.palette import status_text

SPARK_WIDTH = 16
RUNNING_GRACE_SECONDS = 0.4  # a check that finishes faster than this never flickers to "running"

# (key, label, width, right-aligned), in the order shown
COLUMNS: list[tuple[str, str, int, bool]] = [
    ("name", "CHECK", 0, False),
    ("database", "DATABASE", 0, False),
    ("status", "STATUS", 12, False),
    ("groups", "GROUPS", 8, True),
    ("excess", "ROWS", 9, True),
    ("percent", "ROWS %", 7, True),
    ("change", "CHANGE", 8, True),
    ("trend", "TREND", SPARK_WIDTH, False),
    ("last", "LAST RUN", 9, True),
    ("duration", "DURATION", 9, True),
]


# What a narrow terminal gives up first: the run time, the sparkline (the chart below has the trend), the database
# (the panel below names it), the groups, then the rows as a share of the table. The check, its status, its rows,
# their change and the age of the figures are always shown: they say whether there is a problem, how big, whether
# it grows, and whether it is current.
DROPPED_FIRST = ("duration", "trend", "database", "groups", "percent")
CELL_PADDING = 2  # DataTable's cell padding, one each side
NAME_MIN_WIDTH = 12


def fitted_columns(width: int, name_width: int, db_width: int) -> tuple[list[str], int]:
    """The columns that fit in `width` cells, and the width of the CHECK column (names cropped past that)."""
    widths = {key: {"name": name_width, "database": db_width}.get(key, size) for key, _, size, _ in COLUMNS}
    shown = [key for key, *_ in COLUMNS]

    def needed() -> int:
        return sum(widths[key] + CELL_PADDING for key in shown) + 1  # and the vertical scrollbar's edge

    for key in DROPPED_FIRST:
        if needed() <= width:
            break
        shown.remove(key)
    spare = width - needed()
    name = max(NAME_MIN_WIDTH, name_width + min(spare, 0))
    return shown, name


class NameText(Text):
    """A check's name as its cell shows it (maybe cropped), knowing the whole name (what rows are ordered by)."""

    check: str = ""


def distinguishing_positions(names: Iterable[str]) -> dict[str, int]:
    """For each name, the index of its first character that no other name shares at that place with the same
    characters before it (the longest common prefix with its nearest name in sorted order); its last character's
    index for a name that is the start of another."""
    ordered = sorted(set(names))

    def common(a: str, b: str) -> int:
        return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))

    found: dict[str, int] = {}
    for i, name in enumerate(ordered):
        shared = max([common(name, ordered[j]) for j in (i - 1, i + 1) if 0 <= j < len(ordered)], default=0)
        found[name] = min(shared, max(len(name) - 1, 0))
    return found


def _head(text: str, cells: int) -> str:
    """The longest start of `text` that fits in `cells` cells of the terminal."""
    used = 0
    for i, char in enumerate(text):
        used += cell_len(char)
        if used > cells:
            return text[:i]
    return text


def cropped(name: str, width: int, distinct_at: int, before: int | None = None) -> str:
    """`name` in at most `width` cells of the terminal (a CJK character takes two), keeping its character at
    `distinct_at` (what tells it from the other checks' names): cropped at its end where that character is within
    the width, else in the middle, the part around that character kept (names of one application often differ only
    at their end: ..._region_europe, ..._region_america). `before`: the cells kept before that character in the
    middle (about half the room by default)."""
    if cell_len(name) <= width or width < 5:
        return name
    if cell_len(name[:distinct_at + 1]) <= width - 1:
        return _head(name, width - 1) + "…"
    head = _head(name, (width - 1) // 2)
    room = width - 1 - cell_len(head)
    start = len(name)  # the longest end within the room, after the head
    while start > len(head) and cell_len(name[start - 1:]) <= room:
        start -= 1
    if start <= distinct_at and before is None:
        return f"{head}…{name[start:]}"
    start = distinct_at  # else about half the room before that character, the rest after it, then "…"
    while start > len(head) and cell_len(name[start - 1:distinct_at]) <= (room // 2 if before is None else before) \
            and cell_len(name[start - 1:distinct_at + 1]) <= room - 1:
        start -= 1
    end = distinct_at + 1
    while end < len(name) and cell_len(name[start:end + 1]) <= room - 1:
        end += 1
    return f"{head}…{name[start:end]}" + ("…" if end < len(name) else "")


def cropped_names(names: Iterable[str], width: int) -> dict[str, str]:
    """Each name as `cropped` shows it in `width` cells, none shown as another is: two crops that each keep their
    name's distinguishing character can still read the same where the parts kept around it do
    (customer_tenant_invoice_daily_per and ..._daily_daily_per both read 'customer_…_daily_per' in 20 cells); those
    names take another part around that character, the first that no other name shows."""
    distinct = distinguishing_positions(names)
    shown = {name: cropped(name, width, at) for name, at in distinct.items()}
    counts = Counter(shown.values())
    taken = {text for text, count in counts.items() if count == 1}
    for name in sorted(n for n, text in shown.items() if counts[text] > 1):
        nearest = sorted(range(width), key=lambda before: abs(before - width // 4))  # about the default first
        choices = [shown[name], *(cropped(name, width, distinct[name], before) for before in nearest)]
        shown[name] = next((c for c in choices if c not in taken), shown[name])
        taken.add(shown[name])
    return shown


def _right(value: str | Text, style: str = "") -> Text:
    text = value if isinstance(value, Text) else Text(value, style=style)
    text.justify = "right"
    return text


class ChecksTable(DataTable[Any]):
    """A `DataTable` keyed by check name."""

    BINDINGS = [Binding("enter", "select_cursor", "Open", key_display="⏎")]

    DEFAULT_CSS = """
    ChecksTable { height: auto; max-height: 65%; }
    ChecksTable > .datatable--header { text-style: bold; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._shown: dict[str, dict[str, Any]] = {}  # what each visible row displays, to skip no-op updates
        # DataTable re-renders every visible cell after any update (its caches key on one global counter);
        # with 50 checks reporting every second that costs more than a frame. Cells are cached here by
        # their own stamp instead, so a result re-renders only the cells it changed.
        self._stamps: dict[tuple[Any, Any], int] = {}
        self._row_stamps: dict[Any, int] = {}
        self._stamp = 0
        self._epoch = 0
        self._name_width = self._db_width = 0
        self._columns: list[str] = []  # the keys of the columns shown, for the width the table has
        self._names: set[str] = set()  # every check shown so far
        # how each of them is shown, cropped told apart from the others, and the width they were cropped for
        self._crops: tuple[dict[str, str], int] | None = None

    def _render_cell(self, row_index: int, column_index: int, base_style: Any, width: int,
                     cursor: bool = False, hover: bool = False) -> Any:
        if row_index < 0 or column_index < 0:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        key = (self._row_locations.get_key(row_index), self._column_locations.get_key(column_index))
        real = self._update_count
        self._update_count = (self._epoch, self._stamps.get(key, 0))  # type: ignore[assignment]
        try:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        finally:
            self._update_count = real

    def _render_line(self, y: int, x1: int, x2: int, base_style: Any) -> Any:
        try:
            row_key, _ = self._get_offsets(y)
        except LookupError:
            return super()._render_line(y, x1, x2, base_style)
        real = self._update_count
        self._update_count = (self._epoch, self._row_stamps.get(row_key, 0))  # type: ignore[assignment]
        try:
            return super()._render_line(y, x1, x2, base_style)
        finally:
            self._update_count = real

    def _invalidate(self) -> None:
        """Rows were added, removed or reordered: every cached cell is stale (its row index moved)."""
        self._epoch += 1

    def setup(self, states: Sequence[CheckState]) -> None:
        """Add the columns (widths fitted to names once, so nothing jumps later) and one row per check."""
        # in cells of the terminal, which a CJK character takes two of
        self._name_width = max([len("CHECK"), *(cell_len(s.name) for s in states)])
        self._db_width = max([len("DATABASE"), *(cell_len(s.config.database) for s in states)])
        self._add_columns(self.size.width or 10_000)

    def _add_columns(self, width: int) -> None:
        self._columns, name_width = fitted_columns(width, self._name_width, self._db_width)
        for key, label, size, right in COLUMNS:
            if key in self._columns:
                size = {"name": name_width, "database": self._db_width}.get(key, size)
                self.add_column(_right(label) if right else label, key=key, width=size)

    def on_resize(self) -> None:
        """Give up (or take back) columns as the terminal narrows (widens); rows keep their values and cursor."""
        if not self._name_width:
            return
        wanted, name_width = fitted_columns(self.size.width, self._name_width, self._db_width)
        current = self.columns.get(ColumnKey("name"))
        if wanted == self._columns and current is not None and current.width == name_width:
            return
        selected = self.selected_name
        names = [self.coordinate_to_cell_key(Coordinate(i, 0)).row_key.value for i in range(self.row_count)]
        self.clear(columns=True)
        self._add_columns(self.size.width)
        for name in names:
            if name is not None and name in self._shown:
                self.add_row(*self._row(self._shown[name]), key=name)
        self._invalidate()
        if selected is not None and selected in self._shown:
            self.move_cursor(row=self.get_row_index(selected), animate=False)

    def _row(self, values: dict[str, Any]) -> list[Any]:
        return [self._cell(key, values[key]) for key, *_ in COLUMNS if key in self._columns]

    def _cell(self, key: str, value: Any) -> Any:
        """What a cell shows of `value`: a name longer than its column, cropped in the middle."""
        if key != "name" or not isinstance(value, Text):
            return value
        column = self.columns.get(ColumnKey("name"))
        name = value.plain
        if column is not None and (self._crops is None or self._crops[1] != column.width):
            self._crops = (cropped_names(self._names, column.width), column.width)
        crops = self._crops[0] if self._crops is not None else {}
        shown = NameText(crops.get(name, name) if column is not None else name, style=value.style)
        shown.check = value.plain
        return shown

    @property
    def shown_columns(self) -> list[str]:
        """The keys of the columns the table has room for."""
        return list(self._columns)

    def show(self, states: Sequence[CheckState], cells: Callable[[CheckState], dict[str, Any]]) -> None:
        """Make exactly `states` visible, in that order, adding and removing rows but keeping the rest."""
        wanted = {s.name for s in states}
        if not wanted <= self._names:  # told apart from every check shown so far: a filter changes no cropping
            self._names |= wanted
            self._crops = None
        for name in list(self._shown):
            if name not in wanted:
                self.remove_row(name)
                del self._shown[name]
        for state in states:
            if state.name not in self._shown:
                values = cells(state)
                self.add_row(*self._row(values), key=state.name)
                self._shown[state.name] = values
        self._invalidate()
        self.order([s.name for s in states])

    def order(self, names: Sequence[str]) -> None:
        """Put the visible rows in this order, keeping the cursor on the same check."""
        rank = {name: i for i, name in enumerate(names)}
        current = [self.coordinate_to_cell_key(Coordinate(i, 0)).row_key.value for i in range(self.row_count)]
        if current == [n for n in names if n in self._shown]:
            return
        selected = self.selected_name
        self._invalidate()
        self.sort("name", key=lambda cell: rank.get(cell.check if isinstance(cell, NameText) else str(cell), 0))
        if selected is not None and selected in self._shown:
            self.move_cursor(row=self.get_row_index(selected), animate=False)

    def update(self, name: str, values: dict[str, Any]) -> None:
        """Update the changed cells of one row in place."""
        shown = self._shown.get(name)
        if shown is None:
            return
        for key, value in values.items():
            if not _same(shown.get(key), value):
                shown[key] = value
                if key not in self._columns:
                    continue  # no room for it at this width: shown when the terminal widens
                self._stamp += 1
                self._stamps[(RowKey(name), ColumnKey(key))] = self._stamp
                self._row_stamps[RowKey(name)] = self._stamp
                self.update_cell(name, key, self._cell(key, value))

    @property
    def selected_name(self) -> str | None:
        if self.row_count == 0:
            return None
        try:
            return self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value
        except Exception:
            return None


def _same(a: Any, b: Any) -> bool:
    # rich's Text equality ignores the base style, and a status turning from red to green must repaint.
    if isinstance(a, Text) and isinstance(b, Text):
        return a.plain == b.plain and str(a.style) == str(b.style) and a.spans == b.spans
    return bool(a == b)


def _has_thresholds(state: CheckState) -> bool:
    return state.config.warn_above is not None or state.config.fail_above is not None


def row_cells(state: CheckState, now: datetime, *, paused: bool) -> dict[str, Any]:
    """What one check's row shows."""
    last = state.last
    running_for = state.running_for(now)
    if running_for is not None and running_for >= RUNNING_GRACE_SECONDS:
        status = "running"
    else:
        status = state.status if state.status != "running" else (last.status if last else "pending")
    is_error = last is not None and last.status == "error"
    name_style = "bold #ff5f5f" if is_error else ("bold" if status in ("duplicates", "violations") else "")
    age = state.age_seconds(now)
    if status == "running" and running_for is not None:
        duration = _right(f"{running_for:.1f} s", "#5fafff")
    else:
        duration = _right(format_duration(last.duration_ms) if last else "", "dim")
        if last is not None and last.incremental:  # a run that read only the new rows: a small Δ
            duration = _right(Text.assemble(("Δ ", "bold #5fafff"), (duration.plain, "dim")))
    if status in ("duplicates", "violations", "ok") and last is not None and last.outcome is not None \
            and _has_thresholds(state):
        status = last.outcome  # judged by its warn_above / fail_above: rows it tolerates read "ok"
    status_cell = status_text(status)
    if paused and status != "running":  # paused keeps what the last run found, marked as paused
        status_cell = Text("‖" + status_cell.plain[1:], style=status_cell.style)
    violations = state.finds == "violations"
    figure = state.figure
    return {
        "name": Text(state.name, style=name_style),
        "database": Text(state.config.database, style="dim"),
        "status": status_cell,
        "groups": _right("—" if is_error or violations else format_count(state.groups), "dim" if violations else ""),
        "excess": _right("—" if is_error else format_count(figure), "bold" if (figure or 0) > 0 else ""),
        "percent": _right(("" if is_error or last is None else format_percent(last.excess_percent)) or "—", "dim"),
        "change": _right(change_text(state.figure_of(state.previous), figure)),
        "trend": Text(sparkline(state.excess_series(), SPARK_WIDTH), style="#ffaf00"),
        "last": _right("never" if age is None else relative_time(age), "dim"),
        "duration": duration,
    }
