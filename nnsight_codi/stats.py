"""Bootstrap confidence intervals for rates, means and paired differences (numpy only).

The rule for every study: percentile bootstrap over examples, at least 1,000 resamples,
seeded; paired where two conditions ran on the same examples.

Example:
    >>> ci = bootstrap_ci([1, 0, 1, 1, 0, 1, 1, 1], seed=0)
    >>> round(ci.value, 3), ci.low <= ci.value <= ci.high
    (0.75, True)
    >>> d = paired_bootstrap_diff([1, 1, 1, 0], [0, 1, 0, 0], seed=0)
    >>> d.value
    0.5
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate with its percentile-bootstrap interval."""

    value: float
    low: float
    high: float
    n: int

    def as_dict(self, prefix: str = "") -> dict[str, float | int]:
        """`{value, ci_low, ci_high, n}` (keys prefixed), for results.json rows."""
        d = asdict(self)
        return {f"{prefix}value" if prefix else "value": d["value"], f"{prefix}ci_low": d["low"],
                f"{prefix}ci_high": d["high"], f"{prefix}n" if prefix else "n": d["n"]}

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}] (n={self.n})"


def _resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    if resamples < 1000:
        raise ValueError(f"use at least 1,000 bootstrap resamples, got {resamples}")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_ci(values: Sequence[float] | np.ndarray, statistic: Callable[[np.ndarray], np.ndarray] | None = None,
                 resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0) -> Interval:
    """Percentile bootstrap of `statistic` (default: the mean, i.e. a rate for 0/1 values).

    `values` is one number per example (NaNs are dropped). `statistic` maps `[resamples, n]`
    to `[resamples]` (default `mean(axis=-1)`). An empty input gives NaNs and n = 0.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[~np.isnan(x)]
    if x.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    stat = statistic or (lambda a: a.mean(axis=-1))
    point = float(stat(x[None])[0])
    boot = stat(x[_resample_indices(x.size, resamples, seed)])
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(boot, [alpha, 1.0 - alpha])
    return Interval(point, float(low), float(high), int(x.size))


def paired_bootstrap_diff(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                          resamples: int = RESAMPLES, level: float = LEVEL, seed: int = 0) -> Interval:
    """Mean of `a - b` over the same examples, resampling examples (pairs stay together)."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.size} vs {b.size}")
    return bootstrap_ci(a - b, resamples=resamples, level=level, seed=seed)


def significant(interval: Interval) -> bool:
    """True when the interval excludes zero (a difference that beats its baseline either way)."""
    return bool(interval.n) and (interval.low > 0 or interval.high < 0)


def mcnemar_exact(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """Two-sided exact McNemar p-value of paired 0/1 outcomes `a` vs `b` (a binomial test on the
    discordant pairs; 1.0 when there are none).

    Example:
        >>> round(mcnemar_exact([1] * 10 + [0] * 10, [0] * 10 + [0] * 10), 4)
        0.002
    """
    from scipy.stats import binomtest

    a, b = np.asarray(a, dtype=bool).ravel(), np.asarray(b, dtype=bool).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.size} vs {b.size}")
    up, down = int((a & ~b).sum()), int((~a & b).sum())
    return 1.0 if up + down == 0 else float(binomtest(up, up + down, 0.5).pvalue)


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control over all the tests given).

    Example:
        >>> holm([0.01, 0.04, 0.03]).round(3).tolist()
        [0.03, 0.06, 0.06]
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    m = p.size
    order = np.argsort(p)
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj
