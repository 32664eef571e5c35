"""The help screen: every key, and what the columns and verdicts mean, for someone who never read the README."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HELP = """\
[b #ffaf00]dupewatch[/] watches tables for rows that should be unique but are not: the marks a race \
condition leaves when two requests both "check, then write". Every check runs on its own schedule, \
in the background.

[b]Main screen[/b]
  [b]Enter[/b] / click  open the check: its duplicate groups, trend chart and description
  [b]r[/b] / [b]R[/b]          re-run the selected check now / every check now
  [b]p[/b]              pause or resume polling (figures stay; no query runs)
  [b]/[/b]              filter checks by name; [b]Esc[/b] clears the filter
  [b]s[/b]              cycle the sort: config order → most rows → largest change → name
  [b]f[/b]              fix the check's duplicates (previewed; nothing changes unconfirmed)
  [b]F[/b]              past fixes: who, when, what they did; [b]u[/b] undoes one ([b]F[/b] here opens it)
  [b]?[/b]              this help            [b]q[/b]  quit

[b]Fixing[/b]  ([b]f[/b] on a check fixes every group; on a group in the drill-down, that group only)
  The preview is read-only: groups, the row each keeps ([#5fd75f]★ keep[/]), the rows to delete \
([#ffaf00]✖[/]), the rows of other tables that point at them (repointed to the kept row), and \
anything that [#ff5f5f]blocks[/] the fix. Type the check's name to arm the button. The fix runs in \
batches, one transaction each, copying every deleted row into an archive table first; [b]Esc[/b] \
stops it after the current batch ([b]f[/b] again resumes it). Tick "also add the unique constraint" \
to stop the next race: the constraint is the durable cure ([b]dupewatch fix --add-constraint[/b] on \
the command line).

[b]Columns[/b]
  [b]STATUS[/b]       [#5fd75f]● ok[/] nothing found · [#ffaf00]▲ duplicates[/] / [#ffaf00]▲ violations[/] \
(custom queries) found · [#8a8a8a]‖[/] in place of the mark: paused · ok / warn / fail: by its thresholds
               [#5fafff]⟳ running[/] a query in progress (shown after a moment, with a timer)
               [#ff5f5f]✖ error[/] the check failed: the error is shown below the table; retried with backoff
  [b]GROUPS[/b]       keys that occur more than once (— for a violations check: it has rows, not groups)
  [b]ROWS[/b]         duplicates: excess rows, beyond the first of each key (what a fix deletes);
               violations: rows breaking the check's invariant (each row its query returns)
  [b]CHANGE[/b]       ROWS since the previous run: [b red]▲[/] growing (a live race), [green]▼[/] shrinking
  [b]TREND[/b]        ROWS over the recent runs   [b]ROWS %[/b] of the rows checked   \
[b]LAST RUN[/b] / [b]DURATION[/b]  when, how long

[b]Drill-down[/b]
  Groups are listed largest first and loaded page by page as you scroll. [b]SPREAD[/b] is how far \
apart a group's rows were born: [b magenta]↯ race[/] a burst of milliseconds (concurrent requests), \
[b cyan]↻ retry[/] seconds to minutes apart (a resubmit), [b yellow]logic bug[/] hours or days apart \
(not a race: the code writes twice).
  [b]Enter[/b] on a group shows its rows ([#5fd75f]★ keep[/] marks the row a fix would keep); \
[b]Esc[/b] back; [b]r[/b] re-run.\
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("question_mark", "dismiss", "Close", show=False),
        Binding("q", "dismiss", "Close", show=False),
        Binding("F", "fixes", "Past fixes"),
    ]

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 116;
        max-width: 95%;
        height: auto;
        max-height: 90%;
        border: round $accent;
        background: $surface;
        padding: 0 2;
    }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(HELP, id="help")

    def action_fixes(self) -> None:
        self.dismiss()
        self.app.open_fixes()  # type: ignore[attr-defined]

    def on_mount(self) -> None:
        self.query_one(VerticalScroll).border_title = "Help"
        self.query_one(VerticalScroll).border_subtitle = "Esc to close  ·  F past fixes"
