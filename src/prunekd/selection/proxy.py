"""A selection's figure before any training: KL reduction, as DSIR measures it (Xie et al. 2023).

On a discrete feature space, here a k-means codebook of the features (fitted on the target clips and as many
AudioSet training clips drawn at random), KL(target || random) - KL(target || selected), where random is a
uniform draw of the selection's size: positive when the selection's distribution over the codes is closer to
the target's than chance. Both distributions get `smoothing` pseudo-counts per code, so an empty code is never
infinite; the codebook has at most a quarter as many codes as target clips, so that each code has target mass."""

from __future__ import annotations

import numpy as np

from prunekd.selection.methods.base import kmeans, nearest, rng

DEFAULTS = {"codes": 256, "seed": 0, "iterations": 10, "smoothing": 0.1, "fit_rows": 20000}


class Codebook:
    """k-means centres of at most fit_rows / 2 target clips and as many pool clips (drawn with the seed)."""

    def __init__(self, target: np.ndarray, pool: np.ndarray, cfg: dict | None = None):
        cfg = {**DEFAULTS, **(cfg or {})}
        draw = np.random.default_rng(cfg["seed"])
        half = cfg["fit_rows"] // 2
        t = target[np.sort(draw.choice(len(target), min(half, len(target)), replace=False))]
        p = pool[np.sort(draw.choice(len(pool), min(len(t), len(pool)), replace=False))]
        k = max(2, min(cfg["codes"], len(target) // 4))
        self.centres = kmeans(np.concatenate([t, p]), k, cfg["seed"], cfg["iterations"])

    def codes(self, x: np.ndarray, transform=None, chunk: int = 1 << 16) -> np.ndarray:
        """Each row's code; `transform` applied block by block (2 M rows are never converted at once)."""
        out = np.empty(len(x), np.int64)
        for i in range(0, len(x), chunk):
            b = np.asarray(x[i : i + chunk], np.float32)
            out[i : i + chunk] = nearest(transform(b) if transform else b, self.centres)
        return out


def _dist(codes: np.ndarray, n_codes: int, smoothing: float) -> np.ndarray:
    c = np.bincount(codes, minlength=n_codes).astype(np.float64) + smoothing
    return c / c.sum()


def kl(p: np.ndarray, q: np.ndarray) -> float:
    return float((p * np.log(p / q)).sum())


def kl_reduction(
    target_codes, pool_codes, kept, n_codes: int, seed: int = 0, name: str = "proxy", smoothing: float = 0.1
) -> dict:
    """{"kl_random", "kl_selected", "kl_reduction"} of the kept pool indices against a uniform draw of as many."""
    p = _dist(target_codes, n_codes, smoothing)
    draw = rng(seed, name).choice(len(pool_codes), size=len(kept), replace=False)
    k_rand = kl(p, _dist(pool_codes[draw], n_codes, smoothing))
    k_sel = kl(p, _dist(pool_codes[kept], n_codes, smoothing))
    return {"kl_random": k_rand, "kl_selected": k_sel, "kl_reduction": k_rand - k_sel}
