"""Every learning-rate schedule is defined for runs of 1 to a few steps (the seed's one-cycle
schedule raised ZeroDivisionError at 4 steps)."""

import math

import pytest

from imgpipe.train.schedules import SCHEDULES, multiplier


@pytest.mark.parametrize("kind", SCHEDULES)
@pytest.mark.parametrize("total", [1, 2, 3, 4, 5, 1000])
@pytest.mark.parametrize("warmup", [0.0, 0.23, 0.3, 1.0])
def test_schedules_are_finite_and_positive_for_any_length(kind, total, warmup):
    values = [multiplier(kind, s, total, warmup) for s in range(total)]
    assert all(math.isfinite(v) and 0 <= v <= 1 for v in values)
    assert max(values) > 0


def test_triangle_follows_airbench_shape():
    values = [multiplier("triangle", s, 101, 0.25) for s in range(101)]
    assert values[0] == pytest.approx(0.2) and values[25] == pytest.approx(1.0)
    assert values[-1] == pytest.approx(0.07)


def test_unknown_schedule_and_zero_steps_are_errors():
    with pytest.raises(ValueError):
        multiplier("nope", 0, 3)
    with pytest.raises(ValueError):
        multiplier("triangle", 0, 0)
