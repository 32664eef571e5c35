"""A checkbox whose mark says its state: `✔` ticked, blank unticked (Textual's shows `X` in both states and
tells them apart by colour alone, which a colour-blind operator or a monochrome terminal cannot see)."""

from __future__ import annotations

from textual.widgets import Checkbox

TICKED, UNTICKED = "✔", " "


class TickBox(Checkbox):
    @property  # type: ignore[override]
    def BUTTON_INNER(self) -> str:  # Textual's name for the mark
        return TICKED if self.value else UNTICKED
