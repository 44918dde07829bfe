"""One selection method at one budget on the stores: which AudioSet training clips, their scores, the proxy.

The method is fitted on what the report's classifier trains on (every clip of the split as positives, AudioSet
eval less its held-out fifth as negatives; prunekd.selection.domain.train_and_validate) and scores every
AudioSet training clip; the budget (prunekd.selection.budget) decides how many it keeps. The proxy
(prunekd.selection.proxy) is computed on the sigmoid of the ensemble logits for every selection, so that the
rows of a comparison share one codebook."""

from __future__ import annotations

import time

import numpy as np

from prunekd.selection import budget as budgets
from prunekd.selection import proxy
from prunekd.selection.domain import split_holdout
from prunekd.selection.methods import METHODS
from prunekd.selection.methods.base import FEATURES, inputs
from prunekd.teachers.logit_store import embedding_features, embeddings, rows_where, training_rows


def features(store, positions: np.ndarray, feature: str, members=None) -> np.ndarray:
    """The stored feature of the given positions: ensemble logits (raw) or the members' mean embedding."""
    if feature == "logits":
        return embeddings(store, positions, members)
    if feature == "embeddings":
        return embedding_features(store, positions, members)
    raise budgets.BudgetError(f"feature {feature!r}: one of {', '.join(FEATURES)}")


def method_of(name: str):
    if name not in METHODS:
        raise budgets.BudgetError(f"selection method {name!r}: one of {', '.join(METHODS)}")
    return METHODS[name]


def fit_data(audioset_store, audioset_manifest, target_store, target_manifest, split, feature, cfg, members=None):
    """(positives, negatives, AudioSet store, its training positions) as the report's classifier sees them."""
    as_store, neg_pos = rows_where(audioset_store, audioset_manifest, "subset", ["eval"])
    t_store, pos_pos = rows_where(target_store, target_manifest, f"split{split}", ["True"])
    neg_tr, _ = split_holdout(len(neg_pos), cfg["holdout_fraction"], np.random.default_rng(cfg["seed"]))
    pos = features(t_store, pos_pos, feature, members)
    neg = features(as_store, neg_pos, feature, members)[neg_tr]
    store, train_pos = training_rows(audioset_store, audioset_manifest)
    return pos, neg, store, train_pos


def run(method: str, feature: str, pos, neg, pool, budget: dict, cfg: dict, seed: int, name: str, equal_k=None,
        log=print) -> tuple[np.ndarray, np.ndarray, dict]:  # fmt: skip
    """(scores over the pool, kept pool indices, timings) of one method on one feature at one budget.

    cfg: {"domain_classifier": ..., "<method>": its settings}."""
    m = method_of(method)
    mcfg = cfg["domain_classifier"] if method == "domain_classifier" else cfg.get(method, {})
    t0 = time.time()
    fitted = m.fit(pos, neg, feature, mcfg, log)
    t1 = time.time()
    scores = fitted.score(pool)
    t2 = time.time()
    kept = budgets.choose(m, fitted, scores, budget, seed, name, equal_k)
    return scores, kept, {"fit_s": t1 - t0, "score_s": t2 - t1, "select_s": time.time() - t2}


class Proxy:
    """The codes of the target and of every pool clip on a codebook of the sigmoid logits, computed once for all
    the selections of a comparison; `figure(kept)` is then a count."""

    def __init__(self, target_logits, pool_logits, cfg: dict | None = None):
        self.cfg = {**proxy.DEFAULTS, **(cfg or {})}
        sig = lambda x: inputs(x, "logits")  # noqa: E731
        t = sig(target_logits)
        sample = np.random.default_rng(self.cfg["seed"]).choice(
            len(pool_logits), min(len(pool_logits), len(t)), replace=False
        )
        self.book = proxy.Codebook(t, sig(pool_logits[np.sort(sample)]), self.cfg)
        self.target, self.pool = self.book.codes(t), self.book.codes(pool_logits, sig)

    def figure(self, kept, name: str = "proxy") -> dict:
        c = self.cfg
        # the random reference drawn apart from a random selection of the same seed and name
        return proxy.kl_reduction(
            self.target, self.pool, kept, len(self.book.centres), c["seed"], f"proxy:{name}", c["smoothing"]
        )


def proxy_figure(target_logits, pool_logits, kept, cfg: dict | None = None, name: str = "proxy") -> dict:
    """KL reduction of the kept pool indices, on a codebook of the sigmoid logits."""
    return Proxy(target_logits, pool_logits, cfg).figure(kept, name)


def select_training_clips(
    audioset_store, audioset_manifest, target_store, target_manifest, split, method, feature, budget, settings,
    name, out, stats_path, like=None, log=print,
) -> dict:  # fmt: skip
    """Write the kept AudioSet training clips (TSV as a pruned set: position, row, id, score) and their stats.

    like: the report's pruned set (kept.tsv) whose size an equal budget takes."""
    import pandas as pd

    from prunekd.atomic import write_json, write_table
    from prunekd.teachers.logit_store import ids as store_ids

    members = settings.get("members")
    cfg = settings
    pos, neg, store, train_pos = fit_data(
        audioset_store, audioset_manifest, target_store, target_manifest, split, feature, cfg["domain_classifier"],
        members,
    )  # fmt: skip
    pool = features(store, train_pos, feature, members)
    equal_k = len(pd.read_csv(like, sep="\t")) if like else None
    scores, kept, times = run(method, feature, pos, neg, pool, budget, cfg, cfg.get("seed", 0), name, equal_k, log)
    kept_pos = train_pos[kept]
    rows, ids = store["row"][:], store_ids(store)
    write_table(out, pd.DataFrame({"position": kept_pos, "row": rows[kept_pos], "id": ids[kept_pos],
                                   "score": scores[kept]}))  # fmt: skip
    if feature == "logits":
        pos_l, pool_l = pos, pool
    else:
        pos_l, _, _, _ = fit_data(audioset_store, audioset_manifest, target_store, target_manifest, split, "logits",
                                  cfg["domain_classifier"], members)  # fmt: skip
        pool_l = features(store, train_pos, "logits", members)
    stats = {
        "method": method,
        "feature": feature,
        "budget": budget,
        "train_clips": int(len(train_pos)),
        "kept": int(len(kept)),
        "kept_share": float(len(kept) / max(1, len(train_pos))),
        **proxy_figure(pos_l, pool_l, kept, cfg.get("proxy"), name),
        **times,
    }
    write_json(stats_path, stats)
    log(f"{name}: {method} on {feature} kept {len(kept)} of {len(train_pos)}; KL reduction {stats['kl_reduction']:.4f}")
    return stats


def select_step(audioset_store, audioset_manifest, target_store, target_manifest, split, method, feature, budget,
                name, out, stats, settings: dict, like=None, log=print) -> None:  # fmt: skip
    """`prunekd select` (`budget`: JSON, e.g. {"equal": 0.3})."""
    import json

    select_training_clips(
        audioset_store, audioset_manifest, target_store, target_manifest, split, method, feature, json.loads(budget),
        settings, name, out, stats, like, log,
    )  # fmt: skip
