"""Bootstrap intervals against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnsight_codi.stats import bootstrap_ci, paired_bootstrap_diff, significant


def test_rate_interval_matches_the_normal_approximation():
    rng = np.random.default_rng(3)
    x = (rng.random(2000) < 0.3).astype(float)
    ci = bootstrap_ci(x, resamples=4000, seed=1)
    p = x.mean()
    half = 1.96 * math.sqrt(p * (1 - p) / x.size)  # Wald interval, valid at this n
    assert ci.value == pytest.approx(p)
    assert ci.low == pytest.approx(p - half, abs=0.004) and ci.high == pytest.approx(p + half, abs=0.004)


def test_seeded_and_nan_dropping():
    x = [1.0, 0.0, float("nan"), 1.0, 1.0]
    assert bootstrap_ci(x, seed=5) == bootstrap_ci(x, seed=5)
    assert bootstrap_ci(x, seed=5).n == 4
    assert bootstrap_ci([], seed=0).n == 0


def test_paired_difference_is_tighter_than_unpaired_when_pairs_correlate():
    rng = np.random.default_rng(0)
    base = (rng.random(500) < 0.5).astype(float)
    flip = rng.random(500) < 0.1
    steered = np.where(flip, 1.0, base)  # the same examples, 10% flipped to correct
    paired = paired_bootstrap_diff(steered, base, seed=0)
    assert paired.value == pytest.approx(steered.mean() - base.mean())
    assert significant(paired)
    unpaired_half = 1.96 * math.sqrt(steered.var() / 500 + base.var() / 500)
    assert (paired.high - paired.low) / 2 < unpaired_half
    with pytest.raises(ValueError, match="differ in length"):
        paired_bootstrap_diff([1, 0], [1])


def test_too_few_resamples_is_refused():
    with pytest.raises(ValueError, match="1,000"):
        bootstrap_ci([1, 0], resamples=100)
