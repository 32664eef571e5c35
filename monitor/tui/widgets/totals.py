"""The header: product name, the totals an operator scans first, and the polling state."""

from __future__ import annotations

from datetime import datetime

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from monitor.tui.state import Dashboard

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
        self.query_one("#totals", Static).update(totals_text(dashboard))
        self.query_one("#mode", Static).update(mode_text(now, paused=paused, sort=sort, filter_text=filter_text))


def _figure(value: int, bad: bool, colour: str = AMBER) -> tuple[str, str]:
    return f"{value:,}", f"bold {colour}" if bad else f"bold {GREEN}"


def totals_text(dashboard: Dashboard) -> Text:
    dup, excess = dashboard.with_duplicates, dashboard.total_excess
    down, errors = dashboard.unreachable_databases(), dashboard.errors
    text = Text.assemble(
        ("dupewatch", f"bold {AMBER}"), "   ",
        _figure(dup, dup > 0), f" of {len(dashboard.checks)} checks with duplicates   ",
        _figure(excess, excess > 0), " excess rows   ",
        _figure(len(down), bool(down), RED), f" of {len(dashboard.config.databases)} databases unreachable",
    )
    if dashboard.with_violations:
        text.append_text(Text.assemble("   ", _figure(dashboard.with_violations, True), " with violations"))
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
