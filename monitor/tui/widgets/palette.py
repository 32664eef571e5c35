"""The dashboard's status colours and symbols, in one place so every screen agrees."""

from __future__ import annotations

from rich.text import Text

STATUS_STYLE = {
    "ok": ("●", "ok", "bold #5fd75f"),
    "duplicates": ("▲", "duplicates", "bold #ffaf00"),
    "violations": ("▲", "violations", "bold #ffaf00"),
    "warn": ("▲", "warn", "bold #ffaf00"),  # above the check's warn_above (monitor/thresholds.py)
    "fail": ("▲", "fail", "bold #ff8700"),  # above its fail_above
    "error": ("✖", "error", "bold #ff5f5f"),
    "running": ("⟳", "running", "bold #5fafff"),
    "paused": ("‖", "paused", "#8a8a8a"),
    "pending": ("○", "pending", "#8a8a8a"),
}


def status_text(status: str) -> Text:
    symbol, label, style = STATUS_STYLE.get(status, ("?", status, ""))
    return Text(f"{symbol} {label}", style=style)


def status_style(status: str) -> str:
    return STATUS_STYLE.get(status, ("", "", ""))[2]
