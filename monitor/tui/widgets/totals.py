"""The header: product name, the totals an operator scans first, and the polling state."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from monitor.tui.format import plural, relative_time
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
        self.query_one("#totals", Static).update(totals_text(dashboard, now))
        self.query_one("#mode", Static).update(mode_text(now, paused=paused, sort=sort, filter_text=filter_text))


def _figure(value: int, bad: bool, colour: str = AMBER) -> tuple[str, str]:
    return f"{value:,}", f"bold {colour}" if bad else f"bold {GREEN}"


def _rows(figures: Figures, words: str) -> Text:
    """`13 excess rows`, `13 excess rows (last known, 5m old)`, `≥ 13 excess rows` or `excess rows unknown`:
    a database that does not answer has not been shown clean."""
    if figures.unknown and not figures.rows and figures.stale_seconds is None:
        return Text.assemble((f"{words} unknown", f"bold {RED}"))
    text = Text.assemble(("≥ " if figures.unknown else "", f"bold {AMBER}"),
                         _figure(figures.rows, figures.rows > 0), f" {words}")
    if figures.stale_seconds is not None:
        text.append(f" (last known, {relative_time(figures.stale_seconds).removesuffix(' ago')} old)", style=GREY)
    return text


def totals_text(dashboard: Dashboard, now: datetime) -> Text:
    dup, violating = dashboard.with_duplicates, dashboard.with_violations
    down, errors = dashboard.unreachable_databases(), dashboard.errors
    text = Text.assemble(
        ("dupewatch", f"bold {AMBER}"), "   ",
        _figure(dup, dup > 0), f" of {len(dashboard.checks)} {plural(len(dashboard.checks), 'check')} with "
                               "duplicates   ",
        _rows(dashboard.figures("duplicates", now), "excess rows"), "   ",
        _figure(len(down), bool(down), RED),
        f" of {len(dashboard.config.databases)} {plural(len(dashboard.config.databases), 'database')} unreachable",
    )
    if any(c.finds == "violations" for c in dashboard):
        text.append_text(Text.assemble(
            "   ", _figure(violating, violating > 0), " with violations: ",
            _rows(dashboard.figures("violations", now), "violating rows")))
    if errors:
        text.append_text(Text.assemble("   ", (f"{errors} failing", f"bold {RED}")))
    return text


def mode_text(now: datetime, *, paused: bool, sort: str, filter_text: str) -> Text:
    text = Text()
    if filter_text:
        text.append_text(Text.assemble(("filter ", "dim"), (f"/{filter_text}", "bold"), "   "))
    text.append_text(Text.assemble(("sort ", "dim"), (sort, "bold"), "   "))
    text.append(" PAUSED " if paused else " LIVE ", style=f"bold reverse {GREY if paused else GREEN}")
    text.append_text(Text.assemble("  ", (now.strftime("%H:%M:%S"), "dim")))
    return text
