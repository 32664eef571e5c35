"""A real `dupewatch daemon` subprocess on a free port, scraped over HTTP, its stderr kept in a file.

A helper module rather than a conftest.py, so that only one module is named conftest.

Each daemon is a process of its own, forked from one that imported dupewatch already (`_Zygote`, as
`dbtest.run_dupewatch` forks CLI calls), with the daemon's own waits shortened (`TUNING`): tests wait for many
renders of the metrics page and reads of the fix records, and for every stop.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import tls_context
from prometheus_client.parser import text_string_to_metric_families

STARTUP_SECONDS = 20.0
DEADLINE_SECONDS = 20.0
POLL_SECONDS = 0.05  # the polling interval of a condition wait, not synchronisation

# The daemon's own waits, shortened for the daemons under test (what each stands for in production: its module).
# None is a claim of a test here: tests that measure one import the module's constant and bound by it.
TUNING = (
    # The metrics page is rendered again at most once a second after a change; every figure a test awaits waits
    # for the next render.
    "import monitor.metrics; monitor.metrics.RENDER_MIN_SECONDS = 0.05",
    # Fix records (dupewatch_fix_deleted_rows_total) are read every 5 s.
    "import monitor.daemon; monitor.daemon.FIX_TOTALS_SECONDS = 0.5",
    # The metrics server's loop looks for a stop every 0.5 s (socketserver's default): each stop waited for it.
    "import socketserver; socketserver.BaseServer.serve_forever.__defaults__ = (0.05,)",
    # Not a wait: one PyMySQL TLS context for every connection to MariaDB, as in the test process (tls_context).
    tls_context.INSTALL,
)


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


class ForkedProcess:
    """What tests use of a `subprocess.Popen` (pid, poll, wait, send_signal, kill, returncode) for a daemon forked
    by the zygote, its parent: the zygote reaps it and says its exit code."""

    def __init__(self, zygote: _Zygote, pid: int) -> None:
        self.zygote = zygote
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.zygote.exit_code(self.pid, 0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self.zygote.exit_code(self.pid, timeout)
            if self.returncode is None:
                raise subprocess.TimeoutExpired(["dupewatch", "daemon"], timeout or 0)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:  # not reaped yet: the pid is still the daemon's
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


# The zygote: imports dupewatch once (and applies TUNING), then reads one request a line ({"args", "cwd", "env",
# "stderr", "tuning"}), forks a daemon for each (which runs its request's "tuning", statements of a test's own) and
# answers {"started": pid}; it reaps its children and answers {"exited": pid, "code": ...} for each. A daemon runs
# `monitor.cli` as `python -m` runs it.
_ZYGOTE = r"""
import json, os, runpy, select, signal, sys, time
import monitor.cli, monitor.daemon, monitor.live, sqlalchemy.dialects.postgresql, sqlalchemy.dialects.mysql
TUNING
del sys.modules["monitor.cli"], monitor.cli

requests, answers = int(sys.argv[1]), int(sys.argv[2])
wake_read, wake_write = os.pipe()
os.set_blocking(wake_read, False)
os.set_blocking(wake_write, False)
signal.set_wakeup_fd(wake_write)
signal.signal(signal.SIGCHLD, lambda *_: None)


def answer(message):
    os.write(answers, (json.dumps(message) + "\n").encode())


def daemon(request):
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for fd in (requests, answers, wake_read, wake_write):
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    time.tzset()
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, os.devnull, os.O_WRONLY),
                            (2, request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
        opened = os.open(path, flags, 0o600)
        os.dup2(opened, fd)
        os.close(opened)
    for statement in request["tuning"]:
        exec(statement, {})
    sys.argv = ["", *request["args"]]
    runpy.run_module("monitor.cli", run_name="__main__", alter_sys=True)
    sys.exit(0)


pending = b""
while True:
    ready = select.select([requests, wake_read], [], [])[0]
    if wake_read in ready:
        while True:
            try:
                os.read(wake_read, 4096)
            except BlockingIOError:
                break
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            answer({"exited": pid, "code": os.waitstatus_to_exitcode(status)})
    if requests in ready:
        chunk = os.read(requests, 65536)
        if not chunk:
            break
        pending += chunk
        while b"\n" in pending:
            line, _, pending = pending.partition(b"\n")
            pid = os.fork()
            if pid == 0:
                daemon(json.loads(line))
            answer({"started": pid})
""".replace("TUNING", "\n".join(TUNING))

# What Python reads only as it starts: a daemon whose environment sets these otherwise takes a new interpreter.
_STARTING = ("PYTHON", "LANG", "LC_")


def _starting_env(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith(_STARTING) and k != "PYTHONUNBUFFERED"}


class _Zygote:
    """The forking process (`_ZYGOTE`), started at the first daemon; a thread reads its answers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # one start at a time
        self.changed = threading.Condition()
        self.proc: subprocess.Popen[bytes] | None = None
        self.requests = -1
        self.env: dict[str, str] = {}
        self.started: list[int] = []
        self.exits: dict[int, int] = {}
        atexit.register(self.close)

    def _start(self) -> None:
        request_read, request_write = os.pipe()
        answer_read, answer_write = os.pipe()
        self.env = _starting_env(dict(os.environ))
        self.proc = subprocess.Popen([sys.executable, "-c", _ZYGOTE, str(request_read), str(answer_write)],
                                     pass_fds=(request_read, answer_write), stdin=subprocess.DEVNULL)
        os.close(request_read)
        os.close(answer_write)
        self.requests = request_write
        threading.Thread(target=self._read, args=(answer_read,), name="daemon-zygote", daemon=True).start()

    def _read(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as answers:
            for line in answers:
                message = json.loads(line)
                with self.changed:
                    if "started" in message:
                        self.started.append(message["started"])
                    else:
                        self.exits[message["exited"]] = message["code"]
                    self.changed.notify_all()
        with self.changed:
            self.proc = None
            self.changed.notify_all()

    def usable(self, env: dict[str, str]) -> bool:
        return _starting_env(env) == (self.env if self.proc is not None else _starting_env(dict(os.environ)))

    def spawn(self, args: list[str], env: dict[str, str], stderr: Path, tuning: tuple[str, ...] = ()) -> ForkedProcess:
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self._start()
            request = {"args": args, "cwd": os.getcwd(), "env": env, "stderr": str(stderr), "tuning": list(tuning)}
            os.write(self.requests, (json.dumps(request) + "\n").encode())
            with self.changed:
                if not self.changed.wait_for(lambda: self.started, timeout=60):
                    raise AssertionError("the daemon zygote did not fork")
                return ForkedProcess(self, self.started.pop(0))

    def exit_code(self, pid: int, timeout: float | None) -> int | None:
        with self.changed:
            self.changed.wait_for(lambda: pid in self.exits, timeout=timeout)
            return self.exits.get(pid)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.close(self.requests)
            self.proc.wait(timeout=30)


_ZYGOTE_PROCESS = _Zygote()


@dataclass
class DaemonProcess:
    proc: subprocess.Popen[bytes] | ForkedProcess
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
            time.sleep(POLL_SECONDS)

    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 10.0) -> int:
        self.send(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)


def daemon_command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "monitor.cli", "daemon", "--config", str(config), *args]


def tuned_daemon_command(config: Path, *args: str, tuning: tuple[str, ...] = ()) -> list[str]:
    """`daemon_command` in a new interpreter, with `TUNING` and then `tuning`."""
    run = "import runpy; runpy.run_module('monitor.cli', run_name='__main__', alter_sys=True)"
    return [sys.executable, "-c", "; ".join((*TUNING, *tuning, run)), "daemon", "--config", str(config), *args]


def daemon_starter(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """For a fixture: starts daemons (waiting until they serve metrics) and kills leftovers afterwards. `tuning`:
    statements run in that daemon only, after `TUNING` (`import monitor.db; monitor.db.X = 0.5`), for a test that
    waits for one of the daemon's own timeouts."""
    started: list[DaemonProcess] = []

    def start(config: Path, port: int, *args: str, tuning: tuple[str, ...] = ()) -> DaemonProcess:
        log_path = tmp_path / f"daemon-{len(started)}.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc: subprocess.Popen[bytes] | ForkedProcess
        if _ZYGOTE_PROCESS.usable(env):
            proc = _ZYGOTE_PROCESS.spawn(["daemon", "--config", str(config), *args], env, log_path, tuning)
        else:
            with log_path.open("wb") as log_file:
                proc = subprocess.Popen(tuned_daemon_command(config, *args, tuning=tuning), stdout=subprocess.DEVNULL,
                                        stderr=log_file, env=env)
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
                time.sleep(POLL_SECONDS)

    yield start
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()
