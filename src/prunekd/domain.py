"""Domain classifier (REFERENCE.md section 1 item 2), scoring and pruning.

Linear layer on sigmoid(ensemble logits), sigmoid output, BCE. Negatives: AudioSet eval (one fifth
held out); positives: the challenge split (one fifth held out for the validation report). Each batch
holds batch_size/2 positives and batch_size/2 negatives drawn with replacement; an epoch is
(number of training samples // batch_size) iterations.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn


def split_holdout(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(n)
    k = int(round(n * fraction))
    return np.sort(perm[k:]), np.sort(perm[:k])


def train_classifier(pos: np.ndarray, neg: np.ndarray, cfg: dict, log=print) -> tuple[nn.Linear, dict]:
    """pos, neg: ensemble logits [n, 527]. Returns the linear layer and training stats."""
    seed = cfg["seed"]
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    xp = torch.sigmoid(torch.from_numpy(np.asarray(pos, np.float32)))
    xn = torch.sigmoid(torch.from_numpy(np.asarray(neg, np.float32)))
    model = nn.Linear(xp.shape[1], 1)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    half = cfg["batch_size"] // 2
    iters = max(1, (len(xp) + len(xn)) // cfg["batch_size"])
    y = torch.cat([torch.ones(half), torch.zeros(half)])
    loss_fn = nn.BCEWithLogitsLoss()  # sigmoid output + BCE, fused for numerical stability
    t0 = time.time()
    for epoch in range(cfg["epochs"]):
        total = 0.0
        ip = torch.randint(0, len(xp), (iters, half), generator=gen)
        in_ = torch.randint(0, len(xn), (iters, half), generator=gen)
        for it in range(iters):
            x = torch.cat([xp[ip[it]], xn[in_[it]]])
            loss = loss_fn(model(x).squeeze(1), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
        if epoch % max(1, cfg["epochs"] // 10) == 0 or epoch == cfg["epochs"] - 1:
            log(f"epoch {epoch + 1}/{cfg['epochs']} loss {total / iters:.4f} ({time.time() - t0:.1f} s)")
    return model, {"iterations_per_epoch": iters, "seconds": time.time() - t0, "seed": seed}


@torch.no_grad()
def score(model: nn.Linear, logits: np.ndarray, batch: int = 65536) -> np.ndarray:
    out = np.empty(len(logits), np.float32)
    for i in range(0, len(logits), batch):
        x = torch.sigmoid(torch.from_numpy(np.asarray(logits[i:i + batch], np.float32)))
        out[i:i + batch] = torch.sigmoid(model(x)).squeeze(1).numpy()
    return out


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with tie correction)."""
    labels = labels.astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(np.asarray(scores, np.float64))
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], len(xs)]
    avg = (starts + ends + 1) / 2.0
    ranks = np.empty(len(x))
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def precision_recall(scores: np.ndarray, labels: np.ndarray, thresholds) -> list[dict]:
    labels = labels.astype(bool)
    out = []
    for t in thresholds:
        pred = scores > t
        tp = int((pred & labels).sum())
        fp = int((pred & ~labels).sum())
        fn = int((~pred & labels).sum())
        out.append({"threshold": float(t), "precision": tp / (tp + fp) if tp + fp else float("nan"),
                    "recall": tp / (tp + fn) if tp + fn else float("nan"),
                    "kept_share_of_negatives": float(pred[~labels].mean()) if (~labels).any() else float("nan")})
    return out


def save_classifier(model: nn.Linear, path) -> None:
    from .atomic import atomic_path
    with atomic_path(path) as tmp:
        torch.save(model.state_dict(), tmp)


def load_classifier(path) -> nn.Linear:
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = nn.Linear(state["weight"].shape[1], 1)
    model.load_state_dict(state)
    return model.eval()


def prune(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of the clips whose score exceeds the threshold."""
    return np.flatnonzero(scores > threshold)
