"""The panel under the main table: what the highlighted check watches, in words, and its last error."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from monitor.config import CheckConfig
from monitor.tui.format import counted, format_interval, moment_text
from monitor.tui.state import CheckState

RED = "#ff5f5f"


def definition(check: CheckConfig, kept_by: str | None = None) -> str:
    """One line saying what the check looks at: `table user (email) · case-insensitive · keep oldest`.

    `kept_by` is the engine's `keeper_description()` once the table is known; before that, the config's."""
    if check.is_custom:
        source = f"query file {check.query}" if check.query else "inline SQL"
        return f"custom query ({source}): each row it returns is one offence"
    parts = [f"table {check.table} ({', '.join(check.key or [])})"]
    if check.where:
        parts.append(f"where {check.where}")
    if check.case_insensitive:
        parts.append("case-insensitive")
    if check.trim_whitespace:
        parts.append("trimmed")
    if check.nulls == "distinct":
        parts.append("NULLs distinct")
    elif check.nulls == "skip_all_null":
        parts.append("all-NULL keys skipped")
    if kept_by is None:
        kept_by = f"{check.keep} by {', '.join(check.order_by) if check.order_by else 'primary key'}"
    parts.append(f"a fix keeps the {kept_by}")
    if check.timestamp:
        parts.append(f"born at {check.timestamp}")
    parts.append(f"every {format_interval(check.interval)}")
    if check.incremental:
        parts.append(f"Δ incremental on {check.incremental}, full pass every {format_interval(check.full_every)}")
    return " · ".join(parts)


def incremental_line(state: CheckState) -> Text | None:
    """For an incremental check's last run: `Δ incremental run · 1,000 rows scanned · 2 new groups · last full
    pass 2026-11-30 12:00:03`, then the index advice when an index is missing."""
    last = state.last
    if not state.config.incremental or last is None or last.rows_scanned is None:
        return None
    mode = Text("Δ incremental run", style="bold #5fafff") if last.incremental else Text("full pass", style="bold")
    parts = [mode, Text(f"{counted(last.rows_scanned, 'row')} scanned")]
    if last.new_groups:
        parts.append(Text(counted(last.new_groups, "new group"), style="bold #ffaf00"))
    if last.last_full_pass is not None:
        parts.append(Text(f"last full pass {moment_text(last.last_full_pass)}", style="dim"))
    line = Text(" · ").join(parts)
    if last.index_advice:
        line.append("\nfaster with an index: ", style="dim")
        line.append(last.index_advice, style="#ffaf00")
    return line


def short_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def error_line(state: CheckState, retry_in: float | None) -> Text:
    """`✖ <one-line error>  (failed 3 times in a row · next try in 20s)`."""
    error = state.last.error if state.last else None
    text = Text.assemble(("✖ ", f"bold {RED}"), (error or "", RED))
    tail = []
    if state.failures:
        tail.append("failed once" if state.failures == 1 else f"failed {state.failures} times in a row")
    if retry_in is not None:
        tail.append(f"next try in {short_duration(retry_in)}" if retry_in >= 1 else "retrying now")
    if tail:
        text.append(f"  ({' · '.join(tail)}, backing off)", style="dim")
    return text


class CheckDetails(Static):
    DEFAULT_CSS = """
    CheckDetails {
        height: 100%;
        padding: 0 1;
    }
    """

    def show(self, state: CheckState | None, retry_in: float | None, kept_by: str | None = None) -> None:
        if state is None:
            self.update("")
            return
        check = state.config
        text = Text.assemble((check.name, "bold #ffaf00"), ("  on ", "dim"), (check.database, "bold"), "\n")
        text.append(definition(check, kept_by), style="dim")
        incremental = incremental_line(state)
        if incremental is not None:
            text.append("\n")
            text.append_text(incremental)
        if check.description:
            text.append("\n\n")
            text.append(check.description)
        if state.last is not None and state.last.status == "error":
            text.append("\n\n")
            text.append_text(error_line(state, retry_in))
        self.update(text)
