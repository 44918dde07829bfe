"""Cosine similarity to the mean of the target's (unit-length) features."""

from __future__ import annotations

import numpy as np

from prunekd.selection.methods.base import Fitted, inputs, unit

NAME = "centroid"
PROBABILITY = False


class Centroid(Fitted):
    def __init__(self, feature: str, centre: np.ndarray):
        self.feature, self.centre = feature, centre

    def score_block(self, x: np.ndarray) -> np.ndarray:
        return unit(inputs(x, self.feature)) @ self.centre


def fit(pos: np.ndarray, neg: np.ndarray, feature: str, cfg: dict, log=print) -> Centroid:
    c = unit(inputs(pos, feature)).mean(axis=0)
    return Centroid(feature, (c / max(np.linalg.norm(c), 1e-12)).astype(np.float32))
