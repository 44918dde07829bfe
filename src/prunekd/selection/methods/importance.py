"""DSIR style importance resampling: k clips drawn without replacement with probability in proportion to the
density ratio's importance weights exp(log p_target - log p_audioset) (prunekd.selection.methods.density_ratio),
by Gumbel top-k: the k largest of log-weight + Gumbel noise, seeded by the selection's seed and name."""

from __future__ import annotations

import numpy as np

from prunekd.selection.methods import density_ratio
from prunekd.selection.methods.base import rng, top_k

NAME = "importance"
PROBABILITY = False
DEFAULTS = density_ratio.DEFAULTS


class Importance(density_ratio.DensityRatio):
    def select(self, scores: np.ndarray, k: int, seed: int, name: str) -> np.ndarray:
        g = rng(seed, name).gumbel(size=len(scores))
        return top_k(scores.astype(np.float64) + g, k)


def fit(pos: np.ndarray, neg: np.ndarray, feature: str, cfg: dict, log=print) -> Importance:
    d = density_ratio.fit(pos, neg, feature, cfg, log)
    return Importance(d.feature, d.mu, d.sd, d.proj, d.target, d.audioset)
