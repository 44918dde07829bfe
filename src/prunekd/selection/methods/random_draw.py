"""The control: clips drawn uniformly without replacement, as the random subset of today's pipeline
(prunekd.selection.controls: the same seed and name give the same clips)."""

from __future__ import annotations

import numpy as np

from prunekd.selection.controls import subset_rng
from prunekd.selection.methods.base import Fitted

NAME = "random"
PROBABILITY = False


class Random(Fitted):
    def score(self, x: np.ndarray) -> np.ndarray:
        return np.zeros(len(x), np.float32)  # every clip alike: only the draw decides

    def select(self, scores: np.ndarray, k: int, seed: int, name: str) -> np.ndarray:
        return np.sort(subset_rng(seed, name).choice(len(scores), size=k, replace=False))


def fit(pos: np.ndarray, neg: np.ndarray, feature: str, cfg: dict, log=print) -> Random:
    return Random()
