"""Linear probes: is a value linearly decodable from the residual stream, where the lens fails?

Per (step, layer), a scikit-learn logistic regression (standardised inputs) from the residual
stream to a label (an intermediate result of the chain, the final answer), scored by
cross-validation over examples: each example is one problem, so train and test folds hold
disjoint problems. Beside it, the majority-class baseline scored the same way (the most frequent
label of the training folds), so a probe "beats chance" only if it beats that.

Example:
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 3, 120)
    >>> X = rng.normal(size=(120, 8)); X[:, 0] += 5 * y          # planted signal
    >>> r = probe(X, y, folds=3)
    >>> r.accuracy > 0.9 > r.baseline
    True
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .stats import bootstrap_ci


@dataclass
class ProbeResult:
    """Cross-validated probe and baseline: per-example hits (0/1) and their means."""

    correct: np.ndarray
    baseline_correct: np.ndarray

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if self.correct.size else float("nan")

    @property
    def baseline(self) -> float:
        return float(self.baseline_correct.mean()) if self.baseline_correct.size else float("nan")

    @property
    def n(self) -> int:
        return int(self.correct.size)


def probe(X: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0, C: float = 1.0,
          max_iter: int = 300) -> ProbeResult:
    """Cross-validated logistic-regression probe.

    Args:
        X: `Float[ndarray, "example dim"]` one residual-stream vector per problem.
        y: `[example]` labels (ints or strings); NaN labels (e.g. no 3rd intermediate) are dropped.
        folds: K of the K-fold split over examples (shuffled, seeded).
    """
    from sklearn.dummy import DummyClassifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import KFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or len(X) != len(y):
        raise ValueError(f"probe: X must be [n, dim] and y [n]; got {X.shape} and {y.shape}")
    if y.dtype.kind == "f":
        keep = np.isfinite(y)
        X, y = X[keep], y[keep].astype(np.int64)
    if len(y) < 2 * folds or np.unique(y).size < 2:
        return ProbeResult(np.zeros(0), np.zeros(0))
    cv = KFold(n_splits=folds, shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # classes absent from a training fold
        # np.asarray: sklearn's stubs allow a sparse result; predictions of a classifier are dense
        pred = np.asarray(cross_val_predict(model, X, y, cv=cv))
        base = np.asarray(cross_val_predict(DummyClassifier(strategy="most_frequent"), X, y, cv=cv))
    return ProbeResult((pred == y).astype(np.float64), (base == y).astype(np.float64))


def probe_grid(hidden: np.ndarray, labels: Mapping[str, np.ndarray], step_names: Sequence[str],
               layers: Sequence[int], steps: Sequence[int] | None = None, folds: int = 5,
               seed: int = 0, progress: bool = False) -> list[dict]:
    """Probe every (target, step, layer).

    Args:
        hidden: `Float[ndarray, "example step layer dim"]`.
        labels: target name → `[example]` labels.
        steps: step indices to probe (default: all).

    Returns:
        rows `{target, step, step_name, layer, accuracy, ci_low, ci_high, baseline, n}`
        (bootstrap CI over examples).
    """
    from tqdm.auto import tqdm

    steps = list(range(hidden.shape[1])) if steps is None else list(steps)
    cells = [(t, s, i) for t in labels for s in steps for i in range(len(layers))]
    rows = []
    for target, s, i in tqdm(cells, desc="probes", disable=not progress):
        r = probe(hidden[:, s, i], labels[target], folds=folds, seed=seed)
        ci = bootstrap_ci(r.correct, seed=seed)
        rows.append({"target": target, "step": int(s), "step_name": str(step_names[s]), "layer": int(layers[i]),
                     "accuracy": r.accuracy, "ci_low": ci.low, "ci_high": ci.high, "baseline": r.baseline,
                     "n": r.n})
    return rows
