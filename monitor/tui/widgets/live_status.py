"""The live-mode status line: for each `live = true` database, whether its change stream is followed, its lag
and the gaps counted since the dashboard started. Shown only when the config has such a database.

    STREAMS  app ● following · lag 0.21 s · 0 gaps   shop ○ reconnecting · 2 gaps   demo · polling: no change stream

The lag is Debezium's "behind source": from the commit of the last change read to the moment its groups were
counted, held while the database is quiet. A gap is a break in the stream (a reconnect, a purged binary log, a
re-count that failed); the poll fills it, and the line says that it happened.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widgets import Static

from monitor.tui.format import plural

AMBER, GREEN, RED, GREY = "#ffaf00", "#5fd75f", "#ff5f5f", "#8a8a8a"


@dataclass
class LiveState:
    """What the dashboard knows of one live database's stream (updated on the UI thread)."""

    following: bool = False
    lag_seconds: float | None = None
    gaps: int = 0
    events: int = 0
    polling: str | None = None  # why the database is only polled (no change stream, a refused setting)


class LiveStatus(Static):
    DEFAULT_CSS = """
    LiveStatus {
        height: 1;
        padding: 0 1;
        background: $panel;
    }
    """

    def show(self, states: dict[str, LiveState]) -> None:
        """The longest form that fits the line (full, then short, then cut)."""
        self.display = bool(states)
        if not states:
            return
        width = (self.size.width or 160) - 2  # the padding
        text = status_text(states)
        if text.cell_len > width:
            text = status_text(states, short=True)
        text.truncate(width, overflow="ellipsis")
        self.update(text)


def status_text(states: dict[str, LiveState], *, short: bool = False) -> Text:
    parts: list[Text] = [Text("STREAMS", style="bold")]
    for name, state in states.items():
        parts.append(Text.assemble((name, "bold"), " ", database_text(state, short=short)))
    return Text("  " if short else "   ").join(parts)


def database_text(state: LiveState, *, short: bool = False) -> Text:
    gaps = Text(f"{state.gaps} {plural(state.gaps, 'gap')}" if not short else f"{state.gaps}g",
                style=f"bold {AMBER}" if state.gaps else GREY)
    if state.polling is not None:
        return Text.assemble(("· polling" if short else f"· polling: {state.polling}", GREY))
    if not state.following:
        return Text.assemble(("○ ", RED), ("reconnecting" if state.gaps else "starting", AMBER), " · ", gaps)
    lag = "lag -" if state.lag_seconds is None else f"lag {lag_text(state.lag_seconds)}"
    if short:
        return Text.assemble(("● ", GREEN), lag.removeprefix("lag "), " ", gaps)
    return Text.assemble(("● ", GREEN), "following · ", lag, " · ", gaps)


def lag_text(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min"
