"""The budgets a daemon holds over fleet targets, whatever their number.

- At most `[fleet] max_running` checks of targets run at once (the others wait for a slot, on their server's
  workers, holding no connection).
- At most `[fleet] server_connections` of them run at once on one server (`host:port`, whatever the database):
  the scheduler gives each server a pool of that many workers (`monitor.schedule`), so the cap is per server,
  not multiplied by its databases.
- At most one check per target at a time: a check whose target is busy is put off briefly, not run beside it.
- A server whose connections fail backs off as a whole: after a failed connect, its targets' checks are not
  tried until the backoff (doubling, jittered, capped) has passed; they report the wait as their error, and the
  first connection that succeeds ends it.

A dead target costs at most one worker of its server (one check per target) for at most its statement timeout
plus the client deadline (`monitor.db`): the other targets keep their slots.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

from monitor.config import FleetConfig

SERVER_BACKOFF_SECONDS = 5.0
MAX_SERVER_BACKOFF_SECONDS = 300.0


@dataclass
class _Server:
    failures: int = 0
    until: float = 0.0  # monotonic time before which its targets are not tried


class Budget:
    """Admission of fleet checks; thread-safe."""

    def __init__(self, settings: FleetConfig) -> None:
        self.settings = settings
        self._running = threading.BoundedSemaphore(settings.max_running)
        self._lock = threading.Lock()
        self._busy: set[str] = set()  # targets with a check running
        self._servers: dict[str, _Server] = {}
        self.peak_running = 0
        self._now_running = 0

    def backing_off(self, server: str) -> float:
        """Seconds left of the server's backoff (0 when it may be tried)."""
        with self._lock:
            state = self._servers.get(server)
            return max(state.until - time.monotonic(), 0.0) if state is not None else 0.0

    def claim(self, target: str) -> bool:
        """Take the target for one check; False when a check of it is running."""
        with self._lock:
            if target in self._busy:
                return False
            self._busy.add(target)
            return True

    def run_slot(self) -> None:
        """Wait for one of the `max_running` slots (after `claim`)."""
        self._running.acquire()
        with self._lock:
            self._now_running += 1
            self.peak_running = max(self.peak_running, self._now_running)

    def release(self, target: str, server: str, *, slot: bool, connect_failed: bool) -> float:
        """The check is done; returns the server's backoff (0 unless its connection failed)."""
        if slot:
            with self._lock:
                self._now_running -= 1
            self._running.release()
        with self._lock:
            self._busy.discard(target)
            state = self._servers.setdefault(server, _Server())
            if not connect_failed:
                state.failures, state.until = 0, 0.0
                return 0.0
            state.failures += 1
            delay: float = min(SERVER_BACKOFF_SECONDS * 2 ** (state.failures - 1), MAX_SERVER_BACKOFF_SECONDS)
            delay = delay * random.uniform(0.8, 1.2)
            state.until = max(state.until, time.monotonic() + delay)
            return delay
