"""How much a check tolerates: its `warn_above` / `fail_above` turned into an outcome, ok, warn or fail.

The peers say it their own way (Great Expectations' `mostly`, Soda's `warn: when > x` / `fail: when > x`, dbt's
`warn_if` / `error_if`); dupewatch's thresholds count excess rows (violating rows for a violations check), in rows
(`10`) or as a percentage of the rows the check read ("0.5%"). A check without thresholds fails as soon as it finds
anything, as it always did; with only `warn_above` it never fails, with only `fail_above` it never warns.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from monitor.config import CheckConfig

Outcome = Literal["ok", "warn", "fail"]
OUTCOMES: tuple[Outcome, ...] = ("ok", "warn", "fail")  # in order of gravity; the status metric exports the index


def judge(check: CheckConfig, found: int, checked: int | None) -> Outcome | None:
    """The outcome of a run that found `found` rows (excess or violating) among `checked` rows (None: unknown).
    None when a percentage threshold that decides it cannot be judged without `checked`."""
    warn, fail = check.warn_above, check.fail_above
    if warn is None and fail is None:
        return "fail" if found else "ok"
    failing = fail.exceeded(found, checked) if fail is not None else False
    if failing:
        return "fail"
    warning = warn.exceeded(found, checked) if warn is not None else False
    if failing is None or warning is None:
        return None
    return "warn" if warning else "ok"


def format_percent(percent: float | None) -> str:
    """A share of rows as a person reads it: `0.50%`, `<0.01%` for a few rows in millions; "" when unknown."""
    if percent is None:
        return ""
    if 0 < percent < 0.01:
        return "<0.01%"
    return f"{percent:.2f}%"
