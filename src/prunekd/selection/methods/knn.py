"""Mean cosine similarity to the k nearest target clips.

Exact (every target clip) where the target has at most `summary` clips; a larger target (TAU split 100:
140 k clips) is summarised first by `summary` k-means centres of its unit features (fitted on at most
`fit_rows` of them), and a clip's score is its
mean similarity to the k nearest centres. Scoring is then 2 M x `summary` products, in row blocks, on the GPU
where there is one (docs/selections.md, "knn at AudioSet scale")."""

from __future__ import annotations

import numpy as np

from prunekd.selection.methods.base import Fitted, inputs, kmeans, unit

NAME = "knn"
PROBABILITY = False
DEFAULTS = {"k": 10, "summary": 4096, "seed": 0, "fit_rows": 32768}


class Knn(Fitted):
    def __init__(self, feature: str, bank: np.ndarray, k: int):
        import torch

        self.feature, self.k = feature, min(k, len(bank))
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.bank = torch.from_numpy(bank).to(self.device)

    def score(self, x: np.ndarray, chunk: int = 8192) -> np.ndarray:
        return super().score(x, chunk)  # blocks of [chunk, summary] similarities

    def score_block(self, x: np.ndarray) -> np.ndarray:
        import torch

        sims = torch.from_numpy(unit(inputs(x, self.feature))).to(self.device) @ self.bank.T
        return sims.topk(self.k, dim=1).values.mean(dim=1).cpu().numpy()


def fit(pos: np.ndarray, neg: np.ndarray, feature: str, cfg: dict, log=print) -> Knn:
    cfg = {**DEFAULTS, **(cfg or {})}
    bank = unit(inputs(pos, feature))
    if len(bank) > cfg["summary"]:
        log(f"knn: {len(bank)} target clips summarised by {cfg['summary']} k-means centres")
        # the centres from a sample of the target: k-means on all 140 k clips costs minutes and moves them little
        sample = np.random.default_rng(cfg["seed"]).choice(len(bank), min(len(bank), cfg["fit_rows"]), replace=False)
        bank = unit(kmeans(bank[np.sort(sample)], cfg["summary"], cfg["seed"], iterations=5))
    return Knn(feature, np.ascontiguousarray(bank, np.float32), cfg["k"])
