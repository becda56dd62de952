"""The NAB scorer against hand-computed cases (numenta/NAB sweeper.py, standard profile)."""

from __future__ import annotations

import math

import pytest

from streams.simulation.nab import (
    CostProfile,
    Window,
    normalised,
    probation_length,
    scaled_sigmoid,
    score,
    windows_at,
)

MAX_TP = 2 / (1 + math.exp(-5)) - 1  # scaledSigmoid(-1) = 0.98661


def test_scaled_sigmoid_matches_nab() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(2.999) == pytest.approx(2 / (1 + math.exp(14.995)) - 1)
    assert scaled_sigmoid(3.0) == -1.0 and scaled_sigmoid(50.0) == -1.0


def test_window_length_and_probation() -> None:
    assert windows_at([100, 600], length=1000) == [Window(100, 149), Window(600, 649)]
    assert windows_at([990], length=1000) == [Window(990, 999)]  # cut at the stream's end
    assert windows_at([], length=1000) == []
    assert probation_length(1000) == 150 and probation_length(100_000) == 750


def test_null_and_perfect_detectors_score_0_and_100() -> None:
    windows = windows_at([2000, 6000], length=10_000)
    null = score(10_000, windows, [[], []], [])
    assert (null.raw, null.null, null.perfect) == (-2.0, -2.0, 2.0)
    assert null.normalised == 0.0 and (null.tp, null.fn) == (0, 2)
    perfect = score(10_000, windows, [[2000], [6000]], [2000, 6000])
    assert perfect.raw == pytest.approx(2.0) and perfect.normalised == pytest.approx(100.0)


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    windows = [Window(500, 599)]  # width 100
    late = score(1000, windows, [[550, 590]], [550, 590])
    # position -(599 - 550 + 1) / 100 = -0.5
    assert late.raw == pytest.approx(scaled_sigmoid(-0.5) / MAX_TP)
    assert late.raw == pytest.approx(0.84828 / 0.98661, abs=1e-5)
    last = score(1000, windows, [[599]], [599])  # the last event of the window: -1/100
    assert last.raw == pytest.approx(scaled_sigmoid(-0.01) / MAX_TP)
    outside = score(1000, windows, [[600]], [])  # a hit outside its window does not count
    assert outside.raw == -1.0 and outside.fn == 1


def test_false_positives_weighted_by_distance_past_the_previous_window() -> None:
    windows = [Window(500, 599)]
    # 50 past the window's right edge: position 50 / (100 - 1)
    near = score(1000, windows, [[500]], [649])
    assert near.raw == pytest.approx(1.0 + 0.11 * scaled_sigmoid(50 / 99))
    assert near.fp == 1
    far = score(1000, windows, [[500]], [999])  # 400 / 99 > 3: full cost
    assert far.raw == pytest.approx(1.0 - 0.11)
    before = score(1000, windows, [[500]], [300])  # no window before: full cost
    assert before.raw == pytest.approx(1.0 - 0.11)
    inside = score(1000, windows, [[500]], [520, 530])  # in a window: ignored
    assert inside.raw == pytest.approx(1.0) and inside.fp == 0
    twice = score(1000, windows, [[500]], [300, 300])  # one alarm per event
    assert twice.fp == 1


def test_probationary_detections_are_ignored() -> None:
    windows = [Window(500, 599)]
    result = score(1000, windows, [[500]], [100, 149, 150])  # probation: first 150 events
    assert result.fp == 1 and result.raw == pytest.approx(1.0 - 0.11)
    early = score(1000, [Window(100, 199)], [[120]], [])
    assert early.tp == 0 and early.raw == -1.0


def test_two_windows_and_normalisation_over_streams() -> None:
    windows = [Window(200, 299), Window(600, 699)]
    result = score(1000, windows, [[250], []], [250, 320, 900])
    expected = (
        scaled_sigmoid(-0.5) / MAX_TP  # TP halfway through the first window
        - 1.0  # the second window is missed
        + 0.11 * scaled_sigmoid(21 / 99)  # |299 - 320| past the first window, width - 1 = 99
        + 0.11 * scaled_sigmoid(201 / 99)  # |699 - 900| past the second one
    )
    assert result.raw == pytest.approx(expected)
    assert (result.tp, result.fp, result.fn) == (1, 2, 1)
    assert result.normalised == pytest.approx(100 * (expected + 2) / 4)
    empty = score(1000, [], [], [500])
    assert empty.raw == -0.11 and math.isnan(empty.normalised)
    total = normalised([result, empty])
    assert total == pytest.approx(100 * (expected - 0.11 + 2) / 4)


def test_custom_profile_and_argument_checks() -> None:
    profile = CostProfile(tp=1.0, fp=0.22, fn=2.0)
    result = score(1000, [Window(500, 599)], [[]], [999], profile=profile)
    assert result.raw == pytest.approx(-2.0 + 0.22 * scaled_sigmoid(400 / 99))
    assert (result.null, result.perfect) == (-2.0, 1.0)
    with pytest.raises(ValueError, match="one entry per window"):
        score(1000, [Window(500, 599)], [], [])
    with pytest.raises(ValueError, match="outside the stream"):
        score(1000, [Window(500, 599)], [[]], [1000])


def test_doctests_of_the_simulation_package() -> None:
    """streams/ is not in pytest's testpaths, so its doctests are run from here."""
    import doctest

    from streams.simulation import evaluate, nab

    for module in (nab, evaluate):
        result = doctest.testmod(module)
        assert result.failed == 0 and result.attempted > 0, module.__name__
