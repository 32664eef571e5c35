"""One PyMySQL "preferred TLS" context per test process, instead of one per connection.

PyMySQL (1.2 on) asks for TLS whenever the server offers it, and for a connection given no TLS option it builds a new
`ssl.SSLContext` (`ssl.create_default_context()`, which loads the system's CA certificates) every time: about 50 ms
on this machine, where the rest of a connection to the local MariaDB takes 1 ms, and the tests connect to MariaDB
thousands of times (their own engines, and dupewatch's in the test process, the CLI's forked processes and the
daemons). That context is the same every time (no CA, no certificate, verification off), and an `SSLContext` may
serve many connections, so the tests' processes build it once (`install`, before they fork); a connection given TLS
options of its own gets its own context as before. dupewatch itself is unchanged: what it passes PyMySQL, and
whether a connection uses TLS, are the same.

A module of its own, with no import of the tests' other helpers: the CLI's forking process and the daemons' zygote
(`dbtest._FORKING`, `daemonproc._ZYGOTE`) import it too (`INSTALL`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# A statement that installs it in a Python started by the tests (`python -c`), whatever its working directory.
INSTALL = (f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); import tls_context; "
           "sys.path.pop(0); tls_context.install()")


def install() -> None:
    """Built here, once: a process forked after it (a CLI call, a daemon) shares it too."""
    import pymysql.connections

    connection = pymysql.connections.Connection
    if getattr(connection._create_ssl_ctx, "shares_preferred", False):
        return
    create = connection._create_ssl_ctx
    preferred = create(None, {})  # what PyMySQL builds for a connection given no TLS option (it reads `sslp` only)

    def create_ssl_ctx(self: Any, sslp: Any) -> Any:
        return preferred if isinstance(sslp, dict) and not sslp else create(self, sslp)

    create_ssl_ctx.shares_preferred = True  # type: ignore[attr-defined]
    connection._create_ssl_ctx = create_ssl_ctx
