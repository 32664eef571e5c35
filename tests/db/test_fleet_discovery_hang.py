"""A source whose server never answers (a socket that listens and never accepts: the connect is taken by the
kernel's backlog, and no greeting ever comes) delays no other source's listing, and its own listing fails
within its connect timeout (PostgreSQL's libpq, MariaDB's PyMySQL handshake), keeping the last good list."""

from __future__ import annotations

import importlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from fleetdb import pg_databases
from monitor.config import config_from_dict
from monitor.fleet import Discovery
from monitor.fleet.discover import SourceState

# monitor.db.CONNECT_TIMEOUT_SECONDS (5 s), shortened: the test waits for it to pass. Whole seconds (libpq's
# connect_timeout), and long enough for the fast source to be listed 4 times before it.
CONNECT_TIMEOUT_SECONDS = 3


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose socket listens and never accepts."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


class Listings:
    """Each source's listings as `on_status` reports them."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.last: dict[str, SourceState] = {}
        self.changed = threading.Condition()

    def __call__(self, name: str, state: SourceState) -> None:
        with self.changed:
            self.count[name] += 1
            self.last[name] = state
            self.changed.notify_all()

    def wait(self, condition: Callable[[], bool], timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(condition, timeout)


@pytest.mark.parametrize("driver", ["postgresql+psycopg", "mysql+pymysql"])
def test_a_source_that_never_answers_delays_no_other_source_and_fails_within_its_connect_timeout(
        driver: str, silent_port: int, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr("monitor.db.CONNECT_TIMEOUT_SECONDS", CONNECT_TIMEOUT_SECONDS)
    # (monitor.fleet's `discover` is a function: the module is reached by import_module)
    monkeypatch.setattr(importlib.import_module("monitor.fleet.discover"), "CONNECT_TIMEOUT_SECONDS",
                        CONNECT_TIMEOUT_SECONDS)
    with pg_databases(1) as fleet:
        silent = f"{driver}://dupewatch@127.0.0.1:{silent_port}/nothing"
        config = config_from_dict({
            "sources": {"fast": {"url": fleet.server_url, "discover": "databases", "include": fleet.include,
                                 "every": "0.3s"},
                        "silent": {"url": silent, "discover": "databases", "every": "0.3s"}},
            "checks": [{"name": "a", "source": "fast", "table": "t", "key": ["k"]},
                       {"name": "b", "source": "silent", "table": "t", "key": ["k"]}],
        })
        listings = Listings()
        discovery = Discovery(config, on_status=listings)
        started = time.monotonic()
        discovery.start()
        try:
            # The fast source is listed again and again on its interval while the silent one is still connecting.
            assert listings.wait(lambda: listings.count["fast"] >= 4, CONNECT_TIMEOUT_SECONDS - 1), listings.count
            assert listings.count["silent"] == 0
            assert [t.database for t in discovery.targets()["fast"]] == fleet.names
            # The silent one fails within its connect timeout (not its statement timeout, nor never).
            assert listings.wait(lambda: listings.count["silent"] >= 1, CONNECT_TIMEOUT_SECONDS + 5)
            took = time.monotonic() - started
            assert CONNECT_TIMEOUT_SECONDS - 1 <= took <= CONNECT_TIMEOUT_SECONDS + 4, took
            state = listings.last["silent"]
            assert not state.up and state.targets is None and state.error, state
        finally:
            discovery.stop()
