"""What every dashboard screen shares: typed access to the app and the keys that work everywhere."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.screen import Screen
from textual.worker import Worker

if TYPE_CHECKING:
    from monitor.tui.app import DashboardApp


class DashboardMixin:
    @property
    def dash(self) -> DashboardApp:
        return self.app  # type: ignore[attr-defined, no-any-return]

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        self.dash.worker_changed(event)  # the safety net: an unexpected error is shown, never fatal

    def on_unmount(self) -> None:
        """Leaving the screen cancels its workers and the queries they still run on the server."""
        me: object = self
        self.dash.abandon([w for w in self.dash.workers if w.node is me])


class DashboardScreen(DashboardMixin, Screen[None]):
    """A full screen of the dashboard: `F` fixes, `?` help and `q` quit behave the same on every one."""

    def action_fixes(self) -> None:
        self.dash.open_fixes()

    def current_check(self) -> str | None:
        """The check the screen's `f` would fix."""
        check = getattr(self, "check", None)
        return check if isinstance(check, str) else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """`f` is hidden on a check whose database or fleet source says `read_only = true`."""
        if action == "fix":
            name = self.current_check()
            if name is not None and self.dash.read_only(name):
                return False
        result: Any = super().check_action(action, parameters)
        return bool(result) if result is not None else None

    def action_help(self) -> None:
        self.dash.action_help()

    async def action_quit(self) -> None:
        self.dash.exit(0)

