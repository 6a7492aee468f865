"""Scoring for the local lm-eval tasks: exactly `nnsight-codi eval`'s (last number vs the gold after ####).

Example:
    >>> process_results({"answer": "<<2*3=6>> #### 6"}, ["The answer is: 6"])
    {'acc': 1.0}
"""

from __future__ import annotations

from ..data.scoring import extract_gold, extract_prediction, is_correct


def process_results(doc: dict, results: list[str]) -> dict[str, float]:
    """lm-eval `process_results`: `{"acc": 1.0 | 0.0}` for one document."""
    return {"acc": float(is_correct(extract_prediction(results[0]), extract_gold(doc["answer"])))}
