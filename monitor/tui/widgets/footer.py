"""Textual's footer, rebuilt once per refresh however often the bindings change before it.

Mounting a screen, resuming it and focusing its table each signal "bindings changed", and the stock footer
recomposes (a widget per key, each restyled) for every signal: four times on entering a drill-down, a
quarter of the time the screen takes to appear. This one coalesces the signals into one rebuild, which
reads the screen's bindings as they are when it runs.
"""

from __future__ import annotations

from textual.screen import Screen
from textual.widgets import Footer as TextualFooter


class Footer(TextualFooter):
    _rebuild_pending = False

    def bindings_changed(self, screen: Screen) -> None:  # type: ignore[type-arg]
        self._bindings_ready = True
        if self._rebuild_pending or not screen.app.app_focus:
            return
        if self.is_attached and screen is self.screen:
            self._rebuild_pending = True
            self.call_after_refresh(self._rebuild)

    async def _rebuild(self) -> None:
        self._rebuild_pending = False
        await self.recompose()
