"""The live dashboard: a Textual app over the engine, the scheduler and the history store.

`app.py` builds the app (a factory tests reuse), `screens/` holds one screen per module, `widgets/` the
pieces they share, `messages.py` the typed messages that carry results from worker threads to the UI.
"""

from __future__ import annotations

import sys


def has_terminal() -> bool:
    """Whether the dashboard can run here: Textual reads keys from stdin and draws on stderr. Kept out of
    `app.py` so that asking does not import Textual."""
    return all(stream is not None and stream.isatty() for stream in (sys.__stdin__, sys.__stderr__))
