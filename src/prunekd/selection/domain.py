"""Domain classifier (docs/method.md, "Domain classifier"), scoring and pruning.

Linear layer on sigmoid(ensemble logits), sigmoid output, BCE. Negatives: AudioSet eval (one fifth
held out for validation); positives: every clip of the challenge split. Each batch
holds batch_size/2 positives and batch_size/2 negatives drawn with replacement; an epoch is
(number of training samples // batch_size) iterations.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn

from prunekd.errors import PrunekdError


def split_holdout(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    perm = rng.permutation(n)
    k = int(round(n * fraction))
    return np.sort(perm[k:]), np.sort(perm[:k])


def train_classifier(
    pos: np.ndarray, neg: np.ndarray, cfg: dict, log=print, sigmoid_input: bool = True
) -> tuple[nn.Linear, dict]:
    """pos, neg: ensemble logits [n, 527] (sigmoid_input False: features taken as they are, e.g. embeddings).
    Returns the linear layer and training stats.

    The gradient of BCE through a linear layer is closed-form, so the loop computes it and the Adam
    update (the same arithmetic as torch.optim.Adam) in numpy: far less per-step overhead than
    autograd, which matters at 104 k iterations for split 100.
    """
    seed = cfg["seed"]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = nn.Linear(pos.shape[1], 1)  # PyTorch's default init, as the authors' nn.Linear
    n_pos, n_neg = len(pos), len(neg)
    # One matrix of sigmoid(logits), bias folded in as a constant-1 column: a batch is one gather.
    xall = np.empty((n_pos + n_neg, pos.shape[1] + 1), np.float32)
    xall[:n_pos, :-1] = pos
    xall[n_pos:, :-1] = neg
    if sigmoid_input:
        xall[:, :-1] = 1.0 / (1.0 + np.exp(-xall[:, :-1]))
    xall[:, -1] = 1.0
    w = np.concatenate([model.weight.detach().numpy()[0], model.bias.detach().numpy()]).astype(np.float32)
    m, v = np.zeros_like(w), np.zeros_like(w)
    lr, b1, b2, eps = cfg["lr"], 0.9, 0.999, 1e-8
    half = cfg["batch_size"] // 2
    bsz = 2 * half
    iters = max(1, (n_pos + n_neg) // cfg["batch_size"])
    total = iters * cfg["epochs"]
    y = np.r_[np.ones(half, np.float32), np.zeros(half, np.float32)]
    log_every = max(1, total // 10)
    block = max(1, min(total, 4096 // max(1, bsz // 600)))
    t0, step = time.time(), 0
    while step < total:
        k = min(block, total - step)
        # Balanced batches drawn with replacement: half positives, half negatives.
        idx = np.concatenate([rng.integers(0, n_pos, (k, half)), rng.integers(n_pos, n_pos + n_neg, (k, half))], 1)
        for j in range(k):
            x = xall[idx[j]]
            z = x @ w
            g = x.T @ (1.0 / (1.0 + np.exp(-z)) - y)
            g /= bsz
            step += 1
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            w -= (lr / (1 - b1**step)) * m / (np.sqrt(v / (1 - b2**step)) + eps)
            if step % log_every == 0 or step == total:
                loss = float((np.logaddexp(0, z).sum() - z[:half].sum()) / bsz)
                log(
                    f"iteration {step}/{total} (epoch {(step - 1) // iters + 1}/{cfg['epochs']}) "
                    f"batch loss {loss:.4f} ({time.time() - t0:.1f} s)"
                )
    with torch.no_grad():
        model.weight.copy_(torch.from_numpy(w[:-1]).unsqueeze(0))
        model.bias.copy_(torch.from_numpy(w[-1:]))
    return model, {"iterations_per_epoch": iters, "iterations": step, "seconds": time.time() - t0, "seed": seed}


@torch.no_grad()
def score(model: nn.Linear, logits: np.ndarray, batch: int = 65536, sigmoid_input: bool = True) -> np.ndarray:
    out = np.empty(len(logits), np.float32)
    for i in range(0, len(logits), batch):
        x = torch.from_numpy(np.asarray(logits[i : i + batch], np.float32))
        x = torch.sigmoid(x) if sigmoid_input else x
        out[i : i + batch] = torch.sigmoid(model(x)).squeeze(1).numpy()
    return out


def score_store(
    model: nn.Linear, store, positions: np.ndarray, members=None, chunk_rows: int = 1 << 16, log=print
) -> np.ndarray:
    """Scores for the given store positions, streamed in row blocks so 2 M clips need bounded memory.

    Returns an array over the whole store (NaN where not scored). Positions that form one contiguous
    run inside a block are read as a slice: far faster than an orthogonal (fancy) selection.
    """
    from prunekd.teachers.logit_store import embeddings

    n = store["row"].shape[0]
    out = np.full(n, np.nan, np.float32)
    positions = np.sort(np.asarray(positions))
    t0 = time.time()
    for start in range(0, len(positions), chunk_rows):
        p = positions[start : start + chunk_rows]
        if p[-1] - p[0] + 1 == len(p):
            x = embeddings(store, slice(int(p[0]), int(p[-1]) + 1), members)
        else:
            x = embeddings(store, p, members)
        out[p] = score(model, x)
        if start // chunk_rows % 8 == 7:
            log(f"scored {start + len(p)}/{len(positions)} clips ({time.time() - t0:.1f} s)")
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


def _confusion(pred: np.ndarray, labels: np.ndarray) -> dict:
    """Counts and both precisions of a thresholded prediction.

    precision_plain: tp / (tp + fp). precision_class_weighted: each count divided by its class's size,
    tp/n_pos / (tp/n_pos + fp/n_neg), as the authors' domain_classifier/train.py computes it (docs/method.md,
    "validation"): with many more positives than negatives it is lower than the plain one.
    """
    tp = int((pred & labels).sum())
    fp = int((pred & ~labels).sum())
    fn = int((~pred & labels).sum())
    tn = int((~pred & ~labels).sum())
    n_pos, n_neg = tp + fn, fp + tn
    tpr = tp / n_pos if n_pos else float("nan")
    fpr = fp / n_neg if n_neg else float("nan")
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "precision_plain": tp / (tp + fp) if tp + fp else float("nan"),
        "precision_class_weighted": tpr / (tpr + fpr) if tpr + fpr > 0 else float("nan"),
        "recall": tpr,
        # the share of held-out AudioSet clips a threshold keeps: what Table 1's "relative size" estimates
        "kept_share_of_negatives": fpr,
    }


def precision_recall(scores: np.ndarray, labels: np.ndarray, thresholds) -> list[dict]:
    """Per threshold (score > threshold is positive): counts, both precisions, recall, kept share of negatives."""
    labels = labels.astype(bool)
    return [{"threshold": float(t), **_confusion(scores > t, labels)} for t in thresholds]


# Thresholds of the validation curve in validation.json: every threshold a summary may ask for, to 0.01.
CURVE_THRESHOLDS = np.round(np.arange(1, 100) / 100, 2)


def validation_curve(scores: np.ndarray, labels: np.ndarray) -> dict:
    """Columns over CURVE_THRESHOLDS: both precisions, recall and the kept share of negatives."""
    rows = precision_recall(scores, labels, CURVE_THRESHOLDS)
    keys = ["threshold", "precision_plain", "precision_class_weighted", "recall", "kept_share_of_negatives"]
    return {k: [r[k] for r in rows] for k in keys}


def save_classifier(model: nn.Linear, path) -> None:
    from prunekd.atomic import atomic_path

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


class NoClipsError(PrunekdError, ValueError):
    """A split, or AudioSet eval, with no clips that have logits: nothing to train on."""


def train_and_validate(
    audioset_store, audioset_manifest, target_store, target_manifest, split: str, cfg: dict, out, report, log=print
) -> dict:
    """Train one split's classifier, save it to `out`, and write its validation report (JSON) to `report`."""
    from prunekd.atomic import write_json
    from prunekd.teachers.logit_store import embeddings, rows_where

    members = cfg.get("members")
    as_store, neg_pos = rows_where(audioset_store, audioset_manifest, "subset", ["eval"])
    t_store, pos_pos = rows_where(target_store, target_manifest, f"split{split}", ["True"])
    if len(pos_pos) == 0:
        raise NoClipsError(f"{target_manifest}: split{split} has no clips with logits")
    if len(neg_pos) == 0:
        raise NoClipsError(f"{audioset_manifest}: no AudioSet eval clips with logits")
    # As the authors: the classifier trains on every clip of the split and on 4/5 of AudioSet eval; it is
    # validated on the held-out fifth of eval against the target's test split (docs/method.md).
    _, test_pos = rows_where(target_store, target_manifest, "test", ["True"])
    neg_tr, neg_va = split_holdout(len(neg_pos), cfg["holdout_fraction"], np.random.default_rng(cfg["seed"]))
    neg = embeddings(as_store, neg_pos, members)
    pos = embeddings(t_store, pos_pos, members)
    log(f"split{split}: {len(pos)} positives (every clip of the split), {len(neg_tr)} negatives for training")
    model, stats = train_classifier(pos, neg[neg_tr], cfg, log)
    save_classifier(model, out)
    sv = score(model, np.concatenate([embeddings(t_store, test_pos, members), neg[neg_va]]))
    yv = np.r_[np.ones(len(test_pos)), np.zeros(len(neg_va))]
    validation = {
        "split": split,
        "members": members or list(as_store.attrs["members"]),
        "auc": roc_auc(sv, yv),
        "validation": "held-out AudioSet eval (negatives) vs the target's test split (positives)",
        "n_val_pos": int(len(test_pos)),
        "n_val_neg": int(len(neg_va)),
        "n_split_clips": int(len(pos_pos)),
        "n_train_pos": int(len(pos)),
        "n_train_neg": int(len(neg_tr)),
        "at_threshold": precision_recall(sv, yv, cfg["report_thresholds"]),
        "curve": validation_curve(sv, yv),
        **stats,
    }
    write_json(report, validation)
    log(f"split{split}: held-out ROC AUC {validation['auc']:.3f}")
    return validation


def score_training_clips(audioset_store, audioset_manifest, classifier, members, out, log=print) -> None:
    """Score every AudioSet training clip with a saved classifier; save the scores (over the whole store) as .npy."""
    from prunekd.atomic import atomic_path
    from prunekd.teachers.logit_store import training_rows

    store, train_pos = training_rows(audioset_store, audioset_manifest)
    scores = score_store(load_classifier(classifier), store, train_pos, members, log=log)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, scores)
    log(f"scored {len(train_pos)} AudioSet training clips")


def prune_training_clips(
    audioset_store, audioset_manifest, scores_path, threshold: float, key: dict, out, stats_path, log=print
) -> dict:
    """Write the training clips scoring above `threshold` (TSV) and their share (JSON, with `key` copied in)."""
    import json

    import pandas as pd

    from prunekd.atomic import write_json, write_table
    from prunekd.teachers.logit_store import ids as store_ids
    from prunekd.teachers.logit_store import training_rows

    store, train_pos = training_rows(audioset_store, audioset_manifest)
    scores = np.load(scores_path)
    kept = train_pos[prune(scores[train_pos], threshold)]
    rows, ids = store["row"][:], store_ids(store)
    write_table(out, pd.DataFrame({"position": kept, "row": rows[kept], "id": ids[kept], "score": scores[kept]}))
    stats = {
        **key,
        "threshold": threshold,
        "train_clips": int(len(train_pos)),
        "kept": int(len(kept)),
        "kept_share": float(len(kept) / max(1, len(train_pos))),
    }
    write_json(stats_path, stats)
    log(
        f"{json.dumps(key)} threshold {threshold}: kept {len(kept)} of {len(train_pos)} "
        f"({100 * stats['kept_share']:.1f} %)"
    )
    return stats


def domain_classifier_step(settings: dict, log=print, **paths) -> None:
    """`prunekd domain-classifier`: the paths by their flags' names."""
    train_and_validate(**paths, cfg=settings, log=log)


def score_step(audioset_store, audioset_manifest, classifier, out, settings=None, log=print) -> None:
    """`prunekd score` (`settings`: {"members": [...]} to score on a member subset)."""
    members = (settings or {}).get("members")
    score_training_clips(audioset_store, audioset_manifest, classifier, members, out, log)


def prune_step(audioset_store, audioset_manifest, scores, threshold, key: str, out, stats, log=print) -> None:
    """`prunekd prune` (`key`: JSON, copied into the stats)."""
    import json

    prune_training_clips(audioset_store, audioset_manifest, scores, threshold, json.loads(key), out, stats, log)
