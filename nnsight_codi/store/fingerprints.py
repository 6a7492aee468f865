"""Store fingerprints: the configuration and layout a resumed capture (or a CoT grid) must match, compared key
by key.

A fingerprint is a nested JSON-able dict (`{"config": ..., "layout": ...}`); two are compared flattened
(`config.limit`), and a content hash either side does not know (`UNKNOWABLE_KEYS`) never differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """`{"a": {"b": 1}} → {"a.b": 1}` (lists and scalars are leaves)."""
    if isinstance(obj, dict) and obj:
        out: dict[str, Any] = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: obj}


UNKNOWABLE_KEYS = frozenset({"model_weights", "vector_table"})
"""Content hashes that may be unknown (absent or None: a store or grid written before the key
existed, a remote model without local weights); they differ only when both sides know them
(`nnsight_codi.models.fingerprint`, `nnsight_codi.cot.grid.array_digest`)."""


def _differing(stored: Mapping[str, Any], current: Mapping[str, Any]) -> tuple[dict, dict, list[str]]:
    a, b = _flatten(dict(stored)), _flatten(dict(current))
    keys = [key for key in sorted(set(a) | set(b))
            if not (key.rsplit(".", 1)[-1] in UNKNOWABLE_KEYS and (a.get(key) is None or b.get(key) is None))
            and a.get(key, _MISSING) != b.get(key, _MISSING)]
    return a, b, keys


def mismatch_summary(stored: Mapping[str, Any], current: Mapping[str, Any], limit: int = 4) -> str:
    """The differing keys in one short line: the configuration's own keys (`limit 3 -> 4`), or the layout's
    when the configuration is the same (shallow keys first); at most `limit` of them, then how many more.

    >>> mismatch_summary({"config": {"limit": 3, "seed": 1}, "layout": {"n": 3}},
    ...                  {"config": {"limit": 4, "seed": 1}, "layout": {"n": 4}})
    'limit 3 -> 4'
    """
    a, b, keys = _differing(stored, current)
    shown = sorted([k for k in keys if k.startswith("config.")] or keys, key=lambda k: (k.count("."), k))
    parts = [f"{k.removeprefix('config.')} {_short(a.get(k, _MISSING), 28)} -> {_short(b.get(k, _MISSING), 28)}"
             for k in shown[:limit]]
    if len(shown) > limit:
        parts.append(f"{len(shown) - limit} more")
    return "; ".join(parts)


def diff_fingerprints(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Lines `key: store X, now Y` for every flattened key that differs (empty if equal)."""
    a, b, keys = _differing(stored, current)
    return [f"  {key}: store has {_short(a.get(key, _MISSING))}, this run has {_short(b.get(key, _MISSING))}"
            for key in keys]


class _Missing:
    def __repr__(self) -> str:
        return "(absent)"


_MISSING = _Missing()


def _short(v: Any, n: int = 80) -> str:
    s = repr(v)
    return s if len(s) <= n else s[: n - 3] + "..."
