"""The one test the reports state their differences by: a one-sided exact permutation test over the seeds' runs
(the known-answer verdict, docs/known-answer.md; the selections table's p columns, docs/selections.md)."""

from __future__ import annotations

import itertools
import math

import numpy as np


def permutation_p(better, worse) -> float:
    """One-sided exact permutation test of mean(better) > mean(worse): the share of all C(n, k) ways to deal the
    pooled values into groups of the two sizes whose difference of means is at least the observed one (the
    observed dealing included, so never below 1 / C(n, k)). Beyond 200,000 dealings, 200,000 drawn at random
    (seeded)."""
    a, b = np.asarray(better, float), np.asarray(worse, float)
    pooled, k = np.concatenate([a, b]), len(a)
    if not len(a) or not len(b):
        return float("nan")
    total = pooled.sum()
    observed = a.mean() - b.mean()
    if math.comb(len(pooled), k) <= 200_000:
        idx = np.array(list(itertools.combinations(range(len(pooled)), k)))
    else:
        rng = np.random.default_rng(0)
        idx = np.argsort(rng.random((200_000, len(pooled))), axis=1)[:, :k]
    sums = pooled[idx].sum(axis=1)
    diffs = sums / k - (total - sums) / len(b)
    return float(np.mean(diffs >= observed - 1e-9))
