"""`ServerValue`: a database value no Python type holds, kept as the server's own text (see
`postgresql_values`, which reads PostgreSQL's `infinity` and years beyond Python's as such). Free of any driver, so
that the state store can keep and give back such a value (`incremental.values`)."""

from __future__ import annotations

from typing import Any


class ServerValue:
    """A value of the server's type `type_name` that Python's types cannot hold, as the server's text (`text`):
    `infinity`, `-infinity`, `0044-03-15 BC`, `12000-01-01`. It prints as that text and binds back as it.

    It orders as PostgreSQL does against the values Python holds: `-infinity` and years BC below all of them,
    `infinity` and years after 9999 above (two of them by that side, then by text); and, as PostgreSQL's
    infinities do, it stays itself when a `timedelta` is added or subtracted (a watermark of `infinity` minus an
    overlap is `infinity`). The text of a finite one is kept exactly; only these comparisons are approximate."""

    __slots__ = ("text", "type_name")

    def __init__(self, text: str, type_name: str) -> None:
        self.text, self.type_name = text, type_name

    @property
    def side(self) -> int:
        """-1: below every value Python holds of its type; 1: above."""
        return -1 if self.text.startswith("-") or self.text.endswith(" BC") else 1

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"ServerValue({self.text!r}, {self.type_name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ServerValue) and (self.text, self.type_name) == (other.text, other.type_name)

    def __hash__(self) -> int:
        return hash((self.text, self.type_name))

    def _order(self, other: Any) -> int:
        """-1, 0, 1: `self` against `other`."""
        if isinstance(other, ServerValue):
            mine, theirs = (self.side, self.text), (other.side, other.text)
            return (mine > theirs) - (mine < theirs)
        return self.side

    def __lt__(self, other: Any) -> bool:
        return self._order(other) < 0

    def __le__(self, other: Any) -> bool:
        return self._order(other) <= 0

    def __gt__(self, other: Any) -> bool:
        return self._order(other) > 0

    def __ge__(self, other: Any) -> bool:
        return self._order(other) >= 0

    def __add__(self, other: Any) -> ServerValue:
        return self

    __radd__ = __add__

    def __sub__(self, other: Any) -> ServerValue:
        return self
