"""A throwaway PostgreSQL cluster of its own (initdb + pg_ctl on a free port), for tests that need server
settings the shared server does not have (`wal_level = logical`) or need to stop or freeze the server."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbtest import IN_CI


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """A PostgreSQL cluster (initdb + pg_ctl) on a free port, owned by the `postgres` user when the tests run as
    root (PostgreSQL refuses to run as root). `settings` are passed to the server as `-c name=value`."""

    def __init__(self, **settings: str) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="dw_cluster_"))
        self.port = free_port()
        self.settings = {"listen_addresses": "127.0.0.1", "fsync": "off", **settings}
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.directory, "postgres")

    def run(self, *command: str) -> None:
        subprocess.run([*self.as_user, *command], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self.run("initdb", "-D", str(self.directory / "data"), "-U", "postgres", "--auth=trust", "--no-sync")
        self._start_server()

    def _start_server(self) -> None:
        options = " ".join(f"-c {name}={value}" for name, value in self.settings.items())
        self.run("pg_ctl", "-D", str(self.directory / "data"), "-l", str(self.directory / "log"), "-w", "-o",
                 f"-p {self.port} -k {self.directory} {options}", "start")

    @contextlib.contextmanager
    def down(self) -> Iterator[None]:
        """The server stopped (connections refused) for the block, then started again on its port and data."""
        self.run("pg_ctl", "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop")
        try:
            yield
        finally:
            self._start_server()

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def processes(self) -> list[int]:
        """The postmaster and every backend it started."""
        postmaster = int((self.directory / "data" / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
        return [postmaster, *map(int, children)]

    def signal_all(self, signum: int) -> None:
        """Signal the postmaster first, then its backends: a backend forked between listing the children and
        stopping the postmaster would otherwise stay awake and answer."""
        postmaster, *_ = self.processes()
        os.kill(postmaster, signum)
        signalled = {postmaster}
        while fresh := [pid for pid in self.processes() if pid not in signalled]:
            for pid in fresh:
                with contextlib.suppress(ProcessLookupError):  # a backend that exited meanwhile
                    os.kill(pid, signum)
                signalled.add(pid)

    def stop(self) -> None:
        if (self.directory / "data" / "postmaster.pid").exists():
            self.signal_all(signal.SIGCONT)
            subprocess.run([*self.as_user, "pg_ctl", "-D", str(self.directory / "data"), "-m", "immediate", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(self.directory, ignore_errors=True)


def require_programs(what: str, *programs: str) -> None:
    """Skip the test (fail it under CI=true) when a server program it starts is not installed."""
    if any(shutil.which(p) is None for p in programs):
        if IN_CI:
            pytest.fail(f"{'/'.join(programs)} are needed for {what} (CI=true)")
        pytest.skip(f"{'/'.join(programs)} not found")


def started_cluster(what: str, **settings: str) -> Iterator[Cluster]:
    """For a fixture: a started cluster, stopped and removed afterwards; skips (fails in CI) without initdb."""
    require_programs(what, "initdb", "pg_ctl")
    made = Cluster(**settings)
    try:
        made.start()
        yield made
    finally:
        made.stop()
