"""How many duplicate groups the next batch of a fix takes, and when a failed batch is tried again.

Batches are sized by time, not by count, the way pt-archiver and gh-ost size their chunks (`--chunk-time`): the
first batch is small, each next one aims at the target duration, growing at most twofold per batch while batches
are fast. The rate (groups per second) it sizes from is a conservative one: the slowest of the latest batch's and
those of the `RECENT` batches before it that ran long enough to measure one (a quarter of the target or more:
shorter ones are mostly fixed costs), so a batch that met a burst of load or a slow stretch of the table keeps
the next few small instead of being forgotten after one fast batch. A batch that ran past the target makes the
next one aim at half of it, until a batch fits its aim again. The target never comes near the statement timeout
(at most a tenth of it), and a batch that took half of it makes the next one a quarter of its size whatever the
rate says. A fixed `--batch-size` without a target turns sizing off: every batch is that many groups.

A batch the database rolled back to resolve a conflict (a deadlock victim, a lock wait timeout, a serialization
failure: see `Dialect.conflict`) is tried again, at most `ATTEMPTS` times in all, after a growing, jittered pause,
as careful batch jobs do (pt-archiver `--retries`). A batch cancelled by the statement timeout is tried again at a
quarter of its size, while sizing is on and the batch has more than one group.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

DEFAULT_BATCH_TIME = 0.5  # seconds a batch aims at (pt-online-schema-change's --chunk-time default)
DEFAULT_LARGEST = 5000  # groups in a batch at most, unless `--batch-size` says otherwise
FIRST_BATCH = 20  # groups in the first batch: small, so that a slow table shows itself before it hurts
GROWTH = 2.0  # at most this factor between two batches
RECENT = 4  # earlier batches whose rate still counts (the slowest of them and the latest sizes the next)
MEASURED = 0.25  # a batch's rate counts among the recent ones when it took at least this share of its target
OVERRUN_AIM = 0.5  # after a batch that ran past the target, the next aims at this share of it
TIMEOUT_SHARE = 0.1  # the target is at most this share of the statement timeout
ATTEMPTS = 5  # tries of one batch that lost a conflict
FIRST_PAUSE = 0.1  # seconds before the second try; doubled before each next one, with jitter


@dataclass
class BatchSizer:
    """The size of the next batch. `target`: seconds per batch, or None for batches of exactly `largest` groups.
    `timeout`: the statement timeout of the fix's connection, in seconds. `clock`: for tests."""

    target: float | None
    largest: int = DEFAULT_LARGEST
    timeout: float | None = None
    clock: Callable[[], float] = time.monotonic
    size: int = field(init=False)
    rate: float | None = field(init=False, default=None)  # groups per second the last size was set from
    aim: float | None = field(init=False, default=None)  # seconds the next batch aims at (the target, or less)
    _recent: deque[float | None] = field(init=False)  # the latest batches' rates (None: too short to measure)
    _started: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        if self.target is not None and self.timeout is not None:
            self.target = min(self.target, self.timeout * TIMEOUT_SHARE)
        self.size = self.largest if self.target is None else min(self.largest, FIRST_BATCH)
        self.aim = self.target
        self._recent = deque(maxlen=RECENT)

    @property
    def adaptive(self) -> bool:
        return self.target is not None

    def begin(self) -> None:
        """A batch of `size` groups starts now."""
        self._started = self.clock()

    def done(self, groups: int) -> float:
        """The batch that began last committed `groups` groups; sizes the next one. Returns its duration."""
        elapsed = max(self.clock() - self._started, 1e-6)
        if self.target is None or groups <= 0:
            return elapsed
        latest = groups / elapsed
        self.rate = min([latest, *[r for r in self._recent if r is not None]])
        self._recent.append(latest if elapsed >= self.target * MEASURED else None)
        self.aim = self.target * OVERRUN_AIM if elapsed > self.target else self.target
        wanted = int(self.rate * self.aim * (1 + 1e-9))  # not one group less for a rounding error
        if self.timeout is not None and elapsed > self.timeout / 2:
            wanted = min(wanted, groups // 4)
        self.size = max(1, min(self.largest, wanted, int(groups * GROWTH)))
        return elapsed

    def timed_out(self) -> bool:
        """The batch was cancelled by the statement timeout: whether to try it again, at a quarter of its size.
        Its rate (at most its size over the timeout) counts among the recent ones."""
        if self.target is None or self.size <= 1:
            return False
        if self.timeout is not None:
            self._recent.append(self.size / self.timeout)
        self.size = max(1, self.size // 4)
        self.rate = None
        return True


def pause(attempt: int, rng: random.Random | None = None) -> float:
    """Seconds to wait before try `attempt + 1` of a batch that lost a conflict: 0.1 s, doubling, jittered
    between half and one and a half times, so that the fix and the application do not collide in step."""
    jitter: float = (rng or random.Random()).uniform(0.5, 1.5)
    return float(FIRST_PAUSE * 2.0 ** (attempt - 1) * jitter)
