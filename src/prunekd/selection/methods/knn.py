"""Mean cosine similarity to the k nearest target clips.

Exact (every target clip) where the target has at most `summary` clips; a larger target (TAU split 100:
140 k clips) is summarised first by `summary` k-means centres of its unit features, and a clip's score is its
mean similarity to the k nearest centres. Scoring is then 2 M x `summary` products, in row blocks, on the GPU
where there is one (docs/selections.md, "knn at AudioSet scale")."""

from __future__ import annotations

import numpy as np

from prunekd.selection.methods.base import Fitted, inputs, kmeans, unit

NAME = "knn"
PROBABILITY = False
DEFAULTS = {"k": 10, "summary": 4096, "seed": 0}


class Knn(Fitted):
    def __init__(self, feature: str, bank: np.ndarray, k: int):
        import torch

        self.feature, self.k = feature, min(k, len(bank))
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.bank = torch.from_numpy(bank).to(self.device)

    def score(self, x: np.ndarray, chunk: int = 8192) -> np.ndarray:
        import torch

        u = unit(inputs(x, self.feature))
        out = np.empty(len(u), np.float32)
        for i in range(0, len(u), chunk):
            sims = torch.from_numpy(u[i : i + chunk]).to(self.device) @ self.bank.T
            out[i : i + chunk] = sims.topk(self.k, dim=1).values.mean(dim=1).cpu().numpy()
        return out


def fit(pos: np.ndarray, neg: np.ndarray, feature: str, cfg: dict, log=print) -> Knn:
    cfg = {**DEFAULTS, **(cfg or {})}
    bank = unit(inputs(pos, feature))
    if len(bank) > cfg["summary"]:
        log(f"knn: {len(bank)} target clips summarised by {cfg['summary']} k-means centres")
        bank = unit(kmeans(bank, cfg["summary"], cfg["seed"]))
    return Knn(feature, np.ascontiguousarray(bank, np.float32), cfg["k"])
