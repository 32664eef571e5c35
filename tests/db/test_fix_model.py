"""A model-based test of `dupewatch fix` (issue 9): generated schemas, an application writing between the
snapshot and every batch, and an oracle that checks every promise in SQL after the fix and after undo.

See fix_model.py for the model. The normal suite runs a fixed, derandomized set of examples per database and
shape; `DUPEWATCH_FUZZ_EXAMPLES=500` raises it for a soak (and `DUPEWATCH_FUZZ_SHRINK=1` shrinks a failure to
a minimal scenario).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from dbtest import DIALECTS
from fix_model import examples, run_scenario, scenarios

SHAPES = {
    # shape: (children, application operations, primary key, rows told apart by a tag column)
    "plain": (False, False, None, None),
    "identical_rows": (False, True, False, False),
    "references": (True, False, True, None),
    "no_primary_key": (True, False, False, None),
    "application": (True, True, None, None),
}
PHASES = [Phase.explicit, Phase.generate] + ([Phase.shrink] if os.environ.get("DUPEWATCH_FUZZ_SHRINK") else [])


def _model_test(dialect: str, shape: str):
    children, app, primary_key, tagged = SHAPES[shape]

    @settings(max_examples=examples(6), derandomize=True, deadline=None, database=None, phases=PHASES,
              suppress_health_check=list(HealthCheck), print_blob=False)
    @given(scenarios(dialect, children=children, app=app, primary_key=primary_key, tagged=tagged))
    def check(scenario):
        run_scenario(scenario)

    return check


@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("dialect", DIALECTS)
def test_fix_keeps_every_promise_on_generated_schemas(dialect: str, shape: str) -> None:
    _model_test(dialect, shape)()
