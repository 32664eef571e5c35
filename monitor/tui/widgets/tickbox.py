"""A checkbox whose mark says its state: `✔` ticked, blank unticked (Textual's shows `X` in both states and
tells them apart by colour alone, which a colour-blind operator or a monochrome terminal cannot see)."""

from __future__ import annotations

from textual.widgets import Checkbox

TICKED, UNTICKED = "✔", " "


class TickBox(Checkbox):
    # Textual's name for the mark, a class attribute there: a property here, read on every render.
    @property
    def BUTTON_INNER(self) -> str:  # type: ignore[override]
        return TICKED if self.value else UNTICKED
