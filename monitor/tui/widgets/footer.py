"""Textual's footer, rebuilt once per refresh however often the bindings change before it.

Mounting a screen, resuming it and focusing its table each signal "bindings changed", and the stock footer
recomposes (a widget per key, each restyled) for every signal: four times on entering a drill-down, a
sixth of the time the screen takes to appear. This one lets the signals of one refresh settle and passes
one of them on; the rebuild reads the screen's bindings as they are when it runs. Below `COMPACT_BELOW`
columns it drops the space around each key, so that every key, help and quit included, fits in 80 columns.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer as TextualFooter

COMPACT_BELOW = 120


class Footer(TextualFooter):
    _settling = False

    def on_resize(self) -> None:
        self.compact = self.size.width < COMPACT_BELOW

    def bindings_changed(self, screen: Screen) -> None:  # type: ignore[type-arg]
        if not self._settling:
            self._settling = True
            self.call_after_refresh(self._settled, screen)

    def _settled(self, screen: Screen) -> None:  # type: ignore[type-arg]
        self._settling = False
        super().bindings_changed(screen)
