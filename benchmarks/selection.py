"""Benchmark: every selection method scoring 2 M AudioSet training clips, choosing an equal budget, and the KL
reduction proxy, on one feature, on the CPU.

Full size: pool 2,000,000 rows (the AudioSet training clips), target 140,000 (TAU split 100), negatives
16,000 (AudioSet eval less its hold-out); logits [n, 527] float32 as the store's `ensemble`, embeddings
[n, 768] float16 as its `member_embeddings`. Synthetic rows: a tagger-like background with the target's classes
(or embedding directions) raised on a share of the pool. The domain classifier is fitted for one epoch only
(its training at full size is benchmarks/domain.py); the other methods' fits are timed whole.
knn is timed on a slice of the pool (`--knn-rows`) and its 2 M figure extrapolated: on a CPU it is the one method
that does not fit in a minute. Goal: score + select + proxy of 2 M rows < 60 s per method but knn (2-core CPU).

    python benchmarks/selection.py [--quick] [--feature logits|embeddings]   # last line: one JSON object
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

import numpy as np


def synthetic(n: int, dim: int, like_share: float, seed: int, dtype, like=None) -> tuple[np.ndarray, np.ndarray]:
    """(rows, which rows are like the target); `like` given: those rows (the logits of the embeddings' clips)."""
    rng = np.random.default_rng(seed)
    given = like is not None
    out, like = np.empty((n, dim), dtype), (like if given else np.zeros(n, bool))
    for i in range(0, n, 1 << 16):
        m = min(n, i + (1 << 16)) - i
        if dim == 527:  # logits: sparse present classes over a low background
            x = rng.standard_normal((m, dim), dtype=np.float32) * 1.5 - 6.0
            x[rng.random((m, dim)) < 0.01] += 7.0
            if not given:
                like[i : i + m] = rng.random(m) < like_share
            x[like[i : i + m], :8] += 6.0
        else:  # embeddings: a unit-scale cloud, the target-like rows moved along a few directions
            x = rng.standard_normal((m, dim), dtype=np.float32)
            if not given:
                like[i : i + m] = rng.random(m) < like_share
            x[like[i : i + m], :16] += 2.0
        out[i : i + m] = x
    return out, like


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--quick", action="store_true", help="a twentieth of the rows, knn's summary 1,024 (under a minute)"
    )
    ap.add_argument("--feature", choices=["logits", "embeddings"], default="logits")
    ap.add_argument("--knn-rows", type=int, default=None, help="pool rows knn is timed on (default: pool / 20)")
    ap.add_argument("--methods", nargs="*", default=None)
    a = ap.parse_args()
    from prunekd.selection.budget import choose
    from prunekd.selection.compare import Proxy
    from prunekd.selection.methods import METHODS

    scale = 20 if a.quick else 1
    n_pool, n_pos, n_neg = 2_000_000 // scale, 140_000 // scale, 16_000 // scale
    dim, dtype = (527, np.float32) if a.feature == "logits" else (768, np.float16)
    t0 = time.perf_counter()
    pool, truth = synthetic(n_pool, dim, 0.07, 0, dtype)
    pos, neg = synthetic(n_pos, dim, 1.0, 1, dtype)[0], synthetic(n_neg, dim, 0.0, 2, dtype)[0]
    made = time.perf_counter() - t0
    # The proxy's codebook is on the logits whatever the feature (one codebook for every row of a comparison).
    logit_pool = pool if a.feature == "logits" else synthetic(n_pool, 527, 0.07, 0, np.float32, truth)[0]
    logit_pos = pos if a.feature == "logits" else synthetic(n_pos, 527, 1.0, 1, np.float32)[0]
    t0 = time.perf_counter()
    proxy = Proxy(logit_pos, logit_pool)
    proxy_setup = time.perf_counter() - t0
    k = int(0.07 * n_pool)  # an equal budget: as many as the target-like rows
    cfg = {"domain_classifier": {"seed": 0, "lr": 1e-2, "batch_size": 600, "epochs": 1}}  # a brisk epoch
    knn_rows = a.knn_rows or n_pool // 20
    out = {}
    for name in a.methods or list(METHODS):
        m = METHODS[name]
        t0 = time.perf_counter()
        mcfg = cfg["domain_classifier"] if name == "domain_classifier" else {}
        if name == "knn" and a.quick:
            mcfg = {"summary": 1024}
        fitted = m.fit(pos, neg, a.feature, mcfg, lambda *_: None)
        t1 = time.perf_counter()
        rows = knn_rows if name == "knn" else n_pool
        scores = fitted.score(pool[:rows])
        t2 = time.perf_counter()
        kept = choose(m, fitted, scores, {"fraction": k / n_pool}, 0, name)
        t3 = time.perf_counter()
        fig = proxy.figure(kept, name) if name != "knn" else None  # knn's kept set is of a slice
        t4 = time.perf_counter()
        per_row = (t2 - t1) / rows
        r = {
            "fit_s": round(t1 - t0, 2),
            "score_s": round(t2 - t1, 2),
            "scored_rows": rows,
            "select_s": round(t3 - t2, 2),
            "proxy_s": round(t4 - t3, 3),
            "score_select_proxy_2m_s": round(per_row * 2_000_000 + (t3 - t2) * 2_000_000 / rows + (t4 - t3), 1),
            "precision": round(float(truth[:rows][kept].mean()), 3),  # kept rows that are target-like
        }
        if fig:
            r["kl_reduction"] = round(fig["kl_reduction"], 4)
        out[name] = r
        print(name, json.dumps(r), flush=True)
    print(
        json.dumps(
            {
                "benchmark": "selection",
                "feature": a.feature,
                "quick": a.quick,
                "pool_rows": n_pool,
                "target_rows": n_pos,
                "negative_rows": n_neg,
                "threads": os.cpu_count(),
                "synthesis_s": round(made, 1),
                "proxy_setup_s": round(proxy_setup, 1),
                "methods": out,
                "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 2),
                "goal": "score + select + proxy of 2 M rows < 60 s per method but knn, 2-core CPU",
            }
        )
    )


if __name__ == "__main__":
    main()
