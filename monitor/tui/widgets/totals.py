"""The header: product name, the totals an operator scans first, and the polling state."""

from __future__ import annotations

import functools
from datetime import datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from monitor.tui.format import counted, relative_time
from monitor.tui.state import Dashboard, Figures

AMBER, GREEN, RED, GREY = "#ffaf00", "#5fd75f", "#ff5f5f", "#8a8a8a"


class HeaderTotals(Horizontal):
    DEFAULT_CSS = """
    HeaderTotals {
        height: 1;
        background: $panel;
        padding: 0 1;
    }
    HeaderTotals #totals { width: 1fr; }
    HeaderTotals #mode { width: auto; }
    """

    def compose(self) -> ComposeResult:
        yield Static(id="totals")
        yield Static(id="mode")

    def show(self, dashboard: Dashboard, now: datetime, *, paused: bool, sort: str, filter_text: str) -> None:
        """The totals in the longest form that fits beside the mode (never overwritten by it, nor cut mid-word)."""
        width = (self.size.width or 160) - 2  # the padding
        long, short = totals_text(dashboard, now), totals_text(dashboard, now, short=True)
        mode_of = functools.partial(mode_text, now, paused=paused, sort=sort, filter_text=filter_text)
        room = width - short.cell_len - 2  # the last resort: the filter cut to what is left beside the totals
        forms = [(long, mode_of()), (long, mode_of(short=True)), (short, mode_of(short=True)),
                 (short, mode_of(short=True, clock=False)),
                 (short, mode_of(short=True, clock=False, filter_room=room))]
        for totals, mode in forms:
            if totals.cell_len + mode.cell_len + 2 <= width:
                break
        self.query_one("#totals", Static).update(totals)
        self.query_one("#mode", Static).update(mode)

    def on_resize(self) -> None:
        screen = self.screen
        refresh = getattr(screen, "_refresh_summary", None)
        if refresh is not None and getattr(screen, "ready", False):
            refresh(details=False)


def _figure(value: int, bad: bool, colour: str = AMBER) -> tuple[str, str]:
    return f"{value:,}", f"bold {colour}" if bad else f"bold {GREEN}"


def _rows(figures: Figures, words: str, *, short: bool = False) -> Text:
    """`13 excess rows`, `13 excess rows (last known, 5m ago)`, `≥ 13 excess rows` or `excess rows unknown`:
    a database that does not answer has not been shown clean."""
    if figures.unknown and not figures.rows and figures.stale_seconds is None:
        return Text.assemble((f"{words} unknown" if not short else f"{words} ?", f"bold {RED}"))
    text = Text.assemble(("≥ " if figures.unknown else "", f"bold {AMBER}"),
                         _figure(figures.rows, figures.rows > 0), f" {words}")
    if figures.stale_seconds is not None:
        age = relative_time(figures.stale_seconds)
        text.append(f" ({age})" if short else f" (last known, {age})", style=GREY)
    return text


def totals_text(dashboard: Dashboard, now: datetime, *, short: bool = False) -> Text:
    """The totals; `short` for a narrow terminal: `4/5 dup · 250 excess · 4 violating · 0/1 db down`."""
    dup, violating = dashboard.with_duplicates, dashboard.with_violations
    down, errors = dashboard.unreachable_databases(), dashboard.errors
    has_violations = any(c.finds == "violations" for c in dashboard)
    if short:
        parts = [Text.assemble(_figure(dup, dup > 0), f"/{len(dashboard.checks)} dup"),
                 _rows(dashboard.figures("duplicates", now), "excess", short=True)]
        if has_violations:
            parts.append(_rows(dashboard.figures("violations", now), "violating", short=True))
        parts.append(Text.assemble(_figure(len(down), bool(down), RED), f"/{len(dashboard.config.databases)} db down"))
        if errors:
            parts.append(Text(f"{errors} failing", style=f"bold {RED}"))
        return Text.assemble(("dupewatch", f"bold {AMBER}"), " ", Text(" · ", style=GREY).join(parts))
    checks, databases = len(dashboard.checks), len(dashboard.config.databases)
    parts = [Text.assemble(_figure(dup, dup > 0), f" of {counted(checks, 'check')} with duplicates"),
             _rows(dashboard.figures("duplicates", now), "excess rows")]
    if has_violations:
        parts.append(Text.assemble(_figure(violating, violating > 0), " with violations: ",
                                   _rows(dashboard.figures("violations", now), "violating rows")))
    parts.append(Text.assemble(_figure(len(down), bool(down), RED),
                               f" of {counted(databases, 'database')} unreachable"))
    if errors:
        parts.append(Text(f"{errors} failing", style=f"bold {RED}"))
    return Text.assemble(("dupewatch", f"bold {AMBER}"), "  ", Text(" · ", style=GREY).join(parts))


def mode_text(now: datetime, *, paused: bool, sort: str, filter_text: str, short: bool = False, clock: bool = True,
              filter_room: int | None = None) -> Text:
    """Filter, sort, LIVE/PAUSED and the clock; `short` leaves out the words and the default sort, `clock=False`
    the clock; `filter_room` is the most the whole text may take, the filter cut to fit (never below 2 characters)."""
    text = Text()
    if filter_text:
        sorted_by = len(sort) + 2 if sort != "config order" else 0  # `↓most rows `
        limit = 12 if filter_room is None else max(2, filter_room - sorted_by - 8)  # `/` filter ` ` ` LIVE `
        shown = filter_text if not short or len(filter_text) <= limit else filter_text[:limit - 1] + "…"
        label, gap = ("", " ") if short else ("filter ", "   ")
        text.append_text(Text.assemble((label, "dim"), (f"/{shown}", "bold"), gap))
    if not short:
        text.append_text(Text.assemble(("sort ", "dim"), (sort, "bold"), "   "))
    elif sort != "config order":
        text.append_text(Text.assemble((f"↓{sort}", "bold"), " "))
    text.append(" PAUSED " if paused else " LIVE ", style=f"bold reverse {GREY if paused else GREEN}")
    if clock:
        text.append_text(Text.assemble("  ", (now.strftime("%H:%M:%S"), "dim")))
    return text
