"""A real `dupewatch daemon` subprocess on a free port, scraped over HTTP, its stderr kept in a file.

A helper module rather than a conftest.py, so that only one module is named conftest.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

STARTUP_SECONDS = 20.0
DEADLINE_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Scrape:
    """One parsed /metrics page: sample name -> list of (labels, value)."""

    text: str
    samples: dict[str, list[tuple[dict[str, str], float]]] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Scrape:
        scrape = cls(text)
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                scrape.samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return scrape

    def value(self, name: str, check: str) -> float | None:
        for labels, value in self.samples.get(name, []):
            if labels.get("check") == check:
                return value
        return None

    def checks(self, name: str = "dupewatch_check_interval_seconds") -> set[str]:
        return {labels["check"] for labels, _ in self.samples.get(name, [])}


@dataclass
class DaemonProcess:
    proc: subprocess.Popen[bytes]
    port: int
    config: Path
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def scrape(self) -> Scrape:
        with urllib.request.urlopen(self.url, timeout=5) as response:
            return Scrape.parse(response.read().decode("utf-8"))

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, predicate: Callable[[Scrape], bool], what: str,
                 timeout: float = DEADLINE_SECONDS) -> Scrape:
        """Scrape until `predicate` holds; fails with the log's tail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"daemon exited ({self.proc.returncode}):\n{self.log()[-3000:]}"
            scrape = self.scrape()
            if predicate(scrape):
                return scrape
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; log tail:\n{self.log()[-3000:]}")
            time.sleep(0.1)  # polling interval of a condition wait, not synchronisation

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int:
        self.send(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


def daemon_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "monitor.cli", "daemon", "--config", str(config), *args]


def daemon_starter(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """For a fixture: starts daemons (waiting until they serve metrics) and kills leftovers afterwards."""
    started: list[DaemonProcess] = []

    def start(config: Path, port: int, *args: str) -> DaemonProcess:
        log_path = tmp_path / f"daemon-{len(started)}.log"
        with log_path.open("wb") as log_file:
            proc = subprocess.Popen(daemon_command(config, *args), stdout=subprocess.DEVNULL, stderr=log_file,
                                    env={**os.environ, "PYTHONUNBUFFERED": "1"})
        daemon = DaemonProcess(proc, port, config, log_path)
        started.append(daemon)
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            assert proc.poll() is None, f"daemon exited ({proc.returncode}) at startup:\n{daemon.log()}"
            try:
                daemon.scrape()
                return daemon
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"daemon never served metrics:\n{daemon.log()}") from None
                time.sleep(0.05)

    yield start
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()
