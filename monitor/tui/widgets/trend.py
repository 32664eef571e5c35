"""The drill-down's trend chart: a check's duplicate groups and excess rows over time (textual-plotext)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from textual_plotext import PlotextPlot

from monitor.detect import CheckResult

MAX_POINTS = 400  # plotext draws into a few dozen columns; more points only cost time


def downsample(points: Sequence[CheckResult], limit: int = MAX_POINTS) -> list[CheckResult]:
    """At most `limit` points, evenly spaced, always keeping the newest."""
    if len(points) <= limit:
        return list(points)
    step = len(points) / limit
    picked = [points[int(i * step)] for i in range(limit - 1)]
    return [*picked, points[-1]]


class TrendChart(PlotextPlot):
    """Excess rows and groups against wall-clock time, oldest on the left."""

    DEFAULT_CSS = """
    TrendChart { height: 12; min-height: 8; }
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._points: list[CheckResult] = []
        self._now: datetime | None = None
        self._signature: tuple[object, ...] | None = None
        self.violations = False  # a violations check: one line, its violating rows

    def show(self, points: Sequence[CheckResult], now: datetime, *, violations: bool = False) -> None:
        """Plot these runs. Drawing costs tens of milliseconds, so nothing happens unless the runs changed."""
        points = downsample([p for p in points if p.excess_rows is not None])
        signature = (len(points), points[0].finished_at if points else None,
                     points[-1].finished_at if points else None, violations)
        self.violations = violations
        if signature == self._signature:
            return
        self._signature = signature
        self._points = points
        # The time axis ends at the newest run, not at "now", so the clock ticking never forces a redraw.
        self._now = points[-1].finished_at if points else now
        self._draw()
        self.refresh()

    def on_resize(self) -> None:
        """The title (the legend) is fitted to the width: drawn again when it changes."""
        if self._now is not None:
            self._draw()
            self.refresh()

    def _draw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.xfrequency(0)
        if len(self._points) < 2 or self._now is None:
            runs = f" ({len(self._points)} run so far)" if self._points else ""
            plt.title(f"Collecting history: the trend fills in as the check runs{runs}")
            return
        now = self._now
        xs = [(p.finished_at - now).total_seconds() / 60 for p in self._points]
        marker = "braille"
        # The legend is the title (plotext draws its own legend over the lines): amber rows, blue groups.
        if self.violations:
            excess = groups = [p.groups or 0 for p in self._points]
            plt.plot(xs, excess, color=(255, 175, 0), marker=marker)
            legend = "violating rows"
        else:
            excess = [p.excess_rows or 0 for p in self._points]
            groups = [p.groups or 0 for p in self._points]
            plt.plot(xs, excess, color=(255, 175, 0), marker=marker)
            plt.plot(xs, groups, color=(95, 175, 255), marker=marker)
            legend = "excess rows (amber), groups (blue)" if self.size.width >= 70 else "amber rows, blue groups"
        span = max(-min(xs), 1 / 6) if xs else 1
        ticks = [-span, -span * 2 / 3, -span / 3, 0]
        labels = [_clock_label(now, t) for t in ticks]
        plt.xticks(ticks, labels)
        plt.xlim(-span, 0)
        low, high = y_range([*excess, *groups])
        plt.ylim(low, high)
        plt.yticks(list[float](y_ticks(low, high)))
        runs = f"{len(self._points)} runs over {_span_label(span)}"
        plt.title(f"{legend} · {runs}" if len(legend) + len(runs) + 3 <= self.size.width - 4 else legend)

    def render(self):  # type: ignore[no-untyped-def]
        if self.size.width < 10 or self.size.height < 4:
            return ""
        return super().render()


def y_range(values: Sequence[int]) -> tuple[int, int]:
    """Axis bounds around the data (not from zero: a race adding 3 rows to 10,000 must still show)."""
    low, high = min(values), max(values)
    pad = max(1, math.ceil((high - low) * 0.15))
    return max(0, low - pad), high + pad


def y_ticks(low: int, high: int, count: int = 4) -> list[int]:
    step = max(1, math.ceil((high - low) / count))
    return list(range(low, high + 1, step))


def _clock_label(now: datetime, minutes: float) -> str:
    from datetime import timedelta

    moment = now + timedelta(minutes=minutes)
    return moment.strftime("%H:%M:%S") if -minutes < 10 else moment.strftime("%H:%M")


def _span_label(minutes: float) -> str:
    if minutes < 1:
        return f"{minutes * 60:.0f} s"
    if minutes < 120:
        return f"{minutes:.0f} min"
    return f"{minutes / 60:.0f} h"
