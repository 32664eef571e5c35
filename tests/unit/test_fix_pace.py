"""The batch sizing policy of a fix (monitor/fix/pace.py), on a fake clock: start small, grow while fast, shrink
when slow, stay clear of the statement timeout; a fixed --batch-size stays fixed."""

from __future__ import annotations

import itertools
import random

from monitor.fix import pace
from monitor.fix.pace import ATTEMPTS, FIRST_BATCH, RECENT, BatchSizer, pause


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _batch(sizer: BatchSizer, clock: FakeClock, seconds_per_group: float) -> int:
    """Run one batch of `sizer.size` groups taking `seconds_per_group` each; returns its size."""
    size = sizer.size
    sizer.begin()
    clock.now += size * seconds_per_group
    sizer.done(size)
    return size


def test_batches_start_small_and_grow_at_most_twofold_while_fast() -> None:
    clock = FakeClock()
    sizer = BatchSizer(0.5, 5000, 30.0, clock=clock)
    sizes = [_batch(sizer, clock, 0.0001) for _ in range(12)]  # 10,000 groups a second: 5,000 fit in 0.5 s
    assert sizes[0] == FIRST_BATCH
    assert all(b <= 2 * a for a, b in itertools.pairwise(sizes))
    assert sizes == sorted(sizes) and sizes[-1] == 5000  # capped by the largest batch


def test_a_slow_batch_makes_the_next_one_fit_half_the_target_at_once() -> None:
    clock = FakeClock()
    sizer = BatchSizer(0.5, 5000, 30.0, clock=clock)
    for _ in range(10):
        _batch(sizer, clock, 0.0001)
    assert sizer.size == 5000
    _batch(sizer, clock, 0.01)  # the table became slow: 5,000 groups took 50 s
    assert sizer.size == 25  # 100 groups a second x half the 0.5 s target, after a batch that overran it
    _batch(sizer, clock, 0.01)  # 0.25 s: within the target again
    assert sizer.size == 50  # 100 groups a second x 0.5 s
    _batch(sizer, clock, 0.01)
    assert sizer.size == 50  # steady at the target


def test_a_slow_batch_is_remembered_for_the_next_few_then_batches_grow_again() -> None:
    """Sized from the slowest recent rate, not a smoothed one: one fast batch after a slow one (a burst of load
    that ended, or one that comes and goes) does not size the next one from the fast rate alone."""
    clock = FakeClock()
    sizer = BatchSizer(0.5, 5000, 30.0, clock=clock)
    for _ in range(8):
        _batch(sizer, clock, 0.01)  # 100 groups a second: 50 per batch
    assert sizer.size == 50
    _batch(sizer, clock, 0.06)  # a burst of load: 3 s instead of 0.5 s
    assert sizer.size == 4  # 16.7 groups a second x 0.25 s
    sizes = [_batch(sizer, clock, 0.01) for _ in range(RECENT + 4)]  # the burst is over
    # the slow batch's rate sizes the RECENT batches after it: 16.7 groups a second x 0.5 s (each within its target)
    assert sizes[:RECENT + 1] == [4, 8, 8, 8, 8], sizes
    assert sizes[RECENT + 1:] == [16, 32, 50], sizes  # then back to 100 a second, growing at most twofold
    assert all(b <= 2 * a for a, b in itertools.pairwise(sizes))


def test_batches_too_short_to_measure_a_rate_do_not_hold_growth_back() -> None:
    """A batch far shorter than the target is mostly fixed costs (a round trip, a commit): its rate would
    understate the table's and is not remembered, so batches still double while fast."""
    clock = FakeClock()
    sizer = BatchSizer(0.5, 5000, 30.0, clock=clock)
    sizes = []
    for _ in range(8):
        size = sizer.size
        sizer.begin()
        clock.now += 0.1 + size * 0.00001  # 100 ms per batch whatever its size, then 100,000 groups a second
        sizer.done(size)
        sizes.append(size)
    assert sizes == [FIRST_BATCH * 2 ** j for j in range(8)], sizes


def test_the_target_stays_well_below_the_statement_timeout() -> None:
    clock = FakeClock()
    sizer = BatchSizer(10.0, 5000, 2.0, clock=clock)
    assert sizer.target == 0.2  # a tenth of the timeout
    for _ in range(10):
        _batch(sizer, clock, 0.001)
    assert sizer.size == 200


def test_a_batch_taking_half_the_timeout_quarters_the_next(monkeypatch) -> None:
    """With the target at most a tenth of the timeout the rate alone keeps such a batch's successor below a
    quarter (it is at most the latest batch's); the rule holds whatever the target, here one above that share."""
    clock = FakeClock()
    sizer = BatchSizer(None, 400, 30.0, clock=clock)
    assert sizer.size == 400 and not sizer.adaptive
    monkeypatch.setattr(pace, "TIMEOUT_SHARE", 1.0)
    sizer = BatchSizer(20.0, 5000, 30.0, clock=clock)
    sizer.size = 400
    sizer.begin()
    clock.now += 16.0  # past half the timeout, within the 20 s target: the rate says 25 a second x 20 s = 500
    sizer.done(400)
    assert sizer.size == 100


def test_a_fixed_batch_size_is_never_changed() -> None:
    clock = FakeClock()
    sizer = BatchSizer(None, 7, 30.0, clock=clock)
    for per_group in (0.0001, 1.0, 0.0001):
        assert _batch(sizer, clock, per_group) == 7
    assert not sizer.timed_out() and sizer.size == 7


def test_a_timed_out_batch_is_retried_smaller_until_one_group() -> None:
    sizer = BatchSizer(0.5, 5000, 30.0, clock=FakeClock())
    sizes = []
    while sizer.timed_out():
        sizes.append(sizer.size)
    assert sizes == [5, 1] and sizer.size == 1


def test_a_timed_out_batch_counts_as_slow_for_the_next_ones() -> None:
    clock = FakeClock()
    sizer = BatchSizer(0.5, 5000, 30.0, clock=clock)
    for _ in range(12):
        _batch(sizer, clock, 0.00001)
    assert sizer.size == 5000
    assert sizer.timed_out() and sizer.size == 1250  # at most 5,000 groups in 30 s: 167 a second
    _batch(sizer, clock, 0.00001)  # the retried quarter is fast
    assert sizer.size == 83  # sized from the timed-out batch's rate, 166.7 groups a second x 0.5 s


def test_pauses_between_tries_grow_and_are_jittered() -> None:
    rng = random.Random(1)
    waits = [pause(n, rng) for n in range(1, ATTEMPTS)]
    assert all(0.05 * 2 ** (n - 1) <= w <= 0.15 * 2 ** (n - 1) for n, w in zip(range(1, ATTEMPTS), waits, strict=True))
    assert sum(waits) < 3.0


def test_the_dialects_name_the_conflicts_worth_running_a_batch_again_for() -> None:
    import psycopg
    import pymysql

    from monitor.dialects import for_backend

    mysql, pg, sqlite = for_backend("mysql"), for_backend("postgresql"), for_backend("sqlite")
    assert "deadlock" in (mysql.conflict(pymysql.err.OperationalError(1213, "Deadlock found")) or "")
    assert "lock wait timeout" in (mysql.conflict(pymysql.err.OperationalError(1205, "Lock wait timeout")) or "")
    assert mysql.conflict(pymysql.err.IntegrityError(1062, "Duplicate entry")) is None
    assert "deadlock" in (pg.conflict(psycopg.errors.DeadlockDetected("deadlock detected")) or "")
    assert "serialization" in (pg.conflict(psycopg.errors.SerializationFailure("could not serialize")) or "")
    assert pg.conflict(psycopg.errors.UniqueViolation("duplicate key")) is None
    assert sqlite.conflict(Exception("database is locked")) is None


def test_a_batch_run_again_after_a_group_changed_since_the_plan_is_timed_from_its_first_attempt() -> None:
    """The keepers-only attempt of a batch found a group changed since the plan (`_NotAsPlanned`): its transaction
    is rolled back and the same range runs again locking every row. The rolled-back attempt's time (lock waits
    included) is the batch's too: the sizer's clock is not started again, so the next size reflects both."""
    from contextlib import nullcontext
    from types import SimpleNamespace

    from monitor.fix import execute

    clock = FakeClock()
    sizer = BatchSizer(1.0, clock=clock)
    size = sizer.size
    attempts: list[bool] = []

    def advance(_conn: object, batch: SimpleNamespace, _size: int) -> SimpleNamespace:
        attempts.append(batch.recheck_next)
        clock.now += 4.0  # each attempt (the first waits on locks, the second re-checks every row) takes 4 s
        if not batch.recheck_next:
            raise execute._NotAsPlanned()
        return SimpleNamespace(done_through=size)

    conn = SimpleNamespace(begin=nullcontext, connection=SimpleNamespace(dbapi_connection=None))
    target = SimpleNamespace(db=SimpleNamespace(rules=SimpleNamespace(relax_batch_durability=lambda _c: None)))
    batch = SimpleNamespace(recheck_next=False)
    original, execute._advance = execute._advance, advance  # type: ignore[assignment]
    try:
        advanced = execute._paced_batch(conn, target, batch, sizer, 0, {}, None)  # type: ignore[arg-type]
    finally:
        execute._advance = original
    assert attempts == [False, True] and advanced is not None and advanced.done_through == size
    # 20 groups in 8 s (both attempts), not 4 s: 2.5 groups/s, past the 1 s target: aim at half of it
    assert sizer.rate == size / 8.0
    assert sizer.size == max(1, int(size / 8.0 * 1.0 * pace.OVERRUN_AIM * (1 + 1e-9)))
