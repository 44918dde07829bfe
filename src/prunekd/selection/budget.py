"""How many clips a selection keeps: the report's threshold (a probability score only), a kept fraction, or
`equal`: as many clips as the report's pruned set keeps at the same split and threshold."""

from __future__ import annotations

import numpy as np

from prunekd.errors import PrunekdError

KINDS = ("threshold", "fraction", "equal")


class BudgetError(PrunekdError, ValueError):
    pass


def parse(budget: dict) -> dict:
    """{"threshold": t} | {"fraction": f} | {"equal": t}: one key, checked."""
    if not isinstance(budget, dict) or len(budget) != 1 or next(iter(budget)) not in KINDS:
        raise BudgetError(f"budget {budget!r}: one of {{threshold: t}}, {{fraction: f}}, {{equal: t}}")
    kind, value = next(iter(budget.items()))
    if not 0 < float(value) < 1 and not (kind == "fraction" and float(value) == 1):
        raise BudgetError(f"budget {kind}: {value} is not between 0 and 1")
    return {"kind": kind, "value": float(value)}


def equal_count(reference_scores: np.ndarray, threshold: float) -> int:
    """Clips the report's pruned set keeps: domain classifier scores above the threshold."""
    return int((np.asarray(reference_scores) > threshold).sum())


def choose(method, fitted, scores: np.ndarray, budget: dict, seed: int, name: str, equal_k: int | None = None):
    """Indices (sorted) of the kept clips among `scores`."""
    b = parse(budget)
    if b["kind"] == "threshold":
        if not method.PROBABILITY:
            raise BudgetError(
                f"{name}: method {method.NAME} gives no probability, so a threshold budget means nothing; "
                "use {fraction: f} or {equal: t}"
            )
        return np.flatnonzero(scores > b["value"])  # as prune(): strictly above
    if b["kind"] == "fraction":
        k = int(round(b["value"] * len(scores)))
    else:
        if equal_k is None:
            raise BudgetError(f"{name}: an equal budget needs the report's pruned set at threshold {b['value']:g}")
        k = int(equal_k)
    return fitted.select(scores, min(k, len(scores)), seed, name)
