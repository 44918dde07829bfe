"""What every selection method shares: its inputs per feature, the default choice of k clips (the k best scores)."""

from __future__ import annotations

import zlib

import numpy as np

FEATURES = ("logits", "embeddings")


def inputs(x: np.ndarray, feature: str) -> np.ndarray:
    """A method's input from the stored features: sigmoid of the ensemble logits (the report's input), or the
    members' mean embedding as stored."""
    x = np.asarray(x, np.float32)
    if feature == "logits":
        import torch

        return torch.sigmoid(torch.from_numpy(x)).numpy()  # torch's threads: numpy's exp is one core
    if feature == "embeddings":
        return x
    raise ValueError(f"feature {feature!r}: one of {', '.join(FEATURES)}")


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (cosine similarity is then a dot product)."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def rng(seed: int, name: str) -> np.random.Generator:
    """A generator fixed by the seed and a name (the selection's), as the random control's."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]))


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest scores, sorted; ties go to the earlier index (stable), NaN never kept."""
    s = np.where(np.isnan(scores), -np.inf, scores)
    return np.sort(np.argsort(-s, kind="stable")[:k])


CHUNK = 1 << 16  # rows per block: 2 M stored rows are never converted at once


class Fitted:
    """A fitted method: `score` maps features [n, d] to scores [n] (higher: more like the target), in row blocks
    of `score_block`; `select` picks k of the scored clips (default: the k best)."""

    def score(self, x: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
        out = np.empty(len(x), np.float32)
        for i in range(0, len(x), chunk):
            out[i : i + chunk] = self.score_block(x[i : i + chunk])
        return out

    def score_block(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def select(self, scores: np.ndarray, k: int, seed: int, name: str) -> np.ndarray:
        return top_k(scores, k)


def kmeans(x: np.ndarray, k: int, seed: int, iterations: int = 10, chunk: int = 1 << 16) -> np.ndarray:
    """k centres of x [n, d] (Lloyd's algorithm from k distinct rows drawn with the seed); an empty cluster keeps
    its centre. Fewer rows than k: the rows themselves."""
    x = np.asarray(x, np.float32)
    if len(x) <= k:
        return x.copy()
    c = x[np.random.default_rng(seed).choice(len(x), size=k, replace=False)].copy()
    for _ in range(iterations):
        a = nearest(x, c, chunk)
        order = np.argsort(a, kind="stable")
        n = np.bincount(a, minlength=k)
        used = np.flatnonzero(n)
        c[used] = np.add.reduceat(x[order], np.r_[0, np.cumsum(n[used])[:-1]], axis=0) / n[used, None]
    return c


def nearest(x: np.ndarray, centres: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Index of each row's nearest centre (squared Euclidean), in row blocks of bounded memory."""
    cc = (centres * centres).sum(1)
    chunk = max(256, min(chunk, (1 << 24) // max(1, len(centres))))  # a block's distances stay ~64 MB
    out = np.empty(len(x), np.int64)
    for i in range(0, len(x), chunk):
        xb = np.asarray(x[i : i + chunk], np.float32)
        out[i : i + chunk] = np.argmin(cc[None, :] - 2 * (xb @ centres.T), axis=1)
    return out
