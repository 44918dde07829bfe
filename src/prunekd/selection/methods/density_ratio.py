"""Moore-Lewis style: log p_target(x) - log p_audioset(x), each density a Gaussian.

Both Gaussians live in one low-dimensional space: the features standardised and projected on the first
`dims` principal components of the target and AudioSet eval clips together (a full covariance in 527 or 768
dimensions from a few thousand clips is singular); each covariance is shrunk towards its mean variance by
`shrinkage`. The AudioSet density is fitted on AudioSet eval, the same hold-out as the classifier's negatives."""

from __future__ import annotations

import numpy as np

from prunekd.selection.methods.base import Fitted, inputs

NAME = "density_ratio"
PROBABILITY = False
DEFAULTS = {"dims": 32, "shrinkage": 0.1}


class Gaussian:
    def __init__(self, z: np.ndarray, shrinkage: float):
        self.mean = z.mean(0)
        cov = np.cov(z - self.mean, rowvar=False).reshape(z.shape[1], z.shape[1])
        cov = (1 - shrinkage) * cov + shrinkage * np.trace(cov) / len(cov) * np.eye(len(cov))
        chol = np.linalg.cholesky(cov)
        self.white = np.linalg.inv(chol).T.astype(np.float32)  # ||(z - mean) @ white||^2: the Mahalanobis term
        self.const = -np.log(np.diag(chol)).sum() - 0.5 * len(cov) * np.log(2 * np.pi)

    def logpdf(self, z: np.ndarray) -> np.ndarray:
        w = (z - self.mean.astype(np.float32)) @ self.white
        return self.const - 0.5 * np.einsum("ij,ij->i", w, w)


class DensityRatio(Fitted):
    def __init__(self, feature, mu, sd, proj, target: Gaussian, audioset: Gaussian):
        self.feature, self.mu, self.sd, self.proj, self.target, self.audioset = feature, mu, sd, proj, target, audioset
        # standardising folded into the projection: one [n, d] x [d, dims] product per block
        self.folded = (proj / sd[:, None]).astype(np.float32)
        self.offset = ((mu / sd) @ proj).astype(np.float32)

    def project(self, x: np.ndarray) -> np.ndarray:
        return inputs(x, self.feature) @ self.folded - self.offset

    def score_block(self, x: np.ndarray) -> np.ndarray:
        z = self.project(x)
        return self.target.logpdf(z) - self.audioset.logpdf(z)


def fit(pos: np.ndarray, neg: np.ndarray, feature: str, cfg: dict, log=print) -> DensityRatio:
    cfg = {**DEFAULTS, **(cfg or {})}
    p, n = inputs(pos, feature), inputs(neg, feature)
    both = np.concatenate([p, n])
    mu, sd = both.mean(0), both.std(0) + 1e-6
    z = (both - mu) / sd
    dims = min(cfg["dims"], z.shape[1], max(1, len(z) - 1))
    zc = (z - z.mean(0)).astype(np.float64)
    _, vecs = np.linalg.eigh(zc.T @ zc)  # the principal axes from the d x d scatter: far faster than an SVD of z
    proj = vecs[:, ::-1][:, :dims].astype(np.float32)
    zp, zn = ((p - mu) / sd) @ proj, ((n - mu) / sd) @ proj
    return DensityRatio(
        feature, mu, sd, proj, Gaussian(zp.astype(np.float64), cfg["shrinkage"]),
        Gaussian(zn.astype(np.float64), cfg["shrinkage"]),
    )  # fmt: skip
