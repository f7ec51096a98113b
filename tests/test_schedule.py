"""Update steps and drop-fraction annealing (sparse-ift.md §2.5)."""
import math

import pytest

from sift_train.schedule import UpdateSchedule


def test_cosine_drop_fraction_matches_official_run_value():
    # sparse-ift.md §2.5 "Checked [run]": 0.2870 at t = 100 with end = 750, α0 = 0.3
    sched = UpdateSchedule(end=750, interval=100, drop_fraction=0.3)
    assert sched.drop_fraction_at(100) == pytest.approx(0.2870, abs=5e-5)
    assert sched.drop_fraction_at(100) == pytest.approx(0.15 * (1 + math.cos(math.pi * 100 / 750)))


def test_cosine_starts_at_alpha0_is_half_at_midpoint_and_zero_at_end():
    sched = UpdateSchedule(end=1000, drop_fraction=0.3)
    assert sched.drop_fraction_at(0) == pytest.approx(0.3)
    assert sched.drop_fraction_at(500) == pytest.approx(0.15)
    assert sched.drop_fraction_at(1000) == pytest.approx(0.0, abs=1e-12)


def test_update_window_is_open_at_both_ends():
    # cbsparse: begin < t < end and t % ΔT == 0 (DYN:212-215)
    sched = UpdateSchedule(end=500, interval=100)
    assert sched.update_steps() == [100, 200, 300, 400]
    assert not sched.is_update_step(0) and not sched.is_update_step(500)
    assert not sched.is_update_step(150)


def test_paper_run_has_586_updates_ending_at_58600():
    sched = UpdateSchedule.for_training(391 * 200)  # sparse-ift.md §2.5 table
    steps = sched.update_steps()
    assert sched.end == 58650 and len(steps) == 586 and steps[-1] == 58600


def test_constant_anneal_keeps_alpha0():
    assert UpdateSchedule(end=100, anneal="constant").drop_fraction_at(90) == 0.3


def test_bad_schedule_settings_are_rejected():
    with pytest.raises(ValueError, match="interval"):
        UpdateSchedule(end=10, interval=0)
    with pytest.raises(ValueError, match="anneal"):
        UpdateSchedule(end=10, anneal="linear")
