"""How figures look on the dashboard: relative times, changes, sparklines, and the race-vs-bug verdict.

Pure functions of plain data (no Textual), so they are unit-tested directly and shared by every screen.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Literal

from rich.text import Text

from monitor.cli import format_duration
from monitor.words import counted, moment_text, plural, value_text

__all__ = [
    "SpreadKind",
    "change_text",
    "counted",
    "format_count",
    "format_duration",
    "format_interval",
    "format_spread",
    "moment_text",
    "plural",
    "relative_time",
    "sparkline",
    "spread_kind",
    "value_text",
]

SPARK_BLOCKS = "▁▂▃▄▅▆▇█"
RACE_LIMIT = timedelta(seconds=1)  # concurrent requests land within milliseconds of each other
RETRY_LIMIT = timedelta(minutes=5)  # a user retrying by hand, a client's retry loop

SpreadKind = Literal["race", "retry", "logic"]


def relative_time(seconds: float) -> str:
    """`just now`, `12s ago`, `3m ago`, `2h ago`, `5d ago` (negative ages count as now)."""
    if seconds < 2:
        return "just now"
    for limit, unit, size in ((60, "s", 1), (3600, "m", 60), (86400, "h", 3600)):
        if seconds < limit:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds // 86400)}d ago"


def format_interval(seconds: float) -> str:
    """`5s`, `90s`, `5m`, `1h`: how often a check runs."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def format_count(value: int | None) -> str:
    return "—" if value is None else f"{value:,}"


def change_text(previous: int | None, current: int | None) -> Text:
    """The change of excess rows since the previous run: `▲ 3` (worse), `▼ 2` (better), `=` or `—`."""
    if previous is None or current is None:
        return Text("—", style="dim")
    delta = current - previous
    if delta > 0:
        return Text(f"▲ {delta:,}", style="bold red")
    if delta < 0:
        return Text(f"▼ {-delta:,}", style="green")
    return Text("=", style="dim")


def sparkline(values: Sequence[float | None], width: int = 16) -> str:
    """The last `width` values as block characters, scaled between their min and max (`·` for no value)."""
    values = list(values)[-width:]
    known = [v for v in values if v is not None]
    if not known:
        return ""
    low, high = min(known), max(known)
    span = high - low
    top = len(SPARK_BLOCKS) - 1
    out = []
    for value in values:
        if value is None:
            out.append("·")
        elif span == 0:
            out.append(SPARK_BLOCKS[top // 2] if high else SPARK_BLOCKS[0])
        else:
            out.append(SPARK_BLOCKS[round((value - low) / span * top)])
    return "".join(out)


def spread_kind(spread: timedelta) -> SpreadKind:
    """A burst of milliseconds is a race; minutes a retry; longer apart, a logic bug."""
    if spread < RACE_LIMIT:
        return "race"
    if spread < RETRY_LIMIT:
        return "retry"
    return "logic"


def _span(spread: timedelta) -> str:
    seconds = spread.total_seconds()
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    days = seconds / 86400
    return f"{days:.0f} day{'s' if round(days) != 1 else ''}"


def format_spread(spread: timedelta | None) -> Text:
    """How far apart a group's rows were born, with the verdict: `↯ race  burst 5 ms` or `logic bug  3 days apart`."""
    if spread is None:
        return Text("no timestamp", style="dim")
    kind = spread_kind(spread)
    if kind == "race":
        return Text.assemble(("↯ race", "bold magenta"), f"  burst {_span(spread)}")
    if kind == "retry":
        return Text.assemble(("↻ retry", "bold cyan"), f"  {_span(spread)} apart")
    return Text.assemble(("logic bug", "bold yellow"), f"  {_span(spread)} apart")
