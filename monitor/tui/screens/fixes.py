"""Past fixes (`F`): every fix recorded in the configured databases, newest first, and undo.

The list is read in a thread worker (`list_fixes`, one database at a time so one that is down does not hide
the others). Undo asks for the same confirmation as a fix (type the check's name) and runs `undo_fix` in a
worker; a refusal is one line, and nothing was changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Static

from monitor.fix import FixRecord, UndoReport, list_fixes, undo_fix
from monitor.fix.render import RECORD_HEADERS, record_cells
from monitor.fix.undo import UNDOABLE
from monitor.tui.format import counted
from monitor.tui.messages import FixesLoaded, FixFailed, UndoFinished
from monitor.tui.screens.base import DashboardMixin, DashboardScreen
from monitor.tui.screens.fix import AMBER, DIM, GREEN, RED, one_line
from monitor.tui.widgets.confirm import TypeToConfirm
from monitor.tui.widgets.footer import Footer

if TYPE_CHECKING:
    pass

# Columns the list right-aligns (counts) and the widest a free-text column may grow, so that the whole row,
# CONSTRAINT included, fits 160 columns however long the names are. Who ran the fix (user@host, often long)
# and the full names are on the line under the list, for the selected fix.
NUMERIC = {"GROUPS", "DELETED", "REPOINTED", "SKIPPED"}
WIDEST = {"DATABASE": 10, "CHECK": 20, "CONSTRAINT": 28}
COLUMNS = tuple(h for h in RECORD_HEADERS if h != "USER")
STATE_STYLE = {"done": f"bold {GREEN}", "undone": DIM, "discarded": DIM, "abandoned": AMBER, "running": "bold #5fafff",
               "stopped": f"bold {AMBER}", "failed": f"bold {RED}", "planned": AMBER}


def shortened(text: str, width: int) -> str:
    """`text` cut to `width` characters, its middle elided (both ends of a name tell names apart)."""
    if len(text) <= width:
        return text
    head = (width - 1) // 2
    return f"{text[:head]}…{text[len(text) - (width - 1 - head):]}"


def list_cells(database: str, record: FixRecord) -> list[Text | str]:
    """The cells of one fix in the list: counts right-aligned, long names elided to fit, the state coloured."""
    cells: list[Text | str] = []
    for header, value in zip(RECORD_HEADERS, record_cells(database, record), strict=True):
        if header not in COLUMNS:
            continue
        if header in NUMERIC:
            cells.append(Text(value, justify="right"))
        elif header == "STATE":
            cells.append(Text(value, style=STATE_STYLE.get(record.state, "")))
        else:
            cells.append(shortened(value, WIDEST[header]) if header in WIDEST else value)
    return cells


class FixesScreen(DashboardScreen):
    """The fixes recorded in every configured database: who, when, which check, what it did, its state."""

    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("u", "undo", "Undo"),
        Binding("r", "reload", "Reload"),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.fixes: list[tuple[str, FixRecord]] = []
        self.errors: list[str] = []
        self.loaded = False

    def compose(self) -> ComposeResult:
        yield Static(Text.assemble(("◀ ", DIM), ("Fixes", f"bold {AMBER}"),
                                   ("  recorded in the configured databases, newest first", DIM)), id="title")
        yield DataTable(id="fixes", cursor_type="row", zebra_stripes=True)
        yield Static(Text("loading fixes…", style=DIM), id="status")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for header in COLUMNS:
            table.add_column(Text(header, justify="right") if header in NUMERIC else header, key=header)
        table.focus()
        self.load()

    @work(thread=True, exit_on_error=False, exclusive=True, group="fixes")
    def load(self) -> None:
        monitor = self.dash.monitor
        found: list[tuple[str, FixRecord]] = []
        errors: list[str] = []
        for database in sorted(monitor.config.databases):
            try:
                found.extend(list_fixes(monitor, database))
            except Exception as exc:  # one line per database that could not be read
                errors.append(f"{database}: {one_line(exc)}")
        found.sort(key=lambda item: (item[1].created_at, item[1].fix_id), reverse=True)
        self.post_message(FixesLoaded(found, errors))

    @on(FixesLoaded)
    def _loaded(self, message: FixesLoaded) -> None:
        self.fixes = message.fixes
        self.loaded = True
        table = self.query_one(DataTable)
        table.clear()
        for database, record in message.fixes:
            table.add_row(*list_cells(database, record), key=record.fix_id)
        self.errors = message.errors
        self._show_status()

    @on(DataTable.RowHighlighted, "#fixes")
    def _highlighted(self) -> None:
        if self.loaded:
            self._show_status()

    def _show_status(self) -> None:
        status = Text.assemble((f"{len(self.fixes):,}", "bold"), " fix" if len(self.fixes) == 1 else " fixes")
        chosen = self.selected()
        if chosen is not None:
            _database, record = chosen
            status.append_text(Text.assemble("  ·  ", (record.fix_id, "bold"), f" of {record.check_name} by ",
                                             (f"{record.os_user}@{record.host}", "bold"),
                                             f", constraint {record.constraint_name or '-'}"))
            undo = "u: undo it  ·  " if record.state in UNDOABLE else f"{record.state}: nothing to undo  ·  "
            status.append(f"  ·  {undo}r: reload", style=DIM)
        for error in self.errors:
            status.append_text(Text.assemble("  ·  ", ("✖ ", f"bold {RED}"), (error, RED)))
        self.query_one("#status", Static).update(status)

    def selected(self) -> tuple[str, FixRecord] | None:
        table = self.query_one(DataTable)
        if not self.fixes or table.row_count == 0:
            return None
        return self.fixes[table.cursor_row] if table.cursor_row < len(self.fixes) else None

    def action_undo(self) -> None:
        chosen = self.selected()
        if chosen is None:
            return
        _database, record = chosen
        if record.state not in UNDOABLE:
            self.notify(f"fix {record.fix_id} is {record.state}: there is nothing to undo", title="Undo",
                        severity="warning", timeout=4)
            return
        def reload(_result: bool | None) -> None:
            self.load()

        self.app.push_screen(UndoScreen(record), reload)

    def action_reload(self) -> None:
        self.load()

    def action_back(self) -> None:
        self.dismiss()



class UndoScreen(DashboardMixin, ModalScreen[bool]):
    """Undo one fix after the operator types its check's name; dismissed with whether it was undone."""

    BINDINGS = [Binding("escape", "close", "Cancel")]

    DEFAULT_CSS = """
    UndoScreen { align: center middle; }
    UndoScreen > Vertical {
        width: 110; max-width: 96%; height: auto;
        border: thick $warning 60%; background: $surface; padding: 0 1;
    }
    UndoScreen #undo-result { height: auto; margin-top: 1; }
    """

    def __init__(self, record: FixRecord) -> None:
        super().__init__()
        self.record = record
        self.stage = "confirm"
        self.undone = False

    def compose(self) -> ComposeResult:
        r = self.record
        with Vertical():
            yield Static(Text.assemble(
                ("Undo fix ", "bold"), (r.fix_id, f"bold {AMBER}"), (" of ", DIM), (r.check_name, "bold"),
                (" on ", DIM), (r.table_name, "bold"), "\n",
                f"Restores the {counted(r.archived, 'archived row')} with their original keys and points "
                f"{counted(r.repointed, 'reference')} back, in one transaction. Refused, changing nothing, if a "
                "restored key is taken or a unique constraint was added since."), id="undo-facts")
            yield TypeToConfirm(r.check_name, "Undo", id="undo-confirm")
            yield Static(id="undo-result")

    def on_mount(self) -> None:
        box = self.query_one(Vertical)
        box.border_title = "Confirm to undo"
        box.border_subtitle = "Esc: cancel"
        self.query_one("#undo-result").display = False
        self.query_one(TypeToConfirm).enable(True)
        self.query_one(TypeToConfirm).focus_input()

    @on(TypeToConfirm.Confirmed)
    def _confirmed(self) -> None:
        if self.stage != "confirm":
            return
        self.stage = "undoing"
        self.query_one(TypeToConfirm).enable(False)
        self._show(Text("undoing…", style=DIM))
        self.undo(self.record.fix_id)

    @work(thread=True, exit_on_error=False, exclusive=True, group="undo")
    def undo(self, fix_id: str) -> None:
        try:
            report = undo_fix(self.dash.monitor, fix_id)
        except Exception as exc:  # a refusal is one line; nothing was changed
            self.post_message(FixFailed(self.record.check_name, one_line(exc)))
            return
        self.post_message(UndoFinished(report))

    @on(UndoFinished)
    def _undone(self, message: UndoFinished) -> None:
        report: UndoReport = message.report
        self.stage = "done"
        self.undone = True
        defaulted = (f"; column(s) added since the fix took their default: {', '.join(report.defaulted)}"
                     if report.defaulted else "")
        self._show(Text(f"fix {report.fix_id} undone: {report.restored_said()}{defaulted}{report.left_said()}; "
                        "the check is being "
                        "re-run",
                        style=f"bold {GREEN}"))
        self.dash.rerun(report.check)

    @on(FixFailed)
    def _failed(self, message: FixFailed) -> None:
        self.stage = "done"
        self._show(Text.assemble(("✖ ", f"bold {RED}"), (message.error, RED)))

    def _show(self, text: Text) -> None:
        result = self.query_one("#undo-result", Static)
        result.update(text)
        result.display = True
        if self.stage != "confirm":
            self.query_one(TypeToConfirm).display = False
            self.query_one(Vertical).border_subtitle = "Esc: close"

    @on(Button.Pressed, "#cancel-button")
    def _cancel_pressed(self) -> None:
        self.action_close()

    def action_close(self) -> None:
        if self.stage != "undoing":  # an undo in flight is one transaction: let it commit or refuse
            self.dismiss(self.undone)
