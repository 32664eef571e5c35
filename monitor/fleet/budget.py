"""The budgets a daemon holds over fleet targets, whatever their number.

- At most `[fleet] max_running` checks of targets run at once (the others wait for a slot, on their server's
  workers, holding no connection).
- At most `[fleet] server_connections` of them run at once on one server (`host:port`, whatever the database):
  the scheduler gives each server a pool of that many workers (`monitor.schedule`), so the cap is per server,
  not multiplied by its databases.
- At most one check per target at a time: a check whose target is busy is put off briefly, not run beside it.
- A server that refuses connections backs off as a whole (what refused, the server or one database, is asked
  of the server: `monitor.fleet.refusal`): its targets' checks are not tried until the backoff (doubling,
  jittered, capped) has passed; they report the wait as their error, and the first connection that succeeds
  ends it.
- A server that says it has no connection left for us (a role's or database's `CONNECTION LIMIT`,
  `max_connections`, `max_user_connections`) gets fewer of our checks at once from then on: as many as it was
  taking when it refused (at least one). The others wait for one of them to finish, holding no connection, so a
  limit below the cap costs no storm of refused connections; one more is tried again after
  `SERVER_LIMIT_RECOVERY_SECONDS` without another refusal, up to the cap. Each change of a server's limit is
  handed to `on_limit` (the daemon exports it: `dupewatch_server_connection_limit`), and a round that waited its
  whole interval for its server is reported as its checks' error (`monitor.schedule`), not skipped in silence.

A dead target costs at most one worker of its server (one check per target) for at most its statement timeout
plus the client deadline (`monitor.db`): the other targets keep their slots.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from monitor.config import FleetConfig

SERVER_BACKOFF_SECONDS = 5.0
MAX_SERVER_BACKOFF_SECONDS = 300.0
SERVER_LIMIT_RECOVERY_SECONDS = 300.0


@dataclass
class _Server:
    limit: int  # how many checks of its targets may run at once: the cap, fewer after it ran out of connections
    failures: int = 0
    until: float = 0.0  # monotonic time before which its targets are not tried
    running: int = 0  # checks of its targets running now
    exhausted_at: float = 0.0  # monotonic time it last said it had no connection left
    waiting: deque[object] = field(default_factory=deque)  # checks waiting to enter, first come first


class Budget:
    """Admission of fleet checks; thread-safe."""

    def __init__(self, settings: FleetConfig, on_limit: Callable[[str, int], None] | None = None) -> None:
        self.settings = settings
        self._on_limit = on_limit  # (server, how many checks it takes at once now), after each change
        self._running = threading.BoundedSemaphore(settings.max_running)
        self._lock = threading.Lock()
        self._server_free = threading.Condition(self._lock)
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

    def server_limit(self, server: str) -> int:
        """How many checks of the server's targets may run at once now."""
        with self._lock:
            return self._server(server).limit

    def enter_server(self, server: str, timeout: float) -> bool:
        """Wait (at most `timeout` seconds) until the server may take one more check; False when it did not.
        Checks enter in the order they came (a target whose round just ended does not pass the waiting ones)."""
        deadline = time.monotonic() + timeout
        ticket = object()
        raised: int | None = None
        with self._server_free:
            state = self._server(server)
            state.waiting.append(ticket)
            try:
                while True:
                    now = time.monotonic()
                    if state.limit < self.settings.server_connections \
                            and now - state.exhausted_at >= SERVER_LIMIT_RECOVERY_SECONDS:
                        state.limit, state.exhausted_at = state.limit + 1, now
                        raised = state.limit
                    if state.running < state.limit and state.waiting[0] is ticket:
                        state.running += 1
                        return True
                    if now >= deadline:
                        return False
                    self._server_free.wait(min(deadline - now, 1.0))
            finally:
                state.waiting.remove(ticket)
                self._server_free.notify_all()  # the next in line may be free to enter
                if raised is not None:
                    self._limit_changed(server, raised)

    def _server(self, server: str) -> _Server:
        """The server's state (the lock is held)."""
        state = self._servers.get(server)
        if state is None:
            state = self._servers[server] = _Server(limit=self.settings.server_connections)
        return state

    def run_slot(self) -> None:
        """Wait for one of the `max_running` slots (after `claim`)."""
        self._running.acquire()
        with self._lock:
            self._now_running += 1
            self.peak_running = max(self.peak_running, self._now_running)

    def release(self, target: str, server: str, *, slot: bool, connect_failed: bool, entered: bool = False,
                exhausted: bool = False) -> float:
        """The check is done (`entered`: it had entered its server); returns the server's backoff (0 unless its
        connection failed). `exhausted`: the server said it had no connection left for it."""
        if slot:
            with self._lock:
                self._now_running -= 1
            self._running.release()
        lowered: int | None = None
        with self._server_free:
            self._busy.discard(target)
            state = self._server(server)
            if entered:
                if exhausted:  # those running beside it are what the server takes
                    limit = max(1, min(state.limit, state.running - 1))
                    lowered = limit if limit != state.limit else None
                    state.limit, state.exhausted_at = limit, time.monotonic()
                state.running -= 1
                self._server_free.notify_all()
            delay = self._backoff(state, slot=slot, connect_failed=connect_failed)
        if lowered is not None:
            self._limit_changed(server, lowered)
        return delay

    @staticmethod
    def _backoff(state: _Server, *, slot: bool, connect_failed: bool) -> float:
        """The server's backoff after one check (the lock is held)."""
        if not slot:  # never ran (waited for its server in vain): it says nothing of the server
            return 0.0
        if not connect_failed:
            state.failures, state.until = 0, 0.0
            return 0.0
        state.failures += 1
        delay: float = min(SERVER_BACKOFF_SECONDS * 2 ** (state.failures - 1), MAX_SERVER_BACKOFF_SECONDS)
        delay = delay * random.uniform(0.8, 1.2)
        state.until = max(state.until, time.monotonic() + delay)
        return delay

    def _limit_changed(self, server: str, limit: int) -> None:
        if self._on_limit is not None:
            self._on_limit(server, limit)
